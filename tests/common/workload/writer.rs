//! Commits numbered transactions at a steady rate and records each outcome.

use std::time::{Duration, Instant};

use mysql_async::{Conn, prelude::Queryable};
use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::common::live::LiveEnv;

/// A statement that takes longer (MariaDB stopped) counts as failed.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rate debt older than this is forgiven, so that an outage is not followed
/// by a burst far above the target rate.
const MAX_DEBT: Duration = Duration::from_millis(100);

/// One transaction: its number (the `txn` column) and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTxn {
    pub txn: i64,
    /// (table, id) in statement order.
    pub rows: Vec<(String, i64)>,
}

#[derive(Debug, Clone, Default)]
pub struct WriterReport {
    /// COMMIT returned OK.
    pub committed: Vec<CommittedTxn>,
    /// COMMIT was sent but its answer never came: committed or not.
    pub uncertain: Vec<CommittedTxn>,
    /// Failed before COMMIT was sent; the connection was dropped, so the
    /// server rolled them back: their rows must never be delivered.
    pub aborted: Vec<CommittedTxn>,
    pub errors: usize,
    /// The first few error messages.
    pub error_messages: Vec<String>,
}

impl WriterReport {
    pub fn committed_rows(&self) -> usize {
        self.committed.iter().map(|t| t.rows.len()).sum()
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_messages.len() < 20 {
            self.error_messages.push(message);
        }
    }
}

/// Writes into `schema`.`t0..t{n-1}` in the background until [`Writer::stop`].
pub struct Writer {
    cancel: CancellationToken,
    task: JoinHandle<WriterReport>,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Writer {
    /// (Re)creates `schema` with `tables` tables and starts committing about
    /// `rows_per_second` rows per second in transactions of 1–5 rows over
    /// 1–3 tables; ids increase strictly per table.
    pub async fn start(env: &LiveEnv, schema: &str, tables: usize, rows_per_second: u32) -> Writer {
        assert!(tables > 0, "the writer needs at least one table");
        assert!(rows_per_second > 0, "the writer needs a positive rate");
        let mut conn = env.root().await;
        let mut ddl = format!(
            "DROP DATABASE IF EXISTS `{schema}`; CREATE DATABASE `{schema}` CHARACTER SET utf8mb4;"
        );
        for t in 0..tables {
            ddl.push_str(&format!(
                "CREATE TABLE `{schema}`.t{t} (id BIGINT PRIMARY KEY, txn BIGINT NOT NULL, \
                 seq INT NOT NULL, pad VARCHAR(64));"
            ));
        }
        conn.query_drop(ddl)
            .await
            .unwrap_or_else(|e| panic!("cannot create the writer's schema {schema}: {e}"));
        drop(conn);
        let cancel = CancellationToken::new();
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let state = WriteLoop {
            env: env.clone(),
            schema: schema.to_owned(),
            plan: Plan::new(tables),
            rows_per_second: f64::from(rows_per_second),
            progress: progress.clone(),
        };
        let task = tokio::spawn(state.run(cancel.clone()));
        Writer {
            cancel,
            task,
            progress,
        }
    }

    /// Rows committed so far.
    pub fn committed_rows(&self) -> u64 {
        self.progress.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Finishes the transaction under way and returns the outcomes.
    pub async fn stop(self) -> WriterReport {
        self.cancel.cancel();
        self.task.await.expect("the writer task panicked")
    }
}

/// What the next transactions write: a small deterministic generator, so
/// that a failing run can be repeated.
struct Plan {
    next_txn: i64,
    next_id: Vec<i64>,
    random: u64,
}

impl Plan {
    fn new(tables: usize) -> Plan {
        Plan {
            next_txn: 1,
            next_id: vec![1; tables],
            random: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// xorshift64*: uniform enough for picking tables and sizes.
    fn below(&mut self, n: usize) -> usize {
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        (self.random.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn next(&mut self) -> CommittedTxn {
        let tables = self.next_id.len();
        let spread = 1 + self.below(tables.min(3));
        let mut chosen: Vec<usize> = Vec::with_capacity(spread);
        while chosen.len() < spread {
            let t = self.below(tables);
            if !chosen.contains(&t) {
                chosen.push(t);
            }
        }
        let total = spread + self.below(5 - spread + 1);
        let mut counts = vec![1usize; spread];
        for _ in spread..total {
            let i = self.below(spread);
            counts[i] += 1;
        }
        let mut rows = Vec::with_capacity(total);
        for (t, count) in chosen.into_iter().zip(counts) {
            for _ in 0..count {
                rows.push((format!("t{t}"), self.next_id[t]));
                self.next_id[t] += 1;
            }
        }
        let txn = self.next_txn;
        self.next_txn += 1;
        CommittedTxn { txn, rows }
    }
}

struct WriteLoop {
    env: LiveEnv,
    schema: String,
    plan: Plan,
    rows_per_second: f64,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

enum Outcome {
    Committed,
    Aborted(String),
    Uncertain(String),
}

impl WriteLoop {
    async fn run(mut self, cancel: CancellationToken) -> WriterReport {
        let mut report = WriterReport::default();
        let mut conn: Option<Conn> = None;
        let mut backoff = Duration::from_millis(50);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let started = Instant::now();
        let mut rows_written = 0f64;
        let max_debt = self.rows_per_second * MAX_DEBT.as_secs_f64();
        'outer: while !cancel.is_cancelled() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let allowed = started.elapsed().as_secs_f64() * self.rows_per_second;
            rows_written = rows_written.max(allowed - max_debt);
            while rows_written < allowed && !cancel.is_cancelled() {
                let current = match conn.as_mut() {
                    Some(current) => current,
                    None => match self.env.try_root().await {
                        Ok(fresh) => {
                            backoff = Duration::from_millis(50);
                            conn.insert(fresh)
                        }
                        Err(error) => {
                            report.error(format!("connect: {error}"));
                            tokio::select! {
                                _ = cancel.cancelled() => break 'outer,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                            continue 'outer;
                        }
                    },
                };
                let txn = self.plan.next();
                rows_written += txn.rows.len() as f64;
                match self.write(current, &txn).await {
                    Outcome::Committed => {
                        self.progress
                            .fetch_add(txn.rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        report.committed.push(txn);
                    }
                    Outcome::Aborted(error) => {
                        report.error(format!("txn {}: {error}", txn.txn));
                        report.aborted.push(txn);
                        // Dropping the connection rolls the transaction back.
                        conn = None;
                    }
                    Outcome::Uncertain(error) => {
                        report.error(format!("txn {} COMMIT: {error}", txn.txn));
                        report.uncertain.push(txn);
                        conn = None;
                    }
                }
            }
        }
        report
    }

    async fn write(&self, conn: &mut Conn, txn: &CommittedTxn) -> Outcome {
        if let Err(error) = statement(conn, "START TRANSACTION".into()).await {
            return Outcome::Aborted(error);
        }
        let mut seq = 0;
        let mut i = 0;
        while i < txn.rows.len() {
            let table = &txn.rows[i].0;
            let mut sql = format!(
                "INSERT INTO `{}`.`{table}` (id, txn, seq, pad) VALUES ",
                self.schema
            );
            while i < txn.rows.len() && &txn.rows[i].0 == table {
                if !sql.ends_with(' ') {
                    sql.push(',');
                }
                let id = txn.rows[i].1;
                sql.push_str(&format!(
                    "({id},{},{seq},'txn {} row {seq} of {table}')",
                    txn.txn, txn.txn
                ));
                seq += 1;
                i += 1;
            }
            if let Err(error) = statement(conn, sql).await {
                return Outcome::Aborted(error);
            }
        }
        match statement(conn, "COMMIT".into()).await {
            Ok(()) => Outcome::Committed,
            Err(error) => Outcome::Uncertain(error),
        }
    }
}

async fn statement(conn: &mut Conn, sql: String) -> Result<(), String> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, conn.query_drop(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {STATEMENT_TIMEOUT:?}")),
    }
}
