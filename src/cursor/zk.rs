//! Cursors in ZooKeeper at canal's paths, so Java canal and canal clients
//! read ours and we read theirs:
//!
//! ```text
//! /otter/canal/destinations/{dest}/{cid}          persistent (the subscription)
//! /otter/canal/destinations/{dest}/{cid}/cursor   LogPosition JSON
//! /otter/canal/destinations/{dest}/{cid}/filter   raw UTF-8 filter text
//! ```

use std::{collections::BTreeMap, sync::Arc};

use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError};

use super::{ClientRecord, CursorError, CursorRecord, CursorStore, json as cursor_json};
use crate::{ha::ZkSession, store::ClientId};

/// Root of every destination's nodes; canal's layout is described in
/// [`crate::ha::nodes`].
pub use crate::ha::nodes::DESTINATIONS;

/// One destination's client nodes.
#[derive(Debug, Clone)]
pub struct ZkCursors {
    session: Arc<ZkSession>,
    destination: String,
}

impl ZkCursors {
    /// Cursors through a fixed client (tools and tests).
    pub fn new(client: Client, destination: &str) -> Self {
        Self::with_session(ZkSession::from_client(client), destination)
    }

    /// Cursors through the process's session, whichever client is current.
    pub fn with_session(session: Arc<ZkSession>, destination: &str) -> Self {
        ZkCursors {
            session,
            destination: destination.to_owned(),
        }
    }

    fn client(&self) -> Client {
        self.session.client()
    }

    fn destination_path(&self) -> String {
        format!("{DESTINATIONS}/{}", self.destination)
    }

    fn client_path(&self, client: ClientId) -> String {
        format!("{}/{client}", self.destination_path())
    }

    fn error(path: &str, error: ZkError) -> CursorError {
        CursorError::ZooKeeper {
            path: path.to_owned(),
            reason: error.to_string(),
        }
    }

    /// Creates a persistent node and its parents when missing.
    async fn ensure(&self, path: &str) -> Result<(), CursorError> {
        let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
        match self.client().mkdir(path, &options).await {
            Ok(()) | Err(ZkError::NodeExists) => Ok(()),
            Err(e) => Err(Self::error(path, e)),
        }
    }

    /// Writes `data` to a persistent node, creating it when missing.
    async fn put(&self, path: &str, data: &[u8]) -> Result<(), CursorError> {
        match self.client().set_data(path, data, None).await {
            Ok(_) => Ok(()),
            Err(ZkError::NoNode) => {
                if let Some((parent, _)) = path.rsplit_once('/') {
                    self.ensure(parent).await?;
                }
                let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
                match self.client().create(path, data, &options).await {
                    Ok(_) => Ok(()),
                    // Created concurrently: write over it.
                    Err(ZkError::NodeExists) => self
                        .client()
                        .set_data(path, data, None)
                        .await
                        .map(|_| ())
                        .map_err(|e| Self::error(path, e)),
                    Err(e) => Err(Self::error(path, e)),
                }
            }
            Err(e) => Err(Self::error(path, e)),
        }
    }

    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, CursorError> {
        match self.client().get_data(path).await {
            Ok((data, _)) => Ok(Some(data)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(Self::error(path, e)),
        }
    }

    /// Deletes a node and everything below it.
    async fn delete_tree(&self, path: &str) -> Result<(), CursorError> {
        let children = match self.client().list_children(path).await {
            Ok(children) => children,
            Err(ZkError::NoNode) => return Ok(()),
            Err(e) => return Err(Self::error(path, e)),
        };
        for child in children {
            Box::pin(self.delete_tree(&format!("{path}/{child}"))).await?;
        }
        match self.client().delete(path, None).await {
            Ok(()) | Err(ZkError::NoNode) => Ok(()),
            Err(e) => Err(Self::error(path, e)),
        }
    }
}

#[async_trait::async_trait]
impl CursorStore for ZkCursors {
    async fn load(&self) -> Result<BTreeMap<ClientId, ClientRecord>, CursorError> {
        let path = self.destination_path();
        let children = match self.client().list_children(&path).await {
            Ok(children) => children,
            Err(ZkError::NoNode) => return Ok(BTreeMap::new()),
            Err(e) => return Err(Self::error(&path, e)),
        };
        let mut clients = BTreeMap::new();
        // Every numeric child is a client id (canal's rule); others
        // (`running`, `cluster`) are not.
        for child in children {
            let Ok(client) = child.parse::<ClientId>() else {
                continue;
            };
            let base = self.client_path(client);
            let cursor_path = format!("{base}/cursor");
            let cursor = match self.get(&cursor_path).await? {
                Some(data) if !data.is_empty() => Some(cursor_json::parse(&data).map_err(
                    |source| CursorError::Json {
                        path: cursor_path,
                        source,
                    },
                )?),
                _ => None,
            };
            let filter = self
                .get(&format!("{base}/filter"))
                .await?
                .map(|data| String::from_utf8_lossy(&data).into_owned())
                .unwrap_or_default();
            clients.insert(client, ClientRecord { cursor, filter });
        }
        Ok(clients)
    }

    async fn subscribe(&self, client: ClientId, filter: &str) -> Result<(), CursorError> {
        let base = self.client_path(client);
        self.ensure(&base).await?;
        if !filter.is_empty() {
            self.put(&format!("{base}/filter"), filter.as_bytes())
                .await?;
        }
        Ok(())
    }

    async fn save_cursor(
        &self,
        client: ClientId,
        cursor: &CursorRecord,
    ) -> Result<(), CursorError> {
        let path = format!("{}/cursor", self.client_path(client));
        self.put(&path, cursor_json::to_json(cursor).as_bytes())
            .await
    }

    async fn unsubscribe(&self, client: ClientId) -> Result<(), CursorError> {
        self.delete_tree(&self.client_path(client)).await
    }

    fn describe(&self) -> String {
        format!("ZooKeeper {}", self.destination_path())
    }
}
