//! The status a CanalInstance should show, from what the operator saw:
//! pure, with one small function per condition, so each is unit-tested.
//!
//! `desired_status` gathers the facts every condition reads (the pods
//! against the spec, the ZooKeeper columns, the problems), asks each
//! condition function for its verdict, and stamps the verdicts with the
//! generation and a transition time that only moves when a condition flips.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::crd::{
    ActiveServer, AppliedCursorReset, CanalInstance, CanalInstanceStatus, ClientCursorStatus,
    Member,
};

/// A pod of the instance, as the status maps ZooKeeper addresses to it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodAddress {
    /// The pod's name, shown next to its address.
    pub name: String,
    /// The pod's IP, as servers register it in ZooKeeper (no port).
    pub ip: String,
}

/// The destination's nodes in ZooKeeper, in the operator's terms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZkFacts {
    /// `running`: the active server's ip:port and when it took the node.
    pub running: Option<(String, Timestamp)>,
    /// The `ip:port` of every server registered for the destination.
    pub members: Vec<String>,
    /// Every client's acknowledged position.
    pub cursors: Vec<ClientCursorStatus>,
}

/// Whether ZooKeeper could be read.
#[derive(Debug, Clone, PartialEq)]
pub enum ZkState {
    /// The nodes as last read.
    Seen(ZkFacts),
    /// No answer yet (an operator restart starts here): the status keeps
    /// what it showed last.
    Connecting,
    /// ZooKeeper cannot be read: why, in words the Degraded condition
    /// shows the user.
    Unreachable(String),
}

/// Why the children were not (or were) brought to the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every child is at the spec.
    Applied,
    /// `spec.paused`: nothing was applied.
    Paused,
    /// The spec (or a Secret it names) is wrong: nothing was changed, and
    /// nothing will change until a human fixes it (Stalled).
    Invalid {
        /// The conditions' reason (`InvalidSpec`, `SecretMissing`, ...).
        reason: &'static str,
        /// What to fix, naming the field.
        message: String,
    },
    /// The spec is valid but the API server refused a child. Children
    /// applied before it may already be at the new spec; the operator
    /// retries, so this is not Stalled.
    ApplyFailed {
        /// What was refused and why.
        message: String,
    },
}

/// Everything the status is computed from besides the CanalInstance: what
/// one reconcile pass did and saw.
pub struct Observed<'a> {
    /// What happened to the children.
    pub outcome: Outcome,
    /// The instance's StatefulSet, if it exists.
    pub statefulset: Option<&'a StatefulSet>,
    /// The instance's pods, to name the pod behind a ZooKeeper address.
    pub pods: &'a [PodAddress],
    /// The destination's nodes, or why they could not be read.
    pub zookeeper: ZkState,
    /// The hash the pods run with; `None` keeps the last one shown.
    pub config_hash: Option<String>,
    /// What this pass's `spec.cursorReset` did, if it ran one.
    pub cursor_reset: Option<CursorResetResult>,
    /// The pods' label selector (for the scale subresource).
    pub label_selector: String,
    /// The time new transitions and failed resets are stamped with.
    pub now: Timestamp,
}

/// What a cursor reset did.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorResetResult {
    /// The cursors were moved, as the status records it.
    Applied(AppliedCursorReset),
    /// The reset of `nonce` failed: `message` says why.
    Failed {
        /// The nonce of the failed `spec.cursorReset` (not tried again).
        nonce: String,
        /// Why it failed.
        message: String,
    },
}

/// Condition type: a server holds the destination and nothing is wrong.
pub const READY: &str = "Ready";
/// Condition type: the StatefulSet is moving towards the spec.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something needs a human.
pub const DEGRADED: &str = "Degraded";
/// Condition type: `spec.paused` holds changes back.
pub const PAUSED: &str = "Paused";
/// Condition type: the outcome of the last cursor reset.
pub const CURSOR_RESET: &str = "CursorReset";
/// Condition type (kstatus): the instance is moving towards its spec.
pub const RECONCILING: &str = "Reconciling";
/// Condition type (kstatus): the instance cannot reach its spec without a
/// human.
pub const STALLED: &str = "Stalled";

/// The status to write for `instance`, given what the operator observed.
pub fn desired_status(instance: &CanalInstance, observed: &Observed) -> CanalInstanceStatus {
    let previous = instance.status.clone().unwrap_or_default();
    let pods = PodCounts::of(observed.statefulset, instance.spec.replicas);
    let columns = zookeeper_columns(&observed.zookeeper, &previous, observed.pods, observed.now);
    let active = columns
        .active_server
        .as_ref()
        .filter(|_| !matches!(observed.zookeeper, ZkState::Unreachable(_)));
    let degraded = degraded(&observed.outcome, &observed.zookeeper, &pods);
    let stalled = stalled(&observed.outcome);
    let paused = instance.spec.paused;
    let verdicts = [
        degraded_condition(degraded.as_ref()),
        progressing_condition(&observed.outcome, &pods),
        paused_condition(paused),
        ready_condition(degraded.as_ref(), active, pods.desired),
        stalled_condition(stalled.as_ref()),
        reconciling_condition(
            &observed.outcome,
            &pods,
            paused,
            active.is_some(),
            stalled.is_some(),
        ),
    ];
    let generation = instance.metadata.generation;
    let stamp = |verdict: Verdict| verdict.stamp(&previous.conditions, generation, observed.now);
    let mut conditions: Vec<Condition> = verdicts.into_iter().map(stamp).collect();
    match &observed.cursor_reset {
        Some(result) => conditions.push(stamp(cursor_reset_condition(result))),
        // The last reset's condition stays until the next reset.
        None => conditions.extend(
            previous
                .conditions
                .iter()
                .find(|c| c.type_ == CURSOR_RESET)
                .cloned(),
        ),
    }
    CanalInstanceStatus {
        observed_generation: generation,
        conditions,
        replicas: pods.replicas,
        ready_replicas: pods.ready,
        replicas_summary: Some(format!("{}/{}", pods.ready, pods.desired)),
        label_selector: Some(observed.label_selector.clone()),
        active_server: columns.active_server,
        members: columns.members,
        cursors: columns.cursors,
        binlog: columns.binlog,
        binlog_lag_seconds: columns.binlog_lag_seconds,
        config_hash: observed.config_hash.clone().or(previous.config_hash),
        cursor_reset: cursor_reset_record(
            observed.cursor_reset.as_ref(),
            previous.cursor_reset,
            observed.now,
        ),
    }
}

/// The StatefulSet's pods against `spec.replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct PodCounts {
    /// `spec.replicas`.
    desired: i32,
    /// Whether the StatefulSet exists.
    exists: bool,
    /// Whether the StatefulSet controller has seen its latest generation.
    current: bool,
    replicas: i32,
    ready: i32,
    updated: i32,
}

impl PodCounts {
    fn of(statefulset: Option<&StatefulSet>, desired: i32) -> PodCounts {
        let status = statefulset.and_then(|s| s.status.as_ref());
        PodCounts {
            desired,
            exists: statefulset.is_some(),
            current: statefulset.is_some_and(|s| {
                s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
            }),
            replicas: status.map_or(0, |s| s.replicas),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            updated: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        }
    }

    /// The StatefulSet exists but is not yet at the spec.
    fn rolling(&self) -> bool {
        self.exists
            && (!self.current
                || self.updated < self.desired
                || self.ready < self.desired
                || self.replicas != self.desired)
    }
}

/// The columns the status fills from ZooKeeper.
#[derive(Debug, Clone, PartialEq, Default)]
struct ZkColumns {
    active_server: Option<ActiveServer>,
    members: Vec<Member>,
    cursors: Vec<ClientCursorStatus>,
    binlog: Option<String>,
    binlog_lag_seconds: Option<i64>,
}

fn zookeeper_columns(
    zookeeper: &ZkState,
    previous: &CanalInstanceStatus,
    pods: &[PodAddress],
    now: Timestamp,
) -> ZkColumns {
    match zookeeper {
        ZkState::Seen(facts) => seen_columns(facts, pods, now),
        ZkState::Connecting | ZkState::Unreachable(_) => last_seen_columns(previous, pods),
    }
}

fn seen_columns(facts: &ZkFacts, pods: &[PodAddress], now: Timestamp) -> ZkColumns {
    let slowest = slowest(&facts.cursors);
    ZkColumns {
        active_server: facts.running.as_ref().map(|(address, since)| ActiveServer {
            address: address.clone(),
            pod: pod_of(pods, address),
            since: Some(since.to_string()),
        }),
        members: members(facts.members.iter().map(String::as_str), pods),
        cursors: facts.cursors.clone(),
        binlog: slowest.and_then(binlog_position),
        binlog_lag_seconds: slowest.and_then(|cursor| lag_seconds(cursor, now)),
    }
}

/// What was shown last, rather than blanking the columns (an operator
/// restart starts Connecting); pods are matched again, since a pod name
/// may now belong to another IP.
fn last_seen_columns(previous: &CanalInstanceStatus, pods: &[PodAddress]) -> ZkColumns {
    ZkColumns {
        active_server: previous.active_server.clone().map(|mut active| {
            active.pod = pod_of(pods, &active.address);
            active
        }),
        members: members(previous.members.iter().map(|m| m.address.as_str()), pods),
        cursors: previous.cursors.clone(),
        binlog: previous.binlog.clone(),
        binlog_lag_seconds: previous.binlog_lag_seconds,
    }
}

fn members<'a>(addresses: impl Iterator<Item = &'a str>, pods: &[PodAddress]) -> Vec<Member> {
    addresses
        .map(|address| Member {
            address: address.to_owned(),
            pod: pod_of(pods, address),
        })
        .collect()
}

/// The pod whose IP is the host of `address` (`ip:port`, `[ipv6]:port`).
fn pod_of(pods: &[PodAddress], address: &str) -> Option<String> {
    let ip = address.rsplit_once(':').map_or(address, |(ip, _)| ip);
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    pods.iter().find(|p| p.ip == ip).map(|p| p.name.clone())
}

/// The client furthest behind: the one whose position bounds what the
/// source must keep.
fn slowest(cursors: &[ClientCursorStatus]) -> Option<&ClientCursorStatus> {
    cursors
        .iter()
        .filter(|c| c.error.is_none() && c.journal_name.is_some())
        .min_by(|a, b| {
            (a.journal_name.as_deref(), a.position).cmp(&(b.journal_name.as_deref(), b.position))
        })
}

/// `file:position`, when the cursor has both.
fn binlog_position(cursor: &ClientCursorStatus) -> Option<String> {
    let (journal, position) = (cursor.journal_name.as_ref()?, cursor.position?);
    Some(format!("{journal}:{position}"))
}

/// Whole seconds since the acknowledged event (never negative: clocks
/// differ); `None` when the event's time is unknown.
fn lag_seconds(cursor: &ClientCursorStatus, now: Timestamp) -> Option<i64> {
    cursor
        .timestamp
        .filter(|t| *t > 0)
        .map(|t| ((now.as_millisecond() - t) / 1000).max(0))
}

/// The reset the status records: this pass's, or the last one.
fn cursor_reset_record(
    result: Option<&CursorResetResult>,
    previous: Option<AppliedCursorReset>,
    now: Timestamp,
) -> Option<AppliedCursorReset> {
    match result {
        Some(CursorResetResult::Applied(applied)) => Some(applied.clone()),
        Some(CursorResetResult::Failed { nonce, message }) => Some(AppliedCursorReset {
            nonce: nonce.clone(),
            applied_at: now.to_string(),
            client_ids: Vec::new(),
            succeeded: false,
            message: Some(message.clone()),
        }),
        None => previous,
    }
}

/// Something wrong, as a condition's reason and message.
#[derive(Debug, Clone, PartialEq)]
struct Problem {
    reason: &'static str,
    message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// What needs a human, most important first: the spec, a refused apply,
/// ZooKeeper, then pods that are all unready.
fn degraded(outcome: &Outcome, zookeeper: &ZkState, pods: &PodCounts) -> Option<Problem> {
    match (outcome, zookeeper) {
        (Outcome::Invalid { reason, message }, _) => Some(Problem::new(reason, message.as_str())),
        (Outcome::ApplyFailed { message }, _) => {
            Some(Problem::new("ApplyFailed", message.as_str()))
        }
        (_, ZkState::Unreachable(why)) => Some(Problem::new(
            "ZooKeeperUnreachable",
            format!("ZooKeeper cannot be read: {why}"),
        )),
        _ if pods.desired > 0 && pods.replicas > 0 && pods.ready == 0 => Some(Problem::new(
            "NoReadyPods",
            format!(
                "none of the {} pods is ready; see their events and logs",
                pods.replicas
            ),
        )),
        _ => None,
    }
}

/// What blocks reconciliation until a human acts: only an invalid spec
/// (a refused apply is retried).
fn stalled(outcome: &Outcome) -> Option<Problem> {
    match outcome {
        Outcome::Invalid { reason, message } => Some(Problem::new(reason, message.as_str())),
        _ => None,
    }
}

/// One condition before it is stamped with a generation and a time.
#[derive(Debug, Clone, PartialEq)]
struct Verdict {
    type_: &'static str,
    holds: bool,
    reason: &'static str,
    message: String,
}

impl Verdict {
    fn new(
        type_: &'static str,
        holds: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Verdict {
        Verdict {
            type_,
            holds,
            reason,
            message: message.into(),
        }
    }

    /// The condition, keeping the previous lastTransitionTime when the
    /// status did not flip, so writing the same status twice is a no-op.
    fn stamp(self, previous: &[Condition], generation: Option<i64>, now: Timestamp) -> Condition {
        let status = if self.holds { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == self.type_)
            .filter(|old| old.status == status)
            .map_or(Time(now), |old| old.last_transition_time.clone());
        Condition {
            type_: self.type_.into(),
            status: status.into(),
            reason: self.reason.into(),
            message: self.message,
            observed_generation: generation,
            last_transition_time,
        }
    }
}

fn degraded_condition(problem: Option<&Problem>) -> Verdict {
    match problem {
        Some(problem) => Verdict::new(DEGRADED, true, problem.reason, problem.message.as_str()),
        None => Verdict::new(DEGRADED, false, "AsExpected", "nothing needs attention"),
    }
}

fn progressing_condition(outcome: &Outcome, pods: &PodCounts) -> Verdict {
    let PodCounts {
        desired,
        ready,
        updated,
        ..
    } = *pods;
    match (outcome, pods.rolling()) {
        (Outcome::Applied, true) => Verdict::new(
            PROGRESSING,
            true,
            "RollingOut",
            format!("{updated} of {desired} pods updated, {ready} ready"),
        ),
        (Outcome::Applied, false) if !pods.exists => Verdict::new(
            PROGRESSING,
            true,
            "Creating",
            "the StatefulSet is being created",
        ),
        _ => Verdict::new(
            PROGRESSING,
            false,
            "Settled",
            format!("{ready} of {desired} pods ready at the current spec"),
        ),
    }
}

fn paused_condition(paused: bool) -> Verdict {
    if paused {
        Verdict::new(
            PAUSED,
            true,
            "Paused",
            "spec.paused is true: changes to the spec are not applied",
        )
    } else {
        Verdict::new(
            PAUSED,
            false,
            "Reconciling",
            "changes to the spec are applied",
        )
    }
}

/// `active`: the server holding the destination, while ZooKeeper can be
/// read. Pods that are all unready do not make an active server unready:
/// it still serves.
fn ready_condition(
    degraded: Option<&Problem>,
    active: Option<&ActiveServer>,
    desired: i32,
) -> Verdict {
    match (degraded, active) {
        _ if desired == 0 => Verdict::new(READY, false, "ScaledToZero", "spec.replicas is 0"),
        (Some(problem), _) if problem.reason != "NoReadyPods" || active.is_none() => {
            Verdict::new(READY, false, problem.reason, problem.message.as_str())
        }
        (_, Some(server)) => {
            let name = server.pod.as_deref().unwrap_or(&server.address);
            Verdict::new(
                READY,
                true,
                "Active",
                format!("{name} is serving the destination"),
            )
        }
        (_, None) => Verdict::new(
            READY,
            false,
            "NoActiveServer",
            "no server holds the destination's running node yet",
        ),
    }
}

// kstatus (Flux, kubectl wait, cli-utils) reads the next two abnormal-true
// conditions: Reconciling while the instance moves towards its spec,
// Stalled when it cannot without a human.

fn stalled_condition(problem: Option<&Problem>) -> Verdict {
    match problem {
        Some(problem) => Verdict::new(STALLED, true, problem.reason, problem.message.as_str()),
        None => Verdict::new(
            STALLED,
            false,
            "AsExpected",
            "nothing blocks reconciliation",
        ),
    }
}

fn reconciling_condition(
    outcome: &Outcome,
    pods: &PodCounts,
    paused: bool,
    active: bool,
    stalled: bool,
) -> Verdict {
    let rolling_out = matches!(outcome, Outcome::Applied) && (pods.rolling() || !pods.exists);
    let waiting_for_leader = !paused && pods.desired > 0 && !active && !stalled;
    if rolling_out {
        Verdict::new(
            RECONCILING,
            true,
            "Progressing",
            "the StatefulSet is rolling out",
        )
    } else if waiting_for_leader {
        Verdict::new(
            RECONCILING,
            true,
            "Progressing",
            "waiting for a server to take the destination",
        )
    } else {
        Verdict::new(RECONCILING, false, "Settled", "the instance is at its spec")
    }
}

fn cursor_reset_condition(result: &CursorResetResult) -> Verdict {
    match result {
        CursorResetResult::Applied(applied) => {
            let moved = if applied.client_ids.is_empty() {
                "no client (none had a cursor)".to_owned()
            } else {
                applied.client_ids.join(", ")
            };
            Verdict::new(
                CURSOR_RESET,
                true,
                "Applied",
                format!(
                    "nonce {}: moved {moved} to the requested position",
                    applied.nonce
                ),
            )
        }
        CursorResetResult::Failed { nonce, message } => Verdict::new(
            CURSOR_RESET,
            false,
            "Failed",
            format!("nonce {nonce}: {message}"),
        ),
    }
}

/// Whether writing `new` would change anything the API shows.
pub fn differs(old: Option<&CanalInstanceStatus>, new: &CanalInstanceStatus) -> bool {
    old != Some(new)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
