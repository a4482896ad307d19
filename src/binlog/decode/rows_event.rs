//! Rows events (WRITE/UPDATE/DELETE_ROWS, every version) to one ROWDATA
//! entry each, its RowChange written straight into the entry's bytes.

use prost::encoding::encode_varint;

use crate::{
    binlog::{
        change::{ChangeEvent, ChangeKind},
        event::SourceEvent,
        rows::{self, ColumnParts, RowsError, RowsEventBody, RowsKind, RowsLayout, RowsWritten},
        table::{ColumnMeta, TableMeta},
    },
    protocol::entry::{EntryType, EventType},
};

use super::{DecodeError, Decoder, entry_header::pair};

impl Decoder {
    /// One rows event: its rows as a ROWDATA entry, unless filtered out.
    pub(super) fn decode_rows(
        &mut self,
        event: &SourceEvent,
        layout: RowsLayout,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), DecodeError> {
        let body = rows::parse_rows_body(event.event.data(), layout)
            .map_err(|e| DecodeError::rows(event, e))?;
        let Some(cached) = self.tables.get(&body.table_id) else {
            return Err(DecodeError::unknown_table(event, body.table_id));
        };
        if !cached.included || self.rows_filtered_out(layout.kind) {
            return Ok(());
        }
        let meta = cached.meta.clone();
        let parts = cached.parts.clone();
        let event_type = event_type_of(layout.kind);
        let mut store_value = row_change_start(event, body.table_id, event_type);
        let written = match self.encode_rows(&meta, &parts, &body, &mut store_value) {
            Ok(written) => written,
            Err(error @ RowsError::ColumnCount { .. }) if self.options.filter_table_error => {
                tracing::warn!(%error, "skipping rows (canal.instance.filter.table.error=true)");
                return Ok(());
            }
            Err(error) => return Err(DecodeError::rows(event, error)),
        };
        let mut header = self.header(event, &meta.schema, &meta.table, Some(event_type));
        if written.rows > 0 {
            header
                .props
                .push(pair("rowsCount", written.rows.to_string()));
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

    /// canal's `filter.rows` and per-kind switches.
    fn rows_filtered_out(&self, kind: RowsKind) -> bool {
        let filtered_kind = match kind {
            RowsKind::Insert => self.options.filter_insert,
            RowsKind::Update => self.options.filter_update,
            RowsKind::Delete => self.options.filter_delete,
        };
        self.options.filter_rows || filtered_kind
    }

    /// Appends the rows of `body` to a RowChange, keeping the columns the
    /// column filter keeps.
    fn encode_rows(
        &mut self,
        meta: &TableMeta,
        parts: &[ColumnParts],
        body: &RowsEventBody<'_>,
        store_value: &mut Vec<u8>,
    ) -> Result<RowsWritten, RowsError> {
        let rule = self.filter.columns.for_table(&meta.schema, &meta.table);
        let keep = |column: &ColumnMeta| rule.is_none_or(|r| r.keeps(&column.name));
        rows::encode_rows(
            meta,
            parts,
            body,
            &self.options.values,
            rule.is_some()
                .then_some(&keep as &dyn Fn(&ColumnMeta) -> bool),
            &mut self.scratch,
            store_value,
        )
    }
}

fn event_type_of(kind: RowsKind) -> EventType {
    match kind {
        RowsKind::Insert => EventType::Insert,
        RowsKind::Update => EventType::Update,
        RowsKind::Delete => EventType::Delete,
    }
}

/// A RowChange's first fields, written directly in field order: tableId,
/// eventType, isDdl; the rows follow (see `rows::encode_rows`).
fn row_change_start(event: &SourceEvent, table_id: u64, event_type: EventType) -> Vec<u8> {
    let mut store_value = Vec::with_capacity(event.event.data().len() * 4 + 16);
    encode_varint(1 << 3, &mut store_value);
    encode_varint(table_id, &mut store_value);
    encode_varint(2 << 3, &mut store_value);
    encode_varint(event_type as u64, &mut store_value);
    encode_varint(10 << 3, &mut store_value);
    encode_varint(0, &mut store_value);
    store_value
}
