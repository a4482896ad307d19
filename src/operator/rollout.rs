//! Rolling a changed pod template, standbys first.
//!
//! The StatefulSet uses `updateStrategy: OnDelete`: the StatefulSet
//! controller recreates a deleted pod from the new template but replaces
//! none by itself. Its own `RollingUpdate` goes from the highest ordinal
//! down, so it restarts the active server whenever that pod happens to have
//! a high ordinal, and again when a standby that then took over is rolled:
//! up to one failover per pod. Here the operator picks the order instead:
//! outdated standbys one at a time, each only when every other pod is
//! Ready, and the active server's pod last, so a whole rollout costs at most
//! one failover (onto a standby that already runs the new template).
//!
//! Pods go through the Eviction API, so the PodDisruptionBudget has the
//! last word, as it has for `kubectl drain`.
//!
//! Pure: [`next`] decides from what the reconcile observed; the reconcile
//! does the eviction.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// The label the StatefulSet controller puts on each pod: the revision of
/// the template it was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Which pod runs the active server, as far as the operator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leader<'a> {
    /// ZooKeeper was not read in this reconcile: any pod may be active.
    Unknown,
    /// ZooKeeper was read: no server is active.
    Nobody,
    /// ZooKeeper was read: this pod's server is active.
    Pod(&'a str),
}

/// What the rollout does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every pod runs the StatefulSet's update revision.
    Done,
    /// Nothing to do now, for this reason; a later pod change comes back.
    Wait(String),
    /// Evict this pod.
    Evict {
        /// The pod's name.
        pod: String,
        /// Why this pod is next.
        why: String,
    },
}

/// The next step of the rollout of `statefulset` over its `pods`.
pub fn next(statefulset: &StatefulSet, pods: &[Pod], leader: Leader<'_>) -> Step {
    let generation = statefulset.metadata.generation;
    let status = statefulset.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation);
    let Some(revision) = status.and_then(|s| s.update_revision.as_deref()) else {
        return Step::Wait("the StatefulSet controller has not reported a revision yet".into());
    };
    if generation.is_some() && observed < generation {
        return Step::Wait("the StatefulSet controller has not seen the latest template".into());
    }

    // Only the StatefulSet's own: a stray pod that matches the selector is
    // not the rollout's to evict.
    let pods: Vec<&Pod> = pods.iter().filter(|p| owned(p, statefulset)).collect();
    let live: Vec<&Pod> = pods.iter().copied().filter(|p| !terminating(p)).collect();
    let mut outdated: Vec<&Pod> = live
        .iter()
        .copied()
        .filter(|p| p.labels().get(REVISION_LABEL).map(String::as_str) != Some(revision))
        .collect();
    if outdated.is_empty() {
        return Step::Done;
    }
    if let Some(pod) = pods.iter().find(|p| terminating(p)) {
        return Step::Wait(format!("pod {} is terminating", pod.name_any()));
    }
    let is_leader = |pod: &Pod| match leader {
        Leader::Pod(name) => pod.name_any() == name,
        Leader::Nobody => false,
        Leader::Unknown => true,
    };
    if leader == Leader::Unknown {
        return Step::Wait(
            "the active server is not known (ZooKeeper not read); its pod must go last".into(),
        );
    }
    // Highest ordinal first, as the StatefulSet controller would.
    outdated.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));

    // An outdated standby that is not Ready serves nobody: replacing it
    // first costs nothing, and a crash-looping pod cannot stall the rollout.
    if let Some(pod) = outdated.iter().find(|p| !is_leader(p) && !ready(p)) {
        return evict(pod, "an outdated standby that is not ready");
    }
    let replicas = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    if (live.len() as i64) < i64::from(replicas) {
        return Step::Wait(format!(
            "{} of {replicas} pods exist; waiting for the StatefulSet controller",
            live.len()
        ));
    }
    if let Some(pod) = live.iter().find(|p| !ready(p)) {
        // A lone pod has no standby to wait for.
        if replicas == 1 && outdated.iter().any(|o| o.name_any() == pod.name_any()) {
            return evict(pod, "the only pod, outdated and not ready");
        }
        return Step::Wait(format!("pod {} is not ready", pod.name_any()));
    }
    if let Some(pod) = outdated.iter().find(|p| !is_leader(p)) {
        return evict(pod, "an outdated standby");
    }
    // Only the active server's pod is left: every other pod runs the new
    // template and is Ready, so one of them takes over.
    match outdated.first() {
        Some(pod) => evict(pod, "the active server, last; a standby takes over"),
        None => Step::Done,
    }
}

fn evict(pod: &Pod, why: &str) -> Step {
    Step::Evict {
        pod: pod.name_any(),
        why: why.into(),
    }
}

fn owned(pod: &Pod, statefulset: &StatefulSet) -> bool {
    let Some(uid) = statefulset.metadata.uid.as_deref() else {
        return false;
    };
    pod.owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && owner.uid == uid)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The ordinal at the end of a StatefulSet pod's name (`orders-2` → 2).
fn ordinal(pod: &Pod) -> u32 {
    pod.name_any()
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;

    fn statefulset(replicas: i32, revision: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(2),
                uid: Some("sts-uid".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(2),
                update_revision: Some(revision.into()),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, revision: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(REVISION_LABEL.to_owned(), revision.to_owned())].into()),
                owner_references: Some(vec![OwnerReference {
                    controller: Some(true),
                    uid: "sts-uid".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn evicts(step: Step) -> String {
        match step {
            Step::Evict { pod, .. } => pod,
            other => panic!("expected an eviction, got {other:?}"),
        }
    }

    #[test]
    fn nothing_to_do_when_every_pod_runs_the_update_revision() {
        let pods = [pod("o-0", "new", true), pod("o-1", "new", true)];
        assert_eq!(
            next(&statefulset(2, "new"), &pods, Leader::Pod("o-0")),
            Step::Done
        );
    }

    #[test]
    fn standbys_go_first_highest_ordinal_first_and_the_active_pod_last() {
        let sts = statefulset(3, "new");
        let mut pods = vec![
            pod("o-0", "old", true),
            pod("o-1", "old", true),
            pod("o-2", "old", true),
        ];
        // o-2 is active: the standbys o-1 then o-0 go first.
        assert_eq!(evicts(next(&sts, &pods, Leader::Pod("o-2"))), "o-1");
        pods[1] = pod("o-1", "new", true);
        assert_eq!(evicts(next(&sts, &pods, Leader::Pod("o-2"))), "o-0");
        pods[0] = pod("o-0", "new", true);
        assert_eq!(evicts(next(&sts, &pods, Leader::Pod("o-2"))), "o-2");
        pods[2] = pod("o-2", "new", true);
        assert_eq!(next(&sts, &pods, Leader::Pod("o-0")), Step::Done);
    }

    #[test]
    fn one_pod_at_a_time_each_only_when_the_others_are_ready() {
        let sts = statefulset(3, "new");
        // The replaced standby is not Ready yet.
        let pods = [
            pod("o-0", "old", true),
            pod("o-1", "new", false),
            pod("o-2", "old", true),
        ];
        assert!(matches!(
            next(&sts, &pods, Leader::Pod("o-2")),
            Step::Wait(why) if why.contains("o-1")
        ));
        // One pod is missing (just evicted, not yet recreated).
        let pods = [pod("o-0", "old", true), pod("o-2", "old", true)];
        assert!(matches!(
            next(&sts, &pods, Leader::Pod("o-2")),
            Step::Wait(why) if why.contains("2 of 3")
        ));
        // One is terminating.
        let mut leaving = pod("o-1", "old", true);
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let pods = [pod("o-0", "old", true), leaving, pod("o-2", "old", true)];
        assert!(matches!(
            next(&sts, &pods, Leader::Pod("o-2")),
            Step::Wait(why) if why.contains("terminating")
        ));
    }

    #[test]
    fn an_outdated_standby_that_is_not_ready_is_replaced_at_once() {
        // A crash-looping outdated pod must not stall the rollout that
        // would fix it.
        let sts = statefulset(2, "new");
        let pods = [pod("o-0", "old", true), pod("o-1", "old", false)];
        assert_eq!(evicts(next(&sts, &pods, Leader::Pod("o-0"))), "o-1");
    }

    #[test]
    fn the_active_pod_waits_for_an_updated_ready_standby() {
        let sts = statefulset(2, "new");
        let pods = [pod("o-0", "old", true), pod("o-1", "new", false)];
        assert!(matches!(
            next(&sts, &pods, Leader::Pod("o-0")),
            Step::Wait(_)
        ));
    }

    #[test]
    fn nothing_is_evicted_while_the_active_server_is_unknown() {
        let sts = statefulset(2, "new");
        let pods = [pod("o-0", "old", true), pod("o-1", "old", false)];
        assert!(matches!(next(&sts, &pods, Leader::Unknown), Step::Wait(_)));
        // Known to be nobody: any pod may go.
        assert_eq!(evicts(next(&sts, &pods, Leader::Nobody)), "o-1");
    }

    #[test]
    fn a_single_replica_is_replaced_when_it_is_the_only_pod() {
        let sts = statefulset(1, "new");
        let pods = [pod("o-0", "old", true)];
        assert_eq!(evicts(next(&sts, &pods, Leader::Pod("o-0"))), "o-0");
    }

    #[test]
    fn standbys_wait_while_the_active_pod_is_not_ready() {
        let sts = statefulset(2, "new");
        let pods = [pod("o-0", "old", false), pod("o-1", "old", true)];
        assert!(matches!(
            next(&sts, &pods, Leader::Pod("o-0")),
            Step::Wait(why) if why.contains("o-0")
        ));
        let sts = statefulset(1, "new");
        let pods = [pod("o-0", "old", false)];
        assert_eq!(evicts(next(&sts, &pods, Leader::Pod("o-0"))), "o-0");
    }

    #[test]
    fn a_pod_the_statefulset_does_not_own_is_left_alone() {
        let sts = statefulset(1, "new");
        let mut stray = pod("o-9", "old", true);
        stray.metadata.owner_references = None;
        let pods = [pod("o-0", "new", true), stray];
        assert_eq!(next(&sts, &pods, Leader::Pod("o-0")), Step::Done);
    }

    #[test]
    fn waits_until_the_statefulset_controller_has_seen_the_template() {
        let mut sts = statefulset(2, "new");
        sts.metadata.generation = Some(3);
        let pods = [pod("o-0", "old", true), pod("o-1", "old", true)];
        assert!(matches!(
            next(&sts, &pods, Leader::Pod("o-0")),
            Step::Wait(_)
        ));
        sts.status = None;
        assert!(matches!(
            next(&sts, &pods, Leader::Pod("o-0")),
            Step::Wait(_)
        ));
    }
}
