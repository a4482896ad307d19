//! Shared ZooKeeper sessions: one per (connect string, credentials), kept
//! open while someone uses it and replaced by a new one when it expires.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, Error as ZkError, SessionState};

use super::{ObserverSettings, key::SessionKey};
use crate::ha::zk_session::DigestAuth;

/// Where a shared session stands.
#[derive(Clone)]
pub(crate) enum Link {
    Connecting,
    /// The last attempt to open a session failed: why.
    Unreachable(SessionError),
    /// A session; `generation` grows with every new one.
    Ready {
        client: Client,
        generation: u64,
    },
}

/// A session shared by every destination on one ensemble; closed when the
/// last user drops it.
pub(crate) struct SharedSession {
    link: watch::Receiver<Link>,
    cancel: CancellationToken,
}

impl SharedSession {
    /// Starts connecting in the background (needs a Tokio runtime).
    pub fn start(key: SessionKey, settings: ObserverSettings) -> Arc<SharedSession> {
        let (sender, link) = watch::channel(Link::Connecting);
        let cancel = CancellationToken::new();
        tokio::spawn(keep(key, settings, sender, cancel.clone()));
        Arc::new(SharedSession { link, cancel })
    }

    /// Where the session stands, kept current.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.link.clone()
    }
}

impl Drop for SharedSession {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Why there is no session to an ensemble; the message is a sentence for
/// the status and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// ZooKeeper answered the connection attempt with an error.
    #[error("cannot connect to ZooKeeper at {connect}: {error}")]
    Refused {
        /// The connect string.
        connect: String,
        /// What ZooKeeper (or the network) said.
        error: ZkError,
    },
    /// No answer in time.
    #[error("cannot connect to ZooKeeper at {connect}: no answer within {after:?}")]
    NoAnswer {
        /// The connect string.
        connect: String,
        /// How long it waited.
        after: Duration,
    },
    /// The session was refused for its digest credentials.
    #[error(
        "ZooKeeper at {connect} refused the session's credentials (check the digest user and password)"
    )]
    CredentialsRefused {
        /// The connect string.
        connect: String,
    },
}

/// Opens a session.
pub(crate) async fn open(
    connect: &str,
    auth: Option<&DigestAuth>,
    settings: &ObserverSettings,
) -> Result<Client, SessionError> {
    let mut connector = Client::connector()
        .with_session_timeout(settings.session_timeout)
        .with_connection_timeout(settings.connection_timeout);
    if let Some(auth) = auth {
        connector = connector.with_auth("digest", auth.credentials());
    }
    match tokio::time::timeout(settings.request_timeout(), connector.connect(connect)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(SessionError::Refused {
            connect: connect.to_owned(),
            error,
        }),
        Err(_) => Err(SessionError::NoAnswer {
            connect: connect.to_owned(),
            after: settings.request_timeout(),
        }),
    }
}

/// Whether a session in `state` is over: nothing more happens on it.
pub(crate) fn ended(state: SessionState) -> bool {
    matches!(
        state,
        SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
    )
}

/// Opens sessions until `cancel`: a new one whenever the current one ends.
async fn keep(
    key: SessionKey,
    settings: ObserverSettings,
    sender: watch::Sender<Link>,
    cancel: CancellationToken,
) {
    let mut generation = 0;
    let mut backoff = Duration::from_millis(200);
    loop {
        let opened = tokio::select! {
            opened = open(&key.connect, key.auth.as_ref(), &settings) => opened,
            _ = cancel.cancelled() => return,
        };
        let client = match opened {
            Ok(client) => client,
            Err(reason) => {
                tracing::warn!(connect = %key.connect, %reason, retry_in = ?backoff, "ZooKeeper unreachable");
                sender.send_replace(Link::Unreachable(reason));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        generation += 1;
        tracing::info!(connect = %key.connect, session = %client.session_id(), generation, "ZooKeeper session open");
        let mut states = client.state_watcher();
        sender.send_replace(Link::Ready {
            client: client.clone(),
            generation,
        });
        let mut state = states.state();
        while !ended(state) {
            state = tokio::select! {
                state = states.changed() => state,
                _ = cancel.cancelled() => return,
            };
        }
        tracing::warn!(connect = %key.connect, session = %client.session_id(), ?state, "ZooKeeper session ended; opening a new one");
        if state == SessionState::AuthFailed {
            sender.send_replace(Link::Unreachable(SessionError::CredentialsRefused {
                connect: key.connect.clone(),
            }));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = cancel.cancelled() => return,
            }
        } else {
            sender.send_replace(Link::Connecting);
        }
    }
}
