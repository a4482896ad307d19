//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod canal_java;
pub mod cluster;
pub mod failure;
pub mod k8s;
pub mod kubelet;
pub mod live;
pub mod node;
pub mod operator;
pub mod proxy;
pub mod rows;
pub mod scene;
pub mod workload;
pub mod zk;

use std::{path::PathBuf, sync::Arc};

use canal::{
    binlog::{
        change::ChangeEvent,
        decode::{Decoder, DecoderOptions, UnnamedColumns},
        event::SourceEvent,
        file::BinlogFileReader,
        filter::EventFilter,
    },
    protocol::entry::{Column, EntryType, RowChange},
};
use prost::Message;

/// A file under the shared fixtures directory.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(relative)
}

/// Options for inspecting files: columns of tables without binlog metadata
/// are named by position.
pub fn file_options() -> DecoderOptions {
    DecoderOptions {
        unnamed_columns: UnnamedColumns::Positional,
        gtid_header: true,
        ..DecoderOptions::default()
    }
}

/// All events of a binlog file.
pub fn events(relative: &str) -> Vec<SourceEvent> {
    BinlogFileReader::open(fixture(relative))
        .expect("fixture opens")
        .map(|e| e.expect("fixture reads"))
        .collect()
}

/// Decodes a whole file with `options`.
pub fn decode_with(relative: &str, options: DecoderOptions) -> Vec<ChangeEvent> {
    let mut decoder = Decoder::new(options, Arc::new(EventFilter::default()));
    let mut out = Vec::new();
    for event in events(relative) {
        decoder.decode(&event, &mut out).expect("fixture decodes");
    }
    out
}

pub fn decode(relative: &str) -> Vec<ChangeEvent> {
    decode_with(relative, file_options())
}

pub fn row_change(change: &ChangeEvent) -> Option<RowChange> {
    (change.entry.entry_type() == EntryType::Rowdata)
        .then(|| RowChange::decode(change.entry.store_value.as_slice()).expect("RowChange decodes"))
}

/// After images (or before images of deletes) of every row change, in order.
pub fn rows(changes: &[ChangeEvent]) -> Vec<Vec<Column>> {
    changes
        .iter()
        .filter_map(row_change)
        .filter(|rc| rc.is_ddl != Some(true))
        .flat_map(|rc| rc.row_datas)
        .map(|rd| {
            if rd.after_columns.is_empty() {
                rd.before_columns
            } else {
                rd.after_columns
            }
        })
        .collect()
}

pub fn values(columns: &[Column]) -> Vec<String> {
    columns
        .iter()
        .map(|c| {
            if c.is_null == Some(true) {
                "NULL".to_owned()
            } else {
                c.value.clone()
            }
        })
        .collect()
}
