//! The ZooKeeper race with in-process servers (each with its own ZooKeeper
//! session, as separate processes would have) against the real ensemble
//! and MariaDB: canal's nodes and JSON, standby answers, graceful
//! hand-over with exact cursors, release on request, fencing when the
//! running node names someone else. Process-level failures (SIGKILL,
//! SIGSTOP, partitions, ZooKeeper faults) are in `tests/ha_failover.rs`.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use canal::{
    cursor::zk::ZkCursors,
    ha::{HaSettings, Role, ZkSession, nodes},
    protocol::auth::Credentials,
    server::{HaOptions, RunningServer, StartOptions},
};
use common::{
    cluster::free_port,
    live::{LiveEnv, latest, settings, unique},
    rows::{receive_acked, try_subscribe as subscribe},
    scene::{LiveSchema, ha::node_appears},
    zk::servers as zk_servers,
};
use mysql_async::{Conn, prelude::Queryable};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One server "process": its own ZooKeeper session, one destination.
struct Node {
    server: Option<RunningServer>,
    zk: Arc<ZkSession>,
    background: CancellationToken,
    address: String,
    destination: String,
}

impl Node {
    async fn start(server_id: u32, destination: &str, schema: &str) -> Node {
        let env = LiveEnv::get();
        let background = CancellationToken::new();
        let zk = ZkSession::connect(&zk_servers(), HaSettings::default(), &background)
            .await
            .expect("ZooKeeper ensemble");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let mut conn = env.root().await;
        let start = latest(&mut conn).await;
        let settings = settings(&env, server_id, destination, schema, start);
        let cursors: canal::cursor::SharedCursorStore =
            Arc::new(ZkCursors::with_session(zk.clone(), destination));
        let server = canal::server::start(StartOptions {
            bind: address.parse().unwrap(),
            metrics_bind: None,
            credentials: Credentials::default(),
            instances: vec![(settings, cursors)],
            ha: Some(HaOptions {
                zk: zk.clone(),
                address: address.clone(),
            }),
        })
        .await
        .expect("server starts");
        Node {
            server: Some(server),
            zk,
            background,
            address,
            destination: destination.to_owned(),
        }
    }

    fn role(&self) -> Role {
        self.server.as_ref().map_or(Role::Standby, |s| {
            s.shared.destinations[&self.destination].ha().role()
        })
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.background.cancel();
    }
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// A fresh schema with table `t`, a destination named after it, and a
/// connection for the test's rows.
async fn setup(prefix: &str) -> (u32, String, String, Conn) {
    let schema = LiveSchema::create(prefix, &["t (id INT PRIMARY KEY)"]).await;
    let destination = schema.destination();
    (schema.server_id, schema.name, destination, schema.conn)
}

/// Exactly one of the nodes is active; returns its index.
async fn the_active(nodes: &[&Node]) -> usize {
    wait_for("one active server", || {
        nodes.iter().filter(|n| n.role() == Role::Active).count() == 1
    })
    .await;
    nodes.iter().position(|n| n.role() == Role::Active).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn canal_nodes_standby_answers_and_graceful_handover() {
    let _serial = SERIAL.lock().await;
    let (server_id, schema, destination, mut conn) = setup("race").await;
    let mut a = Node::start(server_id, &destination, &schema).await;
    let mut b = Node::start(server_id + 1, &destination, &schema).await;
    let first = the_active(&[&a, &b]).await;
    let (active, standby) = if first == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    // canal's nodes and JSON.
    let zk = active.zk.client();
    for node in [&*active, &*standby] {
        for path in [
            nodes::server_member(&node.address),
            nodes::destination_member(&destination, &node.address),
        ] {
            let stat = node_appears(&zk, &path, WAIT).await;
            assert_eq!(
                stat.ephemeral_owner,
                node.zk.session_id(),
                "{path} is ephemeral, its own"
            );
        }
    }
    let (data, stat) = zk.get_data(&nodes::running(&destination)).await.unwrap();
    let running: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        running,
        serde_json::json!({"active": true, "address": active.address})
    );
    assert_eq!(stat.ephemeral_owner, active.zk.session_id());

    // A standby turns clients away the way canal does.
    let refused = subscribe(&standby.address, &destination)
        .await
        .err()
        .expect("standby refuses");
    assert!(
        refused
            .to_string()
            .contains(&format!("destination:{destination} should start first")),
        "{refused}"
    );

    let mut client = subscribe(&active.address, &destination).await.unwrap();
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1), (2)"))
        .await
        .unwrap();
    assert_eq!(receive_acked(&mut client, 2, WAIT).await, ["1", "2"]);

    // Graceful stop: cursors flushed, running released, the standby serves
    // at once from exactly the acked cursor.
    let stopped = Instant::now();
    active.stop().await;
    wait_for("the standby takes over", || standby.role() == Role::Active).await;
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(2),
        "graceful hand-over took {handover:?}"
    );
    assert!(
        subscribe(&active.address, &destination).await.is_err(),
        "the stopped server no longer serves"
    );
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (3)"))
        .await
        .unwrap();
    let mut client = subscribe(&standby.address, &destination).await.unwrap();
    assert_eq!(
        receive_acked(&mut client, 1, WAIT).await,
        ["3"],
        "no loss, no duplicate"
    );
    let (data, _) = zk.get_data(&nodes::running(&destination)).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&data).unwrap()["address"],
        standby.address.as_str()
    );
    standby.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn active_false_requests_a_release() {
    let _serial = SERIAL.lock().await;
    let (server_id, schema, destination, _conn) = setup("release").await;
    let mut a = Node::start(server_id, &destination, &schema).await;
    let mut b = Node::start(server_id + 1, &destination, &schema).await;
    let first = the_active(&[&a, &b]).await;
    let owner = if first == 0 { &a } else { &b };
    let zk = owner.zk.client();
    let released = serde_json::json!({"active": false, "address": owner.address});
    zk.set_data(
        &nodes::running(&destination),
        released.to_string().as_bytes(),
        None,
    )
    .await
    .unwrap();
    wait_for("the other server takes over", || {
        [&a, &b][1 - first].role() == Role::Active
    })
    .await;
    assert_eq!(
        [&a, &b][first].role(),
        Role::Standby,
        "released, not fenced"
    );
    assert_eq!(
        [&a, &b][first].server.as_ref().unwrap().shared.destinations[&destination]
            .ha()
            .fencings(),
        0
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_address_in_running_fences_the_owner() {
    let _serial = SERIAL.lock().await;
    let (server_id, schema, destination, _conn) = setup("foreign").await;
    let mut a = Node::start(server_id, &destination, &schema).await;
    wait_for("active", || a.role() == Role::Active).await;
    let mut client = subscribe(&a.address, &destination).await.unwrap();
    let zk = a.zk.client();
    zk.set_data(
        &nodes::running(&destination),
        br#"{"active":true,"address":"10.255.255.1:11111"}"#,
        None,
    )
    .await
    .unwrap();
    let ha = || {
        a.server.as_ref().unwrap().shared.destinations[&destination]
            .ha()
            .fencings()
    };
    wait_for("fenced", || ha() >= 1).await;
    // Its client sessions were closed.
    let outcome = client.get(1, Some(Duration::from_millis(100))).await;
    assert!(outcome.is_err(), "the session is closed: {outcome:?}");
    // It gave the tampered node up and won a clean one.
    wait_for("active again", || a.role() == Role::Active).await;
    let (data, _) = zk.get_data(&nodes::running(&destination)).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&data).unwrap()["address"],
        a.address.as_str()
    );
    a.stop().await;
}

/// `tail --zk` holds canal's client lock: of two consumers with the same
/// client id one prints, the other stands by; when the first stops, the
/// second takes over from the acked cursor.
#[tokio::test(flavor = "multi_thread")]
async fn one_tail_per_client_id_holds_the_lock() {
    use tokio::io::AsyncBufReadExt;
    let _serial = SERIAL.lock().await;
    let (server_id, schema, destination, mut conn) = setup("lock").await;
    let mut server = Node::start(server_id, &destination, &schema).await;
    wait_for("active", || server.role() == Role::Active).await;
    let spawn_tail = || {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_canal-server"))
            .args([
                "tail",
                "--zk",
                &zk_servers(),
                "--destination",
                &destination,
                "--json",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    };
    let zk = server.zk.client();
    let lock = format!("{}/1001/running", nodes::destination(&destination));
    let (mut first, mut first_lines) = spawn_tail();
    let started = Instant::now();
    while zk.check_stat(&lock).await.unwrap().is_none() {
        assert!(started.elapsed() < WAIT, "the first tail takes the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut second, mut second_lines) = spawn_tail();
    // The holder's node: canal's ClientRunningData with its connection address.
    let (data, stat) = zk.get_data(&lock).await.unwrap();
    let holder: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(holder["clientId"], 1001);
    assert_eq!(holder["active"], true);
    assert_ne!(stat.ephemeral_owner, 0);

    let ids_of = |line: &str| -> Vec<String> {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        entry["rowChange"]["rowDatas"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r["afterColumns"][0]["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1)"))
        .await
        .unwrap();
    loop {
        let line = tokio::time::timeout(WAIT, first_lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if ids_of(&line) == ["1"] {
            break;
        }
    }
    // The standby printed nothing.
    let quiet = tokio::time::timeout(Duration::from_millis(500), second_lines.next_line()).await;
    assert!(quiet.is_err(), "the standby consumer printed: {quiet:?}");

    // SIGTERM: the holder releases the lock; the standby takes over and
    // goes on after the acked row.
    std::process::Command::new("kill")
        .args(["-TERM", &first.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(first.wait().await.unwrap().success());
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (2)"))
        .await
        .unwrap();
    loop {
        let line = tokio::time::timeout(WAIT, second_lines.next_line())
            .await
            .expect("the standby consumer took over")
            .unwrap()
            .unwrap();
        let ids = ids_of(&line);
        assert_ne!(ids, ["1"], "row 1 was acked by the first consumer");
        if ids == ["2"] {
            break;
        }
    }
    second.kill().await.unwrap();
    server.stop().await;
}

/// A chroot in the connect string ("host:2181/team") that does not exist
/// yet is created on connect: without it every node under it fails NoNode
/// and the server would stand by forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_chroot_is_created_on_connect() {
    let (_, chroot) = unique("chroot");
    let background = CancellationToken::new();
    let servers = format!("{}/{chroot}", zk_servers());
    let zk = ZkSession::connect(&servers, HaSettings::default(), &background)
        .await
        .expect("ZooKeeper ensemble with a new chroot");
    let path = "/otter/canal/destinations/d/running";
    nodes::create_ephemeral(&zk.client(), path, b"{}")
        .await
        .expect("a node under the new chroot");
    let root = ZkSession::connect(&zk_servers(), HaSettings::default(), &background)
        .await
        .expect("ZooKeeper ensemble");
    assert!(
        root.client()
            .check_stat(&format!("/{chroot}{path}"))
            .await
            .unwrap()
            .is_some(),
        "/{chroot}{path} exists, seen without the chroot"
    );
    nodes::delete_own(&zk.client(), path).await.unwrap();
    for node in [
        "/otter/canal/destinations/d",
        "/otter/canal/destinations",
        "/otter/canal",
        "/otter",
    ] {
        let _ = zk.client().delete(node, None).await;
    }
    let _ = root.client().delete(&format!("/{chroot}"), None).await;
    background.cancel();
}
