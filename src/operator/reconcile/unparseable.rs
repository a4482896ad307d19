//! A CanalInstance that does not deserialize (a schema bypassed or an old
//! CRD): said on the object itself, and the other instances carry on.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::Action;

use super::context::Context;
use super::error::Error;
use super::events::EventToPublish;
use super::finalizer;
use crate::operator::apply;
use crate::operator::status;

/// Reports `object`, which cannot be read as a CanalInstance because of
/// `error`; a deleted one loses the finalizer (its spec cannot say what to
/// clean up).
pub(super) async fn report(
    object: &DynamicObject,
    ctx: &Context,
    api: &Api<DynamicObject>,
    error: &serde_json::Error,
) -> Result<Action, Error> {
    let message = format!("the resource cannot be read as a CanalInstance: {error}");
    if object.metadata.deletion_timestamp.is_some() {
        if finalizer::has_finalizer(object) {
            let note = format!("{message}; its ZooKeeper nodes are left in place");
            ctx.publish(
                object,
                EventToPublish::warning("ZooKeeperCleanupSkipped", "Delete", note),
            )
            .await;
            finalizer::set_ours(object, api, false).await?;
        }
        return Ok(Action::await_change());
    }
    if !already_reported(object, &message) {
        let status = failed_status(object, &message, Timestamp::now());
        apply::write_conditions(api, &object.name_any(), &status).await?;
        ctx.publish(
            object,
            EventToPublish::warning("InvalidResource", "Parse", message),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Whether the Degraded condition already says `message`.
fn already_reported(object: &DynamicObject, message: &str) -> bool {
    object
        .data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(|t| t.as_str()) == Some(status::DEGRADED)
                    && c.get("message").and_then(|m| m.as_str()) == Some(message)
            })
        })
}

/// The status of an unreadable object: not Ready, Degraded and Stalled,
/// for `message`.
fn failed_status(object: &DynamicObject, message: &str, now: Timestamp) -> serde_json::Value {
    let now = now.to_string();
    let condition = |type_: &str, status: &str, reason: &str| {
        serde_json::json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": object.metadata.generation, "lastTransitionTime": now,
        })
    };
    serde_json::json!({
        "observedGeneration": object.metadata.generation,
        "conditions": [
            condition(status::READY, "False", "InvalidResource"),
            condition(status::DEGRADED, "True", "InvalidResource"),
            condition(status::STALLED, "True", "InvalidResource"),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_status_is_recognised_on_the_next_pass() {
        let mut object = DynamicObject {
            types: None,
            metadata: kube::api::ObjectMeta {
                generation: Some(4),
                ..Default::default()
            },
            data: serde_json::json!({ "spec": { "replicas": "two" } }),
        };
        let message = "the resource cannot be read as a CanalInstance: invalid type";
        assert!(!already_reported(&object, message));
        let status = failed_status(&object, message, Timestamp::UNIX_EPOCH);
        assert_eq!(status["observedGeneration"], 4);
        assert_eq!(status["conditions"][2]["type"], status::STALLED);
        object.data["status"] = status;
        assert!(already_reported(&object, message));
        assert!(!already_reported(&object, "another problem"));
    }
}
