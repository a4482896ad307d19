//! The reads of the children a pass reports on: the StatefulSet and the
//! instance's pods, read after the apply so the status and the rollout
//! judge what the apply left (a StatefulSet read before its first apply
//! would not exist yet; one read before a template change would not show
//! the new revision).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::operator::build::labels::{self, Names};
use crate::operator::status::PodAddress;

/// The children of one instance as the API server has them.
pub(super) struct Children {
    pub statefulset: Option<StatefulSet>,
    pub pods: Vec<Pod>,
}

/// Reads the StatefulSet, then the pods, of the instance `names` names.
pub(super) async fn children(
    client: &Client,
    namespace: &str,
    names: &Names,
) -> kube::Result<Children> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let statefulset = statefulsets.get_opt(&names.statefulset()).await?;
    let pods = instance_pods(client, namespace, names).await?;
    Ok(Children { statefulset, pods })
}

/// The pods of the instance `names` names, by its labels.
pub(super) async fn instance_pods(
    client: &Client,
    namespace: &str,
    names: &Names,
) -> kube::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&labels::selector_string(names));
    Ok(pods.list(&params).await?.items)
}

/// The pods that have an IP, as the status maps ZooKeeper addresses to
/// pods.
pub(super) fn pod_addresses(pods: &[Pod]) -> Vec<PodAddress> {
    pods.iter()
        .filter_map(|pod| {
            Some(PodAddress {
                name: pod.name_any(),
                ip: pod.status.as_ref()?.pod_ip.clone()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn a_pod_without_an_ip_has_no_address() {
        let pod = |name: &str, ip: Option<&str>| Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        };
        let addresses = pod_addresses(&[pod("orders-0", Some("10.0.0.1")), pod("orders-1", None)]);
        assert_eq!(
            addresses,
            [PodAddress {
                name: "orders-0".into(),
                ip: "10.0.0.1".into()
            }]
        );
    }
}
