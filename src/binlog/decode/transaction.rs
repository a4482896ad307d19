//! Transaction boundaries: BEGIN, COMMIT and XID close and open canal's
//! TRANSACTIONBEGIN / TRANSACTIONEND entries; XA START/END/PREPARE/COMMIT/
//! ROLLBACK carry the XA props canal sets.

use mysql_common::binlog::events::XidEvent;
use prost::Message;

use crate::{
    binlog::{
        change::{ChangeEvent, ChangeKind},
        event::SourceEvent,
    },
    protocol::entry::{EntryType, EventType, Pair, RowChange, TransactionBegin, TransactionEnd},
};

use super::{DecodeError, Decoder, entry_header::pair};

/// canal's `XA_TYPE` and `XA_XID` props.
fn xa_props(xa_type: &str, xid: String) -> Vec<Pair> {
    vec![pair("XA_TYPE", xa_type.into()), pair("XA_XID", xid)]
}

impl Decoder {
    /// XID: the commit of a transaction.
    pub(super) fn decode_xid(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), DecodeError> {
        let xid = event
            .parse::<XidEvent>()
            .map_err(|e| DecodeError::malformed(event, e))?;
        let end = TransactionEnd {
            transaction_id: (xid.xid as i64).to_string(),
            ..Default::default()
        };
        self.push_transaction_end(event, out, &end);
        Ok(())
    }

    /// BEGIN or XA START; `xa` is the XA transaction's id.
    pub(super) fn begin_statement(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        thread_id: u32,
        xa: Option<String>,
    ) {
        if self.in_transaction && xa.is_none() {
            // MariaDB's GTID event already opened it.
            return;
        }
        let begin = TransactionBegin {
            thread_id: i64::from(thread_id),
            props: xa.map(|xid| xa_props("XA START", xid)).unwrap_or_default(),
            ..Default::default()
        };
        self.push_transaction_begin(event, out, &begin);
        self.in_group = true;
    }

    /// COMMIT or XA END; `xa` is the XA transaction's id.
    pub(super) fn end_statement(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        xa: Option<String>,
    ) {
        let end = TransactionEnd {
            transaction_id: "0".into(),
            props: xa.map(|xid| xa_props("XA END", xid)).unwrap_or_default(),
            ..Default::default()
        };
        self.push_transaction_end(event, out, &end);
    }

    /// XA COMMIT or XA ROLLBACK of a prepared transaction: a ROWDATA entry,
    /// as canal writes it.
    pub(super) fn xa_outcome(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        sql: String,
        event_type: EventType,
        xid: String,
    ) {
        let xa_type = if event_type == EventType::Xacommit {
            "XA COMMIT"
        } else {
            "XA ROLLBACK"
        };
        let change = RowChange {
            event_type: Some(event_type as i32),
            sql,
            props: xa_props(xa_type, xid),
            ..Default::default()
        };
        let header = self.header(event, "", "", Some(event_type));
        self.push_row_change(event, out, header, &change, ChangeKind::XaOutcome);
        self.end_transaction();
    }

    /// Opens a transaction with a TRANSACTIONBEGIN entry.
    pub(super) fn push_transaction_begin(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        begin: &TransactionBegin,
    ) {
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

    /// Closes the transaction with a TRANSACTIONEND entry.
    fn push_transaction_end(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
        end: &TransactionEnd,
    ) {
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

    /// Leaves the transaction and its event group.
    pub(super) fn end_transaction(&mut self) {
        self.in_transaction = false;
        self.in_group = false;
        self.current_gtid = None;
    }
}
