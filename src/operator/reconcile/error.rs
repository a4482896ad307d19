//! Why a reconcile pass failed, with a category for the metrics label and
//! a verdict on whether retrying can help.

use crate::operator::zookeeper::ZkAdminError;

/// Why a reconcile pass failed; the controller logs it and retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the Kubernetes API failed (refused, or never answered).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An operation on the destination's ZooKeeper nodes failed (the
    /// finalizer's cleanup).
    #[error("ZooKeeper: {0}")]
    ZooKeeper(#[from] ZkAdminError),
}

impl Error {
    /// The `kind` label of `canal_operator_reconcile_errors`: "api" (the API
    /// server answered with an error), "client" (no answer: connection,
    /// TLS, request), "zookeeper". Documented values: keep them.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::ZooKeeper(_) => "zookeeper",
        }
    }

    /// Whether a retry alone may succeed (`false`: a person must change
    /// something first: RBAC, the spec, an admission policy).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(status)) => is_transient_status(status.code),
            // A request that cannot be built fails the same way next time.
            Error::Kube(kube::Error::BuildRequest(_)) => false,
            Error::Kube(_) => true,
            Error::ZooKeeper(error) => !matches!(
                error,
                ZkAdminError::Invalid { .. } | ZkAdminError::NoClients { .. }
            ),
        }
    }
}

/// HTTP status codes of the API server after which a retry may succeed:
/// conflicts, throttling, timeouts, server-side failures, and a 404 (the
/// object may appear, or the pass is not needed any more). Others (400
/// invalid, 401/403 refused, 422 rejected) need a person.
fn is_transient_status(code: u16) -> bool {
    matches!(code, 404 | 408 | 409 | 429) || code >= 500
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::zookeeper::SessionError;

    fn api_error(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        })))
    }

    #[test]
    fn the_metrics_labels_keep_their_values() {
        assert_eq!(api_error(403).kind(), "api");
        let unreachable = ZkAdminError::Unreachable(SessionError::NoAnswer {
            connect: "zk:2181".into(),
            after: std::time::Duration::from_secs(3),
        });
        assert_eq!(Error::ZooKeeper(unreachable).kind(), "zookeeper");
    }

    #[test]
    fn refusals_need_a_person_and_overload_is_retried() {
        assert!(!api_error(403).is_transient());
        assert!(!api_error(422).is_transient());
        assert!(api_error(409).is_transient());
        assert!(api_error(429).is_transient());
        assert!(api_error(503).is_transient());
    }

    #[test]
    fn zookeeper_errors_are_transient_unless_the_request_is_wrong() {
        let in_use = ZkAdminError::InUse {
            path: "/otter/canal/destinations/orders".into(),
            reason: "not empty".into(),
        };
        assert!(Error::ZooKeeper(in_use).is_transient());
        let invalid = ZkAdminError::NoClients {
            destination: "orders".into(),
            path: "/otter/canal/destinations/orders/1001".into(),
        };
        assert!(!Error::ZooKeeper(invalid).is_transient());
    }
}
