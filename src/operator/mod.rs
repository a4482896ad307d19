//! The controller: `CanalInstance` resources in, StatefulSets of
//! canal-server pods (and their Services, ConfigMap, PodDisruptionBudget)
//! out, with the destination's active server and cursors reported back.
//!
//! ```text
//!  CanalInstance ─► validate ─► build (pure) ─► apply (server-side apply)
//!        ▲                                         │
//!        └──────── status ◄── zookeeper (running, cluster, cursors)
//! ```

pub mod apply;
pub mod build;
pub mod controller;
pub mod crd;
pub mod metrics;
pub mod reconcile;
pub mod rollout;
pub mod status;
pub mod validate;
pub mod zookeeper;
