//! Harness for tests against the real MariaDB that `scripts/env` starts.
#![allow(dead_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use canal::binlog::{
    change::ChangeEvent,
    decode::{Decoder, DecoderOptions},
    filter::{EventFilter, TableFilter},
    position::StartPosition,
    replica::ReplicaConfig,
    source::{BinlogSource, SourceConfig, SourceError, SourceStats},
};
use mysql_async::{Conn, OptsBuilder, prelude::Queryable};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Connection settings of the test source, from `scripts/env env`.
#[derive(Debug, Clone)]
pub struct LiveEnv {
    pub address: String,
    pub user: String,
    pub password: String,
    pub root_password: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test, which starts MariaDB and sets it"
        )
    })
}

impl LiveEnv {
    pub fn get() -> Self {
        LiveEnv {
            address: var("CANAL_TEST_MYSQL_ADDR"),
            user: var("CANAL_TEST_MYSQL_USER"),
            password: var("CANAL_TEST_MYSQL_PASSWORD"),
            root_password: var("CANAL_TEST_MYSQL_ROOT_PASSWORD"),
        }
    }

    /// A root connection, or the error (while the server restarts).
    pub async fn try_root(&self) -> Result<Conn, mysql_async::Error> {
        let (host, port) = self.address.rsplit_once(':').expect("host:port");
        let opts = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port.parse().expect("port"))
            .user(Some("root"))
            .pass(Some(self.root_password.clone()))
            .prefer_socket(false);
        Conn::new(opts).await
    }

    /// A root connection for making changes.
    pub async fn root(&self) -> Conn {
        self.try_root()
            .await
            .expect("root connection to the test MariaDB")
    }

    pub fn replica(&self, server_id: u32) -> ReplicaConfig {
        ReplicaConfig {
            address: self.address.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            server_id,
            heartbeat: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// instance.properties reading `schema` from `start` (the binlog end when
/// the test began, so nothing committed before a server is active is
/// skipped).
pub fn instance_properties(env: &LiveEnv, schema: &str, start: &StartPosition) -> String {
    let StartPosition::FilePosition {
        journal_name,
        position,
    } = start
    else {
        panic!("a file position, not {start:?}");
    };
    format!(
        "canal.instance.mysql.slaveId = 0\n\
         canal.instance.master.address = {}\n\
         canal.instance.dbUsername = {}\n\
         canal.instance.dbPassword = {}\n\
         canal.instance.connectionCharset = UTF-8\n\
         canal.instance.master.journal.name = {journal_name}\n\
         canal.instance.master.position = {position}\n\
         canal.instance.filter.regex = {schema}\\\\..*\n",
        env.address, env.user, env.password
    )
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A server id and schema name unique to this test process.
pub fn unique(prefix: &str) -> (u32, String) {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let id = 10_000 + (std::process::id() % 10_000) * 100 + n;
    (id, format!("t_{prefix}_{}_{n}", std::process::id()))
}

/// A schema created for one test, dropped with it.
pub async fn fresh_schema(conn: &mut Conn, name: &str) {
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        .await
        .unwrap();
}

/// A running source and the changes it produced.
pub struct Capture {
    pub receiver: mpsc::Receiver<ChangeEvent>,
    pub cancel: CancellationToken,
    pub task: JoinHandle<(BinlogSource, Result<(), SourceError>)>,
    pub stats: Arc<SourceStats>,
    pub changes: Vec<ChangeEvent>,
}

impl Capture {
    /// Follows the source from `start`, keeping only changes of `schema`.
    pub fn start(
        env: &LiveEnv,
        server_id: u32,
        schema: &str,
        start: StartPosition,
        options: DecoderOptions,
    ) -> Self {
        let filter = EventFilter {
            tables: TableFilter::new(&format!("{}\\..*", regex_escape(schema)), "").unwrap(),
            columns: Default::default(),
        };
        Self::start_with(env, server_id, filter, start, options, false)
    }

    pub fn start_with(
        env: &LiveEnv,
        server_id: u32,
        filter: EventFilter,
        start: StartPosition,
        options: DecoderOptions,
        resume_by_gtid: bool,
    ) -> Self {
        let decoder = Decoder::new(options, Arc::new(filter));
        let config = SourceConfig {
            replica: env.replica(server_id),
            start,
            resume_by_gtid,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
        };
        let mut source = BinlogSource::new(config, decoder);
        let stats = source.stats();
        let (sender, receiver) = mpsc::channel(4096);
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            let result = source.run(sender, token).await;
            (source, result)
        });
        Capture {
            receiver,
            cancel,
            task,
            stats,
            changes: Vec::new(),
        }
    }

    /// Receives changes until `done` holds for all received so far.
    pub async fn until(&mut self, timeout: Duration, mut done: impl FnMut(&[ChangeEvent]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.changes) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.receiver.recv()).await {
                Ok(Some(change)) => self.changes.push(change),
                Ok(None) => {
                    let outcome = (&mut self.task).await.map(|(_, r)| r);
                    panic!("source stopped early: {outcome:?}");
                }
                Err(_) => panic!(
                    "timed out after {timeout:?} with {} changes: {:?}",
                    self.changes.len(),
                    self.changes
                        .iter()
                        .map(|c| (c.kind, c.position.to_string()))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Stops the source and returns it with its result.
    pub async fn stop(self) -> (BinlogSource, Result<(), SourceError>) {
        self.cancel.cancel();
        drop(self.receiver);
        self.task.await.expect("source task")
    }
}

pub fn regex_escape(text: &str) -> String {
    regex::escape(text)
}

/// The current end of the binlog as a start position.
pub async fn latest(conn: &mut Conn) -> StartPosition {
    let row: (String, u64) = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|row: mysql_async::Row| (row.get(0).unwrap(), row.get(1).unwrap()))
        .unwrap();
    StartPosition::FilePosition {
        journal_name: row.0,
        position: row.1,
    }
}

/// Instance settings for `destination` over the test MariaDB, keeping
/// changes of `schema` only.
pub fn settings(
    env: &LiveEnv,
    server_id: u32,
    destination: &str,
    schema: &str,
    start: StartPosition,
) -> canal::server::InstanceSettings {
    canal::server::InstanceSettings {
        destination: destination.to_owned(),
        replica: env.replica(server_id),
        start: Some(start),
        gtid_on: false,
        decoder: DecoderOptions::default(),
        filter: EventFilter {
            tables: TableFilter::new(&format!("{}\\..*", regex_escape(schema)), "").unwrap(),
            columns: Default::default(),
        },
        store: canal::store::StoreConfig::default(),
        flush_period: Duration::from_millis(0),
        filter_transaction_entry: false,
    }
}

/// A canal server in this process, serving `destination` from the test
/// MariaDB (keeping changes of `schema` only), cursors in memory.
pub async fn start_server(
    env: &LiveEnv,
    server_id: u32,
    destination: &str,
    schema: &str,
    start: StartPosition,
    credentials: canal::protocol::auth::Credentials,
    tweak: impl FnOnce(&mut canal::server::InstanceSettings),
) -> canal::server::RunningServer {
    let mut settings = settings(env, server_id, destination, schema, start);
    tweak(&mut settings);
    let cursors: canal::cursor::SharedCursorStore =
        Arc::new(canal::cursor::MemoryCursors::default());
    start_server_with(settings, cursors, credentials).await
}

/// A canal server in this process with the given settings and cursor store.
pub async fn start_server_with(
    settings: canal::server::InstanceSettings,
    cursors: canal::cursor::SharedCursorStore,
    credentials: canal::protocol::auth::Credentials,
) -> canal::server::RunningServer {
    canal::server::start(canal::server::StartOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        metrics_bind: Some("127.0.0.1:0".parse().unwrap()),
        credentials,
        instances: vec![(settings, cursors)],
        ha: None,
    })
    .await
    .expect("server starts")
}
