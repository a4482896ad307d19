//! The operator's ZooKeeper side against the real ensemble (and, for the
//! cursor reset, a real canal-server over the real MariaDB): the view
//! follows the nodes through watches (the safety-net resync is set to an
//! hour, so only watches can explain an update), sessions are shared and
//! replaced after expiry, cursors are reset under a fenced lock, and a
//! destination is deleted without touching anything else.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use canal::{
    binlog::position::{LogPosition, StartPosition},
    client::CanalClient,
    cursor::json::{self, CursorRecord},
    ha::{HaSettings, ZkSession, zk_session::DigestAuth},
    operator::zookeeper::{
        ClientCursor, DestinationView, FENCE_GRACE, Observation, ObservedKey, Observer,
        ObserverSettings, RESET_ADDRESS, ZkAdminError, delete_destination, reset_cursors,
    },
};
use common::{
    cluster::{ServerProcess, SpawnOptions, test_dir, wait_for, write_conf},
    live::{instance_properties, latest},
    proxy::ProxySet,
    rows::{receive_acked, try_subscribe},
    scene::{LiveSchema, ha::ha_properties},
    zk::{self as zkt, DESTINATIONS},
};
use futures_util::{FutureExt, StreamExt};
use mysql_async::prelude::Queryable;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError};

/// How soon a change must show in the view.
const WATCH_LATENCY: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(60);

/// Watches only: the resync safety net never runs during a test.
fn settings() -> ObserverSettings {
    ObserverSettings {
        resync: Duration::from_secs(3600),
        ..ObserverSettings::default()
    }
}

fn unique_destination(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "opzk-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn base(destination: &str) -> String {
    format!("{DESTINATIONS}/{destination}")
}

async fn zookeeper() -> Client {
    zkt::connect(&zkt::servers(), Duration::from_secs(10)).await
}

fn cursor_json(journal: &str, position: u64) -> String {
    json::to_json(&CursorRecord {
        position: LogPosition {
            journal_name: journal.to_owned(),
            position,
            server_id: 1,
            gtid: String::new(),
            timestamp_ms: 1_700_000_000_000,
        },
        source_host: "db.example".to_owned(),
        source_port: 3306,
    })
}

/// Waits (at most `within`) for an observation `accept`ed; `None` on
/// timeout (or a closed channel).
async fn wait_observation(
    observations: &mut watch::Receiver<Observation>,
    within: Duration,
    accept: impl Fn(&Observation) -> bool,
) -> Option<Observation> {
    match tokio::time::timeout(within, observations.wait_for(accept)).await {
        Ok(Ok(observation)) => Some(observation.clone()),
        _ => None,
    }
}

/// Waits (at most `within`) until the observation is a view accepted by
/// `accept`; returns it and how long it took.
async fn seen(
    observations: &mut watch::Receiver<Observation>,
    within: Duration,
    what: &str,
    accept: impl Fn(&DestinationView) -> bool,
) -> (DestinationView, Duration) {
    let started = Instant::now();
    let found = wait_observation(
        observations,
        within,
        |o| matches!(o, Observation::Seen(view) if accept(view)),
    )
    .await;
    match found {
        Some(Observation::Seen(view)) => (view, started.elapsed()),
        _ => panic!(
            "no view with {what} within {within:?}; the observation is {:?}",
            *observations.borrow()
        ),
    }
}

fn running_address(view: &DestinationView) -> Option<&str> {
    view.running.as_ref().map(|r| r.address.as_str())
}

fn positions(view: &DestinationView) -> Vec<(&str, u64)> {
    view.cursors
        .iter()
        .map(|c| (c.client_id.as_str(), c.position))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn view_follows_running_members_and_cursors_through_watches() {
    let servers = zkt::servers();
    let zk = zookeeper().await;
    let destination = unique_destination("view");
    let base = base(&destination);
    let observer = Observer::with_settings(settings());
    let key = ObservedKey::new(&servers, &destination);
    let mut changes = Box::pin(observer.changes());
    let mut observations = observer.watch(key.clone());

    // Nothing there yet.
    seen(&mut observations, WAIT, "an empty destination", |v| {
        *v == DestinationView::default()
    })
    .await;

    // A server registers and takes the destination.
    while changes.next().now_or_never().flatten().is_some() {}
    let (a, b) = ("10.9.0.2:11111", "10.9.0.1:11111");
    zkt::create_all(
        &zk,
        &format!("{base}/cluster/{a}"),
        b"",
        CreateMode::Ephemeral,
    )
    .await;
    zkt::claim_running(&zk, &destination, a).await;
    let (view, took) = seen(
        &mut observations,
        WATCH_LATENCY,
        "the running server",
        |v| running_address(v) == Some(a) && v.members == [a],
    )
    .await;
    println!("running and member seen after {took:?}");
    let (_, stat) = zk.get_data(&zkt::running_path(&destination)).await.unwrap();
    let running = view.running.unwrap();
    assert!(running.active);
    assert_eq!(running.since.as_millisecond(), stat.ctime);
    let changed = tokio::time::timeout(WATCH_LATENCY, changes.next()).await;
    assert_eq!(
        changed.ok().flatten(),
        Some(key.clone()),
        "changes() names the key"
    );

    // A second member: sorted.
    zkt::create_all(
        &zk,
        &format!("{base}/cluster/{b}"),
        b"",
        CreateMode::Ephemeral,
    )
    .await;
    seen(
        &mut observations,
        WATCH_LATENCY,
        "two sorted members",
        |v| v.members == [b, a],
    )
    .await;

    // A client acknowledges: its cursor appears, then moves.
    let cursor = format!("{base}/1001/cursor");
    zkt::create_all(
        &zk,
        &cursor,
        cursor_json("mysql-bin.000001", 120).as_bytes(),
        CreateMode::Persistent,
    )
    .await;
    let (view, took) = seen(&mut observations, WATCH_LATENCY, "cursor 1001", |v| {
        positions(v) == [("1001", 120)]
    })
    .await;
    println!("new cursor seen after {took:?}");
    assert_eq!(
        view.cursors[0],
        ClientCursor {
            client_id: "1001".into(),
            journal_name: "mysql-bin.000001".into(),
            position: 120,
            gtid: None,
            timestamp_ms: 1_700_000_000_000,
            server_id: Some(1),
            error: None,
        }
    );
    zk.set_data(
        &cursor,
        cursor_json("mysql-bin.000001", 4567).as_bytes(),
        None,
    )
    .await
    .unwrap();
    let (_, took) = seen(&mut observations, WATCH_LATENCY, "the moved cursor", |v| {
        positions(v) == [("1001", 4567)]
    })
    .await;
    println!("moved cursor seen after {took:?}");

    // Clients in numeric order; a subscribed client without a cursor and
    // a non-numeric child are not cursors.
    zkt::create_all(
        &zk,
        &format!("{base}/999/cursor"),
        cursor_json("mysql-bin.000001", 7).as_bytes(),
        CreateMode::Persistent,
    )
    .await;
    zkt::create_all(&zk, &format!("{base}/1002"), b"", CreateMode::Persistent).await;
    zkt::create_all(&zk, &format!("{base}/notes"), b"", CreateMode::Persistent).await;
    seen(
        &mut observations,
        WATCH_LATENCY,
        "clients 999 and 1001",
        |v| positions(v) == [("999", 7), ("1001", 4567)],
    )
    .await;
    // 1002's first cursor still shows.
    zkt::create_all(
        &zk,
        &format!("{base}/1002/cursor"),
        cursor_json("mysql-bin.000002", 4).as_bytes(),
        CreateMode::Persistent,
    )
    .await;
    seen(
        &mut observations,
        WATCH_LATENCY,
        "client 1002's first cursor",
        |v| positions(v) == [("999", 7), ("1001", 4567), ("1002", 4)],
    )
    .await;

    // The server goes away: running, then its member.
    zk.delete(&zkt::running_path(&destination), None)
        .await
        .unwrap();
    let (_, took) = seen(&mut observations, WATCH_LATENCY, "no running server", |v| {
        v.running.is_none()
    })
    .await;
    println!("deleted running seen after {took:?}");
    zk.delete(&format!("{base}/cluster/{a}"), None)
        .await
        .unwrap();
    seen(&mut observations, WATCH_LATENCY, "one member left", |v| {
        v.members == [b]
    })
    .await;
    // A client unsubscribes.
    zkt::delete_all(&zk, &format!("{base}/1001")).await;
    seen(&mut observations, WATCH_LATENCY, "client 1001 gone", |v| {
        positions(v) == [("999", 7), ("1002", 4)]
    })
    .await;

    // The same key gets the same task; other destinations of the ensemble
    // share its session.
    let again = observer.watch(key.clone());
    assert_eq!(*again.borrow(), *observations.borrow());
    let others: Vec<ObservedKey> = (0..20)
        .map(|i| ObservedKey::new(&servers, format!("{destination}-other{i}")))
        .collect();
    for other in &others {
        let mut receiver = observer.watch(other.clone());
        seen(&mut receiver, WAIT, "another destination", |_| true).await;
    }
    assert_eq!(observer.session_count(), 1, "one session per ensemble");

    // Forgotten: the task stops, and the session with the last one.
    observer.forget(&key);
    let closed = tokio::time::timeout(WATCH_LATENCY, async {
        while observations.changed().await.is_ok() {}
    })
    .await;
    assert!(closed.is_ok(), "the observation channel closes on forget");
    for other in &others {
        observer.forget(other);
    }
    wait_for("the shared session to close", WAIT, async || {
        observer.session_count() == 0
    })
    .await;

    zkt::delete_all(&zk, &base).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_cursor_is_an_error_of_that_client_only() {
    let servers = zkt::servers();
    let zk = zookeeper().await;
    let destination = unique_destination("malformed");
    let base = base(&destination);
    zkt::create_all(
        &zk,
        &format!("{base}/1001/cursor"),
        cursor_json("mysql-bin.000003", 500).as_bytes(),
        CreateMode::Persistent,
    )
    .await;
    zkt::create_all(
        &zk,
        &format!("{base}/1002/cursor"),
        b"{\"postion\": not json",
        CreateMode::Persistent,
    )
    .await;
    zkt::create_all(
        &zk,
        &format!("{base}/1003/cursor"),
        br#"{"postion":{"included":false}}"#,
        CreateMode::Persistent,
    )
    .await;
    let observer = Observer::with_settings(settings());
    let mut observations = observer.watch(ObservedKey::new(&servers, &destination));
    let (view, _) = seen(&mut observations, WAIT, "three clients", |v| {
        v.cursors.len() == 3
    })
    .await;
    assert_eq!(view.cursors[0].error, None);
    assert_eq!(view.cursors[0].position, 500);
    let bad = view.cursors[1].error.as_deref().unwrap_or_default();
    assert!(
        bad.contains(&format!("{base}/1002/cursor")) && bad.contains("not valid JSON"),
        "{bad}"
    );
    let empty = view.cursors[2].error.as_deref().unwrap_or_default();
    assert!(empty.contains("no `postion.journalName`"), "{empty}");

    // Fixed by hand: the error goes.
    zk.set_data(
        &format!("{base}/1002/cursor"),
        cursor_json("mysql-bin.000003", 600).as_bytes(),
        None,
    )
    .await
    .unwrap();
    let (view, _) = seen(&mut observations, WATCH_LATENCY, "the fixed cursor", |v| {
        v.cursors[1].error.is_none()
    })
    .await;
    assert_eq!(view.cursors[1].position, 600);
    zkt::delete_all(&zk, &base).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn view_is_read_again_after_the_session_expires() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("canal=info")
        .with_test_writer()
        .try_init();
    let servers = zkt::servers();
    let zk = zookeeper().await;
    let destination = unique_destination("expiry");
    let base = base(&destination);
    zkt::claim_running(&zk, &destination, "10.9.1.1:11111").await;
    let cursor = format!("{base}/1001/cursor");
    zkt::create_all(
        &zk,
        &cursor,
        cursor_json("mysql-bin.000001", 100).as_bytes(),
        CreateMode::Persistent,
    )
    .await;

    let proxies = ProxySet::start(&servers);
    let observer = Observer::with_settings(ObserverSettings {
        session_timeout: Duration::from_secs(2),
        connection_timeout: Duration::from_secs(1),
        resync: Duration::from_secs(3600),
        unreachable_after: Duration::from_secs(1),
    });
    let mut observations = observer.watch(ObservedKey::new(proxies.connect_string(), &destination));
    seen(&mut observations, WAIT, "the initial view", |v| {
        v.running.is_some() && positions(v) == [("1001", 100)]
    })
    .await;

    // Cut off long enough for the session to expire; meanwhile the nodes
    // change.
    let cut = Instant::now();
    proxies.cut();
    proxies.reset();
    zk.delete(&zkt::running_path(&destination), None)
        .await
        .unwrap();
    zk.set_data(
        &cursor,
        cursor_json("mysql-bin.000001", 200).as_bytes(),
        None,
    )
    .await
    .unwrap();
    let unreachable = wait_observation(&mut observations, Duration::from_secs(10), |o| {
        matches!(o, Observation::Unreachable(_))
    })
    .await;
    assert!(
        unreachable.is_some(),
        "the lost connection is reported: {:?}",
        *observations.borrow()
    );
    println!(
        "reported {:?} after the cut: {unreachable:?}",
        cut.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut.elapsed())).await;
    proxies.heal();

    let (_, took) = seen(
        &mut observations,
        WAIT,
        "the changes made while cut off",
        |v| v.running.is_none() && positions(v) == [("1001", 200)],
    )
    .await;
    println!("view current again {took:?} after the heal");
    assert_eq!(observer.session_count(), 1);

    // And the new session's watches work.
    zkt::claim_running(&zk, &destination, "10.9.1.2:11111").await;
    seen(
        &mut observations,
        WATCH_LATENCY,
        "a new running server",
        |v| running_address(v) == Some("10.9.1.2:11111"),
    )
    .await;
    drop(zk);
    zkt::delete_all(&zookeeper().await, &base).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_takes_the_lock_from_its_holder_and_refuses_when_it_cannot() {
    let servers = zkt::servers();
    let zk = zookeeper().await;
    let destination = unique_destination("lock");
    let base = base(&destination);
    let key = ObservedKey::new(&servers, &destination);
    let to = LogPosition {
        journal_name: "mysql-bin.000009".into(),
        position: 4,
        timestamp_ms: 1_700_000_000_000,
        ..LogPosition::default()
    };

    // No client yet: nothing to reset, and nobody is fenced for nothing.
    let holder = zookeeper().await;
    zkt::claim_running(&holder, &destination, "10.9.2.1:11111").await;
    let error = reset_cursors(&key, None, &to).await.unwrap_err();
    assert!(matches!(error, ZkAdminError::NoClients { .. }), "{error}");
    println!("{error}");
    zkt::sync(&zk).await;
    let (_, stat) = zk.get_data(&zkt::running_path(&destination)).await.unwrap();
    assert_eq!(stat.ephemeral_owner, holder.session_id().0);

    // Bad requests.
    for (client, position) in [
        (Some("01"), &to),
        (None, &LogPosition::new("mysql-bin.1", 0)),
    ] {
        let error = reset_cursors(&key, client, position).await.unwrap_err();
        assert!(matches!(error, ZkAdminError::Invalid(_)), "{error}");
    }

    // A holder that is no server of ours (it never re-races): its node is
    // replaced, the cursors written with their source kept, the lock gone.
    zkt::create_all(
        &zk,
        &format!("{base}/1001/cursor"),
        cursor_json("mysql-bin.000001", 999).as_bytes(),
        CreateMode::Persistent,
    )
    .await;
    zkt::create_all(&zk, &format!("{base}/1005"), b"", CreateMode::Persistent).await;
    let moved = reset_cursors(&key, None, &to).await.unwrap();
    assert_eq!(moved, ["1001", "1005"]);
    // The reset wrote through its own session.
    zkt::sync(&zk).await;
    for (client, source) in [("1001", ("db.example", 3306)), ("1005", ("", 0))] {
        let (data, _) = zk
            .get_data(&format!("{base}/{client}/cursor"))
            .await
            .unwrap();
        let record = json::parse(&data).unwrap();
        assert_eq!(record.position, to);
        assert_eq!((record.source_host.as_str(), record.source_port), source);
    }
    assert_eq!(
        zk.check_stat(&zkt::running_path(&destination))
            .await
            .unwrap(),
        None,
        "the operator's lock is released"
    );

    // Another reset holds the lock: refused, nothing written.
    zkt::claim_running(&holder, &destination, RESET_ADDRESS).await;
    let error = reset_cursors(&key, Some("1007"), &to).await.unwrap_err();
    assert!(matches!(error, ZkAdminError::LockBusy { .. }), "{error}");
    println!("{error}");
    zkt::sync(&zk).await;
    assert_eq!(zk.check_stat(&format!("{base}/1007")).await.unwrap(), None);
    drop(holder);
    zkt::delete_all(&zk, &base).await;
}

/// Subscribes as client 1001, retrying while the server is not active.
async fn subscribe(address: &str, destination: &str) -> CanalClient {
    let started = Instant::now();
    loop {
        match try_subscribe(address, destination).await {
            Ok(client) => return client,
            Err(error) if started.elapsed() < WAIT => {
                println!("subscribe: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("cannot subscribe to {destination} at {address}: {error}"),
        }
    }
}

async fn cursor_of(zk: &Client, destination: &str, client: &str) -> Option<CursorRecord> {
    // Written by another session (the server's, the reset's).
    zkt::sync(zk).await;
    match zk
        .get_data(&format!("{}/{client}/cursor", base(destination)))
        .await
    {
        Ok((data, _)) => json::parse(&data).ok(),
        Err(ZkError::NoNode) => None,
        Err(error) => panic!("cannot read the cursor: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_fences_a_live_server_which_resumes_from_the_new_cursor() {
    let servers = zkt::servers();
    let zk = zookeeper().await;
    let LiveSchema {
        env,
        mut conn,
        server_id,
        name: schema,
        start,
        ..
    } = LiveSchema::create("opzk_reset", &["t (id INT PRIMARY KEY)"]).await;
    let destination = format!("opzkreset{server_id}");
    let dir = test_dir(&destination);
    let conf = dir.join("conf");
    write_conf(
        &conf,
        &ha_properties(&destination, &servers, 4000),
        &[(&destination, &instance_properties(&env, &schema, &start))],
    );
    let mut server = ServerProcess::spawn(SpawnOptions::new("opzk-reset", &conf));
    wait_for("the server to become active", WAIT, async || {
        server.role(&destination).await.as_deref() == Some("active")
    })
    .await;
    let address = server.client_address.clone();

    // Rows 1-3, the reset point, rows 4-6; a client takes all six.
    let insert = |range: std::ops::RangeInclusive<i32>| {
        let values: Vec<String> = range.map(|i| format!("({i})")).collect();
        format!("INSERT INTO `{schema}`.t VALUES {}", values.join(","))
    };
    for i in 1..=3 {
        conn.query_drop(insert(i..=i)).await.unwrap();
    }
    let StartPosition::FilePosition {
        journal_name,
        position,
    } = latest(&mut conn).await
    else {
        unreachable!()
    };
    for i in 4..=6 {
        conn.query_drop(insert(i..=i)).await.unwrap();
    }
    let mut client = subscribe(&address, &destination).await;
    assert_eq!(
        receive_acked(&mut client, 6, WAIT).await,
        ["1", "2", "3", "4", "5", "6"]
    );
    drop(client);
    let acked = cursor_of(&zk, &destination, "1001")
        .await
        .expect("client 1001's cursor");
    assert!(acked.position.position > position, "{acked:?}");

    let observer = Observer::with_settings(settings());
    let key = ObservedKey::new(&servers, &destination);
    let mut observations = observer.watch(key.clone());
    seen(
        &mut observations,
        WAIT,
        "the active server and the acked cursor",
        |v| {
            running_address(v) == Some(address.as_str())
                && positions(v) == [("1001", acked.position.position)]
        },
    )
    .await;
    // Everything the observer sees during the reset.
    let history = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let history = history.clone();
        let mut observations = observations.clone();
        tokio::spawn(async move {
            while observations.changed().await.is_ok() {
                let observation = observations.borrow_and_update().clone();
                history.lock().unwrap().push(observation);
            }
        })
    };

    let to = LogPosition {
        journal_name: journal_name.clone(),
        position,
        ..LogPosition::default()
    };
    let started = Instant::now();
    let moved = reset_cursors(&key, None, &to).await.expect("the reset");
    let took = started.elapsed();
    println!("reset {moved:?} to {to} in {took:?}");
    assert_eq!(moved, ["1001"]);
    assert!(took >= FENCE_GRACE);
    let record = cursor_of(&zk, &destination, "1001").await.unwrap();
    assert_eq!(record.position, to, "the cursor holds the new position");
    assert_eq!(
        (record.source_host.as_str(), record.source_port),
        (acked.source_host.as_str(), acked.source_port),
        "the cursor keeps its source"
    );

    // The server was fenced while the operator held the lock, and is
    // active again.
    wait_for("the server to be active again", WAIT, async || {
        server.role(&destination).await.as_deref() == Some("active")
    })
    .await;
    seen(
        &mut observations,
        WAIT,
        "the server holding running again",
        |v| running_address(v) == Some(address.as_str()),
    )
    .await;
    let fenced = server
        .log_events()
        .into_iter()
        .filter(|e| e.field("ha_event").as_deref() == Some("fenced"))
        .count();
    assert_eq!(fenced, 1, "the active server was fenced once");
    recorder.abort();
    let saw_lock =
        history.lock().unwrap().iter().any(
            |o| matches!(o, Observation::Seen(v) if running_address(v) == Some(RESET_ADDRESS)),
        );
    assert!(saw_lock, "the observer saw the operator holding running");

    // The client resumes from the new cursor: rows 4-6 again.
    let mut client = subscribe(&address, &destination).await;
    assert_eq!(receive_acked(&mut client, 3, WAIT).await, ["4", "5", "6"]);
    drop(client);

    // A named client without a cursor gets one.
    let moved = reset_cursors(&key, Some("1002"), &to)
        .await
        .expect("the reset of 1002");
    assert_eq!(moved, ["1002"]);
    assert_eq!(
        cursor_of(&zk, &destination, "1002")
            .await
            .map(|r| r.position),
        Some(to)
    );
    wait_for(
        "the server to be active after the second reset",
        WAIT,
        async || server.role(&destination).await.as_deref() == Some("active"),
    )
    .await;

    server.sigterm();
    let _ = server.wait_exit(WAIT).await;
    observer.forget(&key);
    delete_destination(&key).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_destination_removes_that_destination_only() {
    let servers = zkt::servers();
    let zk = zookeeper().await;
    let doomed = unique_destination("doomed");
    let kept = unique_destination("kept");
    let member = format!("opzk-delete-{}:1", std::process::id());
    for destination in [&doomed, &kept] {
        let base = base(destination);
        zkt::claim_running(&zk, destination, "10.9.3.1:11111").await;
        zkt::create_all(
            &zk,
            &format!("{base}/cluster/10.9.3.1:11111"),
            b"",
            CreateMode::Ephemeral,
        )
        .await;
        zkt::create_all(
            &zk,
            &format!("{base}/1001/cursor"),
            cursor_json("mysql-bin.000001", 4).as_bytes(),
            CreateMode::Persistent,
        )
        .await;
        zkt::create_all(
            &zk,
            &format!("{base}/1001/filter"),
            b"db\\..*",
            CreateMode::Persistent,
        )
        .await;
    }
    zkt::create_all(
        &zk,
        &format!("/otter/canal/cluster/{member}"),
        b"",
        CreateMode::Ephemeral,
    )
    .await;

    let key = ObservedKey::new(&servers, &doomed);
    delete_destination(&key).await.expect("delete");
    zkt::sync(&zk).await;
    assert_eq!(zk.check_stat(&base(&doomed)).await.unwrap(), None);
    assert!(
        zk.check_stat(&format!("{}/1001/filter", base(&kept)))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        zk.check_stat(&zkt::running_path(&kept))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        zk.check_stat(&format!("/otter/canal/cluster/{member}"))
            .await
            .unwrap()
            .is_some()
    );
    // Missing is fine.
    delete_destination(&key).await.expect("delete again");

    // Names that are not one node below /otter/canal/destinations.
    for name in ["", ".", "..", "a/b", "kept/.."] {
        let error = delete_destination(&ObservedKey::new(&servers, name))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ZkAdminError::Invalid(_)),
            "{name:?}: {error}"
        );
    }
    assert!(zk.check_stat(DESTINATIONS).await.unwrap().is_some());
    zkt::delete_all(&zk, &base(&kept)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_auth_opens_protected_destinations() {
    let servers = zkt::servers();
    let zk = zookeeper().await;
    let destination = unique_destination("auth");
    let base = base(&destination);
    let (user, password) = ("opzk", "s3cret:pw");
    let authed = Client::connector()
        .with_auth("digest", format!("{user}:{password}").as_bytes())
        .connect(&servers)
        .await
        .unwrap();
    zkt::create_all(&zk, DESTINATIONS, b"", CreateMode::Persistent).await;
    let protected = CreateMode::Persistent.with_acls(Acls::creator_all());
    for (path, data) in [
        (base.clone(), String::new()),
        (format!("{base}/1001"), String::new()),
        (
            format!("{base}/1001/cursor"),
            cursor_json("mysql-bin.000004", 44),
        ),
    ] {
        authed
            .create(&path, data.as_bytes(), &protected)
            .await
            .unwrap();
    }

    let observer = Observer::with_settings(settings());
    let key = ObservedKey::new(&servers, &destination).with_auth(user, password);
    let mut observations = observer.watch(key.clone());
    seen(&mut observations, WAIT, "the protected cursor", |v| {
        positions(v) == [("1001", 44)]
    })
    .await;
    for other in [
        ObservedKey::new(&servers, &destination),
        ObservedKey::new(&servers, &destination).with_auth(user, "wrong"),
    ] {
        let mut observations = observer.watch(other);
        let refused = wait_observation(&mut observations, WAIT, |o| {
            matches!(o, Observation::Unreachable(_))
        })
        .await;
        let Some(Observation::Unreachable(why)) = refused else {
            panic!("not refused: {:?}", *observations.borrow())
        };
        assert!(
            why.contains("not authorized") && why.contains("spec.zookeeper.auth"),
            "{why}"
        );
    }
    assert_eq!(observer.session_count(), 3, "one session per credentials");

    // canal-server's session with canal.zookeeper.auth.
    let cancel = CancellationToken::new();
    let digest = DigestAuth::parse(&format!("{user}:{password}"));
    let session = ZkSession::connect_with_auth(&servers, HaSettings::default(), digest, &cancel)
        .await
        .unwrap();
    assert!(format!("{session:?}").find(password).is_none());
    session
        .client()
        .get_data(&format!("{base}/1001/cursor"))
        .await
        .unwrap();
    let anonymous = ZkSession::connect(&servers, HaSettings::default(), &cancel)
        .await
        .unwrap();
    assert_eq!(
        anonymous
            .client()
            .get_data(&format!("{base}/1001/cursor"))
            .await
            .err(),
        Some(ZkError::NoAuth)
    );
    cancel.cancel();

    // Admin operations with and without the credentials.
    let to = LogPosition::new("mysql-bin.000005", 4);
    let error = reset_cursors(&ObservedKey::new(&servers, &destination), None, &to)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("spec.zookeeper.auth"), "{error}");
    assert_eq!(reset_cursors(&key, None, &to).await.unwrap(), ["1001"]);
    seen(&mut observations, WATCH_LATENCY, "the reset cursor", |v| {
        positions(v) == [("1001", 4)]
    })
    .await;
    let error = delete_destination(&ObservedKey::new(&servers, &destination))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("spec.zookeeper.auth"), "{error}");
    delete_destination(&key).await.unwrap();
    zkt::sync(&zk).await;
    assert_eq!(zk.check_stat(&base).await.unwrap(), None);
}
