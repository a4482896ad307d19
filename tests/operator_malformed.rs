//! A CanalInstance the operator cannot read (an old or bypassed CRD let it
//! through) is reported on that object, and the others carry on. Its own
//! test binary: it loosens the CRD of its control plane.

mod common;

use std::time::Duration;

use canal::operator::crd::CanalInstance;
use common::k8s::{ControlPlane, FIELD_MANAGER, wait_api};
use common::operator::{OperatorProcess, apply_secret};
use k8s_openapi::api::apps::v1::StatefulSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn setup(test: &str) -> Option<(&'static ControlPlane, Client, String)> {
    common::operator::operator_namespace(test, "malformed").await
}

/// An object the schema let through but the operator cannot read (an old
/// or bypassed CRD) is reported on that object; the others carry on.
#[tokio::test]
async fn a_malformed_resource_is_reported_and_does_not_stop_the_others() {
    let Some((plane, client, namespace)) = setup("a_malformed_resource").await else {
        return;
    };
    // A CRD that accepts anything, as an old or hand-edited one might.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut loose = serde_json::to_value(CanalInstance::crd()).unwrap();
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    });
    loose["spec"]["versions"][0]["subresources"] = json!({"status": {}});
    loose["spec"]["versions"][0]
        .as_object_mut()
        .unwrap()
        .remove("additionalPrinterColumns");
    loose.as_object_mut().unwrap().remove("status");
    loose["metadata"] = json!({"name": CanalInstance::crd_name()});
    crds.patch(
        CanalInstance::crd_name(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&loose),
    )
    .await
    .unwrap();
    let restore = scopeguard(plane);

    let _operator = OperatorProcess::start(plane, &namespace);
    apply_secret(
        &client,
        &namespace,
        "replication",
        &[("username", "canal"), ("password", "canal")],
    )
    .await;
    let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &kube::core::ApiResource::erase::<CanalInstance>(&()),
    );
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
        "metadata": {"name": "malformed"},
        "spec": {"replicas": "two", "source": 5},
    }))
    .unwrap();
    dynamic.create(&PostParams::default(), &bad).await.unwrap();
    let good: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
        "metadata": {"name": "good"},
        "spec": {
            "destination": format!("good-{namespace}"),
            "source": {"address": "127.0.0.1:3306", "credentials": {"secretName": "replication"}},
            "zookeeper": {"connect": common::zk::servers()},
        },
    }))
    .unwrap();
    dynamic.create(&PostParams::default(), &good).await.unwrap();

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    wait_api("the good instance's StatefulSet", WAIT, async || {
        sts.get_opt("good").await.ok()?
    })
    .await;
    let reported = wait_api("the malformed instance's condition", WAIT, async || {
        let object = dynamic.get("malformed").await.ok()?;
        let conditions = object
            .data
            .pointer("/status/conditions")?
            .as_array()?
            .clone();
        conditions
            .into_iter()
            .find(|c| c["type"] == "Degraded" && c["status"] == "True")
    })
    .await;
    assert_eq!(reported["reason"], "InvalidResource");
    let message = reported["message"].as_str().unwrap();
    assert!(
        message.contains("cannot be read as a CanalInstance"),
        "{message}"
    );
    drop(restore);
}

/// Puts the real CRD back even when the test fails.
struct RestoreCrd(&'static ControlPlane);

fn scopeguard(plane: &'static ControlPlane) -> RestoreCrd {
    RestoreCrd(plane)
}

impl Drop for RestoreCrd {
    fn drop(&mut self) {
        let output = std::process::Command::new(common::k8s::bin_dir().unwrap().join("kubectl"))
            .env("KUBECONFIG", self.0.kubeconfig_path())
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                FIELD_MANAGER,
                "-f",
            ])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/crds/canalinstances.canal.otter.dev.yaml"
            ))
            .output()
            .expect("kubectl");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
