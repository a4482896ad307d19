//! One canal server over a [`LiveSchema`], serving destination `example`:
//! in this process, or as a `canal-server` process on canal's file layout.

use std::{path::PathBuf, sync::Arc, time::Duration};

use canal::{
    client::{CanalClient, Login},
    cursor::{MemoryCursors, SharedCursorStore},
    protocol::auth::{Credentials, server_secret},
    server::{InstanceSettings, RunningServer},
};

use super::LiveSchema;
use crate::common::{
    cluster::{ServerProcess, SpawnOptions, test_dir, write_conf},
    live::start_server_with,
};

/// The destination every [`ServerScene`] serves.
pub const DESTINATION: &str = "example";

type SettingsTweak = Box<dyn FnOnce(&mut InstanceSettings) + Send>;

/// What to build: a schema with its tables, then a server for it. By default
/// clients need no login, cursors are kept in memory and the instance has
/// the settings of [`crate::common::live::settings`].
pub struct ServerScene {
    prefix: String,
    tables: Vec<String>,
    credentials: Credentials,
    tweak: SettingsTweak,
    cursors: Option<SharedCursorStore>,
    instance_extra: String,
}

impl ServerScene {
    /// A scene whose schema and test directory are named after `prefix`.
    pub fn new(prefix: &str) -> ServerScene {
        ServerScene {
            prefix: prefix.to_owned(),
            tables: Vec::new(),
            credentials: Credentials::default(),
            tweak: Box::new(|_| {}),
            cursors: None,
            instance_extra: String::new(),
        }
    }

    /// A table to create, as what follows `CREATE TABLE <schema>.`.
    pub fn table(mut self, table: &str) -> ServerScene {
        self.tables.push(table.to_owned());
        self
    }

    /// Clients must log in as `user` with `password`.
    pub fn login(mut self, user: &str, password: &str) -> ServerScene {
        self.credentials = Credentials {
            user: Some(user.to_owned()),
            passwd: Some(server_secret(password)),
        };
        self
    }

    /// Changes the in-process instance's settings before it starts.
    pub fn settings(
        mut self,
        tweak: impl FnOnce(&mut InstanceSettings) + Send + 'static,
    ) -> ServerScene {
        self.tweak = Box::new(tweak);
        self
    }

    /// Keeps the in-process server's cursors in `cursors`.
    pub fn cursors(mut self, cursors: SharedCursorStore) -> ServerScene {
        self.cursors = Some(cursors);
        self
    }

    /// Lines appended to the spawned process's instance.properties.
    pub fn instance_properties(mut self, extra: &str) -> ServerScene {
        self.instance_extra.push_str(extra);
        self
    }

    async fn schema(&self) -> LiveSchema {
        let tables: Vec<&str> = self.tables.iter().map(String::as_str).collect();
        LiveSchema::create(&self.prefix, &tables).await
    }

    /// Creates the schema and starts a server for it in this process.
    pub async fn start(self) -> InProcessServer {
        let schema = self.schema().await;
        let mut settings = schema.settings(DESTINATION);
        (self.tweak)(&mut settings);
        let cursors = self
            .cursors
            .unwrap_or_else(|| Arc::new(MemoryCursors::default()));
        let server = start_server_with(settings, cursors, self.credentials).await;
        InProcessServer { schema, server }
    }

    /// Creates the schema and starts the `canal-server` binary for it, with
    /// canal's configuration layout and file cursors (flushed only on
    /// shutdown) under one test directory. Only the binlog position, the
    /// table filter and [`Self::instance_properties`] reach the process.
    pub async fn spawn(self) -> SpawnedServer {
        let schema = self.schema().await;
        let dir = test_dir(&format!("e2e-{}", self.prefix));
        let conf_dir = dir.join("conf");
        let options = SpawnOptions::new(&self.prefix, &conf_dir);
        write_conf(
            &conf_dir,
            &format!(
                "canal.ip = 127.0.0.1\n\
                 canal.port = {}\n\
                 canal.metrics.pull.port = {}\n\
                 canal.destinations = {DESTINATION}\n\
                 canal.file.data.dir = {}\n\
                 canal.file.flush.period = 3600000\n",
                options.client_port,
                options.metrics_port,
                conf_dir.display()
            ),
            &[(
                DESTINATION,
                &spawned_instance(&schema, &self.instance_extra),
            )],
        );
        SpawnedServer {
            server: ServerProcess::spawn(options),
            schema,
            dir,
            data_dir: conf_dir,
        }
    }
}

/// instance.properties of a spawned server: the schema's binlog start, its
/// tables only, then `extra`.
fn spawned_instance(schema: &LiveSchema, extra: &str) -> String {
    let (journal_name, position) = schema.file_position();
    format!(
        "canal.instance.mysql.slaveId = {}\n\
         canal.instance.master.address = {}\n\
         canal.instance.dbUsername = {}\n\
         canal.instance.dbPassword = {}\n\
         canal.instance.master.journal.name = {journal_name}\n\
         canal.instance.master.position = {position}\n\
         canal.instance.filter.regex = {}\\\\..*\n{extra}",
        schema.server_id, schema.env.address, schema.env.user, schema.env.password, schema.name
    )
}

/// A scene's schema and its in-process server.
pub struct InProcessServer {
    pub schema: LiveSchema,
    pub server: RunningServer,
}

impl InProcessServer {
    /// A client subscribed to [`DESTINATION`] as 1001, without a login.
    pub async fn client(&self) -> CanalClient {
        let address = self.server.address.to_string();
        let mut client = CanalClient::connect(&address, &Login::default(), Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {address}: {e}"));
        client.subscribe(DESTINATION, "1001", "").await.unwrap();
        client
    }
}

/// A scene's schema and its `canal-server` process.
pub struct SpawnedServer {
    pub schema: LiveSchema,
    pub server: ServerProcess,
    /// Everything the scene wrote: configuration, data, the process's log.
    pub dir: PathBuf,
    /// `canal.file.data.dir`: `<destination>/meta.dat` holds the cursors.
    pub data_dir: PathBuf,
}

impl SpawnedServer {
    /// A client subscribed to [`DESTINATION`] as 1001, once the process
    /// listens (within 10 s).
    pub async fn client(&self) -> CanalClient {
        let address = &self.server.client_address;
        let mut connected = None;
        for _ in 0..100 {
            if let Ok(client) =
                CanalClient::connect(address, &Login::default(), Duration::from_secs(1)).await
            {
                connected = Some(client);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut client = connected.expect("the server listens");
        client.subscribe(DESTINATION, "1001", "").await.unwrap();
        client
    }
}
