//! Names, labels and annotations the operator puts on its children.

use std::collections::BTreeMap;

use crate::operator::crd::CanalInstance;

/// Server-side apply field manager for the children.
pub const FIELD_MANAGER: &str = "canal-operator";
/// Field manager for the active-pod label (a separate one, so applying the
/// label to one pod and not another removes it there).
pub const ROLE_FIELD_MANAGER: &str = "canal-operator-role";
/// On the active pod: the client Service selects it.
pub const ROLE_LABEL: &str = "canal.otter.dev/role";
/// The value of [`ROLE_LABEL`] on the active pod.
pub const ROLE_ACTIVE: &str = "active";
/// On the pod template: changes when configuration or Secrets change.
pub const CONFIG_HASH_ANNOTATION: &str = "canal.otter.dev/config-hash";
/// On the pod template: spec.restartNonce.
pub const RESTART_ANNOTATION: &str = "canal.otter.dev/restart-nonce";
/// The label StatefulSets put on pods with their ordinal (Kubernetes 1.28+).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The name of the pods' one container.
pub const CONTAINER: &str = "canal-server";
/// Where the ConfigMap is mounted (canal's conf directory).
pub const CONF_DIR: &str = "/etc/canal";

/// The names of an instance's children, all derived from the instance's
/// own name.
pub struct Names {
    /// The CanalInstance's name.
    pub instance: String,
}

impl Names {
    /// The names for `instance`.
    pub fn of(instance: &CanalInstance) -> Names {
        Names {
            instance: instance.metadata.name.clone().unwrap_or_default(),
        }
    }
    /// The StatefulSet (and so the pods' name prefix).
    pub fn statefulset(&self) -> String {
        self.instance.clone()
    }
    /// The client Service: always the active server.
    pub fn active_service(&self) -> String {
        self.instance.clone()
    }
    /// The headless Service giving each pod a DNS name.
    pub fn members_service(&self) -> String {
        format!("{}-members", self.instance)
    }
    /// The ConfigMap holding the rendered properties.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.instance)
    }
    /// The PodDisruptionBudget.
    pub fn pod_disruption_budget(&self) -> String {
        self.instance.clone()
    }
}

/// Labels that select the instance's pods. Never the CanalInstance's own
/// labels: GitOps tools track objects by theirs, and copying them would
/// make the children look like part of the user's application.
pub fn selector(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "canal-server".into()),
        ("app.kubernetes.io/instance".into(), names.instance.clone()),
    ])
}

/// Labels on every child.
pub fn common(names: &Names) -> BTreeMap<String, String> {
    let mut labels = selector(names);
    labels.insert("app.kubernetes.io/component".into(), "cdc-server".into());
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "canal-operator".into(),
    );
    labels.insert("app.kubernetes.io/part-of".into(), "canal".into());
    labels
}

/// `key=value,...` for status.labelSelector.
pub fn selector_string(names: &Names) -> String {
    selector(names)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
