//! canal.properties and instance.properties for an instance, in canal's
//! format. Credentials never appear here: they reach the server through
//! environment variables filled from Secrets.

use std::fmt::Write;

use crate::config::{KeyScope, key_scope};
use crate::operator::crd::{BatchMode, CanalInstance, CanalInstanceSpec};

/// The two files, as the ConfigMap carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub canal_properties: String,
    pub instance_properties: String,
}

/// Keys the operator sets from the spec: extraProperties may not set them.
pub const MANAGED_KEYS: &[(&str, &str)] = &[
    ("canal.port", "spec.server.ports.client"),
    ("canal.metrics.pull.port", "spec.server.ports.metrics"),
    ("canal.ip", "the operator (all interfaces)"),
    ("canal.register.ip", "the operator (the pod IP)"),
    ("canal.zkServers", "spec.zookeeper.connect"),
    (
        "canal.zookeeper.session.timeout",
        "spec.zookeeper.sessionTimeoutMillis",
    ),
    ("canal.zookeeper.auth", "spec.zookeeper.auth"),
    ("canal.destinations", "spec.destination"),
    ("canal.user", "spec.server.clientAuth"),
    ("canal.passwd", "spec.server.clientAuth"),
    ("canal.password", "spec.server.clientAuth"),
    (
        "canal.instance.global.spring.xml",
        "the operator (cursors in ZooKeeper)",
    ),
    ("canal.conf.dir", "the operator"),
    ("canal.instance.master.address", "spec.source.address"),
    ("canal.instance.dbUsername", "spec.source.credentials"),
    ("canal.instance.dbPassword", "spec.source.credentials"),
    ("canal.instance.mysql.slaveId", "spec.source.serverIdBase"),
    ("canal.instance.master.journal.name", "spec.source.start"),
    ("canal.instance.master.position", "spec.source.start"),
    ("canal.instance.master.timestamp", "spec.source.start"),
    ("canal.instance.master.gtid", "spec.source.start"),
    ("canal.instance.gtidon", "spec.source.gtidMode"),
    ("canal.instance.connectionCharset", "spec.source.charset"),
    ("canal.instance.filter.regex", "spec.filter.include"),
    ("canal.instance.filter.black.regex", "spec.filter.exclude"),
    ("canal.instance.filter.field", "spec.filter.includeColumns"),
    (
        "canal.instance.filter.black.field",
        "spec.filter.excludeColumns",
    ),
    (
        "canal.instance.memory.buffer.size",
        "spec.server.buffer.size",
    ),
    (
        "canal.instance.memory.buffer.memunit",
        "spec.server.buffer.memunit",
    ),
    (
        "canal.instance.memory.batch.mode",
        "spec.server.buffer.batchMode",
    ),
];

/// Why an extra property is refused.
pub fn check_extra_property(key: &str) -> Result<KeyScope, String> {
    if let Some((_, field)) = MANAGED_KEYS.iter().find(|(k, _)| *k == key) {
        return Err(format!("{key} is set by the operator from {field}"));
    }
    key_scope(key).map_err(|e| e.to_string())
}

pub fn render(instance: &CanalInstance) -> Rendered {
    let spec = &instance.spec;
    let mut canal = String::from(HEADER);
    let mut dest = String::from(HEADER);
    let set = |out: &mut String, key: &str, value: &str| {
        // canal's format: backslashes escape, so a regex's `\.` is `\\.`.
        let _ = writeln!(out, "{key} = {}", escape(value));
    };
    set(
        &mut canal,
        "canal.port",
        &spec.server.ports.client.to_string(),
    );
    set(
        &mut canal,
        "canal.metrics.pull.port",
        &spec.server.ports.metrics.to_string(),
    );
    set(&mut canal, "canal.zkServers", &spec.zookeeper.connect);
    set(
        &mut canal,
        "canal.zookeeper.session.timeout",
        &spec.zookeeper.session_timeout_millis.to_string(),
    );
    set(&mut canal, "canal.destinations", &instance.destination());
    set(
        &mut canal,
        "canal.instance.global.spring.xml",
        "classpath:spring/default-instance.xml",
    );

    set(
        &mut dest,
        "canal.instance.master.address",
        &spec.source.address,
    );
    set(
        &mut dest,
        "canal.instance.mysql.slaveId",
        &spec.source.server_id_base.to_string(),
    );
    set(
        &mut dest,
        "canal.instance.connectionCharset",
        &spec.source.charset,
    );
    set(
        &mut dest,
        "canal.instance.gtidon",
        &spec.source.gtid_mode.to_string(),
    );
    render_start(spec, &mut |k, v| set(&mut dest, k, v));
    render_filter(spec, &mut |k, v| set(&mut dest, k, v));
    let buffer = &spec.server.buffer;
    set(
        &mut dest,
        "canal.instance.memory.buffer.size",
        &buffer.size.to_string(),
    );
    set(
        &mut dest,
        "canal.instance.memory.buffer.memunit",
        &buffer.memunit.to_string(),
    );
    let mode = match buffer.batch_mode {
        BatchMode::Memsize => "MEMSIZE",
        BatchMode::Itemsize => "ITEMSIZE",
    };
    set(&mut dest, "canal.instance.memory.batch.mode", mode);

    for (key, value) in &spec.server.extra_properties {
        // Validation refuses the others before anything is built.
        match check_extra_property(key) {
            Ok(KeyScope::Server) => set(&mut canal, key, value),
            Ok(KeyScope::Instance) => set(&mut dest, key, value),
            Err(_) => {}
        }
    }
    Rendered {
        canal_properties: canal,
        instance_properties: dest,
    }
}

const HEADER: &str = "# Written by canal-operator from the CanalInstance; edits are overwritten.\n";

fn render_start(spec: &CanalInstanceSpec, set: &mut dyn FnMut(&str, &str)) {
    let Some(start) = &spec.source.start else {
        return;
    };
    if let Some(journal) = &start.journal_name {
        set("canal.instance.master.journal.name", journal);
        if let Some(position) = start.position {
            set("canal.instance.master.position", &position.to_string());
        }
    }
    if let Some(timestamp) = start.timestamp {
        set("canal.instance.master.timestamp", &timestamp.to_string());
    }
    if let Some(gtid) = &start.gtid {
        set("canal.instance.master.gtid", gtid);
    }
}

fn render_filter(spec: &CanalInstanceSpec, set: &mut dyn FnMut(&str, &str)) {
    let filter = &spec.filter;
    if !filter.include.is_empty() {
        set("canal.instance.filter.regex", &filter.include.join(","));
    }
    if !filter.exclude.is_empty() {
        set(
            "canal.instance.filter.black.regex",
            &filter.exclude.join(","),
        );
    }
    let columns = |map: &std::collections::BTreeMap<String, Vec<String>>| {
        map.iter()
            .map(|(table, columns)| format!("{table}:{}", columns.join("/")))
            .collect::<Vec<_>>()
            .join(",")
    };
    if !filter.include_columns.is_empty() {
        set(
            "canal.instance.filter.field",
            &columns(&filter.include_columns),
        );
    }
    if !filter.exclude_columns.is_empty() {
        set(
            "canal.instance.filter.black.field",
            &columns(&filter.exclude_columns),
        );
    }
}

/// Escapes a value for a .properties file: backslashes, line breaks and
/// leading spaces would otherwise change it.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}
