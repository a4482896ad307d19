//! The decoder over the shared binlog fixtures (MySQL 5.1-9.x and MariaDB
//! formats that cannot be produced here): every file decodes or fails
//! cleanly, event counts match `mysqlbinlog`, golden values match.

mod common;

use std::{collections::BTreeMap, io::Read};

use canal::{
    binlog::{
        decode::{Decoder, DecoderOptions},
        event::event_type_name,
        file::{BinlogFileReader, FileError},
    },
    protocol::entry::{EntryType, EventType},
};
use common::*;

fn event_counts(relative: &str) -> (usize, BTreeMap<String, usize>) {
    let mut outer = 0;
    let mut types = BTreeMap::new();
    for event in events(relative) {
        if !event.in_payload {
            outer += 1;
        }
        *types.entry(event_type_name(event.type_code())).or_insert(0) += 1;
    }
    (outer, types)
}

#[test]
fn every_fixture_file_decodes_or_fails_cleanly() {
    let root = fixture("binlog");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if !path.extension().is_some_and(|e| {
                ["txt", "sql", "md", "gz", "zst", "events"].contains(&e.to_str().unwrap())
            }) {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 30, "found the fixture files");
    for path in files {
        let name = path.strip_prefix(&root).unwrap().display().to_string();
        let reader = match BinlogFileReader::open(&path) {
            Ok(reader) => reader,
            Err(FileError::NotBinlog { .. }) if name.contains("CORRUPT") => continue,
            Err(e) => panic!("{name}: {e}"),
        };
        let mut decoder = Decoder::new(file_options(), Default::default());
        let mut out = Vec::new();
        for event in reader {
            let event = event.unwrap_or_else(|e| panic!("{name}: {e}"));
            decoder
                .decode(&event, &mut out)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn corrupt_file_is_refused_with_a_reason() {
    let error = BinlogFileReader::open(fixture("binlog/mysql57/canal-tsdb-CORRUPT.000001"))
        .err()
        .expect("corrupt file refused");
    assert!(error.to_string().contains("not a binlog file"), "{error}");
}

#[test]
fn event_counts_match_mysqlbinlog() {
    assert_eq!(
        event_counts("binlog/mysql57/mysql-bin.checksum-crc32").0,
        303
    );
    assert_eq!(
        event_counts("binlog/mysql57/mysql-bin.checksum-none").0,
        191
    );
    let (outer, types) = event_counts("binlog/mysql57/mysql-bin.compressed");
    assert_eq!(
        outer, 5,
        "five outer events around the compressed transaction"
    );
    assert_eq!(types["TRANSACTION_PAYLOAD"], 1);
    // The fixture README says 290; mysqlbinlog and mariadb-binlog both list
    // 380 events (111 QUERY, 89 TABLE_MAP, 89 XID, 78 UPDATE_ROWS_V1...).
    let (outer, types) = event_counts("binlog/mysql5x/canal-5.1.000001");
    assert_eq!(outer, 380);
    assert_eq!(types["UPDATE_ROWS_EVENT_V1"], 78);
}

#[test]
fn sakila_load_decodes_every_row() {
    let mut gz = flate2::read::GzDecoder::new(
        std::fs::File::open(fixture("binlog/mysql5x/mysql-bin.sakila.gz")).unwrap(),
    );
    let mut bytes = Vec::new();
    gz.read_to_end(&mut bytes).unwrap();
    let reader = BinlogFileReader::from_bytes("mysql-bin.000001", bytes).unwrap();
    let events: Vec<_> = reader.map(|e| e.unwrap()).collect();
    assert_eq!(events.len(), 1462);
    let writes = events.iter().filter(|e| e.type_code() == 23).count();
    assert_eq!(writes, 1374);
    let mut decoder = Decoder::new(file_options(), Default::default());
    let mut out = Vec::new();
    for event in &events {
        decoder.decode(event, &mut out).unwrap();
    }
    let inserts = out
        .iter()
        .filter_map(row_change)
        .filter(|rc| rc.event_type() == EventType::Insert)
        .count();
    assert_eq!(inserts, 1374, "one INSERT entry per WRITE_ROWS event");
}

#[test]
fn aurora_padding_event_is_skipped() {
    let (_, types) = event_counts("binlog/mysql57/mysql-bin.aurora-padding");
    assert_eq!(types["type 100"], 1);
    let changes = decode("binlog/mysql57/mysql-bin.aurora-padding");
    assert!(!changes.is_empty());
}

#[test]
fn negative_time_golden_value() {
    let rows = rows(&decode("binlog/mysql8/time_issue.000001"));
    assert_eq!(values(&rows[0]), ["-507:48:27"]);
    assert_eq!(rows[0][0].mysql_type, "time");
    assert_eq!(rows[0][0].sql_type, 92);
}

#[test]
fn minimal_metadata_signedness_and_charset() {
    let rows = rows(&decode("binlog/mysql8/minimal_row_metadata.000001"));
    let row = &rows[0];
    let unsigned = row.iter().find(|c| c.index == 4).expect("column 4 present");
    assert_eq!(unsigned.value, "3230202323");
    assert_eq!(unsigned.mysql_type, "int unsigned");
    // Above the signed maximum: canal reports BIGINT.
    assert_eq!(unsigned.sql_type, -5);
    let text = row.iter().find(|c| c.index == 2).expect("column 2 present");
    // utf8mb4_0900_ai_ci (255): 4 bytes per character, so 8 bytes is char(2).
    assert_eq!(text.mysql_type, "char(2)");
}

#[test]
fn bit_columns() {
    let rows = rows(&decode("binlog/mysql8/mysql_type_bit.000001"));
    assert_eq!(values(&rows[0]), ["4", "foo", "32"]);
    assert_eq!(rows[0][0].sql_type, -7);
    assert_eq!(rows[0][0].mysql_type, "bit(3)");
    assert_eq!(rows[0][1].sql_type, 2005, "TEXT is CLOB");
}

#[test]
fn json_opaque_scalars() {
    let rows = rows(&decode("binlog/mysql8/json-opaque.binlog"));
    let docs: Vec<String> = rows.iter().map(|r| r[0].value.clone()).collect();
    assert_eq!(
        docs,
        [
            r#"{"a": "base64:type15:VQ=="}"#,
            r#"{"b": "2012-03-18"}"#,
            r#"{"c": "2012-03-18 11:30:45.000000"}"#,
            r#"{"c": "87:31:46.654321"}"#,
            r#"{"d": 123.456}"#,
            r#"{"e": 9.00}"#,
            r#"{"e": [0, 1, true, false]}"#,
            r#"{"e": null}"#,
        ]
    );
    assert!(rows.iter().all(|r| r[0].sql_type == 12));
}

#[test]
fn json_partial_update_without_before_image_is_shown_as_calls() {
    let changes = decode("binlog/mysql8/json.binlog.000001");
    let updates: Vec<_> = changes
        .iter()
        .filter_map(row_change)
        .filter(|rc| rc.event_type() == EventType::Update)
        .collect();
    // First a regular UPDATE_ROWS with full images, then a PARTIAL_UPDATE_ROWS
    // logged with binlog_row_image=MINIMAL (no JSON in the before image).
    let full = &updates[0].row_datas[0];
    assert_eq!(
        full.after_columns[1].value,
        r#"{"age": 25, "data": "xxxxxxxxxx", "name": "Joe"}"#
    );
    assert!(full.after_columns[1].updated);
    assert!(!full.after_columns[0].updated);
    let partial = &updates[1].row_datas[0];
    assert_eq!(partial.before_columns.len(), 1, "minimal before image");
    assert_eq!(
        partial.after_columns[0].value,
        "JSON_REPLACE(@2, '$.age', 26)"
    );
}

#[test]
fn enum_and_set_with_full_metadata() {
    let changes = decode("binlog/mysql8/mysql-enum-string-set.000001");
    let rows = rows(&changes);
    let insert = &rows[0];
    assert_eq!(insert[0].mysql_type, "char(128)");
    assert_eq!(insert[0].value.len(), 100, "long CHAR kept whole");
    assert_eq!(insert[2].mysql_type, "enum('var1','variant2','foo')");
    assert_eq!(insert[2].value, "1");
    assert_eq!(insert[2].sql_type, 4);
    assert_eq!(insert[3].mysql_type, "set('one','two','three','four')");
    assert_eq!(insert[3].value, "5");
    assert_eq!(insert[3].sql_type, -7);
}

#[test]
fn enum_and_set_labels_when_asked() {
    let mut options = file_options();
    options.values.enum_set_labels = true;
    let rows = rows(&decode_with(
        "binlog/mysql8/mysql-enum-string-set.000001",
        options,
    ));
    assert_eq!(rows[0][2].value, "var1");
    assert_eq!(rows[0][3].value, "one,three");
}

#[test]
fn vector_columns() {
    let changes = decode("binlog/mysql8/vector.binlog");
    let rows = rows(&changes);
    let first = &rows[0];
    assert_eq!(first[1].mysql_type, "vector(3)");
    let bytes: Vec<u8> = first[1].value.chars().map(|c| c as u32 as u8).collect();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(floats, [1.1, 2.2, 3.3]);
    let bar = &rows[2];
    assert_eq!(bar[1].mysql_type, "vector(2)");
    assert_eq!(
        bar[2].mysql_type, "text",
        "charsets stay aligned past VECTOR columns"
    );
    assert_eq!(bar[3].mysql_type, "vector(4)");
}

#[test]
fn tagged_gtid_and_previous_gtids() {
    let changes = decode("binlog/mysql8/binlog_transaction_with_GTID_TAG.000001");
    let begin = &changes[0];
    assert_eq!(begin.entry.entry_type(), EntryType::Transactionbegin);
    let header = begin.entry.header.as_ref().unwrap();
    assert_eq!(
        header.gtid,
        "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-3"
    );
    let current = header.props.iter().find(|p| p.key == "curtGtid").unwrap();
    assert_eq!(
        current.value,
        "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3"
    );
}

#[test]
fn compressed_transaction_entries_share_the_payload_position() {
    let changes = decode("binlog/mysql8/transaction_compression.000001");
    let kinds: Vec<_> = changes.iter().map(|c| c.entry.entry_type()).collect();
    assert_eq!(
        kinds,
        [
            EntryType::Transactionbegin,
            EntryType::Rowdata,
            EntryType::Transactionend
        ]
    );
    let offsets: Vec<_> = changes.iter().map(|c| c.position.position).collect();
    assert!(offsets.windows(2).all(|w| w[0] == w[1]), "{offsets:?}");
    assert!(changes.iter().all(|c| c.end > c.position.position));
}

#[test]
fn mariadb_full_metadata_names_and_keys() {
    let changes = decode("binlog/mariadb/mariadb-10.5-full-metadata.000001");
    let rows = rows(&changes);
    let names: Vec<_> = rows[0].iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "topic", "event_type", "event", "created"]);
    let keys: Vec<_> = rows[0].iter().map(|c| c.is_key).collect();
    assert_eq!(keys, [true, false, false, false, false]);
    // MariaDB transactions open with a GTID event instead of BEGIN.
    assert_eq!(changes[0].entry.entry_type(), EntryType::Transactionbegin);
    let end = changes
        .iter()
        .find(|c| c.entry.entry_type() == EntryType::Transactionend)
        .unwrap();
    assert!(end.is_boundary());
    // ANNOTATE_ROWS is forwarded as a QUERY entry, as canal does.
    let annotate = changes
        .iter()
        .filter_map(row_change)
        .find(|rc| rc.event_type() == EventType::Query)
        .unwrap();
    assert!(annotate.sql.starts_with("insert into outbox"));
}

#[test]
fn ddl_entries_from_old_binlogs() {
    let changes = decode("binlog/mysql57/canal-tsdb.000003");
    let ddl: Vec<_> = changes
        .iter()
        .filter_map(|c| {
            row_change(c)
                .filter(|rc| rc.is_ddl == Some(true))
                .map(|rc| (c, rc))
        })
        .collect();
    assert!(!ddl.is_empty());
    for (change, rc) in &ddl {
        assert_eq!(change.kind, canal::binlog::change::ChangeKind::Ddl);
        assert!(!rc.sql.is_empty());
        let header = change.entry.header.as_ref().unwrap();
        if rc.event_type() == EventType::Alter {
            assert_eq!(header.table_name, "wanshao_test");
            assert_eq!(header.schema_name, "wanshao");
        }
    }
}

#[test]
fn strict_mode_refuses_tables_without_column_names() {
    let mut decoder = Decoder::new(DecoderOptions::default(), Default::default());
    let mut out = Vec::new();
    let mut error = None;
    for event in events("binlog/mysql57/mysql-bin.checksum-crc32") {
        if let Err(e) = decoder.decode(&event, &mut out) {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("no column names in a 5.7 binlog").to_string();
    assert!(error.contains("binlog_row_metadata=FULL"), "{error}");
}
