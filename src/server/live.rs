//! The server's live state as the metrics and health endpoints read it: a
//! plain snapshot per destination, taken at scrape time.

use std::sync::atomic::Ordering::Relaxed;

use super::{Destination, Instance, ServerShared};
use crate::metrics::{AckedCursor, DestinationSnapshot, LiveState, ServingSnapshot};

impl LiveState for ServerShared {
    fn destinations(&self) -> Vec<DestinationSnapshot> {
        self.destinations.values().map(|d| snapshot(d)).collect()
    }
}

fn snapshot(destination: &Destination) -> DestinationSnapshot {
    let ha = destination.ha();
    DestinationSnapshot {
        name: destination.name().to_owned(),
        role: ha.role(),
        terms: ha.terms(),
        fencings: ha.fencings(),
        last_failover_seconds: ha.last_failover_seconds(),
        last_fence_reason: ha.last_fence_reason(),
        serving: destination.instance().map(|i| serving(&i)),
    }
}

fn serving(instance: &Instance) -> ServingSnapshot {
    let stats = instance.stats();
    let (store_events, store_bytes, config, outstanding) = instance.store().with_state(|s| {
        let outstanding = s.clients().map(|c| (c, s.outstanding(c))).collect();
        (s.len(), s.bytes(), *s.config(), outstanding)
    });
    let position = stats
        .position
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|checkpoint| (checkpoint.journal.clone(), checkpoint.position));
    let cursors = instance
        .last_cursors()
        .into_iter()
        .flatten()
        .map(|(client, cursor)| AckedCursor {
            client,
            journal: cursor.position.journal_name,
            position: cursor.position.position,
            timestamp_ms: cursor.position.timestamp_ms,
        })
        .collect();
    ServingSnapshot {
        running: instance.is_running(),
        failure: instance.failure(),
        connected: instance.connected(),
        last_event_ms: stats.last_event_ms.load(Relaxed),
        events: stats.events.load(Relaxed),
        bytes: stats.bytes.load(Relaxed),
        entries: stats.entries.load(Relaxed),
        reconnects: stats.reconnects.load(Relaxed),
        store_events,
        store_bytes,
        capacity_events: config.capacity_events,
        capacity_bytes: config.capacity_bytes,
        position,
        outstanding,
        cursors,
    }
}
