//! `canal-server tail`: a canal client for people and tests. Subscribes,
//! prints every change (canal's example-client layout, or JSON lines),
//! acknowledges after printing; with --zk it follows the destination's
//! active server across failovers.

use std::{
    io::{self, Write},
    time::Duration,
};

use clap::Args;

use canal::{
    client::{
        CanalClient, Login, Received,
        cluster::{self, ClientLock},
        print,
    },
    protocol::{entry::EntryType, json::entry_to_json},
};

use crate::output::broken_pipe_is_fine;

#[derive(Args)]
pub struct TailArgs {
    /// Server address, host:port (without --zk).
    #[arg(long, required_unless_present = "zk")]
    addr: Option<String>,
    /// ZooKeeper connect string: find the active server there and follow it.
    #[arg(long)]
    zk: Option<String>,
    #[arg(long)]
    destination: String,
    /// Client id (canal's default 1001).
    #[arg(long, default_value = "1001")]
    client_id: String,
    #[arg(long, default_value = "")]
    user: String,
    #[arg(long, default_value = "", hide_default_value = true)]
    password: String,
    /// Subscription filter (replaces the destination's table filter).
    #[arg(long, default_value = "")]
    filter: String,
    /// Entries per GET (ITEMSIZE) or KiB per GET (MEMSIZE, canal's default).
    #[arg(long, default_value_t = 1000)]
    batch_size: i32,
    /// One JSON line per entry (the protobuf JSON mapping, with batchId).
    #[arg(long)]
    json: bool,
    /// Do not acknowledge (the server keeps the batches outstanding).
    #[arg(long)]
    no_ack: bool,
    /// Stop after this many row changes (0: follow forever).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Stop after this long without changes (0: never).
    #[arg(long, default_value_t = 0)]
    idle_exit_ms: u64,
}

pub fn tail(args: TailArgs) -> Result<(), String> {
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(follow(args))
}

/// Where to connect next.
async fn resolve(
    args: &TailArgs,
    zookeeper: Option<&zookeeper_client::Client>,
) -> Result<String, String> {
    let Some(zookeeper) = zookeeper else {
        return args
            .addr
            .clone()
            .ok_or_else(|| "--addr or --zk is required".to_owned());
    };
    loop {
        match cluster::active_server(zookeeper, &args.destination).await {
            Ok(Some(address)) => return Ok(address),
            Ok(None) => {
                tracing::info!(destination = %args.destination, "no active server yet; waiting")
            }
            Err(error) => tracing::warn!(%error, "cannot read the active server from ZooKeeper"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect_zookeeper(servers: &str) -> Result<zookeeper_client::Client, String> {
    zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(servers)
        .await
        .map_err(|e| format!("cannot connect to ZooKeeper at {servers}: {e}"))
}

/// Rows printed so far and when data last came, across reconnects.
struct Progress {
    rows: u64,
    last_data: tokio::time::Instant,
}

async fn follow(args: TailArgs) -> Result<(), String> {
    let login = Login {
        user: args.user.clone(),
        password: args.password.clone(),
        idle_ms: 0,
    };
    let mut progress = Progress {
        rows: 0,
        last_data: tokio::time::Instant::now(),
    };
    let Some(servers) = &args.zk else {
        return consume(&args, None, None, &login, &mut progress).await;
    };
    // Like canal's cluster connector: one active consumer per client id,
    // through the {dest}/{cid}/running lock; the others stand by.
    let host = canal::ha::address::route_to(servers)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let mut zookeeper = connect_zookeeper(servers).await?;
    loop {
        let lock = match ClientLock::acquire(&zookeeper, &args.destination, &args.client_id, &host)
            .await
        {
            Ok(lock) => lock,
            Err(error) => {
                tracing::warn!(%error, "cannot take the client lock; reconnecting to ZooKeeper");
                tokio::time::sleep(Duration::from_millis(500)).await;
                zookeeper = connect_zookeeper(servers).await?;
                continue;
            }
        };
        tracing::info!(destination = %args.destination, client_id = %args.client_id, "holding the client lock");
        let outcome = tokio::select! {
            outcome = consume(&args, Some(&zookeeper), Some(&lock), &login, &mut progress) => outcome,
            _ = canal::signals::stop_requested() => {
                // Hand the client id over at once instead of after our
                // session times out.
                tracing::info!("stopping: releasing the client lock");
                lock.release().await;
                return Ok(());
            }
            _ = lock.lost() => {
                tracing::warn!("lost the client lock; standing by");
                if !matches!(
                    zookeeper.state(),
                    zookeeper_client::SessionState::SyncConnected
                        | zookeeper_client::SessionState::Disconnected
                        | zookeeper_client::SessionState::ConnectedReadOnly
                ) {
                    zookeeper = connect_zookeeper(servers).await?;
                }
                continue;
            }
        };
        lock.release().await;
        return outcome;
    }
}

/// The first retry after a failed server, and the longest pause between
/// retries of the same failure.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Subscribes and prints until done; with ZooKeeper, follows the active
/// server across failovers.
async fn consume(
    args: &TailArgs,
    zookeeper: Option<&zookeeper_client::Client>,
    lock: Option<&ClientLock>,
    login: &Login,
    progress: &mut Progress,
) -> Result<(), String> {
    // While ZooKeeper still names a server that cannot serve (a crashed
    // leader's session has not expired yet, the pod came back as a
    // standby), the same failure repeats: said once, retried less often.
    let mut last_failure = None;
    let mut delay = RETRY_FIRST;
    loop {
        let address = resolve(args, zookeeper).await?;
        let mut subscribed = false;
        let session = async {
            let mut client = CanalClient::connect(&address, login, Duration::from_secs(10)).await?;
            if let (Some(lock), Some(local)) = (lock, client.local_address()) {
                let _ = lock.set_address(&local.to_string()).await;
            }
            client
                .subscribe(&args.destination, &args.client_id, &args.filter)
                .await?;
            tracing::info!(%address, destination = %args.destination, "subscribed");
            subscribed = true;
            loop {
                let received = client
                    .get(args.batch_size, Some(Duration::from_millis(500)))
                    .await?;
                if received.batch_id == -1 {
                    if args.idle_exit_ms > 0
                        && progress.last_data.elapsed() >= Duration::from_millis(args.idle_exit_ms)
                    {
                        return Ok(true);
                    }
                    continue;
                }
                progress.last_data = tokio::time::Instant::now();
                progress.rows += row_count(&received);
                if let Err(error) = show(&received, args.json) {
                    return Err(canal::client::ClientError::Io(error));
                }
                if !args.no_ack {
                    client.ack(received.batch_id).await?;
                }
                if args.count > 0 && progress.rows >= args.count {
                    return Ok(true);
                }
            }
        };
        let outcome = session.await;
        if subscribed {
            last_failure = None;
        }
        match outcome {
            Ok(_) => return Ok(()),
            Err(canal::client::ClientError::Io(error))
                if error.kind() == io::ErrorKind::BrokenPipe =>
            {
                return broken_pipe_is_fine(error);
            }
            Err(error) if zookeeper.is_some() => {
                let failure = (address.clone(), std::mem::discriminant(&error));
                if last_failure.as_ref() == Some(&failure) {
                    tracing::debug!(%error, %address, "the server still fails; retrying");
                    delay = (delay * 2).min(RETRY_MAX);
                } else {
                    tracing::warn!(%error, %address, "lost the server; looking for the active one");
                    last_failure = Some(failure);
                    delay = RETRY_FIRST;
                }
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

fn row_count(received: &Received) -> u64 {
    use prost::Message;
    received
        .entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter_map(|e| canal::protocol::entry::RowChange::decode(e.store_value.as_slice()).ok())
        .filter(|rc| rc.is_ddl != Some(true))
        .map(|rc| rc.row_datas.len() as u64)
        .sum()
}

fn show(received: &Received, json: bool) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if json {
        for entry in &received.entries {
            let mut value = entry_to_json(entry).map_err(|e| io::Error::other(e.to_string()))?;
            if let Some(object) = value.as_object_mut() {
                object.insert("batchId".into(), received.batch_id.into());
            }
            writeln!(out, "{value}")?;
        }
    } else {
        write!(out, "{}", print::batch_block(received))?;
    }
    out.flush()
}
