//! The process's ZooKeeper session: one client shared by cursors and
//! elections, its lease kept fresh by a steady trickle of reads, and a new
//! session (with a new lease) when the old one expires.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, SessionState};

use super::{HaSettings, lease::Lease};

/// ZooKeeper digest credentials, `user:password` (`canal.zookeeper.auth`,
/// the operator's `spec.zookeeper.auth`): sent with every new session.
/// `Debug` shows the user only, so the password never reaches a log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DigestAuth {
    /// `user:password`, as ZooKeeper's digest scheme takes it.
    credentials: String,
    user_len: usize,
}

impl DigestAuth {
    /// `user:password` (the password may contain `:`); `None` without a
    /// user.
    pub fn parse(text: &str) -> Option<DigestAuth> {
        let (user, _) = text.split_once(':')?;
        (!user.is_empty()).then(|| DigestAuth {
            credentials: text.to_owned(),
            user_len: user.len(),
        })
    }

    /// `None` for an empty user or one containing `:`.
    pub fn new(user: &str, password: &str) -> Option<DigestAuth> {
        if user.contains(':') {
            return None;
        }
        Self::parse(&format!("{user}:{password}"))
    }

    /// The user name (safe to log).
    pub fn user(&self) -> &str {
        &self.credentials[..self.user_len]
    }

    /// The bytes for `Connector::with_auth("digest", ..)`.
    pub fn credentials(&self) -> &[u8] {
        self.credentials.as_bytes()
    }
}

impl std::fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth")
            .field("user", &self.user())
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why ZooKeeper could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to ZooKeeper at {servers} (canal.zkServers): {reason}")]
pub struct ConnectError {
    /// The connect string.
    pub servers: String,
    /// What the client library said.
    pub reason: String,
}

struct Current {
    client: Client,
    lease: Arc<Lease>,
}

/// The process's ZooKeeper session; see the module.
pub struct ZkSession {
    servers: String,
    settings: HaSettings,
    auth: Option<DigestAuth>,
    current: RwLock<Current>,
    /// Bumped for every new session; elections re-register on a change.
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for ZkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkSession")
            .field("servers", &self.servers)
            .field("session", &self.client().session_id())
            .finish()
    }
}

impl ZkSession {
    /// Connects, then keeps the session's lease renewed (and replaces an
    /// expired session) until `cancel` fires.
    pub async fn connect(
        servers: &str,
        settings: HaSettings,
        cancel: &CancellationToken,
    ) -> Result<Arc<ZkSession>, ConnectError> {
        Self::connect_with_auth(servers, settings, None, cancel).await
    }

    /// [`Self::connect`], authenticating every session with `auth`.
    pub async fn connect_with_auth(
        servers: &str,
        settings: HaSettings,
        auth: Option<DigestAuth>,
        cancel: &CancellationToken,
    ) -> Result<Arc<ZkSession>, ConnectError> {
        let client = open(servers, &settings, auth.as_ref()).await?;
        let session = Arc::new(ZkSession {
            servers: servers.to_owned(),
            settings,
            auth,
            current: RwLock::new(Current {
                client,
                lease: Lease::new(),
            }),
            generation: watch::Sender::new(0),
        });
        tokio::spawn(session.clone().keep(cancel.clone()));
        Ok(session)
    }

    /// A session around an existing client, without lease keeping (its
    /// lease always holds): for cursor storage in tools and tests.
    pub fn from_client(client: Client) -> Arc<ZkSession> {
        Arc::new(ZkSession {
            servers: String::new(),
            settings: HaSettings::default(),
            auth: None,
            current: RwLock::new(Current {
                client,
                lease: Lease::forever(),
            }),
            generation: watch::Sender::new(0),
        })
    }

    /// The current client (a cheap handle).
    pub fn client(&self) -> Client {
        self.read().client.clone()
    }

    /// The current session's lease.
    pub fn lease(&self) -> Arc<Lease> {
        self.read().lease.clone()
    }

    /// The current session's id.
    pub fn session_id(&self) -> i64 {
        self.read().client.session_id().0
    }

    /// The HA timing it was opened with.
    pub fn settings(&self) -> &HaSettings {
        &self.settings
    }

    /// The current session's lease length (from its granted timeout).
    pub fn lease_length(&self) -> Duration {
        self.settings
            .lease_length(self.read().client.session_timeout())
    }

    /// Changes with every new session.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    async fn keep(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let (client, lease) = {
                let current = self.read();
                (current.client.clone(), current.lease.clone())
            };
            let session = client.session_id();
            let negotiated = client.session_timeout();
            if negotiated != self.settings.session_timeout {
                tracing::warn!(
                    %session,
                    configured = ?self.settings.session_timeout,
                    granted = ?negotiated,
                    "ZooKeeper granted another session timeout (its minSessionTimeout / \
                     maxSessionTimeout); fencing and failover follow the granted one"
                );
            }
            let renewer = tokio::spawn(renew(
                client.clone(),
                lease.clone(),
                self.settings,
                cancel.clone(),
            ));
            let ended = watch_state(&client, &cancel).await;
            renewer.abort();
            lease.end();
            let Some(state) = ended else {
                return;
            };
            tracing::warn!(%session, ?state, "ZooKeeper session ended; opening a new one");
            let mut backoff = Duration::from_millis(100);
            let client = loop {
                tokio::select! {
                    opened = open(&self.servers, &self.settings, self.auth.as_ref()) => match opened {
                        Ok(client) => break client,
                        Err(error) => tracing::warn!(%error, "retrying"),
                    },
                    _ = cancel.cancelled() => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            };
            tracing::info!(session = %client.session_id(), "new ZooKeeper session");
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = Current {
                client,
                lease: Lease::new(),
            };
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

async fn open(
    servers: &str,
    settings: &HaSettings,
    auth: Option<&DigestAuth>,
) -> Result<Client, ConnectError> {
    let mut connector = Client::connector()
        .with_session_timeout(settings.session_timeout)
        .with_connection_timeout(settings.connection_timeout);
    if let Some(auth) = auth {
        connector = connector.with_auth("digest", auth.credentials());
    }
    let error = |reason: String| ConnectError {
        servers: servers.to_owned(),
        reason,
    };
    let connect = async |servers: &str| {
        tokio::time::timeout(
            settings.connection_timeout * 3,
            connector.clone().connect(servers),
        )
        .await
        .map_err(|_| error("no answer".into()))?
        .map_err(|e| error(e.to_string()))
    };
    let client = connect(servers).await?;
    // A chroot ("host:2181/canal") must exist before anything can be made
    // under it; an ensemble shared by teams starts without it. Created once,
    // as Kafka does with its chroot; otherwise every create fails NoNode.
    if let Some((hosts, chroot)) = servers.split_once('/')
        && !chroot.is_empty()
        && client
            .check_stat("/")
            .await
            .map_err(|e| error(e.to_string()))?
            .is_none()
    {
        let root = connect(hosts).await?;
        let made = super::nodes::ensure_persistent(&root, &format!("/{chroot}")).await;
        drop(root);
        made.map_err(|e| error(format!("cannot create the chroot /{chroot}: {e}")))?;
        tracing::info!(chroot = %format!("/{chroot}"), "created the ZooKeeper chroot");
    }
    Ok(client)
}

/// Logs state changes until the session ends (`Some(state)`) or `cancel`
/// fires (`None`).
async fn watch_state(client: &Client, cancel: &CancellationToken) -> Option<SessionState> {
    let mut states = client.state_watcher();
    loop {
        let state = tokio::select! {
            state = states.changed() => state,
            _ = cancel.cancelled() => return None,
        };
        match state {
            SessionState::Disconnected => {
                tracing::warn!(session = %client.session_id(), "ZooKeeper connection lost; reconnecting")
            }
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                tracing::info!(session = %client.session_id(), "ZooKeeper connection restored")
            }
            ended => return Some(ended),
        }
    }
}

/// A request the ensemble must agree on: a multi holding one version check
/// of `/` (any version) changes nothing, but is proposed and committed by a
/// quorum like any write, and the leader refuses it for an expired session.
/// A plain read would not do: a server cut off from the quorum keeps
/// answering reads until it notices (up to syncLimit × tickTime), while the
/// majority may already have expired the session.
async fn quorum_round_trip(client: &Client) -> Result<(), RoundTripError> {
    let mut multi = client.new_multi_writer();
    multi.add_check_version("/", -1)?;
    multi.commit().await?;
    Ok(())
}

/// Why a quorum round trip proved nothing: the lease is then not renewed.
#[derive(Debug, thiserror::Error)]
enum RoundTripError {
    #[error("cannot build the check of /: {0}")]
    Build(#[from] zookeeper_client::Error),
    #[error("the quorum did not commit the check of /: {0}")]
    Commit(#[from] zookeeper_client::MultiWriteError),
}

/// Renews `lease` with one quorum round trip every renew interval. Probes run
/// side by side, so one stuck on a dying connection does not hold back the
/// next one on a fresh connection.
async fn renew(client: Client, lease: Arc<Lease>, settings: HaSettings, cancel: CancellationToken) {
    let negotiated = client.session_timeout();
    let length = settings.lease_length(negotiated);
    let mut tick = tokio::time::interval(settings.renew_interval(negotiated));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probes = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        while probes.try_join_next().is_some() {}
        if probes.len() >= 8 {
            continue;
        }
        let client = client.clone();
        let lease = lease.clone();
        probes.spawn(async move {
            let sent = Instant::now();
            // An answer later than one lease would not extend it anyway.
            if let Ok(Ok(())) = tokio::time::timeout(length, quorum_round_trip(&client)).await {
                lease.renew(sent, length);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::DigestAuth;

    #[test]
    fn digest_auth_parses_and_never_shows_the_password() {
        let auth = DigestAuth::parse("canal:s3cr:et").unwrap();
        assert_eq!(auth.user(), "canal");
        assert_eq!(auth.credentials(), b"canal:s3cr:et");
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("canal") && !shown.contains("s3cr"),
            "{shown}"
        );
        assert_eq!(DigestAuth::new("canal", "s3cr:et"), Some(auth));
        assert_eq!(DigestAuth::parse("no-colon"), None);
        assert_eq!(DigestAuth::parse(":password"), None);
        assert_eq!(DigestAuth::new("a:b", "c"), None);
    }
}
