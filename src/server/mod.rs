//! The canal server: destinations (instances) and the TCP listener that
//! serves canal clients.

pub mod client_session;
pub mod destination;
pub mod instance;
mod live;
mod pipeline;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use destination::Destination;
pub use instance::{Instance, InstanceSettings};

use crate::{
    ha::{self, Election, Lease, Role, ZkSession},
    protocol::auth::Credentials,
};

/// What sessions share: the destinations this process can run and the
/// client credentials.
#[derive(Debug)]
pub struct ServerShared {
    /// Every destination this process can run, by name.
    pub destinations: BTreeMap<String, Arc<Destination>>,
    /// Who may connect.
    pub credentials: Credentials,
}

impl ServerShared {
    /// The instance serving `destination`, if this server is active for it.
    pub fn instance(&self, destination: &str) -> Option<Arc<Instance>> {
        self.destinations.get(destination)?.instance()
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {source} (check canal.ip / canal.port)")]
    /// A port could not be bound.
    Bind {
        /// The address.
        address: String,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Accepts canal clients on `listener` until `cancel` fires; each
/// connection gets its own task, so one slow client never holds up another.
pub async fn serve(listener: TcpListener, shared: Arc<ServerShared>, cancel: CancellationToken) {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = cancel.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                let cancel = cancel.clone();
                sessions.spawn(client_session::serve(stream, peer, shared, cancel));
            }
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        while sessions.try_join_next().is_some() {}
    }
    drop(listener);
    // Sessions see the same token and close; give them a moment to say so.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    sessions.abort_all();
}

/// Binds the client port.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            address: address.to_string(),
            source,
        })
}

/// What [`start`] needs: addresses, credentials, destinations.
pub struct StartOptions {
    /// Client port (`canal.ip`:`canal.port`); port 0 picks a free one.
    pub bind: SocketAddr,
    /// Metrics and health port (`canal.metrics.pull.port`), if any.
    pub metrics_bind: Option<SocketAddr>,
    /// Who may connect.
    pub credentials: Credentials,
    /// Each destination with its cursor store.
    pub instances: Vec<(InstanceSettings, crate::cursor::SharedCursorStore)>,
    /// With ZooKeeper: race for each destination instead of serving at once.
    pub ha: Option<HaOptions>,
}

/// How this server takes part in the race.
pub struct HaOptions {
    /// The process's ZooKeeper session.
    pub zk: Arc<ZkSession>,
    /// The registered `ip:port` (see [`ha::address`]).
    pub address: String,
}

/// A started server.
pub struct RunningServer {
    /// What sessions and endpoints read.
    pub shared: Arc<ServerShared>,
    /// The bound client address.
    pub address: SocketAddr,
    /// The bound metrics address, if metrics are served.
    pub metrics_address: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Elections and member registration, stopped first on shutdown.
    ha_shutdown: CancellationToken,
    ha_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts every destination (or, with ZooKeeper, the race for each), then
/// listens for clients and metrics.
pub async fn start(options: StartOptions) -> Result<RunningServer, StartError> {
    let cancel = CancellationToken::new();
    let destinations = start_destinations(options.instances, options.ha.is_some(), &cancel).await?;
    let shared = Arc::new(ServerShared {
        destinations,
        credentials: options.credentials,
    });
    let (address, client_task) = listen_for_clients(options.bind, &shared, &cancel).await?;
    let mut tasks = vec![client_task];
    let mut metrics_address = None;
    if let Some(metrics_bind) = options.metrics_bind {
        let (bound, metrics_task) = serve_metrics(metrics_bind, &shared, &cancel).await?;
        metrics_address = bound;
        tasks.push(metrics_task);
    }
    tracing::info!(%address, metrics = ?metrics_address, destinations = shared.destinations.len(), "canal server listening");
    let ha_shutdown = CancellationToken::new();
    // Listening first: a server must be reachable before it can win.
    let ha_tasks = match options.ha {
        Some(ha) => join_the_races(&ha, &shared, &ha_shutdown),
        None => Vec::new(),
    };
    Ok(RunningServer {
        shared,
        address,
        metrics_address,
        cancel,
        tasks,
        ha_shutdown,
        ha_tasks,
    })
}

/// Every destination, started at once when there is no race to run
/// (standalone), else standing by.
async fn start_destinations(
    instances: Vec<(InstanceSettings, crate::cursor::SharedCursorStore)>,
    with_ha: bool,
    cancel: &CancellationToken,
) -> Result<BTreeMap<String, Arc<Destination>>, StartError> {
    let role = if with_ha {
        Role::Standby
    } else {
        Role::Standalone
    };
    let mut destinations = BTreeMap::new();
    for (settings, cursors) in instances {
        let name = settings.destination.clone();
        let destination = Arc::new(Destination::new(settings, cursors, role, cancel.clone()));
        if !with_ha {
            destination
                .start(Lease::forever())
                .await
                .map_err(|source| StartError::Instance {
                    destination: name.clone(),
                    source,
                })?;
        }
        destinations.insert(name, destination);
    }
    Ok(destinations)
}

/// Binds the client port and accepts clients there until `cancel` fires.
async fn listen_for_clients(
    bind_to: SocketAddr,
    shared: &Arc<ServerShared>,
    cancel: &CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), ServerError> {
    let listener = bind(bind_to).await?;
    let address = listener.local_addr().map_err(|source| ServerError::Bind {
        address: bind_to.to_string(),
        source,
    })?;
    let task = tokio::spawn(serve(listener, shared.clone(), cancel.clone()));
    Ok((address, task))
}

/// Binds the metrics port and serves the endpoints until `cancel` fires.
async fn serve_metrics(
    bind_to: SocketAddr,
    shared: &Arc<ServerShared>,
    cancel: &CancellationToken,
) -> Result<(Option<SocketAddr>, JoinHandle<()>), ServerError> {
    let listener = crate::metrics::bind(bind_to)
        .await
        .map_err(|source| ServerError::Bind {
            address: bind_to.to_string(),
            source,
        })?;
    let address = listener.local_addr().ok();
    let task = tokio::spawn(crate::metrics::serve(
        listener,
        shared.clone(),
        cancel.clone(),
    ));
    Ok((address, task))
}

/// Registers this server and each destination's member node, and races for
/// every destination, until `shutdown` fires.
fn join_the_races(
    ha: &HaOptions,
    shared: &ServerShared,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut members = vec![ha::nodes::server_member(&ha.address)];
    for destination in shared.destinations.values() {
        members.push(ha::nodes::destination_member(
            destination.name(),
            &ha.address,
        ));
        let election = Election::new(destination.clone(), ha.zk.clone(), &ha.address);
        tasks.push(tokio::spawn(election.run(shutdown.clone())));
    }
    tasks.push(tokio::spawn(ha::membership::maintain(
        ha.zk.clone(),
        members,
        shutdown.clone(),
    )));
    tasks
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A destination could not start.
    #[error("destination {destination}: {source}")]
    Instance {
        /// Which one.
        destination: String,
        /// Why.
        source: instance::InstanceError,
    },
    /// A port could not be bound.
    #[error("{0}")]
    Server(#[from] ServerError),
}

impl RunningServer {
    /// Graceful stop: active destinations flush their cursors and release
    /// `running` first (a standby takes over at once), then the server stops
    /// accepting, closes sessions, stops every source and flushes the rest.
    pub async fn shutdown(self) {
        self.ha_shutdown.cancel();
        for task in self.ha_tasks {
            let _ = task.await;
        }
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        for destination in self.shared.destinations.values() {
            destination.stop().await;
        }
        tracing::info!("canal server stopped");
    }
}
