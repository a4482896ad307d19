//! canal-operator: a canal-compatible binlog change-data-capture server and the
//! Kubernetes operator that runs it highly available.
//!
//! ```text
//!  MySQL/MariaDB ──binlog dump──► binlog::source ─► binlog::decode (+ table meta)
//!                                                      │ filter
//!                                                      ▼
//!                                             canal Entry (protocol::entry)
//! ```
//!
//! Rooms: [`protocol`] (wire types), [`binlog`] (the embedded engine),
//! [`telemetry`] (logging).

pub mod binlog;
pub mod client;
pub mod config;
pub mod cursor;
pub mod ha;
pub mod metrics;
pub mod operator;
pub mod protocol;
pub mod server;
pub mod store;
pub mod telemetry;
