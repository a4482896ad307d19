//! TABLE_MAP events: the table metadata rows events are decoded against,
//! cached by table id, and completed from the schema lookup where the
//! binlog leaves things out (column names without binlog_row_metadata=FULL;
//! the declared `mysqlType` with it).

use std::sync::Arc;

use mysql_common::binlog::events::TableMapEvent;

use crate::binlog::{
    charset::charset_by_name,
    event::SourceEvent,
    guard,
    position::LogPosition,
    rows::ColumnParts,
    schema::{SchemaAnswer, SchemaColumn, fits},
    table::{self, ColumnMeta, ServerFlavor, TableMeta, WireType, mysql_type_text},
};

use super::{DecodeError, Decoder, UnnamedColumns};

/// A table map as decoded, kept while its table id is in use.
pub(super) struct CachedTable {
    /// The event body, to tell a repeated table map from a changed one.
    raw: Vec<u8>,
    pub(super) meta: Arc<TableMeta>,
    /// Each column's protobuf fields that are the same in every row.
    pub(super) parts: Arc<[ColumnParts]>,
    /// Whether the table filter lets the table's rows through.
    pub(super) included: bool,
}

impl Decoder {
    /// Reads a TABLE_MAP event into the table cache.
    pub(super) fn decode_table_map(&mut self, event: &SourceEvent) -> Result<(), DecodeError> {
        let data = event.event.data();
        table::check_table_map_body(data)
            .map_err(|reason| DecodeError::malformed(event, reason))?;
        let tme = event
            .parse::<TableMapEvent<'_>>()
            .map_err(|e| DecodeError::malformed(event, e))?;
        let table_id = tme.table_id();
        if let Some(cached) = self.tables.get(&table_id)
            && cached.raw == data
            && self.cached_filter_generation == self.filter_generation
        {
            return Ok(());
        }
        let flavor = self.flavor;
        let mut meta = guard::guarded(|| TableMeta::from_table_map(&tme, flavor))
            .map_err(|reason| DecodeError::table(event, reason))?;
        let included = self.filter.tables.matches(&meta.schema, &meta.table);
        if !meta.has_names && included {
            self.fill_names(event, &mut meta)?;
        } else if included && self.schema.is_some() {
            self.fill_declared_types(event, &mut meta)?;
        }
        if self.cached_filter_generation != self.filter_generation {
            self.tables.clear();
            self.cached_filter_generation = self.filter_generation;
        }
        let parts: Arc<[ColumnParts]> = meta.columns.iter().map(ColumnParts::new).collect();
        self.tables.insert(
            table_id,
            CachedTable {
                raw: data.to_vec(),
                meta: Arc::new(meta),
                parts,
                included,
            },
        );
        Ok(())
    }

    /// Completes a table map without column names from the schema lookup, or
    /// by position when allowed.
    fn fill_names(&mut self, event: &SourceEvent, meta: &mut TableMeta) -> Result<(), DecodeError> {
        let at = LogPosition::new(event.journal.to_string(), event.start);
        let answer = match self.schema.as_mut() {
            Some(lookup) => lookup.columns(&meta.schema, &meta.table, &at),
            None => SchemaAnswer::Unknown(String::new()),
        };
        let columns = match answer {
            SchemaAnswer::Known(columns) => columns,
            SchemaAnswer::Reload => return Err(DecodeError::schema_reload(event, meta)),
            SchemaAnswer::Unknown(_)
                if self.options.unnamed_columns == UnnamedColumns::Positional =>
            {
                for (index, column) in meta.columns.iter_mut().enumerate() {
                    column.name = format!("@{}", index + 1);
                }
                return Ok(());
            }
            SchemaAnswer::Unknown(reason) => {
                return Err(DecodeError::no_column_names(event, meta, reason));
            }
        };
        if !describes_columns(&meta.columns, &columns, fits) {
            return Err(DecodeError::schema_mismatch(event, meta, columns.len()));
        }
        for (column, known) in meta.columns.iter_mut().zip(columns.iter()) {
            take_known_column(column, known, self.flavor);
        }
        meta.has_names = true;
        Ok(())
    }

    /// Takes `mysqlType` from the table's declared definition for a table
    /// map that describes its columns itself (binlog_row_metadata=FULL):
    /// the binlog has no display widths, ZEROFILL, FLOAT(M,D) or MariaDB's
    /// INET6/INET4/UUID names, which canal prints. Everything else keeps
    /// coming from the binlog. A definition that is not known at this
    /// position, or that does not describe these very columns, leaves the
    /// binlog's types; only a reload request stops the event (it is decoded
    /// again once the table is loaded).
    fn fill_declared_types(
        &mut self,
        event: &SourceEvent,
        meta: &mut TableMeta,
    ) -> Result<(), DecodeError> {
        let at = LogPosition::new(event.journal.to_string(), event.start);
        let Some(lookup) = self.schema.as_mut() else {
            return Ok(());
        };
        let missing = match lookup.columns(&meta.schema, &meta.table, &at) {
            SchemaAnswer::Known(columns)
                if describes_columns(&meta.columns, &columns, declared_type_fits) =>
            {
                for (column, known) in meta.columns.iter_mut().zip(columns.iter()) {
                    column.mysql_type = known.mysql_type.clone();
                }
                return Ok(());
            }
            SchemaAnswer::Known(_) => {
                "the source's definition does not describe the table map's columns".to_owned()
            }
            SchemaAnswer::Reload => return Err(DecodeError::schema_reload(event, meta)),
            SchemaAnswer::Unknown(reason) => reason,
        };
        self.note_declared_types_missing(meta.full_name(), &at, &missing);
        Ok(())
    }

    /// Says once per table that its declared types are not known.
    fn note_declared_types_missing(&mut self, table: String, at: &LogPosition, reason: &str) {
        // Bounded: one entry per table, capped for sources with huge
        // numbers of tables (beyond the cap the line is just not logged).
        if self.declared_types_missing.len() < 100_000
            && self.declared_types_missing.insert(table.clone())
        {
            tracing::info!(
                %table,
                position = %at,
                %reason,
                "mysqlType comes from the binlog's table metadata (no display widths or ZEROFILL) \
                 where the declared type is not known"
            );
        }
    }
}

/// Whether `known` lists exactly the table map's columns, each one passing
/// `same`.
fn describes_columns(
    columns: &[ColumnMeta],
    known: &[SchemaColumn],
    same: fn(&ColumnMeta, &SchemaColumn) -> bool,
) -> bool {
    columns.len() == known.len() && columns.iter().zip(known).all(|(c, k)| same(c, k))
}

/// Takes a column's name, key flag, signedness, charset and type from its
/// known definition.
fn take_known_column(column: &mut ColumnMeta, known: &SchemaColumn, flavor: ServerFlavor) {
    column.name = known.name.clone();
    column.is_key = known.is_key;
    column.unsigned = known.unsigned;
    if !known.charset.is_empty() {
        column.charset = charset_by_name(&known.charset);
        column.charset_name = static_charset_name(&known.charset);
    }
    column.is_text = matches!(column.wire, WireType::Blob { .. })
        && !column.charset.is_binary()
        && !known.charset.is_empty();
    column.mysql_type = if known.mysql_type.is_empty() {
        mysql_type_text(column, flavor, None)
    } else {
        known.mysql_type.clone()
    };
}

/// Charset names are few and fixed; map an owned name to the static one.
fn static_charset_name(name: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "binary", "utf8mb4", "utf8mb3", "utf8", "latin1", "latin2", "ascii", "ucs2", "utf16",
        "utf16le", "utf32", "gbk", "gb2312", "gb18030", "big5", "sjis", "cp932", "ujis", "eucjpms",
        "euckr", "cp1250", "cp1251", "cp1256", "cp1257", "greek", "hebrew", "latin5", "latin7",
        "koi8r", "koi8u", "tis620", "cp866", "macroman",
    ];
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .find(|n| **n == lower)
        .copied()
        .unwrap_or("unknown")
}

/// Whether `known` (information_schema) is the column the table map
/// describes, telling apart only what the binlog cannot carry: names and
/// the type text without display widths, ZEROFILL, FLOAT/DOUBLE (M,D) and
/// MariaDB's INET6/INET4/UUID (stored as BINARY) must agree.
fn declared_type_fits(column: &ColumnMeta, known: &SchemaColumn) -> bool {
    !known.mysql_type.is_empty()
        && column.name.eq_ignore_ascii_case(&known.name)
        && undeclared(&column.mysql_type) == undeclared(&known.mysql_type)
}

/// A column type text without what only the declaration holds.
fn undeclared(mysql_type: &str) -> String {
    let text = mysql_type.to_ascii_lowercase().replace(" zerofill", "");
    match text.as_str() {
        "inet6" | "uuid" => return "binary(16)".into(),
        "inet4" => return "binary(4)".into(),
        _ => {}
    }
    for name in [
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "bigint",
        "float",
        "double",
    ] {
        if let Some(rest) = text.strip_prefix(name)
            && let Some(args) = rest.strip_prefix('(')
            && let Some(close) = args.find(')')
            && args[..close]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b',')
        {
            return format!("{name}{}", &args[close + 1..]);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::undeclared;

    #[test]
    fn declared_only_parts_are_set_aside() {
        for (declared, derived) in [
            ("tinyint(1)", "tinyint(4)"),
            ("int(5) unsigned zerofill", "int(10) unsigned"),
            ("INT(5)", "int"),
            ("float(7,3)", "float"),
            ("double(10,2) unsigned", "double unsigned"),
            ("bigint(20)", "bigint(20)"),
            ("inet6", "binary(16)"),
            ("uuid", "binary(16)"),
            ("inet4", "binary(4)"),
        ] {
            assert_eq!(undeclared(declared), undeclared(derived), "{declared}");
        }
        for (declared, derived) in [
            ("varchar(20)", "varchar(30)"),
            ("int(5) unsigned", "int(11)"),
            ("decimal(10,2)", "decimal(10,3)"),
            ("enum('a','b')", "enum('a','c')"),
            ("inet6", "binary(4)"),
            ("bigint", "int"),
        ] {
            assert_ne!(undeclared(declared), undeclared(derived), "{declared}");
        }
    }
}
