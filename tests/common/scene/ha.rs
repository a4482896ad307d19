//! Several `canal-server` processes racing for one destination in the real
//! ZooKeeper ensemble over the real MariaDB, and what the failover tests
//! ask of them: who is active, what the log says, whether the workload
//! lost anything.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::LiveSchema;
use crate::common::{
    cluster::{ServerProcess, SpawnOptions, test_dir, wait_for, write_conf},
    workload::{Checker, CheckerReport, Verdict, Writer, excess_duplicates, verify},
    zk,
};

/// How long a failover scenario waits for any one step.
pub const WAIT: Duration = Duration::from_secs(60);

/// One destination over a fresh schema (without tables: the [`Writer`]
/// makes its own), a directory for the servers' files, and canal.properties
/// of the ZooKeeper profile with cursors written on every ack.
pub struct HaScene {
    pub schema: LiveSchema,
    pub destination: String,
    /// The ensemble's connect string (CANAL_TEST_ZK).
    pub zk_servers: String,
    pub dir: PathBuf,
    /// The configuration directory [`Self::spawn`] shares among servers.
    pub conf_dir: PathBuf,
    session_ms: u64,
}

impl HaScene {
    /// A scene named after `prefix`, with a ZooKeeper session timeout of
    /// `session_ms`; its shared configuration is written at once.
    pub async fn new(prefix: &str, session_ms: u64) -> HaScene {
        let schema = LiveSchema::create(prefix, &[]).await;
        let dir = test_dir(prefix);
        let scene = HaScene {
            destination: schema.destination(),
            zk_servers: zk::servers(),
            conf_dir: dir.join("conf"),
            dir,
            schema,
            session_ms,
        };
        scene.write_conf(&scene.conf_dir, &scene.zk_servers);
        scene
    }

    fn write_conf(&self, conf_dir: &Path, zk_servers: &str) {
        write_conf(
            conf_dir,
            &ha_properties(&self.destination, zk_servers, self.session_ms),
            &[(&self.destination, &self.schema.instance_properties())],
        );
    }

    /// Servers named `names` on the shared configuration (each its own
    /// ports).
    pub fn spawn(&self, names: &[&str]) -> Vec<ServerProcess> {
        names
            .iter()
            .map(|name| ServerProcess::spawn(SpawnOptions::new(name, &self.conf_dir)))
            .collect()
    }

    /// A server `name` with a configuration of its own that reaches
    /// ZooKeeper at `zk_connect` (a proxy that can cut it off alone).
    pub fn spawn_through(&self, name: &str, zk_connect: &str) -> ServerProcess {
        let conf_dir = self.dir.join(format!("conf-{name}"));
        self.write_conf(&conf_dir, zk_connect);
        ServerProcess::spawn(SpawnOptions::new(name, &conf_dir))
    }

    /// Starts committing into the schema: `tables` tables, about
    /// `rows_per_second` rows per second.
    pub async fn writer(&self, tables: usize, rows_per_second: u32) -> Writer {
        Writer::start(&self.schema.env, &self.schema.name, tables, rows_per_second).await
    }

    /// Starts consuming the destination as client 1001, following `running`.
    pub fn checker(&self) -> Checker {
        Checker::start(&self.zk_servers, &self.destination, "1001")
    }
}

/// canal.properties of an HA server: ZooKeeper profile, cursors written on
/// every ack, the given session timeout.
pub fn ha_properties(destination: &str, zk_servers: &str, session_ms: u64) -> String {
    format!(
        "canal.ip = 127.0.0.1\n\
         canal.destinations = {destination}\n\
         canal.zkServers = {zk_servers}\n\
         canal.instance.global.spring.xml = classpath:spring/default-instance.xml\n\
         canal.zookeeper.flush.period = 0\n\
         canal.zookeeper.session.timeout = {session_ms}\n"
    )
}

/// Index of the one server whose `/readyz` says active; panics when two
/// are, or after [`WAIT`] without one.
pub async fn active_of(servers: &[ServerProcess], destination: &str) -> usize {
    let started = Instant::now();
    loop {
        let mut active = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            if server.role(destination).await.as_deref() == Some("active") {
                active.push(i);
            }
        }
        assert!(active.len() <= 1, "two active servers: {active:?}");
        if let [one] = active[..] {
            return one;
        }
        assert!(started.elapsed() < WAIT, "no active server after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `server`'s `/readyz` reports `role` ("active", "standby")
/// for `destination`.
pub async fn wait_role(server: &ServerProcess, destination: &str, role: &str) {
    let what = format!("{} to be {role} for {destination}", server.name());
    wait_for(&what, WAIT, async || {
        server.role(destination).await.as_deref() == Some(role)
    })
    .await;
}

/// Waits until the checker received more than `rows` row deliveries beyond
/// those it had when called.
pub async fn rows_after(what: &str, checker: &Checker, rows: usize) {
    let before = checker.row_deliveries();
    wait_for(what, WAIT, async || {
        checker.row_deliveries() > before + rows
    })
    .await;
}

/// Stops the writer, waits for the checker to see every committed row, and
/// returns the verdict (printed) with the checker's report; panics when a
/// row is missing, out of order or repeated more than un-acked batches
/// explain.
pub async fn finish(what: &str, writer: Writer, checker: Checker) -> (Verdict, CheckerReport) {
    let written = writer.stop().await;
    let caught_up = checker.wait_for_all(&written, WAIT).await;
    let report = checker.stop().await;
    let verdict = verify(&written, &report);
    print_verdict(what, &verdict);
    if !caught_up {
        for connection in &report.connections {
            println!("  session {connection:?}");
        }
    }
    verdict.assert_ok();
    assert!(caught_up, "committed rows never arrived");
    let excess = excess_duplicates(&verdict, &report);
    assert!(
        excess.is_empty(),
        "more duplicates than un-acked batches: {excess:?}"
    );
    (verdict, report)
}

fn print_verdict(what: &str, verdict: &Verdict) {
    println!("{what}:\n{verdict}");
    for reconnect in &verdict.reconnects {
        println!(
            "  reconnect {} {} -> {}: gap {:?}, duplicates {}",
            reconnect.index, reconnect.from, reconnect.to, reconnect.gap, reconnect.duplicates
        );
    }
}

/// SIGTERM to every server, then waits for each to exit (whatever the
/// status).
pub async fn stop_all(servers: &mut [ServerProcess]) {
    for server in servers {
        server.sigterm();
        let _ = server.wait_exit(WAIT).await;
    }
}

/// Timestamps of `server`'s JSON log events with `ha_event == kind`, oldest
/// first.
pub fn ha_events(server: &ServerProcess, kind: &str) -> Vec<jiff::Timestamp> {
    server
        .log_events()
        .into_iter()
        .filter(|e| e.field("ha_event").as_deref() == Some(kind))
        .map(|e| e.timestamp)
        .collect()
}

/// Member nodes are registered by a task of their own: polls until `path`
/// exists (panics after `timeout`) and returns its stat.
pub async fn node_appears(
    zookeeper: &zookeeper_client::Client,
    path: &str,
    timeout: Duration,
) -> zookeeper_client::Stat {
    let started = Instant::now();
    loop {
        if let Some(stat) = zookeeper.check_stat(path).await.unwrap() {
            return stat;
        }
        assert!(started.elapsed() < timeout, "{path} never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
