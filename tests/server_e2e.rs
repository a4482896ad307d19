//! MariaDB → canal-server → clients: our client and canal's own Java client
//! (Maven Central com.alibaba.otter:canal.client 1.1.8), rollback,
//! restart from cursors, backpressure, ZooKeeper cursor layout, SIGTERM,
//! metrics, and `tail --zk` following the running server.

mod common;

use std::{
    collections::BTreeMap,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use canal::{
    binlog::position::StartPosition,
    client::{CanalClient, Received},
    cursor::{CursorStore, SharedCursorStore, file::FileCursors, zk::ZkCursors},
    protocol::{
        auth::Credentials,
        entry::{EntryType, EventType, RowChange},
    },
    server::InstanceSettings,
    store::{BatchMode, StoreConfig},
};
use common::{
    canal_java::java_client,
    cluster::test_dir,
    live::{settings, start_server_with, unique},
    scene::{LiveSchema, ServerScene, server::DESTINATION},
    zk,
};
use mysql_async::prelude::Queryable;
use prost::Message;

/// The table most tests write to.
const ID_TABLE: &str = "t (id INT PRIMARY KEY)";
const WAIT: Duration = Duration::from_secs(60);

/// The tests share the binlog and some ports: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let mut scene = ServerScene::new("e2e")
        .table("t (id INT PRIMARY KEY, v VARCHAR(20))")
        .start()
        .await;
    let mut client = scene.client().await;
    let schema = scene.schema.name.clone();
    scene
        .schema
        .execute(&format!(
            "INSERT INTO `{schema}`.t VALUES (1, 'one'), (2, 'two');
             UPDATE `{schema}`.t SET v = 'uno' WHERE id = 1;
             DELETE FROM `{schema}`.t WHERE id = 2;
             ALTER TABLE `{schema}`.t ADD COLUMN n INT;
             USE `{schema}`;
             INSERT INTO t SELECT seq + 10, 'bulk', seq FROM seq_1_to_20000"
        ))
        .await;
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
    scene.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_redelivers_unacked_batches() {
    let _serial = SERIAL.lock().await;
    let mut scene = ServerScene::new("rollback").table(ID_TABLE).start().await;
    let mut client = scene.client().await;
    let schema = scene.schema.name.clone();
    scene
        .schema
        .execute(&format!("INSERT INTO `{schema}`.t VALUES (1), (2), (3)"))
        .await;
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
    scene.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_resumes_from_the_cursor() {
    let _serial = SERIAL.lock().await;
    let dir = test_dir("e2e-restart");
    let cursors =
        || -> SharedCursorStore { Arc::new(FileCursors::new(&dir.join("example"), "example")) };
    /// Small batches; only the shutdown flushes cursors.
    fn small_batches(settings: &mut InstanceSettings) {
        settings.store.batch_mode = BatchMode::ItemSize;
        settings.flush_period = Duration::from_secs(3600);
    }
    let mut scene = ServerScene::new("restart")
        .table(ID_TABLE)
        .settings(small_batches)
        .cursors(cursors())
        .start()
        .await;
    let mut client = scene.client().await;
    let schema = scene.schema.name.clone();
    for id in 1..=10 {
        scene
            .schema
            .execute(&format!("INSERT INTO `{schema}`.t VALUES ({id})"))
            .await;
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
    scene.server.shutdown().await;
    for id in 11..=15 {
        scene
            .schema
            .execute(&format!("INSERT INTO `{schema}`.t VALUES ({id})"))
            .await;
    }
    // The configured start is ignored once a cursor exists.
    let mut settings = scene.schema.settings(DESTINATION);
    settings.start = Some(StartPosition::Latest);
    small_batches(&mut settings);
    scene.server = start_server_with(settings, cursors(), Credentials::default()).await;
    let mut client = scene.client().await;
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
    scene.server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn backpressure_bounds_the_store_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let capacity = StoreConfig {
        capacity_events: 64,
        capacity_bytes: 32 * 1024,
        batch_mode: BatchMode::ItemSize,
        memunit: 1024,
        ddl_isolation: false,
    };
    let mut scene = ServerScene::new("pressure")
        .table("t (id INT PRIMARY KEY, pad VARCHAR(200))")
        .settings(move |s| s.store = capacity)
        .start()
        .await;
    let mut client = scene.client().await;
    let schema = scene.schema.name.clone();
    scene.schema.execute(&format!("USE `{schema}`")).await;
    for batch in 0..20 {
        scene
            .schema
            .execute(&format!(
                "INSERT INTO t SELECT {batch} * 100 + seq, REPEAT('p', 150) FROM seq_1_to_100"
            ))
            .await;
    }
    // A client that takes but never acknowledges: the store fills and stops.
    let instance = scene.server.shared.instance("example").unwrap();
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
    scene.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_cursors_use_canal_paths_and_json() {
    let _serial = SERIAL.lock().await;
    let servers = zk::servers();
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

#[tokio::test(flavor = "multi_thread")]
async fn canal_java_client_consumes_unchanged() {
    let _serial = SERIAL.lock().await;
    let mut scene = ServerScene::new("java")
        .table("t (id INT PRIMARY KEY, v VARCHAR(20), d DECIMAL(10,2))")
        .login("canal", "canal")
        .start()
        .await;
    let schema = scene.schema.name.clone();
    let child = java_client()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .args([
            "--addr",
            &scene.server.address.to_string(),
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
    scene
        .schema
        .execute(&format!(
            "INSERT INTO `{schema}`.t VALUES (1, 'ü', 1.50), (2, NULL, -2.00);
             UPDATE `{schema}`.t SET v = 'x' WHERE id = 2;
             DELETE FROM `{schema}`.t WHERE id = 1;
             ALTER TABLE `{schema}`.t ADD COLUMN n INT;
             USE `{schema}`;
             INSERT INTO t SELECT seq + 10, 'bulk', seq, seq FROM seq_1_to_1001"
        ))
        .await;
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
    scene.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_cursors_and_exits_zero() {
    let _serial = SERIAL.lock().await;
    let mut scene = ServerScene::new("sigterm").table(ID_TABLE).spawn().await;
    let mut client = scene.client().await;
    let schema = scene.schema.name.clone();
    let journal_name = scene.schema.file_position().0.to_owned();
    scene
        .schema
        .execute(&format!("INSERT INTO `{schema}`.t VALUES (1), (2)"))
        .await;
    receive_rows(&mut client, 2, true).await;
    // The ack reached the server once a following request was answered.
    let _ = client.get(10, None).await.unwrap();
    scene.server.sigterm();
    let status = scene.server.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    // canal.file.data.dir/<destination>/meta.dat
    let meta = std::fs::read_to_string(scene.data_dir.join("example/meta.dat"))
        .expect("meta.dat written on shutdown");
    assert!(
        meta.contains(r#""clientId":1001"#) && meta.contains(&journal_name),
        "{meta}"
    );
    let _ = std::fs::remove_dir_all(&scene.dir);
}

/// `tail --zk` finds the server named in `{dest}/running` and, when that
/// server goes away and `running` names another, follows it; with cursors
/// in ZooKeeper the second server resumes where the client acked.
#[tokio::test(flavor = "multi_thread")]
async fn tail_follows_the_running_node_across_servers() {
    use tokio::io::AsyncBufReadExt;
    let _serial = SERIAL.lock().await;
    let servers = zk::servers();
    let zookeeper = zookeeper_client::Client::connect(&servers)
        .await
        .expect("ZooKeeper ensemble");
    let LiveSchema {
        env,
        mut conn,
        server_id,
        name: schema,
        start,
        ..
    } = LiveSchema::create("tailzk", &[ID_TABLE]).await;
    let destination = format!("tail{server_id}");
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
    zk::create_all(
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

/// The value of the metric line starting with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_describe_the_destination() {
    let _serial = SERIAL.lock().await;
    let mut scene = ServerScene::new("metrics")
        .table(ID_TABLE)
        .instance_properties("canal.instance.network.heartbeat = 500\n")
        .spawn()
        .await;
    let mut client = scene.client().await;
    let schema = scene.schema.name.clone();
    let journal_name = scene.schema.file_position().0.to_owned();
    let http_get = async |path| {
        scene
            .server
            .http_get(path)
            .await
            .expect("the server answers")
    };
    assert_eq!(http_get("/healthz").await.0, 200);
    let (status, ready) = http_get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["example"]["running"], true, "{ready}");
    assert_eq!(ready["example"]["clients"], 1, "{ready}");

    scene
        .schema
        .execute(&format!("INSERT INTO `{schema}`.t VALUES (1), (2), (3)"))
        .await;
    let batches = receive_rows(&mut client, 3, false).await;
    let (_, text) = http_get("/metrics").await;
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
    let (_, text) = http_get("/metrics").await;
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

    scene.server.sigkill();
    let _ = std::fs::remove_dir_all(&scene.dir);
}
