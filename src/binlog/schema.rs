//! Table schemas for binlogs that do not describe their tables
//! (`binlog_row_metadata` other than FULL): column names, keys, signedness
//! and charsets from the source's information_schema, kept true to the
//! position being decoded.
//!
//! information_schema describes tables *now*, not at the position being
//! decoded. The lookup therefore only answers where it can prove the two
//! agree:
//! - a snapshot is taken between two reads of the binlog end (E1, E2), and
//!   the binlog from the start position to E2 is scanned for DDL: a table
//!   altered there is unknown before its last such DDL;
//! - a DDL met while streaming marks its tables for reload; the reload scans
//!   the binlog from that DDL to the end for later DDL on the same tables;
//! - every answer is checked against the wire types of the table map (count,
//!   types, lengths), so a schema that does not fit is refused.
//!
//! Where the schema at a position cannot be known, decoding stops with an
//! error that says so; `binlog_row_metadata=FULL` removes the problem.
//!
//! With `binlog_row_metadata=FULL` the same lookup only supplies what the
//! binlog cannot: the declared column type (`tinyint(1)`, `int(5) unsigned
//! zerofill`, `float(7,3)`, `inet6`), as canal prints it. There an unknown
//! answer is not an error: the decoder keeps the type derived from the
//! binlog.
//!
//! The DDL found by every scan is kept, with where the last scan ended, so a
//! reload after a DDL only scans what was written since: catching up over a
//! backlog with many DDL statements reads the backlog twice, not once per
//! DDL.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures_util::StreamExt;
use mysql_async::{Conn, Row, prelude::Queryable};

use super::{
    ddl::{self, DdlTarget, Statement},
    event::SourceEvent,
    filter::TableFilter,
    position::LogPosition,
    replica::{self, DumpStart, ReplicaConfig, ReplicaError, ServerInfo},
    table::{ColumnMeta, WireType},
};

/// Column details from outside the binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaColumn {
    pub name: String,
    pub is_key: bool,
    pub unsigned: bool,
    /// Charset name as information_schema spells it; empty for non-text.
    pub charset: String,
    /// COLUMN_TYPE, e.g. `int(10) unsigned`.
    pub mysql_type: String,
    /// DATA_TYPE, e.g. `int`, for checking against the binlog wire type.
    pub data_type: String,
}

/// What a lookup knows about a table at a position.
#[derive(Debug, Clone)]
pub enum SchemaAnswer {
    Known(Arc<[SchemaColumn]>),
    /// Changed by a DDL since it was loaded: load it again, then ask again.
    Reload,
    /// Cannot be known at this position, and why.
    Unknown(String),
}

/// Knows table schemas as of the decoder's position.
pub trait SchemaLookup: Send + Sync {
    fn columns(&mut self, schema: &str, table: &str, at: &LogPosition) -> SchemaAnswer;
    /// A DDL statement passed at `at`.
    fn apply_ddl(&mut self, target: &DdlTarget, at: &LogPosition);
}

type TableKey = (String, String);

fn key(schema: &str, table: &str) -> TableKey {
    (schema.to_lowercase(), table.to_lowercase())
}

/// Orders positions within one source's binlog (file names sort by their
/// sequence number).
fn before(a: &LogPosition, b: &LogPosition) -> bool {
    (a.journal_name.as_str(), a.position) < (b.journal_name.as_str(), b.position)
}

#[derive(Debug, Default)]
struct TableState {
    columns: Option<Arc<[SchemaColumn]>>,
    /// Positions before this are not described by `columns`.
    valid_from: Option<LogPosition>,
    stale: bool,
    /// Could not be loaded (and why); cleared by the next DDL on the table.
    unavailable: Option<String>,
}

/// information_schema snapshot plus DDL tracking.
#[derive(Debug, Default)]
pub struct InfoSchemaLookup {
    tables: HashMap<TableKey, TableState>,
    /// DDL found by the scans, in binlog order, from the earliest position a
    /// reload can still ask about up to where the scans reached.
    ddl_log: Vec<DdlSeen>,
    /// The binlog end read before the last scan (after its snapshot): every
    /// DDL up to here is in `ddl_log`.
    scanned_to: Option<LogPosition>,
    /// Where the start-up scan began when it did not begin at the start
    /// position (see [`DECLARED_TYPES_SCAN_LIMIT`]): nothing before is known.
    known_from: Option<LogPosition>,
}

/// How much binlog the start-up scan reads when only `mysqlType` depends on
/// it (binlog_row_metadata=FULL). The scan must reach the binlog's end
/// before the first row is decoded, so scanning a whole backlog would delay
/// a catch-up by the time it takes to read it again (about 1.5 s per GB on
/// the benchmark machine). Only the newest binlog files up to this size are
/// scanned; rows before them keep the binlog's type text.
pub const DECLARED_TYPES_SCAN_LIMIT: u64 = 64 << 20;

impl InfoSchemaLookup {
    /// Installs columns loaded from information_schema, valid from `from`.
    pub fn install(
        &mut self,
        schema: &str,
        table: &str,
        columns: Option<Arc<[SchemaColumn]>>,
        from: Option<LogPosition>,
    ) {
        let state = self.tables.entry(key(schema, table)).or_default();
        state.columns = columns;
        state.stale = false;
        state.unavailable = None;
        state.valid_from = match (state.valid_from.take(), from) {
            (Some(a), Some(b)) => Some(if before(&a, &b) { b } else { a }),
            (a, b) => a.or(b),
        };
    }

    /// Marks `table` as not describable before `position` (it was altered
    /// there, and the snapshot shows its state after that).
    pub fn altered_at(&mut self, schema: &str, table: &str, position: LogPosition) {
        let state = self.tables.entry(key(schema, table)).or_default();
        if state
            .valid_from
            .as_ref()
            .is_none_or(|v| before(v, &position))
        {
            state.valid_from = Some(position);
        }
    }

    /// Marks `table` as not describable until its next DDL (a reload
    /// failed); only used where an unknown answer is not an error.
    pub fn unavailable(&mut self, schema: &str, table: &str, reason: String) {
        let state = self.tables.entry(key(schema, table)).or_default();
        state.columns = None;
        state.stale = false;
        state.unavailable = Some(reason);
    }

    /// Where a reload for a table map at `at` starts scanning: DDL up to
    /// `scanned_to` are known already.
    pub fn scan_start(&self, at: &LogPosition) -> LogPosition {
        match &self.scanned_to {
            Some(scanned) if before(at, scanned) => scanned.clone(),
            _ => at.clone(),
        }
    }
}

impl SchemaLookup for InfoSchemaLookup {
    fn columns(&mut self, schema: &str, table: &str, at: &LogPosition) -> SchemaAnswer {
        if let Some(from) = &self.known_from
            && before(at, from)
        {
            return SchemaAnswer::Unknown(format!(
                "{schema}.{table} at a position before {from}, where the binlog scanned for DDL \
                 at start-up begins"
            ));
        }
        let Some(state) = self.tables.get(&key(schema, table)) else {
            return SchemaAnswer::Reload;
        };
        if state.stale {
            return SchemaAnswer::Reload;
        }
        if let Some(reason) = &state.unavailable {
            return SchemaAnswer::Unknown(reason.clone());
        }
        if let Some(valid_from) = &state.valid_from
            && before(at, valid_from)
        {
            return SchemaAnswer::Unknown(format!(
                "{schema}.{table} was altered at {valid_from}, after this position, and the source's \
                 information_schema only describes it after that change"
            ));
        }
        match &state.columns {
            Some(columns) => SchemaAnswer::Known(columns.clone()),
            None => SchemaAnswer::Unknown(format!(
                "{schema}.{table} does not exist on the source any more"
            )),
        }
    }

    fn apply_ddl(&mut self, target: &DdlTarget, _at: &LogPosition) {
        for (schema, table) in &target.tables {
            let state = self.tables.entry(key(schema, table)).or_default();
            state.stale = true;
            state.unavailable = None;
        }
        if target.tables.is_empty() && !target.schema.is_empty() {
            // CREATE/DROP DATABASE and unclassified statements: reload any
            // table of that schema on next use.
            let schema = target.schema.to_lowercase();
            for ((s, _), state) in self.tables.iter_mut() {
                if *s == schema {
                    state.stale = true;
                    state.unavailable = None;
                }
            }
        }
    }
}

/// Whether information_schema's description of a column can be the column
/// the binlog's table map describes.
pub fn fits(column: &ColumnMeta, known: &SchemaColumn) -> bool {
    let data_type = known.data_type.to_ascii_lowercase();
    let t = data_type.as_str();
    match column.wire {
        WireType::Tiny => t == "tinyint" || t == "bool" || t == "boolean",
        WireType::Short => t == "smallint",
        WireType::Int24 => t == "mediumint",
        WireType::Long => t == "int" || t == "integer",
        WireType::LongLong => t == "bigint",
        WireType::Float => t == "float",
        WireType::Double => t == "double" || t == "real",
        WireType::Decimal { precision, scale } => {
            (t == "decimal" || t == "numeric")
                && known.mysql_type.contains(&format!("({precision},{scale})"))
        }
        WireType::Year => t == "year",
        WireType::Date => t == "date",
        WireType::Time | WireType::Time2 { .. } => t == "time",
        WireType::DateTime | WireType::DateTime2 { .. } => t == "datetime",
        WireType::Timestamp | WireType::Timestamp2 { .. } => t == "timestamp",
        WireType::Bit { bits } => t == "bit" && known.mysql_type.contains(&format!("({bits})")),
        WireType::VarString { .. } => t == "varchar" || t == "varbinary",
        WireType::FixedString { .. } => t == "char" || t == "binary",
        WireType::Enum { .. } => t == "enum",
        WireType::Set { .. } => t == "set",
        WireType::Blob { .. } => {
            t.ends_with("text") || t.ends_with("blob") || t == "json" || t == "long"
        }
        WireType::Geometry { .. } => matches!(
            t,
            "geometry"
                | "point"
                | "linestring"
                | "polygon"
                | "multipoint"
                | "multilinestring"
                | "multipolygon"
                | "geometrycollection"
                | "geomcollection"
        ),
        WireType::Json { .. } => t == "json",
        WireType::Vector { .. } => t == "vector",
    }
}

const COLUMNS_QUERY: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, \
     COLUMN_KEY, CHARACTER_SET_NAME FROM information_schema.COLUMNS";

fn columns_from_rows(rows: Vec<Row>) -> HashMap<TableKey, Vec<SchemaColumn>> {
    let mut tables: HashMap<TableKey, Vec<SchemaColumn>> = HashMap::new();
    for row in rows {
        let text = |i: usize| {
            row.get::<Option<String>, _>(i)
                .flatten()
                .unwrap_or_default()
        };
        let column_type = text(4);
        tables
            .entry(key(&text(0), &text(1)))
            .or_default()
            .push(SchemaColumn {
                name: text(2),
                data_type: text(3),
                unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
                mysql_type: column_type,
                is_key: text(5).eq_ignore_ascii_case("PRI"),
                charset: text(6),
            });
    }
    tables
}

fn load_error(e: mysql_async::Error) -> ReplicaError {
    match e {
        mysql_async::Error::Server(s) if s.code == 1142 || s.code == 1227 => {
            ReplicaError::Fatal(format!(
                "cannot read table definitions from information_schema ({s}); the replication account needs SELECT"
            ))
        }
        e => ReplicaError::Transient(format!("cannot read information_schema: {e}")),
    }
}

/// Columns of every table that passes `filter`, in ordinal order.
pub async fn load_tables(
    conn: &mut Conn,
    filter: &TableFilter,
) -> Result<HashMap<TableKey, Arc<[SchemaColumn]>>, ReplicaError> {
    let rows: Vec<Row> = conn
        .query(format!(
            "{COLUMNS_QUERY} WHERE TABLE_SCHEMA NOT IN ('information_schema','performance_schema','sys') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
        ))
        .await
        .map_err(load_error)?;
    Ok(columns_from_rows(rows)
        .into_iter()
        .filter(|((schema, table), _)| filter.matches(schema, table))
        .map(|(k, v)| (k, Arc::from(v)))
        .collect())
}

/// Columns of one table, `None` if it does not exist.
pub async fn load_table(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Option<Arc<[SchemaColumn]>>, ReplicaError> {
    let rows: Vec<Row> = conn
        .exec(
            format!("{COLUMNS_QUERY} WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"),
            (schema, table),
        )
        .await
        .map_err(load_error)?;
    Ok(columns_from_rows(rows).into_values().next().map(Arc::from))
}

/// A DDL statement found by [`scan_ddl`].
#[derive(Debug, Clone)]
pub struct DdlSeen {
    pub position: LogPosition,
    pub tables: Vec<(String, String)>,
}

/// Reads the binlog from `from` to its current end (a non-blocking dump on
/// its own connection) and lists the DDL statements in it.
pub async fn scan_ddl(
    config: &ReplicaConfig,
    from: &DumpStart,
    server_id: u32,
) -> Result<Vec<DdlSeen>, ReplicaError> {
    let mut conn = replica::connect(config).await?;
    let info: ServerInfo = replica::probe(&mut conn).await?;
    let mut scan_config = config.clone();
    scan_config.server_id = server_id;
    let mut stream = replica::open_stream_non_blocking(conn, &info, &scan_config, from).await?;
    let mut journal: Arc<str> = match from {
        DumpStart::File { journal, .. } => Arc::from(journal.as_str()),
        DumpStart::Gtid(_) => Arc::from(""),
    };
    let mut seen_format = false;
    let mut found = Vec::new();
    loop {
        let next = match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(ReplicaError::Transient(
                    "scanning the binlog for DDL timed out".into(),
                ));
            }
        };
        let Some(event) = next else { break };
        let event = event
            .map_err(|e| ReplicaError::Transient(format!("scanning the binlog for DDL: {e}")))?;
        let header = event.header();
        let code = header.event_type_raw();
        if code == mysql_common::binlog::consts::EventType::ROTATE_EVENT as u8 {
            if let Ok(rotate) = super::guard::guarded(|| {
                event.read_event::<mysql_common::binlog::events::RotateEvent<'_>>()
            }) {
                let mut name = rotate.name_raw().to_vec();
                if info.checksum && !seen_format && name.len() > 4 {
                    name.truncate(name.len() - 4);
                }
                journal = Arc::from(String::from_utf8_lossy(&name).as_ref());
            }
            continue;
        }
        if code == mysql_common::binlog::consts::EventType::FORMAT_DESCRIPTION_EVENT as u8 {
            seen_format = true;
            continue;
        }
        if code != mysql_common::binlog::consts::EventType::QUERY_EVENT as u8 {
            continue;
        }
        let log_pos = u64::from(header.log_pos());
        let start = log_pos.saturating_sub(u64::from(header.event_size()));
        let placed = SourceEvent {
            event,
            journal: journal.clone(),
            start,
            end: log_pos,
            in_payload: false,
        };
        let Ok(query) = placed.parse::<mysql_common::binlog::events::QueryEvent<'_>>() else {
            continue;
        };
        let sql = String::from_utf8_lossy(query.query_raw());
        if let Statement::Ddl(target) = ddl::classify(&sql, &query.schema()) {
            if target.tables.is_empty() && leaves_tables_unchanged(&sql) {
                continue;
            }
            let mut tables = target.tables.clone();
            if tables.is_empty() && !target.schema.is_empty() {
                tables.push((target.schema.clone(), String::new()));
            }
            found.push(DdlSeen {
                position: LogPosition {
                    journal_name: journal.to_string(),
                    position: start,
                    ..Default::default()
                },
                tables,
            });
        }
    }
    Ok(found)
}

/// Statements naming no table that cannot change any table's definition
/// (views, accounts, routines, triggers, events, a database's defaults).
/// Any other statement without a table counts as altering every table of
/// its schema, which makes their earlier rows unknown.
fn leaves_tables_unchanged(sql: &str) -> bool {
    // Only the words before a body or column list: `CREATE ALGORITHM=UNDEFINED
    // DEFINER=`u`@`h` SQL SECURITY DEFINER VIEW v AS SELECT ...`.
    let head = sql.split(['(', ';']).next().unwrap_or_default();
    let words: Vec<String> = head
        .split_whitespace()
        .take_while(|w| !w.eq_ignore_ascii_case("AS"))
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let Some(first) = words.first() else {
        return false;
    };
    let object = |names: &[&str]| words.iter().skip(1).any(|w| names.contains(&w.as_str()));
    match first.as_str() {
        "GRANT" | "REVOKE" => true,
        "CREATE" | "DROP" => object(&[
            "VIEW",
            "USER",
            "ROLE",
            "TRIGGER",
            "PROCEDURE",
            "FUNCTION",
            "EVENT",
        ]),
        "ALTER" => object(&[
            "VIEW",
            "USER",
            "DATABASE",
            "SCHEMA",
            "PROCEDURE",
            "FUNCTION",
            "EVENT",
        ]),
        _ => false,
    }
}

/// Builds the lookup for a start position: a snapshot of the table
/// definitions, then a scan of the binlog from the start position to its end
/// (taken after the snapshot, so it covers every DDL the snapshot can
/// reflect): a table altered in that range is unknown before its last DDL.
///
/// With `scan_limit`, a start position further back than the newest binlog
/// files of that total size is not scanned from: the scan begins at the
/// oldest of those files, and positions before it are unknown.
pub async fn initial_lookup(
    config: &ReplicaConfig,
    info: &ServerInfo,
    filter: &TableFilter,
    start: &DumpStart,
    scan_limit: Option<u64>,
) -> Result<InfoSchemaLookup, ReplicaError> {
    let mut conn = replica::connect(config).await?;
    let tables = load_tables(&mut conn, filter).await?;
    let end = replica::binlog_end(&mut conn, info).await?;
    let end_position = LogPosition {
        journal_name: end.journal.clone(),
        position: end.position,
        ..Default::default()
    };
    let (scan_from, known_from) = match scan_limit {
        None => (start.clone(), None),
        Some(limit) => {
            let files = binary_logs(&mut conn).await?;
            let window = scan_window(&files, &end_position, limit);
            match start {
                DumpStart::File { journal, position }
                    if backlog(&files, journal, *position) <= limit
                        || !before(&LogPosition::new(journal.clone(), *position), &window) =>
                {
                    (start.clone(), None)
                }
                _ => (
                    DumpStart::File {
                        journal: window.journal_name.clone(),
                        position: window.position,
                    },
                    Some(window),
                ),
            }
        }
    };
    drop(conn);
    let mut lookup = InfoSchemaLookup::default();
    for ((schema, table), columns) in tables {
        lookup.install(&schema, &table, Some(columns), None);
    }
    tracing::info!(
        from = ?scan_from,
        to = %end_position,
        "scanning the binlog for DDL to know which table definitions hold at which position"
    );
    let ddl = scan_ddl(
        config,
        &scan_from,
        config.server_id.wrapping_add(2_000_000_000),
    )
    .await?;
    mark_altered(&mut lookup, &ddl);
    lookup.ddl_log = ddl;
    lookup.scanned_to = Some(end_position);
    lookup.known_from = known_from;
    Ok(lookup)
}

/// `SHOW BINARY LOGS`: file names and sizes, oldest first.
async fn binary_logs(conn: &mut Conn) -> Result<Vec<(String, u64)>, ReplicaError> {
    let rows: Vec<Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| ReplicaError::Transient(format!("cannot list the binlog files: {e}")))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some((
                row.get_opt::<String, _>(0)?.ok()?,
                row.get_opt::<u64, _>(1)?.ok()?,
            ))
        })
        .collect())
}

/// Bytes of binlog from `journal:position` to the end.
fn backlog(files: &[(String, u64)], journal: &str, position: u64) -> u64 {
    files
        .iter()
        .filter(|(name, _)| name.as_str() >= journal)
        .map(|(name, size)| {
            if name == journal {
                size.saturating_sub(position)
            } else {
                *size
            }
        })
        .fold(0, u64::saturating_add)
}

/// The start of the oldest binlog file such that it and every newer file
/// together hold at most `limit` bytes; `end` if the newest alone is larger
/// (a file can only be read from its start or a known event boundary).
fn scan_window(files: &[(String, u64)], end: &LogPosition, limit: u64) -> LogPosition {
    let mut window = end.clone();
    let mut total: u64 = 0;
    for (name, size) in files.iter().rev() {
        total = total.saturating_add(*size);
        if total > limit {
            break;
        }
        window = LogPosition::new(name.clone(), 4);
    }
    window
}

fn mark_altered(lookup: &mut InfoSchemaLookup, ddl: &[DdlSeen]) {
    let mut schemas_altered: HashSet<String> = HashSet::new();
    for seen in ddl {
        for (schema, table) in &seen.tables {
            if table.is_empty() {
                schemas_altered.insert(schema.to_lowercase());
            } else {
                lookup.altered_at(schema, table, seen.position.clone());
            }
        }
    }
    // A dropped or re-created database changes all of its tables.
    for seen in ddl {
        for (schema, table) in &seen.tables {
            if table.is_empty() && schemas_altered.contains(&schema.to_lowercase()) {
                let keys: Vec<TableKey> = lookup
                    .tables
                    .keys()
                    .filter(|(s, _)| *s == schema.to_lowercase())
                    .cloned()
                    .collect();
                for (s, t) in keys {
                    lookup.altered_at(&s, &t, seen.position.clone());
                }
            }
        }
    }
}

/// A table's definition as reloaded after a DDL, with the DDL the binlog
/// holds from where the reload scanned.
#[derive(Debug)]
pub struct Reloaded {
    schema: String,
    table: String,
    columns: Option<Arc<[SchemaColumn]>>,
    /// The table map position the reload is for.
    at: LogPosition,
    scanned_from: LogPosition,
    /// The binlog end read after the snapshot: the scan covers up to here.
    scanned_to: LogPosition,
    scanned: Vec<DdlSeen>,
}

/// Reloads one table for a table map at `at` (after a DDL on it), then scans
/// the binlog from `scan_from` (see [`InfoSchemaLookup::scan_start`]) to the
/// end so that a later DDL on the same table is noticed.
pub async fn reload_table(
    config: &ReplicaConfig,
    schema: &str,
    table: &str,
    at: &LogPosition,
    scan_from: &LogPosition,
) -> Result<Reloaded, ReplicaError> {
    let mut conn = replica::connect(config).await?;
    let info = replica::probe(&mut conn).await?;
    let columns = load_table(&mut conn, schema, table).await?;
    let end = replica::binlog_end(&mut conn, &info).await?;
    drop(conn);
    let from = DumpStart::File {
        journal: scan_from.journal_name.clone(),
        position: scan_from.position,
    };
    let scanned = scan_ddl(config, &from, config.server_id.wrapping_add(2_000_000_000)).await?;
    Ok(Reloaded {
        schema: schema.to_owned(),
        table: table.to_owned(),
        columns,
        at: at.clone(),
        scanned_from: scan_from.clone(),
        scanned_to: LogPosition {
            journal_name: end.journal,
            position: end.position,
            ..Default::default()
        },
        scanned,
    })
}

impl InfoSchemaLookup {
    pub fn apply_reload(&mut self, reloaded: Reloaded) {
        let Reloaded {
            schema,
            table,
            columns,
            at,
            scanned_from,
            scanned_to,
            scanned,
        } = reloaded;
        self.install(&schema, &table, columns, None);
        // DDL before `at` has been passed, so no later reload asks about it
        // (a reconnect resumes after the last DDL passed); the scan repeats
        // what the log holds from `scanned_from` on.
        self.ddl_log
            .retain(|d| !before(&d.position, &at) && before(&d.position, &scanned_from));
        self.ddl_log.extend(scanned);
        if self
            .scanned_to
            .as_ref()
            .is_none_or(|s| before(s, &scanned_to))
        {
            self.scanned_to = Some(scanned_to);
        }
        let later: Vec<DdlSeen> = self
            .ddl_log
            .iter()
            .filter(|d| before(&at, &d.position))
            .filter(|d| {
                d.tables.iter().any(|(s, t)| {
                    key(s, t) == key(&schema, &table)
                        || (t.is_empty() && s.eq_ignore_ascii_case(&schema))
                })
            })
            .cloned()
            .collect();
        mark_altered(self, &later);
    }
}

/// An [`InfoSchemaLookup`] shared between the decoder (which asks) and the
/// source (which loads, asynchronously).
#[derive(Debug, Clone, Default)]
pub struct SharedLookup(pub Arc<std::sync::Mutex<InfoSchemaLookup>>);

impl SharedLookup {
    fn lock(&self) -> std::sync::MutexGuard<'_, InfoSchemaLookup> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is a single insert), so a poisoned lock is usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn apply_reload(&self, reloaded: Reloaded) {
        self.lock().apply_reload(reloaded);
    }

    pub fn scan_start(&self, at: &LogPosition) -> LogPosition {
        self.lock().scan_start(at)
    }

    pub fn unavailable(&self, schema: &str, table: &str, reason: String) {
        self.lock().unavailable(schema, table, reason);
    }
}

impl SchemaLookup for SharedLookup {
    fn columns(&mut self, schema: &str, table: &str, at: &LogPosition) -> SchemaAnswer {
        self.lock().columns(schema, table, at)
    }

    fn apply_ddl(&mut self, target: &DdlTarget, at: &LogPosition) {
        self.lock().apply_ddl(target, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(journal: &str, position: u64) -> LogPosition {
        LogPosition {
            journal_name: journal.into(),
            position,
            ..Default::default()
        }
    }

    fn column(name: &str) -> SchemaColumn {
        SchemaColumn {
            name: name.into(),
            is_key: false,
            unsigned: false,
            charset: String::new(),
            mysql_type: "int(11)".into(),
            data_type: "int".into(),
        }
    }

    fn ddl(position: LogPosition, table: &str) -> DdlSeen {
        DdlSeen {
            position,
            tables: vec![("db".into(), table.into())],
        }
    }

    #[test]
    fn statements_that_leave_tables_unchanged() {
        for sql in [
            "DROP VIEW d_view",
            "CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1 AS `table`",
            "ALTER DATABASE shop CHARACTER SET utf8mb4",
            "GRANT SELECT ON *.* TO 'u'@'%'",
            "CREATE USER 'u'@'%' IDENTIFIED BY 'x'",
            "drop trigger if exists trg",
        ] {
            assert!(leaves_tables_unchanged(sql), "{sql}");
        }
        for sql in [
            "DROP DATABASE shop",
            "CREATE DATABASE shop",
            "ALTER ONLINE TABLE t MODIFY a INT(6)",
            "FLUSH TABLES",
            "",
        ] {
            assert!(!leaves_tables_unchanged(sql), "{sql}");
        }
    }

    #[test]
    fn the_start_up_scan_window_is_bounded() {
        let files = vec![
            ("bin.000001".to_owned(), 900),
            ("bin.000002".to_owned(), 300),
            ("bin.000003".to_owned(), 200),
        ];
        let end = pos("bin.000003", 200);
        assert_eq!(scan_window(&files, &end, 10_000), pos("bin.000001", 4));
        assert_eq!(scan_window(&files, &end, 500), pos("bin.000002", 4));
        assert_eq!(scan_window(&files, &end, 100), end);
        assert_eq!(backlog(&files, "bin.000002", 250), 250);
        assert_eq!(backlog(&files, "bin.000003", 150), 50);
        let mut lookup = InfoSchemaLookup::default();
        lookup.install("db", "t", Some(Arc::from(vec![column("a")])), None);
        lookup.known_from = Some(pos("bin.000002", 4));
        assert!(matches!(
            lookup.columns("db", "t", &pos("bin.000001", 800)),
            SchemaAnswer::Unknown(_)
        ));
        assert!(matches!(
            lookup.columns("db", "t", &pos("bin.000002", 4)),
            SchemaAnswer::Known(_)
        ));
    }

    #[test]
    fn reloads_use_the_ddl_already_scanned() {
        let mut lookup = InfoSchemaLookup::default();
        lookup.install("db", "t", Some(Arc::from(vec![column("a")])), None);
        // The initial scan covered up to bin.000003:100 and saw DDL on t
        // at 000002:500 and 000003:50.
        lookup.ddl_log = vec![
            ddl(pos("bin.000002", 500), "t"),
            ddl(pos("bin.000003", 50), "t"),
        ];
        lookup.scanned_to = Some(pos("bin.000003", 100));
        // A reload for a table map at 000002:600 scans only from 000003:100.
        let at = pos("bin.000002", 600);
        assert_eq!(lookup.scan_start(&at), pos("bin.000003", 100));
        lookup.apply_reload(Reloaded {
            schema: "db".into(),
            table: "t".into(),
            columns: Some(Arc::from(vec![column("a"), column("b")])),
            at: at.clone(),
            scanned_from: pos("bin.000003", 100),
            scanned_to: pos("bin.000003", 900),
            scanned: vec![ddl(pos("bin.000003", 700), "u")],
        });
        // t's later DDL (000003:50), known from the first scan, still holds.
        assert!(matches!(
            lookup.columns("db", "t", &pos("bin.000002", 700)),
            SchemaAnswer::Unknown(_)
        ));
        assert!(
            matches!(lookup.columns("db", "t", &pos("bin.000003", 60)), SchemaAnswer::Known(c) if c.len() == 2)
        );
        assert_eq!(lookup.scanned_to, Some(pos("bin.000003", 900)));
        assert_eq!(lookup.ddl_log.len(), 2, "DDL before the reload is dropped");
        // Past the scanned range a reload scans from its own position.
        assert_eq!(
            lookup.scan_start(&pos("bin.000004", 4)),
            pos("bin.000004", 4)
        );
        // A failed reload answers unknown until the table's next DDL.
        lookup.unavailable("db", "t", "no access".into());
        assert!(matches!(
            lookup.columns("db", "t", &pos("bin.000004", 10)),
            SchemaAnswer::Unknown(r) if r == "no access"
        ));
        let target = match ddl::classify("ALTER TABLE t ADD c INT", "db") {
            Statement::Ddl(t) => t,
            other => panic!("{other:?}"),
        };
        lookup.apply_ddl(&target, &pos("bin.000004", 20));
        assert!(matches!(
            lookup.columns("db", "t", &pos("bin.000004", 30)),
            SchemaAnswer::Reload
        ));
    }

    #[test]
    fn answers_follow_positions_and_ddl() {
        let mut lookup = InfoSchemaLookup::default();
        lookup.install("db", "t", Some(Arc::from(vec![column("a")])), None);
        lookup.altered_at("db", "t", pos("bin.000002", 500));
        assert!(matches!(
            lookup.columns("db", "t", &pos("bin.000002", 100)),
            SchemaAnswer::Unknown(_)
        ));
        assert!(matches!(
            lookup.columns("db", "t", &pos("bin.000001", 900)),
            SchemaAnswer::Unknown(_)
        ));
        assert!(matches!(
            lookup.columns("DB", "T", &pos("bin.000002", 600)),
            SchemaAnswer::Known(_)
        ));
        assert!(matches!(
            lookup.columns("db", "other", &pos("bin.000002", 600)),
            SchemaAnswer::Reload
        ));
        let target = match ddl::classify("ALTER TABLE t ADD b INT", "db") {
            Statement::Ddl(t) => t,
            other => panic!("{other:?}"),
        };
        lookup.apply_ddl(&target, &pos("bin.000002", 700));
        assert!(matches!(
            lookup.columns("db", "t", &pos("bin.000002", 800)),
            SchemaAnswer::Reload
        ));
        lookup.install(
            "db",
            "t",
            Some(Arc::from(vec![column("a"), column("b")])),
            None,
        );
        assert!(
            matches!(lookup.columns("db", "t", &pos("bin.000002", 800)), SchemaAnswer::Known(c) if c.len() == 2)
        );
    }
}
