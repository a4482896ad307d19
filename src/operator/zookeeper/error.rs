//! Why an admin operation on a destination's nodes failed: each message
//! names the path and what to do.

use zookeeper_client::Error as ZkError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZkAdminError {
    /// The request itself is unusable (destination, client id, position).
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{reason}; check spec.zookeeper.connect and that the ensemble is reachable from the operator"
    )]
    Unreachable { reason: String },
    #[error("ZooKeeper refused to {operation} {path}: {reason}")]
    Request {
        operation: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "{path} has no client nodes: no client of destination {destination} has subscribed yet, so \
         there is no cursor to reset; name the client (spec.cursorReset.clientId) to create its cursor"
    )]
    NoClients { destination: String, path: String },
    #[error(
        "cannot take {path} to fence the destination's servers for the cursor reset: {reason}; \
         nothing was changed, retry later"
    )]
    LockBusy { path: String, reason: String },
    #[error(
        "lost {path} during the cursor reset ({reason}): a server may have resumed before the \
         new cursors were in place; run the reset again"
    )]
    LockLost { path: String, reason: String },
    #[error(
        "{path} does not hold the new position after the reset (it holds {found}); something wrote \
         over it, run the reset again"
    )]
    NotApplied { path: String, found: String },
    #[error(
        "cannot delete {path}: {reason}; a canal-server still runs the destination and re-creates \
         its nodes: stop its servers (scale the StatefulSet to 0) and retry"
    )]
    InUse { path: String, reason: String },
}

impl ZkAdminError {
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
}
