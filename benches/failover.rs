//! Failover time of the HA pair: from the event to the first change the
//! new leader delivers, for a graceful stop (SIGTERM), a crash (SIGKILL)
//! and the leader cut off from ZooKeeper (a blackholing proxy), with the
//! default timing (6 s session, fence fraction 0.5, race delay 200 ms).
//! Also the duplicates each failover caused, against the un-acked rows at
//! the moment of failure.
//!
//! Two real canal-server processes, the real three-node ensemble and
//! MariaDB (`scripts/env`); a writer commits one row every 5 ms; a client
//! follows `running` like canal's cluster connector and acks every batch.
//! Run with `scripts/bench`; `BENCH_FAILOVER_RUNS` sets runs per kind
//! (default 10).

#[path = "../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;
mod common;
#[path = "../tests/common/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cluster::{ServerProcess, SpawnOptions, test_dir, wait_for, write_conf};
use common::{
    env,
    follow::{Seen, consume, first_change_after, rows_from_leader, spawn_writer},
    median, root,
};
use mysql_async::prelude::Queryable;
use proxy::ProxySet;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Graceful,
    Crash,
    Partition,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Graceful => "graceful stop (SIGTERM)",
            Kind::Crash => "crash (SIGKILL)",
            Kind::Partition => "leader cut off from ZooKeeper",
        }
    }
}

struct Outcome {
    failover: Duration,
    duplicates: usize,
    unacked: usize,
}

async fn active_of(servers: &[ServerProcess], destination: &str) -> usize {
    let started = Instant::now();
    loop {
        for (i, server) in servers.iter().enumerate() {
            if server.role(destination).await.as_deref() == Some("active") {
                return i;
            }
        }
        assert!(started.elapsed() < WAIT, "no active server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn run_kind(kind: Kind, runs: usize) -> Vec<Outcome> {
    let zk_servers = env("CANAL_TEST_ZK");
    let destination = format!("failover{}", std::process::id() % 100_000);
    let schema = "canal_bench_failover";
    let mut conn = root().await;
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {schema}; CREATE DATABASE {schema};
         CREATE TABLE {schema}.t (id BIGINT PRIMARY KEY)"
    ))
    .await
    .unwrap();
    let (journal, position): (String, u64) = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|row: mysql_async::Row| (row.get(0).unwrap(), row.get(1).unwrap()))
        .unwrap();
    let dir = test_dir(&format!("failover-{kind:?}"));
    let proxies = [ProxySet::start(&zk_servers), ProxySet::start(&zk_servers)];
    let mut pair = Vec::new();
    for (i, name) in ["one", "two"].iter().enumerate() {
        let conf_dir = dir.join(format!("conf-{name}"));
        write_conf(
            &conf_dir,
            &format!(
                "canal.ip = 127.0.0.1\ncanal.destinations = {destination}\n\
                 canal.zkServers = {}\ncanal.zookeeper.flush.period = 0\n\
                 canal.instance.global.spring.xml = classpath:spring/default-instance.xml\n",
                proxies[i].connect_string()
            ),
            &[(
                &destination,
                &format!(
                    "canal.instance.mysql.slaveId = 0\ncanal.instance.master.address = {}\n\
                     canal.instance.dbUsername = {}\ncanal.instance.dbPassword = {}\n\
                     canal.instance.master.journal.name = {journal}\n\
                     canal.instance.master.position = {position}\n\
                     canal.instance.filter.regex = {schema}\\\\..*\n",
                    env("CANAL_TEST_MYSQL_ADDR"),
                    env("CANAL_TEST_MYSQL_USER"),
                    env("CANAL_TEST_MYSQL_PASSWORD"),
                ),
            )],
        );
        pair.push(ServerProcess::spawn(
            SpawnOptions::new(name, &conf_dir).env("RUST_LOG", "warn"),
        ));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let consumer = tokio::spawn(consume(
        zk_servers.clone(),
        destination.clone(),
        "t",
        seen.clone(),
        stop.clone(),
    ));
    let writer = spawn_writer(schema.to_owned(), "t", stop.clone());
    let mut outcomes = Vec::new();
    for _ in 0..runs {
        let old = active_of(&pair, &destination).await;
        let old_address = pair[old].client_address.clone();
        // Rows flowing through the current leader first.
        rows_from_leader(&seen, &old_address, WAIT).await;
        let (duplicates_before, unacked) = {
            let seen = seen.lock().unwrap();
            (seen.duplicates, seen.last_batch_rows)
        };
        let event = Instant::now();
        match kind {
            Kind::Graceful => pair[old].sigterm(),
            Kind::Crash => pair[old].sigkill(),
            Kind::Partition => proxies[old].cut(),
        }
        let failover = first_change_after(&seen, event, &old_address, WAIT).await;
        // Settle, then count what the switch repeated.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let duplicates = seen.lock().unwrap().duplicates - duplicates_before;
        outcomes.push(Outcome {
            failover,
            duplicates,
            unacked,
        });
        match kind {
            Kind::Graceful | Kind::Crash => {
                let _ = pair[old].wait_exit(WAIT).await;
                pair[old].restart();
            }
            Kind::Partition => {
                proxies[old].heal();
                wait_for("the old leader back as standby", WAIT, async || {
                    pair[old].role(&destination).await.as_deref() == Some("standby")
                })
                .await;
            }
        }
    }
    stop.cancel();
    let _ = writer.await;
    let _ = consumer.await;
    for server in &mut pair {
        server.sigterm();
        let _ = server.wait_exit(WAIT).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    outcomes
}

fn main() {
    if !common::benchmarking() {
        return;
    }
    let runs = std::env::var("BENCH_FAILOVER_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "failover: event -> first change delivered by the new leader; {runs} runs each, \
         6 s session (defaults), one row committed every 5 ms"
    );
    println!(
        "{:<32} {:>9} {:>9} {:>11} {:>14}",
        "kind", "median s", "max s", "dup rows", "worst dup/last"
    );
    for (kind, target) in [
        (Kind::Graceful, Some(1.0)),
        (Kind::Crash, Some(7.0)),
        (Kind::Partition, None),
    ] {
        let outcomes = runtime.block_on(run_kind(kind, runs));
        let seconds: Vec<f64> = outcomes.iter().map(|o| o.failover.as_secs_f64()).collect();
        let max = seconds.iter().cloned().fold(0.0, f64::max);
        let duplicates: usize = outcomes.iter().map(|o| o.duplicates).sum();
        let worst = outcomes
            .iter()
            .map(|o| format!("{}/{}", o.duplicates, o.unacked))
            .max_by_key(|s| s.split('/').next().and_then(|d| d.parse::<usize>().ok()))
            .unwrap_or_default();
        println!(
            "{:<32} {:>9.3} {:>9.3} {:>11} {:>14}",
            kind.label(),
            median(seconds.clone()),
            max,
            duplicates,
            worst
        );
        if let Some(target) = target {
            println!(
                "  target < {target} s: max is {:.2}x the target",
                max / target
            );
        }
    }
}
