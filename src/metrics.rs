//! Prometheus metrics and health endpoints on `canal.metrics.pull.port`:
//! `/metrics`, `/healthz` (the process answers) and `/readyz` (every
//! destination's source is running; the body says per destination).
//!
//! Values are read from the live server state at scrape time.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};

use crate::ha::Role;
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

use crate::server::ServerShared;

#[derive(Debug)]
struct ServerCollector {
    shared: Arc<ServerShared>,
}

type Labels = Vec<(&'static str, String)>;

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, f64)],
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, u64)],
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut delay = Vec::new();
        let (mut events, mut bytes, mut entries, mut reconnects) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut store_events, mut store_bytes, mut store_capacity) =
            (Vec::new(), Vec::new(), Vec::new());
        let (mut position, mut up, mut connected) = (Vec::new(), Vec::new(), Vec::new());
        let (mut acked, mut acked_time, mut outstanding) = (Vec::new(), Vec::new(), Vec::new());
        let (mut role, mut terms, mut fencings, mut failover) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (name, slot) in &self.shared.destinations {
            let destination = || vec![("destination", name.clone())];
            let ha = slot.ha();
            let current = ha.role();
            for candidate in [Role::Active, Role::Standby, Role::Fenced, Role::Standalone] {
                role.push((
                    vec![
                        ("destination", name.clone()),
                        ("role", candidate.as_str().into()),
                    ],
                    if current == candidate { 1.0 } else { 0.0 },
                ));
            }
            terms.push((destination(), ha.terms()));
            fencings.push((destination(), ha.fencings()));
            if let Some(seconds) = ha.last_failover_seconds() {
                failover.push((destination(), seconds));
            }
            // The rest describes the serving instance: active servers only.
            let Some(instance) = slot.instance() else {
                continue;
            };
            let stats = instance.stats();
            let last = stats.last_event_ms.load(Relaxed);
            if last > 0 {
                delay.push((destination(), (now_ms - last).max(0) as f64 / 1000.0));
            }
            events.push((destination(), stats.events.load(Relaxed)));
            bytes.push((destination(), stats.bytes.load(Relaxed)));
            entries.push((destination(), stats.entries.load(Relaxed)));
            reconnects.push((destination(), stats.reconnects.load(Relaxed)));
            let (held, held_bytes, config, clients) = instance.store().with_state(|s| {
                let clients: Vec<_> = s.clients().map(|c| (c, s.outstanding(c))).collect();
                (s.len(), s.bytes(), *s.config(), clients)
            });
            store_events.push((destination(), held as f64));
            store_bytes.push((destination(), held_bytes as f64));
            store_capacity.push((
                vec![("destination", name.clone()), ("unit", "events".into())],
                config.capacity_events as f64,
            ));
            store_capacity.push((
                vec![("destination", name.clone()), ("unit", "bytes".into())],
                config.capacity_bytes as f64,
            ));
            if let Some(checkpoint) = stats
                .position
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                position.push((
                    vec![
                        ("destination", name.clone()),
                        ("journal", checkpoint.journal),
                    ],
                    checkpoint.position as f64,
                ));
            }
            up.push((destination(), if instance.is_running() { 1.0 } else { 0.0 }));
            connected.push((destination(), instance.connected() as f64));
            for (client, batches) in clients {
                outstanding.push((
                    vec![
                        ("destination", name.clone()),
                        ("client", client.to_string()),
                    ],
                    batches as f64,
                ));
            }
            if let Some(cursors) = instance.last_cursors() {
                for (client, cursor) in cursors {
                    let labels = vec![
                        ("destination", name.clone()),
                        ("client", client.to_string()),
                        ("journal", cursor.position.journal_name.clone()),
                    ];
                    acked.push((labels, cursor.position.position as f64));
                    acked_time.push((
                        vec![
                            ("destination", name.clone()),
                            ("client", client.to_string()),
                        ],
                        cursor.position.timestamp_ms as f64 / 1000.0,
                    ));
                }
            }
        }
        gauge(
            &mut encoder,
            "canal_ha_role",
            "1 for the destination's current role on this server (active, standby, fenced, standalone)",
            &role,
        )?;
        counter(
            &mut encoder,
            "canal_ha_terms",
            "Times this server became the destination's active server",
            &terms,
        )?;
        counter(
            &mut encoder,
            "canal_ha_fencings",
            "Times this server stopped serving the destination without a planned release",
            &fencings,
        )?;
        gauge(
            &mut encoder,
            "canal_ha_last_failover_seconds",
            "Last takeover by this server: from seeing the previous owner's running node vanish to serving",
            &failover,
        )?;
        gauge(
            &mut encoder,
            "canal_binlog_delay_seconds",
            "Seconds between now and the binlog time of the last event read; reset by the source's heartbeats while nothing newer exists",
            &delay,
        )?;
        counter(
            &mut encoder,
            "canal_binlog_events",
            "Binlog events parsed",
            &events,
        )?;
        counter(
            &mut encoder,
            "canal_binlog_bytes",
            "Binlog bytes parsed",
            &bytes,
        )?;
        counter(
            &mut encoder,
            "canal_binlog_entries",
            "Canal entries produced",
            &entries,
        )?;
        counter(
            &mut encoder,
            "canal_binlog_reconnects",
            "Reconnects to the source",
            &reconnects,
        )?;
        gauge(
            &mut encoder,
            "canal_binlog_position",
            "Byte offset of the last complete transaction read, per binlog file",
            &position,
        )?;
        gauge(
            &mut encoder,
            "canal_source_up",
            "1 while the destination's binlog source runs",
            &up,
        )?;
        gauge(
            &mut encoder,
            "canal_store_events",
            "Entries held in the store",
            &store_events,
        )?;
        gauge(
            &mut encoder,
            "canal_store_bytes",
            "Bytes of entries held in the store",
            &store_bytes,
        )?;
        gauge(
            &mut encoder,
            "canal_store_capacity",
            "Store capacity",
            &store_capacity,
        )?;
        gauge(
            &mut encoder,
            "canal_clients_connected",
            "Client sessions subscribed",
            &connected,
        )?;
        gauge(
            &mut encoder,
            "canal_client_batches_outstanding",
            "Batches delivered but not acknowledged",
            &outstanding,
        )?;
        gauge(
            &mut encoder,
            "canal_client_acked_position",
            "Byte offset of the client's cursor",
            &acked,
        )?;
        gauge(
            &mut encoder,
            "canal_client_acked_timestamp_seconds",
            "Binlog time of the client's cursor",
            &acked_time,
        )?;
        Ok(())
    }
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    shared: Arc<ServerShared>,
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            "encoding failed".into(),
        ),
    }
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// Ready: every destination is served here with its source running, or is
/// on standby, ready to take over. A fenced destination (ZooKeeper cannot
/// confirm this server's session) is not ready.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let mut ready = true;
    let mut body = serde_json::Map::new();
    for (name, destination) in &state.shared.destinations {
        let role = destination.ha().role();
        let instance = destination.instance();
        let running = instance.as_ref().is_some_and(|i| i.is_running());
        ready &= match role {
            Role::Active | Role::Standalone => running,
            Role::Standby => true,
            Role::Fenced => false,
        };
        body.insert(
            name.clone(),
            serde_json::json!({
                "role": role.as_str(),
                "running": running,
                "error": instance.as_ref().and_then(|i| i.failure()),
                "clients": instance.as_ref().map_or(0, |i| i.connected()),
                "terms": destination.ha().terms(),
                "lastFenceReason": destination.ha().last_fence_reason(),
            }),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [("content-type", "application/json")],
        serde_json::Value::Object(body).to_string(),
    )
}

/// Serves the endpoints on `listener` until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<ServerShared>,
    cancel: CancellationToken,
) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServerCollector {
        shared: shared.clone(),
    }));
    let state = HttpState {
        registry: Arc::new(registry),
        shared,
    };
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(%error, "metrics endpoint stopped");
    }
}

/// Binds the metrics port.
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, std::io::Error> {
    tokio::net::TcpListener::bind(address).await
}
