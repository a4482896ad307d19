//! canal's client protocol, rule by rule, against a running server with raw
//! frames (PROTOCOL.md): handshake, auth, SUB/GET/ACK/ROLLBACK/UNSUB, error
//! codes and texts, unsupported packets, bad frames, idle timeouts.

mod common;

use std::time::Duration;

use canal::protocol::{
    auth::client_token,
    entry::{Entry, EntryType},
    frame::{self, MAX_SERVER_FRAME},
    packet::{
        Ack, ClientAck, ClientAuth, ClientRollback, Get, Handshake, Messages, Packet, PacketType,
        Sub, Unsub,
    },
};
use common::scene::ServerScene;
use mysql_async::prelude::Queryable;
use prost::Message;
use tokio::{io::AsyncWriteExt, net::TcpStream};

const WAIT: Duration = Duration::from_secs(30);

/// The tests share the binlog: one at a time, so a test sees only its own
/// transactions (others' would show up as empty transactions and DDL).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Raw {
    stream: TcpStream,
    buffer: Vec<u8>,
    seed: Vec<u8>,
}

impl Raw {
    async fn connect(address: std::net::SocketAddr) -> Raw {
        let stream = TcpStream::connect(address).await.unwrap();
        let mut raw = Raw {
            stream,
            buffer: Vec::new(),
            seed: Vec::new(),
        };
        let handshake = raw.read().await.expect("handshake");
        assert_eq!(handshake.r#type(), PacketType::Handshake);
        assert_eq!(handshake.version, Some(1), "server packets carry version 1");
        raw.seed = Handshake::decode(handshake.body.as_slice()).unwrap().seeds;
        assert_eq!(raw.seed.len(), 8, "an 8-byte seed");
        raw
    }

    async fn read(&mut self) -> Option<Packet> {
        tokio::time::timeout(
            WAIT,
            frame::read_packet(&mut self.stream, MAX_SERVER_FRAME, &mut self.buffer),
        )
        .await
        .expect("a reply in time")
        .ok()
    }

    async fn send(&mut self, packet_type: PacketType, body: Vec<u8>) {
        self.stream
            .write_all(&frame::client_packet(packet_type, body))
            .await
            .unwrap();
    }

    async fn auth(&mut self, user: &str, password: Option<&str>, idle_ms: Option<i32>) -> Ack {
        let token = password
            .map(|p| client_token(p, &self.seed).into_bytes())
            .unwrap_or_default();
        let auth = ClientAuth {
            username: user.into(),
            password: token,
            net_read_timeout: idle_ms,
            net_write_timeout: idle_ms,
            ..Default::default()
        };
        self.send(PacketType::Clientauthentication, auth.encode_to_vec())
            .await;
        self.ack().await
    }

    async fn ack(&mut self) -> Ack {
        let packet = self.read().await.expect("an ACK");
        assert_eq!(packet.r#type(), PacketType::Ack);
        Ack::decode(packet.body.as_slice()).unwrap()
    }

    async fn sub(&mut self, destination: &str, client: &str, filter: &str) -> Ack {
        let sub = Sub {
            destination: destination.into(),
            client_id: client.into(),
            filter: filter.into(),
        };
        self.send(PacketType::Subscription, sub.encode_to_vec())
            .await;
        self.ack().await
    }

    async fn get(
        &mut self,
        destination: &str,
        fetch: i32,
        timeout: Option<i64>,
    ) -> Result<Messages, Ack> {
        let get = Get {
            destination: destination.into(),
            client_id: "1001".into(),
            fetch_size: fetch,
            timeout,
            unit: Some(2),
            auto_ack: Some(false),
        };
        self.send(PacketType::Get, get.encode_to_vec()).await;
        let packet = self.read().await.expect("a GET reply");
        match packet.r#type() {
            PacketType::Messages => Ok(Messages::decode(packet.body.as_slice()).unwrap()),
            PacketType::Ack => Err(Ack::decode(packet.body.as_slice()).unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn client_ack(&mut self, destination: &str, batch: i64) {
        let ack = ClientAck {
            destination: destination.into(),
            client_id: "1001".into(),
            batch_id: batch,
        };
        self.send(PacketType::Clientack, ack.encode_to_vec()).await;
    }

    async fn rollback(&mut self, destination: &str, batch: i64) {
        let rollback = ClientRollback {
            destination: destination.into(),
            client_id: "1001".into(),
            batch_id: batch,
        };
        self.send(PacketType::Clientrollback, rollback.encode_to_vec())
            .await;
    }
}

fn error(ack: &Ack) -> (i32, &str) {
    (ack.error_code.unwrap_or(0), ack.error_message.as_str())
}

/// The SERIAL lock, then an in-process server on a fresh schema with table
/// `t`, requiring the login canal/canal.
async fn server(
    name: &str,
    tweak: impl FnOnce(&mut canal::server::InstanceSettings) + Send + 'static,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    mysql_async::Conn,
    String,
    canal::server::RunningServer,
) {
    let serial = SERIAL.lock().await;
    let scene = ServerScene::new(name)
        .table("t (id INT PRIMARY KEY, v VARCHAR(20))")
        .login("canal", "canal")
        .settings(tweak)
        .start()
        .await;
    (serial, scene.schema.conn, scene.schema.name, scene.server)
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_follows_the_scramble() {
    let (_serial, _conn, _schema, running) = server("auth", |_| {}).await;
    let mut good = Raw::connect(running.address).await;
    assert_eq!(
        error(&good.auth("canal", Some("canal"), None).await),
        (0, "")
    );
    let mut wrong = Raw::connect(running.address).await;
    assert_eq!(
        error(&wrong.auth("canal", Some("nope"), None).await),
        (400, "auth failed for user:canal")
    );
    assert!(
        wrong.read().await.is_none(),
        "the connection is closed after a failed auth"
    );
    let mut other_user = Raw::connect(running.address).await;
    assert_eq!(
        error(&other_user.auth("root", Some("canal"), None).await),
        (400, "auth failed for user:root")
    );
    let mut no_token = Raw::connect(running.address).await;
    assert_eq!(error(&no_token.auth("canal", None, None).await).0, 400);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_errors_and_early_rollback() {
    let (_serial, _conn, _schema, running) = server("sub", |_| {}).await;
    let mut raw = Raw::connect(running.address).await;
    raw.auth("canal", Some("canal"), None).await;
    // Java and Go clients roll back before subscribing: ignored, no reply.
    raw.rollback("example", 0).await;
    let missing = raw.sub("", "1001", "").await;
    assert_eq!(missing.error_code, Some(401));
    assert!(
        missing
            .error_message
            .starts_with("destination or clientId is null. Sub:"),
        "{}",
        missing.error_message
    );
    let unknown = raw.sub("nowhere", "1001", "").await;
    assert_eq!(unknown.error_code, Some(400));
    assert!(
        unknown
            .error_message
            .contains("destination:nowhere should start first"),
        "{}",
        unknown.error_message
    );
    let not_a_number = raw.sub("example", "abc", "").await;
    assert_eq!(not_a_number.error_code, Some(400));
    assert!(not_a_number.error_message.contains("NumberFormatException"));
    // GET before subscribing.
    let early = raw.get("example", 10, Some(-1)).await.unwrap_err();
    assert!(
        early.error_message.contains("should subscribe first"),
        "{}",
        early.error_message
    );
    assert_eq!(error(&raw.sub("example", "1001", "").await), (0, ""));
    let unsub = Unsub {
        destination: "example".into(),
        client_id: "1001".into(),
        filter: String::new(),
    };
    raw.send(PacketType::Unsubscription, unsub.encode_to_vec())
        .await;
    assert_eq!(error(&raw.ack().await), (0, ""));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_ack_rollback_rules() {
    let (_serial, mut conn, schema, running) = server("rules", |s| {
        s.store.batch_mode = canal::store::BatchMode::ItemSize
    })
    .await;
    let mut raw = Raw::connect(running.address).await;
    raw.auth("canal", Some("canal"), None).await;
    raw.sub("example", "1001", "").await;
    let empty = raw.get("example", 10, Some(-1)).await.unwrap();
    assert_eq!(
        (empty.batch_id, empty.messages.len()),
        (-1, 0),
        "nothing yet: batch id -1"
    );
    let started = tokio::time::Instant::now();
    let timed = raw.get("example", 10, Some(300)).await.unwrap();
    assert_eq!(timed.batch_id, -1);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "a timed GET waits"
    );

    conn.query_drop(format!(
        "INSERT INTO `{schema}`.t VALUES (1, 'a'), (2, 'b')"
    ))
    .await
    .unwrap();
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (3, 'c')"))
        .await
        .unwrap();
    // A blocking GET (timeout 0) of 6 entries waits for both transactions.
    let all = raw.get("example", 6, Some(0)).await.unwrap();
    assert_eq!(all.batch_id, 1, "batch ids start at 1");
    let entries: Vec<Entry> = all
        .messages
        .iter()
        .map(|m| Entry::decode(m.as_slice()).unwrap())
        .collect();
    let types: Vec<_> = entries.iter().map(|e| e.entry_type()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == EntryType::Rowdata).count(),
        2
    );
    raw.rollback("example", 0).await;
    // ITEMSIZE: fetch 1 is one entry per batch.
    let first = raw.get("example", 1, Some(-1)).await.unwrap();
    let second = raw.get("example", 1, Some(-1)).await.unwrap();
    assert_eq!(
        (first.batch_id, second.batch_id),
        (2, 3),
        "pipelined batches, ids keep increasing"
    );
    assert!(!first.messages.is_empty() && !second.messages.is_empty());

    raw.client_ack("example", second.batch_id).await;
    let answer = raw.get("example", 1, Some(-1)).await.unwrap_err();
    assert_eq!(
        error(&answer),
        (400, "batchId:3 is not the firstly:2"),
        "ack errors answer the next GET"
    );
    raw.client_ack("example", 0).await;
    let answer = raw.get("example", 1, Some(-1)).await.unwrap_err();
    assert_eq!(answer.error_code, Some(402));
    assert!(
        answer
            .error_message
            .starts_with("batchId should assign value")
    );
    raw.client_ack("example", -1).await; // ignored
    raw.client_ack("example", 99).await;
    let answer = raw.get("example", 1, Some(-1)).await.unwrap_err();
    assert_eq!(
        error(&answer),
        (
            400,
            "ack error , clientId:1001 batchId:99 is not exist , please check"
        )
    );
    raw.rollback("example", 98).await;
    let answer = raw.get("example", 1, Some(-1)).await.unwrap_err();
    assert_eq!(
        error(&answer),
        (
            400,
            "rollback error, clientId:1001 batchId:98 is not exist , please check"
        )
    );

    // Ack everything in order, then nothing is left.
    let mut pending = vec![first.batch_id, second.batch_id];
    loop {
        let batch = raw.get("example", 100, Some(-1)).await.unwrap();
        if batch.batch_id == -1 {
            break;
        }
        pending.push(batch.batch_id);
    }
    for batch in pending {
        raw.client_ack("example", batch).await;
    }
    let done = raw.get("example", 100, Some(-1)).await.unwrap();
    assert_eq!(done.batch_id, -1);
    assert_eq!(
        running
            .shared
            .instance("example")
            .unwrap()
            .store()
            .with_state(|s| s.len()),
        0,
        "acknowledged entries left the store"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_packets_and_bad_frames() {
    let (_serial, _conn, _schema, running) = server("bad", |_| {}).await;
    let mut raw = Raw::connect(running.address).await;
    raw.auth("canal", Some("canal"), None).await;
    for (packet_type, name) in [
        (11, "HEARTBEAT"),
        (10, "DUMP"),
        (9, "SHUTDOWN"),
        (99, "UNRECOGNIZED"),
    ] {
        let packet = Packet {
            r#type: packet_type,
            ..Default::default()
        };
        raw.stream
            .write_all(&frame::frame(&packet.encode_to_vec()))
            .await
            .unwrap();
        let ack = raw.ack().await;
        assert_eq!(
            error(&ack),
            (
                400,
                format!("packet type: {name} is NOT supported!").as_str()
            )
        );
    }
    // Still usable.
    assert_eq!(error(&raw.sub("example", "1001", "").await), (0, ""));
    // An undecodable GET body: an error Ack, the connection stays.
    raw.send(PacketType::Get, vec![0xff, 0xff, 0xff]).await;
    assert_eq!(raw.ack().await.error_code, Some(400));
    // An oversized frame closes the connection.
    raw.stream
        .write_all(&(64i32 << 20).to_be_bytes())
        .await
        .unwrap();
    let _ = raw.read().await; // the server may say why before closing
    assert!(raw.read().await.is_none(), "closed");
    // Garbage instead of a packet closes the connection; others are unaffected.
    let mut garbage = Raw::connect(running.address).await;
    garbage.auth("canal", Some("canal"), None).await;
    garbage
        .stream
        .write_all(&frame::frame(&[0xff; 12]))
        .await
        .unwrap();
    let _ = garbage.read().await;
    assert!(garbage.read().await.is_none());
    let mut fine = Raw::connect(running.address).await;
    assert_eq!(
        error(&fine.auth("canal", Some("canal"), None).await),
        (0, "")
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_close_after_the_client_timeout() {
    let (_serial, _conn, _schema, running) = server("idle", |_| {}).await;
    let mut raw = Raw::connect(running.address).await;
    raw.auth("canal", Some("canal"), Some(300)).await;
    let started = tokio::time::Instant::now();
    assert!(raw.read().await.is_none(), "closed when idle");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn random_garbage_from_many_clients_leaves_the_server_serving() {
    let (_serial, _conn, _schema, running) = server("garbage", |_| {}).await;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..100 {
        let mut raw = Raw::connect(running.address).await;
        if round % 2 == 0 {
            raw.auth("canal", Some("canal"), None).await;
        }
        let length = (next() % 64) as usize;
        let body: Vec<u8> = (0..length).map(|_| next() as u8).collect();
        let packet_type = (next() % 14) as i32;
        let packet = Packet {
            r#type: packet_type,
            body,
            ..Default::default()
        };
        let mut bytes = frame::frame(&packet.encode_to_vec());
        if round % 5 == 0 {
            bytes = (0..length).map(|_| next() as u8).collect();
        }
        let _ = raw.stream.write_all(&bytes).await;
        let _ = raw.stream.shutdown().await;
    }
    let mut fine = Raw::connect(running.address).await;
    assert_eq!(
        error(&fine.auth("canal", Some("canal"), None).await),
        (0, "")
    );
    assert_eq!(error(&fine.sub("example", "1001", "").await), (0, ""));
    let empty = fine.get("example", 1, Some(-1)).await.unwrap();
    assert!(empty.batch_id >= -1);
    running.shutdown().await;
}
