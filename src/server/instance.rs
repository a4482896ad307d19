//! One destination: its binlog source, its store, its clients' cursors.
//!
//! ```text
//!  BinlogSource ──ChangeEvent──► pipeline (empty-transaction throttle, serialize) ──put──► EventStore
//!                                                                                  get/ack │
//!                                                                     sessions ◄───────────┘
//!  acks ──► pending cursors ──(every flush period, or each ack with period 0)──► CursorStore
//! ```

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use prost::Message;
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    binlog::{
        change::{ChangeEvent, ChangeKind},
        decode::{Decoder, DecoderOptions},
        filter::{EventFilter, TableFilter},
        gtid::GtidState,
        position::{LogPosition, StartPosition},
        replica::ReplicaConfig,
        source::{BinlogSource, SourceConfig, SourceError, SourceStats},
    },
    cursor::{ClientRecord, CursorError, CursorRecord, SharedCursorStore},
    ha::Lease,
    protocol::entry::EventType,
    store::{AckError, Batch, ClientId, EventStore, StoreConfig, StoreError, StoredEvent, Wait},
};

/// How often cursor writes ZooKeeper did not answer are retried when every
/// ack is written at once (flush period 0).
const RETRY_PERIOD: Duration = Duration::from_millis(100);

/// Everything an instance needs to run, resolved from configuration.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    pub destination: String,
    pub replica: ReplicaConfig,
    /// Where to start when no client has a cursor (`None`: the binlog end).
    pub start: Option<StartPosition>,
    /// canal.instance.gtidon: resume by GTID and fill GTID header fields.
    pub gtid_on: bool,
    pub decoder: DecoderOptions,
    pub filter: EventFilter,
    pub store: StoreConfig,
    /// canal.zookeeper.flush.period: 0 writes every ack's cursor at once.
    pub flush_period: Duration,
    /// canal.instance.filter.transaction.entry.
    pub filter_transaction_entry: bool,
}

/// Why an instance could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Cursor(#[from] CursorError),
    #[error("filter `{filter}` is not valid: {reason}")]
    Filter { filter: String, reason: String },
    #[error("this server is no longer the active server of the destination")]
    NotActive,
}

/// A running destination.
pub struct Instance {
    settings: InstanceSettings,
    store: Arc<EventStore>,
    cursors: SharedCursorStore,
    pending: Mutex<BTreeMap<ClientId, CursorRecord>>,
    /// Serializes cursor writes, so an older cursor never lands after a
    /// newer one.
    writing: tokio::sync::Mutex<()>,
    /// Every client's latest cursor (persisted or pending), for metrics.
    latest: Mutex<BTreeMap<ClientId, CursorRecord>>,
    filter: watch::Sender<Arc<EventFilter>>,
    stats: Arc<SourceStats>,
    /// While it holds, this server may serve and write cursors.
    lease: Arc<Lease>,
    /// Set when the source stopped with an error only an operator can fix.
    failed: Mutex<Option<String>>,
    running: AtomicBool,
    /// Sessions currently subscribed here.
    connected: std::sync::atomic::AtomicI64,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("destination", &self.settings.destination)
            .finish()
    }
}

fn before(a: &LogPosition, b: &LogPosition) -> bool {
    (a.journal_name.as_str(), a.position) < (b.journal_name.as_str(), b.position)
}

/// The smallest cursor among the clients: where the source resumes.
fn minimum_cursor(clients: &BTreeMap<ClientId, ClientRecord>) -> Option<&CursorRecord> {
    clients
        .values()
        .filter_map(|c| c.cursor.as_ref())
        .reduce(|a, b| {
            if before(&b.position, &a.position) {
                b
            } else {
                a
            }
        })
}

impl Instance {
    /// Loads the clients' cursors and starts the source. The instance
    /// serves and writes cursors only while `lease` holds.
    pub async fn start(
        settings: InstanceSettings,
        cursors: SharedCursorStore,
        lease: Arc<Lease>,
        parent: &CancellationToken,
    ) -> Result<Arc<Instance>, InstanceError> {
        let destination = settings.destination.clone();
        let clients = cursors.load().await?;
        let mut filter = settings.filter.clone();
        // A client that subscribed with its own filter keeps it across restarts.
        if let Some(subscribed) = clients
            .values()
            .map(|c| c.filter.as_str())
            .find(|f| !f.is_empty())
        {
            filter.tables =
                TableFilter::new(subscribed, filter.tables.exclude_text()).map_err(|e| {
                    InstanceError::Filter {
                        filter: subscribed.to_owned(),
                        reason: e.to_string(),
                    }
                })?;
        }
        let start = match minimum_cursor(&clients) {
            Some(cursor) if settings.gtid_on && !cursor.position.gtid.is_empty() => {
                match GtidState::parse(&cursor.position.gtid) {
                    Ok(state) => StartPosition::Gtid(state),
                    Err(_) => StartPosition::FilePosition {
                        journal_name: cursor.position.journal_name.clone(),
                        position: cursor.position.position,
                    },
                }
            }
            Some(cursor) => StartPosition::FilePosition {
                journal_name: cursor.position.journal_name.clone(),
                position: cursor.position.position,
            },
            None => settings.start.clone().unwrap_or(StartPosition::Latest),
        };
        tracing::info!(
            destination = %destination,
            cursors = %cursors.describe(),
            clients = clients.len(),
            start = ?start,
            "starting destination"
        );
        let store = Arc::new(EventStore::new(settings.store));
        for (client, record) in &clients {
            let resume = record.cursor.as_ref().map(|c| crate::store::ResumePoint {
                position: c.position.clone(),
            });
            store.subscribe(*client, resume);
        }
        let filter = Arc::new(filter);
        let (filter_sender, filter_updates) = watch::channel(filter.clone());
        let mut options = settings.decoder.clone();
        options.gtid_header = settings.gtid_on;
        let decoder = Decoder::new(options, filter);
        let source_config = SourceConfig {
            replica: settings.replica.clone(),
            start,
            resume_by_gtid: settings.gtid_on,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
        };
        let mut source =
            BinlogSource::new(source_config, decoder).with_filter_updates(filter_updates);
        let stats = source.stats();
        let cancel = parent.child_token();
        let instance = Arc::new(Instance {
            settings,
            store: store.clone(),
            cursors,
            pending: Mutex::new(BTreeMap::new()),
            writing: tokio::sync::Mutex::new(()),
            latest: Mutex::new(
                clients
                    .iter()
                    .filter_map(|(c, r)| r.cursor.clone().map(|cursor| (*c, cursor)))
                    .collect(),
            ),
            filter: filter_sender,
            stats,
            lease,
            failed: Mutex::new(None),
            running: AtomicBool::new(true),
            connected: std::sync::atomic::AtomicI64::new(0),
            cancel: cancel.clone(),
            tasks: Mutex::new(Vec::new()),
        });

        let span = tracing::info_span!("destination", destination = %destination);
        let (sender, receiver) = tokio::sync::mpsc::channel::<ChangeEvent>(256);
        let source_task = {
            let instance = instance.clone();
            let cancel = cancel.clone();
            tokio::spawn(
                async move {
                    let outcome = source.run(sender, cancel.clone()).await;
                    instance.source_stopped(outcome);
                }
                .instrument(span.clone()),
            )
        };
        let pipeline_task = {
            let store = store.clone();
            let throttle = instance.settings.filter_transaction_entry;
            tokio::spawn(pipeline(receiver, store, throttle).instrument(span.clone()))
        };
        let mut tasks = vec![source_task, pipeline_task];
        {
            // With period 0 acks are written at once; this loop then only
            // retries the writes ZooKeeper did not answer.
            let period = if instance.settings.flush_period.is_zero() {
                RETRY_PERIOD
            } else {
                instance.settings.flush_period
            };
            let instance = instance.clone();
            tasks.push(tokio::spawn(
                async move {
                    let mut tick = tokio::time::interval(period);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = instance.cancel.cancelled() => break,
                        }
                        if let Err(error) = instance.flush().await {
                            tracing::warn!(%error, "cursor flush failed; retrying at the next period");
                        }
                    }
                }
                .instrument(span),
            ));
        }
        *instance.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(instance)
    }

    fn source_stopped(&self, outcome: Result<(), SourceError>) {
        self.running.store(false, Ordering::Relaxed);
        if let Err(error) = outcome {
            tracing::error!(%error, "binlog source stopped; clients receive no new changes until it is fixed");
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
        }
    }

    pub fn destination(&self) -> &str {
        &self.settings.destination
    }

    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    pub fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    pub fn settings(&self) -> &InstanceSettings {
        &self.settings
    }

    /// The error that stopped the source, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// A session subscribed (`+1`) or ended (`-1`).
    pub fn connected_change(&self, delta: i64) {
        self.connected.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn connected(&self) -> i64 {
        self.connected.load(Ordering::Relaxed)
    }

    /// Subscribes a client; a non-empty filter replaces the destination's
    /// table filter and is persisted with the subscription.
    pub async fn subscribe(&self, client: ClientId, filter: &str) -> Result<(), InstanceError> {
        if !filter.is_empty() {
            let current = self.filter.borrow().clone();
            if current.tables.include_text() != filter {
                let tables =
                    TableFilter::new(filter, current.tables.exclude_text()).map_err(|e| {
                        InstanceError::Filter {
                            filter: filter.to_owned(),
                            reason: e.to_string(),
                        }
                    })?;
                let updated = EventFilter {
                    tables,
                    columns: current.columns.clone(),
                };
                self.filter.send_replace(Arc::new(updated));
            }
        }
        if !self.store.is_subscribed(client) {
            let known = self.cursors.load().await?;
            let resume = known.get(&client).and_then(|r| r.cursor.as_ref()).map(|c| {
                crate::store::ResumePoint {
                    position: c.position.clone(),
                }
            });
            self.store.subscribe(client, resume);
        }
        self.cursors.subscribe(client, filter).await?;
        Ok(())
    }

    /// Every client's latest acknowledged cursor.
    pub fn last_cursors(&self) -> Option<BTreeMap<ClientId, CursorRecord>> {
        Some(
            self.latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    pub async fn unsubscribe(&self, client: ClientId) -> Result<(), InstanceError> {
        self.store.unsubscribe(client);
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&client);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&client);
        self.cursors.unsubscribe(client).await?;
        Ok(())
    }

    pub fn is_subscribed(&self, client: ClientId) -> bool {
        self.store.is_subscribed(client)
    }

    pub async fn get(
        &self,
        client: ClientId,
        fetch_size: i32,
        wait: Wait,
    ) -> Result<Option<Batch>, StoreError> {
        let batch = self.store.get(client, fetch_size, wait).await?;
        // Checked after the wait, right before the reply leaves: a server
        // that lost its lease (even one just woken from a freeze) sends
        // nothing more.
        if !self.lease.is_valid() {
            return Err(StoreError::Closed);
        }
        Ok(batch)
    }

    /// Cancelled when the instance stops: sessions subscribed here close.
    pub fn stopped(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Acknowledges a batch and moves the client's cursor to its ack point.
    pub async fn ack(&self, client: ClientId, batch_id: i64) -> Result<(), InstanceError> {
        if let Some(cursor) = self.store.ack(client, batch_id)? {
            let record = CursorRecord {
                position: cursor.position,
                source_host: self.source_host(),
                source_port: self.source_port(),
            };
            self.latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(client, record.clone());
            if self.settings.flush_period.is_zero() {
                if !self.lease.is_valid() {
                    return Err(InstanceError::NotActive);
                }
                let _writing = self.writing.lock().await;
                match self.cursors.save_cursor(client, &record).await {
                    Ok(()) => {
                        self.pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&client);
                    }
                    Err(error) => {
                        // The ack stands (it is in memory); writing it is
                        // retried, as with a flush period, unless a newer
                        // ack replaces it first.
                        tracing::warn!(%error, client, "cursor write failed; retrying");
                        self.pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(client, record);
                    }
                }
            } else {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(client, record);
            }
        }
        Ok(())
    }

    pub fn rollback(&self, client: ClientId, batch_id: i64) -> Result<(), AckError> {
        self.store.rollback(client, batch_id).map_err(|e| match e {
            StoreError::Ack(e) => e,
            StoreError::Closed => AckError::Closed,
        })
    }

    /// The cursors clients acknowledged, as persisted or about to be.
    pub async fn cursors(&self) -> Result<BTreeMap<ClientId, ClientRecord>, InstanceError> {
        let mut clients = self.cursors.load().await?;
        for (client, record) in self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            clients.entry(*client).or_default().cursor = Some(record.clone());
        }
        Ok(clients)
    }

    /// Writes acknowledged cursors not yet persisted.
    pub async fn flush(&self) -> Result<(), InstanceError> {
        if !self.lease.is_valid() {
            // Another server may be active by now and own the cursors.
            return Err(InstanceError::NotActive);
        }
        let _writing = self.writing.lock().await;
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for (client, record) in &pending {
            if let Err(error) = self.cursors.save_cursor(*client, record).await {
                // Keep what failed (unless a newer ack replaced it) for the next flush.
                let mut current = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (client, record) in pending {
                    current.entry(client).or_insert(record);
                }
                return Err(error.into());
            }
        }
        Ok(())
    }

    fn source_host(&self) -> String {
        self.settings
            .replica
            .address
            .rsplit_once(':')
            .map(|(h, _)| h.to_owned())
            .unwrap_or_default()
    }

    fn source_port(&self) -> u16 {
        self.settings
            .replica
            .address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(3306)
    }

    /// Stops the source, flushes cursors, closes the sessions subscribed here.
    pub async fn stop(&self) {
        self.halt().await;
        if let Err(error) = self.flush().await {
            tracing::error!(destination = %self.settings.destination, %error, "could not flush cursors on stop");
        }
    }

    /// Stops the source and closes the sessions subscribed here, writing
    /// nothing. Does not wait for anything outside the process: a fenced
    /// server must stop even while ZooKeeper or MySQL hang.
    pub async fn halt(&self) {
        self.cancel.cancel();
        self.running.store(false, Ordering::Relaxed);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        self.store.close();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Moves changes from the source into the store, serialized, dropping
/// empty transactions the way canal's sink does.
async fn pipeline(
    mut receiver: tokio::sync::mpsc::Receiver<ChangeEvent>,
    store: Arc<EventStore>,
    filter_transaction_entry: bool,
) {
    let mut throttle = EmptyTransactions::new(filter_transaction_entry);
    let mut ready = Vec::new();
    while let Some(change) = receiver.recv().await {
        throttle.push(change, &mut ready);
        for change in ready.drain(..) {
            if store.put(stored(change)).await.is_err() {
                return;
            }
        }
    }
}

fn stored(change: ChangeEvent) -> StoredEvent {
    let event_type = change
        .entry
        .header
        .as_ref()
        .and_then(|h| h.event_type)
        .and_then(|t| EventType::try_from(t).ok())
        .unwrap_or(EventType::Query);
    StoredEvent {
        bytes: Bytes::from(change.entry.encode_to_vec()),
        position: change.position,
        kind: change.kind,
        event_type,
    }
}

/// canal's sink drops transactions that turned out empty (every row
/// filtered out) unless more than 5 s of binlog time passed since the last
/// one it let through, or 8192 were dropped in a row; with
/// canal.instance.filter.transaction.entry it drops transaction markers
/// around row changes the same way.
struct EmptyTransactions {
    held_begin: Option<ChangeEvent>,
    last_passed_ms: i64,
    dropped: u32,
    markers_too: bool,
}

const EMPTY_INTERVAL_MS: i64 = 5_000;
const EMPTY_MAX_DROPPED: u32 = 8_192;

impl EmptyTransactions {
    fn new(markers_too: bool) -> Self {
        EmptyTransactions {
            held_begin: None,
            last_passed_ms: 0,
            dropped: 0,
            markers_too,
        }
    }

    fn lets_through(&mut self, at_ms: i64) -> bool {
        if at_ms - self.last_passed_ms > EMPTY_INTERVAL_MS || self.dropped > EMPTY_MAX_DROPPED {
            self.last_passed_ms = at_ms;
            self.dropped = 0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    fn push(&mut self, change: ChangeEvent, out: &mut Vec<ChangeEvent>) {
        match change.kind {
            ChangeKind::TransactionBegin => {
                if let Some(previous) = self.held_begin.take() {
                    out.push(previous);
                }
                self.held_begin = Some(change);
            }
            ChangeKind::TransactionEnd => match self.held_begin.take() {
                Some(begin) => {
                    // BEGIN followed directly by END: an empty transaction.
                    if self.lets_through(begin.position.timestamp_ms) {
                        out.push(begin);
                        out.push(change);
                    }
                }
                None if self.markers_too => {
                    if self.lets_through(change.position.timestamp_ms) {
                        out.push(change);
                    }
                }
                None => out.push(change),
            },
            _ => {
                if let Some(begin) = self.held_begin.take()
                    && !self.markers_too
                {
                    out.push(begin);
                }
                out.push(change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entry::Entry;

    fn change(kind: ChangeKind, ms: i64) -> ChangeEvent {
        ChangeEvent {
            entry: Entry::default(),
            position: LogPosition {
                timestamp_ms: ms,
                ..LogPosition::new("f", 4)
            },
            end: 5,
            kind,
            row_images: 0,
        }
    }

    fn kinds(out: &[ChangeEvent]) -> Vec<ChangeKind> {
        out.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn empty_transactions_are_throttled() {
        let mut throttle = EmptyTransactions::new(false);
        let mut out = Vec::new();
        for ms in [10_000, 11_000, 12_000, 16_000] {
            throttle.push(change(ChangeKind::TransactionBegin, ms), &mut out);
            throttle.push(change(ChangeKind::TransactionEnd, ms), &mut out);
        }
        assert_eq!(out.len(), 4, "the first and the one 6 s later pass");
        out.clear();
        throttle.push(change(ChangeKind::TransactionBegin, 16_500), &mut out);
        throttle.push(change(ChangeKind::Rows, 16_500), &mut out);
        throttle.push(change(ChangeKind::TransactionEnd, 16_500), &mut out);
        assert_eq!(
            kinds(&out),
            [
                ChangeKind::TransactionBegin,
                ChangeKind::Rows,
                ChangeKind::TransactionEnd
            ]
        );
    }

    #[test]
    fn minimum_cursor_picks_the_earliest_position() {
        let record = |journal: &str, position| ClientRecord {
            cursor: Some(CursorRecord {
                position: LogPosition::new(journal, position),
                source_host: String::new(),
                source_port: 0,
            }),
            filter: String::new(),
        };
        let mut clients = BTreeMap::new();
        clients.insert(1, record("mysql-bin.000002", 10));
        clients.insert(2, record("mysql-bin.000001", 900));
        clients.insert(3, ClientRecord::default());
        assert_eq!(minimum_cursor(&clients).unwrap().position.position, 900);
    }
}
