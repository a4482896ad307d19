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
    session::{Link, SharedSession},
    track::Tracker,
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
            Link::Unreachable(reason) => publisher.publish(Observation::Unreachable(reason)),
        }
        tokio::select! {
            changed = link.changed() => if changed.is_err() { return },
            _ = cancel.cancelled() => return,
        }
    }
}

fn ended(state: SessionState) -> bool {
    matches!(
        state,
        SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
    )
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
    let mut tracker = Tracker::new(client.clone(), paths.clone());
    let mut states = client.state_watcher();
    // A full read is due: at the start, after a failed read, after a
    // reconnection (events may have been missed), every resync period.
    let mut stale = true;
    let mut failing_since: Option<Instant> = None;
    let mut backoff = MIN_BACKOFF;
    let mut disconnected: Option<Instant> = None;
    let mut reported_disconnection = false;
    let mut resync = tokio::time::interval_at(Instant::now() + settings.resync, settings.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = settings.request_timeout();
    let failed = |error: ZkError, failing_since: &mut Option<Instant>| -> Option<Exit> {
        if session_gone(&error) {
            return Some(Exit::SessionEnded);
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        tracing::debug!(destination = %paths.destination, %error, "ZooKeeper read failed; retrying");
        if since.elapsed() >= settings.unreachable_after || error == ZkError::NoAuth {
            publisher.publish(Observation::Unreachable(describe(&error, paths)));
        }
        None
    };
    loop {
        if stale {
            let read = tokio::select! {
                read = tokio::time::timeout(timeout, tracker.read_all()) => read.unwrap_or(Err(ZkError::Timeout)),
                _ = cancel.cancelled() => return Exit::Cancelled,
            };
            match read {
                Ok(()) => {
                    stale = false;
                    failing_since = None;
                    backoff = MIN_BACKOFF;
                    publisher.publish(Observation::Seen(tracker.view()));
                }
                Err(error) => {
                    if let Some(exit) = failed(error, &mut failing_since) {
                        return exit;
                    }
                }
            }
        }
        let reconnect_deadline = disconnected
            .filter(|_| !reported_disconnection)
            .map(|at| at + settings.unreachable_after);
        tokio::select! {
            fired = tracker.next_fired(), if !stale => {
                let mut batch = vec![fired];
                while let Some(more) = tracker.fired_now() {
                    batch.push(more);
                }
                for fired in batch {
                    if fired.session_ended() {
                        return Exit::SessionEnded;
                    }
                    let read = tokio::select! {
                        read = tokio::time::timeout(timeout, tracker.on_fired(fired)) => read.unwrap_or(Err(ZkError::Timeout)),
                        _ = cancel.cancelled() => return Exit::Cancelled,
                    };
                    if let Err(error) = read {
                        stale = true;
                        if let Some(exit) = failed(error, &mut failing_since) {
                            return exit;
                        }
                        break;
                    }
                }
                if !stale {
                    publisher.publish(Observation::Seen(tracker.view()));
                }
            }
            _ = tokio::time::sleep(backoff), if stale => {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            state = states.changed() => match state {
                SessionState::Disconnected => {
                    disconnected.get_or_insert_with(Instant::now);
                }
                SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                    if disconnected.take().is_some() {
                        reported_disconnection = false;
                        stale = true;
                    }
                }
                _ => return Exit::SessionEnded,
            },
            _ = tokio::time::sleep_until(reconnect_deadline.unwrap_or_else(Instant::now)), if reconnect_deadline.is_some() => {
                reported_disconnection = true;
                publisher.publish(Observation::Unreachable(format!(
                    "lost the connection to ZooKeeper {:?} ago; reconnecting",
                    disconnected.map(|at| at.elapsed()).unwrap_or_default()
                )));
            }
            _ = resync.tick() => stale = true,
            changed = link.changed() => {
                if changed.is_err() {
                    return Exit::Cancelled;
                }
                let current = matches!(&*link.borrow(), Link::Ready { generation: g, .. } if *g == generation);
                if !current {
                    return Exit::SessionEnded;
                }
            }
            _ = cancel.cancelled() => return Exit::Cancelled,
        }
    }
}
