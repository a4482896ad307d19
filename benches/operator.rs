//! The operator on a real API server (a private control plane from
//! scripts/k8s): how fast it turns a new CanalInstance into a StatefulSet,
//! how long 100 instances take from scratch, how soon the status and the
//! active Service follow a new leader, and its peak memory. Each figure is
//! printed with its ratio to a baseline measured in the same run (an API
//! round trip) or to the target.
//!
//! Needs scripts/env (MariaDB, ZooKeeper) and scripts/k8s install; run with
//! `scripts/bench` or `cargo bench --bench operator`.

#[path = "../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;
mod common;
#[path = "../tests/common/failure.rs"]
#[allow(dead_code)]
mod failure;
#[path = "../tests/common/k8s.rs"]
#[allow(dead_code)]
mod k8s;
#[path = "../tests/common/kubelet.rs"]
#[allow(dead_code)]
mod kubelet;
#[path = "../tests/common/operator.rs"]
#[allow(dead_code)]
mod operator;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canal::operator::build::labels::{ROLE_ACTIVE, ROLE_LABEL};
use canal::operator::crd::CanalInstance;
use futures_util::StreamExt;
use k8s::{ControlPlane, FIELD_MANAGER, wait_api};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kubelet::{Kubelet, Signal};
use operator::OperatorProcess;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn instance(name: &str, destination: &str) -> serde_json::Value {
    json!({
        "apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
        "metadata": {"name": name},
        "spec": {
            "destination": destination,
            "source": {"address": common::env("CANAL_TEST_MYSQL_ADDR"),
                       "credentials": {"secretName": "replication"}},
            "zookeeper": {"connect": common::env("CANAL_TEST_ZK")},
        },
    })
}

async fn secret(client: &kube::Client, namespace: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let object = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "replication"},
        "stringData": {"username": common::env("CANAL_TEST_MYSQL_USER"),
                       "password": common::env("CANAL_TEST_MYSQL_PASSWORD")}});
    secrets
        .patch(
            "replication",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
}

/// When each StatefulSet of the namespace first appeared (a watch, so no
/// polling delay enters the figures).
fn watch_statefulsets(
    client: &kube::Client,
    namespace: &str,
) -> Arc<Mutex<HashMap<String, Instant>>> {
    first_seen(Api::<StatefulSet>::namespaced(client.clone(), namespace))
}

/// When each object of `api` first appeared in a watch, by name.
fn first_seen<K>(api: Api<K>) -> Arc<Mutex<HashMap<String, Instant>>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(object)) = stream.next().await {
            let name = object.meta().name.clone().unwrap_or_default();
            record
                .lock()
                .unwrap()
                .entry(name)
                .or_insert_with(Instant::now);
        }
    });
    seen
}

/// Baseline: create a ConfigMap and see it through a watch.
async fn api_round_trips(client: &kube::Client, namespace: &str, n: usize) -> Vec<f64> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let seen = first_seen(api.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut times = Vec::new();
    for i in 0..n {
        let name = format!("baseline-{i}");
        let object: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        let start = Instant::now();
        api.create(&PostParams::default(), &object).await.unwrap();
        let at = wait_api("the ConfigMap in the watch", WAIT, async || {
            seen.lock().unwrap().get(&name).copied()
        })
        .await;
        times.push(at.duration_since(start).as_secs_f64());
    }
    times
}

async fn create_to_statefulset(plane: &ControlPlane, n: usize) -> (Vec<f64>, Vec<f64>) {
    let client = plane.client().await;
    let namespace = k8s::unique_namespace("bench-create");
    plane.ensure_namespace(&namespace).await;
    secret(&client, &namespace).await;
    let baseline = api_round_trips(&client, &namespace, n).await;
    let _operator = OperatorProcess::start(plane, &namespace);
    let seen = watch_statefulsets(&client, &namespace);
    let api: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    // Let the operator start before timing.
    wait_api("the operator's first reconcile", WAIT, async || {
        api.patch(
            "warmup",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&instance("warmup", &format!("warmup-{namespace}"))),
        )
        .await
        .ok()?;
        seen.lock().unwrap().get("warmup").copied()
    })
    .await;
    let mut times = Vec::new();
    for i in 0..n {
        let name = format!("create-{i}");
        let start = Instant::now();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&instance(&name, &format!("{name}-{namespace}"))),
        )
        .await
        .unwrap();
        let at = wait_api("the StatefulSet", WAIT, async || {
            seen.lock().unwrap().get(&name).copied()
        })
        .await;
        times.push(at.duration_since(start).as_secs_f64());
    }
    (baseline, times)
}

/// 100 instances exist before the operator starts: until every one has
/// its StatefulSet and a status. Also the operator's peak RSS.
async fn hundred_from_scratch(plane: &ControlPlane, n: usize) -> (f64, u64) {
    let client = plane.client().await;
    let namespace = k8s::unique_namespace("bench-scratch");
    plane.ensure_namespace(&namespace).await;
    secret(&client, &namespace).await;
    let api: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    for i in 0..n {
        let name = format!("scratch-{i}");
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&instance(&name, &format!("{name}-{namespace}"))),
        )
        .await
        .unwrap();
    }
    let seen = watch_statefulsets(&client, &namespace);
    let start = Instant::now();
    let operator = OperatorProcess::start(plane, &namespace);
    wait_api("every instance reconciled", WAIT, async || {
        if seen.lock().unwrap().len() < n {
            return None;
        }
        let list = api.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|i| i.status.as_ref().is_some_and(|s| s.conditions.len() >= 4))
            .then_some(())
    })
    .await;
    let total = start.elapsed().as_secs_f64();
    // A few resync periods later, for a fair peak.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", operator.pid())).unwrap();
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (total, peak_kib)
}

/// Freezes the active server `runs` times; each time, how long after the
/// new leader took `running` the status and the active pod label (which
/// the Service selects) named it.
async fn failovers(plane: &ControlPlane, runs: usize) -> (Vec<f64>, Vec<f64>) {
    let client = plane.client().await;
    let namespace = k8s::unique_namespace("bench-failover");
    plane.ensure_namespace(&namespace).await;
    secret(&client, &namespace).await;
    let kubelet = Kubelet::start(client.clone(), &namespace);
    let _operator = OperatorProcess::start(plane, &namespace);
    let api: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    let destination = format!("failover-{namespace}");
    api.patch(
        "orders",
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&instance("orders", &destination)),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mut status_lags = Vec::new();
    let mut label_lags = Vec::new();
    for run in 0..runs {
        let active = wait_api("an active pod with both pods ready", WAIT, async || {
            let status = api.get("orders").await.ok()?.status?;
            let pod = status.active_server?.pod?;
            (status.ready_replicas == 2).then_some(pod)
        })
        .await;
        assert!(kubelet.kill_process(&active, Signal::Stop));
        let (new_pod, since) = wait_api("the status to name the new leader", WAIT, async || {
            let active_server = api.get("orders").await.ok()?.status?.active_server?;
            let pod = active_server.pod?;
            (pod != active).then_some((pod, active_server.since))
        })
        .await;
        let status_seen = k8s_openapi::jiff::Timestamp::now();
        wait_api("the role label on the new leader only", WAIT, async || {
            let list = pods
                .list(&ListParams::default().labels(&format!("{ROLE_LABEL}={ROLE_ACTIVE}")))
                .await
                .ok()?;
            let names: Vec<_> = list
                .items
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            (names == [new_pod.clone()]).then_some(())
        })
        .await;
        let label_seen = k8s_openapi::jiff::Timestamp::now();
        let since: k8s_openapi::jiff::Timestamp = since.unwrap().parse().unwrap();
        status_lags.push(status_seen.duration_since(since).as_secs_f64());
        label_lags.push(label_seen.duration_since(since).as_secs_f64());
        eprintln!(
            "  run {}: {active} -> {new_pod}: status +{:.3} s, Service +{:.3} s after the lock",
            run + 1,
            status_lags[run],
            label_lags[run]
        );
        assert!(kubelet.kill_process(&active, Signal::Cont));
    }
    kubelet.shutdown().await;
    (status_lags, label_lags)
}

fn main() {
    if !common::benchmarking() {
        return;
    }
    let runs = std::env::var("BENCH_FAILOVER_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let plane = tokio::task::spawn_blocking(ControlPlane::start).await.unwrap();
        plane.install_crd().await;

        let (baseline, create) = create_to_statefulset(&plane, 50).await;
        let base = percentile(&baseline, 0.5);
        println!("operator: CanalInstance created -> StatefulSet applied (50 sequential creates)");
        println!(
            "  baseline API round trip (ConfigMap create -> watch): p50 {:.1} ms, p99 {:.1} ms",
            base * 1e3,
            percentile(&baseline, 0.99) * 1e3
        );
        for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
            let value = percentile(&create, p);
            println!("  create -> StatefulSet {label}: {:.1} ms ({:.1}x the API round trip p50)", value * 1e3, value / base);
        }

        let (total, peak_kib) = hundred_from_scratch(&plane, 100).await;
        println!("operator: 100 CanalInstances reconciled from scratch: {total:.2} s ({:.1} ms each)", total * 10.0);
        let peak_mb = peak_kib as f64 / 1024.0;
        println!("operator: peak RSS {peak_mb:.1} MiB ({:.2}x the 50 MB target)", peak_kib as f64 * 1024.0 / 50e6);

        println!("operator: leader frozen -> status and active Service follow ({runs} runs, 6 s session)");
        let (status, label) = failovers(&plane, runs).await;
        for (what, values) in [("status.activeServer", status), ("active Service (role label)", label)] {
            let median = common::median(values.clone());
            let max = values.iter().cloned().fold(0.0, f64::max);
            println!(
                "  {what}: median {median:.3} s, max {max:.3} s after the new leader took the lock ({:.2}x the 2 s target)",
                median / 2.0
            );
        }
        drop(plane);
    });
}
