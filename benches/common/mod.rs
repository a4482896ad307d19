//! The 1M-row MariaDB binlog both benchmarks read: generated once per
//! environment, cached under ~/.cache/canal-operator/bench.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mysql_async::{OptsBuilder, prelude::Queryable};

pub mod follow;

pub const ROWS: u64 = 1_000_000;
/// Bumped whenever the generated workload changes.
const DATASET_VERSION: u32 = 1;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/bench"))
}

/// Whether `cargo bench` runs this (it passes `--bench`); `cargo test
/// --all-targets` runs bench binaries too, where measuring makes no sense.
pub fn benchmarking() -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        println!("benchmark skipped: run it with cargo bench (scripts/bench)");
    }
    yes
}

pub fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub struct Dataset {
    pub name: &'static str,
    pub files: Vec<PathBuf>,
    /// The binlog file on the source server holding the rows, for catch-up.
    pub server_file: Option<String>,
}

pub async fn root() -> mysql_async::Conn {
    let address = env("CANAL_TEST_MYSQL_ADDR");
    let (host, port) = address.rsplit_once(':').unwrap();
    let opts = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port.parse().unwrap())
        .user(Some("root"))
        .pass(Some(env("CANAL_TEST_MYSQL_ROOT_PASSWORD")))
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.expect("root connection")
}

/// Makes (or reuses) a binlog file holding exactly the 1M-row workload:
/// 100 transactions of 10,000 rows into an 8-column table (BIGINT, INT,
/// VARCHAR x2, DECIMAL, DATETIME(3), ENUM, TEXT).
pub async fn mariadb_dataset(cache: &Path) -> Dataset {
    let mut conn = root().await;
    let state = cache.join(format!("mariadb-1m-v{DATASET_VERSION}.txt"));
    let local = cache.join(format!("mariadb-1m-v{DATASET_VERSION}.binlog"));
    let files: Vec<String> = conn
        .query("SHOW BINARY LOGS")
        .await
        .unwrap()
        .into_iter()
        .map(|row: mysql_async::Row| row.get::<String, _>(0).unwrap())
        .collect();
    if let Ok(name) = std::fs::read_to_string(&state)
        && files.contains(&name)
        && local.exists()
    {
        return Dataset {
            name: "MariaDB 10.11, 1M-row INSERTs",
            files: vec![local],
            server_file: Some(name),
        };
    }
    eprintln!("generating the 1M-row MariaDB binlog (once per environment)...");
    conn.query_drop(
        "DROP DATABASE IF EXISTS canal_bench; CREATE DATABASE canal_bench;
         CREATE TABLE canal_bench.orders (id BIGINT PRIMARY KEY, user_id INT NOT NULL, name VARCHAR(64),
           email VARCHAR(128), amount DECIMAL(12,2), created DATETIME(3),
           status ENUM('new','paid','shipped','cancelled'), note TEXT) ENGINE=InnoDB;
         FLUSH BINARY LOGS",
    )
    .await
    .unwrap();
    let (file,): (String,) = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|row: mysql_async::Row| (row.get(0).unwrap(),))
        .unwrap();
    conn.query_drop("USE canal_bench").await.unwrap();
    for batch in 0..ROWS / 10_000 {
        conn.query_drop(format!(
            "INSERT INTO orders SELECT {batch}*10000+seq, seq % 5000, CONCAT('user-', seq),
               CONCAT('user', seq, '@example.com'), seq / 100, '2024-01-01 00:00:00.000' + INTERVAL seq SECOND,
               1 + seq % 4, REPEAT('n', 40 + seq % 60) FROM seq_1_to_10000"
        ))
        .await
        .unwrap();
    }
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let datadir = PathBuf::from(env("CANAL_ENV_DIR")).join("mariadb/data");
    std::fs::copy(datadir.join(&file), &local).expect("copy the binlog file");
    std::fs::write(&state, &file).unwrap();
    Dataset {
        name: "MariaDB 10.11, 1M-row INSERTs",
        files: vec![local],
        server_file: Some(file),
    }
}

pub fn cache_dir() -> PathBuf {
    std::env::var("CANAL_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
                .join(".cache/canal-operator/bench")
        })
}
