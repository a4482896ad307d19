//! WRITE/UPDATE/DELETE_ROWS events (v1, v2 and MySQL's PARTIAL_UPDATE_ROWS)
//! turned into canal `RowData`: before and after images of every row.

use prost::encoding::encoded_len_varint;

use super::{
    bytes::ByteReader,
    json_binary::Json,
    table::{ColumnMeta, TableMeta, WireType},
    value::{ValueError, ValueOptions, apply_json_diff, decode_value},
};

/// Which change a rows event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    /// WRITE_ROWS: after images.
    Insert,
    /// UPDATE_ROWS: before and after images.
    Update,
    /// DELETE_ROWS: before images.
    Delete,
}

/// How a rows event's body is laid out: the change it records and the
/// version of the event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowsLayout {
    /// The change the rows record.
    pub kind: RowsKind,
    /// Version 2 events carry an extra-data block after the flags.
    pub v2: bool,
    /// MySQL's PARTIAL_UPDATE_ROWS: after images may hold JSON diffs.
    pub partial: bool,
}

/// The parts of a rows event the decoder needs, read from its body.
#[derive(Debug, Clone)]
pub struct RowsEventBody<'a> {
    /// The change the rows record.
    pub kind: RowsKind,
    /// The table map the rows are decoded against.
    pub table_id: u64,
    /// The after image of updates may hold JSON diffs (PARTIAL_UPDATE_ROWS).
    pub partial: bool,
    /// Columns of the table, as the event counts them.
    pub num_columns: usize,
    /// Columns present in the first image (after image for inserts).
    pub present: &'a [u8],
    /// Columns present in the after image of updates.
    pub present_after: Option<&'a [u8]>,
    /// The row images, one after another.
    pub rows: &'a [u8],
}

/// Why a rows event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    /// The event's body does not parse.
    #[error("rows event body is malformed: {0}")]
    Malformed(&'static str),
    /// The event and its table map disagree on the number of columns.
    #[error(
        "rows event has {event} columns but the table map of {table} has {table_map}: \
         refusing to guess which columns the values belong to"
    )]
    ColumnCount {
        /// `schema.table`.
        table: String,
        /// Columns in the rows event.
        event: usize,
        /// Columns in the table map.
        table_map: usize,
    },
    /// One value could not be decoded.
    #[error("row {row} of {table}, column {column} (`{name}`, {mysql_type}): {source}")]
    Value {
        /// `schema.table`.
        table: String,
        /// The row's place in the event, from 0.
        row: usize,
        /// The column's place in the table, from 0.
        column: usize,
        /// The column's name.
        name: String,
        /// The column's type text.
        mysql_type: String,
        /// Why the value could not be decoded (boxed: errors are rare, and
        /// a small `RowsError` keeps the per-row `Result`s small).
        source: Box<ValueError>,
    },
    /// A row image cut short before its values (its message keeps the
    /// shape of [`RowsError::Value`]'s, with no column).
    #[error("row {row} of {table}, column 0 (``, ): {reason}")]
    Image {
        /// `schema.table`.
        table: String,
        /// The row's place in the event, from 0.
        row: usize,
        /// Where the image ends.
        reason: &'static str,
    },
    /// A row image is longer than its columns.
    #[error("row {row} of {table}: {remaining} bytes left over after the last column")]
    Trailing {
        /// `schema.table`.
        table: String,
        /// The row's place in the event, from 0.
        row: usize,
        /// Bytes left over.
        remaining: usize,
    },
}

fn bit(bitmap: &[u8], index: usize) -> bool {
    bitmap
        .get(index / 8)
        .is_some_and(|b| b & (1 << (index % 8)) != 0)
}

/// Parses the body (after the common header, checksum removed) of a rows
/// event laid out as `layout`. `post_header_len` 6 means a 4-byte table id
/// (MySQL 5.1.x before 5.1.4 only).
pub fn parse_rows_body(data: &[u8], layout: RowsLayout) -> Result<RowsEventBody<'_>, RowsError> {
    let RowsLayout { kind, v2, partial } = layout;
    let mut cursor = ByteReader::new(data);
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

/// The protobuf fields of a column that are the same in every row,
/// encoded once per table map: `name` (3) with `isKey` (4), and
/// `mysqlType` (10).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnParts {
    name_key: Vec<u8>,
    mysql_type: Vec<u8>,
}

impl ColumnParts {
    /// Encodes the fixed fields of `meta`.
    pub fn new(meta: &ColumnMeta) -> Self {
        let mut name_key = Vec::with_capacity(meta.name.len() + 4);
        put_string(&mut name_key, 3, &meta.name);
        put_varint_field(&mut name_key, 4, u64::from(meta.is_key));
        let mut mysql_type = Vec::with_capacity(meta.mysql_type.len() + 2);
        put_string(&mut mysql_type, 10, &meta.mysql_type);
        ColumnParts {
            name_key,
            mysql_type,
        }
    }
}

const LENGTH_DELIMITED: u64 = 2;

/// Appends a varint; single-byte values (most tags, flags, small lengths)
/// take the short path.
#[inline(always)]
fn encode_varint(mut value: u64, buf: &mut Vec<u8>) {
    if value < 0x80 {
        buf.push(value as u8);
        return;
    }
    let mut bytes = [0u8; 10];
    let mut len = 0;
    while value >= 0x80 {
        bytes[len] = (value as u8) | 0x80;
        value >>= 7;
        len += 1;
    }
    bytes[len] = value as u8;
    buf.extend_from_slice(&bytes[..=len]);
}

#[inline(always)]
fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u64) {
    encode_varint((u64::from(field) << 3) | wire_type, buf);
}

#[inline(always)]
fn put_varint_field(buf: &mut Vec<u8>, field: u32, value: u64) {
    put_key(buf, field, 0);
    encode_varint(value, buf);
}

fn put_string(buf: &mut Vec<u8>, field: u32, value: &str) {
    put_key(buf, field, LENGTH_DELIMITED);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value.as_bytes());
}

fn key_len(field: u32) -> usize {
    encoded_len_varint(u64::from(field) << 3)
}

/// Writes one canal `Column` as field `field` of a RowData, with the fields
/// canal always sets (index, sqlType, name, isKey, updated, isNull,
/// mysqlType) and `value` unless NULL.
fn put_column(
    buf: &mut Vec<u8>,
    field: u32,
    parts: &ColumnParts,
    index: u32,
    sql_type: i32,
    updated: bool,
    value: Option<&str>,
) {
    // Negative int32 values are sign-extended to 64 bits on the wire.
    let sql_type = i64::from(sql_type) as u64;
    let body_len = 1
        + encoded_len_varint(u64::from(index))
        + 1
        + encoded_len_varint(sql_type)
        + parts.name_key.len()
        + 2
        + 2
        + value.map_or(0, |v| 1 + encoded_len_varint(v.len() as u64) + v.len())
        + parts.mysql_type.len();
    buf.reserve(key_len(field) + encoded_len_varint(body_len as u64) + body_len);
    put_key(buf, field, LENGTH_DELIMITED);
    encode_varint(body_len as u64, buf);
    // Keys of fields 1..=15 are single bytes: (field << 3) | wire type.
    buf.push(1 << 3);
    encode_varint(u64::from(index), buf);
    buf.push(2 << 3);
    encode_varint(sql_type, buf);
    buf.extend_from_slice(&parts.name_key);
    buf.extend_from_slice(&[5 << 3, u8::from(updated), 6 << 3, u8::from(value.is_none())]);
    if let Some(value) = value {
        buf.push((8 << 3) | LENGTH_DELIMITED as u8);
        encode_varint(value.len() as u64, buf);
        buf.extend_from_slice(value.as_bytes());
    }
    buf.extend_from_slice(&parts.mysql_type);
}

/// Buffers reused from one rows event to the next.
#[derive(Debug, Default)]
pub struct RowsScratch {
    text: String,
    row: Vec<u8>,
    before_text: String,
    /// Before-image values by column index (`None`: not in the image).
    before: Vec<Option<BeforeValue>>,
    json: Vec<(usize, Json)>,
}

/// A before-image value kept to compute `updated` in the after image.
#[derive(Debug, Clone, Copy)]
struct BeforeValue {
    null: bool,
    start: usize,
    end: usize,
}

/// What [`encode_rows`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowsWritten {
    /// Rows.
    pub rows: usize,
    /// Row images (an updated row has two).
    pub images: usize,
}

/// Decodes every row of `body` against `table` and appends them to `out` as
/// the `rowDatas` (field 12) of a canal RowChange.
pub fn encode_rows(
    table: &TableMeta,
    parts: &[ColumnParts],
    body: &RowsEventBody<'_>,
    options: &ValueOptions,
    keep: ColumnSelection<'_>,
    scratch: &mut RowsScratch,
    out: &mut Vec<u8>,
) -> Result<RowsWritten, RowsError> {
    if body.num_columns != table.columns.len() || parts.len() != table.columns.len() {
        return Err(RowsError::ColumnCount {
            table: table.full_name(),
            event: body.num_columns,
            table_map: table.columns.len(),
        });
    }
    let mut cursor = ByteReader::new(body.rows);
    let mut written = RowsWritten::default();
    let mut image = ImageWriter {
        table,
        parts,
        options,
        keep,
        keep_json: body.partial,
        scratch,
    };
    while !cursor.is_empty() {
        let row = written.rows;
        let row_start = cursor.offset();
        image.scratch.row.clear();
        match body.kind {
            RowsKind::Insert => image.write(body.present, &mut cursor, Role::Insert, row)?,
            RowsKind::Delete => image.write(
                body.present,
                &mut cursor,
                Role::Before { record: false },
                row,
            )?,
            RowsKind::Update => {
                image.write(
                    body.present,
                    &mut cursor,
                    Role::Before { record: true },
                    row,
                )?;
                let after = body.present_after.unwrap_or(body.present);
                image.write(
                    after,
                    &mut cursor,
                    Role::After {
                        partial: body.partial,
                    },
                    row,
                )?;
                written.images += 1;
            }
        }
        if cursor.offset() == row_start {
            // Only a corrupt event has rows without columns; stop rather than loop.
            return Err(RowsError::Malformed("a row image names no columns"));
        }
        written.rows += 1;
        written.images += 1;
        put_key(out, 12, LENGTH_DELIMITED);
        encode_varint(image.scratch.row.len() as u64, out);
        out.extend_from_slice(&image.scratch.row);
    }
    Ok(written)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Insert,
    /// A before image; `record` keeps its values for the after image.
    Before {
        record: bool,
    },
    After {
        partial: bool,
    },
}

struct ImageWriter<'a> {
    table: &'a TableMeta,
    parts: &'a [ColumnParts],
    options: &'a ValueOptions,
    keep: ColumnSelection<'a>,
    /// Keep parsed before-image JSON for the partial updates of this event.
    keep_json: bool,
    scratch: &'a mut RowsScratch,
}

impl ImageWriter<'_> {
    /// Decodes one row image at the cursor into `scratch.row` as RowData
    /// field 1 (before) or 2 (after) columns.
    fn write(
        &mut self,
        present: &[u8],
        cursor: &mut ByteReader<'_>,
        role: Role,
        row: usize,
    ) -> Result<(), RowsError> {
        let table = self.table;
        let field = if matches!(role, Role::Before { .. }) {
            1
        } else {
            2
        };
        if let Role::Before { record } = role {
            self.start_before_image(record);
        }
        let partial_bits = match role {
            Role::After { partial: true } => self.partial_json_bits(cursor, row)?,
            _ => None,
        };
        let present_count = (0..table.columns.len())
            .filter(|&i| bit(present, i))
            .count();
        let nulls = cursor
            .take(present_count.div_ceil(8))
            .ok_or_else(|| self.image_error(row, "row ends inside its NULL bitmap"))?;

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
            self.scratch.text.clear();
            let sql_type = if is_null {
                meta.null_sql_type()
            } else {
                let value = ValueAt { index, row, role };
                let diff = is_json && partial_bits.is_some_and(|bits| bit(bits, json_ordinal));
                self.decode_column(meta, cursor, value, diff)?
            };
            if let Role::Before { record: true } = role {
                self.record_before(index, is_null);
            }
            if self.keep.is_some_and(|keep| !keep(meta)) {
                continue;
            }
            let updated = self.updated(role, index, is_null);
            let value = (!is_null).then_some(self.scratch.text.as_str());
            put_column(
                &mut self.scratch.row,
                field,
                &self.parts[index],
                index as u32,
                sql_type,
                updated,
                value,
            );
        }
        Ok(())
    }

    /// Forgets the previous row's before image.
    fn start_before_image(&mut self, record: bool) {
        self.scratch.before.clear();
        self.scratch.before.resize(self.table.columns.len(), None);
        self.scratch.before_text.clear();
        if record {
            self.scratch.json.clear();
        }
    }

    /// PARTIAL_UPDATE_ROWS after images start with value options and, when
    /// JSON diffs are used, one bit per JSON column of the table.
    fn partial_json_bits<'a>(
        &self,
        cursor: &mut ByteReader<'a>,
        row: usize,
    ) -> Result<Option<&'a [u8]>, RowsError> {
        let options = cursor
            .lenenc_int()
            .ok_or_else(|| self.image_error(row, "row ends inside its value options"))?;
        if options & 1 == 0 {
            return Ok(None);
        }
        let len = self.table.json_columns.div_ceil(8);
        let bits = cursor
            .take(len)
            .ok_or_else(|| self.image_error(row, "row ends inside its partial-JSON bitmap"))?;
        Ok(Some(bits))
    }

    /// Decodes one non-NULL value into `scratch.text` and returns the
    /// sqlType canal reports for it. `diff`: the value is a JSON diff
    /// against the column's before image.
    #[inline]
    fn decode_column(
        &mut self,
        meta: &ColumnMeta,
        cursor: &mut ByteReader<'_>,
        at: ValueAt,
        diff: bool,
    ) -> Result<i32, RowsError> {
        let text = &mut self.scratch.text;
        let decoded = if diff {
            let before_doc = self
                .scratch
                .json
                .iter()
                .find(|(i, _)| *i == at.index)
                .map(|(_, d)| d);
            let decoded = apply_json_diff(meta, cursor, before_doc, text);
            if decoded.as_ref().is_ok_and(|d| d.partial_text) {
                warn_partial_json(self.table);
            }
            decoded
        } else {
            let keep_json = self.keep_json
                && matches!(meta.wire, WireType::Json { .. })
                && at.role == Role::Before { record: true };
            decode_value(meta, cursor, self.options, keep_json, text)
        };
        let decoded = decoded.map_err(|source| RowsError::Value {
            table: self.table.full_name(),
            row: at.row,
            column: at.index,
            name: meta.name.clone(),
            mysql_type: meta.mysql_type.clone(),
            source: Box::new(source),
        })?;
        if let Some(document) = decoded.json {
            self.scratch.json.push((at.index, document));
        }
        Ok(if decoded.above_signed_max {
            meta.bumped_sql_type()
        } else {
            meta.sql_type()
        })
    }

    /// Keeps a before-image value to compute `updated` in the after image.
    fn record_before(&mut self, index: usize, is_null: bool) {
        let start = self.scratch.before_text.len();
        self.scratch.before_text.push_str(&self.scratch.text);
        self.scratch.before[index] = Some(BeforeValue {
            null: is_null,
            start,
            end: self.scratch.before_text.len(),
        });
    }

    /// canal's `updated` flag: every inserted column, no before-image
    /// column, and the after-image columns whose value differs from before.
    fn updated(&self, role: Role, index: usize, is_null: bool) -> bool {
        match role {
            Role::Insert => true,
            Role::Before { .. } => false,
            Role::After { .. } => match self.scratch.before.get(index).copied().flatten() {
                Some(b) => {
                    let same = b.null == is_null
                        && (is_null
                            || self.scratch.before_text[b.start..b.end] == self.scratch.text);
                    !same
                }
                None => true,
            },
        }
    }

    /// The row image is cut short before its values.
    fn image_error(&self, row: usize, reason: &'static str) -> RowsError {
        RowsError::Image {
            table: self.table.full_name(),
            row,
            reason,
        }
    }
}

/// Where a value stands: its column, row and image.
#[derive(Debug, Clone, Copy)]
struct ValueAt {
    index: usize,
    row: usize,
    role: Role,
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
