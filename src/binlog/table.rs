//! Table metadata: what the decoder needs to turn a row image into canal
//! columns — each column's wire type (from the TABLE_MAP event), and its
//! name, key flag, signedness, charset, ENUM/SET labels and `mysqlType` text
//! (from the table map's optional metadata under `binlog_row_metadata=FULL`,
//! otherwise from the schema tracker).

mod optional_meta;
mod type_text;

use std::{collections::BTreeSet, sync::Arc};

use mysql_common::binlog::events::{OptionalMetaExtractor, TableMapEvent};
use mysql_common::constants::ColumnType as Mt;

use self::optional_meta::TypeDetails;
pub use self::{optional_meta::check_table_map_body, type_text::mysql_type_text};
use super::{
    charset::{Charset, charset_by_name, charset_name_of_collation},
    decimal,
};

/// Why a table map could not be turned into table metadata.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A column's type code is not a MySQL type.
    #[error("table {table}: column {column} has unknown binlog type {type_code}")]
    UnknownType {
        /// `schema.table`.
        table: String,
        /// The column's place in the table, from 0.
        column: usize,
        /// The type code the table map gives.
        type_code: u8,
    },
    /// A column's type metadata is impossible for its type.
    #[error("table {table}: column {column} ({type_name}) has malformed type metadata {meta:02x?}")]
    BadMetadata {
        /// `schema.table`.
        table: String,
        /// The column's place in the table, from 0.
        column: usize,
        /// The column's type.
        type_name: &'static str,
        /// The type metadata the table map gives.
        meta: Vec<u8>,
    },
    /// The optional metadata (binlog_row_metadata) does not parse.
    #[error("table {table}: optional metadata is malformed: {source}")]
    BadOptionalMetadata {
        /// `schema.table`.
        table: String,
        /// What mysql_common's reader said.
        source: std::io::Error,
    },
}

/// java.sql.Types codes used in canal columns.
pub mod sql_types {
    /// `java.sql.Types.BIT`.
    pub const BIT: i32 = -7;
    /// `java.sql.Types.TINYINT`.
    pub const TINYINT: i32 = -6;
    /// `java.sql.Types.SMALLINT`.
    pub const SMALLINT: i32 = 5;
    /// `java.sql.Types.INTEGER`.
    pub const INTEGER: i32 = 4;
    /// `java.sql.Types.BIGINT`.
    pub const BIGINT: i32 = -5;
    /// `java.sql.Types.REAL`.
    pub const REAL: i32 = 7;
    /// `java.sql.Types.DOUBLE`.
    pub const DOUBLE: i32 = 8;
    /// `java.sql.Types.DECIMAL`.
    pub const DECIMAL: i32 = 3;
    /// `java.sql.Types.CHAR`.
    pub const CHAR: i32 = 1;
    /// `java.sql.Types.VARCHAR`.
    pub const VARCHAR: i32 = 12;
    /// `java.sql.Types.DATE`.
    pub const DATE: i32 = 91;
    /// `java.sql.Types.TIME`.
    pub const TIME: i32 = 92;
    /// `java.sql.Types.TIMESTAMP`.
    pub const TIMESTAMP: i32 = 93;
    /// `java.sql.Types.BLOB`.
    pub const BLOB: i32 = 2004;
    /// `java.sql.Types.CLOB`.
    pub const CLOB: i32 = 2005;
    /// `java.sql.Types.OTHER`.
    pub const OTHER: i32 = 1111;
}

/// A column's encoding in row images, with the parameters decoding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// TINYINT: 1 byte.
    Tiny,
    /// SMALLINT: 2 bytes.
    Short,
    /// MEDIUMINT: 3 bytes.
    Int24,
    /// INT: 4 bytes.
    Long,
    /// BIGINT: 8 bytes.
    LongLong,
    /// FLOAT: 4 bytes.
    Float,
    /// DOUBLE: 8 bytes.
    Double,
    /// DECIMAL(precision, scale), in MySQL's binary form.
    Decimal {
        /// Digits in total.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// YEAR: 1 byte, years since 1900.
    Year,
    /// DATE: 3 bytes.
    Date,
    /// TIME before MySQL 5.6.4: 3 bytes.
    Time,
    /// TIME with `fsp` fraction digits (MySQL 5.6.4 and later).
    Time2 {
        /// Fraction digits (0 to 6).
        fsp: u8,
    },
    /// DATETIME before MySQL 5.6.4: 8 bytes.
    DateTime,
    /// DATETIME with `fsp` fraction digits.
    DateTime2 {
        /// Fraction digits (0 to 6).
        fsp: u8,
    },
    /// TIMESTAMP before MySQL 5.6.4: 4 bytes.
    Timestamp,
    /// TIMESTAMP with `fsp` fraction digits.
    Timestamp2 {
        /// Fraction digits (0 to 6).
        fsp: u8,
    },
    /// BIT(n): `bits` in total.
    Bit {
        /// Bits in total (1 to 64).
        bits: u16,
    },
    /// VARCHAR / VARBINARY: up to `max_bytes`, 1- or 2-byte length prefix.
    VarString {
        /// The column's maximum length in bytes.
        max_bytes: u16,
    },
    /// CHAR / BINARY: up to `max_bytes`, stored without trailing padding.
    FixedString {
        /// The column's maximum length in bytes.
        max_bytes: u16,
    },
    /// ENUM: the index of its label in `pack_len` bytes.
    Enum {
        /// Bytes the value takes.
        pack_len: u8,
    },
    /// SET: a bitmask of its labels in `pack_len` bytes.
    Set {
        /// Bytes the value takes.
        pack_len: u8,
    },
    /// TEXT and BLOB types (and MariaDB's JSON): `len_bytes` length prefix.
    Blob {
        /// Bytes of the length prefix (1 to 4).
        len_bytes: u8,
    },
    /// Geometry types: the stored form (SRID and WKB) with a `len_bytes`
    /// length prefix.
    Geometry {
        /// Bytes of the length prefix (1 to 4).
        len_bytes: u8,
    },
    /// MySQL's binary JSON: `len_bytes` length prefix.
    Json {
        /// Bytes of the length prefix (1 to 4).
        len_bytes: u8,
    },
    /// VECTOR (MySQL 9): floats with a `len_bytes` length prefix.
    Vector {
        /// Bytes of the length prefix (1 to 4).
        len_bytes: u8,
    },
}

impl WireType {
    /// The wire type of a table-map column from its type code and metadata.
    pub fn from_table_map(type_code: u8, meta: &[u8]) -> Option<WireType> {
        let byte = |i: usize| meta.get(i).copied();
        let u16_le = || Some(u16::from_le_bytes([byte(0)?, byte(1)?]));
        let fsp = || byte(0).filter(|f| *f <= 6);
        let len_bytes = || byte(0).filter(|n| (1..=4).contains(n));
        Some(match Mt::try_from(type_code).ok()? {
            Mt::MYSQL_TYPE_TINY => WireType::Tiny,
            Mt::MYSQL_TYPE_SHORT => WireType::Short,
            Mt::MYSQL_TYPE_INT24 => WireType::Int24,
            Mt::MYSQL_TYPE_LONG => WireType::Long,
            Mt::MYSQL_TYPE_LONGLONG => WireType::LongLong,
            Mt::MYSQL_TYPE_FLOAT => WireType::Float,
            Mt::MYSQL_TYPE_DOUBLE => WireType::Double,
            Mt::MYSQL_TYPE_NEWDECIMAL => {
                let (precision, scale) = (byte(0)?, byte(1)?);
                if precision == 0 || precision > 65 || scale > 30 || scale > precision {
                    return None;
                }
                WireType::Decimal { precision, scale }
            }
            Mt::MYSQL_TYPE_YEAR => WireType::Year,
            Mt::MYSQL_TYPE_DATE | Mt::MYSQL_TYPE_NEWDATE => WireType::Date,
            Mt::MYSQL_TYPE_TIME => WireType::Time,
            Mt::MYSQL_TYPE_TIME2 => WireType::Time2 { fsp: fsp()? },
            Mt::MYSQL_TYPE_DATETIME => WireType::DateTime,
            Mt::MYSQL_TYPE_DATETIME2 => WireType::DateTime2 { fsp: fsp()? },
            Mt::MYSQL_TYPE_TIMESTAMP => WireType::Timestamp,
            Mt::MYSQL_TYPE_TIMESTAMP2 => WireType::Timestamp2 { fsp: fsp()? },
            Mt::MYSQL_TYPE_BIT => {
                let bits = u16::from(byte(1)?) * 8 + u16::from(byte(0)?);
                if bits == 0 || bits > 64 {
                    return None;
                }
                WireType::Bit { bits }
            }
            Mt::MYSQL_TYPE_VARCHAR | Mt::MYSQL_TYPE_VAR_STRING => WireType::VarString {
                max_bytes: u16_le()?,
            },
            Mt::MYSQL_TYPE_STRING | Mt::MYSQL_TYPE_ENUM | Mt::MYSQL_TYPE_SET => {
                let (mut real, mut length) = (byte(0)?, u16::from(byte(1)?));
                // CHAR columns longer than 255 bytes keep two more length bits
                // in the (inverted) high nibble of the real-type byte.
                if real & 0x30 != 0x30 {
                    length |= u16::from((real & 0x30) ^ 0x30) << 4;
                    real |= 0x30;
                }
                match real {
                    r if r == Mt::MYSQL_TYPE_ENUM as u8 => WireType::Enum { pack_len: byte(1)? },
                    r if r == Mt::MYSQL_TYPE_SET as u8 => WireType::Set { pack_len: byte(1)? },
                    r if r == Mt::MYSQL_TYPE_STRING as u8 => {
                        WireType::FixedString { max_bytes: length }
                    }
                    _ => return None,
                }
            }
            Mt::MYSQL_TYPE_TINY_BLOB
            | Mt::MYSQL_TYPE_MEDIUM_BLOB
            | Mt::MYSQL_TYPE_LONG_BLOB
            | Mt::MYSQL_TYPE_BLOB => WireType::Blob {
                len_bytes: len_bytes()?,
            },
            Mt::MYSQL_TYPE_GEOMETRY => WireType::Geometry {
                len_bytes: len_bytes()?,
            },
            Mt::MYSQL_TYPE_JSON => WireType::Json {
                len_bytes: len_bytes()?,
            },
            Mt::MYSQL_TYPE_VECTOR => WireType::Vector {
                len_bytes: len_bytes()?,
            },
            _ => return None,
        })
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            WireType::Tiny
                | WireType::Short
                | WireType::Int24
                | WireType::Long
                | WireType::LongLong
                | WireType::Float
                | WireType::Double
                | WireType::Decimal { .. }
        )
    }

    fn is_character(self) -> bool {
        matches!(
            self,
            WireType::VarString { .. }
                | WireType::FixedString { .. }
                | WireType::Blob { .. }
                // MySQL 9 lists VECTOR columns (binary) among character columns.
                | WireType::Vector { .. }
        )
    }

    /// Bytes of a DECIMAL value; other types read their own lengths.
    pub fn decimal_size(self) -> usize {
        match self {
            WireType::Decimal { precision, scale } => decimal::binary_size(precision, scale),
            _ => 0,
        }
    }
}

/// Which server wrote the binlog, for the type names it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerFlavor {
    /// MariaDB, which prints integer display widths.
    #[default]
    MariaDb,
    /// MySQL before 8.0.19, which prints integer display widths.
    MySqlWithWidths,
    /// MySQL 8.0.19 and later.
    MySql,
}

impl ServerFlavor {
    /// From a FORMAT_DESCRIPTION event's server version (`10.11.6-MariaDB-log`).
    pub fn from_server_version(version: &str) -> Self {
        if version.to_ascii_lowercase().contains("mariadb") {
            return ServerFlavor::MariaDb;
        }
        let numbers: Vec<u32> = version
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(3)
            .filter_map(|s| s.parse().ok())
            .collect();
        match numbers.as_slice() {
            [major, minor, patch, ..] if (*major, *minor, *patch) >= (8, 0, 19) => {
                ServerFlavor::MySql
            }
            [major, ..] if *major > 8 => ServerFlavor::MySql,
            _ => ServerFlavor::MySqlWithWidths,
        }
    }
}

/// One column as the decoder and the canal output need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    /// Empty when neither the binlog nor the schema tracker knows it.
    pub name: String,
    /// How its values are stored in row images.
    pub wire: WireType,
    /// Whether a numeric column is UNSIGNED.
    pub unsigned: bool,
    /// How its text is decoded.
    pub charset: Charset,
    /// The charset's name, for the type text (`binary` for bytes).
    pub charset_name: &'static str,
    /// Whether the column is part of the primary key.
    pub is_key: bool,
    /// The column type as the server prints it (`int(11)`, `varchar(20)`).
    pub mysql_type: String,
    /// ENUM or SET labels, in definition order, when known.
    pub labels: Option<Arc<[String]>>,
    /// Whether the value is text kept in a BLOB-type column (TEXT types and
    /// MariaDB's JSON), which canal reports as CLOB.
    pub is_text: bool,
}

impl ColumnMeta {
    /// A column as the table map alone describes it: no key flag, labels or
    /// type text yet. Without charset metadata a BLOB-type column may be
    /// TEXT or BLOB: its bytes are kept (binary) until a schema lookup
    /// says; other text columns read as utf8mb4.
    fn from_binlog(name: String, wire: WireType, unsigned: bool, collation: Option<u16>) -> Self {
        let charset_name = collation
            .and_then(charset_name_of_collation)
            .unwrap_or(match wire {
                WireType::Blob { .. } => "binary",
                _ => "utf8mb4",
            });
        ColumnMeta {
            name,
            wire,
            unsigned,
            charset: charset_by_name(charset_name),
            charset_name,
            is_key: false,
            mysql_type: String::new(),
            labels: None,
            is_text: matches!(wire, WireType::Blob { .. }) && charset_name != "binary",
        }
    }

    /// The `java.sql.Types` code canal reports for a non-NULL value, before
    /// the unsigned bump for values above the signed maximum.
    pub fn sql_type(&self) -> i32 {
        use sql_types::*;
        match self.wire {
            WireType::Tiny => TINYINT,
            WireType::Short => SMALLINT,
            WireType::Int24 | WireType::Long => INTEGER,
            WireType::LongLong => BIGINT,
            WireType::Float => REAL,
            WireType::Double => DOUBLE,
            WireType::Decimal { .. } => DECIMAL,
            WireType::Year => VARCHAR,
            WireType::Date => DATE,
            WireType::Time | WireType::Time2 { .. } => TIME,
            WireType::DateTime
            | WireType::DateTime2 { .. }
            | WireType::Timestamp
            | WireType::Timestamp2 { .. } => TIMESTAMP,
            WireType::Bit { .. } | WireType::Set { .. } => BIT,
            WireType::Enum { .. } => INTEGER,
            WireType::VarString { .. } if self.charset.is_binary() => BLOB,
            WireType::VarString { .. } => VARCHAR,
            WireType::FixedString { .. } if self.charset.is_binary() => BLOB,
            WireType::FixedString { .. } => CHAR,
            WireType::Blob { .. } if self.is_text => CLOB,
            WireType::Blob { .. } | WireType::Geometry { .. } => BLOB,
            WireType::Json { .. } => VARCHAR,
            WireType::Vector { .. } => BLOB,
        }
    }

    /// The code canal reports for a NULL value: as for values, except that a
    /// NULL SET reads as BLOB and a NULL JSON as OTHER.
    pub fn null_sql_type(&self) -> i32 {
        match self.wire {
            WireType::Set { .. } => sql_types::BLOB,
            WireType::Json { .. } => sql_types::OTHER,
            _ => self.sql_type(),
        }
    }

    /// The code when a value exceeds the signed range of its integer type.
    pub fn bumped_sql_type(&self) -> i32 {
        use sql_types::*;
        match self.wire {
            WireType::Tiny => SMALLINT,
            WireType::Short | WireType::Int24 => INTEGER,
            WireType::Long => BIGINT,
            WireType::LongLong => DECIMAL,
            _ => self.sql_type(),
        }
    }
}

/// A table as of one table map.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMeta {
    /// The database.
    pub schema: String,
    /// The table's name.
    pub table: String,
    /// The columns, in table order.
    pub columns: Vec<ColumnMeta>,
    /// Whether column names came with the binlog (binlog_row_metadata=FULL).
    pub has_names: bool,
    /// JSON columns, which partial-update bitmaps count.
    pub json_columns: usize,
}

impl TableMeta {
    /// `schema.table`, as messages name the table.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// Builds the metadata a TABLE_MAP event carries.
    pub fn from_table_map(
        tme: &TableMapEvent<'_>,
        flavor: ServerFlavor,
    ) -> Result<Self, TableError> {
        let schema = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let full = format!("{schema}.{table}");
        let wires = wire_types(tme, &full)?;
        let bad_optional = |source| TableError::BadOptionalMetadata {
            table: full.clone(),
            source,
        };
        let extractor =
            OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(bad_optional)?;
        let mut signedness = extractor.iter_signedness();
        let mut charsets = extractor.iter_charset();
        let mut enum_set_charsets = extractor.iter_enum_and_set_charset();
        let mut names = extractor.iter_column_name();
        // In key order, not column order: PRIMARY KEY (b, a) lists b first.
        let keys: BTreeSet<u64> = extractor
            .iter_primary_key()
            .collect::<Result<_, _>>()
            .map_err(bad_optional)?;
        let mut details = TypeDetails::read(tme).map_err(bad_optional)?;

        let mut has_names = true;
        let mut columns = Vec::with_capacity(wires.len());
        for (index, wire) in wires.into_iter().enumerate() {
            let unsigned = wire.is_numeric() && signedness.next().unwrap_or(false);
            let collation = if wire.is_character() {
                charsets.next().transpose()
            } else if matches!(wire, WireType::Enum { .. } | WireType::Set { .. }) {
                enum_set_charsets.next().transpose()
            } else {
                Ok(None)
            }
            .map_err(bad_optional)?;
            let name = names.next().transpose().map_err(bad_optional)?;
            has_names &= name.is_some();
            let name = name.map(|n| n.name().into_owned()).unwrap_or_default();
            let mut column = ColumnMeta {
                is_key: keys.contains(&(index as u64)),
                labels: details.labels(wire).map(Arc::from),
                ..ColumnMeta::from_binlog(name, wire, unsigned, collation)
            };
            let geometry = details.geometry(wire);
            column.mysql_type = match details.dimension(wire) {
                Some(d) => format!("vector({d})"),
                None => mysql_type_text(&column, flavor, geometry),
            };
            columns.push(column);
        }
        let json_columns = columns
            .iter()
            .filter(|c| matches!(c.wire, WireType::Json { .. }))
            .count();
        Ok(TableMeta {
            schema,
            table,
            columns,
            has_names,
            json_columns,
        })
    }
}

/// Each column's wire type, from its type code and type metadata.
fn wire_types(tme: &TableMapEvent<'_>, full: &str) -> Result<Vec<WireType>, TableError> {
    let count = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
    let mut wires = Vec::with_capacity(count.min(4096));
    for (index, meta) in collect_column_metadata(tme, count).into_iter().enumerate() {
        let type_code = tme
            .get_raw_column_type(index)
            .ok()
            .flatten()
            .map(|t| t as u8)
            .unwrap_or_else(|| raw_type_code(tme, index));
        let meta = meta.unwrap_or_default();
        let wire = WireType::from_table_map(type_code, meta).ok_or_else(|| {
            match Mt::try_from(type_code) {
                Ok(t) => TableError::BadMetadata {
                    table: full.to_owned(),
                    column: index,
                    type_name: type_name(t),
                    meta: meta.to_vec(),
                },
                Err(_) => TableError::UnknownType {
                    table: full.to_owned(),
                    column: index,
                    type_code,
                },
            }
        })?;
        wires.push(wire);
    }
    Ok(wires)
}

/// Raw type codes mysql_common does not know (they fail conversion).
fn raw_type_code(tme: &TableMapEvent<'_>, index: usize) -> u8 {
    match tme.get_raw_column_type(index) {
        Err(e) => e.0,
        Ok(Some(t)) => t as u8,
        Ok(None) => 0,
    }
}

/// Per-column type metadata, split in one pass (mysql_common's accessor is
/// linear per column).
fn collect_column_metadata<'a>(tme: &'a TableMapEvent<'a>, count: usize) -> Vec<Option<&'a [u8]>> {
    // get_column_metadata(i) walks from column 0; do that once per table map.
    (0..count).map(|i| tme.get_column_metadata(i)).collect()
}

fn type_name(t: Mt) -> &'static str {
    match t {
        Mt::MYSQL_TYPE_NEWDECIMAL => "DECIMAL",
        Mt::MYSQL_TYPE_BIT => "BIT",
        Mt::MYSQL_TYPE_VARCHAR | Mt::MYSQL_TYPE_VAR_STRING => "VARCHAR",
        Mt::MYSQL_TYPE_STRING => "CHAR/ENUM/SET",
        Mt::MYSQL_TYPE_TIME2 => "TIME",
        Mt::MYSQL_TYPE_DATETIME2 => "DATETIME",
        Mt::MYSQL_TYPE_TIMESTAMP2 => "TIMESTAMP",
        Mt::MYSQL_TYPE_GEOMETRY => "GEOMETRY",
        Mt::MYSQL_TYPE_JSON => "JSON",
        Mt::MYSQL_TYPE_VECTOR => "VECTOR",
        _ => "BLOB/TEXT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_char_metadata_keeps_high_length_bits() {
        // CHAR(100) utf8mb4 = 400 bytes: real type 0xfe with bits flipped.
        let meta = [0xfe ^ 0x10, 400u16 as u8];
        assert_eq!(
            WireType::from_table_map(254, &meta),
            Some(WireType::FixedString { max_bytes: 400 })
        );
        assert_eq!(
            WireType::from_table_map(254, &[247, 1]),
            Some(WireType::Enum { pack_len: 1 })
        );
        assert_eq!(
            WireType::from_table_map(254, &[248, 2]),
            Some(WireType::Set { pack_len: 2 })
        );
    }

    #[test]
    fn bad_metadata_is_rejected() {
        assert_eq!(WireType::from_table_map(246, &[70, 2]), None);
        assert_eq!(WireType::from_table_map(16, &[0, 9]), None);
        assert_eq!(WireType::from_table_map(252, &[7]), None);
        assert_eq!(WireType::from_table_map(17, &[9]), None);
        assert_eq!(WireType::from_table_map(200, &[]), None);
    }

    #[test]
    fn flavors() {
        for (version, flavor) in [
            ("10.11.6-MariaDB-log", ServerFlavor::MariaDb),
            ("8.0.31", ServerFlavor::MySql),
            ("8.0.18-log", ServerFlavor::MySqlWithWidths),
            ("5.7.30-log", ServerFlavor::MySqlWithWidths),
            ("9.0.1", ServerFlavor::MySql),
        ] {
            assert_eq!(
                ServerFlavor::from_server_version(version),
                flavor,
                "{version}"
            );
        }
    }
}
