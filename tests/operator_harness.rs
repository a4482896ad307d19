//! The operator's end-to-end harness itself (`common::k8s`,
//! `common::kubelet`), with the real API server, kube-controller-manager,
//! MariaDB and ZooKeeper. The operator does not run here: each test
//! applies the pure output of `canal::operator::build` for a CanalInstance
//! it created, the way the operator would.
//!
//! - the children of a CanalInstance run: two pods Ready with their own
//!   IPs, one canal-server active in ZooKeeper, rows from MariaDB reach a
//!   canal client on the active pod, a template change rolls both pods
//!   (the standby first, driven as the operator's rollout does), and deleting the StatefulSet makes the
//!   garbage collector delete the pods and the kubelet stop the processes;
//! - the kubelet's lifecycle: CreateContainerConfigError until the Secret
//!   exists, the environment and files a pod gets, a crashed process
//!   restarted, a deleted pod recreated, scale down and up, shutdown;
//! - RBAC is on: an impersonated user without bindings gets 403.
//!
//! Needs `scripts/k8s install` (the tests are skipped without it, unless
//! CANAL_TEST_REQUIRE_K8S=1) and the environment of `scripts/env`
//! (`eval "$(scripts/env env)"`).

mod common;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use canal::{
    client::cluster::active_server,
    operator::{
        build::{self, BuildInputs, Desired, SecretVersion, labels},
        crd::CanalInstance,
        rollout,
        validate::validate,
    },
};
use common::{
    k8s::{ControlPlane, FIELD_MANAGER, unique_namespace, wait_api},
    kubelet::{self, EventKind, Kubelet, Signal},
    live::LiveEnv,
    rows::receive,
    scene::LiveSchema,
    zk,
};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::StatefulSet,
        core::v1::{Pod, Secret},
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams},
};
use mysql_async::prelude::Queryable;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const SECRET: &str = "replication";
/// The table each scenario's rows go to.
const ITEMS_TABLE: &str = "items (id INT PRIMARY KEY, note VARCHAR(40))";

/// One test's namespace, CanalInstance and MariaDB schema.
struct Scenario {
    client: Client,
    evictions: Client,
    namespace: String,
    env: LiveEnv,
    schema: String,
    destination: String,
    /// As created in the API (with its uid, for the owner references).
    instance: CanalInstance,
}

impl Scenario {
    /// `None` when there is no control plane (the test is skipped).
    async fn new(test: &str, prefix: &str) -> Option<Scenario> {
        let plane = ControlPlane::shared(test).await?;
        plane.install_crd().await;
        let namespace = unique_namespace(prefix);
        plane.ensure_namespace(&namespace).await;
        let client = plane.client().await;
        // As the operator evicts: a 429 is an answer, not retried.
        let mut config = plane.config().await;
        config.default_retry = false;
        let evictions = Client::try_from(config).expect("a kube client");

        let live = LiveSchema::create(prefix, &[ITEMS_TABLE]).await;
        let (journal_name, position) = live.file_position();
        let destination = live.destination();
        // Pods connect as serverIdBase + ordinal: ten ids per test.
        let server_id_base = i64::from(live.server_id) * 10;
        let (env, schema) = (&live.env, &live.name);
        let instance: CanalInstance = serde_json::from_value(json!({
            "apiVersion": "canal.otter.dev/v1alpha1",
            "kind": "CanalInstance",
            "metadata": { "name": "orders", "namespace": namespace },
            "spec": {
                "destination": destination,
                "replicas": 2,
                "source": {
                    "address": env.address,
                    "credentials": { "secretName": SECRET },
                    "serverIdBase": server_id_base,
                    "start": { "journalName": journal_name, "position": position },
                },
                "zookeeper": { "connect": zk::servers() },
                "filter": { "include": [format!("{schema}\\..*")] },
            },
        }))
        .expect("a CanalInstance");
        let instances: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
        let instance = instances
            .create(&PostParams::default(), &instance)
            .await
            .unwrap_or_else(|e| panic!("cannot create the CanalInstance: {e}"));
        Some(Scenario {
            client,
            evictions,
            namespace,
            env: env.clone(),
            schema: schema.clone(),
            destination,
            instance,
        })
    }

    fn name(&self) -> String {
        self.instance.metadata.name.clone().unwrap()
    }

    fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name())
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The replication account's Secret; its version for the config hash.
    async fn create_secret(&self) -> SecretVersion {
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": SECRET },
            "stringData": { "username": self.env.user, "password": self.env.password },
        });
        let secret: Secret = self
            .api::<Secret>()
            .patch(
                SECRET,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .unwrap();
        SecretVersion {
            name: SECRET.into(),
            uid: secret.metadata.uid.unwrap(),
            resource_version: secret.metadata.resource_version.unwrap(),
        }
    }

    /// What the operator's rollout does (`canal::operator::rollout`) after a
    /// template change, until every pod runs the new revision: the active
    /// server, read from ZooKeeper, goes last.
    async fn roll_out(&self, zookeeper: &zookeeper_client::Client, kubelet: &Kubelet) {
        let statefulsets = self.api::<StatefulSet>();
        let pods = self.api::<Pod>();
        let name = self.name();
        wait_api("the rollout to finish", WAIT, async || {
            let statefulset = statefulsets.get(&name).await.ok()?;
            let all = pods
                .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
                .await
                .ok()?
                .items;
            let address = active_server(zookeeper, &self.destination).await.ok()?;
            let active = address.and_then(|address| {
                all.iter().map(|p| p.name_any()).find(|pod| {
                    kubelet
                        .pod_ip(pod)
                        .is_some_and(|ip| address == format!("{ip}:11111"))
                })
            });
            let leader = match &active {
                Some(pod) => rollout::Leader::Pod(pod),
                None => rollout::Leader::Nobody,
            };
            match rollout::next(&statefulset, &all, leader) {
                rollout::Step::Done => Some(()),
                rollout::Step::Wait(_) => None,
                rollout::Step::Evict { pod, .. } => {
                    // Refused (429) while the budget is used up: tried again.
                    let _ = Api::<Pod>::namespaced(self.evictions.clone(), &self.namespace)
                        .evict(&pod, &EvictParams::default())
                        .await;
                    None
                }
            }
        })
        .await;
    }

    /// What the operator would do for `instance`: validate, build, and
    /// server-side apply every child under its field manager.
    async fn apply_children(&self, instance: &CanalInstance, secrets: &[SecretVersion]) -> Desired {
        let rendered = validate(instance).unwrap_or_else(|e| panic!("invalid instance: {e}"));
        let inputs = BuildInputs {
            default_image: "canal-server:harness".into(),
            config_hash: build::config_hash(&rendered, secrets),
        };
        let desired = build::build(instance, &rendered, &inputs);
        self.apply(&desired.config_map).await;
        self.apply(&desired.members_service).await;
        self.apply(&desired.active_service).await;
        self.apply(&desired.pod_disruption_budget).await;
        self.apply(&desired.statefulset).await;
        desired
    }

    async fn apply<K>(&self, object: &K)
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let name = object.meta().name.clone().unwrap();
        self.api::<K>()
            .patch(
                &name,
                &PatchParams::apply(labels::FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot apply {} {name}: {e}", K::kind(&())));
    }

    async fn statefulset(&self) -> StatefulSet {
        self.api::<StatefulSet>().get(&self.name()).await.unwrap()
    }

    /// Waits until the StatefulSet's status satisfies `done`.
    async fn wait_statefulset(
        &self,
        what: &str,
        done: impl Fn(&StatefulSet) -> bool,
    ) -> StatefulSet {
        let api = self.api::<StatefulSet>();
        let name = self.name();
        wait_api(what, WAIT, async || {
            api.get(&name).await.ok().filter(|s| done(s))
        })
        .await
    }

    async fn insert(&self, rows: std::ops::RangeInclusive<i32>) {
        let mut conn = self.env.root().await;
        for id in rows {
            conn.query_drop(format!(
                "INSERT INTO `{}`.items VALUES ({id}, 'row {id}')",
                self.schema
            ))
            .await
            .unwrap();
        }
    }

    /// Removes what the test left outside the control plane.
    async fn cleanup(&self) {
        let zookeeper = zk::connect(&zk::servers(), Duration::from_secs(10)).await;
        zk::delete_all(
            &zookeeper,
            &format!("{}/{}", zk::DESTINATIONS, self.destination),
        )
        .await;
        let mut conn = self.env.root().await;
        let _ = conn
            .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.schema))
            .await;
    }
}

fn status_of(pod: &Pod) -> &k8s_openapi::api::core::v1::PodStatus {
    pod.status.as_ref().expect("a pod status")
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    status_of(pod)
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// `/readyz` of a pod's canal-server: the destination's role.
async fn role(ip: Ipv4Addr, destination: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((ip, 11112)).await.ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let body = response.split_once("\r\n\r\n")?.1;
        // Small bodies; a chunked one has the JSON on its own line.
        let json = body.lines().find(|l| l.starts_with('{'))?;
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        value[destination]["role"].as_str().map(str::to_owned)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// Waits until exactly one of `ips` is active and the others stand by, and
/// ZooKeeper's `running` node names the active one; returns its index.
async fn one_active(
    zookeeper: &zookeeper_client::Client,
    destination: &str,
    ips: &[Ipv4Addr],
) -> usize {
    wait_api(
        "one active canal-server, the others standing by",
        WAIT,
        async || {
            let address = active_server(zookeeper, destination).await.ok()??;
            let mut roles = Vec::new();
            for ip in ips {
                roles.push(role(*ip, destination).await?);
            }
            let active: Vec<_> = (0..ips.len()).filter(|i| roles[*i] == "active").collect();
            let standby = roles.iter().filter(|r| *r == "standby").count();
            match active[..] {
                [one] if standby == ips.len() - 1 && address == format!("{}:11111", ips[one]) => {
                    Some(one)
                }
                _ => None,
            }
        },
    )
    .await
}

/// Whether `pid` is (still) a canal-server process.
fn canal_server_alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("canal-server"))
}

/// The position of the first event matching `pred`.
fn position(
    events: &[kubelet::KubeletEvent],
    pred: impl Fn(&kubelet::KubeletEvent) -> bool,
) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no such kubelet event in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canal_instance_children_run_roll_and_are_collected() {
    let Some(scenario) = Scenario::new(
        "canal_instance_children_run_roll_and_are_collected",
        "hchild",
    )
    .await
    else {
        return;
    };
    let started = Instant::now();
    let secret = scenario.create_secret().await;
    scenario
        .apply_children(&scenario.instance, std::slice::from_ref(&secret))
        .await;
    let kubelet = Kubelet::start(scenario.client.clone(), &scenario.namespace);
    let pods = [scenario.pod(0), scenario.pod(1)];

    // Both pods Ready, each with an IP of its own, in the kubelet and the API.
    let ips = [
        kubelet.wait_ready(&pods[0]).await,
        kubelet.wait_ready(&pods[1]).await,
    ];
    assert_ne!(ips[0], ips[1]);
    let statefulset = scenario
        .wait_statefulset("2 ready replicas", |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.ready_replicas == Some(2))
        })
        .await;
    let sts_uid = statefulset.metadata.uid.clone().unwrap();
    for (ordinal, (pod, ip)) in pods.iter().zip(ips).enumerate() {
        let object = scenario.api::<Pod>().get(pod).await.unwrap();
        assert_eq!(
            status_of(&object).pod_ip.as_deref(),
            Some(ip.to_string().as_str())
        );
        assert_eq!(status_of(&object).phase.as_deref(), Some("Running"));
        assert_eq!(condition(&object, "Ready").as_deref(), Some("True"));
        let object_labels = object.metadata.labels.clone().unwrap();
        assert_eq!(object_labels[kubelet::POD_INDEX_LABEL], ordinal.to_string());
        assert_eq!(object_labels[kubelet::POD_NAME_LABEL], *pod);
        let owner = &object.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", sts_uid.as_str())
        );
        assert_eq!(owner.controller, Some(true));
    }
    let status = statefulset.status.clone().unwrap();
    assert_eq!(status.replicas, 2);
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(status.observed_generation, statefulset.metadata.generation);
    let first_revision = status.update_revision.clone().unwrap();
    assert_eq!(status.current_revision.as_ref(), Some(&first_revision));
    println!("pods ready after {:.1?}", started.elapsed());

    // Exactly one active, registered in ZooKeeper with its pod IP.
    let zookeeper = zk::connect(&zk::servers(), Duration::from_secs(10)).await;
    let active = one_active(&zookeeper, &scenario.destination, &ips).await;
    let address = format!("{}:11111", ips[active]);

    // Rows from MariaDB reach a canal client on the active pod.
    scenario.insert(1..=3).await;
    receive(
        &address,
        &scenario.destination,
        &scenario.schema,
        &[1, 2, 3],
    )
    .await;
    println!("rows received after {:.1?}", started.elapsed());

    // A template change rolls both pods (updateStrategy OnDelete, the
    // operator's rollout): the standby first, its replacement Ready before
    // the active server's pod goes.
    let old_uids: Vec<_> = pods.iter().map(|p| kubelet.pod_uid(p).unwrap()).collect();
    let mut restarted = scenario.instance.clone();
    restarted.spec.restart_nonce = Some("roll-1".into());
    scenario
        .apply_children(&restarted, std::slice::from_ref(&secret))
        .await;
    scenario.roll_out(&zookeeper, &kubelet).await;
    let statefulset = scenario
        .wait_statefulset("the rolling update to finish", |s| {
            let Some(status) = &s.status else {
                return false;
            };
            status.update_revision.as_deref() != Some(first_revision.as_str())
                && status.updated_replicas == Some(2)
                && status.ready_replicas == Some(2)
                && status.current_revision == status.update_revision
                && status.observed_generation == s.metadata.generation
        })
        .await;
    let revision = statefulset.status.unwrap().update_revision.unwrap();
    assert_eq!(revision, kubelet::revision(&scenario.statefulset().await));
    let mut new_ips = Vec::new();
    for (pod, old_uid) in pods.iter().zip(&old_uids) {
        let ip = kubelet.wait_ready(pod).await;
        let object = scenario.api::<Pod>().get(pod).await.unwrap();
        assert_ne!(
            object.metadata.uid.as_ref(),
            Some(old_uid),
            "{pod} was not replaced"
        );
        assert_eq!(
            object.metadata.labels.unwrap()[kubelet::REVISION_LABEL],
            revision
        );
        assert_eq!(
            object.metadata.annotations.unwrap()[labels::RESTART_ANNOTATION],
            "roll-1"
        );
        new_ips.push(ip);
    }
    let events = kubelet.events();
    let stopped = |pod: &str, uid: &str| {
        position(&events, |e| {
            e.pod == pod && e.uid == uid && matches!(e.kind, EventKind::Stopped { .. })
        })
    };
    let standby = 1 - active;
    let new_standby_uid = kubelet.pod_uid(&pods[standby]).unwrap();
    let replacement_ready = position(&events, |e| {
        e.pod == pods[standby] && e.uid == new_standby_uid && e.kind == EventKind::Ready(true)
    });
    assert!(
        stopped(&pods[standby], &old_uids[standby]) < replacement_ready
            && replacement_ready < stopped(&pods[active], &old_uids[active]),
        "not rolled one at a time, the standby {} first: {events:#?}",
        pods[standby]
    );
    println!("rolled after {:.1?}", started.elapsed());

    // A new active server resumes from the acknowledged cursor.
    let active = one_active(&zookeeper, &scenario.destination, &new_ips).await;
    scenario.insert(4..=5).await;
    let address = format!("{}:11111", new_ips[active]);
    receive(&address, &scenario.destination, &scenario.schema, &[4, 5]).await;

    // Deleting the StatefulSet: the garbage collector deletes the pods (by
    // their owner reference), the kubelet stops the processes.
    let pids: Vec<_> = pods.iter().map(|p| kubelet.pid(p).unwrap()).collect();
    scenario
        .api::<StatefulSet>()
        .delete(&scenario.name(), &DeleteParams::background())
        .await
        .unwrap();
    let pod_api = scenario.api::<Pod>();
    let selector = format!("app.kubernetes.io/instance={}", scenario.name());
    wait_api(
        "the garbage collector to delete the pods",
        WAIT,
        async || {
            let left = pod_api
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            left.items.is_empty().then_some(())
        },
    )
    .await;
    for pod in &pods {
        kubelet.wait_stopped(pod, WAIT).await;
    }
    assert!(kubelet.running_pods().is_empty());
    for pid in pids {
        assert!(
            !canal_server_alive(pid),
            "canal-server {pid} survived its pod"
        );
    }
    // Stopped gracefully: the active server released the destination.
    wait_api("the running node to go", WAIT, async || {
        active_server(&zookeeper, &scenario.destination)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    println!("collected after {:.1?}", started.elapsed());
    kubelet.shutdown().await;
    scenario.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_lifecycle_config_errors_restarts_replacement_scaling() {
    let Some(scenario) = Scenario::new(
        "kubelet_lifecycle_config_errors_restarts_replacement_scaling",
        "hlife",
    )
    .await
    else {
        return;
    };
    // Children first, the Secret later: the pods wait for it.
    let placeholder = SecretVersion {
        name: SECRET.into(),
        uid: "none".into(),
        resource_version: "0".into(),
    };
    let began = Instant::now();
    let desired = scenario
        .apply_children(&scenario.instance, std::slice::from_ref(&placeholder))
        .await;
    let kubelet = Kubelet::start(scenario.client.clone(), &scenario.namespace);
    let pod_api = scenario.api::<Pod>();
    let (pod0, pod1) = (scenario.pod(0), scenario.pod(1));
    wait_api(
        "CreateContainerConfigError in the pod status",
        WAIT,
        async || {
            let pod = pod_api.get(&pod0).await.ok()?;
            let waiting = status_of(&pod).container_statuses.as_ref()?[0]
                .state
                .as_ref()?
                .waiting
                .clone()?;
            (waiting.reason.as_deref() == Some("CreateContainerConfigError")).then_some(())
        },
    )
    .await;
    let pod = pod_api.get(&pod0).await.unwrap();
    assert_eq!(status_of(&pod).phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));
    let (reason, message) = kubelet.waiting(&pod0).unwrap();
    assert_eq!(reason, "CreateContainerConfigError");
    assert!(message.contains(SECRET), "{message}");
    assert!(!kubelet.is_running(&pod0));

    scenario.create_secret().await;
    let ip0 = kubelet.wait_ready(&pod0).await;
    let ip1 = kubelet.wait_ready(&pod1).await;

    // What the process got: environment and configuration files.
    let pid = kubelet.pid(&pod1).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ: BTreeMap<String, String> = environ
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect();
    assert_eq!(environ["canal.ip"], ip1.to_string());
    assert_eq!(environ["POD_IP"], ip1.to_string());
    assert_eq!(environ["POD_NAME"], pod1);
    assert_eq!(environ["HOSTNAME"], pod1);
    assert_eq!(environ["CANAL_SERVER_ID_OFFSET"], "1");
    assert_eq!(environ["canal.instance.dbUsername"], scenario.env.user);
    assert_eq!(environ["canal.instance.dbPassword"], scenario.env.password);
    let conf_dir = std::path::PathBuf::from(&environ["CANAL_CONF_DIR"]);
    assert!(
        conf_dir.starts_with(kubelet.dir()),
        "{}",
        conf_dir.display()
    );
    let data = desired.config_map.data.as_ref().unwrap();
    assert_eq!(
        std::fs::read_to_string(conf_dir.join("canal.properties")).unwrap(),
        data["canal.properties"]
    );
    assert_eq!(
        std::fs::read_to_string(
            conf_dir
                .join(&scenario.destination)
                .join("instance.properties")
        )
        .unwrap(),
        data["instance.properties"]
    );
    assert!(kubelet.logs(&pod1).contains("registering in ZooKeeper"));

    // A process that dies is restarted in the same pod.
    let uid0 = kubelet.pod_uid(&pod0).unwrap();
    let pid0 = kubelet.pid(&pod0).unwrap();
    assert!(kubelet.kill_process(&pod0, Signal::Kill));
    wait_api("the restart to be reported", WAIT, async || {
        let pod = pod_api.get(&pod0).await.ok()?;
        let container = status_of(&pod).container_statuses.as_ref()?[0].clone();
        (container.restart_count == 1 && container.ready).then_some(container)
    })
    .await;
    assert_eq!(kubelet.wait_ready(&pod0).await, ip0);
    assert_eq!(kubelet.pod_uid(&pod0), Some(uid0));
    assert_eq!(kubelet.restart_count(&pod0), Some(1));
    assert_ne!(kubelet.pid(&pod0), Some(pid0));
    let pod = pod_api.get(&pod0).await.unwrap();
    let last = status_of(&pod).container_statuses.as_ref().unwrap()[0]
        .last_state
        .clone()
        .and_then(|s| s.terminated)
        .expect("lastState.terminated");
    assert_eq!((last.exit_code, last.signal), (137, Some(9)));

    // A deleted pod is stopped, removed and created again (a new object
    // and a new IP).
    let uid1 = kubelet.pod_uid(&pod1).unwrap();
    let pid1 = kubelet.pid(&pod1).unwrap();
    pod_api
        .delete(&pod1, &DeleteParams::default())
        .await
        .unwrap();
    wait_api("pod 1 to be replaced", WAIT, async || {
        let pod = pod_api.get(&pod1).await.ok()?;
        (pod.metadata.uid.as_ref() != Some(&uid1)).then_some(())
    })
    .await;
    let new_ip1 = kubelet.wait_ready(&pod1).await;
    assert_ne!(new_ip1, ip1);
    assert_ne!(kubelet.pod_uid(&pod1), Some(uid1));
    assert!(!canal_server_alive(pid1));

    // Scale down to 1, then up to 3.
    // The Secret's real version (not the placeholder) changes the config
    // hash: pod 0 rolls (the operator's rollout) once pod 1 is gone.
    let mut scaled = scenario.instance.clone();
    let secret = scenario.create_secret().await;
    scaled.spec.replicas = 1;
    let pid0 = kubelet.pid(&pod0).unwrap();
    scenario
        .apply_children(&scaled, std::slice::from_ref(&secret))
        .await;
    wait_api("pod 1 to go", WAIT, async || {
        pod_api.get_opt(&pod1).await.ok()?.is_none().then_some(())
    })
    .await;
    kubelet.wait_stopped(&pod1, WAIT).await;
    let zookeeper = zk::connect(&zk::servers(), Duration::from_secs(10)).await;
    scenario.roll_out(&zookeeper, &kubelet).await;
    scenario
        .wait_statefulset("1 replica", |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.replicas == 1 && st.ready_replicas == Some(1))
        })
        .await;
    let ip0 = kubelet.wait_ready(&pod0).await;
    assert!(!canal_server_alive(pid0), "pod 0 was not rolled");
    scaled.spec.replicas = 3;
    scenario
        .apply_children(&scaled, std::slice::from_ref(&secret))
        .await;
    let pod2 = scenario.pod(2);
    let ip1 = kubelet.wait_ready(&pod1).await;
    let ip2 = kubelet.wait_ready(&pod2).await;
    scenario
        .wait_statefulset("3 ready replicas", |s| {
            s.status.as_ref().is_some_and(|st| {
                st.replicas == 3 && st.ready_replicas == Some(3) && st.updated_replicas == Some(3)
            })
        })
        .await;
    one_active(&zookeeper, &scenario.destination, &[ip0, ip1, ip2]).await;

    // Deleted with grace period 0, the object goes at once: the process is
    // stopped before the replacement (already created) starts.
    let uid2 = kubelet.pod_uid(&pod2).unwrap();
    let pid2 = kubelet.pid(&pod2).unwrap();
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pod_api.delete(&pod2, &now).await.unwrap();
    wait_api("pod 2 to be replaced", WAIT, async || {
        (kubelet.pod_uid(&pod2)? != uid2).then_some(())
    })
    .await;
    let ip2 = kubelet.wait_ready(&pod2).await;
    assert!(!canal_server_alive(pid2));
    let events = kubelet.events();
    let stopped = position(&events, |e| {
        e.uid == uid2 && matches!(e.kind, EventKind::Stopped { .. })
    });
    let started = position(&events, |e| {
        e.pod == pod2 && e.uid != uid2 && matches!(e.kind, EventKind::Started { .. })
    });
    assert!(stopped < started, "{events:#?}");
    one_active(&zookeeper, &scenario.destination, &[ip0, ip1, ip2]).await;
    println!("lifecycle done after {:.1?}", began.elapsed());

    // Shutdown stops every process (gracefully) and leaves the pods.
    let pids: Vec<_> = [&pod0, &pod1, &pod2]
        .iter()
        .map(|p| kubelet.pid(p).unwrap())
        .collect();
    kubelet.shutdown().await;
    for pid in pids {
        assert!(
            !canal_server_alive(pid),
            "canal-server {pid} survived shutdown"
        );
    }
    scenario.cleanup().await;
}

#[tokio::test]
async fn rbac_is_enforced() {
    let Some(plane) = ControlPlane::shared("rbac_is_enforced").await else {
        return;
    };
    let namespace = unique_namespace("hrbac");
    plane.ensure_namespace(&namespace).await;
    let user = "canal-test-nobody";
    let nobody = plane.client_as(user, &[]).await;
    let forbidden = |result: kube::Result<_>| match result {
        Err(kube::Error::Api(status)) => status.code == 403,
        _ => false,
    };
    let pods: Api<Pod> = Api::namespaced(nobody.clone(), &namespace);
    assert!(forbidden(
        pods.list(&ListParams::default()).await.map(|_| ())
    ));
    let secrets: Api<Secret> = Api::namespaced(nobody.clone(), &namespace);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    assert!(forbidden(
        secrets
            .patch(
                "s",
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&secret)
            )
            .await
            .map(|_| ())
    ));
    // The admin may; kubectl agrees about the user.
    let admin = plane.client().await;
    Api::<Pod>::namespaced(admin.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    let output = plane
        .kubectl(&[
            "auth", "can-i", "list", "pods", "-n", &namespace, "--as", user,
        ])
        .await;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "no");
    assert!(!output.status.success());

    // RBAC is evaluated (not a blanket refusal): a RoleBinding grants it,
    // in that namespace only.
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": "pod-reader", "namespace": namespace },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"] }],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": "pod-reader", "namespace": namespace },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
    });
    let params = PatchParams::apply(FIELD_MANAGER);
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(admin.clone(), &namespace)
        .patch("pod-reader", &params, &Patch::Apply(&role))
        .await
        .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin, &namespace)
        .patch("pod-reader", &params, &Patch::Apply(&binding))
        .await
        .unwrap();
    wait_api("the RoleBinding to take effect", WAIT, async || {
        pods.list(&ListParams::default()).await.ok().map(|_| ())
    })
    .await;
    let elsewhere: Api<Pod> = Api::namespaced(nobody.clone(), "default");
    assert!(forbidden(
        elsewhere.list(&ListParams::default()).await.map(|_| ())
    ));
    let everywhere: Api<Pod> = Api::all(nobody);
    assert!(forbidden(
        everywhere.list(&ListParams::default()).await.map(|_| ())
    ));
}
