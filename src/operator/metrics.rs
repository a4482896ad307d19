//! The operator's Prometheus metrics and health endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// The label of `canal_operator_reconciles`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// "ok" or "error".
    pub result: &'static str,
}

/// The label of `canal_operator_reconcile_errors`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// `operator::reconcile::Error::kind`: "api", "client", "zookeeper".
    pub kind: &'static str,
}

/// The operator's metrics, registered under the `canal_operator` prefix.
pub struct OperatorMetrics {
    /// Reconciles by result.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Failed reconciles by kind.
    pub errors: Family<ErrorLabel, Counter>,
    /// How long each reconcile took, in seconds.
    pub duration: Histogram,
    /// Changes of an instance's active server seen in its status.
    pub leader_changes: Counter,
    /// Status writes (a pass writes only a changed status).
    pub status_writes: Counter,
    /// 1 while this replica holds the operator's Lease.
    pub leading: Gauge,
    registry: Registry,
    /// Set once the controller runs (or stands by for the Lease).
    pub started: AtomicBool,
}

impl OperatorMetrics {
    /// Every metric at zero, registered.
    pub fn new() -> Arc<OperatorMetrics> {
        let mut registry = Registry::with_prefix("canal_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        let leader_changes = Counter::default();
        let status_writes = Counter::default();
        let leading = Gauge::default();
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register(
            "active_server_changes",
            "Changes of a destination's active server the operator saw",
            leader_changes.clone(),
        );
        registry.register(
            "status_writes",
            "Status updates written",
            status_writes.clone(),
        );
        registry.register(
            "leading",
            "1 while this replica is the operator leader",
            leading.clone(),
        );
        Arc::new(OperatorMetrics {
            reconciles,
            errors,
            duration,
            leader_changes,
            status_writes,
            leading,
            registry,
            started: AtomicBool::new(false),
        })
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

async fn metrics(State(metrics): State<Arc<OperatorMetrics>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn healthz() -> impl IntoResponse {
    "ok"
}

/// Ready once started: a standby operator replica is ready too (it takes
/// over when the Lease frees up).
async fn readyz(State(metrics): State<Arc<OperatorMetrics>>) -> impl IntoResponse {
    if metrics.started.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until
/// `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<OperatorMetrics>,
    cancel: CancellationToken,
) {
    let router = Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(%error, "operator metrics endpoint stopped");
    }
}
