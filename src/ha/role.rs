//! What a destination's election reports: role, terms, failovers. Read by
//! `/readyz` and `/metrics`.

use std::sync::{
    Mutex,
    atomic::{AtomicU8, AtomicU64, Ordering},
};

/// A destination's role on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serving: holds `running` and a valid lease.
    Active,
    /// Ready to take over; answers clients "should start first".
    Standby,
    /// Stopped serving because ZooKeeper could not confirm the lease (or
    /// another server owns `running`); waits for its session to recover or
    /// end before racing again.
    Fenced,
    /// No ZooKeeper: always serving.
    Standalone,
}

impl Role {
    /// The role as reported by `/readyz` and the `role` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
            Role::Fenced => "fenced",
            Role::Standalone => "standalone",
        }
    }

    /// Whether this server serves the destination's clients.
    pub fn serves(self) -> bool {
        matches!(self, Role::Active | Role::Standalone)
    }

    fn code(self) -> u8 {
        match self {
            Role::Active => 0,
            Role::Standby => 1,
            Role::Fenced => 2,
            Role::Standalone => 3,
        }
    }

    fn from_code(code: u8) -> Role {
        match code {
            0 => Role::Active,
            1 => Role::Standby,
            2 => Role::Fenced,
            _ => Role::Standalone,
        }
    }
}

/// A destination's HA state on this server, shared by its election and the endpoints.
#[derive(Debug)]
pub struct HaStatus {
    role: AtomicU8,
    terms: AtomicU64,
    fencings: AtomicU64,
    /// Milliseconds from seeing `running` vanish to serving, last takeover.
    last_failover_ms: AtomicU64,
    /// Why the last fencing happened.
    last_fence_reason: Mutex<Option<String>>,
}

impl HaStatus {
    /// A status in `role`, no terms yet.
    pub fn new(role: Role) -> Self {
        HaStatus {
            role: AtomicU8::new(role.code()),
            terms: AtomicU64::new(0),
            fencings: AtomicU64::new(0),
            last_failover_ms: AtomicU64::new(u64::MAX),
            last_fence_reason: Mutex::new(None),
        }
    }

    /// The current role.
    pub fn role(&self) -> Role {
        Role::from_code(self.role.load(Ordering::Acquire))
    }

    /// Sets the role.
    pub fn set_role(&self, role: Role) {
        self.role.store(role.code(), Ordering::Release);
    }

    /// A new term as the active server began.
    pub fn term_started(&self, failover: Option<std::time::Duration>) {
        self.terms.fetch_add(1, Ordering::AcqRel);
        if let Some(failover) = failover {
            self.last_failover_ms.store(
                u64::try_from(failover.as_millis()).unwrap_or(u64::MAX - 1),
                Ordering::Release,
            );
        }
        self.set_role(Role::Active);
    }

    /// Serving stopped without a planned release, for `reason`.
    pub fn fenced(&self, reason: &str) {
        self.fencings.fetch_add(1, Ordering::AcqRel);
        *self
            .last_fence_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
        self.set_role(Role::Fenced);
    }

    /// Terms as the active server since start.
    pub fn terms(&self) -> u64 {
        self.terms.load(Ordering::Acquire)
    }

    /// Times serving stopped without a planned release.
    pub fn fencings(&self) -> u64 {
        self.fencings.load(Ordering::Acquire)
    }

    /// The last takeover's duration in seconds, if this server took over.
    pub fn last_failover_seconds(&self) -> Option<f64> {
        match self.last_failover_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(ms as f64 / 1000.0),
        }
    }

    /// Why serving last stopped without a planned release.
    pub fn last_fence_reason(&self) -> Option<String> {
        self.last_fence_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
