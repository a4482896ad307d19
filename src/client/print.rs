//! Human-readable rendering of received batches, in the layout of canal's
//! example client.

use std::fmt::Write;

use prost::Message;

use crate::protocol::entry::{
    Column, Entry, EntryType, RowChange, TransactionBegin, TransactionEnd,
};

use super::Received;

fn time_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn column_line(out: &mut String, column: &Column) {
    let value = if column.is_null == Some(true) {
        "NULL"
    } else {
        column.value.as_str()
    };
    let _ = writeln!(
        out,
        "{} : {}    type={}    update={}{}",
        column.name,
        value,
        column.mysql_type,
        column.updated,
        if column.is_key { "    key" } else { "" }
    );
}

/// The readable block for one batch.
pub fn batch_block(received: &Received) -> String {
    let mut out = String::new();
    let first = received.entries.first().and_then(|e| e.header.as_ref());
    let last = received.entries.last().and_then(|e| e.header.as_ref());
    let _ = writeln!(out, "****************************************************");
    let _ = writeln!(
        out,
        "* Batch Id: [{}] ,count : [{}] , memsize : [{}] , Time : {}",
        received.batch_id,
        received.entries.len(),
        received.bytes,
        time_text(jiff::Timestamp::now().as_millisecond())
    );
    if let (Some(first), Some(last)) = (first, last) {
        let _ = writeln!(
            out,
            "* Start : [{}:{}:{}({})]",
            first.logfile_name,
            first.logfile_offset,
            first.execute_time,
            time_text(first.execute_time)
        );
        let _ = writeln!(
            out,
            "* End : [{}:{}:{}({})]",
            last.logfile_name,
            last.logfile_offset,
            last.execute_time,
            time_text(last.execute_time)
        );
    }
    let _ = writeln!(out, "****************************************************");
    for entry in &received.entries {
        entry_block(&mut out, entry);
    }
    out
}

fn entry_block(out: &mut String, entry: &Entry) {
    let Some(header) = &entry.header else { return };
    let delay = jiff::Timestamp::now().as_millisecond() - header.execute_time;
    let place = format!("binlog[{}:{}]", header.logfile_name, header.logfile_offset);
    match entry.entry_type() {
        EntryType::Transactionbegin => {
            let thread = TransactionBegin::decode(entry.store_value.as_slice())
                .map(|b| b.thread_id)
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "================> {place} , executeTime : {} , gtid : ({}) , delay : {delay}ms",
                header.execute_time, header.gtid
            );
            let _ = writeln!(out, " BEGIN ----> Thread id: {thread}");
        }
        EntryType::Transactionend => {
            let id = TransactionEnd::decode(entry.store_value.as_slice())
                .map(|e| e.transaction_id)
                .unwrap_or_default();
            let _ = writeln!(out, "----------------");
            let _ = writeln!(out, " END ----> transaction id: {id}");
            let _ = writeln!(
                out,
                "================> {place} , executeTime : {} , gtid : ({}) , delay : {delay}ms",
                header.execute_time, header.gtid
            );
        }
        EntryType::Rowdata => {
            let Ok(change) = RowChange::decode(entry.store_value.as_slice()) else {
                let _ = writeln!(out, "{place} : undecodable RowChange");
                return;
            };
            let _ = writeln!(
                out,
                "----------------> {place} , name[{},{}] , eventType : {} , executeTime : {} , gtid : ({}) , delay : {delay} ms",
                header.schema_name,
                header.table_name,
                change.event_type().as_str_name(),
                header.execute_time,
                header.gtid
            );
            if change.is_ddl == Some(true) || !change.sql.is_empty() {
                let _ = writeln!(out, " sql ----> {}", change.sql);
            }
            for row in &change.row_datas {
                if !row.before_columns.is_empty() && !row.after_columns.is_empty() {
                    let _ = writeln!(out, "-------> before");
                }
                for column in &row.before_columns {
                    column_line(out, column);
                }
                if !row.before_columns.is_empty() && !row.after_columns.is_empty() {
                    let _ = writeln!(out, "-------> after");
                }
                for column in &row.after_columns {
                    column_line(out, column);
                }
            }
        }
        other => {
            let _ = writeln!(out, "{place} {}", other.as_str_name());
        }
    }
}
