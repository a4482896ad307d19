//! Classifying the statements of QUERY events: transaction control (BEGIN,
//! COMMIT, XA), DDL with the canal EventType and the table it targets, and
//! statement-based DML.
//!
//! A small tokenizer, not a SQL parser: it reads only the leading keywords
//! and names, skipping comments and quoting, which is all canal's header
//! fields need and keeps working for dialect syntax a parser would reject.

use crate::protocol::entry::EventType;

/// What a QUERY event's statement is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `BEGIN` / `XA START`.
    Begin {
        /// The XA transaction id (the text after `XA START`), for XA.
        xa: Option<String>,
    },
    /// `COMMIT`, `ROLLBACK`, `XA END`: the end of a transaction.
    End {
        /// The XA transaction id (the text after `XA END`), for XA.
        xa: Option<String>,
    },
    /// `XA COMMIT` / `XA ROLLBACK` of a prepared transaction.
    XaOutcome {
        /// XACOMMIT or XAROLLBACK.
        event_type: EventType,
        /// The text after the verb, as canal reports it.
        xid: String,
    },
    /// Transaction-internal control that carries no change (`SAVEPOINT`,
    /// `ROLLBACK TO`).
    Ignored,
    /// DDL or another statement, with the first table it names.
    Ddl(DdlTarget),
    /// Statement-based DML (binlog_format=STATEMENT/MIXED).
    Dml(DdlTarget),
}

/// The canal classification of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlTarget {
    /// canal's type for the statement (CREATE, ALTER, ..., QUERY for the rest).
    pub event_type: EventType,
    /// Schema named by the statement, else the event's default schema.
    pub schema: String,
    /// Empty when the statement names no table (e.g. `CREATE DATABASE`).
    pub table: String,
    /// For RENAME: the table's name before the statement.
    pub old_schema: String,
    /// For RENAME: the table's name before the statement.
    pub old_table: String,
    /// Every table the statement names (DROP TABLE a, b; RENAME a TO b, c TO d).
    pub tables: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Symbol(char),
}

impl Token {
    fn is_word(&self, word: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(word))
    }

    fn name(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Quoted(w) => Some(w),
            Token::Symbol(_) => None,
        }
    }
}

/// Splits SQL into words, quoted identifiers/strings and symbols, dropping
/// comments (`/* */`, `-- `, `#`) but keeping the body of `/*! ... */`
/// version comments, which the server executes.
fn tokenize(sql: &str, limit: usize) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() && tokens.len() < limit {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '/' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'!') {
                    // Executable comment: skip `/*!` and the version digits.
                    i += 3;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i += 2;
                    while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                        i += 1;
                    }
                    i += 2;
                }
            }
            '*' if chars.get(i + 1) == Some(&'/') => i += 2,
            '-' if chars.get(i + 1) == Some(&'-')
                && chars.get(i + 2).is_none_or(|c| c.is_whitespace()) =>
            {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '`' | '"' | '\'' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                while i < chars.len() {
                    if chars[i] == quote {
                        if chars.get(i + 1) == Some(&quote) {
                            text.push(quote);
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    if chars[i] == '\\' && quote != '`' && i + 1 < chars.len() {
                        i += 1;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                i += 1;
                tokens.push(Token::Quoted(text));
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            c => {
                tokens.push(Token::Symbol(c));
                i += 1;
            }
        }
    }
    tokens
}

struct Reader<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let token = self.tokens.get(self.at);
        self.at += 1;
        token
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_all(&mut self, words: &[&str]) -> bool {
        let save = self.at;
        if words.iter().all(|w| self.eat(w)) {
            true
        } else {
            self.at = save;
            false
        }
    }

    fn skip_if_exists(&mut self) {
        self.eat_all(&["IF", "NOT", "EXISTS"]);
        self.eat_all(&["IF", "EXISTS"]);
    }

    /// `name` or `schema.name`, with the default schema filled in.
    fn qualified_name(&mut self, default_schema: &str) -> Option<(String, String)> {
        let first = self.next()?.name()?.to_owned();
        if self.peek() == Some(&Token::Symbol('.')) {
            self.at += 1;
            let second = self.next()?.name()?.to_owned();
            Some((first, second))
        } else {
            Some((default_schema.to_owned(), first))
        }
    }
}

/// Classifies a QUERY event's statement. `default_schema` is the event's
/// current database.
pub fn classify(sql: &str, default_schema: &str) -> Statement {
    let tokens = tokenize(sql, 256);
    let mut r = Reader {
        tokens: &tokens,
        at: 0,
    };
    let keyword = match r.next() {
        Some(Token::Word(w)) => w.to_ascii_uppercase(),
        _ => return query(default_schema),
    };
    let statement = match keyword.as_str() {
        "BEGIN" | "START" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" => {
            transaction_control(&keyword, &mut r)
        }
        "XA" => Some(xa(sql, &mut r)),
        "CREATE" => create_or_drop(true, &mut r, default_schema),
        "DROP" => create_or_drop(false, &mut r, default_schema),
        "ALTER" => alter_table(&mut r, default_schema),
        "RENAME" => rename_tables(&mut r, default_schema),
        "TRUNCATE" => {
            r.eat("TABLE");
            r.qualified_name(default_schema)
                .map(|name| Statement::Ddl(DdlTarget::on(EventType::Truncate, name)))
        }
        "LOAD" => load_data(&mut r, default_schema),
        "INSERT" | "REPLACE" | "UPDATE" | "DELETE" => dml(&keyword, &mut r, default_schema),
        _ => None,
    };
    statement.unwrap_or_else(|| query(default_schema))
}

/// A statement canal reports as a plain QUERY on `schema`, naming no table.
fn query(schema: &str) -> Statement {
    Statement::Ddl(DdlTarget {
        event_type: EventType::Query,
        schema: schema.to_owned(),
        table: String::new(),
        old_schema: String::new(),
        old_table: String::new(),
        tables: Vec::new(),
    })
}

impl DdlTarget {
    /// A statement of `event_type` on one table.
    fn on(event_type: EventType, (schema, table): (String, String)) -> Self {
        DdlTarget {
            event_type,
            schema: schema.clone(),
            table: table.clone(),
            old_schema: String::new(),
            old_table: String::new(),
            tables: vec![(schema, table)],
        }
    }

    /// A rename of `old` to `new` (the first pair of a RENAME TABLE), naming
    /// every table in `tables`.
    fn renamed(
        event_type: EventType,
        old: (String, String),
        new: (String, String),
        tables: Vec<(String, String)>,
    ) -> Self {
        DdlTarget {
            event_type,
            schema: new.0,
            table: new.1,
            old_schema: old.0,
            old_table: old.1,
            tables,
        }
    }
}

/// BEGIN, COMMIT, ROLLBACK and savepoints; `None` for `START` without
/// `TRANSACTION`.
fn transaction_control(keyword: &str, r: &mut Reader<'_>) -> Option<Statement> {
    match keyword {
        "BEGIN" => Some(Statement::Begin { xa: None }),
        "START" if r.eat("TRANSACTION") => Some(Statement::Begin { xa: None }),
        "COMMIT" => Some(Statement::End { xa: None }),
        "ROLLBACK" if r.eat("TO") => Some(Statement::Ignored),
        "ROLLBACK" => Some(Statement::End { xa: None }),
        "SAVEPOINT" | "RELEASE" => Some(Statement::Ignored),
        _ => None,
    }
}

/// `XA START|BEGIN|END|COMMIT|ROLLBACK xid`; other XA verbs carry no change.
fn xa(sql: &str, r: &mut Reader<'_>) -> Statement {
    let verb = r
        .next()
        .and_then(Token::name)
        .map(str::to_ascii_uppercase)
        .unwrap_or_default();
    let xid = xa_xid(sql, &verb);
    match verb.as_str() {
        "START" | "BEGIN" => Statement::Begin { xa: Some(xid) },
        "END" => Statement::End { xa: Some(xid) },
        "COMMIT" => Statement::XaOutcome {
            event_type: EventType::Xacommit,
            xid,
        },
        "ROLLBACK" => Statement::XaOutcome {
            event_type: EventType::Xarollback,
            xid,
        },
        _ => Statement::Ignored,
    }
}

/// CREATE or DROP of a table, an index or a database.
fn create_or_drop(create: bool, r: &mut Reader<'_>, default_schema: &str) -> Option<Statement> {
    r.eat_all(&["OR", "REPLACE"]);
    r.eat("TEMPORARY");
    r.eat("ONLINE");
    r.eat("OFFLINE");
    let unique_like = r.eat("UNIQUE") || r.eat("FULLTEXT") || r.eat("SPATIAL");
    if r.eat("TABLE") {
        r.skip_if_exists();
        let name = r.qualified_name(default_schema)?;
        return Some(Statement::Ddl(if create {
            DdlTarget::on(EventType::Create, name)
        } else {
            drop_tables(name, r, default_schema)
        }));
    }
    if r.eat("INDEX") || (unique_like && r.eat("KEY")) {
        r.skip_if_exists();
        let event_type = if create {
            EventType::Cindex
        } else {
            EventType::Dindex
        };
        return index_table(r, default_schema)
            .map(|name| Statement::Ddl(DdlTarget::on(event_type, name)));
    }
    if r.eat("DATABASE") || r.eat("SCHEMA") {
        r.skip_if_exists();
        let schema = r.next().and_then(Token::name).unwrap_or(default_schema);
        return Some(query(schema));
    }
    None
}

/// `DROP TABLE first, more...`: every table named.
fn drop_tables(first: (String, String), r: &mut Reader<'_>, default_schema: &str) -> DdlTarget {
    let mut drop = DdlTarget::on(EventType::Erase, first);
    while r.peek() == Some(&Token::Symbol(',')) {
        r.at += 1;
        match r.qualified_name(default_schema) {
            Some(next) => drop.tables.push(next),
            None => break,
        }
    }
    drop
}

/// The table of `CREATE|DROP INDEX name [USING ...] ON table`.
fn index_table(r: &mut Reader<'_>, default_schema: &str) -> Option<(String, String)> {
    while let Some(token) = r.next() {
        if token.is_word("ON") {
            return r.qualified_name(default_schema);
        }
    }
    None
}

/// `ALTER [ONLINE] [IGNORE] TABLE t ...`, typed by its first item.
fn alter_table(r: &mut Reader<'_>, default_schema: &str) -> Option<Statement> {
    r.eat("ONLINE");
    r.eat("IGNORE");
    if !r.eat("TABLE") {
        return None;
    }
    r.skip_if_exists();
    let name = r.qualified_name(default_schema)?;
    let (event_type, renamed) = classify_alter(r, default_schema);
    Some(Statement::Ddl(match renamed {
        Some(new_name) => {
            let tables = vec![name.clone(), new_name.clone()];
            DdlTarget::renamed(event_type, name, new_name, tables)
        }
        None => DdlTarget::on(event_type, name),
    }))
}

/// `RENAME TABLE a TO b, c TO d`: the first pair is the target, every table
/// is named.
fn rename_tables(r: &mut Reader<'_>, default_schema: &str) -> Option<Statement> {
    if !r.eat("TABLE") && !r.eat("TABLES") {
        return None;
    }
    let mut pairs = Vec::new();
    while let Some(old) = r.qualified_name(default_schema) {
        if !r.eat("TO") {
            break;
        }
        let Some(new) = r.qualified_name(default_schema) else {
            break;
        };
        pairs.push((old, new));
        if r.peek() != Some(&Token::Symbol(',')) {
            break;
        }
        r.at += 1;
    }
    let (old, new) = pairs.first().cloned()?;
    let tables = pairs.into_iter().flat_map(|(a, b)| [a, b]).collect();
    Some(Statement::Ddl(DdlTarget::renamed(
        EventType::Rename,
        old,
        new,
        tables,
    )))
}

/// `LOAD DATA|XML [modifiers] INFILE 'f' [REPLACE|IGNORE] INTO TABLE t`:
/// statement-based inserts.
fn load_data(r: &mut Reader<'_>, default_schema: &str) -> Option<Statement> {
    while let Some(token) = r.next() {
        if token.is_word("TABLE")
            && let Some(name) = r.qualified_name(default_schema)
        {
            return Some(Statement::Dml(DdlTarget::on(EventType::Insert, name)));
        }
    }
    None
}

/// Statement-based INSERT, REPLACE, UPDATE and DELETE on their table.
fn dml(keyword: &str, r: &mut Reader<'_>, default_schema: &str) -> Option<Statement> {
    const MODIFIERS: [&str; 7] = [
        "LOW_PRIORITY",
        "DELAYED",
        "HIGH_PRIORITY",
        "IGNORE",
        "QUICK",
        "INTO",
        "FROM",
    ];
    let event_type = match keyword {
        "UPDATE" => EventType::Update,
        "DELETE" => EventType::Delete,
        _ => EventType::Insert,
    };
    while r
        .peek()
        .is_some_and(|token| MODIFIERS.iter().any(|m| token.is_word(m)))
    {
        r.at += 1;
    }
    let name = r.qualified_name(default_schema)?;
    Some(Statement::Dml(DdlTarget::on(event_type, name)))
}

/// The first ALTER TABLE item decides the type, as canal's first result
/// does: index additions are CINDEX, index drops DINDEX, a rename RENAME,
/// everything else ALTER.
fn classify_alter(
    r: &mut Reader<'_>,
    default_schema: &str,
) -> (EventType, Option<(String, String)>) {
    if r.eat("ADD") {
        let index = r.eat("INDEX")
            || r.eat("KEY")
            || r.eat("UNIQUE")
            || r.eat("FULLTEXT")
            || r.eat("SPATIAL")
            || r.eat_all(&["PRIMARY", "KEY"]);
        if index {
            return (EventType::Cindex, None);
        }
        if r.eat("CONSTRAINT") {
            if r.peek().is_some_and(|t| {
                !t.is_word("UNIQUE") && !t.is_word("PRIMARY") && !t.is_word("FOREIGN")
            }) {
                r.at += 1;
            }
            if r.eat("UNIQUE") || r.eat_all(&["PRIMARY", "KEY"]) {
                return (EventType::Cindex, None);
            }
        }
        return (EventType::Alter, None);
    }
    if r.eat("DROP") {
        if r.eat("INDEX") || r.eat("KEY") || r.eat_all(&["FOREIGN", "KEY"]) || r.eat("CONSTRAINT") {
            return (EventType::Dindex, None);
        }
        return (EventType::Alter, None);
    }
    if r.eat("RENAME") {
        if r.eat("COLUMN") || r.eat("INDEX") || r.eat("KEY") {
            return (EventType::Alter, None);
        }
        let _ = r.eat("TO") || r.eat("AS");
        if let Some(name) = r.qualified_name(default_schema) {
            return (EventType::Rename, Some(name));
        }
    }
    (EventType::Alter, None)
}

/// The text after `XA <verb>`, as canal reports it in the XA_XID property.
fn xa_xid(sql: &str, verb: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    let marker = format!("XA {verb}");
    match upper.find(&marker) {
        Some(at) => sql[at + marker.len()..].to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl(sql: &str) -> DdlTarget {
        match classify(sql, "test") {
            Statement::Ddl(t) => t,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn transaction_control() {
        assert_eq!(classify("BEGIN", ""), Statement::Begin { xa: None });
        assert_eq!(classify("COMMIT", ""), Statement::End { xa: None });
        assert_eq!(classify("ROLLBACK", ""), Statement::End { xa: None });
        assert_eq!(classify("ROLLBACK TO SAVEPOINT a", ""), Statement::Ignored);
        assert_eq!(
            classify("XA START X'7878',X'',1", ""),
            Statement::Begin {
                xa: Some(" X'7878',X'',1".into())
            }
        );
        assert!(matches!(
            classify("XA COMMIT X'01'", ""),
            Statement::XaOutcome {
                event_type: EventType::Xacommit,
                ..
            }
        ));
    }

    #[test]
    fn ddl_kinds_and_names() {
        let t = ddl("/* comment */ CREATE TABLE IF NOT EXISTS `db`.`t 1` (id int)");
        assert_eq!(
            (t.event_type, t.schema.as_str(), t.table.as_str()),
            (EventType::Create, "db", "t 1")
        );
        let t = ddl("create table t2 like t1");
        assert_eq!(
            (t.event_type, t.schema.as_str(), t.table.as_str()),
            (EventType::Create, "test", "t2")
        );
        let t = ddl("DROP TABLE IF EXISTS a, b.c /* generated by server */");
        assert_eq!(t.event_type, EventType::Erase);
        assert_eq!(
            t.tables,
            vec![("test".into(), "a".into()), ("b".into(), "c".into())]
        );
        for (sql, event_type) in [
            (
                "ALTER TABLE t ADD COLUMN c int, ADD INDEX i(c)",
                EventType::Alter,
            ),
            ("ALTER TABLE t ADD INDEX i(c)", EventType::Cindex),
            ("ALTER TABLE t ADD UNIQUE KEY u(c)", EventType::Cindex),
            (
                "ALTER TABLE t ADD CONSTRAINT u UNIQUE (c)",
                EventType::Cindex,
            ),
            ("ALTER TABLE t DROP INDEX i", EventType::Dindex),
            ("ALTER TABLE t DROP COLUMN c", EventType::Alter),
            ("ALTER TABLE t RENAME COLUMN a TO b", EventType::Alter),
        ] {
            assert_eq!(ddl(sql).event_type, event_type, "{sql}");
        }
        let t = ddl("ALTER TABLE t RENAME TO u");
        assert_eq!(
            (t.event_type, t.table.as_str(), t.old_table.as_str()),
            (EventType::Rename, "u", "t")
        );
        let t = ddl("RENAME TABLE a TO b, db.c TO db.d");
        assert_eq!(
            (t.event_type, t.schema.as_str(), t.table.as_str()),
            (EventType::Rename, "test", "b")
        );
        assert_eq!(t.tables.len(), 4);
        assert_eq!(ddl("TRUNCATE t").event_type, EventType::Truncate);
        assert_eq!(ddl("TRUNCATE TABLE x.t").schema, "x");
        assert_eq!(
            ddl("CREATE UNIQUE INDEX i USING BTREE ON t (c)").event_type,
            EventType::Cindex
        );
        assert_eq!(ddl("DROP INDEX i ON db.t").event_type, EventType::Dindex);
        let t = ddl("CREATE DATABASE IF NOT EXISTS `shop`");
        assert_eq!(
            (t.event_type, t.schema.as_str(), t.table.as_str()),
            (EventType::Query, "shop", "")
        );
        let t = ddl("GRANT SELECT ON *.* TO 'u'@'%'");
        assert_eq!(
            (t.event_type, t.schema.as_str()),
            (EventType::Query, "test")
        );
        assert_eq!(
            ddl("/*!40000 ALTER TABLE `t` DISABLE KEYS */").event_type,
            EventType::Alter
        );
    }

    #[test]
    fn statement_dml() {
        assert!(matches!(
            classify("INSERT INTO db.t VALUES (1)", "x"),
            Statement::Dml(DdlTarget {
                event_type: EventType::Insert,
                ..
            })
        ));
        assert!(matches!(
            classify(
                "LOAD DATA INFILE '/tmp/x' INTO TABLE `db`.`t` FIELDS TERMINATED BY ','",
                "x"
            ),
            Statement::Dml(DdlTarget {
                event_type: EventType::Insert,
                ..
            })
        ));
        assert!(matches!(
            classify("update t set a=1", "x"),
            Statement::Dml(DdlTarget {
                event_type: EventType::Update,
                ..
            })
        ));
    }

    /// One row per statement family: (sql, kind, event type, schema, table).
    #[test]
    fn families_table() {
        let rows: &[(&str, &str, EventType, &str, &str)] = &[
            ("START SLAVE", "ddl", EventType::Query, "def", ""),
            ("CREATE UNIQUE t", "ddl", EventType::Query, "def", ""),
            ("CREATE INDEX i ON", "ddl", EventType::Query, "def", ""),
            (
                "DROP DATABASE IF EXISTS d",
                "ddl",
                EventType::Query,
                "d",
                "",
            ),
            (
                "ALTER TABLE t ADD PRIMARY c int",
                "ddl",
                EventType::Alter,
                "def",
                "t",
            ),
            (
                "ALTER TABLE t DROP PRIMARY KEY",
                "ddl",
                EventType::Alter,
                "def",
                "t",
            ),
            (
                "ALTER TABLE t RENAME u",
                "ddl",
                EventType::Rename,
                "def",
                "u",
            ),
            ("RENAME TABLE a TO", "ddl", EventType::Query, "def", ""),
            ("TRUNCATE", "ddl", EventType::Query, "def", ""),
            (
                "LOAD INDEX INTO CACHE t",
                "ddl",
                EventType::Query,
                "def",
                "",
            ),
            ("INSERT t VALUES (1)", "dml", EventType::Insert, "def", "t"),
            (
                "REPLACE DELAYED t VALUES(1)",
                "dml",
                EventType::Insert,
                "def",
                "t",
            ),
            (
                "DELETE QUICK IGNORE FROM db.t WHERE 1",
                "dml",
                EventType::Delete,
                "db",
                "t",
            ),
            ("DELETE", "ddl", EventType::Query, "def", ""),
        ];
        for &(sql, kind, event_type, schema, table) in rows {
            let (found_kind, target) = match classify(sql, "def") {
                Statement::Ddl(t) => ("ddl", t),
                Statement::Dml(t) => ("dml", t),
                other => panic!("{sql}: {other:?}"),
            };
            assert_eq!(
                (
                    found_kind,
                    target.event_type,
                    target.schema.as_str(),
                    target.table.as_str()
                ),
                (kind, event_type, schema, table),
                "{sql}"
            );
        }
        assert_eq!(classify("START", ""), classify("SET @a = 1", ""));
        assert_eq!(classify("XA PREPARE 'a'", ""), Statement::Ignored);
        assert_eq!(classify("SAVEPOINT a", ""), Statement::Ignored);
    }

    #[test]
    fn garbage_never_panics() {
        for sql in [
            "",
            "`",
            "'unterminated",
            "/*",
            "--",
            "CREATE",
            "ALTER TABLE",
            "RENAME TABLE a",
            "DROP TABLE a,",
            "XA",
        ] {
            let _ = classify(sql, "d");
        }
    }
}
