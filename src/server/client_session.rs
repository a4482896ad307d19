//! One client connection, speaking canal's protocol:
//!
//! ```text
//! server → HANDSHAKE (8-byte seed)
//! client → CLIENTAUTHENTICATION   server → ACK
//! client → SUBSCRIPTION           server → ACK
//! loop: client → GET → server MESSAGES (or ACK error); client → CLIENTACK / CLIENTROLLBACK (no reply)
//! client → UNSUBSCRIPTION         server → ACK
//! ```
//!
//! Errors caused by ACK or ROLLBACK, which get no reply, answer the next
//! GET instead, so the stream of requests and replies stays in step.

use std::{collections::VecDeque, net::SocketAddr, sync::Arc, time::Duration};

use prost::Message;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt, BufWriter},
    net::TcpStream,
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use super::{ServerShared, instance::Instance};
use crate::{
    protocol::{
        frame::{self, FrameError, MAX_CLIENT_FRAME},
        packet::{
            ClientAck, ClientAuth, ClientRollback, Get, Handshake, Packet, PacketType, Sub, Unsub,
        },
    },
    store::{ClientId, StoreError, Wait},
};

/// How long a client may take to authenticate after the handshake.
const AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle limit when ClientAuth does not set one (canal's default: an hour).
const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

/// A request that went wrong, as canal reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

enum Incoming {
    Packet(Packet),
    Broken(FrameError),
}

/// Serves one connection until the client leaves, breaks the protocol,
/// idles out, or the server shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<ServerShared>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_keepalive(true);
    let (reader, writer) = stream.into_split();
    let mut writer = BufWriter::new(writer);
    let (sender, mut incoming) = mpsc::channel::<Incoming>(16);
    let reader_task = tokio::spawn(read_packets(reader, sender));
    let mut session = Session {
        peer,
        shared,
        subscriptions: Vec::new(),
        pending: None,
        backlog: VecDeque::new(),
    };
    if let Err(reason) = session.run(&mut writer, &mut incoming, &cancel).await {
        tracing::debug!(%peer, %reason, "client connection closed");
    }
    for subscription in &session.subscriptions {
        subscription.instance.connected_change(-1);
    }
    reader_task.abort();
    let _ = writer.shutdown().await;
}

async fn read_packets(mut reader: tokio::net::tcp::OwnedReadHalf, sender: mpsc::Sender<Incoming>) {
    let mut buffer = Vec::new();
    loop {
        let incoming = match frame::read_packet(&mut reader, MAX_CLIENT_FRAME, &mut buffer).await {
            Ok(packet) => Incoming::Packet(packet),
            Err(error) => Incoming::Broken(error),
        };
        let broken = matches!(incoming, Incoming::Broken(_));
        if sender.send(incoming).await.is_err() || broken {
            return;
        }
    }
}

struct Session {
    peer: SocketAddr,
    shared: Arc<ServerShared>,
    /// What this connection subscribed. When one of the instances stops
    /// (this server released or lost the destination), the connection
    /// closes so the client looks for the active server again.
    subscriptions: Vec<Subscription>,
    /// An ACK/ROLLBACK error waiting to answer the next GET.
    pending: Option<Failure>,
    /// Packets that arrived while a GET was waiting.
    backlog: VecDeque<Packet>,
}

/// Why a session ended.
type End = String;

impl Session {
    /// Greets, authenticates, then answers requests until the session ends.
    async fn run<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        incoming: &mut mpsc::Receiver<Incoming>,
        cancel: &CancellationToken,
    ) -> Result<(), End> {
        let seed = self.greet(writer).await?;
        let idle = self.authenticate(writer, incoming, &seed).await?;
        loop {
            let packet = match self.backlog.pop_front() {
                Some(packet) => packet,
                None => self.next_packet(writer, incoming, cancel, idle).await?,
            };
            self.handle(packet, writer, incoming, cancel).await?;
        }
    }

    /// Sends the handshake; returns its seed, which the password is
    /// scrambled with.
    async fn greet<W: AsyncWrite + Unpin>(&self, writer: &mut W) -> Result<Vec<u8>, End> {
        let handshake = Handshake {
            seeds: crate::protocol::auth::new_seed().to_vec(),
            ..Default::default()
        };
        let seed = handshake.seeds.clone();
        self.write(
            writer,
            &frame::server_packet(PacketType::Handshake, handshake.encode_to_vec()),
        )
        .await?;
        Ok(seed)
    }

    /// Reads and checks CLIENTAUTHENTICATION (with the subscription a client
    /// may put in it, as canal allows), then acknowledges it. Returns how
    /// long the client may stay idle.
    async fn authenticate<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        incoming: &mut mpsc::Receiver<Incoming>,
        seed: &[u8],
    ) -> Result<Duration, End> {
        let auth = match tokio::time::timeout(AUTH_TIMEOUT, incoming.recv()).await {
            Err(_) => return Err("no authentication within 60 s".into()),
            Ok(None) => return Err("closed before authenticating".into()),
            Ok(Some(Incoming::Broken(error))) => return Err(format!("broken frame: {error}")),
            Ok(Some(Incoming::Packet(packet))) => packet,
        };
        let auth = match client_auth(&auth) {
            Ok(auth) => auth,
            Err((failure, end)) => {
                self.reply(writer, failure).await?;
                return Err(end.into());
            }
        };
        if !self
            .shared
            .credentials
            .accepts(&auth.username, &auth.password, seed)
        {
            tracing::warn!(peer = %self.peer, user = %auth.username, "authentication failed");
            let failure = Failure::new(400, format!("auth failed for user:{}", auth.username));
            self.reply(writer, failure).await?;
            return Err("authentication failed".into());
        }
        if !auth.destination.is_empty() && !auth.client_id.is_empty() {
            let sub = Sub {
                destination: auth.destination.clone(),
                client_id: auth.client_id.clone(),
                filter: auth.filter.clone(),
            };
            if let Err(failure) = self.subscribe(&sub).await {
                self.reply(writer, failure).await?;
                return Err("subscription in ClientAuth failed".into());
            }
        }
        self.write(writer, &frame::ack_ok()).await?;
        tracing::debug!(peer = %self.peer, user = %auth.username, "client authenticated");
        Ok(match auth.net_read_timeout {
            Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
            _ => DEFAULT_IDLE,
        })
    }

    /// Waits for the client's next packet; ends the session when the
    /// client idles out, leaves or breaks a frame, when the server shuts
    /// down, or when a subscribed destination stops here.
    async fn next_packet<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        incoming: &mut mpsc::Receiver<Incoming>,
        cancel: &CancellationToken,
        idle: Duration,
    ) -> Result<Packet, End> {
        let next = tokio::select! {
            next = tokio::time::timeout(idle, incoming.recv()) => next,
            _ = cancel.cancelled() => return Err("server shutting down".into()),
            _ = any_stopped(&self.subscriptions) => {
                return Err("the destination stopped on this server".into())
            }
        };
        match next {
            Err(_) => Err(format!("idle for {idle:?}")),
            Ok(None) | Ok(Some(Incoming::Broken(FrameError::Closed))) => Err("closed".into()),
            Ok(Some(Incoming::Broken(error))) => {
                tracing::warn!(peer = %self.peer, %error, "closing a connection that sent a bad frame");
                let _ = self
                    .reply(writer, Failure::new(400, format!("bad frame: {error}")))
                    .await;
                Err(error.to_string())
            }
            Ok(Some(Incoming::Packet(packet))) => Ok(packet),
        }
    }

    async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        packet: Packet,
        writer: &mut W,
        incoming: &mut mpsc::Receiver<Incoming>,
        cancel: &CancellationToken,
    ) -> Result<(), End> {
        let body = packet.body.as_slice();
        let undecodable = |what: &str, error: prost::DecodeError| {
            Failure::new(400, format!("{what} is not decodable: {error}"))
        };
        match packet.r#type() {
            PacketType::Subscription => {
                let outcome = match Sub::decode(body) {
                    Ok(sub) => self.subscribe(&sub).await,
                    Err(error) => Err(undecodable("Sub", error)),
                };
                self.answer(writer, outcome).await
            }
            PacketType::Unsubscription => {
                let outcome = match Unsub::decode(body) {
                    Ok(unsub) => self.unsubscribe(&unsub).await,
                    Err(error) => Err(undecodable("Unsub", error)),
                };
                self.answer(writer, outcome).await
            }
            PacketType::Get => {
                let get = match Get::decode(body) {
                    Ok(get) => get,
                    Err(error) => return self.reply(writer, undecodable("Get", error)).await,
                };
                if let Some(failure) = self.pending.take() {
                    return self.reply(writer, failure).await;
                }
                match self.get(&get, incoming, cancel).await? {
                    Ok(frame) => self.write(writer, &frame).await,
                    Err(failure) => self.reply(writer, failure).await,
                }
            }
            PacketType::Clientack => {
                let outcome = match ClientAck::decode(body) {
                    Ok(ack) => self.ack(&ack).await,
                    Err(error) => Err(undecodable("ClientAck", error)),
                };
                if let Err(failure) = outcome {
                    self.pending = Some(failure);
                }
                Ok(())
            }
            PacketType::Clientrollback => {
                let outcome = match ClientRollback::decode(body) {
                    Ok(rollback) => self.rollback(&rollback),
                    Err(error) => Err(undecodable("ClientRollback", error)),
                };
                if let Err(failure) = outcome {
                    self.pending = Some(failure);
                }
                Ok(())
            }
            _ => {
                let failure = Failure::new(
                    400,
                    format!("packet type: {} is NOT supported!", type_name(&packet)),
                );
                self.reply(writer, failure).await
            }
        }
    }

    /// Finds the destination and parses the client id of a request.
    fn target(
        &self,
        destination: &str,
        client_id: &str,
        request: &str,
    ) -> Result<(Arc<Instance>, ClientId), Failure> {
        require_names(destination, client_id, request)?;
        let client = client_id.trim().parse::<ClientId>().map_err(|_| {
            Failure::new(
                400,
                format!(
                    "something goes wrong with channel: {}, exception: java.lang.NumberFormatException: For input string: \"{client_id}\" (clientId must be a number from -32768 to 32767)",
                    self.peer
                ),
            )
        })?;
        let instance = self.shared.instance(destination).ok_or_else(|| {
            Failure::new(
                400,
                format!(
                    "something goes wrong with channel: {}, exception: com.alibaba.otter.canal.server.exception.CanalServerException: destination:{destination} should start first",
                    self.peer
                ),
            )
        })?;
        Ok((instance, client))
    }

    async fn subscribe(&mut self, sub: &Sub) -> Result<(), Failure> {
        let (instance, client) = self.target(&sub.destination, &sub.client_id, "Sub")?;
        instance
            .subscribe(client, &sub.filter)
            .await
            .map_err(|error| Failure::new(400, format!("subscribe failed: {error}")))?;
        if !self
            .subscriptions
            .iter()
            .any(|s| s.destination == sub.destination && s.client == client)
        {
            instance.connected_change(1);
            self.subscriptions.push(Subscription {
                destination: sub.destination.clone(),
                client,
                instance,
            });
        }
        tracing::info!(peer = %self.peer, destination = %sub.destination, client, filter = %sub.filter, "client subscribed");
        Ok(())
    }

    async fn unsubscribe(&mut self, unsub: &Unsub) -> Result<(), Failure> {
        let (instance, client) = self.target(&unsub.destination, &unsub.client_id, "Unsub")?;
        instance
            .unsubscribe(client)
            .await
            .map_err(|error| Failure::new(400, format!("unsubscribe failed: {error}")))?;
        self.subscriptions.retain(|s| {
            let gone = s.destination == unsub.destination && s.client == client;
            if gone {
                s.instance.connected_change(-1);
            }
            !gone
        });
        tracing::info!(peer = %self.peer, destination = %unsub.destination, client, "client unsubscribed");
        Ok(())
    }

    /// Answers a GET; the outer error ends the session (the client left
    /// while waiting), the inner one is canal's error Ack.
    async fn get(
        &mut self,
        get: &Get,
        incoming: &mut mpsc::Receiver<Incoming>,
        cancel: &CancellationToken,
    ) -> Result<Result<Vec<u8>, Failure>, End> {
        let (instance, client) = match self.target(&get.destination, &get.client_id, "Get") {
            Ok(target) => target,
            Err(failure) => return Ok(Err(failure)),
        };
        if !instance.is_subscribed(client) {
            return Ok(Err(Failure::new(
                400,
                format!(
                    "ClientIdentity:ClientIdentity[destination={},clientId={client},filter=] should subscribe first",
                    get.destination
                ),
            )));
        }
        let wait = Wait::from_request(get.timeout, get.unit);
        loop {
            tokio::select! {
                batch = instance.get(client, get.fetch_size, wait) => {
                    return Ok(match batch {
                        Ok(Some(batch)) => Ok(messages_frame(batch.id, &batch.entries)),
                        Ok(None) => Ok(messages_frame(-1, &[])),
                        Err(StoreError::Closed) => return Err("destination stopped".into()),
                        Err(error) => Err(Failure::new(400, error.to_string())),
                    });
                }
                next = incoming.recv() => match next {
                    Some(Incoming::Packet(packet)) => self.backlog.push_back(packet),
                    Some(Incoming::Broken(error)) => return Err(format!("client left during GET: {error}")),
                    None => return Err("client left during GET".into()),
                },
                _ = cancel.cancelled() => return Err("server shutting down".into()),
            }
        }
    }

    fn subscribed(&self, destination: &str, client_id: &str) -> bool {
        let client = client_id.trim().parse::<ClientId>().ok();
        client.is_some_and(|client| {
            self.subscriptions
                .iter()
                .any(|s| s.destination == destination && s.client == client)
                || self
                    .shared
                    .instance(destination)
                    .is_some_and(|i| i.is_subscribed(client))
        })
    }

    /// Acknowledges a batch. ACK gets no reply: an error waits for the
    /// next GET.
    async fn ack(&self, ack: &ClientAck) -> Result<(), Failure> {
        require_names(&ack.destination, &ack.client_id, "Ack")?;
        if ack.batch_id == -1 {
            return Ok(());
        }
        if ack.batch_id == 0 {
            return Err(Failure::new(
                402,
                format!(
                    "batchId should assign value. Ack: batch_id: {}",
                    ack.batch_id
                ),
            ));
        }
        let Some((instance, client)) =
            self.subscribed_target(&ack.destination, &ack.client_id, "Ack")?
        else {
            return Ok(());
        };
        instance
            .ack(client, ack.batch_id)
            .await
            .map_err(|error| Failure::new(400, error.to_string()))
    }

    /// Rewinds a client. ROLLBACK gets no reply: an error waits for the
    /// next GET.
    fn rollback(&self, rollback: &ClientRollback) -> Result<(), Failure> {
        require_names(&rollback.destination, &rollback.client_id, "Rollback")?;
        let Some((instance, client)) =
            self.subscribed_target(&rollback.destination, &rollback.client_id, "Rollback")?
        else {
            return Ok(());
        };
        instance
            .rollback(client, rollback.batch_id)
            .map_err(|error| Failure::new(400, error.to_string()))
    }

    /// The target of an ACK or ROLLBACK; `None` for a client that has not
    /// subscribed, which some clients do and which is ignored.
    fn subscribed_target(
        &self,
        destination: &str,
        client_id: &str,
        request: &str,
    ) -> Result<Option<(Arc<Instance>, ClientId)>, Failure> {
        if !self.subscribed(destination, client_id) {
            return Ok(None);
        }
        self.target(destination, client_id, request).map(Some)
    }

    /// ACK for a request that worked, canal's error ACK for one that did not.
    async fn answer<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        outcome: Result<(), Failure>,
    ) -> Result<(), End> {
        match outcome {
            Ok(()) => self.write(writer, &frame::ack_ok()).await,
            Err(failure) => self.reply(writer, failure).await,
        }
    }

    async fn reply<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        failure: Failure,
    ) -> Result<(), End> {
        tracing::debug!(peer = %self.peer, code = failure.code, message = %failure.message, "error reply");
        self.write(writer, &frame::ack_error(failure.code, failure.message))
            .await
    }

    async fn write<W: AsyncWrite + Unpin>(&self, writer: &mut W, bytes: &[u8]) -> Result<(), End> {
        frame::write_all(writer, bytes)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }
}

/// canal's answer to a request without a destination or client id.
fn require_names(destination: &str, client_id: &str, request: &str) -> Result<(), Failure> {
    if destination.is_empty() || client_id.is_empty() {
        return Err(Failure::new(
            401,
            format!(
                "destination or clientId is null. {request}: destination: \"{destination}\" client_id: \"{client_id}\""
            ),
        ));
    }
    Ok(())
}

/// The ClientAuth in the first packet; otherwise the error ACK to send and
/// why the session ends.
fn client_auth(packet: &Packet) -> Result<ClientAuth, (Failure, &'static str)> {
    if packet.r#type() != PacketType::Clientauthentication {
        let failure = Failure::new(
            400,
            format!(
                "expected CLIENTAUTHENTICATION, got packet type: {}",
                type_name(packet)
            ),
        );
        return Err((failure, "did not authenticate"));
    }
    ClientAuth::decode(packet.body.as_slice()).map_err(|error| {
        let failure = Failure::new(400, format!("ClientAuth is not decodable: {error}"));
        (failure, "undecodable ClientAuth")
    })
}

struct Subscription {
    destination: String,
    client: ClientId,
    instance: Arc<Instance>,
}

/// Resolves when the instance of any subscription stops (never, for none).
async fn any_stopped(subscriptions: &[Subscription]) {
    if subscriptions.is_empty() {
        return std::future::pending().await;
    }
    let tokens: Vec<_> = subscriptions.iter().map(|s| s.instance.stopped()).collect();
    futures_util::future::select_all(tokens.iter().map(|t| Box::pin(t.cancelled()))).await;
}

fn type_name(packet: &Packet) -> &'static str {
    match PacketType::try_from(packet.r#type) {
        Ok(t) => t.as_str_name(),
        Err(_) => "UNRECOGNIZED",
    }
}

/// A MESSAGES packet, framed, written directly from the stored entry bytes
/// (Packet{version=1, type=MESSAGES, body=Messages{batch_id, messages}}).
fn messages_frame(batch_id: i64, entries: &[bytes::Bytes]) -> Vec<u8> {
    use prost::encoding::{encode_varint, encoded_len_varint};
    let mut body_len = 1 + encoded_len_varint(batch_id as u64);
    for entry in entries {
        body_len += 1 + encoded_len_varint(entry.len() as u64) + entry.len();
    }
    let packet_len = 2 + 2 + 1 + encoded_len_varint(body_len as u64) + body_len;
    let mut out = Vec::with_capacity(4 + packet_len);
    out.extend_from_slice(&(packet_len as i32).to_be_bytes());
    out.extend_from_slice(&[
        2 << 3,
        frame::VERSION as u8,
        3 << 3,
        PacketType::Messages as u8,
    ]);
    out.push((5 << 3) | 2);
    encode_varint(body_len as u64, &mut out);
    out.push(1 << 3);
    encode_varint(batch_id as u64, &mut out);
    for entry in entries {
        out.push((2 << 3) | 2);
        encode_varint(entry.len() as u64, &mut out);
        out.extend_from_slice(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::Messages;

    #[test]
    fn messages_frame_is_a_valid_packet() {
        let entries = vec![
            bytes::Bytes::from_static(b"one"),
            bytes::Bytes::from(vec![7u8; 300]),
        ];
        let frame = messages_frame(42, &entries);
        let length = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - 4);
        let packet = Packet::decode(&frame[4..]).unwrap();
        assert_eq!(
            (packet.version, packet.r#type()),
            (Some(1), PacketType::Messages)
        );
        let messages = Messages::decode(packet.body.as_slice()).unwrap();
        assert_eq!(messages.batch_id, 42);
        assert_eq!(messages.messages, vec![b"one".to_vec(), vec![7u8; 300]]);
        let empty = Messages::decode(
            Packet::decode(&messages_frame(-1, &[])[4..])
                .unwrap()
                .body
                .as_slice(),
        )
        .unwrap();
        assert_eq!((empty.batch_id, empty.messages.len()), (-1, 0));
    }
}
