//! From the binlog source to the store: each change serialized once, and
//! empty transactions dropped the way canal's sink drops them.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use crate::{
    binlog::change::{ChangeEvent, ChangeKind},
    protocol::entry::EventType,
    store::{EventStore, StoredEvent},
};

/// Moves changes from the source into the store, serialized, dropping
/// empty transactions the way canal's sink does.
pub(super) async fn pipeline(
    mut receiver: tokio::sync::mpsc::Receiver<ChangeEvent>,
    store: Arc<EventStore>,
    filter_transaction_entry: bool,
) {
    let mut throttle = EmptyTransactions::new(filter_transaction_entry);
    let mut ready = Vec::new();
    while let Some(change) = receiver.recv().await {
        throttle.push(change, &mut ready);
        for change in ready.drain(..) {
            if store.put(stored(change)).await.is_err() {
                return;
            }
        }
    }
}

fn stored(change: ChangeEvent) -> StoredEvent {
    let event_type = change
        .entry
        .header
        .as_ref()
        .and_then(|h| h.event_type)
        .and_then(|t| EventType::try_from(t).ok())
        .unwrap_or(EventType::Query);
    StoredEvent {
        bytes: Bytes::from(change.entry.encode_to_vec()),
        position: change.position,
        kind: change.kind,
        event_type,
    }
}

/// canal's sink drops transactions that turned out empty (every row
/// filtered out) unless more than 5 s of binlog time passed since the last
/// one it let through, or 8192 were dropped in a row; with
/// canal.instance.filter.transaction.entry it drops transaction markers
/// around row changes the same way.
struct EmptyTransactions {
    held_begin: Option<ChangeEvent>,
    last_passed_ms: i64,
    dropped: u32,
    markers_too: bool,
}

const EMPTY_INTERVAL_MS: i64 = 5_000;
const EMPTY_MAX_DROPPED: u32 = 8_192;

impl EmptyTransactions {
    fn new(markers_too: bool) -> Self {
        EmptyTransactions {
            held_begin: None,
            last_passed_ms: 0,
            dropped: 0,
            markers_too,
        }
    }

    fn lets_through(&mut self, at_ms: i64) -> bool {
        if at_ms - self.last_passed_ms > EMPTY_INTERVAL_MS || self.dropped > EMPTY_MAX_DROPPED {
            self.last_passed_ms = at_ms;
            self.dropped = 0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    fn push(&mut self, change: ChangeEvent, out: &mut Vec<ChangeEvent>) {
        match change.kind {
            ChangeKind::TransactionBegin => {
                if let Some(previous) = self.held_begin.take() {
                    out.push(previous);
                }
                self.held_begin = Some(change);
            }
            ChangeKind::TransactionEnd => match self.held_begin.take() {
                Some(begin) => {
                    // BEGIN followed directly by END: an empty transaction.
                    if self.lets_through(begin.position.timestamp_ms) {
                        out.push(begin);
                        out.push(change);
                    }
                }
                None if self.markers_too => {
                    if self.lets_through(change.position.timestamp_ms) {
                        out.push(change);
                    }
                }
                None => out.push(change),
            },
            _ => {
                if let Some(begin) = self.held_begin.take()
                    && !self.markers_too
                {
                    out.push(begin);
                }
                out.push(change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{binlog::position::LogPosition, protocol::entry::Entry};

    fn change(kind: ChangeKind, ms: i64) -> ChangeEvent {
        ChangeEvent {
            entry: Entry::default(),
            position: LogPosition {
                timestamp_ms: ms,
                ..LogPosition::new("f", 4)
            },
            end: 5,
            kind,
            row_images: 0,
        }
    }

    fn kinds(out: &[ChangeEvent]) -> Vec<ChangeKind> {
        out.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn empty_transactions_are_throttled() {
        let mut throttle = EmptyTransactions::new(false);
        let mut out = Vec::new();
        for ms in [10_000, 11_000, 12_000, 16_000] {
            throttle.push(change(ChangeKind::TransactionBegin, ms), &mut out);
            throttle.push(change(ChangeKind::TransactionEnd, ms), &mut out);
        }
        assert_eq!(out.len(), 4, "the first and the one 6 s later pass");
        out.clear();
        throttle.push(change(ChangeKind::TransactionBegin, 16_500), &mut out);
        throttle.push(change(ChangeKind::Rows, 16_500), &mut out);
        throttle.push(change(ChangeKind::TransactionEnd, 16_500), &mut out);
        assert_eq!(
            kinds(&out),
            [
                ChangeKind::TransactionBegin,
                ChangeKind::Rows,
                ChangeKind::TransactionEnd
            ]
        );
    }
}
