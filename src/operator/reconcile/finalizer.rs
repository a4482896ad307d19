//! The finalizer: while the cleanup policy is Delete, a deleted instance's
//! servers are stopped and its destination's ZooKeeper nodes deleted before
//! the instance goes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use super::children;
use super::context::Context;
use super::error::Error;
use super::events::EventToPublish;
use crate::operator::apply;
use crate::operator::build::labels::Names;
use crate::operator::crd::{CanalInstance, CleanupPolicy};
use crate::operator::zookeeper::{self as zk, ObservedKey};

/// On CanalInstances whose cleanup policy is Delete.
pub const FINALIZER: &str = "canal.otter.dev/zookeeper-cleanup";

/// Whether `object` carries this operator's finalizer.
pub(super) fn has_finalizer(object: &DynamicObject) -> bool {
    object.finalizers().iter().any(|f| f == FINALIZER)
}

/// The finalizer is there only while the cleanup policy is Delete, so
/// uninstalling the operator never leaves Retain instances stuck.
pub(super) async fn ensure(
    object: &DynamicObject,
    instance: &CanalInstance,
    api: &Api<DynamicObject>,
) -> Result<(), Error> {
    let wants = instance.spec.zookeeper.cleanup_policy == CleanupPolicy::Delete;
    if has_finalizer(object) == wants {
        return Ok(());
    }
    set_ours(object, api, wants).await
}

/// `object`'s finalizers with this operator's present or not; the others
/// kept, in order.
fn finalizers_with_ours(object: &DynamicObject, present: bool) -> Vec<String> {
    let mut finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.into());
    }
    finalizers
}

/// Adds or removes this operator's finalizer, keeping any others.
pub(super) async fn set_ours(
    object: &DynamicObject,
    api: &Api<DynamicObject>,
    present: bool,
) -> Result<(), Error> {
    apply::set_finalizers(
        api,
        &object.name_any(),
        &finalizers_with_ours(object, present),
        object.resource_version().as_deref(),
    )
    .await?;
    Ok(())
}

/// A deleted instance: its cleanup, then the finalizer comes off. `key`
/// is its ZooKeeper key as this pass read it, if it could.
pub(super) async fn finalize(
    object: &DynamicObject,
    instance: &CanalInstance,
    ctx: &Context,
    api: &Api<DynamicObject>,
    key: Option<&ObservedKey>,
) -> Result<Action, Error> {
    let object_ref = ObjectRef::from_obj_with(object, ctx.resource.clone());
    ctx.watches.stop_observing(&object_ref);
    if !has_finalizer(object) {
        ctx.watches.forget_key(&object_ref);
        return Ok(Action::await_change());
    }
    if instance.spec.zookeeper.cleanup_policy == CleanupPolicy::Delete {
        // The auth Secret may already be gone (a namespace being deleted):
        // the credentials this operator last used for the instance still work.
        let known = key.cloned().or_else(|| ctx.watches.known_key(&object_ref));
        if let Cleanup::NotYet(action) = clean_up(object, instance, ctx, known.as_ref()).await? {
            return Ok(action);
        }
    }
    set_ours(object, api, false).await?;
    ctx.watches.forget_key(&object_ref);
    Ok(Action::await_change())
}

/// How far the ZooKeeper cleanup got.
enum Cleanup {
    /// Come back later (with this requeue): the finalizer stays.
    NotYet(Action),
    /// Done, or nothing of this instance's to delete: the finalizer goes.
    Finished,
}

/// Stops the servers, then deletes the destination's nodes unless another
/// instance uses the same destination on the same ensemble.
async fn clean_up(
    object: &DynamicObject,
    instance: &CanalInstance,
    ctx: &Context,
    key: Option<&ObservedKey>,
) -> Result<Cleanup, Error> {
    // Running servers would re-create the nodes: stop them first.
    let remaining = stop_servers(&ctx.client, instance).await?;
    if !remaining.is_empty() {
        let note = format!(
            "waiting for {} to stop before deleting the destination's ZooKeeper nodes",
            remaining.join(", ")
        );
        ctx.publish(
            object,
            EventToPublish::normal("WaitingForPods", "Delete", note),
        )
        .await;
        return Ok(Cleanup::NotYet(Action::requeue(Duration::from_secs(2))));
    }
    let Some(key) = key else {
        ctx.publish(object, cleanup_blocked()).await;
        return Ok(Cleanup::NotYet(Action::requeue(Duration::from_secs(30))));
    };
    let others = ctx
        .instances
        .get()
        .map(|store| store.state())
        .unwrap_or_default();
    if let Some(other) = sharing_destination(&others, instance, key) {
        let note = format!(
            "CanalInstance {other} uses destination {} on the same ensemble: its nodes \
             and cursors are kept",
            key.destination
        );
        ctx.publish(
            object,
            EventToPublish::warning("ZooKeeperCleanupSkipped", "Delete", note),
        )
        .await;
        return Ok(Cleanup::Finished);
    }
    zk::delete_destination(key).await?;
    let note = format!(
        "deleted the ZooKeeper nodes of destination {}",
        key.destination
    );
    ctx.publish(
        object,
        EventToPublish::normal("ZooKeeperCleanedUp", "Delete", note),
    )
    .await;
    Ok(Cleanup::Finished)
}

/// Deletes the StatefulSet (if any); the names of the pods still there.
async fn stop_servers(client: &Client, instance: &CanalInstance) -> Result<Vec<String>, Error> {
    let names = Names::of(instance);
    let namespace = instance.metadata.namespace.clone().unwrap_or_default();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    if statefulsets.get_opt(&names.statefulset()).await?.is_some() {
        statefulsets
            .delete(&names.statefulset(), &DeleteParams::foreground())
            .await?;
    }
    let remaining = children::instance_pods(client, &namespace, &names).await?;
    Ok(remaining.iter().map(|p| p.name_any()).collect())
}

fn cleanup_blocked() -> EventToPublish {
    EventToPublish::warning(
        "ZooKeeperCleanupBlocked",
        "Delete",
        "cannot delete the destination's ZooKeeper nodes: the spec.zookeeper.auth Secret \
         cannot be read and the operator has not logged in for this instance since it \
         started; restore the Secret, or remove the finalizer \
         canal.otter.dev/zookeeper-cleanup to delete without cleaning up"
            .into(),
    )
}

/// Another live instance on the same ensemble and destination, whose
/// nodes a cleanup would delete: its `namespace/name`.
fn sharing_destination(
    instances: &[Arc<DynamicObject>],
    instance: &CanalInstance,
    key: &ObservedKey,
) -> Option<String> {
    instances.iter().find_map(|other| {
        if other.metadata.uid == instance.metadata.uid
            || other.metadata.deletion_timestamp.is_some()
        {
            return None;
        }
        let spec = other.data.get("spec")?;
        let destination = spec
            .get("destination")
            .and_then(|d| d.as_str())
            .or(other.metadata.name.as_deref())?;
        let connect = spec.pointer("/zookeeper/connect")?.as_str()?;
        (destination == key.destination && connect == key.connect).then(|| {
            format!(
                "{}/{}",
                other.metadata.namespace.clone().unwrap_or_default(),
                other.metadata.name.clone().unwrap_or_default()
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn object(
        name: &str,
        uid: &str,
        spec: serde_json::Value,
        finalizers: &[&str],
    ) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                uid: Some(uid.into()),
                finalizers: Some(finalizers.iter().map(|f| (*f).to_owned()).collect()),
                ..Default::default()
            },
            data: serde_json::json!({ "spec": spec }),
        }
    }

    fn orders() -> CanalInstance {
        let text = include_str!("../../../tests/fixtures/operator/orders.yaml");
        let mut instance: CanalInstance = serde_saphyr::from_str(text).expect("fixture parses");
        instance.metadata.uid = Some("uid-orders".into());
        instance
    }

    #[test]
    fn only_our_finalizer_is_added_or_removed() {
        let theirs = object(
            "orders",
            "u",
            serde_json::json!({}),
            &["other/keep", FINALIZER],
        );
        assert_eq!(finalizers_with_ours(&theirs, false), ["other/keep"]);
        assert_eq!(
            finalizers_with_ours(&theirs, true),
            ["other/keep", FINALIZER]
        );
        assert!(has_finalizer(&theirs));
    }

    #[test]
    fn a_live_instance_on_the_same_destination_keeps_the_nodes() {
        let key = ObservedKey::new("zk:2181", "orders");
        let same = |name: &str, uid: &str| {
            Arc::new(object(
                name,
                uid,
                serde_json::json!({"destination": "orders", "zookeeper": {"connect": "zk:2181"}}),
                &[],
            ))
        };
        let itself = same("orders", "uid-orders");
        let other_ensemble = Arc::new(object(
            "elsewhere",
            "uid-2",
            serde_json::json!({"destination": "orders", "zookeeper": {"connect": "zk2:2181"}}),
            &[],
        ));
        assert_eq!(
            sharing_destination(&[itself.clone(), other_ensemble.clone()], &orders(), &key),
            None
        );
        let mut leaving = (*same("copy", "uid-3")).clone();
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert_eq!(
            sharing_destination(&[Arc::new(leaving)], &orders(), &key),
            None
        );
        // Without spec.destination, the name is the destination.
        let by_name = Arc::new(object(
            "orders",
            "uid-4",
            serde_json::json!({"zookeeper": {"connect": "zk:2181"}}),
            &[],
        ));
        assert_eq!(
            sharing_destination(&[itself, other_ensemble, by_name], &orders(), &key).as_deref(),
            Some("shop/orders")
        );
    }
}
