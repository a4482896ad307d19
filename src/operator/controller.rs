//! Runs the controller: watches, leadership on a Lease, the metrics port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::crd::CanalInstance;
use super::metrics::{self, OperatorMetrics};
use super::reconcile::{Context, error_policy, reconcile};
use super::zookeeper::Observer;

/// How the operator runs: what it watches, where it serves metrics, how
/// replicas share the work.
pub struct OperatorOptions {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    /// Where the metrics and health endpoints listen.
    pub metrics_address: SocketAddr,
    /// The canal-server image of instances without `spec.image`.
    pub default_image: String,
    /// Leadership among operator replicas: the Lease's namespace and name;
    /// `None` runs without (a single replica).
    pub lease: Option<(String, String)>,
    /// This replica's name (the pod name) for the Lease and Events.
    pub identity: String,
    /// Reconciles run side by side.
    pub concurrency: u16,
}

/// Why the operator could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes configuration was found (kubeconfig, in-cluster).
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(#[source] kube::config::InferConfigError),
    /// The configuration found does not make a client.
    #[error("cannot configure the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The metrics and health endpoints cannot listen.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The configured metrics address.
        address: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// The leadership Lease cannot be used.
    #[error("cannot use Lease {namespace}/{name}: {source}")]
    Lease {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// What the Lease manager reported.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The task that holds the Lease ended: leadership is unknown.
    #[error("the Lease manager stopped")]
    LeaseManagerStopped,
}

/// Runs the operator until `cancel`: the metrics endpoints, then the
/// controller (while leading, when a Lease is configured).
pub async fn run(options: OperatorOptions, cancel: CancellationToken) -> Result<(), Error> {
    let config = kube::Config::infer().await.map_err(Error::Config)?;
    let clients = Clients::new(config)?;
    let metrics = OperatorMetrics::new();
    let listener = tokio::net::TcpListener::bind(options.metrics_address)
        .await
        .map_err(|source| Error::Listen {
            address: options.metrics_address,
            source,
        })?;
    tokio::spawn(metrics::serve(listener, metrics.clone(), cancel.clone()));
    metrics.started.store(true, Ordering::Relaxed);

    match options.lease.clone() {
        None => {
            metrics.leading.set(1);
            run_controller(clients, &options, metrics, cancel).await;
            Ok(())
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
) -> Result<(), Error> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(clients.api.clone(), name)
        .with_namespace(namespace)
        .with_identity(&options.identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|source| Error::Lease {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })?;
    let (mut leading, task) = manager.watch().await;
    loop {
        while !*leading.borrow_and_update() {
            tracing::info!(lease = name, "standing by for the operator Lease");
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { return Err(Error::LeaseManagerStopped) },
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
                () = &mut controller => break false,
                changed = leading.changed() => {
                    if changed.is_err() || !*leading.borrow_and_update() {
                        term.cancel();
                        let () = (&mut controller).await;
                        break true;
                    }
                }
            }
        };
        metrics.leading.set(0);
        if !lost {
            drop(leading);
            let _ = task.await;
            return Ok(());
        }
        tracing::warn!(lease = name, "lost the operator Lease: controller stopped");
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
    fn new(config: kube::Config) -> Result<Clients, Error> {
        let api = Client::try_from(config.clone()).map_err(Error::Client)?;
        let mut once = config;
        once.default_retry = false;
        let evictions = Client::try_from(once).map_err(Error::Client)?;
        Ok(Clients { api, evictions })
    }
}

/// Runs the controller until `cancel`.
async fn run_controller(
    clients: Clients,
    options: &OperatorOptions,
    metrics: Arc<OperatorMetrics>,
    cancel: CancellationToken,
) {
    let client = clients.api.clone();
    let resource = ApiResource::erase::<CanalInstance>(&());
    let instances: Api<DynamicObject> = match &options.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
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
    let sweeper = spawn_sweeper(context.clone(), store.clone(), cancel.clone());
    let secrets = secret_triggers(&client, &options.namespace, store, resource.clone());
    let controller = with_child_triggers(controller, &client, &options.namespace, resource)
        .reconcile_on(tokio_stream_from(triggers))
        .reconcile_on(secrets);

    controller
        .graceful_shutdown_on(async move { cancel.cancelled().await })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(instance = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    sweeper.abort();
}

/// An API for kind `K` in the watched namespace, or in all.
fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Every 15 s, stops the ZooKeeper watches of instances that are gone.
fn spawn_sweeper(
    context: Arc<Context>,
    store: Store<DynamicObject>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
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
}

/// The children (owned: StatefulSet, ConfigMap, Services,
/// PodDisruptionBudget) and the pods (by their instance label) as triggers.
fn with_child_triggers(
    controller: Controller<DynamicObject>,
    client: &Client,
    namespace: &Option<String>,
    resource: ApiResource,
) -> Controller<DynamicObject> {
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=canal-operator");
    controller
        .owns_stream(triggers_of(
            scoped::<PartialObjectMeta<StatefulSet>>(client, namespace),
            &managed,
        ))
        .owns_stream(triggers_of(
            scoped::<PartialObjectMeta<ConfigMap>>(client, namespace),
            &managed,
        ))
        .owns_stream(triggers_of(
            scoped::<PartialObjectMeta<Service>>(client, namespace),
            &managed,
        ))
        .owns_stream(triggers_of(
            scoped::<PartialObjectMeta<PodDisruptionBudget>>(client, namespace),
            &managed,
        ))
        .watches_stream(
            triggers_of(
                scoped::<PartialObjectMeta<Pod>>(client, namespace),
                &managed,
            ),
            move |pod: PartialObjectMeta<Pod>| {
                let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
                let namespace = pod.namespace()?;
                Some(ObjectRef::new_with(&instance, resource.clone()).within(&namespace))
            },
        )
}

/// A change of a Secret (its metadata only: the values are read by the
/// reconcile, by name) requeues the instances that name it.
fn secret_triggers(
    client: &Client,
    namespace: &Option<String>,
    store: Store<DynamicObject>,
    resource: ApiResource,
) -> impl futures_util::Stream<Item = ObjectRef<DynamicObject>> + Send + 'static {
    watcher(
        scoped::<PartialObjectMeta<Secret>>(client, namespace),
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
            store
                .state()
                .iter()
                .filter(|i| i.namespace() == namespace && references_secret(i, &name))
                .map(|i| ObjectRef::from_obj_with(i.as_ref(), resource.clone()))
                .collect::<Vec<_>>()
        })
    })
    .filter_map(|r| async move {
        r.inspect_err(|error| tracing::warn!(%error, "watching Secrets failed; retrying"))
            .ok()
    })
    .flat_map(futures_util::stream::iter)
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

/// Whether the instance `object` names the Secret `name`.
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
