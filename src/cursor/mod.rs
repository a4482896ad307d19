//! Where client cursors live between runs: canal's ZooKeeper layout, a
//! local file in canal's `meta.dat` format, or nowhere (memory profile).
//!
//! A cursor is the client's last acknowledged position (an event start,
//! read with `included=false`). A destination resumes from the smallest
//! cursor over its clients.

pub mod file;
pub mod json;
pub mod zk;

use std::{collections::BTreeMap, sync::Arc};

pub use json::CursorRecord;

use crate::{ha::FailureKind, store::ClientId};

/// Why reading or writing cursors failed.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// The local cursor file could not be read or written.
    #[error("cursor file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What the file system said.
        reason: String,
    },
    /// A ZooKeeper request failed.
    #[error("ZooKeeper {path}: {reason}")]
    ZooKeeper {
        /// The node.
        path: String,
        /// What ZooKeeper (or the connection) said.
        reason: String,
    },
    /// A stored cursor is not canal's JSON.
    #[error("cursor at {path} is unreadable: {source}")]
    Json {
        /// Where the cursor is stored.
        path: String,
        /// What is wrong with it.
        source: json::CursorJsonError,
    },
}

impl CursorError {
    /// Whether trying again can help by itself: ZooKeeper may answer later;
    /// a file the process cannot use, or a cursor it cannot read, needs
    /// someone to look.
    pub fn kind(&self) -> FailureKind {
        match self {
            CursorError::ZooKeeper { .. } => FailureKind::Transient,
            CursorError::File { .. } | CursorError::Json { .. } => FailureKind::Permanent,
        }
    }
}

/// What is known about one client of a destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientRecord {
    /// The last acknowledged position, if the client acknowledged one.
    pub cursor: Option<CursorRecord>,
    /// The filter the client subscribed with (empty: the configured one).
    pub filter: String,
}

/// Persistent client state of one destination.
#[async_trait::async_trait]
pub trait CursorStore: Send + Sync {
    /// Every known client of the destination.
    async fn load(&self) -> Result<BTreeMap<ClientId, ClientRecord>, CursorError>;
    /// Records a subscription (and its filter, when not empty).
    async fn subscribe(&self, client: ClientId, filter: &str) -> Result<(), CursorError>;
    /// Stores the client's latest acknowledged position.
    async fn save_cursor(&self, client: ClientId, cursor: &CursorRecord)
    -> Result<(), CursorError>;
    /// Forgets a client (UNSUBSCRIPTION).
    async fn unsubscribe(&self, client: ClientId) -> Result<(), CursorError>;
    /// Where the cursors live, for logs.
    fn describe(&self) -> String;
}

/// Cursors kept in memory only (`memory-instance.xml`): lost on restart.
#[derive(Debug, Default)]
pub struct MemoryCursors {
    clients: std::sync::Mutex<BTreeMap<ClientId, ClientRecord>>,
}

#[async_trait::async_trait]
impl CursorStore for MemoryCursors {
    async fn load(&self) -> Result<BTreeMap<ClientId, ClientRecord>, CursorError> {
        Ok(self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    async fn subscribe(&self, client: ClientId, filter: &str) -> Result<(), CursorError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let record = clients.entry(client).or_default();
        if !filter.is_empty() {
            record.filter = filter.to_owned();
        }
        Ok(())
    }

    async fn save_cursor(
        &self,
        client: ClientId,
        cursor: &CursorRecord,
    ) -> Result<(), CursorError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.entry(client).or_default().cursor = Some(cursor.clone());
        Ok(())
    }

    async fn unsubscribe(&self, client: ClientId) -> Result<(), CursorError> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&client);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory (lost on restart)".into()
    }
}

/// A shared cursor store.
pub type SharedCursorStore = Arc<dyn CursorStore>;
