//! The embedded binlog engine: a replica connection to MySQL or MariaDB (or a
//! binlog file) turned into canal change entries.
//!
//! Knows nothing of ZooKeeper or clients. Reads a live stream or a binlog
//! file through the same decoder.

pub mod charset;
pub mod cursor;
pub mod decimal;
pub mod gtid;
pub mod javafmt;
pub mod json;
pub mod position;
pub mod temporal;
