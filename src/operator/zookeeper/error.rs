//! Why an admin operation on a destination's nodes failed: each message
//! names the path and what to do.

use std::time::Duration;

use zookeeper_client::Error as ZkError;

use super::{key::KeyError, session::SessionError};

/// Why a cursor reset or a destination's deletion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZkAdminError {
    /// The request itself is unusable (destination, client id, position).
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// No session could be opened.
    #[error(
        "{0}; check spec.zookeeper.connect and that the ensemble is reachable from the operator"
    )]
    Unreachable(SessionError),
    /// The whole operation took too long; the session was closed.
    #[error(
        "{operation} {path} got no answer from ZooKeeper within {after:?}; check \
         spec.zookeeper.connect and that the ensemble is reachable from the operator"
    )]
    TimedOut {
        /// What was under way, as the message's subject ("deleting").
        operation: &'static str,
        /// The destination's node.
        path: String,
        /// How long it was given.
        after: Duration,
    },
    /// ZooKeeper refused one request.
    #[error("ZooKeeper refused to {operation} {path}: {reason}")]
    Request {
        /// What was asked ("read", "write", ...).
        operation: &'static str,
        /// The node it was asked of.
        path: String,
        /// ZooKeeper's answer, with what to do about it.
        reason: String,
    },
    /// A reset of every client found none.
    #[error(
        "{path} has no client nodes: no client of destination {destination} has subscribed yet, so \
         there is no cursor to reset; name the client (spec.cursorReset.clientId) to create its cursor"
    )]
    NoClients {
        /// The destination's name.
        destination: String,
        /// The destination's node.
        path: String,
    },
    /// The `running` node could not be taken from the servers.
    #[error(
        "cannot take {path} to fence the destination's servers for the cursor reset: {reason}; \
         nothing was changed, retry later"
    )]
    LockBusy {
        /// The `running` node.
        path: String,
        /// Who holds it, or what went wrong.
        reason: String,
    },
    /// The `running` node was lost before the new cursors were in place.
    #[error(
        "lost {path} during the cursor reset ({reason}): a server may have resumed before the \
         new cursors were in place; run the reset again"
    )]
    LockLost {
        /// The `running` node.
        path: String,
        /// What happened to it.
        reason: String,
    },
    /// A cursor read back does not hold the new position.
    #[error(
        "{path} does not hold the new position after the reset (it holds {found}); something wrote \
         over it, run the reset again"
    )]
    NotApplied {
        /// The cursor node.
        path: String,
        /// What it holds instead.
        found: String,
    },
    /// The destination's nodes keep coming back: a server still runs it.
    #[error(
        "cannot delete {path}: {reason}; a canal-server still runs the destination and re-creates \
         its nodes: stop its servers (scale the StatefulSet to 0) and retry"
    )]
    InUse {
        /// The destination's node.
        path: String,
        /// What keeps reappearing.
        reason: String,
    },
}

/// Why a reset or delete request is refused before ZooKeeper is asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// The destination, client id or credentials cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The reset position names no place to resume from.
    #[error("the reset position has neither a binlog file name (journalName) nor a GTID set")]
    NoPosition,
    /// The reset position lies in the binlog file's header.
    #[error(
        "binlog position {position} in {journal_name} is before the first event; positions start at 4"
    )]
    BeforeFirstEvent {
        /// The binlog file.
        journal_name: String,
        /// The refused offset.
        position: u64,
    },
}

impl From<KeyError> for ZkAdminError {
    fn from(error: KeyError) -> ZkAdminError {
        ZkAdminError::Invalid(InvalidRequest::Key(error))
    }
}

impl ZkAdminError {
    /// A refused request, with what to do about the usual refusals.
    pub(crate) fn request(operation: &'static str, path: &str, error: ZkError) -> ZkAdminError {
        let reason = match error {
            ZkError::NoAuth => "not authorized: the node's ACL does not grant the operator's \
                                ZooKeeper credentials (spec.zookeeper.auth)"
                .to_owned(),
            ZkError::SessionExpired | ZkError::ConnectionLoss | ZkError::Timeout => {
                format!("{error}; the ensemble may be unavailable, retry later")
            }
            error => error.to_string(),
        };
        ZkAdminError::Request {
            operation,
            path: path.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_path_and_the_remedy() {
        let error = ZkAdminError::request("read", "/otter/canal/destinations/x", ZkError::NoAuth);
        let text = error.to_string();
        assert!(
            text.contains("/otter/canal/destinations/x") && text.contains("spec.zookeeper.auth"),
            "{text}"
        );
        let busy = ZkAdminError::LockBusy {
            path: "/otter/canal/destinations/x/running".into(),
            reason: "another cursor reset holds it".into(),
        };
        assert!(busy.to_string().contains("retry later"));
    }

    #[test]
    fn typed_causes_keep_their_sentences() {
        let timed_out = ZkAdminError::TimedOut {
            operation: "deleting",
            path: "/otter/canal/destinations/x".into(),
            after: Duration::from_secs(60),
        };
        assert_eq!(
            timed_out.to_string(),
            "deleting /otter/canal/destinations/x got no answer from ZooKeeper within 60s; check \
             spec.zookeeper.connect and that the ensemble is reachable from the operator"
        );
        let unreachable = ZkAdminError::Unreachable(SessionError::NoAnswer {
            connect: "zk:2181".into(),
            after: Duration::from_secs(9),
        });
        assert_eq!(
            unreachable.to_string(),
            "cannot connect to ZooKeeper at zk:2181: no answer within 9s; check \
             spec.zookeeper.connect and that the ensemble is reachable from the operator"
        );
        let early = ZkAdminError::from(InvalidRequest::BeforeFirstEvent {
            journal_name: "mysql-bin.000001".into(),
            position: 3,
        });
        assert_eq!(
            early.to_string(),
            "binlog position 3 in mysql-bin.000001 is before the first event; positions start at 4"
        );
    }
}
