//! Which `canal.*` keys this server knows, and the warnings for the rest.
//!
//! canal's keys that change behaviour but have no counterpart here are
//! reported (never dropped silently); keys of other software (no `canal.`
//! prefix) are ignored entirely, as the environment holds plenty of them.

use std::path::Path;

use super::properties::Properties;

/// Keys read once for the whole server, from `canal.properties` or the
/// environment. In `instance.properties` they have no effect.
pub(crate) const SERVER_KEYS: &[&str] = &[
    "canal.ip",
    "canal.register.ip",
    "canal.port",
    "canal.metrics.pull.port",
    "canal.admin.port",
    "canal.user",
    "canal.passwd",
    "canal.password",
    "canal.zkServers",
    "canal.zookeeper.flush.period",
    "canal.zookeeper.session.timeout",
    "canal.zookeeper.connection.timeout",
    "canal.zookeeper.race.delay",
    "canal.zookeeper.fence.fraction",
    "canal.zookeeper.auth",
    "canal.destinations",
    "canal.conf.dir",
    "canal.serverMode",
    "canal.instance.global.spring.xml",
    "canal.file.data.dir",
    "canal.file.flush.period",
];

/// Keys read per destination: `instance.properties`, else `canal.properties`
/// (canal's global defaults), with the environment over both.
pub(crate) const INSTANCE_KEYS: &[&str] = &[
    "canal.instance.mysql.slaveId",
    "canal.instance.master.address",
    "canal.instance.master.journal.name",
    "canal.instance.master.position",
    "canal.instance.master.timestamp",
    "canal.instance.master.gtid",
    "canal.instance.gtidon",
    "canal.instance.dbUsername",
    "canal.instance.dbPassword",
    "canal.instance.connectionCharset",
    "canal.instance.enableDruid",
    "canal.instance.filter.regex",
    "canal.instance.filter.black.regex",
    "canal.instance.filter.field",
    "canal.instance.filter.black.field",
    "canal.instance.filter.query.dcl",
    "canal.instance.filter.query.dml",
    "canal.instance.filter.query.ddl",
    "canal.instance.filter.table.error",
    "canal.instance.filter.rows",
    "canal.instance.filter.transaction.entry",
    "canal.instance.filter.dml.insert",
    "canal.instance.filter.dml.update",
    "canal.instance.filter.dml.delete",
    "canal.instance.memory.buffer.size",
    "canal.instance.memory.buffer.memunit",
    "canal.instance.memory.batch.mode",
    "canal.instance.get.ddl.isolation",
    "canal.instance.timezone",
    "canal.instance.enum.set.labels",
    "canal.instance.network.heartbeat",
];

/// canal keys accepted without effect because they only tune canal's Java
/// internals (buffers, socket options, parser choice) or only matter with a
/// key that is itself reported.
const SILENT_KEYS: &[&str] = &[
    "canal.id",
    "canal.instance.memory.rawEntry",
    "canal.instance.network.receiveBufferSize",
    "canal.instance.network.sendBufferSize",
    "canal.instance.network.soTimeout",
    "canal.instance.filter.druid.ddl",
    "canal.instance.binlog.format",
    "canal.instance.binlog.image",
    "canal.instance.pwdPublicKey",
    "canal.auto.scan.interval",
    // The replica connection needs no default database.
    "canal.instance.defaultDatabaseName",
    // The size of canal's parser-side transaction buffer.
    "canal.instance.transaction.size",
    // Only used when failing over to a standby source, which is reported.
    "canal.instance.fallbackIntervalInSeconds",
];

/// A family of canal keys this server does not implement. Set to anything
/// but an empty or harmless value, they are reported as having no effect.
struct NoEffect {
    /// A key, or a prefix ending in `.`.
    key: &'static str,
    /// Values (any case) that ask for nothing this server lacks.
    harmless: &'static [&'static str],
    /// A switch (and canal's default for it) without which the family does
    /// nothing in canal either, e.g. `canal.instance.detecting.enable`.
    gate: Option<(&'static str, bool)>,
    why: &'static str,
}

const NO_EFFECT: &[NoEffect] = &[
    NoEffect {
        key: "canal.mq.",
        harmless: &[],
        gate: None,
        why: "MQ delivery is not supported; clients read over canal's tcp protocol",
    },
    NoEffect {
        key: "canal.admin.",
        harmless: &["false"],
        gate: None,
        why: "canal-admin is not supported",
    },
    NoEffect {
        key: "canal.aliyun.",
        harmless: &[],
        gate: None,
        why: "Aliyun RDS / MQ integration is not supported",
    },
    NoEffect {
        key: "canal.instance.rds.",
        harmless: &[],
        gate: None,
        why: "Aliyun RDS binlog download is not supported",
    },
    NoEffect {
        key: "canal.instance.tsdb.",
        harmless: &["false"],
        gate: Some(("canal.instance.tsdb.enable", true)),
        why: "table schema history (tsdb) is not kept; with binlog_row_metadata=FULL \
              row events carry column names themselves",
    },
    NoEffect {
        key: "canal.instance.parser.",
        harmless: &["false"],
        gate: Some(("canal.instance.parser.parallel", true)),
        why: "events are decoded in one pipeline",
    },
    NoEffect {
        key: "canal.instance.detecting.",
        harmless: &["false"],
        gate: Some(("canal.instance.detecting.enable", false)),
        why: "source health is checked by the replication heartbeat \
              (canal.instance.network.heartbeat)",
    },
    NoEffect {
        key: "canal.instance.standby.",
        harmless: &[],
        gate: None,
        why: "standby sources are not supported; change canal.instance.master.address to fail over",
    },
    NoEffect {
        key: "canal.instance.multi.stream.on",
        harmless: &["false"],
        gate: None,
        why: "PolarDB-X multi-stream is not supported",
    },
    NoEffect {
        key: "canal.instance.global.mode",
        harmless: &["spring"],
        gate: None,
        why: "configuration is read from files only (canal-admin manager mode is not supported)",
    },
    NoEffect {
        key: "canal.instance.global.lazy",
        harmless: &["false"],
        gate: None,
        why: "instances always start at once",
    },
    NoEffect {
        key: "canal.instance.global.manager.address",
        harmless: &[],
        gate: None,
        why: "canal-admin is not supported",
    },
    NoEffect {
        key: "canal.auto.scan",
        harmless: &["false"],
        gate: None,
        why: "instance directories are read once at start-up; restart the server to apply changes",
    },
    NoEffect {
        key: "canal.auto.reset.latest.pos.mode",
        harmless: &["false"],
        gate: None,
        why: "a cursor the source no longer has stops the destination with an error instead of \
              silently skipping to the binlog end; reset the cursor (docs/operations.md)",
    },
    NoEffect {
        key: "canal.withoutNetty",
        harmless: &["false"],
        gate: None,
        why: "the tcp server always runs",
    },
];

/// Suffixes of canal's per-destination keys `canal.instance.<dest>.<suffix>`.
const PER_DESTINATION: &[&str] = &["spring.xml", "mode", "lazy", "manager.address"];

/// Where the keys being checked came from.
#[derive(Clone, Copy)]
pub(crate) enum Place<'a> {
    ServerFile(&'a Path),
    InstanceFile(&'a Path),
    Env,
}

impl Place<'_> {
    fn describe(&self, key: &str, line: usize) -> String {
        match self {
            Place::ServerFile(path) | Place::InstanceFile(path) => {
                format!("{} line {line}", path.display())
            }
            Place::Env => format!("environment variable {key}"),
        }
    }
}

/// What one key is.
enum Kind<'a> {
    Known,
    ServerOnly,
    NoEffect(usize),
    OtherDestination(&'a str),
    Unknown,
}

fn no_effect(key: &str) -> Option<usize> {
    NO_EFFECT.iter().position(|rule| {
        if rule.key.ends_with('.') {
            key.starts_with(rule.key)
        } else {
            key == rule.key
        }
    })
}

fn classify<'k>(key: &'k str, destinations: &[String]) -> Kind<'k> {
    if SERVER_KEYS.contains(&key) {
        return Kind::ServerOnly;
    }
    if let Some(rest) = key.strip_prefix("canal.instance.") {
        for destination in destinations {
            let suffix = rest
                .strip_prefix(destination.as_str())
                .and_then(|s| s.strip_prefix('.'));
            match suffix {
                Some("spring.xml") => return Kind::ServerOnly,
                Some(suffix) if PER_DESTINATION.contains(&suffix) => {
                    let global = format!("canal.instance.global.{suffix}");
                    return no_effect(&global).map_or(Kind::Unknown, Kind::NoEffect);
                }
                _ => {}
            }
        }
    }
    if let Some(rule) = no_effect(key) {
        return Kind::NoEffect(rule);
    }
    if INSTANCE_KEYS.contains(&key) || SILENT_KEYS.contains(&key) {
        return Kind::Known;
    }
    if let Some(rest) = key.strip_prefix("canal.instance.") {
        for suffix in PER_DESTINATION {
            if let Some(destination) = rest
                .strip_suffix(suffix)
                .and_then(|d| d.strip_suffix('.'))
                .filter(|d| !d.is_empty())
            {
                return Kind::OtherDestination(destination);
            }
        }
    }
    Kind::Unknown
}

/// Where a key belongs, for tools that write configuration (the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// `canal.properties`: read once for the whole server.
    Server,
    /// `instance.properties` (or `canal.properties` for every destination).
    Instance,
}

/// Why canal-server does not act on a key (see [`key_scope`]). Each is
/// something the user must change: the key will not start working by
/// itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyScopeError {
    /// A canal key canal-server reads nowhere.
    #[error("{key} has no effect in canal-server")]
    NoEffect {
        /// The key.
        key: String,
    },
    /// A canal key that tunes the Java implementation only.
    #[error("{key} only tunes canal's Java internals and has no effect in canal-server")]
    JavaInternal {
        /// The key.
        key: String,
    },
    /// Not a key canal-server knows, perhaps a misspelt one.
    #[error("{key} is not a canal-server key{}", did_you_mean(.closest))]
    Unknown {
        /// The key.
        key: String,
        /// The closest known key, if one is close.
        closest: Option<String>,
    },
}

fn did_you_mean(closest: &Option<String>) -> String {
    closest
        .as_ref()
        .map(|known| format!(" (did you mean {known}?)"))
        .unwrap_or_default()
}

/// Whether canal-server acts on `key`, and where it goes; the error says
/// why not (unknown, with the closest known key, or accepted without
/// effect).
pub fn key_scope(key: &str) -> Result<KeyScope, KeyScopeError> {
    let key_owned = || key.to_owned();
    match classify(key, &[]) {
        Kind::ServerOnly => Ok(KeyScope::Server),
        Kind::Known if INSTANCE_KEYS.contains(&key) => Ok(KeyScope::Instance),
        Kind::Known => Err(KeyScopeError::NoEffect { key: key_owned() }),
        Kind::NoEffect(_) => Err(KeyScopeError::JavaInternal { key: key_owned() }),
        Kind::OtherDestination(_) | Kind::Unknown => Err(KeyScopeError::Unknown {
            key: key_owned(),
            closest: suggestion(key).map(|known| known.to_string()),
        }),
    }
}

/// How [`check`] sees values: placeholders expanded, and the effective
/// value of a key in the place's context (for gates).
pub(crate) struct Values<'a> {
    pub resolve: &'a dyn Fn(&str) -> String,
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl NoEffect {
    fn is_harmless(&self, key: &str, value: &str, values: &Values) -> bool {
        let value = (values.resolve)(value);
        let value = value.trim();
        if value.is_empty() || self.harmless.iter().any(|h| h.eq_ignore_ascii_case(value)) {
            return true;
        }
        match self.gate {
            Some((gate, default_on)) if gate != key => {
                let on = (values.lookup)(gate)
                    .map(|v| (values.resolve)(&v).trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .map_or(default_on, |v| v.eq_ignore_ascii_case("true"));
                !on
            }
            _ => false,
        }
    }
}

/// Warnings for the `canal.*` keys of one place. `entries` are (key, raw
/// value, line).
pub(crate) fn check<'a>(
    place: Place<'_>,
    entries: impl IntoIterator<Item = (&'a str, &'a str, usize)>,
    destinations: &[String],
    values: &Values,
    warnings: &mut Vec<String>,
) {
    // Keys with no effect, grouped per rule so a stock file gives one line
    // per family rather than one per key.
    let mut ignored: Vec<(usize, Vec<String>)> = Vec::new();
    for (key, value, line) in entries {
        if !key.starts_with("canal.") {
            continue;
        }
        match classify(key, destinations) {
            Kind::Known => {}
            Kind::ServerOnly => {
                if let Place::InstanceFile(_) = place {
                    warnings.push(format!(
                        "{key} in {} has no effect: it is a server-wide setting; \
                         set it in canal.properties",
                        place.describe(key, line)
                    ));
                }
            }
            Kind::NoEffect(rule) => {
                if !NO_EFFECT[rule].is_harmless(key, value, values) {
                    let at = match place {
                        Place::Env => key.to_owned(),
                        _ => format!("{key} (line {line})"),
                    };
                    match ignored.iter_mut().find(|(r, _)| *r == rule) {
                        Some((_, keys)) => keys.push(at),
                        None => ignored.push((rule, vec![at])),
                    }
                }
            }
            Kind::OtherDestination(destination) => warnings.push(format!(
                "{key} in {} is ignored: {destination:?} is not listed in canal.destinations",
                place.describe(key, line)
            )),
            Kind::Unknown => {
                let hint = suggestion(key)
                    .map(|k| format!(" (did you mean {k}?)"))
                    .unwrap_or_default();
                warnings.push(format!(
                    "unknown key {key} in {} is ignored{hint}",
                    place.describe(key, line)
                ));
            }
        }
    }
    for (rule, keys) in ignored {
        let place = match place {
            Place::ServerFile(path) | Place::InstanceFile(path) => {
                format!("in {}", path.display())
            }
            Place::Env => "in the environment".to_owned(),
        };
        let verb = if keys.len() == 1 { "has" } else { "have" };
        warnings.push(format!(
            "{} {place} {verb} no effect in this server: {}",
            keys.join(", "),
            NO_EFFECT[rule].why
        ));
    }
}

/// Warnings for keys a file sets twice (Java keeps the later silently).
pub(crate) fn check_duplicates(path: &Path, props: &Properties, warnings: &mut Vec<String>) {
    for (key, earlier, later) in props.duplicates() {
        warnings.push(format!(
            "{key} is set twice in {} (lines {earlier} and {later}); line {later} wins",
            path.display()
        ));
    }
}

/// The closest known key, for likely typos (keys are case-sensitive).
fn suggestion(key: &str) -> Option<&'static str> {
    SERVER_KEYS
        .iter()
        .chain(INSTANCE_KEYS)
        .chain(SILENT_KEYS)
        .map(|known| {
            (
                edit_distance(&key.to_lowercase(), &known.to_lowercase()),
                *known,
            )
        })
        .filter(|&(d, _)| d <= 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warn(place: Place, entries: &[(&str, &str)]) -> Vec<String> {
        let mut warnings = Vec::new();
        let entries_map: std::collections::HashMap<&str, &str> = entries.iter().copied().collect();
        let entries = entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (*k, *v, i + 1));
        let values = Values {
            resolve: &|v| v.to_owned(),
            lookup: &|k| entries_map.get(k).map(|v| v.to_string()),
        };
        check(
            place,
            entries,
            &["example".to_owned()],
            &values,
            &mut warnings,
        );
        warnings
    }

    #[test]
    fn stock_and_known_keys_are_quiet() {
        let file = Place::ServerFile(Path::new("/c/canal.properties"));
        let quiet = [
            ("canal.port", "11111"),
            ("canal.admin.port", "11110"),
            ("canal.instance.filter.regex", ".*"),
            ("canal.instance.tsdb.enable", "false"),
            ("canal.instance.detecting.enable", "false"),
            ("canal.instance.rds.accesskey", ""),
            ("canal.instance.global.mode", "spring"),
            ("canal.instance.example.spring.xml", "x"),
            ("canal.instance.network.soTimeout", "30"),
            ("kafka.bootstrap.servers", "x"),
            ("HOME", "/root"),
        ];
        assert_eq!(warn(file, &quiet), Vec::<String>::new());
    }

    #[test]
    fn reported_keys() {
        let file = Place::InstanceFile(Path::new("/c/example/instance.properties"));
        let w = warn(
            file,
            &[
                ("canal.mq.topic", "example"),
                ("canal.instance.tsdb.enable", "true"),
                ("canal.mq.partition", "0"),
                ("canal.port", "1"),
                ("canal.instance.filter.regx", "a"),
                ("canal.instance.other.spring.xml", "x"),
            ],
        );
        assert_eq!(w.len(), 5, "{w:#?}");
        assert!(w[0].starts_with("canal.port in /c/example/instance.properties line 4"));
        assert!(
            w[1].contains("did you mean canal.instance.filter.regex?"),
            "{}",
            w[1]
        );
        assert!(w[2].contains("\"other\" is not listed"), "{}", w[2]);
        assert!(
            w[3].starts_with(
                "canal.mq.topic (line 1), canal.mq.partition (line 3) in \
                 /c/example/instance.properties have no effect"
            ),
            "{}",
            w[3]
        );
        assert!(w[4].contains("tsdb"), "{}", w[4]);

        let w = warn(Place::Env, &[("canal.zkservers", "x")]);
        assert_eq!(
            w,
            vec![
                "unknown key canal.zkservers in environment variable canal.zkservers is \
                 ignored (did you mean canal.zkServers?)"
                    .to_owned()
            ]
        );
    }
}
