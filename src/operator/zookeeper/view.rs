//! The operator's picture of one destination's nodes (plain data), and how
//! each node's bytes become part of it. Nothing here talks to ZooKeeper.

use crate::{cursor::json, ha::nodes::ServerRunning};

/// What the operator knows about one destination.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// No answer from ZooKeeper yet.
    Connecting,
    /// ZooKeeper cannot be read (or the key is unusable): why. The last
    /// view may be stale.
    Unreachable(String),
    /// The destination's nodes as last read.
    Seen(DestinationView),
}

/// `/otter/canal/destinations/{dest}` as last read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DestinationView {
    /// `{dest}/running`: the server holding the destination, if any.
    pub running: Option<RunningView>,
    /// Children of `{dest}/cluster` (the `ip:port` of every server able to
    /// run the destination), sorted.
    pub members: Vec<String>,
    /// `{dest}/{clientId}/cursor` of every client that has one, in client
    /// id order. Clients without a cursor yet are not listed.
    pub cursors: Vec<ClientCursor>,
}

/// The `running` node.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningView {
    /// The holder's `ip:port`; empty when the node's data is not canal's
    /// JSON (someone holds the lock, but who is unknown).
    pub address: String,
    /// `false` while the holder is asked to release.
    pub active: bool,
    /// When the node was created: since when the holder is active.
    pub since: jiff::Timestamp,
}

/// One client's acknowledged position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCursor {
    /// The client (a numeric child of `{dest}`).
    pub client_id: String,
    /// Binlog file; with `position` where the client resumes (empty when
    /// the cursor holds a GTID only, or when `error` is set).
    pub journal_name: String,
    /// The offset in `journal_name`.
    pub position: u64,
    /// The GTID set (MySQL) or position (MariaDB), when recorded.
    pub gtid: Option<String>,
    /// The acknowledged event's time, ms since the epoch (0: unknown).
    pub timestamp_ms: i64,
    /// The source server's id, when recorded.
    pub server_id: Option<u32>,
    /// Why the cursor node could not be read (the fields above are then
    /// empty); other clients are unaffected.
    pub error: Option<String>,
}

impl RunningView {
    /// From the node's data and its creation time (`Stat::ctime`, ms).
    pub fn from_node(data: &[u8], ctime_ms: i64) -> RunningView {
        let running = ServerRunning::parse(data);
        RunningView {
            address: running
                .as_ref()
                .map(|r| r.address.clone())
                .unwrap_or_default(),
            active: running.is_none_or(|r| r.active),
            since: jiff::Timestamp::from_millisecond(ctime_ms)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        }
    }
}

impl ClientCursor {
    /// From a cursor node's data; `None` for an empty node (no cursor
    /// written yet, as canal-server reads it).
    pub fn from_node(client_id: &str, path: &str, data: &[u8]) -> Option<ClientCursor> {
        if data.is_empty() {
            return None;
        }
        Some(match json::parse(data) {
            Ok(record) => {
                let position = record.position;
                ClientCursor {
                    client_id: client_id.to_owned(),
                    journal_name: position.journal_name,
                    position: position.position,
                    gtid: Some(position.gtid).filter(|g| !g.is_empty()),
                    timestamp_ms: position.timestamp_ms,
                    server_id: Some(position.server_id).filter(|&id| id != 0),
                    error: None,
                }
            }
            Err(error) => ClientCursor::failed(
                client_id,
                format!(
                    "{path}: {error}; canal-server cannot start the destination from it \
                     until it is fixed or reset (spec.cursorReset)"
                ),
            ),
        })
    }

    /// A cursor that could not be read, and why.
    pub fn failed(client_id: &str, error: String) -> ClientCursor {
        ClientCursor {
            client_id: client_id.to_owned(),
            journal_name: String::new(),
            position: 0,
            gtid: None,
            timestamp_ms: 0,
            server_id: None,
            error: Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANAL: &[u8] = br#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition",
        "identity":{"slaveId":-1,"sourceAddress":{"address":"localhost","port":3306}},
        "postion":{"gtid":"","included":false,"journalName":"mysql-bin.000018","position":1689,"serverId":1,"timestamp":1605775168000}}"#;

    #[test]
    fn running_node() {
        let view = RunningView::from_node(
            br#"{"active":true,"address":"10.0.0.5:11111","cid":1}"#,
            1_700_000_000_123,
        );
        assert_eq!(view.address, "10.0.0.5:11111");
        assert!(view.active);
        assert_eq!(view.since.as_millisecond(), 1_700_000_000_123);
        let releasing = RunningView::from_node(br#"{"active":false,"address":"a:1"}"#, 0);
        assert!(!releasing.active);
        let garbage = RunningView::from_node(b"\xff not json", -1);
        assert_eq!((garbage.address.as_str(), garbage.active), ("", true));
    }

    #[test]
    fn cursor_nodes() {
        let cursor = ClientCursor::from_node("1001", "/p", CANAL).unwrap();
        assert_eq!(
            cursor,
            ClientCursor {
                client_id: "1001".into(),
                journal_name: "mysql-bin.000018".into(),
                position: 1689,
                gtid: None,
                timestamp_ms: 1_605_775_168_000,
                server_id: Some(1),
                error: None,
            }
        );
        let gtid = ClientCursor::from_node("7", "/p", br#"{"postion":{"gtid":"0-1-5"}}"#).unwrap();
        assert_eq!(
            (gtid.gtid.as_deref(), gtid.server_id),
            (Some("0-1-5"), None)
        );
        assert_eq!(ClientCursor::from_node("1", "/p", b""), None);
        let broken = ClientCursor::from_node("2", "/otter/x/2/cursor", b"{not json").unwrap();
        let error = broken.error.unwrap();
        assert!(
            error.starts_with("/otter/x/2/cursor: cursor is not valid JSON"),
            "{error}"
        );
        assert_eq!((broken.journal_name.as_str(), broken.position), ("", 0));
    }
}
