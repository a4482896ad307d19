//! One step of the rollout of a changed pod template: `operator::rollout`
//! decides which pod goes next, this evicts it.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::DynamicObject;

use super::context::Context;
use super::error::Error;
use super::events::EventToPublish;
use crate::operator::apply;
use crate::operator::crd::CanalInstanceStatus;
use crate::operator::rollout::{self, Leader, Step};

/// Which pod runs the active server, by the status just computed; known
/// only from a fresh ZooKeeper view.
pub(super) fn leader(zookeeper_seen: bool, status: &CanalInstanceStatus) -> Leader<'_> {
    match (zookeeper_seen, status.active_server.as_ref()) {
        (false, _) => Leader::Unknown,
        (true, None) => Leader::Nobody,
        (true, Some(active)) => match active.pod.as_deref() {
            Some(pod) => Leader::Pod(pod),
            // Active at an address no pod of ours has (yet).
            None => Leader::Unknown,
        },
    }
}

/// Takes the next step of the rollout of `statefulset` over `pods`.
pub(super) async fn roll_out(
    object: &DynamicObject,
    ctx: &Context,
    namespace: &str,
    statefulset: &StatefulSet,
    pods: &[Pod],
    leader: Leader<'_>,
) -> Result<(), Error> {
    match rollout::next(statefulset, pods, leader) {
        Step::Done => {}
        Step::Wait(why) => {
            tracing::debug!(instance = %object.name_any(), %why, "rollout waits");
        }
        Step::Evict { pod, why } => {
            if apply::evict(&ctx.evictions, namespace, &pod).await? {
                ctx.publish(object, evicted(statefulset, &pod, &why)).await;
            } else {
                tracing::debug!(%pod, "eviction refused for now (PodDisruptionBudget) or pod gone");
            }
        }
    }
    Ok(())
}

fn evicted(statefulset: &StatefulSet, pod: &str, why: &str) -> EventToPublish {
    let revision = statefulset
        .status
        .as_ref()
        .and_then(|s| s.update_revision.clone())
        .unwrap_or_default();
    EventToPublish::normal(
        "PodEvicted",
        "RollOut",
        format!("evicted {pod} ({why}) to run revision {revision}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::ActiveServer;

    #[test]
    fn the_leader_is_known_only_from_a_fresh_view_and_a_pod_of_ours() {
        let status = |pod: Option<&str>| CanalInstanceStatus {
            active_server: Some(ActiveServer {
                address: "10.0.0.1:11111".into(),
                pod: pod.map(Into::into),
                since: None,
            }),
            ..Default::default()
        };
        let on_pod = status(Some("orders-1"));
        assert_eq!(leader(true, &on_pod), Leader::Pod("orders-1"));
        assert_eq!(leader(false, &on_pod), Leader::Unknown);
        assert_eq!(leader(true, &status(None)), Leader::Unknown);
        assert_eq!(
            leader(true, &CanalInstanceStatus::default()),
            Leader::Nobody
        );
    }
}
