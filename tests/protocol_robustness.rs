//! The frame and packet decoders never panic, whatever a client sends.

use canal::protocol::{
    entry::{Entry, RowChange},
    frame::{self, MAX_CLIENT_FRAME},
    packet::{
        Ack, ClientAck, ClientAuth, ClientRollback, Get, Handshake, Messages, Packet, Sub, Unsub,
    },
};
use proptest::prelude::*;
use prost::Message;

fn decode_everything(bytes: &[u8]) {
    let _ = Packet::decode(bytes);
    let _ = ClientAuth::decode(bytes);
    let _ = Sub::decode(bytes);
    let _ = Unsub::decode(bytes);
    let _ = Get::decode(bytes);
    let _ = ClientAck::decode(bytes);
    let _ = ClientRollback::decode(bytes);
    let _ = Ack::decode(bytes);
    let _ = Handshake::decode(bytes);
    let _ = Messages::decode(bytes);
    let _ = Entry::decode(bytes);
    let _ = RowChange::decode(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut buffer = Vec::new();
            let mut input = bytes.as_slice();
            while let Ok(packet) = frame::read_packet(&mut input, MAX_CLIENT_FRAME, &mut buffer).await {
                decode_everything(&packet.body);
            }
        });
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..64),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let get = Get { destination: "example".into(), client_id: "1001".into(), fetch_size: 100, timeout: Some(-1), unit: Some(2), auto_ack: Some(false) };
        let mut bytes = frame::client_packet(canal::protocol::packet::PacketType::Get, get.encode_to_vec());
        bytes.extend_from_slice(&body);
        for (at, value) in flips {
            let index = at.index(bytes.len());
            bytes[index] = value;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut buffer = Vec::new();
            let mut input = bytes.as_slice();
            while let Ok(packet) = frame::read_packet(&mut input, MAX_CLIENT_FRAME, &mut buffer).await {
                decode_everything(&packet.body);
            }
        });
    }
}
