//! The operator's handle on ZooKeeper: one shared session per ensemble
//! (and credentials), one watching task per destination, and a stream of
//! "this destination changed" for the controller.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, Weak},
};

use futures_util::Stream;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{
    ObservedKey, ObserverSettings,
    key::{Paths, SessionKey},
    session::SharedSession,
    task::{self, Publisher},
    view::Observation,
};

/// Changes buffered per `changes()` listener before it lags (and then
/// gets every watched key once instead).
const CHANGES_CAPACITY: usize = 1024;

/// The controller's handle on ZooKeeper: watches destinations and tells
/// which changed. Shared behind an `Arc`.
pub struct Observer {
    settings: ObserverSettings,
    state: Mutex<State>,
    changes: broadcast::Sender<ObservedKey>,
}

#[derive(Default)]
struct State {
    /// Sessions in use; a session closes when its last destination is
    /// forgotten.
    sessions: HashMap<SessionKey, Weak<SharedSession>>,
    watched: HashMap<ObservedKey, Watched>,
}

struct Watched {
    observations: watch::Receiver<Observation>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Observer")
            .field("sessions", &state.sessions.len())
            .field("destinations", &state.watched.len())
            .finish()
    }
}

impl Observer {
    /// An observer with the default timing.
    pub fn new() -> Arc<Observer> {
        Self::with_settings(ObserverSettings::default())
    }

    /// An observer with the given timing (tests shorten it).
    pub fn with_settings(settings: ObserverSettings) -> Arc<Observer> {
        Arc::new(Observer {
            settings,
            state: Mutex::new(State::default()),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
        })
    }

    /// The timing it runs with.
    pub fn settings(&self) -> &ObserverSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The destination's observation, kept current until [`Self::forget`].
    /// Idempotent: the same key gets a receiver of the same task. Must be
    /// called within a Tokio runtime. A key that cannot be used (a
    /// destination name that is no node name, a digest user with `:`)
    /// yields `Unreachable` with the reason, and no task.
    pub fn watch(&self, key: ObservedKey) -> watch::Receiver<Observation> {
        let mut state = self.lock();
        if let Some(watched) = state.watched.get(&key) {
            return watched.observations.clone();
        }
        let (session_key, paths) = match key
            .session_key()
            .and_then(|s| Paths::new(&key.destination).map(|p| (s, p)))
        {
            Ok(found) => found,
            Err(reason) => return watch::channel(Observation::Unreachable(reason.to_string())).1,
        };
        state
            .sessions
            .retain(|_, session| session.strong_count() > 0);
        let session = match state.sessions.get(&session_key).and_then(Weak::upgrade) {
            Some(session) => session,
            None => {
                let session = SharedSession::start(session_key.clone(), self.settings);
                state.sessions.insert(session_key, Arc::downgrade(&session));
                session
            }
        };
        let (sender, observations) = watch::channel(Observation::Connecting);
        let cancel = CancellationToken::new();
        let publisher = Publisher {
            key: key.clone(),
            sender,
            changes: self.changes.clone(),
        };
        tokio::spawn(task::run(
            session,
            paths,
            publisher,
            self.settings,
            cancel.clone(),
        ));
        state.watched.insert(
            key,
            Watched {
                observations: observations.clone(),
                cancel,
            },
        );
        observations
    }

    /// The latest observation of a watched key.
    pub fn current(&self, key: &ObservedKey) -> Option<Observation> {
        self.lock()
            .watched
            .get(key)
            .map(|w| w.observations.borrow().clone())
    }

    /// Stops watching (the instance is gone); its receivers see the
    /// channel close. The session closes with its last destination.
    pub fn forget(&self, key: &ObservedKey) {
        if let Some(watched) = self.lock().watched.remove(key) {
            watched.cancel.cancel();
        }
    }

    /// Every watched key.
    pub fn keys(&self) -> Vec<ObservedKey> {
        self.lock().watched.keys().cloned().collect()
    }

    /// Open sessions (for metrics and tests).
    pub fn session_count(&self) -> usize {
        self.lock()
            .sessions
            .values()
            .filter(|s| s.strong_count() > 0)
            .count()
    }

    /// Raw notifications: the key of every destination whose observation
    /// changed. A lagging receiver loses keys; see [`Self::changes`].
    pub fn subscribe(&self) -> broadcast::Receiver<ObservedKey> {
        self.changes.subscribe()
    }

    /// The key of every destination whose observation changed, for
    /// requeueing its object. A listener that falls behind gets every
    /// watched key once instead of the ones it missed. Ends when the
    /// observer is dropped.
    pub fn changes(self: &Arc<Self>) -> impl Stream<Item = ObservedKey> + Send + 'static {
        let receiver = self.changes.subscribe();
        let observer = Arc::downgrade(self);
        futures_util::stream::unfold(
            (receiver, observer, VecDeque::new()),
            |(mut receiver, observer, mut pending): (_, Weak<Observer>, VecDeque<ObservedKey>)| async move {
                loop {
                    if let Some(key) = pending.pop_front() {
                        return Some((key, (receiver, observer, pending)));
                    }
                    match receiver.recv().await {
                        Ok(key) => return Some((key, (receiver, observer, pending))),
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            pending.extend(observer.upgrade()?.keys());
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        for watched in self.lock().watched.values() {
            watched.cancel.cancel();
        }
    }
}
