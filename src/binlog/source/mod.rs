//! The live binlog source: a replica connection that survives dropped
//! connections and source restarts without skipping or repeating a change.
//!
//! Progress is tracked at two points. The *checkpoint* is the end of the
//! last complete event group (transaction, DDL): a new connection always
//! restarts there, in file-position or GTID mode. The *last emitted* entry
//! is what downstream already has: entries re-read after a reconnect up to
//! that point are dropped, so a transaction cut by a disconnect continues
//! exactly where it stopped.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use mysql_common::binlog::{consts::EventType as Bt, events::Event};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::adapter::StreamAdapter;
use super::{
    change::{ChangeEvent, ChangeKind},
    decode::{DecodeError, Decoder},
    event::{ChecksumError, SourceEvent},
    file::PayloadError,
    gtid::GtidState,
    guard::ParseError,
    position::{LogPosition, StartPosition},
    replica::{self, DumpMode, DumpStart, ReplicaConfig, ReplicaError, ServerInfo},
    schema::{self, SharedLookup},
};

mod adapter;

/// Settings of a live source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// How to reach the source.
    pub replica: ReplicaConfig,
    /// Where to start when there is no checkpoint yet.
    pub start: StartPosition,
    /// Resume by GTID after a reconnect (`canal.instance.gtidon`), which
    /// also survives a switch to another source server.
    pub resume_by_gtid: bool,
    /// Back-off between reconnect attempts: doubles from `min` up to `max`.
    pub reconnect_min: Duration,
    /// The longest back-off between reconnect attempts.
    pub reconnect_max: Duration,
}

/// Why the source stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Talking to the source failed in a way retrying cannot fix.
    #[error("{0}")]
    Replica(#[from] ReplicaError),
    /// An event could not be turned into changes.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// An event arrived damaged.
    #[error("the binlog event at {journal}:{offset} is damaged: {damage}")]
    Damaged {
        /// The binlog file the event is in.
        journal: String,
        /// Where the event starts.
        offset: u64,
        /// What is wrong with it.
        damage: Damage,
    },
}

/// What is wrong with a damaged event.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    /// A ROTATE event did not parse.
    #[error("{0}")]
    Rotate(ParseError),
    /// The event's checksum does not match its bytes.
    #[error("{0}")]
    Checksum(ChecksumError),
    /// A TRANSACTION_PAYLOAD could not be unpacked.
    #[error("TRANSACTION_PAYLOAD: {0}")]
    Payload(PayloadError),
    /// Events of a TRANSACTION_PAYLOAD never arrived.
    #[error("{missing} events of a TRANSACTION_PAYLOAD are missing from the stream")]
    PayloadIncomplete {
        /// How many of the payload's events did not arrive.
        missing: usize,
    },
}

/// Counters a metrics endpoint reads.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Events read (each event unpacked from a payload counts).
    pub events: AtomicU64,
    /// Binlog bytes read.
    pub bytes: AtomicU64,
    /// Changes sent downstream.
    pub entries: AtomicU64,
    /// Connections lost and retried.
    pub reconnects: AtomicU64,
    /// Binlog time of the last event read, or the local time of the last
    /// heartbeat (the source had nothing newer), ms since the epoch.
    pub last_event_ms: AtomicI64,
    /// When the last event or heartbeat arrived, ms since the epoch (local clock).
    pub last_seen_ms: AtomicI64,
    /// The last checkpoint (end of a complete event group).
    pub position: std::sync::Mutex<Option<Checkpoint>>,
}

/// The end of the last complete event group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The binlog file.
    pub journal: String,
    /// The offset where the next event group starts.
    pub position: u64,
    /// The executed GTID state there, when complete (known from the start
    /// of the stream, not just from the GTIDs seen since).
    pub gtid: Option<GtidState>,
}

/// A replica connection that feeds decoded changes into a channel.
pub struct BinlogSource {
    config: SourceConfig,
    decoder: Decoder,
    stats: Arc<SourceStats>,
    checkpoint: Option<Checkpoint>,
    last_emitted: Option<(String, u64)>,
    /// Changes before this time (ms) are skipped (start by timestamp).
    skip_before_ms: Option<i64>,
    gtid_complete: bool,
    schema: Option<SharedLookup>,
    /// The lookup only refines `mysqlType` (the source has
    /// binlog_row_metadata=FULL): failing to load a definition falls back
    /// to the binlog's type instead of stopping.
    schema_optional: bool,
    /// Set once the lookup was tried (kept or not), so a reconnect does not
    /// scan the binlog again.
    schema_tried: bool,
    filter_updates: Option<tokio::sync::watch::Receiver<Arc<super::filter::EventFilter>>>,
}

impl BinlogSource {
    /// A source that has not connected yet; [`BinlogSource::run`] does.
    pub fn new(config: SourceConfig, decoder: Decoder) -> Self {
        BinlogSource {
            config,
            decoder,
            stats: Arc::default(),
            checkpoint: None,
            last_emitted: None,
            skip_before_ms: None,
            gtid_complete: false,
            schema: None,
            schema_optional: false,
            schema_tried: false,
            filter_updates: None,
        }
    }

    /// Applies filters sent on `updates` (a client subscribed with its own)
    /// to the events read from then on.
    pub fn with_filter_updates(
        mut self,
        updates: tokio::sync::watch::Receiver<Arc<super::filter::EventFilter>>,
    ) -> Self {
        self.filter_updates = Some(updates);
        self
    }

    /// Applies a filter change if one is waiting.
    fn apply_filter_update(&mut self) {
        if let Some(updates) = self.filter_updates.as_mut()
            && updates.has_changed().unwrap_or(false)
        {
            let filter = updates.borrow_and_update().clone();
            tracing::info!(
                include = filter.tables.include_text(),
                exclude = filter.tables.exclude_text(),
                "table filter changed"
            );
            self.decoder.set_filter(filter);
        }
    }

    /// The counters, shared with whoever reports them.
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    /// The last resume point reached.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// Streams until `cancel` fires (`Ok`) or a failure that retrying cannot
    /// fix (`Err`). Sending into `sink` waits when it is full, which holds
    /// the source back instead of buffering without bound.
    pub async fn run(
        &mut self,
        sink: mpsc::Sender<ChangeEvent>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut backoff = self.config.reconnect_min;
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                outcome = self.stream_once(&sink, &cancel) => outcome,
                _ = cancel.cancelled() => return Ok(()),
            };
            match outcome {
                Ok(Stop::Cancelled) => return Ok(()),
                Ok(Stop::SinkClosed) => return Ok(()),
                Err(SourceError::Replica(error)) if !error.is_fatal() => {
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff = self.config.reconnect_min;
                    }
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        checkpoint = ?self.checkpoint,
                        "binlog connection lost; reconnecting"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(self.config.reconnect_max);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One connection: connect, position, read until it breaks.
    async fn stream_once(
        &mut self,
        sink: &mpsc::Sender<ChangeEvent>,
        cancel: &CancellationToken,
    ) -> Result<Stop, SourceError> {
        let (mut conn, info) = replica::connect_and_probe(&self.config.replica).await?;
        let start = self.dump_start(&mut conn, &info).await?;
        tracing::info!(
            source = %self.config.replica.address,
            version = %info.version,
            start = ?start,
            full_row_metadata = info.full_row_metadata,
            "starting binlog dump"
        );
        if let DumpStart::Gtid(state) = &start {
            self.decoder.set_gtid_state(Some(state.clone()));
        }
        self.decoder.reset_stream();
        self.prepare_schema_lookup(&info, &start).await?;
        let mut stream =
            replica::open_stream(conn, &info, &self.config.replica, &start, DumpMode::Follow)
                .await?;
        let mut adapter = StreamAdapter::new(&info, &start);
        let idle_limit = self.config.replica.heartbeat * 3 + Duration::from_secs(5);
        let mut changes = Vec::new();
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(idle_limit, stream.next()) => next,
                _ = cancel.cancelled() => return Ok(Stop::Cancelled),
            };
            let event = match next {
                Err(_) => return Err(ReplicaError::StreamIdle { waited: idle_limit }.into()),
                Ok(None) => return Err(ReplicaError::StreamClosed.into()),
                Ok(Some(Err(error))) => return Err(replica::dump_error(error).into()),
                Ok(Some(Ok(event))) => event,
            };
            self.note_arrival(&event);
            self.apply_filter_update();
            let Some(event) = adapter.place(event)? else {
                continue;
            };
            self.note_placed(&event);
            self.decode_with_reloads(&event, &mut changes).await?;
            if !self.emit(sink, &mut changes).await {
                return Ok(Stop::SinkClosed);
            }
            self.advance_checkpoint(&event);
        }
    }

    /// Builds the information_schema lookup the decoder needs: without full
    /// row metadata a mandatory one, once (its DDL tracking keeps it true
    /// across reconnects); with it, an optional one for declared types, tried
    /// once whether or not it loads.
    async fn prepare_schema_lookup(
        &mut self,
        info: &ServerInfo,
        start: &DumpStart,
    ) -> Result<(), SourceError> {
        let tables = self.decoder.filter().tables.clone();
        if !info.full_row_metadata && (self.schema.is_none() || self.schema_optional) {
            // Without table-map metadata, names come from information_schema,
            // checked against the DDL in the binlog (see schema.rs).
            let lookup =
                schema::initial_lookup(&self.config.replica, info, &tables, start, None).await?;
            self.install_lookup(lookup, false);
        } else if info.full_row_metadata && !self.schema_tried {
            // The binlog describes every table but its declared types
            // (display widths, ZEROFILL, FLOAT(M,D), INET6...), which canal
            // prints: take them from the same position-checked lookup, and
            // keep the binlog's types wherever it cannot answer.
            self.schema_tried = true;
            let limit = Some(schema::DECLARED_TYPES_SCAN_LIMIT);
            match schema::initial_lookup(&self.config.replica, info, &tables, start, limit).await {
                Ok(lookup) => self.install_lookup(lookup, true),
                Err(error) => tracing::info!(
                    %error,
                    "declared column types are not available; mysqlType comes from the binlog's \
                     table metadata (display widths and ZEROFILL are not in it)"
                ),
            }
        }
        Ok(())
    }

    /// Records that the source is alive: every event counts, and a
    /// heartbeat also says that nothing newer is waiting.
    fn note_arrival(&self, event: &Event) {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        self.stats.last_seen_ms.store(now_ms, Ordering::Relaxed);
        if event.header().event_type_raw() == Bt::HEARTBEAT_EVENT as u8 {
            // The source sends heartbeats only when it has nothing newer:
            // everything up to now has been read, so there is no delay.
            self.stats.last_event_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Counts an event with a place in the binlog.
    fn note_placed(&self, event: &SourceEvent) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        if !event.in_payload {
            self.stats
                .bytes
                .fetch_add(event.end - event.start, Ordering::Relaxed);
        }
        let timestamp = i64::from(event.event.header().timestamp()) * 1000;
        if timestamp > 0 {
            self.stats.last_event_ms.store(timestamp, Ordering::Relaxed);
        }
    }

    /// Sends the decoded changes downstream has not seen; `false` once the
    /// sink is closed.
    async fn emit(
        &mut self,
        sink: &mpsc::Sender<ChangeEvent>,
        changes: &mut Vec<ChangeEvent>,
    ) -> bool {
        for change in changes.drain(..) {
            if !self.should_emit(&change) {
                continue;
            }
            self.last_emitted = Some((
                change.position.journal_name.clone(),
                change.position.position,
            ));
            self.stats.entries.fetch_add(1, Ordering::Relaxed);
            if sink.send(change).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Moves the checkpoint to the end of `event` when it closes an event
    /// group and has a place in a binlog file.
    fn advance_checkpoint(&mut self, event: &SourceEvent) {
        if self.decoder.in_group() || event.end == 0 || event.is_artificial() {
            return;
        }
        let checkpoint = Checkpoint {
            journal: event.journal.to_string(),
            position: event.end,
            gtid: self
                .gtid_complete
                .then(|| self.decoder.gtid_state().cloned())
                .flatten(),
        };
        *self
            .stats
            .position
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(checkpoint.clone());
        self.checkpoint = Some(checkpoint);
    }

    fn install_lookup(&mut self, lookup: schema::InfoSchemaLookup, optional: bool) {
        let shared = SharedLookup(Arc::new(std::sync::Mutex::new(lookup)));
        self.decoder
            .set_schema_lookup(Some(Box::new(shared.clone())));
        self.schema = Some(shared);
        self.schema_optional = optional;
        self.schema_tried = true;
    }

    /// Decodes an event, first reloading table definitions the schema
    /// lookup asks for.
    async fn decode_with_reloads(
        &mut self,
        event: &SourceEvent,
        changes: &mut Vec<ChangeEvent>,
    ) -> Result<(), SourceError> {
        loop {
            match self.decoder.decode(event, changes) {
                Err(DecodeError::SchemaReload {
                    journal,
                    offset,
                    schema,
                    table,
                }) => {
                    let Some(shared) = &self.schema else {
                        return Err(SourceError::Decode(DecodeError::SchemaReload {
                            journal,
                            offset,
                            schema,
                            table,
                        }));
                    };
                    let at = LogPosition::new(journal, offset);
                    let scan_from = shared.scan_start(&at);
                    match schema::reload_table(
                        &self.config.replica,
                        &schema,
                        &table,
                        &at,
                        &scan_from,
                    )
                    .await
                    {
                        Ok(reloaded) => shared.apply_reload(reloaded),
                        Err(error) if self.schema_optional => {
                            // Only mysqlType depends on it: keep decoding
                            // with the binlog's types for this table until
                            // its next DDL.
                            tracing::info!(
                                %error,
                                table = %format!("{schema}.{table}"),
                                "cannot reload the table's definition; its mysqlType comes from \
                                 the binlog until its next DDL"
                            );
                            shared.unavailable(&schema, &table, error.to_string());
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                other => return other.map_err(SourceError::from),
            }
        }
    }

    /// Drops what downstream already has (re-read after a reconnect) and
    /// what lies before a start timestamp.
    fn should_emit(&mut self, change: &ChangeEvent) -> bool {
        if let Some((journal, offset)) = &self.last_emitted
            && *journal == change.position.journal_name
            && change.position.position <= *offset
        {
            return false;
        }
        if let Some(since) = self.skip_before_ms {
            let opens = matches!(
                change.kind,
                ChangeKind::TransactionBegin | ChangeKind::Ddl | ChangeKind::Query
            ) || (change.kind == ChangeKind::Rows && !self.decoder.in_transaction());
            if opens && change.position.timestamp_ms >= since {
                self.skip_before_ms = None;
            } else {
                return false;
            }
        }
        true
    }

    /// Where this connection starts: the checkpoint, else the configured
    /// start position resolved against the source.
    async fn dump_start(
        &mut self,
        conn: &mut mysql_async::Conn,
        info: &ServerInfo,
    ) -> Result<DumpStart, SourceError> {
        if let Some(checkpoint) = &self.checkpoint {
            return Ok(match (&checkpoint.gtid, self.config.resume_by_gtid) {
                (Some(gtid), true) => DumpStart::Gtid(gtid.clone()),
                _ => DumpStart::File {
                    journal: checkpoint.journal.clone(),
                    position: checkpoint.position,
                },
            });
        }
        let start = match self.config.start.clone() {
            StartPosition::FilePosition {
                journal_name,
                position,
            } => {
                if self.config.resume_by_gtid && info.is_mariadb() {
                    // Learn the GTID position so later reconnects can use it.
                    if let Some(pos) =
                        replica::mariadb_gtid_at(conn, &journal_name, position).await?
                    {
                        self.decoder.set_gtid_state(Some(GtidState::Mariadb(pos)));
                        self.gtid_complete = true;
                    }
                }
                DumpStart::File {
                    journal: journal_name,
                    position,
                }
            }
            StartPosition::Gtid(state) => {
                self.gtid_complete = true;
                DumpStart::Gtid(state)
            }
            StartPosition::Latest => {
                let end = replica::binlog_end(conn, info).await?;
                if let Some(gtid) = end.gtid {
                    self.decoder.set_gtid_state(Some(gtid));
                    self.gtid_complete = true;
                }
                DumpStart::File {
                    journal: end.journal,
                    position: end.position,
                }
            }
            StartPosition::Timestamp(ms) => {
                let journal = self.file_for_timestamp(conn, ms).await?;
                self.skip_before_ms = Some(ms);
                // A file start has PREVIOUS_GTIDS / GTID_LIST: the state is complete.
                self.gtid_complete = true;
                DumpStart::File {
                    journal,
                    position: 4,
                }
            }
        };
        Ok(start)
    }

    /// The newest binlog file created at or before `ms`: changes at `ms`
    /// are in it or later ones.
    async fn file_for_timestamp(
        &self,
        conn: &mut mysql_async::Conn,
        ms: i64,
    ) -> Result<String, SourceError> {
        let files = replica::binlog_files(conn).await?;
        let mut chosen = files.first().ok_or(ReplicaError::NoBinlogFiles)?;
        for file in files.iter().rev() {
            let created = self.file_created_ms(&file.name).await?;
            if created <= ms {
                chosen = file;
                break;
            }
        }
        Ok(chosen.name.clone())
    }

    /// The creation time of a binlog file: its FORMAT_DESCRIPTION event's.
    async fn file_created_ms(&self, file: &str) -> Result<i64, SourceError> {
        let start = DumpStart::File {
            journal: file.to_owned(),
            position: 4,
        };
        let (mut stream, _) = replica::open_side_dump(
            &self.config.replica,
            self.config
                .replica
                .server_id
                .wrapping_add(TIMESTAMP_PROBE_ID_OFFSET),
            &start,
            DumpMode::Follow,
        )
        .await?;
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(10), stream.next()).await
        {
            let event = event.map_err(replica::dump_error)?;
            if event.header().event_type_raw() == Bt::FORMAT_DESCRIPTION_EVENT as u8 {
                let _ = stream.close().await;
                return Ok(i64::from(event.header().timestamp()) * 1000);
            }
        }
        Err(ReplicaError::FileStartUnread {
            file: file.to_owned(),
        }
        .into())
    }
}

/// Added to the replica's server id for the dump that reads a file's
/// creation time, so that it does not displace the main dump.
const TIMESTAMP_PROBE_ID_OFFSET: u32 = 1_000_000_000;

enum Stop {
    Cancelled,
    SinkClosed,
}
