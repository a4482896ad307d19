//! Binlog events as the decoder sees them, whichever way they arrived (a
//! replica stream or a file): the parsed event plus where it sits in its
//! binlog file, and the checks every event passes first.

use std::sync::Arc;

use mysql_common::binlog::{
    consts::{BinlogChecksumAlg, EventType},
    events::{Event, RotateEvent},
};

use super::guard::{ParseError, guarded};

/// Size of the common event header (binlog format v4).
pub const HEADER_LEN: usize = 19;
/// Offset of `event_size` in the header.
pub const EVENT_SIZE_OFFSET: usize = 9;
/// Offset of `flags` in the header.
pub const FLAGS_OFFSET: usize = 17;
/// Header flag of events the source made up rather than read from a binlog
/// file (fake ROTATE, some MariaDB GTID_LIST events).
pub const ARTIFICIAL_FLAG: u16 = 0x20;

/// MariaDB event type codes (mysql_common knows only MySQL's).
pub mod mariadb_type {
    /// The statement text of the rows events that follow (like MySQL's ROWS_QUERY).
    pub const ANNOTATE_ROWS: u8 = 160;
    /// The oldest binlog file still needed for crash recovery.
    pub const BINLOG_CHECKPOINT: u8 = 161;
    /// MariaDB's GTID event, which opens an event group.
    pub const GTID: u8 = 162;
    /// The GTID state at the start of a binlog file.
    pub const GTID_LIST: u8 = 163;
    /// The file's remaining events are encrypted.
    pub const START_ENCRYPTION: u8 = 164;
    /// A QUERY event with a compressed statement.
    pub const QUERY_COMPRESSED: u8 = 165;
    /// First of 166..=171: WRITE/UPDATE/DELETE_ROWS_COMPRESSED v1 and v2.
    pub const FIRST_COMPRESSED_ROWS: u8 = 166;
    /// Last of the compressed rows event types.
    pub const LAST_COMPRESSED_ROWS: u8 = 171;
    /// MariaDB 11.x: the partial-row event of large transactions.
    pub const PARTIAL_ROW_DATA: u8 = 172;
}

/// An event and its place in the binlog.
#[derive(Debug, Clone)]
pub struct SourceEvent {
    /// The parsed event (header, body, checksum).
    pub event: Event,
    /// The binlog file the event is in.
    pub journal: Arc<str>,
    /// Start offset of the event in its binlog file. For events unpacked from
    /// a TRANSACTION_PAYLOAD, the payload event's start.
    pub start: u64,
    /// End offset (the next event's start). For unpacked events, the payload
    /// event's end.
    pub end: u64,
    /// Whether this event was unpacked from a TRANSACTION_PAYLOAD.
    pub in_payload: bool,
}

impl SourceEvent {
    /// The raw event type code, MariaDB's included.
    pub fn type_code(&self) -> u8 {
        self.event.header().event_type_raw()
    }

    /// Whether the event is of a (MySQL) type.
    pub fn is(&self, event_type: EventType) -> bool {
        self.type_code() == event_type as u8
    }

    /// Whether the source made the event up rather than read it from a
    /// binlog file; such events have no place to resume from.
    pub fn is_artificial(&self) -> bool {
        self.event.header().flags_raw() & ARTIFICIAL_FLAG != 0
    }
}

/// A checksum mismatch: the event was damaged between the source's disk and
/// us, so nothing in it can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CRC32 mismatch on {event_type} event: stored {stored:08x}, computed {computed:08x}")]
pub struct ChecksumError {
    /// The event's type name.
    pub event_type: String,
    /// The CRC32 the event carries.
    pub stored: u32,
    /// The CRC32 of the bytes received.
    pub computed: u32,
}

/// Verifies the CRC32 of an event whose format says it carries one. A
/// FORMAT_DESCRIPTION event always carries a valid CRC from 5.6.1 on, even
/// when its algorithm byte says OFF; its "binlog in use" flag is cleared
/// before computing (mysql_common's `calc_checksum` does both).
pub fn verify_checksum(event: &Event) -> Result<(), ChecksumError> {
    let Some(stored) = event.checksum() else {
        return Ok(());
    };
    let footer = event.footer();
    if !footer.get_checksum_enabled() {
        return Ok(());
    }
    let alg = match footer.get_checksum_alg() {
        Ok(Some(alg)) => alg,
        // An unknown algorithm byte: nothing we can verify against.
        _ => return Ok(()),
    };
    let is_fde = event.header().event_type_raw() == EventType::FORMAT_DESCRIPTION_EVENT as u8;
    if alg != BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32 && !is_fde {
        return Ok(());
    }
    let stored = u32::from_le_bytes(stored);
    let computed = event.calc_checksum(alg);
    if stored == computed {
        Ok(())
    } else {
        Err(ChecksumError {
            event_type: event_type_name(event.header().event_type_raw()),
            stored,
            computed,
        })
    }
}

/// A readable name for an event type code, MariaDB's included.
pub fn event_type_name(code: u8) -> String {
    use mariadb_type::*;
    let mariadb = match code {
        ANNOTATE_ROWS => Some("ANNOTATE_ROWS"),
        BINLOG_CHECKPOINT => Some("BINLOG_CHECKPOINT"),
        GTID => Some("MARIADB_GTID"),
        GTID_LIST => Some("GTID_LIST"),
        START_ENCRYPTION => Some("START_ENCRYPTION"),
        QUERY_COMPRESSED => Some("QUERY_COMPRESSED"),
        166 => Some("WRITE_ROWS_COMPRESSED_V1"),
        167 => Some("UPDATE_ROWS_COMPRESSED_V1"),
        168 => Some("DELETE_ROWS_COMPRESSED_V1"),
        169 => Some("WRITE_ROWS_COMPRESSED"),
        170 => Some("UPDATE_ROWS_COMPRESSED"),
        171 => Some("DELETE_ROWS_COMPRESSED"),
        PARTIAL_ROW_DATA => Some("PARTIAL_ROW_DATA"),
        _ => None,
    };
    if let Some(name) = mariadb {
        return name.to_owned();
    }
    match EventType::try_from(code) {
        Ok(t) => format!("{t:?}").trim_end_matches("_EVENT").to_owned(),
        Err(_) => format!("type {code}"),
    }
}

/// Whether a frame claims a size that cannot be an event with this format.
pub fn minimum_event_size(type_code: u8, checksum: bool) -> usize {
    let checksum_len = if checksum { 4 } else { 0 };
    if type_code == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
        // binlog version, 50-byte server version, timestamp, header length.
        HEADER_LEN + 2 + 50 + 4 + 1
    } else {
        HEADER_LEN + checksum_len
    }
}

impl SourceEvent {
    /// Parses the event body as `T`, turning parser panics into errors.
    pub fn parse<'a, T: mysql_common::binlog::BinlogEvent<'a>>(&'a self) -> Result<T, ParseError> {
        guarded(|| self.event.read_event::<T>())
    }
}

/// The binlog file a ROTATE event points to. With `strip_checksum` (the
/// source writes checksums and the event came before the stream's
/// FORMAT_DESCRIPTION, as the first, fake ROTATE does) the last four bytes
/// are a CRC32 the reader could not know to cut and left on the name
/// (mysql_async issue 189).
pub fn rotated_journal(event: &Event, strip_checksum: bool) -> Result<Arc<str>, ParseError> {
    let rotate = guarded(|| event.read_event::<RotateEvent<'_>>())?;
    let name = rotate.name_raw();
    let name = match name.len().checked_sub(4) {
        Some(cut) if strip_checksum && cut > 0 => &name[..cut],
        _ => name,
    };
    Ok(Arc::from(String::from_utf8_lossy(name).as_ref()))
}
