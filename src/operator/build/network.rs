//! The Services and the PodDisruptionBudget.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use super::labels::{self, Names};
use crate::operator::crd::CanalInstance;

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Routes to the active server only (the operator labels it), so clients
/// without ZooKeeper get HA through one stable name.
pub fn active_service(instance: &CanalInstance) -> Service {
    let names = Names::of(instance);
    let mut selector = labels::selector(&names);
    selector.insert(labels::ROLE_LABEL.into(), labels::ROLE_ACTIVE.into());
    Service {
        metadata: child_meta(instance, names.active_service()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![port("canal", instance.spec.server.ports.client)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Gives every pod a DNS name, ready or not (a fenced server still answers
/// its metrics).
pub fn members_service(instance: &CanalInstance) -> Service {
    let names = Names::of(instance);
    let ports = &instance.spec.server.ports;
    Service {
        metadata: child_meta(instance, names.members_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector(&names)),
            ports: Some(vec![
                port("canal", ports.client),
                port("metrics", ports.metrics),
            ]),
            ..Default::default()
        }),
        status: None,
    }
}

/// One pod down at a time: a drain never takes the standby and the active
/// server together.
pub fn pod_disruption_budget(instance: &CanalInstance) -> PodDisruptionBudget {
    let names = Names::of(instance);
    PodDisruptionBudget {
        metadata: child_meta(instance, names.pod_disruption_budget()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            // A pod that is not Ready serves nobody: draining or replacing
            // it must not wait for the budget it is using up.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&names)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}
