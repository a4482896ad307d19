//! canal-operator: a canal-compatible binlog change-data-capture server and the
//! Kubernetes operator that runs it highly available.
//!
//! ```text
//!                     ┌──────────────────────── canal-server (one process per pod) ────────────────────────┐
//!  MySQL/MariaDB ─dump─► binlog ─ChangeEvent─► server::instance ─put─► store ─get/ack─► server (TCP) ─► clients
//!                     │   (replica, decode,     (pipeline, start        (bounded ring,     │ acks
//!                     │    filter; pure core)    position)               batches)          ▼
//!                     │                                            cursor (ZooKeeper | meta.dat | memory)
//!                     │ config (canal.properties, instance.properties, environment)
//!                     │ ha (ZooKeeper session, lease, election: who serves a destination)
//!                     │ metrics (/metrics, /healthz, /readyz)
//!                     └────────────────────────────────────────────────────────────────────────────────────┘
//!  CanalInstance ─► operator: fetch ─► validate ─► build ─► apply (StatefulSet, Services, ConfigMap, PDB)
//!                             └── ZooKeeper view (active server, cursors) ─► status
//! ```
//!
//! Rooms, each with one concern (`docs/architecture.md` has the whole map):
//! - [`protocol`]: canal's wire types (protobuf), frames and the login scramble. No I/O.
//! - [`binlog`]: the embedded binlog engine: a replica connection or a binlog file in,
//!   canal Entries out. Knows nothing of ZooKeeper or clients.
//! - [`config`]: canal's configuration files and environment overrides, read as canal reads them.
//! - [`store`]: the bounded per-destination event store with canal's batch, ack and rollback rules.
//! - [`cursor`]: where acknowledged client positions are kept (ZooKeeper, `meta.dat`, memory).
//! - [`ha`]: the ZooKeeper race for a destination, with a lease that fences a server that lost it.
//! - [`server`]: canal-server's destinations and the TCP listener serving canal clients.
//! - [`metrics`]: Prometheus metrics and the health endpoints, read from live state at scrape time.
//! - [`client`]: a canal protocol client (used by `canal-server tail`, tests and benchmarks).
//! - [`operator`]: the Kubernetes controller for `CanalInstance` resources.
//! - [`telemetry`]: logging setup shared by the binaries.
//! - [`signals`]: the signals that ask a binary to stop.

#![warn(missing_docs)]

pub mod binlog;
pub mod client;
pub mod config;
pub mod cursor;
pub mod ha;
pub mod metrics;
pub mod operator;
pub mod protocol;
pub mod server;
pub mod signals;
pub mod store;
pub mod telemetry;
