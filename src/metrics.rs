//! Prometheus metrics and health endpoints on `canal.metrics.pull.port`:
//! `/metrics`, `/healthz` (the process answers) and `/readyz` (every
//! destination's source is running; the body says per destination).
//!
//! Values are read from the live server state at scrape time, through
//! [`LiveState`]: the server hands over a plain snapshot, so this module
//! knows what to publish, not how the server keeps it.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

use crate::{ha::Role, store::ClientId};

/// What the endpoints read: the server's destinations as they are now.
pub trait LiveState: Send + Sync + 'static {
    /// One snapshot per destination, in a stable order (the order of the
    /// published series).
    fn destinations(&self) -> Vec<DestinationSnapshot>;
}

/// One destination at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationSnapshot {
    /// The destination's name (the `destination` label).
    pub name: String,
    /// Its role on this server.
    pub role: Role,
    /// Times this server became its active server.
    pub terms: u64,
    /// Times this server stopped serving it without a planned release.
    pub fencings: u64,
    /// The last takeover's duration, if this server took it over.
    pub last_failover_seconds: Option<f64>,
    /// Why this server last stopped serving it, if it did.
    pub last_fence_reason: Option<String>,
    /// The serving instance, when this server is active for it.
    pub serving: Option<ServingSnapshot>,
}

/// The instance serving a destination on this server, at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServingSnapshot {
    /// Whether its binlog source runs.
    pub running: bool,
    /// The error that stopped the source, if one did.
    pub failure: Option<String>,
    /// Client sessions subscribed.
    pub connected: i64,
    /// Binlog time of the last event read (ms since the epoch; 0: none yet).
    pub last_event_ms: i64,
    /// Binlog events parsed.
    pub events: u64,
    /// Binlog bytes parsed.
    pub bytes: u64,
    /// Canal entries produced.
    pub entries: u64,
    /// Reconnects to the source.
    pub reconnects: u64,
    /// Entries held in the store.
    pub store_events: usize,
    /// Bytes of entries held in the store.
    pub store_bytes: u64,
    /// Store capacity in entries.
    pub capacity_events: usize,
    /// Store capacity in bytes.
    pub capacity_bytes: usize,
    /// The last complete transaction read: binlog file and byte offset.
    pub position: Option<(String, u64)>,
    /// Batches delivered but not acknowledged, per subscribed client.
    pub outstanding: Vec<(ClientId, usize)>,
    /// Every client's latest acknowledged cursor.
    pub cursors: Vec<AckedCursor>,
}

/// A client's latest acknowledged cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedCursor {
    /// The client.
    pub client: ClientId,
    /// Binlog file of the cursor.
    pub journal: String,
    /// Byte offset in that file.
    pub position: u64,
    /// Binlog time of the cursor, ms since the epoch.
    pub timestamp_ms: i64,
}

type Labels = Vec<(&'static str, String)>;
type Samples<T> = Vec<(Labels, T)>;

/// How one family reads its samples from a destination; gauges also get
/// the scrape time (ms since the epoch).
enum Reader {
    Gauge(fn(&DestinationSnapshot, i64, &mut Samples<f64>)),
    Counter(fn(&DestinationSnapshot, &mut Samples<u64>)),
}

/// One metric family: name, help text and how to read it.
struct Family {
    name: &'static str,
    help: &'static str,
    read: Reader,
}

fn destination(d: &DestinationSnapshot) -> Labels {
    vec![("destination", d.name.clone())]
}

fn with(d: &DestinationSnapshot, labels: &[(&'static str, String)]) -> Labels {
    let mut all = destination(d);
    all.extend_from_slice(labels);
    all
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// A gauge of the serving instance only (active servers).
fn serving_gauge(
    d: &DestinationSnapshot,
    out: &mut Samples<f64>,
    value: impl Fn(&ServingSnapshot) -> f64,
) {
    if let Some(serving) = &d.serving {
        out.push((destination(d), value(serving)));
    }
}

/// A counter of the serving instance only (active servers).
fn serving_counter(
    d: &DestinationSnapshot,
    out: &mut Samples<u64>,
    value: impl Fn(&ServingSnapshot) -> u64,
) {
    if let Some(serving) = &d.serving {
        out.push((destination(d), value(serving)));
    }
}

const ROLES: [Role; 4] = [Role::Active, Role::Standby, Role::Fenced, Role::Standalone];

/// Every published family, in the order of the output (dashboards and
/// docs name these; keep names, labels and help text stable).
const FAMILIES: &[Family] = &[
    Family {
        name: "canal_ha_role",
        help: "1 for the destination's current role on this server (active, standby, fenced, standalone)",
        read: Reader::Gauge(|d, _, out| {
            for role in ROLES {
                out.push((
                    with(d, &[("role", role.as_str().into())]),
                    flag(d.role == role),
                ));
            }
        }),
    },
    Family {
        name: "canal_ha_terms",
        help: "Times this server became the destination's active server",
        read: Reader::Counter(|d, out| out.push((destination(d), d.terms))),
    },
    Family {
        name: "canal_ha_fencings",
        help: "Times this server stopped serving the destination without a planned release",
        read: Reader::Counter(|d, out| out.push((destination(d), d.fencings))),
    },
    Family {
        name: "canal_ha_last_failover_seconds",
        help: "Last takeover by this server: from seeing the previous owner's running node vanish to serving",
        read: Reader::Gauge(|d, _, out| {
            if let Some(seconds) = d.last_failover_seconds {
                out.push((destination(d), seconds));
            }
        }),
    },
    Family {
        name: "canal_binlog_delay_seconds",
        help: "Seconds between now and the binlog time of the last event read; reset by the source's heartbeats while nothing newer exists",
        read: Reader::Gauge(|d, now_ms, out| {
            if let Some(serving) = d.serving.as_ref().filter(|s| s.last_event_ms > 0) {
                let delay_ms = (now_ms - serving.last_event_ms).max(0);
                out.push((destination(d), delay_ms as f64 / 1000.0));
            }
        }),
    },
    Family {
        name: "canal_binlog_events",
        help: "Binlog events parsed",
        read: Reader::Counter(|d, out| serving_counter(d, out, |s| s.events)),
    },
    Family {
        name: "canal_binlog_bytes",
        help: "Binlog bytes parsed",
        read: Reader::Counter(|d, out| serving_counter(d, out, |s| s.bytes)),
    },
    Family {
        name: "canal_binlog_entries",
        help: "Canal entries produced",
        read: Reader::Counter(|d, out| serving_counter(d, out, |s| s.entries)),
    },
    Family {
        name: "canal_binlog_reconnects",
        help: "Reconnects to the source",
        read: Reader::Counter(|d, out| serving_counter(d, out, |s| s.reconnects)),
    },
    Family {
        name: "canal_binlog_position",
        help: "Byte offset of the last complete transaction read, per binlog file",
        read: Reader::Gauge(|d, _, out| {
            if let Some((journal, position)) = d.serving.as_ref().and_then(|s| s.position.as_ref())
            {
                out.push((with(d, &[("journal", journal.clone())]), *position as f64));
            }
        }),
    },
    Family {
        name: "canal_source_up",
        help: "1 while the destination's binlog source runs",
        read: Reader::Gauge(|d, _, out| serving_gauge(d, out, |s| flag(s.running))),
    },
    Family {
        name: "canal_store_events",
        help: "Entries held in the store",
        read: Reader::Gauge(|d, _, out| serving_gauge(d, out, |s| s.store_events as f64)),
    },
    Family {
        name: "canal_store_bytes",
        help: "Bytes of entries held in the store",
        read: Reader::Gauge(|d, _, out| serving_gauge(d, out, |s| s.store_bytes as f64)),
    },
    Family {
        name: "canal_store_capacity",
        help: "Store capacity",
        read: Reader::Gauge(|d, _, out| {
            if let Some(serving) = &d.serving {
                let events = serving.capacity_events as f64;
                out.push((with(d, &[("unit", "events".into())]), events));
                let bytes = serving.capacity_bytes as f64;
                out.push((with(d, &[("unit", "bytes".into())]), bytes));
            }
        }),
    },
    Family {
        name: "canal_clients_connected",
        help: "Client sessions subscribed",
        read: Reader::Gauge(|d, _, out| serving_gauge(d, out, |s| s.connected as f64)),
    },
    Family {
        name: "canal_client_batches_outstanding",
        help: "Batches delivered but not acknowledged",
        read: Reader::Gauge(|d, _, out| {
            for (client, batches) in d.serving.iter().flat_map(|s| &s.outstanding) {
                out.push((with(d, &[("client", client.to_string())]), *batches as f64));
            }
        }),
    },
    Family {
        name: "canal_client_acked_position",
        help: "Byte offset of the client's cursor",
        read: Reader::Gauge(|d, _, out| {
            for cursor in d.serving.iter().flat_map(|s| &s.cursors) {
                let labels = [
                    ("client", cursor.client.to_string()),
                    ("journal", cursor.journal.clone()),
                ];
                out.push((with(d, &labels), cursor.position as f64));
            }
        }),
    },
    Family {
        name: "canal_client_acked_timestamp_seconds",
        help: "Binlog time of the client's cursor",
        read: Reader::Gauge(|d, _, out| {
            for cursor in d.serving.iter().flat_map(|s| &s.cursors) {
                let labels = [("client", cursor.client.to_string())];
                out.push((with(d, &labels), cursor.timestamp_ms as f64 / 1000.0));
            }
        }),
    },
];

/// Writes every family for `destinations` as of `now_ms`.
fn encode_families(
    encoder: &mut DescriptorEncoder,
    destinations: &[DestinationSnapshot],
    now_ms: i64,
) -> std::fmt::Result {
    for family in FAMILIES {
        match family.read {
            Reader::Gauge(read) => {
                let samples = collect(destinations, |d, out| read(d, now_ms, out));
                let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
                encode_family(encoder, family, MetricType::Gauge, samples)?;
            }
            Reader::Counter(read) => {
                let samples = collect(destinations, read);
                let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
                encode_family(encoder, family, MetricType::Counter, samples)?;
            }
        }
    }
    Ok(())
}

/// One family's samples over every destination, in their order.
fn collect<T>(
    destinations: &[DestinationSnapshot],
    read: impl Fn(&DestinationSnapshot, &mut Samples<T>),
) -> Samples<T> {
    let mut samples = Vec::new();
    for d in destinations {
        read(d, &mut samples);
    }
    samples
}

fn encode_family(
    encoder: &mut DescriptorEncoder,
    family: &Family,
    metric_type: MetricType,
    samples: impl Iterator<Item = (Labels, impl EncodeMetric)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

struct ServerCollector {
    state: Arc<dyn LiveState>,
}

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCollector").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        encode_families(&mut encoder, &self.state.destinations(), now_ms)
    }
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    state: Arc<dyn LiveState>,
}

async fn metrics(State(http): State<HttpState>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &http.registry) {
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

/// Whether a destination in this state lets the server count as ready:
/// served here with its source running, or on standby, ready to take
/// over. A fenced destination (ZooKeeper cannot confirm this server's
/// session) is not ready.
fn is_ready(role: Role, running: bool) -> bool {
    match role {
        Role::Active | Role::Standalone => running,
        Role::Standby => true,
        Role::Fenced => false,
    }
}

/// Ready when every destination [`is_ready`]; the body says per destination.
async fn readyz(State(http): State<HttpState>) -> impl IntoResponse {
    let mut ready = true;
    let mut body = serde_json::Map::new();
    for destination in http.state.destinations() {
        let serving = destination.serving.as_ref();
        let running = serving.is_some_and(|s| s.running);
        ready &= is_ready(destination.role, running);
        body.insert(
            destination.name.clone(),
            serde_json::json!({
                "role": destination.role.as_str(),
                "running": running,
                "error": serving.and_then(|s| s.failure.clone()),
                "clients": serving.map_or(0, |s| s.connected),
                "terms": destination.terms,
                "lastFenceReason": destination.last_fence_reason,
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

/// Serves the endpoints on `listener` until `cancel` fires, reading `state`
/// at every request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<dyn LiveState>,
    cancel: CancellationToken,
) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServerCollector {
        state: state.clone(),
    }));
    let http = HttpState {
        registry: Arc::new(registry),
        state,
    };
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(http);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `destinations` as the endpoint would at `now_ms`.
    fn text(destinations: Vec<DestinationSnapshot>, now_ms: i64) -> String {
        #[derive(Debug)]
        struct Fixed(Vec<DestinationSnapshot>, i64);
        impl prometheus_client::collector::Collector for Fixed {
            fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
                encode_families(&mut encoder, &self.0, self.1)
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(destinations, now_ms)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    fn standalone(serving: Option<ServingSnapshot>) -> DestinationSnapshot {
        DestinationSnapshot {
            name: "example".into(),
            role: Role::Standalone,
            terms: 0,
            fencings: 0,
            last_failover_seconds: None,
            last_fence_reason: None,
            serving,
        }
    }

    /// The output of a standalone server with one client, as the endpoint
    /// wrote it before the collector became a table (names, labels, help
    /// text and order are what dashboards and docs rely on).
    #[test]
    fn serving_destination_output_is_unchanged() {
        let serving = ServingSnapshot {
            running: true,
            failure: None,
            connected: 1,
            last_event_ms: 1_000_000,
            events: 5,
            bytes: 189,
            entries: 3,
            reconnects: 0,
            store_events: 0,
            store_bytes: 0,
            capacity_events: 16384,
            capacity_bytes: 16777216,
            position: Some(("mysql-bin.000001".into(), 1116)),
            outstanding: vec![(1001, 0)],
            cursors: vec![AckedCursor {
                client: 1001,
                journal: "mysql-bin.000001".into(),
                position: 1085,
                timestamp_ms: 1_796_685_499_000,
            }],
        };
        let expected = r##"# HELP canal_ha_role 1 for the destination's current role on this server (active, standby, fenced, standalone)
# TYPE canal_ha_role gauge
canal_ha_role{destination="example",role="active"} 0.0
canal_ha_role{destination="example",role="standby"} 0.0
canal_ha_role{destination="example",role="fenced"} 0.0
canal_ha_role{destination="example",role="standalone"} 1.0
# HELP canal_ha_terms Times this server became the destination's active server
# TYPE canal_ha_terms counter
canal_ha_terms_total{destination="example"} 0
# HELP canal_ha_fencings Times this server stopped serving the destination without a planned release
# TYPE canal_ha_fencings counter
canal_ha_fencings_total{destination="example"} 0
# HELP canal_ha_last_failover_seconds Last takeover by this server: from seeing the previous owner's running node vanish to serving
# TYPE canal_ha_last_failover_seconds gauge
# HELP canal_binlog_delay_seconds Seconds between now and the binlog time of the last event read; reset by the source's heartbeats while nothing newer exists
# TYPE canal_binlog_delay_seconds gauge
canal_binlog_delay_seconds{destination="example"} 0.217
# HELP canal_binlog_events Binlog events parsed
# TYPE canal_binlog_events counter
canal_binlog_events_total{destination="example"} 5
# HELP canal_binlog_bytes Binlog bytes parsed
# TYPE canal_binlog_bytes counter
canal_binlog_bytes_total{destination="example"} 189
# HELP canal_binlog_entries Canal entries produced
# TYPE canal_binlog_entries counter
canal_binlog_entries_total{destination="example"} 3
# HELP canal_binlog_reconnects Reconnects to the source
# TYPE canal_binlog_reconnects counter
canal_binlog_reconnects_total{destination="example"} 0
# HELP canal_binlog_position Byte offset of the last complete transaction read, per binlog file
# TYPE canal_binlog_position gauge
canal_binlog_position{destination="example",journal="mysql-bin.000001"} 1116.0
# HELP canal_source_up 1 while the destination's binlog source runs
# TYPE canal_source_up gauge
canal_source_up{destination="example"} 1.0
# HELP canal_store_events Entries held in the store
# TYPE canal_store_events gauge
canal_store_events{destination="example"} 0.0
# HELP canal_store_bytes Bytes of entries held in the store
# TYPE canal_store_bytes gauge
canal_store_bytes{destination="example"} 0.0
# HELP canal_store_capacity Store capacity
# TYPE canal_store_capacity gauge
canal_store_capacity{destination="example",unit="events"} 16384.0
canal_store_capacity{destination="example",unit="bytes"} 16777216.0
# HELP canal_clients_connected Client sessions subscribed
# TYPE canal_clients_connected gauge
canal_clients_connected{destination="example"} 1.0
# HELP canal_client_batches_outstanding Batches delivered but not acknowledged
# TYPE canal_client_batches_outstanding gauge
canal_client_batches_outstanding{destination="example",client="1001"} 0.0
# HELP canal_client_acked_position Byte offset of the client's cursor
# TYPE canal_client_acked_position gauge
canal_client_acked_position{destination="example",client="1001",journal="mysql-bin.000001"} 1085.0
# HELP canal_client_acked_timestamp_seconds Binlog time of the client's cursor
# TYPE canal_client_acked_timestamp_seconds gauge
canal_client_acked_timestamp_seconds{destination="example",client="1001"} 1796685499.0
# EOF
"##;
        assert_eq!(text(vec![standalone(Some(serving))], 1_000_217), expected);
    }

    #[test]
    fn a_standby_publishes_its_role_only() {
        let mut standby = standalone(None);
        standby.role = Role::Standby;
        standby.last_failover_seconds = Some(1.5);
        let text = text(vec![standby], 0);
        assert!(text.contains(r#"canal_ha_role{destination="example",role="standby"} 1.0"#));
        assert!(text.contains(r#"canal_ha_last_failover_seconds{destination="example"} 1.5"#));
        assert!(!text.contains("canal_source_up{"), "{text}");
        assert!(!text.contains("canal_binlog_delay_seconds{"), "{text}");
    }

    #[test]
    fn readiness_follows_the_role() {
        assert!(is_ready(Role::Active, true) && is_ready(Role::Standalone, true));
        assert!(!is_ready(Role::Active, false) && !is_ready(Role::Standalone, false));
        assert!(is_ready(Role::Standby, false));
        assert!(!is_ready(Role::Fenced, true));
    }
}
