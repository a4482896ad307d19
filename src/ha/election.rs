//! One destination's race for `{dest}/running`, as canal runs it (the
//! creator of the ephemeral node is active, the others watch it; the
//! previous owner retries at once, the others after a delay) plus fencing:
//! the active server stops serving the moment its lease runs out, its
//! session ends, or another server shows up as owner.

use std::{sync::Arc, time::Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, Error as ZkError, EventType, SessionState};

use super::{
    HaStatus, Role,
    lease::Lease,
    nodes::{self, ServerRunning},
    zk_session::ZkSession,
};

/// Whether a failure may pass by itself, so trying again can help, or
/// needs someone to change something first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A dependency did not answer or the state moved on (ZooKeeper, a
    /// store that closed): retrying can help.
    Transient,
    /// Configuration or stored data that is wrong: retrying alone will not
    /// help.
    Permanent,
}

impl FailureKind {
    /// The kind as a log or metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        }
    }
}

/// Why a candidate that won the race could not start serving. The election
/// gives the destination up either way and races again after a back-off;
/// the kind tells the log reader whether to wait or to act.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct ActivationError {
    kind: FailureKind,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ActivationError {
    /// Wraps the candidate's own error.
    pub fn new(kind: FailureKind, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ActivationError {
            kind,
            source: Box::new(source),
        }
    }

    /// Whether racing again can help by itself.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }
}

/// What the election starts and stops: one destination of this server.
#[async_trait::async_trait]
pub trait Candidate: Send + Sync + 'static {
    /// The destination's name.
    fn destination(&self) -> &str;
    /// Where the election reports role, terms and fencings.
    fn status(&self) -> &HaStatus;
    /// Starts serving; the candidate checks `lease` before every reply.
    async fn activate(&self, lease: Arc<Lease>) -> Result<(), ActivationError>;
    /// Stops serving after writing the clients' cursors (the lease holds).
    async fn release(&self);
    /// Stops serving at once and writes nothing: another server may
    /// already be active.
    async fn fence(&self);
}

/// What to do after one round.
enum Next {
    Race,
    RaceAfterDelay,
    Stop,
}

/// One destination's race, run by [`Election::run`].
pub struct Election {
    candidate: Arc<dyn Candidate>,
    zk: Arc<ZkSession>,
    /// This server's registered `ip:port`.
    address: String,
    running: String,
    /// When the last owner's node was seen vanishing: the start of a takeover.
    vacated_at: Option<Instant>,
    /// Wins in a row that could not start serving: backs off the next race.
    failed_activations: u32,
}

impl Election {
    /// The race of `candidate` through `zk`, this server registered as `address`.
    pub fn new(candidate: Arc<dyn Candidate>, zk: Arc<ZkSession>, address: &str) -> Self {
        let running = nodes::running(candidate.destination());
        Election {
            candidate,
            zk,
            address: address.to_owned(),
            running,
            vacated_at: None,
            failed_activations: 0,
        }
    }

    /// Races until `shutdown` fires; an active server then releases
    /// `running` (after its final cursor flush) so a standby takes over at
    /// once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let destination = self.candidate.destination().to_owned();
        let mut next = Next::Race;
        loop {
            match next {
                Next::Stop => return,
                Next::RaceAfterDelay => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.zk.settings().race_delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                Next::Race => {}
            }
            if shutdown.is_cancelled() {
                return;
            }
            let client = self.zk.client();
            let lease = self.zk.lease();
            let mut generations = self.zk.generations();
            generations.borrow_and_update();
            if !lease.is_valid() {
                // No live session to race with yet.
                tokio::select! {
                    _ = lease.held() => {}
                    _ = generations.changed() => {}
                    _ = shutdown.cancelled() => return,
                }
                next = Next::Race;
                continue;
            }
            next = match self
                .attempt(&client, &lease, &mut generations, &shutdown)
                .await
            {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(%destination, %error, "ZooKeeper request failed during the race; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    Next::Race
                }
            };
        }
    }

    async fn attempt(
        &mut self,
        client: &Client,
        lease: &Arc<Lease>,
        generations: &mut watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> Result<Next, ZkError> {
        let mine = ServerRunning::active(&self.address).to_json();
        match nodes::create_ephemeral(client, &self.running, &mine).await {
            Ok(_) => return Ok(self.lead(client, lease, generations, shutdown).await),
            Err(ZkError::NodeExists) => {}
            Err(e) => return Err(e),
        }
        let (data, stat, watcher) = match client.get_and_watch_data(&self.running).await {
            Ok(read) => read,
            Err(ZkError::NoNode) => {
                self.vacated_at.get_or_insert_with(Instant::now);
                return Ok(Next::Race);
            }
            Err(e) => return Err(e),
        };
        let owner = ServerRunning::parse(&data);
        if stat.ephemeral_owner == client.session_id().0 {
            if owner.as_ref().is_some_and(|o| o.address == self.address) {
                // Still ours: the connection came back before the session expired.
                return Ok(self.lead(client, lease, generations, shutdown).await);
            }
            // Ours but rewritten by hand to name another server: give it up
            // and race again rather than serve under a wrong address.
            nodes::delete_own(client, &self.running).await?;
            return Ok(Next::Race);
        }
        if self.candidate.status().role() != Role::Standby {
            self.candidate.status().set_role(Role::Standby);
            tracing::info!(
                destination = %self.candidate.destination(),
                ha_event = "standby",
                owner = owner.as_ref().map_or("?", |o| o.address.as_str()),
                "standing by"
            );
        }
        let next = tokio::select! {
            event = watcher.changed() => match event.event_type {
                EventType::NodeDeleted => {
                    self.vacated_at = Some(Instant::now());
                    // A planned hand-over (active:false first) or our own
                    // node from before a restart: no reason to wait.
                    let planned = owner.as_ref().is_some_and(|o| !o.active);
                    let ours = owner.as_ref().is_some_and(|o| o.address == self.address);
                    if planned || ours { Next::Race } else { Next::RaceAfterDelay }
                }
                _ => Next::Race,
            },
            _ = generations.changed() => Next::Race,
            _ = shutdown.cancelled() => Next::Stop,
        };
        Ok(next)
    }

    /// Serves while this session owns `running` and the lease holds.
    async fn lead(
        &mut self,
        client: &Client,
        lease: &Arc<Lease>,
        generations: &mut watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> Next {
        let destination = self.candidate.destination().to_owned();
        if let Err(error) = self.candidate.activate(lease.clone()).await {
            return self.activation_failed(client, error, shutdown).await;
        }
        self.term_started();
        loop {
            let read = tokio::select! {
                read = client.get_and_watch_data(&self.running) => read,
                _ = lease.expired() => return self.fenced_until_recovered(lease, generations, shutdown).await,
                _ = shutdown.cancelled() => {
                    self.release(client).await;
                    return Next::Stop;
                }
            };
            let (data, stat, watcher) = match read {
                Ok(read) => read,
                Err(ZkError::NoNode) => {
                    self.fence("the running node is gone (session expired or deleted by hand)")
                        .await;
                    return Next::Race;
                }
                Err(error) => {
                    // The connection is down: the lease decides how long
                    // serving may go on.
                    tracing::debug!(%destination, %error, "cannot read the running node");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                        _ = lease.expired() => {}
                    }
                    continue;
                }
            };
            if let Some(next) = self.still_ours(client, &data, stat.ephemeral_owner).await {
                return next;
            }
            tokio::select! {
                event = watcher.changed() => {
                    if event.event_type == EventType::Session
                        && matches!(event.session_state, SessionState::Expired | SessionState::Closed | SessionState::AuthFailed)
                    {
                        self.fence("the ZooKeeper session ended").await;
                        return Next::Race;
                    }
                }
                _ = lease.expired() => return self.fenced_until_recovered(lease, generations, shutdown).await,
                _ = generations.changed() => {
                    self.fence("the ZooKeeper session ended").await;
                    return Next::Race;
                }
                _ = shutdown.cancelled() => {
                    self.release(client).await;
                    return Next::Stop;
                }
            }
        }
    }

    /// Won the race but the candidate cannot serve: give the destination
    /// up (another server may manage) and race again after a back-off that
    /// grows with each failure in a row.
    async fn activation_failed(
        &mut self,
        client: &Client,
        error: ActivationError,
        shutdown: &CancellationToken,
    ) -> Next {
        self.failed_activations += 1;
        let pause = std::time::Duration::from_secs(1 << self.failed_activations.min(5));
        tracing::error!(
            destination = %self.candidate.destination(),
            %error,
            kind = error.kind().as_str(),
            retry_in = ?pause,
            "won the race but cannot serve; giving the destination up"
        );
        let _ = nodes::delete_own(client, &self.running).await;
        self.candidate.status().set_role(Role::Standby);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return Next::Stop,
        }
        Next::RaceAfterDelay
    }

    /// Serving began: a new term, and the takeover's duration if the
    /// previous owner's node was seen vanishing.
    fn term_started(&mut self) {
        self.failed_activations = 0;
        let failover = self.vacated_at.take().map(|at| at.elapsed());
        let status = self.candidate.status();
        status.term_started(failover);
        tracing::info!(
            destination = %self.candidate.destination(),
            ha_event = "active",
            term = status.terms(),
            address = %self.address,
            failover_ms = failover.map(|d| d.as_millis() as u64),
            "became active"
        );
    }

    /// Checks the `running` node read while leading (its data and its
    /// owner's session): `None` while it is still ours to serve, else what
    /// to do after stepping down.
    async fn still_ours(&self, client: &Client, data: &[u8], owner: i64) -> Option<Next> {
        if owner != client.session_id().0 {
            self.fence("another server owns the running node").await;
            return Some(Next::Race);
        }
        match ServerRunning::parse(data) {
            Some(running) if running.address != self.address => {
                self.fence("the running node names another server").await;
                Some(Next::Race)
            }
            Some(running) if !running.active => {
                tracing::info!(
                    destination = %self.candidate.destination(),
                    "release requested (active:false in the running node)"
                );
                self.release(client).await;
                Some(Next::RaceAfterDelay)
            }
            _ => None,
        }
    }

    /// The lease ran out: stop serving, then wait until ZooKeeper answers
    /// again on the same session (the node may still be ours) or a new
    /// session exists (the previous owner races at once).
    async fn fenced_until_recovered(
        &mut self,
        lease: &Arc<Lease>,
        generations: &mut watch::Receiver<u64>,
        shutdown: &CancellationToken,
    ) -> Next {
        let reason = if lease.has_ended() {
            "the ZooKeeper session ended".to_owned()
        } else {
            format!(
                "no answer from ZooKeeper for {:?}: the session may expire",
                self.zk.lease_length()
            )
        };
        self.fence(&reason).await;
        tokio::select! {
            _ = lease.held() => Next::Race,
            _ = generations.changed() => Next::Race,
            _ = shutdown.cancelled() => Next::Stop,
        }
    }

    async fn fence(&self, reason: &str) {
        self.candidate.fence().await;
        self.candidate.status().fenced(reason);
        tracing::warn!(
            destination = %self.candidate.destination(),
            ha_event = "fenced",
            reason,
            "stopped serving"
        );
    }

    /// Planned hand-over: announce it, stop after the final cursor flush,
    /// then delete `running` so a standby starts at once from those cursors.
    async fn release(&self, client: &Client) {
        let released = ServerRunning {
            active: false,
            address: self.address.clone(),
        };
        if let Ok(Some(stat)) = client.check_stat(&self.running).await
            && stat.ephemeral_owner == client.session_id().0
        {
            let _ = client
                .set_data(&self.running, &released.to_json(), Some(stat.version))
                .await;
        }
        self.candidate.release().await;
        self.candidate.status().set_role(Role::Standby);
        match nodes::delete_own(client, &self.running).await {
            Ok(()) => tracing::info!(
                destination = %self.candidate.destination(),
                ha_event = "released",
                "released the destination"
            ),
            Err(error) => tracing::warn!(
                destination = %self.candidate.destination(),
                %error,
                "could not delete the running node; it goes with the session"
            ),
        }
    }
}
