//! What a user declares: the `CanalInstance` spec.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, PodSecurityContext, ResourceRequirements, SecurityContext,
    Toleration, TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::status::CanalInstanceStatus;

/// A highly available canal destination: a StatefulSet of canal-server
/// pods racing in ZooKeeper for one MySQL/MariaDB source.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "canal.otter.dev",
    version = "v1alpha1",
    kind = "CanalInstance",
    plural = "canalinstances",
    shortname = "canal",
    category = "all",
    namespaced,
    status = "CanalInstanceStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Active", type_ = "string", json_path = ".status.activeServer.pod"),
    printcolumn(name = "Binlog", type_ = "string", json_path = ".status.binlog"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.binlogLagSeconds"),
    printcolumn(name = "Replicas", type_ = "string", json_path = ".status.replicasSummary"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "(has(self.spec.destination) ? self.spec.destination : self.metadata.name) == \
         (has(oldSelf.spec.destination) ? oldSelf.spec.destination : oldSelf.metadata.name)"
    ).message("spec.destination is immutable: the ZooKeeper nodes and client cursors live under it; create a new CanalInstance to move to another destination"),
    validation = Rule::new("self.metadata.name.size() <= 52")
        .message("metadata.name must be at most 52 characters: pod names add the StatefulSet's revision hash and ordinal"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter): it names the instance's Services"),
)]
#[kube(cel)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.cursorReset) || self.paused")
        .message("spec.cursorReset is accepted only while spec.paused is true: pause the instance, then set the reset")
)]
pub struct CanalInstanceSpec {
    /// The canal destination name clients subscribe to; defaults to the
    /// resource's name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$')")
        .message("spec.destination must be 1-100 letters, digits, '_', '.' or '-' (it is a ZooKeeper node name), not starting with '.' or '-'"))]
    #[schemars(length(max = 100))]
    pub destination: Option<String>,

    /// canal-server pods; one is active, the others stand by.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 9").message("spec.replicas must be between 0 and 9"))]
    pub replicas: i32,

    /// The MySQL/MariaDB server whose binlog is streamed.
    pub source: SourceSpec,

    /// The ZooKeeper ensemble the servers race in and keep cursors in.
    pub zookeeper: ZookeeperSpec,

    /// Which tables and columns are streamed.
    #[serde(default)]
    pub filter: FilterSpec,

    /// canal-server settings.
    #[serde(default)]
    pub server: ServerSpec,

    /// The canal-server image; defaults to the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in ['Always', 'IfNotPresent', 'Never']")
        .message("spec.imagePullPolicy must be Always, IfNotPresent or Never"))]
    pub image_pull_policy: Option<String>,

    /// The canal-server container's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Overrides for the pods.
    #[serde(default)]
    pub pod_template: PodOverrides,

    /// Stop applying changes to the children; the running pods keep going.
    #[serde(default)]
    pub paused: bool,

    /// Change to any new value to restart every pod (one at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<String>,

    /// Move client cursors; applied once per nonce, only while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_reset: Option<CursorReset>,
}

fn default_replicas() -> i32 {
    2
}

/// The MySQL/MariaDB server whose binlog is streamed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// host:port of the MySQL/MariaDB server.
    #[x_kube(validation = Rule::new("self.matches('^(\\\\[[0-9A-Fa-f:.]+\\\\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):[0-9]{1,5}$') && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535 && int(self.substring(self.lastIndexOf(':') + 1)) > 0")
        .message("spec.source.address must be host:port, e.g. mysql.db.svc:3306"))]
    #[schemars(length(max = 261))]
    pub address: String,

    /// The replication account (needs SELECT, REPLICATION SLAVE,
    /// REPLICATION CLIENT).
    pub credentials: CredentialsRef,

    /// Replica server ids: pod N connects with serverIdBase + N. Must not
    /// collide with other replicas of the source.
    #[serde(default = "default_server_id_base")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4294967286")
        .message("spec.source.serverIdBase must be between 1 and 4294967286 (server ids are 32-bit, pods add their ordinal)"))]
    pub server_id_base: i64,

    /// Where to start when no cursor exists; the end of the binlog when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartPosition>,

    /// Resume by GTID instead of file and position.
    #[serde(default)]
    pub gtid_mode: bool,

    /// The connection charset.
    #[serde(default = "default_charset")]
    pub charset: String,
}

fn default_server_id_base() -> i64 {
    1001
}

fn default_charset() -> String {
    "UTF-8".into()
}

/// A Secret in the instance's namespace holding a user name and password.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// The Secret's name.
    #[x_kube(validation = Rule::new("self.size() > 0").message("the Secret name must not be empty"))]
    pub secret_name: String,
    /// The Secret's key holding the user name.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// The Secret's key holding the password.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// One of: a binlog file (and position), a timestamp, a GTID set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.journalName), has(self.timestamp), has(self.gtid)].filter(x, x).size() == 1")
    .message("set exactly one of journalName (with an optional position), timestamp or gtid"))]
#[x_kube(validation = Rule::new("!has(self.position) || has(self.journalName)")
    .message("position needs journalName"))]
pub struct StartPosition {
    /// The binlog file to start in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_name: Option<String>,
    /// The offset in that file; its first event when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 4").message("a binlog position is at least 4 (the first event)"))]
    pub position: Option<i64>,
    /// Milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("timestamp is milliseconds since the epoch"))]
    pub timestamp: Option<i64>,
    /// A GTID set (MySQL) or position (MariaDB) to start after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// The ZooKeeper ensemble the servers race in and keep cursors in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZookeeperSpec {
    /// host:port[,host:port...][/chroot]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9.\\\\[\\\\]:-]+:[0-9]{1,5}(,[A-Za-z0-9.\\\\[\\\\]:-]+:[0-9]{1,5})*(/[^/].*)?$')")
        .message("spec.zookeeper.connect must be host:port[,host:port...][/chroot]"))]
    #[schemars(length(max = 2048))]
    pub connect: String,

    /// Milliseconds; a crashed active server is replaced about this long
    /// after it stopped answering.
    #[serde(default = "default_session_timeout")]
    #[x_kube(validation = Rule::new("self >= 2000 && self <= 60000")
        .message("spec.zookeeper.sessionTimeoutMillis must be between 2000 and 60000"))]
    pub session_timeout_millis: i64,

    /// A Secret with digest credentials (`user:password` under `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SecretKeyRef>,

    /// What happens to the destination's ZooKeeper nodes (and client
    /// cursors) when the CanalInstance is deleted.
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
}

fn default_session_timeout() -> i64 {
    6000
}

/// One key of a Secret in the instance's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub secret_name: String,
    /// The key within it.
    pub key: String,
}

/// What happens to the destination's ZooKeeper nodes when the
/// CanalInstance is deleted.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum CleanupPolicy {
    /// Keep the nodes: a new CanalInstance for the destination resumes.
    #[default]
    Retain,
    /// Delete `/otter/canal/destinations/{destination}`.
    Delete,
}

/// Which tables and columns are streamed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FilterSpec {
    /// Table regexes (`schema\.table`), canal.instance.filter.regex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// canal.instance.filter.black.regex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Columns to keep per table (`schema.table` → columns).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub include_columns: BTreeMap<String, Vec<String>>,
    /// Columns to drop per table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exclude_columns: BTreeMap<String, Vec<String>>,
}

/// canal-server settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// A Secret with the user name and password canal clients log in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<CredentialsRef>,
    /// The event store's size.
    #[serde(default)]
    pub buffer: BufferSpec,
    /// Further canal.properties / instance.properties keys; each must be a
    /// key canal-server knows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_properties: BTreeMap<String, String>,
    /// The ports the server listens on.
    #[serde(default)]
    pub ports: PortsSpec,
}

/// The event store's size.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BufferSpec {
    /// Events the store holds (a power of two).
    #[serde(default = "default_buffer_size")]
    #[x_kube(validation = Rule::new("self in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576]")
        .message("spec.server.buffer.size must be a power of two between 16 and 1048576"))]
    pub size: i64,
    /// Bytes per unit in MEMSIZE mode.
    #[serde(default = "default_memunit")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1048576")
        .message("spec.server.buffer.memunit must be between 1 and 1048576 bytes"))]
    pub memunit: i64,
    /// Whether a client's batch size counts bytes or events.
    #[serde(default)]
    pub batch_mode: BatchMode,
}

impl Default for BufferSpec {
    fn default() -> Self {
        BufferSpec {
            size: default_buffer_size(),
            memunit: default_memunit(),
            batch_mode: BatchMode::default(),
        }
    }
}

fn default_buffer_size() -> i64 {
    16384
}

fn default_memunit() -> i64 {
    1024
}

/// How a client's batch size is counted (canal's
/// canal.instance.memory.batch.mode).
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchMode {
    /// Counts bytes, in units of spec.server.buffer.memunit.
    #[default]
    Memsize,
    /// Counts events.
    Itemsize,
}

/// The ports the server listens on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.client != self.metrics")
    .message("spec.server.ports.client and spec.server.ports.metrics must differ"))]
pub struct PortsSpec {
    /// The canal protocol port clients connect to.
    #[serde(default = "default_client_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("ports are 1-65535"))]
    pub client: i32,
    /// The port serving metrics and health probes.
    #[serde(default = "default_metrics_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("ports are 1-65535"))]
    pub metrics: i32,
}

impl Default for PortsSpec {
    fn default() -> Self {
        PortsSpec {
            client: default_client_port(),
            metrics: default_metrics_port(),
        }
    }
}

fn default_client_port() -> i32 {
    11111
}

fn default_metrics_port() -> i32 {
    11112
}

/// Pod settings the operator does not decide.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra pod labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('canal.otter.dev/') && !k.startsWith('app.kubernetes.io/'))")
        .message("spec.podTemplate.labels may not set canal.otter.dev/ or app.kubernetes.io/ labels: the operator's selectors and the active Service use them"))]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Replaces the operator's preferred anti-affinity when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// The pods' tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The pods' node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The pods' topology spread constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Replaces the operator's pod security context when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Replaces the operator's container security context when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
    /// The pods' service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The pods' priority class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// Moves client cursors (Strimzi's offset-reset model): set while paused,
/// applied once per `nonce`, reported in the CursorReset condition.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CursorReset {
    /// Any new value applies the reset again.
    #[x_kube(validation = Rule::new("self.size() > 0").message("spec.cursorReset.nonce must not be empty"))]
    pub nonce: String,
    /// The client to move; every client with a cursor when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Where the clients resume.
    pub position: CursorPosition,
}

/// A binlog position a cursor reset moves clients to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CursorPosition {
    /// The binlog file.
    #[x_kube(validation = Rule::new("self.size() > 0").message("journalName must not be empty"))]
    pub journal_name: String,
    /// The offset of the event to resume at.
    #[x_kube(validation = Rule::new("self >= 4").message("a binlog position is at least 4 (the first event)"))]
    pub position: i64,
    /// The event's time, milliseconds since the epoch (for reporting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// With spec.source.gtidMode, where to resume by GTID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

impl CanalInstance {
    /// The canal destination: spec.destination, else the resource's name.
    pub fn destination(&self) -> String {
        self.spec
            .destination
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
