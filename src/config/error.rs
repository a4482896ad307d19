//! Why a configuration cannot start the server, and where a value came from.

use std::{fmt, path::PathBuf};

/// Where a setting was read: a file line or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a properties file.
    File {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
    },
    /// An environment variable named like the key (canal's Docker style).
    Env {
        /// The variable's name.
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
    /// A file that cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A file that is not a properties file.
    #[error("{}: {source}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where and what.
        #[source]
        source: super::properties::SyntaxError,
    },
    /// A value that does not parse or is out of range.
    #[error("{key} = {} in {origin}: expected {expected}", Quoted(value))]
    Invalid {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// Where it was set.
        origin: Origin,
        /// What would be accepted.
        expected: String,
    },
    /// A required key with no value anywhere.
    #[error("{key} is not set for destination {destination:?} (in {} or canal.properties or the environment): {expected}", path.display())]
    Missing {
        /// The key.
        key: String,
        /// The destination it is needed for.
        destination: String,
        /// The destination's `instance.properties`.
        path: PathBuf,
        /// What to set it to.
        expected: String,
    },
    /// A `${name}` placeholder whose name has no value and no default.
    #[error(
        "{key} = {value:?} in {origin}: placeholder ${{{name}}} is not set (write ${{{name}:default}} to give a default)"
    )]
    Placeholder {
        /// The key whose value holds the placeholder.
        key: String,
        /// The value as written.
        value: String,
        /// Where it was set.
        origin: Origin,
        /// The placeholder's name.
        name: String,
    },
    /// A destination listed in canal.destinations without its instance file.
    #[error("destination {destination:?} (canal.destinations) has no instance configuration: {} does not exist{hint}", path.display())]
    MissingInstance {
        /// The destination.
        destination: String,
        /// Where its file was looked for.
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
