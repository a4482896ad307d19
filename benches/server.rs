//! canal-server as clients see it: catch-up throughput from a 1M-row
//! backlog to a client acking every batch, commit-to-client latency at a
//! steady 1,000 and 10,000 rows/s, and the server's peak RSS with default
//! buffer settings. The server runs as its own process (the release
//! binary, configured through canal.properties like a deployment).
//!
//! Run with `scripts/bench`. `BENCH_RUNS` sets catch-up runs (default 5),
//! `BENCH_LATENCY_SECONDS` the length of each latency run (default 10).

mod common;

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use canal::{
    client::{CanalClient, Login},
    protocol::entry::{EntryType, RowChange},
};
use common::{ROWS, cache_dir, env, mariadb_dataset, median, root, runs};
use mysql_async::prelude::Queryable;
use prost::Message;

struct Server {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl Server {
    /// Starts canal-server with canal's default buffer settings, reading
    /// `canal_bench.*` from `start`.
    fn start(name: &str, start: &str, position: u64) -> Server {
        let dir = std::env::temp_dir().join(format!("canal-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bench")).unwrap();
        let port = free_port();
        let metrics = free_port();
        std::fs::write(
            dir.join("canal.properties"),
            format!(
                "canal.ip = 127.0.0.1\ncanal.port = {port}\ncanal.metrics.pull.port = {metrics}\n\
                 canal.destinations = bench\ncanal.file.data.dir = {}\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("bench/instance.properties"),
            format!(
                "canal.instance.mysql.slaveId = 95000\ncanal.instance.master.address = {}\n\
                 canal.instance.dbUsername = {}\ncanal.instance.dbPassword = {}\n\
                 canal.instance.master.journal.name = {start}\ncanal.instance.master.position = {position}\n\
                 canal.instance.filter.regex = canal_bench\\\\..*\n",
                env("CANAL_TEST_MYSQL_ADDR"),
                env("CANAL_TEST_MYSQL_USER"),
                env("CANAL_TEST_MYSQL_PASSWORD"),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_canal-server"))
            .arg("--conf")
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("canal-server starts");
        Server {
            child,
            address: format!("127.0.0.1:{port}"),
            dir,
        }
    }

    async fn client(&self) -> CanalClient {
        for _ in 0..200 {
            if let Ok(mut client) =
                CanalClient::connect(&self.address, &Login::default(), Duration::from_secs(1)).await
            {
                client.subscribe("bench", "1001", "").await.unwrap();
                return client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("canal-server did not start listening on {}", self.address);
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn row_count(entries: &[canal::protocol::entry::Entry]) -> u64 {
    entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter_map(|e| RowChange::decode(e.store_value.as_slice()).ok())
        .filter(|rc| rc.is_ddl != Some(true))
        .map(|rc| rc.row_datas.len() as u64)
        .sum()
}

/// A client acking every batch of 1000 (canal's default batch size, MEMSIZE
/// units of 1 KiB) until every row of the backlog arrived; seconds and the
/// server's peak RSS.
async fn catch_up(file: &str) -> (f64, f64) {
    let server = Server::start("catchup", file, 4);
    let mut client = server.client().await;
    let started = Instant::now();
    let mut rows = 0;
    while rows < ROWS {
        let received = client
            .get(1000, Some(Duration::from_millis(1000)))
            .await
            .unwrap();
        if received.batch_id == -1 {
            continue;
        }
        rows += row_count(&received.entries);
        client.ack(received.batch_id).await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let rss = server.peak_rss_mib();
    server.stop();
    (seconds, rss)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Writes `rate` rows/s for `seconds` (one transaction per millisecond) and
/// measures, per row, the time from sending its INSERT (so the commit is
/// included) to the client receiving it. Returns (p50 ms, p99 ms, rows,
/// server peak RSS MiB).
async fn latency(rate: u64, seconds: u64) -> (f64, f64, usize, f64) {
    let mut conn = root().await;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS canal_bench.latency (id BIGINT PRIMARY KEY, v VARCHAR(64), n INT, created DATETIME(3))",
    )
    .await
    .unwrap();
    conn.query_drop("TRUNCATE TABLE canal_bench.latency")
        .await
        .unwrap();
    let (file, position): (String, u64) = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|row: mysql_async::Row| (row.get(0).unwrap(), row.get(1).unwrap()))
        .unwrap();
    let server = Server::start(&format!("latency{rate}"), &file, position);
    let mut client = server.client().await;
    let committed: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let per_tick = (rate / 1000).max(1);
    let total = rate * seconds;
    let writer = {
        let committed = committed.clone();
        tokio::spawn(async move {
            let mut conn = root().await;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut next = 1u64;
            while next <= total {
                tick.tick().await;
                let values: Vec<String> = (next..next + per_tick)
                    .map(|id| format!("({id}, 'row {id}', {id}, NOW(3))"))
                    .collect();
                // Time taken when the statement is sent: the latency below
                // includes the commit itself, so it errs on the high side.
                let sent = Instant::now();
                {
                    let mut map = committed.lock().unwrap();
                    for id in next..next + per_tick {
                        map.insert(id, sent);
                    }
                }
                conn.query_drop(format!(
                    "INSERT INTO canal_bench.latency VALUES {}",
                    values.join(",")
                ))
                .await
                .unwrap();
                next += per_tick;
            }
        })
    };
    let mut latencies = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(seconds * 3 + 30);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        // A small MEMSIZE batch and a short wait: what a latency-minded
        // client asks for (canal has no "return as soon as anything arrives").
        let received = client.get(1, Some(Duration::from_millis(2))).await.unwrap();
        if received.batch_id == -1 {
            continue;
        }
        let arrived = Instant::now();
        client.ack(received.batch_id).await.unwrap();
        let map = committed.lock().unwrap();
        for entry in &received.entries {
            let Ok(change) = RowChange::decode(entry.store_value.as_slice()) else {
                continue;
            };
            for row in change.row_datas {
                let Some(id) = row
                    .after_columns
                    .first()
                    .and_then(|c| c.value.parse::<u64>().ok())
                else {
                    continue;
                };
                if let Some(commit) = map.get(&id) {
                    latencies
                        .push(arrived.saturating_duration_since(*commit).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    writer.await.unwrap();
    latencies.sort_by(f64::total_cmp);
    let rss = server.peak_rss_mib();
    server.stop();
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len(),
        rss,
    )
}

fn main() {
    if !common::benchmarking() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    let dataset = runtime.block_on(mariadb_dataset(&cache));
    let file = dataset.server_file.clone().expect("server file");
    let bytes = std::fs::metadata(&dataset.files[0]).unwrap().len() as f64;
    let n = runs();

    let results: Vec<(f64, f64)> = (0..n).map(|_| runtime.block_on(catch_up(&file))).collect();
    let seconds = median(results.iter().map(|r| r.0).collect());
    let rss = results.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "catch-up from a {ROWS}-row backlog ({:.1} MB of binlog) to one client acking every batch; median of {n} runs",
        bytes / 1e6
    );
    println!(
        "{:>9} {:>12} {:>9} {:>18}",
        "seconds", "rows/s", "MB/s", "server peak RSS"
    );
    println!(
        "{seconds:>9.3} {:>12.0} {:>9.1} {:>15.1} MiB",
        ROWS as f64 / seconds,
        bytes / 1e6 / seconds,
        rss
    );
    println!(
        "target: >= 200,000 rows/s -> {:.1}x the target",
        ROWS as f64 / seconds / 200_000.0
    );

    let length: u64 = std::env::var("BENCH_LATENCY_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    println!();
    println!(
        "INSERT sent -> client received latency (commit included), {length} s per rate (client: GET fetch 1 unit, 2 ms wait, ack every batch)"
    );
    println!(
        "{:>10} {:>8} {:>9} {:>9} {:>18}",
        "rows/s", "rows", "p50 ms", "p99 ms", "server peak RSS"
    );
    for rate in [1_000, 10_000] {
        let (p50, p99, rows, rss) = runtime.block_on(latency(rate, length));
        println!("{rate:>10} {rows:>8} {p50:>9.2} {p99:>9.2} {rss:>14.1} MiB");
    }
    println!("targets: p99 < 20 ms at 1,000 rows/s; peak RSS < 100 MiB with default buffers");
}
