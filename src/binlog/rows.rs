//! WRITE/UPDATE/DELETE_ROWS events (v1, v2 and MySQL's PARTIAL_UPDATE_ROWS)
//! turned into canal `RowData`: before and after images of every row.

use crate::protocol::entry::{Column, RowData};

use super::{
    cursor::Cursor,
    json::Json,
    table::{ColumnMeta, TableMeta, WireType},
    value::{ValueOptions, apply_json_diff, decode_value},
};

/// Which change a rows event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Insert,
    Update,
    Delete,
}

/// The parts of a rows event the decoder needs, read from its body.
#[derive(Debug, Clone)]
pub struct RowsEventBody<'a> {
    pub kind: RowsKind,
    pub table_id: u64,
    /// The after image of updates may hold JSON diffs (PARTIAL_UPDATE_ROWS).
    pub partial: bool,
    pub num_columns: usize,
    /// Columns present in the first image (after image for inserts).
    pub present: &'a [u8],
    /// Columns present in the after image of updates.
    pub present_after: Option<&'a [u8]>,
    pub rows: &'a [u8],
}

/// Why a rows event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    #[error("rows event body is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "rows event has {event} columns but the table map of {table} has {table_map}: \
         refusing to guess which columns the values belong to"
    )]
    ColumnCount {
        table: String,
        event: usize,
        table_map: usize,
    },
    #[error("row {row} of {table}, column {column} (`{name}`, {mysql_type}): {reason}")]
    Value {
        table: String,
        row: usize,
        column: usize,
        name: String,
        mysql_type: String,
        reason: String,
    },
    #[error("row {row} of {table}: {remaining} bytes left over after the last column")]
    Trailing {
        table: String,
        row: usize,
        remaining: usize,
    },
}

fn bit(bitmap: &[u8], index: usize) -> bool {
    bitmap
        .get(index / 8)
        .is_some_and(|b| b & (1 << (index % 8)) != 0)
}

/// Parses the body (after the common header, checksum removed) of a rows
/// event. `v2` events carry an extra-data block; `post_header_len` 6 means
/// a 4-byte table id (MySQL 5.1.x before 5.1.4 only).
pub fn parse_rows_body(
    data: &[u8],
    kind: RowsKind,
    v2: bool,
    partial: bool,
) -> Result<RowsEventBody<'_>, RowsError> {
    let mut cursor = Cursor::new(data);
    let short = RowsError::Malformed("ends inside the post-header");
    let table_id = cursor.uint_le(6).ok_or(short.clone())?;
    let _flags = cursor.u16_le().ok_or(short.clone())?;
    if v2 {
        let extra = cursor.u16_le().ok_or(short.clone())?;
        // The length counts its own two bytes.
        let extra = usize::from(extra)
            .checked_sub(2)
            .ok_or(RowsError::Malformed("extra data length below 2"))?;
        cursor.skip(extra).ok_or(short.clone())?;
    }
    let num_columns = cursor.lenenc_int().ok_or(short.clone())?;
    let num_columns =
        usize::try_from(num_columns).map_err(|_| RowsError::Malformed("column count"))?;
    if num_columns > 4096 {
        return Err(RowsError::Malformed("more than 4096 columns"));
    }
    let bitmap_len = num_columns.div_ceil(8);
    let present = cursor.take(bitmap_len).ok_or(short.clone())?;
    let present_after = if kind == RowsKind::Update {
        Some(cursor.take(bitmap_len).ok_or(short)?)
    } else {
        None
    };
    Ok(RowsEventBody {
        kind,
        table_id,
        partial,
        num_columns,
        present,
        present_after,
        rows: cursor.rest(),
    })
}

/// Per-column choice made by the column filters: keep or leave out.
pub type ColumnSelection<'a> = Option<&'a dyn Fn(&ColumnMeta) -> bool>;

/// Decodes every row of `body` against `table`.
pub fn decode_rows(
    table: &TableMeta,
    body: &RowsEventBody<'_>,
    options: &ValueOptions,
    keep: ColumnSelection<'_>,
) -> Result<Vec<RowData>, RowsError> {
    if body.num_columns != table.columns.len() {
        return Err(RowsError::ColumnCount {
            table: table.full_name(),
            event: body.num_columns,
            table_map: table.columns.len(),
        });
    }
    let mut cursor = Cursor::new(body.rows);
    let mut rows = Vec::new();
    let mut text = String::new();
    while !cursor.is_empty() {
        let row = rows.len();
        let row_start = cursor.offset();
        let mut data = RowData::default();
        match body.kind {
            RowsKind::Insert => {
                data.after_columns = decode_image(
                    table,
                    body.present,
                    &mut cursor,
                    options,
                    ImageRole::Insert,
                    keep,
                    row,
                    &mut text,
                )?
                .columns;
            }
            RowsKind::Delete => {
                data.before_columns = decode_image(
                    table,
                    body.present,
                    &mut cursor,
                    options,
                    ImageRole::Before { keep_json: false },
                    keep,
                    row,
                    &mut text,
                )?
                .columns;
            }
            RowsKind::Update => {
                let before = decode_image(
                    table,
                    body.present,
                    &mut cursor,
                    options,
                    ImageRole::Before {
                        keep_json: body.partial,
                    },
                    keep,
                    row,
                    &mut text,
                )?;
                let after_bitmap = body.present_after.unwrap_or(body.present);
                let after = decode_image(
                    table,
                    after_bitmap,
                    &mut cursor,
                    options,
                    ImageRole::After {
                        before: &before,
                        partial: body.partial,
                    },
                    keep,
                    row,
                    &mut text,
                )?;
                data.before_columns = before.columns;
                data.after_columns = after.columns;
            }
        }
        if cursor.offset() == row_start {
            // Only a corrupt event has rows without columns; stop rather than loop.
            return Err(RowsError::Malformed("a row image names no columns"));
        }
        rows.push(data);
    }
    Ok(rows)
}

enum ImageRole<'a> {
    Insert,
    Before { keep_json: bool },
    After { before: &'a Image, partial: bool },
}

struct Image {
    columns: Vec<Column>,
    /// Parsed JSON documents by column index (for partial updates).
    json: Vec<(usize, Json)>,
}

/// Says once per process that JSON partial updates arrive as diffs.
fn warn_partial_json(table: &TableMeta) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            table = %table.full_name(),
            "JSON partial updates without a before image are forwarded as JSON_REPLACE(...) call \
             text, not full documents; set binlog_row_image=FULL on the source for full documents"
        );
    });
}

#[allow(clippy::too_many_arguments)]
fn decode_image(
    table: &TableMeta,
    present: &[u8],
    cursor: &mut Cursor<'_>,
    options: &ValueOptions,
    role: ImageRole<'_>,
    keep: ColumnSelection<'_>,
    row: usize,
    text: &mut String,
) -> Result<Image, RowsError> {
    let malformed = |what: &'static str| RowsError::Value {
        table: table.full_name(),
        row,
        column: 0,
        name: String::new(),
        mysql_type: String::new(),
        reason: what.to_owned(),
    };
    // PARTIAL_UPDATE_ROWS after images start with value options and, when
    // JSON diffs are used, one bit per JSON column of the table.
    let mut partial_bits: Option<&[u8]> = None;
    if let ImageRole::After { partial: true, .. } = role {
        let options = cursor
            .lenenc_int()
            .ok_or_else(|| malformed("row ends inside its value options"))?;
        if options & 1 != 0 {
            let len = table.json_columns.div_ceil(8);
            partial_bits = Some(
                cursor
                    .take(len)
                    .ok_or_else(|| malformed("row ends inside its partial-JSON bitmap"))?,
            );
        }
    }
    let present_count = (0..table.columns.len())
        .filter(|&i| bit(present, i))
        .count();
    let nulls = cursor
        .take(present_count.div_ceil(8))
        .ok_or_else(|| malformed("row ends inside its NULL bitmap"))?;

    let mut image = Image {
        columns: Vec::with_capacity(present_count),
        json: Vec::new(),
    };
    let mut image_index = 0;
    let mut json_index = 0;
    for (index, meta) in table.columns.iter().enumerate() {
        let is_json = matches!(meta.wire, WireType::Json { .. });
        let json_ordinal = json_index;
        if is_json {
            json_index += 1;
        }
        if !bit(present, index) {
            continue;
        }
        let is_null = bit(nulls, image_index);
        image_index += 1;
        text.clear();
        let mut sql_type = if is_null {
            meta.null_sql_type()
        } else {
            meta.sql_type()
        };
        if !is_null {
            let value_error = |reason: String| RowsError::Value {
                table: table.full_name(),
                row,
                column: index,
                name: meta.name.clone(),
                mysql_type: meta.mysql_type.clone(),
                reason,
            };
            let diff = is_json && partial_bits.is_some_and(|bits| bit(bits, json_ordinal));
            let decoded = if diff {
                let before_doc = match &role {
                    ImageRole::After { before, .. } => before
                        .json
                        .iter()
                        .find(|(i, _)| *i == index)
                        .map(|(_, d)| d),
                    _ => None,
                };
                let decoded = apply_json_diff(meta, cursor, before_doc, text)
                    .map_err(|e| value_error(e.to_string()))?;
                if decoded.partial_text {
                    warn_partial_json(table);
                }
                decoded
            } else {
                let keep_json = matches!(role, ImageRole::Before { keep_json: true });
                decode_value(meta, cursor, options, keep_json, text)
                    .map_err(|e| value_error(e.to_string()))?
            };
            if decoded.above_signed_max {
                sql_type = meta.bumped_sql_type();
            }
            if let Some(document) = decoded.json {
                image.json.push((index, document));
            }
        }
        if keep.is_some_and(|keep| !keep(meta)) {
            continue;
        }
        let updated = match &role {
            ImageRole::Insert => true,
            ImageRole::Before { .. } => false,
            ImageRole::After { before, .. } => {
                match before.columns.iter().find(|c| c.index == index as i32) {
                    Some(previous) => {
                        let was_null = previous.is_null.unwrap_or(false);
                        !(was_null == is_null && (is_null || previous.value == *text))
                    }
                    None => true,
                }
            }
        };
        image.columns.push(Column {
            index: index as i32,
            sql_type,
            name: meta.name.clone(),
            is_key: meta.is_key,
            updated,
            is_null: Some(is_null),
            props: Vec::new(),
            value: if is_null { String::new() } else { text.clone() },
            length: 0,
            mysql_type: meta.mysql_type.clone(),
        });
    }
    Ok(image)
}
