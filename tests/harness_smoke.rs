//! The HA test harness itself: a real canal-server process crashed and
//! restarted under a writer and a checker, ZooKeeper sessions
//! through a partitioning proxy, and a ZooKeeper node stopped and started.
//!
//! Needs the environment of `scripts/env`: `eval "$(scripts/env env)"` with
//! the same CANAL_ENV_* variables as `scripts/env up` (the zk-node test runs
//! `scripts/env zk-node`, which picks the environment from them). The tests
//! stop ZooKeeper nodes, so they run one at a time.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use canal::binlog::position::StartPosition;
use common::{
    cluster::{ServerProcess, SpawnOptions, test_dir, wait_for, write_conf},
    live::{LiveEnv, latest, unique},
    proxy::ProxySet,
    workload::{
        BatchRecord, Checker, CheckerReport, CommittedTxn, ConnectionRecord, Item, Writer,
        WriterReport, excess_duplicates, verify,
    },
    zk::{self, NodeAction, StoppedNode},
};
use mysql_async::prelude::Queryable;
use zookeeper_client::{Acls, CreateMode, SessionState};

const WAIT: Duration = Duration::from_secs(60);

/// The tests stop ZooKeeper nodes and kill MariaDB sessions: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// canal.properties for one server with cursors in ZooKeeper, flushed on
/// every ack.
fn server_properties(destination: &str, zk_servers: &str) -> String {
    format!(
        "canal.ip = 127.0.0.1\n\
         canal.destinations = {destination}\n\
         canal.zkServers = {zk_servers}\n\
         canal.zookeeper.flush.period = 0\n\
         canal.instance.global.spring.xml = classpath:spring/default-instance.xml\n"
    )
}

fn instance_properties(
    env: &LiveEnv,
    server_id: u32,
    schema: &str,
    start: &StartPosition,
) -> String {
    let StartPosition::FilePosition {
        journal_name,
        position,
    } = start
    else {
        panic!("expected a file position, got {start:?}");
    };
    format!(
        "canal.instance.mysql.slaveId = {server_id}\n\
         canal.instance.master.address = {}\n\
         canal.instance.dbUsername = {}\n\
         canal.instance.dbPassword = {}\n\
         canal.instance.master.journal.name = {journal_name}\n\
         canal.instance.master.position = {position}\n\
         canal.instance.filter.regex = {schema}\\\\..*\n",
        env.address, env.user, env.password
    )
}

/// One server crashed (SIGKILL) and restarted while a writer commits 1,000
/// rows/s and a checker consumes: nothing committed is lost, transactions
/// arrive whole and in order, duplicates stay within what was not acked.
#[tokio::test(flavor = "multi_thread")]
async fn writer_and_checker_survive_a_server_crash() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let servers = zk::servers();
    let zookeeper = zk::connect(&servers, Duration::from_secs(10)).await;
    let (server_id, schema) = unique("smoke");
    let destination = format!("smoke{server_id}");
    let mut conn = env.root().await;
    let start = latest(&mut conn).await;

    let dir = test_dir("smoke");
    let conf_dir = dir.join("conf");
    write_conf(
        &conf_dir,
        &server_properties(&destination, &servers),
        &[(
            &destination,
            &instance_properties(&env, server_id, &schema, &start),
        )],
    );
    let mut server = ServerProcess::spawn(SpawnOptions::new("server", &conf_dir));
    wait_for("the server to serve /readyz", WAIT, async || {
        matches!(server.readyz().await, Some((200, _)))
    })
    .await;
    // Alone in the race, the server claims `running` itself.
    wait_for("the server to become active", WAIT, async || {
        server.role(&destination).await.as_deref() == Some("active")
    })
    .await;

    let checker = Checker::start(&servers, &destination, "1001");
    let writer = Writer::start(&env, &schema, 4, 1000).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows_before_crash = checker.row_deliveries();
    server.sigkill();
    let crashed_at = jiff::Timestamp::now();
    server.restart();
    wait_for("the restarted server to serve /readyz", WAIT, async || {
        matches!(server.readyz().await, Some((200, _)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let written = writer.stop().await;
    let caught_up = checker.wait_for_all(&written, WAIT).await;
    let missing_now = checker.missing(&written);
    let report = checker.stop().await;
    let verdict = verify(&written, &report);
    println!("crash at {crashed_at}; rows delivered before it: {rows_before_crash}");
    println!(
        "writer: {} errors {:?}",
        written.errors, written.error_messages
    );
    println!("{verdict}");
    for c in &report.connections {
        println!(
            "session {} {} -> {:?}: {} batches, ended: {:?}",
            c.server, c.connected_at, c.ended_at, c.batches, c.end_reason
        );
    }
    assert!(
        caught_up,
        "{missing_now} committed rows still missing after {WAIT:?}; log: {}",
        server.log_path().display()
    );
    verdict.assert_ok();
    assert!(rows_before_crash > 0, "rows flowed before the crash");
    assert!(
        written.committed_rows() >= 3000,
        "the writer kept its rate: {} rows",
        written.committed_rows()
    );
    assert!(
        !verdict.reconnects.is_empty(),
        "the checker reconnected after the crash"
    );
    assert_eq!(verdict.server_switches, 0, "one server address throughout");
    let listening = server
        .first_event_after(crashed_at, |e| e.message == "canal server listening")
        .expect("the restarted server logged that it listens");
    println!("after the crash: {listening:?}");
    assert_eq!(listening.level, "INFO");
    assert_eq!(
        listening.field("address").as_deref(),
        Some(server.client_address.as_str())
    );
    // ZooKeeper cursors flushed on every ack: a restart repeats at most the
    // batches not acked yet (one GET of at most 1,000 entries) plus the
    // transaction an ack point falls inside.
    let excess = excess_duplicates(&verdict, &report);
    assert!(excess.is_empty(), "{excess:?}");

    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    zk::delete_all(&zookeeper, &format!("{}/{destination}", zk::DESTINATIONS)).await;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
        .await
        .expect("drop the writer's schema");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records every session state change of `client` with the time since
/// `origin`.
fn record_states(
    client: &zookeeper_client::Client,
    origin: Instant,
) -> Arc<Mutex<Vec<(Duration, SessionState)>>> {
    let states = Arc::new(Mutex::new(Vec::new()));
    let mut watcher = client.state_watcher();
    let sink = states.clone();
    tokio::spawn(async move {
        loop {
            let state = watcher.changed().await;
            sink.lock().expect("states").push((origin.elapsed(), state));
            if matches!(
                state,
                SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
            ) {
                return;
            }
        }
    });
    states
}

/// A 4 s session through the proxies: a 1 s cut is survived with the same
/// session; a 6 s cut expires it (the ephemeral node goes, the client ends
/// up Expired once it reaches the ensemble again).
#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_session_across_proxy_cuts() {
    let _serial = SERIAL.lock().await;
    let servers = zk::servers();
    let proxies = ProxySet::start(&servers);
    let direct = zk::connect(&servers, Duration::from_secs(10)).await;
    let client = zk::connect(&proxies.connect_string(), Duration::from_secs(4)).await;
    assert!(
        proxies.accepted() > 0,
        "the client connected through the proxies"
    );
    let session = client.session_id();
    let origin = Instant::now();
    let states = record_states(&client, origin);
    let ephemeral = format!("/canal-harness-{}", std::process::id());
    let _ = direct.delete(&ephemeral, None).await;
    client
        .create(
            &ephemeral,
            b"",
            &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
        )
        .await
        .expect("create an ephemeral node");

    // Connections closed under it: requests in flight fail with
    // ConnectionLoss; the client reconnects with the same session.
    let accepted = proxies.accepted();
    proxies.reset();
    let mut losses = 0;
    wait_for(
        "a read after a reset",
        Duration::from_secs(10),
        async || match client.check_stat("/").await {
            Ok(_) => true,
            Err(zookeeper_client::Error::ConnectionLoss) => {
                losses += 1;
                false
            }
            Err(error) => panic!("read after a reset: {error}"),
        },
    )
    .await;
    println!(
        "after a reset: {losses} reads lost, states {:?}",
        states.lock().unwrap()
    );
    assert!(proxies.accepted() > accepted, "the client reconnected");
    assert_eq!(client.session_id(), session, "the same session");

    proxies.cut();
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxies.heal();
    let read = tokio::time::timeout(Duration::from_secs(10), client.check_stat("/")).await;
    println!(
        "after a 1 s cut: read {read:?}, states {:?}",
        states.lock().unwrap()
    );
    assert!(
        matches!(read, Ok(Ok(Some(_)))),
        "a read works after a 1 s cut: {read:?}"
    );
    assert_eq!(client.session_id(), session, "the same session");
    assert!(
        direct
            .check_stat(&ephemeral)
            .await
            .expect("direct read")
            .is_some(),
        "the session's ephemeral node survived a 1 s cut"
    );

    let cut_at = origin.elapsed();
    proxies.cut();
    let mut ephemeral_gone = None;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        if ephemeral_gone.is_none()
            && direct
                .check_stat(&ephemeral)
                .await
                .expect("direct read")
                .is_none()
        {
            ephemeral_gone = Some(origin.elapsed() - cut_at);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during: Vec<_> = states.lock().unwrap().clone();
    let state_at_heal = client.state();
    proxies.heal();
    let read = tokio::time::timeout(Duration::from_secs(10), client.check_stat("/")).await;
    let expired = tokio::time::timeout(Duration::from_secs(10), async {
        let mut watcher = client.state_watcher();
        let mut state = watcher.state();
        while state != SessionState::Expired {
            state = watcher.changed().await;
        }
    })
    .await;
    println!(
        "6 s cut from {cut_at:?}: ephemeral gone after {ephemeral_gone:?}; state at heal \
         {state_at_heal:?}; after heal: read {read:?}, final state {:?}",
        client.state()
    );
    println!("state changes: {:?}", states.lock().unwrap());
    assert!(
        during
            .iter()
            .any(|(at, state)| *at > cut_at && *state == SessionState::Disconnected),
        "the client saw Disconnected during the cut: {during:?}"
    );
    let gone = ephemeral_gone.expect("the ensemble expired the session within the 6 s cut");
    assert!(
        gone >= Duration::from_secs(3),
        "not expired before the session timeout: {gone:?}"
    );
    assert!(
        expired.is_ok(),
        "the client reports Expired after the heal: {:?}",
        client.state()
    );
    assert!(
        matches!(read, Ok(Err(_))),
        "a read on the expired session fails: {read:?}"
    );
}

/// One ZooKeeper node stopped: reads and writes go on (quorum 2 of 3);
/// started again, `scripts/env status` reports all three up. Then the node a
/// session is connected to is paused: the session moves to another node.
#[tokio::test(flavor = "multi_thread")]
async fn ensemble_serves_with_one_node_stopped() {
    let _serial = SERIAL.lock().await;
    zk::check_same_environment();
    let servers = zk::servers();
    let client = zk::connect(&servers, Duration::from_secs(10)).await;
    let path = format!("/canal-harness-quorum-{}", std::process::id());
    zk::create_all(&client, &path, b"0", CreateMode::Persistent).await;

    let stopped = StoppedNode::new(NodeAction::Stop, 1).await;
    let (all_up, status) = zk::env_status().await;
    println!("{status}");
    assert!(!all_up, "status reports a node down");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("zk1") && l.contains("stopped")),
        "status reports zk1 stopped:\n{status}"
    );
    let started = Instant::now();
    for i in 1..=20 {
        let value = i.to_string();
        tokio::time::timeout(
            Duration::from_secs(10),
            client.set_data(&path, value.as_bytes(), None),
        )
        .await
        .expect("a write answers within 10 s")
        .expect("a write with zk1 stopped");
        let (data, _) = tokio::time::timeout(Duration::from_secs(10), client.get_data(&path))
            .await
            .expect("a read answers within 10 s")
            .expect("a read with zk1 stopped");
        assert_eq!(data, value.as_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "20 writes and reads with zk1 stopped in {:?}, state {:?}",
        started.elapsed(),
        client.state()
    );

    stopped.start().await;
    let (all_up, status) = zk::env_status().await;
    println!("{status}");
    assert!(all_up, "all components up again:\n{status}");
    assert_eq!(
        status
            .lines()
            .filter(|l| l.starts_with("zk") && l.contains(" running "))
            .count(),
        3,
        "three ZooKeeper nodes running:\n{status}"
    );
    let (data, _) = client
        .get_data(&path)
        .await
        .expect("a read after the start");
    assert_eq!(data, b"20");

    // The node a 4 s session is connected to paused: it keeps the TCP
    // connection but answers nothing, so the client only notices by its own
    // timeout, then moves to another node within the session.
    let origin = Instant::now();
    let short = zk::connect(&servers, Duration::from_secs(4)).await;
    let session = short.session_id();
    let node = zk::node_serving(session.0)
        .await
        .expect("a node lists the session in cons");
    let states = record_states(&short, origin);
    let (_, status) = zk::env_status().await;
    let leader = status
        .lines()
        .any(|l| l.starts_with(&format!("zk{node}")) && l.contains("mode=leader"));
    let paused = StoppedNode::new(NodeAction::Pause, node).await;
    let (_, status) = zk::env_status().await;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&format!("zk{node}")) && l.contains("paused")),
        "status reports zk{node} paused:\n{status}"
    );
    let paused_at = origin.elapsed();
    // In-flight requests fail: ConnectionLoss, or (the client's own read
    // timeout) a custom "no response from connection" error.
    let mut failures = Vec::new();
    loop {
        let write = tokio::time::timeout(
            Duration::from_secs(20),
            short.set_data(&path, b"paused", None),
        )
        .await
        .expect("a write answers or fails within 20 s");
        match write {
            Ok(_) => break,
            Err(
                error @ (zookeeper_client::Error::ConnectionLoss
                | zookeeper_client::Error::Custom(_)),
            ) => failures.push(format!("{:?}: {error}", origin.elapsed() - paused_at)),
            Err(error) => panic!("write with zk{node} paused: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = origin.elapsed() - paused_at;
    let moved_to = zk::node_serving(session.0).await;
    println!(
        "session {session} on zk{node} (leader: {leader}), paused: first write after {recovered:?} \
         (failed before: {failures:?}), now on {moved_to:?}, states {:?}",
        states.lock().unwrap()
    );
    assert_eq!(
        short.session_id(),
        session,
        "the session moved, not renewed"
    );
    assert_ne!(moved_to, Some(node), "the session left the paused node");
    // A paused follower costs the client's read timeout (0.4 of the
    // session: 1.6 s) and a reconnect, twice that when the reconnect first
    // picks the paused node (its kernel still accepts). A paused leader
    // costs an election (syncLimit 5 × tickTime 500 ms) during which no node
    // serves; the new leader restarts session expiry, so the session lives.
    assert!(
        recovered < Duration::from_secs(10),
        "recovered within 10 s (paused node led: {leader}): {recovered:?}"
    );
    paused.start().await;
    let (all_up, status) = zk::env_status().await;
    assert!(all_up, "all up after resume:\n{status}");
    zk::delete_all(&client, &path).await;
}

/// The checks catch what they should, on a made-up stream: a lost row, a
/// rolled-back row delivered, a transaction cut short, rows out of order,
/// and a duplicate after a switch of server.
#[test]
fn verify_finds_loss_phantoms_splits_order_and_duplicates() {
    let txn = |txn: i64, rows: &[(&str, i64)]| CommittedTxn {
        txn,
        rows: rows.iter().map(|(t, id)| (t.to_string(), *id)).collect(),
    };
    let writer = WriterReport {
        committed: vec![
            txn(1, &[("t0", 1), ("t1", 1)]),
            txn(2, &[("t0", 2)]),
            txn(3, &[("t1", 2), ("t1", 3)]),
            txn(6, &[("t2", 2)]),
            txn(7, &[("t2", 3)]),
        ],
        uncertain: vec![txn(4, &[("t0", 3)])],
        aborted: vec![txn(5, &[("t2", 1)])],
        ..WriterReport::default()
    };
    let row = |table: &str, id: i64, txn: i64| Item::Row {
        table: table.into(),
        id,
        txn,
    };
    let at = |ms: i64| jiff::Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap();
    let batch = |connection: usize, ms: i64, items: Vec<Item>| BatchRecord {
        connection,
        server: format!("server{connection}"),
        batch_id: 1,
        received_at: at(ms),
        items,
        acked: true,
    };
    let session = |n: usize, ms: i64| ConnectionRecord {
        server: format!("server{n}"),
        connected_at: at(ms),
        ended_at: None,
        end_reason: None,
        batches: 1,
    };
    use Item::{Begin, End};
    let checker = CheckerReport {
        batches: vec![
            batch(
                0,
                0,
                vec![
                    Begin,
                    row("t0", 1, 1),
                    row("t1", 1, 1),
                    End,
                    Begin,
                    row("t0", 2, 2),
                ],
            ),
            batch(
                1,
                900,
                vec![
                    End, // a resumed session may begin at the acked END
                    Begin,
                    row("t0", 2, 2),
                    End,
                    Begin,
                    row("t1", 3, 3),
                    End,
                    Begin,
                    row("t2", 1, 5),
                    End,
                    Begin,
                    row("t2", 3, 7),
                    End,
                    Begin,
                    row("t2", 2, 6),
                    End,
                ],
            ),
        ],
        connections: vec![session(0, 0), session(1, 800)],
        ..CheckerReport::default()
    };
    let verdict = verify(&writer, &checker);
    println!("{verdict}");
    assert!(!verdict.ok());
    assert_eq!((verdict.committed_txns, verdict.committed_rows), (5, 7));
    assert_eq!((verdict.delivered_rows, verdict.distinct_rows), (8, 7));
    assert_eq!(verdict.missing, [("t1".to_string(), 2)]);
    assert_eq!(verdict.phantoms, [("t2".to_string(), 1)]);
    assert_eq!(verdict.txns_split, [3]);
    assert_eq!(verdict.order_violations.len(), 1);
    assert_eq!(
        (
            verdict.order_violations[0].previous,
            verdict.order_violations[0].id
        ),
        (3, 2)
    );
    assert_eq!(verdict.duplicates, 1);
    assert_eq!(verdict.server_switches, 1);
    assert_eq!(verdict.reconnects[0].duplicates, 1);
    assert_eq!(verdict.reconnects[0].gap, Some(Duration::from_millis(900)));
    assert_eq!(verdict.uncertain_arrived, 0);
    assert!(verdict.uncertain_partial.is_empty());
    assert!(verdict.anomalies.is_empty(), "{:?}", verdict.anomalies);
}

/// The writer's outcomes match what MariaDB kept while its connections are
/// killed mid-transaction: committed rows all there, aborted ones never,
/// uncertain ones all or none. (Kills the root sessions of this
/// environment that run the writer's statements.)
#[tokio::test(flavor = "multi_thread")]
async fn writer_outcomes_match_the_database_under_killed_connections() {
    let _serial = SERIAL.lock().await;
    let env = LiveEnv::get();
    let (_, schema) = unique("writer");
    let writer = Writer::start(&env, &schema, 3, 2000).await;
    let mut killer = env.root().await;
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let ids: Vec<u64> = killer
            .query(format!(
                "SELECT id FROM information_schema.processlist WHERE user = 'root' \
                 AND id <> CONNECTION_ID() AND (info LIKE '%`{schema}`%' OR info = 'COMMIT')"
            ))
            .await
            .expect("processlist");
        for id in ids {
            if killer
                .query_drop(format!("KILL CONNECTION {id}"))
                .await
                .is_ok()
            {
                kills += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let report = writer.stop().await;
    let mut kept = std::collections::HashMap::new();
    for t in 0..3 {
        let rows: Vec<(i64, i64)> = killer
            .query(format!("SELECT id, txn FROM `{schema}`.t{t}"))
            .await
            .expect("read back");
        for (id, txn) in rows {
            kept.insert((format!("t{t}"), id), txn);
        }
    }
    let present = |txn: &CommittedTxn| {
        txn.rows
            .iter()
            .filter(|row| kept.get(*row) == Some(&txn.txn))
            .count()
    };
    println!(
        "{kills} kills: {} committed, {} uncertain, {} aborted txns, {} errors {:?}",
        report.committed.len(),
        report.uncertain.len(),
        report.aborted.len(),
        report.errors,
        report.error_messages.iter().take(3).collect::<Vec<_>>()
    );
    assert!(kills > 0 && report.errors > 0, "connections were killed");
    assert!(
        report.committed.len() > 1000,
        "the writer reconnected and went on"
    );
    for txn in &report.committed {
        assert_eq!(present(txn), txn.rows.len(), "committed txn {txn:?} kept");
    }
    for txn in &report.aborted {
        assert_eq!(present(txn), 0, "aborted txn {txn:?} rolled back");
    }
    for txn in &report.uncertain {
        let n = present(txn);
        assert!(
            n == 0 || n == txn.rows.len(),
            "uncertain txn {txn:?}: {n} rows kept"
        );
    }
    assert_eq!(
        kept.len(),
        report
            .committed
            .iter()
            .chain(&report.uncertain)
            .map(present)
            .sum::<usize>(),
        "no other rows"
    );
    killer
        .query_drop(format!("DROP DATABASE `{schema}`"))
        .await
        .expect("drop the schema");
}
