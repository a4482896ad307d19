//! canal's configuration: `canal.properties`, `<dest>/instance.properties`
//! and environment variables named like the keys, read as canal reads them
//! so an existing deployment moves over unchanged.
//!
//! Precedence per key: environment variable > `instance.properties` (for
//! per-destination keys) > `canal.properties` > default. canal's Docker image
//! passes instance keys globally, so an environment variable for an instance
//! key applies to every destination.
//!
//! Invalid values stop start-up with a [`ConfigError`] naming the key, where
//! it was set and what is expected. Unknown `canal.*` keys and canal features
//! this server lacks become [`CanalConfig::warnings`]; keys without the
//! `canal.` prefix are ignored.

mod error;
pub mod files;
mod instance;
mod keys;
mod layers;
pub mod properties;
mod server;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

pub use error::{ConfigError, Origin};
pub use instance::{
    BatchMode, DEFAULT_BLACK_REGEX, DEFAULT_FILTER_REGEX, FilterSwitches, FilterTexts,
    InstanceConfig, MasterAddress, MemoryStoreConfig,
};
pub use keys::{KeyScope, KeyScopeError, key_scope};
pub use properties::Properties;
pub use server::{ServerConfig, StorageProfile, ZookeeperConfig};

use files::{ConfigFiles, Disk};
use keys::{Place, Values};
use layers::{File, Layers};

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct CanalConfig {
    /// Server-wide settings.
    pub server: ServerConfig,
    /// One per destination, in `canal.destinations` order.
    pub instances: Vec<InstanceConfig>,
    /// Problems that do not stop start-up (unknown keys, canal features
    /// with no effect here); log each once.
    pub warnings: Vec<String>,
}

impl CanalConfig {
    /// The settings of `destination`, if it is configured.
    pub fn instance(&self, destination: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.destination == destination)
    }
}

/// The name of the server's file in the configuration directory.
pub const SERVER_FILE: &str = "canal.properties";
/// The name of each destination's file in its directory.
pub const INSTANCE_FILE: &str = "instance.properties";

/// The process environment's `canal.*` variables (other variables are never
/// configuration). Variables whose name or value is not Unicode are skipped.
pub fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("canal."))
        .collect()
}

/// [`load`] with the process environment.
pub fn load_with_process_env(conf_dir: &Path) -> Result<CanalConfig, ConfigError> {
    load(conf_dir, &process_env())
}

/// Reads `conf_dir/canal.properties` and each destination's
/// `instance.properties`, with `env` (variables named like the keys) over
/// both. `env` is a map rather than a lookup function because unknown
/// `canal.*` variables are reported, which needs their names.
pub fn load(conf_dir: &Path, env: &HashMap<String, String>) -> Result<CanalConfig, ConfigError> {
    load_from(&Disk, conf_dir, env)
}

/// [`load`] from `files` (the disk, or files held in memory).
pub fn load_from(
    files: &dyn ConfigFiles,
    conf_dir: &Path,
    env: &HashMap<String, String>,
) -> Result<CanalConfig, ConfigError> {
    let mut warnings = Vec::new();
    let server_path = conf_dir.join(SERVER_FILE);
    let server_props = read_properties(files, &server_path)?;
    let server_layers = Layers {
        env,
        instance: None,
        global: File {
            path: &server_path,
            props: &server_props,
        },
        destination: None,
    };
    let mut server = ServerConfig::read(&server_layers, conf_dir)?;
    if server.destinations.is_empty() {
        server.destinations = scan_destinations(files, &server.conf_dir)?;
    }
    let mut instances = Vec::with_capacity(server.destinations.len());
    for destination in &server.destinations {
        let instance = load_instance(
            files,
            conf_dir,
            &server,
            &server_layers,
            destination,
            &mut warnings,
        )?;
        instances.push(instance);
    }

    keys::check_duplicates(&server_path, &server_props, &mut warnings);
    let file_entries = server_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str(), p.line));
    let place = Place::ServerFile(&server_path);
    check_keys(place, file_entries, &server, &server_layers, &mut warnings);
    let mut env_keys: Vec<(&String, &String)> = env.iter().collect();
    env_keys.sort();
    let env_entries = env_keys
        .into_iter()
        .map(|(k, v)| (k.as_str(), v.as_str(), 0));
    check_keys(
        Place::Env,
        env_entries,
        &server,
        &server_layers,
        &mut warnings,
    );

    // Instance-level messages repeat for each destination when the setting
    // is global; keep the first of each.
    let mut seen = std::collections::HashSet::new();
    warnings.retain(|w| seen.insert(w.clone()));
    Ok(CanalConfig {
        server,
        instances,
        warnings,
    })
}

/// One destination's configuration: its `instance.properties` over the
/// server's layers, with the warnings its keys deserve.
fn load_instance(
    files: &dyn ConfigFiles,
    conf_dir: &Path,
    server: &ServerConfig,
    server_layers: &Layers,
    destination: &str,
    warnings: &mut Vec<String>,
) -> Result<InstanceConfig, ConfigError> {
    let path = instance_path(files, conf_dir, server, destination)?;
    let props = read_properties(files, &path)?;
    let layers = Layers {
        env: server_layers.env,
        instance: Some(File {
            path: &path,
            props: &props,
        }),
        global: server_layers.global,
        destination: Some(destination),
    };
    let storage = destination_storage(server, server_layers, destination, warnings)?;
    let data_dir = server
        .file_data_dir
        .as_deref()
        .unwrap_or(&server.conf_dir)
        .join(destination);
    let instance = InstanceConfig::read(
        destination,
        path.clone(),
        data_dir,
        storage,
        &layers,
        warnings,
    )?;
    keys::check_duplicates(&path, &props, warnings);
    let entries = props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str(), p.line));
    check_keys(
        Place::InstanceFile(&path),
        entries,
        server,
        &layers,
        warnings,
    );
    Ok(instance)
}

/// Where `destination`'s `instance.properties` is; an error that says where
/// it was looked for when it is missing.
fn instance_path(
    files: &dyn ConfigFiles,
    conf_dir: &Path,
    server: &ServerConfig,
    destination: &str,
) -> Result<PathBuf, ConfigError> {
    let path = server.conf_dir.join(destination).join(INSTANCE_FILE);
    if files.is_file(&path) {
        return Ok(path);
    }
    let hint = if server.conf_dir == conf_dir {
        String::new()
    } else {
        // canal resolves a relative canal.conf.dir from its bin/
        // directory; here it is relative to --conf, so canal's stock
        // `../conf` only fits a directory that is itself called conf.
        format!(
            " (instance directories are looked for in canal.conf.dir = {}; \
             remove canal.conf.dir to use {})",
            server.conf_dir.display(),
            conf_dir.display()
        )
    };
    Err(ConfigError::MissingInstance {
        destination: destination.to_owned(),
        path,
        hint,
    })
}

/// Where `destination` keeps its cursors; with ZooKeeper configured that is
/// ZooKeeper whatever the profile says (a warning tells so).
fn destination_storage(
    server: &ServerConfig,
    server_layers: &Layers,
    destination: &str,
    warnings: &mut Vec<String>,
) -> Result<StorageProfile, ConfigError> {
    let storage = server::storage_profile(
        server_layers,
        &format!("canal.instance.{destination}.spring.xml"),
        server.storage,
    )?;
    let with_zookeeper = server.zookeeper.servers.is_some();
    if storage == StorageProfile::ZooKeeper && !with_zookeeper {
        return Err(ConfigError::Conflict(format!(
            "destination {destination:?} keeps its cursors in ZooKeeper \
             (default-instance.xml, from canal.instance.global.spring.xml or \
             canal.instance.{destination}.spring.xml) but canal.zkServers is not set; \
             set canal.zkServers or use classpath:spring/file-instance.xml"
        )));
    }
    if storage != StorageProfile::ZooKeeper && with_zookeeper {
        let (profile, place) = if storage == StorageProfile::File {
            ("file-instance.xml", "on local disk")
        } else {
            ("memory-instance.xml", "in memory")
        };
        // canal would keep these cursors on one host's disk (or in memory),
        // where a server taking over the destination cannot read them.
        warnings.push(format!(
            "destination {destination:?}: the storage profile ({profile}) keeps cursors {place} in canal; \
             with canal.zkServers set, canal-server keeps them in ZooKeeper so that any \
             server can resume the destination"
        ));
    }
    Ok(storage)
}

/// Warnings for the `canal.*` keys of one place, values seen through
/// `layers`.
fn check_keys<'a>(
    place: Place<'_>,
    entries: impl IntoIterator<Item = (&'a str, &'a str, usize)>,
    server: &ServerConfig,
    layers: &Layers,
    warnings: &mut Vec<String>,
) {
    let values = Values {
        resolve: &|v| layers.resolve_lenient(v),
        lookup: &|k| layers.raw(k).map(|(v, _)| v),
    };
    keys::check(place, entries, &server.destinations, &values, warnings);
}

fn read_properties(files: &dyn ConfigFiles, path: &Path) -> Result<Properties, ConfigError> {
    let bytes = files.read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Properties::parse_bytes(&bytes).map_err(|source| ConfigError::Syntax {
        path: path.to_owned(),
        source,
    })
}

/// canal's auto scan with `canal.destinations` empty: every directory
/// under `dir` holding an `instance.properties`, by name.
fn scan_destinations(files: &dyn ConfigFiles, dir: &Path) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = files
        .directories(dir)
        .map_err(|source| ConfigError::Read {
            path: dir.to_owned(),
            source,
        })?
        .into_iter()
        .filter(|name| files.is_file(&dir.join(name).join(INSTANCE_FILE)))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(ConfigError::Conflict(format!(
            "canal.destinations is empty and no directory under {} holds an {INSTANCE_FILE}; \
             list the destinations in canal.destinations",
            dir.display()
        )));
    }
    Ok(names)
}

#[cfg(test)]
mod tests;
