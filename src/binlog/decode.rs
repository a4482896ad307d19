//! The decoder: binlog events in, canal entries out.
//!
//! One state machine for live streams and files. It tracks the server
//! flavor (from FORMAT_DESCRIPTION), table maps, the executed GTID state and
//! transaction boundaries, and turns QUERY, XID, GTID and rows events into
//! TRANSACTIONBEGIN / ROWDATA / TRANSACTIONEND entries with canal's header
//! fields. Event kinds that could carry changes but are not understood stop
//! decoding with an error that names them: data is never dropped silently.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use mysql_common::binlog::{
    consts::EventType as Bt,
    events::{
        ExecuteLoadQueryEvent, FormatDescriptionEvent, GtidEvent, IntvarEvent, QueryEvent,
        RandEvent, RowsQueryEvent, TableMapEvent, UserVarEvent, XidEvent,
    },
};
use prost::{Message, encoding::encode_varint};

use crate::protocol::entry::{
    Entry, EntryType, EventType, Header, Pair, RowChange, TransactionBegin, TransactionEnd, Type,
};

use super::{
    change::{ChangeEvent, ChangeKind},
    charset::{charset_by_name, charset_name_of_collation},
    ddl::{self, DdlTarget, Statement},
    event::{SourceEvent, event_type_name, mariadb_type},
    filter::EventFilter,
    gtid::{GtidState, MariadbGtidPos, MysqlGtidSet, MysqlSid},
    mariadb::{self, MariadbGtidEvent},
    position::LogPosition,
    rows::{self, ColumnParts, RowsKind, RowsScratch},
    schema::{SchemaAnswer, SchemaLookup, fits},
    table::{ServerFlavor, TableMeta, mysql_type_text},
    value::ValueOptions,
};

/// What to do with tables whose column names the binlog does not carry
/// (binlog_row_metadata other than FULL) and no schema lookup knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnnamedColumns {
    /// Stop with an error: the server must not guess.
    #[default]
    Reject,
    /// Name columns by position (`@1`, `@2`...), as mysqlbinlog does; for
    /// inspecting files.
    Positional,
}

/// Decoder settings (canal's `canal.instance.filter.*` switches included).
#[derive(Debug, Clone)]
pub struct DecoderOptions {
    pub values: ValueOptions,
    /// Fill header `gtid` (executed set) and the `curtGtid*` props, as canal
    /// does with `canal.instance.gtidon=true`.
    pub gtid_header: bool,
    pub unnamed_columns: UnnamedColumns,
    /// Drop statement-based DML and ROWS_QUERY / ANNOTATE_ROWS text entries.
    pub filter_query_dml: bool,
    /// Drop QUERY-typed statements (GRANT, CREATE USER...).
    pub filter_query_dcl: bool,
    /// Drop DDL entries.
    pub filter_query_ddl: bool,
    /// Drop all row changes.
    pub filter_rows: bool,
    pub filter_insert: bool,
    pub filter_update: bool,
    pub filter_delete: bool,
    /// Skip rows of tables whose metadata does not fit instead of stopping.
    pub filter_table_error: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            values: ValueOptions::default(),
            gtid_header: false,
            unnamed_columns: UnnamedColumns::Reject,
            filter_query_dml: false,
            filter_query_dcl: false,
            filter_query_ddl: false,
            filter_rows: false,
            filter_insert: false,
            filter_update: false,
            filter_delete: false,
            filter_table_error: false,
        }
    }
}

/// Why decoding stopped.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{journal}:{offset}: malformed {event_type} event: {reason}")]
    Malformed {
        journal: String,
        offset: u64,
        event_type: String,
        reason: String,
    },
    #[error(
        "{journal}:{offset}: {event_type} events are not supported and may carry row changes; \
         stopping rather than dropping them ({hint})"
    )]
    Unsupported {
        journal: String,
        offset: u64,
        event_type: String,
        hint: &'static str,
    },
    #[error(
        "{journal}:{offset}: rows event for table id {table_id} has no preceding TABLE_MAP event"
    )]
    UnknownTable {
        journal: String,
        offset: u64,
        table_id: u64,
    },
    #[error("{journal}:{offset}: {reason}")]
    Table {
        journal: String,
        offset: u64,
        reason: String,
    },
    #[error("{journal}:{offset}: {source}")]
    Rows {
        journal: String,
        offset: u64,
        source: Box<rows::RowsError>,
    },
    #[error(
        "{journal}:{offset}: the binlog carries no column names for {table} and its schema at this \
         position is not known{reason}; set binlog_row_metadata=FULL on the source (MySQL 8.0.1+, \
         MariaDB 10.5+) so the binlog describes every table itself"
    )]
    NoColumnNames {
        journal: String,
        offset: u64,
        table: String,
        reason: String,
    },
    /// The schema lookup must reload a table before this event can be
    /// decoded; decode the same event again afterwards.
    #[error("{journal}:{offset}: the definition of {schema}.{table} must be reloaded")]
    SchemaReload {
        journal: String,
        offset: u64,
        schema: String,
        table: String,
    },
    #[error(
        "{journal}:{offset}: {table} has {binlog} columns in the binlog but {known} in its known \
         schema ({source_of_schema}); the schema at this position is not known, refusing to guess \
         (binlog_row_metadata=FULL avoids this)"
    )]
    SchemaMismatch {
        journal: String,
        offset: u64,
        table: String,
        binlog: usize,
        known: usize,
        source_of_schema: &'static str,
    },
}

/// A table map as decoded, kept while its table id is in use.
struct CachedTable {
    raw: Vec<u8>,
    meta: Arc<TableMeta>,
    parts: Arc<[ColumnParts]>,
    included: bool,
}

/// The GTID of the transaction being decoded.
#[derive(Debug, Clone)]
enum CurrentGtid {
    Mysql {
        text: String,
        last_committed: i64,
        sequence_number: i64,
    },
    Mariadb(String),
}

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
        let code = event.type_code();
        let malformed = |reason: String| DecodeError::Malformed {
            journal: event.journal.to_string(),
            offset: event.start,
            event_type: event_type_name(code),
            reason,
        };
        match code {
            c if c == Bt::FORMAT_DESCRIPTION_EVENT as u8 => {
                let fde = event
                    .parse::<FormatDescriptionEvent<'_>>()
                    .map_err(|e| malformed(e.to_string()))?;
                self.flavor = ServerFlavor::from_server_version(&fde.server_version());
                // A new FDE at position 4 starts a file: no transaction spans it.
                self.in_transaction = false;
                self.in_group = false;
            }
            c if c == Bt::QUERY_EVENT as u8 => self.decode_query(event, out)?,
            c if c == Bt::XID_EVENT as u8 => {
                let xid = event
                    .parse::<XidEvent>()
                    .map_err(|e| malformed(e.to_string()))?;
                let end = TransactionEnd {
                    transaction_id: (xid.xid as i64).to_string(),
                    ..Default::default()
                };
                self.push(
                    event,
                    out,
                    EntryType::Transactionend,
                    self.header(event, "", "", None),
                    end.encode_to_vec(),
                    ChangeKind::TransactionEnd,
                );
                self.end_transaction();
            }
            c if c == Bt::TABLE_MAP_EVENT as u8 => self.decode_table_map(event)?,
            c if c == Bt::WRITE_ROWS_EVENT_V1 as u8 => {
                self.decode_rows(event, RowsKind::Insert, false, false, out)?
            }
            c if c == Bt::UPDATE_ROWS_EVENT_V1 as u8 => {
                self.decode_rows(event, RowsKind::Update, false, false, out)?
            }
            c if c == Bt::DELETE_ROWS_EVENT_V1 as u8 => {
                self.decode_rows(event, RowsKind::Delete, false, false, out)?
            }
            c if c == Bt::WRITE_ROWS_EVENT as u8 => {
                self.decode_rows(event, RowsKind::Insert, true, false, out)?
            }
            c if c == Bt::UPDATE_ROWS_EVENT as u8 => {
                self.decode_rows(event, RowsKind::Update, true, false, out)?
            }
            c if c == Bt::DELETE_ROWS_EVENT as u8 => {
                self.decode_rows(event, RowsKind::Delete, true, false, out)?
            }
            c if c == Bt::PARTIAL_UPDATE_ROWS_EVENT as u8 => {
                self.decode_rows(event, RowsKind::Update, true, true, out)?
            }
            c if c == Bt::GTID_EVENT as u8 || c == Bt::GTID_TAGGED_LOG_EVENT as u8 => {
                let gtid = event
                    .parse::<GtidEvent>()
                    .map_err(|e| malformed(e.to_string()))?;
                self.begin_mysql_gtid(&gtid);
            }
            c if c == Bt::ANONYMOUS_GTID_EVENT as u8 => {
                self.current_gtid = None;
                self.in_group = true;
            }
            c if c == Bt::PREVIOUS_GTIDS_EVENT as u8 => {
                let set = super::gtid::parse_previous_gtids(event.event.data())
                    .ok_or_else(|| malformed("GTID set is truncated or inconsistent".into()))?;
                if self.gtid_state.is_none() {
                    self.set_gtid_state(Some(GtidState::Mysql(set)));
                }
            }
            c if c == Bt::ROWS_QUERY_EVENT as u8 => {
                let query = event
                    .parse::<RowsQueryEvent<'_>>()
                    .map_err(|e| malformed(e.to_string()))?;
                self.push_text_query(event, out, query.query().into_owned());
            }
            c if c == Bt::INTVAR_EVENT as u8 => {
                let intvar = event
                    .parse::<IntvarEvent>()
                    .map_err(|e| malformed(e.to_string()))?;
                self.push_text_query(
                    event,
                    out,
                    format!("SET INSERT_ID = {}", intvar.value() as i64),
                );
            }
            c if c == Bt::RAND_EVENT as u8 => {
                let rand = event
                    .parse::<RandEvent>()
                    .map_err(|e| malformed(e.to_string()))?;
                self.push_text_query(
                    event,
                    out,
                    format!(
                        "SET SESSION rand_seed1 = {} , rand_seed2 = {}",
                        rand.seed1.0, rand.seed2.0
                    ),
                );
            }
            c if c == Bt::USER_VAR_EVENT as u8 => {
                let var = event
                    .parse::<UserVarEvent<'_>>()
                    .map_err(|e| malformed(e.to_string()))?;
                self.push_text_query(event, out, user_var_sql(&var));
            }
            c if c == Bt::XA_PREPARE_LOG_EVENT as u8 => self.end_transaction(),
            c if c == Bt::EXECUTE_LOAD_QUERY_EVENT as u8 => {
                // Statement-based LOAD DATA: the statement is forwarded as text,
                // like other statement-based changes (the file contents are not rows).
                let load = event
                    .parse::<ExecuteLoadQueryEvent<'_>>()
                    .map_err(|e| malformed(e.to_string()))?;
                let sql = query_charset(load.status_vars())
                    .decode(load.query_raw())
                    .into_owned();
                self.decode_statement(
                    event,
                    out,
                    load.schema().into_owned(),
                    sql,
                    load.thread_id(),
                );
            }
            c if c == Bt::INCIDENT_EVENT as u8 => {
                tracing::warn!(
                    journal = %event.journal,
                    offset = event.start,
                    "the source logged an INCIDENT event: it may have lost changes around this point"
                );
            }
            mariadb_type::GTID => {
                let gtid =
                    MariadbGtidEvent::parse(event.event.data(), event.event.header().server_id())
                        .ok_or_else(|| malformed("body too short".into()))?;
                self.begin_mariadb_gtid(event, &gtid, out);
            }
            mariadb_type::GTID_LIST => {
                let list = mariadb::parse_gtid_list(event.event.data())
                    .ok_or_else(|| malformed("GTID list is truncated".into()))?;
                if self.gtid_state.is_none() && !list.is_empty() {
                    let mut pos = MariadbGtidPos::default();
                    for gtid in list {
                        pos.update(gtid);
                    }
                    self.set_gtid_state(Some(GtidState::Mariadb(pos)));
                }
            }
            mariadb_type::ANNOTATE_ROWS => {
                let text = mariadb::annotate_rows_text(event.event.data());
                self.push_text_query(event, out, text);
            }
            mariadb_type::START_ENCRYPTION => {
                return Err(DecodeError::Unsupported {
                    journal: event.journal.to_string(),
                    offset: event.start,
                    event_type: event_type_name(code),
                    hint: "the binlog file is encrypted at rest; read it through a replica connection, \
                           which the server decrypts",
                });
            }
            mariadb_type::QUERY_COMPRESSED
            | mariadb_type::FIRST_COMPRESSED_ROWS..=mariadb_type::LAST_COMPRESSED_ROWS => {
                return Err(DecodeError::Unsupported {
                    journal: event.journal.to_string(),
                    offset: event.start,
                    event_type: event_type_name(code),
                    hint: "MariaDB binlog compression is on; set log_bin_compress=OFF on the source",
                });
            }
            mariadb_type::PARTIAL_ROW_DATA => {
                return Err(DecodeError::Unsupported {
                    journal: event.journal.to_string(),
                    offset: event.start,
                    event_type: event_type_name(code),
                    hint: "the source splits large transactions into fragments, which this server cannot reassemble yet",
                });
            }
            c if is_known_without_changes(c) => {}
            c => {
                let ignorable = event.event.header().flags_raw() & IGNORABLE_FLAG != 0;
                if ignorable || HARMLESS_UNKNOWN_TYPES.contains(&c) {
                    tracing::info!(
                        journal = %event.journal,
                        offset = event.start,
                        event_type = c,
                        "skipping an event type that carries no changes"
                    );
                } else {
                    return Err(DecodeError::Unsupported {
                        journal: event.journal.to_string(),
                        offset: event.start,
                        event_type: event_type_name(c),
                        hint: "unknown event type without the ignorable flag",
                    });
                }
            }
        }
        Ok(())
    }

    fn end_transaction(&mut self) {
        self.in_transaction = false;
        self.in_group = false;
        self.current_gtid = None;
    }

    fn begin_mysql_gtid(&mut self, gtid: &GtidEvent) {
        self.in_group = true;
        let sid = MysqlSid {
            uuid: gtid.sid(),
            tag: gtid
                .tag()
                .map(|t| t.as_str().to_ascii_lowercase())
                .unwrap_or_default(),
        };
        let mut text = super::gtid::format_uuid(&sid.uuid);
        if !sid.tag.is_empty() {
            text.push(':');
            text.push_str(&sid.tag);
        }
        text.push(':');
        text.push_str(&gtid.gno().to_string());
        match &mut self.gtid_state {
            Some(GtidState::Mysql(set)) => set.add(&sid, gtid.gno()),
            _ => {
                let mut set = MysqlGtidSet::default();
                set.add(&sid, gtid.gno());
                self.gtid_state = Some(GtidState::Mysql(set));
            }
        }
        self.refresh_gtid_text();
        self.current_gtid = Some(CurrentGtid::Mysql {
            text,
            last_committed: gtid.last_committed() as i64,
            sequence_number: gtid.sequence_number() as i64,
        });
    }

    fn begin_mariadb_gtid(
        &mut self,
        event: &SourceEvent,
        gtid: &MariadbGtidEvent,
        out: &mut Vec<ChangeEvent>,
    ) {
        match &mut self.gtid_state {
            Some(GtidState::Mariadb(pos)) => pos.update(gtid.gtid),
            _ => {
                let mut pos = MariadbGtidPos::default();
                pos.update(gtid.gtid);
                self.gtid_state = Some(GtidState::Mariadb(pos));
            }
        }
        self.refresh_gtid_text();
        self.current_gtid = Some(CurrentGtid::Mariadb(gtid.gtid.to_string()));
        self.in_group = true;
        // With GTID capability MariaDB sends no BEGIN query: the GTID event of
        // a non-standalone group opens the transaction.
        if !gtid.is_standalone() && gtid.flags & MariadbGtidEvent::COMPLETED_XA == 0 {
            let begin = TransactionBegin::default();
            self.push(
                event,
                out,
                EntryType::Transactionbegin,
                self.header(event, "", "", None),
                begin.encode_to_vec(),
                ChangeKind::TransactionBegin,
            );
            self.in_transaction = true;
        }
    }

    fn refresh_gtid_text(&mut self) {
        if self.options.gtid_header {
            self.gtid_text = self.gtid_state.as_ref().map(|s| Arc::from(s.to_string()));
        }
    }

    fn decode_table_map(&mut self, event: &SourceEvent) -> Result<(), DecodeError> {
        let data = event.event.data();
        super::table::check_table_map_body(data).map_err(|reason| DecodeError::Malformed {
            journal: event.journal.to_string(),
            offset: event.start,
            event_type: "TABLE_MAP".into(),
            reason: reason.into(),
        })?;
        let tme = event
            .parse::<TableMapEvent<'_>>()
            .map_err(|e| DecodeError::Malformed {
                journal: event.journal.to_string(),
                offset: event.start,
                event_type: "TABLE_MAP".into(),
                reason: e.to_string(),
            })?;
        let table_id = tme.table_id();
        if let Some(cached) = self.tables.get(&table_id)
            && cached.raw == data
            && self.cached_filter_generation == self.filter_generation
        {
            return Ok(());
        }
        let flavor = self.flavor;
        let mut meta = super::guard::guarded(|| TableMeta::from_table_map(&tme, flavor)).map_err(
            |reason| DecodeError::Table {
                journal: event.journal.to_string(),
                offset: event.start,
                reason: reason.to_string(),
            },
        )?;
        let included = self.filter.tables.matches(&meta.schema, &meta.table);
        if !meta.has_names && included {
            self.fill_names(event, &mut meta)?;
        } else if included && self.schema.is_some() {
            self.fill_declared_types(event, &mut meta)?;
        }
        if self.cached_filter_generation != self.filter_generation {
            self.tables.clear();
            self.cached_filter_generation = self.filter_generation;
        }
        let parts: Arc<[ColumnParts]> = meta.columns.iter().map(ColumnParts::new).collect();
        self.tables.insert(
            table_id,
            CachedTable {
                raw: data.to_vec(),
                meta: Arc::new(meta),
                parts,
                included,
            },
        );
        Ok(())
    }

    /// Completes a table map without column names from the schema lookup, or
    /// by position when allowed.
    fn fill_names(&mut self, event: &SourceEvent, meta: &mut TableMeta) -> Result<(), DecodeError> {
        let at = LogPosition::new(event.journal.to_string(), event.start);
        let answer = match self.schema.as_mut() {
            Some(lookup) => lookup.columns(&meta.schema, &meta.table, &at),
            None => SchemaAnswer::Unknown(String::new()),
        };
        let columns = match answer {
            SchemaAnswer::Known(columns) => columns,
            SchemaAnswer::Reload => {
                return Err(DecodeError::SchemaReload {
                    journal: event.journal.to_string(),
                    offset: event.start,
                    schema: meta.schema.clone(),
                    table: meta.table.clone(),
                });
            }
            SchemaAnswer::Unknown(_)
                if self.options.unnamed_columns == UnnamedColumns::Positional =>
            {
                for (index, column) in meta.columns.iter_mut().enumerate() {
                    column.name = format!("@{}", index + 1);
                }
                return Ok(());
            }
            SchemaAnswer::Unknown(reason) => {
                return Err(DecodeError::NoColumnNames {
                    journal: event.journal.to_string(),
                    offset: event.start,
                    table: meta.full_name(),
                    reason: if reason.is_empty() {
                        reason
                    } else {
                        format!(" ({reason})")
                    },
                });
            }
        };
        let mismatch = |known: usize| DecodeError::SchemaMismatch {
            journal: event.journal.to_string(),
            offset: event.start,
            table: meta.full_name(),
            binlog: meta.columns.len(),
            known,
            source_of_schema: "information_schema and tracked DDL",
        };
        if columns.len() != meta.columns.len()
            || meta
                .columns
                .iter()
                .zip(columns.iter())
                .any(|(c, k)| !fits(c, k))
        {
            return Err(mismatch(columns.len()));
        }
        for (column, known) in meta.columns.iter_mut().zip(columns.iter()) {
            column.name = known.name.clone();
            column.is_key = known.is_key;
            column.unsigned = known.unsigned;
            if !known.charset.is_empty() {
                column.charset = charset_by_name(&known.charset);
                column.charset_name = static_charset_name(&known.charset);
            }
            column.is_text = matches!(column.wire, super::table::WireType::Blob { .. })
                && !column.charset.is_binary()
                && !known.charset.is_empty();
            column.mysql_type = if known.mysql_type.is_empty() {
                mysql_type_text(column, self.flavor, None)
            } else {
                known.mysql_type.clone()
            };
        }
        meta.has_names = true;
        Ok(())
    }

    /// Takes `mysqlType` from the table's declared definition for a table
    /// map that describes its columns itself (binlog_row_metadata=FULL):
    /// the binlog has no display widths, ZEROFILL, FLOAT(M,D) or MariaDB's
    /// INET6/INET4/UUID names, which canal prints. Everything else keeps
    /// coming from the binlog. A definition that is not known at this
    /// position, or that does not describe these very columns, leaves the
    /// binlog's types; only a reload request stops the event (it is decoded
    /// again once the table is loaded).
    fn fill_declared_types(
        &mut self,
        event: &SourceEvent,
        meta: &mut TableMeta,
    ) -> Result<(), DecodeError> {
        let at = LogPosition::new(event.journal.to_string(), event.start);
        let Some(lookup) = self.schema.as_mut() else {
            return Ok(());
        };
        let missing = match lookup.columns(&meta.schema, &meta.table, &at) {
            SchemaAnswer::Known(columns) => {
                if columns.len() == meta.columns.len()
                    && meta
                        .columns
                        .iter()
                        .zip(columns.iter())
                        .all(|(c, k)| declared_type_fits(c, k))
                {
                    for (column, known) in meta.columns.iter_mut().zip(columns.iter()) {
                        column.mysql_type = known.mysql_type.clone();
                    }
                    return Ok(());
                }
                "the source's definition does not describe the table map's columns".to_owned()
            }
            SchemaAnswer::Reload => {
                return Err(DecodeError::SchemaReload {
                    journal: event.journal.to_string(),
                    offset: event.start,
                    schema: meta.schema.clone(),
                    table: meta.table.clone(),
                });
            }
            SchemaAnswer::Unknown(reason) => reason,
        };
        let table = meta.full_name();
        // Bounded: one entry per table, capped for sources with huge
        // numbers of tables (beyond the cap the line is just not logged).
        if self.declared_types_missing.len() < 100_000
            && self.declared_types_missing.insert(table.clone())
        {
            tracing::info!(
                %table,
                position = %at,
                reason = %missing,
                "mysqlType comes from the binlog's table metadata (no display widths or ZEROFILL) \
                 where the declared type is not known"
            );
        }
        Ok(())
    }

    fn decode_rows(
        &mut self,
        event: &SourceEvent,
        kind: RowsKind,
        v2: bool,
        partial: bool,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), DecodeError> {
        let rows_error = |source| DecodeError::Rows {
            journal: event.journal.to_string(),
            offset: event.start,
            source: Box::new(source),
        };
        let body =
            rows::parse_rows_body(event.event.data(), kind, v2, partial).map_err(rows_error)?;
        let Some(cached) = self.tables.get(&body.table_id) else {
            return Err(DecodeError::UnknownTable {
                journal: event.journal.to_string(),
                offset: event.start,
                table_id: body.table_id,
            });
        };
        let filtered_kind = match kind {
            RowsKind::Insert => self.options.filter_insert,
            RowsKind::Update => self.options.filter_update,
            RowsKind::Delete => self.options.filter_delete,
        };
        if !cached.included || self.options.filter_rows || filtered_kind {
            return Ok(());
        }
        let meta = cached.meta.clone();
        let parts = cached.parts.clone();
        let event_type = match kind {
            RowsKind::Insert => EventType::Insert,
            RowsKind::Update => EventType::Update,
            RowsKind::Delete => EventType::Delete,
        };
        // RowChange written directly in field order: tableId, eventType,
        // isDdl, then the rows (see rows::encode_rows).
        let mut store_value = Vec::with_capacity(event.event.data().len() * 4 + 16);
        encode_varint(1 << 3, &mut store_value);
        encode_varint(body.table_id, &mut store_value);
        encode_varint(2 << 3, &mut store_value);
        encode_varint(event_type as u64, &mut store_value);
        encode_varint(10 << 3, &mut store_value);
        encode_varint(0, &mut store_value);
        let rule = self.filter.columns.for_table(&meta.schema, &meta.table);
        let keep = |column: &super::table::ColumnMeta| rule.is_none_or(|r| r.keeps(&column.name));
        let written = rows::encode_rows(
            &meta,
            &parts,
            &body,
            &self.options.values,
            rule.is_some()
                .then_some(&keep as &dyn Fn(&super::table::ColumnMeta) -> bool),
            &mut self.scratch,
            &mut store_value,
        );
        let written = match written {
            Ok(written) => written,
            Err(error @ rows::RowsError::ColumnCount { .. }) if self.options.filter_table_error => {
                tracing::warn!(%error, "skipping rows (canal.instance.filter.table.error=true)");
                return Ok(());
            }
            Err(error) => return Err(rows_error(error)),
        };
        let mut header = self.header(event, &meta.schema, &meta.table, Some(event_type));
        if written.rows > 0 {
            header.props.push(Pair {
                key: "rowsCount".into(),
                value: written.rows.to_string(),
            });
        }
        self.push(
            event,
            out,
            EntryType::Rowdata,
            header,
            store_value,
            ChangeKind::Rows,
        );
        if let Some(last) = out.last_mut() {
            last.row_images = u32::try_from(written.images).unwrap_or(u32::MAX);
        }
        Ok(())
    }

    fn decode_query(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), DecodeError> {
        let query = event
            .parse::<QueryEvent<'_>>()
            .map_err(|e| DecodeError::Malformed {
                journal: event.journal.to_string(),
                offset: event.start,
                event_type: "QUERY".into(),
                reason: e.to_string(),
            })?;
        let sql = query_charset(query.status_vars())
            .decode(query.query_raw())
            .into_owned();
        self.decode_statement(
            event,
            out,
            query.schema().into_owned(),
            sql,
            query.thread_id(),
        );
        Ok(())
    }

    fn decode_statement(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        default_schema: String,
        sql: String,
        thread_id: u32,
    ) {
        match ddl::classify(&sql, &default_schema) {
            Statement::Begin { xa } => {
                if self.in_transaction && xa.is_none() {
                    // MariaDB's GTID event already opened it.
                    return;
                }
                let mut begin = TransactionBegin {
                    thread_id: i64::from(thread_id),
                    ..Default::default()
                };
                if let Some(xid) = xa {
                    begin.props.push(Pair {
                        key: "XA_TYPE".into(),
                        value: "XA START".into(),
                    });
                    begin.props.push(Pair {
                        key: "XA_XID".into(),
                        value: xid,
                    });
                }
                self.push(
                    event,
                    out,
                    EntryType::Transactionbegin,
                    self.header(event, "", "", None),
                    begin.encode_to_vec(),
                    ChangeKind::TransactionBegin,
                );
                self.in_transaction = true;
                self.in_group = true;
            }
            Statement::End { xa } => {
                let mut end = TransactionEnd {
                    transaction_id: "0".into(),
                    ..Default::default()
                };
                if let Some(xid) = xa {
                    end.props.push(Pair {
                        key: "XA_TYPE".into(),
                        value: "XA END".into(),
                    });
                    end.props.push(Pair {
                        key: "XA_XID".into(),
                        value: xid,
                    });
                }
                self.push(
                    event,
                    out,
                    EntryType::Transactionend,
                    self.header(event, "", "", None),
                    end.encode_to_vec(),
                    ChangeKind::TransactionEnd,
                );
                self.end_transaction();
            }
            Statement::XaOutcome { event_type, xid } => {
                let xa_type = if event_type == EventType::Xacommit {
                    "XA COMMIT"
                } else {
                    "XA ROLLBACK"
                };
                let change = RowChange {
                    event_type: Some(event_type as i32),
                    sql: sql.clone(),
                    props: vec![
                        Pair {
                            key: "XA_TYPE".into(),
                            value: xa_type.into(),
                        },
                        Pair {
                            key: "XA_XID".into(),
                            value: xid,
                        },
                    ],
                    ..Default::default()
                };
                self.push(
                    event,
                    out,
                    EntryType::Rowdata,
                    self.header(event, "", "", Some(event_type)),
                    change.encode_to_vec(),
                    ChangeKind::XaOutcome,
                );
                self.end_transaction();
            }
            Statement::Ignored => {}
            Statement::Ddl(target) => {
                if let Some(schema) = self.schema.as_mut() {
                    schema.apply_ddl(
                        &target,
                        &LogPosition::new(event.journal.to_string(), event.start),
                    );
                }
                // Table ids may be reused for the changed table.
                self.tables.clear();
                if self.keep_statement(&target) {
                    self.push_statement(event, out, &target, sql, default_schema, ChangeKind::Ddl);
                }
                if !self.in_transaction {
                    // Outside BEGIN, a statement is its own event group.
                    self.end_transaction();
                }
            }
            Statement::Dml(target) => {
                if !self.in_transaction {
                    self.end_transaction();
                }
                if !self.warned_statement_dml {
                    self.warned_statement_dml = true;
                    tracing::warn!(
                        journal = %event.journal,
                        offset = event.start,
                        "statement-based change in the binlog: it is forwarded as SQL text only; \
                         set binlog_format=ROW on the source to capture row images"
                    );
                }
                if self.options.filter_query_dml
                    || !self.filter.tables.matches(&target.schema, &target.table)
                {
                    return;
                }
                self.push_statement(event, out, &target, sql, default_schema, ChangeKind::Query);
            }
        }
    }

    /// A statement as a ROWDATA entry: DDL (`isDdl=true`) or statement-based
    /// DML (`isDdl=false`), with its text and the event's default schema.
    fn push_statement(
        &self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        target: &DdlTarget,
        sql: String,
        default_schema: String,
        kind: ChangeKind,
    ) {
        let change = RowChange {
            event_type: Some(target.event_type as i32),
            is_ddl: Some(kind == ChangeKind::Ddl),
            sql,
            ddl_schema_name: default_schema,
            ..Default::default()
        };
        let header = self.header(
            event,
            &target.schema,
            &target.table,
            Some(target.event_type),
        );
        self.push(
            event,
            out,
            EntryType::Rowdata,
            header,
            change.encode_to_vec(),
            kind,
        );
    }

    /// canal's rules for keeping a DDL or other statement entry.
    fn keep_statement(&self, target: &DdlTarget) -> bool {
        if target.event_type == EventType::Query {
            return !self.options.filter_query_dcl;
        }
        if self.options.filter_query_ddl {
            return false;
        }
        // Kept when any table it names passes the filter.
        target.tables.is_empty()
            || target
                .tables
                .iter()
                .any(|(schema, table)| self.filter.tables.matches(schema, table))
    }

    /// ROWS_QUERY, ANNOTATE_ROWS and statement-context events become QUERY
    /// entries carrying their text, as in canal.
    fn push_text_query(&self, event: &SourceEvent, out: &mut Vec<ChangeEvent>, sql: String) {
        if self.options.filter_query_dml {
            return;
        }
        let change = RowChange {
            event_type: Some(EventType::Query as i32),
            sql,
            ..Default::default()
        };
        let header = self.header(event, "", "", Some(EventType::Query));
        self.push(
            event,
            out,
            EntryType::Rowdata,
            header,
            change.encode_to_vec(),
            ChangeKind::Query,
        );
    }

    fn header(
        &self,
        event: &SourceEvent,
        schema: &str,
        table: &str,
        event_type: Option<EventType>,
    ) -> Header {
        let event_header = event.event.header();
        let mut props = Vec::new();
        let mut gtid = String::new();
        if self.options.gtid_header {
            if let Some(text) = &self.gtid_text {
                gtid = text.to_string();
            }
            if let Some(CurrentGtid::Mysql {
                text,
                last_committed,
                sequence_number,
            }) = &self.current_gtid
            {
                props.push(Pair {
                    key: "curtGtid".into(),
                    value: text.clone(),
                });
                props.push(Pair {
                    key: "curtGtidSn".into(),
                    value: sequence_number.to_string(),
                });
                props.push(Pair {
                    key: "curtGtidLct".into(),
                    value: last_committed.to_string(),
                });
            }
            if let Some(CurrentGtid::Mariadb(text)) = &self.current_gtid {
                props.push(Pair {
                    key: "curtGtid".into(),
                    value: text.clone(),
                });
            }
        }
        Header {
            version: Some(1),
            logfile_name: event.journal.to_string(),
            logfile_offset: event.start as i64,
            server_id: i64::from(event_header.server_id()),
            serveren_code: "UTF-8".into(),
            execute_time: i64::from(event_header.timestamp()) * 1000,
            source_type: Some(Type::Mysql as i32),
            schema_name: schema.to_owned(),
            table_name: table.to_owned(),
            event_length: (event.end - event.start) as i64,
            event_type: event_type.map(|t| t as i32),
            props,
            gtid,
        }
    }

    fn push(
        &self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        entry_type: EntryType,
        header: Header,
        store_value: Vec<u8>,
        kind: ChangeKind,
    ) {
        let position = LogPosition {
            journal_name: header.logfile_name.clone(),
            position: event.start,
            server_id: event.event.header().server_id(),
            gtid: header.gtid.clone(),
            timestamp_ms: header.execute_time,
        };
        out.push(ChangeEvent {
            entry: Entry {
                header: Some(header),
                entry_type: Some(entry_type as i32),
                store_value,
            },
            position,
            end: event.end,
            kind,
            row_images: 0,
        });
    }
}

/// MySQL's "ignorable" header flag: replicas may skip such events.
const IGNORABLE_FLAG: u16 = 0x80;

/// Unknown event types seen in the wild that carry no changes: 100 is the
/// padding Aurora MySQL writes; 41 is MySQL's HEARTBEAT_V2.
const HARMLESS_UNKNOWN_TYPES: &[u8] = &[41, 100];

/// Event types that are understood and carry no changes to forward.
fn is_known_without_changes(code: u8) -> bool {
    [
        Bt::ROTATE_EVENT,
        Bt::STOP_EVENT,
        Bt::HEARTBEAT_EVENT,
        Bt::IGNORABLE_EVENT,
        Bt::TRANSACTION_PAYLOAD_EVENT,
        Bt::TRANSACTION_CONTEXT_EVENT,
        Bt::VIEW_CHANGE_EVENT,
        Bt::START_EVENT_V3,
        Bt::BEGIN_LOAD_QUERY_EVENT,
        Bt::APPEND_BLOCK_EVENT,
    ]
    .iter()
    .any(|t| *t as u8 == code)
        || code == mariadb_type::BINLOG_CHECKPOINT
}

/// The client charset a QUERY event records for its statement text.
fn query_charset(vars: &mysql_common::binlog::events::StatusVars<'_>) -> super::charset::Charset {
    use mysql_common::binlog::{consts::StatusVarKey, events::StatusVarVal};
    vars.get_status_var(StatusVarKey::Charset)
        .and_then(|var| match var.get_value() {
            Ok(StatusVarVal::Charset { charset_client, .. }) => {
                charset_name_of_collation(charset_client)
            }
            _ => None,
        })
        .map(charset_by_name)
        .unwrap_or(super::charset::Charset::Utf8)
}

/// canal's text for a USER_VAR event: `SET @name := value`.
fn user_var_sql(var: &UserVarEvent<'_>) -> String {
    use mysql_common::constants::ItemResult;
    let name = var.name();
    if var.is_null() {
        return format!("SET @{name} := NULL");
    }
    let value = var.value();
    let rendered = match var.value_type() {
        Ok(ItemResult::STRING_RESULT) => {
            let charset = u16::try_from(var.charset())
                .ok()
                .and_then(charset_name_of_collation)
                .map(charset_by_name)
                .unwrap_or(super::charset::Charset::Utf8);
            format!("'{}'", charset.decode(value))
        }
        Ok(ItemResult::REAL_RESULT) if value.len() == 8 => {
            let mut text = String::new();
            let bits = u64::from_le_bytes(value.try_into().unwrap_or([0; 8]));
            super::javafmt::write_f64(f64::from_bits(bits), &mut text);
            text
        }
        Ok(ItemResult::INT_RESULT) if value.len() == 8 => {
            i64::from_le_bytes(value.try_into().unwrap_or([0; 8])).to_string()
        }
        _ => String::from_utf8_lossy(value).into_owned(),
    };
    format!("SET @{name} := {rendered}")
}

/// Charset names are few and fixed; map an owned name to the static one.
fn static_charset_name(name: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "binary", "utf8mb4", "utf8mb3", "utf8", "latin1", "latin2", "ascii", "ucs2", "utf16",
        "utf16le", "utf32", "gbk", "gb2312", "gb18030", "big5", "sjis", "cp932", "ujis", "eucjpms",
        "euckr", "cp1250", "cp1251", "cp1256", "cp1257", "greek", "hebrew", "latin5", "latin7",
        "koi8r", "koi8u", "tis620", "cp866", "macroman",
    ];
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .find(|n| **n == lower)
        .copied()
        .unwrap_or("unknown")
}

/// Whether `known` (information_schema) is the column the table map
/// describes, telling apart only what the binlog cannot carry: names and
/// the type text without display widths, ZEROFILL, FLOAT/DOUBLE (M,D) and
/// MariaDB's INET6/INET4/UUID (stored as BINARY) must agree.
fn declared_type_fits(
    column: &super::table::ColumnMeta,
    known: &super::schema::SchemaColumn,
) -> bool {
    !known.mysql_type.is_empty()
        && column.name.eq_ignore_ascii_case(&known.name)
        && undeclared(&column.mysql_type) == undeclared(&known.mysql_type)
}

/// A column type text without what only the declaration holds.
fn undeclared(mysql_type: &str) -> String {
    let text = mysql_type.to_ascii_lowercase().replace(" zerofill", "");
    match text.as_str() {
        "inet6" | "uuid" => return "binary(16)".into(),
        "inet4" => return "binary(4)".into(),
        _ => {}
    }
    for name in [
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "bigint",
        "float",
        "double",
    ] {
        if let Some(rest) = text.strip_prefix(name)
            && let Some(args) = rest.strip_prefix('(')
            && let Some(close) = args.find(')')
            && args[..close]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b',')
        {
            return format!("{name}{}", &args[close + 1..]);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::undeclared;

    #[test]
    fn declared_only_parts_are_set_aside() {
        for (declared, derived) in [
            ("tinyint(1)", "tinyint(4)"),
            ("int(5) unsigned zerofill", "int(10) unsigned"),
            ("INT(5)", "int"),
            ("float(7,3)", "float"),
            ("double(10,2) unsigned", "double unsigned"),
            ("bigint(20)", "bigint(20)"),
            ("inet6", "binary(16)"),
            ("uuid", "binary(16)"),
            ("inet4", "binary(4)"),
        ] {
            assert_eq!(undeclared(declared), undeclared(derived), "{declared}");
        }
        for (declared, derived) in [
            ("varchar(20)", "varchar(30)"),
            ("int(5) unsigned", "int(11)"),
            ("decimal(10,2)", "decimal(10,3)"),
            ("enum('a','b')", "enum('a','c')"),
            ("inet6", "binary(4)"),
            ("bigint", "int"),
        ] {
            assert_ne!(undeclared(declared), undeclared(derived), "{declared}");
        }
    }
}
