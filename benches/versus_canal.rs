//! Head to head with canal's own Java server (canal 1.1.7 modules, run by
//! `scripts/canal-java` with canal's startup.sh JVM options): the same
//! workloads, in turn, on this machine, in one run, through the same Rust
//! client (`canal::client`, the code of `canal-server tail`). Prints every
//! run and a table of ratios (ours / canal's, medians over the runs) with
//! PASS/MISS against the targets.
//!
//! - catch-up: both servers start at the same binlog position before a
//!   backlog of `BENCH_VERSUS_ROWS` rows (default 1,000,000; generated here
//!   in a schema of its own, dropped at the end) and one client GETs
//!   (1,000 units, canal's default) and ACKs every batch until every row
//!   arrived; the server's peak RSS (VmHWM) and CPU seconds (utime+stime)
//!   from the subscription to the last row;
//! - latency: one row per INSERT (autocommit) every millisecond, from
//!   sending the INSERT to the client receiving the row (GET of 1 unit, 2 ms
//!   wait), 2 s of warm-up then `BENCH_VERSUS_LATENCY_SECONDS` (default 10);
//! - failover: two servers of the same kind, defaults, on the three-node
//!   ensemble; benches/failover.rs's definition (event -> first change
//!   delivered by the other server, one row committed every 5 ms, a client
//!   following `{dest}/running` and acking every batch) and the rows that
//!   client received more than once per failover.
//!
//! Both kinds run in HA mode from the same files: canal.properties with
//! `canal.zkServers` and canal's `default-instance.xml` (cursors in
//! ZooKeeper, flushed every `canal.zookeeper.flush.period`, default 1 s),
//! and the same instance.properties. Nothing else is tuned on either side.
//!
//! Run with `cargo bench --locked --bench versus_canal` (scripts/bench).
//! `BENCH_VERSUS_RUNS` sets the runs per figure and kind (default 3).

#[path = "../tests/common/canal_java.rs"]
#[allow(dead_code)]
mod canal_java;
#[path = "../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;
mod common;
#[path = "../tests/common/zk.rs"]
#[allow(dead_code)]
mod zk;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use canal::{
    client::{CanalClient, ClientError, Login, cluster::active_server},
    protocol::entry::{Entry, EntryType, RowChange},
};
use canal_java::{CanalJavaServer, MetaMode, reference_properties};
use cluster::{ServerProcess, SpawnOptions, free_port, wait_for};
use common::{
    env,
    follow::{Seen, consume, first_change_after, ids_of, rows_from_leader, spawn_writer},
    root,
};
use futures_util::FutureExt;
use mysql_async::prelude::Queryable;
use prost::Message;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "1001";
/// canal's failover after a crash is its 30 s ZooKeeper session plus 5 s.
const WAIT: Duration = Duration::from_secs(180);
const WARM_UP_SECONDS: u64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Canal,
    Ours,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Canal => "canal 1.1.7",
            Kind::Ours => "canal-server",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Kind::Canal => "c",
            Kind::Ours => "o",
        }
    }
}

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Everything of one bench run: its schema, directory and ZooKeeper names.
struct Bench {
    schema: String,
    dir: PathBuf,
    zookeeper: zookeeper_client::Client,
    zk_servers: String,
    /// Destinations created so far (deleted from ZooKeeper at the end).
    destinations: Mutex<Vec<String>>,
    next_slave_id: Mutex<u32>,
}

impl Bench {
    /// A destination name unique to this process and purpose, with no
    /// node left in ZooKeeper.
    async fn destination(&self, kind: Kind, purpose: &str) -> String {
        let name = format!("versus{}{}{purpose}", std::process::id(), kind.tag());
        zk::delete_all(&self.zookeeper, &format!("{}/{name}", zk::DESTINATIONS)).await;
        self.destinations.lock().unwrap().push(name.clone());
        name
    }

    fn slave_id(&self) -> u32 {
        let mut next = self.next_slave_id.lock().unwrap();
        *next += 1;
        *next
    }

    fn instance_properties(&self, journal: &str, position: u64) -> String {
        format!(
            "canal.instance.mysql.slaveId = {}\ncanal.instance.master.address = {}\n\
             canal.instance.dbUsername = {}\ncanal.instance.dbPassword = {}\n\
             canal.instance.master.journal.name = {journal}\n\
             canal.instance.master.position = {position}\n\
             canal.instance.filter.regex = {}\\\\..*\n",
            self.slave_id(),
            env("CANAL_TEST_MYSQL_ADDR"),
            env("CANAL_TEST_MYSQL_USER"),
            env("CANAL_TEST_MYSQL_PASSWORD"),
            self.schema,
        )
    }

    /// Starts one server of `kind` for `destination` from `journal:position`,
    /// configured by the same two files whichever the kind.
    fn start(
        &self,
        kind: Kind,
        name: &str,
        destination: &str,
        journal: &str,
        position: u64,
    ) -> Server {
        let conf_dir = self.dir.join(name);
        let _ = std::fs::remove_dir_all(&conf_dir);
        let write = |port: u16| {
            cluster::write_conf(
                &conf_dir,
                &reference_properties(
                    port,
                    &[destination],
                    Some(&self.zk_servers),
                    MetaMode::ZooKeeper,
                    "",
                ),
                &[(destination, &self.instance_properties(journal, position))],
            )
        };
        match kind {
            Kind::Canal => {
                let port = free_port();
                write(port);
                let server = CanalJavaServer::spawn(name, &conf_dir, port);
                Server {
                    client_address: server.client_address.clone(),
                    port,
                    inner: Inner::Canal(server),
                }
            }
            Kind::Ours => {
                let options = SpawnOptions::new(name, &conf_dir).env("RUST_LOG", "warn");
                let port = options.client_port;
                write(port);
                let server = ServerProcess::spawn(options);
                Server {
                    client_address: server.client_address.clone(),
                    port,
                    inner: Inner::Ours(server),
                }
            }
        }
    }

    /// Drops the schema and the ZooKeeper nodes; keeps the servers' logs
    /// when the bench failed.
    async fn cleanup(&self, failed: bool) {
        let destinations = self.destinations.lock().unwrap().clone();
        for destination in destinations {
            zk::delete_all(
                &self.zookeeper,
                &format!("{}/{destination}", zk::DESTINATIONS),
            )
            .await;
        }
        let mut conn = root().await;
        let _ = conn
            .query_drop(format!("DROP DATABASE IF EXISTS {}", self.schema))
            .await;
        if failed {
            eprintln!("server logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

enum Inner {
    Canal(CanalJavaServer),
    Ours(ServerProcess),
}

/// A server process of either kind (SIGKILLed when dropped).
struct Server {
    inner: Inner,
    client_address: String,
    port: u16,
}

impl Server {
    fn pid(&self) -> u32 {
        match &self.inner {
            Inner::Canal(s) => s.pid(),
            Inner::Ours(s) => s.pid(),
        }
    }

    fn sigterm(&mut self) {
        match &mut self.inner {
            Inner::Canal(s) => s.sigterm(),
            Inner::Ours(s) => s.sigterm(),
        }
    }

    fn sigkill(&mut self) {
        match &mut self.inner {
            Inner::Canal(s) => s.sigkill(),
            Inner::Ours(s) => s.sigkill(),
        }
    }

    async fn wait_exit(&mut self) {
        match &mut self.inner {
            Inner::Canal(s) => {
                s.wait_exit(WAIT).await;
            }
            Inner::Ours(s) => {
                s.wait_exit(WAIT).await;
            }
        }
    }

    fn restart(&mut self) {
        match &mut self.inner {
            Inner::Canal(s) => s.restart(),
            Inner::Ours(s) => s.restart(),
        }
    }

    async fn stop(mut self) {
        self.sigterm();
        self.wait_exit().await;
    }

    fn log_path(&self) -> &Path {
        match &self.inner {
            Inner::Canal(s) => s.log_path(),
            Inner::Ours(s) => s.log_path(),
        }
    }

    /// utime + stime so far, seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // Fields 14 and 15 of proc(5), counted from the state (field 3).
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / clock_ticks()
    }

    /// VmHWM, MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

/// The median; NaN for no values (a phase left out).
fn median(values: Vec<f64>) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        common::median(values)
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf CLK_TCK");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    })
}

/// Connects and subscribes, retrying while the server starts (canal's
/// netty port opens after its instance; a server not yet active refuses
/// the subscription).
async fn subscribe(address: &str, destination: &str) -> CanalClient {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let mut client =
                CanalClient::connect(address, &Login::default(), Duration::from_secs(2)).await?;
            client.subscribe(destination, CLIENT_ID, "").await?;
            Ok::<_, ClientError>(client)
        };
        match attempt.await {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => {
                panic!("cannot subscribe to {destination} at {address}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Row images of `table` in the entries.
fn rows_of(entries: &[Entry], table: &str) -> u64 {
    entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter(|e| e.header.as_ref().is_some_and(|h| h.table_name == table))
        .filter_map(|e| RowChange::decode(e.store_value.as_slice()).ok())
        .filter(|rc| rc.is_ddl != Some(true))
        .map(|rc| rc.row_datas.len() as u64)
        .sum()
}

/// Row images of `table` counted from the RowChange wire format (field 12,
/// `rowDatas`) without materializing any column: what the client costs when
/// it only has to count.
fn rows_counted(entries: &[Entry], table: &str) -> u64 {
    entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter(|e| e.header.as_ref().is_some_and(|h| h.table_name == table))
        .map(|e| count_row_datas(&e.store_value))
        .sum()
}

fn count_row_datas(mut buf: &[u8]) -> u64 {
    use prost::encoding::decode_varint;
    let mut rows = 0;
    while !buf.is_empty() {
        let Ok(key) = decode_varint(&mut buf) else {
            break;
        };
        let skip = match key & 7 {
            0 => {
                let value = decode_varint(&mut buf).unwrap_or(0);
                if key >> 3 == 10 && value != 0 {
                    return 0; // isDdl
                }
                0
            }
            1 => 8,
            2 => {
                if key >> 3 == 12 {
                    rows += 1;
                }
                decode_varint(&mut buf).unwrap_or(u64::MAX) as usize
            }
            5 => 4,
            _ => break,
        };
        if skip > buf.len() {
            break;
        }
        buf = &buf[skip..];
    }
    rows
}

async fn master_status(conn: &mut mysql_async::Conn) -> (String, u64) {
    conn.query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|row: mysql_async::Row| (row.get(0).unwrap(), row.get(1).unwrap()))
        .expect("binary logging on")
}

/// The backlog: where it starts, its rows and binlog bytes.
struct Backlog {
    journal: String,
    position: u64,
    rows: u64,
    bytes: u64,
}

/// Creates the schema and writes `rows` rows of the 8-column table of
/// benches/common (10,000-row INSERT ... SELECT transactions).
async fn make_backlog(schema: &str, rows: u64) -> Backlog {
    let mut conn = root().await;
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {schema}; CREATE DATABASE {schema};
         CREATE TABLE {schema}.orders (id BIGINT PRIMARY KEY, user_id INT NOT NULL, name VARCHAR(64),
           email VARCHAR(128), amount DECIMAL(12,2), created DATETIME(3),
           status ENUM('new','paid','shipped','cancelled'), note TEXT) ENGINE=InnoDB;
         CREATE TABLE {schema}.orders_tail LIKE {schema}.orders;
         CREATE TABLE {schema}.latency (id BIGINT PRIMARY KEY, v VARCHAR(64), n INT, created DATETIME(3));
         CREATE TABLE {schema}.failover (id BIGINT PRIMARY KEY); USE {schema}"
    ))
    .await
    .unwrap();
    let (journal, position) = master_status(&mut conn).await;
    let started = Instant::now();
    let per_transaction = 10_000.min(rows);
    let mut written = 0;
    while written < rows {
        let n = per_transaction.min(rows - written);
        conn.query_drop(format!(
            "INSERT INTO {schema}.orders SELECT {written}+seq, seq % 5000, CONCAT('user-', seq),
               CONCAT('user', seq, '@example.com'), seq / 100, '2024-01-01 00:00:00.000' + INTERVAL seq SECOND,
               1 + seq % 4, REPEAT('n', 40 + seq % 60) FROM seq_1_to_{n}"
        ))
        .await
        .unwrap();
        written += n;
    }
    let (end_journal, end_position) = master_status(&mut conn).await;
    // A tail of rows the client does not count: the GET holding the last
    // counted row then fills up (1,000 units) and returns at once instead
    // of waiting out its timeout with nothing more to come.
    for transaction in 0..2 {
        conn.query_drop(format!(
            "INSERT INTO {schema}.orders_tail SELECT {transaction}*10000+id, user_id, name, email, amount,
               created, status, note FROM {schema}.orders WHERE id <= 10000"
        ))
        .await
        .unwrap();
    }
    let logs: Vec<(String, u64)> = conn
        .query("SHOW BINARY LOGS")
        .await
        .unwrap()
        .into_iter()
        .map(|row: mysql_async::Row| (row.get(0).unwrap(), row.get(1).unwrap()))
        .collect();
    // The range's bytes, across a rotation if one happened.
    let mut bytes = 0;
    let mut inside = false;
    for (name, size) in &logs {
        if *name == journal {
            inside = true;
        }
        if inside {
            let from = if *name == journal { position } else { 4 };
            let to = if *name == end_journal {
                end_position
            } else {
                *size
            };
            bytes += to.saturating_sub(from);
        }
        if *name == end_journal {
            break;
        }
    }
    println!(
        "backlog: {rows} rows in {} transactions written in {:.1} s; {journal}:{position} .. {end_journal}:{end_position} = {:.1} MB of binlog",
        rows.div_ceil(per_transaction),
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1e6
    );
    Backlog {
        journal,
        position,
        rows,
        bytes,
    }
}

struct CatchUp {
    seconds: f64,
    /// Serialized Entry bytes the client received.
    entry_bytes: u64,
    /// From the subscription to the first row.
    first_row: f64,
    cpu_seconds: f64,
    rss_mib: f64,
}

/// What the catch-up client does with each batch besides acking it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    /// Counts the row images in each RowChange from its wire format.
    Count,
    /// Decodes every RowChange with every column (prost), then counts.
    Decode,
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::Count => "counts",
            Client::Decode => "decodes",
        }
    }
}

async fn catch_up(
    bench: &Bench,
    backlog: &Backlog,
    kind: Kind,
    client_kind: Client,
    run: usize,
) -> CatchUp {
    let destination = bench
        .destination(kind, &format!("cu{}{run}", client_kind.label()))
        .await;
    let server = bench.start(
        kind,
        &format!("catchup-{}{}{run}", kind.tag(), client_kind.label()),
        &destination,
        &backlog.journal,
        backlog.position,
    );
    let mut client = subscribe(&server.client_address, &destination).await;
    let started = Instant::now();
    let cpu = server.cpu_seconds();
    let mut rows = 0;
    let mut entry_bytes = 0;
    let mut first_row = None;
    while rows < backlog.rows {
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{}: {rows} of {} rows after 900 s",
            kind.label(),
            backlog.rows
        );
        let received = client
            .get(1000, Some(Duration::from_millis(1000)))
            .await
            .unwrap();
        if received.batch_id == -1 {
            continue;
        }
        entry_bytes += received.bytes as u64;
        first_row.get_or_insert_with(|| started.elapsed().as_secs_f64());
        rows += if client_kind == Client::Count {
            rows_counted(&received.entries, "orders")
        } else {
            rows_of(&received.entries, "orders")
        };
        client.ack(received.batch_id).await.unwrap();
    }
    let result = CatchUp {
        seconds: started.elapsed().as_secs_f64(),
        entry_bytes,
        first_row: first_row.unwrap_or(f64::NAN),
        cpu_seconds: server.cpu_seconds() - cpu,
        rss_mib: server.peak_rss_mib(),
    };
    drop(client);
    server.stop().await;
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// (p50 ms, p99 ms, rows measured) at 1,000 rows/s.
async fn latency(bench: &Bench, kind: Kind, run: usize, seconds: u64) -> (f64, f64, usize) {
    let schema = bench.schema.clone();
    let mut conn = root().await;
    conn.query_drop(format!("TRUNCATE TABLE {schema}.latency"))
        .await
        .unwrap();
    let (journal, position) = master_status(&mut conn).await;
    let destination = bench.destination(kind, &format!("la{run}")).await;
    let server = bench.start(
        kind,
        &format!("latency-{}{run}", kind.tag()),
        &destination,
        &journal,
        position,
    );
    let mut client = subscribe(&server.client_address, &destination).await;
    let warm_up = WARM_UP_SECONDS * 1000;
    let total = warm_up + seconds * 1000;
    let sent: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut conn = root().await;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for id in 1..=total as i64 {
                tick.tick().await;
                // Taken when the statement is sent: the commit is included.
                sent.lock().unwrap().insert(id, Instant::now());
                conn.query_drop(format!(
                    "INSERT INTO {schema}.latency VALUES ({id}, 'row {id}', {id}, NOW(3))"
                ))
                .await
                .unwrap();
            }
        })
    };
    let mut latencies = Vec::with_capacity(total as usize);
    let mut received_rows = 0u64;
    let deadline = Instant::now() + Duration::from_secs(seconds * 3 + 60);
    while received_rows < total && Instant::now() < deadline {
        let received = client.get(1, Some(Duration::from_millis(2))).await.unwrap();
        if received.batch_id == -1 {
            continue;
        }
        let arrived = Instant::now();
        client.ack(received.batch_id).await.unwrap();
        let ids = ids_of(&received.entries, "latency");
        received_rows += ids.len() as u64;
        let sent = sent.lock().unwrap();
        for id in ids {
            if id > warm_up as i64
                && let Some(at) = sent.get(&id)
            {
                latencies.push(arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0);
            }
        }
    }
    writer.await.unwrap();
    drop(client);
    server.stop().await;
    latencies.sort_by(f64::total_cmp);
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    Graceful,
    Crash,
}

struct Failover {
    event: Event,
    seconds: f64,
    duplicates: usize,
}

async fn member_exists(bench: &Bench, destination: &str, port: u16) -> bool {
    let path = format!(
        "{}/{destination}/cluster/127.0.0.1:{port}",
        zk::DESTINATIONS
    );
    matches!(bench.zookeeper.check_stat(&path).await, Ok(Some(_)))
}

/// `runs` graceful stops, then `runs` crashes, of the active one of two
/// servers of `kind`.
async fn failovers(bench: &Bench, kind: Kind, runs: usize) -> Vec<Failover> {
    let schema = bench.schema.clone();
    let mut conn = root().await;
    // Row ids start at 1 for each kind.
    conn.query_drop(format!("TRUNCATE TABLE {schema}.failover"))
        .await
        .unwrap();
    let (journal, position) = master_status(&mut conn).await;
    let destination = bench.destination(kind, "fo").await;
    let mut pair: Vec<Server> = ["a", "b"]
        .iter()
        .map(|n| {
            bench.start(
                kind,
                &format!("failover-{}{n}", kind.tag()),
                &destination,
                &journal,
                position,
            )
        })
        .collect();
    let stop = CancellationToken::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let consumer = tokio::spawn(consume(
        bench.zk_servers.clone(),
        destination.clone(),
        "failover",
        seen.clone(),
        stop.clone(),
    ));
    let writer = spawn_writer(schema.clone(), "failover", stop.clone());
    let mut outcomes = Vec::new();
    for event in [Event::Graceful, Event::Crash] {
        for _ in 0..runs {
            // Both servers up (the standby registered), rows flowing
            // through the leader.
            for server in &pair {
                wait_for("both servers registered", WAIT, async || {
                    member_exists(bench, &destination, server.port).await
                })
                .await;
            }
            let mut old_address = String::new();
            wait_for("the active server", WAIT, async || {
                match active_server(&bench.zookeeper, &destination).await {
                    Ok(Some(address)) => {
                        old_address = address;
                        true
                    }
                    _ => false,
                }
            })
            .await;
            let old = pair
                .iter()
                .position(|s| s.client_address == old_address)
                .expect("the active server is one of the pair");
            rows_from_leader(&seen, &old_address, WAIT).await;
            let duplicates_before = seen.lock().unwrap().duplicates;
            let at = Instant::now();
            match event {
                Event::Graceful => pair[old].sigterm(),
                Event::Crash => pair[old].sigkill(),
            }
            let seconds = first_change_after(&seen, at, &old_address, WAIT)
                .await
                .as_secs_f64();
            // Settle, then count what the switch repeated.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let duplicates = seen.lock().unwrap().duplicates - duplicates_before;
            println!(
                "  {:<12} {:<8} {seconds:>8.3} s {duplicates:>5} duplicate rows",
                kind.label(),
                format!("{event:?}")
            );
            outcomes.push(Failover {
                event,
                seconds,
                duplicates,
            });
            pair[old].wait_exit().await;
            pair[old].restart();
        }
    }
    stop.cancel();
    let _ = writer.await;
    let _ = consumer.await;
    if kind == Kind::Canal
        && let Some(timeout) = pair.iter().find_map(|s| negotiated_timeout(s.log_path()))
    {
        println!("  canal's ZooKeeper session: negotiated timeout = {timeout} ms");
    }
    for server in pair {
        server.stop().await;
    }
    outcomes
}

/// The session timeout ZooKeeper's client logged for the server (canal
/// asks for 90 s; the ensemble caps it at its maxSessionTimeout).
fn negotiated_timeout(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let (_, rest) = text.split_once("negotiated timeout = ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// One line of the result table: ours / canal's against a target ratio.
fn line(figure: &str, canal: f64, ours: f64, decimals: usize, target: Option<(&str, bool)>) {
    if canal.is_nan() && ours.is_nan() {
        return;
    }
    let ratio = ours / canal;
    let (target, verdict) = match target {
        Some((text, pass)) => (text, if pass { "PASS" } else { "MISS" }),
        None => ("", ""),
    };
    println!(
        "{figure:<44} {canal:>12.decimals$} {ours:>12.decimals$} {ratio:>10.3} {target:<24} {verdict}"
    );
}

async fn run() {
    let runs: usize = var("BENCH_VERSUS_RUNS", 3);
    let rows: u64 = var("BENCH_VERSUS_ROWS", 1_000_000);
    let latency_seconds: u64 = var("BENCH_VERSUS_LATENCY_SECONDS", 10);
    let zk_servers = env("CANAL_TEST_ZK");
    let bench = Bench {
        schema: format!("bench_versus_{}", std::process::id()),
        dir: std::env::temp_dir().join(format!("canal-versus-{}", std::process::id())),
        zookeeper: zk::connect(&zk_servers, Duration::from_secs(10)).await,
        zk_servers,
        destinations: Mutex::default(),
        next_slave_id: Mutex::new(60_000 + (std::process::id() % 1000) * 20),
    };
    std::fs::create_dir_all(&bench.dir).unwrap();
    let started = Instant::now();
    let result = std::panic::AssertUnwindSafe(measure(&bench, runs, rows, latency_seconds))
        .catch_unwind()
        .await;
    // The schema and ZooKeeper nodes go even when a measurement failed.
    bench.cleanup(result.is_err()).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    println!("bench wall time {:.0} s", started.elapsed().as_secs_f64());
}

async fn measure(bench: &Bench, runs: usize, rows: u64, latency_seconds: u64) {
    println!(
        "canal 1.1.7 (scripts/canal-java, canal's startup.sh JVM options, {}) vs canal-server (release), \
         in turn, {runs} runs each; {} cores",
        java_version(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let backlog = make_backlog(&bench.schema, rows).await;
    let mb = backlog.bytes as f64 / 1e6;
    // For development: BENCH_VERSUS_ONLY=catchup,latency,failover.
    let only = std::env::var("BENCH_VERSUS_ONLY").unwrap_or_default();
    let phase = |name: &str| only.is_empty() || only.split(',').any(|p| p.trim() == name);
    let mut catch_ups: HashMap<(&str, Client), Vec<CatchUp>> = HashMap::new();
    let mut latencies: HashMap<&str, Vec<(f64, f64)>> = HashMap::new();
    for kind in [Kind::Canal, Kind::Ours] {
        for client in [Client::Count, Client::Decode] {
            catch_ups.insert((kind.label(), client), Vec::new());
        }
        latencies.insert(kind.label(), Vec::new());
    }
    println!(
        "catch-up runs (seconds, rows/s, server CPU s, server peak RSS, MB of Entries received, first batch after s):"
    );
    for run in (0..runs).filter(|_| phase("catchup")) {
        for client in [Client::Count, Client::Decode] {
            for kind in [Kind::Canal, Kind::Ours] {
                let result = catch_up(bench, &backlog, kind, client, run).await;
                println!(
                    "  {:<12} client {:<7} {:>8.3} s {:>10.0} rows/s {:>7.2} CPU s {:>9.1} MiB {:>7.1} MB {:>6.3} s",
                    kind.label(),
                    client.label(),
                    result.seconds,
                    backlog.rows as f64 / result.seconds,
                    result.cpu_seconds,
                    result.rss_mib,
                    result.entry_bytes as f64 / 1e6,
                    result.first_row
                );
                catch_ups
                    .entry((kind.label(), client))
                    .or_default()
                    .push(result);
            }
        }
    }
    println!("latency runs at 1,000 rows/s (p50 ms, p99 ms, rows):");
    for run in (0..runs).filter(|_| phase("latency")) {
        for kind in [Kind::Canal, Kind::Ours] {
            let (p50, p99, n) = latency(bench, kind, run, latency_seconds).await;
            println!("  {:<12} {p50:>8.2} {p99:>8.2} {n:>7}", kind.label());
            latencies.entry(kind.label()).or_default().push((p50, p99));
        }
    }
    println!("failovers (event -> first change from the other server; duplicates):");
    let mut failover: HashMap<&str, Vec<Failover>> = HashMap::new();
    for kind in [Kind::Canal, Kind::Ours] {
        let outcomes = if phase("failover") {
            failovers(bench, kind, runs).await
        } else {
            Vec::new()
        };
        failover.insert(kind.label(), outcomes);
    }

    let of_catch_up = |kind: Kind, client: Client, f: &dyn Fn(&CatchUp) -> f64| {
        median(catch_ups[&(kind.label(), client)].iter().map(f).collect())
    };
    let all_catch_ups = |kind: Kind| {
        [Client::Count, Client::Decode]
            .into_iter()
            .flat_map(|client| catch_ups[&(kind.label(), client)].iter())
            .collect::<Vec<_>>()
    };
    let of_latency = |kind: Kind, f: &dyn Fn(&(f64, f64)) -> f64| {
        median(latencies[kind.label()].iter().map(f).collect())
    };
    let failover_median = |kind: Kind, event: Event| {
        median(
            failover[kind.label()]
                .iter()
                .filter(|f| f.event == event)
                .map(|f| f.seconds)
                .collect(),
        )
    };
    let duplicates = |kind: Kind, event: Event| {
        let of_event: Vec<f64> = failover[kind.label()]
            .iter()
            .filter(|f| f.event == event)
            .map(|f| f.duplicates as f64)
            .collect();
        if of_event.is_empty() {
            f64::NAN
        } else {
            of_event.iter().sum()
        }
    };
    let n = backlog.rows as f64;
    let (c, o) = (Kind::Canal, Kind::Ours);
    println!();
    println!(
        "Head to head, medians of {runs} runs; catch-up of {} rows = {mb:.1} MB of binlog (MB = 10^6 bytes of the range)",
        backlog.rows
    );
    println!(
        "{:<44} {:>12} {:>12} {:>10} {:<24} verdict",
        "figure", "canal 1.1.7", "canal-server", "ours/canal", "target"
    );
    for (client, text) in [
        (Client::Count, "client counts rows"),
        (Client::Decode, "client decodes rows"),
    ] {
        let rate = |k: Kind| n / of_catch_up(k, client, &|r| r.seconds);
        line(
            &format!("catch-up rows/s, {text}"),
            rate(c),
            rate(o),
            0,
            Some((">= 3 (3x canal)", rate(o) >= 3.0 * rate(c))),
        );
        line(
            &format!("catch-up MB/s, {text}"),
            mb * rate(c) / n,
            mb * rate(o) / n,
            1,
            None,
        );
    }
    // The highest of every catch-up run (both clients).
    let rss = |k: Kind| {
        all_catch_ups(k)
            .iter()
            .map(|r| r.rss_mib)
            .fold(f64::NAN, f64::max)
    };
    line(
        "server peak RSS in catch-up (max), MiB",
        rss(c),
        rss(o),
        1,
        Some(("<= 0.1", rss(o) <= rss(c) / 10.0)),
    );
    let cpu = |k: Kind| {
        median(
            all_catch_ups(k)
                .iter()
                .map(|r| r.cpu_seconds / n * 1e6)
                .collect(),
        )
    };
    line(
        "server CPU s per million rows (catch-up)",
        cpu(c),
        cpu(o),
        2,
        None,
    );
    let p50 = |k: Kind| of_latency(k, &|l| l.0);
    let p99 = |k: Kind| of_latency(k, &|l| l.1);
    line("latency p50 at 1,000 rows/s, ms", p50(c), p50(o), 2, None);
    line(
        "latency p99 at 1,000 rows/s, ms",
        p99(c),
        p99(o),
        2,
        Some(("<= 0.5", p99(o) <= p99(c) / 2.0)),
    );
    let graceful = |k: Kind| failover_median(k, Event::Graceful);
    let crash = |k: Kind| failover_median(k, Event::Crash);
    line(
        "failover after SIGTERM, s",
        graceful(c),
        graceful(o),
        3,
        None,
    );
    line(
        "failover after SIGKILL, s",
        crash(c),
        crash(o),
        3,
        Some(("<= 0.2 (5x faster)", crash(o) * 5.0 <= crash(c))),
    );
    for (label, event) in [
        ("duplicate rows, SIGTERM (sum of runs)", Event::Graceful),
        ("duplicate rows, SIGKILL (sum of runs)", Event::Crash),
    ] {
        let (dc, doo) = (duplicates(c, event), duplicates(o, event));
        line(label, dc, doo, 0, Some(("<= canal's", doo <= dc)));
    }
}

fn java_version() -> String {
    let out = std::process::Command::new("java").arg("-version").output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "java ?".into())
}

fn main() {
    if !common::benchmarking() {
        return;
    }
    // Build canal's server before anything is timed.
    let status = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/canal-java"),
    )
    .arg("--build-only")
    .stdout(std::process::Stdio::null())
    .status()
    .expect("scripts/canal-java");
    assert!(status.success(), "scripts/canal-java --build-only failed");
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}
