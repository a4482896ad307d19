//! The product as shipped on the real node (`scripts/cluster`, the image of
//! `scripts/image`, the chart with its default values): how long from
//! `kubectl apply` of a CanalInstance to all pods Ready and to rows flowing,
//! how long a failover takes after the active container's process is
//! SIGKILLed and after the active pod is deleted (median of
//! BENCH_NODE_FAILOVERS, default 10), and the containers' memory (cgroup).
//!
//! Each figure is printed with its ratio to a baseline measured in the same
//! run: a bare pod (the pause image) from create to Ready on the same node,
//! and the ZooKeeper session timeout for a crash failover.
//!
//! Needs scripts/env and scripts/cluster up, CANAL_TEST_NODE_IMAGE set to
//! the image (`scripts/bench` does all of it).

mod common;

#[path = "../tests/common/node.rs"]
#[allow(dead_code)]
mod node;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canal::operator::crd::CanalInstance;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use mysql_async::prelude::Queryable;
use node::{HOST_IP, Node};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);
const RELEASE: &str = "canal-operator";
const OPERATOR_NAMESPACE: &str = "canal-operator";
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn in_cluster(address: &str) -> String {
    let port = address.rsplit(':').next().unwrap_or_default();
    format!("{HOST_IP}:{port}")
}

/// Baseline: a pod of the pause image (no probes) from create to Ready.
async fn bare_pod(pods: &Api<Pod>, name: &str) -> f64 {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "pause", "image": PAUSE_IMAGE,
            "imagePullPolicy": "Never"}]}}))
    .unwrap();
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    until("the bare pod to be Ready", async || {
        pods.get(name).await.ok().filter(ready).map(|_| ())
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    pods.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    seconds
}

async fn active(instances: &Api<CanalInstance>) -> Option<(String, String)> {
    let active = instances.get("orders").await.ok()?.status?.active_server?;
    Some((active.pod?, active.since?))
}

/// Reads one row of `schema`.t with id `id` through the client Service.
fn read_row(namespace: &str, destination: &str, schema: &str, id: i64) {
    let deadline = Instant::now() + WAIT;
    let service = format!("orders.{namespace}.svc.cluster.local:11111");
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/canal-server");
    let server = std::env::var("CARGO_TARGET_DIR")
        .map(|dir| format!("{dir}/release/canal-server"))
        .unwrap_or_else(|_| server.to_owned());
    let wanted = format!("\"{id}\"");
    while Instant::now() < deadline {
        let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster"))
            .args(["exec", "timeout", "20", &server, "tail"])
            .args(["--addr", &service, "--destination", destination, "--json"])
            // Exits once the row is in: the figure is the row's arrival.
            .args(["--count", "1"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("scripts/cluster exec canal-server tail");
        let text = String::from_utf8_lossy(&output.stdout);
        if text
            .lines()
            .any(|l| l.contains(&format!("\"{schema}\"")) && l.contains(&wanted))
        {
            return;
        }
    }
    panic!("row {id} of {schema}.t never arrived through {service}");
}

/// Memory of a container from its cgroup (v1): (usage, peak) in MiB.
fn container_memory(node: &Node, container_id: &str) -> Option<(f64, f64)> {
    let id = container_id.strip_prefix("containerd://")?;
    let socket = node.kubeconfig.parent()?.join("containerd/containerd.sock");
    let tasks = Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", "k8s.io", "tasks", "ls"])
        .output()
        .ok()?;
    let pid = String::from_utf8_lossy(&tasks.stdout)
        .lines()
        .find(|l| l.starts_with(id))?
        .split_whitespace()
        .nth(1)?
        .to_owned();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    })?;
    let read = |file: &str| -> Option<f64> {
        let text = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/{file}")).ok()?;
        Some(text.trim().parse::<f64>().ok()? / 1048576.0)
    };
    // Usage without the page cache (what the kubelet's eviction counts).
    let stat = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.stat")).ok()?;
    let inactive_file = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1048576.0;
    Some((
        read("memory.usage_in_bytes")? - inactive_file,
        read("memory.max_usage_in_bytes")?,
    ))
}

fn container_id(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .clone()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !common::benchmarking() {
        return;
    }
    let Some(node) = Node::get("node benchmark") else {
        return;
    };
    let failovers: usize = std::env::var("BENCH_NODE_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let client = node.client().await;
    let _ = node.cluster_output(&[
        "helm",
        "uninstall",
        RELEASE,
        "-n",
        OPERATOR_NAMESPACE,
        "--ignore-not-found",
        "--wait",
    ]);
    node.install_chart(RELEASE, OPERATOR_NAMESPACE);

    let stamp = std::process::id();
    let namespace = format!("bench-node-{stamp}");
    let schema = format!("bench_node_{stamp}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    // Baseline: bare pods on the same node.
    let mut bare = Vec::new();
    for i in 0..3 {
        bare.push(bare_pod(&pods, &format!("bare-{i}")).await);
    }
    let bare = median(&bare);
    println!("baseline: a bare pod (pause image) from create to Ready: {bare:.2} s (median of 3)");

    // apply → Ready, then → rows.
    let mysql = common::env("CANAL_TEST_MYSQL_ADDR");
    let zookeeper: Vec<String> = common::env("CANAL_TEST_ZK")
        .split(',')
        .map(in_cluster)
        .collect();
    let mut conn = mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(mysql.rsplit(':').next().unwrap().parse().unwrap())
            .user(Some("root"))
            .pass(std::env::var("CANAL_TEST_MYSQL_ROOT_PASSWORD").ok())
            .prefer_socket(false),
    )
    .await
    .expect("MariaDB as root (scripts/env)");
    conn.query_drop(format!(
        "CREATE DATABASE `{schema}`; CREATE TABLE `{schema}`.t (id BIGINT PRIMARY KEY)"
    ))
    .await
    .unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "replication"},
        "stringData": {"username": common::env("CANAL_TEST_MYSQL_USER"),
                       "password": common::env("CANAL_TEST_MYSQL_PASSWORD")}});
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &namespace)
        .patch(
            "replication",
            &PatchParams::apply("bench"),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let instance = json!({"apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
        "metadata": {"name": "orders"},
        "spec": {"destination": schema, "replicas": 2,
            "source": {"address": in_cluster(&mysql),
                "credentials": {"secretName": "replication"}, "serverIdBase": 3100000000u32},
            "zookeeper": {"connect": zookeeper.join(",")},
            "filter": {"include": [format!("{schema}\\..*")]}}});
    let instances: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    let applied = Instant::now();
    instances
        .patch(
            "orders",
            &PatchParams::apply("bench"),
            &Patch::Apply(&instance),
        )
        .await
        .unwrap();
    until("both pods Ready and an active server", async || {
        let all = pods.list(&ListParams::default()).await.ok()?;
        (all.items.len() == 2 && all.items.iter().all(ready)).then_some(())?;
        active(&instances).await.map(|_| ())
    })
    .await;
    let to_ready = applied.elapsed().as_secs_f64();
    conn.query_drop(format!("INSERT INTO `{schema}`.t VALUES (1)"))
        .await
        .unwrap();
    read_row(&namespace, &schema, &schema, 1);
    let to_rows = applied.elapsed().as_secs_f64();
    println!(
        "kubectl apply to both pods Ready with an active server: {to_ready:.1} s ({:.1}x a bare pod)",
        to_ready / bare
    );
    println!(
        "kubectl apply to the first row read through the Service: {to_rows:.1} s ({:.1}x a bare pod)",
        to_rows / bare
    );

    // Failovers: the active container SIGKILLed through the runtime. Each
    // starts from a settled pair: both pods Ready, none terminating, the
    // active pod labelled and its container running.
    let settled = async || {
        until("both pods Ready and settled", async || {
            let all = pods.list(&ListParams::default()).await.ok()?;
            let (pod, since) = active(&instances).await?;
            let steady = all.items.len() == 2
                && all
                    .items
                    .iter()
                    .all(|p| ready(p) && p.metadata.deletion_timestamp.is_none());
            let leader = all
                .items
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&pod))?;
            let labelled = leader
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("canal.otter.dev/role").is_some_and(|r| r == "active"));
            let running = leader
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
            (steady && labelled && running)
                .then(|| (pod, since, container_id(leader)))
                .and_then(|(pod, since, id)| Some((pod, since, id?)))
        })
        .await
    };
    let mut killed = Vec::new();
    while killed.len() < failovers {
        let (pod, since, id) = settled().await;
        let started = Instant::now();
        if !node.try_kill_container(&id) {
            // The container went between the read and the kill: again.
            continue;
        }
        until("a new active server", async || {
            active(&instances).await.filter(|(_, s)| *s != since)
        })
        .await;
        killed.push(started.elapsed().as_secs_f64());
        // A fresh pod, not the restarted container: repeated kills would
        // put the container into the kubelet's crash-loop back-off.
        pods.delete(&pod, &DeleteParams::default()).await.unwrap();
    }
    let mut deleted = Vec::new();
    for _ in 0..failovers {
        let (pod, since, _) = settled().await;
        let started = Instant::now();
        pods.delete(&pod, &DeleteParams::default()).await.unwrap();
        until("a new active server", async || {
            active(&instances).await.filter(|(_, s)| *s != since)
        })
        .await;
        deleted.push(started.elapsed().as_secs_f64());
    }
    let kill_median = median(&killed);
    let delete_median = median(&deleted);
    println!(
        "failover after SIGKILL of the active container (status names a new active server): \
         median {kill_median:.2} s, max {:.2} s of {failovers} ({:.2}x the ZooKeeper session timeout)",
        killed.iter().copied().fold(0.0, f64::max),
        kill_median / SESSION_TIMEOUT.as_secs_f64()
    );
    println!(
        "failover after deletion of the active pod: median {delete_median:.2} s, max {:.2} s of \
         {failovers} ({:.2}x a bare pod's start)",
        deleted.iter().copied().fold(0.0, f64::max),
        delete_median / bare
    );

    // Memory, after all of that (peaks included).
    settled().await;
    for _ in 0..200 {
        conn.query_drop(format!(
            "INSERT INTO `{schema}`.t SELECT COALESCE(MAX(id), 0) + 1 FROM `{schema}`.t"
        ))
        .await
        .unwrap();
    }
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let mut measured = Vec::new();
    for pod in operator_pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        measured.push(("operator", pod));
    }
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        measured.push(("canal-server", pod));
    }
    for (what, pod) in measured {
        let request = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("memory"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "none".into());
        match container_id(&pod).and_then(|id| container_memory(&node, &id)) {
            Some((usage, peak)) => println!(
                "memory of {what} container {} (cgroup): {usage:.1} MiB in use without page \
                 cache, peak {peak:.1} MiB (memory request {request})",
                pod.metadata.name.unwrap_or_default()
            ),
            None => println!(
                "memory of {what} container {}: cgroup not readable",
                pod.metadata.name.unwrap_or_default()
            ),
        }
    }

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .unwrap();
    until("the namespace to go", async || {
        namespaces
            .get_opt(&namespace)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    node.cluster(&[
        "helm",
        "uninstall",
        RELEASE,
        "-n",
        OPERATOR_NAMESPACE,
        "--wait",
    ]);
    conn.query_drop(format!("DROP DATABASE `{schema}`"))
        .await
        .unwrap();
    let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/env"))
        .args([
            "zk",
            "deleteall",
            &format!("/otter/canal/destinations/{schema}"),
        ])
        .output();
}
