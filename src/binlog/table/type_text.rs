//! The column type text (`mysqlType`) the server shows in
//! `information_schema`, rebuilt from what the binlog says of a column.

use mysql_common::constants::GeometryType;

use super::{ColumnMeta, ServerFlavor, WireType};
use crate::binlog::text::push_int;

/// The column type text the server shows in `information_schema`, rebuilt
/// from binlog metadata. Integer display widths are not in the binlog, so
/// the defaults are printed (MariaDB and MySQL < 8.0.19).
pub fn mysql_type_text(
    column: &ColumnMeta,
    flavor: ServerFlavor,
    geometry: Option<GeometryType>,
) -> String {
    let widths = flavor != ServerFlavor::MySql;
    let unsigned = column.unsigned;
    let int = |name, signed_width, unsigned_width| {
        integer_text(name, widths, unsigned, (signed_width, unsigned_width))
    };
    let binary = column.charset.is_binary();
    match column.wire {
        WireType::Tiny => int("tinyint", 4, 3),
        WireType::Short => int("smallint", 6, 5),
        WireType::Int24 => int("mediumint", 9, 8),
        WireType::Long => int("int", 11, 10),
        WireType::LongLong => int("bigint", 20, 20),
        WireType::Float => with_unsigned("float", unsigned),
        WireType::Double => with_unsigned("double", unsigned),
        WireType::Decimal { precision, scale } => {
            with_unsigned(&format!("decimal({precision},{scale})"), unsigned)
        }
        WireType::Year if widths => "year(4)".into(),
        WireType::Year => "year".into(),
        WireType::Date => "date".into(),
        WireType::Time => "time".into(),
        WireType::Time2 { fsp } => with_fsp("time", fsp),
        WireType::DateTime => "datetime".into(),
        WireType::DateTime2 { fsp } => with_fsp("datetime", fsp),
        WireType::Timestamp => "timestamp".into(),
        WireType::Timestamp2 { fsp } => with_fsp("timestamp", fsp),
        WireType::Bit { bits } => format!("bit({bits})"),
        WireType::VarString { max_bytes } if binary => format!("varbinary({max_bytes})"),
        WireType::VarString { max_bytes } => format!("varchar({})", chars(column, max_bytes)),
        WireType::FixedString { max_bytes } if binary => format!("binary({max_bytes})"),
        WireType::FixedString { max_bytes } => format!("char({})", chars(column, max_bytes)),
        WireType::Enum { .. } => format!("enum({})", quoted_labels(column)),
        WireType::Set { .. } => format!("set({})", quoted_labels(column)),
        WireType::Blob { len_bytes } => {
            let size = ["tiny", "", "medium", "long"][usize::from(len_bytes.clamp(1, 4)) - 1];
            format!("{size}{}", if binary { "blob" } else { "text" })
        }
        WireType::Geometry { .. } => geometry_text(geometry).into(),
        WireType::Json { .. } => "json".into(),
        WireType::Vector { len_bytes: _ } => "vector".into(),
    }
}

/// `int(11) unsigned`: the display width (signed, unsigned) only where the
/// server prints it.
fn integer_text(name: &str, widths: bool, unsigned: bool, width: (u32, u32)) -> String {
    let mut text = name.to_owned();
    if widths {
        text.push('(');
        push_int(&mut text, if unsigned { width.1 } else { width.0 });
        text.push(')');
    }
    if unsigned {
        text.push_str(" unsigned");
    }
    text
}

fn with_unsigned(name: &str, unsigned: bool) -> String {
    if unsigned {
        format!("{name} unsigned")
    } else {
        name.to_owned()
    }
}

/// `time(3)`: fractional-second digits, when there are any.
fn with_fsp(name: &str, fsp: u8) -> String {
    if fsp > 0 {
        format!("{name}({fsp})")
    } else {
        name.to_owned()
    }
}

/// Characters that fit in `bytes` of the column's charset.
fn chars(column: &ColumnMeta, bytes: u16) -> u32 {
    u32::from(bytes)
        / column
            .charset
            .max_bytes_per_char(column.charset_name)
            .max(1)
}

/// ENUM/SET labels as the definition quotes them: `'a','b'`.
fn quoted_labels(column: &ColumnMeta) -> String {
    column
        .labels
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|l| format!("'{}'", l.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",")
}

fn geometry_text(geometry: Option<GeometryType>) -> &'static str {
    match geometry.unwrap_or(GeometryType::GEOM_GEOMETRY) {
        GeometryType::GEOM_POINT => "point",
        GeometryType::GEOM_LINESTRING => "linestring",
        GeometryType::GEOM_POLYGON => "polygon",
        GeometryType::GEOM_MULTIPOINT => "multipoint",
        GeometryType::GEOM_MULTILINESTRING => "multilinestring",
        GeometryType::GEOM_MULTIPOLYGON => "multipolygon",
        GeometryType::GEOM_GEOMETRYCOLLECTION => "geometrycollection",
        _ => "geometry",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::binlog::charset::charset_by_name;

    fn column(wire: WireType, unsigned: bool, charset: &'static str) -> ColumnMeta {
        ColumnMeta {
            name: "c".into(),
            wire,
            unsigned,
            charset: charset_by_name(charset),
            charset_name: charset,
            is_key: false,
            mysql_type: String::new(),
            labels: Some(Arc::from(vec!["a".to_owned(), "it's".to_owned()])),
            is_text: false,
        }
    }

    #[test]
    fn integers_with_and_without_display_widths() {
        let int = column(WireType::Long, false, "binary");
        let unsigned = column(WireType::Long, true, "binary");
        assert_eq!(
            mysql_type_text(&int, ServerFlavor::MariaDb, None),
            "int(11)"
        );
        assert_eq!(
            mysql_type_text(&unsigned, ServerFlavor::MySqlWithWidths, None),
            "int(10) unsigned"
        );
        assert_eq!(
            mysql_type_text(&unsigned, ServerFlavor::MySql, None),
            "int unsigned"
        );
        let year = column(WireType::Year, false, "binary");
        assert_eq!(
            mysql_type_text(&year, ServerFlavor::MariaDb, None),
            "year(4)"
        );
        assert_eq!(mysql_type_text(&year, ServerFlavor::MySql, None), "year");
    }

    #[test]
    fn strings_labels_and_geometry() {
        let flavor = ServerFlavor::MySql;
        let varchar = column(WireType::VarString { max_bytes: 80 }, false, "utf8mb4");
        assert_eq!(mysql_type_text(&varchar, flavor, None), "varchar(20)");
        let binary = column(WireType::FixedString { max_bytes: 16 }, false, "binary");
        assert_eq!(mysql_type_text(&binary, flavor, None), "binary(16)");
        let set = column(WireType::Set { pack_len: 1 }, false, "utf8mb4");
        assert_eq!(mysql_type_text(&set, flavor, None), "set('a','it''s')");
        let text = column(WireType::Blob { len_bytes: 3 }, false, "utf8mb4");
        assert_eq!(mysql_type_text(&text, flavor, None), "mediumtext");
        let point = column(WireType::Geometry { len_bytes: 4 }, false, "binary");
        assert_eq!(
            mysql_type_text(&point, flavor, Some(GeometryType::GEOM_POINT)),
            "point"
        );
        let time = column(WireType::Time2 { fsp: 3 }, false, "binary");
        assert_eq!(mysql_type_text(&time, flavor, None), "time(3)");
    }
}
