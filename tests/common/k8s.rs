//! A private Kubernetes control plane for a test binary: etcd,
//! kube-apiserver (RBAC on) and kube-controller-manager (garbage collector
//! and namespace controller) from `scripts/k8s`, on free ports, with their
//! state under `target/tmp/canal-k8s/<binary>-<pid>-<attempt>/`.
//!
//! - [`ControlPlane::shared`] starts one per test binary on first use and
//!   stops it when the process exits (an `atexit` hook, since statics are
//!   never dropped); it returns `None`, after printing why, when
//!   `scripts/k8s install` has not run (set `CANAL_TEST_REQUIRE_K8S=1` to
//!   make that a failure instead).
//! - [`ControlPlane::start`] starts one owned by the caller; dropping it
//!   stops it.
//!
//! Stopping runs `scripts/k8s down --purge` for the run directory: the
//! script ends the components by the PIDs it recorded (after checking
//! their command lines). A run directory whose owning test process is gone
//! (killed before its exit hook ran) is stopped and purged by the next
//! [`ControlPlane::start`]. `CANAL_TEST_KEEP_K8S=1` keeps the directories
//! (logs, etcd data) after the processes are stopped, until the next test
//! binary that starts a control plane purges them.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use canal::operator::crd::CanalInstance;
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, CustomResourceExt,
    api::{ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;

/// The field manager of everything the tests apply themselves.
pub const FIELD_MANAGER: &str = "canal-tests";

/// How long API objects may take to reach a state in the helpers here.
const API_WAIT: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s")
}

/// `scripts/k8s bin`: where `scripts/k8s install` puts the binaries.
pub fn bin_dir() -> Result<PathBuf, String> {
    let output = Command::new(script())
        .arg("bin")
        .output()
        .map_err(|e| format!("cannot run scripts/k8s bin: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "scripts/k8s bin failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    ))
}

/// Why the control plane cannot start here (binaries not installed), or
/// `None` when it can.
pub fn unavailable() -> Option<String> {
    let dir = match bin_dir() {
        Ok(dir) => dir,
        Err(why) => return Some(why),
    };
    let missing: Vec<_> = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
    ]
    .into_iter()
    .filter(|name| !dir.join(name).is_file())
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not in {} (run scripts/k8s install)",
            missing.join(", "),
            dir.display()
        )
    })
}

/// `None` (after printing that the test is skipped) when the binaries are
/// missing, unless `CANAL_TEST_REQUIRE_K8S` is set, which makes it a
/// failure.
fn check_available(test: &str) -> Option<()> {
    let Some(why) = unavailable() else {
        return Some(());
    };
    if std::env::var_os("CANAL_TEST_REQUIRE_K8S").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{test}: no Kubernetes control plane: {why}");
    }
    eprintln!("skipping {test}: no Kubernetes control plane: {why}");
    None
}

fn keep_dirs() -> bool {
    std::env::var_os("CANAL_TEST_KEEP_K8S").is_some_and(|v| !v.is_empty() && v != "0")
}

/// This process as `pid starttime` (field 22 of /proc/PID/stat), which
/// tells a live owner from a later process that reuses its PID.
pub fn owner_token() -> String {
    let pid = std::process::id();
    format!("{pid} {}", start_time(pid).unwrap_or_default())
}

fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19).map(str::to_owned)
}

/// Whether the process named by an [`owner_token`] still runs.
pub fn owner_alive(token: &str) -> bool {
    let mut parts = token.split_whitespace();
    let (Some(pid), start) = (parts.next().and_then(|p| p.parse().ok()), parts.next()) else {
        return false;
    };
    match start_time(pid) {
        Some(now) => start.is_none_or(|s| s == now),
        None => false,
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    super::cluster::free_port()
}

/// Runs `scripts/k8s ARGS` for one run directory and its ports.
fn run_script(args: &[&str], run_dir: &Path, ports: Option<&Ports>) -> Output {
    let mut command = Command::new(script());
    command
        .args(args)
        .env("CANAL_K8S_RUN_DIR", run_dir)
        .env("CANAL_K8S_STOP_TIMEOUT", "30");
    if let Some(ports) = ports {
        command
            .env("CANAL_K8S_APISERVER_PORT", ports.apiserver.to_string())
            .env("CANAL_K8S_ETCD_PORT", ports.etcd.to_string())
            .env("CANAL_K8S_ETCD_PEER_PORT", ports.etcd_peer.to_string())
            .env("CANAL_K8S_KCM_PORT", ports.controller_manager.to_string());
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/k8s {}: {e}", args.join(" ")))
}

/// The ports of one control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub apiserver: u16,
    pub etcd: u16,
    pub etcd_peer: u16,
    pub controller_manager: u16,
}

impl Ports {
    fn free() -> Ports {
        loop {
            let ports = [free_port(), free_port(), free_port(), free_port()];
            let mut sorted = ports;
            sorted.sort_unstable();
            if sorted.windows(2).all(|w| w[0] != w[1]) {
                return Ports {
                    apiserver: ports[0],
                    etcd: ports[1],
                    etcd_peer: ports[2],
                    controller_manager: ports[3],
                };
            }
        }
    }
}

/// Where run directories live: `target/tmp/canal-k8s`.
fn runs_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("canal-k8s")
}

const OWNER_FILE: &str = "owner";

/// Stops and purges the run directories of test processes that are gone.
fn reap_stale_runs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(token) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        if owner_alive(token.trim()) {
            continue;
        }
        eprintln!(
            "k8s: stopping the control plane of a test process that is gone: {}",
            dir.display()
        );
        let output = run_script(&["down", "--purge"], &dir, None);
        if !output.status.success() {
            eprintln!(
                "k8s: scripts/k8s down --purge {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A running control plane (see the module documentation).
#[derive(Debug)]
pub struct ControlPlane {
    run_dir: PathBuf,
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
    ports: Ports,
    stopped: AtomicBool,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn stop_shared_at_exit() {
    if let Some(plane) = SHARED.get() {
        plane.stop();
    }
}

impl ControlPlane {
    /// The test binary's control plane, started on first use (which takes
    /// 10-30 s) and stopped when the process exits; `None` when
    /// `scripts/k8s install` has not run (the caller returns: the test is
    /// skipped). `test` names the caller in the skip message.
    pub async fn shared(test: &str) -> Option<&'static ControlPlane> {
        check_available(test)?;
        let plane = tokio::task::spawn_blocking(|| {
            SHARED.get_or_init(|| {
                let plane = ControlPlane::start();
                // SAFETY: registers a plain function without captures; the
                // C library calls it once from exit().
                let registered = unsafe { atexit(stop_shared_at_exit) };
                if registered != 0 {
                    eprintln!(
                        "k8s: cannot register the exit hook; stop the control plane with: \
                         CANAL_K8S_RUN_DIR={} scripts/k8s down --purge",
                        plane.run_dir.display()
                    );
                }
                plane
            })
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        Some(plane)
    }

    /// Starts a control plane owned by the caller (blocking: 10-30 s);
    /// panics when it cannot start.
    pub fn start() -> ControlPlane {
        if let Some(why) = unavailable() {
            panic!("no Kubernetes control plane: {why}");
        }
        super::failure::watch();
        let bin_dir = bin_dir().expect("scripts/k8s bin");
        let root = runs_root();
        std::fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        reap_stale_runs(&root);
        static ATTEMPT: AtomicU32 = AtomicU32::new(0);
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "test".into());
        let binary = binary.split('-').next().unwrap_or("test").to_owned();
        let mut failures = Vec::new();
        for _ in 0..3 {
            let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
            let run_dir = root.join(format!("{binary}-{}-{attempt}", std::process::id()));
            let _ = std::fs::remove_dir_all(&run_dir);
            std::fs::create_dir_all(&run_dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", run_dir.display()));
            std::fs::write(run_dir.join(OWNER_FILE), owner_token())
                .unwrap_or_else(|e| panic!("cannot write to {}: {e}", run_dir.display()));
            let ports = Ports::free();
            let started = Instant::now();
            let output = run_script(&["up"], &run_dir, Some(&ports));
            let plane = ControlPlane {
                kubeconfig: run_dir.join("kubeconfig"),
                run_dir,
                bin_dir: bin_dir.clone(),
                ports,
                stopped: AtomicBool::new(false),
            };
            if output.status.success() {
                eprintln!(
                    "k8s: control plane up in {:.1?} (API server https://127.0.0.1:{}, {})",
                    started.elapsed(),
                    ports.apiserver,
                    plane.run_dir.display()
                );
                return plane;
            }
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            // Stops whatever did start, and purges (unless kept).
            drop(plane);
            // Another program took one of the ports meanwhile: new ports.
            let retry = stderr.contains("already in use");
            failures.push(stderr);
            if !retry {
                break;
            }
        }
        panic!(
            "scripts/k8s up failed:\n{}",
            failures.join("\n---- next attempt ----\n")
        );
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The kube client configuration of the admin user (system:masters).
    pub async fn config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.kubeconfig.display()));
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("bad kubeconfig {}: {e}", self.kubeconfig.display()))
    }

    /// A client as the admin (system:masters). Build one per runtime: a
    /// client's connection tasks live on the runtime that made it.
    pub async fn client(&self) -> Client {
        Client::try_from(self.config().await).expect("a kube client")
    }

    /// A client that impersonates `user` (and `groups`) through the admin's
    /// credentials: what RBAC allows that user is what it gets.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = self.config().await;
        config.auth_info.impersonate = Some(user.to_owned());
        if !groups.is_empty() {
            config.auth_info.impersonate_groups =
                Some(groups.iter().map(|g| (*g).to_owned()).collect());
        }
        Client::try_from(config).expect("a kube client")
    }

    /// Runs kubectl (the release of the API server) against this control
    /// plane.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(self.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run kubectl {}: {e}", args.join(" ")))
    }

    /// `kubectl apply --server-side` of `file` as [`FIELD_MANAGER`]; panics
    /// with kubectl's error output when it fails.
    pub async fn apply_file(&self, file: &Path) {
        let file = file.to_str().expect("a UTF-8 path");
        let output = self
            .kubectl(&[
                "apply",
                "--server-side",
                "--field-manager",
                FIELD_MANAGER,
                "-f",
                file,
            ])
            .await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Creates namespace `name` unless it exists.
    pub async fn ensure_namespace(&self, name: &str) {
        let client = self.client().await;
        let api: Api<Namespace> = Api::all(client);
        let namespace = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name },
        });
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&namespace),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    }

    /// Applies the CanalInstance CRD (`CanalInstance::crd()`, what
    /// `crds/canalinstances.canal.otter.dev.yaml` holds) by server-side
    /// apply and waits until it is Established and served.
    pub async fn install_crd(&self) {
        let client = self.client().await;
        let crd = CanalInstance::crd();
        let name = crd.metadata.name.clone().expect("the CRD has a name");
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot apply the CRD {name}: {e}"));
        wait_api(&format!("CRD {name} Established"), API_WAIT, async || {
            let crd = api.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
        let instances: Api<CanalInstance> = Api::all(client);
        wait_api("CanalInstances served", API_WAIT, async || {
            instances
                .list(&ListParams::default().limit(1))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    /// Stops the processes (`scripts/k8s down`) and purges the run
    /// directory unless `CANAL_TEST_KEEP_K8S` is set. Idempotent.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let failed = super::failure::seen();
        if failed {
            let name = self
                .run_dir
                .file_name()
                .map_or_else(|| "k8s".into(), |n| n.to_string_lossy().into_owned());
            match super::failure::preserve(&self.run_dir, &name, &["etcd", "pki", "run"]) {
                Ok(to) => eprintln!(
                    "k8s: a test failed; the control plane's logs and the operators' are in {}",
                    to.display()
                ),
                Err(e) => eprintln!(
                    "k8s: a test failed; cannot copy the logs of {}: {e}",
                    self.run_dir.display()
                ),
            }
        }
        let keep = keep_dirs();
        let args: &[&str] = if keep {
            &["down"]
        } else {
            &["down", "--purge"]
        };
        let output = run_script(args, &self.run_dir, Some(&self.ports));
        if !output.status.success() {
            eprintln!(
                "k8s: scripts/k8s {} failed for {}: {}",
                args.join(" "),
                self.run_dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        } else if keep {
            eprintln!(
                "k8s: control plane stopped; kept {}",
                self.run_dir.display()
            );
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

static NEXT_NAMESPACE: AtomicU32 = AtomicU32::new(0);

/// A namespace name unique to this process: `{prefix}-{pid}-{n}`.
pub fn unique_namespace(prefix: &str) -> String {
    let n = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Polls `probe` every 100 ms until it returns a value; panics with `what`
/// after `timeout`.
pub async fn wait_api<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
