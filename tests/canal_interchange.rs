//! Interchange with canal's own Java server (`scripts/canal-java`) on the
//! same ZooKeeper and MariaDB: a cursor canal acknowledged is where our
//! server resumes and the reverse, and a cluster mixing canal and our server
//! hands a destination over in both directions (a rolling migration) while
//! canal's own `ClusterCanalConnector` consumes, without losing a row.

mod common;

use std::{path::Path, process::Stdio, time::Duration};

use canal::binlog::position::StartPosition;
use common::{
    canal_java::{CanalJavaServer, MetaMode, java_client, reference_properties},
    cluster::{ServerProcess, SpawnOptions, free_port, test_dir, wait_for, write_conf},
    live::latest,
    scene::LiveSchema,
    zk,
};
use mysql_async::{Conn, prelude::Queryable};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

const WAIT: Duration = Duration::from_secs(60);
/// canal starts a JVM, a Spring context and the parser: allow for a slow CI.
const CANAL_START: Duration = Duration::from_secs(90);

/// The tests claim ZooKeeper destinations and start JVMs: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What both tests start from: a schema with table `t (id INT PRIMARY KEY)`,
/// a destination unique to the test with no ZooKeeper nodes yet, its
/// instance.properties (reading from the binlog end before any row), and a
/// directory for the servers' files.
struct Scene {
    conn: Conn,
    schema: String,
    destination: String,
    instance: String,
    dir: std::path::PathBuf,
    zookeeper: zookeeper_client::Client,
    /// `/otter/canal/destinations/{destination}`.
    root: String,
}

async fn setup(prefix: &str) -> Scene {
    let schema = LiveSchema::create(prefix, &["t (id INT PRIMARY KEY)"]).await;
    let destination = schema.destination();
    let zookeeper = zk::connect(&zk::servers(), Duration::from_secs(10)).await;
    let root = format!("/otter/canal/destinations/{destination}");
    zk::delete_all(&zookeeper, &root).await;
    Scene {
        instance: schema.instance_properties(),
        dir: test_dir(&format!("interchange-{destination}")),
        conn: schema.conn,
        schema: schema.name,
        destination,
        zookeeper,
        root,
    }
}

async fn insert(conn: &mut Conn, schema: &str, ids: std::ops::RangeInclusive<u32>) {
    for id in ids {
        conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES ({id})"))
            .await
            .unwrap();
    }
}

/// The ids of table `t` in canal's Java client output (one JSON Entry per
/// line), in the order received.
fn received_ids(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["entryType"] == "ROWDATA" && entry["tableName"] == "t")
        .flat_map(|entry| {
            entry["rows"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|row| {
                    row["after"][0]["value"]
                        .as_str()
                        .and_then(|id| id.parse().ok())
                        .expect("an id in the after image")
                })
        })
        .collect()
}

/// Consumes `destination` at `address` with canal's Java client (client id
/// 1001, acking every batch) until 3 s without data; returns the ids of `t`.
async fn consume_until_idle(address: &str, destination: &str) -> Vec<u32> {
    let output = java_client()
        .args([
            "--addr",
            address,
            "--destination",
            destination,
            "--idle-ms",
            "3000",
            "--max-ms",
            "60000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("scripts/java-client runs (needs java and mvn)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Exit 0: the idle stop with nothing expected (--count 0) counts as done.
    assert!(
        output.status.success(),
        "java client against {address} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    received_ids(&stdout)
}

/// The cursor of client 1001, parsed, once it is at or past `journal:offset`
/// of the last row consumed (canal flushes cursors on a period).
async fn wait_cursor(
    zookeeper: &zookeeper_client::Client,
    destination: &str,
    past: (&str, u64),
) -> Value {
    let path = format!("/otter/canal/destinations/{destination}/1001/cursor");
    let mut cursor = Value::Null;
    wait_for(&format!("{path} at {past:?} or later"), WAIT, async || {
        let Ok((data, _)) = zookeeper.get_data(&path).await else {
            return false;
        };
        cursor = serde_json::from_slice(&data).unwrap_or(Value::Null);
        let position = &cursor["postion"];
        match (
            position["journalName"].as_str(),
            position["position"].as_u64(),
        ) {
            (Some(journal), Some(offset)) => (journal, offset) >= past,
            _ => false,
        }
    })
    .await;
    cursor
}

/// The binlog end now, as (file, offset).
async fn binlog_end(conn: &mut Conn) -> (String, u64) {
    match latest(conn).await {
        StartPosition::FilePosition {
            journal_name,
            position,
        } => (journal_name, position),
        other => panic!("a file position, not {other:?}"),
    }
}

fn spawn_canal(dir: &Path, destination: &str, instance: &str, name: &str) -> CanalJavaServer {
    let port = free_port();
    let conf = dir.join(format!("{name}-conf"));
    write_conf(
        &conf,
        &reference_properties(
            port,
            &[destination],
            Some(&zk::servers()),
            MetaMode::ZooKeeper,
            "",
        ),
        &[(destination, instance)],
    );
    CanalJavaServer::spawn(name, &conf, port)
}

fn spawn_ours(dir: &Path, destination: &str, instance: &str, name: &str) -> ServerProcess {
    let conf = dir.join(format!("{name}-conf"));
    write_conf(
        &conf,
        &format!(
            "canal.ip = 127.0.0.1\n\
             canal.register.ip = 127.0.0.1\n\
             canal.destinations = {destination}\n\
             canal.zkServers = {}\n\
             canal.instance.global.spring.xml = classpath:spring/default-instance.xml\n",
            zk::servers()
        ),
        &[(destination, instance)],
    );
    ServerProcess::spawn(SpawnOptions::new(name, &conf))
}

/// canal acknowledges rows 1-3 and stops; our server resumes from canal's
/// cursor (rows 4-6 only); then canal resumes from ours (rows 7-9 only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_move_between_canal_and_ours_without_loss_or_repeat() {
    let _serial = SERIAL.lock().await;
    let Scene {
        mut conn,
        schema,
        destination,
        instance,
        dir,
        zookeeper,
        root,
    } = setup("xcur").await;

    // 1. canal consumes rows 1-3 and writes client 1001's cursor.
    let mut canal = spawn_canal(&dir, &destination, &instance, "canal-1");
    canal.wait_started(CANAL_START).await;
    insert(&mut conn, &schema, 1..=2).await;
    let after_two = binlog_end(&mut conn).await;
    insert(&mut conn, &schema, 3..=3).await;
    let after_three = binlog_end(&mut conn).await;
    assert_eq!(
        consume_until_idle(&canal.client_address, &destination).await,
        vec![1, 2, 3]
    );
    // The acked cursor points into the last transaction (canal keeps the
    // position of the last event delivered, not the commit's end).
    let canal_cursor = wait_cursor(&zookeeper, &destination, (&after_two.0, after_two.1)).await;
    canal.sigterm();
    canal.wait_exit(WAIT).await;
    let canal_position = &canal_cursor["postion"];
    assert_eq!(
        canal_cursor["@type"],
        "com.alibaba.otter.canal.protocol.position.LogPosition"
    );
    assert!(
        (
            canal_position["journalName"].as_str().unwrap(),
            canal_position["position"].as_u64().unwrap()
        ) < (after_three.0.as_str(), after_three.1),
        "canal's cursor {canal_cursor} is inside the last transaction"
    );

    // 2. Ours resumes at canal's cursor: rows 4-6, none of 1-3 again.
    insert(&mut conn, &schema, 4..=5).await;
    let after_five = binlog_end(&mut conn).await;
    insert(&mut conn, &schema, 6..=6).await;
    let after_six = binlog_end(&mut conn).await;
    let mut ours = spawn_ours(&dir, &destination, &instance, "ours-1");
    wait_for("our server to take the destination", WAIT, async || {
        ours.role(&destination).await.as_deref() == Some("active")
    })
    .await;
    assert_eq!(
        consume_until_idle(&ours.client_address, &destination).await,
        vec![4, 5, 6],
        "our server resumed from canal's cursor {canal_cursor}"
    );
    let our_cursor = wait_cursor(&zookeeper, &destination, (&after_five.0, after_five.1)).await;
    ours.sigterm();
    assert!(ours.wait_exit(WAIT).await.success());
    let our_position = &our_cursor["postion"];
    assert!(
        (
            our_position["journalName"].as_str().unwrap(),
            our_position["position"].as_u64().unwrap()
        ) < (after_six.0.as_str(), after_six.1),
        "our cursor {our_cursor} is inside the last transaction"
    );

    // 3. canal resumes at our cursor: rows 7-9 only.
    insert(&mut conn, &schema, 7..=9).await;
    let mut canal = spawn_canal(&dir, &destination, &instance, "canal-2");
    canal.wait_started(CANAL_START).await;
    assert_eq!(
        consume_until_idle(&canal.client_address, &destination).await,
        vec![7, 8, 9],
        "canal resumed from our cursor {our_cursor}; its log: {}",
        canal.log_path().display()
    );
    canal.sigterm();
    canal.wait_exit(WAIT).await;

    zk::delete_all(&zookeeper, &root).await;
    conn.query_drop(format!("DROP DATABASE `{schema}`"))
        .await
        .unwrap();
}

/// canal and our server in one cluster for a destination, canal's
/// `ClusterCanalConnector` consuming: canal leads, hands over to ours on a
/// graceful stop, canal (restarted) takes it back when ours stops; every row
/// arrives exactly once across both hand-overs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_cluster_hands_over_both_ways() {
    let _serial = SERIAL.lock().await;
    let Scene {
        mut conn,
        schema,
        destination,
        instance,
        dir,
        zookeeper,
        root,
    } = setup("xmix").await;
    let running_address = async || -> Option<String> {
        let (data, _) = zookeeper
            .get_data(&zk::running_path(&destination))
            .await
            .ok()?;
        let running: Value = serde_json::from_slice(&data).ok()?;
        running["address"].as_str().map(str::to_owned)
    };

    let mut canal = spawn_canal(&dir, &destination, &instance, "canal-a");
    canal.wait_started(CANAL_START).await;
    wait_for("canal to take the destination", WAIT, async || {
        running_address().await.as_deref() == Some(canal.client_address.as_str())
    })
    .await;
    let mut ours = spawn_ours(&dir, &destination, &instance, "ours-b");
    wait_for("our server to join as standby", WAIT, async || {
        ours.role(&destination).await.as_deref() == Some("standby")
    })
    .await;

    let mut client = java_client()
        .args([
            "--zk",
            &zk::servers(),
            "--destination",
            &destination,
            "--count",
            "3",
            "--retry-times",
            "100",
            "--retry-interval-ms",
            "200",
            "--idle-ms",
            "60000",
            "--max-ms",
            "120000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("scripts/java-client runs");
    let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let mut received = Vec::new();
    let mut next_ids = async |want: usize| {
        while received.len() < want {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("the Java client prints within the deadline")
                .unwrap()
                .expect("the Java client is still running");
            received.extend(received_ids(&line));
        }
        received.clone()
    };

    let before_one = binlog_end(&mut conn).await;
    insert(&mut conn, &schema, 1..=1).await;
    assert_eq!(next_ids(1).await, vec![1], "from canal");
    // canal writes cursors every canal.zookeeper.flush.period (1 s) and not
    // on SIGTERM: stopped sooner, it would leave row 1 unacknowledged in
    // ZooKeeper and ours would (rightly) deliver it again.
    // Strictly past row 1's transaction start: a client that subscribes
    // after row 1 reached canal's store gets that start written as its
    // cursor at once (canal's subscribe stores the store's first position),
    // which is not yet the ack of row 1.
    wait_cursor(&zookeeper, &destination, (&before_one.0, before_one.1 + 1)).await;

    // canal stops gracefully: it deletes `running`, ours takes over.
    canal.sigterm();
    canal.wait_exit(WAIT).await;
    wait_for("our server to take over from canal", WAIT, async || {
        ours.role(&destination).await.as_deref() == Some("active")
    })
    .await;
    insert(&mut conn, &schema, 2..=2).await;
    assert_eq!(next_ids(2).await, vec![1, 2], "from ours, after canal");

    // canal comes back as standby; ours stops gracefully; canal takes over
    // (after its fixed 5 s delay: it did not hold the lock last).
    let mut canal = spawn_canal(&dir, &destination, &instance, "canal-c");
    canal.wait_started(CANAL_START).await;
    ours.sigterm();
    assert!(ours.wait_exit(WAIT).await.success());
    wait_for("canal to take over from ours", WAIT, async || {
        running_address().await.as_deref() == Some(canal.client_address.as_str())
    })
    .await;
    insert(&mut conn, &schema, 3..=3).await;
    assert_eq!(next_ids(3).await, vec![1, 2, 3], "from canal, after ours");

    let status = tokio::time::timeout(WAIT, client.wait())
        .await
        .expect("the Java client ends after 3 rows")
        .unwrap();
    assert!(status.success(), "java client exit {status}");
    canal.sigterm();
    canal.wait_exit(WAIT).await;
    zk::delete_all(&zookeeper, &root).await;
    conn.query_drop(format!("DROP DATABASE `{schema}`"))
        .await
        .unwrap();
}
