//! canal's cursor JSON (`LogPosition`), as Java canal writes and reads it
//! in ZooKeeper and in `meta.dat`. Note the upstream misspelling
//! `postion`, which every reader expects.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::binlog::position::LogPosition;

/// Why a cursor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorJsonError {
    /// Not JSON, or not canal's shape; the parser's message.
    #[error("cursor is not valid JSON: {0}")]
    Json(String),
    /// Neither a binlog file nor a GTID set to resume from.
    #[error("cursor has no `postion.journalName` and no `postion.gtid`")]
    NoPosition,
}

/// A cursor: the position plus the source it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorRecord {
    /// Where the client resumes.
    pub position: LogPosition,
    /// The MySQL address the position belongs to (`identity.sourceAddress`).
    pub source_host: String,
    /// The MySQL port the position belongs to.
    pub source_port: u16,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    identity: Option<Identity>,
    #[serde(default, alias = "position")]
    postion: Option<Postion>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    #[serde(default)]
    source_address: Option<SourceAddress>,
}

#[derive(Deserialize, Serialize)]
struct SourceAddress {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Postion {
    #[serde(default)]
    gtid: Option<String>,
    #[serde(default)]
    journal_name: Option<String>,
    #[serde(default)]
    position: Option<Value>,
    #[serde(default)]
    server_id: Option<Value>,
    #[serde(default)]
    timestamp: Option<Value>,
}

fn number(value: &Option<Value>) -> Option<i64> {
    match value {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// Reads a cursor written by Java canal or by this server.
pub fn parse(text: &[u8]) -> Result<CursorRecord, CursorJsonError> {
    let wire: Wire =
        serde_json::from_slice(text).map_err(|e| CursorJsonError::Json(e.to_string()))?;
    let postion = wire.postion.ok_or(CursorJsonError::NoPosition)?;
    let journal_name = postion.journal_name.unwrap_or_default();
    let gtid = postion.gtid.unwrap_or_default();
    if journal_name.is_empty() && gtid.is_empty() {
        return Err(CursorJsonError::NoPosition);
    }
    let source = wire.identity.and_then(|i| i.source_address);
    Ok(CursorRecord {
        position: LogPosition {
            journal_name,
            position: number(&postion.position)
                .and_then(|p| u64::try_from(p).ok())
                .unwrap_or(4),
            server_id: number(&postion.server_id)
                .and_then(|s| u32::try_from(s).ok())
                .unwrap_or(0),
            gtid,
            timestamp_ms: number(&postion.timestamp).unwrap_or(0),
        },
        source_host: source
            .as_ref()
            .and_then(|s| s.address.clone())
            .unwrap_or_default(),
        source_port: source.and_then(|s| s.port).unwrap_or(0),
    })
}

/// The cursor JSON Java canal expects (keys in its alphabetical order).
pub fn to_value(record: &CursorRecord) -> Value {
    json!({
        "@type": "com.alibaba.otter.canal.protocol.position.LogPosition",
        "identity": {
            "slaveId": -1,
            "sourceAddress": { "address": record.source_host, "port": record.source_port }
        },
        "postion": {
            "gtid": record.position.gtid,
            "included": false,
            "journalName": record.position.journal_name,
            "position": record.position.position,
            "serverId": record.position.server_id,
            "timestamp": record.position.timestamp_ms
        }
    })
}

/// The cursor as canal writes it (`LogPosition` JSON).
pub fn to_json(record: &CursorRecord) -> String {
    to_value(record).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANAL: &str = r#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition",
        "identity":{"slaveId":-1,"sourceAddress":{"address":"localhost","port":3306}},
        "postion":{"gtid":"","included":false,"journalName":"mysql-bin.000018","position":1689,"serverId":1,"timestamp":1605775168000}}"#;

    #[test]
    fn reads_java_canal_cursor() {
        let record = parse(CANAL.as_bytes()).unwrap();
        assert_eq!(record.position.journal_name, "mysql-bin.000018");
        assert_eq!(record.position.position, 1689);
        assert_eq!(record.position.server_id, 1);
        assert_eq!(record.position.timestamp_ms, 1_605_775_168_000);
        assert_eq!(
            (record.source_host.as_str(), record.source_port),
            ("localhost", 3306)
        );
    }

    #[test]
    fn old_writers_and_unknown_keys() {
        let old = r#"{"postion":{"included":false,"journalName":"mysql-bin.000001","position":4,"timestamp":0},"extra":1}"#;
        let record = parse(old.as_bytes()).unwrap();
        assert_eq!(
            (record.position.server_id, record.position.gtid.as_str()),
            (0, "")
        );
        let gtid_only = r#"{"postion":{"gtid":"0-1-5"}}"#;
        assert_eq!(parse(gtid_only.as_bytes()).unwrap().position.gtid, "0-1-5");
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn round_trip() {
        let record = parse(CANAL.as_bytes()).unwrap();
        let text = to_json(&record);
        assert!(text.contains(r#""postion":{"#) && text.contains(r#""included":false"#));
        assert_eq!(parse(text.as_bytes()).unwrap(), record);
    }
}
