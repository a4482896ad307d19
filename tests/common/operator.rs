//! The real `canal-operator` binary as a child process against a test
//! control plane, watching one namespace; ended by PID on drop.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::cluster::free_port;
use super::k8s::ControlPlane;

pub struct OperatorProcess {
    child: Child,
    pub metrics_port: u16,
    pub log_path: PathBuf,
}

impl OperatorProcess {
    /// Watches `namespace` only, so tests sharing a control plane do not
    /// reconcile each other's objects.
    pub fn start(plane: &ControlPlane, namespace: &str) -> OperatorProcess {
        OperatorProcess::start_with(plane, namespace, &[])
    }

    pub fn start_with(plane: &ControlPlane, namespace: &str, extra: &[&str]) -> OperatorProcess {
        OperatorProcess::start_as(plane.kubeconfig_path(), plane, namespace, extra)
    }

    /// With another kubeconfig (e.g. one impersonating the operator's
    /// ServiceAccount).
    pub fn start_as(
        kubeconfig: &std::path::Path,
        plane: &ControlPlane,
        namespace: &str,
        extra: &[&str],
    ) -> OperatorProcess {
        OperatorProcess::start_as_logging(kubeconfig, plane, namespace, extra, "info,canal=debug")
    }

    /// With `RUST_LOG` set to `filter` (e.g. adding `kube_client=debug`,
    /// whose request lines carry the reconcile's span and its reason).
    pub fn start_as_logging(
        kubeconfig: &std::path::Path,
        plane: &ControlPlane,
        namespace: &str,
        extra: &[&str],
        filter: &str,
    ) -> OperatorProcess {
        let metrics_port = free_port();
        let log_path = plane
            .run_dir()
            .join(format!("operator-{namespace}-{metrics_port}.log"));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let child = Command::new(env!("CARGO_BIN_EXE_canal-operator"))
            .args(["--log-format", "json", "--namespace", namespace])
            .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
            .args(["--server-image", "canal-server:test"])
            .args(extra)
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start canal-operator: {e}"));
        OperatorProcess {
            child,
            metrics_port,
            log_path,
        }
    }

    /// `canal_operator_leading` from the metrics, None while unreachable.
    pub async fn leading(&self) -> Option<bool> {
        let text = http_get(&format!("127.0.0.1:{}", self.metrics_port), "/metrics")
            .await
            .ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("canal_operator_leading "))?;
        Some(line.ends_with(" 1"))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn metrics(&self) -> String {
        let address = format!("127.0.0.1:{}", self.metrics_port);
        for _ in 0..50 {
            if let Ok(text) = http_get(&address, "/metrics").await {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "operator metrics at {address} did not answer; log: {}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &self.child.id().to_string()])
                .status();
            for _ in 0..100 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The control plane's admin kubeconfig rewritten to impersonate
/// ServiceAccount `namespace/name` (with the groups a ServiceAccount token
/// carries): every request is authorized as that ServiceAccount, so RBAC
/// gives it exactly what its bindings grant. Written to the run directory
/// as `sa-{namespace}-{name}.kubeconfig`.
pub fn service_account_kubeconfig(plane: &ControlPlane, namespace: &str, name: &str) -> PathBuf {
    let mut config = kube::config::Kubeconfig::read_from(plane.kubeconfig_path())
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", plane.kubeconfig_path().display()));
    for user in &mut config.auth_infos {
        let auth = user.auth_info.get_or_insert_with(Default::default);
        auth.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
        auth.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ]);
    }
    let path = plane
        .run_dir()
        .join(format!("sa-{namespace}-{name}.kubeconfig"));
    let text = serde_saphyr::to_string(&config).expect("a kubeconfig serializes");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A plain HTTP/1.0 GET (the operator's endpoints need nothing more).
pub async fn http_get(address: &str, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body
        .split_once("\r\n\r\n")
        .map_or(body.clone(), |(_, b)| b.to_owned()))
}

/// The test binary's control plane with the CRD installed, a client, and a
/// fresh namespace `{prefix}-...`; `None` when the test is skipped.
pub async fn operator_namespace(
    test: &str,
    prefix: &str,
) -> Option<(&'static ControlPlane, kube::Client, String)> {
    let plane = ControlPlane::shared(test).await?;
    plane.install_crd().await;
    let namespace = super::k8s::unique_namespace(prefix);
    plane.ensure_namespace(&namespace).await;
    let client = plane.client().await;
    Some((plane, client, namespace))
}

/// Creates or replaces Secret `name` with `data` as its string data.
pub async fn apply_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    data: &[(&str, &str)],
) {
    use kube::api::{Api, Patch, PatchParams};
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), namespace);
    let data: std::collections::BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name}, "stringData": data,
    });
    secrets
        .patch(
            name,
            &PatchParams::apply(super::k8s::FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}
