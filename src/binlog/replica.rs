//! Talking to the source as a replica: connecting, checking that its binlog
//! can be captured, finding positions, and opening a binlog dump in either
//! dialect. The MySQL protocol itself is mysql_async's.

use std::time::Duration;

use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, OptsBuilder, Row, prelude::Queryable};

use super::{
    gtid::{GtidState, MariadbGtidPos, MysqlGtidSet},
    table::ServerFlavor,
};

/// How to reach the source.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// `host:port` of the MySQL/MariaDB source.
    pub address: String,
    /// The replication account.
    pub user: String,
    /// Its password.
    pub password: String,
    /// This replica's server id; must be unique among the source's replicas.
    pub server_id: u32,
    /// Interval of the source's heartbeat events while the binlog is idle.
    pub heartbeat: Duration,
    /// How long connecting may take before it counts as a transient failure.
    pub connect_timeout: Duration,
}

/// Whether a failure can pass by itself or needs someone to act; it decides
/// between reconnecting and stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection broke or the server went away: retry.
    Transient,
    /// Something only an operator can fix (credentials, grants, binlog
    /// settings, a purged position).
    Fatal,
}

/// Why talking to the source failed; [`ReplicaError::kind`] says whether
/// retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// A query, the connection or the binlog dump failed while doing
    /// `context`; `hint` says what to fix where we know it.
    #[error("{context}: {source}{hint}")]
    Sql {
        /// What we were doing.
        context: String,
        /// mysql_async's error.
        source: mysql_async::Error,
        /// What to fix, with a leading space; empty when unknown.
        hint: &'static str,
        /// Whether retrying can help.
        kind: ErrorKind,
    },
    /// The source did not answer in time.
    #[error("{context}: no answer within {waited:?}")]
    NoAnswer {
        /// What we were doing.
        context: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The configured source address cannot be used.
    #[error("source address `{address}` must be host:port (canal.instance.master.address)")]
    BadAddress {
        /// The address as configured.
        address: String,
    },
    /// The source writes no binlog.
    #[error("the source's binlog is off (log_bin=OFF): start it with log-bin=mysql-bin")]
    BinlogOff,
    /// The source logs statements, not rows.
    #[error(
        "the source logs binlog_format={format}; row changes need binlog_format=ROW \
         (SET GLOBAL binlog_format=ROW and in the server configuration)"
    )]
    NotRowFormat {
        /// The source's `binlog_format`.
        format: String,
    },
    /// `SHOW MASTER STATUS` returned nothing.
    #[error("the source has no binlog (SHOW MASTER STATUS is empty)")]
    NoBinlog,
    /// `SHOW BINARY LOGS` returned nothing.
    #[error("the source lists no binlog files")]
    NoBinlogFiles,
    /// The replication account may not read information_schema.
    #[error(
        "cannot read table definitions from information_schema ({source}); the replication \
         account needs SELECT"
    )]
    NoSchemaAccess {
        /// The server's refusal.
        source: mysql_async::ServerError,
    },
    /// Neither an event nor a heartbeat arrived for longer than the
    /// heartbeat interval allows.
    #[error("no binlog event or heartbeat for {waited:?}")]
    StreamIdle {
        /// How long the stream was silent.
        waited: Duration,
    },
    /// The source ended a dump that should follow the binlog.
    #[error("the source closed the binlog stream")]
    StreamClosed,
    /// Reading the binlog to its end for DDL took too long.
    #[error("scanning the binlog for DDL timed out")]
    ScanTimedOut,
    /// A binlog file's first events did not arrive.
    #[error("could not read the start of binlog file {file}")]
    FileStartUnread {
        /// The binlog file.
        file: String,
    },
}

impl ReplicaError {
    /// A failure of mysql_async while doing `context` that a retry may fix.
    pub fn transient(context: impl Into<String>, source: mysql_async::Error) -> Self {
        ReplicaError::Sql {
            context: context.into(),
            source,
            hint: "",
            kind: ErrorKind::Transient,
        }
    }

    /// Whether retrying can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReplicaError::Sql { kind, .. } => *kind,
            ReplicaError::NoAnswer { .. }
            | ReplicaError::StreamIdle { .. }
            | ReplicaError::StreamClosed
            | ReplicaError::ScanTimedOut
            | ReplicaError::FileStartUnread { .. } => ErrorKind::Transient,
            ReplicaError::BadAddress { .. }
            | ReplicaError::BinlogOff
            | ReplicaError::NotRowFormat { .. }
            | ReplicaError::NoBinlog
            | ReplicaError::NoBinlogFiles
            | ReplicaError::NoSchemaAccess { .. } => ErrorKind::Fatal,
        }
    }

    /// Whether only an operator can fix it (see [`ErrorKind::Fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.kind() == ErrorKind::Fatal
    }
}

/// Server error codes that retrying will not fix.
const FATAL_SERVER_CODES: &[u16] = &[
    1045, // access denied
    1044, // access denied to database
    1227, // missing privilege (REPLICATION SLAVE/CLIENT)
    1236, // fatal error reading binlog: purged position, unknown file, bad GTID state
    1371, // binary logging not enabled
    1381, // binary logging not enabled (SHOW BINARY LOGS)
    1951, // MariaDB: GTID position not in binlog
    1955, // MariaDB: GTID strict mode violation
];

/// Sorts a mysql_async failure into transient and fatal, with a hint for
/// the fatal ones an operator can fix.
fn sql_error(context: &str, error: mysql_async::Error) -> ReplicaError {
    let (kind, hint) = match &error {
        mysql_async::Error::Server(server) if FATAL_SERVER_CODES.contains(&server.code) => {
            let hint = match server.code {
                1045 | 1044 => " (check canal.instance.dbUsername / dbPassword)",
                1227 => {
                    " (the account needs SELECT, REPLICATION SLAVE, REPLICATION CLIENT: \
                     GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO ...)"
                }
                1236 => {
                    " (the start position is no longer in the source's binlog, or never was: \
                     it may have been purged; reset the cursor to a position the source still has)"
                }
                1371 | 1381 => " (enable the binlog on the source: log-bin)",
                _ => "",
            };
            (ErrorKind::Fatal, hint)
        }
        mysql_async::Error::Url(_) => (ErrorKind::Fatal, ""),
        _ => (ErrorKind::Transient, ""),
    };
    ReplicaError::Sql {
        context: context.to_owned(),
        source: error,
        hint,
        kind,
    }
}

/// A failure of a running binlog dump. The source ends a dump with 1236
/// when it cannot serve the position, which no reconnect fixes.
pub fn dump_error(error: mysql_async::Error) -> ReplicaError {
    match &error {
        mysql_async::Error::Server(server) if server.code == 1236 => ReplicaError::Sql {
            context: "the source stopped the binlog dump".into(),
            source: error,
            hint: " (the position may have been purged from the source's binlog; reset the \
                   cursor to a position it still has)",
            kind: ErrorKind::Fatal,
        },
        _ => ReplicaError::transient("binlog stream failed", error),
    }
}

/// What the source is and how its binlog is configured.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `@@version`, e.g. `11.4.2-MariaDB`.
    pub version: String,
    /// MySQL or MariaDB, from the version.
    pub flavor: ServerFlavor,
    /// The source's own `@@server_id`.
    pub server_id: u32,
    /// `binlog_checksum=CRC32`.
    pub checksum: bool,
    /// `binlog_row_metadata=FULL`: the binlog names every column itself.
    pub full_row_metadata: bool,
    /// `binlog_row_image` (FULL, MINIMAL, NOBLOB).
    pub row_image: String,
}

impl ServerInfo {
    /// Whether the source speaks MariaDB's binlog dialect.
    pub fn is_mariadb(&self) -> bool {
        self.flavor == ServerFlavor::MariaDb
    }
}

fn split_address(address: &str) -> Result<(String, u16), ReplicaError> {
    let invalid = || ReplicaError::BadAddress {
        address: address.to_owned(),
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid());
    }
    let port = port.parse::<u16>().map_err(|_| invalid())?;
    Ok((host.to_owned(), port))
}

/// Opens a plain connection to the source.
pub async fn connect(config: &ReplicaConfig) -> Result<Conn, ReplicaError> {
    let (host, port) = split_address(&config.address)?;
    let opts = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(config.user.clone()))
        .pass(Some(config.password.clone()))
        .prefer_socket(false)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .stmt_cache_size(0)
        // Binlog events can be as large as the source's replica packet limit.
        .max_allowed_packet(Some(1 << 30))
        .wait_timeout(Some(28_800));
    let context = format!("cannot connect to the source {}", config.address);
    match tokio::time::timeout(config.connect_timeout, Conn::new(opts)).await {
        Ok(result) => result.map_err(|e| sql_error(&context, e)),
        Err(_) => Err(ReplicaError::NoAnswer {
            context,
            waited: config.connect_timeout,
        }),
    }
}

async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>, ReplicaError> {
    let query = format!("SELECT @@{name}");
    match conn.query_first::<Option<String>, _>(query).await {
        Ok(value) => Ok(value.flatten()),
        // Unknown system variable on this server version.
        Err(mysql_async::Error::Server(e)) if e.code == 1193 => Ok(None),
        Err(e) => Err(sql_error(&format!("cannot read @@{name}"), e)),
    }
}

/// Reads the source's version and binlog settings, refusing settings under
/// which row changes cannot be captured.
pub async fn probe(conn: &mut Conn) -> Result<ServerInfo, ReplicaError> {
    let version = variable(conn, "version").await?.unwrap_or_default();
    let flavor = ServerFlavor::from_server_version(&version);
    let log_bin = variable(conn, "log_bin").await?.unwrap_or_default();
    if !matches!(log_bin.as_str(), "1" | "ON") {
        return Err(ReplicaError::BinlogOff);
    }
    let format = variable(conn, "global.binlog_format")
        .await?
        .unwrap_or_default();
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(ReplicaError::NotRowFormat { format });
    }
    let row_image = variable(conn, "global.binlog_row_image")
        .await?
        .unwrap_or_else(|| "FULL".into());
    if !row_image.eq_ignore_ascii_case("FULL") {
        tracing::warn!(
            binlog_row_image = %row_image,
            "the source does not log full row images: before/after images will miss columns \
             (set binlog_row_image=FULL)"
        );
    }
    let metadata = variable(conn, "global.binlog_row_metadata")
        .await?
        .unwrap_or_default();
    let checksum = variable(conn, "global.binlog_checksum")
        .await?
        .unwrap_or_default();
    let server_id = variable(conn, "server_id")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(ServerInfo {
        version,
        flavor,
        server_id,
        checksum: checksum.eq_ignore_ascii_case("CRC32"),
        full_row_metadata: metadata.eq_ignore_ascii_case("FULL"),
        row_image,
    })
}

/// The end of the source's binlog: file, position and executed GTIDs.
#[derive(Debug, Clone)]
pub struct BinlogEnd {
    /// The binlog file being written.
    pub journal: String,
    /// The offset where its next event will start.
    pub position: u64,
    /// The executed GTID state, where the source has one.
    pub gtid: Option<GtidState>,
}

/// `SHOW MASTER STATUS` (or `SHOW BINARY LOG STATUS` on MySQL 8.4+), plus the
/// executed GTID state.
pub async fn binlog_end(conn: &mut Conn, info: &ServerInfo) -> Result<BinlogEnd, ReplicaError> {
    let row: Option<Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(row) => row,
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(|e| sql_error("cannot read the binlog position", e))?,
        Err(e) => {
            return Err(sql_error(
                "cannot read the binlog position (SHOW MASTER STATUS)",
                e,
            ));
        }
    };
    let row = row.ok_or(ReplicaError::NoBinlog)?;
    let journal: String = row.get(0).unwrap_or_default();
    let position: u64 = row.get(1).unwrap_or(4);
    let gtid = if info.is_mariadb() {
        variable(conn, "global.gtid_binlog_pos")
            .await?
            .filter(|s| !s.trim().is_empty())
            .and_then(|s| s.parse::<MariadbGtidPos>().ok())
            .map(GtidState::Mariadb)
    } else {
        variable(conn, "global.gtid_executed")
            .await?
            .filter(|s| !s.trim().is_empty())
            .and_then(|s| s.parse::<MysqlGtidSet>().ok())
            .map(GtidState::Mysql)
    };
    Ok(BinlogEnd {
        journal,
        position,
        gtid,
    })
}

/// A binlog file the source still has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogFile {
    /// The file name (`mysql-bin.000003`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The binlog files the source still has, oldest first (`SHOW BINARY LOGS`).
pub async fn binlog_files(conn: &mut Conn) -> Result<Vec<BinlogFile>, ReplicaError> {
    let rows: Vec<Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| sql_error("cannot list binlog files (SHOW BINARY LOGS)", e))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(BinlogFile {
                name: row.get_opt::<String, _>(0)?.ok()?,
                size: row.get_opt::<u64, _>(1)?.ok()?,
            })
        })
        .collect())
}

/// The MariaDB GTID position of a file position (`BINLOG_GTID_POS`), which
/// lets a file-position start resume by GTID later.
pub async fn mariadb_gtid_at(
    conn: &mut Conn,
    journal: &str,
    position: u64,
) -> Result<Option<MariadbGtidPos>, ReplicaError> {
    let value: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (journal, position))
        .await
        .map_err(|e| sql_error("cannot map the start position to a GTID position", e))?;
    Ok(value.flatten().and_then(|s| s.parse().ok()))
}

/// Where a dump starts.
#[derive(Debug, Clone)]
pub enum DumpStart {
    /// At a file position.
    File {
        /// The binlog file.
        journal: String,
        /// The offset of an event start in it.
        position: u64,
    },
    /// After the transactions of a GTID state.
    Gtid(GtidState),
}

/// Whether a dump waits for new events at the end of the binlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpMode {
    /// Follow the binlog as it grows (the live source).
    Follow,
    /// End at the binlog's current end (scans).
    ToEnd,
}

/// Connects to the source and reads its settings (see [`probe`]).
pub async fn connect_and_probe(config: &ReplicaConfig) -> Result<(Conn, ServerInfo), ReplicaError> {
    let mut conn = connect(config).await?;
    let info = probe(&mut conn).await?;
    Ok((conn, info))
}

/// Opens a dump of its own beside the main one, as replica `server_id` so
/// that it does not displace the main dump (which the source would end).
pub async fn open_side_dump(
    config: &ReplicaConfig,
    server_id: u32,
    start: &DumpStart,
    mode: DumpMode,
) -> Result<(BinlogStream, ServerInfo), ReplicaError> {
    let (conn, info) = connect_and_probe(config).await?;
    let config = ReplicaConfig {
        server_id,
        ..config.clone()
    };
    let stream = open_stream(conn, &info, &config, start, mode).await?;
    Ok((stream, info))
}

/// Turns `conn` into a binlog stream from `start`, announcing the replica's
/// capabilities in the source's dialect.
pub async fn open_stream(
    mut conn: Conn,
    info: &ServerInfo,
    config: &ReplicaConfig,
    start: &DumpStart,
    mode: DumpMode,
) -> Result<BinlogStream, ReplicaError> {
    let setup = |e| sql_error("cannot prepare the binlog dump", e);
    // Ask for checksums as the source writes them; mysql_async then sets
    // @master_binlog_checksum itself, so events keep their CRC32 to verify.
    conn.query_drop("SET @master_binlog_checksum = @@global.binlog_checksum")
        .await
        .map_err(setup)?;
    let heartbeat_ns = config.heartbeat.as_nanos().min(u128::from(u64::MAX)) as u64;
    conn.query_drop(format!("SET @master_heartbeat_period = {heartbeat_ns}"))
        .await
        .map_err(setup)?;
    if info.is_mariadb() {
        // 4 = MARIA_SLAVE_CAPABILITY_GTID: GTID events instead of BEGIN
        // queries, GTID_LIST, and GTID positioning.
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .map_err(setup)?;
        if let DumpStart::Gtid(state) = start {
            conn.exec_drop("SET @slave_connect_state = ?", (state.to_string(),))
                .await
                .map_err(setup)?;
            conn.query_drop("SET @slave_gtid_strict_mode = 0")
                .await
                .map_err(setup)?;
        }
    }
    let mut request = BinlogStreamRequest::new(config.server_id);
    if mode == DumpMode::ToEnd {
        request = request.with_non_blocking();
    }
    let sids;
    match start {
        DumpStart::File { journal, position } => {
            request = request
                .with_filename(journal.as_bytes())
                .with_pos(*position);
        }
        DumpStart::Gtid(GtidState::Mariadb(_)) => {
            // The connect state set above positions the dump.
            request = request.with_pos(4);
        }
        DumpStart::Gtid(GtidState::Mysql(set)) => {
            sids = mysql_sids(set);
            request = request.with_gtid().with_gtid_set(sids.iter().cloned());
        }
    }
    conn.get_binlog_stream(request)
        .await
        .map_err(|e| sql_error("cannot start the binlog dump", e))
}

fn mysql_sids(set: &MysqlGtidSet) -> Vec<mysql_async::Sid<'static>> {
    use mysql_common::packets::{GnoInterval, Sid, Tag};
    set.iter()
        .map(|(sid, intervals)| {
            let mut out = Sid::new(sid.uuid);
            if !sid.tag.is_empty()
                && let Ok(tag) = Tag::new(sid.tag.clone())
            {
                out = out.with_tag(tag);
            }
            // The wire format uses half-open intervals.
            out.with_intervals(
                intervals
                    .iter()
                    .map(|&(s, e)| GnoInterval::new(s, e + 1))
                    .collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_gtid_sets_become_half_open_sids() {
        let set: MysqlGtidSet = "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:20:mytag:1-2"
            .parse()
            .unwrap();
        let sids: Vec<String> = mysql_sids(&set).iter().map(|s| s.to_string()).collect();
        assert_eq!(
            sids,
            [
                "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:20",
                "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:1-2"
            ]
        );
    }

    #[test]
    fn errors_say_whether_retrying_helps() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "no".into(),
                state: "HY000".into(),
            })
        };
        let purged = dump_error(server(1236));
        assert_eq!(purged.kind(), ErrorKind::Fatal);
        assert!(
            purged
                .to_string()
                .starts_with("the source stopped the binlog dump: "),
            "{purged}"
        );
        assert!(purged.to_string().ends_with("to a position it still has)"));
        assert_eq!(dump_error(server(2013)).kind(), ErrorKind::Transient);
        let denied = sql_error("cannot connect to the source db:3306", server(1045));
        assert!(denied.is_fatal());
        assert!(
            denied
                .to_string()
                .ends_with("(check canal.instance.dbUsername / dbPassword)")
        );
        assert!(!sql_error("cannot read @@version", server(2006)).is_fatal());
        assert_eq!(
            ReplicaError::NotRowFormat {
                format: "MIXED".into()
            }
            .to_string(),
            "the source logs binlog_format=MIXED; row changes need binlog_format=ROW \
             (SET GLOBAL binlog_format=ROW and in the server configuration)"
        );
        assert!(!ReplicaError::StreamClosed.is_fatal());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("127.0.0.1:3306").unwrap(),
            ("127.0.0.1".into(), 3306)
        );
        assert_eq!(
            split_address("db.svc:3307").unwrap(),
            ("db.svc".into(), 3307)
        );
        assert_eq!(split_address("[::1]:3306").unwrap(), ("::1".into(), 3306));
        for bad in ["db", "db:", ":3306", "db:99999", "db:x"] {
            let err = split_address(bad).unwrap_err();
            assert!(
                err.is_fatal() && err.to_string().contains("host:port"),
                "{bad}: {err}"
            );
        }
    }
}
