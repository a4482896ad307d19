//! The failover benchmarks' workload: a writer committing one row every
//! 5 ms, and a consumer that follows `{dest}/running` as canal's cluster
//! connector does, acks every batch and records what arrives.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use canal::{
    client::{CanalClient, ClientError, Login, cluster::active_server},
    protocol::entry::{Entry, EntryType, RowChange},
};
use mysql_async::prelude::Queryable;
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::root;

/// What the consumer saw: every row id with the server and time of its
/// first delivery, and how many deliveries repeated a row.
#[derive(Default)]
pub struct Seen {
    pub delivered: HashSet<i64>,
    /// (receive time, server) of each batch holding rows.
    pub batches: Vec<(Instant, String)>,
    pub duplicates: usize,
    /// Rows of the last batch with rows (its ack may not have been
    /// processed when the server went away).
    pub last_batch_rows: usize,
}

/// Waits until more than 20 batches beyond those seen so far arrived, the
/// last from `leader`: rows flow through the current leader.
pub async fn rows_from_leader(seen: &Mutex<Seen>, leader: &str, timeout: Duration) {
    let batches = seen.lock().unwrap().batches.len();
    poll_until("rows from the leader", timeout, || {
        let seen = seen.lock().unwrap();
        seen.batches.len() > batches + 20 && seen.batches.last().is_some_and(|(_, s)| *s == leader)
    })
    .await;
}

/// The failover time of an event at `event`: how long after it the first
/// batch from a server other than `old` arrived (waits for it).
pub async fn first_change_after(
    seen: &Mutex<Seen>,
    event: Instant,
    old: &str,
    timeout: Duration,
) -> Duration {
    let first = || {
        seen.lock()
            .unwrap()
            .batches
            .iter()
            .find(|(at, server)| *at > event && *server != old)
            .map(|(at, _)| *at)
    };
    poll_until("the new leader's first change", timeout, || {
        first().is_some()
    })
    .await;
    first().expect("the new leader's first change") - event
}

/// Polls `condition` every 25 ms; panics with `what` after `timeout`.
async fn poll_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The first column (the key) of every row image of `table`.
pub fn ids_of(entries: &[Entry], table: &str) -> Vec<i64> {
    entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter(|e| e.header.as_ref().is_some_and(|h| h.table_name == table))
        .filter_map(|e| RowChange::decode(e.store_value.as_slice()).ok())
        .flat_map(|rc| rc.row_datas)
        .filter_map(|row| row.after_columns.first()?.value.parse().ok())
        .collect()
}

/// Inserts ids 1, 2, … into `schema.table (id)` every 5 ms until `stop`.
pub fn spawn_writer(
    schema: String,
    table: &'static str,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conn = root().await;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let mut id = 0i64;
        while !stop.is_cancelled() {
            tick.tick().await;
            id += 1;
            let _ = conn
                .query_drop(format!("INSERT INTO {schema}.{table} VALUES ({id})"))
                .await;
        }
    })
}

/// Follows `{destination}/running` as client 1001, acks every batch and
/// records the ids of `table` in `seen`, until `stop`.
pub async fn consume(
    zk_servers: String,
    destination: String,
    table: &'static str,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
) {
    let zookeeper = zookeeper_client::Client::connect(&zk_servers)
        .await
        .expect("ZooKeeper");
    while !stop.is_cancelled() {
        let Ok(Some(address)) = active_server(&zookeeper, &destination).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let session = async {
            let mut client =
                CanalClient::connect(&address, &Login::default(), Duration::from_secs(2)).await?;
            client.subscribe(&destination, "1001", "").await?;
            loop {
                let received = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.get(1000, Some(Duration::from_millis(50))),
                )
                .await
                .map_err(|_| ClientError::Io(std::io::ErrorKind::TimedOut.into()))??;
                if received.batch_id == -1 {
                    if stop.is_cancelled() {
                        return Ok::<_, ClientError>(());
                    }
                    continue;
                }
                let ids = ids_of(&received.entries, table);
                {
                    let mut seen = seen.lock().unwrap();
                    if !ids.is_empty() {
                        seen.batches.push((Instant::now(), address.clone()));
                        seen.last_batch_rows = ids.len();
                    }
                    for id in &ids {
                        if !seen.delivered.insert(*id) {
                            seen.duplicates += 1;
                        }
                    }
                }
                client.ack(received.batch_id).await?;
            }
        };
        let _ = session.await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
