//! Timing of the operator's ZooKeeper sessions and watches.

use std::time::Duration;

/// How the operator's ZooKeeper sessions and watches are timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObserverSettings {
    /// Session timeout requested for the operator's sessions. A cursor
    /// reset holds the destination's `running` node through such a
    /// session: if the operator dies mid-reset, servers resume this long
    /// after.
    pub session_timeout: Duration,
    /// Connecting to one ZooKeeper server.
    pub connection_timeout: Duration,
    /// A full re-read of every watched destination, as a safety net
    /// behind the watches.
    pub resync: Duration,
    /// How long reads may keep failing (or the connection stay lost)
    /// before the view is reported as `Unreachable`; shorter outages (a
    /// ZooKeeper leader election) keep the last view.
    pub unreachable_after: Duration,
}

impl Default for ObserverSettings {
    fn default() -> Self {
        ObserverSettings {
            session_timeout: Duration::from_secs(6),
            connection_timeout: Duration::from_secs(3),
            resync: Duration::from_secs(60),
            unreachable_after: Duration::from_secs(5),
        }
    }
}

impl ObserverSettings {
    /// How long one request (or a connection attempt) may go unanswered.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.connection_timeout * 3
    }
}
