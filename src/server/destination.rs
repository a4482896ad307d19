//! A destination this server can run: its settings and cursor store, and
//! the instance currently serving it, if this server is the active one.
//! The election (or, without ZooKeeper, start-up) decides when it runs.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::instance::{Instance, InstanceError, InstanceSettings};
use crate::{
    cursor::SharedCursorStore,
    ha::{ActivationError, Candidate, HaStatus, Lease, Role},
};

/// One destination of this server, running or not.
pub struct Destination {
    settings: InstanceSettings,
    cursors: SharedCursorStore,
    current: Mutex<Option<Arc<Instance>>>,
    status: HaStatus,
    /// Parent of every instance's tasks (the server's lifetime).
    cancel: CancellationToken,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.settings.destination)
            .field("role", &self.status.role())
            .finish()
    }
}

impl Destination {
    /// A destination not yet running, in `role`; its instances' tasks end
    /// when `cancel` fires.
    pub fn new(
        settings: InstanceSettings,
        cursors: SharedCursorStore,
        role: Role,
        cancel: CancellationToken,
    ) -> Self {
        Destination {
            settings,
            cursors,
            current: Mutex::new(None),
            status: HaStatus::new(role),
            cancel,
        }
    }

    /// The destination's name.
    pub fn name(&self) -> &str {
        &self.settings.destination
    }

    /// The settings every instance of it starts with.
    pub fn settings(&self) -> &InstanceSettings {
        &self.settings
    }

    /// Its role, terms and fencings on this server.
    pub fn ha(&self) -> &HaStatus {
        &self.status
    }

    /// The serving instance, when this server is active for the destination.
    pub fn instance(&self) -> Option<Arc<Instance>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts an instance under `lease`; replaces (and halts) any other.
    pub async fn start(&self, lease: Arc<Lease>) -> Result<Arc<Instance>, InstanceError> {
        self.halt_current().await;
        let instance = Instance::start(
            self.settings.clone(),
            self.cursors.clone(),
            lease,
            &self.cancel,
        )
        .await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(instance.clone());
        Ok(instance)
    }

    /// Graceful stop: the instance's cursors are flushed.
    pub async fn stop(&self) {
        if let Some(instance) = self.take_current() {
            instance.stop().await;
        }
    }

    /// Stops the instance writing nothing (fencing, or a replacement).
    async fn halt_current(&self) {
        if let Some(instance) = self.take_current() {
            instance.halt().await;
        }
    }

    /// The serving instance, no longer reachable through this destination.
    fn take_current(&self) -> Option<Arc<Instance>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

#[async_trait::async_trait]
impl Candidate for Destination {
    fn destination(&self) -> &str {
        &self.settings.destination
    }

    fn status(&self) -> &HaStatus {
        &self.status
    }

    async fn activate(&self, lease: Arc<Lease>) -> Result<(), ActivationError> {
        match self.start(lease).await {
            Ok(_) => Ok(()),
            Err(error) => Err(ActivationError::new(error.kind(), error)),
        }
    }

    async fn release(&self) {
        self.stop().await;
    }

    async fn fence(&self) {
        self.halt_current().await;
    }
}
