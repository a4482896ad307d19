//! The operator's view of canal destinations in ZooKeeper, and the two
//! changes it makes there (canal's node layout: the ZooKeeper table in
//! `docs/operations.md`).
//!
//! ```text
//!  Observer ── one SharedSession per (connect string, digest auth)
//!     │          (reopened when it expires)
//!     └── one task per destination: watches running, cluster, {dest}'s
//!         children and every cursor; publishes Observation::Seen(view)
//!         on a watch::Receiver and the key on `changes()`
//!
//!  reset_cursors / delete_destination: a session of their own each
//! ```
//!
//! - `key`: [`ObservedKey`], name checks, paths
//! - `view`: [`DestinationView`] and how nodes' bytes become it (pure)
//! - `session`: the shared, self-renewing sessions
//! - `track`: one destination's nodes and their one-shot watches
//! - `task`: the per-destination loop (reconnects, resync, publishing)
//! - `observer`: [`Observer`], the controller's handle
//! - `admin`: [`reset_cursors`], [`delete_destination`]
//! - `bridge`: the view in the CanalInstance status's terms

mod admin;
mod bridge;
mod error;
mod key;
mod observer;
mod session;
mod settings;
mod task;
mod track;
mod view;

pub use admin::{FENCE_GRACE, RESET_ADDRESS, delete_destination, reset_cursors};
pub use bridge::{facts, reset_position};
pub use error::{InvalidRequest, ZkAdminError};
pub use key::{KeyError, ObservedKey, check_client_id, check_destination};
pub use observer::Observer;
pub use session::SessionError;
pub use settings::ObserverSettings;
pub use view::{ClientCursor, DestinationView, Observation, RunningView};
