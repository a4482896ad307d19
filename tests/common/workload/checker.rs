//! A consumer that behaves like canal's cluster client: find the active
//! server in ZooKeeper, subscribe, GET and ACK; on any error back off, look
//! the active server up again and reconnect. It records every batch with the
//! time and the server it came from.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use canal::{
    client::{CanalClient, Login, cluster::active_server},
    protocol::entry::{Entry, EntryType, RowChange},
};
use jiff::Timestamp;
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, SessionState};

use super::writer::WriterReport;

#[derive(Debug, Clone)]
pub struct CheckerOptions {
    /// GET fetch size (entries or memunits, as the server is configured).
    pub fetch_size: i32,
    /// How long the server may wait for entries before answering a GET.
    pub get_timeout: Duration,
    /// How long an answer may take beyond that (connect, subscribe, GET)
    /// before the server counts as gone: a SIGSTOPped server answers
    /// nothing, and this bounds how long the checker waits on it.
    pub io_timeout: Duration,
    /// Pause after an error before looking up the active server again.
    pub backoff: Duration,
    /// Session timeout of the checker's own ZooKeeper client.
    pub zk_session_timeout: Duration,
}

impl Default for CheckerOptions {
    fn default() -> Self {
        CheckerOptions {
            fetch_size: 1000,
            get_timeout: Duration::from_millis(100),
            io_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(75),
            zk_session_timeout: Duration::from_secs(10),
        }
    }
}

/// An entry as far as the checker cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Begin,
    End,
    /// A row image of `table` with its `id` and `txn` columns.
    Row {
        table: String,
        id: i64,
        txn: i64,
    },
    /// DDL, heartbeats, rows without `id`/`txn`.
    Other,
}

#[derive(Debug, Clone)]
pub struct BatchRecord {
    /// Index into [`CheckerReport::connections`].
    pub connection: usize,
    pub server: String,
    pub batch_id: i64,
    pub received_at: Timestamp,
    pub items: Vec<Item>,
    /// Its ACK was sent (whether the server got it is another matter).
    pub acked: bool,
}

impl BatchRecord {
    pub fn rows(&self) -> impl Iterator<Item = (&str, i64, i64)> {
        self.items.iter().filter_map(|item| match item {
            Item::Row { table, id, txn } => Some((table.as_str(), *id, *txn)),
            _ => None,
        })
    }
}

/// One subscribed session with one server.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    pub server: String,
    pub connected_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Why it ended: the error, or "stopped".
    pub end_reason: Option<String>,
    pub batches: usize,
}

#[derive(Debug, Clone, Default)]
pub struct CheckerReport {
    /// In arrival order.
    pub batches: Vec<BatchRecord>,
    pub connections: Vec<ConnectionRecord>,
    /// Lookups or connects that did not lead to a subscribed session.
    pub failed_attempts: usize,
    /// The first errors, with their time.
    pub errors: Vec<(Timestamp, String)>,
    pub errors_total: usize,
    /// (table, id) delivered at least once.
    pub delivered: HashSet<(String, i64)>,
}

impl CheckerReport {
    fn error(&mut self, message: String) {
        self.errors_total += 1;
        if self.errors.len() < 100 {
            self.errors.push((Timestamp::now(), message));
        }
    }

    /// Row deliveries, duplicates included.
    pub fn row_deliveries(&self) -> usize {
        self.batches.iter().map(|b| b.rows().count()).sum()
    }
}

type Shared = Arc<Mutex<CheckerReport>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, CheckerReport> {
    state.lock().expect("checker state lock poisoned")
}

pub struct Checker {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    state: Shared,
}

impl Checker {
    /// Starts consuming `destination` as `client_id`, following
    /// `{destination}/running` in the ZooKeeper ensemble `zk_servers`.
    pub fn start(zk_servers: &str, destination: &str, client_id: &str) -> Checker {
        Self::start_with(
            zk_servers,
            destination,
            client_id,
            CheckerOptions::default(),
        )
    }

    pub fn start_with(
        zk_servers: &str,
        destination: &str,
        client_id: &str,
        options: CheckerOptions,
    ) -> Checker {
        let cancel = CancellationToken::new();
        let state = Shared::default();
        let consumer = Consumer {
            zk_servers: zk_servers.to_owned(),
            destination: destination.to_owned(),
            client_id: client_id.to_owned(),
            options,
            state: state.clone(),
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(consumer.run());
        Checker {
            cancel,
            task,
            state,
        }
    }

    /// Row deliveries so far, duplicates included.
    pub fn row_deliveries(&self) -> usize {
        lock(&self.state).row_deliveries()
    }

    /// Distinct rows delivered so far (repeats counted once).
    pub fn distinct_rows(&self) -> usize {
        lock(&self.state).delivered.len()
    }

    /// Batches received on the session under way (0 when none is).
    pub fn batches_on_current_connection(&self) -> usize {
        let state = lock(&self.state);
        state
            .connections
            .last()
            .filter(|c| c.ended_at.is_none())
            .map_or(0, |c| c.batches)
    }

    /// The server of the session under way, if one is.
    pub fn current_server(&self) -> Option<String> {
        let state = lock(&self.state);
        state
            .connections
            .last()
            .filter(|c| c.ended_at.is_none())
            .map(|c| c.server.clone())
    }

    /// Sessions so far (ended or not).
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        lock(&self.state).connections.clone()
    }

    /// Committed rows of `writer` not delivered yet.
    pub fn missing(&self, writer: &WriterReport) -> usize {
        let state = lock(&self.state);
        writer
            .committed
            .iter()
            .flat_map(|t| &t.rows)
            .filter(|row| !state.delivered.contains(*row))
            .count()
    }

    /// Waits until every committed row of `writer` was delivered; false
    /// after `timeout`.
    pub async fn wait_for_all(&self, writer: &WriterReport, timeout: Duration) -> bool {
        crate::common::cluster::wait_until(timeout, async || self.missing(writer) == 0).await
    }

    pub async fn stop(self) -> CheckerReport {
        self.cancel.cancel();
        self.task.await.expect("the checker task panicked");
        let mut state = lock(&self.state);
        std::mem::take(&mut *state)
    }
}

struct Consumer {
    zk_servers: String,
    destination: String,
    client_id: String,
    options: CheckerOptions,
    state: Shared,
    cancel: CancellationToken,
}

impl Consumer {
    async fn run(self) {
        let mut zookeeper: Option<Client> = None;
        while !self.cancel.is_cancelled() {
            match self.session(&mut zookeeper).await {
                Ok(()) => {}
                Err(message) => {
                    let mut state = lock(&self.state);
                    state.failed_attempts += 1;
                    state.error(message);
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => {}
                _ = tokio::time::sleep(self.options.backoff) => {}
            }
        }
    }

    /// Looks up the active server, subscribes and consumes until an error;
    /// `Err` when no session got under way.
    async fn session(&self, zookeeper: &mut Option<Client>) -> Result<(), String> {
        let io = self.options.io_timeout;
        let zk = match zookeeper.take() {
            Some(client) if !ended(client.state()) => client,
            _ => {
                let connector =
                    Client::connector().with_session_timeout(self.options.zk_session_timeout);
                tokio::time::timeout(io, connector.connect(&self.zk_servers))
                    .await
                    .map_err(|_| {
                        format!("ZooKeeper {}: no session within {io:?}", self.zk_servers)
                    })?
                    .map_err(|e| format!("ZooKeeper {}: {e}", self.zk_servers))?
            }
        };
        let lookup = tokio::time::timeout(io, active_server(&zk, &self.destination)).await;
        *zookeeper = Some(zk);
        let address = match lookup {
            Ok(Ok(Some(address))) => address,
            Ok(Ok(None)) => return Err(format!("no server runs {}", self.destination)),
            Ok(Err(error)) => return Err(format!("reading running: {error}")),
            Err(_) => return Err(format!("reading running: no answer within {io:?}")),
        };
        let mut client = tokio::time::timeout(io, async {
            let mut client = CanalClient::connect(&address, &Login::default(), io).await?;
            client
                .subscribe(&self.destination, &self.client_id, "")
                .await?;
            Ok::<_, canal::client::ClientError>(client)
        })
        .await
        .map_err(|_| format!("{address}: no answer within {io:?}"))?
        .map_err(|e| format!("{address}: {e}"))?;
        let index = {
            let mut state = lock(&self.state);
            state.connections.push(ConnectionRecord {
                server: address.clone(),
                connected_at: Timestamp::now(),
                ended_at: None,
                end_reason: None,
                batches: 0,
            });
            state.connections.len() - 1
        };
        let reason = self.consume(&mut client, index, &address).await;
        let mut state = lock(&self.state);
        if reason != "stopped" {
            state.error(format!("{address}: {reason}"));
        }
        let connection = &mut state.connections[index];
        connection.ended_at = Some(Timestamp::now());
        connection.end_reason = Some(reason);
        Ok(())
    }

    /// GET, record, ACK until an error or the stop; returns why it ended.
    async fn consume(&self, client: &mut CanalClient, index: usize, address: &str) -> String {
        let options = &self.options;
        let wait = options.get_timeout + options.io_timeout;
        loop {
            let got = tokio::select! {
                _ = self.cancel.cancelled() => return "stopped".into(),
                got = tokio::time::timeout(wait, client.get(options.fetch_size, Some(options.get_timeout))) => got,
            };
            let received = match got {
                Err(_) => return format!("GET: no answer within {wait:?}"),
                Ok(Err(error)) => return format!("GET: {error}"),
                Ok(Ok(received)) => received,
            };
            if received.batch_id == -1 {
                continue;
            }
            let items: Vec<Item> = received.entries.iter().flat_map(entry_items).collect();
            {
                let mut state = lock(&self.state);
                for item in &items {
                    if let Item::Row { table, id, .. } = item {
                        state.delivered.insert((table.clone(), *id));
                    }
                }
                state.connections[index].batches += 1;
                state.batches.push(BatchRecord {
                    connection: index,
                    server: address.to_owned(),
                    batch_id: received.batch_id,
                    received_at: Timestamp::now(),
                    items,
                    acked: false,
                });
            }
            match tokio::time::timeout(options.io_timeout, client.ack(received.batch_id)).await {
                Ok(Ok(())) => {
                    if let Some(batch) = lock(&self.state).batches.last_mut() {
                        batch.acked = true;
                    }
                }
                Ok(Err(error)) => return format!("ACK {}: {error}", received.batch_id),
                Err(_) => {
                    return format!(
                        "ACK {}: not sent within {:?}",
                        received.batch_id, options.io_timeout
                    );
                }
            }
        }
    }
}

/// A session that can no longer be used.
fn ended(state: SessionState) -> bool {
    matches!(
        state,
        SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
    )
}

/// An entry as items: a ROWDATA entry holds every row of one statement.
fn entry_items(entry: &Entry) -> Vec<Item> {
    match entry.entry_type() {
        EntryType::Transactionbegin => vec![Item::Begin],
        EntryType::Transactionend => vec![Item::End],
        EntryType::Rowdata => {
            let rows = row_items(entry);
            if rows.is_empty() {
                vec![Item::Other]
            } else {
                rows
            }
        }
        _ => vec![Item::Other],
    }
}

/// The rows of a ROWDATA entry: table, `id` and `txn` of the after image
/// (the before image of a delete); DDL and rows without them give nothing.
fn row_items(entry: &Entry) -> Vec<Item> {
    let Ok(change) = RowChange::decode(entry.store_value.as_slice()) else {
        return Vec::new();
    };
    if change.is_ddl == Some(true) {
        return Vec::new();
    }
    let table = entry
        .header
        .as_ref()
        .map(|h| h.table_name.clone())
        .unwrap_or_default();
    change
        .row_datas
        .iter()
        .filter_map(|row| {
            let columns = if row.after_columns.is_empty() {
                &row.before_columns
            } else {
                &row.after_columns
            };
            let number = |name: &str| -> Option<i64> {
                columns.iter().find(|c| c.name == name)?.value.parse().ok()
            };
            Some(Item::Row {
                table: table.clone(),
                id: number("id")?,
                txn: number("txn")?,
            })
        })
        .collect()
}
