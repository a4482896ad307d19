//! A canal protocol client: what `canal-server tail` and the tests use to
//! talk to a canal server (ours or Java canal) the way canal's own
//! connectors do.

pub mod cluster;
pub mod print;

use std::time::Duration;

use prost::Message;
use tokio::{
    io::{BufReader, BufWriter},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

use crate::protocol::{
    auth,
    entry::Entry,
    frame::{self, FrameError, MAX_SERVER_FRAME},
    packet::{
        Ack, ClientAck, ClientAuth, ClientRollback, Get, Handshake, Messages, Packet, PacketType,
        Sub, Unsub,
    },
};

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {address}: {reason}")]
    /// The server could not be reached.
    Connect {
        /// The address tried.
        address: String,
        /// Why it failed.
        reason: String,
    },
    /// The connection broke or carried a frame that is not canal's.
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("server error {code}: {message}")]
    /// The server answered with an error ACK.
    Server {
        /// canal's error code.
        code: i32,
        /// canal's message.
        message: String,
    },
    #[error("unexpected {got} packet (expected {expected})")]
    /// The server sent another packet than the protocol expects here.
    Unexpected {
        /// The packet type expected.
        expected: &'static str,
        /// The packet type received.
        got: String,
    },
    #[error("undecodable {what}: {source}")]
    /// A packet body did not decode.
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// Writing to the connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The server said the destination does not run there (a standby):
    /// cluster clients look for the active server then.
    pub fn is_not_running_here(&self) -> bool {
        matches!(self, ClientError::Server { message, .. } if message.contains("should start first"))
    }
}

/// A batch from GET.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// -1 when the server had nothing.
    pub batch_id: i64,
    /// The entries, decoded.
    pub entries: Vec<Entry>,
    /// Serialized size of the entries.
    pub bytes: usize,
}

/// An authenticated connection, optionally subscribed.
pub struct CanalClient {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    buffer: Vec<u8>,
    destination: String,
    client_id: String,
    local_address: Option<std::net::SocketAddr>,
}

/// How to authenticate.
#[derive(Debug, Clone, Default)]
pub struct Login {
    /// The user (`canal.user` on the server); empty when it has none.
    pub user: String,
    /// The clear-text password (hashed with the server's seed).
    pub password: String,
    /// Idle limit asked of the server, ms (canal's Java client: 3,600,000).
    pub idle_ms: i32,
}

impl CanalClient {
    /// Connects, reads the handshake and authenticates.
    pub async fn connect(
        address: &str,
        login: &Login,
        timeout: Duration,
    ) -> Result<CanalClient, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            address: address.to_owned(),
            reason,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| connect_error(format!("no answer within {timeout:?}")))?
            .map_err(|e| connect_error(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let local_address = stream.local_addr().ok();
        let (reader, writer) = stream.into_split();
        let mut client = CanalClient {
            reader: BufReader::with_capacity(1 << 16, reader),
            writer: BufWriter::new(writer),
            buffer: Vec::new(),
            destination: String::new(),
            client_id: String::new(),
            local_address,
        };
        let handshake = tokio::time::timeout(timeout, client.read())
            .await
            .map_err(|_| connect_error("no handshake".into()))??;
        if handshake.r#type() != PacketType::Handshake {
            return Err(ClientError::Unexpected {
                expected: "HANDSHAKE",
                got: handshake.r#type().as_str_name().into(),
            });
        }
        let handshake =
            Handshake::decode(handshake.body.as_slice()).map_err(|source| ClientError::Decode {
                what: "Handshake",
                source,
            })?;
        let password = if login.password.is_empty() {
            Vec::new()
        } else {
            auth::client_token(&login.password, &handshake.seeds).into_bytes()
        };
        let request = ClientAuth {
            username: login.user.clone(),
            password,
            net_read_timeout: Some(if login.idle_ms > 0 {
                login.idle_ms
            } else {
                3_600_000
            }),
            net_write_timeout: Some(if login.idle_ms > 0 {
                login.idle_ms
            } else {
                3_600_000
            }),
            ..Default::default()
        };
        client
            .send(PacketType::Clientauthentication, request.encode_to_vec())
            .await?;
        client.expect_ack().await?;
        Ok(client)
    }

    async fn read(&mut self) -> Result<Packet, ClientError> {
        Ok(frame::read_packet(&mut self.reader, MAX_SERVER_FRAME, &mut self.buffer).await?)
    }

    async fn send(&mut self, packet_type: PacketType, body: Vec<u8>) -> Result<(), ClientError> {
        frame::write_all(&mut self.writer, &frame::client_packet(packet_type, body)).await?;
        Ok(())
    }

    async fn expect_ack(&mut self) -> Result<(), ClientError> {
        let packet = self.read().await?;
        if packet.r#type() != PacketType::Ack {
            return Err(ClientError::Unexpected {
                expected: "ACK",
                got: packet.r#type().as_str_name().into(),
            });
        }
        check_ack(&packet)
    }

    /// Subscribes to `destination` as `client_id` (canal's default: "1001"),
    /// then rolls back like canal's connectors do, so anything delivered
    /// but not acknowledged before comes again.
    /// This end of the connection (what canal's cluster client records in
    /// its `{cid}/running` node).
    pub fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.local_address
    }

    /// Subscribes to `destination` as `client_id`, with `filter` (empty: the server's own).
    pub async fn subscribe(
        &mut self,
        destination: &str,
        client_id: &str,
        filter: &str,
    ) -> Result<(), ClientError> {
        let sub = Sub {
            destination: destination.into(),
            client_id: client_id.into(),
            filter: filter.into(),
        };
        self.send(PacketType::Subscription, sub.encode_to_vec())
            .await?;
        self.expect_ack().await?;
        self.destination = destination.into();
        self.client_id = client_id.into();
        self.rollback(0).await
    }

    /// Ends the subscription; the server forgets the client's cursor.
    pub async fn unsubscribe(&mut self) -> Result<(), ClientError> {
        let unsub = Unsub {
            destination: self.destination.clone(),
            client_id: self.client_id.clone(),
            filter: String::new(),
        };
        self.send(PacketType::Unsubscription, unsub.encode_to_vec())
            .await?;
        self.expect_ack().await
    }

    /// GET without auto-ack. `timeout` None sends -1 (return at once).
    pub async fn get(
        &mut self,
        fetch_size: i32,
        timeout: Option<Duration>,
    ) -> Result<Received, ClientError> {
        let (timeout, unit) = match timeout {
            Some(t) => (Some(t.as_millis().min(i64::MAX as u128) as i64), Some(2)),
            None => (Some(-1), None),
        };
        let get = Get {
            destination: self.destination.clone(),
            client_id: self.client_id.clone(),
            fetch_size,
            timeout,
            unit,
            auto_ack: Some(false),
        };
        self.send(PacketType::Get, get.encode_to_vec()).await?;
        let packet = self.read().await?;
        match packet.r#type() {
            PacketType::Messages => {
                let messages = Messages::decode(packet.body.as_slice()).map_err(|source| {
                    ClientError::Decode {
                        what: "Messages",
                        source,
                    }
                })?;
                let bytes = messages.messages.iter().map(Vec::len).sum();
                let entries = messages
                    .messages
                    .iter()
                    .map(|m| Entry::decode(m.as_slice()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|source| ClientError::Decode {
                        what: "Entry",
                        source,
                    })?;
                Ok(Received {
                    batch_id: messages.batch_id,
                    entries,
                    bytes,
                })
            }
            PacketType::Ack => {
                check_ack(&packet)?;
                Err(ClientError::Unexpected {
                    expected: "MESSAGES",
                    got: "ACK".into(),
                })
            }
            other => Err(ClientError::Unexpected {
                expected: "MESSAGES",
                got: other.as_str_name().into(),
            }),
        }
    }

    /// Acknowledges a batch (no reply: an error answers the next GET).
    pub async fn ack(&mut self, batch_id: i64) -> Result<(), ClientError> {
        let ack = ClientAck {
            destination: self.destination.clone(),
            client_id: self.client_id.clone(),
            batch_id,
        };
        self.send(PacketType::Clientack, ack.encode_to_vec()).await
    }

    /// Asks for the unacknowledged batches again (no reply, as with ack).
    pub async fn rollback(&mut self, batch_id: i64) -> Result<(), ClientError> {
        let rollback = ClientRollback {
            destination: self.destination.clone(),
            client_id: self.client_id.clone(),
            batch_id,
        };
        self.send(PacketType::Clientrollback, rollback.encode_to_vec())
            .await
    }
}

fn check_ack(packet: &Packet) -> Result<(), ClientError> {
    let ack = Ack::decode(packet.body.as_slice()).map_err(|source| ClientError::Decode {
        what: "Ack",
        source,
    })?;
    match ack.error_code {
        Some(code) if code != 0 => Err(ClientError::Server {
            code,
            message: ack.error_message,
        }),
        _ => Ok(()),
    }
}
