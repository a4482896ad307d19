//! The decoder's settings: how values are rendered, canal's
//! `canal.instance.filter.*` switches, and what to do with tables whose
//! column names nobody knows.

use crate::binlog::value::ValueOptions;

/// What to do with tables whose column names the binlog does not carry
/// (binlog_row_metadata other than FULL) and no schema lookup knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnnamedColumns {
    /// Stop with an error: the server must not guess.
    #[default]
    Reject,
    /// Name columns by position (`@1`, `@2`...), as mysqlbinlog does; for
    /// inspecting files.
    Positional,
}

/// Decoder settings (canal's `canal.instance.filter.*` switches included).
#[derive(Debug, Clone, Default)]
pub struct DecoderOptions {
    /// How column values are rendered as text.
    pub values: ValueOptions,
    /// Fill header `gtid` (executed set) and the `curtGtid*` props, as canal
    /// does with `canal.instance.gtidon=true`.
    pub gtid_header: bool,
    /// What to do with tables whose column names are not known.
    pub unnamed_columns: UnnamedColumns,
    /// Drop statement-based DML and ROWS_QUERY / ANNOTATE_ROWS text entries.
    pub filter_query_dml: bool,
    /// Drop QUERY-typed statements (GRANT, CREATE USER...).
    pub filter_query_dcl: bool,
    /// Drop DDL entries.
    pub filter_query_ddl: bool,
    /// Drop all row changes.
    pub filter_rows: bool,
    /// Drop inserted rows.
    pub filter_insert: bool,
    /// Drop updated rows.
    pub filter_update: bool,
    /// Drop deleted rows.
    pub filter_delete: bool,
    /// Skip rows of tables whose metadata does not fit instead of stopping.
    pub filter_table_error: bool,
}
