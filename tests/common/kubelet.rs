//! Test infrastructure, not part of the product: a stand-in for the kubelet
//! and the StatefulSet controller, so that the StatefulSets the operator
//! applies to the test control plane ([`super::k8s`]) run as real
//! `canal-server` processes on this machine.
//!
//! [`Kubelet::start`] watches StatefulSets and Pods in one namespace and:
//!
//! - as the **StatefulSet controller**: creates Pod `{sts}-{i}` for each
//!   replica from the template (its labels plus `controller-revision-hash`,
//!   `apps.kubernetes.io/pod-index` and
//!   `statefulset.kubernetes.io/pod-name`; an ownerReference to the
//!   StatefulSet with controller=true; `spec.nodeName` [`NODE_NAME`]),
//!   deletes pods beyond `spec.replicas`, rolls a changed template one pod
//!   at a time from the highest ordinal (the next only when the replaced
//!   pod is Running and Ready), and writes the StatefulSet's status
//!   (observedGeneration, replicas, readyReplicas, availableReplicas,
//!   currentReplicas, updatedReplicas, currentRevision/updateRevision =
//!   `{sts}-{hash of the pod template}`). `Parallel` and `OrderedReady`
//!   pod management, `RollingUpdate` and `OnDelete`; no `partition`, no
//!   ControllerRevision objects, no adoption of orphans.
//! - as the **kubelet** of node [`NODE_NAME`]: runs every pod bound to it.
//!   Each pod gets a loopback IP of its own (127.0.0.20 upward; all of
//!   127/8 reaches `lo` on Linux; claimed with a lock file so concurrent
//!   test processes never share one) and its first container becomes a
//!   real `canal-server` process (the image is ignored, `args` are kept):
//!   ConfigMap and Secret volumes are written to a per-pod directory
//!   (`items` honoured) and `CANAL_CONF_DIR` is pointed at the mount it
//!   named; the environment is built from `env`/`envFrom` (plain values,
//!   `secretKeyRef`, `configMapKeyRef`, `fieldRef` for metadata and
//!   status.podIP), plus `HOSTNAME` and `canal.ip=<pod IP>` (the network
//!   namespace stand-in: the process binds only its own IP, so pods share
//!   ports). A missing Secret or key keeps the pod Pending in
//!   `CreateContainerConfigError` (a missing ConfigMap in
//!   `ContainerCreating`), retried every second. The pod status (phase,
//!   podIP(s), hostIP, conditions, containerStatuses with restartCount and
//!   lastState) is written through the status subresource; readiness comes
//!   from the container's readinessProbe `httpGet` on the pod IP every
//!   250 ms (not its periodSeconds). A process that exits is restarted
//!   after a back-off (0.5 s doubling to 5 s). A pod being deleted gets
//!   SIGTERM, SIGKILL after its grace period, and is then removed with
//!   grace period 0 (pods are bound to a node, so deletion is graceful, as
//!   in a cluster). Liveness probes, `command`, `$(VAR)` expansion, init
//!   and sidecar containers are not simulated.
//!
//! Every process is ended by its PID (it is our child, reaped only by us):
//! on pod deletion, by [`Kubelet::shutdown`], or SIGKILLed when the
//! [`Kubelet`] is dropped. The processes also get SIGKILL from the kernel
//! if the test process dies (PR_SET_PDEATHSIG). Logs (stdout and stderr)
//! are in `target/tmp/canal-kubelet/<namespace>/<pod>-<uid>/container.log`,
//! kept when a test panics or `CANAL_TEST_KEEP_K8S` is set.

use std::{
    collections::{BTreeMap, HashMap},
    fs::{File, OpenOptions},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetStatus},
        core::v1::{
            ConfigMap, Container as ContainerSpec, ContainerState, ContainerStateRunning,
            ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, EnvVar, HostIP,
            KeyToPath, Pod, PodCondition, PodIP, PodSpec, PodStatus, Probe, Secret, Volume,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{ObjectMeta, OwnerReference, Time},
        util::intstr::IntOrString,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::json;
use sha1::{Digest, Sha1};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{Notify, watch},
    task::JoinHandle,
};

use super::k8s::{owner_alive, owner_token};

/// The node every pod the StatefulSet stand-in creates is bound to.
pub const NODE_NAME: &str = "canal-test-node";
/// status.hostIP of every pod.
pub const HOST_IP: &str = "127.0.0.1";
pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

const PROBE_PERIOD: Duration = Duration::from_millis(250);
const RESYNC_PERIOD: Duration = Duration::from_millis(500);
const CONFIG_RETRY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A container that ran this long starts over at the minimum back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(10);
/// Default timeout of the waiting helpers.
pub const WAIT: Duration = Duration::from_secs(90);
/// The first pod IP is 127.0.0.20.
const FIRST_HOST: u32 = 20;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Signals a test can send to a pod's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
    Int,
    Stop,
    Cont,
}

impl Signal {
    /// Linux numbers (the same on x86-64 and arm64).
    fn number(self) -> i32 {
        match self {
            Signal::Int => 2,
            Signal::Kill => 9,
            Signal::Term => 15,
            Signal::Cont => 18,
            Signal::Stop => 19,
        }
    }
}

mod sys {
    use std::ffi::c_int;

    unsafe extern "C" {
        fn kill(pid: c_int, signal: c_int) -> c_int;
        fn prctl(option: c_int, ...) -> c_int;
    }

    const PR_SET_PDEATHSIG: c_int = 1;
    const SIGKILL: c_int = 9;

    /// Sends `signal` to `pid`; true if it was delivered.
    pub fn signal(pid: u32, signal: i32) -> bool {
        let Ok(pid) = c_int::try_from(pid) else {
            return false;
        };
        // SAFETY: kill(2) with a positive PID of a child we have not
        // reaped, so it names that child.
        unsafe { kill(pid, signal) == 0 }
    }

    /// In the child between fork and exec: SIGKILL when the parent dies.
    pub fn die_with_parent() -> std::io::Result<()> {
        // SAFETY: prctl(2) is async-signal-safe and touches no memory here.
        if unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL as std::ffi::c_ulong) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// What happened to a pod's container, as the kubelet saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A process started (`restart` 0 for the first).
    Started { pid: u32, restart: i32 },
    /// The Ready condition written to the API changed.
    Ready(bool),
    /// The container cannot start yet (reason, message).
    Waiting { reason: String, message: String },
    /// The process exited on its own.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The process was stopped for the pod's deletion (or the pod object
    /// vanished); `killed` when SIGTERM was not enough.
    Stopped { killed: bool },
    /// The pod object was removed after its container stopped.
    Deleted,
}

#[derive(Debug, Clone)]
pub struct KubeletEvent {
    pub at: Instant,
    pub pod: String,
    pub uid: String,
    pub ip: Ipv4Addr,
    pub kind: EventKind,
}

/// A pod IP held by this process: an exclusive lock on
/// `$TMPDIR/canal-kubelet-ips/<ip>` (released by the kernel if the process
/// dies, so there is nothing stale to clean up).
struct IpClaim {
    ip: Ipv4Addr,
    _lock: File,
}

fn host_ip(host: u32) -> Option<Ipv4Addr> {
    let [_, b, c, d] = host.to_be_bytes();
    (d != 0 && d != 255).then_some(Ipv4Addr::new(127, b, c, d))
}

fn claim_ip() -> Result<IpClaim, String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join("canal-kubelet-ips");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // 127.0.0.20 .. 127.0.15.254: plenty, and never 127.0.0.1.
    const HOSTS: u32 = 16 * 256 - FIRST_HOST;
    for _ in 0..HOSTS {
        let host = FIRST_HOST + NEXT.fetch_add(1, Ordering::Relaxed) % HOSTS;
        let Some(ip) = host_ip(host) else {
            continue;
        };
        let path = dir.join(ip.to_string());
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        if file.try_lock().is_err() {
            continue;
        }
        // Usable: something can bind it (and nothing else holds it).
        match std::net::TcpListener::bind((ip, 0)) {
            Ok(_) => return Ok(IpClaim { ip, _lock: file }),
            Err(e) => eprintln!("kubelet: {ip} is not usable ({e}); trying the next address"),
        }
    }
    Err("no free loopback address for a pod".into())
}

/// A running (or exited, not yet collected) canal-server process.
struct Container {
    child: Child,
    started_at: Timestamp,
    started: Instant,
}

impl Container {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the process has exited (reaps it).
    fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            // Not our child any more: treat as gone.
            Err(_) => Some(ExitStatus::default()),
        }
    }

    /// Signals the process if it is still running (not reaped: the PID is
    /// still its own).
    fn signal(&mut self, signal: Signal) -> bool {
        self.exited().is_none() && sys::signal(self.pid(), signal.number())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One pod object (by uid) the kubelet runs.
struct Slot {
    name: String,
    uid: String,
    ip: Ipv4Addr,
    claim: Mutex<Option<IpClaim>>,
    dir: PathBuf,
    log_path: PathBuf,
    container: Mutex<Option<Container>>,
    /// The pod object as last listed; `None` once it is gone.
    updates: watch::Sender<Option<Arc<Pod>>>,
    /// The Ready condition last written to the API.
    ready: AtomicBool,
    restarts: AtomicI32,
    waiting: Mutex<Option<(String, String)>>,
}

impl Slot {
    fn pid(&self) -> Option<u32> {
        let mut container = self.container.lock().unwrap();
        let c = container.as_mut()?;
        c.exited().is_none().then(|| c.pid())
    }
}

struct Shared {
    client: Client,
    namespace: String,
    root: PathBuf,
    /// The current incarnation of each pod name.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Log file of the last incarnation of each pod name.
    last_logs: Mutex<HashMap<String, PathBuf>>,
    events: Mutex<Vec<KubeletEvent>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    changed: Notify,
    stopping: AtomicBool,
}

impl Shared {
    fn record(&self, slot: &Slot, kind: EventKind) {
        self.events.lock().unwrap().push(KubeletEvent {
            at: Instant::now(),
            pod: slot.name.clone(),
            uid: slot.uid.clone(),
            ip: slot.ip,
            kind,
        });
    }

    fn slot(&self, pod: &str) -> Option<Arc<Slot>> {
        self.slots.lock().unwrap().get(pod).cloned()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// The kubelet and StatefulSet controller stand-in of one namespace (see
/// the module documentation).
pub struct Kubelet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Kubelet {
    /// Starts watching `namespace` (call inside a Tokio runtime; the tasks
    /// live on it).
    pub fn start(client: Client, namespace: &str) -> Kubelet {
        // CARGO_TARGET_TMPDIR exists for tests and benches only; anything
        // else built from these modules uses the temporary directory.
        let roots = option_env!("CARGO_TARGET_TMPDIR")
            .map_or_else(std::env::temp_dir, PathBuf::from)
            .join("canal-kubelet");
        remove_stale_roots(&roots);
        let root = roots.join(namespace);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
        std::fs::write(root.join(OWNER_FILE), owner_token())
            .unwrap_or_else(|e| panic!("cannot write to {}: {e}", root.display()));
        let shared = Arc::new(Shared {
            client: client.clone(),
            namespace: namespace.to_owned(),
            root,
            slots: Mutex::default(),
            last_logs: Mutex::default(),
            events: Mutex::default(),
            workers: Mutex::default(),
            changed: Notify::new(),
            stopping: AtomicBool::new(false),
        });
        let tasks = vec![
            tokio::spawn(notify_on_changes(
                Api::<StatefulSet>::namespaced(client.clone(), namespace),
                shared.clone(),
            )),
            tokio::spawn(notify_on_changes(
                Api::<Pod>::namespaced(client, namespace),
                shared.clone(),
            )),
            tokio::spawn(control_loop(shared.clone())),
        ];
        Kubelet { shared, tasks }
    }

    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// Where the pods' directories (configuration, logs) are.
    pub fn dir(&self) -> &Path {
        &self.shared.root
    }

    /// The IP of the pod's current incarnation.
    pub fn pod_ip(&self, pod: &str) -> Option<Ipv4Addr> {
        self.shared.slot(pod).map(|s| s.ip)
    }

    /// The uid of the pod object the kubelet runs under that name.
    pub fn pod_uid(&self, pod: &str) -> Option<String> {
        self.shared.slot(pod).map(|s| s.uid.clone())
    }

    /// The PID of the pod's process while it runs.
    pub fn pid(&self, pod: &str) -> Option<u32> {
        self.shared.slot(pod)?.pid()
    }

    pub fn is_running(&self, pod: &str) -> bool {
        self.pid(pod).is_some()
    }

    /// Names of the pods whose process runs now, sorted.
    pub fn running_pods(&self) -> Vec<String> {
        let slots: Vec<_> = self
            .shared
            .slots
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        let mut names: Vec<_> = slots
            .iter()
            .filter(|s| s.pid().is_some())
            .map(|s| s.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The Ready condition the kubelet last wrote for the pod.
    pub fn is_ready(&self, pod: &str) -> bool {
        self.shared
            .slot(pod)
            .is_some_and(|s| s.ready.load(Ordering::SeqCst))
    }

    pub fn restart_count(&self, pod: &str) -> Option<i32> {
        self.shared
            .slot(pod)
            .map(|s| s.restarts.load(Ordering::SeqCst))
    }

    /// Why the pod's container is not running, if it is waiting.
    pub fn waiting(&self, pod: &str) -> Option<(String, String)> {
        self.shared.slot(pod)?.waiting.lock().unwrap().clone()
    }

    /// Sends `signal` to the pod's process; false when none runs.
    pub fn kill_process(&self, pod: &str, signal: Signal) -> bool {
        let Some(slot) = self.shared.slot(pod) else {
            return false;
        };
        let mut container = slot.container.lock().unwrap();
        container.as_mut().is_some_and(|c| c.signal(signal))
    }

    /// The log file of the pod's current (or last) incarnation.
    pub fn log_path(&self, pod: &str) -> Option<PathBuf> {
        self.shared
            .slot(pod)
            .map(|s| s.log_path.clone())
            .or_else(|| self.shared.last_logs.lock().unwrap().get(pod).cloned())
    }

    /// stdout and stderr of every run of the pod's current (or last)
    /// incarnation.
    pub fn logs(&self, pod: &str) -> String {
        self.log_path(pod)
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Everything that happened so far, in order.
    pub fn events(&self) -> Vec<KubeletEvent> {
        self.shared.events.lock().unwrap().clone()
    }

    /// Waits until the pod runs and its Ready condition is True in the API;
    /// returns its IP. Panics after [`WAIT`], with the pod's log.
    pub async fn wait_ready(&self, pod: &str) -> Ipv4Addr {
        self.wait_ready_within(pod, WAIT).await
    }

    pub async fn wait_ready_within(&self, pod: &str, timeout: Duration) -> Ipv4Addr {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(slot) = self.shared.slot(pod)
                && slot.ready.load(Ordering::SeqCst)
                && slot.pid().is_some()
            {
                return slot.ip;
            }
            if Instant::now() >= deadline {
                panic!(
                    "pod {}/{pod} not ready after {timeout:?}; waiting: {:?}; log:\n{}",
                    self.shared.namespace,
                    self.waiting(pod),
                    tail(&self.logs(pod), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until no process runs for the pod.
    pub async fn wait_stopped(&self, pod: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.is_running(pod) {
            assert!(
                Instant::now() < deadline,
                "the process of pod {}/{pod} still runs after {timeout:?}",
                self.shared.namespace
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops watching, then stops every process gracefully (SIGTERM, then
    /// SIGKILL after the pod's grace period) and waits for them. Pod
    /// objects stay in the API, as when a node goes away.
    pub async fn shutdown(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        let workers: Vec<_> = self.shared.workers.lock().unwrap().drain(..).collect();
        for worker in workers {
            worker.abort();
            let _ = worker.await;
        }
        let slots: Vec<_> = self
            .shared
            .slots
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        let stops = slots.iter().map(|slot| {
            let grace = slot
                .updates
                .borrow()
                .as_ref()
                .map_or(30, |pod| grace_period(pod));
            stop_container(&self.shared, slot, grace)
        });
        futures_util::future::join_all(stops).await;
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for task in &self.tasks {
            task.abort();
        }
        for worker in self.shared.workers.lock().unwrap().iter() {
            worker.abort();
        }
        // SIGKILL and reap every process we started.
        let slots: Vec<_> = self
            .shared
            .slots
            .lock()
            .unwrap()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in &slots {
            drop(slot.container.lock().unwrap().take());
            slot.claim.lock().unwrap().take();
        }
        if super::failure::seen() {
            let name = format!("kubelet-{}", self.shared.namespace);
            match super::failure::preserve(&self.shared.root, &name, &[]) {
                Ok(to) => eprintln!(
                    "kubelet: a test failed; pod logs copied to {}",
                    to.display()
                ),
                Err(e) => eprintln!("kubelet: a test failed; cannot copy pod logs: {e}"),
            }
        }
        let keep =
            std::env::var_os("CANAL_TEST_KEEP_K8S").is_some_and(|v| !v.is_empty() && v != "0");
        if keep {
            eprintln!(
                "kubelet: pod directories and logs kept in {}",
                self.shared.root.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.shared.root);
        }
    }
}

const OWNER_FILE: &str = ".owner";

/// Deletes the directories of kubelets whose test process is gone (killed
/// before it could clean up).
fn remove_stale_roots(roots: &Path) {
    let Ok(entries) = std::fs::read_dir(roots) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let stale = std::fs::read_to_string(dir.join(OWNER_FILE))
            .is_ok_and(|token| !owner_alive(token.trim()));
        if stale {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<_> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Wakes the control loop on every change of `K` in the namespace.
async fn notify_on_changes<K>(api: Api<K>, shared: Arc<Shared>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        if event.is_ok() {
            shared.changed.notify_one();
        }
    }
}

async fn control_loop(shared: Arc<Shared>) {
    let mut last_error = None;
    while !shared.stopping.load(Ordering::SeqCst) {
        match sync(&shared).await {
            Ok(()) => last_error = None,
            Err(error) => {
                let text = error.to_string();
                if last_error.as_ref() != Some(&text) {
                    eprintln!("kubelet {}: sync failed: {text}", shared.namespace);
                }
                last_error = Some(text);
            }
        }
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(RESYNC_PERIOD) => {}
        }
    }
}

/// One pass over the namespace, from fresh (consistent) lists.
async fn sync(shared: &Arc<Shared>) -> kube::Result<()> {
    let sets: Api<StatefulSet> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let pods = shared.pods();
    let all_sets = sets.list(&ListParams::default()).await?.items;
    let all_pods = pods.list(&ListParams::default()).await?.items;
    for set in &all_sets {
        sync_statefulset(&sets, &pods, set, &all_pods).await?;
    }
    dispatch_pods(shared, &all_pods);
    Ok(())
}

// ---------------------------------------------------------------------------
// The StatefulSet controller.
// ---------------------------------------------------------------------------

/// `{sts}-{hash}`: the revision of a pod template, as the pods' label.
pub fn revision(set: &StatefulSet) -> String {
    let template = set.spec.as_ref().map(|s| &s.template);
    let bytes = serde_json::to_vec(&template).expect("a pod template serializes");
    let digest = hex::encode(Sha1::digest(&bytes));
    format!(
        "{}-{}",
        set.metadata.name.as_deref().unwrap_or_default(),
        &digest[..10]
    )
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Running, Ready and not being deleted.
pub fn is_healthy(pod: &Pod) -> bool {
    !is_terminating(pod) && is_running_and_ready(pod)
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

/// The ordinal of a pod this set controls.
fn ordinal_of(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let set_uid = set.metadata.uid.as_deref()?;
    let owned = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == set_uid);
    if !owned {
        return None;
    }
    let prefix = format!("{}-", set.metadata.name.as_deref()?);
    pod.metadata
        .name
        .as_deref()?
        .strip_prefix(&prefix)?
        .parse()
        .ok()
        .filter(|n: &i32| *n >= 0)
}

fn new_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let template = spec.template;
    let name = format!("{set_name}-{ordinal}");
    let template_meta = template.metadata.unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), revision.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.clone();
    pod_spec.node_name = Some(NODE_NAME.into());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: set_name,
                uid: set.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

fn ignore_status(result: kube::Result<()>, codes: &[u16]) -> kube::Result<()> {
    match result {
        Err(kube::Error::Api(status)) if codes.contains(&status.code) => Ok(()),
        other => other,
    }
}

/// One pass of the StatefulSet controller over `set`: at most one pod
/// created, deleted or rolled (all at once under `Parallel`), then the
/// status.
async fn sync_statefulset(
    sets: &Api<StatefulSet>,
    pods: &Api<Pod>,
    set: &StatefulSet,
    all_pods: &[Pod],
) -> kube::Result<()> {
    // Being deleted: the garbage collector takes care of the pods.
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let Some(spec) = &set.spec else {
        return Ok(());
    };
    let view = SetView {
        name: set.metadata.name.clone().unwrap_or_default(),
        replicas: spec.replicas.unwrap_or(1).max(0),
        update_revision: revision(set),
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        owned: all_pods
            .iter()
            .filter_map(|p| Some((ordinal_of(set, p)?, p)))
            .collect(),
    };
    create_missing(pods, set, &view, all_pods).await?;
    delete_surplus(pods, &view).await?;
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling {
        roll_one(pods, &view).await?;
    }
    let status = statefulset_status(set, &view);
    if set.status.as_ref() != Some(&status) {
        let patch = json!({
            "metadata": { "uid": set.metadata.uid },
            "status": status,
        });
        ignore_status(
            sets.patch_status(&view.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ()),
            &[404, 409, 422],
        )?;
    }
    Ok(())
}

/// What one controller pass knows of a StatefulSet.
struct SetView<'a> {
    name: String,
    replicas: i32,
    update_revision: String,
    parallel: bool,
    /// The set's pods by ordinal.
    owned: BTreeMap<i32, &'a Pod>,
}

/// Missing replicas, in ordinal order (one at a time, each after the ones
/// before are healthy, unless `Parallel`).
async fn create_missing(
    pods: &Api<Pod>,
    set: &StatefulSet,
    view: &SetView<'_>,
    all_pods: &[Pod],
) -> kube::Result<()> {
    let taken = |pod_name: &str| {
        all_pods
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(pod_name))
    };
    let parallel = view.parallel;
    for ordinal in 0..view.replicas {
        if view.owned.contains_key(&ordinal) {
            continue;
        }
        let pod_name = format!("{}-{ordinal}", view.name);
        if taken(&pod_name) {
            // Someone else's pod (or a terminating one): wait.
            if parallel {
                continue;
            }
            break;
        }
        if !parallel && !(0..ordinal).all(|o| view.owned.get(&o).is_some_and(|p| is_healthy(p))) {
            break;
        }
        let pod = new_pod(set, ordinal, &view.update_revision);
        ignore_status(
            pods.create(&PostParams::default(), &pod).await.map(|_| ()),
            &[409],
        )?;
        if !parallel {
            break;
        }
    }
    Ok(())
}

/// Pods beyond spec.replicas, from the highest ordinal.
async fn delete_surplus(pods: &Api<Pod>, view: &SetView<'_>) -> kube::Result<()> {
    for (_, pod) in view.owned.range(view.replicas..).rev() {
        if is_terminating(pod) {
            if view.parallel {
                continue;
            }
            break;
        }
        delete_pod(pods, pod).await?;
        if !view.parallel {
            break;
        }
    }
    Ok(())
}

/// Rolling update: deletes the highest-ordinal pod of an old revision, once
/// every pod above it is healthy.
async fn roll_one(pods: &Api<Pod>, view: &SetView<'_>) -> kube::Result<()> {
    for ordinal in (0..view.replicas).rev() {
        let Some(pod) = view.owned.get(&ordinal) else {
            break;
        };
        if pod_revision(pod) != Some(view.update_revision.as_str()) && !is_terminating(pod) {
            delete_pod(pods, pod).await?;
            break;
        }
        if !is_healthy(pod) {
            break;
        }
    }
    Ok(())
}

/// The status the controller reports for `set`: counts of its pods, and the
/// current revision, which becomes the update revision once every replica
/// runs it and is ready.
fn statefulset_status(set: &StatefulSet, view: &SetView<'_>) -> StatefulSetStatus {
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(view.owned.values().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let replicas = view.replicas;
    let update_revision = view.update_revision.clone();
    let old = set.status.clone().unwrap_or_default();
    let mut current_revision = old
        .current_revision
        .clone()
        .unwrap_or_else(|| update_revision.clone());
    let total = count(&|_| true);
    let ready = count(&|p| is_running_and_ready(p));
    let updated = count(&|p| pod_revision(p) == Some(update_revision.as_str()));
    if updated == replicas && total == replicas && ready == replicas {
        current_revision = update_revision.clone();
    }
    let current = count(&|p| pod_revision(p) == Some(current_revision.as_str()));
    StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: total,
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(update_revision),
        collision_count: Some(old.collision_count.unwrap_or(0)),
        conditions: old.conditions.clone(),
    }
}

/// A graceful delete of exactly this pod object.
async fn delete_pod(pods: &Api<Pod>, pod: &Pod) -> kube::Result<()> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    ignore_status(pods.delete(name, &params).await.map(|_| ()), &[404, 409])
}

// ---------------------------------------------------------------------------
// The kubelet.
// ---------------------------------------------------------------------------

/// Hands each pod bound to [`NODE_NAME`] to its worker: starts workers for
/// new pods, tells workers of changes and of pods that are gone.
fn dispatch_pods(shared: &Arc<Shared>, all_pods: &[Pod]) {
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let mine: HashMap<&str, &Pod> = all_pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE_NAME))
        .filter_map(|p| Some((p.metadata.name.as_deref()?, p)))
        .collect();
    let mut slots = shared.slots.lock().unwrap();
    for slot in slots.values() {
        tell_worker(slot, &mine);
    }
    for (name, pod) in mine {
        if slots.contains_key(name) {
            // Either this incarnation (told above) or an old one that is
            // still stopping: the new one starts after it is gone.
            continue;
        }
        if let Some(slot) = start_worker(shared, name, pod) {
            slots.insert(name.to_owned(), slot);
        }
    }
}

/// Tells `slot`'s worker of its pod's new version, or that it is gone.
fn tell_worker(slot: &Slot, mine: &HashMap<&str, &Pod>) {
    let listed = mine
        .get(slot.name.as_str())
        .filter(|p| p.metadata.uid.as_deref() == Some(slot.uid.as_str()));
    match listed {
        Some(pod) => {
            let version = pod.metadata.resource_version.clone();
            slot.updates.send_if_modified(|current| {
                let modified = current
                    .as_ref()
                    .is_none_or(|c| c.metadata.resource_version != version);
                if modified {
                    *current = Some(Arc::new((*pod).clone()));
                }
                modified
            });
        }
        None => {
            slot.updates
                .send_if_modified(|current| current.take().is_some());
        }
    }
}

/// A slot (IP, directory) and a worker for a pod new to this node; `None`
/// when the pod is already terminating (its deletion is confirmed) or the
/// slot cannot be set up (the next dispatch tries again).
fn start_worker(shared: &Arc<Shared>, name: &str, pod: &Pod) -> Option<Arc<Slot>> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if is_terminating(pod) {
        // Not running here (a previous kubelet's): just confirm.
        let pods = shared.pods();
        let name = name.to_owned();
        tokio::spawn(async move {
            let _ = pods.delete(&name, &confirm_delete(&uid)).await;
        });
        return None;
    }
    let claim = match claim_ip() {
        Ok(claim) => claim,
        Err(why) => {
            eprintln!("kubelet: cannot start pod {name}: {why}");
            return None;
        }
    };
    let dir = shared
        .root
        .join(format!("{name}-{}", uid.get(..8).unwrap_or(&uid)));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("kubelet: cannot create {}: {e}", dir.display());
        return None;
    }
    let (updates, receiver) = watch::channel(Some(Arc::new(pod.clone())));
    let slot = Arc::new(Slot {
        name: name.to_owned(),
        uid,
        ip: claim.ip,
        claim: Mutex::new(Some(claim)),
        log_path: dir.join("container.log"),
        dir,
        container: Mutex::default(),
        updates,
        ready: AtomicBool::new(false),
        restarts: AtomicI32::new(0),
        waiting: Mutex::default(),
    });
    let worker = tokio::spawn(pod_worker(shared.clone(), slot.clone(), receiver));
    let mut workers = shared.workers.lock().unwrap();
    workers.retain(|w| !w.is_finished());
    workers.push(worker);
    Some(slot)
}

fn confirm_delete(uid: &str) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..Default::default()
    }
}

fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0)
}

/// Why a container cannot start yet.
#[derive(Debug, Clone, PartialEq)]
struct Waiting {
    reason: String,
    message: String,
    /// The "sandbox" exists (volumes are set up), so the pod has its IP.
    sandbox: bool,
}

impl Waiting {
    fn volumes(message: String) -> Waiting {
        Waiting {
            reason: "ContainerCreating".into(),
            message,
            sandbox: false,
        }
    }

    fn config(message: String) -> Waiting {
        Waiting {
            reason: "CreateContainerConfigError".into(),
            message,
            sandbox: true,
        }
    }
}

/// The status bookkeeping of one pod worker.
struct PodState {
    start_time: Timestamp,
    sandbox: bool,
    waiting: Option<Waiting>,
    running_since: Option<Timestamp>,
    last_terminated: Option<ContainerStateTerminated>,
    ready: bool,
    transitions: HashMap<&'static str, (bool, Timestamp)>,
    written: Option<PodStatus>,
}

impl PodState {
    fn condition(&mut self, type_: &'static str, status: bool) -> PodCondition {
        let now = Timestamp::now();
        let entry = self.transitions.entry(type_).or_insert((status, now));
        if entry.0 != status {
            *entry = (status, now);
        }
        let not_ready = (type_ == "Ready" || type_ == "ContainersReady") && !status;
        PodCondition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(entry.1)),
            reason: not_ready.then(|| "ContainersNotReady".into()),
            message: not_ready.then(|| "containers with unready status: [canal-server]".into()),
            ..Default::default()
        }
    }

    fn status(&mut self, slot: &Slot, container: &ContainerSpec) -> PodStatus {
        let restarts = slot.restarts.load(Ordering::SeqCst);
        let running = self.running_since.is_some();
        let ready = self.ready && running;
        let state = if let Some(since) = self.running_since {
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(since)),
                }),
                ..Default::default()
            }
        } else {
            ContainerState {
                waiting: Some(match &self.waiting {
                    Some(w) => ContainerStateWaiting {
                        reason: Some(w.reason.clone()),
                        message: Some(w.message.clone()),
                    },
                    None => ContainerStateWaiting {
                        reason: Some("ContainerCreating".into()),
                        message: None,
                    },
                }),
                ..Default::default()
            }
        };
        let conditions = vec![
            self.condition("PodReadyToStartContainers", self.sandbox),
            self.condition("Initialized", true),
            self.condition("Ready", ready),
            self.condition("ContainersReady", ready),
            self.condition("PodScheduled", true),
        ];
        let phase = if running || restarts > 0 {
            "Running"
        } else {
            "Pending"
        };
        let pid = slot.pid();
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: Some(HOST_IP.into()),
            host_ips: Some(vec![HostIP { ip: HOST_IP.into() }]),
            pod_ip: self.sandbox.then(|| slot.ip.to_string()),
            pod_ips: self.sandbox.then(|| {
                vec![PodIP {
                    ip: slot.ip.to_string(),
                }]
            }),
            start_time: Some(Time(self.start_time)),
            qos_class: Some("BestEffort".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: container.name.clone(),
                image: container.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: pid.filter(|_| running).map(|pid| format!("pid://{pid}")),
                ready,
                restart_count: restarts,
                started: Some(running),
                state: Some(state),
                last_state: self
                    .last_terminated
                    .clone()
                    .map(|terminated| ContainerState {
                        terminated: Some(terminated),
                        ..Default::default()
                    }),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }
}

/// Runs one pod object until it is deleted (or gone) or the kubelet stops.
async fn pod_worker(
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    mut updates: watch::Receiver<Option<Arc<Pod>>>,
) {
    let mut worker = Worker {
        pods: shared.pods(),
        shared,
        slot,
        state: PodState {
            start_time: Timestamp::now(),
            sandbox: false,
            waiting: None,
            running_since: None,
            last_terminated: None,
            ready: false,
            transitions: HashMap::new(),
            written: None,
        },
        probe: ProbeState::default(),
        next_start: Instant::now(),
        backoff: BACKOFF_MIN,
    };
    let mut last_pod: Option<Arc<Pod>> = None;
    loop {
        if worker.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let current = updates.borrow_and_update().clone();
        let Some(pod) = current else {
            // The object vanished (deleted with grace period 0).
            let grace = last_pod.as_deref().map_or(30, grace_period);
            stop_container(&worker.shared, &worker.slot, grace).await;
            finish(&worker.shared, &worker.slot);
            return;
        };
        last_pod = Some(pod.clone());
        if is_terminating(&pod) {
            worker.terminate(&pod).await;
            return;
        }
        if let Some(container) = pod.spec.as_ref().and_then(|s| s.containers.first()) {
            worker.step(&pod, container).await;
            worker.write_status(container).await;
        }
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(PROBE_PERIOD) => {}
        }
    }
}

/// The kubelet's work for one pod object.
struct Worker {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    pods: Api<Pod>,
    state: PodState,
    probe: ProbeState,
    /// When the container may be started (again).
    next_start: Instant,
    backoff: Duration,
}

impl Worker {
    /// The pod is being deleted: stop the process, then remove the object.
    async fn terminate(&mut self, pod: &Pod) {
        let (shared, slot) = (&self.shared, &self.slot);
        stop_container(shared, slot, grace_period(pod)).await;
        match self
            .pods
            .delete(&slot.name, &confirm_delete(&slot.uid))
            .await
        {
            Ok(_) => shared.record(slot, EventKind::Deleted),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            // The next listing starts a new worker that retries.
            Err(error) => eprintln!("kubelet: cannot remove pod {}: {error}", slot.name),
        }
        finish(shared, slot);
    }

    /// Starts, watches and probes the container of a live pod.
    async fn step(&mut self, pod: &Pod, container_spec: &ContainerSpec) {
        let exited = {
            let mut container = self.slot.container.lock().unwrap();
            match container.as_mut() {
                None => None,
                Some(c) => match c.exited() {
                    None => Some(None),
                    Some(status) => {
                        let c = container.take().expect("a container");
                        Some(Some((status, c.started_at, c.started.elapsed())))
                    }
                },
            }
        };
        match exited {
            // Running: probe.
            Some(None) => {
                self.state.ready = self.probe.check(self.slot.ip, container_spec).await;
            }
            Some(Some((status, started_at, ran))) => self.exited(status, started_at, ran),
            // Not started (yet, or again).
            None if Instant::now() >= self.next_start => self.start(pod, container_spec).await,
            None => {}
        }
    }

    /// The process exited on its own: restart it after the back-off.
    fn exited(&mut self, status: ExitStatus, started_at: Timestamp, ran: Duration) {
        use std::os::unix::process::ExitStatusExt;
        let (code, signal) = (status.code(), status.signal());
        self.shared
            .record(&self.slot, EventKind::Exited { code, signal });
        self.slot.restarts.fetch_add(1, Ordering::SeqCst);
        if ran >= BACKOFF_RESET {
            self.backoff = BACKOFF_MIN;
        }
        self.state.last_terminated = Some(ContainerStateTerminated {
            exit_code: code.unwrap_or(128 + signal.unwrap_or(0)),
            signal,
            reason: Some(
                if code == Some(0) {
                    "Completed"
                } else {
                    "Error"
                }
                .into(),
            ),
            started_at: Some(Time(started_at)),
            finished_at: Some(Time(Timestamp::now())),
            ..Default::default()
        });
        self.state.running_since = None;
        self.state.ready = false;
        self.set_waiting(Waiting {
            reason: "CrashLoopBackOff".into(),
            message: format!("back-off {:?} restarting failed container", self.backoff),
            sandbox: true,
        });
        self.next_start = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn set_waiting(&mut self, waiting: Waiting) {
        if self.state.waiting.as_ref() != Some(&waiting) {
            self.shared.record(
                &self.slot,
                EventKind::Waiting {
                    reason: waiting.reason.clone(),
                    message: waiting.message.clone(),
                },
            );
        }
        self.state.sandbox |= waiting.sandbox;
        *self.slot.waiting.lock().unwrap() =
            Some((waiting.reason.clone(), waiting.message.clone()));
        self.state.waiting = Some(waiting);
    }

    async fn start(&mut self, pod: &Pod, container_spec: &ContainerSpec) {
        let launch = match prepare(
            &self.shared,
            &self.slot,
            pod,
            container_spec,
            &mut self.state,
        )
        .await
        {
            Ok(launch) => launch,
            Err(waiting) => {
                self.set_waiting(waiting);
                self.next_start = Instant::now() + CONFIG_RETRY;
                return;
            }
        };
        let container = match spawn(&self.slot, launch) {
            Ok(container) => container,
            Err(error) => {
                let message = format!("cannot start canal-server: {error}");
                eprintln!("kubelet: pod {}: {message}", self.slot.name);
                self.set_waiting(Waiting {
                    reason: "RunContainerError".into(),
                    message,
                    sandbox: true,
                });
                self.next_start = Instant::now() + self.backoff;
                return;
            }
        };
        self.shared.record(
            &self.slot,
            EventKind::Started {
                pid: container.pid(),
                restart: self.slot.restarts.load(Ordering::SeqCst),
            },
        );
        self.state.running_since = Some(container.started_at);
        self.state.waiting = None;
        self.state.ready = false;
        self.probe = ProbeState::default();
        *self.slot.waiting.lock().unwrap() = None;
        let mut slot_container = self.slot.container.lock().unwrap();
        if self.shared.stopping.load(Ordering::SeqCst) {
            // The kubelet is being dropped: this one goes too (SIGKILL).
            drop(container);
        } else {
            *slot_container = Some(container);
        }
    }

    /// Writes the pod status when it changed; the Ready condition the
    /// helpers report is the one written.
    async fn write_status(&mut self, container: &ContainerSpec) {
        let status = self.state.status(&self.slot, container);
        if self.state.written.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({
            "metadata": { "uid": self.slot.uid },
            "status": status,
        });
        match self
            .pods
            .patch_status(
                &self.slot.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                let ready = status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if self.slot.ready.swap(ready, Ordering::SeqCst) != ready {
                    self.shared.record(&self.slot, EventKind::Ready(ready));
                }
                self.state.written = Some(status);
            }
            Err(error) => eprintln!(
                "kubelet: cannot write the status of pod {}: {error}",
                self.slot.name
            ),
        }
    }
}

/// Stops the pod's process: SIGTERM, SIGKILL after `grace` seconds.
async fn stop_container(shared: &Shared, slot: &Slot, grace: i64) {
    let running = {
        let mut container = slot.container.lock().unwrap();
        container.as_mut().is_some_and(|c| c.signal(Signal::Term))
    };
    let mut killed = false;
    if running {
        let deadline = Instant::now() + Duration::from_secs(grace.unsigned_abs());
        loop {
            let done = {
                let mut container = slot.container.lock().unwrap();
                container.as_mut().is_none_or(|c| c.exited().is_some())
            };
            if done {
                break;
            }
            if Instant::now() >= deadline && !killed {
                let mut container = slot.container.lock().unwrap();
                killed = container.as_mut().is_some_and(|c| c.signal(Signal::Kill));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let had = slot.container.lock().unwrap().take().is_some();
    slot.ready.store(false, Ordering::SeqCst);
    if had {
        shared.record(slot, EventKind::Stopped { killed });
    }
}

/// The worker is done: the name is free for the next incarnation.
fn finish(shared: &Shared, slot: &Slot) {
    {
        let mut slots = shared.slots.lock().unwrap();
        if slots.get(&slot.name).is_some_and(|s| s.uid == slot.uid) {
            slots.remove(&slot.name);
        }
    }
    shared
        .last_logs
        .lock()
        .unwrap()
        .insert(slot.name.clone(), slot.log_path.clone());
    slot.claim.lock().unwrap().take();
    shared.changed.notify_one();
}

/// What to start.
struct Launch {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// Sets `name` (a later value replaces an earlier one, in place).
fn set_env(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_owned(), value)),
    }
}

/// Secrets and ConfigMaps read for one start, each once.
#[derive(Default)]
struct Sources {
    secrets: HashMap<String, Option<BTreeMap<String, String>>>,
    config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl Sources {
    async fn secret(
        &mut self,
        shared: &Shared,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        if let Some(data) = self.secrets.get(name) {
            return Ok(data.clone());
        }
        let api: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.namespace);
        let data = match api.get_opt(name).await {
            Ok(Some(secret)) => {
                let mut data: BTreeMap<String, String> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                data.extend(secret.string_data.unwrap_or_default());
                Some(data)
            }
            Ok(None) => None,
            Err(error) => return Err(format!("cannot read secret {name:?}: {error}")),
        };
        self.secrets.insert(name.to_owned(), data.clone());
        Ok(data)
    }

    async fn config_map(
        &mut self,
        shared: &Shared,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        if let Some(data) = self.config_maps.get(name) {
            return Ok(data.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &shared.namespace);
        let data = match api.get_opt(name).await {
            Ok(Some(config_map)) => {
                let mut data = config_map.data.unwrap_or_default();
                for (k, v) in config_map.binary_data.unwrap_or_default() {
                    data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                Some(data)
            }
            Ok(None) => None,
            Err(error) => return Err(format!("cannot read configmap {name:?}: {error}")),
        };
        self.config_maps.insert(name.to_owned(), data.clone());
        Ok(data)
    }
}

/// Sets up the volumes and resolves the environment, as the kubelet does
/// before it creates a container.
async fn prepare(
    shared: &Shared,
    slot: &Slot,
    pod: &Pod,
    container: &ContainerSpec,
    state: &mut PodState,
) -> Result<Launch, Waiting> {
    let spec = pod.spec.as_ref().expect("a pod has a spec");
    let mut sources = Sources::default();
    let mounts = mount_volumes(shared, slot, spec, container, &mut sources).await?;
    state.sandbox = true;
    let mut env = container_env(shared, slot, pod, container, &mut sources).await?;
    add_kubelet_env(&mut env, &mounts, slot);
    Ok(Launch {
        args: container.args.clone().unwrap_or_default(),
        env,
    })
}

/// Volumes: each mounted ConfigMap or Secret in a directory of its own
/// under the slot; returns (mount path, host directory) of every mount.
async fn mount_volumes(
    shared: &Shared,
    slot: &Slot,
    spec: &PodSpec,
    container: &ContainerSpec,
    sources: &mut Sources,
) -> Result<Vec<(String, PathBuf)>, Waiting> {
    let volumes_dir = slot.dir.join("volumes");
    let _ = std::fs::remove_dir_all(&volumes_dir);
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            return Err(Waiting::config(format!(
                "volume {:?} is mounted but not defined",
                mount.name
            )));
        };
        let dir = volumes_dir.join(&volume.name);
        std::fs::create_dir_all(&dir).map_err(|e| Waiting::volumes(e.to_string()))?;
        if let Some(source) = VolumeSource::of(shared, volume, sources).await? {
            source.write(&volume.name, &dir)?;
        }
        let target = match mount.sub_path.as_deref() {
            Some(sub) if !sub.is_empty() => dir.join(sub),
            _ => dir,
        };
        mounts.push((mount.mount_path.clone(), target));
    }
    Ok(mounts)
}

/// The data behind a ConfigMap or Secret volume.
struct VolumeSource<'a> {
    kind: &'static str,
    name: String,
    data: Option<BTreeMap<String, String>>,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

impl<'a> VolumeSource<'a> {
    /// `None` for emptyDir and anything else: an empty directory.
    async fn of(
        shared: &Shared,
        volume: &'a Volume,
        sources: &mut Sources,
    ) -> Result<Option<VolumeSource<'a>>, Waiting> {
        if let Some(cm) = &volume.config_map {
            let data = sources
                .config_map(shared, &cm.name)
                .await
                .map_err(Waiting::volumes)?;
            Ok(Some(VolumeSource {
                kind: "configmap",
                name: cm.name.clone(),
                data,
                items: cm.items.as_deref(),
                optional: cm.optional == Some(true),
            }))
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            let data = sources
                .secret(shared, &name)
                .await
                .map_err(Waiting::volumes)?;
            Ok(Some(VolumeSource {
                kind: "secret",
                name,
                data,
                items: secret.items.as_deref(),
                optional: secret.optional == Some(true),
            }))
        } else {
            Ok(None)
        }
    }

    /// Writes the selected keys (all without `items`) as files under `dir`.
    fn write(self, volume: &str, dir: &Path) -> Result<(), Waiting> {
        let VolumeSource {
            kind,
            name,
            data,
            items,
            optional,
        } = self;
        let data = match data {
            None if optional => return Ok(()),
            None => {
                return Err(Waiting::volumes(format!(
                    "MountVolume.SetUp failed for volume {volume:?} : {kind} {name:?} not found"
                )));
            }
            Some(data) => data,
        };
        let files: Vec<(String, String)> = match items {
            Some(items) => {
                let mut files = Vec::new();
                for item in items {
                    match data.get(&item.key) {
                        Some(value) => files.push((item.path.clone(), value.clone())),
                        None if optional => {}
                        None => {
                            return Err(Waiting::volumes(format!(
                                "MountVolume.SetUp failed for volume {volume:?} : {kind} \
                                 references non-existent key: {}",
                                item.key
                            )));
                        }
                    }
                }
                files
            }
            None => data.into_iter().collect(),
        };
        for (path, value) in files {
            let target = dir.join(&path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Waiting::volumes(e.to_string()))?;
            }
            std::fs::write(&target, value).map_err(|e| Waiting::volumes(e.to_string()))?;
        }
        Ok(())
    }
}

/// The container's environment: envFrom, then env (later entries win).
async fn container_env(
    shared: &Shared,
    slot: &Slot,
    pod: &Pod,
    container: &ContainerSpec,
    sources: &mut Sources,
) -> Result<Vec<(String, String)>, Waiting> {
    let mut env: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional, data) = if let Some(r) = &from.secret_ref {
            let data = sources
                .secret(shared, &r.name)
                .await
                .map_err(Waiting::config)?;
            ("secret", &r.name, r.optional == Some(true), data)
        } else if let Some(r) = &from.config_map_ref {
            let data = sources
                .config_map(shared, &r.name)
                .await
                .map_err(Waiting::config)?;
            ("configmap", &r.name, r.optional == Some(true), data)
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (key, value) in data {
                    set_env(&mut env, &format!("{prefix}{key}"), value);
                }
            }
            None if optional => {}
            None => return Err(Waiting::config(format!("{kind} {name:?} not found"))),
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = env_var_value(shared, slot, pod, var, sources).await? {
            set_env(&mut env, &var.name, value);
        }
    }
    Ok(env)
}

/// The value of one `env` entry; `None` when an optional reference is
/// missing (the variable is left out).
async fn env_var_value(
    shared: &Shared,
    slot: &Slot,
    pod: &Pod,
    var: &EnvVar,
    sources: &mut Sources,
) -> Result<Option<String>, Waiting> {
    let Some(source) = &var.value_from else {
        return Ok(Some(var.value.clone().unwrap_or_default()));
    };
    if let Some(selector) = &source.secret_key_ref {
        let data = sources
            .secret(shared, &selector.name)
            .await
            .map_err(Waiting::config)?;
        let reference = KeyRef {
            kind: ("Secret", "secret"),
            name: &selector.name,
            key: &selector.key,
            optional: selector.optional == Some(true),
        };
        reference.value(&shared.namespace, data)
    } else if let Some(selector) = &source.config_map_key_ref {
        let data = sources
            .config_map(shared, &selector.name)
            .await
            .map_err(Waiting::config)?;
        let reference = KeyRef {
            kind: ("ConfigMap", "configmap"),
            name: &selector.name,
            key: &selector.key,
            optional: selector.optional == Some(true),
        };
        reference.value(&shared.namespace, data)
    } else if let Some(field) = &source.field_ref {
        field_value(pod, slot.ip, &field.field_path)
            .map(Some)
            .map_err(Waiting::config)
    } else {
        Err(Waiting::config(format!(
            "env {}: only secretKeyRef, configMapKeyRef and fieldRef are simulated",
            var.name
        )))
    }
}

/// A `secretKeyRef` or `configMapKeyRef`.
struct KeyRef<'a> {
    /// The kind as the kubelet's two messages spell it.
    kind: (&'static str, &'static str),
    name: &'a str,
    key: &'a str,
    optional: bool,
}

impl KeyRef<'_> {
    /// The key's value in `data` (the object, if it exists); `None` when
    /// optional and missing.
    fn value(
        &self,
        namespace: &str,
        data: Option<BTreeMap<String, String>>,
    ) -> Result<Option<String>, Waiting> {
        let (title, lower) = self.kind;
        match data {
            Some(data) => match data.get(self.key) {
                Some(value) => Ok(Some(value.clone())),
                None if self.optional => Ok(None),
                None => Err(Waiting::config(format!(
                    "couldn't find key {} in {title} {namespace}/{}",
                    self.key, self.name
                ))),
            },
            None if self.optional => Ok(None),
            None => Err(Waiting::config(format!(
                "{lower} {:?} not found",
                self.name
            ))),
        }
    }
}

/// What the kubelet adds: the configuration directory (the host directory
/// of the mount CANAL_CONF_DIR names, or the only mount when it names
/// none), HOSTNAME, a default PATH, and the pod's own IP.
fn add_kubelet_env(env: &mut Vec<(String, String)>, mounts: &[(String, PathBuf)], slot: &Slot) {
    let named = env
        .iter()
        .find(|(n, _)| n == "CANAL_CONF_DIR")
        .map(|(_, v)| v.clone());
    let conf_dir = match named {
        Some(path) => host_path(mounts, &path),
        None if mounts.len() == 1 => Some(mounts[0].1.clone()),
        None => None,
    };
    if let Some(dir) = conf_dir {
        set_env(env, "CANAL_CONF_DIR", dir.display().to_string());
    }
    set_env(env, "HOSTNAME", slot.name.clone());
    if !env.iter().any(|(n, _)| n == "PATH") {
        set_env(env, "PATH", DEFAULT_PATH.into());
    }
    // The pod's own IP (the network namespace stand-in).
    set_env(env, "canal.ip", slot.ip.to_string());
}

/// Where a path inside the container is on this machine (by the longest
/// mount path containing it).
fn host_path(mounts: &[(String, PathBuf)], path: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|(mount_path, dir)| {
            let mount_path = mount_path.trim_end_matches('/');
            let rest = path.strip_prefix(mount_path)?;
            if rest.is_empty() {
                Some((mount_path.len(), dir.clone()))
            } else {
                let rest = rest.strip_prefix('/')?;
                Some((mount_path.len(), dir.join(rest)))
            }
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, dir)| dir)
}

/// The downward API's `fieldRef`.
fn field_value(pod: &Pod, ip: Ipv4Addr, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let from_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => NODE_NAME.into(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => ip.to_string(),
        "status.hostIP" | "status.hostIPs" => HOST_IP.into(),
        _ => {
            if let Some(value) = from_map(&meta.labels, "metadata.labels['") {
                value
            } else if let Some(value) = from_map(&meta.annotations, "metadata.annotations['") {
                value
            } else {
                return Err(format!(
                    "fieldRef {path} is not simulated by the test kubelet"
                ));
            }
        }
    };
    Ok(value)
}

/// The canal-server the pods run: Cargo's for tests and benches; for the
/// examples, which Cargo gives none, `$CANAL_SERVER_BIN` (else `PATH`).
fn canal_server_binary() -> PathBuf {
    option_env!("CARGO_BIN_EXE_canal-server")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CANAL_SERVER_BIN").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("canal-server"))
}

fn spawn(slot: &Slot, launch: Launch) -> std::io::Result<Container> {
    use std::os::unix::process::CommandExt;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&slot.log_path)?;
    let stderr = log.try_clone()?;
    let mut command = Command::new(canal_server_binary());
    command
        .args(&launch.args)
        .env_clear()
        .envs(launch.env)
        .current_dir(&slot.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr);
    // SAFETY: the closure only makes the prctl(2) system call.
    unsafe {
        command.pre_exec(sys::die_with_parent);
    }
    let child = command.spawn()?;
    Ok(Container {
        child,
        started_at: Timestamp::now(),
        started: Instant::now(),
    })
}

/// Consecutive probe results, as the kubelet counts them.
#[derive(Default)]
struct ProbeState {
    ready: bool,
    successes: i32,
    failures: i32,
}

impl ProbeState {
    /// Probes the readiness of a running container once; the readiness
    /// after this result. Without a readinessProbe a running container is
    /// ready.
    async fn check(&mut self, ip: Ipv4Addr, container: &ContainerSpec) -> bool {
        let Some(probe) = &container.readiness_probe else {
            self.ready = true;
            return true;
        };
        let ok = http_probe(ip, container, probe).await;
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.ready = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.ready = false;
            }
        }
        self.ready
    }
}

/// The probe's httpGet against the pod IP (a named port is looked up in
/// the container's ports): 200-399 within timeoutSeconds succeeds.
async fn http_probe(ip: Ipv4Addr, container: &ContainerSpec, probe: &Probe) -> bool {
    let Some(get) = &probe.http_get else {
        // exec and tcpSocket probes are not simulated: treat as passing.
        return true;
    };
    let port = match &get.port {
        IntOrString::Int(port) => Some(*port),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    };
    let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
        return false;
    };
    let host = get
        .host
        .as_deref()
        .and_then(|h| h.parse().ok())
        .unwrap_or(ip);
    let path = get.path.clone().unwrap_or_else(|| "/".into());
    let timeout = Duration::from_secs(
        probe
            .timeout_seconds
            .unwrap_or(1)
            .max(1)
            .unsigned_abs()
            .into(),
    );
    let request = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 32];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut head[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let line = std::str::from_utf8(&head[..read]).ok()?;
        line.split(' ').nth(1)?.parse::<u16>().ok()
    };
    matches!(
        tokio::time::timeout(timeout, request).await,
        Ok(Some(200..=399))
    )
}
