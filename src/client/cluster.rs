//! Finding the active server of a destination in ZooKeeper, as canal's
//! cluster connectors do: `/otter/canal/destinations/{dest}/running` holds
//! `{"active":true,"address":"ip:port"}` while a server runs it.

use serde::Deserialize;
use zookeeper_client::{Client, Error as ZkError};

use crate::cursor::zk::DESTINATIONS;

#[derive(Deserialize)]
struct Running {
    #[serde(default)]
    active: bool,
    #[serde(default)]
    address: String,
}

/// The `ip:port` of the server running `destination`, if one does.
pub async fn active_server(
    zookeeper: &Client,
    destination: &str,
) -> Result<Option<String>, ZkError> {
    let path = format!("{DESTINATIONS}/{destination}/running");
    match zookeeper.get_data(&path).await {
        Ok((data, _)) => Ok(serde_json::from_slice::<Running>(&data)
            .ok()
            .filter(|r| r.active && !r.address.is_empty())
            .map(|r| r.address)),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}
