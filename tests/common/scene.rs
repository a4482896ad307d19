//! Scenes: the set-up a live test starts from, built in one call so that the
//! test itself reads as its scenario.
//!
//! - [`LiveSchema`]: a schema of the test MariaDB made for one test, with its
//!   tables, a server id and the binlog end to start from;
//! - [`ServerScene`]: that schema served by one canal server, in this process
//!   ([`ServerScene::start`]) or as a `canal-server` process on canal's file
//!   layout ([`ServerScene::spawn`]);
//! - [`HaScene`]: that schema as one destination of several `canal-server`
//!   processes racing in ZooKeeper; [`ha`] also holds the helpers the
//!   failover tests share (who is active, the workload's verdict).

// Each test binary that includes `common` uses a part of these, or none.
#![allow(unused_imports)]

pub mod ha;
mod schema;
pub mod server;

pub use ha::HaScene;
pub use schema::LiveSchema;
pub use server::{InProcessServer, ServerScene, SpawnedServer};
