//! Statements: QUERY and EXECUTE_LOAD_QUERY events classified into
//! transaction boundaries, DDL and statement-based DML, and the events that
//! only carry statement text (ROWS_QUERY, ANNOTATE_ROWS, INTVAR, RAND,
//! USER_VAR) forwarded as QUERY entries, as canal does.

use mysql_common::{
    binlog::{
        consts::StatusVarKey,
        events::{
            ExecuteLoadQueryEvent, IntvarEvent, QueryEvent, RandEvent, RowsQueryEvent,
            StatusVarVal, StatusVars, UserVarEvent,
        },
    },
    constants::ItemResult,
};

use crate::{
    binlog::{
        change::{ChangeEvent, ChangeKind},
        charset::{Charset, charset_by_name, charset_name_of_collation},
        ddl::{self, DdlTarget, Statement},
        event::SourceEvent,
        javafmt, mariadb,
        position::LogPosition,
    },
    protocol::entry::{EventType, RowChange},
};

use super::{
    DecodeError, Decoder,
    event_role::{QueryEventKind, TextEvent},
};

/// One statement as its event carries it.
struct QueryStatement {
    /// The schema the statement ran in (`USE`), which unqualified names
    /// refer to.
    default_schema: String,
    sql: String,
    thread_id: u32,
}

impl Decoder {
    /// A QUERY event, or an EXECUTE_LOAD_QUERY (statement-based LOAD DATA:
    /// the statement is forwarded as text, like other statement-based
    /// changes; the file contents are not rows). Both carry one statement
    /// with its default schema and client charset.
    pub(super) fn decode_query(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        kind: QueryEventKind,
    ) -> Result<(), DecodeError> {
        let malformed = |e| DecodeError::malformed(event, e);
        let statement = match kind {
            QueryEventKind::Query => {
                let query = event.parse::<QueryEvent<'_>>().map_err(malformed)?;
                QueryStatement {
                    default_schema: query.schema().into_owned(),
                    sql: query_text(query.status_vars(), query.query_raw()),
                    thread_id: query.thread_id(),
                }
            }
            QueryEventKind::ExecuteLoadQuery => {
                let load = event
                    .parse::<ExecuteLoadQueryEvent<'_>>()
                    .map_err(malformed)?;
                QueryStatement {
                    default_schema: load.schema().into_owned(),
                    sql: query_text(load.status_vars(), load.query_raw()),
                    thread_id: load.thread_id(),
                }
            }
        };
        self.decode_statement(event, out, statement);
        Ok(())
    }

    fn decode_statement(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        statement: QueryStatement,
    ) {
        match ddl::classify(&statement.sql, &statement.default_schema) {
            Statement::Begin { xa } => self.begin_statement(event, out, statement.thread_id, xa),
            Statement::End { xa } => self.end_statement(event, out, xa),
            Statement::XaOutcome { event_type, xid } => {
                self.xa_outcome(event, out, statement.sql, event_type, xid)
            }
            Statement::Ignored => {}
            Statement::Ddl(target) => self.ddl_statement(event, out, &target, statement),
            Statement::Dml(target) => self.dml_statement(event, out, &target, statement),
        }
    }

    fn ddl_statement(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        target: &DdlTarget,
        statement: QueryStatement,
    ) {
        if let Some(schema) = self.schema.as_mut() {
            let at = LogPosition::new(event.journal.to_string(), event.start);
            schema.apply_ddl(target, &at);
        }
        // Table ids may be reused for the changed table.
        self.tables.clear();
        if self.keep_statement(target) {
            self.push_statement(event, out, target, statement, ChangeKind::Ddl);
        }
        if !self.in_transaction {
            // Outside BEGIN, a statement is its own event group.
            self.end_transaction();
        }
    }

    fn dml_statement(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        target: &DdlTarget,
        statement: QueryStatement,
    ) {
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
        self.push_statement(event, out, target, statement, ChangeKind::Query);
    }

    /// A statement as a ROWDATA entry: DDL (`isDdl=true`) or statement-based
    /// DML (`isDdl=false`), with its text and the event's default schema.
    fn push_statement(
        &self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        target: &DdlTarget,
        statement: QueryStatement,
        kind: ChangeKind,
    ) {
        let change = RowChange {
            event_type: Some(target.event_type as i32),
            is_ddl: Some(kind == ChangeKind::Ddl),
            sql: statement.sql,
            ddl_schema_name: statement.default_schema,
            ..Default::default()
        };
        let header = self.header(
            event,
            &target.schema,
            &target.table,
            Some(target.event_type),
        );
        self.push_row_change(event, out, header, &change, kind);
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
    pub(super) fn push_text_query(
        &self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        sql: String,
    ) {
        if self.options.filter_query_dml {
            return;
        }
        let change = RowChange {
            event_type: Some(EventType::Query as i32),
            sql,
            ..Default::default()
        };
        let header = self.header(event, "", "", Some(EventType::Query));
        self.push_row_change(event, out, header, &change, ChangeKind::Query);
    }
}

/// The text canal shows for an event that only carries statement text.
pub(super) fn statement_text(event: &SourceEvent, kind: TextEvent) -> Result<String, DecodeError> {
    let malformed = |e| DecodeError::malformed(event, e);
    Ok(match kind {
        TextEvent::RowsQuery => {
            let query = event.parse::<RowsQueryEvent<'_>>().map_err(malformed)?;
            query.query().into_owned()
        }
        TextEvent::AnnotateRows => mariadb::annotate_rows_text(event.event.data()),
        TextEvent::Intvar => {
            let intvar = event.parse::<IntvarEvent>().map_err(malformed)?;
            format!("SET INSERT_ID = {}", intvar.value() as i64)
        }
        TextEvent::Rand => {
            let rand = event.parse::<RandEvent>().map_err(malformed)?;
            format!(
                "SET SESSION rand_seed1 = {} , rand_seed2 = {}",
                rand.seed1.0, rand.seed2.0
            )
        }
        TextEvent::UserVar => user_var_sql(&event.parse::<UserVarEvent<'_>>().map_err(malformed)?),
    })
}

/// A statement's text, decoded from the client charset its event records.
fn query_text(vars: &StatusVars<'_>, raw: &[u8]) -> String {
    query_charset(vars).decode(raw).into_owned()
}

/// The client charset a QUERY event records for its statement text.
fn query_charset(vars: &StatusVars<'_>) -> Charset {
    vars.get_status_var(StatusVarKey::Charset)
        .and_then(|var| match var.get_value() {
            Ok(StatusVarVal::Charset { charset_client, .. }) => {
                charset_name_of_collation(charset_client)
            }
            _ => None,
        })
        .map(charset_by_name)
        .unwrap_or(Charset::Utf8)
}

/// canal's text for a USER_VAR event: `SET @name := value`.
fn user_var_sql(var: &UserVarEvent<'_>) -> String {
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
                .unwrap_or(Charset::Utf8);
            format!("'{}'", charset.decode(value))
        }
        Ok(ItemResult::REAL_RESULT) if value.len() == 8 => {
            let mut text = String::new();
            let bits = u64::from_le_bytes(value.try_into().unwrap_or([0; 8]));
            javafmt::write_f64(f64::from_bits(bits), &mut text);
            text
        }
        Ok(ItemResult::INT_RESULT) if value.len() == 8 => {
            i64::from_le_bytes(value.try_into().unwrap_or([0; 8])).to_string()
        }
        _ => String::from_utf8_lossy(value).into_owned(),
    };
    format!("SET @{name} := {rendered}")
}
