//! canal's entry header (binlog file and offset, server id, time, GTID
//! props) and the [`ChangeEvent`] every decoded entry is handed on as.

use prost::Message;

use crate::{
    binlog::{
        change::{ChangeEvent, ChangeKind},
        event::SourceEvent,
        position::LogPosition,
    },
    protocol::entry::{Entry, EntryType, EventType, Header, Pair, RowChange, Type},
};

use super::{Decoder, gtid_tracking::CurrentGtid};

/// A header or entry property.
pub(super) fn pair(key: &str, value: String) -> Pair {
    Pair {
        key: key.into(),
        value,
    }
}

impl Decoder {
    /// canal's header for an entry of `event` about `schema`.`table`.
    pub(super) fn header(
        &self,
        event: &SourceEvent,
        schema: &str,
        table: &str,
        event_type: Option<EventType>,
    ) -> Header {
        let event_header = event.event.header();
        let mut gtid = String::new();
        let mut props = Vec::new();
        if self.options.gtid_header {
            if let Some(text) = &self.gtid_text {
                gtid = text.to_string();
            }
            props = self.current_gtid_props();
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

    /// The `curtGtid*` props canal sets with `canal.instance.gtidon=true`.
    fn current_gtid_props(&self) -> Vec<Pair> {
        match &self.current_gtid {
            Some(CurrentGtid::Mysql {
                text,
                last_committed,
                sequence_number,
            }) => vec![
                pair("curtGtid", text.clone()),
                pair("curtGtidSn", sequence_number.to_string()),
                pair("curtGtidLct", last_committed.to_string()),
            ],
            Some(CurrentGtid::Mariadb(text)) => vec![pair("curtGtid", text.clone())],
            None => Vec::new(),
        }
    }

    /// Hands on one entry with the position it was read at.
    pub(super) fn push(
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

    /// Hands on a ROWDATA entry whose RowChange is built whole (statements,
    /// XA outcomes; rows events write theirs field by field).
    pub(super) fn push_row_change(
        &self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        header: Header,
        change: &RowChange,
        kind: ChangeKind,
    ) {
        self.push(
            event,
            out,
            EntryType::Rowdata,
            header,
            change.encode_to_vec(),
            kind,
        );
    }
}
