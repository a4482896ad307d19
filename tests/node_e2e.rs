//! The product as shipped, on a real node (`scripts/cluster`: kubelet,
//! containerd, scheduler, controllers, kube-proxy, CoreDNS) with the image
//! built from the Dockerfile (`scripts/image`), against the MariaDB and
//! ZooKeeper of `scripts/env`:
//!
//! 1. `helm install` of the chart with its default values, only the image
//!    overridden: the operator pod runs with the chart's securityContext
//!    (read-only root file system) and becomes Ready.
//! 2. `manifests/examples/minimal.yaml`, addresses substituted: the
//!    StatefulSet controller and the scheduler start the pods, their real
//!    probes pass, they read the credentials from the Secret and register
//!    their pod IP in ZooKeeper; the status names the active pod.
//! 3. A canal client (`canal-server tail`) reads the rows through the client
//!    Service's DNS name, via CoreDNS and kube-proxy.
//! 4. Failover: the active container's process is SIGKILLed through the
//!    runtime, then the active pod is deleted; each time the status and the
//!    Service follow the new active server and the client reads on without
//!    losing an acknowledged row.
//! 5. The PodDisruptionBudget: with one pod evicted through the Eviction
//!    API (what `kubectl drain` uses), the other's eviction is refused.
//! 6. A rolling upgrade (`helm upgrade` to a second image tag), then a spec
//!    change (a pod annotation): each time the server pods roll one at a
//!    time, standbys first, with at most one failover, no row lost.
//! 7. `helm uninstall` removes the operator; the CRD stays (the chart's
//!    crdsDir policy).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use canal::operator::crd::CanalInstance;
use common::k8s::wait_api as eventually;
use common::live::{LiveEnv, unique};
use common::node::{HOST_IP, Node};
use common::zk;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, EvictParams, ListParams};
use mysql_async::prelude::Queryable;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(180);
const RELEASE: &str = "canal-operator";
const OPERATOR_NAMESPACE: &str = "canal-operator";

/// The ZooKeeper ensemble of scripts/env as pods reach it (HOST_IP).
fn zookeeper_in_cluster() -> Vec<String> {
    zk::servers()
        .split(',')
        .map(|s| format!("{HOST_IP}:{}", s.rsplit(':').next().unwrap_or("2181")))
        .collect()
}

/// `manifests/examples/minimal.yaml` with this machine's addresses, and a
/// destination of its own (the ZooKeeper ensemble outlives the test).
fn minimal_example(env: &LiveEnv, destination: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/examples/minimal.yaml"
    );
    let text = std::fs::read_to_string(path).expect("manifests/examples/minimal.yaml");
    let zookeeper = zookeeper_in_cluster();
    let port = env.address.rsplit(':').next().unwrap_or("3306");
    let replaced = text
        .replace("mysql.shop.svc:3306", &format!("{HOST_IP}:{port}"))
        .replace(
            "zk-0.zk:2181,zk-1.zk:2181,zk-2.zk:2181",
            &zookeeper.join(","),
        )
        .replace("username: canal", &format!("username: {}", env.user))
        .replace(
            "password: change-me",
            &format!("password: {}", env.password),
        )
        .replace(
            "\nspec:\n  source:",
            &format!("\nspec:\n  destination: {destination}\n  source:"),
        );
    assert_ne!(
        replaced, text,
        "minimal.yaml no longer has the addresses this test replaces"
    );
    replaced
}

/// The ids of the rows of `schema`.t in one entry (a JSON line of `tail`).
fn row_ids(line: &str, schema: &str) -> Vec<i64> {
    let Ok(entry) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    if entry.pointer("/header/schemaName").and_then(Value::as_str) != Some(schema) {
        return Vec::new();
    }
    entry
        .pointer("/rowChange/rowDatas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|row| {
            row.get("afterColumns")
                .and_then(Value::as_array)
                .and_then(|columns| columns.iter().find(|c| c["name"] == "id"))
                .and_then(|c| c["value"].as_str())
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// Rows of `schema`.t read by a canal client through `service`, until every
/// id of `want` was seen (ids in arrival order). Like any canal client it
/// connects again when the connection is refused or closed: right after a
/// failover the Service may have no endpoint for a moment.
fn read_rows(service: &str, destination: &str, schema: &str, want: &BTreeSet<i64>) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let mut attempts = 0;
    while !want.iter().all(|id| seen.contains(id)) && Instant::now() < deadline {
        attempts += 1;
        let mut child = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster"))
            .args(["exec", env!("CARGO_BIN_EXE_canal-server"), "tail"])
            .args(["--addr", service, "--destination", destination])
            .args(["--json", "--client-id", "1001"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("scripts/cluster exec canal-server tail");
        let stdout = child.stdout.take().expect("piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        while !want.iter().all(|id| seen.contains(id)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => seen.extend(row_ids(&line, schema)),
                // The client exited (refused, closed) or time is up.
                Err(_) => break,
            }
        }
        // SIGTERM: the client acknowledges what it printed and leaves.
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
        if !want.iter().all(|id| seen.contains(id)) {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let missing: Vec<&i64> = want.iter().filter(|id| !seen.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "through {service} ({attempts} connections): rows {missing:?} of {schema}.t never \
         arrived (seen {seen:?})"
    );
    seen
}

async fn insert(env: &LiveEnv, schema: &str, ids: std::ops::RangeInclusive<i64>) -> BTreeSet<i64> {
    let mut conn = env.root().await;
    for id in ids.clone() {
        conn.query_drop(format!(
            "INSERT INTO `{schema}`.t VALUES ({id}, 'row {id}')"
        ))
        .await
        .expect("insert");
    }
    ids.collect()
}

async fn active_pod(instances: &Api<CanalInstance>) -> Option<(String, String)> {
    let active = instances.get("orders").await.ok()?.status?.active_server?;
    Some((active.pod?, active.since?))
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Follows a rollout of the pods of `orders` until `done` holds for both,
/// Ready: how many times the active server changed (terms after `since`)
/// and the most pods not Ready at once.
async fn follow_rollout(
    instances: &Api<CanalInstance>,
    pods: &Api<Pod>,
    since: String,
    what: &str,
    done: impl Fn(&Pod) -> bool,
) -> (usize, usize) {
    let mut terms = BTreeSet::from([since]);
    let mut most_unready = 0;
    eventually(what, WAIT, async || {
        if let Some((_, since)) = active_pod(instances).await {
            terms.insert(since);
        }
        let all = pods.list(&ListParams::default()).await.ok()?;
        most_unready = most_unready.max(all.items.iter().filter(|p| !ready(p)).count());
        let rolled = all.items.iter().filter(|p| done(p) && ready(p)).count();
        (all.items.len() == 2 && rolled == 2).then_some(())?;
        // The active server is known again (the last pod rolled is active).
        active_pod(instances)
            .await
            .map(|(_, since)| terms.insert(since))
    })
    .await;
    (terms.len() - 1, most_unready)
}

/// Removes what an earlier test left of the operator, whichever way it was
/// installed (the chart's release, or manifests/install.yaml); the CRD
/// stays (both ways take an existing one).
fn remove_operator(node: &Node) {
    let _ = node.cluster_output(&[
        "helm",
        "uninstall",
        RELEASE,
        "-n",
        OPERATOR_NAMESPACE,
        "--ignore-not-found",
        "--wait",
    ]);
    node.cluster(&[
        "kubectl",
        "delete",
        "namespace",
        OPERATOR_NAMESPACE,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
    ]);
    node.cluster(&[
        "kubectl",
        "delete",
        "clusterrole,clusterrolebinding",
        "-l",
        "app.kubernetes.io/part-of=canal-operator",
        "--ignore-not-found",
    ]);
}

/// Serialises the tests of this file: they share the cluster and its
/// cluster-wide objects (the CRD, the operator's ClusterRole).
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_as_shipped_runs_canal_on_a_real_node() {
    let Some(node) = Node::get("the_chart_as_shipped_runs_canal_on_a_real_node") else {
        return;
    };
    let _cluster = CLUSTER.lock().await;
    let env = LiveEnv::get();
    let client = node.client().await;
    let (_, schema) = unique("node");
    let namespace = schema.replace('_', "-");

    // 1. The chart with its defaults, only the image overridden.
    let (_, tag) = node.image_parts();
    remove_operator(&node);
    node.install_chart(RELEASE, OPERATOR_NAMESPACE);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let operator = deployments
        .get(RELEASE)
        .await
        .expect("the operator's Deployment");
    let container = &operator.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        container
            .security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem),
        Some(true),
        "the chart's securityContext is what runs"
    );

    // 2. The example, addresses substituted.
    node.cluster(&["kubectl", "create", "namespace", &namespace]);
    let manifest = std::env::temp_dir().join(format!("{namespace}.yaml"));
    std::fs::write(&manifest, minimal_example(&env, &schema)).expect("write the manifest");
    let applied = Instant::now();
    node.cluster(&[
        "kubectl",
        "apply",
        "-n",
        &namespace,
        "-f",
        &manifest.to_string_lossy(),
    ]);
    let instances: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let (first, _) = eventually("Ready with an active server", WAIT, async || {
        let instance = instances.get("orders").await.ok()?;
        let status = instance.status.as_ref()?;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())?;
        let all = pods.list(&ListParams::default()).await.ok()?;
        (all.items.len() == 2 && all.items.iter().all(ready)).then_some(())?;
        active_pod(&instances).await
    })
    .await;
    eprintln!(
        "figure: kubectl apply to Ready, both pods ready, an active server: {:.1} s",
        applied.elapsed().as_secs_f64()
    );
    // The address registered in ZooKeeper is the pod's own.
    let pod = pods.get(&first).await.expect("the active pod");
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a pod IP");
    let address = instances
        .get("orders")
        .await
        .unwrap()
        .status
        .unwrap()
        .active_server
        .unwrap()
        .address;
    assert_eq!(address, format!("{pod_ip}:11111"));

    // 3. Rows through the client Service's DNS name.
    let mut conn = env.root().await;
    conn.query_drop(format!("CREATE DATABASE `{schema}`"))
        .await
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE `{schema}`.t (id BIGINT PRIMARY KEY, v VARCHAR(32))"
    ))
    .await
    .unwrap();
    drop(conn);
    let service = format!("orders.{namespace}.svc.cluster.local:11111");
    let rows = insert(&env, &schema, 1..=20).await;
    let seen = read_rows(&service, &schema, &schema, &rows);
    let mut ordered = seen.clone();
    ordered.dedup();
    assert!(
        ordered.windows(2).all(|w| w[0] < w[1]),
        "order kept: {seen:?}"
    );

    // What `kubectl get canal` shows: Ready, the active pod, the binlog
    // position the active server has reached.
    // (The client's cursor reaches the status within a few seconds.)
    let (active, _) = active_pod(&instances).await.unwrap();
    let table = eventually(
        "kubectl get canal with a BINLOG position",
        WAIT,
        async || {
            let table = node.cluster(&["kubectl", "get", "canal", "-n", &namespace]);
            let row = table.lines().nth(1)?.split_whitespace().nth(3)?.to_owned();
            row.starts_with("mysql-bin.").then_some(table)
        },
    )
    .await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "READY", "ACTIVE", "BINLOG", "LAG", "REPLICAS", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], ["orders", "True", active.as_str()], "{table}");
    // REPLICAS, before AGE (LAG may be empty: no column of its own).
    assert_eq!(row[row.len() - 2], "2/2", "{table}");

    // 4a. The active container's process killed through the runtime.
    let (active, since) = active_pod(&instances).await.unwrap();
    let container_id = pods
        .get(&active)
        .await
        .unwrap()
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.first().and_then(|c| c.container_id.clone()))
        .expect("the active container's id");
    let killed = Instant::now();
    node.kill_container(&container_id);
    let (after_kill, _) = eventually("a new active server after the kill", WAIT, async || {
        active_pod(&instances).await.filter(|(_, s)| *s != since)
    })
    .await;
    eprintln!(
        "figure: SIGKILL of the active container to a new active server in the status: {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    let rows = insert(&env, &schema, 21..=40).await;
    read_rows(&service, &schema, &schema, &rows);

    // 4b. The active pod deleted.
    let (_, since) = active_pod(&instances).await.unwrap();
    let deleted = Instant::now();
    pods.delete(&after_kill, &DeleteParams::default())
        .await
        .expect("delete the active pod");
    eventually("a new active server after the deletion", WAIT, async || {
        active_pod(&instances).await.filter(|(_, s)| *s != since)
    })
    .await;
    eprintln!(
        "figure: deletion of the active pod to a new active server in the status: {:.1} s",
        deleted.elapsed().as_secs_f64()
    );
    let rows = insert(&env, &schema, 41..=60).await;
    read_rows(&service, &schema, &schema, &rows);

    // 5. The PodDisruptionBudget under the Eviction API (what `kubectl drain`
    // uses): with one pod evicted, the other's eviction is refused.
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    eventually(
        "both pods Ready, the budget at one disruption",
        WAIT,
        async || {
            let all = pods.list(&ListParams::default()).await.ok()?;
            (all.items.len() == 2 && all.items.iter().all(ready)).then_some(())?;
            let status = budgets.get("orders").await.ok()?.status?;
            (status.current_healthy == 2 && status.disruptions_allowed == 1).then_some(())
        },
    )
    .await;
    let evicting: Api<Pod> = Api::namespaced(node.client_without_retries().await, &namespace);
    evicting
        .evict("orders-0", &EvictParams::default())
        .await
        .expect("the first eviction is allowed");
    match evicting.evict("orders-1", &EvictParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 429, "{status:?}"),
        other => panic!(
            "the second eviction must be refused by the PodDisruptionBudget: {other:?}; \
             budget: {:?}",
            budgets.get("orders").await.ok().and_then(|b| b.status)
        ),
    }
    eventually("both pods Ready after the eviction", WAIT, async || {
        let all = pods.list(&ListParams::default()).await.ok()?;
        (all.items.len() == 2 && all.items.iter().all(ready)).then_some(())
    })
    .await;
    let rows = insert(&env, &schema, 61..=80).await;
    read_rows(&service, &schema, &schema, &rows);

    // 6. A rolling upgrade to a second image tag: the operator rolls out,
    // then the server pods roll one at a time; no row is lost.
    let second = node.retag(&format!("{tag}-second"));
    let second_tag = second.rsplit_once(':').map(|(_, t)| t.to_owned()).unwrap();
    let (_, since) = active_pod(&instances).await.unwrap();
    let rows = insert(&env, &schema, 81..=100).await;
    node.cluster(&[
        "helm",
        "upgrade",
        RELEASE,
        concat!(env!("CARGO_MANIFEST_DIR"), "/charts/canal-operator"),
        "-n",
        OPERATOR_NAMESPACE,
        "--reuse-values",
        "--set",
        &format!("image.tag={second_tag}"),
        "--wait",
        "--timeout",
        "180s",
    ]);
    let (failovers, most_unready) = follow_rollout(
        &instances,
        &pods,
        since,
        "both pods on the second image and Ready",
        |p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.containers[0].image.as_deref() == Some(second.as_str()))
        },
    )
    .await;
    read_rows(&service, &schema, &schema, &rows);
    eprintln!(
        "figure: rolling upgrade to a second image: {failovers} failover(s), at most \
         {most_unready} pod(s) not ready at once"
    );
    assert!(most_unready <= 1, "the pods rolled one at a time");
    assert!(
        failovers <= 1,
        "standbys first, the active server's pod last: at most one failover, got {failovers}"
    );

    // 6b. A spec change (a pod annotation) rolls the pods the same way.
    let rows = insert(&env, &schema, 101..=120).await;
    let (_, since) = active_pod(&instances).await.unwrap();
    node.cluster(&[
        "kubectl",
        "patch",
        "canal",
        "orders",
        "-n",
        &namespace,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"podTemplate":{"annotations":{"example.com/rolled":"yes"}}}}"#,
    ]);
    let (failovers, most_unready) = follow_rollout(
        &instances,
        &pods,
        since,
        "both pods with the new annotation and Ready",
        |p| {
            p.annotations()
                .get("example.com/rolled")
                .is_some_and(|v| v == "yes")
        },
    )
    .await;
    read_rows(&service, &schema, &schema, &rows);
    eprintln!(
        "figure: rolling a spec change: {failovers} failover(s), at most {most_unready} pod(s) \
         not ready at once"
    );
    assert!(most_unready <= 1, "the pods rolled one at a time");
    assert!(failovers <= 1, "at most one failover, got {failovers}");

    // 7. Uninstall: the operator goes, the CRD stays.
    node.cluster(&[
        "kubectl",
        "delete",
        "namespace",
        &namespace,
        "--wait=true",
        "--timeout=120s",
    ]);
    node.cluster(&[
        "helm",
        "uninstall",
        RELEASE,
        "-n",
        OPERATOR_NAMESPACE,
        "--wait",
    ]);
    assert!(
        deployments.get_opt(RELEASE).await.unwrap().is_none(),
        "the operator is gone"
    );
    node.cluster(&["kubectl", "get", "crd", "canalinstances.canal.otter.dev"]);
    // A new connection: the first one has been idle for the whole test.
    env.root()
        .await
        .query_drop(format!("DROP DATABASE `{schema}`"))
        .await
        .unwrap();
    let zookeeper = zk::connect(&zk::servers(), Duration::from_secs(6)).await;
    zk::delete_all(&zookeeper, &format!("{}/{schema}", zk::DESTINATIONS)).await;
    let _ = std::fs::remove_file(manifest);
}

/// `manifests/examples/ha.yaml` with this machine's addresses (the
/// ZooKeeper chroot `/canal` kept), the schema `shop` renamed to `schema`
/// in its filters, and a destination of its own.
fn ha_example(env: &LiveEnv, schema: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/examples/ha.yaml");
    let text = std::fs::read_to_string(path).expect("manifests/examples/ha.yaml");
    let zookeeper = zookeeper_in_cluster();
    let port = env.address.rsplit(':').next().unwrap_or("3306");
    let mut replaced = text.clone();
    for (from, to) in [
        (
            "mysql-primary.shop.svc:3306".to_owned(),
            format!("{HOST_IP}:{port}"),
        ),
        (
            "zk-0.zk.zookeeper.svc:2181,zk-1.zk.zookeeper.svc:2181,zk-2.zk.zookeeper.svc:2181/canal"
                .to_owned(),
            format!("{}/canal", zookeeper.join(",")),
        ),
        (
            "username: canal\n  password: change-me\n".to_owned(),
            format!("username: {}\n  password: {}\n", env.user, env.password),
        ),
        ("shop\\.".to_owned(), format!("{schema}\\.")),
        ("shop.payments:".to_owned(), format!("{schema}.payments:")),
        (
            "\nspec:\n  replicas: 3".to_owned(),
            format!("\nspec:\n  destination: {schema}\n  replicas: 3"),
        ),
    ] {
        assert!(
            replaced.contains(&from),
            "ha.yaml no longer has {from:?}, which this test replaces"
        );
        replaced = replaced.replace(&from, &to);
    }
    replaced
}

/// canal's own Java `ClusterCanalConnector` (`scripts/java-client --zk`),
/// run inside the node's network: it finds the active server in ZooKeeper
/// (through the chroot) and reads from its pod IP. Its JSON lines.
fn java_cluster_client(
    zookeeper: &str,
    destination: &str,
    schema: &str,
    password: &str,
    rows: usize,
) -> Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster"))
        .arg("exec")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/java-client"))
        .args(["--zk", zookeeper, "--destination", destination])
        .args(["--user", "payments-consumer", "--password", password])
        .args(["--filter", &format!("{schema}\\..*")])
        .args(["--count", &rows.to_string()])
        .args(["--retry-times", "100", "--retry-interval-ms", "500"])
        .args(["--idle-ms", "60000", "--max-ms", "120000"])
        .stdin(Stdio::null())
        .output()
        .expect("scripts/cluster exec scripts/java-client")
}

fn pod_scheduled(pod: &Pod) -> Option<(String, String)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// The raw manifests as a GitOps pipeline applies them (`kubectl apply
/// --server-side -f manifests/install.yaml`, only the image substituted),
/// then `manifests/examples/ha.yaml`: clients that log in, ZooKeeper digest
/// auth and the chroot `/canal`, column filters, three replicas whose
/// required anti-affinity puts each on a node of its own (here: one runs,
/// two wait unschedulable, as they must on one node), canal's Java
/// `ClusterCanalConnector` reading through ZooKeeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_manifests_and_the_ha_example_run_on_a_real_node() {
    let Some(node) = Node::get("the_raw_manifests_and_the_ha_example_run_on_a_real_node") else {
        return;
    };
    let _cluster = CLUSTER.lock().await;
    let env = LiveEnv::get();
    let client = node.client().await;
    let (_, schema) = unique("ha");
    let namespace = schema.replace('_', "-");

    // A fresh install: nothing of the chart's release is left.
    remove_operator(&node);
    let install = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/install.yaml"
    ))
    .expect("manifests/install.yaml");
    let shipped = "ghcr.io/canal-operator/canal-operator:";
    assert!(install.contains(shipped), "install.yaml names {shipped}…");
    let install: String = install
        .lines()
        .map(|line| match line.find(shipped) {
            Some(at) => {
                let end = line[at..].find(['"', ' ']).map_or(line.len(), |e| at + e);
                format!("{}{}{}\n", &line[..at], node.image, &line[end..])
            }
            None => format!("{line}\n"),
        })
        .collect();
    let install_path = std::env::temp_dir().join(format!("{namespace}-install.yaml"));
    std::fs::write(&install_path, install).expect("write install.yaml");
    let install_path = install_path.to_string_lossy().into_owned();
    node.cluster(&["kubectl", "apply", "--server-side", "-f", &install_path]);
    node.cluster(&[
        "kubectl",
        "rollout",
        "status",
        "deployment/canal-operator",
        "-n",
        OPERATOR_NAMESPACE,
        "--timeout=180s",
    ]);

    // The source tables: payments' card columns are filtered out.
    let mut conn = env.root().await;
    conn.query_drop(format!("CREATE DATABASE `{schema}`"))
        .await
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE `{schema}`.payments (id BIGINT PRIMARY KEY, amount INT, \
         card_number VARCHAR(32), card_cvv VARCHAR(4))"
    ))
    .await
    .unwrap();
    drop(conn);

    node.cluster(&["kubectl", "create", "namespace", &namespace]);
    let manifest = std::env::temp_dir().join(format!("{namespace}.yaml"));
    std::fs::write(&manifest, ha_example(&env, &schema)).expect("write the manifest");
    node.cluster(&[
        "kubectl",
        "apply",
        "--server-side",
        "-n",
        &namespace,
        "-f",
        &manifest.to_string_lossy(),
    ]);
    let instances: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let active = eventually(
        "one pod active, the other two unschedulable on one node",
        WAIT,
        async || {
            let status = instances.get("payments").await.ok()?.status?;
            let active = status.active_server?.pod?;
            let all = pods.list(&ListParams::default()).await.ok()?;
            let running = all.items.iter().filter(|p| ready(p)).count();
            let unschedulable = all
                .items
                .iter()
                .filter(|p| {
                    pod_scheduled(p) == Some(("False".to_owned(), "Unschedulable".to_owned()))
                })
                .count();
            (all.items.len() == 3 && running == 1 && unschedulable == 2).then_some(active)
        },
    )
    .await;
    eprintln!("ha.yaml: {active} active; two pods wait for nodes of their own");

    // Rows through canal's Java ClusterCanalConnector, logged in, via
    // ZooKeeper under the chroot; the card columns never leave the server.
    let mut conn = env.root().await;
    for id in 1..=3 {
        conn.query_drop(format!(
            "INSERT INTO `{schema}`.payments VALUES ({id}, {id}00, '4111111111111111', '123')"
        ))
        .await
        .unwrap();
    }
    drop(conn);
    let zookeeper = zookeeper_in_cluster();
    let connect = format!("{}/canal", zookeeper.join(","));
    let output = java_cluster_client(&connect, &schema, &schema, "change-me-too", 3);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Java cluster client: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut ids = Vec::new();
    for line in stdout.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if entry["entryType"] != "ROWDATA" || entry["tableName"] != "payments" {
            continue;
        }
        for row in entry["rows"].as_array().into_iter().flatten() {
            let columns: Vec<&str> = row["after"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            assert_eq!(columns, ["id", "amount"], "excludeColumns applied: {line}");
            ids.extend(row["after"][0]["value"].as_str().map(str::to_owned));
        }
    }
    assert_eq!(ids, ["1", "2", "3"], "{stdout}");
    // A wrong password is refused.
    let refused = java_cluster_client(&connect, &schema, &schema, "wrong", 1);
    assert!(
        !refused.status.success(),
        "a wrong password must be refused: {}",
        String::from_utf8_lossy(&refused.stdout)
    );

    // The destination lives under the chroot.
    let zookeeper = zk::connect(&zk::servers(), Duration::from_secs(6)).await;
    let under_chroot = format!("/canal{}/{schema}", zk::DESTINATIONS);
    assert!(
        zookeeper.check_stat(&under_chroot).await.unwrap().is_some(),
        "{under_chroot} exists"
    );

    // Uninstall: the namespace (cleanupPolicy Delete removes the
    // destination's ZooKeeper nodes), then everything install.yaml made.
    node.cluster(&[
        "kubectl",
        "delete",
        "namespace",
        &namespace,
        "--wait=true",
        "--timeout=120s",
    ]);
    assert!(
        zookeeper.check_stat(&under_chroot).await.unwrap().is_none(),
        "cleanupPolicy Delete removed {under_chroot}"
    );
    node.cluster(&[
        "kubectl",
        "delete",
        "-f",
        &install_path,
        "--wait=true",
        "--timeout=120s",
    ]);
    env.root()
        .await
        .query_drop(format!("DROP DATABASE `{schema}`"))
        .await
        .unwrap();
    let _ = std::fs::remove_file(manifest);
    let _ = std::fs::remove_file(&install_path);
}
