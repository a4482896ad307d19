//! High availability through ZooKeeper, in canal's layout
//! (`/otter/canal/...`, see `nodes`): every server registers, each
//! destination has one active server holding the ephemeral `running` node,
//! standbys take over when it goes away. Unlike canal, an active server
//! fences itself: it serves only while its lease (`lease`) proves that its
//! ZooKeeper session cannot have expired, so two servers are never active
//! for the same destination.

pub mod address;
pub mod election;
pub mod lease;
pub mod membership;
pub mod nodes;
pub mod role;
pub mod zk_session;

use std::time::Duration;

pub use election::{ActivationError, Candidate, Election, FailureKind};
pub use lease::Lease;
pub use role::{HaStatus, Role};
pub use zk_session::ZkSession;

/// Timing of the race, from `canal.zookeeper.*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HaSettings {
    /// `canal.zookeeper.session.timeout`: how long ZooKeeper keeps a silent
    /// session (and its `running` node).
    pub session_timeout: Duration,
    /// `canal.zookeeper.connection.timeout`: connecting to one ZooKeeper server.
    pub connection_timeout: Duration,
    /// `canal.zookeeper.race.delay`: how long a server that did not own a
    /// vanished `running` node waits before racing for it.
    pub race_delay: Duration,
    /// `canal.zookeeper.fence.fraction`: the part of the session timeout a
    /// leader may go without an answer from ZooKeeper before it stops.
    pub fence_fraction: f64,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            session_timeout: Duration::from_secs(6),
            connection_timeout: Duration::from_secs(3),
            race_delay: Duration::from_millis(200),
            fence_fraction: 0.5,
        }
    }
}

impl HaSettings {
    /// How long a committed request keeps the leader serving, for a
    /// session of `negotiated` timeout: the ensemble may grant another
    /// timeout than the configured one (its min/maxSessionTimeout), and only
    /// the granted one says when the session can expire.
    pub fn lease_length(&self, negotiated: Duration) -> Duration {
        negotiated.mul_f64(self.fence_fraction)
    }

    /// How often the lease is renewed: several times per lease, so one
    /// slow answer does not stop a healthy leader.
    pub fn renew_interval(&self, negotiated: Duration) -> Duration {
        (self.lease_length(negotiated) / 6).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }
}
