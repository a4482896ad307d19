//! GTID sets of both dialects, parsed from and printed as the servers' own
//! text forms.
//!
//! - MySQL: `uuid:1-5:7,uuid2[:tag]:1-3` — intervals per source UUID (and,
//!   from 8.4, per tag). A replica resumes by sending the whole executed set.
//! - MariaDB: `domain-server-seq,...` — one last-applied GTID per replication
//!   domain. A replica resumes by sending that list as `@slave_connect_state`.

use std::{collections::BTreeMap, fmt, str::FromStr};

/// Why a GTID text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    /// The text is not a GTID set or position.
    #[error("invalid GTID set `{text}`: {reason}")]
    Invalid {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(text: &str, reason: impl Into<String>) -> GtidError {
    GtidError::Invalid {
        text: text.to_owned(),
        reason: reason.into(),
    }
}

/// A MySQL source identifier: server UUID plus optional tag (MySQL 8.4+).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MysqlSid {
    /// The source server's UUID.
    pub uuid: [u8; 16],
    /// Lower-case tag; empty for untagged GTIDs.
    pub tag: String,
}

/// A set of MySQL GTIDs, intervals merged and sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlGtidSet {
    /// Closed intervals `[start, end]` per source, sorted and non-overlapping.
    intervals: BTreeMap<MysqlSid, Vec<(u64, u64)>>,
}

impl MysqlGtidSet {
    /// Whether the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// Adds one transaction number of `sid` to the set.
    pub fn add(&mut self, sid: &MysqlSid, gno: u64) {
        self.add_interval(sid, gno, gno);
    }

    /// Adds the closed interval `[start, end]` of `sid`.
    pub fn add_interval(&mut self, sid: &MysqlSid, start: u64, end: u64) {
        let list = match self.intervals.get_mut(sid) {
            Some(list) => list,
            None => self.intervals.entry(sid.clone()).or_default(),
        };
        // Fast path: the next GTID of a sequential stream extends the last interval.
        if let Some(last) = list.last_mut()
            && start <= last.1.saturating_add(1)
            && start >= last.0
        {
            last.1 = last.1.max(end);
            return;
        }
        list.push((start, end));
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(prev) if s <= prev.1.saturating_add(1) => prev.1 = prev.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }

    /// Whether `gno` of `sid` is in the set.
    pub fn contains(&self, sid: &MysqlSid, gno: u64) -> bool {
        self.intervals
            .get(sid)
            .is_some_and(|list| list.iter().any(|&(s, e)| s <= gno && gno <= e))
    }

    /// Sources and their closed intervals, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&MysqlSid, &[(u64, u64)])> {
        self.intervals
            .iter()
            .map(|(sid, list)| (sid, list.as_slice()))
    }
}

pub(crate) fn format_uuid(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (i, byte) in uuid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(uuid)
}

fn is_tag(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= 32
}

impl FromStr for MysqlGtidSet {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut set = MysqlGtidSet::default();
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for source in compact.split(',').filter(|s| !s.is_empty()) {
            let mut parts = source.split(':');
            let uuid_text = parts.next().unwrap_or_default();
            let uuid = parse_uuid(uuid_text)
                .ok_or_else(|| invalid(text, format!("`{uuid_text}` is not a UUID")))?;
            let mut sid = MysqlSid {
                uuid,
                tag: String::new(),
            };
            let mut saw_interval = false;
            for part in parts {
                if is_tag(part) {
                    sid.tag = part.to_ascii_lowercase();
                    continue;
                }
                let (start, end) = match part.split_once('-') {
                    Some((s, e)) => (s, e),
                    None => (part, part),
                };
                let parse = |n: &str| {
                    n.parse::<u64>().map_err(|_| {
                        invalid(text, format!("`{part}` is neither an interval nor a tag"))
                    })
                };
                let (start, end) = (parse(start)?, parse(end)?);
                if start == 0 || end < start {
                    return Err(invalid(
                        text,
                        format!("interval `{part}` is empty or starts at 0"),
                    ));
                }
                set.add_interval(&sid, start, end);
                saw_interval = true;
            }
            if !saw_interval {
                return Err(invalid(text, format!("`{source}` has no interval")));
            }
        }
        Ok(set)
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One entry per UUID: untagged intervals first, then each tag's.
        let mut first_uuid = true;
        let mut current_uuid: Option<[u8; 16]> = None;
        for (sid, list) in &self.intervals {
            if current_uuid != Some(sid.uuid) {
                if !first_uuid {
                    f.write_str(",")?;
                }
                first_uuid = false;
                current_uuid = Some(sid.uuid);
                f.write_str(&format_uuid(&sid.uuid))?;
            }
            if !sid.tag.is_empty() {
                write!(f, ":{}", sid.tag)?;
            }
            for &(s, e) in list {
                if s == e {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{e}")?;
                }
            }
        }
        Ok(())
    }
}

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariadbGtid {
    /// The replication domain.
    pub domain: u32,
    /// The server that wrote the transaction.
    pub server_id: u32,
    /// The transaction's number within its domain.
    pub sequence: u64,
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.sequence)
    }
}

impl FromStr for MariadbGtid {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.trim().splitn(3, '-');
        let mut next = |what: &str| {
            parts
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or_else(|| invalid(text, format!("missing or non-numeric {what}")))
        };
        let domain = next("domain id")?;
        let server_id = next("server id")?;
        let sequence = next("sequence number")?;
        Ok(MariadbGtid {
            domain: u32::try_from(domain)
                .map_err(|_| invalid(text, "domain id exceeds 32 bits"))?,
            server_id: u32::try_from(server_id)
                .map_err(|_| invalid(text, "server id exceeds 32 bits"))?,
            sequence,
        })
    }
}

/// A MariaDB replication position: the last GTID of each domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariadbGtidPos {
    domains: BTreeMap<u32, MariadbGtid>,
}

impl MariadbGtidPos {
    /// Whether no domain has a GTID yet.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Records `gtid` as the last one applied in its domain.
    pub fn update(&mut self, gtid: MariadbGtid) {
        self.domains.insert(gtid.domain, gtid);
    }

    /// The last GTID of each domain, by domain.
    pub fn iter(&self) -> impl Iterator<Item = &MariadbGtid> {
        self.domains.values()
    }
}

impl FromStr for MariadbGtidPos {
    type Err = GtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut pos = MariadbGtidPos::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let gtid: MariadbGtid = item.parse()?;
            if pos.domains.insert(gtid.domain, gtid).is_some() {
                return Err(invalid(
                    text,
                    format!("domain {} appears twice", gtid.domain),
                ));
            }
        }
        Ok(pos)
    }
}

impl fmt::Display for MariadbGtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

/// The executed-GTID state a replica resumes from, in either dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidState {
    /// MySQL: the set of executed GTIDs.
    Mysql(MysqlGtidSet),
    /// MariaDB: the last GTID of each domain.
    Mariadb(MariadbGtidPos),
}

impl GtidState {
    /// Parses a GTID text, telling the dialect by its shape: MariaDB GTIDs
    /// are three dash-separated numbers, MySQL sets start with a UUID.
    pub fn parse(text: &str) -> Result<Self, GtidError> {
        let first = text.split(',').map(str::trim).find(|s| !s.is_empty());
        match first {
            Some(item)
                if item.split('-').count() == 3
                    && item.bytes().all(|b| b.is_ascii_digit() || b == b'-') =>
            {
                Ok(GtidState::Mariadb(text.parse()?))
            }
            _ => Ok(GtidState::Mysql(text.parse()?)),
        }
    }

    /// Whether nothing has been executed yet.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidState::Mysql(set) => set.is_empty(),
            GtidState::Mariadb(pos) => pos.is_empty(),
        }
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidState::Mysql(set) => set.fmt(f),
            GtidState::Mariadb(pos) => pos.fmt(f),
        }
    }
}

/// MySQL's serialization-library variable-length integer (tagged GTID
/// formats): the count of trailing one bits in the first byte says how many
/// more bytes follow.
fn read_varlen_u64(cursor: &mut super::bytes::ByteReader<'_>) -> Option<u64> {
    let first = *cursor.rest().first()?;
    let extra = first.trailing_ones() as usize;
    if extra == 8 {
        cursor.skip(1)?;
        return cursor.uint_le(8);
    }
    let value = cursor.uint_le(extra + 1)?;
    Some(value >> (extra + 1))
}

/// Parses a PREVIOUS_GTIDS event body (untagged or MySQL 8.4+ tagged
/// format) into the set of GTIDs executed before its binlog file.
/// Counts are checked against the bytes present before anything is
/// allocated, so a corrupt event is an error, not an allocation failure.
pub fn parse_previous_gtids(body: &[u8]) -> Option<MysqlGtidSet> {
    let mut cursor = super::bytes::ByteReader::new(body);
    let header = cursor.u64_le()?;
    let tagged = (header >> 56) != 0;
    let sids = if tagged {
        (header >> 8) & ((1 << 48) - 1)
    } else {
        header & ((1 << 56) - 1)
    };
    if sids > (cursor.remaining() / 24) as u64 {
        return None;
    }
    let mut set = MysqlGtidSet::default();
    for _ in 0..sids {
        let uuid: [u8; 16] = cursor.take(16)?.try_into().ok()?;
        let tag = if tagged {
            let len = usize::try_from(read_varlen_u64(&mut cursor)?).ok()?;
            std::str::from_utf8(cursor.take(len)?)
                .ok()?
                .to_ascii_lowercase()
        } else {
            String::new()
        };
        let intervals = cursor.u64_le()?;
        if intervals > (cursor.remaining() / 16) as u64 {
            return None;
        }
        let sid = MysqlSid { uuid, tag };
        for _ in 0..intervals {
            let start = cursor.u64_le()?;
            let end = cursor.u64_le()?;
            // Stored half-open: [start, end).
            if end > start {
                set.add_interval(&sid, start, end - 1);
            }
        }
    }
    Some(set)
}

#[cfg(test)]
mod previous_gtids_tests {
    use super::*;

    #[test]
    fn huge_counts_are_rejected_without_allocating() {
        let mut body = (u64::MAX >> 8).to_le_bytes().to_vec();
        body.extend_from_slice(&[0; 40]);
        assert!(parse_previous_gtids(&body).is_none());
        let mut body = 1u64.to_le_bytes().to_vec();
        body.extend_from_slice(&[7; 16]);
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_previous_gtids(&body).is_none());
    }

    #[test]
    fn untagged_interval_is_half_open() {
        let mut body = 1u64.to_le_bytes().to_vec();
        body.extend_from_slice(&[0x11; 16]);
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&14u64.to_le_bytes());
        let set = parse_previous_gtids(&body).unwrap();
        assert_eq!(set.to_string(), "11111111-1111-1111-1111-111111111111:1-13");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "55778904-0299-11f1-b1b8-4ef0c4956feb";

    #[test]
    fn mysql_set_round_trips_and_merges() {
        let set: MysqlGtidSet = format!("{UUID}:1-5:7, {UUID}:6").parse().unwrap();
        assert_eq!(set.to_string(), format!("{UUID}:1-7"));
        let tagged: MysqlGtidSet = format!("{UUID}:1-13:mytag:1-2").parse().unwrap();
        assert_eq!(tagged.to_string(), format!("{UUID}:1-13:mytag:1-2"));
    }

    #[test]
    fn mysql_set_add_extends_and_fills_gaps() {
        let mut set: MysqlGtidSet = format!("{UUID}:1-3:5").parse().unwrap();
        let sid = set.iter().next().unwrap().0.clone();
        set.add(&sid, 4);
        assert_eq!(set.to_string(), format!("{UUID}:1-5"));
        set.add(&sid, 6);
        assert!(set.contains(&sid, 6));
        assert!(!set.contains(&sid, 7));
    }

    #[test]
    fn mysql_set_rejects_garbage_with_reason() {
        let err = "not-a-uuid:1".parse::<MysqlGtidSet>().unwrap_err();
        assert!(err.to_string().contains("is not a UUID"), "{err}");
        let err = format!("{UUID}:5-3").parse::<MysqlGtidSet>().unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert!(UUID.parse::<MysqlGtidSet>().is_err());
    }

    #[test]
    fn mariadb_pos_keeps_last_per_domain() {
        let mut pos: MariadbGtidPos = "0-1-100,1-2-5".parse().unwrap();
        pos.update(MariadbGtid {
            domain: 0,
            server_id: 1,
            sequence: 101,
        });
        assert_eq!(pos.to_string(), "0-1-101,1-2-5");
        assert!("0-1-1,0-1-2".parse::<MariadbGtidPos>().is_err());
        assert!("0-x-1".parse::<MariadbGtidPos>().is_err());
    }

    #[test]
    fn state_tells_dialect_by_shape() {
        assert!(matches!(
            GtidState::parse("0-1-5").unwrap(),
            GtidState::Mariadb(_)
        ));
        assert!(matches!(
            GtidState::parse(&format!("{UUID}:1-2")).unwrap(),
            GtidState::Mysql(_)
        ));
    }
}
