//! Tests that change server-wide state of the test MariaDB (a restart,
//! global variables). They run one at a time, and test binaries run one
//! after another, so no other test sees these states.

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use canal::{
    binlog::{change::ChangeKind, decode::DecoderOptions},
    protocol::entry::RowChange,
};
use common::{live::*, scene::LiveSchema};
use mysql_async::prelude::Queryable;
use prost::Message;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn inserted_ids(changes: &[canal::binlog::change::ChangeEvent]) -> Vec<u64> {
    changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Rows)
        .flat_map(|c| {
            RowChange::decode(c.entry.store_value.as_slice())
                .unwrap()
                .row_datas
        })
        .map(|rd| rd.after_columns[0].value.parse().unwrap())
        .collect()
}

fn env_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/env")
}

/// Stops the environment's mariadbd (SIGTERM, a clean shutdown) and starts
/// it again on the same data.
async fn restart_mariadb() {
    let dir = std::env::var("CANAL_ENV_DIR").expect("CANAL_ENV_DIR from scripts/env env");
    let pid: i32 = std::fs::read_to_string(PathBuf::from(&dir).join("run/mariadb.pid"))
        .expect("mariadb pid file")
        .trim()
        .parse()
        .expect("pid");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..600 {
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status =
        tokio::task::spawn_blocking(|| Command::new(env_script()).arg("up").status().unwrap())
            .await
            .unwrap();
    assert!(status.success(), "scripts/env up restarts mariadb");
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_restart_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().await;
    let live = LiveSchema::create("restart", &["t (id INT PRIMARY KEY, v VARCHAR(64))"]).await;
    let LiveSchema {
        env,
        conn,
        server_id,
        name: schema,
        start,
        ..
    } = live;
    drop(conn);
    let mut capture = Capture::start(&env, server_id, &schema, start, DecoderOptions::default());

    // The writer retries across the outage; a duplicate key means the row
    // committed before the connection broke.
    let total = 300u64;
    let writer_env = env.clone();
    let writer_schema = schema.clone();
    let writer = tokio::spawn(async move {
        let mut conn = None;
        for id in 1..=total {
            loop {
                if conn.is_none() {
                    conn = writer_env.try_root().await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                match c
                    .query_drop(format!(
                        "INSERT INTO `{writer_schema}`.t VALUES ({id}, 'row')"
                    ))
                    .await
                {
                    Ok(()) => break,
                    Err(mysql_async::Error::Server(e)) if e.code == 1062 => break,
                    Err(_) => {
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    restart_mariadb().await;
    writer.await.unwrap();
    capture
        .until(Duration::from_secs(120), |c| {
            inserted_ids(c).len() >= total as usize
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(change) = capture.receiver.try_recv() {
        capture.changes.push(change);
    }
    assert_eq!(
        inserted_ids(&capture.changes),
        (1..=total).collect::<Vec<_>>()
    );
    let journals: std::collections::BTreeSet<_> = capture
        .changes
        .iter()
        .map(|c| c.position.journal_name.clone())
        .collect();
    assert!(
        journals.len() >= 2,
        "the restart started a new binlog file: {journals:?}"
    );
    assert!(
        capture
            .stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    let _ = capture.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_binlog_events_stop_the_stream_loudly() {
    let _serial = SERIAL.lock().await;
    let mut live = LiveSchema::create("compressed", &["t (id INT PRIMARY KEY, v TEXT)"]).await;
    let mut capture = live.capture(DecoderOptions::default());
    let (conn, schema) = (&mut live.conn, live.name.clone());
    conn.query_drop("SET GLOBAL log_bin_compress = ON")
        .await
        .unwrap();
    let insert = conn
        .query_drop(format!(
            "INSERT INTO `{schema}`.t VALUES (1, REPEAT('compress me ', 200))"
        ))
        .await;
    conn.query_drop("SET GLOBAL log_bin_compress = OFF")
        .await
        .unwrap();
    insert.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match capture.receiver.recv().await {
                Some(change) if change.kind == ChangeKind::Rows => break Some(change),
                Some(_) => continue,
                None => break None,
            }
        }
    })
    .await
    .expect("the source reacts");
    assert!(next.is_none(), "no row may come out of a compressed event");
    let (_, result) = capture.stop().await;
    let error = result.expect_err("the source stops").to_string();
    assert!(error.contains("log_bin_compress=OFF"), "{error}");
    assert!(error.contains("COMPRESSED"), "{error}");
}

/// Runs `body` with `SET GLOBAL binlog_row_metadata = MINIMAL`, restoring
/// FULL afterwards even if it panics.
async fn with_minimal_metadata<F>(env: &LiveEnv, body: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut conn = env.root().await;
    conn.query_drop("SET GLOBAL binlog_row_metadata = MINIMAL")
        .await
        .unwrap();
    let outcome = tokio::spawn(body).await;
    conn.query_drop("SET GLOBAL binlog_row_metadata = FULL")
        .await
        .unwrap();
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

fn rows_as_pairs(changes: &[canal::binlog::change::ChangeEvent]) -> Vec<Vec<(String, String)>> {
    changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Rows)
        .flat_map(|c| {
            RowChange::decode(c.entry.store_value.as_slice())
                .unwrap()
                .row_datas
        })
        .map(|rd| {
            rd.after_columns
                .iter()
                .map(|c| (c.name.clone(), c.value.clone()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_full_metadata_names_follow_live_ddl() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let inner = env.clone();
    with_minimal_metadata(&env, async move {
        let env = inner;
        let mut conn = env.root().await;
        let (server_id, schema) = unique("minimal");
        fresh_schema(&mut conn, &schema).await;
        conn.query_drop(format!(
            "CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, a VARCHAR(10) CHARACTER SET latin1, b INT UNSIGNED)"
        ))
        .await
        .unwrap();
        conn.query_drop(format!("CREATE TABLE `{schema}`.ready (id INT PRIMARY KEY)"))
            .await
            .unwrap();
        let start = latest(&mut conn).await;
        let mut capture = Capture::start(&env, server_id, &schema, start, DecoderOptions::default());
        // The DDL below must come after the source's information_schema
        // snapshot, or the first row's definition is (rightly) unknowable:
        // a row of `ready` arriving proves the stream, hence the snapshot
        // taken before it, is up. A fixed sleep was not enough on a loaded CI.
        conn.query_drop(format!("INSERT INTO `{schema}`.ready VALUES (1)"))
            .await
            .unwrap();
        capture.until(Duration::from_secs(60), |c| !rows_as_pairs(c).is_empty()).await;
        // Each ALTER waits for the rows before it to be decoded: the source
        // reloads a definition when it meets the next row, and a row whose
        // table was altered again before that reload is (rightly) refused,
        // as without_full_metadata_history_before_a_ddl_is_refused shows.
        conn.query_drop(format!(
            "INSERT INTO `{schema}`.t VALUES (1, 'café', 4294967295);
             ALTER TABLE `{schema}`.t ADD COLUMN z DATE FIRST;
             INSERT INTO `{schema}`.t VALUES ('2024-01-01', 2, 'two', 2)"
        ))
        .await
        .unwrap();
        capture.until(Duration::from_secs(60), |c| rows_as_pairs(c).len() >= 3).await;
        conn.query_drop(format!(
            "ALTER TABLE `{schema}`.t CHANGE b bee BIGINT UNSIGNED;
             INSERT INTO `{schema}`.t VALUES ('2024-01-02', 3, 'three', 18446744073709551615)"
        ))
        .await
        .unwrap();
        capture.until(Duration::from_secs(60), |c| rows_as_pairs(c).len() >= 4).await;
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let all = rows_as_pairs(&capture.changes);
        assert_eq!(all[0], pairs(&[("id", "1")]), "the readiness row of `ready`");
        let rows = &all[1..];
        assert_eq!(rows[0], pairs(&[("id", "1"), ("a", "café"), ("b", "4294967295")]));
        assert_eq!(rows[1], pairs(&[("z", "2024-01-01"), ("id", "2"), ("a", "two"), ("b", "2")]));
        assert_eq!(rows[2], pairs(&[("z", "2024-01-02"), ("id", "3"), ("a", "three"), ("bee", "18446744073709551615")]));
        let _ = capture.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_full_metadata_history_before_a_ddl_is_refused() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let inner = env.clone();
    with_minimal_metadata(&env, async move {
        let env = inner;
        let mut conn = env.root().await;
        let (server_id, schema) = unique("history");
        fresh_schema(&mut conn, &schema).await;
        conn.query_drop(format!(
            "CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, a INT, b INT)"
        ))
        .await
        .unwrap();
        let start = latest(&mut conn).await;
        // Same column count and types after the DDL: only the names moved.
        conn.query_drop(format!(
            "INSERT INTO `{schema}`.t VALUES (1, 10, 20);
             ALTER TABLE `{schema}`.t RENAME COLUMN a TO c"
        ))
        .await
        .unwrap();
        let mut capture =
            Capture::start(&env, server_id, &schema, start, DecoderOptions::default());
        let rows = tokio::time::timeout(Duration::from_secs(60), async {
            let mut rows = 0;
            while let Some(change) = capture.receiver.recv().await {
                if change.kind == ChangeKind::Rows {
                    rows += 1;
                }
            }
            rows
        })
        .await
        .expect("the source stops");
        assert_eq!(rows, 0, "no row decoded with names from after the rename");
        let (_, result) = capture.stop().await;
        let error = result.expect_err("refused").to_string();
        assert!(error.contains("binlog_row_metadata=FULL"), "{error}");
        assert!(error.contains("altered"), "{error}");
    })
    .await;
}
