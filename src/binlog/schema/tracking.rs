//! What the lookup knows and how it answers, kept apart from the reads that
//! feed it ([`super::load`]): the table definitions of a snapshot, from which
//! position each holds, the DDL the scans found, and which part of the
//! binlog a scan must cover. Nothing here does I/O.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::{SchemaAnswer, SchemaColumn, SchemaLookup};
use crate::binlog::{
    ddl::{self, DdlTarget, Statement},
    position::LogPosition,
    replica::{BinlogFile, DumpStart},
};

/// A table's `(schema, table)` name, lower-cased: the source compares them
/// without case.
pub type TableKey = (String, String);

/// The key of `schema.table`.
pub fn key(schema: &str, table: &str) -> TableKey {
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

    /// A lookup from a snapshot of table definitions and the DDL a scan
    /// found from the start position (or `known_from`, where the scan was
    /// cut short) up to `scanned_to`, the binlog end read after the snapshot.
    pub fn from_snapshot(
        tables: HashMap<TableKey, Arc<[SchemaColumn]>>,
        ddl: Vec<DdlSeen>,
        scanned_to: LogPosition,
        known_from: Option<LogPosition>,
    ) -> Self {
        let mut lookup = InfoSchemaLookup::default();
        for ((schema, table), columns) in tables {
            lookup.install(&schema, &table, Some(columns), None);
        }
        lookup.mark_altered(&ddl);
        lookup.ddl_log = ddl;
        lookup.scanned_to = Some(scanned_to);
        lookup.known_from = known_from;
        lookup
    }

    /// Marks the tables `ddl` altered as unknown before their last DDL; a
    /// statement on a whole database alters every table of it.
    fn mark_altered(&mut self, ddl: &[DdlSeen]) {
        let mut schemas_altered: HashSet<String> = HashSet::new();
        for seen in ddl {
            for (schema, table) in &seen.tables {
                if table.is_empty() {
                    schemas_altered.insert(schema.to_lowercase());
                } else {
                    self.altered_at(schema, table, seen.position.clone());
                }
            }
        }
        // A dropped or re-created database changes all of its tables.
        for seen in ddl {
            for (schema, table) in &seen.tables {
                if table.is_empty() && schemas_altered.contains(&schema.to_lowercase()) {
                    let keys: Vec<TableKey> = self
                        .tables
                        .keys()
                        .filter(|(s, _)| *s == schema.to_lowercase())
                        .cloned()
                        .collect();
                    for (s, t) in keys {
                        self.altered_at(&s, &t, seen.position.clone());
                    }
                }
            }
        }
    }

    /// Installs a reloaded table and takes in the DDL its scan found.
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
        self.mark_altered(&later);
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

/// A DDL statement found by [`super::scan_ddl`].
#[derive(Debug, Clone)]
pub struct DdlSeen {
    /// Where the statement starts.
    pub position: LogPosition,
    /// The tables it changes; `(schema, "")` for every table of a schema.
    pub tables: Vec<(String, String)>,
}

/// The tables a QUERY event's statement changes the definition of, if any;
/// `(schema, "")` stands for every table of a schema.
pub fn tables_changed_by(sql: &str, default_schema: &str) -> Option<Vec<(String, String)>> {
    let Statement::Ddl(target) = ddl::classify(sql, default_schema) else {
        return None;
    };
    if target.tables.is_empty() && leaves_tables_unchanged(sql) {
        return None;
    }
    let mut tables = target.tables;
    if tables.is_empty() && !target.schema.is_empty() {
        tables.push((target.schema, String::new()));
    }
    Some(tables)
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

/// Where the start-up scan begins, and from where positions are known when
/// that is not `start`: with a `limit`, a start further back than the newest
/// binlog files of that total size is scanned from the oldest of those
/// files, and positions before it are unknown.
pub fn scan_range(
    start: &DumpStart,
    files: &[BinlogFile],
    end: &LogPosition,
    limit: u64,
) -> (DumpStart, Option<LogPosition>) {
    let window = scan_window(files, end, limit);
    match start {
        DumpStart::File { journal, position }
            if backlog(files, journal, *position) <= limit
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

/// Bytes of binlog from `journal:position` to the end.
fn backlog(files: &[BinlogFile], journal: &str, position: u64) -> u64 {
    files
        .iter()
        .filter(|file| file.name.as_str() >= journal)
        .map(|file| {
            if file.name == journal {
                file.size.saturating_sub(position)
            } else {
                file.size
            }
        })
        .fold(0, u64::saturating_add)
}

/// The start of the oldest binlog file such that it and every newer file
/// together hold at most `limit` bytes; `end` if the newest alone is larger
/// (a file can only be read from its start or a known event boundary).
fn scan_window(files: &[BinlogFile], end: &LogPosition, limit: u64) -> LogPosition {
    let mut window = end.clone();
    let mut total: u64 = 0;
    for file in files.iter().rev() {
        total = total.saturating_add(file.size);
        if total > limit {
            break;
        }
        window = LogPosition::new(file.name.clone(), 4);
    }
    window
}

/// A table's definition as reloaded after a DDL, with the DDL the binlog
/// holds from where the reload scanned.
#[derive(Debug)]
pub struct Reloaded {
    pub(super) schema: String,
    pub(super) table: String,
    pub(super) columns: Option<Arc<[SchemaColumn]>>,
    /// The table map position the reload is for.
    pub(super) at: LogPosition,
    pub(super) scanned_from: LogPosition,
    /// The binlog end read after the snapshot: the scan covers up to here.
    pub(super) scanned_to: LogPosition,
    pub(super) scanned: Vec<DdlSeen>,
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

    /// See [`InfoSchemaLookup::apply_reload`].
    pub fn apply_reload(&self, reloaded: Reloaded) {
        self.lock().apply_reload(reloaded);
    }

    /// See [`InfoSchemaLookup::scan_start`].
    pub fn scan_start(&self, at: &LogPosition) -> LogPosition {
        self.lock().scan_start(at)
    }

    /// See [`InfoSchemaLookup::unavailable`].
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

    fn ddl_target(sql: &str) -> DdlTarget {
        match ddl::classify(sql, "db") {
            Statement::Ddl(t) => t,
            other => panic!("{other:?}"),
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
    fn which_statements_the_scan_keeps() {
        let kept = |sql| tables_changed_by(sql, "db");
        assert_eq!(
            kept("ALTER TABLE t ADD c INT"),
            Some(vec![("db".into(), "t".into())])
        );
        assert_eq!(
            kept("RENAME TABLE a TO x.b"),
            Some(vec![("db".into(), "a".into()), ("x".into(), "b".into())])
        );
        // A statement on a schema alters every table of it.
        assert_eq!(
            kept("DROP DATABASE shop"),
            Some(vec![("shop".into(), String::new())])
        );
        assert_eq!(kept("CREATE VIEW v AS SELECT 1"), None);
        assert_eq!(kept("BEGIN"), None);
        assert_eq!(kept("INSERT INTO t VALUES (1)"), None);
        // Without a schema the statement is kept, naming nothing.
        assert_eq!(tables_changed_by("FLUSH TABLES", ""), Some(vec![]));
    }

    #[test]
    fn a_snapshot_knows_tables_after_their_last_ddl() {
        let tables = HashMap::from([
            (key("db", "t"), Arc::from(vec![column("a")])),
            (key("db", "u"), Arc::from(vec![column("b")])),
            (key("other", "v"), Arc::from(vec![column("c")])),
        ]);
        let ddl = vec![
            ddl(pos("bin.000001", 100), "t"),
            DdlSeen {
                position: pos("bin.000001", 300),
                tables: vec![("DB".into(), String::new())],
            },
        ];
        let mut lookup = InfoSchemaLookup::from_snapshot(tables, ddl, pos("bin.000002", 4), None);
        for table in ["t", "u"] {
            assert!(matches!(
                lookup.columns("db", table, &pos("bin.000001", 200)),
                SchemaAnswer::Unknown(_)
            ));
            assert!(matches!(
                lookup.columns("db", table, &pos("bin.000001", 300)),
                SchemaAnswer::Known(_)
            ));
        }
        assert!(matches!(
            lookup.columns("other", "v", &pos("bin.000001", 4)),
            SchemaAnswer::Known(_)
        ));
        assert_eq!(lookup.ddl_log.len(), 2);
        assert_eq!(
            lookup.scan_start(&pos("bin.000001", 500)),
            pos("bin.000002", 4)
        );
    }

    #[test]
    fn the_start_up_scan_range() {
        let file = |name: &str, size| BinlogFile {
            name: name.into(),
            size,
        };
        let files = vec![file("bin.000001", 900), file("bin.000002", 300)];
        let end = pos("bin.000002", 300);
        let at = |journal: &str, position| DumpStart::File {
            journal: journal.into(),
            position,
        };
        let range = |start: &DumpStart, limit| match scan_range(start, &files, &end, limit) {
            (DumpStart::File { journal, position }, known_from) => {
                (LogPosition::new(journal, position), known_from)
            }
            other => panic!("{other:?}"),
        };
        // Within the limit: from the start position, all known.
        assert_eq!(
            range(&at("bin.000001", 800), 500),
            (pos("bin.000001", 800), None)
        );
        // The newest file alone is over the limit: from the end.
        assert_eq!(
            range(&at("bin.000002", 4), 100),
            (pos("bin.000002", 300), Some(pos("bin.000002", 300)))
        );
        // Further back than the window: from the window, earlier unknown.
        assert_eq!(
            range(&at("bin.000001", 4), 500),
            (pos("bin.000002", 4), Some(pos("bin.000002", 4)))
        );
    }

    #[test]
    fn the_start_up_scan_window_is_bounded() {
        let file = |name: &str, size| BinlogFile {
            name: name.into(),
            size,
        };
        let files = vec![
            file("bin.000001", 900),
            file("bin.000002", 300),
            file("bin.000003", 200),
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
        let target = ddl_target("ALTER TABLE t ADD c INT");
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
        let target = ddl_target("ALTER TABLE t ADD b INT");
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
