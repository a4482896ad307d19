//! Why a configuration cannot start the server, and where a value came from.

use std::{fmt, path::PathBuf};

/// Where a setting was read: a file line or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File {
        path: PathBuf,
        line: usize,
    },
    /// An environment variable named like the key (canal's Docker style).
    Env {
        key: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{} line {line}", path.display()),
            Origin::Env { key } => write!(f, "environment variable {key}"),
        }
    }
}

/// A configuration problem that stops start-up. Every message names the key
/// and where it was set, so it can be fixed without reading code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Syntax {
        path: PathBuf,
        #[source]
        source: super::properties::SyntaxError,
    },
    /// A value that does not parse or is out of range.
    #[error("{key} = {} in {origin}: expected {expected}", Quoted(value))]
    Invalid {
        key: String,
        value: String,
        origin: Origin,
        expected: String,
    },
    /// A required key with no value anywhere.
    #[error("{key} is not set for destination {destination:?} (in {} or canal.properties or the environment): {expected}", path.display())]
    Missing {
        key: String,
        destination: String,
        path: PathBuf,
        expected: String,
    },
    /// A `${name}` placeholder whose name has no value and no default.
    #[error(
        "{key} = {value:?} in {origin}: placeholder ${{{name}}} is not set (write ${{{name}:default}} to give a default)"
    )]
    Placeholder {
        key: String,
        value: String,
        origin: Origin,
        name: String,
    },
    /// A destination listed in canal.destinations without its instance file.
    #[error("destination {destination:?} (canal.destinations) has no instance configuration: {} does not exist{hint}", path.display())]
    MissingInstance {
        destination: String,
        path: PathBuf,
        /// Why the file was looked for there, when canal.conf.dir moved it.
        hint: String,
    },
    /// Two settings that cannot both hold.
    #[error("{0}")]
    Conflict(String),
}

/// A value in double quotes, verbatim except for quotes and control
/// characters (so a regex reads as written).
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}
