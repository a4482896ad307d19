//! Decode and catch-up throughput, with `mariadb-binlog` measured in the
//! same run as the baseline. Prints a table of medians and ratios; asserts
//! nothing (see docs/benchmarks.md for how to read it).
//!
//! Run with `scripts/bench` (starts the local MariaDB, builds in release).
//! `BENCH_RUNS` sets the runs per measurement (default 5).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use canal::binlog::{
    decode::{Decoder, DecoderOptions},
    filter::{EventFilter, TableFilter},
    position::StartPosition,
    replica::ReplicaConfig,
    source::{BinlogSource, SourceConfig},
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod common;

use common::{Dataset, ROWS, cache_dir, env, mariadb_dataset, median, runs};

fn fixture_dataset() -> Dataset {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/binlog/mysql8");
    Dataset {
        name: "MySQL 8.0.31 bulk-update fixtures",
        files: vec![
            root.join("bulk-update-8.0.31.000693"),
            root.join("bulk-update-8.0.31.000694"),
        ],
        server_file: None,
    }
}

struct DecodeRun {
    seconds: f64,
    row_images: u64,
    file_bytes: u64,
    peak_rss_kib: u64,
}

fn decode_once(files: &[PathBuf]) -> DecodeRun {
    let output = Command::new(env!("CARGO_BIN_EXE_canal-server"))
        .arg("decode")
        .arg("--stats")
        .args(files)
        .output()
        .expect("run canal-server decode --stats");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats: Value = serde_json::from_slice(&output.stdout).expect("stats JSON");
    DecodeRun {
        seconds: stats["seconds"].as_f64().unwrap(),
        row_images: stats["row_images"].as_u64().unwrap(),
        file_bytes: stats["file_bytes"].as_u64().unwrap(),
        peak_rss_kib: stats["peak_rss_kib"].as_u64().unwrap_or(0),
    }
}

/// `mariadb-binlog --verbose --base64-output=decode-rows FILE... > /dev/null`.
fn mariadb_binlog_once(files: &[PathBuf]) -> Option<f64> {
    let started = Instant::now();
    let status = Command::new("mariadb-binlog")
        .args(["--verbose", "--base64-output=decode-rows"])
        .args(files)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| started.elapsed().as_secs_f64())
}

/// The same read over the network, as a replica would: mariadb-binlog's
/// remote mode, for the catch-up comparison.
fn mariadb_binlog_remote_once(file: &str) -> Option<f64> {
    let address = env("CANAL_TEST_MYSQL_ADDR");
    let (host, port) = address.rsplit_once(':').unwrap();
    let started = Instant::now();
    let status = Command::new("mariadb-binlog")
        .args(["--read-from-remote-server", "--host", host, "--port", port])
        .arg(format!("--user={}", env("CANAL_TEST_MYSQL_USER")))
        .arg(format!("--password={}", env("CANAL_TEST_MYSQL_PASSWORD")))
        .args(["--verbose", "--base64-output=decode-rows", file])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| started.elapsed().as_secs_f64())
}

/// Replicates the dataset's binlog file from the live source until every
/// row arrived; seconds.
async fn catch_up_once(file: &str, run: usize) -> f64 {
    let filter = EventFilter {
        tables: TableFilter::new(r"canal_bench\..*", "").unwrap(),
        columns: Default::default(),
    };
    let decoder = Decoder::new(DecoderOptions::default(), Arc::new(filter));
    let config = SourceConfig {
        replica: ReplicaConfig {
            address: env("CANAL_TEST_MYSQL_ADDR"),
            user: env("CANAL_TEST_MYSQL_USER"),
            password: env("CANAL_TEST_MYSQL_PASSWORD"),
            server_id: 90_000 + run as u32,
            heartbeat: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        },
        start: StartPosition::FilePosition {
            journal_name: file.to_owned(),
            position: 4,
        },
        resume_by_gtid: false,
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
    };
    let mut source = BinlogSource::new(config, decoder);
    let (sender, mut receiver) = mpsc::channel(4096);
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move { source.run(sender, token).await });
    let mut images = 0u64;
    while images < ROWS {
        let change = receiver.recv().await.expect("source running");
        images += u64::from(change.row_images);
    }
    let seconds = started.elapsed().as_secs_f64();
    cancel.cancel();
    drop(receiver);
    task.await.unwrap().unwrap();
    seconds
}

fn main() {
    if !common::benchmarking() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    let mariadb = runtime.block_on(mariadb_dataset(&cache));
    let datasets = [fixture_dataset(), mariadb];
    let n = runs();
    println!(
        "decode throughput, one core, full canal Entry build and serialization; median of {n} runs"
    );
    println!(
        "{:<36} {:>10} {:>9} {:>14} {:>9} {:>12} {:>16} {:>8}",
        "dataset",
        "row images",
        "MB",
        "row images/s",
        "MB/s",
        "peak RSS MB",
        "mariadb-binlog s",
        "ratio"
    );
    for dataset in &datasets {
        let ours: Vec<DecodeRun> = (0..n).map(|_| decode_once(&dataset.files)).collect();
        let seconds = median(ours.iter().map(|r| r.seconds).collect());
        let first = &ours[0];
        let rss = ours.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        let baseline: Vec<f64> = (0..n)
            .filter_map(|_| mariadb_binlog_once(&dataset.files))
            .collect();
        let (baseline_text, ratio_text) = if baseline.len() == n {
            let b = median(baseline);
            (format!("{b:.3}"), format!("{:.2}x", b / seconds))
        } else {
            ("n/a".to_owned(), "n/a".to_owned())
        };
        println!(
            "{:<36} {:>10} {:>9.1} {:>14.0} {:>9.1} {:>12.1} {:>16} {:>8}",
            dataset.name,
            first.row_images,
            first.file_bytes as f64 / 1e6,
            first.row_images as f64 / seconds,
            first.file_bytes as f64 / 1e6 / seconds,
            rss,
            baseline_text,
            ratio_text,
        );
    }
    let dataset = &datasets[1];
    let file = dataset.server_file.clone().expect("server file");
    let bytes = std::fs::metadata(&dataset.files[0]).unwrap().len() as f64;
    let ours = median(
        (0..n)
            .map(|run| runtime.block_on(catch_up_once(&file, run)))
            .collect(),
    );
    let remote: Vec<f64> = (0..n)
        .filter_map(|_| mariadb_binlog_remote_once(&file))
        .collect();
    println!();
    println!(
        "live catch-up over loopback from MariaDB: {ROWS} rows, {:.1} MB of binlog; median of {n} runs",
        bytes / 1e6
    );
    println!(
        "{:<44} {:>9} {:>12} {:>9}",
        "reader", "seconds", "rows/s", "MB/s"
    );
    println!(
        "{:<44} {:>9.3} {:>12.0} {:>9.1}",
        "canal-server source (decode + Entry build)",
        ours,
        ROWS as f64 / ours,
        bytes / 1e6 / ours
    );
    if remote.len() == n {
        let r = median(remote);
        println!(
            "{:<44} {:>9.3} {:>12.0} {:>9.1}",
            "mariadb-binlog --read-from-remote-server -v",
            r,
            ROWS as f64 / r,
            bytes / 1e6 / r
        );
        println!("ratio (mariadb-binlog time / ours): {:.2}x", r / ours);
    }
}
