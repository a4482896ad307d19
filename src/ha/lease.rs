//! The fencing lease: how long this process may still act as a leader.
//!
//! ZooKeeper expires a session no earlier than one session timeout after
//! the leader last heard of it. A request the quorum committed for our
//! session proves the leader heard of it no earlier than the moment we sent
//! it, so `sent + fraction × session timeout` (fraction < 1) is a moment
//! before which no other server can have taken over our ephemeral `running`
//! node. (Reads prove less: a ZooKeeper server cut off from the quorum goes
//! on answering them for a while; see `session::quorum_round_trip`.) A leader serves only
//! while that moment is in the future; the rest of the session timeout is
//! the safety margin for stopping, clock-rate drift and scheduling delays.
//!
//! One lease belongs to one ZooKeeper session: a new session starts a new
//! lease, and the old one stays expired for good.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// How long this process may still act as a leader; see the module.
#[derive(Debug)]
pub struct Lease {
    /// Reference point of `deadline_ns` (monotonic).
    base: Instant,
    /// Nanoseconds after `base` until which the lease holds; 0: not held.
    deadline_ns: AtomicU64,
    /// Never expires: a server without ZooKeeper.
    forever: bool,
    /// Expired for good (the session ended).
    ended: AtomicBool,
}

impl Lease {
    /// A lease not yet held.
    pub fn new() -> Arc<Lease> {
        Arc::new(Lease {
            base: Instant::now(),
            deadline_ns: AtomicU64::new(0),
            forever: false,
            ended: AtomicBool::new(false),
        })
    }

    /// A lease that always holds (standalone servers).
    pub fn forever() -> Arc<Lease> {
        Arc::new(Lease {
            base: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
            forever: true,
            ended: AtomicBool::new(false),
        })
    }

    /// Extends the lease to `sent + length` after a request sent at `sent`
    /// was answered. Never shortens it.
    pub fn renew(&self, sent: Instant, length: Duration) {
        if self.forever || self.ended.load(Ordering::Acquire) {
            return;
        }
        let until = match sent.checked_duration_since(self.base) {
            Some(after_base) => after_base.saturating_add(length),
            // Sent before the lease existed: only what is left of `length`.
            None => length.saturating_sub(self.base.duration_since(sent)),
        };
        if until.is_zero() {
            return;
        }
        let until = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.deadline_ns.fetch_max(until, Ordering::AcqRel);
    }

    /// Ends the lease for good (the session expired or closed).
    pub fn end(&self) {
        if self.forever {
            return;
        }
        self.ended.store(true, Ordering::Release);
        self.deadline_ns.store(0, Ordering::Release);
    }

    /// How long the lease still holds; `None` when it does not.
    pub fn remaining(&self) -> Option<Duration> {
        if self.forever {
            return Some(Duration::MAX);
        }
        if self.ended.load(Ordering::Acquire) {
            return None;
        }
        let deadline = Duration::from_nanos(self.deadline_ns.load(Ordering::Acquire));
        let now = self.base.elapsed();
        deadline.checked_sub(now).filter(|left| !left.is_zero())
    }

    /// Whether the lease holds now.
    pub fn is_valid(&self) -> bool {
        self.remaining().is_some()
    }

    /// Whether the lease ended for good.
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Resolves once the lease no longer holds (renewals while waiting
    /// push the moment back).
    pub async fn expired(&self) {
        while let Some(left) = self.remaining() {
            if left == Duration::MAX {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(left.min(Duration::from_secs(3600))).await;
        }
    }

    /// Resolves once the lease holds again.
    pub async fn held(&self) {
        while !self.is_valid() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_extend_and_never_shorten() {
        let lease = Lease::new();
        assert!(!lease.is_valid(), "not held before the first answer");
        let now = Instant::now();
        lease.renew(now, Duration::from_secs(3));
        let left = lease.remaining().unwrap();
        assert!(left > Duration::from_millis(2900) && left <= Duration::from_secs(3));
        // An older answer arriving late changes nothing.
        lease.renew(now - Duration::from_secs(2), Duration::from_secs(3));
        assert!(lease.remaining().unwrap() > Duration::from_millis(2900));
        // A request sent long ago proves nothing now.
        let stale = Lease::new();
        stale.renew(now - Duration::from_secs(10), Duration::from_secs(3));
        assert!(!stale.is_valid());
    }

    #[test]
    fn an_ended_lease_stays_ended() {
        let lease = Lease::new();
        lease.renew(Instant::now(), Duration::from_secs(3));
        lease.end();
        assert!(!lease.is_valid() && lease.has_ended());
        lease.renew(Instant::now(), Duration::from_secs(3));
        assert!(!lease.is_valid(), "renewals after the end are ignored");
        let forever = Lease::forever();
        forever.end();
        assert!(forever.is_valid());
    }

    #[tokio::test]
    async fn expired_resolves_at_the_deadline_and_follows_renewals() {
        let lease = Lease::new();
        let started = Instant::now();
        lease.renew(started, Duration::from_millis(100));
        let renewer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            lease.renew(Instant::now(), Duration::from_millis(100));
        };
        tokio::join!(lease.expired(), renewer);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_millis(1000),
            "{waited:?}"
        );
    }
}
