//! Where in a source's binlog a change happened, and where to resume.

use std::fmt;

/// A point in a source's binlog. Cursors persist this; the source resumes from
/// it. Only transaction boundaries (and DDL) are used as resume points, so a
/// position never falls inside a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogPosition {
    /// Binlog file name, e.g. `mysql-bin.000003`.
    pub journal_name: String,
    /// Byte offset in `journal_name`. Event *start* offset for entry headers.
    pub position: u64,
    /// Server id of the source that wrote the event (0 when unknown).
    pub server_id: u32,
    /// Executed GTID set (MySQL) or GTID position (MariaDB) at this point, in
    /// the server's own text form; empty when the source has no GTIDs.
    pub gtid: String,
    /// Event time, milliseconds since the epoch (0 when unknown).
    pub timestamp_ms: i64,
}

impl LogPosition {
    /// A position from a file and an offset alone.
    pub fn new(journal_name: impl Into<String>, position: u64) -> Self {
        LogPosition {
            journal_name: journal_name.into(),
            position,
            ..Default::default()
        }
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.journal_name, self.position)?;
        if !self.gtid.is_empty() {
            write!(f, " gtid={}", self.gtid)?;
        }
        Ok(())
    }
}

/// Where a replica connection starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// A file and byte offset (the offset must be an event start, normally a
    /// transaction boundary).
    FilePosition {
        /// The binlog file.
        journal_name: String,
        /// The offset of an event start in it.
        position: u64,
    },
    /// A GTID set (MySQL) or GTID position (MariaDB): everything not in it.
    Gtid(super::gtid::GtidState),
    /// The first event whose time is at or after this (ms since the epoch);
    /// resolved to a file position by scanning binlog headers.
    Timestamp(i64),
    /// The current end of the binlog (`SHOW MASTER STATUS`).
    Latest,
}
