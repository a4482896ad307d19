//! `canal-server [run] --conf DIR`: the server process.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use canal::{
    binlog::replica::ReplicaConfig,
    config::{self, CanalConfig, InstanceConfig, StorageProfile},
    cursor::{MemoryCursors, SharedCursorStore, file::FileCursors, zk::ZkCursors},
    ha::{self, HaSettings, ZkSession},
    protocol::auth::Credentials,
    server::{self, HaOptions, InstanceSettings, StartOptions},
    store::{BatchMode, StoreConfig},
};

pub fn run(conf: &Path) -> Result<(), String> {
    let config = config::load_with_process_env(conf).map_err(|e| e.to_string())?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(config))
}

async fn serve(config: CanalConfig) -> Result<(), String> {
    let server_config = &config.server;
    let background = tokio_util::sync::CancellationToken::new();
    let zookeeper = match &server_config.zookeeper.servers {
        Some(servers) => Some(
            ZkSession::connect_with_auth(
                servers,
                ha_settings(&config),
                server_config.zookeeper.auth.clone(),
                &background,
            )
            .await
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let offset = server_id_offset(std::env::var(SERVER_ID_OFFSET).ok().as_deref())?;
    let mut instances = Vec::new();
    for instance in &config.instances {
        let cursors = cursor_store(instance, zookeeper.as_ref());
        instances.push((settings(instance, &config, offset)?, cursors));
    }
    let address = |port: u16| -> Result<SocketAddr, String> {
        format!("{}:{port}", bracket(&server_config.ip))
            .parse()
            .map_err(|_| {
                format!(
                    "canal.ip = \"{}\" is not an IP address to listen on",
                    server_config.ip
                )
            })
    };
    let ha = match (&zookeeper, &server_config.zookeeper.servers) {
        (Some(zk), Some(servers)) => {
            let pod_ip = std::env::var("POD_IP").ok();
            let registered = ha::address::choose(
                server_config.register_ip.as_deref(),
                &server_config.ip,
                pod_ip.as_deref(),
                servers,
            )
            .map_err(|e| e.to_string())?;
            let address = format!("{}:{}", registered.host, server_config.port);
            tracing::info!(%address, from = registered.source, "registering in ZooKeeper");
            Some(HaOptions {
                zk: zk.clone(),
                address,
            })
        }
        _ => None,
    };
    let options = StartOptions {
        bind: address(server_config.port)?,
        metrics_bind: Some(address(server_config.metrics_port)?),
        credentials: Credentials {
            user: server_config.user.clone(),
            passwd: server_config.passwd.clone(),
        },
        instances,
        ha,
    };
    let running = server::start(options).await.map_err(|e| e.to_string())?;
    canal::signals::stop_requested().await;
    tracing::info!("stopping: releasing destinations, flushing cursors");
    running.shutdown().await;
    background.cancel();
    Ok(())
}

fn ha_settings(config: &CanalConfig) -> HaSettings {
    let zk = &config.server.zookeeper;
    HaSettings {
        session_timeout: zk.session_timeout,
        connection_timeout: zk.connection_timeout,
        race_delay: zk.race_delay,
        fence_fraction: zk.fence_fraction,
    }
}

fn bracket(ip: &str) -> String {
    if ip.contains(':') && !ip.starts_with('[') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// With ZooKeeper configured, cursors always live there (canal keeps them
/// on local disk by default, which a failover cannot read).
fn cursor_store(
    instance: &InstanceConfig,
    zookeeper: Option<&Arc<ZkSession>>,
) -> SharedCursorStore {
    match (zookeeper, instance.storage) {
        (Some(session), _) => Arc::new(ZkCursors::with_session(
            session.clone(),
            &instance.destination,
        )),
        (None, StorageProfile::Memory) => {
            tracing::warn!(
                destination = %instance.destination,
                "memory-instance.xml: client cursors are kept in memory only and lost on restart"
            );
            Arc::new(MemoryCursors::default())
        }
        (None, _) => Arc::new(FileCursors::new(&instance.data_dir, &instance.destination)),
    }
}

/// A replica server id when canal.instance.mysql.slaveId is 0: stable for
/// the host and destination, away from the small ids servers use.
fn derived_server_id(destination: &str) -> u32 {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in host.bytes().chain([b'/']).chain(destination.bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    1_000_000 + hash % 1_000_000_000
}

/// Added to every destination's replica server id, so the pods of one
/// StatefulSet share a configuration yet connect with distinct ids (the
/// operator sets it to the pod's ordinal).
const SERVER_ID_OFFSET: &str = "CANAL_SERVER_ID_OFFSET";

fn server_id_offset(value: Option<&str>) -> Result<u32, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(0),
        Some(text) => text.parse().map_err(|_| {
            format!(
                "{SERVER_ID_OFFSET}={text:?}: expected a non-negative integer (the pod's ordinal)"
            )
        }),
    }
}

fn settings(
    instance: &InstanceConfig,
    config: &CanalConfig,
    offset: u32,
) -> Result<InstanceSettings, String> {
    let server_id = match instance.slave_id {
        0 => derived_server_id(&instance.destination),
        id => id.checked_add(offset).ok_or_else(|| {
            format!(
                "canal.instance.mysql.slaveId {id} + {SERVER_ID_OFFSET} {offset} for destination {} \
                 exceeds the largest server id (4294967295)",
                instance.destination
            )
        })?,
    };
    let flush_period = match (config.server.zookeeper.servers.is_some(), instance.storage) {
        (true, _) | (false, StorageProfile::ZooKeeper) => config.server.zookeeper.flush_period,
        (false, _) => config.server.file_flush_period,
    };
    let memory = &instance.memory;
    Ok(InstanceSettings {
        destination: instance.destination.clone(),
        replica: ReplicaConfig {
            address: instance.master.to_string(),
            user: instance.db_username.clone(),
            password: instance.db_password.clone(),
            server_id,
            heartbeat: instance.heartbeat,
            connect_timeout: Duration::from_secs(10),
        },
        start: instance.start.clone(),
        gtid_on: instance.gtid_on,
        decoder: instance.decoder_options(),
        filter: instance.event_filter(),
        store: StoreConfig {
            capacity_events: memory.buffer_size,
            capacity_bytes: memory.buffer_size.saturating_mul(memory.memunit),
            batch_mode: match memory.batch_mode {
                config::BatchMode::ItemSize => BatchMode::ItemSize,
                config::BatchMode::MemSize => BatchMode::MemSize,
            },
            memunit: memory.memunit,
            ddl_isolation: instance.get_ddl_isolation,
        },
        flush_period,
        filter_transaction_entry: instance.switches.transaction_entry,
    })
}

#[cfg(test)]
mod tests {
    use super::server_id_offset;

    #[test]
    fn server_id_offset_is_an_ordinal() {
        assert_eq!(server_id_offset(None), Ok(0));
        assert_eq!(server_id_offset(Some(" 2 ")), Ok(2));
        let error = server_id_offset(Some("-1")).unwrap_err();
        assert!(error.contains("CANAL_SERVER_ID_OFFSET"), "{error}");
    }
}
