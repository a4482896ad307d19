//! `spec.cursorReset`: while the instance is paused, the destination's
//! cursors are moved once per nonce, and the outcome is recorded in the
//! status before anything else can fail.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};

use super::context::Context;
use super::error::Error;
use super::events::EventToPublish;
use crate::operator::apply;
use crate::operator::crd::{AppliedCursorReset, CanalInstance, CursorReset};
use crate::operator::status::CursorResetResult;
use crate::operator::zookeeper::{self as zk, ObservedKey, ZkAdminError};

/// The reset `instance` asks for now: only while it is paused, and only
/// with a ZooKeeper key to log in with.
pub(super) fn requested<'a>(
    instance: &'a CanalInstance,
    key: Option<&'a ObservedKey>,
) -> Option<(&'a ObservedKey, &'a CursorReset)> {
    match (key, &instance.spec.cursor_reset) {
        (Some(key), Some(reset)) if instance.spec.paused => Some((key, reset)),
        _ => None,
    }
}

/// Whether `nonce` is yet to be tried, by the status as stored.
pub(super) fn is_pending(stored: &DynamicObject, nonce: &str) -> bool {
    let recorded = stored
        .data
        .pointer("/status/cursorReset/nonce")
        .and_then(|n| n.as_str());
    recorded != Some(nonce)
}

/// Runs the requested reset if its nonce is not recorded yet, and records
/// it; `None` when there is nothing to run.
pub(super) async fn run_if_pending(
    ctx: &Context,
    api: &Api<DynamicObject>,
    object: &DynamicObject,
    instance: &CanalInstance,
    key: Option<&ObservedKey>,
) -> Result<Option<CursorResetResult>, Error> {
    let Some((key, reset)) = requested(instance, key) else {
        return Ok(None);
    };
    let name = object.name_any();
    // From the API server: the cache may lag the write that recorded it.
    let stored = api.get_status(&name).await?;
    if !is_pending(&stored, &reset.nonce) {
        return Ok(None);
    }
    let outcome = reset_cursors(key, reset).await;
    let (result, event) = conclude(reset, outcome, Timestamp::now());
    ctx.publish(object, event).await;
    // Recorded before anything else can fail, so a nonce is never applied
    // twice (the reset fences the active server).
    let record = record(&result, Timestamp::now());
    apply::write_conditions(api, &name, &serde_json::json!({ "cursorReset": record })).await?;
    Ok(Some(result))
}

async fn reset_cursors(
    key: &ObservedKey,
    reset: &CursorReset,
) -> Result<Vec<String>, ZkAdminError> {
    let position = zk::reset_position(&reset.position);
    zk::reset_cursors(key, reset.client_id.as_deref(), &position).await
}

/// The result of a reset, and the Event that tells of it.
fn conclude(
    reset: &CursorReset,
    outcome: Result<Vec<String>, ZkAdminError>,
    now: Timestamp,
) -> (CursorResetResult, EventToPublish) {
    match outcome {
        Ok(clients) => {
            let note = format!(
                "nonce {}: {} moved to {}:{}",
                reset.nonce,
                if clients.is_empty() {
                    "no client".to_owned()
                } else {
                    clients.join(", ")
                },
                reset.position.journal_name,
                reset.position.position
            );
            let result = CursorResetResult::Applied(AppliedCursorReset {
                nonce: reset.nonce.clone(),
                applied_at: now.to_string(),
                client_ids: clients,
                succeeded: true,
                message: None,
            });
            (
                result,
                EventToPublish::normal("CursorReset", "ResetCursor", note),
            )
        }
        Err(error) => {
            let message = error.to_string();
            let event =
                EventToPublish::warning("CursorResetFailed", "ResetCursor", message.clone());
            let result = CursorResetResult::Failed {
                nonce: reset.nonce.clone(),
                message,
            };
            (result, event)
        }
    }
}

/// `status.cursorReset` for `result`; a failure is stamped `now`.
fn record(result: &CursorResetResult, now: Timestamp) -> serde_json::Value {
    match result {
        CursorResetResult::Applied(applied) => serde_json::to_value(applied),
        CursorResetResult::Failed { nonce, message } => serde_json::to_value(AppliedCursorReset {
            nonce: nonce.clone(),
            applied_at: now.to_string(),
            client_ids: Vec::new(),
            succeeded: false,
            message: Some(message.clone()),
        }),
    }
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use kube::runtime::events::EventType;

    use super::*;
    use crate::operator::crd::CursorPosition;

    fn reset() -> CursorReset {
        CursorReset {
            nonce: "n1".into(),
            client_id: None,
            position: CursorPosition {
                journal_name: "mysql-bin.000003".into(),
                position: 4,
                timestamp: None,
                gtid: None,
            },
        }
    }

    fn instance(paused: bool) -> CanalInstance {
        let text = include_str!("../../../tests/fixtures/operator/orders.yaml");
        let mut instance: CanalInstance = serde_saphyr::from_str(text).expect("fixture parses");
        instance.spec.paused = paused;
        instance.spec.cursor_reset = Some(reset());
        instance
    }

    #[test]
    fn a_reset_runs_only_while_paused_and_with_a_key() {
        let key = ObservedKey::new("zk:2181", "orders");
        assert!(requested(&instance(true), Some(&key)).is_some());
        assert!(requested(&instance(false), Some(&key)).is_none());
        assert!(requested(&instance(true), None).is_none());
    }

    #[test]
    fn a_recorded_nonce_is_not_pending() {
        let stored = |status: serde_json::Value| DynamicObject {
            types: None,
            metadata: Default::default(),
            data: serde_json::json!({ "status": status }),
        };
        assert!(is_pending(&stored(serde_json::json!({})), "n1"));
        assert!(is_pending(
            &stored(serde_json::json!({"cursorReset": {"nonce": "n0"}})),
            "n1"
        ));
        assert!(!is_pending(
            &stored(serde_json::json!({"cursorReset": {"nonce": "n1"}})),
            "n1"
        ));
    }

    #[test]
    fn the_outcome_is_told_and_recorded() {
        let now = Timestamp::UNIX_EPOCH;
        let (result, event) = conclude(&reset(), Ok(vec!["1001".into(), "1002".into()]), now);
        assert_eq!(event.type_, EventType::Normal);
        assert_eq!(
            event.note,
            "nonce n1: 1001, 1002 moved to mysql-bin.000003:4"
        );
        assert_eq!(record(&result, now)["succeeded"], true);

        let busy = ZkAdminError::LockBusy {
            path: "/otter/canal/destinations/orders/running".into(),
            reason: "held".into(),
        };
        let (result, event) = conclude(&reset(), Err(busy), now);
        assert_eq!(event.type_, EventType::Warning);
        let record = record(&result, now);
        assert_eq!(record["nonce"], "n1");
        assert_eq!(record["succeeded"], false);
        assert!(
            record["message"]
                .as_str()
                .is_some_and(|m| m.contains("retry later"))
        );
    }
}
