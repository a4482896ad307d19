//! One destination's settings: `<conf dir>/<destination>/instance.properties`
//! over `canal.properties` over defaults, the environment over all three.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use jiff::tz::TimeZone;

use crate::binlog::{
    decode::DecoderOptions,
    filter::{ColumnFilter, EventFilter, TableFilter},
    gtid::GtidState,
    position::StartPosition,
    value::ValueOptions,
};

use super::{error::ConfigError, layers::Layers, server::StorageProfile};

/// canal's default include filter: every table.
pub const DEFAULT_FILTER_REGEX: &str = r".*\..*";
/// canal's default exclude filter (from its stock instance.properties):
/// MySQL's replication bookkeeping tables.
pub const DEFAULT_BLACK_REGEX: &str = r"mysql\.slave_.*";

/// `host:port` of the MySQL/MariaDB source. IPv6 hosts are written
/// `[::1]:3306`; `host` holds them without brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddress {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl MasterAddress {
    /// `host:port` or `[v6 address]:port`; `None` for anything else (no port, port 0, spaces).
    pub fn parse(text: &str) -> Option<Self> {
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => rest.split_once("]:")?,
            None => {
                let (host, port) = text.rsplit_once(':')?;
                if host.contains(':') {
                    return None;
                }
                (host, port)
            }
        };
        let port = super::layers::parse_port(port)?;
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return None;
        }
        Some(MasterAddress {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for MasterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `canal.instance.memory.batch.mode`: how `canal.instance.memory.buffer.size`
/// and client batch sizes are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMode {
    /// In bytes, units of `memunit` bytes (canal's default).
    #[default]
    MemSize,
    /// In entries.
    ItemSize,
}

/// The in-memory event store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStoreConfig {
    /// `canal.instance.memory.buffer.size` (16384): capacity in events, a
    /// power of two (canal's ring buffer indexes by mask).
    pub buffer_size: usize,
    /// `canal.instance.memory.buffer.memunit` (1024): bytes per unit in
    /// MEMSIZE mode.
    pub memunit: usize,
    /// `canal.instance.memory.batch.mode` (MEMSIZE).
    pub batch_mode: BatchMode,
}

/// canal's `canal.instance.filter.*` switches (all default false).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterSwitches {
    /// `query.dcl`: drop DCL statements (GRANT, ...).
    pub query_dcl: bool,
    /// `query.dml`: drop DML that arrives as statements (statement-based binlog).
    pub query_dml: bool,
    /// `query.ddl`: drop DDL.
    pub query_ddl: bool,
    /// `table.error`: skip rows of tables whose definition cannot be read instead of stopping.
    pub table_error: bool,
    /// `rows`: drop row changes.
    pub rows: bool,
    /// Drop TRANSACTIONBEGIN/END entries (applied after decoding).
    pub transaction_entry: bool,
    /// `dml.insert`: drop inserted rows.
    pub dml_insert: bool,
    /// `dml.update`: drop updated rows.
    pub dml_update: bool,
    /// `dml.delete`: drop deleted rows.
    pub dml_delete: bool,
}

/// The filter texts as configured (for logs and for clients that
/// subscribe without a filter of their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterTexts {
    /// `canal.instance.filter.regex` (default `.*\..*`).
    pub regex: String,
    /// `canal.instance.filter.black.regex` (default `mysql\.slave_.*`; set
    /// but empty excludes nothing).
    pub black_regex: String,
    /// `canal.instance.filter.field`: `schema.table:col1/col2,...`.
    pub field: String,
    /// `canal.instance.filter.black.field`.
    pub black_field: String,
}

/// One destination's settings.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// The destination's name (its directory and ZooKeeper node).
    pub destination: String,
    /// The `instance.properties` this was read from.
    pub path: PathBuf,
    /// Where file-profile cursors go: `<canal.file.data.dir or conf dir>/<destination>`.
    pub data_dir: PathBuf,
    /// Cursor storage: `canal.instance.<destination>.spring.xml`, else the
    /// server's `canal.instance.global.spring.xml`.
    pub storage: StorageProfile,
    /// `canal.instance.mysql.slaveId`. 0 asks the caller to derive a server
    /// id (canal does so too); it must be unique among the source's replicas.
    pub slave_id: u32,
    /// `canal.instance.master.address` (required).
    pub master: MasterAddress,
    /// Where to start when no cursor exists, from
    /// `canal.instance.master.journal.name` / `.position` / `.timestamp` /
    /// `.gtid`, in that order of preference; `None` starts at the end of the
    /// binlog. A journal name without a position starts at the file's first
    /// event; with a timestamp instead, at that time (canal searches only
    /// that file; searching all binlogs gives the same place when the file
    /// is right).
    pub start: Option<StartPosition>,
    /// `canal.instance.gtidon`: resume by GTID and fill GTID header fields.
    pub gtid_on: bool,
    /// `canal.instance.dbUsername` (required).
    pub db_username: String,
    /// `canal.instance.dbPassword`, verbatim (not trimmed).
    pub db_password: String,
    /// `canal.instance.connectionCharset` as given (UTF-8 is the only one
    /// used; others only warn).
    pub connection_charset: String,
    /// The filter settings as written.
    pub filter_texts: FilterTexts,
    /// The compiled table and column filters.
    pub filter: EventFilter,
    /// The `canal.instance.filter.*` switches.
    pub switches: FilterSwitches,
    /// `canal.instance.get.ddl.isolation`: a DDL alone in its batch.
    pub get_ddl_isolation: bool,
    /// The event store's sizing.
    pub memory: MemoryStoreConfig,
    /// `canal.instance.timezone` (UTC): zone TIMESTAMP values are shown in
    /// (canal uses its JVM's zone).
    pub time_zone: TimeZone,
    /// `canal.instance.enum.set.labels`: ENUM/SET as labels instead of
    /// canal's index/bitmask numbers.
    pub enum_set_labels: bool,
    /// `canal.instance.network.heartbeat` (5000 ms): replication heartbeat
    /// period asked of the source, to notice a dead connection.
    pub heartbeat: Duration,
}

impl InstanceConfig {
    /// Decoder settings: value rendering, GTID headers and the
    /// `canal.instance.filter.*` switches the decoder applies.
    pub fn decoder_options(&self) -> DecoderOptions {
        DecoderOptions {
            values: ValueOptions {
                time_zone: self.time_zone.clone(),
                enum_set_labels: self.enum_set_labels,
            },
            gtid_header: self.gtid_on,
            filter_query_dml: self.switches.query_dml,
            filter_query_dcl: self.switches.query_dcl,
            filter_query_ddl: self.switches.query_ddl,
            filter_rows: self.switches.rows,
            filter_insert: self.switches.dml_insert,
            filter_update: self.switches.dml_update,
            filter_delete: self.switches.dml_delete,
            filter_table_error: self.switches.table_error,
            ..DecoderOptions::default()
        }
    }

    /// The table and column filters, for [`crate::binlog::decode::Decoder::new`].
    pub fn event_filter(&self) -> EventFilter {
        self.filter.clone()
    }

    pub(crate) fn read(
        destination: &str,
        path: PathBuf,
        data_dir: PathBuf,
        storage: StorageProfile,
        layers: &Layers,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let required = Required {
            destination,
            path: &path,
        };
        let slave_id = layers.number(
            "canal.instance.mysql.slaveId",
            0,
            0,
            u64::from(u32::MAX),
            "a replica server id (0-4294967295; 0 derives one)",
        )? as u32;
        let master = read_master(layers, &required)?;
        let start = read_start(layers, warnings)?;
        let gtid_on = layers.bool("canal.instance.gtidon", false)?;
        let (db_username, db_password) = read_account(layers, &required)?;
        let connection_charset = read_charset(layers, destination, warnings)?;
        let (filter_texts, filter) = read_filters(layers)?;
        let switches = FilterSwitches::read(layers)?;
        let memory = MemoryStoreConfig::read(layers)?;
        let time_zone = layers.parse(
            "canal.instance.timezone",
            TimeZone::UTC,
            "an IANA time zone name such as UTC or Asia/Shanghai",
            |t| TimeZone::get(t).ok(),
        )?;
        Ok(InstanceConfig {
            destination: destination.to_owned(),
            path: path.clone(),
            data_dir,
            storage,
            slave_id,
            master,
            start,
            gtid_on,
            db_username,
            db_password,
            connection_charset,
            filter_texts,
            filter,
            switches,
            get_ddl_isolation: layers.bool("canal.instance.get.ddl.isolation", false)?,
            memory,
            time_zone,
            enum_set_labels: layers.bool("canal.instance.enum.set.labels", false)?,
            heartbeat: layers.millis("canal.instance.network.heartbeat", 5000, 1)?,
        })
    }
}

/// Reports required keys no layer sets, naming the destination's file.
struct Required<'a> {
    destination: &'a str,
    path: &'a Path,
}

impl Required<'_> {
    fn missing(&self, key: &str, expected: &str) -> ConfigError {
        ConfigError::Missing {
            key: key.to_owned(),
            destination: self.destination.to_owned(),
            path: self.path.to_owned(),
            expected: expected.to_owned(),
        }
    }
}

/// `canal.instance.master.address` (required).
fn read_master(layers: &Layers, required: &Required) -> Result<MasterAddress, ConfigError> {
    const ADDRESS: &str = "host:port of the MySQL/MariaDB source, such as 127.0.0.1:3306 \
                           or [::1]:3306";
    layers
        .parse("canal.instance.master.address", None, ADDRESS, |t| {
            MasterAddress::parse(t).map(Some)
        })?
        .ok_or_else(|| required.missing("canal.instance.master.address", ADDRESS))
}

/// The replication account: `canal.instance.dbUsername` (required) and
/// `canal.instance.dbPassword` (verbatim), refusing druid-encrypted
/// passwords.
fn read_account(layers: &Layers, required: &Required) -> Result<(String, String), ConfigError> {
    let db_username = layers.string("canal.instance.dbUsername")?.ok_or_else(|| {
        required.missing(
            "canal.instance.dbUsername",
            "the replication account (needs REPLICATION SLAVE, REPLICATION CLIENT and SELECT)",
        )
    })?;
    let db_password = layers
        .get("canal.instance.dbPassword")?
        .map(|s| s.value)
        .unwrap_or_default();
    if let Some(druid) = layers.get("canal.instance.enableDruid")?
        && !matches!(
            druid.value.trim().to_ascii_lowercase().as_str(),
            "" | "false"
        )
    {
        return Err(druid.invalid(
            "false: encrypted passwords (druid) are not supported; \
             put the plain password in canal.instance.dbPassword",
        ));
    }
    Ok((db_username, db_password))
}

/// `canal.instance.connectionCharset`, kept as given: connections always
/// use utf8mb4, so another charset only warns.
fn read_charset(
    layers: &Layers,
    destination: &str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    let charset = layers
        .string("canal.instance.connectionCharset")?
        .unwrap_or_else(|| "UTF-8".to_owned());
    if !["utf-8", "utf8", "utf8mb4"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&charset))
    {
        warnings.push(format!(
            "canal.instance.connectionCharset = {charset:?} for destination \
             {destination:?} is ignored: connections always use utf8mb4"
        ));
    }
    Ok(charset)
}

impl FilterSwitches {
    /// The `canal.instance.filter.*` switches.
    fn read(layers: &Layers) -> Result<Self, ConfigError> {
        let switch = |name: &str| layers.bool(&format!("canal.instance.filter.{name}"), false);
        Ok(FilterSwitches {
            query_dcl: switch("query.dcl")?,
            query_dml: switch("query.dml")?,
            query_ddl: switch("query.ddl")?,
            table_error: switch("table.error")?,
            rows: switch("rows")?,
            transaction_entry: switch("transaction.entry")?,
            dml_insert: switch("dml.insert")?,
            dml_update: switch("dml.update")?,
            dml_delete: switch("dml.delete")?,
        })
    }
}

impl MemoryStoreConfig {
    /// The `canal.instance.memory.*` keys.
    fn read(layers: &Layers) -> Result<Self, ConfigError> {
        Ok(MemoryStoreConfig {
            buffer_size: layers.parse(
                "canal.instance.memory.buffer.size",
                16384,
                "a power of two (1, 2, 4, ... 16384 ...)",
                |t| {
                    t.parse::<usize>()
                        .ok()
                        .filter(|n| n.is_power_of_two() && *n <= 1 << 30)
                },
            )?,
            memunit: layers.number(
                "canal.instance.memory.buffer.memunit",
                1024,
                1,
                1 << 30,
                "a positive number of bytes",
            )? as usize,
            batch_mode: layers.parse(
                "canal.instance.memory.batch.mode",
                BatchMode::MemSize,
                "MEMSIZE or ITEMSIZE",
                |t| {
                    if t.eq_ignore_ascii_case("MEMSIZE") {
                        Some(BatchMode::MemSize)
                    } else if t.eq_ignore_ascii_case("ITEMSIZE") {
                        Some(BatchMode::ItemSize)
                    } else {
                        None
                    }
                },
            )?,
        })
    }
}

/// Milliseconds below this look like seconds (before March 1973 as ms).
const LOOKS_LIKE_SECONDS: i64 = 100_000_000_000;

fn read_start(
    layers: &Layers,
    warnings: &mut Vec<String>,
) -> Result<Option<StartPosition>, ConfigError> {
    let journal = layers.string("canal.instance.master.journal.name")?;
    // canal treats 0 as unset for both numbers.
    let position = layers.parse(
        "canal.instance.master.position",
        None,
        "a byte offset in the binlog file (4 or more; 0 means unset)",
        |t| match t.parse::<u64>().ok()? {
            0 => Some(None),
            p if p >= 4 => Some(Some(p)),
            _ => None,
        },
    )?;
    let timestamp = layers.parse(
        "canal.instance.master.timestamp",
        None,
        "milliseconds since 1970-01-01 UTC (a whole number; 0 means unset)",
        |t| match t.parse::<i64>().ok()? {
            0 => Some(None),
            ms if ms > 0 => Some(Some(ms)),
            _ => None,
        },
    )?;
    if let Some(ms) = timestamp
        && ms < LOOKS_LIKE_SECONDS
    {
        warnings.push(format!(
            "canal.instance.master.timestamp = {ms} is read as milliseconds since 1970 \
             ({}); multiply seconds by 1000",
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.to_string())
                .unwrap_or_default()
        ));
    }
    let gtid = match layers.get("canal.instance.master.gtid")? {
        Some(setting) if !setting.value.trim().is_empty() => {
            let state = GtidState::parse(setting.value.trim()).map_err(|e| {
                setting.invalid(format!(
                    "a MySQL GTID set (uuid:1-100,...) or MariaDB GTID position \
                     (domain-server-sequence,...): {e}"
                ))
            })?;
            Some(state)
        }
        _ => None,
    };

    Ok(match (journal, position, timestamp, gtid) {
        (Some(journal_name), Some(position), _, _) => Some(StartPosition::FilePosition {
            journal_name,
            position,
        }),
        (Some(_), None, Some(ms), _) => Some(StartPosition::Timestamp(ms)),
        (Some(journal_name), None, None, _) => Some(StartPosition::FilePosition {
            journal_name,
            position: 4,
        }),
        (None, position, Some(ms), _) => {
            warn_position_without_journal(position, warnings);
            Some(StartPosition::Timestamp(ms))
        }
        (None, position, None, gtid) => {
            warn_position_without_journal(position, warnings);
            gtid.map(StartPosition::Gtid)
        }
    })
}

fn warn_position_without_journal(position: Option<u64>, warnings: &mut Vec<String>) {
    if position.is_some() {
        warnings.push(
            "canal.instance.master.position has no effect without \
             canal.instance.master.journal.name"
                .to_owned(),
        );
    }
}

fn read_filters(layers: &Layers) -> Result<(FilterTexts, EventFilter), ConfigError> {
    const TABLES: &str = "comma-separated regular expressions matched against schema.table";
    const COLUMNS: &str = "comma-separated schema.table:col1/col2 entries";
    // Unset takes the default; set but empty is kept (an empty black filter
    // excludes nothing).
    let text = |key: &str, default: &str| -> Result<_, ConfigError> {
        Ok(match layers.get(key)? {
            Some(setting) => {
                let text = setting.value.trim().to_owned();
                (text, Some(setting))
            }
            None => (default.to_owned(), None),
        })
    };
    let (regex, regex_at) = text("canal.instance.filter.regex", DEFAULT_FILTER_REGEX)?;
    let (black_regex, black_at) = text("canal.instance.filter.black.regex", DEFAULT_BLACK_REGEX)?;
    let (field, field_at) = text("canal.instance.filter.field", "")?;
    let (black_field, black_field_at) = text("canal.instance.filter.black.field", "")?;

    // Compile each alone first so the error names the key at fault.
    let fail = |at: Option<super::layers::Setting>, what: &str, e: &dyn fmt::Display| match at {
        Some(setting) => setting.invalid(format!("{what}: {e}")),
        None => ConfigError::Conflict(format!("built-in filter default is invalid: {e}")),
    };
    TableFilter::new(&regex, "").map_err(|e| fail(regex_at, TABLES, &e))?;
    TableFilter::new("", &black_regex).map_err(|e| fail(black_at, TABLES, &e))?;
    ColumnFilter::new(&field, "").map_err(|e| fail(field_at, COLUMNS, &e))?;
    ColumnFilter::new("", &black_field).map_err(|e| fail(black_field_at, COLUMNS, &e))?;
    let filter = EventFilter {
        tables: TableFilter::new(&regex, &black_regex)
            .map_err(|e| ConfigError::Conflict(e.to_string()))?,
        columns: ColumnFilter::new(&field, &black_field)
            .map_err(|e| ConfigError::Conflict(e.to_string()))?,
    };
    Ok((
        FilterTexts {
            regex,
            black_regex,
            field,
            black_field,
        },
        filter,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addresses() {
        let ok = |t: &str, host: &str, port: u16| {
            let a = MasterAddress::parse(t).unwrap();
            assert_eq!((a.host.as_str(), a.port), (host, port), "{t}");
            assert_eq!(a.to_string(), t);
        };
        ok("127.0.0.1:3306", "127.0.0.1", 3306);
        ok("db.example.com:3307", "db.example.com", 3307);
        ok("[::1]:3306", "::1", 3306);
        for bad in [
            "db", "db:", ":3306", "db:x", "db:0", "db:70000", "::1:3306", "a b:1",
        ] {
            assert!(MasterAddress::parse(bad).is_none(), "{bad}");
        }
    }
}
