//! The event store: a bounded buffer per destination between the binlog
//! source and the clients, with canal's batch, ack and rollback rules.
//!
//! Events are kept in order with a sequence number. Every subscribed client
//! has a read position, an ack position and its outstanding batches; an
//! event leaves the store once every client has acknowledged it. The store
//! holds at most `capacity_events` events and `capacity_bytes` bytes of
//! serialized entries: a full store makes `put` wait, which holds the
//! binlog source back instead of growing memory or dropping events.

mod state;

use std::{sync::Mutex, time::Duration};

use tokio::sync::Notify;

pub use state::{AckError, Batch, ClientId, Cursor, ResumePoint, StoreState, StoredEvent};

/// How the size of a GET is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMode {
    /// `fetch_size` counts entries.
    ItemSize,
    /// `fetch_size` counts units of `memunit` bytes (canal's default).
    #[default]
    MemSize,
}

/// Store sizing and batching, from canal.properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// At most this many entries held.
    pub capacity_events: usize,
    /// At most this many bytes of serialized entries held.
    pub capacity_bytes: usize,
    /// How a GET's size counts.
    pub batch_mode: BatchMode,
    /// Bytes per unit in MEMSIZE mode.
    pub memunit: usize,
    /// A DDL entry is always alone in its batch.
    pub ddl_isolation: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            capacity_events: 16_384,
            capacity_bytes: 16_384 * 1024,
            batch_mode: BatchMode::MemSize,
            memunit: 1024,
            ddl_isolation: false,
        }
    }
}

/// How long a GET may wait (canal's `timeout` and `unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Return at once with what there is.
    None,
    /// Wait until a full batch is available.
    Full,
    /// Wait at most this long, then return what there is.
    Up(Duration),
}

impl Wait {
    /// canal's rules: -1 → no wait; other values ≤ 0 (an unset field reads
    /// 0) → wait for a full batch; > 0 → wait at most that long in `unit`
    /// (0 ns, 1 µs, 2 ms, 3 s, 4 min, 5 h, 6 days, anything else ms).
    pub fn from_request(timeout: Option<i64>, unit: Option<i32>) -> Wait {
        let timeout = timeout.unwrap_or(0);
        if timeout == -1 {
            return Wait::None;
        }
        if timeout <= 0 {
            return Wait::Full;
        }
        let amount = timeout as u64;
        let duration = match unit.unwrap_or(2) {
            0 => Duration::from_nanos(amount),
            1 => Duration::from_micros(amount),
            3 => Duration::from_secs(amount),
            4 => Duration::from_secs(amount.saturating_mul(60)),
            5 => Duration::from_secs(amount.saturating_mul(3600)),
            6 => Duration::from_secs(amount.saturating_mul(86_400)),
            _ => Duration::from_millis(amount),
        };
        Wait::Up(duration)
    }
}

/// Why a store operation could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The destination stopped here.
    #[error("the store is closed")]
    Closed,
    /// An ack or rollback canal refuses.
    #[error("{0}")]
    Ack(#[from] AckError),
}

/// The store of one destination, shared by its source task and sessions.
#[derive(Debug)]
pub struct EventStore {
    state: Mutex<StoreState>,
    /// Woken when events arrive (GETs wait on it).
    arrived: Notify,
    /// Woken when events leave (a full `put` waits on it).
    freed: Notify,
}

impl EventStore {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        EventStore {
            state: Mutex::new(StoreState::new(config)),
            arrived: Notify::new(),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        // Every mutation finishes before the lock is released and none can
        // panic half-way, so a poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the state (metrics, tests).
    pub fn with_state<T>(&self, f: impl FnOnce(&StoreState) -> T) -> T {
        f(&self.lock())
    }

    /// Adds an event, waiting while the store is full.
    pub async fn put(&self, event: StoredEvent) -> Result<(), StoreError> {
        let mut event = Some(event);
        self.when_ready(&self.freed, None, |state| {
            if !state.has_room_for(event.as_ref().map_or(0, |e| e.bytes.len())) {
                return None;
            }
            if let Some(event) = event.take() {
                state.push(event);
            }
            Some(Ok(()))
        })
        .await?;
        self.arrived.notify_waiters();
        Ok(())
    }

    /// Runs `attempt` under the lock until it gives a result, waiting for
    /// `wake` in between (until `deadline`, when there is one: `attempt`
    /// then runs once more and must decide). A closed store ends the wait.
    async fn when_ready<T>(
        &self,
        wake: &Notify,
        deadline: Option<tokio::time::Instant>,
        mut attempt: impl FnMut(&mut StoreState) -> Option<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        loop {
            // Registered before looking, so a wake-up between the look and
            // the wait is not lost.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            {
                let mut state = self.lock();
                if state.is_closed() {
                    return Err(StoreError::Closed);
                }
                if let Some(result) = attempt(&mut state) {
                    return result;
                }
            }
            match deadline {
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline, woken).await;
                }
                None => woken.await,
            }
        }
    }

    /// Registers a client (idempotent); `after` skips what it already
    /// acknowledged in an earlier run.
    pub fn subscribe(&self, client: ClientId, after: Option<ResumePoint>) {
        self.lock().subscribe(client, after);
    }

    /// Forgets a client; what only it held can leave.
    pub fn unsubscribe(&self, client: ClientId) {
        self.lock().unsubscribe(client);
        self.freed.notify_waiters();
    }

    /// Whether `client` is subscribed.
    pub fn is_subscribed(&self, client: ClientId) -> bool {
        self.lock().is_subscribed(client)
    }

    /// Takes the next batch for `client`, waiting as `wait` says. `None`
    /// when nothing is available (canal answers batch id -1).
    pub async fn get(
        &self,
        client: ClientId,
        fetch_size: i32,
        wait: Wait,
    ) -> Result<Option<Batch>, StoreError> {
        let deadline = match wait {
            Wait::Up(duration) => Some(tokio::time::Instant::now() + duration),
            _ => None,
        };
        self.when_ready(&self.arrived, deadline, |state| {
            let full = state.has_full_batch(client, fetch_size);
            let expired = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            (full || wait == Wait::None || expired).then(|| {
                state
                    .take_batch(client, fetch_size)
                    .map_err(StoreError::from)
            })
        })
        .await
    }

    /// Acknowledges the oldest outstanding batch; returns the cursor it moves
    /// the client to, if the batch holds an ack point.
    pub fn ack(&self, client: ClientId, batch_id: i64) -> Result<Option<Cursor>, StoreError> {
        let cursor = self.lock().ack(client, batch_id)?;
        self.freed.notify_waiters();
        Ok(cursor)
    }

    /// Rewinds the client to its last acknowledged event (`batch_id` 0: all
    /// batches; otherwise it must name the oldest).
    pub fn rollback(&self, client: ClientId, batch_id: i64) -> Result<(), StoreError> {
        self.lock().rollback(client, batch_id)?;
        self.arrived.notify_waiters();
        Ok(())
    }

    /// Wakes everyone waiting and refuses further puts and gets.
    pub fn close(&self) {
        self.lock().close();
        self.arrived.notify_waiters();
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
