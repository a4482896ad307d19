//! The active-pod label: the active Service selects it, so exactly the pod
//! whose IP holds the destination's `running` node carries it.

use k8s_openapi::api::core::v1::Pod;
use kube::{Client, ResourceExt};

use crate::operator::apply;
use crate::operator::build::labels::{ROLE_ACTIVE, ROLE_LABEL};

/// One pod whose role label is wrong, and what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LabelChange {
    pub pod: String,
    pub active: bool,
}

/// The label changes that make `active` the only labelled pod, removals
/// first: two labelled pods at once would split the clients.
pub(super) fn label_changes(pods: &[Pod], active: Option<&str>) -> Vec<LabelChange> {
    let mut changes: Vec<LabelChange> = pods
        .iter()
        .filter_map(|pod| {
            let name = pod.name_any();
            let labelled = pod
                .labels()
                .get(ROLE_LABEL)
                .is_some_and(|v| v == ROLE_ACTIVE);
            let wanted = Some(name.as_str()) == active;
            (labelled != wanted).then_some(LabelChange {
                pod: name,
                active: wanted,
            })
        })
        .collect();
    // Stable: pods keep their order within removals and additions.
    changes.sort_by_key(|change| change.active);
    changes
}

/// Applies [`label_changes`] in order; stops at the first refusal.
pub(super) async fn label_active_pod(
    client: &Client,
    namespace: &str,
    pods: &[Pod],
    active: Option<&str>,
) -> kube::Result<()> {
    for change in label_changes(pods, active) {
        apply::set_active_label(client, namespace, &change.pod, change.active).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(name: &str, labelled: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: labelled.then(|| [(ROLE_LABEL.to_owned(), ROLE_ACTIVE.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn change(pod: &str, active: bool) -> LabelChange {
        LabelChange {
            pod: pod.into(),
            active,
        }
    }

    #[test]
    fn the_old_label_comes_off_before_the_new_one_goes_on() {
        let pods = [
            pod("orders-0", false),
            pod("orders-1", true),
            pod("orders-2", true),
        ];
        assert_eq!(
            label_changes(&pods, Some("orders-0")),
            [
                change("orders-1", false),
                change("orders-2", false),
                change("orders-0", true)
            ]
        );
    }

    #[test]
    fn a_correct_label_is_left_alone_and_no_leader_means_no_label() {
        let pods = [pod("orders-0", true), pod("orders-1", false)];
        assert!(label_changes(&pods, Some("orders-0")).is_empty());
        assert_eq!(label_changes(&pods, None), [change("orders-0", false)]);
    }
}
