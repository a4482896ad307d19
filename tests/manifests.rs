//! The Helm chart (charts/canal-operator) and the raw manifests (manifests/)
//! against a real API server: every CanalInstance in manifests/examples/ is
//! created with its Secrets and passes the operator's own validation;
//! manifests/install.yaml and the chart rendered with its default values and
//! its ci/ values files pass a server-side dry-run apply (schema, CEL,
//! admission — Pod Security "restricted" included) without a warning.
//! scripts/check-manifests checks the same files without a cluster (lint,
//! values schema, kubernetes-validate, install.yaml up to date).

mod common;

use std::path::{Path, PathBuf};

use canal::operator::crd::CanalInstance;
use common::k8s::{ControlPlane, FIELD_MANAGER, unique_namespace};
use kube::Api;
use serde_json::{Value, json};

const RELEASE: &str = "canal-operator";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The objects of a multi-document YAML text (empty documents dropped).
fn documents(text: &str, what: &str) -> Vec<Value> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"));
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// helm from `scripts/k8s install`, or `None` (after saying why) when it is
/// not installed, unless CANAL_TEST_REQUIRE_K8S makes that a failure.
fn helm() -> Option<PathBuf> {
    let helm = common::k8s::bin_dir().ok()?.join("helm");
    if helm.is_file() {
        return Some(helm);
    }
    if std::env::var_os("CANAL_TEST_REQUIRE_K8S").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{} not found (run scripts/k8s install)", helm.display());
    }
    eprintln!(
        "skipping: {} not found (run scripts/k8s install)",
        helm.display()
    );
    None
}

/// `helm template canal-operator charts/canal-operator --namespace NS ARGS`.
fn render(helm: &Path, namespace: &str, args: &[&str]) -> Vec<Value> {
    let output = std::process::Command::new(helm)
        .args(["template", RELEASE])
        .arg(repo().join("charts/canal-operator"))
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "helm template {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    documents(
        &String::from_utf8(output.stdout).unwrap(),
        "helm template's output",
    )
}

/// Creates `name` with Pod Security "restricted" enforced and warned about,
/// so that a pod template that breaks it is refused or reported.
async fn restricted_namespace(plane: &ControlPlane, name: &str) {
    let file = plane.run_dir().join(format!("namespace-{name}.json"));
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }},
    });
    std::fs::write(&file, namespace.to_string()).unwrap();
    plane.apply_file(&file).await;
}

/// Server-side applies `objects` (as one v1 List, `label` names the file),
/// for real or as a server dry-run, in `namespace` when given; asserts that
/// every object was accepted without a warning and returns kubectl's output.
async fn apply(
    plane: &ControlPlane,
    label: &str,
    objects: &[Value],
    namespace: Option<&str>,
    dry_run: bool,
) -> String {
    let file = plane
        .run_dir()
        .join(format!("{label}-{}.json", unique_namespace("apply")));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    std::fs::write(&file, list.to_string()).unwrap();
    let mut args = vec![
        "apply",
        "--server-side",
        "--field-manager",
        FIELD_MANAGER,
        "-f",
        file.to_str().unwrap(),
    ];
    if dry_run {
        args.push("--dry-run=server");
    }
    if let Some(namespace) = namespace {
        args.extend(["--namespace", namespace]);
    }
    let output = plane.kubectl(&args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{label}: the API server refused:\n{stderr}\n{stdout}"
    );
    assert!(
        !stderr.contains("Warning"),
        "{label}: the API server warned:\n{stderr}"
    );
    // kubectl prints "kind[.group]/name serverside-applied[ (server dry run)]".
    let suffix = if dry_run {
        " serverside-applied (server dry run)"
    } else {
        " serverside-applied"
    };
    for object in objects {
        let kind = kind(object).to_lowercase();
        let applied = stdout.lines().any(|line| {
            line.split_once('/').is_some_and(|(resource, rest)| {
                resource.split('.').next() == Some(kind.as_str())
                    && rest.strip_prefix(name(object)) == Some(suffix)
            })
        });
        assert!(
            applied,
            "{label}: {kind}/{} not applied, says kubectl:\n{stdout}",
            name(object)
        );
    }
    stdout
}

#[test]
fn the_chart_ships_the_crd_that_the_operator_prints() {
    let shipped = std::fs::read_to_string(
        repo().join("charts/canal-operator/crds/canalinstances.canal.otter.dev.yaml"),
    )
    .unwrap();
    assert!(
        shipped == canal::operator::crd::crd_yaml(),
        "charts/canal-operator/crds/ is stale: run scripts/check-manifests --update"
    );
    let names: Vec<_> = std::fs::read_dir(repo().join("charts/canal-operator/crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["canalinstances.canal.otter.dev.yaml"]);
}

/// What the chart's Deployment runs: canal-operator from the image, with
/// the same image as the default canal-server image, the pod name as the
/// Lease identity, and the Lease in the release namespace.
#[test]
fn the_chart_runs_the_operator_with_its_own_image_for_the_servers() {
    let Some(helm) = helm() else { return };
    let check = |args: &[&str], image: &str, server_image: &str| {
        let objects = render(&helm, "ops", args);
        let deployment = objects
            .iter()
            .find(|o| kind(o) == "Deployment")
            .expect("a Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], image);
        assert_eq!(
            container["command"],
            json!(["/usr/local/bin/canal-operator"])
        );
        let container_args: Vec<_> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            container_args.contains(&format!("--server-image={server_image}").as_str()),
            "{container_args:?}"
        );
        assert!(
            container_args.contains(&"--lease-namespace=ops"),
            "{container_args:?}"
        );
        assert_eq!(container_args.last(), Some(&"run"));
        let env = container["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "POD_NAME"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"));
        objects
    };
    let version = env!("CARGO_PKG_VERSION");
    let image = format!("ghcr.io/canal-operator/canal-operator:{version}");
    check(&[], &image, &image);
    let digest = format!("sha256:{}", "ab".repeat(32));
    let pinned = format!("ghcr.io/canal-operator/canal-operator@{digest}");
    check(
        &["--set", &format!("image.digest={digest}")],
        &pinned,
        &pinned,
    );
    check(
        &["--set", "serverImage=example.org/canal-server:1.2"],
        &image,
        "example.org/canal-server:1.2",
    );
    // Two replicas: the Lease Role is there and every replica elects.
    let objects = check(&["--set", "replicas=2"], &image, &image);
    assert!(objects.iter().any(|o| kind(o) == "Role"
        && name(o) == "canal-operator-leader-election"
        && o["metadata"]["namespace"] == "ops"));
}

#[tokio::test]
async fn examples_are_accepted_by_the_api_server_and_the_operator() {
    let Some(plane) = ControlPlane::shared("examples_are_accepted").await else {
        return;
    };
    plane.install_crd().await;
    let client = plane.client().await;
    let mut files: Vec<_> = std::fs::read_dir(repo().join("manifests/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        let label = file.file_name().unwrap().to_string_lossy().into_owned();
        let objects = documents(&std::fs::read_to_string(&file).unwrap(), &label);
        let secrets: Vec<&str> = objects
            .iter()
            .filter(|o| kind(o) == "Secret")
            .map(name)
            .collect();
        let instances: Vec<&Value> = objects
            .iter()
            .filter(|o| kind(o) == "CanalInstance")
            .collect();
        assert!(!instances.is_empty(), "{label} has no CanalInstance");
        for object in &objects {
            assert!(
                object["metadata"]["namespace"].is_null(),
                "{label}: {} {} names a namespace; examples go to the one given with -n",
                kind(object),
                name(object)
            );
        }
        // Every Secret an instance names comes with it.
        for instance in &instances {
            let spec = &instance["spec"];
            for reference in [
                &spec["source"]["credentials"],
                &spec["server"]["clientAuth"],
                &spec["zookeeper"]["auth"],
            ] {
                if let Some(secret) = reference["secretName"].as_str() {
                    assert!(
                        secrets.contains(&secret),
                        "{label}: {} names Secret {secret}, which the file lacks",
                        name(instance)
                    );
                }
            }
        }

        let namespace = unique_namespace("example");
        restricted_namespace(plane, &namespace).await;
        apply(plane, &label, &objects, Some(&namespace), false).await;
        // As stored (defaults applied), each instance parses into the
        // operator's types and passes its checks (extra properties, filters,
        // the rendered configuration read back by canal-server's loader).
        let api: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
        for instance in &instances {
            let stored = api.get(name(instance)).await.unwrap_or_else(|e| {
                panic!("{label}: {} as the operator reads it: {e}", name(instance))
            });
            if let Err(invalid) = canal::operator::validate::validate(&stored) {
                panic!(
                    "{label}: the operator would refuse {}: {invalid}",
                    name(instance)
                );
            }
        }
    }
}

#[tokio::test]
async fn install_yaml_is_accepted_by_the_api_server() {
    let Some(plane) = ControlPlane::shared("install_yaml_is_accepted").await else {
        return;
    };
    plane.install_crd().await;
    let path = repo().join("manifests/install.yaml");
    let objects = documents(&std::fs::read_to_string(&path).unwrap(), "install.yaml");
    let kinds: Vec<_> = objects.iter().map(kind).collect();
    assert_eq!(kinds.first(), Some(&"Namespace"), "{kinds:?}");
    for expected in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
    ] {
        assert!(kinds.contains(&expected), "no {expected} in {kinds:?}");
    }
    // A dry-run does not create the Namespace the other objects go to.
    restricted_namespace(plane, "canal-operator").await;
    apply(plane, "install", &objects, None, true).await;
}

#[tokio::test]
async fn chart_renderings_are_accepted_by_the_api_server() {
    let Some(plane) = ControlPlane::shared("chart_renderings_are_accepted").await else {
        return;
    };
    let Some(helm) = helm() else { return };
    plane.install_crd().await;
    let ci = repo().join("charts/canal-operator/ci");
    let values = |file: &str| ci.join(file).to_str().unwrap().to_owned();
    let watched = unique_namespace("watched");
    restricted_namespace(plane, &watched).await;
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("default", vec!["--include-crds".into()]),
        (
            "namespaced",
            vec![
                "--include-crds".into(),
                "-f".into(),
                values("namespaced.yaml"),
                "--set".into(),
                format!("watchNamespace={watched}"),
            ],
        ),
        ("ha", vec!["-f".into(), values("ha.yaml")]),
        // The CRD as a template: installed with --skip-crds.
        (
            "crd-template",
            vec!["-f".into(), values("crd-template.yaml")],
        ),
    ];
    for (label, args) in cases {
        let namespace = unique_namespace(&format!("chart-{label}"));
        restricted_namespace(plane, &namespace).await;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut objects = render(&helm, &namespace, &args);
        // No ServiceMonitor CRD here (the Prometheus Operator's).
        objects.retain(|o| kind(o) != "ServiceMonitor");
        let crds = objects
            .iter()
            .filter(|o| kind(o) == "CustomResourceDefinition")
            .count();
        assert_eq!(crds, usize::from(label != "ha"), "{label}: {crds} CRDs");
        if label == "namespaced" {
            let role = objects
                .iter()
                .find(|o| kind(o) == "Role" && name(o) == RELEASE)
                .expect("the namespaced Role");
            assert_eq!(role["metadata"]["namespace"], watched.as_str());
            assert!(!objects.iter().any(|o| kind(o).starts_with("Cluster")));
        }
        if label == "crd-template" {
            let crd = objects
                .iter()
                .find(|o| kind(o) == "CustomResourceDefinition")
                .unwrap();
            assert_eq!(
                crd["metadata"]["annotations"]["helm.sh/resource-policy"],
                "keep"
            );
        }
        apply(plane, &format!("chart-{label}"), &objects, None, true).await;
    }
}

/// The two ways the chart installs the CRD, through `helm install`,
/// `upgrade` and `uninstall` on a control plane of its own (the other tests
/// share one whose CRD no release owns): from crds/ by default, unowned and
/// left by `helm uninstall`; with crd.install=template refused, with
/// directions, while the CRD is not the release's, then owned by the
/// release, upgraded with it and kept by `helm uninstall`
/// (helm.sh/resource-policy: keep).
#[test]
fn helm_installs_upgrades_and_keeps_the_crd() {
    if let Some(why) = common::k8s::unavailable() {
        if std::env::var_os("CANAL_TEST_REQUIRE_K8S").is_some_and(|v| !v.is_empty() && v != "0") {
            panic!("no Kubernetes control plane: {why}");
        }
        eprintln!("skipping: no Kubernetes control plane: {why}");
        return;
    }
    let Some(helm) = helm() else { return };
    let plane = ControlPlane::start();
    let tool = |binary: &Path, args: &[&str]| {
        let output = std::process::Command::new(binary)
            .arg("--kubeconfig")
            .arg(plane.kubeconfig_path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stderr, output.stdout)
    };
    let kubectl = common::k8s::bin_dir().unwrap().join("kubectl");
    let chart = repo().join("charts/canal-operator");
    let chart = chart.to_str().unwrap();
    let crd = "canalinstances.canal.otter.dev";
    let helm_ok = |args: &[&str]| {
        let (ok, stderr, _) = tool(&helm, args);
        assert!(ok, "helm {}: {stderr}", args.join(" "));
    };
    let helm_refused = |args: &[&str], expected: &[&str]| {
        let (ok, stderr, _) = tool(&helm, args);
        assert!(!ok, "helm {} succeeded", args.join(" "));
        for text in expected {
            assert!(stderr.contains(text), "helm {}: {stderr}", args.join(" "));
        }
    };
    // The CRD's annotations, or None when there is no CRD.
    let crd_annotations = || {
        let (ok, _, stdout) = tool(
            &kubectl,
            &["get", "crd", crd, "-o", "jsonpath={.metadata.annotations}"],
        );
        ok.then(|| String::from_utf8_lossy(&stdout).into_owned())
    };
    let delete_crd = || {
        let (ok, stderr, _) = tool(&kubectl, &["delete", "crd", crd, "--wait"]);
        assert!(ok, "{stderr}");
    };
    let template = ["--set", "crd.install=template"];

    // crdsDir (the default): Helm creates the CRD from crds/, unowned, and
    // leaves it on uninstall.
    helm_ok(&[
        "install",
        "first",
        chart,
        "-n",
        "first",
        "--create-namespace",
    ]);
    let annotations = crd_annotations().expect("the CRD from crds/");
    assert!(!annotations.contains("meta.helm.sh"), "{annotations}");
    helm_ok(&["uninstall", "first", "-n", "first"]);
    assert!(
        crd_annotations().is_some(),
        "helm uninstall deleted the CRD from crds/"
    );

    // A release (its CRD already there, not its own) switched to the
    // template is refused, with directions; handed over as they say, it
    // switches, and keeps the CRD on uninstall.
    helm_ok(&[
        "install",
        "second",
        chart,
        "-n",
        "second",
        "--create-namespace",
    ]);
    helm_refused(
        &[&["upgrade", "second", chart, "-n", "second"][..], &template].concat(),
        &["is not this release's", "meta.helm.sh/release-name=second"],
    );
    for args in [
        &["label", "crd", crd, "app.kubernetes.io/managed-by=Helm"][..],
        &[
            "annotate",
            "crd",
            crd,
            "meta.helm.sh/release-name=second",
            "meta.helm.sh/release-namespace=second",
        ],
    ] {
        let (ok, stderr, _) = tool(&kubectl, args);
        assert!(ok, "{stderr}");
    }
    helm_ok(
        &[
            &["upgrade", "second", chart, "-n", "second", "--reuse-values"][..],
            &template,
        ]
        .concat(),
    );
    let annotations = crd_annotations().unwrap();
    assert!(
        annotations.contains(r#""helm.sh/resource-policy":"keep""#),
        "{annotations}"
    );
    helm_ok(&["uninstall", "second", "-n", "second"]);
    assert!(
        crd_annotations().is_some(),
        "helm uninstall deleted the kept CRD"
    );
    delete_crd();

    // template: without --skip-crds Helm would create it from crds/ first.
    helm_refused(
        &[
            &[
                "install",
                "refused",
                chart,
                "-n",
                "refused",
                "--create-namespace",
            ][..],
            &template,
        ]
        .concat(),
        &["pass --skip-crds"],
    );
    delete_crd();
    helm_ok(
        &[
            &[
                "install",
                "third",
                chart,
                "-n",
                "third",
                "--create-namespace",
                "--skip-crds",
            ][..],
            &template,
        ]
        .concat(),
    );
    let annotations = crd_annotations().expect("the templated CRD");
    for expected in [
        r#""helm.sh/resource-policy":"keep""#,
        r#""meta.helm.sh/release-name":"third""#,
    ] {
        assert!(annotations.contains(expected), "{annotations}");
    }
    helm_ok(&[&["upgrade", "third", chart, "-n", "third"][..], &template].concat());
    // Back to crdsDir: the CRD leaves the release but stays (keep).
    helm_ok(&["upgrade", "third", chart, "-n", "third"]);
    assert!(
        crd_annotations().is_some(),
        "the upgrade deleted the kept CRD"
    );
    helm_ok(&[&["upgrade", "third", chart, "-n", "third"][..], &template].concat());
    helm_ok(&["uninstall", "third", "-n", "third"]);
    assert!(
        crd_annotations().is_some(),
        "helm uninstall deleted the kept CRD"
    );
}
