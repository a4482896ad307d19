//! docs/operator.md's field reference is checked against the CRD schema:
//! every spec and status field down to the second level is documented.

use canal::operator::crd::CanalInstance;
use kube::CustomResourceExt;
use serde_json::Value;

/// Object fields the reference describes by their own names; deeper
/// Kubernetes types (affinity, resources, ...) are Kubernetes' to document.
fn paths(schema: &Value, prefix: &str, depth: usize, out: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, child) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        out.push(path.clone());
        if depth > 1 && !is_kubernetes_type(&path) {
            paths(child, &path, depth - 1, out);
        }
    }
}

/// Fields whose contents are Kubernetes types or free-form maps.
fn is_kubernetes_type(path: &str) -> bool {
    matches!(
        path,
        "resources" | "podTemplate" | "conditions" | "server.extraProperties"
    ) || path.starts_with("podTemplate.")
        || path.starts_with("filter.")
}

fn documented(docs: &str, path: &str) -> bool {
    let quoted = |s: &str| docs.contains(&format!("`{s}`"));
    // A group is documented through its fields (`source.address`, ...).
    if quoted(path) || docs.contains(&format!("`{path}.")) {
        return true;
    }
    // A grouped row: `parent` ... with the field's name in its text.
    let Some((parent, leaf)) = path.rsplit_once('.') else {
        return false;
    };
    docs.lines()
        .filter(|line| line.starts_with('|'))
        .any(|line| line.contains(&format!("`{parent}`")) && line.contains(leaf))
}

#[test]
fn every_field_is_in_the_reference() {
    let crd = serde_json::to_value(CanalInstance::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operator.md")).unwrap();
    let mut missing = Vec::new();
    for part in ["spec", "status"] {
        let mut found = Vec::new();
        paths(&schema[part], "", 2, &mut found);
        for path in found {
            if !documented(&docs, &path) {
                missing.push(format!("{part}.{path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "fields missing from docs/operator.md: {missing:#?}"
    );
}
