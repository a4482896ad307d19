//! One column value of a row image, decoded into canal's text form.

use jiff::tz::TimeZone;

use super::{
    bytes::ByteReader,
    charset::push_latin1,
    decimal, javafmt,
    json_binary::{self, Json},
    table::{ColumnMeta, WireType},
    temporal,
    text::push_int,
};

/// Settings that change how values are rendered.
#[derive(Debug, Clone)]
pub struct ValueOptions {
    /// Zone TIMESTAMP values are shown in (canal uses its JVM's zone).
    pub time_zone: TimeZone,
    /// Render ENUM/SET as their labels instead of canal's index/bitmask.
    pub enum_set_labels: bool,
}

impl Default for ValueOptions {
    fn default() -> Self {
        ValueOptions {
            time_zone: TimeZone::UTC,
            enum_set_labels: false,
        }
    }
}

/// Why a value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The row image ends inside the value.
    #[error("row image ends inside the value")]
    Truncated,
    /// A DECIMAL value does not decode.
    #[error("{0}")]
    Decimal(#[from] decimal::DecimalError),
    /// A JSON value does not decode.
    #[error("{0}")]
    Json(#[from] json_binary::JsonError),
    /// A string is longer than its column allows.
    #[error("value length {length} exceeds the column's maximum {max}")]
    TooLong {
        /// The value's length prefix.
        length: u64,
        /// The column's maximum in bytes.
        max: u64,
    },
    /// An ENUM/SET stored in a number of bytes the server never uses.
    #[error("ENUM/SET pack length {0} is not supported")]
    BadPackLength(u8),
}

/// What the caller needs besides the text.
#[derive(Debug, Default)]
pub struct Decoded {
    /// An unsigned integer above its type's signed maximum (canal reports a
    /// wider sqlType for those).
    pub above_signed_max: bool,
    /// The parsed document of a JSON column, kept when a later partial
    /// update needs it.
    pub json: Option<Json>,
    /// A JSON partial update shown as function calls, not a document.
    pub partial_text: bool,
}

fn need<T>(value: Option<T>) -> Result<T, ValueError> {
    value.ok_or(ValueError::Truncated)
}

/// Reads a little-endian length prefix of `bytes` bytes.
fn length_prefix(cursor: &mut ByteReader<'_>, bytes: u8) -> Result<usize, ValueError> {
    let length = need(cursor.uint_le(usize::from(bytes)))?;
    usize::try_from(length).map_err(|_| ValueError::Truncated)
}

/// Decodes the value of `column` at the cursor into `out`. `keep_json` asks
/// for the parsed JSON document to be returned too.
pub fn decode_value(
    column: &ColumnMeta,
    cursor: &mut ByteReader<'_>,
    options: &ValueOptions,
    keep_json: bool,
    out: &mut String,
) -> Result<Decoded, ValueError> {
    let mut decoded = Decoded::default();
    match column.wire {
        WireType::Tiny => decoded.above_signed_max = integer(cursor, 1, column.unsigned, out)?,
        WireType::Short => decoded.above_signed_max = integer(cursor, 2, column.unsigned, out)?,
        WireType::Int24 => decoded.above_signed_max = integer(cursor, 3, column.unsigned, out)?,
        WireType::Long => decoded.above_signed_max = integer(cursor, 4, column.unsigned, out)?,
        WireType::LongLong => decoded.above_signed_max = integer(cursor, 8, column.unsigned, out)?,
        WireType::Float => {
            let bits = need(cursor.uint_le(4))? as u32;
            javafmt::write_f32(f32::from_bits(bits), out);
        }
        WireType::Double => {
            let bits = need(cursor.uint_le(8))?;
            javafmt::write_f64(f64::from_bits(bits), out);
        }
        WireType::Decimal { precision, scale } => {
            let bytes = need(cursor.take(decimal::binary_size(precision, scale)))?;
            decimal::write_decimal(bytes, precision, scale, out)?;
        }
        WireType::Year => need(temporal::year(cursor, out))?,
        WireType::Date => need(temporal::date(cursor, out))?,
        WireType::Time => need(temporal::time_v1(cursor, out))?,
        WireType::Time2 { fsp } => need(temporal::time_v2(cursor, fsp, out))?,
        WireType::DateTime => need(temporal::datetime_v1(cursor, out))?,
        WireType::DateTime2 { fsp } => need(temporal::datetime_v2(cursor, fsp, out))?,
        WireType::Timestamp => need(temporal::timestamp_v1(cursor, &options.time_zone, out))?,
        WireType::Timestamp2 { fsp } => {
            need(temporal::timestamp_v2(cursor, fsp, &options.time_zone, out))?
        }
        WireType::Bit { bits } => {
            let value = need(cursor.uint_be(usize::from(bits).div_ceil(8)))?;
            push_int(out, value);
        }
        WireType::VarString { max_bytes } => {
            string(column, cursor, max_bytes, out)?;
        }
        WireType::FixedString { max_bytes } => {
            let length = string(column, cursor, max_bytes, out)?;
            // BINARY(n) is stored padded with 0x00 but logged without the
            // padding; restore it so values such as binary UUIDs ending in
            // zero bytes keep their length (canal drops them).
            if column.charset.is_binary() {
                out.extend(std::iter::repeat_n('\0', usize::from(max_bytes) - length));
            }
        }
        WireType::Enum { pack_len } if pack_len <= 2 => {
            labelled(column, cursor, pack_len, options, out, push_enum_label)?
        }
        WireType::Set { pack_len } if (1..=8).contains(&pack_len) => {
            labelled(column, cursor, pack_len, options, out, push_set_labels)?
        }
        WireType::Enum { pack_len } | WireType::Set { pack_len } => {
            return Err(ValueError::BadPackLength(pack_len));
        }
        WireType::Blob { len_bytes }
        | WireType::Geometry { len_bytes }
        | WireType::Vector { len_bytes } => {
            let bytes = prefixed_bytes(cursor, len_bytes)?;
            if column.is_text {
                column.charset.decode_into(bytes, out);
            } else {
                push_latin1(bytes, out);
            }
        }
        WireType::Json { len_bytes } => {
            let document = json_value(prefixed_bytes(cursor, len_bytes)?, out)?;
            decoded.json = document.filter(|_| keep_json);
        }
    }
    Ok(decoded)
}

/// The bytes of a value stored after a `len_bytes` length prefix.
#[inline]
fn prefixed_bytes<'a>(cursor: &mut ByteReader<'a>, len_bytes: u8) -> Result<&'a [u8], ValueError> {
    let length = length_prefix(cursor, len_bytes)?;
    need(cursor.take(length))
}

/// Renders MySQL's binary JSON (empty: nothing) and returns the document.
fn json_value(bytes: &[u8], out: &mut String) -> Result<Option<Json>, ValueError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let document = json_binary::parse(bytes)?;
    json_binary::render(&document, out);
    Ok(Some(document))
}

/// Renders a `bytes`-wide integer, signed or not; says whether an unsigned
/// value is above the signed maximum.
#[inline]
fn integer(
    cursor: &mut ByteReader<'_>,
    bytes: usize,
    unsigned: bool,
    out: &mut String,
) -> Result<bool, ValueError> {
    let raw = need(cursor.uint_le(bytes))?;
    let bits = bytes as u32 * 8;
    let sign_bit = 1u64 << (bits - 1);
    if unsigned {
        push_int(out, raw);
        return Ok(raw & sign_bit != 0);
    }
    let value = if bits < 64 && raw & sign_bit != 0 {
        raw as i64 - (1i64 << bits)
    } else {
        raw as i64
    };
    push_int(out, value);
    Ok(false)
}

/// A VARCHAR/CHAR value (up to `max_bytes`, with a 1- or 2-byte length
/// prefix) in the column's charset; returns its stored length.
#[inline]
fn string(
    column: &ColumnMeta,
    cursor: &mut ByteReader<'_>,
    max_bytes: u16,
    out: &mut String,
) -> Result<usize, ValueError> {
    let prefix = if max_bytes < 256 { 1 } else { 2 };
    let length = length_prefix(cursor, prefix)?;
    if length > usize::from(max_bytes) {
        return Err(ValueError::TooLong {
            length: length as u64,
            max: u64::from(max_bytes),
        });
    }
    column.charset.decode_into(need(cursor.take(length))?, out);
    Ok(length)
}

/// An ENUM or SET value stored in `pack_len` bytes: canal's number (the
/// ENUM's index, the SET's bitmask), or what it names, written by `name`,
/// when labels are asked for and known.
#[inline]
fn labelled(
    column: &ColumnMeta,
    cursor: &mut ByteReader<'_>,
    pack_len: u8,
    options: &ValueOptions,
    out: &mut String,
    name: fn(&[String], u64, &mut String),
) -> Result<(), ValueError> {
    let number = need(cursor.uint_le(usize::from(pack_len)))?;
    match column.labels.as_deref() {
        Some(labels) if options.enum_set_labels => name(labels, number, out),
        _ => push_int(out, number),
    }
    Ok(())
}

fn push_enum_label(labels: &[String], index: u64, out: &mut String) {
    // Index 0 is the empty "error" value of an ENUM.
    let label = usize::try_from(index)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| labels.get(i));
    out.push_str(label.map(String::as_str).unwrap_or(""));
}

fn push_set_labels(labels: &[String], mask: u64, out: &mut String) {
    let chosen: Vec<&str> = labels
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && mask & (1u64 << i) != 0)
        .map(|(_, l)| l.as_str())
        .collect();
    out.push_str(&chosen.join(","));
}

/// Reads a JSON partial-update value (its diffs) and applies them to the
/// column's before-image document. Without a before image (binlog_row_image
/// MINIMAL/NOBLOB) the full document cannot be known: the diffs are then
/// rendered as the JSON function calls that perform them, as canal does, and
/// `partial_text` is set.
pub fn apply_json_diff(
    column: &ColumnMeta,
    cursor: &mut ByteReader<'_>,
    before: Option<&Json>,
    out: &mut String,
) -> Result<Decoded, ValueError> {
    let WireType::Json { len_bytes } = column.wire else {
        return Err(ValueError::Json(json_binary::JsonError::Malformed(
            "partial update of a non-JSON column",
        )));
    };
    let diffs = json_binary::parse_diffs(prefixed_bytes(cursor, len_bytes)?)?;
    match before {
        Some(before) => {
            let mut document = before.clone();
            json_binary::apply_diffs(&mut document, &diffs)?;
            json_binary::render(&document, out);
            Ok(Decoded {
                above_signed_max: false,
                json: Some(document),
                partial_text: false,
            })
        }
        None => {
            json_binary::render_diff_calls(&column.name, &diffs, out);
            Ok(Decoded {
                above_signed_max: false,
                json: None,
                partial_text: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::charset::{Charset, charset_by_name};
    use std::sync::Arc;

    fn column(wire: WireType, unsigned: bool, charset: Charset) -> ColumnMeta {
        ColumnMeta {
            name: "c".into(),
            wire,
            unsigned,
            charset,
            charset_name: "utf8mb4",
            is_key: false,
            mysql_type: String::new(),
            labels: Some(Arc::from(vec![
                "a".to_owned(),
                "b".to_owned(),
                "c".to_owned(),
            ])),
            is_text: false,
        }
    }

    fn render(column: &ColumnMeta, bytes: &[u8], options: &ValueOptions) -> (String, bool) {
        let mut cursor = ByteReader::new(bytes);
        let mut out = String::new();
        let decoded = decode_value(column, &mut cursor, options, false, &mut out).unwrap();
        assert!(cursor.is_empty(), "consumed exactly the value");
        (out, decoded.above_signed_max)
    }

    #[test]
    fn integers_signed_and_unsigned() {
        let o = ValueOptions::default();
        let c = |w, u| column(w, u, Charset::Binary);
        assert_eq!(
            render(&c(WireType::Tiny, false), &[0x80], &o),
            ("-128".into(), false)
        );
        assert_eq!(
            render(&c(WireType::Tiny, true), &[0xff], &o),
            ("255".into(), true)
        );
        assert_eq!(
            render(&c(WireType::Tiny, true), &[0x7f], &o),
            ("127".into(), false)
        );
        assert_eq!(
            render(&c(WireType::Int24, false), &[0xff, 0xff, 0xff], &o),
            ("-1".into(), false)
        );
        assert_eq!(
            render(&c(WireType::Int24, true), &[0xff, 0xff, 0xff], &o),
            ("16777215".into(), true)
        );
        assert_eq!(
            render(&c(WireType::LongLong, true), &[0xff; 8], &o),
            ("18446744073709551615".into(), true)
        );
        assert_eq!(
            render(
                &c(WireType::LongLong, false),
                &[0, 0, 0, 0, 0, 0, 0, 0x80],
                &o
            ),
            ("-9223372036854775808".into(), false)
        );
    }

    #[test]
    fn strings_enums_sets_bits() {
        let o = ValueOptions::default();
        let labels = ValueOptions {
            enum_set_labels: true,
            ..ValueOptions::default()
        };
        let s = column(
            WireType::VarString { max_bytes: 80 },
            false,
            charset_by_name("utf8mb4"),
        );
        assert_eq!(render(&s, &[4, 0xf0, 0x9f, 0x98, 0x80], &o).0, "😀");
        let e = column(WireType::Enum { pack_len: 1 }, false, Charset::Utf8);
        assert_eq!(render(&e, &[2], &o).0, "2");
        assert_eq!(render(&e, &[2], &labels).0, "b");
        let set = column(WireType::Set { pack_len: 1 }, false, Charset::Utf8);
        assert_eq!(render(&set, &[5], &o).0, "5");
        assert_eq!(render(&set, &[5], &labels).0, "a,c");
        let bit = column(WireType::Bit { bits: 64 }, false, Charset::Binary);
        assert_eq!(render(&bit, &[0xff; 8], &o).0, "18446744073709551615");
        let bit3 = column(WireType::Bit { bits: 3 }, false, Charset::Binary);
        assert_eq!(render(&bit3, &[0b100], &o).0, "4");
    }

    #[test]
    fn over_long_and_truncated_values_are_errors() {
        let o = ValueOptions::default();
        let s = column(WireType::VarString { max_bytes: 3 }, false, Charset::Utf8);
        let mut out = String::new();
        assert!(matches!(
            decode_value(&s, &mut ByteReader::new(&[9, b'a']), &o, false, &mut out),
            Err(ValueError::TooLong { .. })
        ));
        let b = column(WireType::Blob { len_bytes: 4 }, false, Charset::Binary);
        assert_eq!(
            decode_value(
                &b,
                &mut ByteReader::new(&[0xff, 0xff, 0xff, 0x7f, 1]),
                &o,
                false,
                &mut out
            )
            .unwrap_err(),
            ValueError::Truncated
        );
    }
}
