//! Cursors in a local file, in canal's `meta.dat` format
//! (`<canal.file.data.dir>/<destination>/meta.dat`), so a Java canal
//! deployment's file cursors are read as they are. Written atomically:
//! temporary file, fsync, rename.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde_json::{Value, json};

use super::{ClientRecord, CursorError, CursorRecord, CursorStore, json as cursor_json};
use crate::store::ClientId;

/// `meta.dat` of one destination.
#[derive(Debug)]
pub struct FileCursors {
    destination: String,
    path: PathBuf,
    /// Serializes writers within the process.
    lock: Mutex<()>,
}

impl FileCursors {
    /// Cursors of `destination` in `directory` (canal's
    /// `<canal.file.data.dir>/<destination>`), file `meta.dat`.
    pub fn new(directory: &Path, destination: &str) -> Self {
        FileCursors {
            destination: destination.to_owned(),
            path: directory.join("meta.dat"),
            lock: Mutex::new(()),
        }
    }

    fn error(&self, reason: impl ToString) -> CursorError {
        CursorError::File {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn read(&self) -> Result<BTreeMap<ClientId, ClientRecord>, CursorError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.error(e)),
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(BTreeMap::new());
        }
        let document: Value = serde_json::from_slice(&text)
            .map_err(|e| self.error(format!("not valid JSON: {e}")))?;
        let mut clients = BTreeMap::new();
        for data in document
            .get("clientDatas")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let identity = data.get("clientIdentity");
            let Some(client) = identity
                .and_then(|i| i.get("clientId"))
                .and_then(Value::as_i64)
                .and_then(|c| ClientId::try_from(c).ok())
            else {
                return Err(
                    self.error("a clientDatas entry has no numeric clientIdentity.clientId")
                );
            };
            let filter = identity
                .and_then(|i| i.get("filter"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let cursor = match data.get("cursor").filter(|c| !c.is_null()) {
                Some(cursor) => Some(cursor_json::parse(cursor.to_string().as_bytes()).map_err(
                    |source| CursorError::Json {
                        path: self.path.display().to_string(),
                        source,
                    },
                )?),
                None => None,
            };
            clients.insert(client, ClientRecord { cursor, filter });
        }
        Ok(clients)
    }

    fn write(&self, clients: &BTreeMap<ClientId, ClientRecord>) -> Result<(), CursorError> {
        let datas: Vec<Value> = clients
            .iter()
            .map(|(client, record)| {
                let mut data = json!({
                    "clientIdentity": {"clientId": client, "destination": self.destination, "filter": record.filter}
                });
                if let Some(cursor) = &record.cursor {
                    data["cursor"] = cursor_json::to_value(cursor);
                }
                data
            })
            .collect();
        let document = json!({"clientDatas": datas, "destination": self.destination});
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        let temporary = self.path.with_extension("dat.tmp");
        let mut file = std::fs::File::create(&temporary).map_err(|e| self.error(e))?;
        file.write_all(document.to_string().as_bytes())
            .map_err(|e| self.error(e))?;
        file.sync_all().map_err(|e| self.error(e))?;
        drop(file);
        std::fs::rename(&temporary, &self.path).map_err(|e| self.error(e))?;
        // Make the rename itself durable.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<ClientId, ClientRecord>),
    ) -> Result<(), CursorError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut clients = self.read()?;
        change(&mut clients);
        self.write(&clients)
    }
}

#[async_trait::async_trait]
impl CursorStore for FileCursors {
    async fn load(&self) -> Result<BTreeMap<ClientId, ClientRecord>, CursorError> {
        self.read()
    }

    async fn subscribe(&self, client: ClientId, filter: &str) -> Result<(), CursorError> {
        self.update(|clients| {
            let record = clients.entry(client).or_default();
            if !filter.is_empty() {
                record.filter = filter.to_owned();
            }
        })
    }

    async fn save_cursor(
        &self,
        client: ClientId,
        cursor: &CursorRecord,
    ) -> Result<(), CursorError> {
        self.update(|clients| clients.entry(client).or_default().cursor = Some(cursor.clone()))
    }

    async fn unsubscribe(&self, client: ClientId) -> Result<(), CursorError> {
        self.update(|clients| {
            clients.remove(&client);
        })
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::position::LogPosition;

    #[tokio::test]
    async fn reads_canal_meta_dat_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("canal-cursor-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("example")).unwrap();
        std::fs::write(
            dir.join("example/meta.dat"),
            r#"{"clientDatas":[{"clientIdentity":{"clientId":1001,"destination":"example","filter":""},"cursor":{"identity":{"slaveId":-1,"sourceAddress":{"address":"localhost","port":3306}},"postion":{"gtid":"","included":false,"journalName":"mysql-bin.000001","position":4450,"serverId":1,"timestamp":1577155813000}}}],"destination":"example"}"#,
        )
        .unwrap();
        let store = FileCursors::new(&dir.join("example"), "example");
        let clients = store.load().await.unwrap();
        assert_eq!(
            clients[&1001].cursor.as_ref().unwrap().position.position,
            4450
        );
        let cursor = CursorRecord {
            position: LogPosition::new("mysql-bin.000002", 99),
            source_host: "127.0.0.1".into(),
            source_port: 3306,
        };
        store.save_cursor(1002, &cursor).await.unwrap();
        store.subscribe(1002, r"db\..*").await.unwrap();
        let clients = store.load().await.unwrap();
        assert_eq!(clients.len(), 2);
        assert_eq!(clients[&1002].cursor.as_ref().unwrap(), &cursor);
        assert_eq!(clients[&1002].filter, r"db\..*");
        store.unsubscribe(1001).await.unwrap();
        assert_eq!(store.load().await.unwrap().len(), 1);
        std::fs::write(dir.join("example/meta.dat"), "{broken").unwrap();
        assert!(
            store
                .load()
                .await
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
