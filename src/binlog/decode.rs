//! The decoder: binlog events in, canal entries out.
//!
//! One state machine for live streams and files. It tracks the server
//! flavor (from FORMAT_DESCRIPTION), table maps, the executed GTID state and
//! transaction boundaries, and turns QUERY, XID, GTID and rows events into
//! TRANSACTIONBEGIN / ROWDATA / TRANSACTIONEND entries with canal's header
//! fields. Event kinds that could carry changes but are not understood stop
//! decoding with an error that names them: data is never dropped silently.
//!
//! [`Decoder::decode`] asks `event_role` which step an event type takes and
//! runs it; each step lives with its concern: `table_map` (TABLE_MAP events
//! and the schema lookup), `rows_event` (row changes), `statement` (QUERY
//! and the events that carry statement text), `transaction` (BEGIN, COMMIT,
//! XID, XA), `gtid_tracking` (MySQL's and MariaDB's GTID events) and
//! `entry_header` (canal's header fields on every entry).

mod entry_header;
mod error;
mod event_role;
mod gtid_tracking;
mod options;
mod rows_event;
mod statement;
mod table_map;
mod transaction;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use mysql_common::binlog::events::FormatDescriptionEvent;

pub use self::{
    error::DecodeError,
    options::{DecoderOptions, UnnamedColumns},
};
use self::{
    event_role::{EventRole, HARMLESS_UNKNOWN_TYPES, IGNORABLE_FLAG, role_of},
    gtid_tracking::CurrentGtid,
    table_map::CachedTable,
};
use super::{
    change::ChangeEvent, event::SourceEvent, filter::EventFilter, gtid::GtidState,
    rows::RowsScratch, schema::SchemaLookup, table::ServerFlavor,
};

/// Turns binlog events into canal entries.
pub struct Decoder {
    options: DecoderOptions,
    filter: Arc<EventFilter>,
    filter_generation: u64,
    flavor: ServerFlavor,
    tables: HashMap<u64, CachedTable>,
    cached_filter_generation: u64,
    gtid_state: Option<GtidState>,
    gtid_text: Option<Arc<str>>,
    current_gtid: Option<CurrentGtid>,
    /// Inside BEGIN ... COMMIT/XID.
    in_transaction: bool,
    /// Inside an event group (from its GTID or BEGIN to its end): positions
    /// inside a group are not resume points.
    in_group: bool,
    schema: Option<Box<dyn SchemaLookup>>,
    /// Tables whose declared types were not available, logged once each.
    declared_types_missing: HashSet<String>,
    warned_statement_dml: bool,
    scratch: RowsScratch,
}

impl Decoder {
    /// A decoder at the start of a stream or file, keeping what `filter`
    /// lets through.
    pub fn new(options: DecoderOptions, filter: Arc<EventFilter>) -> Self {
        Decoder {
            options,
            filter,
            filter_generation: 0,
            flavor: ServerFlavor::default(),
            tables: HashMap::new(),
            cached_filter_generation: 0,
            gtid_state: None,
            gtid_text: None,
            current_gtid: None,
            in_transaction: false,
            in_group: false,
            schema: None,
            declared_types_missing: HashSet::new(),
            warned_statement_dml: false,
            scratch: RowsScratch::default(),
        }
    }

    /// Uses `schema` for tables whose binlog carries no column names.
    pub fn set_schema_lookup(&mut self, schema: Option<Box<dyn SchemaLookup>>) {
        self.schema = schema;
    }

    /// The schema lookup in use, to reload a table it asked for.
    pub fn schema_lookup_mut(&mut self) -> Option<&mut (dyn SchemaLookup + 'static)> {
        self.schema.as_deref_mut()
    }

    /// Starts from a known executed GTID state (when resuming by GTID).
    pub fn set_gtid_state(&mut self, state: Option<GtidState>) {
        self.gtid_text = state.as_ref().map(|s| Arc::from(s.to_string()));
        self.gtid_state = state;
    }

    /// The executed GTID state after the last decoded event, if tracked.
    pub fn gtid_state(&self) -> Option<&GtidState> {
        self.gtid_state.as_ref()
    }

    /// Replaces the filter (e.g. a client subscribed with its own).
    pub fn set_filter(&mut self, filter: Arc<EventFilter>) {
        self.filter = filter;
        self.filter_generation += 1;
    }

    /// The filter in use.
    pub fn filter(&self) -> &Arc<EventFilter> {
        &self.filter
    }

    /// Whether the last decoded event left a transaction open.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Whether the last decoded event left an event group open, i.e. its end
    /// is not a place to resume from.
    pub fn in_group(&self) -> bool {
        self.in_group
    }

    /// The server that wrote the binlog, as its last FORMAT_DESCRIPTION said.
    pub fn flavor(&self) -> ServerFlavor {
        self.flavor
    }

    /// Forgets per-connection state (table maps, open transaction) before
    /// the stream restarts at a transaction boundary.
    pub fn reset_stream(&mut self) {
        self.tables.clear();
        self.in_transaction = false;
        self.in_group = false;
        self.current_gtid = None;
    }

    /// Decodes one event, appending the entries it yields to `out`.
    pub fn decode(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), DecodeError> {
        match role_of(event.type_code()) {
            EventRole::FormatDescription => self.decode_format_description(event)?,
            EventRole::Query(kind) => self.decode_query(event, out, kind)?,
            EventRole::StatementText(kind) => {
                let sql = statement::statement_text(event, kind)?;
                self.push_text_query(event, out, sql);
            }
            EventRole::Xid => self.decode_xid(event, out)?,
            EventRole::XaPrepare => self.end_transaction(),
            EventRole::TableMap => self.decode_table_map(event)?,
            EventRole::Rows(layout) => self.decode_rows(event, layout, out)?,
            EventRole::MysqlGtid => self.decode_mysql_gtid(event)?,
            EventRole::AnonymousGtid => {
                self.current_gtid = None;
                self.in_group = true;
            }
            EventRole::PreviousGtids => self.decode_previous_gtids(event)?,
            EventRole::MariadbGtid => self.decode_mariadb_gtid(event, out)?,
            EventRole::MariadbGtidList => self.decode_mariadb_gtid_list(event)?,
            EventRole::Incident => {
                tracing::warn!(
                    journal = %event.journal,
                    offset = event.start,
                    "the source logged an INCIDENT event: it may have lost changes around this point"
                );
            }
            EventRole::Unsupported(hint) => return Err(DecodeError::unsupported(event, hint)),
            EventRole::WithoutChanges => {}
            EventRole::Unknown => skip_unknown(event)?,
        }
        Ok(())
    }

    fn decode_format_description(&mut self, event: &SourceEvent) -> Result<(), DecodeError> {
        let fde = event
            .parse::<FormatDescriptionEvent<'_>>()
            .map_err(|e| DecodeError::malformed(event, e))?;
        self.flavor = ServerFlavor::from_server_version(&fde.server_version());
        // A new FDE at position 4 starts a file: no transaction spans it.
        self.in_transaction = false;
        self.in_group = false;
        Ok(())
    }
}

/// Skips an event type this decoder does not know when it cannot carry
/// changes (the source flagged it ignorable, or it is known to be harmless);
/// stops otherwise.
fn skip_unknown(event: &SourceEvent) -> Result<(), DecodeError> {
    let code = event.type_code();
    let ignorable = event.event.header().flags_raw() & IGNORABLE_FLAG != 0;
    if !ignorable && !HARMLESS_UNKNOWN_TYPES.contains(&code) {
        return Err(DecodeError::unsupported(
            event,
            "unknown event type without the ignorable flag",
        ));
    }
    tracing::info!(
        journal = %event.journal,
        offset = event.start,
        event_type = code,
        "skipping an event type that carries no changes"
    );
    Ok(())
}
