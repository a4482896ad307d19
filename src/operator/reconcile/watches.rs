//! ZooKeeper watch forwarding: each instance's destination is watched
//! through the shared [`Observer`], and a change of its view requeues the
//! instance. Also remembers the last key each instance was observed with,
//! for the finalizer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use crate::operator::status::ZkState;
use crate::operator::zookeeper::{self as zk, ObservedKey, Observer};

/// Cursors move with every flush (each second per destination): their
/// changes requeue at most this often; any other change at once.
const CURSOR_REQUEUE_INTERVAL: Duration = Duration::from_secs(5);

/// The instances whose destinations are watched, and the keys they were
/// last observed with.
pub(super) struct Watches {
    observer: Arc<Observer>,
    /// Requeues an instance when its ZooKeeper view changes.
    trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    watches: Mutex<HashMap<ObjectRef<DynamicObject>, Watch>>,
    /// The last key each instance was observed with (its ZooKeeper
    /// credentials included; memory only), kept until its finalizer is
    /// done: deleting a namespace deletes the auth Secret alongside the
    /// instance, and the cleanup must still be able to log in.
    known_keys: Mutex<HashMap<ObjectRef<DynamicObject>, ObservedKey>>,
}

struct Watch {
    key: ObservedKey,
    forwarder: tokio::task::JoinHandle<()>,
}

impl Watches {
    pub(super) fn new(
        observer: Arc<Observer>,
        trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    ) -> Watches {
        Watches {
            observer,
            trigger,
            watches: Mutex::new(HashMap::new()),
            known_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The current ZooKeeper view of `key`; the first call starts watching
    /// it and forwards every change to the controller as a requeue.
    pub(super) fn observe(&self, object: &ObjectRef<DynamicObject>, key: &ObservedKey) -> ZkState {
        // Under the lock: a concurrent forget of the same key (another
        // instance's) must not end the watch between these steps.
        self.known_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(object.clone(), key.clone());
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let mut receiver = self.observer.watch(key.clone());
        let state = zk_state(&receiver.borrow_and_update());
        let current = watches
            .get(object)
            .is_some_and(|w| &w.key == key && !w.forwarder.is_finished());
        if !current {
            if let Some(old) = watches.remove(object) {
                old.forwarder.abort();
                self.forget_unless_shared(&watches, &old.key);
            }
            let forwarder = tokio::spawn(forward_changes(
                receiver,
                self.trigger.clone(),
                object.clone(),
            ));
            watches.insert(
                object.clone(),
                Watch {
                    key: key.clone(),
                    forwarder,
                },
            );
        }
        state
    }

    /// Stops watching destinations of instances that are gone: a deleted
    /// instance without a finalizer is never reconciled again.
    pub(super) fn sweep(&self, exists: impl Fn(&ObjectRef<DynamicObject>) -> bool) {
        let gone: Vec<_> = {
            let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            watches.keys().filter(|o| !exists(o)).cloned().collect()
        };
        for object in gone {
            tracing::debug!(instance = %object.name, "instance gone: no longer watching its destination");
            self.stop_observing(&object);
        }
        self.known_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|object, _| exists(object));
    }

    /// The key `object` was last observed with, if any.
    pub(super) fn known_key(&self, object: &ObjectRef<DynamicObject>) -> Option<ObservedKey> {
        let known = self.known_keys.lock().unwrap_or_else(|e| e.into_inner());
        known.get(object).cloned()
    }

    /// Drops the key of `object`: its finalizer is done.
    pub(super) fn forget_key(&self, object: &ObjectRef<DynamicObject>) {
        let mut known = self.known_keys.lock().unwrap_or_else(|e| e.into_inner());
        known.remove(object);
    }

    /// Ends the watch of `object`, and the observation of its key unless
    /// another instance's watch shares it.
    pub(super) fn stop_observing(&self, object: &ObjectRef<DynamicObject>) {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = watches.remove(object) {
            old.forwarder.abort();
            self.forget_unless_shared(&watches, &old.key);
        }
    }

    fn forget_unless_shared(
        &self,
        watches: &HashMap<ObjectRef<DynamicObject>, Watch>,
        key: &ObservedKey,
    ) {
        if !watches.values().any(|w| &w.key == key) {
            self.observer.forget(key);
        }
    }
}

/// Requeues `target` when its ZooKeeper view changes.
async fn forward_changes(
    mut receiver: tokio::sync::watch::Receiver<zk::Observation>,
    trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    target: ObjectRef<DynamicObject>,
) {
    let mut last = significant(&receiver.borrow_and_update());
    let mut cursors_moved = false;
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let due = last_sent + CURSOR_REQUEUE_INTERVAL;
        tokio::select! {
            changed = receiver.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = significant(&receiver.borrow_and_update());
                if now == last {
                    cursors_moved = true;
                    continue;
                }
                last = now;
            }
            () = tokio::time::sleep_until(due), if cursors_moved => {}
        }
        cursors_moved = false;
        last_sent = tokio::time::Instant::now();
        if trigger.send(target.clone()).is_err() {
            return;
        }
    }
}

/// An observation without its cursors.
fn significant(observation: &zk::Observation) -> zk::Observation {
    match observation {
        zk::Observation::Seen(view) => zk::Observation::Seen(zk::DestinationView {
            cursors: Vec::new(),
            ..view.clone()
        }),
        other => other.clone(),
    }
}

/// An observation in the status's terms.
fn zk_state(observation: &zk::Observation) -> ZkState {
    match observation {
        zk::Observation::Connecting => ZkState::Connecting,
        zk::Observation::Unreachable(why) => ZkState::Unreachable(why.clone()),
        zk::Observation::Seen(view) => {
            let mut facts = zk::facts(view);
            // A running node whose data is not canal's (held, by whom
            // unknown), or the operator's own during a cursor reset.
            facts
                .running
                .take_if(|(address, _)| address.is_empty() || address == zk::RESET_ADDRESS);
            ZkState::Seen(facts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(running: Option<&str>, cursors: usize) -> zk::DestinationView {
        zk::DestinationView {
            running: running.map(|address| zk::RunningView {
                address: address.into(),
                active: true,
                since: jiff::Timestamp::UNIX_EPOCH,
            }),
            members: vec!["10.0.0.1:11111".into()],
            cursors: (0..cursors)
                .map(|i| zk::ClientCursor {
                    client_id: format!("{}", 1001 + i),
                    journal_name: "mysql-bin.000001".into(),
                    position: 4,
                    gtid: None,
                    timestamp_ms: 0,
                    server_id: None,
                    error: None,
                })
                .collect(),
        }
    }

    #[test]
    fn moved_cursors_alone_are_not_a_significant_change() {
        let before = zk::Observation::Seen(view(Some("10.0.0.1:11111"), 0));
        let after = zk::Observation::Seen(view(Some("10.0.0.1:11111"), 2));
        assert_eq!(significant(&before), significant(&after));
        let failover = zk::Observation::Seen(view(Some("10.0.0.2:11111"), 2));
        assert_ne!(significant(&after), significant(&failover));
    }

    #[test]
    fn a_running_node_not_held_by_a_server_names_no_active_server() {
        for holder in ["", zk::RESET_ADDRESS] {
            let ZkState::Seen(facts) = zk_state(&zk::Observation::Seen(view(Some(holder), 0)))
            else {
                panic!("a view is seen");
            };
            assert_eq!(facts.running, None, "held by {holder:?}");
        }
        let ZkState::Seen(facts) =
            zk_state(&zk::Observation::Seen(view(Some("10.0.0.1:11111"), 0)))
        else {
            panic!("a view is seen");
        };
        assert_eq!(
            facts.running.map(|(a, _)| a).as_deref(),
            Some("10.0.0.1:11111")
        );
        assert_eq!(
            zk_state(&zk::Observation::Unreachable("no route".into())),
            ZkState::Unreachable("no route".into())
        );
    }
}
