//! Canal's wire types, generated from `proto/*.proto`.
//!
//! `entry` holds the change-event model clients receive (Entry, RowChange,
//! Column...); `packet` holds the session envelope and commands. Both are
//! plain prost messages: this module has no I/O.

pub mod auth;
pub mod frame;
pub mod json;

/// The change-event model (upstream `EntryProtocol`).
pub mod entry {
    include!(concat!(env!("OUT_DIR"), "/canal.entry.rs"));
}

/// The client/server session messages (upstream `CanalProtocol`).
pub mod packet {
    include!(concat!(env!("OUT_DIR"), "/canal.packet.rs"));
}

/// The compiled descriptors of both packages, for reflection (JSON mapping).
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/canal_descriptor.bin"));
