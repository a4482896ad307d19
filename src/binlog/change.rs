//! What the engine hands downstream: canal entries with their binlog
//! positions and what kind of checkpoint each one is.

use crate::protocol::entry::Entry;

use super::position::LogPosition;

/// The role of an entry in its transaction, which decides whether a
/// consumer may use it as a resume point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Opens a transaction (BEGIN, or a MariaDB GTID event).
    TransactionBegin,
    /// Closes a transaction (COMMIT, XID).
    TransactionEnd,
    /// Row changes of one rows event.
    Rows,
    /// A DDL statement (its own event group).
    Ddl,
    /// Other statements carried as text (statement-based DML, ROWS_QUERY,
    /// ANNOTATE_ROWS, DCL...).
    Query,
    /// `XA COMMIT` / `XA ROLLBACK` of a prepared transaction.
    XaOutcome,
}

/// One canal entry and where it came from.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// The canal entry.
    pub entry: Entry,
    /// The event's start position (as in the entry header), with its time,
    /// source server id and, in GTID mode, the executed GTID set.
    pub position: LogPosition,
    /// The event's end offset: the start of the next event.
    pub end: u64,
    /// The entry's role in its transaction.
    pub kind: ChangeKind,
    /// Row images in the entry (an UPDATE row has two).
    pub row_images: u32,
}

impl ChangeEvent {
    /// Whether acknowledging up to this entry leaves no transaction half done
    /// (a transaction end, a DDL, or an XA outcome).
    pub fn is_boundary(&self) -> bool {
        matches!(
            self.kind,
            ChangeKind::TransactionEnd | ChangeKind::Ddl | ChangeKind::XaOutcome
        )
    }
}
