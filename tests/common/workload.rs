//! The workload of the crash-loop tests: a [`Writer`] committing numbered
//! multi-row transactions into MariaDB, a [`Checker`] consuming them the way
//! canal's cluster client does, and [`verify`] comparing the two.

// Each test binary that includes `common` uses a part of these, or none.
#![allow(unused_imports)]

mod checker;
mod verify;
mod writer;

pub use checker::{BatchRecord, Checker, CheckerOptions, CheckerReport, ConnectionRecord, Item};
pub use verify::{OrderViolation, Reconnect, Verdict, excess_duplicates, verify};
pub use writer::{CommittedTxn, Writer, WriterReport};
