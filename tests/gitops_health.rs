//! gitops/: the Argo CD health check for CanalInstance, run by Debian's `lua5.1` the way
//! Argo CD runs it (the object as the global `obj`, only the base and table libraries),
//! against every case of its `health_test.yaml`; the fixtures checked against the status
//! the operator really writes; the `argocd-cm` copy of the script; what Flux makes of the
//! status — plain kstatus and the CEL health expressions in gitops/flux/ — and the
//! Application / HelmRelease / Kustomization examples.
//!
//! `lua5.1` must be installed: `gitops/install-lua.sh` (apt-get, as root).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use canal::operator::crd::{CanalInstance, CanalInstanceStatus};
use canal::operator::status::{Observed, Outcome, PodAddress, ZkFacts, ZkState, desired_status};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::core::cel::cel;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CUSTOMIZATION: &str = "gitops/argocd/resource_customizations/canal.otter.dev/CanalInstance";
const ARGOCD_CM_KEY: &str = "resource.customizations.health.canal.otter.dev_CanalInstance";

fn path(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn yaml(relative: &str) -> Value {
    serde_saphyr::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn yaml_documents(relative: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn fixture(name: &str) -> Value {
    yaml(&format!("{CUSTOMIZATION}/testdata/{name}"))
}

/// `health_test.yaml`: (inputPath, status, message) per case.
fn cases() -> Vec<(String, String, String)> {
    let tests = yaml(&format!("{CUSTOMIZATION}/health_test.yaml"));
    tests["tests"]
        .as_array()
        .expect("health_test.yaml has a list `tests`")
        .iter()
        .map(|case| {
            let field = |value: &Value, what: &str| {
                value
                    .as_str()
                    .unwrap_or_else(|| panic!("a case without {what}: {case}"))
                    .to_owned()
            };
            (
                field(&case["inputPath"], "inputPath"),
                field(&case["healthStatus"]["status"], "healthStatus.status"),
                field(&case["healthStatus"]["message"], "healthStatus.message"),
            )
        })
        .collect()
}

fn fixture_names() -> BTreeSet<String> {
    std::fs::read_dir(path(&format!("{CUSTOMIZATION}/testdata")))
        .expect("testdata/")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml"))
        .collect()
}

// ---------------------------------------------------------------------------
// Lua: the fixture as a table constructor, run under a harness like Argo CD's.
// ---------------------------------------------------------------------------

/// A Lua string literal: printable ASCII as is, everything else as `\ddd`
/// byte escapes (valid in every Lua version).
fn lua_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for byte in text.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

/// The Lua value Argo CD builds from the object (its `decodeValue`): maps
/// become tables keyed by strings, lists 1-based arrays, numbers Lua numbers,
/// JSON null nil.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format!("{f:?}"),
            _ => panic!("number {n} has no Lua form"),
        },
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// Argo CD runs health scripts in gopher-lua with only the package, base,
/// table and a safe os library opened: no `string`, no `math`, and so no
/// string methods either. The harness gives the script the same world.
const HARNESS: &str = r#"
local chunk, err = loadstring(SOURCE, "=health.lua")
if not chunk then io.stderr:write(err) os.exit(2) end
local env = {obj = OBJ, table = table}
for _, name in ipairs({"assert", "error", "ipairs", "next", "pairs", "pcall", "print",
    "rawequal", "rawget", "rawset", "select", "getmetatable", "setmetatable",
    "tonumber", "tostring", "type", "unpack", "xpcall"}) do
  env[name] = _G[name]
end
env._G = env
setfenv(chunk, env)
local strings = getmetatable("")
strings.__index = nil
local ok, hs = pcall(chunk)
strings.__index = string
if not ok then io.stderr:write("health.lua failed: " .. tostring(hs)) os.exit(3) end
if type(hs) ~= "table" then io.stderr:write("health.lua returned a " .. type(hs)) os.exit(4) end
io.write(tostring(hs.status), "\n", tostring(hs.message))
"#;

/// Runs `program` with lua5.1 (from stdin).
fn lua(program: &str) -> std::process::Output {
    let mut child = match Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run lua5.1 ({e}): install it with gitops/install-lua.sh \
             (as root: apt-get install -y lua5.1)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The harness around `source` (a health script) for `obj`.
fn harness(source: &str, obj: &Value) -> String {
    format!(
        "local SOURCE = {}\nlocal OBJ = {}\n{HARNESS}",
        lua_string(source),
        lua_literal(obj)
    )
}

/// (status, message) that health.lua returns for `obj`.
fn run_health(obj: &Value) -> (String, String) {
    let source = read(&format!("{CUSTOMIZATION}/health.lua"));
    let output = lua(&harness(&source, obj));
    assert!(
        output.status.success(),
        "lua5.1 failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (status, message) = stdout.split_once('\n').expect("status and message");
    (status.to_owned(), message.to_owned())
}

#[test]
fn health_lua_passes_every_case_of_health_test_yaml() {
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 8, "{} cases", cases.len());
    for (input, status, message) in &cases {
        let got = run_health(&yaml(&format!("{CUSTOMIZATION}/{input}")));
        if got != (status.clone(), message.clone()) {
            failures.push(format!(
                "{input}: expected {status} {message:?}, got {} {:?}",
                got.0, got.1
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_fixture_has_exactly_one_case() {
    let listed: Vec<String> = cases()
        .into_iter()
        .map(|(input, _, _)| {
            input
                .strip_prefix("testdata/")
                .unwrap_or_else(|| panic!("{input}: inputs live in testdata/"))
                .to_owned()
        })
        .collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a fixture is listed twice");
    assert_eq!(unique, fixture_names());
}

#[test]
fn the_harness_denies_what_argo_cd_denies() {
    // A script that works only with Lua's string library would pass plain
    // lua5.1 and fail in Argo CD: the harness must refuse it too.
    let obj = serde_json::json!({"metadata": {"name": "x"}});
    let output = lua(&harness(r#"return {status = ("x"):upper()}"#, &obj));
    assert_eq!(
        output.status.code(),
        Some(3),
        "string methods must fail: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = lua(&harness(r#"return {status = string.upper("x")}"#, &obj));
    assert_eq!(
        output.status.code(),
        Some(3),
        "the string library must be missing"
    );
    let output = lua(&harness(
        r#"return {status = obj.metadata.name, message = type(table.insert)}"#,
        &obj,
    ));
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "x\nfunction");
    // And the literal round-trips what Argo CD hands over.
    let tricky = serde_json::json!({"a.b/c": ["x\"y\\z", "é\n", 7, -1.5, true, null]});
    assert_eq!(
        lua_literal(&tricky),
        r#"{["a.b/c"] = {"x\"y\\z", "\195\169\010", 7, -1.5, true, nil}}"#
    );
}

#[test]
fn argocd_cm_embeds_the_same_script() {
    let script = read(&format!("{CUSTOMIZATION}/health.lua"));
    let cm = yaml("gitops/argocd/argocd-cm-patch.yaml");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let embedded = cm["data"][ARGOCD_CM_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("argocd-cm-patch.yaml has no data.{ARGOCD_CM_KEY}"));
    assert!(
        embedded == script,
        "argocd-cm-patch.yaml's script differs from health.lua: copy health.lua into it \
         (indented by four spaces under `{ARGOCD_CM_KEY}: |`)"
    );
}

// ---------------------------------------------------------------------------
// The fixtures are what the operator writes.
// ---------------------------------------------------------------------------

/// The world a fixture's status was observed in.
struct World {
    outcome: Kind,
    /// StatefulSet replicas, readyReplicas, updatedReplicas (at its current generation).
    statefulset: Option<(i32, i32, i32)>,
    /// None: ZooKeeper was read (its nodes are the status' own activeServer,
    /// members and cursors); Some: it could not be read, why.
    zookeeper_unreachable: Option<&'static str>,
    pods: bool,
}

enum Kind {
    Applied,
    Paused,
    /// validate() refused the spec, with these extra properties added to it
    /// (a status that still describes a spec since fixed).
    Invalid(&'static [(&'static str, &'static str)]),
}

/// Every fixture but the ones whose status the operator writes without
/// desired_status (none yet, or the object does not parse).
fn world(fixture: &str) -> Option<World> {
    let seen = |outcome, statefulset| World {
        outcome,
        statefulset: Some(statefulset),
        zookeeper_unreachable: None,
        pods: true,
    };
    Some(match fixture {
        "healthy.yaml" | "progressing.yaml" | "no-active-server.yaml" => {
            seen(Kind::Applied, (2, 2, 2))
        }
        "rolling-out.yaml" => seen(Kind::Applied, (2, 1, 1)),
        "creating.yaml" => seen(Kind::Applied, (2, 0, 2)),
        "paused-no-ready-pods.yaml" => seen(Kind::Paused, (2, 0, 2)),
        "degraded-invalid-spec.yaml" | "paused-invalid-spec.yaml" => {
            seen(Kind::Invalid(&[]), (2, 2, 2))
        }
        "progressing-stale-degraded.yaml" => seen(
            Kind::Invalid(&[("canal.instance.filter.query.dlc", "true")]),
            (2, 2, 2),
        ),
        "paused.yaml" => seen(Kind::Paused, (2, 2, 2)),
        "degraded-zookeeper.yaml" => World {
            zookeeper_unreachable: Some(
                "cannot connect to ZooKeeper at zk-0.zk:2181,zk-1.zk:2181,zk-2.zk:2181: no answer within 9s",
            ),
            ..seen(Kind::Applied, (2, 2, 2))
        },
        "scaled-to-zero.yaml" => World {
            pods: false,
            ..seen(Kind::Applied, (0, 0, 0))
        },
        "progressing-no-status.yaml" | "degraded-invalid-resource.yaml" => return None,
        other => panic!("{other}: add its world to tests/gitops_health.rs"),
    })
}

fn now() -> Timestamp {
    "2026-03-05T10:00:00Z".parse().unwrap()
}

/// The status desired_status computes for the fixture in its world, starting
/// from the fixture's own status: a real status is a fixed point (only a
/// change in the world changes it). A status behind the spec is computed at
/// the generation it describes.
fn operator_status(name: &str, object: &Value, world: &World) -> CanalInstanceStatus {
    let mut instance: CanalInstance = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{name} is not a CanalInstance: {e}"));
    let previous = instance.status.clone().expect("a status");
    instance.metadata.generation = previous.observed_generation;
    let outcome = match &world.outcome {
        Kind::Applied => Outcome::Applied,
        Kind::Paused => Outcome::Paused,
        Kind::Invalid(extra) => {
            let mut checked = instance.clone();
            for (key, value) in *extra {
                checked
                    .spec
                    .server
                    .extra_properties
                    .insert((*key).into(), (*value).into());
            }
            let invalid =
                canal::operator::validate::validate(&checked).expect_err("the spec is refused");
            Outcome::Invalid {
                reason: "InvalidSpec",
                message: invalid.to_string(),
            }
        }
    };
    let statefulset = world
        .statefulset
        .map(|(replicas, ready, updated)| StatefulSet {
            metadata: ObjectMeta {
                generation: Some(3),
                ..Default::default()
            },
            spec: None,
            status: Some(StatefulSetStatus {
                observed_generation: Some(3),
                replicas,
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                ..Default::default()
            }),
        });
    let pods = if world.pods {
        vec![
            PodAddress {
                name: "orders-0".into(),
                ip: "10.1.0.5".into(),
            },
            PodAddress {
                name: "orders-1".into(),
                ip: "10.1.0.6".into(),
            },
        ]
    } else {
        Vec::new()
    };
    let zookeeper = match world.zookeeper_unreachable {
        Some(why) => ZkState::Unreachable(why.into()),
        None => ZkState::Seen(ZkFacts {
            running: previous.active_server.as_ref().map(|a| {
                let since = a.since.as_deref().expect("activeServer.since");
                (a.address.clone(), since.parse().unwrap())
            }),
            members: previous.members.iter().map(|m| m.address.clone()).collect(),
            cursors: previous.cursors.clone(),
        }),
    };
    let config_hash = match world.outcome {
        Kind::Applied => previous.config_hash.clone(),
        _ => None,
    };
    let observed = Observed {
        outcome,
        statefulset: statefulset.as_ref(),
        pods: &pods,
        zookeeper,
        config_hash,
        cursor_reset: None,
        label_selector: "app.kubernetes.io/instance=orders,app.kubernetes.io/name=canal-server"
            .into(),
        now: now(),
    };
    desired_status(&instance, &observed)
}

#[test]
fn fixture_statuses_are_what_the_operator_writes() {
    let mut failures = Vec::new();
    for name in fixture_names() {
        let object = fixture(&name);
        assert_eq!(object["apiVersion"], "canal.otter.dev/v1alpha1", "{name}");
        assert_eq!(object["kind"], "CanalInstance", "{name}");
        let Some(world) = world(&name) else {
            continue;
        };
        let computed = serde_json::to_value(operator_status(&name, &object, &world)).unwrap();
        if computed != object["status"] && std::env::var_os("UPDATE_FIXTURES").is_some() {
            let mut updated = object.clone();
            updated["status"] = computed.clone();
            std::fs::write(
                format!("{CUSTOMIZATION}/testdata/{name}"),
                serde_saphyr::to_string(&updated).unwrap(),
            )
            .unwrap();
            continue;
        }
        if computed != object["status"] {
            failures.push(format!(
                "{name} (UPDATE_FIXTURES=1 rewrites it): the operator writes\n{}",
                serde_saphyr::to_string(&computed).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_special_fixtures_are_what_the_operator_writes() {
    // Created, not yet reconciled: no status at all.
    let fresh = fixture("progressing-no-status.yaml");
    assert!(fresh.get("status").is_none());
    serde_json::from_value::<CanalInstance>(fresh).expect("a CanalInstance");

    // Stored under a hand-edited CRD: the operator cannot parse it and
    // writes only Ready, Degraded and Stalled (reconcile.rs, report_unparseable).
    let unreadable = fixture("degraded-invalid-resource.yaml");
    let error = serde_json::from_value::<CanalInstance>(unreadable.clone())
        .expect_err("the fixture must not parse")
        .to_string();
    let message = format!("the resource cannot be read as a CanalInstance: {error}");
    let status = &unreadable["status"];
    assert_eq!(
        status["observedGeneration"],
        unreadable["metadata"]["generation"]
    );
    let conditions = status["conditions"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str, &str)> = conditions
        .iter()
        .map(|c| {
            assert_eq!(c["observedGeneration"], status["observedGeneration"]);
            (
                c["type"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["reason"].as_str().unwrap(),
                c["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Ready", "False", "InvalidResource", message.as_str()),
            ("Degraded", "True", "InvalidResource", message.as_str()),
            ("Stalled", "True", "InvalidResource", message.as_str()),
        ]
    );
}

/// Prints the status the operator writes for each fixture (to refresh the
/// fixtures after a change to the status code):
/// `cargo test --test gitops_health -- --ignored --nocapture print_operator_statuses`
#[test]
#[ignore]
fn print_operator_statuses() {
    for name in fixture_names() {
        if let Some(world) = world(&name) {
            let status = operator_status(&name, &fixture(&name), &world);
            println!("# {name}\n{}", serde_saphyr::to_string(&status).unwrap());
        }
    }
}

// ---------------------------------------------------------------------------
// Flux: kstatus, and the CEL health expressions of gitops/flux/.
// ---------------------------------------------------------------------------

/// kstatus' `status.Compute` for a custom resource without type-specific
/// rules (sigs.k8s.io/cli-utils pkg/kstatus/status: checkGenericProperties,
/// then checkReadyCondition, then Current), as Flux's kustomize-controller
/// (`wait: true`, `healthChecks`) and helm-controller (the `poller` wait
/// strategy) use it without health check expressions.
fn kstatus(object: &Value) -> (&'static str, String) {
    if object["metadata"]["deletionTimestamp"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return ("Terminating", "Resource scheduled for deletion".into());
    }
    let generation = object["metadata"]["generation"].as_i64();
    let observed = object["status"]["observedGeneration"].as_i64();
    if let (Some(generation), Some(observed)) = (generation, observed)
        && generation != observed
    {
        let kind = object["kind"].as_str().unwrap_or_default();
        return (
            "InProgress",
            format!(
                "{kind} generation is {generation}, but latest observed generation is {observed}"
            ),
        );
    }
    let conditions = object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let text = |c: &Value, field: &str| c[field].as_str().unwrap_or_default().to_owned();
    for c in &conditions {
        match (text(c, "type").as_str(), text(c, "status").as_str()) {
            ("Reconciling", "True") => return ("InProgress", text(c, "message")),
            ("Stalled", "True") => return ("Failed", text(c, "message")),
            _ => {}
        }
    }
    for c in &conditions {
        if text(c, "type") != "Ready" {
            continue;
        }
        match text(c, "status").as_str() {
            "True" => return ("Current", "Resource is Ready".into()),
            "False" | "Unknown" => return ("InProgress", text(c, "message")),
            _ => {}
        }
    }
    ("Current", "Resource is current".into())
}

/// What plain kstatus reports for each fixture. The rows marked GAP are where
/// it disagrees with the health check (docs/gitops.md explains each).
const KSTATUS: &[(&str, &str)] = &[
    ("creating.yaml", "InProgress"),
    ("degraded-invalid-resource.yaml", "Failed"),
    ("degraded-invalid-spec.yaml", "Failed"),
    ("degraded-zookeeper.yaml", "InProgress"), // retried: ZooKeeper may come back
    ("healthy.yaml", "Current"),
    ("no-active-server.yaml", "InProgress"),
    ("paused-invalid-spec.yaml", "Failed"),
    ("paused-no-ready-pods.yaml", "InProgress"), // GAP: never Failed
    ("paused.yaml", "Current"),
    ("progressing-no-status.yaml", "Current"), // GAP: before the operator saw it
    ("progressing-stale-degraded.yaml", "InProgress"),
    ("progressing.yaml", "InProgress"),
    ("rolling-out.yaml", "InProgress"),
    ("scaled-to-zero.yaml", "InProgress"), // GAP: never Current
];

#[test]
fn what_plain_kstatus_makes_of_each_fixture() {
    let names: BTreeSet<String> = KSTATUS.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(names, fixture_names(), "KSTATUS lists every fixture");
    let mut failures = Vec::new();
    for (name, expected) in KSTATUS {
        let (got, message) = kstatus(&fixture(name));
        if got != *expected {
            failures.push(format!(
                "{name}: expected {expected}, got {got} ({message})"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The CanalInstance entry of a `healthCheckExprs` list.
fn canal_exprs(owner: &str, exprs: &Value) -> (Option<String>, Option<String>, String) {
    let entry = exprs
        .as_array()
        .unwrap_or_else(|| panic!("{owner}: healthCheckExprs is a list"))
        .iter()
        .find(|e| {
            e["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("canal.otter.dev/"))
                && e["kind"] == "CanalInstance"
        })
        .unwrap_or_else(|| panic!("{owner}: no healthCheckExprs entry for CanalInstance"));
    let text = |field: &str| entry[field].as_str().map(str::to_owned);
    (
        text("inProgress"),
        text("failed"),
        text("current").unwrap_or_else(|| panic!("{owner}: `current` is required")),
    )
}

/// Flux's CEL status evaluator (fluxcd/pkg runtime/cel StatusEvaluator):
/// observedGeneration first, then inProgress, failed, current; none true is
/// InProgress; an expression that cannot be evaluated (e.g. no `status` yet)
/// leaves the resource Unknown, which Flux keeps polling until its timeout.
/// The object's top-level fields are the expressions' variables.
fn flux_cel(
    object: &Value,
    (in_progress, failed, current): &(Option<String>, Option<String>, String),
) -> &'static str {
    let generation = object["metadata"]["generation"].as_i64();
    let observed = object["status"]["observedGeneration"].as_i64();
    if let (Some(generation), Some(observed)) = (generation, observed)
        && generation != observed
    {
        return "InProgress";
    }
    let mut context = cel::Context::default();
    for (name, value) in object.as_object().unwrap() {
        context.add_variable_from_value(name.as_str(), cel::to_value(value).unwrap());
    }
    let steps = [
        (in_progress.as_deref(), "InProgress"),
        (failed.as_deref(), "Failed"),
        (Some(current.as_str()), "Current"),
    ];
    for (expr, status) in steps {
        let Some(expr) = expr else { continue };
        let program = cel::Program::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        match program.execute(&context) {
            Ok(cel::Value::Bool(true)) => return status,
            Ok(cel::Value::Bool(false)) => {}
            Ok(other) => panic!("{expr} returned {other:?}, not a bool"),
            Err(_) => return "Unknown",
        }
    }
    "InProgress"
}

/// The health check's verdict in Flux's words: Healthy and Suspended are
/// done, Degraded failed, Progressing still going; an object without a status
/// cannot be evaluated (Unknown), and Flux keeps waiting for it as for InProgress.
fn flux_equivalent(argo: &str, object: &Value) -> &'static str {
    if object.get("status").is_none() {
        return "Unknown";
    }
    match argo {
        "Healthy" | "Suspended" => "Current",
        "Degraded" => "Failed",
        "Progressing" => "InProgress",
        other => panic!("unexpected health {other}"),
    }
}

#[test]
fn flux_health_expressions_agree_with_the_argo_cd_health_check() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for relative in ["gitops/flux/kustomization-instances.yaml"] {
        for document in yaml_documents(relative) {
            let Some(exprs) = document["spec"].get("healthCheckExprs") else {
                continue;
            };
            let exprs = canal_exprs(relative, exprs);
            for (input, status, _) in cases() {
                let object = yaml(&format!("{CUSTOMIZATION}/{input}"));
                let got = flux_cel(&object, &exprs);
                if flux_equivalent(&status, &object) != got {
                    failures.push(format!("{relative} {input}: Argo CD {status}, Flux {got}"));
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no healthCheckExprs for CanalInstance found");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// The Application, HelmRelease and Kustomization examples.
// ---------------------------------------------------------------------------

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn any_item(value: &Value, found: impl Fn(&Value) -> bool) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().any(found))
}

#[test]
fn argo_cd_application_installs_the_chart_with_server_side_apply() {
    let app = yaml("gitops/argocd/application.yaml");
    assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(app["kind"], "Application");
    let chart = app["spec"]["source"]["path"].as_str().unwrap();
    assert_eq!(chart, "charts/canal-operator");
    assert!(
        path(chart).join("Chart.yaml").is_file(),
        "{chart}/Chart.yaml"
    );
    assert!(path(chart).join("crds").is_dir(), "{chart}/crds");
    let options = strings(&app["spec"]["syncPolicy"]["syncOptions"]);
    for option in ["ServerSideApply=true", "CreateNamespace=true"] {
        assert!(options.contains(&option), "syncOptions lacks {option}");
    }
    // Argo CD renders crds/ only without skipCrds: keep it off.
    assert_ne!(app["spec"]["source"]["helm"]["skipCrds"], true);
}

#[test]
fn flux_examples_replace_crds_and_wait() {
    let source = yaml("gitops/flux/gitrepository.yaml");
    assert_eq!(source["kind"], "GitRepository");
    let source_name = source["metadata"]["name"].as_str().unwrap();

    let release = yaml_documents("gitops/flux/helmrelease.yaml")
        .into_iter()
        .find(|d| d["kind"] == "HelmRelease")
        .expect("a HelmRelease");
    assert_eq!(release["apiVersion"], "helm.toolkit.fluxcd.io/v2");
    assert_eq!(release["spec"]["install"]["crds"], "CreateReplace");
    assert_eq!(release["spec"]["upgrade"]["crds"], "CreateReplace");
    let chart = &release["spec"]["chart"]["spec"];
    assert_eq!(chart["sourceRef"]["kind"], "GitRepository");
    assert_eq!(chart["sourceRef"]["name"], source_name);
    let chart_path = chart["chart"].as_str().unwrap().trim_start_matches("./");
    assert!(
        path(chart_path).join("Chart.yaml").is_file(),
        "{chart_path}"
    );

    let kustomizations: Vec<Value> = yaml_documents("gitops/flux/kustomization-manifests.yaml")
        .into_iter()
        .chain(yaml_documents("gitops/flux/kustomization-instances.yaml"))
        .filter(|d| d["kind"] == "Kustomization")
        .collect();
    let by_path = |p: &str| {
        kustomizations
            .iter()
            .find(|k| k["spec"]["path"] == p)
            .unwrap_or_else(|| panic!("no Kustomization for {p}"))
    };
    let manifests = by_path("./manifests");
    assert_eq!(manifests["apiVersion"], "kustomize.toolkit.fluxcd.io/v1");
    assert_eq!(manifests["spec"]["sourceRef"]["name"], source_name);
    assert!(path("manifests").is_dir());
    // manifests/ holds the CRD: removing it from Git, or deleting the
    // Kustomization, must not delete every CanalInstance.
    let protects_crd = any_item(&manifests["spec"]["patches"], |patch| {
        patch["target"]["kind"] == "CustomResourceDefinition"
            && patch["target"]["name"] == "canalinstances.canal.otter.dev"
            && patch["patch"]
                .as_str()
                .is_some_and(|p| p.contains("kustomize.toolkit.fluxcd.io/prune: disabled"))
    });
    assert!(
        protects_crd,
        "./manifests: no patch disabling the CRD's pruning"
    );
    for k in &kustomizations {
        assert_eq!(k["spec"]["wait"], true, "{}: wait", k["metadata"]["name"]);
    }
}
