//! Thin IO: server-side apply of the children, the active-pod label, the
//! status and the finalizer.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, EvictParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::build::Desired;
use super::build::labels::{FIELD_MANAGER, ROLE_ACTIVE, ROLE_FIELD_MANAGER, ROLE_LABEL};
use super::crd::CanalInstanceStatus;

/// Applies every child under the operator's field manager; forcing takes
/// over fields someone edited by hand (the CanalInstance is the truth).
pub async fn apply_children(
    client: &Client,
    namespace: &str,
    desired: &Desired,
) -> kube::Result<()> {
    apply(client, namespace, &desired.config_map).await?;
    apply(client, namespace, &desired.members_service).await?;
    apply(client, namespace, &desired.active_service).await?;
    apply(client, namespace, &desired.pod_disruption_budget).await?;
    apply(client, namespace, &desired.statefulset).await?;
    Ok(())
}

async fn apply<K>(client: &Client, namespace: &str, object: &K) -> kube::Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Puts the role label on `pod` (or takes it off): applied under a field
/// manager of its own, so an apply without the label removes only it.
pub async fn set_active_label(
    client: &Client,
    namespace: &str,
    pod: &str,
    active: bool,
) -> kube::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let labels = if active {
        json!({ ROLE_LABEL: ROLE_ACTIVE })
    } else {
        json!({})
    };
    let patch = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": pod, "labels": labels },
    });
    api.patch(
        pod,
        &PatchParams::apply(ROLE_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Evicts `pod` through the Eviction API. `Ok(false)`: the
/// PodDisruptionBudget refused it for now (429), or the pod is gone.
pub async fn evict(client: &Client, namespace: &str, pod: &str) -> kube::Result<bool> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.evict(pod, &EvictParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 429 || status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Writes the whole status by server-side apply, under the operator's
/// field manager.
pub async fn write_status(
    api: &Api<DynamicObject>,
    resource: &ApiResource,
    name: &str,
    status: &CanalInstanceStatus,
) -> kube::Result<()> {
    let patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Only for an object that does not parse as a CanalInstance: a merge
/// patch of the conditions, which needs nothing else of the object.
pub async fn write_conditions(
    api: &Api<DynamicObject>,
    name: &str,
    status: &serde_json::Value,
) -> kube::Result<()> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Replaces the object's finalizers with `finalizers`, only if it is still
/// at `resource_version`.
pub async fn set_finalizers(
    api: &Api<DynamicObject>,
    name: &str,
    finalizers: &[String],
    resource_version: Option<&str>,
) -> kube::Result<()> {
    // The resourceVersion makes this fail instead of dropping a finalizer
    // another controller added meanwhile.
    let patch = json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": resource_version },
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
