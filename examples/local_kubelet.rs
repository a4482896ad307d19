//! A stand-in for a kubelet and the StatefulSet controller, for
//! `scripts/demo`: it runs the pods of the StatefulSets the operator creates
//! in one namespace as real `canal-server` processes on this machine, each
//! on a loopback IP of its own (127.0.0.20 upward). This is the test
//! harness of `tests/common/kubelet.rs` (see its documentation for what is
//! and is not simulated), not a kubelet: no containers, no images, no
//! network namespaces.
//!
//! ```sh
//! cargo build --bin canal-server
//! KUBECONFIG=... cargo run --example local_kubelet -- --namespace demo \
//!     [--canal-server target/debug/canal-server]
//! ```
//!
//! The canal-server binary is `--canal-server`, else `$CANAL_SERVER_BIN`,
//! else `canal-server` next to this example's directory (`target/<profile>/`).
//! It runs until SIGINT or SIGTERM, then stops every process it started
//! (SIGTERM, SIGKILL after the pod's grace period) and exits; the pod
//! objects stay in the API, as when a node goes away. Should it be killed
//! instead, the kernel kills the processes with it (PR_SET_PDEATHSIG).

#[path = "../tests/common/failure.rs"]
#[allow(dead_code)]
mod failure;
#[path = "../tests/common/kubelet.rs"]
#[allow(dead_code)]
mod kubelet;

/// What kubelet.rs takes from its sibling `tests/common/k8s.rs`, which
/// cannot be built here (it needs the test-only `CARGO_TARGET_TMPDIR` and
/// the rest of the test harness): a token naming this process, written
/// into the kubelet's directory, and whether the process a token names
/// still runs (a directory whose owner is gone is deleted).
mod k8s {
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

    pub fn owner_alive(token: &str) -> bool {
        let mut parts = token.split_whitespace();
        let (Some(pid), start) = (parts.next().and_then(|p| p.parse().ok()), parts.next()) else {
            return false;
        };
        start_time(pid).is_some_and(|now| start.is_none_or(|s| s == now))
    }
}

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use kubelet::{EventKind, Kubelet};

#[derive(Parser)]
#[command(
    about = "A kubelet and StatefulSet controller stand-in for the demo (test harness, not a kubelet)"
)]
struct Args {
    /// The namespace whose StatefulSets and pods to run.
    #[arg(long)]
    namespace: String,
    /// The canal-server binary the pods run.
    #[arg(long, env = "CANAL_SERVER_BIN")]
    canal_server: Option<PathBuf>,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let binary = match args.canal_server {
        Some(path) => path,
        None => default_binary()?,
    };
    if !binary.is_file() {
        return Err(format!(
            "no canal-server at {} (build it, or pass --canal-server)",
            binary.display()
        ));
    }
    let binary = std::fs::canonicalize(&binary).unwrap_or(binary);
    // SAFETY: no other thread exists yet (the runtime starts below), so
    // nothing reads the environment concurrently.
    unsafe { std::env::set_var("CANAL_SERVER_BIN", &binary) };
    tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(run(args.namespace, binary))
}

/// `canal-server` in the directory above this example's (`target/<profile>/`).
fn default_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("canal-server"))
        .ok_or_else(|| "cannot find canal-server; pass --canal-server".to_owned())
}

async fn run(namespace: String, binary: PathBuf) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the API server (is KUBECONFIG set?): {e}"))?;
    eprintln!(
        "local_kubelet: *** a demo/test stand-in, NOT a kubelet: it runs the pods of namespace \
         {namespace:?} as plain canal-server processes on loopback IPs of this machine ***"
    );
    let kubelet = Kubelet::start(client, &namespace);
    eprintln!(
        "local_kubelet: node {}, canal-server {}, pod logs under {}",
        kubelet::NODE_NAME,
        binary.display(),
        kubelet.dir().display()
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut shown = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let signal = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break "SIGINT",
            _ = terminate.recv() => break "SIGTERM",
            _ = tick.tick() => {
                let events = kubelet.events();
                for event in &events[shown..] {
                    eprintln!("local_kubelet: pod {} ({}): {}", event.pod, event.ip, describe(&event.kind));
                }
                shown = events.len();
            }
        }
    };
    eprintln!("local_kubelet: {signal}: stopping the pods' processes");
    kubelet.shutdown().await;
    eprintln!("local_kubelet: stopped");
    Ok(())
}

fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::Started { pid, restart: 0 } => format!("canal-server started, pid {pid}"),
        EventKind::Started { pid, restart } => {
            format!("canal-server restarted ({restart}), pid {pid}")
        }
        EventKind::Ready(true) => "ready".into(),
        EventKind::Ready(false) => "not ready".into(),
        EventKind::Waiting { reason, message } => format!("waiting: {reason}: {message}"),
        EventKind::Exited { code, signal } => match (code, signal) {
            (Some(code), _) => format!("canal-server exited with status {code}"),
            (None, Some(signal)) => format!("canal-server killed by signal {signal}"),
            (None, None) => "canal-server exited".into(),
        },
        EventKind::Stopped { killed: false } => "canal-server stopped (SIGTERM)".into(),
        EventKind::Stopped { killed: true } => "canal-server killed after its grace period".into(),
        EventKind::Deleted => "pod removed".into(),
    }
}
