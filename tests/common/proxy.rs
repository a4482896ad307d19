//! A TCP proxy that can partition its clients from the target, to cut one
//! canal-server off ZooKeeper while the rest of the cluster still reaches it.
//!
//! `cut()` is a blackhole, like a network that drops packets: connections
//! stay open, nothing is read from either side and nothing is forwarded; new
//! connections are accepted but not connected to the target. No byte is
//! dropped: `heal()` forwards again, on the existing connections too, so
//! what was sent during the cut arrives late — as TCP delivers it after a
//! short partition. To model a partition long enough that the connections
//! are gone for good, call `reset()` (closes every connection) with it.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Forward,
    Cut,
}

/// One listening address forwarding to one target.
pub struct Proxy {
    address: SocketAddr,
    target: SocketAddr,
    flow: watch::Sender<Flow>,
    /// Stops the acceptor and every connection (on drop).
    stop: CancellationToken,
    /// The connections open now, closed together by `reset()`.
    generation: Arc<Mutex<CancellationToken>>,
    accepted: Arc<AtomicUsize>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards to `target`.
    /// Needs a tokio runtime.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .expect("a proxy listener on 127.0.0.1");
        let address = listener.local_addr().expect("the proxy's address");
        let (flow, _) = watch::channel(Flow::Forward);
        let stop = CancellationToken::new();
        let generation = Arc::new(Mutex::new(stop.child_token()));
        let accepted = Arc::new(AtomicUsize::new(0));
        tokio::spawn(accept_loop(
            listener,
            target,
            flow.clone(),
            stop.clone(),
            generation.clone(),
            accepted.clone(),
        ));
        Proxy {
            address,
            target,
            flow,
            stop,
            generation,
            accepted,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops forwarding in both directions, without closing anything.
    pub fn cut(&self) {
        self.flow.send_replace(Flow::Cut);
    }

    /// Forwards again, existing connections included (nothing was lost).
    pub fn heal(&self) {
        self.flow.send_replace(Flow::Forward);
    }

    pub fn is_cut(&self) -> bool {
        *self.flow.borrow() == Flow::Cut
    }

    /// Closes every connection open now (both sides see the close at once,
    /// also during a cut); later connections are not affected.
    pub fn reset(&self) {
        let mut generation = self
            .generation
            .lock()
            .expect("proxy generation lock poisoned");
        generation.cancel();
        *generation = self.stop.child_token();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    flow: watch::Sender<Flow>,
    stop: CancellationToken,
    generation: Arc<Mutex<CancellationToken>>,
    accepted: Arc<AtomicUsize>,
) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accept = listener.accept() => match accept {
                Ok((client, _)) => client,
                // Out of file descriptors and the like: try again shortly.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let cancel = generation
            .lock()
            .expect("proxy generation lock poisoned")
            .clone();
        let flow = flow.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = connection(client, target, flow) => {}
            }
        });
    }
}

/// Forwards one connection until both directions ended; returns early (and
/// so closes both sockets) on an error in either direction.
async fn connection(client: TcpStream, target: SocketAddr, mut flow: watch::Receiver<Flow>) {
    // Accepted during a cut: not connected to the target before the heal.
    if !wait_forward(&mut flow).await {
        return;
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let _ = tokio::try_join!(
        pump(client_read, upstream_write, flow.clone()),
        pump(upstream_read, client_write, flow),
    );
}

/// Copies `from` to `to` while the flow is Forward; at EOF shuts down `to`.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut flow: watch::Receiver<Flow>,
) -> Result<(), ()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if !wait_forward(&mut flow).await {
            return Err(());
        }
        // Reading stops when a cut starts (read is cancel-safe).
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = flow.wait_for(|f| *f == Flow::Cut) => continue,
        };
        let n = match read {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Ok(());
            }
            Ok(n) => n,
            Err(_) => return Err(()),
        };
        // Bytes read just as a cut began are held until the heal.
        if !wait_forward(&mut flow).await {
            return Err(());
        }
        to.write_all(&buffer[..n]).await.map_err(|_| ())?;
    }
}

/// Waits while cut; false if the proxy is gone.
async fn wait_forward(flow: &mut watch::Receiver<Flow>) -> bool {
    flow.wait_for(|f| *f == Flow::Forward).await.is_ok()
}

/// One proxy per ZooKeeper node.
pub struct ProxySet {
    pub proxies: Vec<Proxy>,
}

impl ProxySet {
    /// Proxies for every `host:port` of a ZooKeeper connect string.
    pub fn start(connect_string: &str) -> ProxySet {
        let proxies = connect_string
            .split(',')
            .map(|server| {
                let target = server
                    .trim()
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addresses| addresses.next())
                    .unwrap_or_else(|| {
                        panic!("'{server}' in '{connect_string}' is not a host:port")
                    });
                Proxy::start(target)
            })
            .collect();
        ProxySet { proxies }
    }

    /// `127.0.0.1:a,127.0.0.1:b,...`: connect through the proxies.
    pub fn connect_string(&self) -> String {
        self.proxies
            .iter()
            .map(|p| p.address().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn cut(&self) {
        self.proxies.iter().for_each(Proxy::cut);
    }

    pub fn heal(&self) {
        self.proxies.iter().for_each(Proxy::heal);
    }

    pub fn reset(&self) {
        self.proxies.iter().for_each(Proxy::reset);
    }

    pub fn accepted(&self) -> usize {
        self.proxies.iter().map(Proxy::accepted).sum()
    }
}
