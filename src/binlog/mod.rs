//! The embedded binlog engine: a replica connection to MySQL or MariaDB (or a
//! binlog file) turned into canal change entries.
//!
//! Knows nothing of ZooKeeper or clients. Reads a live stream or a binlog
//! file through the same decoder.

pub mod bytes;
pub mod change;
pub mod charset;
pub mod ddl;
pub mod decimal;
pub mod decode;
pub mod event;
pub mod file;
pub mod filter;
pub mod gtid;
pub mod guard;
pub mod javafmt;
pub mod json_binary;
pub mod mariadb;
pub mod position;
pub mod replica;
pub mod rows;
pub mod schema;
pub mod source;
pub mod table;
pub mod temporal;
pub mod text;
pub mod value;
