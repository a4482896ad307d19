//! Why decoding stopped, with the binlog position of the event that stopped
//! it in every message.

use std::fmt::Display;

use crate::binlog::{
    event::{SourceEvent, event_type_name},
    rows::RowsError,
    table::TableMeta,
};

/// Why decoding stopped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The event's body does not parse.
    #[error("{journal}:{offset}: malformed {event_type} event: {reason}")]
    Malformed {
        /// The binlog file.
        journal: String,
        /// The event's start in it.
        offset: u64,
        /// The event type's name.
        event_type: String,
        /// Why it does not parse.
        reason: String,
    },
    /// An event type that may carry row changes this decoder cannot read.
    #[error(
        "{journal}:{offset}: {event_type} events are not supported and may carry row changes; \
         stopping rather than dropping them ({hint})"
    )]
    Unsupported {
        /// The binlog file.
        journal: String,
        /// The event's start in it.
        offset: u64,
        /// The event type's name.
        event_type: String,
        /// What to change on the source.
        hint: &'static str,
    },
    /// A rows event names a table id no TABLE_MAP event described.
    #[error(
        "{journal}:{offset}: rows event for table id {table_id} has no preceding TABLE_MAP event"
    )]
    UnknownTable {
        /// The binlog file.
        journal: String,
        /// The event's start in it.
        offset: u64,
        /// The table id the rows event names.
        table_id: u64,
    },
    /// A table map could not be turned into table metadata.
    #[error("{journal}:{offset}: {reason}")]
    Table {
        /// The binlog file.
        journal: String,
        /// The event's start in it.
        offset: u64,
        /// Why the table map could not be read.
        reason: String,
    },
    /// The rows of a rows event could not be decoded.
    #[error("{journal}:{offset}: {source}")]
    Rows {
        /// The binlog file.
        journal: String,
        /// The event's start in it.
        offset: u64,
        /// Why the rows could not be decoded.
        source: Box<RowsError>,
    },
    /// Neither the binlog nor the schema lookup names a table's columns.
    #[error(
        "{journal}:{offset}: the binlog carries no column names for {table} and its schema at this \
         position is not known{reason}; set binlog_row_metadata=FULL on the source (MySQL 8.0.1+, \
         MariaDB 10.5+) so the binlog describes every table itself"
    )]
    NoColumnNames {
        /// The binlog file.
        journal: String,
        /// The event's start in it.
        offset: u64,
        /// `schema.table`.
        table: String,
        /// Why the schema is not known, as ` (why)`; empty when nothing says.
        reason: String,
    },
    /// The schema lookup must reload a table before this event can be
    /// decoded; decode the same event again afterwards.
    #[error("{journal}:{offset}: the definition of {schema}.{table} must be reloaded")]
    SchemaReload {
        /// The binlog file.
        journal: String,
        /// The event's start in it.
        offset: u64,
        /// The database.
        schema: String,
        /// The table's name.
        table: String,
    },
    /// The known schema of a table does not describe the table map's columns.
    #[error(
        "{journal}:{offset}: {table} has {binlog} columns in the binlog but {known} in its known \
         schema ({source_of_schema}); the schema at this position is not known, refusing to guess \
         (binlog_row_metadata=FULL avoids this)"
    )]
    SchemaMismatch {
        /// The binlog file.
        journal: String,
        /// The event's start in it.
        offset: u64,
        /// `schema.table`.
        table: String,
        /// Columns in the table map.
        binlog: usize,
        /// Columns in the known schema.
        known: usize,
        /// Where the known schema comes from.
        source_of_schema: &'static str,
    },
}

// Constructors that take the position from the event, so that no call site
// spells out `journal` and `offset` again.
impl DecodeError {
    pub(super) fn malformed(event: &SourceEvent, reason: impl Display) -> Self {
        DecodeError::Malformed {
            journal: event.journal.to_string(),
            offset: event.start,
            event_type: event_type_name(event.type_code()),
            reason: reason.to_string(),
        }
    }

    pub(super) fn unsupported(event: &SourceEvent, hint: &'static str) -> Self {
        DecodeError::Unsupported {
            journal: event.journal.to_string(),
            offset: event.start,
            event_type: event_type_name(event.type_code()),
            hint,
        }
    }

    pub(super) fn unknown_table(event: &SourceEvent, table_id: u64) -> Self {
        DecodeError::UnknownTable {
            journal: event.journal.to_string(),
            offset: event.start,
            table_id,
        }
    }

    pub(super) fn table(event: &SourceEvent, reason: impl Display) -> Self {
        DecodeError::Table {
            journal: event.journal.to_string(),
            offset: event.start,
            reason: reason.to_string(),
        }
    }

    pub(super) fn rows(event: &SourceEvent, source: RowsError) -> Self {
        DecodeError::Rows {
            journal: event.journal.to_string(),
            offset: event.start,
            source: Box::new(source),
        }
    }

    pub(super) fn no_column_names(event: &SourceEvent, meta: &TableMeta, reason: String) -> Self {
        DecodeError::NoColumnNames {
            journal: event.journal.to_string(),
            offset: event.start,
            table: meta.full_name(),
            reason: if reason.is_empty() {
                reason
            } else {
                format!(" ({reason})")
            },
        }
    }

    pub(super) fn schema_reload(event: &SourceEvent, meta: &TableMeta) -> Self {
        DecodeError::SchemaReload {
            journal: event.journal.to_string(),
            offset: event.start,
            schema: meta.schema.clone(),
            table: meta.table.clone(),
        }
    }

    pub(super) fn schema_mismatch(event: &SourceEvent, meta: &TableMeta, known: usize) -> Self {
        DecodeError::SchemaMismatch {
            journal: event.journal.to_string(),
            offset: event.start,
            table: meta.full_name(),
            binlog: meta.columns.len(),
            known,
            source_of_schema: "information_schema and tracked DDL",
        }
    }
}
