//! The reads that feed the schema lookup: table definitions from the
//! source's information_schema, and the DDL in a stretch of its binlog
//! (a dump of its own that ends at the binlog's end). What the lookup makes
//! of them is [`super::tracking`]'s.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::StreamExt;
use mysql_async::{Conn, Row, prelude::Queryable};
use mysql_common::binlog::{
    consts::EventType,
    events::{Event, QueryEvent},
};

use super::{
    SchemaColumn,
    tracking::{self, DdlSeen, InfoSchemaLookup, Reloaded, TableKey, key},
};
use crate::binlog::{
    event::{SourceEvent, rotated_journal},
    filter::TableFilter,
    position::LogPosition,
    replica::{self, DumpMode, DumpStart, ReplicaConfig, ReplicaError, ServerInfo},
};

/// Added to the replica's server id for the dumps that scan for DDL, so
/// that they do not displace the main dump.
const DDL_SCAN_ID_OFFSET: u32 = 2_000_000_000;

/// How long a scan waits for the next event before it gives up.
const SCAN_EVENT_TIMEOUT: Duration = Duration::from_secs(60);

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
            ReplicaError::NoSchemaAccess { source: s }
        }
        e => ReplicaError::transient("cannot read information_schema", e),
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

/// Reads the binlog from `from` to its current end (a non-blocking dump on
/// its own connection) and lists the DDL statements in it.
pub async fn scan_ddl(
    config: &ReplicaConfig,
    from: &DumpStart,
) -> Result<Vec<DdlSeen>, ReplicaError> {
    let server_id = config.server_id.wrapping_add(DDL_SCAN_ID_OFFSET);
    let (mut stream, info) =
        replica::open_side_dump(config, server_id, from, DumpMode::ToEnd).await?;
    let mut journal: Arc<str> = match from {
        DumpStart::File { journal, .. } => Arc::from(journal.as_str()),
        DumpStart::Gtid(_) => Arc::from(""),
    };
    let mut seen_format = false;
    let mut found = Vec::new();
    loop {
        let next = tokio::time::timeout(SCAN_EVENT_TIMEOUT, stream.next())
            .await
            .map_err(|_| ReplicaError::ScanTimedOut)?;
        let Some(event) = next else { break };
        let event = event.map_err(|e| ReplicaError::transient("scanning the binlog for DDL", e))?;
        let code = event.header().event_type_raw();
        if code == EventType::ROTATE_EVENT as u8 {
            if let Ok(name) = rotated_journal(&event, info.checksum && !seen_format) {
                journal = name;
            }
        } else if code == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
            seen_format = true;
        } else if code == EventType::QUERY_EVENT as u8
            && let Some(seen) = query_ddl(event, &journal)
        {
            found.push(seen);
        }
    }
    Ok(found)
}

/// The DDL of a QUERY event in `journal`, if it changes a table.
fn query_ddl(event: Event, journal: &Arc<str>) -> Option<DdlSeen> {
    let header = event.header();
    let log_pos = u64::from(header.log_pos());
    let start = log_pos.saturating_sub(u64::from(header.event_size()));
    let placed = SourceEvent {
        event,
        journal: journal.clone(),
        start,
        end: log_pos,
        in_payload: false,
    };
    let query = placed.parse::<QueryEvent<'_>>().ok()?;
    let sql = String::from_utf8_lossy(query.query_raw());
    let tables = tracking::tables_changed_by(&sql, &query.schema())?;
    Some(DdlSeen {
        position: LogPosition::new(journal.to_string(), start),
        tables,
    })
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
    let end_position = LogPosition::new(end.journal, end.position);
    let (scan_from, known_from) = match scan_limit {
        None => (start.clone(), None),
        Some(limit) => {
            let files = replica::binlog_files(&mut conn).await?;
            tracking::scan_range(start, &files, &end_position, limit)
        }
    };
    drop(conn);
    tracing::info!(
        from = ?scan_from,
        to = %end_position,
        "scanning the binlog for DDL to know which table definitions hold at which position"
    );
    let ddl = scan_ddl(config, &scan_from).await?;
    Ok(InfoSchemaLookup::from_snapshot(
        tables,
        ddl,
        end_position,
        known_from,
    ))
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
    let (mut conn, info) = replica::connect_and_probe(config).await?;
    let columns = load_table(&mut conn, schema, table).await?;
    let end = replica::binlog_end(&mut conn, &info).await?;
    drop(conn);
    let from = DumpStart::File {
        journal: scan_from.journal_name.clone(),
        position: scan_from.position,
    };
    let scanned = scan_ddl(config, &from).await?;
    Ok(Reloaded {
        schema: schema.to_owned(),
        table: table.to_owned(),
        columns,
        at: at.clone(),
        scanned_from: scan_from.clone(),
        scanned_to: LogPosition::new(end.journal, end.position),
        scanned,
    })
}
