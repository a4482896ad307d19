//! A schema of the test MariaDB made for one test.

use canal::{
    binlog::{decode::DecoderOptions, position::StartPosition},
    server::InstanceSettings,
};
use mysql_async::{Conn, prelude::Queryable};

use crate::common::live::{
    Capture, LiveEnv, fresh_schema, instance_properties, latest, settings, unique,
};

/// A fresh schema with its tables, a server id unique to the test, and the
/// binlog end once the tables exist: a server starting there sees only what
/// the test writes afterwards.
pub struct LiveSchema {
    pub env: LiveEnv,
    /// A root connection for the test's own statements.
    pub conn: Conn,
    pub server_id: u32,
    /// The schema's name.
    pub name: String,
    pub start: StartPosition,
    prefix: String,
}

impl LiveSchema {
    /// Creates schema `t_<prefix>_…` and in it each of `tables`, given as
    /// what follows `CREATE TABLE <schema>.` (e.g. `"t (id INT PRIMARY KEY)"`).
    pub async fn create(prefix: &str, tables: &[&str]) -> LiveSchema {
        let env = LiveEnv::get();
        let mut conn = env.root().await;
        let (server_id, name) = unique(prefix);
        fresh_schema(&mut conn, &name).await;
        for table in tables {
            conn.query_drop(format!("CREATE TABLE `{name}`.{table}"))
                .await
                .unwrap_or_else(|e| panic!("cannot create table {table} in {name}: {e}"));
        }
        let start = latest(&mut conn).await;
        LiveSchema {
            env,
            conn,
            server_id,
            name,
            start,
            prefix: prefix.to_owned(),
        }
    }

    /// Runs `sql` (one or more statements) on the test's connection.
    pub async fn execute(&mut self, sql: &str) {
        self.conn
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A destination name unique to the test: the prefix and the server id.
    pub fn destination(&self) -> String {
        format!("{}{}", self.prefix, self.server_id)
    }

    /// [`Self::start`] as binlog file and offset.
    pub fn file_position(&self) -> (&str, u64) {
        match &self.start {
            StartPosition::FilePosition {
                journal_name,
                position,
            } => (journal_name, *position),
            other => panic!("a file position, not {other:?}"),
        }
    }

    /// Settings of an in-process instance serving `destination` from
    /// [`Self::start`], keeping this schema's changes only.
    pub fn settings(&self, destination: &str) -> InstanceSettings {
        settings(
            &self.env,
            self.server_id,
            destination,
            &self.name,
            self.start.clone(),
        )
    }

    /// A source following the binlog from [`Self::start`], keeping this
    /// schema's changes only.
    pub fn capture(&self, options: DecoderOptions) -> Capture {
        Capture::start(
            &self.env,
            self.server_id,
            &self.name,
            self.start.clone(),
            options,
        )
    }

    /// instance.properties reading this schema from [`Self::start`].
    pub fn instance_properties(&self) -> String {
        instance_properties(&self.env, &self.name, &self.start)
    }
}
