//! Differential conformance against canal itself: the same binlog range is
//! served by canal's own server (`scripts/canal-java`, canal 1.1.7 modules)
//! and by canal-server, both consumed by canal's own Java client 1.1.8
//! (`scripts/java-client`), and every Entry is compared field by field.
//!
//! The corpus runs completely before either server starts. canal runs
//! without its table-meta history, so it reads table definitions with DESC
//! when it decodes: no table with rows is altered, renamed or dropped after
//! its rows (DDL gets tables of its own), and the schemas are dropped only
//! after both clients are done.
//!
//! Where canal is wrong, or ours has a known gap, the difference is allowed
//! by a narrow rule in [`ALLOWED`], each listed in docs/compatibility.md; a
//! rule that no longer matches anything fails the test, so the list cannot
//! go stale.

mod common;

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use common::{
    canal_java::{CanalJavaServer, MetaMode, reference_properties},
    cluster::{ServerProcess, SpawnOptions, free_port, test_dir, wait_for, write_conf},
    live::{LiveEnv, unique},
};
use mysql_async::{Conn, prelude::Queryable};
use serde_json::Value;

/// Fields of the probe's output that depend on batching, not on the entry.
const BATCH_FIELDS: &[&str] = &["batchId", "entryIndex", "rolledBack"];

/// `storeValueLength` is left out: our server omits proto3 defaults that
/// canal writes explicitly (docs/compatibility.md, known gaps); the decoded
/// fields are compared one by one instead.
const NOT_COMPARED: &[&str] = &["storeValueLength"];

#[tokio::test(flavor = "multi_thread")]
async fn canal_and_canal_server_send_the_same_entries() {
    let started = Instant::now();
    let env = LiveEnv::get();
    let mut conn = env.root().await;
    let (canal_main_id, a) = unique("conf");
    let (canal_filt_id, b) = unique("conf");
    let (ours_main_id, c) = unique("conf");
    let (ours_filt_id, _) = unique("conf");
    for schema in [&a, &b, &c] {
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
            .await
            .unwrap();
    }
    conn.query_drop(format!(
        "CREATE DATABASE `{a}` CHARACTER SET utf8mb4; CREATE DATABASE `{c}` CHARACTER SET utf8mb4"
    ))
    .await
    .unwrap();

    let start = master_status(&mut conn).await;
    let corpus = corpus(&a, &b, &c);
    for (name, sql) in &corpus {
        conn.query_drop(sql.as_str())
            .await
            .unwrap_or_else(|e| panic!("corpus step {name} failed: {e}"));
    }
    let end = master_status(&mut conn).await;

    let main = format!("conf_main_{}", std::process::id());
    let filtered = format!("conf_filt_{}", std::process::id());
    let main_filter = format!(
        "canal.instance.filter.regex = {a}\\\\..*,{b}\\\\..*\n\
         canal.instance.filter.black.regex = {a}\\\\.skip_.*\n"
    );
    let filtered_filter = format!(
        "canal.instance.filter.regex = {a}\\\\.t_int,{a}\\\\.t_dml,{a}\\\\.d_.*\n\
         canal.instance.filter.black.regex = {a}\\\\.d_sel\n\
         canal.instance.filter.field = {a}.t_dml:id/name\n"
    );
    let instance = |slave_id: u32, filter: &str| {
        format!(
            "canal.instance.master.address = {}\n\
             canal.instance.master.journal.name = {}\n\
             canal.instance.master.position = {}\n\
             canal.instance.dbUsername = {}\n\
             canal.instance.dbPassword = {}\n\
             canal.instance.mysql.slaveId = {slave_id}\n\
             {filter}",
            env.address, start.0, start.1, env.user, env.password
        )
    };

    let dir = test_dir("conformance");
    let canal_conf = dir.join("canal");
    let canal_port = free_port();
    write_conf(
        &canal_conf,
        &reference_properties(canal_port, &[&main, &filtered], None, MetaMode::Memory, ""),
        &[
            (&main, &instance(canal_main_id, &main_filter)),
            (&filtered, &instance(canal_filt_id, &filtered_filter)),
        ],
    );
    let ours_conf = dir.join("ours");
    write_conf(
        &ours_conf,
        &format!(
            "canal.ip = 127.0.0.1\n\
             canal.destinations = {main},{filtered}\n\
             canal.instance.global.spring.xml = classpath:spring/memory-instance.xml\n"
        ),
        &[
            (&main, &instance(ours_main_id, &main_filter)),
            (&filtered, &instance(ours_filt_id, &filtered_filter)),
        ],
    );

    let mut canal = CanalJavaServer::spawn("canal", &canal_conf, canal_port);
    let ours = ServerProcess::spawn(SpawnOptions::new("ours", &ours_conf));
    canal.wait_started(Duration::from_secs(90)).await;
    let address = ours.client_address.clone();
    wait_for(
        "canal-server to listen",
        Duration::from_secs(30),
        async || tokio::net::TcpStream::connect(&address).await.is_ok(),
    )
    .await;

    let (canal_main, canal_filt, ours_main, ours_filt) = tokio::join!(
        consume(&canal.client_address, &main),
        consume(&canal.client_address, &filtered),
        consume(&ours.client_address, &main),
        consume(&ours.client_address, &filtered),
    );
    drop(ours);
    canal.sigkill();
    for schema in [&a, &c] {
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
            .await
            .unwrap();
    }

    let mut report = String::new();
    let mut used = vec![0usize; ALLOWED.len()];
    let mut failures = 0;
    for (destination, canal_entries, our_entries) in [
        (&main, canal_main, ours_main),
        (&filtered, canal_filt, ours_filt),
    ] {
        let canal_entries = within(canal_entries, &start, &end);
        let our_entries = within(our_entries, &start, &end);
        // Both streams stay on disk for a closer look after a failure.
        for (side, entries) in [("canal", &canal_entries), ("ours", &our_entries)] {
            let lines: Vec<String> = entries.iter().map(Value::to_string).collect();
            let path = dir.join(format!("{side}-{destination}.jsonl"));
            std::fs::write(&path, lines.join("\n"))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        let diffs = compare(&canal_entries, &our_entries);
        let _ = writeln!(
            report,
            "destination {destination}: canal {} entries, canal-server {} entries, {} differences",
            canal_entries.len(),
            our_entries.len(),
            diffs.len()
        );
        assert!(
            canal_entries.len() > 10,
            "canal sent almost nothing for {destination}; its log: {}",
            canal.log_tail(60)
        );
        for diff in &diffs {
            match ALLOWED
                .iter()
                .position(|rule| (rule.applies)(diff, &our_entries))
            {
                Some(rule) => used[rule] += 1,
                None => {
                    failures += 1;
                    let _ = writeln!(report, "  {diff}");
                }
            }
        }
    }
    for (kind, title) in [
        (
            Kind::CanalWrong,
            "allowed: canal is wrong (docs/compatibility.md, deliberate differences)",
        ),
        (
            Kind::KnownGap,
            "allowed: known gaps (docs/compatibility.md, known gaps)",
        ),
    ] {
        let _ = writeln!(report, "{title}:");
        for (rule, count) in ALLOWED.iter().zip(&used).filter(|(r, _)| r.kind == kind) {
            let _ = writeln!(report, "  {count:5} × {}: {}", rule.id, rule.reason);
            if *count == 0 && rule.always {
                failures += 1;
                let _ = writeln!(
                    report,
                    "        ^ matched nothing: remove it here and in docs/compatibility.md"
                );
            }
        }
    }
    let _ = writeln!(
        report,
        "took {:.1} s; both streams are in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    eprintln!("{report}");
    assert_eq!(failures, 0, "canal-server differs from canal:\n{report}");
}

// ---------------------------------------------------------------- corpus

/// The SQL, step by step: (name, statements). `@A@` is the main schema,
/// `@B@` one created and dropped by the corpus, `@C@` one outside both
/// destinations' filters.
fn corpus(a: &str, b: &str, c: &str) -> Vec<(&'static str, String)> {
    let all_bytes: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    let steps: Vec<(&'static str, String)> = vec![
        (
            "session",
            "SET NAMES utf8mb4; SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00'; USE `@A@`"
                .into(),
        ),
        (
            "integers",
            "CREATE TABLE t_int (id INT NOT NULL PRIMARY KEY,
               ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
               mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
               bi BIGINT, biu BIGINT UNSIGNED, b BOOL, i5 INT(5), z INT(6) ZEROFILL);
             INSERT INTO t_int VALUES
               (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0, -1, 1),
               (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
                9223372036854775807, 18446744073709551615, 1, 99999, 999999),
               (3, 0, 128, 0, 32768, 0, 8388608, 0, 2147483648, 0, 9223372036854775808, 2, 0, 0),
               (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
                .into(),
        ),
        (
            "decimals",
            "CREATE TABLE t_dec (id INT PRIMARY KEY, d65 DECIMAL(65,30), d10 DECIMAL(10,2),
               d20 DECIMAL(20,10), d5 DECIMAL(5,0), du DECIMAL(12,4) UNSIGNED, d1 DECIMAL(1,1));
             INSERT INTO t_dec VALUES
               (1, '99999999999999999999999999999999999.999999999999999999999999999999', 99999999.99,
                1234567890.0123456789, 99999, 12345678.1234, 0.9),
               (2, '-99999999999999999999999999999999999.999999999999999999999999999999', -99999999.99,
                -0.0000000001, -99999, 0, -0.9),
               (3, 0, 0, 0, 0, 0, 0),
               (4, 1.5, 1.5, 2.25, 1, 1.5, 0.1),
               (5, NULL, NULL, NULL, NULL, NULL, NULL)"
                .into(),
        ),
        (
            "floats",
            "CREATE TABLE t_float (id INT PRIMARY KEY, f FLOAT, d DOUBLE, fu FLOAT UNSIGNED,
               f73 FLOAT(7,3), d152 DOUBLE(15,2));
             INSERT INTO t_float VALUES
               (1, 0, 0, 0, 0, 0),
               (2, -1.5, -1.5, 1.5, 1234.567, 1234567890123.45),
               (3, 3.40282e38, 1.7976931348623157e308, 3.40282e38, -9999.999, -9999999999999.99),
               (4, 1.17549e-38, 2.2250738585072014e-308, 1e-45, 0.001, 0.01),
               (5, 100, 100, 100, 100, 100),
               (6, 0.1, 0.1, 0.5, 0.1, 0.1),
               (7, 123456789, 1234567890123456789, 16777216, 3.142, 2.72),
               (8, 1e-5, 1e-5, 1e20, 1, 1),
               (9, NULL, NULL, NULL, NULL, NULL)"
                .into(),
        ),
        (
            "bits",
            "CREATE TABLE t_bit (id INT PRIMARY KEY, b1 BIT(1), b8 BIT(8), b17 BIT(17), b64 BIT(64));
             INSERT INTO t_bit VALUES (1, 0, 0, 0, 0),
               (2, 1, 255, 131071, 18446744073709551615),
               (3, b'1', b'00011', 5461, 409832983),
               (4, NULL, NULL, NULL, NULL)"
                .into(),
        ),
        ("temporal", temporal()),
        (
            "strings",
            "CREATE TABLE t_str (id INT PRIMARY KEY, c CHAR(10), vc VARCHAR(255), tt TINYTEXT, tx TEXT,
               mt MEDIUMTEXT, lt LONGTEXT, vbin VARCHAR(20) COLLATE utf8mb4_bin, c_ascii CHAR(5) CHARACTER SET ascii,
               c_l1 CHAR(10) CHARACTER SET latin1, vc_l1 VARCHAR(100) CHARACTER SET latin1,
               tx_l1 TEXT CHARACTER SET latin1, vc_ucs2 VARCHAR(50) CHARACTER SET ucs2,
               tx_ucs2 TEXT CHARACTER SET ucs2, vc_gbk VARCHAR(50) CHARACTER SET gbk) DEFAULT CHARSET utf8mb4;
             INSERT INTO t_str VALUES
               (1, '', '', '', '', '', '', '', '', '', '', '', '', '', ''),
               (2, 'abc', 'ü€😀 mixed 中文', 'tiny', REPEAT('text ', 200), REPEAT('m', 70000),
                REPEAT('long😀', 100), 'Bin', 'asc', 'áé', 'Grüße ÿ', 'áááááááá',
                '∆˚ø¨´', '∆ƒ¬ß∂µ≤˜π∑', '乪'),
               (3, 'trail  ', 'quote''\"\\\\ back', CONCAT('tab', CHAR(9), 'nl', CHAR(10), 'cr', CHAR(13)),
                'x', 'y', 'z', 'CaSe', 'a b', 'plain', 'plain', 'plain', 'plain', 'plain', 'plain'),
               (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
                .into(),
        ),
        (
            "binary",
            format!(
                "CREATE TABLE t_bin (id INT PRIMARY KEY, bn BINARY(16), vb VARBINARY(300), tb TINYBLOB,
                   bl BLOB, mb MEDIUMBLOB, lb LONGBLOB, bn4 BINARY(4));
                 INSERT INTO t_bin VALUES
                   (1, UNHEX('00112233445566778899AABBCCDDEEFF'), X'{all_bytes}', X'00FF7F80',
                    X'{all_bytes}', X'{all_bytes}', REPEAT(X'{all_bytes}', 300), 'abcd'),
                   (2, UNHEX('0102030405060708090A0B0C0D0E0F10'), '', '', '', '', '', X'00000001'),
                   (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
            ),
        ),
        (
            "binary with trailing zero bytes",
            "CREATE TABLE t_binpad (id INT PRIMARY KEY, bn BINARY(16), bn4 BINARY(4));
             INSERT INTO t_binpad VALUES (1, UNHEX('0102030405060708090A0B0C0D0E0F00'), 'ab'),
               (2, X'00000000000000000000000000000000', X'00000000')"
                .into(),
        ),
        (
            "enum and set",
            "CREATE TABLE t_enum (id INT PRIMARY KEY, e ENUM('foo','bar','baz'), s SET('a','b','c','d'),
               e2 ENUM('x','y') NOT NULL, s2 SET('p','q') NOT NULL);
             INSERT INTO t_enum VALUES (1, 'foo', '', 'x', ''), (2, 'baz', 'a,c', 'y', 'q'),
               (3, 'bar', 'a,b,c,d', 'x', 'p,q'), (4, NULL, NULL, 'y', 'p')"
                .into(),
        ),
        (
            "json",
            "CREATE TABLE t_json (id INT PRIMARY KEY, j JSON);
             INSERT INTO t_json VALUES
               (1, '{\"foo\": \"bar\", \"baz\": [1,2,3,{\"hello\": \"inside an array\"}], \"bar\": 123.4321}'),
               (2, '[]'), (3, 'null'), (4, '\"ü€\"'), (5, NULL), (6, '{\"a\":1.0e10,\"b\":true}');
             UPDATE t_json SET j = JSON_SET(j, '$.foo', 'new') WHERE id = 1"
                .into(),
        ),
        (
            "geometry",
            "CREATE TABLE t_geo (id INT PRIMARY KEY, g GEOMETRY, p POINT, l LINESTRING, pg POLYGON,
               mp MULTIPOINT, gc GEOMETRYCOLLECTION);
             INSERT INTO t_geo VALUES
               (1, POINT(3, 2), POINT(1, 1), LINESTRING(POINT(0,1), POINT(1,2), POINT(2,3)),
                POLYGON(LINESTRING(POINT(0,0), POINT(1,0), POINT(1,1), POINT(0,0))),
                MULTIPOINT(POINT(1,1), POINT(2,2)),
                GEOMETRYCOLLECTION(POINT(1, 1), LINESTRING(POINT(0,1), POINT(1,2)))),
               (2, ST_GeomFromText('POINT(-1.5 2.25)', 4326), ST_GeomFromText('POINT(1e300 -1e-300)'),
                NULL, NULL, NULL, NULL)"
                .into(),
        ),
        (
            "MariaDB types",
            "CREATE TABLE t_maria (id INT PRIMARY KEY, ip6 INET6, ip4 INET4, u UUID);
             INSERT INTO t_maria VALUES (1, '::1', '127.0.0.1', '123e4567-e89b-12d3-a456-426655440000'),
               (2, 'ffff::ffff', '255.255.255.255', '00000000-0000-0000-0000-000000000000'),
               (3, NULL, NULL, NULL)"
                .into(),
        ),
        (
            "multi-row DML",
            "CREATE TABLE t_dml (id INT PRIMARY KEY, name VARCHAR(20), n INT, note TEXT);
             INSERT INTO t_dml VALUES (1, 'a', 1, NULL), (2, 'b', 2, 'x'), (3, 'c', 3, 'y'), (4, 'd', 4, NULL);
             UPDATE t_dml SET n = n + 10, note = NULL WHERE id <= 3;
             UPDATE t_dml SET note = 'now' WHERE id = 4;
             UPDATE t_dml SET id = 40 WHERE id = 4;
             UPDATE t_dml SET name = name WHERE id = 3;
             DELETE FROM t_dml WHERE id IN (1, 2);
             BEGIN;
             INSERT INTO t_dml VALUES (5, 'e', 5, 'in txn');
             UPDATE t_dml SET n = -1 WHERE id = 5;
             DELETE FROM t_dml WHERE id = 3;
             COMMIT"
                .into(),
        ),
        (
            "keys",
            "CREATE TABLE t_nopk (a INT, b VARCHAR(10));
             INSERT INTO t_nopk VALUES (1, 'x'), (1, 'x'), (2, NULL);
             UPDATE t_nopk SET b = 'y' WHERE a = 1;
             DELETE FROM t_nopk WHERE a = 2;
             CREATE TABLE t_pk2 (a INT, b VARCHAR(10), v INT, PRIMARY KEY (b, a), UNIQUE KEY (v));
             INSERT INTO t_pk2 VALUES (1, 'k', 10), (2, 'k', 20);
             UPDATE t_pk2 SET v = 30 WHERE a = 2"
                .into(),
        ),
        ("rotate", "FLUSH BINARY LOGS".into()),
        (
            "filters",
            "CREATE TABLE skip_me (id INT PRIMARY KEY, v INT);
             INSERT INTO skip_me VALUES (1, 1);
             CREATE TABLE `@C@`.other (id INT PRIMARY KEY, v INT);
             INSERT INTO `@C@`.other VALUES (1, 1);
             BEGIN;
             INSERT INTO skip_me VALUES (2, 2);
             INSERT INTO t_dml VALUES (6, 'mixed', 6, NULL);
             INSERT INTO `@C@`.other VALUES (2, 2);
             COMMIT"
                .into(),
        ),
        (
            "large transaction",
            "CREATE TABLE t_big (id INT PRIMARY KEY, v VARCHAR(40), n BIGINT);
             BEGIN;
             INSERT INTO t_big SELECT seq, CONCAT('row-', seq), seq * seq FROM seq_1_to_3000;
             UPDATE t_big SET n = n + 1 WHERE id <= 1500;
             DELETE FROM t_big WHERE id > 2500;
             COMMIT"
                .into(),
        ),
        (
            "table DDL",
            "CREATE TABLE d_t1 (id INT PRIMARY KEY, a VARCHAR(10)) ENGINE=InnoDB COMMENT 'first';
             ALTER TABLE d_t1 ADD COLUMN b INT, ADD INDEX ix_a (a);
             ALTER TABLE `@A@`.`d_t1` MODIFY a VARCHAR(20), DROP COLUMN b;
             CREATE INDEX ix2 ON d_t1 (a, id);
             CREATE UNIQUE INDEX ux ON d_t1 (a);
             DROP INDEX ix2 ON d_t1;
             ALTER TABLE d_t1 DROP INDEX ix_a;
             RENAME TABLE d_t1 TO d_t2;
             ALTER TABLE d_t2 RENAME TO d_t3;
             CREATE TABLE d_r1 (id INT); CREATE TABLE d_r2 (id INT);
             RENAME TABLE d_r1 TO d_r3, d_r2 TO d_r4;
             DROP TABLE d_r3, d_r4;
             CREATE TABLE IF NOT EXISTS d_drop (id INT);
             DROP TABLE IF EXISTS d_drop;
             DROP TABLE IF EXISTS d_missing;
             /* leading comment */ CREATE TABLE d_commented (id INT PRIMARY KEY);
             INSERT INTO d_t3 VALUES (1, 'after ddl'), (2, 'then truncated');
             TRUNCATE TABLE d_t3;
             INSERT INTO d_t3 VALUES (3, 'after truncate');
             CREATE TABLE d_like LIKE t_dml;
             INSERT INTO d_like VALUES (1, 'like', 1, NULL);
             CREATE TABLE d_sel AS SELECT id, name FROM t_dml;
             CREATE TABLE d_sel2 AS SELECT id, name FROM t_dml;
             CREATE VIEW d_view AS SELECT id FROM t_dml;
             DROP VIEW d_view"
                .into(),
        ),
        (
            "database DDL",
            "CREATE DATABASE `@B@` CHARACTER SET utf8mb4;
             ALTER DATABASE `@B@` CHARACTER SET latin1;
             CREATE TABLE `@B@`.bt (id INT PRIMARY KEY);
             DROP TABLE `@B@`.bt;
             DROP DATABASE `@B@`;
             CREATE DATABASE IF NOT EXISTS `@B@`;
             DROP DATABASE IF EXISTS `@B@`"
                .into(),
        ),
        (
            "last",
            "INSERT INTO t_dml VALUES (7, 'last', 7, 'end of corpus')".into(),
        ),
    ];
    steps
        .into_iter()
        .map(|(name, sql)| {
            (
                name,
                sql.replace("@A@", a).replace("@B@", b).replace("@C@", c),
            )
        })
        .collect()
}

/// DATE, DATETIME / TIMESTAMP / TIME with every fsp 0-6, YEAR.
fn temporal() -> String {
    let fsp = 0..=6;
    let mut columns = vec!["id INT PRIMARY KEY".to_owned(), "d DATE".to_owned()];
    for (prefix, kind) in [("dt", "DATETIME"), ("ts", "TIMESTAMP"), ("t", "TIME")] {
        for n in fsp.clone() {
            let null = if kind == "TIMESTAMP" { " NULL" } else { "" };
            columns.push(format!("{prefix}{n} {kind}({n}){null}"));
        }
    }
    columns.push("y YEAR".to_owned());
    let row = |id: u32, d: &str, dt: &str, ts: &str, t: &str, y: &str| {
        let mut values = vec![id.to_string(), d.to_owned()];
        for value in [dt, ts, t] {
            values.extend(std::iter::repeat_n(value.to_owned(), 7));
        }
        values.push(y.to_owned());
        format!("({})", values.join(", "))
    };
    let rows = [
        row(1, "'0000-00-00'", "0", "0", "'00:00:00'", "0"),
        row(
            2,
            "'1000-01-01'",
            "'1000-01-01 00:00:00'",
            "'1970-01-01 00:00:01'",
            "'-838:59:59'",
            "1901",
        ),
        row(
            3,
            "'9999-12-31'",
            "'9999-12-31 23:59:59.999999'",
            "'2038-01-19 03:14:07.999999'",
            "'838:59:59.999999'",
            "2155",
        ),
        row(
            4,
            "'2024-02-29'",
            "'2024-02-29 12:34:56.123456'",
            "'2024-02-29 12:34:56.654321'",
            "'-00:00:00.5'",
            "2024",
        ),
        row(
            5,
            "'2024-00-00'",
            "'2024-00-00 00:00:00'",
            "'2001-09-09 01:46:40.000001'",
            "'100:00:00.000001'",
            "69",
        ),
        row(
            6,
            "'1969-12-31'",
            "'0001-01-01 00:00:00.1'",
            "'1999-12-31 23:59:59.5'",
            "'-12:34:56.000001'",
            "70",
        ),
        row(7, "NULL", "NULL", "NULL", "NULL", "NULL"),
    ];
    format!(
        "CREATE TABLE t_time ({}); INSERT INTO t_time VALUES {}",
        columns.join(", "),
        rows.join(", ")
    )
}

async fn master_status(conn: &mut Conn) -> (String, u64) {
    let row: mysql_async::Row = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .expect("binary logging is on");
    (row.get(0).unwrap(), row.get(1).unwrap())
}

// ---------------------------------------------------------------- consuming

/// Every entry canal's Java client receives from `address` / `destination`
/// until 5 s pass without data.
async fn consume(address: &str, destination: &str) -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/java-client");
    let output = tokio::process::Command::new(script)
        .args(["--addr", address, "--destination", destination])
        .args([
            "--batch",
            "2000",
            "--timeout-ms",
            "200",
            "--idle-ms",
            "5000",
        ])
        .args(["--max-ms", "100000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .expect("scripts/java-client runs (needs java and mvn)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "java client on {address} ({destination}) failed: {stderr}"
    );
    let mut entries: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("java client printed a non-JSON line ({e}): {line}"))
        })
        .collect();
    let done = entries.pop();
    assert_eq!(
        done.as_ref().and_then(|d| d.get("done")),
        Some(&Value::Bool(true)),
        "java client on {address} did not finish: {done:?}"
    );
    entries
}

fn position(entry: &Value) -> (String, u64) {
    (
        entry["logfileName"].as_str().unwrap_or_default().to_owned(),
        entry["logfileOffset"].as_u64().unwrap_or_default(),
    )
}

/// The entries of the corpus: those before `end` (the binlog goes on with
/// other tests' changes) and not before `start`.
/// Each keeps its index in the result as `seq`.
fn within(entries: Vec<Value>, start: &(String, u64), end: &(String, u64)) -> Vec<Value> {
    let mut kept: Vec<Value> = entries
        .into_iter()
        .filter(|entry| {
            let at = position(entry);
            at >= *start && at < *end
        })
        .collect();
    for (seq, entry) in kept.iter_mut().enumerate() {
        if let Some(object) = entry.as_object_mut() {
            object.insert("seq".into(), seq.into());
        }
    }
    kept
}

// ---------------------------------------------------------------- comparing

enum Diff<'a> {
    OnlyCanal(&'a Value),
    OnlyOurs(&'a Value),
    Field {
        canal_entry: &'a Value,
        path: String,
        /// The field's name (last path element).
        field: String,
        /// The column the field belongs to (canal's), if any.
        column: Option<&'a Value>,
        canal: Value,
        ours: Value,
    },
}

impl Diff<'_> {
    fn entry(&self) -> &Value {
        match self {
            Diff::OnlyCanal(e) | Diff::OnlyOurs(e) => e,
            Diff::Field { canal_entry, .. } => canal_entry,
        }
    }

    fn event_type(&self) -> &str {
        self.entry()["eventType"].as_str().unwrap_or_default()
    }

    fn entry_type(&self) -> &str {
        self.entry()["entryType"].as_str().unwrap_or_default()
    }

    fn table(&self) -> &str {
        self.entry()["tableName"].as_str().unwrap_or_default()
    }

    fn mysql_type(&self) -> &str {
        match self {
            Diff::Field {
                column: Some(c), ..
            } => c["mysqlType"].as_str().unwrap_or_default(),
            _ => "",
        }
    }

    fn column_name(&self) -> &str {
        match self {
            Diff::Field {
                column: Some(c), ..
            } => c["name"].as_str().unwrap_or_default(),
            _ => "",
        }
    }

    fn field(&self) -> &str {
        match self {
            Diff::Field { field, .. } => field,
            _ => "",
        }
    }

    fn values(&self) -> (&str, &str) {
        match self {
            Diff::Field { canal, ours, .. } => (
                canal.as_str().unwrap_or_default(),
                ours.as_str().unwrap_or_default(),
            ),
            _ => ("", ""),
        }
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 160 {
        let head: String = text.chars().take(160).collect();
        format!("{head}…({} chars)", text.chars().count())
    } else {
        text
    }
}

fn describe(entry: &Value) -> String {
    let (file, offset) = position(entry);
    let mut text = format!(
        "{file}:{offset} {}/{} {}.{}",
        entry["entryType"].as_str().unwrap_or_default(),
        entry["eventType"].as_str().unwrap_or_default(),
        entry["schemaName"].as_str().unwrap_or_default(),
        entry["tableName"].as_str().unwrap_or_default(),
    );
    if let Some(sql) = entry["sql"].as_str().filter(|sql| !sql.is_empty()) {
        let _ = write!(text, " sql {}", short(&Value::from(sql)));
    }
    text
}

impl std::fmt::Display for Diff<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Diff::OnlyCanal(e) => write!(f, "only canal sent #{} {}", e["seq"], describe(e)),
            Diff::OnlyOurs(e) => write!(f, "only canal-server sent #{} {}", e["seq"], describe(e)),
            Diff::Field {
                canal_entry,
                path,
                canal,
                ours,
                ..
            } => write!(
                f,
                "#{} {} {path}: canal {} ≠ ours {}",
                canal_entry["seq"],
                describe(canal_entry),
                short(canal),
                short(ours)
            ),
        }
    }
}

/// The identity used to pair entries: what the binlog decides, not what a
/// server renders.
fn identity(entry: &Value) -> (String, u64, String, String) {
    let (file, offset) = position(entry);
    (
        file,
        offset,
        entry["entryType"].as_str().unwrap_or_default().to_owned(),
        entry["eventType"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Pairs the two streams (longest common subsequence of identities) and
/// compares every paired entry field by field.
fn compare<'a>(canal: &'a [Value], ours: &'a [Value]) -> Vec<Diff<'a>> {
    let left: Vec<_> = canal.iter().map(identity).collect();
    let right: Vec<_> = ours.iter().map(identity).collect();
    let (n, m) = (left.len(), right.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if left[i] == right[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut diffs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && left[i] == right[j] {
            compare_entry(&canal[i], &ours[j], &mut diffs);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            diffs.push(Diff::OnlyOurs(&ours[j]));
            j += 1;
        } else {
            diffs.push(Diff::OnlyCanal(&canal[i]));
            i += 1;
        }
    }
    diffs
}

fn compare_entry<'a>(canal: &'a Value, ours: &'a Value, diffs: &mut Vec<Diff<'a>>) {
    // The probe prints one object per entry.
    let (Some(left), Some(right)) = (canal.as_object(), ours.as_object()) else {
        return;
    };
    let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    for key in keys {
        if BATCH_FIELDS.contains(&key.as_str())
            || NOT_COMPARED.contains(&key.as_str())
            || key == "seq"
        {
            continue;
        }
        let (a, b) = (
            left.get(key).unwrap_or(&NULL),
            right.get(key).unwrap_or(&NULL),
        );
        if key == "rows" {
            compare_rows(canal, a, b, diffs);
        } else if a != b {
            diffs.push(Diff::Field {
                canal_entry: canal,
                path: key.clone(),
                field: key.clone(),
                column: None,
                canal: a.clone(),
                ours: b.clone(),
            });
        }
    }
}

static NONE: Vec<Value> = Vec::new();
static NULL: Value = Value::Null;

fn compare_rows<'a>(
    entry: &'a Value,
    canal: &'a Value,
    ours: &'a Value,
    diffs: &mut Vec<Diff<'a>>,
) {
    let left = canal.as_array().unwrap_or(&NONE);
    let right = ours.as_array().unwrap_or(&NONE);
    if left.len() != right.len() {
        diffs.push(Diff::Field {
            canal_entry: entry,
            path: "rows.length".into(),
            field: "rows.length".into(),
            column: None,
            canal: left.len().into(),
            ours: right.len().into(),
        });
    }
    for (r, (row_a, row_b)) in left.iter().zip(right).enumerate() {
        for image in ["before", "after"] {
            let cols_a = row_a[image].as_array().unwrap_or(&NONE);
            let cols_b = row_b[image].as_array().unwrap_or(&NONE);
            if cols_a.len() != cols_b.len() {
                diffs.push(Diff::Field {
                    canal_entry: entry,
                    path: format!("rows[{r}].{image}.length"),
                    field: "columns.length".into(),
                    column: None,
                    canal: cols_a.len().into(),
                    ours: cols_b.len().into(),
                });
            }
            for (col_a, col_b) in cols_a.iter().zip(cols_b) {
                let name = col_a["name"].as_str().unwrap_or_default();
                let index = &col_a["index"];
                let (Some(fields_a), Some(fields_b)) = (col_a.as_object(), col_b.as_object())
                else {
                    continue;
                };
                let keys: BTreeSet<&String> = fields_a.keys().chain(fields_b.keys()).collect();
                for key in keys {
                    let (a, b) = (
                        fields_a.get(key).unwrap_or(&NULL),
                        fields_b.get(key).unwrap_or(&NULL),
                    );
                    if a != b {
                        diffs.push(Diff::Field {
                            canal_entry: entry,
                            path: format!("rows[{r}].{image}[{index}]({name}).{key}"),
                            field: key.clone(),
                            column: Some(col_a),
                            canal: a.clone(),
                            ours: b.clone(),
                        });
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- allowed

/// Why a difference is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// canal loses information or sends invalid text; ours is kept
    /// (docs/compatibility.md, "Deliberate differences from canal").
    CanalWrong,
    /// Ours does not match canal yet (docs/compatibility.md, "Known gaps").
    KnownGap,
}

/// One narrowly scoped allowed difference. `applies` sees the difference
/// and our whole stream (for the transaction around an entry).
struct Allowed {
    id: &'static str,
    kind: Kind,
    /// The corpus always produces this difference: a rule that matches
    /// nothing is stale and fails the test.
    always: bool,
    reason: &'static str,
    applies: fn(&Diff, &[Value]) -> bool,
}

const ALLOWED: &[Allowed] = &[
    Allowed {
        id: "mariadb-transaction-begin",
        kind: Kind::CanalWrong,
        always: true,
        reason: "canal drops MariaDB's GTID event, so its MariaDB transactions have no TRANSACTIONBEGIN; ours sends one",
        applies: |d, _| matches!(d, Diff::OnlyOurs(_)) && d.entry_type() == "TRANSACTIONBEGIN",
    },
    Allowed {
        id: "decimal-scale",
        kind: Kind::CanalWrong,
        always: true,
        reason: "canal cuts a trailing all-zero fraction group of DECIMAL (0.00 → 0.0); ours keeps exactly the scale",
        applies: |d, _| {
            let (canal, ours) = d.values();
            d.field() == "value"
                && d.mysql_type().starts_with("decimal(")
                && canal.contains('.')
                && ours.len() > canal.len()
                && ours.starts_with(canal)
                && ours[canal.len()..].bytes().all(|b| b == b'0')
        },
    },
    Allowed {
        id: "float-text",
        kind: Kind::CanalWrong,
        always: true,
        reason: "canal prints FLOAT/DOUBLE with the JVM's pre-JDK 19 Float/Double.toString (more digits than needed); ours prints the shortest text of the same value",
        applies: |d, _| {
            let (canal, ours) = d.values();
            let mysql_type = d.mysql_type();
            d.field() == "value"
                && if mysql_type.starts_with("float") {
                    matches!((canal.parse::<f32>(), ours.parse::<f32>()), (Ok(a), Ok(b)) if a == b)
                } else {
                    mysql_type.starts_with("double")
                        && matches!((canal.parse::<f64>(), ours.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
                }
        },
    },
    Allowed {
        id: "binary-padding",
        kind: Kind::CanalWrong,
        always: true,
        reason: "canal drops BINARY(n)'s trailing 0x00 bytes (the binlog stores it unpadded); ours restores the n bytes",
        applies: |d, _| {
            let (canal, ours) = d.values();
            d.field() == "value"
                && d.mysql_type().starts_with("binary(")
                && ours.trim_end_matches('\0') == canal
        },
    },
    Allowed {
        id: "text-charsets",
        kind: Kind::CanalWrong,
        always: true,
        reason: "canal decodes every text column as canal.instance.connectionCharset (UTF-8), garbling latin1, ucs2 and gbk; ours decodes each column's own charset",
        applies: |d, _| {
            d.field() == "value"
                && d.table() == "t_str"
                && ["c_l1", "vc_l1", "tx_l1", "vc_ucs2", "tx_ucs2", "vc_gbk"]
                    .contains(&d.column_name())
        },
    },
    Allowed {
        id: "mariadb-inet-uuid-values",
        kind: Kind::CanalWrong,
        always: true,
        reason: "canal sends MariaDB INET6/INET4/UUID as CHAR with the binary value decoded as UTF-8 (bytes ≥ 0x80 become U+FFFD) and trailing 0x00 bytes dropped; ours sends the bytes losslessly as BLOB",
        applies: |d, _| {
            let (canal, ours) = d.values();
            if !["inet6", "inet4", "uuid"].contains(&d.mysql_type()) {
                return false;
            }
            match d.field() {
                "sqlType" => {
                    matches!(d, Diff::Field { canal, ours, .. } if canal == 1 && ours == 2004)
                }
                "value" => {
                    let bytes: Vec<u8> = ours.chars().map(|c| c as u32 as u8).collect();
                    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                    String::from_utf8_lossy(&bytes[..end]) == canal
                }
                _ => false,
            }
        },
    },
    Allowed {
        id: "database-backticks",
        kind: Kind::CanalWrong,
        always: true,
        reason: "canal keeps the backticks of CREATE/DROP DATABASE `x` in schemaName; ours sends the name",
        applies: |d, _| {
            let (canal, ours) = d.values();
            d.field() == "schemaName" && canal == format!("`{ours}`")
        },
    },
    Allowed {
        id: "unclassified-statements",
        kind: Kind::CanalWrong,
        always: true,
        reason: "canal's DDL parser drops CREATE/DROP VIEW and ALTER DATABASE; ours forwards them as QUERY entries (isDdl)",
        applies: |d, _| {
            let sql = d.entry()["sql"].as_str().unwrap_or_default();
            // The binlog has CREATE VIEW as the server rewrote it:
            // CREATE ALGORITHM=... DEFINER=... SQL SECURITY ... VIEW.
            let pattern = regex::Regex::new(
                r"(?i)^(CREATE\s+(OR\s+REPLACE\s+)?(ALGORITHM=\S+\s+)?(DEFINER=\S+\s+)?(SQL\s+SECURITY\s+\S+\s+)?VIEW|DROP\s+VIEW|ALTER\s+DATABASE)\b",
            )
            .expect("a valid pattern");
            matches!(d, Diff::OnlyOurs(_))
                && d.event_type() == "QUERY"
                && d.entry()["isDdl"] == true
                && pattern.is_match(sql)
        },
    },
    Allowed {
        id: "end-of-transaction-with-rows",
        kind: Kind::CanalWrong,
        // canal lets an empty transaction's END through once per 5 s of
        // binlog time; when that window closes between the two statements
        // of the corpus it sends this END too.
        always: false,
        reason: "canal drops the TRANSACTIONEND of a transaction with delivered rows when its last statement touched only filtered tables (the ANNOTATE_ROWS QUERY entries flush canal's transaction buffer, the END arrives alone and the empty-transaction throttle drops it); ours keeps it",
        applies: |d, ours| {
            let Diff::OnlyOurs(entry) = d else {
                return false;
            };
            let Some(seq) = entry["seq"].as_u64() else {
                return false;
            };
            d.entry_type() == "TRANSACTIONEND"
                && ours[..seq as usize]
                    .iter()
                    .rev()
                    .take_while(|e| {
                        e["entryType"] != "TRANSACTIONBEGIN" && e["entryType"] != "TRANSACTIONEND"
                    })
                    .any(|e| e["entryType"] == "ROWDATA" && e["isDdl"] == false)
        },
    },
    Allowed {
        id: "annotate-rows",
        kind: Kind::KnownGap,
        always: true,
        reason: "canal asks MariaDB for ANNOTATE_ROWS and sends each statement's text as a QUERY entry (even for tables its filter excludes); mysql_common masks that dump flag, so ours gets none",
        applies: |d, _| {
            matches!(d, Diff::OnlyCanal(_))
                && d.event_type() == "QUERY"
                && d.entry()["isDdl"] == false
                && d.entry()["schemaName"] == ""
                && d.entry()["tableName"] == ""
        },
    },
];
