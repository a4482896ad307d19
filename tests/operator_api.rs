//! The operator against a real kube-apiserver (no pods run here: see
//! operator_e2e.rs): the CRD's rules, the children and their fields, spec
//! and Secret changes, pause, restart, deletion and ZooKeeper cleanup, and
//! a resource that does not parse.

mod common;

use std::time::Duration;

use canal::operator::build::labels::{CONFIG_HASH_ANNOTATION, RESTART_ANNOTATION, ROLE_LABEL};
use canal::operator::crd::CanalInstance;
use common::k8s::{ControlPlane, FIELD_MANAGER, wait_api};
use common::operator::{OperatorProcess, apply_secret};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use zookeeper_client::CreateMode;

const WAIT: Duration = Duration::from_secs(30);

async fn setup(test: &str) -> Option<(&'static ControlPlane, Client, String)> {
    common::operator::operator_namespace(test, "api").await
}

fn instance(name: &str, destination: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "destination": destination,
        "source": {"address": "127.0.0.1:3306", "credentials": {"secretName": "replication"}},
        "zookeeper": {"connect": common::zk::servers()},
    });
    merge(&mut spec, extra);
    json!({
        "apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
        "metadata": {"name": name}, "spec": spec,
    })
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(base), serde_json::Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, extra) => *base = extra,
    }
}

async fn apply_instance(
    api: &Api<CanalInstance>,
    object: &serde_json::Value,
) -> kube::Result<CanalInstance> {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

fn rejection(result: kube::Result<CanalInstance>) -> String {
    match result {
        Ok(_) => panic!("the API server accepted an invalid CanalInstance"),
        Err(kube::Error::Api(status)) => status.message,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn condition<'a>(
    instance: &'a CanalInstance,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    instance
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

async fn template_annotation(sts: &Api<StatefulSet>, name: &str, key: &str) -> Option<String> {
    let sts = sts.get_opt(name).await.ok()??;
    sts.spec?.template.metadata?.annotations?.get(key).cloned()
}

#[tokio::test]
async fn the_crd_rejects_invalid_resources_with_actionable_messages() {
    let Some((_plane, client, namespace)) = setup("the_crd_rejects_invalid_resources").await else {
        return;
    };
    let api: Api<CanalInstance> = Api::namespaced(client, &namespace);
    let cases = [
        (
            json!({"source": {"address": "mariadb"}}),
            "spec.source.address must be host:port",
        ),
        (
            json!({"cursorReset": {"nonce": "1", "position": {"journalName": "mysql-bin.000001", "position": 4}}}),
            "spec.cursorReset is accepted only while spec.paused is true",
        ),
        (
            json!({"server": {"buffer": {"size": 1000}}}),
            "power of two",
        ),
        (json!({"replicas": 12}), "between 0 and 9"),
        (
            json!({"zookeeper": {"connect": "zk"}}),
            "host:port[,host:port...][/chroot]",
        ),
        (
            json!({"source": {"start": {"journalName": "mysql-bin.000001", "gtid": "0-1-1"}}}),
            "exactly one of journalName",
        ),
        (json!({"destination": "a/b"}), "ZooKeeper node name"),
    ];
    for (i, (extra, message)) in cases.into_iter().enumerate() {
        let object = instance(&format!("bad-{i}"), "d", extra);
        let error = rejection(apply_instance(&api, &object).await);
        assert!(error.contains(message), "case {i}: {error}");
    }

    let object = instance("fixed", "orders-a", json!({}));
    apply_instance(&api, &object).await.unwrap();
    let moved = instance("fixed", "orders-b", json!({}));
    let error = rejection(apply_instance(&api, &moved).await);
    assert!(error.contains("spec.destination is immutable"), "{error}");
    // Naming the default explicitly is no change.
    let explicit = instance("implicit", "implicit", json!({}));
    let mut implicit = explicit.clone();
    implicit["spec"]
        .as_object_mut()
        .unwrap()
        .remove("destination");
    apply_instance(&api, &implicit).await.unwrap();
    apply_instance(&api, &explicit).await.unwrap();
}

#[tokio::test]
async fn children_follow_the_spec_secrets_pause_and_restarts() {
    let Some((plane, client, namespace)) = setup("children_follow_the_spec").await else {
        return;
    };
    let _operator = OperatorProcess::start(plane, &namespace);
    apply_secret(
        &client,
        &namespace,
        "replication",
        &[("username", "canal"), ("password", "canal")],
    )
    .await;
    let api: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    let destination = format!("api-{namespace}");
    let object = instance(
        "orders",
        &destination,
        json!({"filter": {"include": ["shop\\.orders"]}, "podTemplate": {"labels": {"team": "payments"}}}),
    );
    apply_instance(&api, &object).await.unwrap();

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let statefulset = wait_api("the StatefulSet", WAIT, async || {
        sts.get_opt("orders").await.ok()?
    })
    .await;
    let spec = statefulset.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let template = spec.template.clone();
    let container = &template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("canal-server:test"));
    let env = container.env.clone().unwrap();
    let password = env
        .iter()
        .find(|e| e.name == "canal.instance.dbPassword")
        .unwrap();
    assert!(password.value.is_none());
    assert_eq!(
        password
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "replication"
    );
    let owner = &statefulset.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CanalInstance", Some(true))
    );
    assert_eq!(
        template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()
            .get("team")
            .map(String::as_str),
        Some("payments")
    );
    let managers: Vec<_> = statefulset
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert_eq!(
        managers,
        ["canal-operator"],
        "one field manager, server-side apply"
    );

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let config = maps.get("orders-config").await.unwrap().data.unwrap();
    assert!(
        config["instance.properties"].contains("canal.instance.filter.regex = shop\\\\.orders")
    );
    assert!(!config["instance.properties"].contains("canal.instance.dbPassword"));
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let active = services.get("orders").await.unwrap();
    assert_eq!(
        active
            .spec
            .unwrap()
            .selector
            .unwrap()
            .get(ROLE_LABEL)
            .map(String::as_str),
        Some("active")
    );
    services.get("orders-members").await.unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
    pdbs.get("orders").await.unwrap();

    // Status: every condition from the first reconcile, for this generation.
    let seen = wait_api("the first status", WAIT, async || {
        let instance = api.get("orders").await.ok()?;
        (instance.status.as_ref()?.conditions.len() >= 4).then_some(instance)
    })
    .await;
    let status = seen.status.clone().unwrap();
    assert_eq!(status.observed_generation, seen.metadata.generation);
    assert!(
        status
            .label_selector
            .as_deref()
            .unwrap()
            .contains("app.kubernetes.io/instance=orders")
    );
    for type_ in ["Ready", "Progressing", "Degraded", "Paused"] {
        let c = condition(&seen, type_).unwrap_or_else(|| panic!("no {type_}"));
        assert_eq!(c.observed_generation, seen.metadata.generation, "{type_}");
    }
    assert_eq!(condition(&seen, "Degraded").unwrap().status, "False");

    // A spec change: new ConfigMap content and a new hash on the template.
    let hash = template_annotation(&sts, "orders", CONFIG_HASH_ANNOTATION)
        .await
        .unwrap();
    let mut changed = object.clone();
    changed["spec"]["filter"]["include"] = json!(["shop\\.payments"]);
    apply_instance(&api, &changed).await.unwrap();
    let second = wait_api("a new config hash after a spec change", WAIT, async || {
        template_annotation(&sts, "orders", CONFIG_HASH_ANNOTATION)
            .await
            .filter(|h| *h != hash)
    })
    .await;
    let config = maps.get("orders-config").await.unwrap().data.unwrap();
    assert!(config["instance.properties"].contains("shop\\\\.payments"));

    // A Secret change rolls the pods too.
    apply_secret(
        &client,
        &namespace,
        "replication",
        &[("username", "canal"), ("password", "changed")],
    )
    .await;
    let third = wait_api(
        "a new config hash after a Secret change",
        WAIT,
        async || {
            template_annotation(&sts, "orders", CONFIG_HASH_ANNOTATION)
                .await
                .filter(|h| *h != second)
        },
    )
    .await;

    // restartNonce.
    let mut restarted = changed.clone();
    restarted["spec"]["restartNonce"] = json!("r1");
    apply_instance(&api, &restarted).await.unwrap();
    wait_api("the restart annotation", WAIT, async || {
        template_annotation(&sts, "orders", RESTART_ANNOTATION)
            .await
            .filter(|n| n == "r1")
    })
    .await;

    // Paused: the children stay as they are, and the condition says so.
    let mut paused = restarted.clone();
    paused["spec"]["paused"] = json!(true);
    paused["spec"]["replicas"] = json!(3);
    apply_instance(&api, &paused).await.unwrap();
    wait_api("Paused=True", WAIT, async || {
        let instance = api.get("orders").await.ok()?;
        let c = condition(&instance, "Paused")?;
        (c.status == "True" && c.observed_generation == instance.metadata.generation).then_some(())
    })
    .await;
    let replicas = sts.get("orders").await.unwrap().spec.unwrap().replicas;
    assert_eq!(
        replicas,
        Some(2),
        "a paused instance's StatefulSet must not change"
    );
    let mut resumed = paused.clone();
    resumed["spec"]["paused"] = json!(false);
    apply_instance(&api, &resumed).await.unwrap();
    wait_api("replicas 3 after unpausing", WAIT, async || {
        (sts.get("orders").await.ok()?.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    assert_eq!(
        template_annotation(&sts, "orders", CONFIG_HASH_ANNOTATION)
            .await
            .as_deref(),
        Some(third.as_str())
    );

    // A missing Secret and an unknown key are reported, children untouched.
    let mut broken = resumed.clone();
    broken["spec"]["server"] =
        json!({"extraProperties": {"canal.instance.filter.query.dcll": "true"}});
    apply_instance(&api, &broken).await.unwrap();
    let degraded = wait_api("Degraded=True InvalidSpec", WAIT, async || {
        let instance = api.get("orders").await.ok()?;
        let c = condition(&instance, "Degraded")?.clone();
        (c.status == "True" && c.reason == "InvalidSpec").then_some(c)
    })
    .await;
    assert!(
        degraded
            .message
            .contains("did you mean canal.instance.filter.query.dcl"),
        "{}",
        degraded.message
    );
    let mut no_secret = resumed.clone();
    no_secret["spec"]["source"]["credentials"]["secretName"] = json!("absent");
    apply_instance(&api, &no_secret).await.unwrap();
    let degraded = wait_api("Degraded=True SecretMissing", WAIT, async || {
        let instance = api.get("orders").await.ok()?;
        let c = condition(&instance, "Degraded")?.clone();
        (c.status == "True" && c.reason == "SecretMissing").then_some(c)
    })
    .await;
    assert!(degraded.message.contains("absent"), "{}", degraded.message);
    let env = sts
        .get("orders")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    let user = env
        .iter()
        .find(|e| e.name == "canal.instance.dbUsername")
        .unwrap();
    assert_eq!(
        user.value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "replication",
        "an invalid spec must not reach the StatefulSet"
    );
}

#[tokio::test]
async fn deletion_collects_children_and_honours_the_cleanup_policy() {
    let Some((plane, client, namespace)) = setup("deletion_collects_children").await else {
        return;
    };
    let _operator = OperatorProcess::start(plane, &namespace);
    apply_secret(
        &client,
        &namespace,
        "replication",
        &[("username", "canal"), ("password", "canal")],
    )
    .await;
    let api: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    let zookeeper = common::zk::connect(&common::zk::servers(), Duration::from_secs(6)).await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);

    for policy in ["Retain", "Delete"] {
        let name = format!("cleanup-{}", policy.to_lowercase());
        let destination = format!("{name}-{namespace}");
        let cursor = format!("/otter/canal/destinations/{destination}/1001/cursor");
        common::zk::create_all(&zookeeper, &cursor, b"{}", CreateMode::Persistent).await;
        let object = instance(
            &name,
            &destination,
            json!({"zookeeper": {"cleanupPolicy": policy}}),
        );
        apply_instance(&api, &object).await.unwrap();
        wait_api("the StatefulSet", WAIT, async || {
            sts.get_opt(&name).await.ok()?
        })
        .await;
        if policy == "Delete" {
            wait_api("the cleanup finalizer", WAIT, async || {
                let instance = api.get(&name).await.ok()?;
                instance
                    .metadata
                    .finalizers?
                    .iter()
                    .any(|f| f.contains("zookeeper-cleanup"))
                    .then_some(())
            })
            .await;
        }
        api.delete(&name, &DeleteParams::default()).await.unwrap();
        wait_api("the CanalInstance to go", WAIT, async || {
            api.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await;
        let exists = zookeeper.check_stat(&cursor).await.unwrap().is_some();
        assert_eq!(
            exists,
            policy == "Retain",
            "{policy}: cursor node exists = {exists}"
        );
        // The garbage collector removes the children (ownerReferences).
        wait_api(
            "garbage collection of the StatefulSet",
            Duration::from_secs(120),
            async || sts.get_opt(&name).await.ok()?.is_none().then_some(()),
        )
        .await;
        common::zk::delete_all(
            &zookeeper,
            &format!("/otter/canal/destinations/{destination}"),
        )
        .await;
    }
}
