//! ZooKeeper for the HA tests: clients, canal's nodes, and fault injection
//! on the ensemble of the environment `scripts/env` manages.
//!
//! `zk_node` runs `scripts/env zk-node`, which picks the environment from
//! the `CANAL_ENV_*` variables (CANAL_ENV_DIR, CANAL_ENV_ZK_PORT_BASE, ...).
//! The test process must have the same ones it used for `scripts/env up`:
//! `eval "$(scripts/env env)"` sets CANAL_ENV_DIR but not the ports. Before
//! signalling anything, `zk_node` checks that this environment's ensemble is
//! the one in CANAL_TEST_ZK, so a test never stops another environment's
//! ZooKeeper.

use std::{path::PathBuf, process::Command, time::Duration};

use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError};

pub use canal::cursor::zk::DESTINATIONS;

/// The ensemble of the test environment (CANAL_TEST_ZK).
pub fn servers() -> String {
    std::env::var("CANAL_TEST_ZK").unwrap_or_else(|_| {
        panic!("CANAL_TEST_ZK is not set: eval \"$(scripts/env env)\" with the environment's CANAL_ENV_* variables")
    })
}

/// A client with the given session timeout.
pub async fn connect(servers: &str, session_timeout: Duration) -> Client {
    Client::connector()
        .with_session_timeout(session_timeout)
        .connect(servers)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to ZooKeeper at {servers}: {e}"))
}

/// `/otter/canal/destinations/{destination}/running`.
pub fn running_path(destination: &str) -> String {
    format!("{DESTINATIONS}/{destination}/running")
}

/// Creates `path` (in `mode`, holding `data`) and its missing parents
/// (persistent, empty). An existing node is left as it is.
pub async fn create_all(zookeeper: &Client, path: &str, data: &[u8], mode: CreateMode) {
    let parts: Vec<_> = path.trim_start_matches('/').split('/').collect();
    let mut prefix = String::new();
    for (i, part) in parts.iter().enumerate() {
        prefix.push('/');
        prefix.push_str(part);
        let last = i + 1 == parts.len();
        let options =
            if last { mode } else { CreateMode::Persistent }.with_acls(Acls::anyone_all());
        match zookeeper
            .create(&prefix, if last { data } else { b"" }, &options)
            .await
        {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(error) => panic!("cannot create {prefix}: {error}"),
        }
    }
}

/// Brings the server `zookeeper` is connected to up to date with the
/// leader. ZooKeeper orders each session's own operations, but a read may be
/// served by a follower that has not applied another session's write yet:
/// call this before reading what another session (a server, the operator)
/// has just written.
pub async fn sync(zookeeper: &Client) {
    zookeeper
        .sync("/")
        .await
        .unwrap_or_else(|e| panic!("cannot sync with the ZooKeeper leader: {e}"));
}

/// Deletes `path` and everything below it; a missing node is fine.
pub async fn delete_all(zookeeper: &Client, path: &str) {
    let children = match zookeeper.list_children(path).await {
        Ok(children) => children,
        Err(ZkError::NoNode) => return,
        Err(error) => panic!("cannot list {path}: {error}"),
    };
    for child in children {
        Box::pin(delete_all(zookeeper, &format!("{path}/{child}"))).await;
    }
    match zookeeper.delete(path, None).await {
        Ok(()) | Err(ZkError::NoNode) => {}
        Err(error) => panic!("cannot delete {path}: {error}"),
    }
}

/// Claims `{destination}/running` for `address` as canal's ServerRunningData
/// (ephemeral: it goes with `zookeeper`'s session).
pub async fn claim_running(zookeeper: &Client, destination: &str, address: &str) {
    let data = format!(r#"{{"active":true,"address":"{address}"}}"#);
    create_all(
        zookeeper,
        &running_path(destination),
        data.as_bytes(),
        CreateMode::Ephemeral,
    )
    .await;
}

/// The node (1-based, in CANAL_TEST_ZK's order, as `zk-node` numbers them)
/// that `session` is connected to now, from each node's `cons` four-letter
/// word; `None` if no node lists it (disconnected, or a node is paused).
/// With `stat.ephemeral_owner` of a `running` node this tells which node
/// serves the active server's session.
pub async fn node_serving(session: i64) -> Option<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let needle = format!("sid={session:#x},");
    for (i, server) in servers().split(',').enumerate() {
        let reply = tokio::time::timeout(Duration::from_secs(2), async {
            let mut stream = tokio::net::TcpStream::connect(server.trim()).await.ok()?;
            stream.write_all(b"cons").await.ok()?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.ok()?;
            Some(reply)
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        if reply.contains(&needle) {
            return u8::try_from(i + 1).ok();
        }
    }
    None
}

/// What `zk-node` does to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    Stop,
    Kill,
    Start,
    Pause,
    Resume,
}

impl NodeAction {
    fn as_arg(self) -> &'static str {
        match self {
            NodeAction::Stop => "stop",
            NodeAction::Kill => "kill",
            NodeAction::Start => "start",
            NodeAction::Pause => "pause",
            NodeAction::Resume => "resume",
        }
    }
}

fn env_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/env")
}

/// Runs `scripts/env ARGS` with this process's environment: (exit success,
/// stdout, stderr).
pub fn scripts_env(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env_script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/env {}: {e}", args.join(" ")));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Panics unless `scripts/env`, run with this process's CANAL_ENV_*
/// variables, manages the ensemble in CANAL_TEST_ZK.
pub fn check_same_environment() {
    let (ok, stdout, stderr) = scripts_env(&["env"]);
    assert!(ok, "scripts/env env failed: {stderr}");
    let expected = format!("export CANAL_TEST_ZK={}", servers());
    assert!(
        stdout.lines().any(|line| line == expected),
        "scripts/env with this process's CANAL_ENV_* variables manages another ZooKeeper \
         ensemble than CANAL_TEST_ZK={}; export the same CANAL_ENV_DIR, CANAL_ENV_ZK_PORT_BASE \
         (and CANAL_ENV_MYSQL_PORT) as for 'scripts/env up'.\nscripts/env env says:\n{stdout}",
        servers()
    );
}

/// `scripts/env zk-node ACTION N` (N in 1..=3); returns when it is done
/// (stopped, or serving again after Start). Panics with the script's output
/// if it fails. Blocks: see [`zk_node`] in async code.
pub fn zk_node_blocking(action: NodeAction, node: u8) {
    check_same_environment();
    let n = node.to_string();
    let (ok, stdout, stderr) = scripts_env(&["zk-node", action.as_arg(), &n]);
    assert!(
        ok,
        "scripts/env zk-node {} {node} failed:\n{stdout}{stderr}",
        action.as_arg()
    );
}

/// [`zk_node_blocking`] off the runtime's worker threads, which keep the
/// test's ZooKeeper sessions alive meanwhile.
pub async fn zk_node(action: NodeAction, node: u8) {
    tokio::task::spawn_blocking(move || zk_node_blocking(action, node))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
}

/// `scripts/env status`: (all up, its output).
pub async fn env_status() -> (bool, String) {
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(|| scripts_env(&["status"]))
        .await
        .expect("scripts/env status");
    (ok, format!("{stdout}{stderr}"))
}

/// Node N stopped, killed or paused by a test; started (or resumed) again
/// when dropped unless [`StoppedNode::start`] did, so that a failing test
/// does not leave the ensemble degraded for the next one.
pub struct StoppedNode {
    node: u8,
    action: NodeAction,
    restored: bool,
}

impl StoppedNode {
    /// Applies `action` (Stop, Kill or Pause) to node N.
    pub async fn new(action: NodeAction, node: u8) -> StoppedNode {
        assert!(
            matches!(
                action,
                NodeAction::Stop | NodeAction::Kill | NodeAction::Pause
            ),
            "StoppedNode takes Stop, Kill or Pause, not {action:?}"
        );
        zk_node(action, node).await;
        StoppedNode {
            node,
            action,
            restored: false,
        }
    }

    /// Resumes or starts the node and waits until it serves.
    pub async fn start(mut self) {
        self.restored = true;
        if self.action == NodeAction::Pause {
            zk_node(NodeAction::Resume, self.node).await;
        }
        zk_node(NodeAction::Start, self.node).await;
    }
}

impl Drop for StoppedNode {
    fn drop(&mut self) {
        if !self.restored {
            let n = self.node.to_string();
            if self.action == NodeAction::Pause {
                let _ = scripts_env(&["zk-node", "resume", &n]);
            }
            let _ = scripts_env(&["zk-node", "start", &n]);
        }
    }
}
