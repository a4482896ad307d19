//! The reader and decoder never panic, whatever the bytes: fixture files
//! are mutated (with and without fixing up the event checksum, so that the
//! mutation reaches the event parsers) and truncated at random.

mod common;

use canal::binlog::{decode::Decoder, file::BinlogFileReader};
use common::*;
use proptest::prelude::*;

const FILES: &[&str] = &[
    "binlog/mariadb/mariadb-10.5-full-metadata.000001",
    "binlog/mysql8/json.binlog.000001",
    "binlog/mysql8/json-opaque.binlog",
    "binlog/mysql8/mysql-enum-string-set.000001",
    "binlog/mysql8/vector.binlog",
    "binlog/mysql8/time_issue.000001",
    "binlog/mysql8/binlog_transaction_with_GTID_TAG.000001",
    "binlog/mysql8/transaction_compression.000001",
    "binlog/mysql8/binlog-invisible-columns.000001",
    "binlog/mysql8/mysql_type_bit.000001",
    "binlog/mysql57/mysql-bin.checksum-crc32",
    "binlog/mysql57/mysql-bin.checksum-none",
    "binlog/mysql57/canal-tsdb.000003",
    "binlog/mysql57/mysql-bin.compressed",
    "binlog/mysql5x/canal-5.1.000001",
];

/// Start offsets and sizes of the events of a well-formed file.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut at = 4;
    while at + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        if size < 19 || at + size > bytes.len() {
            break;
        }
        frames.push((at, size));
        at += size;
    }
    frames
}

fn run(bytes: Vec<u8>) {
    let Ok(reader) = BinlogFileReader::from_bytes("fuzz.000001", bytes) else {
        return;
    };
    let mut decoder = Decoder::new(file_options(), Default::default());
    let mut out = Vec::new();
    for event in reader {
        let Ok(event) = event else { return };
        if decoder.decode(&event, &mut out).is_err() {
            return;
        }
        out.clear();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn mutated_events_never_panic(
        file in 0..FILES.len(),
        event_pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        fix_checksum in any::<bool>(),
    ) {
        let mut bytes = std::fs::read(fixture(FILES[file])).unwrap();
        let frames = frames(&bytes);
        let (start, size) = frames[event_pick.index(frames.len())];
        // Leave the frame header's size field alone so framing holds and the
        // mutation lands in the event body.
        let body = start + 13..start + size;
        for (at, value) in &mutations {
            let offset = body.start + at.index(body.len());
            bytes[offset] = *value;
        }
        let has_crc = frames.len() > 1 && !FILES[file].contains("checksum-none") && !FILES[file].contains("5.1");
        if fix_checksum && has_crc && size > 23 && bytes[start + 4] != 15 {
            let crc = crc32fast::hash(&bytes[start..start + size - 4]);
            bytes[start + size - 4..start + size].copy_from_slice(&crc.to_le_bytes());
        }
        run(bytes);
    }

    #[test]
    fn truncated_files_never_panic(file in 0..FILES.len(), cut in any::<prop::sample::Index>()) {
        let bytes = std::fs::read(fixture(FILES[file])).unwrap();
        let cut = cut.index(bytes.len());
        run(bytes[..cut].to_vec());
    }
}
