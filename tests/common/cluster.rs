//! Real `canal-server` processes for the HA scenario tests: configuration
//! files, spawning with signals (kill, term, stop, cont) and restarts, the
//! health endpoints, and the JSON log lines each process writes.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an HTTP request to a server may take: a SIGSTOPped server
/// accepts connections (the kernel does) but never answers.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes `dir/canal.properties` and `dir/<destination>/instance.properties`.
pub fn write_conf(dir: &Path, server_properties: &str, instances: &[(&str, &str)]) {
    let write = |path: PathBuf, text: &str| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    };
    write(dir.join("canal.properties"), server_properties);
    for (destination, text) in instances {
        write(dir.join(destination).join("instance.properties"), text);
    }
}

/// A port nothing listens on right now, below the kernel's ephemeral range
/// (32768-60999 by default): a port from that range can be taken as the
/// local end of any outgoing connection (ZooKeeper, MariaDB, proxies) before
/// the server under test binds it, which CI hit once. Each call tries ports
/// from a position that depends on the process and a counter, so parallel
/// test processes rarely try the same ones.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let seed = std::process::id().wrapping_mul(7_919);
    for _ in 0..SPAN {
        let port = (LOW + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {LOW} and {}", LOW + SPAN)
}

/// Polls `condition` every 25 ms until it holds (true) or `timeout` passes
/// (false).
pub async fn wait_until(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// [`wait_until`], panicking with `what` when it times out.
pub async fn wait_for(what: &str, timeout: Duration, condition: impl AsyncFnMut() -> bool) {
    assert!(
        wait_until(timeout, condition).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// `program` with no stdin or stdout, stderr appended to `log_path`, and
/// none of the test process's `canal.*` variables (they would configure
/// every server the tests start).
pub fn logged_command(program: &Path, log_path: &Path) -> Command {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("canal.") {
            command.env_remove(name);
        }
    }
    command
}

/// Waits for `child` (`name`, logging to `log_path`) to exit; panics after
/// `timeout`.
pub async fn wait_child_exit(
    child: &mut Child,
    timeout: Duration,
    name: &str,
    log_path: &Path,
) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(None) => panic!(
                "{name} (pid {}) still running {timeout:?} after it was told to stop; log: {}",
                child.id(),
                log_path.display()
            ),
            Err(e) => panic!("cannot wait for {name}: {e}"),
        }
    }
}

/// What to start: `client_port` and `metrics_port` are passed to the process
/// as `canal.port` and `canal.metrics.pull.port` (environment variables
/// override the files), so the handle's addresses always match it.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub name: String,
    pub conf_dir: PathBuf,
    pub client_port: u16,
    pub metrics_port: u16,
    /// More `canal.*` keys (or any variable) for this process only.
    pub env: Vec<(String, String)>,
}

impl SpawnOptions {
    /// `name` on `conf_dir` with two free ports and no extra environment.
    pub fn new(name: &str, conf_dir: &Path) -> SpawnOptions {
        SpawnOptions {
            name: name.to_owned(),
            conf_dir: conf_dir.to_owned(),
            client_port: free_port(),
            metrics_port: free_port(),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable, e.g. `.env("canal.register.ip", "127.0.0.1")`.
    pub fn env(mut self, name: &str, value: &str) -> SpawnOptions {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A `canal-server --log-format json --conf DIR` child process, SIGKILLed
/// when dropped.
pub struct ServerProcess {
    options: SpawnOptions,
    child: Child,
    log_path: PathBuf,
    /// `127.0.0.1:<client_port>`, where canal clients connect.
    pub client_address: String,
    pub metrics_port: u16,
}

impl ServerProcess {
    /// Starts the process; stderr (the JSON log) is appended to
    /// `<conf_dir>/../<name>.log`.
    pub fn spawn(options: SpawnOptions) -> ServerProcess {
        let log_path = options
            .conf_dir
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(format!("{}.log", options.name));
        let child = Self::start_child(&options, &log_path);
        ServerProcess {
            client_address: format!("127.0.0.1:{}", options.client_port),
            metrics_port: options.metrics_port,
            options,
            child,
            log_path,
        }
    }

    fn start_child(options: &SpawnOptions, log_path: &Path) -> Child {
        let mut command = logged_command(Path::new(env!("CARGO_BIN_EXE_canal-server")), log_path);
        command
            .arg("--log-format")
            .arg("json")
            .arg("--conf")
            .arg(&options.conf_dir)
            .env("canal.port", options.client_port.to_string())
            .env("canal.metrics.pull.port", options.metrics_port.to_string())
            .envs(options.env.iter().map(|(k, v)| (k, v)));
        command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} for {}: {e}",
                env!("CARGO_BIN_EXE_canal-server"),
                options.name
            )
        })
    }

    pub fn name(&self) -> &str {
        &self.options.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Not exited yet (a stopped process counts as running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (a `kill -s` name) while the child is ours: before it
    /// is reaped its pid cannot belong to another process.
    fn signal(&mut self, signal: &str) {
        if !self.is_running() {
            return;
        }
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -s {signal}: {e}"));
        assert!(
            status.success(),
            "kill -s {signal} {} failed",
            self.child.id()
        );
    }

    /// SIGKILL and reap.
    pub fn sigkill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM (the graceful stop); see [`Self::wait_exit`].
    pub fn sigterm(&mut self) {
        self.signal("TERM");
    }

    /// SIGSTOP: the process keeps its sockets and ZooKeeper session but does
    /// nothing until [`Self::sigcont`].
    pub fn sigstop(&mut self) {
        self.signal("STOP");
    }

    pub fn sigcont(&mut self) {
        self.signal("CONT");
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_child_exit(&mut self.child, timeout, &self.options.name, &self.log_path).await
    }

    /// Starts the process again with the same arguments and environment,
    /// appending to the same log; SIGKILLs the old one if it still runs.
    pub fn restart(&mut self) {
        self.sigkill();
        self.child = Self::start_child(&self.options, &self.log_path);
    }

    /// GET `path` on the metrics port: (status, body); `None` if the server
    /// does not answer within 2 s.
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        tokio::time::timeout(HTTP_TIMEOUT, http_get(self.metrics_port, path))
            .await
            .ok()
            .flatten()
    }

    /// `/readyz`: status and JSON body.
    pub async fn readyz(&self) -> Option<(u16, Value)> {
        let (status, body) = self.http_get("/readyz").await?;
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/readyz of {} is not JSON ({e}): {body}", self.name()));
        Some((status, json))
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> Option<String> {
        self.http_get("/metrics").await.map(|(_, body)| body)
    }

    /// `/readyz` → `{destination: {"role": ...}}`: "active", "standby" or
    /// "fenced"; `None` when unanswered or not reported.
    pub async fn role(&self, destination: &str) -> Option<String> {
        let (_, json) = self.readyz().await?;
        json.get(destination)?
            .get("role")?
            .as_str()
            .map(str::to_owned)
    }

    /// `/healthz` answers 200 (the process is up and serving HTTP).
    pub async fn healthy(&self) -> bool {
        matches!(self.http_get("/healthz").await, Some((200, _)))
    }

    /// Every JSON log line written so far (by all runs of this process);
    /// other lines (a panic message) are skipped.
    pub fn log_events(&self) -> Vec<LogEvent> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        text.lines().filter_map(LogEvent::parse).collect()
    }

    /// The first logged event at or after `since` that `pred` accepts.
    pub fn first_event_after(
        &self,
        since: jiff::Timestamp,
        pred: impl Fn(&LogEvent) -> bool,
    ) -> Option<LogEvent> {
        self.log_events()
            .into_iter()
            .find(|e| e.timestamp >= since && pred(e))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// One line of `--log-format json` (tracing-subscriber, events flattened).
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub timestamp: jiff::Timestamp,
    pub level: String,
    pub message: String,
    /// Every other top-level key: the event's fields, `target`, and the
    /// `span` / `spans` objects.
    pub fields: Map<String, Value>,
}

impl LogEvent {
    /// `None` for a line that is not a JSON object with a timestamp.
    pub fn parse(line: &str) -> Option<LogEvent> {
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(line) else {
            return None;
        };
        let timestamp = fields.remove("timestamp")?.as_str()?.parse().ok()?;
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let level = text(fields.remove("level"));
        let message = text(fields.remove("message"));
        Some(LogEvent {
            timestamp,
            level,
            message,
            fields,
        })
    }

    /// A field as text (strings as they are, other values as JSON).
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// A plain HTTP/1.1 GET on 127.0.0.1:`port`; `None` if it fails.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some((status, body))
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// A fresh, empty `$TMPDIR/canal-ha-<name>-<pid>` for one test's files.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canal-ha-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}
