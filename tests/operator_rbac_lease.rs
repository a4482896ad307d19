//! The operator as its ServiceAccount with only the rights
//! manifests/install.yaml gives it (the Helm chart rendered with its default
//! values: ServiceAccount, ClusterRole and binding, the leader-election Role
//! and binding), two replicas electing a leader on a Lease: one reconciles,
//! and when it dies the other takes over.

mod common;

use std::time::Duration;

use canal::operator::crd::CanalInstance;
use common::k8s::{ControlPlane, FIELD_MANAGER, unique_namespace, wait_api};
use common::operator::OperatorProcess;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::config::Kubeconfig;
use serde_json::json;

const SERVICE_ACCOUNT: &str = "system:serviceaccount:canal-operator:canal-operator";

/// The control plane's admin kubeconfig, impersonating the operator's
/// ServiceAccount: every request is authorized as the ServiceAccount.
fn service_account_kubeconfig(plane: &ControlPlane) -> std::path::PathBuf {
    let mut config = Kubeconfig::read_from(plane.kubeconfig_path()).unwrap();
    for user in &mut config.auth_infos {
        let auth = user.auth_info.get_or_insert_with(Default::default);
        auth.impersonate = Some(SERVICE_ACCOUNT.into());
        auth.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:canal-operator".into(),
            "system:authenticated".into(),
        ]);
    }
    let path = plane.run_dir().join("operator-sa.kubeconfig");
    std::fs::write(&path, serde_saphyr::to_string(&config).unwrap()).unwrap();
    path
}

/// The kinds of manifests/install.yaml that make up the operator's
/// identity and rights; the rest (the Namespace, the CRD, the metrics
/// Service, the Deployment, whose image does not exist here) is left out.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Writes the RBAC objects of manifests/install.yaml, as a v1 List, to the
/// control plane's run directory; checks that each kind is there and that
/// the bindings name the ServiceAccount the test impersonates.
fn install_rbac(plane: &ControlPlane) -> std::path::PathBuf {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/install.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
    let items: Vec<_> = documents
        .into_iter()
        .filter(|object| {
            object["kind"]
                .as_str()
                .is_some_and(|kind| RBAC_KINDS.contains(&kind))
        })
        .collect();
    for kind in RBAC_KINDS {
        assert!(
            items.iter().any(|object| object["kind"] == kind),
            "{path} has no {kind}"
        );
    }
    for object in &items {
        if let Some(subjects) = object["subjects"].as_array() {
            let named: Vec<_> = subjects
                .iter()
                .map(|s| {
                    format!(
                        "system:serviceaccount:{}:{}",
                        s["namespace"].as_str().unwrap(),
                        s["name"].as_str().unwrap()
                    )
                })
                .collect();
            assert_eq!(named, [SERVICE_ACCOUNT], "{object}");
        }
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let out = plane.run_dir().join("install-rbac.json");
    std::fs::write(&out, list.to_string()).unwrap();
    out
}

#[tokio::test]
async fn two_replicas_as_the_service_account_fail_over_on_the_lease() {
    let Some(plane) = ControlPlane::shared("two_replicas_as_the_service_account").await else {
        return;
    };
    plane.install_crd().await;
    plane.ensure_namespace("canal-operator").await;
    plane.apply_file(&install_rbac(plane)).await;
    let namespace = unique_namespace("lease");
    plane.ensure_namespace(&namespace).await;
    let client = plane.client().await;

    let kubeconfig = service_account_kubeconfig(plane);
    // The kubeconfig really acts as the ServiceAccount: it may not list
    // namespaces, which the operator never needs.
    let options = kube::config::KubeConfigOptions::default();
    let config =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(&kubeconfig).unwrap(), &options)
            .await
            .unwrap();
    let as_operator = kube::Client::try_from(config).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(as_operator);
    match namespaces.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the ServiceAccount listed namespaces: {other:?}"),
    }
    let lease = format!("canal-operator-{namespace}");
    let args = |identity: &'static str| {
        vec![
            "--lease-namespace",
            "canal-operator",
            "--identity",
            identity,
        ]
    };
    let mut extra_a = args("replica-a");
    extra_a.extend(["--lease-name", lease.as_str()]);
    let mut extra_b = args("replica-b");
    extra_b.extend(["--lease-name", lease.as_str()]);
    let mut a = OperatorProcess::start_as(&kubeconfig, plane, &namespace, &extra_a);
    let mut b = OperatorProcess::start_as(&kubeconfig, plane, &namespace, &extra_b);

    let leader = wait_api("one leader", Duration::from_secs(30), async || {
        match (a.leading().await?, b.leading().await?) {
            (true, false) => Some('a'),
            (false, true) => Some('b'),
            _ => None,
        }
    })
    .await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "replication"},
        "stringData": {"username": "canal", "password": "canal"}});
    secrets
        .patch(
            "replication",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let instances: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let create = async |name: &str| {
        let object = json!({
            "apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
            "metadata": {"name": name},
            "spec": {
                "destination": format!("{name}-{namespace}"),
                "source": {"address": "127.0.0.1:3306", "credentials": {"secretName": "replication"}},
                "zookeeper": {"connect": common::zk::servers()},
            },
        });
        instances
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&object),
            )
            .await
            .unwrap();
    };
    create("first").await;
    wait_api(
        "the first StatefulSet",
        Duration::from_secs(30),
        async || statefulsets.get_opt("first").await.ok()?,
    )
    .await;
    wait_api("the first status", Duration::from_secs(30), async || {
        let instance = instances.get("first").await.ok()?;
        (instance.status?.conditions.len() >= 4).then_some(())
    })
    .await;

    // The leader dies without releasing: the other takes the Lease once it
    // expires, and reconciles.
    let (dead, survivor) = if leader == 'a' {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    dead.kill();
    create("second").await;
    wait_api(
        "the survivor leading",
        Duration::from_secs(60),
        async || survivor.leading().await?.then_some(()),
    )
    .await;
    wait_api(
        "the second StatefulSet",
        Duration::from_secs(30),
        async || statefulsets.get_opt("second").await.ok()?,
    )
    .await;
    let log = survivor.log();
    assert!(
        !log.contains("forbidden"),
        "the ServiceAccount lacked a permission:\n{log}"
    );
}
