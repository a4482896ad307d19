//! The engine against a real MariaDB 10.11 (started by scripts/env): every
//! column type, multi-row statements, a 100k-row transaction, binlog
//! rotation, ALTER TABLE mid-stream and a killed replica connection.

mod common;

use std::time::Duration;

use canal::{
    binlog::{change::ChangeEvent, decode::DecoderOptions, position::StartPosition},
    protocol::entry::{Column, EntryType, EventType, RowChange},
};
use common::{live::*, row_change, scene::LiveSchema};
use mysql_async::{Value, prelude::Queryable};

const WAIT: Duration = Duration::from_secs(60);

fn row_changes(changes: &[ChangeEvent]) -> Vec<RowChange> {
    changes
        .iter()
        .filter_map(row_change)
        .filter(|rc| rc.is_ddl != Some(true) && rc.event_type() != EventType::Query)
        .collect()
}

/// Transactions (BEGIN..END) that hold rows of the test's own tables; other
/// tests' transactions show up as empty BEGIN/END pairs.
fn transactions_with_rows(changes: &[ChangeEvent]) -> usize {
    let mut count = 0;
    let mut rows_in_current = false;
    for change in changes {
        match change.entry.entry_type() {
            EntryType::Transactionbegin => rows_in_current = false,
            EntryType::Rowdata if change.kind == canal::binlog::change::ChangeKind::Rows => {
                rows_in_current = true
            }
            EntryType::Transactionend if rows_in_current => count += 1,
            _ => {}
        }
    }
    count
}

fn count_rows(changes: &[ChangeEvent]) -> usize {
    row_changes(changes)
        .iter()
        .map(|rc| rc.row_datas.len())
        .sum()
}

fn bytes_of(column: &Column) -> Vec<u8> {
    column
        .value
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("ISO-8859-1 character"))
        .collect()
}

const TYPES_TABLE: &str = "CREATE TABLE types (
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE,
    dt DATE, dtm DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6), ts TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL,
    tm TIME, tm1 TIME(1), tm2 TIME(2), tm6 TIME(6), y YEAR,
    dtm1 DATETIME(1), dtm2 DATETIME(2), dtm4 DATETIME(4), dtm5 DATETIME(5),
    ts1 TIMESTAMP(1) NULL, ts2 TIMESTAMP(2) NULL, ts3 TIMESTAMP(3) NULL, ts4 TIMESTAMP(4) NULL, ts5 TIMESTAMP(5) NULL,
    tm3 TIME(3), tm4 TIME(4), tm5 TIME(5), b13 BIT(13),
    c CHAR(10), vc VARCHAR(100), tx TEXT,
    c_latin1 VARCHAR(20) CHARACTER SET latin1, c_ucs2 VARCHAR(20) CHARACTER SET ucs2,
    bn BINARY(4), vb VARBINARY(300), bl BLOB, mbl MEDIUMBLOB,
    b1 BIT(1), b64 BIT(64), e ENUM('a','b','c'), st SET('x','y','z'),
    j JSON, g GEOMETRY, p POINT
) ENGINE=InnoDB";

/// Columns whose canal text is what the server's text protocol shows.
const SERVER_TEXT_COLUMNS: &[&str] = &[
    "id", "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "d", "d2", "dt", "dtm",
    "dtm3", "dtm6", "ts", "ts6", "tm", "tm1", "tm2", "tm6", "y", "c", "vc", "tx", "c_latin1",
    "c_ucs2", "j",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_column_type_matches_the_value_table() {
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("types");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("USE `{schema}`")).await.unwrap();
    conn.query_drop("SET SESSION sql_mode = '', time_zone = '+00:00'")
        .await
        .unwrap();
    conn.query_drop(TYPES_TABLE).await.unwrap();
    let start = latest(&mut conn).await;
    let mut capture = Capture::start(&env, server_id, &schema, start, DecoderOptions::default());

    let all_bytes: String = (0u8..=255).map(|b| format!("{b:02x}")).collect();
    conn.query_drop(format!(
        "INSERT INTO types VALUES
        (1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
         '99999999999999999999999999999999999.999999999999999999999999999999', 1.50, 2.5, 100,
         '9999-12-31', '9999-12-31 23:59:59', '2024-02-29 13:14:15.123', '2024-02-29 13:14:15.123456',
         '2038-01-19 03:14:07', '2001-02-03 04:05:06.654321',
         '838:59:59', '-00:00:00.5', '12:34:56.78', '-838:59:58.999999', 2155,
         '2024-02-29 13:14:15.1', '2024-02-29 13:14:15.12', '2024-02-29 13:14:15.1234', '2024-02-29 13:14:15.12345',
         '2001-02-03 04:05:06.6', '2001-02-03 04:05:06.65', '2001-02-03 04:05:06.654', '2001-02-03 04:05:06.6543',
         '2001-02-03 04:05:06.65432', '-12:34:56.789', '838:59:58.9999', '-00:00:01.00001', b'1010101010101',
         'abc', 'héllo 😀 世界', 'text 😀', 'café€', 'Ωmega', x'00010203', x'{all_bytes}', x'{all_bytes}', x'ff00',
         b'1', b'1111111111111111111111111111111111111111111111111111111111111111', 'b', 'x,z',
         '{{\"a\": [1, 2.5, \"x\"]}}', ST_GeomFromText('LINESTRING(0 0, 1 1)'), POINT(1, 2)),
        (2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
         '-99999999999999999999999999999999999.999999999999999999999999999999', -0.01, -1e20, 1e-5,
         '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000', '1000-01-01 00:00:00.000001',
         '1970-01-01 00:00:01', '1970-01-01 00:00:01.000001',
         '-838:59:59', '00:00:00.1', '-01:02:03.04', '00:00:00.000001', 1901,
         '1000-01-01 00:00:00.1', '1000-01-01 00:00:00.01', '1000-01-01 00:00:00.0001', '1000-01-01 00:00:00.00001',
         '1970-01-01 00:00:01.1', '1970-01-01 00:00:01.01', '1970-01-01 00:00:01.001', '1970-01-01 00:00:01.0001',
         '1970-01-01 00:00:01.00001', '-838:59:58.999', '00:00:00.0001', '-00:00:00.00001', b'1111111111111',
         '', '', '', '', '', x'', x'', x'', x'',
         b'0', b'0', 'a', '', '[]', POINT(0, 0), POINT(-1.5, 2.25)),
        (3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
         '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000', '0000-00-00 00:00:00.000000',
         '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000',
         '00:00:00', '00:00:00.0', '00:00:00.00', '00:00:00.000000', 0,
         '0000-00-00 00:00:00.0', '0000-00-00 00:00:00.00', '0000-00-00 00:00:00.0000', '0000-00-00 00:00:00.00000',
         '0000-00-00 00:00:00.0', '0000-00-00 00:00:00.00', '0000-00-00 00:00:00.000', '0000-00-00 00:00:00.0000',
         '0000-00-00 00:00:00.00000', '00:00:00.000', '00:00:00.0000', '00:00:00.00000', b'0',
         ' ', ' ', ' ', ' ', ' ', x'20', x'20', x'20', x'20', b'0', 5, 3, 7, 'null', POINT(0,0), POINT(0,0)),
        (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    ))
    .await
    .unwrap();

    capture.until(WAIT, |c| count_rows(c) >= 4).await;
    let inserts = row_changes(&capture.changes);
    let rows: Vec<&Vec<Column>> = inserts
        .iter()
        .flat_map(|rc| rc.row_datas.iter())
        .map(|rd| &rd.after_columns)
        .collect();
    assert_eq!(rows.len(), 4);

    // The server's own text for each value, and the raw bytes of binary ones.
    let names: Vec<String> = rows[0].iter().map(|c| c.name.clone()).collect();
    let select: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    let server_rows: Vec<mysql_async::Row> = conn
        .query(format!(
            "SELECT {} FROM types ORDER BY id",
            select.join(", ")
        ))
        .await
        .unwrap();
    for (row, server) in rows.iter().zip(&server_rows) {
        for (index, column) in row.iter().enumerate() {
            let name = column.name.as_str();
            let server_value = server.as_ref(index).unwrap();
            if *server_value == Value::NULL {
                assert_eq!(column.is_null, Some(true), "{name} is NULL");
                assert_eq!(column.value, "", "{name}: NULL has an empty value");
                continue;
            }
            assert_eq!(column.is_null, Some(false), "{name}");
            let Value::Bytes(ref bytes) = *server_value else {
                panic!("{name}: text protocol gave {server_value:?}")
            };
            if SERVER_TEXT_COLUMNS.contains(&name) {
                assert_eq!(
                    column.value,
                    String::from_utf8_lossy(bytes),
                    "column {name} of row {}",
                    row[0].value
                );
            } else if ["bn", "vb", "bl", "mbl", "g", "p"].contains(&name) {
                assert_eq!(
                    &bytes_of(column),
                    bytes,
                    "binary column {name} byte for byte"
                );
            }
        }
    }

    let col = |row: usize, name: &str| rows[row].iter().find(|c| c.name == name).unwrap().clone();
    // Unsigned values above the signed maximum move one sqlType up.
    assert_eq!((col(0, "tiu").sql_type, col(1, "tiu").sql_type), (5, -6));
    assert_eq!(col(0, "siu").sql_type, 4);
    assert_eq!(col(0, "miu").sql_type, 4);
    assert_eq!(col(0, "iu").sql_type, -5);
    assert_eq!(
        (col(0, "biu").sql_type, col(0, "biu").value.as_str()),
        (3, "18446744073709551615")
    );
    assert_eq!(
        (
            col(0, "bi").sql_type,
            col(0, "i").sql_type,
            col(0, "si").sql_type,
            col(0, "ti").sql_type
        ),
        (-5, 4, 5, -6)
    );
    // Java's float text.
    assert_eq!(
        (col(0, "f").value.as_str(), col(0, "db").value.as_str()),
        ("2.5", "100.0")
    );
    assert_eq!(
        (col(1, "f").value.as_str(), col(1, "db").value.as_str()),
        ("-1.0E20", "1.0E-5")
    );
    assert_eq!(
        (col(2, "f").value.as_str(), col(2, "db").value.as_str()),
        ("0.0", "0.0")
    );
    assert_eq!((col(0, "f").sql_type, col(0, "db").sql_type), (7, 8));
    assert_eq!(col(0, "d2").value, "1.50");
    // BIT as an unsigned number, ENUM as its index, SET as its bitmask.
    assert_eq!(
        (col(0, "b1").value.as_str(), col(0, "b64").value.as_str()),
        ("1", "18446744073709551615")
    );
    assert_eq!(col(0, "b64").sql_type, -7);
    assert_eq!((col(0, "e").value.as_str(), col(0, "e").sql_type), ("2", 4));
    assert_eq!(
        (col(0, "st").value.as_str(), col(0, "st").sql_type),
        ("5", -7)
    );
    assert_eq!(
        (col(2, "e").value.as_str(), col(2, "st").value.as_str()),
        ("3", "7")
    );
    assert_eq!(
        col(3, "st").sql_type,
        2004,
        "a NULL SET reads as BLOB, as in canal"
    );
    // Types and mysqlType texts as MariaDB prints them.
    let expect_types = [
        ("ti", "tinyint(4)", -6),
        ("tiu", "tinyint(3) unsigned", -6),
        ("i", "int(11)", 4),
        ("iu", "int(10) unsigned", 4),
        ("biu", "bigint(20) unsigned", -5),
        ("d", "decimal(65,30)", 3),
        ("f", "float", 7),
        ("dt", "date", 91),
        ("dtm3", "datetime(3)", 93),
        ("ts6", "timestamp(6)", 93),
        ("tm1", "time(1)", 92),
        ("y", "year(4)", 12),
        ("c", "char(10)", 1),
        ("vc", "varchar(100)", 12),
        ("tx", "text", 2005),
        ("c_latin1", "varchar(20)", 12),
        ("c_ucs2", "varchar(20)", 12),
        ("bn", "binary(4)", 2004),
        ("vb", "varbinary(300)", 2004),
        ("bl", "blob", 2004),
        ("mbl", "mediumblob", 2004),
        ("b1", "bit(1)", -7),
        ("e", "enum('a','b','c')", 4),
        ("st", "set('x','y','z')", -7),
        ("j", "longtext", 2005),
        ("g", "geometry", 2004),
        ("p", "point", 2004),
    ];
    for (name, mysql_type, sql_type) in expect_types {
        let c = col(3, name);
        assert_eq!(
            (c.mysql_type.as_str(), col(1, name).sql_type),
            (mysql_type, sql_type),
            "{name}"
        );
        assert_eq!(c.is_null, Some(true));
    }
    assert!(col(0, "id").is_key && !col(0, "i").is_key);
    assert!(
        rows.iter().all(|r| r.iter().all(|c| c.updated)),
        "INSERT marks every column updated"
    );
    let _ = capture.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_row_statements_and_updated_flags() {
    let mut live =
        LiveSchema::create("multi", &["t (id INT PRIMARY KEY, a INT, b VARCHAR(10))"]).await;
    let mut capture = live.capture(DecoderOptions::default());
    let (conn, schema) = (&mut live.conn, live.name.clone());
    conn.query_drop(format!(
        "INSERT INTO `{schema}`.t VALUES (1, 10, 'x'), (2, 20, 'y'), (3, 30, NULL);
         UPDATE `{schema}`.t SET a = a + 1 WHERE id <= 2;
         UPDATE `{schema}`.t SET b = 'z' WHERE id = 3;
         DELETE FROM `{schema}`.t WHERE id IN (1, 3)"
    ))
    .await
    .unwrap();
    capture.until(WAIT, |c| row_changes(c).len() >= 4).await;
    let changes = row_changes(&capture.changes);
    let kinds: Vec<_> = changes
        .iter()
        .map(|rc| (rc.event_type(), rc.row_datas.len()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventType::Insert, 3),
            (EventType::Update, 2),
            (EventType::Update, 1),
            (EventType::Delete, 2)
        ]
    );
    let update = &changes[1].row_datas[0];
    let flags: Vec<_> = update
        .after_columns
        .iter()
        .map(|c| (c.name.as_str(), c.updated))
        .collect();
    assert_eq!(flags, [("id", false), ("a", true), ("b", false)]);
    assert!(update.before_columns.iter().all(|c| !c.updated));
    assert_eq!(update.before_columns[1].value, "10");
    assert_eq!(update.after_columns[1].value, "11");
    let null_to_value = &changes[2].row_datas[0];
    assert!(
        null_to_value.before_columns[2].is_null == Some(true)
            && null_to_value.after_columns[2].updated
    );
    // Each statement is its own transaction: BEGIN, rows, END.
    capture
        .until(WAIT, |c| transactions_with_rows(c) >= 4)
        .await;
    assert_eq!(transactions_with_rows(&capture.changes), 4);
    let first_rows = capture
        .changes
        .iter()
        .find(|c| c.kind == canal::binlog::change::ChangeKind::Rows)
        .unwrap();
    let header = first_rows.entry.header.clone().unwrap();
    assert_eq!(
        (header.schema_name.as_str(), header.table_name.as_str()),
        (schema.as_str(), "t")
    );
    assert_eq!(header.props[0].key, "rowsCount");
    assert_eq!(header.props[0].value, "3");
    let _ = capture.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_transaction_of_100k_rows() {
    let mut live = LiveSchema::create("big", &["t (id INT PRIMARY KEY, v VARCHAR(32))"]).await;
    let mut capture = live.capture(DecoderOptions::default());
    let (conn, schema) = (&mut live.conn, live.name.clone());
    conn.query_drop(format!("USE `{schema}`")).await.unwrap();
    conn.query_drop("INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_100000")
        .await
        .unwrap();
    capture
        .until(Duration::from_secs(180), |c| transactions_with_rows(c) == 1)
        .await;
    let rows = row_changes(&capture.changes);
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|rc| rc.row_datas.iter())
        .map(|rd| rd.after_columns[0].value.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 100_000);
    assert!(
        ids.iter().zip(1..).all(|(id, expected)| *id == expected),
        "every row once, in order"
    );
    assert_eq!(
        transactions_with_rows(&capture.changes),
        1,
        "one transaction"
    );
    let _ = capture.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_rotation_is_followed() {
    let mut live = LiveSchema::create("rotate", &["t (id INT PRIMARY KEY)"]).await;
    let mut capture = live.capture(DecoderOptions::default());
    let (conn, schema) = (&mut live.conn, live.name.clone());
    for id in 1..=3 {
        conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES ({id})"))
            .await
            .unwrap();
        conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    }
    capture.until(WAIT, |c| count_rows(c) >= 3).await;
    let files: Vec<String> = capture
        .changes
        .iter()
        .filter(|c| c.kind == canal::binlog::change::ChangeKind::Rows)
        .map(|c| c.position.journal_name.clone())
        .collect();
    assert_eq!(files.len(), 3);
    // The 4 checksum bytes MariaDB leaves on the first fake ROTATE are gone.
    let name = regex::Regex::new(r"^mysql-bin\.\d{6}$").unwrap();
    assert!(
        capture
            .changes
            .iter()
            .all(|c| name.is_match(&c.position.journal_name)),
        "clean file names: {files:?}"
    );
    assert!(
        files[0] < files[1] && files[1] < files[2],
        "each row in the next binlog file: {files:?}"
    );
    let _ = capture.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alter_table_mid_stream_keeps_columns_aligned() {
    let mut live =
        LiveSchema::create("alter", &["t (id INT PRIMARY KEY, a VARCHAR(10), b INT)"]).await;
    let mut capture = live.capture(DecoderOptions::default());
    let (conn, schema) = (&mut live.conn, live.name.clone());
    conn.query_drop(format!(
        "INSERT INTO `{schema}`.t VALUES (1, 'one', 1);
         ALTER TABLE `{schema}`.t ADD COLUMN z DATE FIRST, DROP COLUMN a;
         INSERT INTO `{schema}`.t VALUES ('2024-01-01', 2, 2);
         ALTER TABLE `{schema}`.t CHANGE b bee BIGINT UNSIGNED;
         INSERT INTO `{schema}`.t VALUES ('2024-01-02', 3, 18446744073709551615)"
    ))
    .await
    .unwrap();
    capture.until(WAIT, |c| count_rows(c) >= 3).await;
    let rows: Vec<Vec<(String, String)>> = row_changes(&capture.changes)
        .iter()
        .flat_map(|rc| rc.row_datas.iter())
        .map(|rd| {
            rd.after_columns
                .iter()
                .map(|c| (c.name.clone(), c.value.clone()))
                .collect()
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows[0], pairs(&[("id", "1"), ("a", "one"), ("b", "1")]));
    assert_eq!(
        rows[1],
        pairs(&[("z", "2024-01-01"), ("id", "2"), ("b", "2")])
    );
    assert_eq!(
        rows[2],
        pairs(&[
            ("z", "2024-01-02"),
            ("id", "3"),
            ("bee", "18446744073709551615")
        ])
    );
    let ddl: Vec<_> = capture
        .changes
        .iter()
        .filter_map(|c| {
            row_change(c)
                .filter(|rc| rc.is_ddl == Some(true))
                .map(|rc| (c.entry.header.clone().unwrap(), rc))
        })
        .filter(|(header, _)| header.schema_name == schema)
        .collect();
    assert_eq!(ddl.len(), 2);
    assert_eq!(ddl[0].1.event_type(), EventType::Alter);
    assert_eq!(
        (ddl[0].0.schema_name.as_str(), ddl[0].0.table_name.as_str()),
        (schema.as_str(), "t")
    );
    assert!(ddl[0].1.sql.contains("ADD COLUMN z DATE FIRST"));
    let _ = capture.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_replica_connection_resumes_without_loss_or_repeat() {
    let live = LiveSchema::create("kill", &["t (id INT PRIMARY KEY, v VARCHAR(64))"]).await;
    let mut capture = live.capture(DecoderOptions::default());
    let LiveSchema {
        env,
        mut conn,
        name: schema,
        ..
    } = live;

    // A writer commits single-row and 50-row transactions while the dump
    // connection is killed a few times under it.
    let writer_env = env.clone();
    let writer_schema = schema.clone();
    let writer = tokio::spawn(async move {
        let mut conn = writer_env.root().await;
        let mut next = 1;
        for round in 0..60 {
            let size = if round % 3 == 0 { 50 } else { 1 };
            let values: Vec<String> = (next..next + size)
                .map(|id| format!("({id}, REPEAT('x', 60))"))
                .collect();
            conn.query_drop(format!(
                "INSERT INTO `{writer_schema}`.t VALUES {}",
                values.join(",")
            ))
            .await
            .unwrap();
            next += size;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        next - 1
    });
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let ids: Vec<u64> = conn
            .query(format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump' AND USER = '{}'",
                env.user
            ))
            .await
            .unwrap();
        for id in ids {
            let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
        }
    }
    let total = writer.await.unwrap() as usize;
    capture.until(WAIT, |c| count_rows(c) >= total).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(change) = capture.receiver.try_recv() {
        capture.changes.push(change);
    }
    let ids: Vec<u64> = row_changes(&capture.changes)
        .iter()
        .flat_map(|rc| rc.row_datas.iter())
        .map(|rd| rd.after_columns[0].value.parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=total as u64).collect::<Vec<_>>(),
        "every row exactly once, in order"
    );
    assert_eq!(
        transactions_with_rows(&capture.changes),
        60,
        "no transaction repeated or cut short"
    );
    assert!(
        capture
            .stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the dump was really killed"
    );
    let _ = capture.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_to_start_from_a_purged_position_with_a_clear_error() {
    let env = LiveEnv::get();
    let (server_id, schema) = unique("purged");
    let start = StartPosition::FilePosition {
        journal_name: "mysql-bin.999999".into(),
        position: 4,
    };
    let mut capture = Capture::start(&env, server_id, &schema, start, DecoderOptions::default());
    let outcome = tokio::time::timeout(WAIT, capture.receiver.recv())
        .await
        .expect("source stops");
    assert!(outcome.is_none());
    let (_, result) = capture.stop().await;
    let error = result.expect_err("fatal error").to_string();
    assert!(
        error.contains("purged") || error.contains("reset the cursor"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gtid_resume_after_kill_and_gtid_headers() {
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("gtid");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("CREATE TABLE `{schema}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let filter = canal::binlog::filter::EventFilter {
        tables: canal::binlog::filter::TableFilter::new(
            &format!("{}\\..*", regex_escape(&schema)),
            "",
        )
        .unwrap(),
        columns: Default::default(),
    };
    let options = DecoderOptions {
        gtid_header: true,
        ..DecoderOptions::default()
    };
    let mut capture = Capture::start_with(
        &env,
        server_id,
        filter,
        StartPosition::Latest,
        options,
        true,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in 1..=20 {
        conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES ({id})"))
            .await
            .unwrap();
        if id % 5 == 0 {
            let ids: Vec<u64> = conn
                .query(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'",
                )
                .await
                .unwrap();
            for id in ids {
                let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
            }
        }
    }
    capture.until(WAIT, |c| count_rows(c) >= 20).await;
    let ids: Vec<u64> = row_changes(&capture.changes)
        .iter()
        .flat_map(|rc| rc.row_datas.iter())
        .map(|rd| rd.after_columns[0].value.parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    let rows_change = capture
        .changes
        .iter()
        .find(|c| c.kind == canal::binlog::change::ChangeKind::Rows)
        .unwrap();
    let header = rows_change.entry.header.clone().unwrap();
    assert!(
        header.gtid.starts_with("0-1-"),
        "MariaDB GTID position in the header: {}",
        header.gtid
    );
    assert!(header.props.iter().any(|p| p.key == "curtGtid"));
    let (source, _) = capture.stop().await;
    let checkpoint = source.checkpoint().expect("a checkpoint").clone();
    assert!(
        checkpoint.gtid.is_some(),
        "GTID-complete checkpoint: {checkpoint:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_by_timestamp_skips_earlier_transactions() {
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("time");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("CREATE TABLE `{schema}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1)"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = jiff::Timestamp::now().as_millisecond() / 1000 * 1000;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (2)"))
        .await
        .unwrap();
    let mut capture = Capture::start(
        &env,
        server_id,
        &schema,
        StartPosition::Timestamp(since),
        DecoderOptions::default(),
    );
    capture.until(WAIT, |c| count_rows(c) >= 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(change) = capture.receiver.try_recv() {
        capture.changes.push(change);
    }
    let ids: Vec<String> = row_changes(&capture.changes)
        .iter()
        .flat_map(|rc| rc.row_datas.iter())
        .map(|rd| rd.after_columns[0].value.clone())
        .collect();
    assert_eq!(ids, ["2"]);
    let _ = capture.stop().await;
}

/// Under binlog_row_metadata=FULL, mysqlType is the declared type (as canal
/// prints it) wherever the source's definition is known to hold at the
/// row's position, and the binlog's own type text elsewhere — never a
/// definition from before or after the row.
#[tokio::test(flavor = "multi_thread")]
async fn declared_column_types_under_full_metadata() {
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (server_id, schema) = unique("decl");
    fresh_schema(&mut conn, &schema).await;
    conn.query_drop(format!("USE `{schema}`")).await.unwrap();
    conn.query_drop(
        "CREATE TABLE d (id INT PRIMARY KEY, flag BOOL, z INT(5) UNSIGNED ZEROFILL, f FLOAT(7,3),
             db DOUBLE(10,2), ip INET6, u UUID, ti TINYINT);
         CREATE TABLE later (id INT PRIMARY KEY, a INT(5))",
    )
    .await
    .unwrap();
    let start = latest(&mut conn).await;
    // All written before the capture starts: at the first rows of `later`
    // information_schema already shows INT(6), which does not hold there.
    conn.query_drop(
        "INSERT INTO d VALUES (1, TRUE, 42, 1.5, 2.25, '::1', '123e4567-e89b-12d3-a456-426614174000', 1);
         INSERT INTO later VALUES (1, 1);
         ALTER TABLE later MODIFY a INT(6);
         INSERT INTO later VALUES (2, 2)",
    )
    .await
    .unwrap();
    let mut capture = Capture::start(&env, server_id, &schema, start, DecoderOptions::default());
    capture.until(WAIT, |c| count_rows(c) >= 3).await;
    // A DDL while following: the table is reloaded for the next rows.
    conn.query_drop(
        "ALTER TABLE d MODIFY z INT(7) UNSIGNED ZEROFILL;
         INSERT INTO d VALUES (2, FALSE, 7, 0.5, 0.25, NULL, NULL, 2)",
    )
    .await
    .unwrap();
    capture.until(WAIT, |c| count_rows(c) >= 4).await;
    let rows: Vec<(String, Vec<(String, String)>)> = capture
        .changes
        .iter()
        .filter_map(|change| {
            let rc = row_change(change)?;
            (rc.is_ddl != Some(true) && rc.event_type() != EventType::Query).then(|| {
                let table = change.entry.header.as_ref().unwrap().table_name.clone();
                rc.row_datas
                    .iter()
                    .map(|rd| {
                        let types = rd
                            .after_columns
                            .iter()
                            .map(|c| (c.name.clone(), c.mysql_type.clone()))
                            .collect();
                        (table.clone(), types)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect();
    let types = |table: &str, nth: usize| -> Vec<(String, String)> {
        rows.iter()
            .filter(|(t, _)| t == table)
            .nth(nth)
            .unwrap_or_else(|| panic!("row {nth} of {table} in {rows:?}"))
            .1
            .clone()
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    };
    assert_eq!(
        types("d", 0),
        owned(&[
            ("id", "int(11)"),
            ("flag", "tinyint(1)"),
            ("z", "int(5) unsigned zerofill"),
            ("f", "float(7,3)"),
            ("db", "double(10,2)"),
            ("ip", "inet6"),
            ("u", "uuid"),
            ("ti", "tinyint(4)"),
        ])
    );
    // Before the ALTER the declared INT(5) cannot be proven from
    // information_schema (which shows INT(6)): the binlog's text, not
    // a wrong declaration.
    assert_eq!(
        types("later", 0),
        owned(&[("id", "int(11)"), ("a", "int(11)")])
    );
    assert_eq!(
        types("later", 1),
        owned(&[("id", "int(11)"), ("a", "int(6)")])
    );
    assert_eq!(
        types("d", 1)[2],
        owned(&[("z", "int(7) unsigned zerofill")])[0]
    );
    let _ = capture.stop().await;
}
