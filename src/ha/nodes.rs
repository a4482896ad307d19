//! canal's HA nodes in ZooKeeper and their JSON:
//!
//! ```text
//! /otter/canal/cluster/{ip:port}                      ephemeral, one per server process
//! /otter/canal/destinations/{dest}/cluster/{ip:port}  ephemeral, every server able to run {dest}
//! /otter/canal/destinations/{dest}/running            ephemeral, {"active":true,"address":"ip:port"}
//! /otter/canal/destinations/{dest}/{cid}/running      ephemeral, client-side lock
//! ```

use serde::{Deserialize, Serialize};
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, Stat};

/// Root of every destination's nodes (cursors and HA alike).
pub const DESTINATIONS: &str = "/otter/canal/destinations";

/// Parent of the server members.
pub const CLUSTER: &str = "/otter/canal/cluster";

/// This server's member node.
pub fn server_member(address: &str) -> String {
    format!("{CLUSTER}/{address}")
}

/// A destination's node (parent of its clients, `running` and `cluster`).
pub fn destination(destination: &str) -> String {
    format!("{DESTINATIONS}/{destination}")
}

/// This server's member node under a destination it can run.
pub fn destination_member(destination: &str, address: &str) -> String {
    format!("{DESTINATIONS}/{destination}/cluster/{address}")
}

/// The node the active server of a destination holds.
pub fn running(destination: &str) -> String {
    format!("{DESTINATIONS}/{destination}/running")
}

/// The node the active client of a destination holds (canal's client-side lock).
pub fn client_running(destination: &str, client_id: &str) -> String {
    format!("{DESTINATIONS}/{destination}/{client_id}/running")
}

/// canal's ServerRunningData. `cid` (written by old servers) is ignored,
/// as are other unknown keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRunning {
    /// `false` asks the owner to release the destination (a planned hand-over).
    #[serde(default = "yes")]
    pub active: bool,
    /// The owner's registered `ip:port`.
    #[serde(default)]
    pub address: String,
}

/// canal's ClientRunningData.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRunning {
    /// Whether the client is active.
    #[serde(default = "yes")]
    pub active: bool,
    /// The client's `ip:port`.
    #[serde(default)]
    pub address: String,
    /// The client id.
    #[serde(default)]
    pub client_id: i64,
}

fn yes() -> bool {
    true
}

impl ServerRunning {
    /// The data an active server writes.
    pub fn active(address: &str) -> Self {
        ServerRunning {
            active: true,
            address: address.to_owned(),
        }
    }

    /// The node data, as canal writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses the node's data; `None` for data that is not canal's JSON.
    pub fn parse(data: &[u8]) -> Option<Self> {
        serde_json::from_slice(data).ok()
    }
}

impl ClientRunning {
    /// The node data, as canal writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses the node's data; `None` for data that is not canal's JSON.
    pub fn parse(data: &[u8]) -> Option<Self> {
        serde_json::from_slice(data).ok()
    }
}

/// Creates a persistent node and its parents when missing.
pub async fn ensure_persistent(client: &Client, path: &str) -> Result<(), ZkError> {
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    match client.mkdir(path, &options).await {
        Ok(()) | Err(ZkError::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates an ephemeral node of this session (parents as needed).
pub async fn create_ephemeral(client: &Client, path: &str, data: &[u8]) -> Result<Stat, ZkError> {
    let options = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    match client.create(path, data, &options).await {
        Ok((stat, _)) => Ok(stat),
        Err(ZkError::NoNode) => {
            if let Some((parent, _)) = path.rsplit_once('/') {
                ensure_persistent(client, parent).await?;
            }
            client
                .create(path, data, &options)
                .await
                .map(|(stat, _)| stat)
        }
        Err(e) => Err(e),
    }
}

/// Deletes `path` if this session owns it.
pub async fn delete_own(client: &Client, path: &str) -> Result<(), ZkError> {
    match client.check_stat(path).await? {
        Some(stat) if stat.ephemeral_owner == client.session_id().0 => {
            match client.delete(path, Some(stat.version)).await {
                Ok(()) | Err(ZkError::NoNode) => Ok(()),
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_running_json_is_canals() {
        let json = ServerRunning::active("10.0.0.5:11111").to_json();
        assert_eq!(json, br#"{"active":true,"address":"10.0.0.5:11111"}"#);
        let old = ServerRunning::parse(br#"{"active":false,"address":"a:1","cid":1}"#).unwrap();
        assert_eq!(
            old,
            ServerRunning {
                active: false,
                address: "a:1".into()
            }
        );
        assert_eq!(ServerRunning::parse(b"not json"), None);
        let client = ClientRunning {
            active: true,
            address: "172.17.0.125:52603".into(),
            client_id: 1001,
        };
        assert_eq!(
            client.to_json(),
            br#"{"active":true,"address":"172.17.0.125:52603","clientId":1001}"#
        );
    }
}
