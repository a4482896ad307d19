//! Table schemas for binlogs that do not describe their tables
//! (`binlog_row_metadata` other than FULL): column names, keys, signedness
//! and charsets from the source's information_schema, kept true to the
//! position being decoded.
//!
//! information_schema describes tables *now*, not at the position being
//! decoded. The lookup therefore only answers where it can prove the two
//! agree:
//! - a snapshot is taken between two reads of the binlog end (E1, E2), and
//!   the binlog from the start position to E2 is scanned for DDL: a table
//!   altered there is unknown before its last such DDL;
//! - a DDL met while streaming marks its tables for reload; the reload scans
//!   the binlog from that DDL to the end for later DDL on the same tables;
//! - every answer is checked against the wire types of the table map (count,
//!   types, lengths), so a schema that does not fit is refused.
//!
//! Where the schema at a position cannot be known, decoding stops with an
//! error that says so; `binlog_row_metadata=FULL` removes the problem.
//!
//! With `binlog_row_metadata=FULL` the same lookup only supplies what the
//! binlog cannot: the declared column type (`tinyint(1)`, `int(5) unsigned
//! zerofill`, `float(7,3)`, `inet6`), as canal prints it. There an unknown
//! answer is not an error: the decoder keeps the type derived from the
//! binlog.
//!
//! The DDL found by every scan is kept, with where the last scan ended, so a
//! reload after a DDL only scans what was written since: catching up over a
//! backlog with many DDL statements reads the backlog twice, not once per
//! DDL.

//!
//! [`tracking`] holds what is known and decides what an answer is (pure);
//! [`load`] reads information_schema and the binlog to feed it.

use std::sync::Arc;

use super::{
    ddl::DdlTarget,
    position::LogPosition,
    table::{ColumnMeta, WireType},
};

pub mod load;
pub mod tracking;

pub use load::{initial_lookup, load_table, load_tables, reload_table, scan_ddl};
pub use tracking::{
    DECLARED_TYPES_SCAN_LIMIT, DdlSeen, InfoSchemaLookup, Reloaded, SharedLookup, TableKey,
};

/// Column details from outside the binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaColumn {
    /// The column's name.
    pub name: String,
    /// Part of the primary key.
    pub is_key: bool,
    /// An unsigned number type.
    pub unsigned: bool,
    /// Charset name as information_schema spells it; empty for non-text.
    pub charset: String,
    /// COLUMN_TYPE, e.g. `int(10) unsigned`.
    pub mysql_type: String,
    /// DATA_TYPE, e.g. `int`, for checking against the binlog wire type.
    pub data_type: String,
}

/// What a lookup knows about a table at a position.
#[derive(Debug, Clone)]
pub enum SchemaAnswer {
    /// The table's columns, in ordinal order.
    Known(Arc<[SchemaColumn]>),
    /// Changed by a DDL since it was loaded: load it again, then ask again.
    Reload,
    /// Cannot be known at this position, and why.
    Unknown(String),
}

/// Knows table schemas as of the decoder's position.
pub trait SchemaLookup: Send + Sync {
    /// The columns of `schema.table` as they were at `at`.
    fn columns(&mut self, schema: &str, table: &str, at: &LogPosition) -> SchemaAnswer;
    /// A DDL statement passed at `at`.
    fn apply_ddl(&mut self, target: &DdlTarget, at: &LogPosition);
}

/// Whether information_schema's description of a column can be the column
/// the binlog's table map describes.
pub fn fits(column: &ColumnMeta, known: &SchemaColumn) -> bool {
    let data_type = known.data_type.to_ascii_lowercase();
    let t = data_type.as_str();
    match column.wire {
        WireType::Tiny => t == "tinyint" || t == "bool" || t == "boolean",
        WireType::Short => t == "smallint",
        WireType::Int24 => t == "mediumint",
        WireType::Long => t == "int" || t == "integer",
        WireType::LongLong => t == "bigint",
        WireType::Float => t == "float",
        WireType::Double => t == "double" || t == "real",
        WireType::Decimal { precision, scale } => {
            (t == "decimal" || t == "numeric")
                && known.mysql_type.contains(&format!("({precision},{scale})"))
        }
        WireType::Year => t == "year",
        WireType::Date => t == "date",
        WireType::Time | WireType::Time2 { .. } => t == "time",
        WireType::DateTime | WireType::DateTime2 { .. } => t == "datetime",
        WireType::Timestamp | WireType::Timestamp2 { .. } => t == "timestamp",
        WireType::Bit { bits } => t == "bit" && known.mysql_type.contains(&format!("({bits})")),
        WireType::VarString { .. } => t == "varchar" || t == "varbinary",
        WireType::FixedString { .. } => t == "char" || t == "binary",
        WireType::Enum { .. } => t == "enum",
        WireType::Set { .. } => t == "set",
        WireType::Blob { .. } => {
            t.ends_with("text") || t.ends_with("blob") || t == "json" || t == "long"
        }
        WireType::Geometry { .. } => matches!(
            t,
            "geometry"
                | "point"
                | "linestring"
                | "polygon"
                | "multipoint"
                | "multilinestring"
                | "multipolygon"
                | "geometrycollection"
                | "geomcollection"
        ),
        WireType::Json { .. } => t == "json",
        WireType::Vector { .. } => t == "vector",
    }
}
