//! High availability with real processes: 2-3 `canal-server` processes
//! racing in the real three-node ZooKeeper ensemble over the real MariaDB.
//!
//! - the seed scenario (ports 11111/22222, canal's own cluster client across a
//!   graceful hand-over and a SIGKILL),
//! - a crash loop (20 SIGKILLs of the active server under 1,000 rows/s,
//!   with a MariaDB restart in the middle),
//! - partitions (the leader frozen with SIGSTOP; the leader cut off from
//!   ZooKeeper by a proxy) showing the old leader stops before the new one
//!   starts,
//! - ZooKeeper faults (one node of three lost: no interruption; quorum
//!   lost: everyone stops, then resumes without loss).
//!
//! The tests stop ZooKeeper nodes and MariaDB: they run one at a time.

mod common;

use std::{process::Stdio, time::Duration};

use common::{
    canal_java::java_client,
    cluster::{ServerProcess, SpawnOptions, test_dir, wait_for, write_conf},
    proxy::ProxySet,
    scene::{
        HaScene, LiveSchema,
        ha::{WAIT, active_of, finish, ha_events, node_appears, rows_after, stop_all, wait_role},
    },
    zk::{self, NodeAction, StoppedNode},
};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncBufReadExt;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The seed setup: two servers on 11111 and 22222 with the seed's keys;
/// canal's own cluster client follows a graceful hand-over and a SIGKILL
/// failover; the nodes and JSON are canal's.
#[tokio::test(flavor = "multi_thread")]
async fn seed_pair_hands_over_to_canals_cluster_client() {
    let _serial = SERIAL.lock().await;
    let servers = zk::servers();
    let zookeeper = zk::connect(&servers, Duration::from_secs(10)).await;
    zk::delete_all(&zookeeper, "/otter/canal/destinations/example").await;
    let LiveSchema {
        env,
        mut conn,
        name: schema,
        ..
    } = LiveSchema::create("seed", &["t (id INT PRIMARY KEY)"]).await;

    let dir = test_dir("seed");
    let conf_dir = dir.join("conf");
    write_conf(
        &conf_dir,
        &format!(
            "canal.port = 11111\n\
             canal.metrics.pull.port = 11112\n\
             canal.admin.port = 11110\n\
             canal.zkServers = {servers}\n\
             canal.instance.global.spring.xml = classpath:spring/default-instance.xml\n\
             canal.destinations = example\n"
        ),
        &[(
            "example",
            &format!(
                "canal.instance.mysql.slaveId=1234\n\
                 canal.instance.master.address={}\n\
                 canal.instance.dbUsername={}\n\
                 canal.instance.dbPassword={}\n\
                 canal.instance.connectionCharset = UTF-8\n",
                env.address, env.user, env.password
            ),
        )],
    );
    let mut options = [11111u16, 22222].map(|port| {
        let mut options = SpawnOptions::new(&format!("seed-{port}"), &conf_dir);
        options.client_port = port;
        options.metrics_port = port + 1;
        options
    });
    let mut pair: Vec<ServerProcess> = options
        .iter_mut()
        .map(|o| ServerProcess::spawn(o.clone()))
        .collect();
    let active = active_of(&pair, "example").await;
    let standby = 1 - active;
    // The other server may still be starting its metrics listener when the
    // first one wins: wait for its role rather than read it once.
    wait_role(&pair[standby], "example", "standby").await;

    // ZOOKEEPER.md's nodes, ephemeral, with canal's JSON.
    for server in &pair {
        for path in [
            format!("/otter/canal/cluster/{}", server.client_address),
            format!(
                "/otter/canal/destinations/example/cluster/{}",
                server.client_address
            ),
        ] {
            let stat = node_appears(&zookeeper, &path, WAIT).await;
            assert_ne!(stat.ephemeral_owner, 0, "{path} is ephemeral");
        }
    }
    let (running, stat) = zookeeper
        .get_data("/otter/canal/destinations/example/running")
        .await
        .unwrap();
    assert_ne!(stat.ephemeral_owner, 0);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&running).unwrap(),
        serde_json::json!({"active": true, "address": pair[active].client_address})
    );

    // canal's own ClusterCanalConnector, subscribed to our table only.
    let mut client = java_client()
        .args([
            "--zk",
            &servers,
            "--destination",
            "example",
            "--filter",
            &format!("{schema}\\..*"),
            "--count",
            "3",
            "--retry-times",
            "300",
            "--retry-interval-ms",
            "200",
            "--max-ms",
            "60000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("scripts/java-client runs");
    let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    wait_for("the Java client to subscribe", WAIT, async || {
        matches!(pair[active].readyz().await, Some((_, ready)) if ready["example"]["clients"] == 1)
    })
    .await;
    let mut next_row = async || loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the Java client prints within the deadline")
            .unwrap()
            .expect("the Java client is still running");
        let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
        // This test's table only: the destination has no filter, and rows
        // of other schemas decoded before the client's filter arrived are
        // delivered (canal's subscription filter applies from then on).
        if entry["entryType"] == "ROWDATA"
            && entry["schemaName"] == schema.as_str()
            && entry["tableName"] == "t"
        {
            return entry["rows"][0]["after"][0]["value"]
                .as_str()
                .unwrap()
                .to_owned();
        }
    };
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1)"))
        .await
        .unwrap();
    assert_eq!(next_row().await, "1");

    // Stop the active one: the other takes over, the next row arrives.
    pair[active].sigterm();
    assert!(pair[active].wait_exit(WAIT).await.success());
    wait_role(&pair[standby], "example", "active").await;
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (2)"))
        .await
        .unwrap();
    assert_eq!(next_row().await, "2", "the next row, not a repeat");
    // Who leads, in metrics: role, one term, the takeover's duration.
    let metrics = pair[standby].metrics().await.expect("metrics");
    for expected in [
        r#"canal_ha_role{destination="example",role="active"} 1"#,
        r#"canal_ha_role{destination="example",role="standby"} 0"#,
        r#"canal_ha_terms_total{destination="example"} 1"#,
        r#"canal_ha_fencings_total{destination="example"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(expected)),
            "{expected} in\n{metrics}"
        );
    }
    let failover: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"canal_ha_last_failover_seconds{destination="example"} "#))
        .expect("last failover duration")
        .parse()
        .unwrap();
    assert!(failover < 1.0, "a graceful hand-over: {failover} s");

    // The stopped server comes back as the standby and the active one is
    // SIGKILLed: canal's client finds the new leader by itself, and nothing
    // acknowledged is lost. A row not yet acknowledged may come again
    // (at-least-once), so anything before row 3 must be row 2.
    pair[active].restart();
    wait_role(&pair[active], "example", "standby").await;
    pair[standby].sigkill();
    wait_role(&pair[active], "example", "active").await;
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (3)"))
        .await
        .unwrap();
    loop {
        match next_row().await.as_str() {
            "3" => break,
            "2" => println!("row 2 delivered again after the SIGKILL (not yet acknowledged)"),
            other => panic!("row {other} after the SIGKILL failover, expected 3 (or 2 again)"),
        }
    }
    let status = tokio::time::timeout(WAIT, client.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the Java client got its 3 rows: {status:?}"
    );

    let (running, _) = zookeeper
        .get_data("/otter/canal/destinations/example/running")
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&running).unwrap(),
        serde_json::json!({"active": true, "address": pair[active].client_address})
    );
    let (cursor, _) = zookeeper
        .get_data("/otter/canal/destinations/example/1001/cursor")
        .await
        .unwrap();
    let cursor: serde_json::Value = serde_json::from_slice(&cursor).unwrap();
    assert_eq!(
        cursor["@type"],
        "com.alibaba.otter.canal.protocol.position.LogPosition"
    );
    assert!(cursor["postion"]["journalName"].is_string(), "{cursor}");
    assert!(cursor["postion"]["position"].as_u64().unwrap() > 4);
    assert_eq!(cursor["postion"]["included"], false);
    pair[active].sigterm();
    assert!(pair[active].wait_exit(WAIT).await.success());
    zk::delete_all(&zookeeper, "/otter/canal/destinations/example").await;
}

/// SIGKILL the active server 20 times under a steady multi-table writer
/// (MariaDB restarted after the 10th): every committed row arrives,
/// transactions whole, per-table order kept.
#[tokio::test(flavor = "multi_thread")]
async fn crash_loop_loses_nothing() {
    let _serial = SERIAL.lock().await;
    // A 2 s session keeps 20 crash failovers short.
    let scene = HaScene::new("crash", 2000).await;
    let destination = &scene.destination;
    let writer = scene.writer(4, 1000).await;
    let mut trio = scene.spawn(&["crash-a", "crash-b", "crash-c"]);
    active_of(&trio, destination).await;
    let checker = scene.checker();
    for kill in 1..=20 {
        let active = active_of(&trio, destination).await;
        // Let this leader make progress before killing it: rows not seen
        // before (a failover first repeats what was not acknowledged), in a
        // second batch of its session, so the first batch's ack, which the
        // server writes before it answers the next GET, is in ZooKeeper.
        // Killed earlier, a leader that persisted nothing makes the next one
        // repeat two terms' rows, which is at-least-once but not what the
        // duplicate bound below measures.
        let before = checker.distinct_rows();
        wait_for("new rows from the new leader", WAIT, async || {
            checker.distinct_rows() > before + 200 && checker.batches_on_current_connection() >= 2
        })
        .await;
        trio[active].sigkill();
        let _ = trio[active].wait_exit(WAIT).await;
        // Restarted only after another server took over: under its old
        // address it would be the previous owner and win again at once.
        let next = active_of(&trio, destination).await;
        assert_ne!(next, active, "a killed server cannot be active");
        trio[active].restart();
        if kill == 10 {
            zk::scripts_env(&["mariadb-node", "restart"]);
        }
    }
    rows_after("rows after the last crash", &checker, 200).await;
    let (verdict, _) = finish("crash loop", writer, checker).await;
    assert!(
        verdict.server_switches >= 20,
        "the checker followed every failover: {}",
        verdict.server_switches
    );
    assert!(verdict.committed_rows >= 20_000, "the writer kept going");
    stop_all(&mut trio).await;
}

/// The leader cut off from ZooKeeper (its connections blackholed): it stops
/// serving before the other server starts, then rejoins as standby.
#[tokio::test(flavor = "multi_thread")]
async fn partitioned_leader_stops_before_the_new_one_starts() {
    let _serial = SERIAL.lock().await;
    let scene = HaScene::new("cut", 4000).await;
    let destination = &scene.destination;
    // One proxy set per server, so one server alone can be cut off.
    let proxies = [
        ProxySet::start(&scene.zk_servers),
        ProxySet::start(&scene.zk_servers),
    ];
    let mut pair = vec![
        scene.spawn_through("cut-a", &proxies[0].connect_string()),
        scene.spawn_through("cut-b", &proxies[1].connect_string()),
    ];
    let writer = scene.writer(2, 300).await;
    let checker = scene.checker();
    let old = active_of(&pair, destination).await;
    let new = 1 - old;
    wait_for("rows flowing", WAIT, async || {
        checker.row_deliveries() > 300
    })
    .await;

    proxies[old].cut();
    wait_role(&pair[new], destination, "active").await;
    let fenced = ha_events(&pair[old], "fenced");
    let started = ha_events(&pair[new], "active");
    let (Some(fenced), Some(started)) = (fenced.last(), started.last()) else {
        panic!("fenced: {fenced:?}, active: {started:?}");
    };
    println!("old leader stopped serving at {fenced}, new leader active at {started}");
    assert!(
        fenced < started,
        "the old leader stopped ({fenced}) before the new one started ({started})"
    );
    let margin = started.duration_since(*fenced);
    println!("margin: {margin:?}");

    proxies[old].heal();
    wait_role(&pair[old], destination, "standby").await;
    rows_after("rows after the partition", &checker, 100).await;
    let (_, report) = finish("partition", writer, checker).await;
    // No batch from the old leader was received after the new one started.
    let old_address = pair[old].client_address.clone();
    let late: Vec<_> = report
        .batches
        .iter()
        .filter(|b| b.server == old_address && b.received_at > *started)
        .collect();
    assert!(
        late.is_empty(),
        "the old leader served after the takeover: {}",
        late.len()
    );
    stop_all(&mut pair).await;
}

/// The leader frozen (SIGSTOP) past its session: the other takes over; the
/// frozen one, resumed, fences itself before sending anything and rejoins
/// as standby.
#[tokio::test(flavor = "multi_thread")]
async fn frozen_leader_fences_itself_when_resumed() {
    let _serial = SERIAL.lock().await;
    let scene = HaScene::new("freeze", 4000).await;
    let destination = &scene.destination;
    let mut pair = scene.spawn(&["freeze-a", "freeze-b"]);
    let writer = scene.writer(2, 300).await;
    let checker = scene.checker();
    let old = active_of(&pair, destination).await;
    let new = 1 - old;
    wait_for("rows flowing", WAIT, async || {
        checker.row_deliveries() > 300
    })
    .await;

    pair[old].sigstop();
    let frozen_at = jiff::Timestamp::now();
    wait_role(&pair[new], destination, "active").await;
    let started = *ha_events(&pair[new], "active").last().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    pair[old].sigcont();
    wait_role(&pair[old], destination, "standby").await;
    let fenced = *ha_events(&pair[old], "fenced").last().expect("it fenced");
    println!(
        "frozen at {frozen_at}, new leader at {started}, old fenced (after resume) at {fenced}"
    );
    rows_after("rows after the freeze", &checker, 100).await;
    let (_, report) = finish("freeze", writer, checker).await;
    let old_address = pair[old].client_address.clone();
    assert!(
        !report
            .batches
            .iter()
            .any(|b| b.server == old_address && b.received_at > started),
        "nothing from the frozen leader after the takeover"
    );
    stop_all(&mut pair).await;
}

/// One ZooKeeper node of three lost: the leader goes on (no fencing, no
/// client reconnect). Quorum lost: every server stops serving within the
/// session timeout; when quorum returns, service resumes without loss.
#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_node_loss_and_quorum_loss() {
    let _serial = SERIAL.lock().await;
    let session_ms = 4000;
    let scene = HaScene::new("quorum", session_ms).await;
    let destination = &scene.destination;
    let mut pair = scene.spawn(&["quorum-a", "quorum-b"]);
    let writer = scene.writer(2, 300).await;
    let checker = scene.checker();
    let leader = active_of(&pair, destination).await;
    wait_for("rows flowing", WAIT, async || {
        checker.row_deliveries() > 300
    })
    .await;

    // The node serving the leader's session goes away.
    let zookeeper = zk::connect(&scene.zk_servers, Duration::from_secs(10)).await;
    let (_, stat) = zookeeper
        .get_data(&zk::running_path(destination))
        .await
        .unwrap();
    let node = zk::node_serving(stat.ephemeral_owner)
        .await
        .expect("the leader's session is served by a node");
    drop(zookeeper);
    let connections = checker.connections().len();
    let one = StoppedNode::new(NodeAction::Stop, node).await;
    rows_after("rows with one node down", &checker, 600).await;
    assert_eq!(
        pair[leader].role(destination).await.as_deref(),
        Some("active"),
        "no interruption"
    );
    assert!(
        ha_events(&pair[leader], "fenced").is_empty(),
        "never fenced"
    );
    assert_eq!(
        checker.connections().len(),
        connections,
        "the client stayed connected"
    );
    one.start().await;

    // Quorum lost: two nodes down, the second one killed, so that the
    // moment quorum goes is known.
    let first = StoppedNode::new(NodeAction::Stop, 1).await;
    let lost_at = std::time::Instant::now();
    let second = StoppedNode::new(NodeAction::Kill, 2).await;
    wait_for("every server to stop serving", WAIT, async || {
        let mut serving = false;
        for server in &pair {
            serving |= server.role(destination).await.as_deref() == Some("active");
        }
        !serving
    })
    .await;
    let stopped_after = lost_at.elapsed();
    println!("quorum lost: nobody serves after {stopped_after:?}");
    assert!(
        stopped_after < Duration::from_millis(session_ms),
        "stopped within the session timeout: {stopped_after:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.start().await;
    second.start().await;
    active_of(&pair, destination).await;
    rows_after("rows after quorum returned", &checker, 300).await;
    finish("ZooKeeper faults", writer, checker).await;
    stop_all(&mut pair).await;
}

/// canal.register.ip is what goes into ZooKeeper (clients dial it).
#[tokio::test(flavor = "multi_thread")]
async fn registered_address_comes_from_canal_register_ip() {
    let _serial = SERIAL.lock().await;
    let scene = HaScene::new("register", 4000).await;
    let destination = &scene.destination;
    let mut server = ServerProcess::spawn(
        SpawnOptions::new("register", &scene.conf_dir).env("canal.register.ip", "localhost"),
    );
    active_of(std::slice::from_ref(&server), destination).await;
    let port = server.client_address.rsplit_once(':').unwrap().1.to_owned();
    let zookeeper = zk::connect(&scene.zk_servers, Duration::from_secs(10)).await;
    let (running, _) = zookeeper
        .get_data(&zk::running_path(destination))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&running).unwrap()["address"],
        format!("localhost:{port}")
    );
    node_appears(
        &zookeeper,
        &format!("/otter/canal/cluster/localhost:{port}"),
        WAIT,
    )
    .await;
    server.sigterm();
    assert!(server.wait_exit(WAIT).await.success());
    assert!(
        zookeeper
            .check_stat(&format!("/otter/canal/cluster/localhost:{port}"))
            .await
            .unwrap()
            .is_none(),
        "a graceful stop removes the member node"
    );
}
