//! What each binlog event type means to the decoder: a pure mapping from the
//! type code to the one step that handles it, so that the decoder's dispatch
//! reads as a list of steps and every rows-event version takes one path.

use mysql_common::binlog::consts::EventType as Bt;

use crate::binlog::{
    event::mariadb_type,
    rows::{RowsKind, RowsLayout},
};

/// The decoder's step for one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventRole {
    FormatDescription,
    /// An event that carries one statement.
    Query(QueryEventKind),
    /// Text that comes with the next statement or rows: a QUERY entry.
    StatementText(TextEvent),
    Xid,
    /// The first phase of an XA transaction ends its event group.
    XaPrepare,
    TableMap,
    /// WRITE/UPDATE/DELETE_ROWS in any of their versions.
    Rows(RowsLayout),
    MysqlGtid,
    AnonymousGtid,
    PreviousGtids,
    MariadbGtid,
    MariadbGtidList,
    Incident,
    /// May carry changes this decoder cannot read; the hint says what to
    /// change on the source.
    Unsupported(&'static str),
    /// Understood, and carries no changes to forward.
    WithoutChanges,
    /// Not known to this decoder.
    Unknown,
}

/// The events that carry one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueryEventKind {
    /// QUERY.
    Query,
    /// Statement-based LOAD DATA, forwarded as its statement text.
    ExecuteLoadQuery,
}

/// The events whose only content is text about a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextEvent {
    /// MySQL's ROWS_QUERY: the statement behind the following rows events.
    RowsQuery,
    /// MariaDB's ANNOTATE_ROWS, the same as ROWS_QUERY.
    AnnotateRows,
    /// The INSERT_ID of the next statement.
    Intvar,
    /// The RAND() seeds of the next statement.
    Rand,
    /// A user variable the next statement reads.
    UserVar,
}

/// The step for events of type `code`.
pub(super) fn role_of(code: u8) -> EventRole {
    match Bt::try_from(code) {
        Ok(known) => mysql_role(known),
        Err(_) => mariadb_role(code),
    }
}

fn mysql_role(event_type: Bt) -> EventRole {
    use EventRole as R;
    let rows = |kind, v2, partial| R::Rows(RowsLayout { kind, v2, partial });
    match event_type {
        Bt::FORMAT_DESCRIPTION_EVENT => R::FormatDescription,
        Bt::QUERY_EVENT => R::Query(QueryEventKind::Query),
        Bt::EXECUTE_LOAD_QUERY_EVENT => R::Query(QueryEventKind::ExecuteLoadQuery),
        Bt::ROWS_QUERY_EVENT => R::StatementText(TextEvent::RowsQuery),
        Bt::INTVAR_EVENT => R::StatementText(TextEvent::Intvar),
        Bt::RAND_EVENT => R::StatementText(TextEvent::Rand),
        Bt::USER_VAR_EVENT => R::StatementText(TextEvent::UserVar),
        Bt::XID_EVENT => R::Xid,
        Bt::XA_PREPARE_LOG_EVENT => R::XaPrepare,
        Bt::TABLE_MAP_EVENT => R::TableMap,
        Bt::WRITE_ROWS_EVENT_V1 => rows(RowsKind::Insert, false, false),
        Bt::UPDATE_ROWS_EVENT_V1 => rows(RowsKind::Update, false, false),
        Bt::DELETE_ROWS_EVENT_V1 => rows(RowsKind::Delete, false, false),
        Bt::WRITE_ROWS_EVENT => rows(RowsKind::Insert, true, false),
        Bt::UPDATE_ROWS_EVENT => rows(RowsKind::Update, true, false),
        Bt::DELETE_ROWS_EVENT => rows(RowsKind::Delete, true, false),
        Bt::PARTIAL_UPDATE_ROWS_EVENT => rows(RowsKind::Update, true, true),
        Bt::GTID_EVENT | Bt::GTID_TAGGED_LOG_EVENT => R::MysqlGtid,
        Bt::ANONYMOUS_GTID_EVENT => R::AnonymousGtid,
        Bt::PREVIOUS_GTIDS_EVENT => R::PreviousGtids,
        Bt::INCIDENT_EVENT => R::Incident,
        Bt::ROTATE_EVENT
        | Bt::STOP_EVENT
        | Bt::HEARTBEAT_EVENT
        | Bt::IGNORABLE_EVENT
        | Bt::TRANSACTION_PAYLOAD_EVENT
        | Bt::TRANSACTION_CONTEXT_EVENT
        | Bt::VIEW_CHANGE_EVENT
        | Bt::START_EVENT_V3
        | Bt::BEGIN_LOAD_QUERY_EVENT
        | Bt::APPEND_BLOCK_EVENT => R::WithoutChanges,
        _ => R::Unknown,
    }
}

/// MariaDB's own event types (160 and up), which mysql_common does not know.
fn mariadb_role(code: u8) -> EventRole {
    use EventRole as R;
    match code {
        mariadb_type::GTID => R::MariadbGtid,
        mariadb_type::GTID_LIST => R::MariadbGtidList,
        mariadb_type::ANNOTATE_ROWS => R::StatementText(TextEvent::AnnotateRows),
        mariadb_type::BINLOG_CHECKPOINT => R::WithoutChanges,
        mariadb_type::START_ENCRYPTION => R::Unsupported(
            "the binlog file is encrypted at rest; read it through a replica connection, \
             which the server decrypts",
        ),
        mariadb_type::QUERY_COMPRESSED
        | mariadb_type::FIRST_COMPRESSED_ROWS..=mariadb_type::LAST_COMPRESSED_ROWS => {
            R::Unsupported(
                "MariaDB binlog compression is on; set log_bin_compress=OFF on the source",
            )
        }
        mariadb_type::PARTIAL_ROW_DATA => R::Unsupported(
            "the source splits large transactions into fragments, which this server cannot \
             reassemble yet",
        ),
        _ => R::Unknown,
    }
}

/// MySQL's "ignorable" header flag: replicas may skip such events.
pub(super) const IGNORABLE_FLAG: u16 = 0x80;

/// Unknown event types seen in the wild that carry no changes: 100 is the
/// padding Aurora MySQL writes; 41 is MySQL's HEARTBEAT_V2.
pub(super) const HARMLESS_UNKNOWN_TYPES: &[u8] = &[41, 100];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rows_event_version_has_its_layout() {
        let layout = |code: Bt| match role_of(code as u8) {
            EventRole::Rows(layout) => (layout.kind, layout.v2, layout.partial),
            other => panic!("{code:?} is {other:?}"),
        };
        assert_eq!(
            layout(Bt::WRITE_ROWS_EVENT_V1),
            (RowsKind::Insert, false, false)
        );
        assert_eq!(
            layout(Bt::DELETE_ROWS_EVENT),
            (RowsKind::Delete, true, false)
        );
        assert_eq!(
            layout(Bt::PARTIAL_UPDATE_ROWS_EVENT),
            (RowsKind::Update, true, true)
        );
    }

    #[test]
    fn mariadb_and_unknown_types() {
        assert_eq!(role_of(mariadb_type::GTID), EventRole::MariadbGtid);
        assert_eq!(
            role_of(mariadb_type::ANNOTATE_ROWS),
            EventRole::StatementText(TextEvent::AnnotateRows)
        );
        assert!(matches!(role_of(167), EventRole::Unsupported(_)));
        assert_eq!(
            role_of(mariadb_type::BINLOG_CHECKPOINT),
            EventRole::WithoutChanges
        );
        assert_eq!(role_of(41), EventRole::Unknown);
        assert_eq!(role_of(Bt::LOAD_EVENT as u8), EventRole::Unknown);
    }
}
