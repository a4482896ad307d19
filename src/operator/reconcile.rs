//! One reconcile: parse → (finalize) → validate → dereference Secrets →
//! build → apply (unless paused) → cursor reset → active-pod label → status
//! → rollout (one pod evicted when the template changed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use super::apply;
use super::build::labels::{self, Names, ROLE_ACTIVE, ROLE_LABEL};
use super::build::{self, BuildInputs, SecretVersion};
use super::crd::{AppliedCursorReset, CanalInstance, CanalInstanceStatus, CleanupPolicy};
use super::metrics::{ErrorLabel, OperatorMetrics, ResultLabel};
use super::rollout;
use super::status::{self, CursorResetResult, Observed, Outcome, PodAddress, ZkState};
use super::validate::validate;
use super::zookeeper::{self as zk, ObservedKey, Observer};

/// On CanalInstances whose cleanup policy is Delete.
pub const FINALIZER: &str = "canal.otter.dev/zookeeper-cleanup";
/// How often status is refreshed without any change (lag, Secrets).
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("ZooKeeper: {0}")]
    ZooKeeper(String),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::ZooKeeper(_) => "zookeeper",
        }
    }
}

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    /// For evictions only: without the retry of 429 (operator::controller).
    pub evictions: Client,
    pub resource: ApiResource,
    pub recorder: Recorder,
    pub observer: Arc<Observer>,
    pub metrics: Arc<OperatorMetrics>,
    pub default_image: String,
    /// Requeues an instance when its ZooKeeper view changes.
    pub trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    /// The controller's cache of CanalInstances, once it exists.
    pub instances: std::sync::OnceLock<kube::runtime::reflector::Store<DynamicObject>>,
    watches: Mutex<HashMap<ObjectRef<DynamicObject>, Watch>>,
    /// The last key each instance was observed with (its ZooKeeper
    /// credentials included; memory only), kept until its finalizer is
    /// done: deleting a namespace deletes the auth Secret alongside the
    /// instance, and the cleanup must still be able to log in.
    known_keys: Mutex<HashMap<ObjectRef<DynamicObject>, ObservedKey>>,
}

struct Watch {
    key: ObservedKey,
    forwarder: tokio::task::JoinHandle<()>,
}

impl Context {
    pub fn new(
        client: Client,
        evictions: Client,
        recorder: Recorder,
        observer: Arc<Observer>,
        metrics: Arc<OperatorMetrics>,
        default_image: String,
        trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    ) -> Context {
        Context {
            client,
            evictions,
            resource: ApiResource::erase::<CanalInstance>(&()),
            recorder,
            observer,
            metrics,
            default_image,
            trigger,
            instances: std::sync::OnceLock::new(),
            watches: Mutex::new(HashMap::new()),
            known_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The current ZooKeeper view of `key`; the first call starts watching
    /// it and forwards every change to the controller as a requeue.
    fn observe(&self, object: &ObjectRef<DynamicObject>, key: &ObservedKey) -> ZkState {
        // Under the lock: a concurrent forget of the same key (another
        // instance's) must not end the watch between these steps.
        self.known_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(object.clone(), key.clone());
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let mut receiver = self.observer.watch(key.clone());
        let state = zk_state(&receiver.borrow_and_update());
        let current = watches
            .get(object)
            .is_some_and(|w| &w.key == key && !w.forwarder.is_finished());
        if !current {
            if let Some(old) = watches.remove(object) {
                old.forwarder.abort();
                self.forget_unless_shared(&watches, &old.key);
            }
            let forwarder = tokio::spawn(forward_changes(
                receiver,
                self.trigger.clone(),
                object.clone(),
            ));
            watches.insert(
                object.clone(),
                Watch {
                    key: key.clone(),
                    forwarder,
                },
            );
        }
        state
    }

    /// Stops watching destinations of instances that are gone: a deleted
    /// instance without a finalizer is never reconciled again.
    pub fn sweep(&self, exists: impl Fn(&ObjectRef<DynamicObject>) -> bool) {
        let gone: Vec<_> = {
            let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            watches.keys().filter(|o| !exists(o)).cloned().collect()
        };
        for object in gone {
            tracing::debug!(instance = %object.name, "instance gone: no longer watching its destination");
            self.stop_observing(&object);
        }
        self.known_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|object, _| exists(object));
    }

    fn known_key(&self, object: &ObjectRef<DynamicObject>) -> Option<ObservedKey> {
        let known = self.known_keys.lock().unwrap_or_else(|e| e.into_inner());
        known.get(object).cloned()
    }

    fn forget_key(&self, object: &ObjectRef<DynamicObject>) {
        let mut known = self.known_keys.lock().unwrap_or_else(|e| e.into_inner());
        known.remove(object);
    }

    fn stop_observing(&self, object: &ObjectRef<DynamicObject>) {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = watches.remove(object) {
            old.forwarder.abort();
            self.forget_unless_shared(&watches, &old.key);
        }
    }

    fn forget_unless_shared(
        &self,
        watches: &HashMap<ObjectRef<DynamicObject>, Watch>,
        key: &ObservedKey,
    ) {
        if !watches.values().any(|w| &w.key == key) {
            self.observer.forget(key);
        }
    }

    async fn publish(
        &self,
        instance: &DynamicObject,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let reference = object_reference(instance, &self.resource);
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason, "cannot publish an event");
        }
    }
}

/// Cursors move with every flush (each second per destination): their
/// changes requeue at most this often; any other change at once.
const CURSOR_REQUEUE_INTERVAL: Duration = Duration::from_secs(5);

/// Requeues `target` when its ZooKeeper view changes.
async fn forward_changes(
    mut receiver: tokio::sync::watch::Receiver<zk::Observation>,
    trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    target: ObjectRef<DynamicObject>,
) {
    let mut last = significant(&receiver.borrow_and_update());
    let mut cursors_moved = false;
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let due = last_sent + CURSOR_REQUEUE_INTERVAL;
        tokio::select! {
            changed = receiver.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = significant(&receiver.borrow_and_update());
                if now == last {
                    cursors_moved = true;
                    continue;
                }
                last = now;
            }
            () = tokio::time::sleep_until(due), if cursors_moved => {}
        }
        cursors_moved = false;
        last_sent = tokio::time::Instant::now();
        if trigger.send(target.clone()).is_err() {
            return;
        }
    }
}

/// An observation without its cursors.
fn significant(observation: &zk::Observation) -> zk::Observation {
    match observation {
        zk::Observation::Seen(view) => zk::Observation::Seen(zk::DestinationView {
            cursors: Vec::new(),
            ..view.clone()
        }),
        other => other.clone(),
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

fn zk_state(observation: &zk::Observation) -> ZkState {
    match observation {
        zk::Observation::Connecting => ZkState::Connecting,
        zk::Observation::Unreachable(why) => ZkState::Unreachable(why.clone()),
        zk::Observation::Seen(view) => {
            let mut facts = zk::facts(view);
            // A running node whose data is not canal's (held, by whom
            // unknown), or the operator's own during a cursor reset.
            facts
                .running
                .take_if(|(address, _)| address.is_empty() || address == zk::RESET_ADDRESS);
            ZkState::Seen(facts)
        }
    }
}

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

pub fn error_policy(object: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabel { kind: error.kind() })
        .inc();
    tracing::warn!(
        instance = %object.name_any(),
        namespace = object.namespace().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile_inner(object: &DynamicObject, ctx: &Context) -> Result<Action, Error> {
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &ctx.resource);
    let object_ref = ObjectRef::from_obj_with(object, ctx.resource.clone());

    let instance: CanalInstance =
        match serde_json::to_value(object).and_then(serde_json::from_value) {
            Ok(instance) => instance,
            Err(error) => return report_unparseable(object, ctx, &api, &error.to_string()).await,
        };

    let key = observed_key(&instance, ctx, &namespace).await?;
    if instance.metadata.deletion_timestamp.is_some() {
        return finalize(object, &instance, ctx, &api, &object_ref, key.as_ref()).await;
    }
    ensure_finalizer(object, &instance, &api).await?;

    let names = Names::of(&instance);
    let mut outcome = Outcome::Applied;
    let mut config_hash = None;
    let mut apply_error = None;
    match validate(&instance) {
        Err(invalid) => {
            outcome = Outcome::Invalid {
                reason: "InvalidSpec",
                message: invalid.to_string(),
            };
        }
        Ok(rendered) => match secret_versions(ctx, &instance, &namespace).await? {
            Err(missing) => {
                outcome = Outcome::Invalid {
                    reason: "SecretMissing",
                    message: missing,
                };
            }
            Ok(secrets) => {
                let hash = build::config_hash(&rendered, &secrets);
                if instance.spec.paused {
                    outcome = Outcome::Paused;
                } else {
                    let inputs = BuildInputs {
                        default_image: ctx.default_image.clone(),
                        config_hash: hash.clone(),
                    };
                    let desired = build::build(&instance, &rendered, &inputs);
                    match apply::apply_children(&ctx.client, &namespace, &desired).await {
                        Ok(()) => config_hash = Some(hash),
                        // Said in the status and an Event, then retried.
                        Err(error) => {
                            outcome = Outcome::ApplyFailed {
                                message: format!("the API server refused a child: {error}"),
                            };
                            apply_error = Some(Error::Kube(error));
                        }
                    }
                }
            }
        },
    }
    let failure = match &outcome {
        Outcome::Invalid { reason, message } => Some((*reason, "Validate", message)),
        Outcome::ApplyFailed { message } => Some(("ApplyFailed", "Apply", message)),
        Outcome::Applied | Outcome::Paused => None,
    };
    if let Some((reason, action, message)) = failure {
        let was = instance
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::DEGRADED))
            .is_some_and(|c| c.status == "True" && c.message == *message);
        if !was {
            ctx.publish(object, EventType::Warning, reason, action, message.clone())
                .await;
        }
    }

    let zookeeper = match &key {
        Some(key) => ctx.observe(&object_ref, key),
        None => ZkState::Unreachable("the ZooKeeper auth Secret cannot be read".into()),
    };

    let cursor_reset = match (&key, &instance.spec.cursor_reset) {
        (Some(key), Some(reset)) if instance.spec.paused => {
            if reset_pending(&api, &name, &reset.nonce).await? {
                let result = run_cursor_reset(object, ctx, key, reset).await;
                // Recorded before anything else can fail, so a nonce is
                // never applied twice (the reset fences the active server).
                record_cursor_reset(&api, &name, &result).await?;
                Some(result)
            } else {
                None
            }
        }
        _ => None,
    };

    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let statefulset = statefulsets.get_opt(&names.statefulset()).await?;
    let pods = instance_pods(ctx, &namespace, &names).await?;
    let addresses: Vec<PodAddress> = pods
        .iter()
        .filter_map(|pod| {
            Some(PodAddress {
                name: pod.name_any(),
                ip: pod.status.as_ref()?.pod_ip.clone()?,
            })
        })
        .collect();

    let observed = Observed {
        outcome,
        statefulset: statefulset.as_ref(),
        pods: &addresses,
        zookeeper,
        config_hash,
        cursor_reset,
        label_selector: labels::selector_string(&names),
        now: Timestamp::now(),
    };
    let zookeeper_seen = matches!(observed.zookeeper, ZkState::Seen(_));
    let observed_applied = observed.config_hash.is_some();
    let new_status = status::desired_status(&instance, &observed);
    // Only from a fresh view: a stale one may name a pod that now stands by.
    let label_result = if zookeeper_seen {
        label_active_pod(ctx, &namespace, &pods, &new_status).await
    } else {
        Ok(())
    };
    if status::differs(instance.status.as_ref(), &new_status) {
        apply::write_status(&api, &ctx.resource, &name, &new_status).await?;
        ctx.metrics.status_writes.inc();
        // After the write: a stale cached status must not repeat them.
        report_leader_change(object, ctx, instance.status.as_ref(), &new_status).await;
        let old_hash = instance
            .status
            .as_ref()
            .and_then(|s| s.config_hash.as_deref());
        if let (Some(old), Some(new)) = (old_hash, new_status.config_hash.as_deref())
            && old != new
        {
            ctx.publish(
                object,
                EventType::Normal,
                "ConfigurationChanged",
                "RollOut",
                format!("configuration or Secrets changed (hash {new}); pods roll one at a time, standbys first, the active server last"),
            )
            .await;
        }
    }
    if let Some(error) = apply_error {
        return Err(error);
    }
    label_result?;
    if observed_applied && let Some(statefulset) = &statefulset {
        let leader = match (zookeeper_seen, new_status.active_server.as_ref()) {
            (false, _) => rollout::Leader::Unknown,
            (true, None) => rollout::Leader::Nobody,
            (true, Some(active)) => match active.pod.as_deref() {
                Some(pod) => rollout::Leader::Pod(pod),
                // Active at an address no pod of ours has (yet).
                None => rollout::Leader::Unknown,
            },
        };
        roll_out(object, ctx, &namespace, statefulset, &pods, leader).await?;
    }
    Ok(Action::requeue(RESYNC))
}

/// One step of the rollout of a changed pod template (operator::rollout).
async fn roll_out(
    object: &DynamicObject,
    ctx: &Context,
    namespace: &str,
    statefulset: &StatefulSet,
    pods: &[Pod],
    leader: rollout::Leader<'_>,
) -> Result<(), Error> {
    match rollout::next(statefulset, pods, leader) {
        rollout::Step::Done => {}
        rollout::Step::Wait(why) => {
            tracing::debug!(instance = %object.name_any(), %why, "rollout waits");
        }
        rollout::Step::Evict { pod, why } => {
            if apply::evict(&ctx.evictions, namespace, &pod).await? {
                let revision = statefulset
                    .status
                    .as_ref()
                    .and_then(|s| s.update_revision.clone())
                    .unwrap_or_default();
                ctx.publish(
                    object,
                    EventType::Normal,
                    "PodEvicted",
                    "RollOut",
                    format!("evicted {pod} ({why}) to run revision {revision}"),
                )
                .await;
            } else {
                tracing::debug!(%pod, "eviction refused for now (PodDisruptionBudget) or pod gone");
            }
        }
    }
    Ok(())
}

/// Whether `nonce` is yet to be tried, by the status on the API server
/// (the cache may lag the write that recorded it).
async fn reset_pending(api: &Api<DynamicObject>, name: &str, nonce: &str) -> Result<bool, Error> {
    let current = api.get_status(name).await?;
    let recorded = current
        .data
        .pointer("/status/cursorReset/nonce")
        .and_then(|n| n.as_str());
    Ok(recorded != Some(nonce))
}

async fn record_cursor_reset(
    api: &Api<DynamicObject>,
    name: &str,
    result: &CursorResetResult,
) -> Result<(), Error> {
    let record = match result {
        CursorResetResult::Applied(applied) => serde_json::to_value(applied),
        CursorResetResult::Failed { nonce, message } => serde_json::to_value(AppliedCursorReset {
            nonce: nonce.clone(),
            applied_at: Timestamp::now().to_string(),
            client_ids: Vec::new(),
            succeeded: false,
            message: Some(message.clone()),
        }),
    }
    .unwrap_or_default();
    apply::write_conditions(api, name, &serde_json::json!({ "cursorReset": record })).await?;
    Ok(())
}

/// The ZooKeeper key of an instance, with digest credentials read from
/// its Secret; `None` when that Secret cannot be read.
async fn observed_key(
    instance: &CanalInstance,
    ctx: &Context,
    namespace: &str,
) -> Result<Option<ObservedKey>, Error> {
    let zookeeper = &instance.spec.zookeeper;
    let auth = match &zookeeper.auth {
        None => None,
        Some(reference) => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            let value = secrets
                .get_opt(&reference.secret_name)
                .await?
                .and_then(|s| s.data)
                .and_then(|mut d| d.remove(&reference.key))
                .and_then(|v| String::from_utf8(v.0).ok());
            match value.as_deref().and_then(|v| v.split_once(':')) {
                Some((user, password)) => Some((user.to_owned(), password.to_owned())),
                None => return Ok(None),
            }
        }
    };
    Ok(Some(ObservedKey {
        connect: zookeeper.connect.clone(),
        auth,
        destination: instance.destination(),
    }))
}

/// The Secrets the pods read, by version; Err names what is missing.
async fn secret_versions(
    ctx: &Context,
    instance: &CanalInstance,
    namespace: &str,
) -> Result<Result<Vec<SecretVersion>, String>, Error> {
    let spec = &instance.spec;
    let mut wanted: Vec<(&str, Vec<&str>, &str)> = vec![(
        &spec.source.credentials.secret_name,
        vec![
            spec.source.credentials.username_key.as_str(),
            spec.source.credentials.password_key.as_str(),
        ],
        "spec.source.credentials",
    )];
    if let Some(auth) = &spec.server.client_auth {
        wanted.push((
            &auth.secret_name,
            vec![auth.username_key.as_str(), auth.password_key.as_str()],
            "spec.server.clientAuth",
        ));
    }
    if let Some(auth) = &spec.zookeeper.auth {
        wanted.push((
            &auth.secret_name,
            vec![auth.key.as_str()],
            "spec.zookeeper.auth",
        ));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut versions = Vec::new();
    let mut problems = Vec::new();
    for (name, keys, field) in wanted {
        match secrets.get_opt(name).await? {
            None => problems.push(format!("{field}: Secret {namespace}/{name} does not exist")),
            Some(secret) => {
                let has = |key: &str| {
                    secret.data.as_ref().is_some_and(|d| d.contains_key(key))
                        || secret
                            .string_data
                            .as_ref()
                            .is_some_and(|d| d.contains_key(key))
                };
                for key in keys.iter().filter(|k| !has(k)) {
                    problems.push(format!(
                        "{field}: Secret {namespace}/{name} has no key {key:?}"
                    ));
                }
                versions.push(SecretVersion {
                    name: name.to_owned(),
                    uid: secret.metadata.uid.clone().unwrap_or_default(),
                    resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
                });
            }
        }
    }
    Ok(if problems.is_empty() {
        Ok(versions)
    } else {
        Err(problems.join("; "))
    })
}

async fn instance_pods(ctx: &Context, namespace: &str, names: &Names) -> Result<Vec<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params = ListParams::default().labels(&labels::selector_string(names));
    Ok(pods.list(&params).await?.items)
}

/// The active Service follows this label: exactly the pod whose IP holds
/// `running` carries it.
async fn label_active_pod(
    ctx: &Context,
    namespace: &str,
    pods: &[Pod],
    status: &CanalInstanceStatus,
) -> Result<(), Error> {
    let active = status.active_server.as_ref().and_then(|a| a.pod.as_deref());
    // Take the label off first: two labelled pods would split clients.
    for pod in pods {
        let name = pod.name_any();
        let labelled = pod
            .labels()
            .get(ROLE_LABEL)
            .is_some_and(|v| v == ROLE_ACTIVE);
        if labelled && Some(name.as_str()) != active {
            apply::set_active_label(&ctx.client, namespace, &name, false).await?;
        }
    }
    for pod in pods {
        let name = pod.name_any();
        let labelled = pod
            .labels()
            .get(ROLE_LABEL)
            .is_some_and(|v| v == ROLE_ACTIVE);
        if !labelled && Some(name.as_str()) == active {
            apply::set_active_label(&ctx.client, namespace, &name, true).await?;
        }
    }
    Ok(())
}

async fn report_leader_change(
    object: &DynamicObject,
    ctx: &Context,
    old: Option<&CanalInstanceStatus>,
    new: &CanalInstanceStatus,
) {
    let address = |s: Option<&CanalInstanceStatus>| {
        s.and_then(|s| s.active_server.as_ref())
            .map(|a| a.address.clone())
    };
    let (before, after) = (address(old), address(Some(new)));
    if before == after {
        return;
    }
    ctx.metrics.leader_changes.inc();
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
    ctx.publish(object, type_, "ActiveServerChanged", "Failover", note)
        .await;
}

async fn run_cursor_reset(
    object: &DynamicObject,
    ctx: &Context,
    key: &ObservedKey,
    reset: &super::crd::CursorReset,
) -> CursorResetResult {
    let position = zk::reset_position(&reset.position);
    match zk::reset_cursors(key, reset.client_id.as_deref(), &position).await {
        Ok(clients) => {
            ctx.publish(
                object,
                EventType::Normal,
                "CursorReset",
                "ResetCursor",
                format!(
                    "nonce {}: {} moved to {}:{}",
                    reset.nonce,
                    if clients.is_empty() {
                        "no client".to_owned()
                    } else {
                        clients.join(", ")
                    },
                    reset.position.journal_name,
                    reset.position.position
                ),
            )
            .await;
            CursorResetResult::Applied(AppliedCursorReset {
                nonce: reset.nonce.clone(),
                applied_at: Timestamp::now().to_string(),
                client_ids: clients,
                succeeded: true,
                message: None,
            })
        }
        Err(error) => {
            let message = error.to_string();
            ctx.publish(
                object,
                EventType::Warning,
                "CursorResetFailed",
                "ResetCursor",
                message.clone(),
            )
            .await;
            CursorResetResult::Failed {
                nonce: reset.nonce.clone(),
                message,
            }
        }
    }
}

/// The finalizer is there only while the cleanup policy is Delete, so
/// uninstalling the operator never leaves Retain instances stuck.
async fn ensure_finalizer(
    object: &DynamicObject,
    instance: &CanalInstance,
    api: &Api<DynamicObject>,
) -> Result<(), Error> {
    let finalizers = object.finalizers();
    let has = finalizers.iter().any(|f| f == FINALIZER);
    let wants = instance.spec.zookeeper.cleanup_policy == CleanupPolicy::Delete;
    if has == wants {
        return Ok(());
    }
    set_our_finalizer(object, api, wants).await
}

/// Adds or removes this operator's finalizer, keeping any others.
async fn set_our_finalizer(
    object: &DynamicObject,
    api: &Api<DynamicObject>,
    present: bool,
) -> Result<(), Error> {
    let mut finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.into());
    }
    apply::set_finalizers(
        api,
        &object.name_any(),
        &finalizers,
        object.resource_version().as_deref(),
    )
    .await?;
    Ok(())
}

async fn finalize(
    object: &DynamicObject,
    instance: &CanalInstance,
    ctx: &Context,
    api: &Api<DynamicObject>,
    object_ref: &ObjectRef<DynamicObject>,
    key: Option<&ObservedKey>,
) -> Result<Action, Error> {
    ctx.stop_observing(object_ref);
    if !object.finalizers().iter().any(|f| f == FINALIZER) {
        ctx.forget_key(object_ref);
        return Ok(Action::await_change());
    }
    // The auth Secret may already be gone (a namespace being deleted):
    // the credentials this operator last used for the instance still work.
    let known = key.cloned().or_else(|| ctx.known_key(object_ref));
    let key = known.as_ref();
    if instance.spec.zookeeper.cleanup_policy == CleanupPolicy::Delete {
        // Running servers would re-create the nodes: stop them first.
        let names = Names::of(instance);
        let namespace = instance.metadata.namespace.clone().unwrap_or_default();
        let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
        if statefulsets.get_opt(&names.statefulset()).await?.is_some() {
            statefulsets
                .delete(&names.statefulset(), &kube::api::DeleteParams::foreground())
                .await?;
        }
        let remaining = instance_pods(ctx, &namespace, &names).await?;
        if !remaining.is_empty() {
            let pods: Vec<String> = remaining.iter().map(|p| p.name_any()).collect();
            ctx.publish(
                object,
                EventType::Normal,
                "WaitingForPods",
                "Delete",
                format!(
                    "waiting for {} to stop before deleting the destination's ZooKeeper nodes",
                    pods.join(", ")
                ),
            )
            .await;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        let Some(key) = key else {
            ctx.publish(
                object,
                EventType::Warning,
                "ZooKeeperCleanupBlocked",
                "Delete",
                "cannot delete the destination's ZooKeeper nodes: the spec.zookeeper.auth Secret \
                 cannot be read and the operator has not logged in for this instance since it \
                 started; restore the Secret, or remove the finalizer \
                 canal.otter.dev/zookeeper-cleanup to delete without cleaning up"
                    .into(),
            )
            .await;
            return Ok(Action::requeue(Duration::from_secs(30)));
        };
        if let Some(other) = sharing_destination(ctx, instance, key) {
            ctx.publish(
                object,
                EventType::Warning,
                "ZooKeeperCleanupSkipped",
                "Delete",
                format!(
                    "CanalInstance {other} uses destination {} on the same ensemble: its nodes \
                     and cursors are kept",
                    key.destination
                ),
            )
            .await;
            set_our_finalizer(object, api, false).await?;
            return Ok(Action::await_change());
        }
        zk::delete_destination(key)
            .await
            .map_err(|e| Error::ZooKeeper(e.to_string()))?;
        ctx.publish(
            object,
            EventType::Normal,
            "ZooKeeperCleanedUp",
            "Delete",
            format!(
                "deleted the ZooKeeper nodes of destination {}",
                key.destination
            ),
        )
        .await;
    }
    set_our_finalizer(object, api, false).await?;
    ctx.forget_key(object_ref);
    Ok(Action::await_change())
}

/// Another live instance on the same ensemble and destination, whose
/// nodes a cleanup would delete.
fn sharing_destination(
    ctx: &Context,
    instance: &CanalInstance,
    key: &ObservedKey,
) -> Option<String> {
    let store = ctx.instances.get()?;
    store.state().iter().find_map(|other| {
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

/// A CanalInstance that does not deserialize (a schema bypassed or an old
/// CRD): said on the object itself, and the others carry on.
async fn report_unparseable(
    object: &DynamicObject,
    ctx: &Context,
    api: &Api<DynamicObject>,
    error: &str,
) -> Result<Action, Error> {
    let message = format!("the resource cannot be read as a CanalInstance: {error}");
    if object.metadata.deletion_timestamp.is_some() {
        // Its spec cannot say what to clean up: let it go.
        if object.finalizers().iter().any(|f| f == FINALIZER) {
            ctx.publish(
                object,
                EventType::Warning,
                "ZooKeeperCleanupSkipped",
                "Delete",
                format!("{message}; its ZooKeeper nodes are left in place"),
            )
            .await;
            set_our_finalizer(object, api, false).await?;
        }
        return Ok(Action::await_change());
    }
    let already = object
        .data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(|t| t.as_str()) == Some(status::DEGRADED)
                    && c.get("message").and_then(|m| m.as_str()) == Some(message.as_str())
            })
        });
    if !already {
        let now = Timestamp::now().to_string();
        let condition = |type_: &str, status: &str, reason: &str| {
            serde_json::json!({
                "type": type_, "status": status, "reason": reason, "message": message,
                "observedGeneration": object.metadata.generation, "lastTransitionTime": now,
            })
        };
        let status = serde_json::json!({
            "observedGeneration": object.metadata.generation,
            "conditions": [
                condition(status::READY, "False", "InvalidResource"),
                condition(status::DEGRADED, "True", "InvalidResource"),
                condition(status::STALLED, "True", "InvalidResource"),
            ],
        });
        apply::write_conditions(api, &object.name_any(), &status).await?;
        ctx.publish(
            object,
            EventType::Warning,
            "InvalidResource",
            "Parse",
            message,
        )
        .await;
    }
    Ok(Action::await_change())
}
