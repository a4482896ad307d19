//! MariaDB-only event bodies (types 160-164), which mysql_common does not
//! parse: GTID, GTID_LIST, BINLOG_CHECKPOINT, ANNOTATE_ROWS.

use super::{bytes::ByteReader, gtid::MariadbGtid};

/// The GTID event that opens every MariaDB event group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariadbGtidEvent {
    /// The group's GTID.
    pub gtid: MariadbGtid,
    /// The `FL_*` flags (see the constants).
    pub flags: u8,
}

impl MariadbGtidEvent {
    /// The group has no BEGIN/COMMIT around it (DDL, non-transactional).
    pub const STANDALONE: u8 = 0x01;
    const GROUP_COMMIT_ID: u8 = 0x02;
    /// The group is the first phase of an XA transaction.
    pub const PREPARED_XA: u8 = 0x40;
    /// The group is an XA COMMIT/ROLLBACK.
    pub const COMPLETED_XA: u8 = 0x80;

    /// Whether the group has no BEGIN/COMMIT around it.
    pub fn is_standalone(&self) -> bool {
        self.flags & Self::STANDALONE != 0
    }

    /// Parses the body of a GTID event written by `server_id`.
    pub fn parse(body: &[u8], server_id: u32) -> Option<Self> {
        let mut cursor = ByteReader::new(body);
        let sequence = cursor.u64_le()?;
        let domain = cursor.u32_le()?;
        let flags = cursor.u8()?;
        if flags & Self::GROUP_COMMIT_ID != 0 {
            cursor.u64_le()?;
        }
        Some(MariadbGtidEvent {
            gtid: MariadbGtid {
                domain,
                server_id,
                sequence,
            },
            flags,
        })
    }
}

/// GTID_LIST: the last GTID of each domain before this point (start of every
/// binlog file, and sent by the server when a GTID dump starts).
pub fn parse_gtid_list(body: &[u8]) -> Option<Vec<MariadbGtid>> {
    let mut cursor = ByteReader::new(body);
    let count = cursor.u32_le()? & 0x0fff_ffff;
    // Each entry is 16 bytes; a count beyond the body is corrupt.
    if count as usize > cursor.remaining() / 16 {
        return None;
    }
    (0..count)
        .map(|_| {
            let domain = cursor.u32_le()?;
            let server_id = cursor.u32_le()?;
            let sequence = cursor.u64_le()?;
            Some(MariadbGtid {
                domain,
                server_id,
                sequence,
            })
        })
        .collect()
}

/// ANNOTATE_ROWS: the statement that produced the following row events.
pub fn annotate_rows_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_event() {
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend_from_slice(&7u32.to_le_bytes());
        body.push(0x03);
        body.extend_from_slice(&9u64.to_le_bytes());
        let event = MariadbGtidEvent::parse(&body, 1).unwrap();
        assert_eq!(event.gtid.to_string(), "7-1-42");
        assert!(event.is_standalone());
        assert!(MariadbGtidEvent::parse(&body[..11], 1).is_none());
    }

    #[test]
    fn gtid_list() {
        let mut body = 2u32.to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 10u64), (1, 2, 20)] {
            body.extend_from_slice(&d.to_le_bytes());
            body.extend_from_slice(&s.to_le_bytes());
            body.extend_from_slice(&n.to_le_bytes());
        }
        let list = parse_gtid_list(&body).unwrap();
        assert_eq!(list[1].to_string(), "1-2-20");
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        assert!(parse_gtid_list(&huge).is_none());
    }
}
