//! Server-wide settings from `canal.properties` (and the environment).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{error::ConfigError, layers::Layers};

/// Where an instance keeps its cursors, chosen in canal by the Spring file
/// `canal.instance.global.spring.xml` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProfile {
    /// `default-instance.xml`: cursors in ZooKeeper, the HA profile.
    ZooKeeper,
    /// `file-instance.xml`: cursors in a local file (`<data dir>/meta.dat`).
    File,
    /// `memory-instance.xml`: cursors in memory only, lost on restart.
    Memory,
}

impl StorageProfile {
    /// `classpath:spring/default-instance.xml`, `spring/default-instance.xml`
    /// or `default-instance.xml`.
    pub fn from_spring_xml(text: &str) -> Option<Self> {
        let name = text.strip_prefix("classpath:").unwrap_or(text);
        let name = name.strip_prefix('/').unwrap_or(name);
        let name = name.strip_prefix("spring/").unwrap_or(name);
        match name {
            "default-instance.xml" => Some(StorageProfile::ZooKeeper),
            "file-instance.xml" => Some(StorageProfile::File),
            "memory-instance.xml" => Some(StorageProfile::Memory),
            _ => None,
        }
    }
}

const SPRING_XML_EXPECTED: &str = "classpath:spring/default-instance.xml (cursors in ZooKeeper), \
     classpath:spring/file-instance.xml (cursors in a local file) or \
     classpath:spring/memory-instance.xml (cursors in memory)";

/// Reads a `*.spring.xml` key.
pub(crate) fn storage_profile(
    layers: &Layers,
    key: &str,
    default: StorageProfile,
) -> Result<StorageProfile, ConfigError> {
    layers.parse(
        key,
        default,
        SPRING_XML_EXPECTED,
        StorageProfile::from_spring_xml,
    )
}

/// ZooKeeper client and HA settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ZookeeperConfig {
    /// `canal.zkServers`: the connect string; `None` runs without ZooKeeper
    /// (no HA).
    pub servers: Option<String>,
    /// `canal.zookeeper.flush.period` (1000 ms): how often acked cursors are
    /// written. Zero writes on every ack.
    pub flush_period: Duration,
    /// `canal.zookeeper.session.timeout` (6000 ms).
    pub session_timeout: Duration,
    /// `canal.zookeeper.connection.timeout` (3000 ms).
    pub connection_timeout: Duration,
    /// `canal.zookeeper.race.delay` (200 ms): how long a server that was
    /// not the previous owner waits before racing for a vanished `running`
    /// node, so the previous owner wins after a quick reconnect (canal: a
    /// fixed 5 s). A planned release skips it.
    pub race_delay: Duration,
    /// `canal.zookeeper.fence.fraction` (0.5, in (0, 1)): the share of the
    /// session timeout after which an owner that cannot reach ZooKeeper
    /// stops serving, before its session can expire and another server
    /// takes over.
    pub fence_fraction: f64,
    /// `canal.zookeeper.auth` (not a canal key): `user:password` for
    /// ZooKeeper's digest scheme, sent with every session. Hidden from
    /// `Debug` and error messages.
    pub auth: Option<crate::ha::zk_session::DigestAuth>,
}

/// Server-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `canal.ip`: bind address (default all interfaces, `0.0.0.0`).
    pub ip: String,
    /// `canal.register.ip`: address published in ZooKeeper; `None` means the
    /// caller picks (canal: `canal.ip`, else the host's address).
    pub register_ip: Option<String>,
    /// `canal.port` (11111): canal client protocol.
    pub port: u16,
    /// `canal.metrics.pull.port` (11112): Prometheus metrics.
    pub metrics_port: u16,
    /// `canal.admin.port` (11110): parsed for compatibility, unused.
    pub admin_port: u16,
    /// `canal.user`: clients must log in as this user when set.
    pub user: Option<String>,
    /// `canal.passwd`: lowercase hex of SHA1(SHA1(password)), 40 characters,
    /// as canal stores it.
    pub passwd: Option<String>,
    /// ZooKeeper and HA settings.
    pub zookeeper: ZookeeperConfig,
    /// `canal.destinations` (default `example`). When set but empty, the
    /// instance directories found under `conf_dir` (canal's auto scan).
    pub destinations: Vec<String>,
    /// Where instance directories live: `canal.conf.dir` resolved against the
    /// configuration directory, else the configuration directory itself.
    pub conf_dir: PathBuf,
    /// `canal.instance.global.spring.xml` (default file-instance.xml). A
    /// destination may override it with `canal.instance.<dest>.spring.xml`.
    pub storage: StorageProfile,
    /// `canal.file.data.dir`: root of file-profile cursors (each destination
    /// in `<dir>/<destination>`); `None` means `conf_dir`, see
    /// [`InstanceConfig::data_dir`](super::InstanceConfig::data_dir).
    pub file_data_dir: Option<PathBuf>,
    /// `canal.file.flush.period` (1000 ms): file-profile cursor writes.
    pub file_flush_period: Duration,
}

/// A relative path as canal would see it: canal runs in `bin/`, a sibling of
/// `conf/`, so its stock `../conf` names the configuration directory; we
/// resolve relative paths against the configuration directory, which gives
/// the same result for paths starting with `..`.
fn resolve_dir(base: &Path, text: &str) -> PathBuf {
    let path = Path::new(text);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

const DESTINATION_EXPECTED: &str = "comma-separated destination names, each usable as a directory \
     and ZooKeeper node name (no '/', '\\', whitespace or control characters, not '.' or '..'), \
     each listed once";

fn valid_destination(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_whitespace() || c.is_control())
}

impl ServerConfig {
    pub(crate) fn read(layers: &Layers, config_dir: &Path) -> Result<Self, ConfigError> {
        check_server_mode(layers)?;
        let destinations = read_destinations(layers)?;
        let user = layers.string("canal.user")?;
        let passwd = read_passwd(layers)?;
        let zookeeper = ZookeeperConfig::read(layers)?;
        let conf_dir = match layers.string("canal.conf.dir")? {
            Some(dir) => resolve_dir(config_dir, &dir),
            None => config_dir.to_owned(),
        };
        let file_data_dir = layers
            .string("canal.file.data.dir")?
            .map(|dir| resolve_dir(config_dir, &dir));
        let storage = storage_profile(
            layers,
            "canal.instance.global.spring.xml",
            StorageProfile::File,
        )?;
        Ok(ServerConfig {
            ip: layers.parse(
                "canal.ip",
                "0.0.0.0".to_owned(),
                "an IP address of this host to listen on, such as 0.0.0.0 or 10.0.0.5 \
                 (host names are not resolved)",
                |t| t.parse::<std::net::IpAddr>().ok().map(|_| t.to_owned()),
            )?,
            register_ip: layers.string("canal.register.ip")?,
            port: layers.port("canal.port", 11111)?,
            metrics_port: layers.port("canal.metrics.pull.port", 11112)?,
            admin_port: layers.port("canal.admin.port", 11110)?,
            user,
            passwd,
            zookeeper,
            destinations,
            conf_dir,
            storage,
            file_data_dir,
            file_flush_period: layers.millis("canal.file.flush.period", 1000, 0)?,
        })
    }
}

/// `canal.serverMode`: only tcp (or unset) is served.
fn check_server_mode(layers: &Layers) -> Result<(), ConfigError> {
    if let Some(mode) = layers.get("canal.serverMode")? {
        let text = mode.value.trim();
        if !text.is_empty() && !text.eq_ignore_ascii_case("tcp") {
            return Err(mode.invalid(
                "tcp: only the tcp server mode is supported \
                 (kafka, rocketMQ, rabbitMQ and pulsarMQ delivery is not)",
            ));
        }
    }
    Ok(())
}

/// `canal.destinations`: `example` when unset; set but empty asks for the
/// auto scan (an empty list here).
fn read_destinations(layers: &Layers) -> Result<Vec<String>, ConfigError> {
    let Some(setting) = layers.get("canal.destinations")? else {
        return Ok(vec!["example".to_owned()]);
    };
    let mut names: Vec<String> = Vec::new();
    for name in setting.value.split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        if !valid_destination(name) || names.iter().any(|n| n == name) {
            return Err(setting.invalid(DESTINATION_EXPECTED));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// The client password's hash: `canal.passwd` as canal stores it, or the
/// plain `canal.password` hashed here (so the hash never lands in a
/// manifest); not both.
fn read_passwd(layers: &Layers) -> Result<Option<String>, ConfigError> {
    let passwd = layers.parse(
        "canal.passwd",
        None,
        "40 hexadecimal digits: the hex of SHA1(SHA1(password)), as canal stores it",
        |t| {
            (t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| Some(t.to_ascii_lowercase()))
        },
    )?;
    match (passwd, layers.string(PLAIN_PASSWORD_KEY)?) {
        (Some(_), Some(_)) => Err(ConfigError::Conflict(format!(
            "both canal.passwd and {PLAIN_PASSWORD_KEY} are set; keep one"
        ))),
        (None, Some(plain)) => Ok(Some(crate::protocol::auth::server_secret(&plain))),
        (passwd, None) => Ok(passwd),
    }
}

impl ZookeeperConfig {
    /// `canal.zkServers` and the `canal.zookeeper.*` keys.
    fn read(layers: &Layers) -> Result<Self, ConfigError> {
        Ok(ZookeeperConfig {
            servers: layers.string("canal.zkServers")?,
            flush_period: layers.millis("canal.zookeeper.flush.period", 1000, 0)?,
            session_timeout: layers.millis("canal.zookeeper.session.timeout", 6000, 1)?,
            connection_timeout: layers.millis("canal.zookeeper.connection.timeout", 3000, 1)?,
            race_delay: layers.millis("canal.zookeeper.race.delay", 200, 0)?,
            fence_fraction: layers.parse(
                "canal.zookeeper.fence.fraction",
                0.5,
                "a fraction of the session timeout between 0 and 1 (exclusive), such as 0.5",
                |t| t.parse::<f64>().ok().filter(|f| *f > 0.0 && *f < 1.0),
            )?,
            auth: zookeeper_auth(layers)?,
        })
    }
}

/// ZooKeeper digest credentials (not a canal key; canal-server only).
pub const ZOOKEEPER_AUTH_KEY: &str = "canal.zookeeper.auth";

/// `canal.zookeeper.auth`; a malformed value is reported without echoing
/// it, as it holds a password.
fn zookeeper_auth(
    layers: &Layers,
) -> Result<Option<crate::ha::zk_session::DigestAuth>, ConfigError> {
    let Some(setting) = layers.get(ZOOKEEPER_AUTH_KEY)? else {
        return Ok(None);
    };
    let text = setting.value.trim();
    if text.is_empty() {
        return Ok(None);
    }
    crate::ha::zk_session::DigestAuth::parse(text)
        .map(Some)
        .ok_or_else(|| ConfigError::Invalid {
            key: setting.key.clone(),
            value: "<hidden>".to_owned(),
            origin: setting.origin.clone(),
            expected: "user:password for ZooKeeper's digest scheme (a non-empty user, then ':')"
                .to_owned(),
        })
}

/// The client password in plain text (not a canal key; canal-server only).
pub const PLAIN_PASSWORD_KEY: &str = "canal.password";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spring_xml_names() {
        use StorageProfile::*;
        for (text, profile) in [
            ("classpath:spring/default-instance.xml", Some(ZooKeeper)),
            ("default-instance.xml", Some(ZooKeeper)),
            ("spring/file-instance.xml", Some(File)),
            ("classpath:memory-instance.xml", Some(Memory)),
            ("classpath:spring/group-instance.xml", None),
            ("default-instance", None),
        ] {
            assert_eq!(StorageProfile::from_spring_xml(text), profile, "{text}");
        }
    }

    #[test]
    fn destination_names() {
        for ok in ["example", "a.b", "order-db_1", "..x"] {
            assert!(valid_destination(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "a b", "a\u{1}"] {
            assert!(!valid_destination(bad), "{bad:?}");
        }
    }
}
