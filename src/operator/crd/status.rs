//! What the operator reports: the `CanalInstance` status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator last saw of a CanalInstance.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanalInstanceStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, Paused and, after a reset, CursorReset.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods of the StatefulSet.
    #[serde(default)]
    pub replicas: i32,
    /// Pods of the StatefulSet that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// "ready/desired", for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_summary: Option<String>,
    /// The pods' label selector (the scale subresource reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// The server holding the destination's running node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_server: Option<ActiveServer>,
    /// Servers registered for the destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// Each client's acknowledged position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["clientId"]))]
    pub cursors: Vec<ClientCursorStatus>,
    /// The slowest client's cursor as `file:position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<String>,
    /// Seconds between now and the binlog event the slowest client
    /// acknowledged last (grows while the source is idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_lag_seconds: Option<i64>,
    /// The hash of the configuration and Secrets the pods run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// The last cursor reset attempted (each nonce is tried once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_reset: Option<AppliedCursorReset>,
}

/// The server holding the destination's running node.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActiveServer {
    /// ip:port registered in ZooKeeper.
    pub address: String,
    /// The pod with that IP, when one matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// When it became active (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// A server registered for the destination.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// ip:port registered in ZooKeeper.
    pub address: String,
    /// The pod with that IP, when one matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// One client's acknowledged position.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientCursorStatus {
    /// The canal client id.
    pub client_id: String,
    /// The binlog file the client resumes in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_name: Option<String>,
    /// The offset in that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// The GTID set (MySQL) or position (MariaDB), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// The acknowledged event's time, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Why the cursor node could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A cursor reset the operator attempted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppliedCursorReset {
    /// The spec.cursorReset.nonce it was for.
    pub nonce: String,
    /// RFC 3339.
    pub applied_at: String,
    /// The clients moved.
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// Whether the cursors were moved; a failed nonce is not tried again
    /// (set a new nonce to retry).
    #[serde(default = "succeeded_default")]
    pub succeeded: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn succeeded_default() -> bool {
    true
}
