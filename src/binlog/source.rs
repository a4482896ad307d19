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
use mysql_common::binlog::{
    consts::EventType as Bt,
    events::{Event, RotateEvent},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    change::{ChangeEvent, ChangeKind},
    decode::{DecodeError, Decoder},
    event::{SourceEvent, verify_checksum},
    file::unpack_transaction_payload,
    gtid::GtidState,
    position::{LogPosition, StartPosition},
    replica::{self, DumpStart, ReplicaConfig, ReplicaError, ServerInfo},
    schema::{self, SharedLookup},
};

/// Settings of a live source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub replica: ReplicaConfig,
    /// Where to start when there is no checkpoint yet.
    pub start: StartPosition,
    /// Resume by GTID after a reconnect (`canal.instance.gtidon`), which
    /// also survives a switch to another source server.
    pub resume_by_gtid: bool,
    /// Back-off between reconnect attempts: doubles from `min` up to `max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

/// Why the source stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Replica(ReplicaError),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("the binlog event at {journal}:{offset} is damaged: {reason}")]
    Damaged {
        journal: String,
        offset: u64,
        reason: String,
    },
}

/// Counters a metrics endpoint reads.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub entries: AtomicU64,
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
    pub journal: String,
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
        let mut conn = replica::connect(&self.config.replica)
            .await
            .map_err(SourceError::Replica)?;
        let info = replica::probe(&mut conn)
            .await
            .map_err(SourceError::Replica)?;
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
        if !info.full_row_metadata && (self.schema.is_none() || self.schema_optional) {
            // Without table-map metadata, names come from information_schema,
            // checked against the DDL in the binlog (see schema.rs).
            let tables = self.decoder.filter().tables.clone();
            let lookup = schema::initial_lookup(&self.config.replica, &info, &tables, &start, None)
                .await
                .map_err(SourceError::Replica)?;
            self.install_lookup(lookup, false);
        } else if info.full_row_metadata && !self.schema_tried {
            // The binlog describes every table but its declared types
            // (display widths, ZEROFILL, FLOAT(M,D), INET6...), which canal
            // prints: take them from the same position-checked lookup, and
            // keep the binlog's types wherever it cannot answer.
            self.schema_tried = true;
            let tables = self.decoder.filter().tables.clone();
            let limit = Some(schema::DECLARED_TYPES_SCAN_LIMIT);
            match schema::initial_lookup(&self.config.replica, &info, &tables, &start, limit).await
            {
                Ok(lookup) => self.install_lookup(lookup, true),
                Err(error) => tracing::info!(
                    %error,
                    "declared column types are not available; mysqlType comes from the binlog's \
                     table metadata (display widths and ZEROFILL are not in it)"
                ),
            }
        }
        let mut stream = replica::open_stream(conn, &info, &self.config.replica, &start)
            .await
            .map_err(SourceError::Replica)?;
        let mut adapter = StreamAdapter::new(&info, &start);
        let idle_limit = self.config.replica.heartbeat * 3 + Duration::from_secs(5);
        let mut changes = Vec::new();
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(idle_limit, stream.next()) => next,
                _ = cancel.cancelled() => return Ok(Stop::Cancelled),
            };
            let event = match next {
                Err(_) => {
                    return Err(SourceError::Replica(ReplicaError::Transient(format!(
                        "no binlog event or heartbeat for {idle_limit:?}"
                    ))));
                }
                Ok(None) => {
                    return Err(SourceError::Replica(ReplicaError::Transient(
                        "the source closed the binlog stream".into(),
                    )));
                }
                Ok(Some(Err(error))) => return Err(SourceError::Replica(stream_error(error))),
                Ok(Some(Ok(event))) => event,
            };
            let now_ms = jiff::Timestamp::now().as_millisecond();
            self.stats.last_seen_ms.store(now_ms, Ordering::Relaxed);
            if event.header().event_type_raw() == Bt::HEARTBEAT_EVENT as u8 {
                // The source sends heartbeats only when it has nothing newer:
                // everything up to now has been read, so there is no delay.
                self.stats.last_event_ms.store(now_ms, Ordering::Relaxed);
            }
            self.apply_filter_update();
            if let Some(event) = adapter.place(event)? {
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
                self.decode_with_reloads(&event, &mut changes).await?;
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
                        return Ok(Stop::SinkClosed);
                    }
                }
                if !self.decoder.in_group() && event.end > 0 && !event.is_artificial() {
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
            }
        }
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
                        Err(error) => return Err(SourceError::Replica(error)),
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
        let fatal = SourceError::Replica;
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
                    if let Some(pos) = replica::mariadb_gtid_at(conn, &journal_name, position)
                        .await
                        .map_err(fatal)?
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
                let end = replica::binlog_end(conn, info).await.map_err(fatal)?;
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
        let files = replica::binlog_files(conn)
            .await
            .map_err(SourceError::Replica)?;
        let mut chosen = files.first().cloned().ok_or_else(|| {
            SourceError::Replica(ReplicaError::Fatal(
                "the source lists no binlog files".into(),
            ))
        })?;
        for file in files.iter().rev() {
            let created = self.file_created_ms(file).await?;
            if created <= ms {
                chosen = file.clone();
                break;
            }
        }
        Ok(chosen)
    }

    /// The creation time of a binlog file: its FORMAT_DESCRIPTION event's.
    async fn file_created_ms(&self, file: &str) -> Result<i64, SourceError> {
        let mut conn = replica::connect(&self.config.replica)
            .await
            .map_err(SourceError::Replica)?;
        let info = replica::probe(&mut conn)
            .await
            .map_err(SourceError::Replica)?;
        let start = DumpStart::File {
            journal: file.to_owned(),
            position: 4,
        };
        let mut config = self.config.replica.clone();
        // A different replica id so the probe does not displace the main dump.
        config.server_id = config.server_id.wrapping_add(1_000_000_000);
        let mut stream = replica::open_stream(conn, &info, &config, &start)
            .await
            .map_err(SourceError::Replica)?;
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(10), stream.next()).await
        {
            let event = event.map_err(|e| SourceError::Replica(stream_error(e)))?;
            if event.header().event_type_raw() == Bt::FORMAT_DESCRIPTION_EVENT as u8 {
                let _ = stream.close().await;
                return Ok(i64::from(event.header().timestamp()) * 1000);
            }
        }
        Err(SourceError::Replica(ReplicaError::Transient(format!(
            "could not read the start of binlog file {file}"
        ))))
    }
}

enum Stop {
    Cancelled,
    SinkClosed,
}

fn stream_error(error: mysql_async::Error) -> ReplicaError {
    match &error {
        mysql_async::Error::Server(server) if server.code == 1236 => ReplicaError::Fatal(format!(
            "the source stopped the binlog dump: {error} (the position may have been purged from \
             the source's binlog; reset the cursor to a position it still has)"
        )),
        _ => ReplicaError::Transient(format!("binlog stream failed: {error}")),
    }
}

/// Gives each event of a live stream its file and offsets: the journal from
/// ROTATE events, offsets from each header's end position, the payload's
/// position for events mysql_async unpacks from a TRANSACTION_PAYLOAD.
struct StreamAdapter {
    journal: Arc<str>,
    checksum: bool,
    payload: Option<PayloadInProgress>,
    seen_format: bool,
}

struct PayloadInProgress {
    start: u64,
    end: u64,
    inner_seen: usize,
    expected: usize,
}

impl StreamAdapter {
    fn new(info: &ServerInfo, start: &DumpStart) -> Self {
        let journal = match start {
            DumpStart::File { journal, .. } => journal.as_str(),
            DumpStart::Gtid(_) => "",
        };
        StreamAdapter {
            journal: Arc::from(journal),
            checksum: info.checksum,
            payload: None,
            seen_format: false,
        }
    }

    /// Places one stream event; `None` for events that only carry position.
    fn place(&mut self, event: Event) -> Result<Option<SourceEvent>, SourceError> {
        let header = event.header();
        let code = header.event_type_raw();
        let log_pos = u64::from(header.log_pos());
        let size = u64::from(header.event_size());
        if let Some(payload) = &mut self.payload {
            if log_pos == 0 && payload.inner_seen < payload.expected {
                payload.inner_seen += 1;
                let placed = SourceEvent {
                    event,
                    journal: self.journal.clone(),
                    start: payload.start,
                    end: payload.end,
                    in_payload: true,
                };
                return Ok(Some(placed));
            }
            self.payload = None;
        }
        let damaged = |reason: String| SourceError::Damaged {
            journal: self.journal.to_string(),
            offset: log_pos.saturating_sub(size),
            reason,
        };
        if code == Bt::ROTATE_EVENT as u8 {
            let rotate = super::guard::guarded(|| event.read_event::<RotateEvent<'_>>())
                .map_err(&damaged)?;
            let mut name = rotate.name_raw().to_vec();
            // The first (fake) ROTATE arrives before the FORMAT_DESCRIPTION
            // event, so the reader cannot know it carries a checksum, which
            // is left on the file name (mysql_async issue 189).
            if self.checksum && !self.seen_format && name.len() > 4 {
                name.truncate(name.len() - 4);
            }
            self.journal = Arc::from(String::from_utf8_lossy(&name).as_ref());
            return Ok(None);
        }
        if code == Bt::FORMAT_DESCRIPTION_EVENT as u8 {
            self.seen_format = true;
        }
        if code == Bt::HEARTBEAT_EVENT as u8 {
            return Ok(None);
        }
        verify_checksum(&event).map_err(|e| damaged(e.to_string()))?;
        let artificial = header.flags_raw() & super::event::ARTIFICIAL_FLAG != 0 || log_pos == 0;
        let (start, end) = if artificial || log_pos < size {
            (0, 0)
        } else {
            (log_pos - size, log_pos)
        };
        let placed = SourceEvent {
            event,
            journal: self.journal.clone(),
            start,
            end,
            in_payload: false,
        };
        if code == Bt::TRANSACTION_PAYLOAD_EVENT as u8 {
            // mysql_async unpacks the payload and yields its events next (with
            // log_pos 0); count them so that a payload it failed to unpack is
            // an error here rather than a silently missing transaction.
            let mut reader = mysql_common::binlog::EventStreamReader::new(
                mysql_common::binlog::consts::BinlogVersion::Version4,
            );
            let expected = unpack_transaction_payload(&mut reader, &placed)
                .map_err(|reason| damaged(format!("TRANSACTION_PAYLOAD: {reason}")))?
                .len();
            self.payload = Some(PayloadInProgress {
                start,
                end,
                inner_seen: 0,
                expected,
            });
        } else if let Some(payload) = &self.payload
            && payload.inner_seen < payload.expected
        {
            return Err(damaged(format!(
                "{} events of a TRANSACTION_PAYLOAD are missing from the stream",
                payload.expected - payload.inner_seen
            )));
        }
        Ok(Some(placed))
    }
}
