//! What every reconcile shares: the API clients, the Event recorder, the
//! metrics, the ZooKeeper watches and the controller's cache.

use std::sync::{Arc, OnceLock};

use kube::Client;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;

use super::events::{self, EventToPublish};
use super::watches::Watches;
use crate::operator::crd::CanalInstance;
use crate::operator::metrics::OperatorMetrics;
use crate::operator::zookeeper::Observer;

/// Everything a reconcile needs besides the instance.
pub struct Context {
    /// Every request but evictions.
    pub client: Client,
    /// For evictions only: without the retry of 429 (operator::controller).
    pub evictions: Client,
    /// The CanalInstance resource, for the dynamic API and Events.
    pub resource: ApiResource,
    /// Publishes Events as this operator replica.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<OperatorMetrics>,
    /// The image of instances without `spec.image`.
    pub default_image: String,
    /// The controller's cache of CanalInstances, once it exists.
    pub instances: OnceLock<Store<DynamicObject>>,
    pub(super) watches: Watches,
}

impl Context {
    /// A context whose ZooKeeper watches requeue instances through
    /// `trigger`.
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
            metrics,
            default_image,
            instances: OnceLock::new(),
            watches: Watches::new(observer, trigger),
        }
    }

    /// Stops watching destinations of instances that are gone: a deleted
    /// instance without a finalizer is never reconciled again.
    pub fn sweep(&self, exists: impl Fn(&ObjectRef<DynamicObject>) -> bool) {
        self.watches.sweep(exists);
    }

    pub(super) async fn publish(&self, object: &DynamicObject, event: EventToPublish) {
        events::publish(&self.recorder, &self.resource, object, event).await;
    }
}
