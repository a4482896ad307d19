//! Placing the events of a live binlog stream: which file each is in and
//! where it starts and ends, which the stream itself only tells through
//! ROTATE events, header end positions and the TRANSACTION_PAYLOAD an event
//! was unpacked from.

use std::sync::Arc;

use mysql_common::binlog::{consts::EventType as Bt, events::Event};

use super::{Damage, SourceError};
use crate::binlog::{
    event::{ARTIFICIAL_FLAG, SourceEvent, rotated_journal, verify_checksum},
    file::{PayloadError, unpack_transaction_payload},
    replica::{DumpStart, ServerInfo},
};

/// Gives each event of a live stream its file and offsets: the journal from
/// ROTATE events, offsets from each header's end position, the payload's
/// position for events mysql_async unpacks from a TRANSACTION_PAYLOAD.
pub(super) struct StreamAdapter {
    journal: Arc<str>,
    checksum: bool,
    payload: Option<PayloadInProgress>,
    seen_format: bool,
}

struct PayloadInProgress {
    start: u64,
    end: u64,
    inner_seen: usize,
    expected: usize,
}

impl StreamAdapter {
    /// An adapter for a dump from `start`.
    pub(super) fn new(info: &ServerInfo, start: &DumpStart) -> Self {
        let journal = match start {
            DumpStart::File { journal, .. } => journal.as_str(),
            DumpStart::Gtid(_) => "",
        };
        StreamAdapter {
            journal: Arc::from(journal),
            checksum: info.checksum,
            payload: None,
            seen_format: false,
        }
    }

    /// Places one stream event; `None` for events that only carry position.
    pub(super) fn place(&mut self, event: Event) -> Result<Option<SourceEvent>, SourceError> {
        let header = event.header();
        let code = header.event_type_raw();
        let log_pos = u64::from(header.log_pos());
        let size = u64::from(header.event_size());
        if let Some((start, end)) = self.payload_member(log_pos) {
            return Ok(Some(self.placed(event, start, end, true)));
        }
        let offset = log_pos.saturating_sub(size);
        if code == Bt::ROTATE_EVENT as u8 {
            let strip_checksum = self.checksum && !self.seen_format;
            self.journal = rotated_journal(&event, strip_checksum)
                .map_err(|e| self.damaged(offset, Damage::Rotate(e)))?;
            return Ok(None);
        }
        if code == Bt::FORMAT_DESCRIPTION_EVENT as u8 {
            self.seen_format = true;
        }
        if code == Bt::HEARTBEAT_EVENT as u8 {
            return Ok(None);
        }
        verify_checksum(&event).map_err(|e| self.damaged(offset, Damage::Checksum(e)))?;
        let artificial = header.flags_raw() & ARTIFICIAL_FLAG != 0 || log_pos == 0;
        let (start, end) = if artificial || log_pos < size {
            (0, 0)
        } else {
            (log_pos - size, log_pos)
        };
        let placed = self.placed(event, start, end, false);
        if code == Bt::TRANSACTION_PAYLOAD_EVENT as u8 {
            self.begin_payload(&placed)
                .map_err(|e| self.damaged(offset, Damage::Payload(e)))?;
        } else if let Some(payload) = &self.payload
            && payload.inner_seen < payload.expected
        {
            let missing = payload.expected - payload.inner_seen;
            return Err(self.damaged(offset, Damage::PayloadIncomplete { missing }));
        }
        Ok(Some(placed))
    }

    fn damaged(&self, offset: u64, damage: Damage) -> SourceError {
        SourceError::Damaged {
            journal: self.journal.to_string(),
            offset,
            damage,
        }
    }

    fn placed(&self, event: Event, start: u64, end: u64, in_payload: bool) -> SourceEvent {
        SourceEvent {
            event,
            journal: self.journal.clone(),
            start,
            end,
            in_payload,
        }
    }

    /// The payload's offsets when the event is one mysql_async unpacked from
    /// the TRANSACTION_PAYLOAD before it (those come with log_pos 0); any
    /// other event ends the payload.
    fn payload_member(&mut self, log_pos: u64) -> Option<(u64, u64)> {
        let payload = self.payload.as_mut()?;
        if log_pos == 0 && payload.inner_seen < payload.expected {
            payload.inner_seen += 1;
            return Some((payload.start, payload.end));
        }
        self.payload = None;
        None
    }

    /// Starts counting the events of a TRANSACTION_PAYLOAD. mysql_async
    /// unpacks the payload and yields its events next (with log_pos 0);
    /// counting them makes a payload it failed to unpack an error here
    /// rather than a silently missing transaction.
    fn begin_payload(&mut self, placed: &SourceEvent) -> Result<(), PayloadError> {
        let mut reader = mysql_common::binlog::EventStreamReader::new(
            mysql_common::binlog::consts::BinlogVersion::Version4,
        );
        let expected = unpack_transaction_payload(&mut reader, placed)?.len();
        self.payload = Some(PayloadInProgress {
            start: placed.start,
            end: placed.end,
            inner_seen: 0,
            expected,
        });
        Ok(())
    }
}
