//! canal.properties and instance.properties for an instance, in canal's
//! format. Credentials never appear here: they reach the server through
//! environment variables filled from Secrets.

use std::fmt::Write;

use crate::config::{KeyScope, KeyScopeError, key_scope};
use crate::operator::crd::{BatchMode, CanalInstance, CanalInstanceSpec};

/// The two files, as the ConfigMap carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// canal.properties: the server's settings.
    pub canal_properties: String,
    /// instance.properties: the destination's settings.
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

/// Why `spec.server.extraProperties` may not set a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtraPropertyError {
    /// The operator sets the key from a spec field.
    #[error("{key} is set by the operator from {field}")]
    Managed {
        /// The refused key.
        key: String,
        /// Where the operator takes the value from.
        field: &'static str,
    },
    /// canal-server does not act on the key: why (unknown, with the
    /// closest known key, or accepted without effect), in the words of the
    /// configuration's key table.
    #[error(transparent)]
    NotForCanalServer(#[from] KeyScopeError),
}

/// Where an extra property goes, or why it is refused.
pub fn check_extra_property(key: &str) -> Result<KeyScope, ExtraPropertyError> {
    if let Some((_, field)) = MANAGED_KEYS.iter().find(|(k, _)| *k == key) {
        return Err(ExtraPropertyError::Managed {
            key: key.to_owned(),
            field,
        });
    }
    Ok(key_scope(key)?)
}

/// Both files for `instance`: the managed keys from the spec, then the
/// extra properties that passed [`check_extra_property`].
pub fn render(instance: &CanalInstance) -> Rendered {
    let spec = &instance.spec;
    let mut canal = Properties::new();
    let mut dest = Properties::new();
    render_server(instance, &mut canal);
    render_source(spec, &mut dest);
    render_start(spec, &mut dest);
    render_filter(spec, &mut dest);
    render_buffer(spec, &mut dest);
    for (key, value) in &spec.server.extra_properties {
        // Validation refuses the others before anything is built.
        match check_extra_property(key) {
            Ok(KeyScope::Server) => canal.set(key, value),
            Ok(KeyScope::Instance) => dest.set(key, value),
            Err(_) => {}
        }
    }
    Rendered {
        canal_properties: canal.0,
        instance_properties: dest.0,
    }
}

const HEADER: &str = "# Written by canal-operator from the CanalInstance; edits are overwritten.\n";

/// One file being written, in canal's format.
struct Properties(String);

impl Properties {
    fn new() -> Properties {
        Properties(String::from(HEADER))
    }

    fn set(&mut self, key: &str, value: &str) {
        // canal's format: backslashes escape, so a regex's `\.` is `\\.`.
        let _ = writeln!(self.0, "{key} = {}", escape(value));
    }
}

/// canal.properties: ports, ZooKeeper, the one destination.
fn render_server(instance: &CanalInstance, canal: &mut Properties) {
    let spec = &instance.spec;
    canal.set("canal.port", &spec.server.ports.client.to_string());
    canal.set(
        "canal.metrics.pull.port",
        &spec.server.ports.metrics.to_string(),
    );
    canal.set("canal.zkServers", &spec.zookeeper.connect);
    canal.set(
        "canal.zookeeper.session.timeout",
        &spec.zookeeper.session_timeout_millis.to_string(),
    );
    canal.set("canal.destinations", &instance.destination());
    canal.set(
        "canal.instance.global.spring.xml",
        "classpath:spring/default-instance.xml",
    );
}

fn render_source(spec: &CanalInstanceSpec, dest: &mut Properties) {
    dest.set("canal.instance.master.address", &spec.source.address);
    dest.set(
        "canal.instance.mysql.slaveId",
        &spec.source.server_id_base.to_string(),
    );
    dest.set("canal.instance.connectionCharset", &spec.source.charset);
    dest.set("canal.instance.gtidon", &spec.source.gtid_mode.to_string());
}

fn render_start(spec: &CanalInstanceSpec, dest: &mut Properties) {
    let Some(start) = &spec.source.start else {
        return;
    };
    if let Some(journal) = &start.journal_name {
        dest.set("canal.instance.master.journal.name", journal);
        if let Some(position) = start.position {
            dest.set("canal.instance.master.position", &position.to_string());
        }
    }
    if let Some(timestamp) = start.timestamp {
        dest.set("canal.instance.master.timestamp", &timestamp.to_string());
    }
    if let Some(gtid) = &start.gtid {
        dest.set("canal.instance.master.gtid", gtid);
    }
}

fn render_filter(spec: &CanalInstanceSpec, dest: &mut Properties) {
    let filter = &spec.filter;
    if !filter.include.is_empty() {
        dest.set("canal.instance.filter.regex", &filter.include.join(","));
    }
    if !filter.exclude.is_empty() {
        dest.set(
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
        dest.set(
            "canal.instance.filter.field",
            &columns(&filter.include_columns),
        );
    }
    if !filter.exclude_columns.is_empty() {
        dest.set(
            "canal.instance.filter.black.field",
            &columns(&filter.exclude_columns),
        );
    }
}

fn render_buffer(spec: &CanalInstanceSpec, dest: &mut Properties) {
    let buffer = &spec.server.buffer;
    dest.set(
        "canal.instance.memory.buffer.size",
        &buffer.size.to_string(),
    );
    dest.set(
        "canal.instance.memory.buffer.memunit",
        &buffer.memunit.to_string(),
    );
    let mode = match buffer.batch_mode {
        BatchMode::Memsize => "MEMSIZE",
        BatchMode::Itemsize => "ITEMSIZE",
    };
    dest.set("canal.instance.memory.batch.mode", mode);
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
