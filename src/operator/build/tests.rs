use std::collections::BTreeMap;

use kube::CustomResourceExt;

use super::*;
use crate::config::Properties;
use crate::operator::crd::CanalInstance;
use crate::operator::validate::validate;

fn example() -> CanalInstance {
    let text = include_str!("../../../tests/fixtures/operator/orders.yaml");
    serde_saphyr::from_str(text).expect("fixture parses")
}

fn inputs() -> BuildInputs {
    BuildInputs {
        default_image: "canal-operator/canal-server:test".into(),
        config_hash: "abc".into(),
    }
}

fn built() -> Desired {
    let instance = example();
    let rendered = validate(&instance).expect("fixture is valid");
    build(&instance, &rendered, &inputs())
}

fn env_value<'a>(desired: &'a Desired, name: &str) -> &'a k8s_openapi::api::core::v1::EnvVar {
    let pod = desired
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    pod.containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} in the environment"))
}

#[test]
fn schema_defaults_fill_the_fixture() {
    let instance = example();
    assert_eq!(instance.destination(), "orders");
    assert_eq!(instance.spec.zookeeper.session_timeout_millis, 6000);
    assert_eq!(instance.spec.source.credentials.password_key, "password");
    assert_eq!(instance.spec.server.ports.client, 11111);
    assert!(!instance.spec.paused);
}

#[test]
fn configuration_round_trips_through_the_servers_parser() {
    let rendered = properties::render(&example());
    let canal = Properties::parse(&rendered.canal_properties).unwrap();
    let dest = Properties::parse(&rendered.instance_properties).unwrap();
    let get = |p: &Properties, k: &str| p.get(k).map(|p| p.value.clone());
    assert_eq!(get(&canal, "canal.destinations").as_deref(), Some("orders"));
    assert_eq!(
        get(&canal, "canal.zkServers").as_deref(),
        Some("zk-0.zk:2181,zk-1.zk:2181,zk-2.zk:2181")
    );
    assert_eq!(
        get(&dest, "canal.instance.filter.regex").as_deref(),
        Some(r"shop\.orders,shop\.order_items")
    );
    assert_eq!(
        get(&dest, "canal.instance.filter.black.field").as_deref(),
        Some("shop.orders:card_number")
    );
    assert_eq!(
        get(&dest, "canal.instance.mysql.slaveId").as_deref(),
        Some("2001")
    );
    assert_eq!(
        get(&dest, "canal.instance.filter.query.ddl").as_deref(),
        Some("true")
    );
    for text in [&rendered.canal_properties, &rendered.instance_properties] {
        assert!(
            !text.contains("dbPassword") && !text.contains("canal.passwd"),
            "{text}"
        );
    }
}

#[test]
fn secrets_reach_the_pod_only_through_secret_references() {
    let desired = built();
    for name in [
        "canal.instance.dbUsername",
        "canal.instance.dbPassword",
        "canal.user",
        "canal.password",
    ] {
        let var = env_value(&desired, name);
        assert!(var.value.is_none(), "{name} has a literal value");
        let reference = var
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert!(reference.name.starts_with("orders-"), "{name}");
    }
    let offset = env_value(&desired, "CANAL_SERVER_ID_OFFSET");
    let field = &offset
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap()
        .field_path;
    assert_eq!(field, "metadata.labels['apps.kubernetes.io/pod-index']");
    let pod_ip = env_value(&desired, "POD_IP");
    assert_eq!(
        pod_ip
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "status.podIP"
    );
}

#[test]
fn statefulset_shape() {
    let desired = built();
    let sts = &desired.statefulset;
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.service_name.as_deref(), Some("orders-members"));
    let template = &spec.template;
    let meta = template.metadata.as_ref().unwrap();
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        labels.get("app.kubernetes.io/instance").map(String::as_str),
        Some("orders")
    );
    assert_eq!(
        meta.annotations
            .as_ref()
            .unwrap()
            .get(labels::CONFIG_HASH_ANNOTATION)
            .map(String::as_str),
        Some("abc")
    );
    let pod = template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("canal-operator/canal-server:test")
    );
    let readiness = container.readiness_probe.as_ref().unwrap();
    assert_eq!(
        readiness.http_get.as_ref().unwrap().path.as_deref(),
        Some("/readyz")
    );
    let anti = pod
        .affinity
        .as_ref()
        .unwrap()
        .pod_anti_affinity
        .as_ref()
        .unwrap();
    assert!(
        anti.preferred_during_scheduling_ignored_during_execution
            .is_some()
    );
    let volume = &pod.volumes.as_ref().unwrap()[0];
    let items = volume.config_map.as_ref().unwrap().items.as_ref().unwrap();
    assert_eq!(items[1].path, "orders/instance.properties");
}

#[test]
fn children_are_owned_and_never_carry_the_instances_own_labels() {
    let desired = built();
    let metas = [
        &desired.config_map.metadata,
        &desired.members_service.metadata,
        &desired.active_service.metadata,
        &desired.statefulset.metadata,
        &desired.pod_disruption_budget.metadata,
    ];
    for meta in metas {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "CanalInstance");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        assert!(
            !meta
                .labels
                .as_ref()
                .unwrap()
                .contains_key("argocd.argoproj.io/instance"),
            "{:?}",
            meta.name
        );
    }
}

#[test]
fn active_service_selects_the_labelled_pod() {
    let desired = built();
    let selector = desired
        .active_service
        .spec
        .as_ref()
        .unwrap()
        .selector
        .clone()
        .unwrap();
    assert_eq!(
        selector.get(labels::ROLE_LABEL).map(String::as_str),
        Some("active")
    );
    let members = desired.members_service.spec.as_ref().unwrap();
    assert_eq!(members.cluster_ip.as_deref(), Some("None"));
    assert!(
        !members
            .selector
            .as_ref()
            .unwrap()
            .contains_key(labels::ROLE_LABEL)
    );
    let pdb = desired.pod_disruption_budget.spec.as_ref().unwrap();
    assert_eq!(
        pdb.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
}

#[test]
fn config_hash_follows_configuration_and_secret_versions() {
    let instance = example();
    let rendered = properties::render(&instance);
    let secret = |rv: &str| SecretVersion {
        name: "orders-replication".into(),
        uid: "u1".into(),
        resource_version: rv.into(),
    };
    let base = config_hash(&rendered, &[secret("1")]);
    assert_eq!(base, config_hash(&rendered, &[secret("1"), secret("1")]));
    assert_ne!(base, config_hash(&rendered, &[secret("2")]));
    let mut changed = instance.clone();
    changed.spec.source.address = "other:3306".into();
    assert_ne!(
        base,
        config_hash(&properties::render(&changed), &[secret("1")])
    );
}

#[test]
fn extra_properties_are_checked() {
    let mut instance = example();
    instance.spec.server.extra_properties = BTreeMap::from([
        ("canal.instance.filter.query.dcll".into(), "true".into()),
        ("canal.instance.master.address".into(), "x:1".into()),
        ("canal.instance.parser.parallel".into(), "true".into()),
    ]);
    let problems = validate(&instance).unwrap_err().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("did you mean canal.instance.filter.query.dcl")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("set by the operator from spec.source.address")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("no effect")),
        "{problems:?}"
    );
}

#[test]
fn the_servers_loader_refuses_what_the_schema_cannot_see() {
    let mut instance = example();
    instance.spec.filter.include = vec!["shop\\.(orders".into()];
    let problems = validate(&instance).unwrap_err().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("canal.instance.filter.regex")),
        "{problems:?}"
    );
    let mut instance = example();
    instance.spec.server.extra_properties =
        BTreeMap::from([("canal.instance.memory.batch.mode".into(), "x".into())]);
    assert!(validate(&instance).is_err());
    let mut instance = example();
    instance.spec.server.extra_properties =
        BTreeMap::from([("canal.instance.timezone".into(), "+99:00".into())]);
    let problems = validate(&instance).unwrap_err().problems;
    // Read back from memory, at the paths the pod mounts: no scratch
    // directory (the operator's root file system is read-only).
    let file = format!(
        "{}/{}/instance.properties",
        crate::operator::build::labels::CONF_DIR,
        instance.destination()
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("canal.instance.timezone") && p.contains(&file)),
        "{problems:?}"
    );
}

mod cel {
    use super::*;

    fn errors(instance: &CanalInstance) -> String {
        match instance.validate_cel() {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    /// Asserts that the CEL rules refuse `instance` with a message
    /// containing `expected`.
    fn assert_refused(instance: &CanalInstance, expected: &str) {
        let errors = errors(instance);
        assert!(errors.contains(expected), "{expected:?} not in {errors}");
    }

    #[test]
    fn the_fixture_passes() {
        assert_eq!(errors(&example()), "");
    }

    #[test]
    fn address_must_be_host_and_port() {
        for bad in [
            "mariadb",
            "mariadb:",
            "mariadb:99999",
            "http://x:1",
            ":3306",
        ] {
            let mut instance = example();
            instance.spec.source.address = bad.into();
            assert_refused(&instance, "must be host:port");
        }
        for good in [
            "db:3306",
            "10.0.0.1:3306",
            "[::1]:3306",
            "a.b-c.svc.cluster.local:1",
        ] {
            let mut instance = example();
            instance.spec.source.address = good.into();
            assert_eq!(errors(&instance), "", "{good}");
        }
    }

    #[test]
    fn cursor_reset_requires_paused() {
        let mut instance = example();
        instance.spec.cursor_reset = Some(crate::operator::crd::CursorReset {
            nonce: "1".into(),
            client_id: None,
            position: crate::operator::crd::CursorPosition {
                journal_name: "mysql-bin.000001".into(),
                position: 4,
                timestamp: None,
                gtid: None,
            },
        });
        assert_refused(&instance, "only while spec.paused");
        instance.spec.paused = true;
        assert_eq!(errors(&instance), "");
    }

    #[test]
    fn destination_is_immutable() {
        let old = example();
        let mut new = old.clone();
        new.spec.destination = Some("orders".into());
        assert!(
            new.validate_cel_update(&old).is_ok(),
            "same effective destination"
        );
        new.spec.destination = Some("payments".into());
        let error = new.validate_cel_update(&old).unwrap_err().to_string();
        assert!(error.contains("spec.destination is immutable"), "{error}");
    }

    #[test]
    fn start_position_is_one_of_three() {
        let mut instance = example();
        instance.spec.source.start = Some(crate::operator::crd::StartPosition {
            journal_name: Some("mysql-bin.000001".into()),
            position: Some(4),
            timestamp: Some(1),
            gtid: None,
        });
        assert_refused(&instance, "exactly one of");
    }

    #[test]
    fn names_and_pod_labels_the_services_depend_on() {
        let mut instance = example();
        instance.metadata.name = Some("orders.v2".into());
        assert_refused(&instance, "DNS-1035");
        let mut instance = example();
        instance
            .spec
            .pod_template
            .labels
            .insert("canal.otter.dev/role".into(), "active".into());
        assert_refused(&instance, "may not set canal.otter.dev/");
    }

    #[test]
    fn buffer_size_is_a_power_of_two() {
        let mut instance = example();
        instance.spec.server.buffer.size = 1000;
        assert_refused(&instance, "power of two");
        instance.spec.server.buffer.size = 1024;
        assert_eq!(errors(&instance), "");
    }
}

#[test]
fn crds_directory_holds_the_generated_crd() {
    let committed = include_str!("../../../crds/canalinstances.canal.otter.dev.yaml");
    assert!(
        committed == crate::operator::crd::crd_yaml(),
        "crds/ is stale: run `cargo run --bin canal-operator -- crd > crds/canalinstances.canal.otter.dev.yaml`"
    );
    assert_eq!(CanalInstance::crd_name(), "canalinstances.canal.otter.dev");
}

/// The whole built output for the fixture, as YAML: a reviewable snapshot
/// of every child. `UPDATE_SNAPSHOTS=1 cargo test --lib snapshot` rewrites it.
#[test]
fn children_snapshot() {
    let desired = built();
    let mut yaml = String::new();
    let documents: [serde_json::Value; 5] = [
        serde_json::to_value(&desired.config_map).unwrap(),
        serde_json::to_value(&desired.members_service).unwrap(),
        serde_json::to_value(&desired.active_service).unwrap(),
        serde_json::to_value(&desired.pod_disruption_budget).unwrap(),
        serde_json::to_value(&desired.statefulset).unwrap(),
    ];
    for document in documents {
        yaml.push_str("---\n");
        yaml.push_str(&serde_saphyr::to_string(&document).unwrap());
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/operator/orders.children.yaml"
    );
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &yaml).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == yaml,
        "the built children differ from {path}; review the change and rerun with UPDATE_SNAPSHOTS=1"
    );
}
