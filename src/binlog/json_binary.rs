//! MySQL's binary JSON (row images of JSON columns) and partial-update diffs.
//!
//! Documents are parsed into a small tree, partial updates (`JSON_SET` etc.
//! logged as diffs in PARTIAL_UPDATE_ROWS events) are applied to the
//! before-image tree, and the result is rendered the way canal renders JSON:
//! MySQL's layout (`{"a": 1, "b": [1, 2]}`), canal's string escaping and
//! Java's double text. Temporal and decimal scalars are rendered as MySQL
//! prints them (`"2012-03-18"`, `87:31:46.654321`), other opaque scalars as
//! MySQL's `"base64:typeN:..."`.

use std::fmt::Write;

use base64::Engine;

use super::{bytes::ByteReader, decimal, javafmt};

/// Why a JSON value could not be decoded or updated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The binary document does not parse.
    #[error("binary JSON is truncated or malformed ({0})")]
    Malformed(&'static str),
    /// The document nests deeper than decoding allows.
    #[error("binary JSON nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A partial update names a path that does not parse.
    #[error("JSON partial update path `{0}` is not a valid JSON path")]
    BadPath(String),
    /// A partial update does not fit the before-image document.
    #[error("JSON partial update cannot be applied at `{path}`: {reason}")]
    CannotApply {
        /// Where in the document.
        path: String,
        /// Why not.
        reason: &'static str,
    },
    /// A partial update's operation code is not known.
    #[error("JSON partial update has unknown operation {0}")]
    UnknownOperation(u8),
}

const MAX_DEPTH: usize = 128;

/// A parsed JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A floating-point number.
    Double(f64),
    /// A string.
    String(String),
    /// Keys in MySQL's storage order (by length, then bytes).
    Object(Vec<(String, Json)>),
    /// An array.
    Array(Vec<Json>),
    /// A MySQL scalar kept as its field type and raw bytes.
    Opaque {
        /// The MySQL column type of the value (DATE, DECIMAL...).
        field_type: u8,
        /// The value as MySQL stores it.
        data: Vec<u8>,
    },
}

const SMALL_OBJECT: u8 = 0x00;
const LARGE_OBJECT: u8 = 0x01;
const SMALL_ARRAY: u8 = 0x02;
const LARGE_ARRAY: u8 = 0x03;
const LITERAL: u8 = 0x04;
const INT16: u8 = 0x05;
const UINT16: u8 = 0x06;
const INT32: u8 = 0x07;
const UINT32: u8 = 0x08;
const INT64: u8 = 0x09;
const UINT64: u8 = 0x0a;
const DOUBLE: u8 = 0x0b;
const STRING: u8 = 0x0c;
const OPAQUE: u8 = 0x0f;

/// Parses a whole binary JSON value (type byte first). An empty value is
/// what MySQL logs for a JSON column set to `''` by non-strict modes; it is
/// rendered as an empty string by the caller.
pub fn parse(bytes: &[u8]) -> Result<Json, JsonError> {
    let (&value_type, body) = bytes
        .split_first()
        .ok_or(JsonError::Malformed("empty document"))?;
    parse_value(value_type, body, 0)
}

fn parse_value(value_type: u8, body: &[u8], depth: usize) -> Result<Json, JsonError> {
    if depth > MAX_DEPTH {
        return Err(JsonError::TooDeep);
    }
    let mut cursor = ByteReader::new(body);
    let short = || JsonError::Malformed("value runs past its container");
    Ok(match value_type {
        SMALL_OBJECT => parse_container(body, false, true, depth)?,
        LARGE_OBJECT => parse_container(body, true, true, depth)?,
        SMALL_ARRAY => parse_container(body, false, false, depth)?,
        LARGE_ARRAY => parse_container(body, true, false, depth)?,
        LITERAL => literal(cursor.u8().ok_or_else(short)?)?,
        INT16 => Json::Int(i64::from(cursor.uint_le(2).ok_or_else(short)? as u16 as i16)),
        UINT16 => Json::UInt(cursor.uint_le(2).ok_or_else(short)?),
        INT32 => Json::Int(i64::from(cursor.uint_le(4).ok_or_else(short)? as u32 as i32)),
        UINT32 => Json::UInt(cursor.uint_le(4).ok_or_else(short)?),
        INT64 => Json::Int(cursor.uint_le(8).ok_or_else(short)? as i64),
        UINT64 => Json::UInt(cursor.uint_le(8).ok_or_else(short)?),
        DOUBLE => Json::Double(f64::from_bits(cursor.uint_le(8).ok_or_else(short)?)),
        STRING => {
            let len = variable_length(&mut cursor)?;
            let bytes = cursor.take(len).ok_or_else(short)?;
            Json::String(String::from_utf8_lossy(bytes).into_owned())
        }
        OPAQUE => {
            let field_type = cursor.u8().ok_or_else(short)?;
            let len = variable_length(&mut cursor)?;
            let data = cursor.take(len).ok_or_else(short)?.to_vec();
            Json::Opaque { field_type, data }
        }
        _ => return Err(JsonError::Malformed("unknown value type")),
    })
}

fn literal(byte: u8) -> Result<Json, JsonError> {
    match byte {
        0 => Ok(Json::Null),
        1 => Ok(Json::Bool(true)),
        2 => Ok(Json::Bool(false)),
        _ => Err(JsonError::Malformed("unknown literal")),
    }
}

/// The 7-bits-per-byte length prefix of strings and opaque values.
fn variable_length(cursor: &mut ByteReader<'_>) -> Result<usize, JsonError> {
    let mut length: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = cursor.u8().ok_or(JsonError::Malformed("length prefix"))?;
        length |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(length).map_err(|_| JsonError::Malformed("length prefix"));
        }
    }
    Err(JsonError::Malformed("length prefix longer than 5 bytes"))
}

fn parse_container(
    body: &[u8],
    large: bool,
    object: bool,
    depth: usize,
) -> Result<Json, JsonError> {
    let offset_size = if large { 4 } else { 2 };
    let bad = || JsonError::Malformed("container header");
    let mut header = ByteReader::new(body);
    let count = header.uint_le(offset_size).ok_or_else(bad)? as usize;
    let size = header.uint_le(offset_size).ok_or_else(bad)? as usize;
    if size > body.len() {
        return Err(JsonError::Malformed("container larger than its value"));
    }
    let body = &body[..size];
    // Each entry needs several bytes, so a count beyond the size is corrupt;
    // checking it first bounds the allocations below.
    if count > size {
        return Err(bad());
    }
    let mut keys = Vec::new();
    if object {
        keys.reserve(count);
        for _ in 0..count {
            let key_offset = header.uint_le(offset_size).ok_or_else(bad)? as usize;
            let key_len = header.uint_le(2).ok_or_else(bad)? as usize;
            let key = body
                .get(key_offset..key_offset.saturating_add(key_len))
                .ok_or(JsonError::Malformed("object key outside its container"))?;
            keys.push(String::from_utf8_lossy(key).into_owned());
        }
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let value_type = header.u8().ok_or_else(bad)?;
        let inlined = matches!(value_type, LITERAL | INT16 | UINT16)
            || (large && matches!(value_type, INT32 | UINT32));
        let value = if inlined {
            let raw = header.take(offset_size).ok_or_else(bad)?;
            parse_value(value_type, raw, depth + 1)?
        } else {
            let offset = header.uint_le(offset_size).ok_or_else(bad)? as usize;
            let nested = body
                .get(offset..)
                .ok_or(JsonError::Malformed("value offset outside its container"))?;
            parse_value(value_type, nested, depth + 1)?
        };
        values.push(value);
    }
    Ok(if object {
        Json::Object(keys.into_iter().zip(values).collect())
    } else {
        Json::Array(values)
    })
}

/// Renders `json` into `out` in canal's text form.
pub fn render(json: &Json, out: &mut String) {
    match json {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Json::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Json::Double(d) => javafmt::write_f64(*d, out),
        Json::String(s) => push_quoted(s, out),
        Json::Object(members) => {
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_quoted(key, out);
                out.push_str(": ");
                render(value, out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(item, out);
            }
            out.push(']');
        }
        Json::Opaque { field_type, data } => render_opaque(*field_type, data, out),
    }
}

const FIELD_NEWDECIMAL: u8 = 246;
const FIELD_DATE: u8 = 10;
const FIELD_TIME: u8 = 11;
const FIELD_DATETIME: u8 = 12;
const FIELD_TIMESTAMP: u8 = 7;

fn render_opaque(field_type: u8, data: &[u8], out: &mut String) {
    let rendered = match field_type {
        FIELD_NEWDECIMAL => render_decimal(data, out),
        FIELD_DATE | FIELD_DATETIME | FIELD_TIMESTAMP | FIELD_TIME => {
            render_packed_temporal(field_type, data, out)
        }
        _ => false,
    };
    if !rendered {
        let _ = write!(
            out,
            "\"base64:type{field_type}:{}\"",
            base64::engine::general_purpose::STANDARD.encode(data)
        );
    }
}

fn render_decimal(data: &[u8], out: &mut String) -> bool {
    let [precision, scale, rest @ ..] = data else {
        return false;
    };
    if rest.len() != decimal::binary_size(*precision, *scale) {
        return false;
    }
    let mark = out.len();
    if decimal::write_decimal(rest, *precision, *scale, out).is_err() {
        out.truncate(mark);
        return false;
    }
    true
}

/// Temporal scalars are stored as MySQL's in-memory packed longlong.
fn render_packed_temporal(field_type: u8, data: &[u8], out: &mut String) -> bool {
    let Ok(bytes) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) else {
        return false;
    };
    let packed = i64::from_le_bytes(bytes);
    let magnitude = packed.unsigned_abs();
    let int_part = magnitude >> 24;
    let micros = magnitude & 0xff_ffff;
    out.push('"');
    if field_type == FIELD_TIME {
        if packed < 0 {
            out.push('-');
        }
        let _ = write!(
            out,
            "{:02}:{:02}:{:02}.{micros:06}",
            (int_part >> 12) & 0x3ff,
            (int_part >> 6) & 0x3f,
            int_part & 0x3f
        );
    } else {
        let ymd = int_part >> 17;
        let year_month = ymd >> 5;
        let hms = int_part & 0x1ffff;
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}",
            year_month / 13,
            year_month % 13,
            ymd & 0x1f
        );
        if field_type != FIELD_DATE {
            let _ = write!(
                out,
                " {:02}:{:02}:{:02}.{micros:06}",
                hms >> 12,
                (hms >> 6) & 0x3f,
                hms & 0x3f
            );
        }
    }
    out.push('"');
    true
}

/// Quotes a string with canal's escaping: `"` `\` `\n` `\r` `\t`, other
/// control characters and U+007F..=U+00A0 as `\u00xx` (lower-case hex).
fn push_quoted(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || ('\u{7f}'..='\u{a0}').contains(&c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Step>, JsonError> {
    let bad = || JsonError::BadPath(path.to_owned());
    let rest = path.trim().strip_prefix('$').ok_or_else(bad)?;
    let mut chars = rest.chars().peekable();
    let mut steps = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '.' => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                let mut key = String::new();
                if chars.peek() == Some(&'"') {
                    chars.next();
                    loop {
                        match chars.next().ok_or_else(bad)? {
                            '"' => break,
                            '\\' => key.push(chars.next().ok_or_else(bad)?),
                            c => key.push(c),
                        }
                    }
                } else {
                    while let Some(&c) = chars.peek() {
                        if c == '.' || c == '[' || c.is_whitespace() {
                            break;
                        }
                        key.push(c);
                        chars.next();
                    }
                }
                if key.is_empty() {
                    return Err(bad());
                }
                steps.push(Step::Key(key));
            }
            '[' => {
                let mut digits = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    digits.push(c);
                }
                steps.push(Step::Index(digits.trim().parse().map_err(|_| bad())?));
            }
            _ => return Err(bad()),
        }
    }
    Ok(steps)
}

/// MySQL's object key order: shorter keys first, then by bytes.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The operation of one partial-update diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffOperation {
    /// JSON_REPLACE: a value that exists changes.
    Replace,
    /// JSON_INSERT: a value is added.
    Insert,
    /// JSON_REMOVE: a value goes.
    Remove,
}

/// One change of a JSON partial update.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    /// What the diff does.
    pub operation: DiffOperation,
    /// Where, as a JSON path (`$.a[1]`).
    pub path: String,
    /// The new value (none for a removal).
    pub value: Option<Json>,
}

/// Reads the diffs of one partially updated JSON column.
pub fn parse_diffs(bytes: &[u8]) -> Result<Vec<Diff>, JsonError> {
    let mut cursor = ByteReader::new(bytes);
    let short = || JsonError::Malformed("partial update diff is truncated");
    let mut diffs = Vec::new();
    while !cursor.is_empty() {
        let operation = match cursor.u8().ok_or_else(short)? {
            0 => DiffOperation::Replace,
            1 => DiffOperation::Insert,
            2 => DiffOperation::Remove,
            other => return Err(JsonError::UnknownOperation(other)),
        };
        let path_len = cursor.lenenc_int().ok_or_else(short)? as usize;
        let path = String::from_utf8_lossy(cursor.take(path_len).ok_or_else(short)?).into_owned();
        let value = if operation == DiffOperation::Remove {
            None
        } else {
            let value_len = cursor.lenenc_int().ok_or_else(short)? as usize;
            Some(parse(cursor.take(value_len).ok_or_else(short)?)?)
        };
        diffs.push(Diff {
            operation,
            path,
            value,
        });
    }
    Ok(diffs)
}

/// Applies partial-update diffs to `document` (the column's before image).
pub fn apply_diffs(document: &mut Json, diffs: &[Diff]) -> Result<(), JsonError> {
    for diff in diffs {
        apply(document, &diff.path, diff.operation, diff.value.clone())?;
    }
    Ok(())
}

/// Renders diffs as the JSON function calls that would perform them, the
/// way mysqlbinlog and canal show a partial update they cannot resolve:
/// `JSON_REPLACE(JSON_INSERT(col, '$.a', 1), '$.b', 2)`.
pub fn render_diff_calls(column: &str, diffs: &[Diff], out: &mut String) {
    let names: Vec<&str> = diffs
        .iter()
        .map(|d| match d.operation {
            DiffOperation::Replace => "JSON_REPLACE",
            DiffOperation::Insert if d.path.ends_with(']') => "JSON_ARRAY_INSERT",
            DiffOperation::Insert => "JSON_INSERT",
            DiffOperation::Remove => "JSON_REMOVE",
        })
        .collect();
    // Consecutive diffs of the same function share one call.
    for i in (0..names.len()).rev() {
        if i == 0 || names[i - 1] != names[i] {
            out.push_str(names[i]);
            out.push('(');
        }
    }
    out.push_str(column);
    if diffs.is_empty() {
        return;
    }
    out.push_str(", ");
    for (i, diff) in diffs.iter().enumerate() {
        let _ = write!(out, "'{}'", diff.path);
        if let Some(value) = &diff.value {
            out.push_str(", ");
            render(value, out);
        }
        let last = i + 1 == diffs.len();
        if last || names[i + 1] != names[i] {
            out.push(')');
        }
        if !last {
            out.push_str(", ");
        }
    }
}

fn apply(
    document: &mut Json,
    path: &str,
    operation: DiffOperation,
    value: Option<Json>,
) -> Result<(), JsonError> {
    let steps = parse_path(path)?;
    let cannot = |reason| JsonError::CannotApply {
        path: path.to_owned(),
        reason,
    };
    let Some((last, parents)) = steps.split_last() else {
        return match (operation, value) {
            (DiffOperation::Replace, Some(value)) => {
                *document = value;
                Ok(())
            }
            _ => Err(cannot("only REPLACE can target the whole document")),
        };
    };
    let mut target = document;
    for step in parents {
        target = match (step, target) {
            (Step::Key(key), Json::Object(members)) => members
                .iter_mut()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .ok_or_else(|| cannot("a parent member does not exist"))?,
            (Step::Index(i), Json::Array(items)) => items
                .get_mut(*i)
                .ok_or_else(|| cannot("a parent index is out of range"))?,
            _ => return Err(cannot("a parent is not a container of that kind")),
        };
    }
    match (last, target, operation, value) {
        (Step::Key(key), Json::Object(members), DiffOperation::Remove, None) => {
            members.retain(|(k, _)| k != key);
        }
        (Step::Key(key), Json::Object(members), _, Some(value)) => {
            match members.iter_mut().find(|(k, _)| k == key) {
                Some((_, existing)) => *existing = value,
                None => {
                    let at = members
                        .iter()
                        .position(|(k, _)| key_order(k, key).is_gt())
                        .unwrap_or(members.len());
                    members.insert(at, (key.clone(), value));
                }
            }
        }
        (Step::Index(i), Json::Array(items), DiffOperation::Remove, None) => {
            if *i >= items.len() {
                return Err(cannot("index to remove is out of range"));
            }
            items.remove(*i);
        }
        (Step::Index(i), Json::Array(items), DiffOperation::Replace, Some(value)) => {
            *items
                .get_mut(*i)
                .ok_or_else(|| cannot("index to replace is out of range"))? = value;
        }
        (Step::Index(i), Json::Array(items), DiffOperation::Insert, Some(value)) => {
            let at = (*i).min(items.len());
            items.insert(at, value);
        }
        _ => return Err(cannot("target is not a container of that kind")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &Json) -> String {
        let mut out = String::new();
        render(json, &mut out);
        out
    }

    /// `{"a": 1, "bb": [true, "x"]}` in MySQL's small-object encoding.
    fn sample() -> Vec<u8> {
        let mut arr = Vec::new();
        // count=2, size; entries: literal true inlined, string at offset
        let arr_size = 4 + 3 * 2 + 2; // header + 2 entries + string "x"
        arr.extend_from_slice(&2u16.to_le_bytes());
        arr.extend_from_slice(&(arr_size as u16).to_le_bytes());
        arr.extend_from_slice(&[LITERAL, 1, 0]);
        arr.extend_from_slice(&[STRING, 10, 0]);
        arr.extend_from_slice(&[1, b'x']);
        assert_eq!(arr.len(), arr_size);

        let header = 4 + 2 * 4 + 2 * 3;
        let keys_at = header;
        let arr_at = keys_at + 3;
        let size = arr_at + arr.len();
        let mut obj = vec![SMALL_OBJECT];
        obj.extend_from_slice(&2u16.to_le_bytes());
        obj.extend_from_slice(&(size as u16).to_le_bytes());
        obj.extend_from_slice(&(keys_at as u16).to_le_bytes());
        obj.extend_from_slice(&1u16.to_le_bytes());
        obj.extend_from_slice(&((keys_at + 1) as u16).to_le_bytes());
        obj.extend_from_slice(&2u16.to_le_bytes());
        obj.extend_from_slice(&[INT16, 1, 0]);
        obj.extend_from_slice(&[SMALL_ARRAY]);
        obj.extend_from_slice(&(arr_at as u16).to_le_bytes());
        obj.extend_from_slice(b"abb");
        obj.extend_from_slice(&arr);
        obj
    }

    #[test]
    fn parses_and_renders_like_canal() {
        let json = parse(&sample()).unwrap();
        assert_eq!(text(&json), r#"{"a": 1, "bb": [true, "x"]}"#);
    }

    #[test]
    fn opaque_scalars() {
        // DATE 2012-03-18 as packed longlong
        let ymd: u64 = ((2012 * 13 + 3) << 5) | 18;
        let packed = (ymd << 17) << 24;
        let mut out = String::new();
        render_opaque(FIELD_DATE, &packed.to_le_bytes(), &mut out);
        assert_eq!(out, r#""2012-03-18""#);
        out.clear();
        let hms: u64 = (87 << 12) | (31 << 6) | 46;
        render_opaque(FIELD_TIME, &((hms << 24) | 654_321).to_le_bytes(), &mut out);
        assert_eq!(out, r#""87:31:46.654321""#);
        out.clear();
        render_opaque(15, b"U", &mut out);
        assert_eq!(out, r#""base64:type15:VQ==""#);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            text(&Json::String("a\"b\\\n\u{1}\u{80}é".into())),
            r#""a\"b\\\n\u0001\u0080é""#
        );
    }

    #[test]
    fn diffs_apply_in_mysql_order() {
        let mut doc = parse(&sample()).unwrap();
        apply(&mut doc, "$.c", DiffOperation::Insert, Some(Json::Int(3))).unwrap();
        apply(
            &mut doc,
            "$.bb[1]",
            DiffOperation::Replace,
            Some(Json::Null),
        )
        .unwrap();
        apply(&mut doc, "$.bb[0]", DiffOperation::Remove, None).unwrap();
        apply(
            &mut doc,
            "$.\"a\"",
            DiffOperation::Replace,
            Some(Json::Double(2.5)),
        )
        .unwrap();
        assert_eq!(text(&doc), r#"{"a": 2.5, "c": 3, "bb": [null]}"#);
        assert!(apply(&mut doc, "$.zz.y", DiffOperation::Replace, Some(Json::Null)).is_err());
        assert!(apply(&mut doc, "a.b", DiffOperation::Replace, Some(Json::Null)).is_err());
    }

    #[test]
    fn unresolvable_diffs_render_as_calls() {
        let diffs = vec![
            Diff {
                operation: DiffOperation::Insert,
                path: "$.a".into(),
                value: Some(Json::Int(1)),
            },
            Diff {
                operation: DiffOperation::Insert,
                path: "$.b".into(),
                value: Some(Json::String("x".into())),
            },
            Diff {
                operation: DiffOperation::Replace,
                path: "$.c".into(),
                value: Some(Json::Int(2)),
            },
            Diff {
                operation: DiffOperation::Remove,
                path: "$.d[0]".into(),
                value: None,
            },
        ];
        let mut out = String::new();
        render_diff_calls("col", &diffs, &mut out);
        assert_eq!(
            out,
            r#"JSON_REMOVE(JSON_REPLACE(JSON_INSERT(col, '$.a', 1, '$.b', "x"), '$.c', 2), '$.d[0]')"#
        );
    }

    #[test]
    fn malformed_inputs_fail_cleanly() {
        let good = sample();
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        assert!(parse(&[0x42]).is_err());
        assert!(parse(&[SMALL_OBJECT, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
