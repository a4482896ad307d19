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
}

/// information_schema snapshot plus DDL tracking.
#[derive(Debug, Default)]
pub struct InfoSchemaLookup {
    tables: HashMap<TableKey, TableState>,
}

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
}

impl SchemaLookup for InfoSchemaLookup {
    fn columns(&mut self, schema: &str, table: &str, at: &LogPosition) -> SchemaAnswer {
        let Some(state) = self.tables.get(&key(schema, table)) else {
            return SchemaAnswer::Reload;
        };
        if state.stale {
            return SchemaAnswer::Reload;
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
            self.tables.entry(key(schema, table)).or_default().stale = true;
        }
        if target.tables.is_empty() && !target.schema.is_empty() {
            // CREATE/DROP DATABASE and unclassified statements: reload any
            // table of that schema on next use.
            let schema = target.schema.to_lowercase();
            for ((s, _), state) in self.tables.iter_mut() {
                if *s == schema {
                    state.stale = true;
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

/// Builds the lookup for a start position: a snapshot of the table
/// definitions, then a scan of the binlog from the start position to its end
/// (taken after the snapshot, so it covers every DDL the snapshot can
/// reflect): a table altered in that range is unknown before its last DDL.
pub async fn initial_lookup(
    config: &ReplicaConfig,
    info: &ServerInfo,
    filter: &TableFilter,
    start: &DumpStart,
) -> Result<InfoSchemaLookup, ReplicaError> {
    let mut conn = replica::connect(config).await?;
    let tables = load_tables(&mut conn, filter).await?;
    let end = replica::binlog_end(&mut conn, info).await?;
    drop(conn);
    let mut lookup = InfoSchemaLookup::default();
    for ((schema, table), columns) in tables {
        lookup.install(&schema, &table, Some(columns), None);
    }
    tracing::info!(
        from = ?start,
        to = %format!("{}:{}", end.journal, end.position),
        "the source has no binlog_row_metadata=FULL: scanning the binlog for DDL to know which \
         table definitions hold at which position"
    );
    let ddl = scan_ddl(config, start, config.server_id.wrapping_add(2_000_000_000)).await?;
    mark_altered(&mut lookup, &ddl);
    Ok(lookup)
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

/// A table's definition as reloaded after a DDL, with the DDL on it that
/// followed in the binlog.
#[derive(Debug)]
pub struct Reloaded {
    schema: String,
    table: String,
    columns: Option<Arc<[SchemaColumn]>>,
    later_ddl: Vec<DdlSeen>,
}

/// Reloads one table after a DDL at `at`, scanning the binlog from there to
/// the end so that a later DDL on the same table is noticed.
pub async fn reload_table(
    config: &ReplicaConfig,
    schema: &str,
    table: &str,
    at: &LogPosition,
) -> Result<Reloaded, ReplicaError> {
    let mut conn = replica::connect(config).await?;
    let columns = load_table(&mut conn, schema, table).await?;
    drop(conn);
    let from = DumpStart::File {
        journal: at.journal_name.clone(),
        position: at.position,
    };
    let later_ddl = scan_ddl(config, &from, config.server_id.wrapping_add(2_000_000_000))
        .await?
        .into_iter()
        .filter(|d| before(at, &d.position))
        .filter(|d| {
            d.tables.iter().any(|(s, t)| {
                key(s, t) == key(schema, table) || (t.is_empty() && s.eq_ignore_ascii_case(schema))
            })
        })
        .collect();
    Ok(Reloaded {
        schema: schema.to_owned(),
        table: table.to_owned(),
        columns,
        later_ddl,
    })
}

impl InfoSchemaLookup {
    pub fn apply_reload(&mut self, reloaded: Reloaded) {
        self.install(&reloaded.schema, &reloaded.table, reloaded.columns, None);
        mark_altered(self, &reloaded.later_ddl);
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
