//! GTID events of both servers: the executed GTID state the decoder keeps
//! (for resuming and for canal's `gtid` header), the GTID of the
//! transaction being decoded, and MariaDB's GTID event that opens a
//! transaction without a BEGIN query.

use std::sync::Arc;

use mysql_common::binlog::events::GtidEvent;

use crate::{
    binlog::{
        change::ChangeEvent,
        event::SourceEvent,
        gtid::{self, GtidState, MariadbGtidPos, MysqlGtidSet, MysqlSid},
        mariadb::{self, MariadbGtidEvent},
    },
    protocol::entry::TransactionBegin,
};

use super::{DecodeError, Decoder};

/// The GTID of the transaction being decoded.
#[derive(Debug, Clone)]
pub(super) enum CurrentGtid {
    Mysql {
        text: String,
        last_committed: i64,
        sequence_number: i64,
    },
    Mariadb(String),
}

/// `uuid[:tag]:gno`, as canal's `curtGtid` prop shows a MySQL GTID.
fn mysql_gtid_text(sid: &MysqlSid, gno: u64) -> String {
    let mut text = gtid::format_uuid(&sid.uuid);
    if !sid.tag.is_empty() {
        text.push(':');
        text.push_str(&sid.tag);
    }
    text.push(':');
    text.push_str(&gno.to_string());
    text
}

impl Decoder {
    /// MySQL's GTID (or tagged GTID) event: a new event group.
    pub(super) fn decode_mysql_gtid(&mut self, event: &SourceEvent) -> Result<(), DecodeError> {
        let gtid = event
            .parse::<GtidEvent>()
            .map_err(|e| DecodeError::malformed(event, e))?;
        self.in_group = true;
        let sid = MysqlSid {
            uuid: gtid.sid(),
            tag: gtid
                .tag()
                .map(|t| t.as_str().to_ascii_lowercase())
                .unwrap_or_default(),
        };
        let text = mysql_gtid_text(&sid, gtid.gno());
        match &mut self.gtid_state {
            Some(GtidState::Mysql(set)) => set.add(&sid, gtid.gno()),
            _ => {
                let mut set = MysqlGtidSet::default();
                set.add(&sid, gtid.gno());
                self.gtid_state = Some(GtidState::Mysql(set));
            }
        }
        self.refresh_gtid_text();
        self.current_gtid = Some(CurrentGtid::Mysql {
            text,
            last_committed: gtid.last_committed() as i64,
            sequence_number: gtid.sequence_number() as i64,
        });
        Ok(())
    }

    /// MySQL's PREVIOUS_GTIDS: the executed state at the start of a file,
    /// taken when no state is known yet.
    pub(super) fn decode_previous_gtids(&mut self, event: &SourceEvent) -> Result<(), DecodeError> {
        let set = gtid::parse_previous_gtids(event.event.data()).ok_or_else(|| {
            DecodeError::malformed(event, "GTID set is truncated or inconsistent")
        })?;
        if self.gtid_state.is_none() {
            self.set_gtid_state(Some(GtidState::Mysql(set)));
        }
        Ok(())
    }

    /// MariaDB's GTID event: a new event group, and with it the transaction
    /// unless the group is standalone.
    pub(super) fn decode_mariadb_gtid(
        &mut self,
        event: &SourceEvent,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), DecodeError> {
        let gtid = MariadbGtidEvent::parse(event.event.data(), event.event.header().server_id())
            .ok_or_else(|| DecodeError::malformed(event, "body too short"))?;
        match &mut self.gtid_state {
            Some(GtidState::Mariadb(pos)) => pos.update(gtid.gtid),
            _ => {
                let mut pos = MariadbGtidPos::default();
                pos.update(gtid.gtid);
                self.gtid_state = Some(GtidState::Mariadb(pos));
            }
        }
        self.refresh_gtid_text();
        self.current_gtid = Some(CurrentGtid::Mariadb(gtid.gtid.to_string()));
        self.in_group = true;
        // With GTID capability MariaDB sends no BEGIN query: the GTID event of
        // a non-standalone group opens the transaction.
        if !gtid.is_standalone() && gtid.flags & MariadbGtidEvent::COMPLETED_XA == 0 {
            self.push_transaction_begin(event, out, &TransactionBegin::default());
        }
        Ok(())
    }

    /// MariaDB's GTID_LIST: the executed state at the start of a file, taken
    /// when no state is known yet.
    pub(super) fn decode_mariadb_gtid_list(
        &mut self,
        event: &SourceEvent,
    ) -> Result<(), DecodeError> {
        let list = mariadb::parse_gtid_list(event.event.data())
            .ok_or_else(|| DecodeError::malformed(event, "GTID list is truncated"))?;
        if self.gtid_state.is_none() && !list.is_empty() {
            let mut pos = MariadbGtidPos::default();
            for gtid in list {
                pos.update(gtid);
            }
            self.set_gtid_state(Some(GtidState::Mariadb(pos)));
        }
        Ok(())
    }

    fn refresh_gtid_text(&mut self) {
        if self.options.gtid_header {
            self.gtid_text = self.gtid_state.as_ref().map(|s| Arc::from(s.to_string()));
        }
    }
}
