//! Pure functions from a CanalInstance (and the Secrets' versions) to the
//! objects that should exist. No client: unit tests call them directly.

pub mod labels;
mod network;
pub mod properties;
mod workload;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use sha1::{Digest, Sha1};

use crate::operator::crd::CanalInstance;
use labels::Names;
pub use network::{active_service, members_service, pod_disruption_budget};
pub use properties::Rendered;
pub use workload::statefulset;

/// What build needs besides the CanalInstance.
#[derive(Debug, Clone)]
pub struct BuildInputs {
    /// The image when spec.image is unset.
    pub default_image: String,
    /// From [`config_hash`].
    pub config_hash: String,
}

/// Every child of one CanalInstance.
#[derive(Debug, Clone)]
pub struct Desired {
    /// canal.properties and instance.properties.
    pub config_map: ConfigMap,
    /// The headless Service giving each pod a DNS name.
    pub members_service: Service,
    /// The client Service, selecting the active pod only.
    pub active_service: Service,
    /// The canal-servers.
    pub statefulset: StatefulSet,
    /// Keeps a voluntary disruption from taking every server at once.
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// A Secret the pods read, by the version the API server gave it: the
/// values themselves never enter the hash (a hash of a short password can
/// be reversed by guessing).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretVersion {
    /// The Secret's name.
    pub name: String,
    /// Its uid: a Secret deleted and created again is another Secret.
    pub uid: String,
    /// Its resourceVersion: changes with every write.
    pub resource_version: String,
}

/// Changes whenever the rendered configuration or a referenced Secret
/// changes, so the pod template annotation rolls the pods.
pub fn config_hash(rendered: &Rendered, secrets: &[SecretVersion]) -> String {
    let mut hasher = Sha1::new();
    for part in [&rendered.canal_properties, &rendered.instance_properties] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let mut secrets = secrets.to_vec();
    secrets.sort();
    secrets.dedup();
    for secret in &secrets {
        for part in [&secret.name, &secret.uid, &secret.resource_version] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Every child `instance` should have, given its rendered configuration.
pub fn build(instance: &CanalInstance, rendered: &Rendered, inputs: &BuildInputs) -> Desired {
    Desired {
        config_map: config_map(instance, rendered),
        members_service: members_service(instance),
        active_service: active_service(instance),
        statefulset: statefulset(instance, inputs),
        pod_disruption_budget: pod_disruption_budget(instance),
    }
}

/// The ConfigMap carrying the rendered files, under the names the pods
/// mount them by.
pub fn config_map(instance: &CanalInstance, rendered: &Rendered) -> ConfigMap {
    let names = Names::of(instance);
    ConfigMap {
        metadata: child_meta(instance, names.config_map()),
        data: Some(BTreeMap::from([
            ("canal.properties".into(), rendered.canal_properties.clone()),
            (
                "instance.properties".into(),
                rendered.instance_properties.clone(),
            ),
        ])),
        ..Default::default()
    }
}

/// Name, namespace, the operator's labels and the owner reference that
/// makes the garbage collector delete the child with its CanalInstance.
fn child_meta(instance: &CanalInstance, name: String) -> ObjectMeta {
    let names = Names::of(instance);
    ObjectMeta {
        name: Some(name),
        namespace: instance.metadata.namespace.clone(),
        labels: Some(labels::common(&names)),
        owner_references: instance.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
