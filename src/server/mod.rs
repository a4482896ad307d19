//! The canal server: destinations (instances) and the TCP listener that
//! serves canal clients.

pub mod instance;
pub mod session;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use instance::{Instance, InstanceSettings};

use crate::protocol::auth::Credentials;

/// What sessions share: the destinations this process serves and the
/// client credentials.
#[derive(Debug)]
pub struct ServerShared {
    pub instances: BTreeMap<String, Arc<Instance>>,
    pub credentials: Credentials,
}

impl ServerShared {
    /// The instance serving `destination`, if this server runs it.
    pub fn instance(&self, destination: &str) -> Option<Arc<Instance>> {
        self.instances.get(destination).cloned()
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address}: {source} (check canal.ip / canal.port)")]
    Bind {
        address: String,
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
                sessions.spawn(session::serve(stream, peer, shared, cancel));
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
    pub credentials: Credentials,
    pub instances: Vec<(InstanceSettings, crate::cursor::SharedCursorStore)>,
}

/// A started server.
pub struct RunningServer {
    pub shared: Arc<ServerShared>,
    /// The bound client address.
    pub address: SocketAddr,
    pub metrics_address: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts every destination, then listens for clients and metrics.
pub async fn start(options: StartOptions) -> Result<RunningServer, StartError> {
    let cancel = CancellationToken::new();
    let mut instances = BTreeMap::new();
    for (settings, cursors) in options.instances {
        let name = settings.destination.clone();
        let instance = Instance::start(settings, cursors, &cancel)
            .await
            .map_err(|source| StartError::Instance {
                destination: name.clone(),
                source,
            })?;
        instances.insert(name, instance);
    }
    let shared = Arc::new(ServerShared {
        instances,
        credentials: options.credentials,
    });
    let listener = bind(options.bind).await?;
    let address = listener.local_addr().map_err(|source| ServerError::Bind {
        address: options.bind.to_string(),
        source,
    })?;
    let mut tasks = vec![tokio::spawn(serve(
        listener,
        shared.clone(),
        cancel.clone(),
    ))];
    let mut metrics_address = None;
    if let Some(metrics_bind) = options.metrics_bind {
        let listener =
            crate::metrics::bind(metrics_bind)
                .await
                .map_err(|source| ServerError::Bind {
                    address: metrics_bind.to_string(),
                    source,
                })?;
        metrics_address = listener.local_addr().ok();
        tasks.push(tokio::spawn(crate::metrics::serve(
            listener,
            shared.clone(),
            cancel.clone(),
        )));
    }
    tracing::info!(%address, metrics = ?metrics_address, destinations = shared.instances.len(), "canal server listening");
    Ok(RunningServer {
        shared,
        address,
        metrics_address,
        cancel,
        tasks,
    })
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("destination {destination}: {source}")]
    Instance {
        destination: String,
        source: instance::InstanceError,
    },
    #[error("{0}")]
    Server(#[from] ServerError),
}

impl RunningServer {
    /// Graceful stop: stop accepting, close sessions, stop every source and
    /// flush every cursor.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        for instance in self.shared.instances.values() {
            instance.stop().await;
        }
        tracing::info!("canal server stopped");
    }
}
