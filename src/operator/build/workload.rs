//! The StatefulSet: one canal-server container per pod, configuration from
//! the ConfigMap, credentials from Secrets through the environment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector,
    SecurityContext, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{self, Names};
use super::{BuildInputs, child_meta};
use crate::operator::crd::CanalInstance;

/// Long enough for the graceful hand-over (release, flush cursors) even
/// when ZooKeeper answers slowly; the server normally exits in well under
/// a second.
const TERMINATION_GRACE_SECONDS: i64 = 30;

/// Where the project's image puts canal-server.
pub const SERVER_BINARY: &str = "/usr/local/bin/canal-server";

/// The StatefulSet running the instance's canal-servers: one active, the
/// others standing by in ZooKeeper.
pub fn statefulset(instance: &CanalInstance, inputs: &BuildInputs) -> StatefulSet {
    let names = Names::of(instance);
    let spec = &instance.spec;
    let overrides = &spec.pod_template;

    let mut pod_labels = overrides.labels.clone();
    pod_labels.extend(labels::common(&names));
    let mut pod_annotations = overrides.annotations.clone();
    pod_annotations.insert(
        labels::CONFIG_HASH_ANNOTATION.into(),
        inputs.config_hash.clone(),
    );
    if let Some(nonce) = &spec.restart_nonce {
        pod_annotations.insert(labels::RESTART_ANNOTATION.into(), nonce.clone());
    }

    StatefulSet {
        metadata: child_meta(instance, names.statefulset()),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(names.members_service()),
            // Standbys only race; starting them one by one gains nothing.
            pod_management_policy: Some("Parallel".into()),
            // The operator rolls the pods itself, standbys first and the
            // active server last (operator::rollout).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(labels::selector(&names)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec(instance, inputs, &names)),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn pod_spec(instance: &CanalInstance, inputs: &BuildInputs, names: &Names) -> PodSpec {
    let spec = &instance.spec;
    let overrides = &spec.pod_template;
    let destination = instance.destination();
    PodSpec {
        containers: vec![container(instance, inputs)],
        volumes: Some(vec![Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                items: Some(vec![
                    KeyToPath {
                        key: "canal.properties".into(),
                        path: "canal.properties".into(),
                        ..Default::default()
                    },
                    KeyToPath {
                        key: "instance.properties".into(),
                        path: format!("{destination}/instance.properties"),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        affinity: Some(
            overrides
                .affinity
                .clone()
                .unwrap_or_else(|| spread_over_nodes(names)),
        ),
        tolerations: non_empty(overrides.tolerations.clone()),
        node_selector: non_empty_map(overrides.node_selector.clone()),
        topology_spread_constraints: non_empty(overrides.topology_spread_constraints.clone()),
        security_context: Some(
            overrides
                .security_context
                .clone()
                .unwrap_or_else(restricted_pod_security),
        ),
        service_account_name: overrides.service_account_name.clone(),
        priority_class_name: overrides.priority_class_name.clone(),
        image_pull_secrets: non_empty(overrides.image_pull_secrets.clone()),
        // The server needs no Kubernetes API access.
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

fn container(instance: &CanalInstance, inputs: &BuildInputs) -> Container {
    let spec = &instance.spec;
    let ports = &spec.server.ports;
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    Container {
        name: labels::CONTAINER.into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| inputs.default_image.clone()),
        ),
        image_pull_policy: spec.image_pull_policy.clone(),
        // One image holds both binaries (see the Dockerfile).
        command: Some(vec![SERVER_BINARY.into()]),
        args: Some(vec!["run".into()]),
        env: Some(environment(instance)),
        ports: Some(vec![
            ContainerPort {
                name: Some("canal".into()),
                container_port: ports.client,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: ports.metrics,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        // Standbys are ready (they can take over); a fenced server is not.
        readiness_probe: Some(probe("/readyz", 5, 2)),
        liveness_probe: Some(probe("/healthz", 10, 6)),
        resources: spec.resources.clone(),
        security_context: Some(
            spec.pod_template
                .container_security_context
                .clone()
                .unwrap_or_else(restricted_container_security),
        ),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: labels::CONF_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn environment(instance: &CanalInstance) -> Vec<EnvVar> {
    let spec = &instance.spec;
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let secret = |name: &str, secret: &str, key: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let plain = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let credentials = &spec.source.credentials;
    let mut env = vec![
        plain("CANAL_CONF_DIR", labels::CONF_DIR),
        plain("CANAL_LOG_FORMAT", "json"),
        // The address registered in ZooKeeper: the pod's own IP.
        field("POD_IP", "status.podIP"),
        field("POD_NAME", "metadata.name"),
        // Pod N connects as serverIdBase + N.
        field(
            "CANAL_SERVER_ID_OFFSET",
            &format!("metadata.labels['{}']", labels::POD_INDEX_LABEL),
        ),
        secret(
            "canal.instance.dbUsername",
            &credentials.secret_name,
            &credentials.username_key,
        ),
        secret(
            "canal.instance.dbPassword",
            &credentials.secret_name,
            &credentials.password_key,
        ),
    ];
    if let Some(auth) = &spec.server.client_auth {
        env.push(secret("canal.user", &auth.secret_name, &auth.username_key));
        env.push(secret(
            "canal.password",
            &auth.secret_name,
            &auth.password_key,
        ));
    }
    if let Some(auth) = &spec.zookeeper.auth {
        env.push(secret("canal.zookeeper.auth", &auth.secret_name, &auth.key));
    }
    env
}

/// Standbys on other nodes than the active server, when the scheduler can.
fn spread_over_nodes(names: &Names) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(labels::selector(names)),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn non_empty_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}
