//! MariaDB → canal-server → clients: our client and canal's own Java client
//! (Maven Central com.alibaba.otter:canal.client 1.1.8), rollback,
//! restart from cursors, backpressure, ZooKeeper cursor layout, SIGTERM,
//! metrics, and `tail --zk` following the running server.

mod common;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use canal::{
    binlog::position::StartPosition,
    client::{CanalClient, Login, Received},
    cursor::{CursorStore, SharedCursorStore, file::FileCursors, zk::ZkCursors},
    protocol::{
        auth::Credentials,
        entry::{EntryType, EventType, RowChange},
    },
    store::{BatchMode, StoreConfig},
};
use common::live::*;
use mysql_async::prelude::Queryable;
use prost::Message;

const WAIT: Duration = Duration::from_secs(60);

/// The tests share the binlog and some ports: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canal-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Row changes of a batch: (event type, after-or-before values).
fn rows_of(received: &Received) -> Vec<(EventType, Vec<String>)> {
    received
        .entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter_map(|e| RowChange::decode(e.store_value.as_slice()).ok())
        .filter(|rc| rc.is_ddl != Some(true))
        .flat_map(|rc| {
            let event_type = rc.event_type();
            rc.row_datas.into_iter().map(move |rd| {
                let columns = if rd.after_columns.is_empty() {
                    rd.before_columns
                } else {
                    rd.after_columns
                };
                (event_type, columns.into_iter().map(|c| c.value).collect())
            })
        })
        .collect()
}

fn ddl_of(received: &Received) -> Vec<(EventType, String)> {
    received
        .entries
        .iter()
        .filter_map(|e| RowChange::decode(e.store_value.as_slice()).ok())
        .filter(|rc| rc.is_ddl == Some(true))
        .map(|rc| (rc.event_type(), rc.sql))
        .collect()
}

async fn connect_client(address: std::net::SocketAddr) -> CanalClient {
    let mut client = CanalClient::connect(
        &address.to_string(),
        &Login::default(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    client.subscribe("example", "1001", "").await.unwrap();
    client
}

/// Receives until `rows` row changes arrived, acking each batch unless told.
async fn receive_rows(client: &mut CanalClient, rows: usize, ack: bool) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    let mut batches = Vec::new();
    let mut seen = 0;
    while seen < rows {
        assert!(
            Instant::now() < deadline,
            "only {seen} of {rows} rows arrived"
        );
        let received = client
            .get(1000, Some(Duration::from_millis(200)))
            .await
            .unwrap();
        if received.batch_id == -1 {
            continue;
        }
        seen += rows_of(&received).len();
        if ack {
            client.ack(received.batch_id).await.unwrap();
        }
        batches.push(received);
    }
    batches
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_reach_our_client_in_order() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("e2e");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!(
        "CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await
    .unwrap();
    let start = latest(&mut conn).await;
    let running = start_server(
        &env,
        server_id,
        "example",
        &schema,
        start,
        Credentials::default(),
        |_| {},
    )
    .await;
    let mut client = connect_client(running.address).await;
    conn.query_drop(format!(
        "INSERT INTO `{schema}`.t VALUES (1, 'one'), (2, 'two');
         UPDATE `{schema}`.t SET v = 'uno' WHERE id = 1;
         DELETE FROM `{schema}`.t WHERE id = 2;
         ALTER TABLE `{schema}`.t ADD COLUMN n INT;
         USE `{schema}`;
         INSERT INTO t SELECT seq + 10, 'bulk', seq FROM seq_1_to_20000"
    ))
    .await
    .unwrap();
    let batches = receive_rows(&mut client, 20_004, true).await;
    let rows: Vec<_> = batches.iter().flat_map(rows_of).collect();
    assert_eq!(rows[0], (EventType::Insert, vec!["1".into(), "one".into()]));
    assert_eq!(rows[1], (EventType::Insert, vec!["2".into(), "two".into()]));
    assert_eq!(rows[2], (EventType::Update, vec!["1".into(), "uno".into()]));
    assert_eq!(rows[3], (EventType::Delete, vec!["2".into(), "two".into()]));
    assert_eq!(
        rows[4],
        (
            EventType::Insert,
            vec!["11".into(), "bulk".into(), "1".into()]
        )
    );
    assert_eq!(rows.len(), 20_004, "every row once");
    let ids: Vec<i64> = rows[4..]
        .iter()
        .map(|(_, v)| v[0].parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "the large transaction in order"
    );
    let ddl: Vec<_> = batches.iter().flat_map(ddl_of).collect();
    assert_eq!(ddl.len(), 1);
    assert_eq!(ddl[0].0, EventType::Alter);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_redelivers_unacked_batches() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("rollback");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("CREATE TABLE `{schema}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let start = latest(&mut conn).await;
    let running = start_server(
        &env,
        server_id,
        "example",
        &schema,
        start,
        Credentials::default(),
        |_| {},
    )
    .await;
    let mut client = connect_client(running.address).await;
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1), (2), (3)"))
        .await
        .unwrap();
    let first = receive_rows(&mut client, 3, false).await;
    client.rollback(0).await.unwrap();
    let again = receive_rows(&mut client, 3, true).await;
    let ids = |batches: &[Received]| {
        batches
            .iter()
            .flat_map(rows_of)
            .map(|(_, v)| v[0].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&again));
    assert!(
        again[0].batch_id > first.last().unwrap().batch_id,
        "new batch ids"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_resumes_from_the_cursor() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("restart");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("CREATE TABLE `{schema}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let start = latest(&mut conn).await;
    let dir = temp_dir("restart");
    let cursors =
        || -> SharedCursorStore { Arc::new(FileCursors::new(&dir.join("example"), "example")) };
    let make_settings = |start| {
        let mut s = settings(&env, server_id, "example", &schema, start);
        s.store.batch_mode = BatchMode::ItemSize;
        s.flush_period = Duration::from_secs(3600); // only the shutdown flushes
        s
    };
    let running = start_server_with(
        make_settings(start.clone()),
        cursors(),
        Credentials::default(),
    )
    .await;
    let mut client = connect_client(running.address).await;
    for id in 1..=10 {
        conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES ({id})"))
            .await
            .unwrap();
    }
    // Small batches: ack the first 6 rows' batches, keep the rest unacked.
    let mut acked_ids = Vec::new();
    let mut unacked_ids = Vec::new();
    let deadline = Instant::now() + WAIT;
    while acked_ids.len() + unacked_ids.len() < 10 {
        assert!(Instant::now() < deadline);
        let received = client
            .get(3, Some(Duration::from_millis(200)))
            .await
            .unwrap();
        if received.batch_id == -1 {
            continue;
        }
        let ids: Vec<String> = rows_of(&received)
            .into_iter()
            .map(|(_, v)| v[0].clone())
            .collect();
        if acked_ids.len() < 6 {
            client.ack(received.batch_id).await.unwrap();
            acked_ids.extend(ids);
        } else {
            unacked_ids.extend(ids);
        }
    }
    drop(client);
    running.shutdown().await;
    for id in 11..=15 {
        conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES ({id})"))
            .await
            .unwrap();
    }
    // The configured start is ignored once a cursor exists.
    let running = start_server_with(
        make_settings(StartPosition::Latest),
        cursors(),
        Credentials::default(),
    )
    .await;
    let mut client = connect_client(running.address).await;
    let batches = receive_rows(&mut client, 15 - acked_ids.len(), true).await;
    let resumed: Vec<String> = batches
        .iter()
        .flat_map(rows_of)
        .map(|(_, v)| v[0].clone())
        .collect();
    let expected: Vec<String> = (acked_ids.len() + 1..=15).map(|i| i.to_string()).collect();
    assert_eq!(
        resumed, expected,
        "no loss; only what was not acknowledged comes again"
    );
    assert!(
        acked_ids.iter().all(|id| !resumed.contains(id)),
        "acknowledged rows are not repeated"
    );
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn backpressure_bounds_the_store_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("pressure");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!(
        "CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, pad VARCHAR(200))"
    ))
    .await
    .unwrap();
    let start = latest(&mut conn).await;
    let capacity = StoreConfig {
        capacity_events: 64,
        capacity_bytes: 32 * 1024,
        batch_mode: BatchMode::ItemSize,
        memunit: 1024,
        ddl_isolation: false,
    };
    let running = start_server(
        &env,
        server_id,
        "example",
        &schema,
        start,
        Credentials::default(),
        |s| s.store = capacity,
    )
    .await;
    let mut client = connect_client(running.address).await;
    conn.query_drop(format!("USE `{schema}`")).await.unwrap();
    for batch in 0..20 {
        conn.query_drop(format!(
            "INSERT INTO t SELECT {batch} * 100 + seq, REPEAT('p', 150) FROM seq_1_to_100"
        ))
        .await
        .unwrap();
    }
    // A client that takes but never acknowledges: the store fills and stops.
    let instance = running.shared.instance("example").unwrap();
    let mut taken = 0;
    for _ in 0..50 {
        let received = client
            .get(16, Some(Duration::from_millis(100)))
            .await
            .unwrap();
        if received.batch_id != -1 {
            taken += 1;
        }
    }
    assert!(taken > 0);
    let (held, bytes) = instance.store().with_state(|s| (s.len(), s.bytes()));
    assert!(
        held <= 64 && bytes <= 32 * 1024 + 8192,
        "store bounded: {held} events, {bytes} bytes"
    );
    let produced = instance
        .stats()
        .entries
        .load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = instance
        .stats()
        .entries
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        later - produced < 300,
        "the source is held back: {produced} -> {later} entries"
    );
    // Start over acknowledging: everything arrives, once.
    client.rollback(0).await.unwrap();
    let batches = receive_rows(&mut client, 2000, true).await;
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(rows_of)
        .map(|(_, v)| v[0].parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2000);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2000, "no row lost or repeated");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_cursors_use_canal_paths_and_json() {
    let _serial = SERIAL.lock().await;
    let servers = std::env::var("CANAL_TEST_ZK").expect("CANAL_TEST_ZK from scripts/env env");
    let zookeeper = zookeeper_client::Client::connect(&servers)
        .await
        .expect("ZooKeeper ensemble");
    let (_, destination) = unique("zkdest");
    let cursors = ZkCursors::new(zookeeper.clone(), &destination);
    let record = canal::cursor::CursorRecord {
        position: canal::binlog::position::LogPosition {
            journal_name: "mysql-bin.000007".into(),
            position: 1234,
            server_id: 1,
            gtid: String::new(),
            timestamp_ms: 1_700_000_000_000,
        },
        source_host: "127.0.0.1".into(),
        source_port: 3306,
    };
    cursors.subscribe(1001, r"shop\..*").await.unwrap();
    cursors.save_cursor(1001, &record).await.unwrap();
    let base = format!("/otter/canal/destinations/{destination}/1001");
    let (raw, _) = zookeeper.get_data(&format!("{base}/cursor")).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        json["@type"],
        "com.alibaba.otter.canal.protocol.position.LogPosition"
    );
    assert_eq!(json["postion"]["journalName"], "mysql-bin.000007");
    assert_eq!(json["postion"]["position"], 1234);
    assert_eq!(json["postion"]["included"], false);
    assert_eq!(json["identity"]["sourceAddress"]["port"], 3306);
    let (filter, _) = zookeeper.get_data(&format!("{base}/filter")).await.unwrap();
    assert_eq!(filter, br"shop\..*", "the filter is raw text");
    // A cursor as Java canal writes it is read back.
    let java = br#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition","identity":{"slaveId":-1,"sourceAddress":{"address":"db","port":3306}},"postion":{"gtid":"","included":false,"journalName":"mysql-bin.000018","position":1689,"serverId":1,"timestamp":1605775168000}}"#;
    zookeeper
        .create(
            &format!("/otter/canal/destinations/{destination}/1002"),
            b"",
            &zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .unwrap();
    zookeeper
        .create(
            &format!("/otter/canal/destinations/{destination}/1002/cursor"),
            java,
            &zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let clients: BTreeMap<_, _> = cursors.load().await.unwrap();
    assert_eq!(clients[&1001].cursor.as_ref().unwrap(), &record);
    assert_eq!(clients[&1001].filter, r"shop\..*");
    assert_eq!(
        clients[&1002].cursor.as_ref().unwrap().position.position,
        1689
    );
    cursors.unsubscribe(1001).await.unwrap();
    cursors.unsubscribe(1002).await.unwrap();
    let _ = zookeeper
        .delete(&format!("/otter/canal/destinations/{destination}"), None)
        .await;
}

fn java_client() -> tokio::process::Command {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/java-client");
    let mut command = tokio::process::Command::new(script);
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn canal_java_client_consumes_unchanged() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("java");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!(
        "CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v VARCHAR(20), d DECIMAL(10,2))"
    ))
    .await
    .unwrap();
    let start = latest(&mut conn).await;
    let credentials = Credentials {
        user: Some("canal".into()),
        passwd: Some(canal::protocol::auth::server_secret("canal")),
    };
    let running = start_server(
        &env,
        server_id,
        "example",
        &schema,
        start,
        credentials,
        |_| {},
    )
    .await;
    let child = java_client()
        .args([
            "--addr",
            &running.address.to_string(),
            "--destination",
            "example",
            "--user",
            "canal",
            "--password",
            "canal",
        ])
        .args(["--count", "1005", "--idle-ms", "30000", "--rollback-first"])
        .spawn()
        .expect("scripts/java-client runs (needs java and mvn)");
    tokio::time::sleep(Duration::from_secs(2)).await;
    conn.query_drop(format!(
        "INSERT INTO `{schema}`.t VALUES (1, 'ü', 1.50), (2, NULL, -2.00);
         UPDATE `{schema}`.t SET v = 'x' WHERE id = 2;
         DELETE FROM `{schema}`.t WHERE id = 1;
         ALTER TABLE `{schema}`.t ADD COLUMN n INT;
         USE `{schema}`;
         INSERT INTO t SELECT seq + 10, 'bulk', seq, seq FROM seq_1_to_1001"
    ))
    .await
    .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "java client failed: {stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = lines.last().unwrap();
    assert_eq!(done["done"], true);
    let rows: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["entryType"] == "ROWDATA" && l["isDdl"] == false && l["rolledBack"] != true)
        .flat_map(|l| l["rows"].as_array().unwrap())
        .collect();
    assert_eq!(rows.len(), 1005);
    let first = &rows[0]["after"];
    assert_eq!(first[0]["name"], "id");
    assert_eq!(first[0]["isKey"], true);
    assert_eq!(first[1]["value"], "ü");
    assert_eq!(first[2]["value"], "1.50");
    assert_eq!(first[2]["mysqlType"], "decimal(10,2)");
    assert_eq!(rows[1]["after"][1]["isNull"], true);
    let update = rows[2];
    assert_eq!(update["before"][1]["isNull"], true);
    assert_eq!(update["after"][1]["value"], "x");
    assert_eq!(update["after"][1]["updated"], true);
    assert_eq!(update["after"][0]["updated"], false);
    assert_eq!(rows[3]["before"][0]["value"], "1");
    assert!(
        lines
            .iter()
            .any(|l| l["isDdl"] == true && l["eventType"] == "ALTER"),
        "DDL reaches the Java client"
    );
    assert!(
        lines.iter().any(|l| l["rolledBack"] == true),
        "the rolled-back batch came before its redelivery"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_cursors_and_exits_zero() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("sigterm");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("CREATE TABLE `{schema}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let StartPosition::FilePosition {
        journal_name,
        position,
    } = latest(&mut conn).await
    else {
        unreachable!()
    };
    let dir = temp_dir("sigterm");
    let ports = write_conf(&env, &dir, server_id, &schema, &journal_name, position, "");
    let (mut server, mut client) = spawn_server(&dir, &ports).await;
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1), (2)"))
        .await
        .unwrap();
    receive_rows(&mut client, 2, true).await;
    // The ack reached the server once a following request was answered.
    let _ = client.get(10, None).await.unwrap();
    let pid = server.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    // canal.file.data.dir/<destination>/meta.dat
    let meta = std::fs::read_to_string(dir.join("example/meta.dat"))
        .expect("meta.dat written on shutdown");
    assert!(
        meta.contains(r#""clientId":1001"#) && meta.contains(&journal_name),
        "{meta}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Creates `path` and its missing parents (persistent) with `data` on the
/// last node, in `mode`.
async fn zk_create_all(
    zookeeper: &zookeeper_client::Client,
    path: &str,
    data: &[u8],
    mode: zookeeper_client::CreateMode,
) {
    let mut prefix = String::new();
    let parts: Vec<_> = path.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        prefix.push('/');
        prefix.push_str(part);
        let last = i + 1 == parts.len();
        let options = if last {
            mode.with_acls(zookeeper_client::Acls::anyone_all())
        } else {
            zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all())
        };
        match zookeeper
            .create(&prefix, if last { data } else { b"" }, &options)
            .await
        {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(error) => panic!("create {prefix}: {error}"),
        }
    }
}

/// `tail --zk` finds the server named in `{dest}/running` and, when that
/// server goes away and `running` names another, follows it; with cursors
/// in ZooKeeper the second server resumes where the client acked.
#[tokio::test(flavor = "multi_thread")]
async fn tail_follows_the_running_node_across_servers() {
    use tokio::io::AsyncBufReadExt;
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let servers = std::env::var("CANAL_TEST_ZK").expect("CANAL_TEST_ZK from scripts/env env");
    let zookeeper = zookeeper_client::Client::connect(&servers)
        .await
        .expect("ZooKeeper ensemble");
    let mut conn = env.root().await;
    let (server_id, schema) = unique("tailzk");
    let destination = format!("tail{server_id}");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("CREATE TABLE `{schema}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let start = latest(&mut conn).await;
    let cursors =
        || -> SharedCursorStore { Arc::new(ZkCursors::new(zookeeper.clone(), &destination)) };
    let first = start_server_with(
        settings(&env, server_id, &destination, &schema, start.clone()),
        cursors(),
        Credentials::default(),
    )
    .await;
    let running = format!("/otter/canal/destinations/{destination}/running");
    let owner = |address: std::net::SocketAddr| {
        format!(r#"{{"active":true,"address":"{address}","cid":1}}"#).into_bytes()
    };
    zk_create_all(
        &zookeeper,
        &running,
        &owner(first.address),
        zookeeper_client::CreateMode::Ephemeral,
    )
    .await;

    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_canal-server"))
        .args([
            "tail",
            "--zk",
            &servers,
            "--destination",
            &destination,
            "--json",
            "--count",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut ids = Vec::new();
    // Reads until `until` rows and the end of their transaction were
    // printed; returns that end's offset (the cursor an ack of it leaves).
    let mut read_ids = async |ids: &mut Vec<String>, until: usize| -> u64 {
        loop {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("tail prints within the deadline")
                .unwrap()
                .expect("tail still running");
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            if let Some(rows) = entry["rowChange"]["rowDatas"].as_array() {
                for row in rows {
                    ids.push(row["afterColumns"][0]["value"].as_str().unwrap().to_owned());
                }
            }
            if entry["entryType"] == "TRANSACTIONEND" && ids.len() >= until {
                return entry["header"]["logfileOffset"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
            }
        }
    };
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1), (2)"))
        .await
        .unwrap();
    let end = read_ids(&mut ids, 2).await;
    // tail acks after printing; with flush period 0 the ack lands in
    // ZooKeeper at once. Wait for it so the hand-over is clean.
    let cursor = format!("/otter/canal/destinations/{destination}/1001/cursor");
    let deadline = Instant::now() + WAIT;
    loop {
        let acked = match zookeeper.get_data(&cursor).await {
            Ok((json, _)) => serde_json::from_slice::<serde_json::Value>(&json).unwrap()["postion"]
                ["position"]
                .as_u64(),
            Err(_) => None,
        };
        if acked == Some(end) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client's ack reached ZooKeeper: {acked:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Hand-over: the first server stops (flushing the acked cursor), a
    // second one starts from the cursors in ZooKeeper and takes `running`.
    first.shutdown().await;
    let second = start_server_with(
        settings(&env, server_id + 1, &destination, &schema, start),
        cursors(),
        Credentials::default(),
    )
    .await;
    zookeeper
        .set_data(&running, &owner(second.address), None)
        .await
        .unwrap();
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (3), (4)"))
        .await
        .unwrap();
    read_ids(&mut ids, 4).await;
    assert_eq!(ids, ["1", "2", "3", "4"], "every row once, in order");
    let status = tokio::time::timeout(WAIT, tail.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "tail exits 0 after --count rows: {status:?}"
    );
    second.shutdown().await;
    let _ = zookeeper.delete(&running, None).await;
}

struct Ports {
    canal: u16,
    metrics: u16,
}

/// canal's configuration layout for one destination `example` reading
/// `schema`, file cursors under `dir`; `extra` is appended to
/// instance.properties.
fn write_conf(
    env: &LiveEnv,
    dir: &std::path::Path,
    server_id: u32,
    schema: &str,
    journal_name: &str,
    position: u64,
    extra: &str,
) -> Ports {
    let ports = Ports {
        canal: free_port(),
        metrics: free_port(),
    };
    std::fs::create_dir_all(dir.join("example")).unwrap();
    std::fs::write(
        dir.join("canal.properties"),
        format!(
            "canal.ip = 127.0.0.1\ncanal.port = {}\ncanal.metrics.pull.port = {}\ncanal.destinations = example\n\
             canal.file.data.dir = {}\ncanal.file.flush.period = 3600000\n",
            ports.canal,
            ports.metrics,
            dir.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("example/instance.properties"),
        format!(
            "canal.instance.mysql.slaveId = {server_id}\ncanal.instance.master.address = {}\n\
             canal.instance.dbUsername = {}\ncanal.instance.dbPassword = {}\n\
             canal.instance.master.journal.name = {journal_name}\ncanal.instance.master.position = {position}\n\
             canal.instance.filter.regex = {}\\\\..*\n{extra}",
            env.address, env.user, env.password, schema
        ),
    )
    .unwrap();
    ports
}

/// Starts the canal-server binary on `dir` and subscribes a client as 1001.
async fn spawn_server(
    dir: &std::path::Path,
    ports: &Ports,
) -> (tokio::process::Child, CanalClient) {
    let server = tokio::process::Command::new(env!("CARGO_BIN_EXE_canal-server"))
        .arg("--conf")
        .arg(dir)
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{}", ports.canal);
    let mut connected = None;
    for _ in 0..100 {
        if let Ok(c) =
            CanalClient::connect(&address, &Login::default(), Duration::from_secs(1)).await
        {
            connected = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = connected.expect("the server listens");
    client.subscribe("example", "1001", "").await.unwrap();
    (server, client)
}

/// A plain HTTP/1.1 GET: (status code, body).
async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the metric line starting with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_describe_the_destination() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("metrics");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("CREATE TABLE `{schema}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let StartPosition::FilePosition {
        journal_name,
        position,
    } = latest(&mut conn).await
    else {
        unreachable!()
    };
    let dir = temp_dir("metrics");
    let ports = write_conf(
        &env,
        &dir,
        server_id,
        &schema,
        &journal_name,
        position,
        "canal.instance.network.heartbeat = 500\n",
    );
    let (mut server, mut client) = spawn_server(&dir, &ports).await;
    assert_eq!(http_get(ports.metrics, "/healthz").await.0, 200);
    let (status, ready) = http_get(ports.metrics, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["example"]["running"], true, "{ready}");
    assert_eq!(ready["example"]["clients"], 1, "{ready}");

    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1), (2), (3)"))
        .await
        .unwrap();
    let batches = receive_rows(&mut client, 3, false).await;
    let (_, text) = http_get(ports.metrics, "/metrics").await;
    let label = r#"{destination="example",client="1001"}"#;
    assert_eq!(
        metric(&text, &format!("canal_client_batches_outstanding{label}")),
        Some(batches.len() as f64),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"canal_clients_connected{destination="example"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"canal_source_up{destination="example"}"#),
        Some(1.0)
    );
    assert!(metric(&text, r#"canal_store_events{destination="example"}"#).unwrap() > 0.0);
    assert!(metric(&text, r#"canal_binlog_events_total{destination="example"}"#).unwrap() > 0.0);

    for batch in &batches {
        client.ack(batch.batch_id).await.unwrap();
    }
    // The acks reached the server once a following request was answered.
    let _ = client.get(10, None).await.unwrap();
    // canal's cursor is the start of the last transaction end acked.
    let ack_position = batches
        .iter()
        .flat_map(|b| &b.entries)
        .filter(|e| e.entry_type() == EntryType::Transactionend)
        .filter_map(|e| e.header.as_ref())
        .map(|h| h.logfile_offset)
        .next_back()
        .expect("the transaction's end arrived");
    // Idle now: the heartbeats (every 500 ms) bring the delay back to ~0.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, text) = http_get(ports.metrics, "/metrics").await;
    let acked = metric(
        &text,
        &format!(
            r#"canal_client_acked_position{{destination="example",client="1001",journal="{journal_name}"}}"#
        ),
    );
    assert_eq!(acked, Some(ack_position as f64), "{text}");
    assert_eq!(
        metric(&text, &format!("canal_client_batches_outstanding{label}")),
        Some(0.0)
    );
    let delay = metric(
        &text,
        r#"canal_binlog_delay_seconds{destination="example"}"#,
    )
    .unwrap();
    assert!(delay < 1.0, "delay {delay} s while idle with heartbeats");

    server.start_kill().unwrap();
    let _ = server.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
