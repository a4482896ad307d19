//! What canal's cluster connectors do in ZooKeeper: find the active server
//! of a destination (`{dest}/running`) and hold the client-side lock
//! (`{dest}/{cid}/running`) so that one consumer per client id is active
//! and the others wait.

use zookeeper_client::{Client, Error as ZkError, EventType, SessionState};

use crate::ha::nodes::{self, ClientRunning, ServerRunning};

/// The `ip:port` of the server running `destination`, if one does.
pub async fn active_server(
    zookeeper: &Client,
    destination: &str,
) -> Result<Option<String>, ZkError> {
    match zookeeper.get_data(&nodes::running(destination)).await {
        Ok((data, _)) => Ok(ServerRunning::parse(&data)
            .filter(|r| r.active && !r.address.is_empty())
            .map(|r| r.address)),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The client-side lock `{dest}/{cid}/running`, held by this session.
pub struct ClientLock {
    zookeeper: Client,
    path: String,
    client_id: i64,
}

impl ClientLock {
    /// Waits until this session holds the lock of `client_id`; `address`
    /// identifies this consumer in the node (canal writes its host, then
    /// the `ip:port` of its connection).
    pub async fn acquire(
        zookeeper: &Client,
        destination: &str,
        client_id: &str,
        address: &str,
    ) -> Result<ClientLock, ZkError> {
        let path = nodes::client_running(destination, client_id);
        let client_number = client_id.trim().parse().unwrap_or_default();
        let data = ClientRunning {
            active: true,
            address: address.to_owned(),
            client_id: client_number,
        };
        let mut reported = false;
        loop {
            match nodes::create_ephemeral(zookeeper, &path, &data.to_json()).await {
                Ok(_) => {
                    return Ok(ClientLock {
                        zookeeper: zookeeper.clone(),
                        path,
                        client_id: client_number,
                    });
                }
                Err(ZkError::NodeExists) => {}
                Err(e) => return Err(e),
            }
            let (holder, stat, watcher) = match zookeeper.get_and_watch_data(&path).await {
                Ok(read) => read,
                Err(ZkError::NoNode) => continue,
                Err(e) => return Err(e),
            };
            if stat.ephemeral_owner == zookeeper.session_id().0 {
                return Ok(ClientLock {
                    zookeeper: zookeeper.clone(),
                    path,
                    client_id: client_number,
                });
            }
            if !reported {
                let holder = ClientRunning::parse(&holder).map(|h| h.address);
                tracing::info!(
                    destination,
                    client_id,
                    holder = holder.as_deref().unwrap_or("?"),
                    "another consumer holds this client id; standing by"
                );
                reported = true;
            }
            watcher.changed().await;
        }
    }

    /// Records the consumer's connection address in the node.
    pub async fn set_address(&self, address: &str) -> Result<(), ZkError> {
        let data = ClientRunning {
            active: true,
            address: address.to_owned(),
            client_id: self.client_id,
        };
        self.zookeeper
            .set_data(&self.path, &data.to_json(), None)
            .await
            .map(|_| ())
    }

    /// Resolves when the lock is no longer held: the node was deleted or
    /// the session ended.
    pub async fn lost(&self) {
        loop {
            match self.zookeeper.check_and_watch_stat(&self.path).await {
                Ok((Some(stat), watcher))
                    if stat.ephemeral_owner == self.zookeeper.session_id().0 =>
                {
                    let event = watcher.changed().await;
                    if event.event_type == EventType::Session
                        && matches!(
                            event.session_state,
                            SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
                        )
                    {
                        return;
                    }
                }
                Ok(_) => return,
                Err(error) if error_is_terminal(&error) => return,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }

    /// Gives the lock up so a standby consumer takes over.
    pub async fn release(self) {
        let _ = nodes::delete_own(&self.zookeeper, &self.path).await;
    }
}

fn error_is_terminal(error: &ZkError) -> bool {
    matches!(
        error,
        ZkError::SessionExpired | ZkError::ClientClosed | ZkError::AuthFailed | ZkError::NoHosts
    )
}
