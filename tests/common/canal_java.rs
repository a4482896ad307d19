//! canal's own Java server (`scripts/canal-java`, canal 1.1.7 modules) as a
//! child process, for the side-by-side conformance tests and benchmarks,
//! and canal's own Java client (`scripts/java-client`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use super::cluster::{logged_command, wait_child_exit};

/// Where the reference server keeps its cursors: `Memory` is canal's
/// memory-instance, `ZooKeeper` its default-instance (HA, cursors flushed to
/// ZooKeeper every `canal.zookeeper.flush.period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaMode {
    Memory,
    ZooKeeper,
}

/// `canal.properties` for one reference server: `client_port` on 127.0.0.1,
/// registered as `127.0.0.1:<client_port>`, with `zk_servers` for HA (and
/// ZooKeeper cursors when `meta` says so). `extra` is appended as is.
pub fn reference_properties(
    client_port: u16,
    destinations: &[&str],
    zk_servers: Option<&str>,
    meta: MetaMode,
    extra: &str,
) -> String {
    let spring_xml = match meta {
        MetaMode::Memory => "classpath:spring/memory-instance.xml",
        MetaMode::ZooKeeper => "classpath:spring/default-instance.xml",
    };
    let mut text = format!(
        "canal.ip = 127.0.0.1\n\
         canal.register.ip = 127.0.0.1\n\
         canal.port = {client_port}\n\
         canal.destinations = {}\n\
         canal.instance.global.spring.xml = {spring_xml}\n",
        destinations.join(",")
    );
    if let Some(servers) = zk_servers {
        text.push_str(&format!("canal.zkServers = {servers}\n"));
    }
    text.push_str(extra);
    text
}

/// canal's own Java client, `scripts/java-client` (canal.client 1.1.8 from
/// Maven Central), to be given its arguments; killed when dropped.
pub fn java_client() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/java-client"),
    );
    command.kill_on_drop(true);
    command
}

/// A running `scripts/canal-java CONF_DIR`: the JVM itself (the script
/// execs it), SIGKILLed when dropped.
pub struct CanalJavaServer {
    name: String,
    child: Child,
    log_path: PathBuf,
    conf_dir: PathBuf,
    /// `127.0.0.1:<canal.port>`.
    pub client_address: String,
}

impl CanalJavaServer {
    /// Starts canal on `conf_dir` (see [`reference_properties`]); its log goes
    /// to `<conf_dir>/../<name>.log`.
    pub fn spawn(name: &str, conf_dir: &Path, client_port: u16) -> CanalJavaServer {
        let log_path = conf_dir
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(format!("{name}.log"));
        let child = Self::start_child(name, conf_dir, &log_path);
        CanalJavaServer {
            name: name.to_owned(),
            child,
            log_path,
            conf_dir: conf_dir.to_owned(),
            client_address: format!("127.0.0.1:{client_port}"),
        }
    }

    fn start_child(name: &str, conf_dir: &Path, log_path: &Path) -> Child {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/canal-java");
        logged_command(&script, log_path)
            .arg(conf_dir)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} for {name}: {e}", script.display()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until canal logs that it is running (the netty port is bound by
    /// then); panics with the log after `timeout` or when the JVM exits.
    pub async fn wait_started(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            if log.contains("the canal server is running now") {
                return;
            }
            if !self.is_running() {
                panic!(
                    "canal ({}) exited while starting; log {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail(40)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "canal ({}) not started after {timeout:?}; log {}:\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL and reap.
    pub fn sigkill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM: canal's shutdown hook releases its running nodes and flushes
    /// cursors. See [`Self::wait_exit`].
    pub fn sigterm(&mut self) {
        if !self.is_running() {
            return;
        }
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -s TERM {} failed", self.child.id());
    }

    /// Waits for the JVM to exit; panics after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let name = format!("canal ({})", self.name);
        wait_child_exit(&mut self.child, timeout, &name, &self.log_path).await
    }

    /// Starts canal again on the same configuration, appending to the same
    /// log; SIGKILLs the old JVM if it still runs.
    pub fn restart(&mut self) {
        self.sigkill();
        self.child = Self::start_child(&self.name, &self.conf_dir, &self.log_path);
    }
}

impl Drop for CanalJavaServer {
    fn drop(&mut self) {
        self.sigkill();
    }
}
