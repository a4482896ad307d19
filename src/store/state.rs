//! The store's bookkeeping as a plain type: events, client positions,
//! batches. No waiting, no locking: [`super::EventStore`] wraps it.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::{
    binlog::change::ChangeKind, binlog::position::LogPosition, protocol::entry::EventType,
};

use super::{BatchMode, StoreConfig};

/// canal client ids are Java shorts ("1001").
pub type ClientId = i16;

/// One entry in the store.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The serialized canal Entry, shared with every client that reads it.
    pub bytes: Bytes,
    /// The event's start position, with time, server id and GTID.
    pub position: LogPosition,
    /// What the entry is (row change, transaction marker, DDL, ...).
    pub kind: ChangeKind,
    /// The header event type (DDL kinds, QUERY for other statements).
    pub event_type: EventType,
}

impl StoredEvent {
    /// canal's ack points: a transaction end, a transaction begin without
    /// GTID (with one, acking it would skip the transaction on a GTID
    /// resume), or a DDL proper (not a QUERY-typed statement).
    fn is_ack_point(&self) -> bool {
        match self.kind {
            ChangeKind::TransactionEnd => true,
            ChangeKind::TransactionBegin => self.position.gtid.is_empty(),
            ChangeKind::Ddl => self.event_type != EventType::Query,
            _ => false,
        }
    }

    fn is_ddl(&self) -> bool {
        self.kind == ChangeKind::Ddl
    }
}

/// A client's acknowledged position: the start of its last ack point,
/// which canal persists with `included=false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The acknowledged event's start.
    pub position: LogPosition,
}

/// Where a client resumes in a store that may start earlier (the source
/// starts at the minimum cursor of all clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The client's cursor from an earlier run.
    pub position: LogPosition,
}

/// A batch handed to a client.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The batch id the client acks or rolls back with.
    pub id: i64,
    /// The serialized entries.
    pub entries: Vec<Bytes>,
}

/// canal's ACK/ROLLBACK errors, with its texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("ack error , clientId:{client} batchId:{batch} is not exist , please check")]
    /// An ack of a batch the client does not hold.
    AckUnknown {
        /// The client.
        client: ClientId,
        /// The batch id given.
        batch: i64,
    },
    #[error("rollback error, clientId:{client} batchId:{batch} is not exist , please check")]
    /// A rollback of a batch the client does not hold.
    RollbackUnknown {
        /// The client.
        client: ClientId,
        /// The batch id given.
        batch: i64,
    },
    #[error("batchId:{batch} is not the firstly:{first}")]
    /// An ack or rollback of a batch that is not the oldest outstanding.
    NotFirst {
        /// The batch id given.
        batch: i64,
        /// The oldest outstanding batch.
        first: i64,
    },
    #[error("clientId:{client} should subscribe first")]
    /// A request from a client that did not subscribe.
    NotSubscribed {
        /// The client.
        client: ClientId,
    },
    /// The store is closed.
    #[error("the store is closed")]
    Closed,
}

#[derive(Debug, Clone)]
struct OpenBatch {
    id: i64,
    /// Sequence number after the batch's last event.
    end: u64,
    ack_point: Option<LogPosition>,
}

#[derive(Debug, Clone)]
struct ClientState {
    read: u64,
    acked: u64,
    batches: VecDeque<OpenBatch>,
    next_batch_id: i64,
    resume: Option<ResumePoint>,
}

impl ClientState {
    /// canal acks and rolls back the oldest outstanding batch only: `Ok`
    /// when `batch_id` is it; `NotFirst` for a newer one; `unknown()` for
    /// one the client does not hold.
    fn check_oldest(
        &self,
        batch_id: i64,
        unknown: impl FnOnce() -> AckError,
    ) -> Result<(), AckError> {
        let Some(first) = self.batches.front() else {
            return Err(unknown());
        };
        if first.id == batch_id {
            Ok(())
        } else if self.batches.iter().any(|b| b.id == batch_id) {
            Err(AckError::NotFirst {
                batch: batch_id,
                first: first.id,
            })
        } else {
            Err(unknown())
        }
    }
}

/// Events, client positions and batches of one destination.
#[derive(Debug)]
pub struct StoreState {
    config: StoreConfig,
    events: VecDeque<StoredEvent>,
    /// Total bytes put before each event (same indexes as `events`), so the
    /// bytes between two positions are one subtraction.
    offsets: VecDeque<u64>,
    /// Sequence number of `events[0]`.
    base: u64,
    /// Bytes put so far (the offset of the next event).
    put_bytes: u64,
    clients: BTreeMap<ClientId, ClientState>,
    closed: bool,
}

fn before(a: &LogPosition, b: &LogPosition) -> bool {
    (a.journal_name.as_str(), a.position) < (b.journal_name.as_str(), b.position)
}

impl StoreState {
    /// An empty store state.
    pub fn new(config: StoreConfig) -> Self {
        StoreState {
            config,
            events: VecDeque::new(),
            offsets: VecDeque::new(),
            base: 0,
            put_bytes: 0,
            clients: BTreeMap::new(),
            closed: false,
        }
    }

    /// Its sizing and batching.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn end(&self) -> u64 {
        self.base + self.events.len() as u64
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes of serialized entries held.
    pub fn bytes(&self) -> u64 {
        self.offsets
            .front()
            .map_or(0, |first| self.put_bytes - first)
    }

    /// Whether the store was closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Refuses further puts and gets.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Whether an event of `size` bytes fits. An event larger than the whole
    /// byte capacity still goes into an empty store, or it could never pass.
    pub fn has_room_for(&self, size: usize) -> bool {
        if self.events.is_empty() {
            return true;
        }
        self.events.len() < self.config.capacity_events
            && self.bytes() + size as u64 <= self.config.capacity_bytes as u64
    }

    /// Appends an event (after [`Self::has_room_for`]).
    pub fn push(&mut self, event: StoredEvent) {
        self.offsets.push_back(self.put_bytes);
        self.put_bytes += event.bytes.len() as u64;
        self.events.push_back(event);
    }

    /// Registers a client at the oldest held event (idempotent); `after` skips what it acknowledged in an earlier run.
    pub fn subscribe(&mut self, client: ClientId, after: Option<ResumePoint>) {
        let start = self.base;
        self.clients.entry(client).or_insert(ClientState {
            read: start,
            acked: start,
            batches: VecDeque::new(),
            next_batch_id: 1,
            resume: after,
        });
    }

    /// Forgets a client; what only it held leaves.
    pub fn unsubscribe(&mut self, client: ClientId) {
        self.clients.remove(&client);
        self.evict();
    }

    /// Whether `client` is subscribed.
    pub fn is_subscribed(&self, client: ClientId) -> bool {
        self.clients.contains_key(&client)
    }

    /// The subscribed clients, in id order.
    pub fn clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.clients.keys().copied()
    }

    /// Batches a client has not acknowledged yet.
    pub fn outstanding(&self, client: ClientId) -> usize {
        self.clients.get(&client).map_or(0, |c| c.batches.len())
    }

    fn event(&self, sequence: u64) -> Option<&StoredEvent> {
        let index = sequence.checked_sub(self.base)?;
        self.events.get(usize::try_from(index).ok()?)
    }

    fn offset(&self, sequence: u64) -> u64 {
        sequence
            .checked_sub(self.base)
            .and_then(|i| self.offsets.get(i as usize).copied())
            .unwrap_or(self.put_bytes)
    }

    /// Moves a resuming client past what it acknowledged in an earlier run:
    /// events before its cursor, and the acknowledged boundary at it.
    fn skip_acknowledged(&mut self, client: ClientId) {
        let Some(state) = self.clients.get(&client) else {
            return;
        };
        let Some(resume) = state.resume.clone() else {
            return;
        };
        if !state.batches.is_empty() {
            return;
        }
        let mut read = state.read;
        let mut done = false;
        while let Some(event) = self.event(read) {
            let at = event.position.journal_name == resume.position.journal_name
                && event.position.position == resume.position.position;
            let acknowledged = before(&event.position, &resume.position)
                || (at && matches!(event.kind, ChangeKind::TransactionEnd | ChangeKind::Ddl));
            if !acknowledged {
                done = true;
                break;
            }
            read += 1;
        }
        if let Some(state) = self.clients.get_mut(&client) {
            state.read = read;
            state.acked = read;
            if done {
                state.resume = None;
            }
        }
        self.evict();
    }

    /// Whether `client` could take a full batch now.
    pub fn has_full_batch(&mut self, client: ClientId, fetch_size: i32) -> bool {
        self.skip_acknowledged(client);
        let Some(state) = self.clients.get(&client) else {
            return false;
        };
        let available = self.end() - state.read;
        if available == 0 {
            return false;
        }
        let wanted = fetch_size.max(1) as u64;
        let full = match self.config.batch_mode {
            BatchMode::ItemSize => available >= wanted,
            BatchMode::MemSize => {
                self.put_bytes - self.offset(state.read) >= wanted * self.config.memunit as u64
            }
        };
        // With DDL isolation a DDL ends (or is) a batch, so it makes one full.
        full || (self.config.ddl_isolation
            && (state.read..self.end()).any(|s| self.event(s).is_some_and(StoredEvent::is_ddl)))
    }

    /// Takes the next batch for `client` (at least one event when any is
    /// available), or `None` when there is nothing.
    pub fn take_batch(
        &mut self,
        client: ClientId,
        fetch_size: i32,
    ) -> Result<Option<Batch>, AckError> {
        if self.closed {
            return Err(AckError::Closed);
        }
        self.skip_acknowledged(client);
        let state = self
            .clients
            .get(&client)
            .ok_or(AckError::NotSubscribed { client })?;
        let start = state.read;
        let limit = fetch_size.max(1) as u64;
        let byte_limit = limit * self.config.memunit as u64;
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        let mut sequence = start;
        let mut ack_point = None;
        while let Some(event) = self.event(sequence) {
            let reached = match self.config.batch_mode {
                BatchMode::ItemSize => entries.len() as u64 >= limit,
                // canal checks the size before adding: the entry that crosses
                // the limit is still included.
                BatchMode::MemSize => bytes > byte_limit,
            };
            if reached && !entries.is_empty() {
                break;
            }
            if self.config.ddl_isolation && event.is_ddl() && !entries.is_empty() {
                break;
            }
            entries.push(event.bytes.clone());
            bytes += event.bytes.len() as u64;
            if event.is_ack_point() {
                ack_point = Some(event.position.clone());
            }
            sequence += 1;
            if self.config.ddl_isolation && event.is_ddl() {
                break;
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let state = self
            .clients
            .get_mut(&client)
            .ok_or(AckError::NotSubscribed { client })?;
        let id = state.next_batch_id;
        state.next_batch_id += 1;
        state.read = sequence;
        state.batches.push_back(OpenBatch {
            id,
            end: sequence,
            ack_point,
        });
        Ok(Some(Batch { id, entries }))
    }

    /// Acknowledges a batch, which must be the client's oldest.
    pub fn ack(&mut self, client: ClientId, batch_id: i64) -> Result<Option<Cursor>, AckError> {
        let state = self
            .clients
            .get_mut(&client)
            .ok_or(AckError::NotSubscribed { client })?;
        state.check_oldest(batch_id, || AckError::AckUnknown {
            client,
            batch: batch_id,
        })?;
        let batch = state.batches.pop_front().ok_or(AckError::AckUnknown {
            client,
            batch: batch_id,
        })?;
        state.acked = batch.end;
        let cursor = batch.ack_point.map(|position| Cursor { position });
        self.evict();
        Ok(cursor)
    }

    /// Rewinds the client to its acknowledged position; every outstanding
    /// batch is delivered again. `batch_id` 0 means all batches; another
    /// id must be the oldest.
    pub fn rollback(&mut self, client: ClientId, batch_id: i64) -> Result<(), AckError> {
        let state = self
            .clients
            .get_mut(&client)
            .ok_or(AckError::NotSubscribed { client })?;
        if batch_id != 0 {
            state.check_oldest(batch_id, || AckError::RollbackUnknown {
                client,
                batch: batch_id,
            })?;
        }
        state.batches.clear();
        state.read = state.acked;
        Ok(())
    }

    /// Drops events every client has acknowledged.
    fn evict(&mut self) {
        let Some(oldest) = self.clients.values().map(|c| c.acked).min() else {
            return;
        };
        while self.base < oldest && !self.events.is_empty() {
            self.events.pop_front();
            self.offsets.pop_front();
            self.base += 1;
        }
    }
}
