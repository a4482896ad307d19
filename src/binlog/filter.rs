//! canal's table and column filters.
//!
//! Table filters (`canal.instance.filter.regex` / `.black.regex`, or a
//! client's subscription filter) are comma-separated regular expressions,
//! each anchored at both ends and matched case-insensitively against
//! `schema.table`. Commas inside `{}`, `[]` or `()` do not separate, and a
//! backslash escapes the next character. An empty include filter lets
//! everything through; an empty exclude filter excludes nothing.
//!
//! Column filters (`canal.instance.filter.field` / `.black.field`) list
//! columns per table: `schema.table:col1/col2,schema.t2:colA`.

use std::collections::{HashMap, HashSet};

use regex::{Regex, RegexBuilder};

/// Why a filter could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A table filter pattern does not compile.
    #[error("table filter pattern `{pattern}` is not a valid regular expression: {reason}")]
    Regex {
        /// The pattern as configured.
        pattern: String,
        /// What the regex compiler said.
        reason: String,
    },
    /// A column filter entry is not `schema.table:columns`.
    #[error("column filter entry `{entry}` must look like `schema.table:col1/col2`")]
    ColumnEntry {
        /// The entry as configured.
        entry: String,
    },
}

/// Splits on commas outside brackets, keeping escapes intact.
fn split_patterns(text: &str) -> Vec<String> {
    let mut patterns = Vec::new();
    let mut current = String::new();
    let mut depth: i32 = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '{' | '[' | '(' => {
                depth += 1;
                current.push(c);
            }
            '}' | ']' | ')' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth <= 0 => patterns.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    patterns.push(current);
    patterns
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn compile(text: &str) -> Result<Option<Regex>, FilterError> {
    let patterns = split_patterns(text);
    if patterns.is_empty() {
        return Ok(None);
    }
    for pattern in &patterns {
        Regex::new(pattern).map_err(|e| FilterError::Regex {
            pattern: pattern.clone(),
            reason: e.to_string(),
        })?;
    }
    let combined = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    RegexBuilder::new(&format!("^(?:{combined})$"))
        .case_insensitive(true)
        .build()
        .map(Some)
        .map_err(|e| FilterError::Regex {
            pattern: text.to_owned(),
            reason: e.to_string(),
        })
}

/// Include/exclude filter on `schema.table`.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
    include_text: String,
    exclude_text: String,
}

impl TableFilter {
    /// A filter from canal's comma-separated include and exclude patterns
    /// (`canal.instance.filter.regex` / `.black.regex`); empty includes all.
    pub fn new(include: &str, exclude: &str) -> Result<Self, FilterError> {
        Ok(TableFilter {
            include: compile(include)?,
            exclude: compile(exclude)?,
            include_text: include.to_owned(),
            exclude_text: exclude.to_owned(),
        })
    }

    /// canal's defaults: everything except `mysql.slave_*`.
    pub fn canal_default() -> Self {
        // The default patterns are constants that compile.
        TableFilter::new(r".*\..*", r"mysql\.slave_.*").expect("default filter compiles")
    }

    /// The include patterns as configured.
    pub fn include_text(&self) -> &str {
        &self.include_text
    }

    /// The exclude patterns as configured.
    pub fn exclude_text(&self) -> &str {
        &self.exclude_text
    }

    /// Whether changes of `schema.table` pass.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        let name = format!("{schema}.{table}");
        let included = self.include.as_ref().is_none_or(|r| r.is_match(&name));
        let excluded = self.exclude.as_ref().is_some_and(|r| r.is_match(&name));
        included && !excluded
    }
}

/// Per-table column include/exclude lists.
#[derive(Debug, Clone, Default)]
pub struct ColumnFilter {
    include: HashMap<String, HashSet<String>>,
    exclude: HashMap<String, HashSet<String>>,
}

fn parse_column_lists(text: &str) -> Result<HashMap<String, HashSet<String>>, FilterError> {
    let mut lists = HashMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (table, columns) = entry
            .split_once(':')
            .filter(|(t, c)| !t.trim().is_empty() && !c.contains(':'))
            .ok_or_else(|| FilterError::ColumnEntry {
                entry: entry.to_owned(),
            })?;
        let columns: HashSet<String> = columns
            .split('/')
            .map(|c| c.trim().to_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        lists.insert(table.trim().to_lowercase(), columns);
    }
    Ok(lists)
}

impl ColumnFilter {
    /// A filter from canal's column include and exclude lists
    /// (`schema.table:col1/col2,...`).
    pub fn new(include: &str, exclude: &str) -> Result<Self, FilterError> {
        Ok(ColumnFilter {
            include: parse_column_lists(include)?,
            exclude: parse_column_lists(exclude)?,
        })
    }

    /// Whether every column passes.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// The column rule for one table, if any applies to it.
    pub fn for_table(&self, schema: &str, table: &str) -> Option<ColumnRule<'_>> {
        if self.is_empty() {
            return None;
        }
        let key = format!("{schema}.{table}").to_lowercase();
        if let Some(columns) = self.include.get(&key).filter(|c| !c.is_empty()) {
            return Some(ColumnRule::Only(columns));
        }
        self.exclude.get(&key).map(ColumnRule::Except)
    }
}

/// Which columns of one table pass.
#[derive(Debug, Clone, Copy)]
pub enum ColumnRule<'a> {
    /// Only these columns (lower-cased) pass.
    Only(&'a HashSet<String>),
    /// All but these columns (lower-cased) pass.
    Except(&'a HashSet<String>),
}

impl ColumnRule<'_> {
    /// Whether `column` passes.
    pub fn keeps(&self, column: &str) -> bool {
        let column = column.to_lowercase();
        match self {
            ColumnRule::Only(set) => set.contains(&column),
            ColumnRule::Except(set) => !set.contains(&column),
        }
    }
}

/// Everything that decides which changes leave the engine.
#[derive(Debug, Clone)]
pub struct EventFilter {
    /// Which tables' changes pass.
    pub tables: TableFilter,
    /// Which columns of them pass.
    pub columns: ColumnFilter,
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            tables: TableFilter::canal_default(),
            columns: ColumnFilter::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canal_syntax() {
        let f = TableFilter::new(r"canal\..*, test\.t_\d{1,3},shop\.(orders|items)", "").unwrap();
        assert!(f.matches("canal", "anything"));
        assert!(f.matches("CANAL", "X"));
        assert!(f.matches("test", "t_12"));
        assert!(!f.matches("test", "t_1234"));
        assert!(f.matches("shop", "items"));
        assert!(!f.matches("shop", "users"));
        assert!(!f.matches("canalx", "t"));
    }

    #[test]
    fn defaults_and_empty() {
        let d = TableFilter::canal_default();
        assert!(d.matches("a", "b"));
        assert!(!d.matches("mysql", "slave_master_info"));
        let empty = TableFilter::new("", "").unwrap();
        assert!(empty.matches("mysql", "slave_x"));
        let black = TableFilter::new("", r"db\..*").unwrap();
        assert!(!black.matches("db", "t"));
        assert!(black.matches("dbx", "t"));
    }

    #[test]
    fn bad_regex_names_the_pattern() {
        let err = TableFilter::new(r"ok\..*,bad(", "").unwrap_err();
        assert!(err.to_string().contains("bad("), "{err}");
    }

    #[test]
    fn column_rules() {
        let f = ColumnFilter::new("db.t:a/B, db.u:x", "db.t:c,db.v:secret").unwrap();
        let t = f.for_table("DB", "T").unwrap();
        assert!(t.keeps("a") && t.keeps("b") && !t.keeps("c"));
        let v = f.for_table("db", "v").unwrap();
        assert!(v.keeps("id") && !v.keeps("SECRET"));
        assert!(f.for_table("db", "other").is_none());
        assert!(ColumnFilter::new("no-colon", "").is_err());
    }
}
