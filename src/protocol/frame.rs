//! Framing of canal packets: a 4-byte big-endian signed length, then that
//! many bytes of a serialized `Packet`, in both directions.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::packet::{Ack, Packet, PacketType};

/// The largest frame a client may send: commands are small, so anything
/// near this is garbage or an attack.
pub const MAX_CLIENT_FRAME: usize = 1 << 20;
/// The largest frame a client accepts from a server (a batch of entries).
pub const MAX_SERVER_FRAME: usize = 1 << 30;

/// Server-sent packets carry protocol version 1.
pub const VERSION: i32 = 1;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// A length prefix below zero.
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    /// A frame longer than the reader accepts.
    TooLarge {
        /// The announced length.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// The frame is not a canal `Packet`.
    #[error("frame is not a canal packet: {0}")]
    Undecodable(#[from] prost::DecodeError),
    /// Reading or writing the socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame's bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    buffer: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let length = i32::from_be_bytes(header);
    let length = usize::try_from(length).map_err(|_| FrameError::Negative(length))?;
    if length > limit {
        return Err(FrameError::TooLarge { length, limit });
    }
    buffer.clear();
    buffer.resize(length, 0);
    reader.read_exact(buffer).await?;
    Ok(())
}

/// Reads and decodes one packet.
pub async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    buffer: &mut Vec<u8>,
) -> Result<Packet, FrameError> {
    read_frame(reader, limit, buffer).await?;
    Ok(Packet::decode(buffer.as_slice())?)
}

/// Frames an already serialized packet.
pub fn frame(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 4);
    out.extend_from_slice(&(packet.len() as i32).to_be_bytes());
    out.extend_from_slice(packet);
    out
}

/// A server packet of `packet_type` around `body`, framed.
pub fn server_packet(packet_type: PacketType, body: Vec<u8>) -> Vec<u8> {
    let packet = Packet {
        magic_number: None,
        version: Some(VERSION),
        r#type: packet_type as i32,
        compression: None,
        body,
    };
    frame(&packet.encode_to_vec())
}

/// A client packet (clients send only type and body), framed.
pub fn client_packet(packet_type: PacketType, body: Vec<u8>) -> Vec<u8> {
    let packet = Packet {
        r#type: packet_type as i32,
        body,
        ..Default::default()
    };
    frame(&packet.encode_to_vec())
}

/// The success Ack, framed.
pub fn ack_ok() -> Vec<u8> {
    server_packet(PacketType::Ack, Ack::default().encode_to_vec())
}

/// An error Ack, framed.
pub fn ack_error(code: i32, message: impl Into<String>) -> Vec<u8> {
    let ack = Ack {
        error_code: Some(code),
        error_message: message.into(),
    };
    server_packet(PacketType::Ack, ack.encode_to_vec())
}

/// Writes bytes and flushes.
pub async fn write_all<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let bytes = client_packet(PacketType::Get, vec![1, 2, 3]);
        let mut buffer = Vec::new();
        let packet = read_packet(&mut bytes.as_slice(), MAX_CLIENT_FRAME, &mut buffer)
            .await
            .unwrap();
        assert_eq!(
            (packet.r#type(), packet.body.as_slice()),
            (PacketType::Get, &[1u8, 2, 3][..])
        );

        let mut huge = (MAX_CLIENT_FRAME as i32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            read_packet(&mut huge.as_slice(), MAX_CLIENT_FRAME, &mut buffer).await,
            Err(FrameError::TooLarge { .. })
        ));
        let negative = (-5i32).to_be_bytes();
        assert!(matches!(
            read_packet(&mut negative.as_slice(), MAX_CLIENT_FRAME, &mut buffer).await,
            Err(FrameError::Negative(-5))
        ));
        let garbage = frame(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            read_packet(&mut garbage.as_slice(), MAX_CLIENT_FRAME, &mut buffer).await,
            Err(FrameError::Undecodable(_))
        ));
        let truncated = &bytes[..bytes.len() - 1];
        assert!(
            read_packet(&mut &truncated[..], MAX_CLIENT_FRAME, &mut buffer)
                .await
                .is_err()
        );
        assert!(matches!(
            read_packet(&mut &[][..], MAX_CLIENT_FRAME, &mut buffer).await,
            Err(FrameError::Closed)
        ));
    }
}
