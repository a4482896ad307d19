//! Runs the controller: watches, leadership on a Lease, the metrics port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::crd::CanalInstance;
use super::metrics::{self, OperatorMetrics};
use super::reconcile::{Context, error_policy, reconcile};
use super::zookeeper::Observer;

pub struct OperatorOptions {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    pub metrics_address: SocketAddr,
    pub default_image: String,
    /// Leadership among operator replicas: the Lease's namespace and name;
    /// `None` runs without (a single replica).
    pub lease: Option<(String, String)>,
    /// This replica's name (the pod name) for the Lease and Events.
    pub identity: String,
    /// Reconciles run side by side.
    pub concurrency: u16,
}

pub async fn run(options: OperatorOptions, cancel: CancellationToken) -> Result<(), String> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| format!("cannot configure the Kubernetes client: {e}"))?;
    let clients = Clients::new(config)?;
    let metrics = OperatorMetrics::new();
    let listener = tokio::net::TcpListener::bind(options.metrics_address)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.metrics_address))?;
    tokio::spawn(metrics::serve(listener, metrics.clone(), cancel.clone()));
    metrics.started.store(true, Ordering::Relaxed);

    match options.lease.clone() {
        None => {
            metrics.leading.set(1);
            run_controller(clients, &options, metrics, cancel).await
        }
        Some((namespace, name)) => {
            lead(clients, &options, metrics, cancel, &namespace, &name).await
        }
    }
}

/// Runs the controller only while holding the Lease; losing it stops the
/// controller at once, so two replicas never reconcile side by side.
async fn lead(
    clients: Clients,
    options: &OperatorOptions,
    metrics: Arc<OperatorMetrics>,
    cancel: CancellationToken,
    namespace: &str,
    name: &str,
) -> Result<(), String> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(clients.api.clone(), name)
        .with_namespace(namespace)
        .with_identity(&options.identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|e| format!("cannot use Lease {namespace}/{name}: {e}"))?;
    let (mut leading, task) = manager.watch().await;
    loop {
        while !*leading.borrow_and_update() {
            tracing::info!(lease = name, "standing by for the operator Lease");
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { return Err("the Lease manager stopped".into()) },
                () = cancel.cancelled() => { drop(leading); let _ = task.await; return Ok(()) }
            }
        }
        tracing::info!(lease = name, "leading: starting the controller");
        metrics.leading.set(1);
        let term = cancel.child_token();
        let controller = run_controller(clients.clone(), options, metrics.clone(), term.clone());
        tokio::pin!(controller);
        let lost = loop {
            tokio::select! {
                result = &mut controller => break result.map(|()| false),
                changed = leading.changed() => {
                    if changed.is_err() || !*leading.borrow_and_update() {
                        term.cancel();
                        let _ = (&mut controller).await;
                        break Ok(true);
                    }
                }
            }
        };
        metrics.leading.set(0);
        match lost {
            Ok(true) => tracing::warn!(lease = name, "lost the operator Lease: controller stopped"),
            Ok(false) => {
                drop(leading);
                let _ = task.await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// The operator's API clients.
#[derive(Clone)]
struct Clients {
    /// Everything but evictions; retries 429/503/504 as kube does by default.
    api: Client,
    /// Evictions only, without retries: a 429 from a PodDisruptionBudget
    /// means "not now" (the rollout waits for the next reconcile), and the
    /// default policy would hold the reconcile for minutes retrying it.
    evictions: Client,
}

impl Clients {
    fn new(config: kube::Config) -> Result<Clients, String> {
        let error = |e: kube::Error| format!("cannot configure the Kubernetes client: {e}");
        let api = Client::try_from(config.clone()).map_err(error)?;
        let mut once = config;
        once.default_retry = false;
        let evictions = Client::try_from(once).map_err(error)?;
        Ok(Clients { api, evictions })
    }
}

async fn run_controller(
    clients: Clients,
    options: &OperatorOptions,
    metrics: Arc<OperatorMetrics>,
    cancel: CancellationToken,
) -> Result<(), String> {
    let client = clients.api.clone();
    let resource = kube::core::ApiResource::erase::<CanalInstance>(&());
    let instances: Api<DynamicObject> = match &options.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = &options.namespace;
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=canal-operator");

    let (trigger, triggers) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "canal-operator".into(),
            instance: Some(options.identity.clone()),
        },
    );
    let context = Arc::new(Context::new(
        client.clone(),
        clients.evictions,
        recorder,
        Observer::new(),
        metrics,
        options.default_image.clone(),
        trigger,
    ));

    let controller = Controller::new_with(instances, watcher::Config::default(), resource.clone())
        .with_config(ControllerConfig::default().concurrency(options.concurrency));
    let store = controller.store();
    let _ = context.instances.set(store.clone());
    let sweeper = {
        let context = context.clone();
        let store = store.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(15));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = cancel.cancelled() => return,
                }
                if store.wait_until_ready().await.is_ok() {
                    context.sweep(|object| store.get(object).is_some());
                }
            }
        })
    };
    let pod_resource = resource.clone();
    let secret_store = store.clone();
    let secret_resource = resource.clone();
    let secrets = watcher(
        scoped::<PartialObjectMeta<Secret>>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects()
    .map(move |secret| {
        // Instances that name the Secret; the store lags at most one
        // event, and the next resync catches that.
        secret.map(|secret| {
            let name = secret.name_any();
            let namespace = secret.namespace();
            secret_store
                .state()
                .iter()
                .filter(|i| i.namespace() == namespace && references_secret(i, &name))
                .map(|i| ObjectRef::from_obj_with(i.as_ref(), secret_resource.clone()))
                .collect::<Vec<_>>()
        })
    });
    let controller = controller
        .owns_stream(triggers_of(
            scoped::<PartialObjectMeta<StatefulSet>>(&client, ns),
            &managed,
        ))
        .owns_stream(triggers_of(
            scoped::<PartialObjectMeta<ConfigMap>>(&client, ns),
            &managed,
        ))
        .owns_stream(triggers_of(
            scoped::<PartialObjectMeta<Service>>(&client, ns),
            &managed,
        ))
        .owns_stream(triggers_of(
            scoped::<PartialObjectMeta<PodDisruptionBudget>>(&client, ns),
            &managed,
        ))
        .watches_stream(
            triggers_of(scoped::<PartialObjectMeta<Pod>>(&client, ns), &managed),
            move |pod: PartialObjectMeta<Pod>| {
                let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
                let namespace = pod.namespace()?;
                Some(ObjectRef::new_with(&instance, pod_resource.clone()).within(&namespace))
            },
        )
        .reconcile_on(tokio_stream_from(triggers));
    let secrets = secrets
        .filter_map(|r| async move {
            r.inspect_err(|error| tracing::warn!(%error, "watching Secrets failed; retrying"))
                .ok()
        })
        .flat_map(futures_util::stream::iter);
    let controller = controller.reconcile_on(secrets);

    let shutdown = cancel.clone();
    controller
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(instance = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    sweeper.abort();
    Ok(())
}

/// The changes of one kind as reconcile triggers, each watch with a backoff
/// of its own. The Controller puts all its trigger streams behind one shared
/// backoff: an error from any of them (a missing RBAC rule, an API group that
/// is unavailable) would pause every trigger, the CanalInstance watch
/// included, for up to 30 s at a time. Errors are logged here and never
/// reach it.
fn triggers_of<K>(
    api: Api<PartialObjectMeta<K>>,
    config: &watcher::Config,
) -> impl futures_util::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    watcher(api, config.clone())
        .default_backoff()
        .touched_objects()
        .filter_map(move |result| {
            let kind = kind.clone();
            async move {
                result
                    .inspect_err(|error| tracing::warn!(%kind, %error, "watching failed; retrying"))
                    .ok()
                    .map(Ok)
            }
        })
}

fn references_secret(object: &DynamicObject, name: &str) -> bool {
    let spec = object.data.get("spec");
    let at = |path: &str| spec.and_then(|s| s.pointer(path)).and_then(|v| v.as_str()) == Some(name);
    at("/source/credentials/secretName")
        || at("/server/clientAuth/secretName")
        || at("/zookeeper/auth/secretName")
}

fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
