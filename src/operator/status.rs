//! The status a CanalInstance should show, from what the operator saw:
//! pure, so every condition is unit-tested.

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
    pub name: String,
    pub ip: String,
}

/// The destination's nodes in ZooKeeper, in the operator's terms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZkFacts {
    /// `running`: the active server's ip:port and when it took the node.
    pub running: Option<(String, Timestamp)>,
    pub members: Vec<String>,
    pub cursors: Vec<ClientCursorStatus>,
}

/// Whether ZooKeeper could be read.
#[derive(Debug, Clone, PartialEq)]
pub enum ZkState {
    Seen(ZkFacts),
    Connecting,
    Unreachable(String),
}

/// Why the children were not (or were) brought to the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Applied,
    Paused,
    /// The spec (or a Secret it names) is wrong: nothing was changed, and
    /// nothing will change until a human fixes it (Stalled).
    Invalid {
        reason: &'static str,
        message: String,
    },
    /// The spec is valid but the API server refused a child. Children
    /// applied before it may already be at the new spec; the operator
    /// retries, so this is not Stalled.
    ApplyFailed {
        message: String,
    },
}

pub struct Observed<'a> {
    pub outcome: Outcome,
    pub statefulset: Option<&'a StatefulSet>,
    pub pods: &'a [PodAddress],
    pub zookeeper: ZkState,
    pub config_hash: Option<String>,
    pub cursor_reset: Option<CursorResetResult>,
    pub label_selector: String,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CursorResetResult {
    Applied(AppliedCursorReset),
    Failed { nonce: String, message: String },
}

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const PAUSED: &str = "Paused";
pub const CURSOR_RESET: &str = "CursorReset";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

pub fn desired_status(instance: &CanalInstance, observed: &Observed) -> CanalInstanceStatus {
    let previous = instance.status.clone().unwrap_or_default();
    let generation = instance.metadata.generation;
    let desired_replicas = instance.spec.replicas;
    let sts_status = observed.statefulset.and_then(|s| s.status.as_ref());
    let replicas = sts_status.map_or(0, |s| s.replicas);
    let ready = sts_status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = sts_status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let sts_current = observed.statefulset.is_some_and(|s| {
        s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
    });

    let pod_of = |address: &str| -> Option<String> {
        let ip = address.rsplit_once(':').map_or(address, |(ip, _)| ip);
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        observed
            .pods
            .iter()
            .find(|p| p.ip == ip)
            .map(|p| p.name.clone())
    };

    let mut status = CanalInstanceStatus {
        observed_generation: generation,
        conditions: Vec::new(),
        replicas,
        ready_replicas: ready,
        replicas_summary: Some(format!("{ready}/{desired_replicas}")),
        label_selector: Some(observed.label_selector.clone()),
        active_server: None,
        members: Vec::new(),
        cursors: Vec::new(),
        binlog: None,
        binlog_lag_seconds: None,
        config_hash: observed
            .config_hash
            .clone()
            .or(previous.config_hash.clone()),
        cursor_reset: previous.cursor_reset.clone(),
    };
    let zk_problem = match &observed.zookeeper {
        ZkState::Seen(facts) => {
            status.active_server = facts.running.as_ref().map(|(address, since)| ActiveServer {
                address: address.clone(),
                pod: pod_of(address),
                since: Some(since.to_string()),
            });
            status.members = facts
                .members
                .iter()
                .map(|address| Member {
                    address: address.clone(),
                    pod: pod_of(address),
                })
                .collect();
            status.cursors = facts.cursors.clone();
            if let Some(slowest) = slowest(&facts.cursors) {
                if let (Some(journal), Some(position)) = (&slowest.journal_name, slowest.position) {
                    status.binlog = Some(format!("{journal}:{position}"));
                }
                status.binlog_lag_seconds = slowest
                    .timestamp
                    .filter(|t| *t > 0)
                    .map(|t| ((observed.now.as_millisecond() - t) / 1000).max(0));
            }
            None
        }
        ZkState::Connecting | ZkState::Unreachable(_) => {
            // Keep what was last seen rather than blanking the columns (an
            // operator restart starts Connecting); pods are matched again,
            // since a pod name may now belong to another IP.
            status.active_server = previous.active_server.clone().map(|mut active| {
                active.pod = pod_of(&active.address);
                active
            });
            status.members = previous
                .members
                .iter()
                .map(|m| Member {
                    address: m.address.clone(),
                    pod: pod_of(&m.address),
                })
                .collect();
            status.cursors = previous.cursors.clone();
            status.binlog = previous.binlog.clone();
            status.binlog_lag_seconds = previous.binlog_lag_seconds;
            match &observed.zookeeper {
                ZkState::Unreachable(why) => Some(format!("ZooKeeper cannot be read: {why}")),
                _ => None,
            }
        }
    };
    match &observed.cursor_reset {
        Some(CursorResetResult::Applied(applied)) => status.cursor_reset = Some(applied.clone()),
        Some(CursorResetResult::Failed { nonce, message }) => {
            status.cursor_reset = Some(AppliedCursorReset {
                nonce: nonce.clone(),
                applied_at: observed.now.to_string(),
                client_ids: Vec::new(),
                succeeded: false,
                message: Some(message.clone()),
            })
        }
        None => {}
    }

    let paused = instance.spec.paused;
    let mut set = |type_: &str, ok: bool, reason: &str, message: String| {
        set_condition(
            &mut status.conditions,
            &previous.conditions,
            Condition {
                type_: type_.into(),
                status: if ok { "True" } else { "False" }.into(),
                reason: reason.into(),
                message,
                observed_generation: generation,
                last_transition_time: Time(observed.now),
            },
        );
    };

    // Degraded: something needs a human.
    let degraded = match (&observed.outcome, &zk_problem) {
        (Outcome::Invalid { reason, message }, _) => Some((*reason, message.clone())),
        (Outcome::ApplyFailed { message }, _) => Some(("ApplyFailed", message.clone())),
        (_, Some(problem)) => Some(("ZooKeeperUnreachable", problem.clone())),
        _ if desired_replicas > 0 && replicas > 0 && ready == 0 => Some((
            "NoReadyPods",
            format!("none of the {replicas} pods is ready; see their events and logs"),
        )),
        _ => None,
    };
    match &degraded {
        Some((reason, message)) => set(DEGRADED, true, reason, message.clone()),
        None => set(
            DEGRADED,
            false,
            "AsExpected",
            "nothing needs attention".into(),
        ),
    }

    // Progressing: the StatefulSet is not yet at the spec.
    let rolling = observed.statefulset.is_some()
        && (!sts_current
            || updated < desired_replicas
            || ready < desired_replicas
            || replicas != desired_replicas);
    match (&observed.outcome, rolling) {
        (Outcome::Applied, true) => set(
            PROGRESSING,
            true,
            "RollingOut",
            format!("{updated} of {desired_replicas} pods updated, {ready} ready"),
        ),
        (Outcome::Applied, false) if observed.statefulset.is_none() => set(
            PROGRESSING,
            true,
            "Creating",
            "the StatefulSet is being created".into(),
        ),
        _ => set(
            PROGRESSING,
            false,
            "Settled",
            format!("{ready} of {desired_replicas} pods ready at the current spec"),
        ),
    }

    if paused {
        set(
            PAUSED,
            true,
            "Paused",
            "spec.paused is true: changes to the spec are not applied".into(),
        );
    } else {
        set(
            PAUSED,
            false,
            "Reconciling",
            "changes to the spec are applied".into(),
        );
    }

    let active =
        status.active_server.is_some() && !matches!(observed.zookeeper, ZkState::Unreachable(_));
    let (ready_ok, reason, message) = match (&degraded, active, desired_replicas) {
        (_, _, 0) => (false, "ScaledToZero", "spec.replicas is 0".to_owned()),
        (Some((reason, message)), _, _) if *reason != "NoReadyPods" || !active => {
            (false, *reason, message.clone())
        }
        (_, true, _) => {
            let server = status.active_server.as_ref().map_or_else(String::new, |a| {
                a.pod.clone().unwrap_or_else(|| a.address.clone())
            });
            (
                true,
                "Active",
                format!("{server} is serving the destination"),
            )
        }
        (_, false, _) => (
            false,
            "NoActiveServer",
            "no server holds the destination's running node yet".to_owned(),
        ),
    };
    set(READY, ready_ok, reason, message);

    // kstatus (Flux, kubectl wait, cli-utils) reads these two abnormal-true
    // conditions: Reconciling while the instance moves towards its spec,
    // Stalled when it cannot without a human.
    let stalled = match &observed.outcome {
        Outcome::Invalid { reason, message } => Some((*reason, message.clone())),
        _ => None,
    };
    match &stalled {
        Some((reason, message)) => set(STALLED, true, reason, message.clone()),
        None => set(
            STALLED,
            false,
            "AsExpected",
            "nothing blocks reconciliation".into(),
        ),
    }
    let progressing =
        matches!(observed.outcome, Outcome::Applied) && (rolling || observed.statefulset.is_none());
    let waiting_for_leader = !paused && desired_replicas > 0 && !active && stalled.is_none();
    if progressing || waiting_for_leader {
        let message = if progressing {
            "the StatefulSet is rolling out"
        } else {
            "waiting for a server to take the destination"
        };
        set(RECONCILING, true, "Progressing", message.into());
    } else {
        set(
            RECONCILING,
            false,
            "Settled",
            "the instance is at its spec".into(),
        );
    }

    match &observed.cursor_reset {
        Some(CursorResetResult::Applied(applied)) => set(
            CURSOR_RESET,
            true,
            "Applied",
            format!(
                "nonce {}: moved {} to the requested position",
                applied.nonce,
                if applied.client_ids.is_empty() {
                    "no client (none had a cursor)".to_owned()
                } else {
                    applied.client_ids.join(", ")
                }
            ),
        ),
        Some(CursorResetResult::Failed { nonce, message }) => set(
            CURSOR_RESET,
            false,
            "Failed",
            format!("nonce {nonce}: {message}"),
        ),
        None => {
            if let Some(old) = previous.conditions.iter().find(|c| c.type_ == CURSOR_RESET) {
                status.conditions.push(old.clone());
            }
        }
    }
    status
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

/// Keeps lastTransitionTime when the status did not change, so writing
/// the same status twice is a no-op.
fn set_condition(conditions: &mut Vec<Condition>, previous: &[Condition], mut new: Condition) {
    if let Some(old) = previous.iter().find(|c| c.type_ == new.type_)
        && old.status == new.status
    {
        new.last_transition_time = old.last_transition_time.clone();
    }
    conditions.push(new);
}

/// Whether writing `new` would change anything the API shows.
pub fn differs(old: Option<&CanalInstanceStatus>, new: &CanalInstanceStatus) -> bool {
    old != Some(new)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
