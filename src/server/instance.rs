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

use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    binlog::{
        change::ChangeEvent,
        decode::{Decoder, DecoderOptions},
        filter::{EventFilter, TableFilter},
        gtid::GtidState,
        position::StartPosition,
        replica::ReplicaConfig,
        source::{BinlogSource, SourceConfig, SourceError, SourceStats},
    },
    cursor::{ClientRecord, CursorError, CursorRecord, SharedCursorStore},
    ha::{FailureKind, Lease},
    store::{AckError, Batch, ClientId, EventStore, ResumePoint, StoreConfig, StoreError, Wait},
};

use super::pipeline::pipeline;

/// How often cursor writes ZooKeeper did not answer are retried when every
/// ack is written at once (flush period 0).
const RETRY_PERIOD: Duration = Duration::from_millis(100);

/// Everything an instance needs to run, resolved from configuration.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    /// The destination's name.
    pub destination: String,
    /// How to reach the source.
    pub replica: ReplicaConfig,
    /// Where to start when no client has a cursor (`None`: the binlog end).
    pub start: Option<StartPosition>,
    /// canal.instance.gtidon: resume by GTID and fill GTID header fields.
    pub gtid_on: bool,
    /// How binlog events become entries.
    pub decoder: DecoderOptions,
    /// The configured table and column filters.
    pub filter: EventFilter,
    /// The event store's sizing and batching.
    pub store: StoreConfig,
    /// canal.zookeeper.flush.period: 0 writes every ack's cursor at once.
    pub flush_period: Duration,
    /// canal.instance.filter.transaction.entry.
    pub filter_transaction_entry: bool,
}

/// Why an instance could not start or serve a request.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The store refused (closed, or a client's ack or rollback was wrong).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Reading or writing the clients' cursors failed.
    #[error("{0}")]
    Cursor(#[from] CursorError),
    /// A client's (or a persisted subscription's) table filter.
    #[error("filter `{filter}` is not valid: {reason}")]
    Filter {
        /// The filter text.
        filter: String,
        /// Why it does not compile.
        reason: String,
    },
    /// The lease ran out: another server may own the destination now.
    #[error("this server is no longer the active server of the destination")]
    NotActive,
}

impl InstanceError {
    /// Whether trying again can help by itself.
    pub fn kind(&self) -> FailureKind {
        match self {
            InstanceError::Store(StoreError::Closed) | InstanceError::NotActive => {
                FailureKind::Transient
            }
            InstanceError::Store(StoreError::Ack(_)) | InstanceError::Filter { .. } => {
                FailureKind::Permanent
            }
            InstanceError::Cursor(error) => error.kind(),
        }
    }
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

/// The smallest cursor among the clients: where the source resumes.
fn minimum_cursor(clients: &BTreeMap<ClientId, ClientRecord>) -> Option<&CursorRecord> {
    fn order(c: &CursorRecord) -> (&str, u64) {
        (c.position.journal_name.as_str(), c.position.position)
    }
    // The first of equal cursors wins, as with any minimum.
    clients
        .values()
        .filter_map(|c| c.cursor.as_ref())
        .min_by(|a, b| order(a).cmp(&order(b)))
}

/// Where the source starts for these clients: the smallest cursor (by its
/// GTID set when `gtid_on` and the cursor holds one that parses), else
/// `configured` (the instance's start settings), else the binlog's end.
pub fn start_position(
    clients: &BTreeMap<ClientId, ClientRecord>,
    configured: Option<&StartPosition>,
    gtid_on: bool,
) -> StartPosition {
    let Some(cursor) = minimum_cursor(clients) else {
        return configured.cloned().unwrap_or(StartPosition::Latest);
    };
    let by_gtid = (gtid_on && !cursor.position.gtid.is_empty())
        .then(|| GtidState::parse(&cursor.position.gtid).ok())
        .flatten();
    match by_gtid {
        Some(state) => StartPosition::Gtid(state),
        None => StartPosition::FilePosition {
            journal_name: cursor.position.journal_name.clone(),
            position: cursor.position.position,
        },
    }
}

/// The filter with `include` as its table filter (a client's subscription),
/// the configured exclusions and column filters kept.
fn with_tables(filter: &EventFilter, include: &str) -> Result<EventFilter, InstanceError> {
    let tables = TableFilter::new(include, filter.tables.exclude_text()).map_err(|e| {
        InstanceError::Filter {
            filter: include.to_owned(),
            reason: e.to_string(),
        }
    })?;
    Ok(EventFilter {
        tables,
        columns: filter.columns.clone(),
    })
}

/// The configured filter, or the first filter a client subscribed with: a
/// client's own filter holds across restarts.
fn resumed_filter(
    configured: &EventFilter,
    clients: &BTreeMap<ClientId, ClientRecord>,
) -> Result<EventFilter, InstanceError> {
    match clients
        .values()
        .map(|c| c.filter.as_str())
        .find(|f| !f.is_empty())
    {
        Some(subscribed) => with_tables(configured, subscribed),
        None => Ok(configured.clone()),
    }
}

/// Where a known client resumes in the store: after its cursor.
fn resume_point(record: &ClientRecord) -> Option<ResumePoint> {
    record.cursor.as_ref().map(|c| ResumePoint {
        position: c.position.clone(),
    })
}

/// A store with every known client subscribed at its cursor.
fn resumed_store(config: StoreConfig, clients: &BTreeMap<ClientId, ClientRecord>) -> EventStore {
    let store = EventStore::new(config);
    for (client, record) in clients {
        store.subscribe(*client, resume_point(record));
    }
    store
}

/// The binlog source for `settings`, starting at `start` with `filter`,
/// and the sender that changes its filter later.
fn binlog_source(
    settings: &InstanceSettings,
    start: StartPosition,
    filter: EventFilter,
) -> (BinlogSource, watch::Sender<Arc<EventFilter>>) {
    let filter = Arc::new(filter);
    let (filter_sender, filter_updates) = watch::channel(filter.clone());
    let mut options = settings.decoder.clone();
    options.gtid_header = settings.gtid_on;
    let source_config = SourceConfig {
        replica: settings.replica.clone(),
        start,
        resume_by_gtid: settings.gtid_on,
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_secs(30),
    };
    let source = BinlogSource::new(source_config, Decoder::new(options, filter))
        .with_filter_updates(filter_updates);
    (source, filter_sender)
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
        let clients = cursors.load().await?;
        let filter = resumed_filter(&settings.filter, &clients)?;
        let start = start_position(&clients, settings.start.as_ref(), settings.gtid_on);
        tracing::info!(
            destination = %settings.destination,
            cursors = %cursors.describe(),
            clients = clients.len(),
            start = ?start,
            "starting destination"
        );
        let store = Arc::new(resumed_store(settings.store, &clients));
        let (source, filter) = binlog_source(&settings, start, filter);
        let latest = clients
            .iter()
            .filter_map(|(c, r)| r.cursor.clone().map(|cursor| (*c, cursor)))
            .collect();
        let instance = Arc::new(Instance {
            settings,
            store,
            cursors,
            pending: Mutex::new(BTreeMap::new()),
            writing: tokio::sync::Mutex::new(()),
            latest: Mutex::new(latest),
            filter,
            stats: source.stats(),
            lease,
            failed: Mutex::new(None),
            running: AtomicBool::new(true),
            connected: std::sync::atomic::AtomicI64::new(0),
            cancel: parent.child_token(),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = instance.spawn_tasks(source);
        *instance.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(instance)
    }

    /// The instance's three tasks: the source, the pipeline into the
    /// store, and the cursor flusher.
    fn spawn_tasks(self: &Arc<Self>, mut source: BinlogSource) -> Vec<JoinHandle<()>> {
        let span = tracing::info_span!("destination", destination = %self.settings.destination);
        let (sender, receiver) = tokio::sync::mpsc::channel::<ChangeEvent>(256);
        let source_task = {
            let instance = self.clone();
            let cancel = self.cancel.clone();
            tokio::spawn(
                async move {
                    let outcome = source.run(sender, cancel).await;
                    instance.source_stopped(outcome);
                }
                .instrument(span.clone()),
            )
        };
        let pipeline_task = tokio::spawn(
            pipeline(
                receiver,
                self.store.clone(),
                self.settings.filter_transaction_entry,
            )
            .instrument(span.clone()),
        );
        let flush_task = tokio::spawn(self.clone().flush_periodically().instrument(span));
        vec![source_task, pipeline_task, flush_task]
    }

    /// Writes pending cursors every flush period until the instance stops.
    /// With period 0 acks are written at once; this loop then only retries
    /// the writes ZooKeeper did not answer.
    async fn flush_periodically(self: Arc<Self>) {
        let period = if self.settings.flush_period.is_zero() {
            RETRY_PERIOD
        } else {
            self.settings.flush_period
        };
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.cancel.cancelled() => break,
            }
            if let Err(error) = self.flush().await {
                tracing::warn!(%error, "cursor flush failed; retrying at the next period");
            }
        }
    }

    fn source_stopped(&self, outcome: Result<(), SourceError>) {
        self.running.store(false, Ordering::Relaxed);
        if let Err(error) = outcome {
            tracing::error!(%error, "binlog source stopped; clients receive no new changes until it is fixed");
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
        }
    }

    /// The destination's name.
    pub fn destination(&self) -> &str {
        &self.settings.destination
    }

    /// The event store between the source and the clients.
    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    /// The source's counters and last position.
    pub fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    /// The settings it started with.
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

    /// Whether the source runs (it stops on an error only an operator can fix).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// A session subscribed (`+1`) or ended (`-1`).
    pub fn connected_change(&self, delta: i64) {
        self.connected.fetch_add(delta, Ordering::Relaxed);
    }

    /// Sessions currently subscribed.
    pub fn connected(&self) -> i64 {
        self.connected.load(Ordering::Relaxed)
    }

    /// Subscribes a client; a non-empty filter replaces the destination's
    /// table filter and is persisted with the subscription.
    pub async fn subscribe(&self, client: ClientId, filter: &str) -> Result<(), InstanceError> {
        if !filter.is_empty() {
            let current = self.filter.borrow().clone();
            if current.tables.include_text() != filter {
                let updated = with_tables(&current, filter)?;
                self.filter.send_replace(Arc::new(updated));
            }
        }
        if !self.store.is_subscribed(client) {
            let known = self.cursors.load().await?;
            self.store
                .subscribe(client, known.get(&client).and_then(resume_point));
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

    /// Forgets a client: its place in the store and its stored cursor.
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

    /// Whether `client` is subscribed here.
    pub fn is_subscribed(&self, client: ClientId) -> bool {
        self.store.is_subscribed(client)
    }

    /// The next batch for `client`, waiting as `wait` says; nothing once the lease is gone.
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

    /// Rewinds `client` to its last acknowledged event.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::position::LogPosition;

    fn record(journal: &str, position: u64) -> ClientRecord {
        ClientRecord {
            cursor: Some(CursorRecord {
                position: LogPosition::new(journal, position),
                source_host: String::new(),
                source_port: 0,
            }),
            filter: String::new(),
        }
    }

    fn file(journal: &str, position: u64) -> StartPosition {
        StartPosition::FilePosition {
            journal_name: journal.into(),
            position,
        }
    }

    const GTID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5";

    #[test]
    fn without_cursors_the_configured_start_or_the_end() {
        let mut clients = BTreeMap::new();
        let configured = file("mysql-bin.000003", 4);
        assert_eq!(start_position(&clients, None, false), StartPosition::Latest);
        clients.insert(
            7,
            ClientRecord {
                cursor: None,
                filter: "a\\..*".into(),
            },
        );
        assert_eq!(
            start_position(&clients, Some(&configured), true),
            configured
        );
    }

    #[test]
    fn the_smallest_cursor_wins_over_the_configured_start() {
        let mut clients = BTreeMap::new();
        clients.insert(1, record("mysql-bin.000002", 10));
        clients.insert(2, record("mysql-bin.000001", 900));
        let configured = file("mysql-bin.000009", 4);
        assert_eq!(
            start_position(&clients, Some(&configured), false),
            file("mysql-bin.000001", 900)
        );
    }

    #[test]
    fn with_gtid_on_a_cursor_resumes_by_its_gtid_set() {
        let mut with_gtid = record("mysql-bin.000001", 900);
        if let Some(cursor) = with_gtid.cursor.as_mut() {
            cursor.position.gtid = GTID.into();
        }
        let clients = BTreeMap::from([(1, with_gtid.clone())]);
        let expected = StartPosition::Gtid(GtidState::parse(GTID).unwrap());
        assert_eq!(start_position(&clients, None, true), expected);
        // gtidon off, or a GTID that does not parse: the file position.
        assert_eq!(
            start_position(&clients, None, false),
            file("mysql-bin.000001", 900)
        );
        if let Some(cursor) = with_gtid.cursor.as_mut() {
            cursor.position.gtid = "not a gtid".into();
        }
        let clients = BTreeMap::from([(1, with_gtid)]);
        assert_eq!(
            start_position(&clients, None, true),
            file("mysql-bin.000001", 900)
        );
    }

    #[test]
    fn minimum_cursor_picks_the_earliest_position() {
        let mut clients = BTreeMap::new();
        clients.insert(1, record("mysql-bin.000002", 10));
        clients.insert(2, record("mysql-bin.000001", 900));
        clients.insert(3, ClientRecord::default());
        assert_eq!(minimum_cursor(&clients).unwrap().position.position, 900);
    }
}
