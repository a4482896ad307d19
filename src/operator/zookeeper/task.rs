//! The task behind one watched destination: follows its shared session,
//! re-reads everything on every new session (and on reconnection, and
//! every resync period), and publishes the view when it changes.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, Error as ZkError, SessionState};

use super::{
    ObservedKey, ObserverSettings,
    key::Paths,
    session::{Link, SharedSession, ended},
    track::{Fired, Tracker},
    view::Observation,
};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the view goes.
pub(crate) struct Publisher {
    pub key: ObservedKey,
    pub sender: watch::Sender<Observation>,
    pub changes: broadcast::Sender<ObservedKey>,
}

impl Publisher {
    fn publish(&self, observation: Observation) {
        let changed = self.sender.send_if_modified(|current| {
            if *current == observation {
                false
            } else {
                *current = observation;
                true
            }
        });
        if changed {
            // No listener is fine.
            let _ = self.changes.send(self.key.clone());
        }
    }
}

enum Exit {
    Cancelled,
    /// The session ended (expired, closed): wait for the next one.
    SessionEnded,
}

/// Watches `paths` through `session` until `cancel`.
pub(crate) async fn run(
    session: Arc<SharedSession>,
    paths: Paths,
    publisher: Publisher,
    settings: ObserverSettings,
    cancel: CancellationToken,
) {
    let mut link = session.link();
    let mut followed = 0;
    loop {
        let current = link.borrow_and_update().clone();
        match current {
            Link::Ready { client, generation }
                if generation != followed || !ended(client.state()) =>
            {
                if generation == followed {
                    // Left early on a live session: try again, gently.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                followed = generation;
                let exit = follow(
                    client, generation, &paths, &publisher, &settings, &mut link, &cancel,
                )
                .await;
                match exit {
                    Exit::Cancelled => return,
                    Exit::SessionEnded => continue,
                }
            }
            Link::Ready { .. } | Link::Connecting => {}
            Link::Unreachable(reason) => {
                publisher.publish(Observation::Unreachable(reason.to_string()))
            }
        }
        tokio::select! {
            changed = link.changed() => if changed.is_err() { return },
            _ = cancel.cancelled() => return,
        }
    }
}

fn session_gone(error: &ZkError) -> bool {
    matches!(
        error,
        ZkError::SessionExpired | ZkError::ClientClosed | ZkError::AuthFailed
    )
}

fn describe(error: &ZkError, paths: &Paths) -> String {
    match error {
        ZkError::NoAuth => format!(
            "not authorized to read {}: its ACL does not grant the operator's ZooKeeper \
             credentials (spec.zookeeper.auth)",
            paths.destination
        ),
        error => format!("cannot read {}: {error}", paths.destination),
    }
}

/// Follows one session until it ends or `cancel`.
async fn follow(
    client: Client,
    generation: u64,
    paths: &Paths,
    publisher: &Publisher,
    settings: &ObserverSettings,
    link: &mut watch::Receiver<Link>,
    cancel: &CancellationToken,
) -> Exit {
    let mut states = client.state_watcher();
    let mut follower = Follower {
        tracker: Tracker::new(client, paths.clone()),
        paths,
        publisher,
        settings,
        cancel,
        stale: true,
        failing_since: None,
        backoff: MIN_BACKOFF,
        disconnected: None,
        reported_disconnection: false,
    };
    let mut resync = tokio::time::interval_at(Instant::now() + settings.resync, settings.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if follower.stale
            && let Some(exit) = follower.read_all().await
        {
            return exit;
        }
        let reconnect_deadline = follower.reconnect_deadline();
        let exit = tokio::select! {
            fired = follower.tracker.next_fired(), if !follower.stale => follower.on_fired(fired).await,
            _ = tokio::time::sleep(follower.backoff), if follower.stale => {
                follower.backoff = (follower.backoff * 2).min(MAX_BACKOFF);
                None
            }
            state = states.changed() => follower.on_state(state),
            _ = tokio::time::sleep_until(reconnect_deadline.unwrap_or_else(Instant::now)), if reconnect_deadline.is_some() => {
                follower.report_disconnection();
                None
            }
            _ = resync.tick() => {
                follower.stale = true;
                None
            }
            changed = link.changed() => match changed {
                Err(_) => Some(Exit::Cancelled),
                Ok(()) => (!is_current(&link.borrow(), generation)).then_some(Exit::SessionEnded),
            },
            _ = cancel.cancelled() => Some(Exit::Cancelled),
        };
        if let Some(exit) = exit {
            return exit;
        }
    }
}

/// Whether `link` still holds the session of `generation`.
fn is_current(link: &Link, generation: u64) -> bool {
    matches!(link, Link::Ready { generation: g, .. } if *g == generation)
}

/// One session being followed: its tracker, and how reads have gone.
/// Each method that can end the following returns the `Exit`.
struct Follower<'a> {
    tracker: Tracker,
    paths: &'a Paths,
    publisher: &'a Publisher,
    settings: &'a ObserverSettings,
    cancel: &'a CancellationToken,
    /// A full read is due: at the start, after a failed read, after a
    /// reconnection (events may have been missed), every resync period.
    stale: bool,
    /// Since when reads fail without a success in between.
    failing_since: Option<Instant>,
    /// The wait before the next full read after a failed one.
    backoff: Duration,
    /// Since when the connection is lost (the session may still live).
    disconnected: Option<Instant>,
    /// Whether the lost connection was already reported as unreachable.
    reported_disconnection: bool,
}

impl Follower<'_> {
    /// Reads every node again and publishes the view.
    async fn read_all(&mut self) -> Option<Exit> {
        let read = self.tracker.read_all();
        let Some(read) = bounded(read, self.settings.request_timeout(), self.cancel).await else {
            return Some(Exit::Cancelled);
        };
        match read {
            Ok(()) => {
                self.stale = false;
                self.failing_since = None;
                self.backoff = MIN_BACKOFF;
                self.publisher
                    .publish(Observation::Seen(self.tracker.view()));
                None
            }
            Err(error) => self.failed(error),
        }
    }

    /// Re-reads the nodes of `fired` and of every watch that fired with
    /// it, then publishes the view once; a failed read makes a full read
    /// due.
    async fn on_fired(&mut self, fired: Fired) -> Option<Exit> {
        let mut batch = vec![fired];
        while let Some(more) = self.tracker.fired_now() {
            batch.push(more);
        }
        for fired in batch {
            if fired.session_ended() {
                return Some(Exit::SessionEnded);
            }
            let read = self.tracker.on_fired(fired);
            let Some(read) = bounded(read, self.settings.request_timeout(), self.cancel).await
            else {
                return Some(Exit::Cancelled);
            };
            if let Err(error) = read {
                self.stale = true;
                return self.failed(error);
            }
        }
        self.publisher
            .publish(Observation::Seen(self.tracker.view()));
        None
    }

    /// A read failed: the session is gone, or the view turns unreachable
    /// once reads have failed long enough (at once when not authorized).
    fn failed(&mut self, error: ZkError) -> Option<Exit> {
        if session_gone(&error) {
            return Some(Exit::SessionEnded);
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        tracing::debug!(destination = %self.paths.destination, %error, "ZooKeeper read failed; retrying");
        if since.elapsed() >= self.settings.unreachable_after || error == ZkError::NoAuth {
            self.publisher
                .publish(Observation::Unreachable(describe(&error, self.paths)));
        }
        None
    }

    /// The connection came or went; any other state ends the session.
    fn on_state(&mut self, state: SessionState) -> Option<Exit> {
        match state {
            SessionState::Disconnected => {
                self.disconnected.get_or_insert_with(Instant::now);
            }
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                if self.disconnected.take().is_some() {
                    self.reported_disconnection = false;
                    self.stale = true;
                }
            }
            _ => return Some(Exit::SessionEnded),
        }
        None
    }

    /// When a lost connection is to be reported, unless it already was.
    fn reconnect_deadline(&self) -> Option<Instant> {
        self.disconnected
            .filter(|_| !self.reported_disconnection)
            .map(|at| at + self.settings.unreachable_after)
    }

    fn report_disconnection(&mut self) {
        self.reported_disconnection = true;
        self.publisher.publish(Observation::Unreachable(format!(
            "lost the connection to ZooKeeper {:?} ago; reconnecting",
            self.disconnected.map(|at| at.elapsed()).unwrap_or_default()
        )));
    }
}

/// `read` within `timeout`; `None` when cancelled first.
async fn bounded(
    read: impl Future<Output = Result<(), ZkError>>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Option<Result<(), ZkError>> {
    tokio::select! {
        read = tokio::time::timeout(timeout, read) => Some(read.unwrap_or(Err(ZkError::Timeout))),
        _ = cancel.cancelled() => None,
    }
}
