//! Events: which ones a pass owes (pure), and publishing them.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::operator::crd::CanalInstanceStatus;
use crate::operator::status::{self, Outcome};

/// An Event a step decided to publish.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EventToPublish {
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

impl EventToPublish {
    pub(super) fn normal(reason: &'static str, action: &'static str, note: String) -> Self {
        EventToPublish {
            type_: EventType::Normal,
            reason,
            action,
            note,
        }
    }

    pub(super) fn warning(reason: &'static str, action: &'static str, note: String) -> Self {
        EventToPublish {
            type_: EventType::Warning,
            reason,
            action,
            note,
        }
    }
}

/// Publishes `event` on `object`; a failure is logged, never fatal (an
/// Event is a courtesy, the status is the record).
pub(super) async fn publish(
    recorder: &Recorder,
    resource: &ApiResource,
    object: &DynamicObject,
    event: EventToPublish,
) {
    let reference = object_reference(object, resource);
    let reason = event.reason;
    let event = Event {
        type_: event.type_,
        reason: event.reason.into(),
        note: Some(event.note),
        action: event.action.into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &reference).await {
        tracing::warn!(%error, reason, "cannot publish an event");
    }
}

fn object_reference(object: &DynamicObject, resource: &ApiResource) -> ObjectReference {
    ObjectReference {
        api_version: Some(resource.api_version.clone()),
        kind: Some(resource.kind.clone()),
        name: object.metadata.name.clone(),
        namespace: object.metadata.namespace.clone(),
        uid: object.metadata.uid.clone(),
        resource_version: object.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// A refused spec or apply: a Warning, unless the Degraded condition
/// already says the same (the retries must not repeat it).
pub(super) fn failure(
    outcome: &Outcome,
    status: Option<&CanalInstanceStatus>,
) -> Option<EventToPublish> {
    let (reason, action, message) = match outcome {
        Outcome::Invalid { reason, message } => (*reason, "Validate", message),
        Outcome::ApplyFailed { message } => ("ApplyFailed", "Apply", message),
        Outcome::Applied | Outcome::Paused => return None,
    };
    let said = status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::DEGRADED))
        .is_some_and(|c| c.status == "True" && c.message == *message);
    (!said).then(|| EventToPublish::warning(reason, action, message.clone()))
}

/// The active server changed between the old status and the new one:
/// Normal when one is active now, Warning when none is.
pub(super) fn active_server_changed(
    old: Option<&CanalInstanceStatus>,
    new: &CanalInstanceStatus,
) -> Option<EventToPublish> {
    let address = |s: Option<&CanalInstanceStatus>| {
        s.and_then(|s| s.active_server.as_ref())
            .map(|a| a.address.clone())
    };
    let (before, after) = (address(old), address(Some(new)));
    if before == after {
        return None;
    }
    let describe = |s: &CanalInstanceStatus| {
        s.active_server
            .as_ref()
            .map_or("none".to_owned(), |a| match &a.pod {
                Some(pod) => format!("{pod} ({})", a.address),
                None => a.address.clone(),
            })
    };
    let note = format!(
        "active server: {} -> {}",
        old.map_or("none".to_owned(), describe),
        describe(new)
    );
    let type_ = if after.is_some() {
        EventType::Normal
    } else {
        EventType::Warning
    };
    Some(EventToPublish {
        type_,
        reason: "ActiveServerChanged",
        action: "Failover",
        note,
    })
}

/// The configuration hash changed: the pods roll.
pub(super) fn configuration_changed(
    old: Option<&CanalInstanceStatus>,
    new: &CanalInstanceStatus,
) -> Option<EventToPublish> {
    let old = old.and_then(|s| s.config_hash.as_deref())?;
    let new = new.config_hash.as_deref()?;
    (old != new).then(|| {
        EventToPublish::normal(
            "ConfigurationChanged",
            "RollOut",
            format!(
                "configuration or Secrets changed (hash {new}); pods roll one at a time, \
                 standbys first, the active server last"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::operator::crd::ActiveServer;

    fn degraded(message: &str) -> CanalInstanceStatus {
        CanalInstanceStatus {
            conditions: vec![Condition {
                type_: status::DEGRADED.into(),
                status: "True".into(),
                reason: "InvalidSpec".into(),
                message: message.into(),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..Default::default()
        }
    }

    fn active(pod: Option<&str>, address: &str) -> CanalInstanceStatus {
        CanalInstanceStatus {
            active_server: Some(ActiveServer {
                address: address.into(),
                pod: pod.map(Into::into),
                since: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_failure_is_announced_once() {
        let invalid = Outcome::Invalid {
            reason: "SecretMissing",
            message: "spec.source.credentials: gone".into(),
        };
        let event = failure(&invalid, None).expect("announced");
        assert_eq!(
            (event.type_, event.reason, event.action),
            (EventType::Warning, "SecretMissing", "Validate")
        );
        let already = degraded("spec.source.credentials: gone");
        assert_eq!(failure(&invalid, Some(&already)), None);
        let refused = Outcome::ApplyFailed {
            message: "spec.source.credentials: gone".into(),
        };
        assert_eq!(failure(&refused, Some(&already)), None);
        assert_eq!(failure(&Outcome::Applied, None), None);
    }

    #[test]
    fn a_new_active_server_is_announced_with_its_pod() {
        let old = active(Some("orders-0"), "10.0.0.1:11111");
        let new = active(Some("orders-1"), "10.0.0.2:11111");
        let event = active_server_changed(Some(&old), &new).expect("changed");
        assert_eq!(event.type_, EventType::Normal);
        assert_eq!(
            event.note,
            "active server: orders-0 (10.0.0.1:11111) -> orders-1 (10.0.0.2:11111)"
        );
        assert_eq!(active_server_changed(Some(&new), &new), None);
        let lost =
            active_server_changed(Some(&new), &CanalInstanceStatus::default()).expect("changed");
        assert_eq!(lost.type_, EventType::Warning);
        assert_eq!(
            lost.note,
            "active server: orders-1 (10.0.0.2:11111) -> none"
        );
    }

    #[test]
    fn a_changed_hash_is_announced_but_not_the_first() {
        let hashed = |hash: &str| CanalInstanceStatus {
            config_hash: Some(hash.into()),
            ..Default::default()
        };
        assert_eq!(configuration_changed(None, &hashed("a")), None);
        assert_eq!(
            configuration_changed(Some(&hashed("a")), &hashed("a")),
            None
        );
        let event = configuration_changed(Some(&hashed("a")), &hashed("b")).expect("changed");
        assert!(event.note.contains("hash b"), "{}", event.note);
    }
}
