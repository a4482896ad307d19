//! One reconcile pass over one CanalInstance: read, decide, then write.
//!
//! ```text
//!  parse ─► validate ─► read the Secrets ─► (deleted: finalizer)
//!    ─► plan ─► finalizer, apply the children, Event
//!    ─► ZooKeeper view, cursor reset ─► read the StatefulSet and pods
//!    ─► status ─► active-pod label, status write, Events ─► rollout step
//! ```
//!
//! Reading and deciding are apart: `secrets`, `watches` and
//! `children` read; the plan, the status, the label changes, the Events
//! due and the rollout step are pure functions of what was read (each
//! unit-tested). Writes happen in named steps only: `operator::apply` to
//! the API server, Events through the recorder, ZooKeeper in `cursor_reset`
//! and `finalizer`. The children are read after the apply, not with the
//! Secrets: the status and the rollout must see what the apply left.

mod children;
mod context;
mod cursor_reset;
mod error;
mod events;
mod finalizer;
mod labels;
mod plan;
mod rollout_step;
mod secrets;
mod unparseable;
mod watches;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

pub use context::Context;
pub use error::Error;
pub use finalizer::FINALIZER;

use super::apply;
use super::build::labels::{self as child_labels, Names};
use super::crd::{CanalInstance, CanalInstanceStatus};
use super::metrics::{ErrorLabel, ResultLabel};
use super::status::{self, CursorResetResult, Observed, Outcome, ZkState};
use super::validate::validate;
use super::zookeeper::ObservedKey;
use children::Children;
use plan::Plan;

/// How often status is refreshed without any change (lag, Secrets).
const RESYNC: Duration = Duration::from_secs(30);

/// Reconciles one CanalInstance (the controller's reconcile function),
/// counting it and its duration in the metrics.
pub async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&object, &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let label = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabel { result: label })
        .inc();
    result
}

/// After a failed pass: counted by kind, logged, retried in 5 s.
pub fn error_policy(object: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabel { kind: error.kind() })
        .inc();
    tracing::warn!(
        instance = %object.name_any(),
        namespace = object.namespace().unwrap_or_default(),
        %error,
        transient = error.is_transient(),
        "reconcile failed; retrying"
    );
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile_inner(object: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &ctx.resource);
    let instance: CanalInstance =
        match serde_json::to_value(object).and_then(serde_json::from_value) {
            Ok(instance) => instance,
            Err(error) => return unparseable::report(object, ctx, &api, &error).await,
        };

    let deleting = instance.metadata.deletion_timestamp.is_some();
    let validated = (!deleting).then(|| validate(&instance));
    let with_versions = matches!(validated, Some(Ok(_)));
    let to_read = secrets::names_to_read(&instance, with_versions);
    let read = secrets::read(&ctx.client, &namespace, &to_read).await?;
    let key = secrets::zookeeper_key(&instance, &read);
    let Some(validated) = validated else {
        return finalizer::finalize(object, &instance, ctx, &api, key.as_ref()).await;
    };

    let plan = plan::plan(&instance, validated, &namespace, &read, &ctx.default_image);
    finalizer::ensure(object, &instance, &api).await?;
    let pass = Pass {
        object,
        instance: &instance,
        ctx,
        api,
        namespace,
    };
    let applied = pass.apply(plan).await;
    if let Some(event) = events::failure(&applied.outcome, instance.status.as_ref()) {
        ctx.publish(object, event).await;
    }
    let seen = pass.observe(key.as_ref()).await?;
    pass.conclude(applied, seen).await
}

/// What every step of one pass over a parsed, live instance needs.
struct Pass<'a> {
    object: &'a DynamicObject,
    instance: &'a CanalInstance,
    ctx: &'a Context,
    api: Api<DynamicObject>,
    namespace: String,
}

/// How the apply of the children went.
struct Applied {
    outcome: Outcome,
    /// The hash of what was applied; `None` when nothing was.
    config_hash: Option<String>,
    /// A refused apply: said in the status and an Event first, then the
    /// pass fails with it (and is retried).
    error: Option<Error>,
}

/// What the pass read after the apply.
struct Seen {
    zookeeper: ZkState,
    cursor_reset: Option<CursorResetResult>,
    children: Children,
}

impl Pass<'_> {
    async fn apply(&self, plan: Plan) -> Applied {
        let (desired, config_hash) = match plan {
            Plan::Leave(outcome) => {
                return Applied {
                    outcome,
                    config_hash: None,
                    error: None,
                };
            }
            Plan::Apply {
                desired,
                config_hash,
            } => (desired, config_hash),
        };
        match apply::apply_children(&self.ctx.client, &self.namespace, &desired).await {
            Ok(()) => Applied {
                outcome: Outcome::Applied,
                config_hash: Some(config_hash),
                error: None,
            },
            Err(error) => Applied {
                outcome: Outcome::ApplyFailed {
                    message: format!("the API server refused a child: {error}"),
                },
                config_hash: None,
                error: Some(Error::Kube(error)),
            },
        }
    }

    /// The ZooKeeper view (and a pending cursor reset, run), then the
    /// children.
    async fn observe(&self, key: Option<&ObservedKey>) -> Result<Seen, Error> {
        let zookeeper = match key {
            Some(key) => {
                let object_ref = ObjectRef::from_obj_with(self.object, self.ctx.resource.clone());
                self.ctx.watches.observe(&object_ref, key)
            }
            None => ZkState::Unreachable("the ZooKeeper auth Secret cannot be read".into()),
        };
        let cursor_reset =
            cursor_reset::run_if_pending(self.ctx, &self.api, self.object, self.instance, key)
                .await?;
        let names = Names::of(self.instance);
        let children = children::children(&self.ctx.client, &self.namespace, &names).await?;
        Ok(Seen {
            zookeeper,
            cursor_reset,
            children,
        })
    }

    /// The status from what was seen, the active-pod label, the status
    /// write, then one rollout step; a refused apply fails the pass after
    /// the status says so.
    async fn conclude(&self, applied: Applied, seen: Seen) -> Result<Action, Error> {
        let Seen {
            zookeeper,
            cursor_reset,
            children,
        } = seen;
        let zookeeper_seen = matches!(zookeeper, ZkState::Seen(_));
        let applied_now = applied.config_hash.is_some();
        let addresses = children::pod_addresses(&children.pods);
        let observed = Observed {
            outcome: applied.outcome,
            statefulset: children.statefulset.as_ref(),
            pods: &addresses,
            zookeeper,
            config_hash: applied.config_hash,
            cursor_reset,
            label_selector: child_labels::selector_string(&Names::of(self.instance)),
            now: Timestamp::now(),
        };
        let new_status = status::desired_status(self.instance, &observed);
        // Only from a fresh view: a stale one may name a pod that now stands by.
        let label_result = if zookeeper_seen {
            let active = new_status.active_server.as_ref();
            let active_pod = active.and_then(|a| a.pod.as_deref());
            labels::label_active_pod(
                &self.ctx.client,
                &self.namespace,
                &children.pods,
                active_pod,
            )
            .await
        } else {
            Ok(())
        };
        self.write_status(&new_status).await?;
        if let Some(error) = applied.error {
            return Err(error);
        }
        label_result?;
        if applied_now && let Some(statefulset) = &children.statefulset {
            let leader = rollout_step::leader(zookeeper_seen, &new_status);
            rollout_step::roll_out(
                self.object,
                self.ctx,
                &self.namespace,
                statefulset,
                &children.pods,
                leader,
            )
            .await?;
        }
        Ok(Action::requeue(RESYNC))
    }

    /// Writes `new` when it differs from the status the instance has, and
    /// then the Events the change owes.
    async fn write_status(&self, new: &CanalInstanceStatus) -> Result<(), Error> {
        let old = self.instance.status.as_ref();
        if !status::differs(old, new) {
            return Ok(());
        }
        let name = self.object.name_any();
        apply::write_status(&self.api, &self.ctx.resource, &name, new).await?;
        self.ctx.metrics.status_writes.inc();
        // After the write: a stale cached status must not repeat them.
        if let Some(event) = events::active_server_changed(old, new) {
            self.ctx.metrics.leader_changes.inc();
            self.ctx.publish(self.object, event).await;
        }
        if let Some(event) = events::configuration_changed(old, new) {
            self.ctx.publish(self.object, event).await;
        }
        Ok(())
    }
}
