//! RBAC proven least-privilege: the real `canal-operator` as its
//! ServiceAccount (impersonated through the admin's kubeconfig) against the
//! real API server, once with every rule the manifest grants, then once per
//! rule and once per single (resource, verb) grant with exactly that taken
//! away. What it proves:
//!
//! - **Together they suffice**: with everything granted, a scenario that
//!   uses every feature passes every step, and the operator's log has not a
//!   single `forbidden`.
//! - **Each one is needed**: without a grant, the step `need()` names for it
//!   fails, and the operator's log names the refused request (`cannot VERB
//!   resource "R" in API group "G"`). A grant `need()` calls needed whose
//!   removal leaves its step passing fails the test (it is not needed, or
//!   not for that step), and so does a grant `need()` does not know.
//! - A grant the operator never uses lets the whole scenario pass without
//!   it: `need()` lists those as NOT NEEDED (they belong out of the chart),
//!   and the table says so.
//!
//! Every step runs whatever failed before it, unless a step it builds on
//! (`Step::needs`) did not pass: then it is skipped, and a case whose named
//! step was skipped fails. Which of several failing steps fails *first* is
//! not asserted: a removal may also slow or break steps that run side by
//! side with the named one (a reconcile that keeps failing and retrying, for
//! one), and their order is the scheduler's. The table lists every failed
//! step.
//!
//! The rules are read from `manifests/install.yaml` (rendered from the Helm
//! chart) when it exists, else `manifests/rbac.yaml`: the ClusterRole and
//! the (Lease) Role bound to the operator's ServiceAccount.
//!
//! The scenario, in one namespace per case (ServiceAccount, ClusterRole and
//! ClusterRoleBinding, Lease Role and RoleBinding of its own), with the
//! kubelet stand-in running the pods as canal-server processes against the
//! MariaDB and ZooKeeper of `scripts/env`:
//!
//! 1. Leading: the operator takes its Lease (`--lease-namespace`).
//! 2. Applied: instance `a` (cleanupPolicy Delete) has the finalizer and
//!    its ConfigMap, Services, PodDisruptionBudget and StatefulSet.
//! 3. Status: `a` has a status.
//! 4. Active: pod `a-0` runs, wins the race in ZooKeeper, carries the
//!    active label, is the status's active server, and there is an
//!    ActiveServerChanged Event.
//! 5. ConfigMapRepaired, ServiceRepaired, PodDisruptionBudgetRepaired,
//!    StatefulSetRepaired, PodLabelRepaired: an edit by hand (a label; the
//!    active label taken off the pod) is undone by a reconcile whose reason
//!    is that object: what each kind's watch is for.
//! 6. RolledOut: a restart nonce on `a` changes its pod template; the
//!    operator evicts `a-0` (updateStrategy OnDelete) and the StatefulSet
//!    controller recreates it from the new template.
//! 7. SecretNoticed: instance `c` (paused) waits for a Secret that does not
//!    exist; creating it is noticed at once (the Secret watch), not at the
//!    30 s resync.
//! 8. CursorReset: instance `b` (paused, with a cursorReset) records the
//!    reset's nonce in its status.
//! 9. StatefulSetDeleted: with a pod the StatefulSet does not own keeping
//!    `a` waiting, deleting `a` deletes its StatefulSet first;
//! 10. EventSeries: the repeated WaitingForPods Event is counted (series);
//! 11. Finalized: once that pod is gone, the ZooKeeper nodes are cleaned
//!     up, the finalizer removed, and `a` is gone.
//!
//! Cases run side by side (CONCURRENCY at a time); the table of what each
//! removal broke is printed at the end (`-- --nocapture`);
//! `CANAL_RBAC_CASES=pods,leases` runs only the cases whose name contains
//! one of the words (and the baseline).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canal::operator::build::labels::{RESTART_ANNOTATION, ROLE_ACTIVE, ROLE_LABEL};
use canal::operator::crd::CanalInstance;
use common::k8s::{ControlPlane, FIELD_MANAGER, unique_namespace};
use common::kubelet::Kubelet;
use common::live::{LiveEnv, unique};
use common::operator::{OperatorProcess, service_account_kubeconfig};
use common::zk;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Cases at a time: each runs an operator, a kubelet stand-in and one
/// canal-server process.
const CONCURRENCY: usize = 10;
/// How long a step that should pass may take.
const PASS_WAIT: Duration = Duration::from_secs(60);
/// How long a step that should fail is given to pass anyway (a refused
/// request stays refused: this only has to outlast retries and requeues).
const FAIL_WAIT: Duration = Duration::from_secs(12);
/// The operator's ServiceAccount in each case's namespace.
const SERVICE_ACCOUNT: &str = "canal-operator";
const NONCE: &str = "rbac-rules-1";
/// How often an edit is tried again when a reconcile for another reason
/// repaired it before the watch's own could.
const REPAIR_ATTEMPTS: usize = 5;
/// How long the operator must not have reconciled an instance before an
/// edit that only a watch would notice.
const QUIET: Duration = Duration::from_secs(1);
/// A label the operator applies to every child (value `canal`).
const PART_OF: &str = "app.kubernetes.io/part-of";

// ---------------------------------------------------------------------------
// The rules.
// ---------------------------------------------------------------------------

/// Where the operator's rules are read from.
fn manifest_path() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let install = dir.join("install.yaml");
    if install.is_file() {
        install
    } else {
        dir.join("rbac.yaml")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RoleKind {
    /// The ClusterRole: everything but the Lease.
    Cluster,
    /// The Role in the Lease's namespace.
    Lease,
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleKind::Cluster => "ClusterRole",
            RoleKind::Lease => "Role",
        })
    }
}

struct Manifest {
    path: PathBuf,
    cluster_role: String,
    cluster_rules: Vec<Value>,
    lease_role: String,
    lease_rules: Vec<Value>,
}

impl Manifest {
    fn rules(&self, role: RoleKind) -> &[Value] {
        match role {
            RoleKind::Cluster => &self.cluster_rules,
            RoleKind::Lease => &self.lease_rules,
        }
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The ClusterRole and the Role bound to the operator's ServiceAccount
/// (the one ServiceAccount named canal-operator*); without such bindings,
/// the one ClusterRole and the one Role named canal-operator*.
fn load_manifest() -> Manifest {
    let path = manifest_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let of_kind = |kind: &'static str| documents.iter().filter(move |d| str_at(d, "/kind") == kind);
    let operator_named = |d: &&Value| str_at(d, "/metadata/name").starts_with("canal-operator");
    let accounts: Vec<&Value> = of_kind("ServiceAccount").filter(operator_named).collect();
    let bound_to = |binding: &'static str, role: &'static str| -> Vec<String> {
        let Some(account) = accounts.first() else {
            return Vec::new();
        };
        let (name, namespace) = (
            str_at(account, "/metadata/name"),
            str_at(account, "/metadata/namespace"),
        );
        of_kind(binding)
            .filter(|b| str_at(b, "/roleRef/kind") == role)
            .filter(|b| {
                b.get("subjects")
                    .and_then(Value::as_array)
                    .is_some_and(|subjects| {
                        subjects.iter().any(|s| {
                            str_at(s, "/kind") == "ServiceAccount"
                                && str_at(s, "/name") == name
                                && (namespace.is_empty() || str_at(s, "/namespace") == namespace)
                        })
                    })
            })
            .map(|b| str_at(b, "/roleRef/name").to_owned())
            .collect()
    };
    let pick = |kind: &'static str, binding: &'static str| -> (String, Vec<Value>) {
        let mut names = bound_to(binding, kind);
        if names.is_empty() {
            names = of_kind(kind)
                .filter(operator_named)
                .map(|d| str_at(d, "/metadata/name").to_owned())
                .collect();
        }
        assert_eq!(
            names.len(),
            1,
            "{}: expected one {kind} for the operator's ServiceAccount, found {names:?}",
            path.display()
        );
        let name = names.remove(0);
        let role = of_kind(kind)
            .find(|d| str_at(d, "/metadata/name") == name)
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", path.display()));
        let rules = role
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        assert!(
            !rules.is_empty(),
            "{}: {kind} {name} has no rules",
            path.display()
        );
        (name, rules)
    };
    let (cluster_role, cluster_rules) = pick("ClusterRole", "ClusterRoleBinding");
    let (lease_role, lease_rules) = pick("Role", "RoleBinding");
    Manifest {
        path,
        cluster_role,
        cluster_rules,
        lease_role,
        lease_rules,
    }
}

/// One verb on one resource: what a single RBAC check decides.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Grant {
    group: String,
    resource: String,
    verb: String,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{} {}", self.resource, self.verb)
        } else {
            write!(f, "{}.{} {}", self.resource, self.group, self.verb)
        }
    }
}

fn strings(rule: &Value, field: &str) -> Vec<String> {
    rule.get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|i| i.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every (group, resource, verb) a rule grants. Wildcards, resourceNames
/// and nonResourceURLs have no place in the operator's rules.
fn grants(rule: &Value) -> Vec<Grant> {
    for field in ["resourceNames", "nonResourceURLs"] {
        assert!(
            rule.get(field).is_none(),
            "rule {rule}: {field} is not expected"
        );
    }
    let (groups, resources, verbs) = (
        strings(rule, "apiGroups"),
        strings(rule, "resources"),
        strings(rule, "verbs"),
    );
    let mut out = Vec::new();
    for group in &groups {
        for resource in &resources {
            for verb in &verbs {
                assert!(
                    !group.contains('*') && !resource.contains('*') && !verb.contains('*'),
                    "rule {rule}: a wildcard is not least privilege"
                );
                out.push(Grant {
                    group: group.clone(),
                    resource: resource.clone(),
                    verb: verb.clone(),
                });
            }
        }
    }
    assert!(!out.is_empty(), "rule {rule} grants nothing");
    out
}

fn describe_rule(rule: &Value) -> String {
    let groups: Vec<String> = strings(rule, "apiGroups")
        .into_iter()
        .map(|g| if g.is_empty() { "core".into() } else { g })
        .collect();
    format!(
        "{} {} [{}]",
        groups.join(","),
        strings(rule, "resources").join(","),
        strings(rule, "verbs").join(" ")
    )
}

#[derive(Clone, Debug)]
enum Removal {
    Nothing,
    Rule { role: RoleKind, index: usize },
    Grant { role: RoleKind, grant: Grant },
}

/// `rules` of `role` without what `removal` takes away; a rule losing one
/// grant is split into one rule per (group, resource) with the verbs left.
fn rules_without(manifest: &Manifest, role: RoleKind, removal: &Removal) -> Vec<Value> {
    let rules = manifest.rules(role);
    match removal {
        Removal::Nothing => rules.to_vec(),
        Removal::Rule { role: r, index } if *r == role => rules
            .iter()
            .enumerate()
            .filter(|(i, _)| i != index)
            .map(|(_, rule)| rule.clone())
            .collect(),
        Removal::Grant { role: r, grant } if *r == role => {
            let mut out = Vec::new();
            for rule in rules {
                let all = grants(rule);
                if !all.contains(grant) {
                    out.push(rule.clone());
                    continue;
                }
                let mut left: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
                for g in all.into_iter().filter(|g| g != grant) {
                    left.entry((g.group, g.resource)).or_default().push(g.verb);
                }
                for ((group, resource), verbs) in left {
                    out.push(
                        json!({"apiGroups": [group], "resources": [resource], "verbs": verbs}),
                    );
                }
            }
            out
        }
        _ => rules.to_vec(),
    }
}

// ---------------------------------------------------------------------------
// What each grant is for.
// ---------------------------------------------------------------------------

/// The scenario's steps, in order (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Leading,
    Applied,
    Status,
    Active,
    ConfigMapRepaired,
    ServiceRepaired,
    PodDisruptionBudgetRepaired,
    StatefulSetRepaired,
    PodLabelRepaired,
    RolledOut,
    SecretNoticed,
    CursorReset,
    StatefulSetDeleted,
    EventSeries,
    Finalized,
}

impl Step {
    /// The steps this one builds on: without them it cannot be observed.
    fn needs(self) -> &'static [Step] {
        use Step::*;
        match self {
            Leading => &[],
            Applied => &[Leading],
            Status => &[Applied],
            Active => &[Status],
            ConfigMapRepaired
            | ServiceRepaired
            | PodDisruptionBudgetRepaired
            | StatefulSetRepaired
            | StatefulSetDeleted => &[Applied],
            PodLabelRepaired | RolledOut => &[Active],
            // Both read what they wait for from a status.
            SecretNoticed | CursorReset => &[Status],
            EventSeries | Finalized => &[StatefulSetDeleted],
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What became of one step in one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    /// Not run: this step it builds on did not pass.
    Skipped(Step),
}

/// The outcome of every step of a case so far, and when each passed.
struct Progress {
    started: Instant,
    outcomes: BTreeMap<Step, Outcome>,
    timeline: Vec<String>,
}

impl Progress {
    fn new(started: Instant) -> Self {
        Progress {
            started,
            outcomes: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }

    /// The first step `step` builds on that did not pass; records `step`
    /// as skipped for it.
    fn blocked(&mut self, step: Step) -> Option<Step> {
        let missing = step
            .needs()
            .iter()
            .copied()
            .find(|s| self.outcomes.get(s) != Some(&Outcome::Passed))?;
        self.outcomes.insert(step, Outcome::Skipped(missing));
        Some(missing)
    }

    fn record(&mut self, step: Step, passed: bool, note: &str) {
        self.outcomes.insert(
            step,
            if passed {
                Outcome::Passed
            } else {
                Outcome::Failed
            },
        );
        if passed {
            self.timeline.push(format!(
                "{step} {:.0}{note}",
                self.started.elapsed().as_secs_f64()
            ));
        }
    }
}

#[derive(Clone, Debug)]
enum Need {
    /// Without it `step` fails, with this effect (and the log names the
    /// refused request).
    Needed { step: Step, effect: &'static str },
    /// Never requested: the scenario passes without it.
    NotNeeded { why: &'static str },
    /// For owner references with blockOwnerDeletion, checked only by the
    /// OwnerReferencesPermissionEnforcement admission plugin.
    OwnerReferenceFinalizers,
}

/// What the operator needs `grant` for; `None` for a grant this test
/// knows nothing about (a new rule needs a line here).
fn need(grant: &Grant) -> Option<Need> {
    use Step::*;
    let needed = |step, effect| Need::Needed { step, effect };
    let not_needed = |why| Need::NotNeeded { why };
    let never_got = "never read by name: the controller lists and watches, and applies";
    Some(
        match (
            grant.group.as_str(),
            grant.resource.as_str(),
            grant.verb.as_str(),
        ) {
            ("canal.otter.dev", "canalinstances", "get") => not_needed(never_got),
            ("canal.otter.dev", "canalinstances", "list") => needed(
                Applied,
                "the controller cannot list CanalInstances: nothing is reconciled",
            ),
            ("canal.otter.dev", "canalinstances", "watch") => needed(
                Applied,
                "the controller cannot watch CanalInstances: a new one is never seen",
            ),
            ("canal.otter.dev", "canalinstances", "patch") => needed(
                Applied,
                "the finalizer (cleanupPolicy Delete) cannot be added; reconcile stops there",
            ),
            ("canal.otter.dev", "canalinstances/status", "get") => needed(
                CursorReset,
                "a cursor reset's nonce cannot be checked against the stored status: no reset",
            ),
            ("canal.otter.dev", "canalinstances/status", "patch") => {
                needed(Status, "no status is written")
            }
            ("canal.otter.dev", "canalinstances/finalizers", "update") => {
                Need::OwnerReferenceFinalizers
            }
            ("apps", "statefulsets", "get") => needed(
                Status,
                "reading the StatefulSet for the status fails: no status",
            ),
            ("apps", "statefulsets", "list" | "watch") => needed(
                StatefulSetRepaired,
                "no StatefulSet watch: an edited StatefulSet is not repaired (nor its readiness seen) until the 30 s resync",
            ),
            ("apps", "statefulsets", "create") => needed(
                Applied,
                "the apply that would create the StatefulSet is refused",
            ),
            ("apps", "statefulsets", "patch") => {
                needed(Applied, "server-side apply of the StatefulSet is refused")
            }
            ("apps", "statefulsets", "delete") => needed(
                StatefulSetDeleted,
                "cleanupPolicy Delete: the StatefulSet is not deleted, the instance keeps its finalizer",
            ),
            ("" | "policy", "services" | "configmaps" | "poddisruptionbudgets", "get")
            | ("", "pods", "get") => not_needed(never_got),
            ("", "configmaps", "list" | "watch") => needed(
                ConfigMapRepaired,
                "no ConfigMap watch: an edited ConfigMap is not repaired until the 30 s resync",
            ),
            ("", "services", "list" | "watch") => needed(
                ServiceRepaired,
                "no Service watch: an edited Service is not repaired until the 30 s resync",
            ),
            ("policy", "poddisruptionbudgets", "list" | "watch") => needed(
                PodDisruptionBudgetRepaired,
                "no PodDisruptionBudget watch: an edited one is not repaired until the 30 s resync",
            ),
            ("", "services" | "configmaps", "create" | "patch")
            | ("policy", "poddisruptionbudgets", "create" | "patch") => needed(
                Applied,
                "server-side apply of this child is refused: nothing after it (the StatefulSet) is applied",
            ),
            ("", "pods", "list") => needed(
                Status,
                "the instance's pods cannot be listed: reconcile fails before the status",
            ),
            ("", "pods", "watch") => needed(
                PodLabelRepaired,
                "no pod watch: a removed active label is not put back (nor pod changes seen) until the 30 s resync",
            ),
            ("", "pods", "patch") => needed(
                Active,
                "the active pod is not labelled: the client Service routes nowhere",
            ),
            ("", "pods/eviction", "create") => needed(
                RolledOut,
                "a changed pod template is never rolled out: the pods keep the old one (OnDelete)",
            ),
            ("", "secrets", "get") => needed(
                Applied,
                "the Secrets' versions (configuration hash) cannot be read: nothing is applied",
            ),
            ("", "secrets", "list" | "watch") => needed(
                SecretNoticed,
                "no Secret (metadata) watch: a new or changed Secret is noticed only at the 30 s resync (a rotated one rolls the pods that late)",
            ),
            ("events.k8s.io", "events", "create") => {
                needed(Active, "no Events (ActiveServerChanged is missing)")
            }
            ("events.k8s.io", "events", "patch") => needed(
                EventSeries,
                "a repeated Event is not counted (its series is not patched)",
            ),
            ("coordination.k8s.io", "leases", "get" | "create" | "patch") => {
                needed(Leading, "the operator never takes its Lease")
            }
            _ => return None,
        },
    )
}

#[derive(Clone, Debug)]
enum Expect {
    /// Every step passes, and the log has no `forbidden`.
    Pass { why: String },
    /// `step` fails (other steps may too), and the log names one of
    /// `refused` as forbidden.
    Fail {
        step: Step,
        refused: Vec<Grant>,
        effect: String,
    },
}

struct Case {
    name: String,
    removal: Removal,
    expect: Expect,
}

/// What removing `grants` (together) must break.
fn expectation(grants: &[Grant], enforced: bool) -> Result<Expect, String> {
    let mut step: Option<Step> = None;
    let mut refused = Vec::new();
    let mut effects = Vec::new();
    let mut not_needed = Vec::new();
    for grant in grants {
        match need(grant).ok_or_else(|| {
            format!(
                "{grant}: this test does not know what the operator needs it for; add it to need()"
            )
        })? {
            Need::Needed { step: s, effect } => {
                // Together: the earliest step any of them breaks (the
                // later ones may be skipped for it).
                step = Some(step.map_or(s, |earlier| earlier.min(s)));
                refused.push(grant.clone());
                if !effects.contains(&effect) {
                    effects.push(effect);
                }
            }
            Need::OwnerReferenceFinalizers if enforced => {
                step = Some(Step::Applied);
                refused.push(grant.clone());
                effects.push(
                    "children with blockOwnerDeletion owner references are refused \
                     (OwnerReferencesPermissionEnforcement)",
                );
            }
            Need::OwnerReferenceFinalizers => not_needed.push(
                "only the OwnerReferencesPermissionEnforcement admission plugin (off on this \
                 API server; on in OpenShift) checks it, for owner references with \
                 blockOwnerDeletion",
            ),
            Need::NotNeeded { why } => not_needed.push(why),
        }
    }
    Ok(match step {
        Some(step) => Expect::Fail {
            step,
            refused,
            effect: effects.join("; "),
        },
        None => Expect::Pass {
            why: format!("NOT NEEDED: {}", not_needed.join("; ")),
        },
    })
}

fn cases(manifest: &Manifest, enforced: bool) -> Vec<Case> {
    let mut cases = vec![Case {
        name: "nothing removed (baseline)".into(),
        removal: Removal::Nothing,
        expect: Expect::Pass {
            why: "the manifest's rules suffice".into(),
        },
    }];
    let mut unknown = Vec::new();
    for role in [RoleKind::Cluster, RoleKind::Lease] {
        for (index, rule) in manifest.rules(role).iter().enumerate() {
            let all = grants(rule);
            let mut add = |name: String, removal: Removal, grants: &[Grant]| match expectation(
                grants, enforced,
            ) {
                Ok(expect) => cases.push(Case {
                    name,
                    removal,
                    expect,
                }),
                Err(why) => unknown.push(why),
            };
            add(
                format!("{role} rule {}: {}", index + 1, describe_rule(rule)),
                Removal::Rule { role, index },
                &all,
            );
            if all.len() > 1 {
                for grant in &all {
                    add(
                        format!("  {grant}"),
                        Removal::Grant {
                            role,
                            grant: grant.clone(),
                        },
                        std::slice::from_ref(grant),
                    );
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "{}: grants without an expectation:\n{}",
        manifest.path.display(),
        unknown.join("\n")
    );
    cases
}

// ---------------------------------------------------------------------------
// Running one case.
// ---------------------------------------------------------------------------

/// What one case observed.
struct Observed {
    /// What became of each step.
    outcomes: BTreeMap<Step, Outcome>,
    /// The requests the log says were refused.
    refused: BTreeSet<Grant>,
    /// Admission refusals of blockOwnerDeletion.
    block_owner_deletion_refused: bool,
    /// Whether the StatefulSet's owner reference blocks owner deletion.
    block_owner_deletion: Option<bool>,
    log_path: PathBuf,
    elapsed: Duration,
    /// Each step passed and when (s).
    timeline: Vec<String>,
}

/// Polls `probe` every 200 ms for up to `timeout`.
async fn within<T>(timeout: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn apply<K>(api: &Api<K>, object: &Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    let name = str_at(object, "/metadata/name");
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot apply {name}: {e}"));
}

/// Whether the API server says `user` may do `grant` in `namespace`.
async fn allowed(
    client: &Client,
    user: &str,
    groups: &[String],
    namespace: &str,
    grant: &Grant,
) -> bool {
    let (resource, subresource) = grant
        .resource
        .split_once('/')
        .map_or((grant.resource.as_str(), None), |(r, s)| (r, Some(s)));
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": user, "groups": groups,
            "resourceAttributes": {
                "namespace": namespace, "group": grant.group, "resource": resource,
                "subresource": subresource, "verb": grant.verb,
            },
        },
    }))
    .expect("a SubjectAccessReview");
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &review)
        .await
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| s.allowed)
}

/// How many reconciles of instance `name` the operator has logged (done
/// or failed). Plain substring matches: the log is read many times a
/// second, by every case.
fn reconciles_of(log: &str, name: &str) -> usize {
    let instance = format!(r#""instance":"{name}""#);
    log.lines()
        .filter(|line| {
            (line.contains(r#""message":"reconciled""#)
                || line.contains(r#""message":"reconcile failed; retrying""#))
                && line.contains(&instance)
        })
        .count()
}

/// How many log lines were written inside a reconcile whose reason is
/// `reason` (e.g. `related object updated: ConfigMap.v1./a-config.ns`):
/// the kube_client request lines carry the reconcile's span.
fn triggered_by(log: &str, reason: &str) -> usize {
    log.matches(&format!(r#""object.reason":"{reason}""#))
        .count()
}

/// The refused requests in a log: `cannot VERB resource "R" in API group
/// "G"` in any field of its JSON lines (and plain lines).
fn refusals(log: &str) -> (BTreeSet<Grant>, bool) {
    fn strings(value: &Value, out: &mut String) {
        match value {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let pattern =
        regex::Regex::new(r#"cannot (\w+) resource "([^"]+)" in API group "([^"]*)""#).unwrap();
    let mut refused = BTreeSet::new();
    let mut block_owner_deletion = false;
    for line in log.lines() {
        let text = match serde_json::from_str::<Value>(line) {
            Ok(value) => {
                let mut text = String::new();
                strings(&value, &mut text);
                text
            }
            Err(_) => line.to_owned(),
        };
        block_owner_deletion |= text.contains("cannot set blockOwnerDeletion");
        for found in pattern.captures_iter(&text) {
            refused.insert(Grant {
                verb: found[1].to_owned(),
                resource: found[2].to_owned(),
                group: found[3].to_owned(),
            });
        }
    }
    (refused, block_owner_deletion)
}

struct Shared {
    plane: &'static ControlPlane,
    manifest: Manifest,
    env: LiveEnv,
}

async fn run_case(shared: &Shared, case: &Case) -> Observed {
    let started = Instant::now();
    let plane = shared.plane;
    let client = plane.client().await;
    let namespace = unique_namespace("rbac");
    plane.ensure_namespace(&namespace).await;
    let (id, _) = unique("rbac");
    let destination = |name: &str| format!("{namespace}-{name}");

    // The operator's identity and its rights, less the removal.
    let user = format!("system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}");
    let groups = vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_owned(),
    ];
    let cluster_rules = rules_without(&shared.manifest, RoleKind::Cluster, &case.removal);
    let lease_rules = rules_without(&shared.manifest, RoleKind::Lease, &case.removal);
    let role_name = format!("canal-operator-{namespace}");
    let rbac = |api_version: &str, kind: &str, rest: Value| {
        let mut object = json!({"apiVersion": api_version, "kind": kind});
        object
            .as_object_mut()
            .unwrap()
            .extend(rest.as_object().unwrap().clone());
        object
    };
    let subject =
        json!([{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]);
    apply(
        &Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &namespace),
        &rbac(
            "v1",
            "ServiceAccount",
            json!({"metadata": {"name": SERVICE_ACCOUNT}}),
        ),
    )
    .await;
    apply(
        &Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone()),
        &rbac(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            json!({"metadata": {"name": role_name}, "rules": cluster_rules}),
        ),
    )
    .await;
    apply(
        &Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone()),
        &rbac(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            json!({"metadata": {"name": role_name}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name}}),
        ),
    )
    .await;
    apply(
        &Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(client.clone(), &namespace),
        &rbac(
            "rbac.authorization.k8s.io/v1",
            "Role",
            json!({"metadata": {"name": shared.manifest.lease_role}, "rules": lease_rules}),
        ),
    )
    .await;
    apply(
        &Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), &namespace),
        &rbac(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            json!({"metadata": {"name": shared.manifest.lease_role}, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": shared.manifest.lease_role}}),
        ),
    )
    .await;
    // The authorizer sees both bindings before the operator starts (it
    // gives up at once when it cannot use its Lease).
    for rules in [&cluster_rules, &lease_rules] {
        if let Some(grant) = rules.last().map(|r| grants(r).remove(0)) {
            let visible = within(PASS_WAIT, async || {
                allowed(&client, &user, &groups, &namespace, &grant)
                    .await
                    .then_some(())
            })
            .await;
            assert!(visible.is_some(), "{namespace}: RBAC never allowed {grant}");
        }
    }

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    apply(
        &secrets,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "replication"},
            "stringData": {"username": shared.env.user, "password": shared.env.password}}),
    )
    .await;

    let kubelet = Kubelet::start(client.clone(), &namespace);
    let kubeconfig = service_account_kubeconfig(plane, &namespace, SERVICE_ACCOUNT);
    // kube_client's request lines carry the reconcile's span: its reason.
    let mut operator = OperatorProcess::start_as_logging(
        &kubeconfig,
        plane,
        &namespace,
        &[
            "--lease-namespace",
            &namespace,
            "--lease-name",
            "canal-operator",
            "--identity",
            &namespace,
        ],
        "info,canal=debug,kube_client=debug",
    );

    let instances: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let wait = |step: Step| match &case.expect {
        Expect::Fail { step: s, .. } if *s == step => FAIL_WAIT,
        _ => PASS_WAIT,
    };
    let event = async |reason: &str, series: i32| {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("a")
                    && (series < 2 || e.series.as_ref().is_some_and(|s| s.count >= series))
            })
            .map(|_| ())
    };
    let mut block_owner_deletion = None;
    let mut progress = Progress::new(started);
    // Pokes instance `name` (an annotation), waits for the reconcile that
    // follows, then for QUIET without another: its next resync is then
    // about 30 s away.
    let settle = async |name: &str| -> bool {
        let count = || reconciles_of(&operator.log(), name);
        let before = count();
        let poked = instances
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {
                    // A new value each time, or the patch changes nothing.
                    "rbac-test/poke": started.elapsed().as_nanos().to_string(),
                }}})),
            )
            .await;
        if poked.is_err()
            || within(PASS_WAIT, async || (count() > before).then_some(()))
                .await
                .is_none()
        {
            return false;
        }
        let deadline = Instant::now() + PASS_WAIT;
        let mut last = count();
        loop {
            tokio::time::sleep(QUIET).await;
            let now = count();
            if now == last {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            last = now;
        }
    };

    {
        // Runs the step unless a step it builds on did not pass; records
        // whether it passed in time.
        macro_rules! step {
            ($step:expr, $probe:expr) => {
                if progress.blocked($step).is_none() {
                    let passed = within(wait($step), $probe).await.is_some();
                    progress.record($step, passed, "");
                }
            };
        }
        step!(Step::Leading, async || operator
            .leading()
            .await?
            .then_some(()));

        let source = json!({"address": shared.env.address,
            "credentials": {"secretName": "replication"}, "serverIdBase": i64::from(id) * 10});
        apply(
            &instances,
            &json!({"apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
                "metadata": {"name": "a"},
                "spec": {"replicas": 1, "destination": destination("a"), "source": source,
                    "zookeeper": {"connect": zk::servers(), "cleanupPolicy": "Delete"}}}),
        )
        .await;
        apply(
            &instances,
            &json!({"apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
                "metadata": {"name": "b"},
                "spec": {"destination": destination("b"), "source": source, "paused": true,
                    "zookeeper": {"connect": zk::servers()},
                    "cursorReset": {"nonce": NONCE,
                        "position": {"journalName": "mysql-bin.000001", "position": 4}}}}),
        )
        .await;

        apply(
            &instances,
            &json!({"apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
                "metadata": {"name": "c"},
                "spec": {"destination": destination("c"), "paused": true,
                    "source": {"address": shared.env.address, "credentials": {"secretName": "late"},
                        "serverIdBase": i64::from(id) * 10 + 7},
                    "zookeeper": {"connect": zk::servers()}}}),
        )
        .await;

        step!(Step::Applied, async || {
            let instance = instances.get("a").await.ok()?;
            instance
                .finalizers()
                .iter()
                .any(|f| f == canal::operator::reconcile::FINALIZER)
                .then_some(())?;
            Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                .get_opt("a-config")
                .await
                .ok()??;
            let services = Api::<Service>::namespaced(client.clone(), &namespace);
            services.get_opt("a").await.ok()??;
            services.get_opt("a-members").await.ok()??;
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
                .get_opt("a")
                .await
                .ok()??;
            let set = statefulsets.get_opt("a").await.ok()??;
            block_owner_deletion = set
                .owner_references()
                .first()
                .map(|r| r.block_owner_deletion == Some(true));
            Some(())
        });
        step!(Step::Status, async || {
            let status = instances.get("a").await.ok()?.status?;
            (!status.conditions.is_empty()).then_some(())
        });
        step!(Step::Active, async || {
            let pod = pods.get_opt("a-0").await.ok()??;
            (pod.labels().get(ROLE_LABEL)? == ROLE_ACTIVE).then_some(())?;
            let active = instances.get("a").await.ok()?.status?.active_server?;
            (active.pod.as_deref() == Some("a-0")).then_some(())?;
            event("ActiveServerChanged", 0).await
        });

        // An edit by hand is repaired at once through a reconcile whose
        // reason is that very object: only the watch of its kind gives that
        // reason. (Any reconcile repairs it, so the edit comes once `a` has
        // settled; should another trigger still absorb it, the edit is
        // tried again.)
        let edit = async |kind: &str, name: &str| {
            let patch = |api_version: &str| {
                json!({"apiVersion": api_version, "kind": kind,
                    "metadata": {"name": name, "labels": {PART_OF: "edited"}}})
            };
            let params = PatchParams::apply("rbac-test-edit").force();
            let result = match kind {
                "ConfigMap" => Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                    .patch(name, &params, &Patch::Apply(patch("v1")))
                    .await
                    .map(|_| ()),
                "Service" => Api::<Service>::namespaced(client.clone(), &namespace)
                    .patch(name, &params, &Patch::Apply(patch("v1")))
                    .await
                    .map(|_| ()),
                "PodDisruptionBudget" => {
                    Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
                        .patch(name, &params, &Patch::Apply(patch("policy/v1")))
                        .await
                        .map(|_| ())
                }
                "StatefulSet" => statefulsets
                    .patch(name, &params, &Patch::Apply(patch("apps/v1")))
                    .await
                    .map(|_| ()),
                // The active label taken off.
                _ => pods
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"metadata": {"labels": {ROLE_LABEL: null}}})),
                    )
                    .await
                    .map(|_| ()),
            };
            result.unwrap_or_else(|e| panic!("cannot edit {kind} {name}: {e}"));
        };
        let repaired = async |kind: &str, name: &str| -> Option<()> {
            let labels = match kind {
                "ConfigMap" => {
                    Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                        .get(name)
                        .await
                        .ok()?
                        .metadata
                        .labels
                }
                "Service" => {
                    Api::<Service>::namespaced(client.clone(), &namespace)
                        .get(name)
                        .await
                        .ok()?
                        .metadata
                        .labels
                }
                "PodDisruptionBudget" => {
                    Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
                        .get(name)
                        .await
                        .ok()?
                        .metadata
                        .labels
                }
                "StatefulSet" => statefulsets.get(name).await.ok()?.metadata.labels,
                _ => {
                    let labels = pods.get(name).await.ok()?.metadata.labels?;
                    return (labels.get(ROLE_LABEL)? == ROLE_ACTIVE).then_some(());
                }
            }?;
            (labels.get(PART_OF)? == "canal").then_some(())
        };
        for (step, kind, reference, name) in [
            (
                Step::ConfigMapRepaired,
                "ConfigMap",
                "ConfigMap.v1.",
                "a-config",
            ),
            (Step::ServiceRepaired, "Service", "Service.v1.", "a"),
            (
                Step::PodDisruptionBudgetRepaired,
                "PodDisruptionBudget",
                "PodDisruptionBudget.v1.policy",
                "a",
            ),
            (
                Step::StatefulSetRepaired,
                "StatefulSet",
                "StatefulSet.v1.apps",
                "a",
            ),
            (Step::PodLabelRepaired, "Pod", "Pod.v1.", "a-0"),
        ] {
            if progress.blocked(step).is_some() {
                continue;
            }
            let reason = format!("related object updated: {reference}/{name}.{namespace}");
            let mut attempts = 0;
            let through_watch = loop {
                attempts += 1;
                if attempts > REPAIR_ATTEMPTS || !settle("a").await {
                    break false;
                }
                let before = triggered_by(&operator.log(), &reason);
                edit(kind, name).await;
                let seen = async || triggered_by(&operator.log(), &reason) > before;
                let outcome = within(wait(step), async || {
                    if seen().await {
                        return Some(true);
                    }
                    repaired(kind, name).await?;
                    // Repaired by a reconcile for another reason: its own
                    // may still be queued behind it.
                    tokio::time::sleep(QUIET).await;
                    Some(seen().await)
                })
                .await;
                match outcome {
                    Some(true) => {
                        break within(PASS_WAIT, async || repaired(kind, name).await)
                            .await
                            .is_some();
                    }
                    Some(false) => continue,
                    None => break false,
                }
            };
            progress.record(step, through_watch, &format!(" ({attempts})"));
        }

        // A changed pod template (a restart nonce) is rolled out: the
        // operator evicts a-0, the StatefulSet controller recreates it.
        if progress.blocked(Step::RolledOut).is_none() {
            let before = pods.get("a-0").await.ok().and_then(|p| p.metadata.uid);
            let patched = instances
                .patch(
                    "a",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"restartNonce": "rolled"}})),
                )
                .await;
            let rolled = patched.is_ok()
                && within(wait(Step::RolledOut), async || {
                    let pod = pods.get_opt("a-0").await.ok()??;
                    (pod.metadata.uid != before
                        && pod.metadata.deletion_timestamp.is_none()
                        && pod
                            .metadata
                            .annotations
                            .as_ref()?
                            .get(RESTART_ANNOTATION)
                            .is_some_and(|n| n == "rolled"))
                    .then_some(())
                })
                .await
                .is_some();
            progress.record(Step::RolledOut, rolled, "");
        }

        // The Secret watch triggers reconciles with no reason of their own
        // (as ZooKeeper's do): instance `c` waits for a Secret that does not
        // exist yet, with nothing else to trigger it (paused: no children, no
        // pods, no servers in ZooKeeper). Once it has settled after a
        // reconcile (the 30 s resync far off), the Secret is created.
        let missing = async || {
            let status = instances.get("c").await.ok()?.status?;
            status
                .conditions
                .iter()
                .any(|c| c.reason == "SecretMissing" && c.status == "True")
                .then_some(())
        };
        if progress.blocked(Step::SecretNoticed).is_none() {
            let waiting = within(PASS_WAIT, missing).await.is_some() && settle("c").await;
            let noticed = waiting
                && {
                    apply(
                    &secrets,
                    &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late"},
                        "stringData": {"username": shared.env.user, "password": shared.env.password}}),
                )
                .await;
                    within(wait(Step::SecretNoticed), async || {
                        let status = instances.get("c").await.ok()?.status?;
                        (!status.conditions.is_empty()
                            && status
                                .conditions
                                .iter()
                                .all(|c| c.reason != "SecretMissing"))
                        .then_some(())
                    })
                    .await
                    .is_some()
                };
            progress.record(Step::SecretNoticed, noticed, "");
        }
        step!(Step::CursorReset, async || {
            let reset = instances.get("b").await.ok()?.status?.cursor_reset?;
            (reset.nonce == NONCE).then_some(())
        });

        // A pod of the instance that its StatefulSet does not own (and no
        // kubelet runs) keeps the cleanup waiting until it is deleted.
        let blocker = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a-blocker", "labels": {
                "app.kubernetes.io/name": "canal-server", "app.kubernetes.io/instance": "a"}},
            "spec": {"containers": [{"name": "c", "image": "none"}]}});
        apply(&pods, &blocker).await;
        instances
            .delete("a", &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("cannot delete instance a: {e}"));
        step!(Step::StatefulSetDeleted, async || {
            match statefulsets.get_opt("a").await.ok()? {
                None => Some(()),
                Some(set) => set.metadata.deletion_timestamp.map(|_| ()),
            }
        });
        step!(Step::EventSeries, async || event("WaitingForPods", 2).await);
        pods.delete("a-blocker", &DeleteParams::default().grace_period(0))
            .await
            .unwrap_or_else(|e| panic!("cannot delete pod a-blocker: {e}"));
        step!(Step::Finalized, async || {
            instances.get_opt("a").await.ok()?.is_none().then_some(())
        });
    }

    // stop() blocks (up to 10 s): not on the thread polling every case.
    let operator = tokio::task::spawn_blocking(move || {
        operator.stop();
        operator
    })
    .await
    .unwrap();
    kubelet.shutdown().await;
    let zookeeper = zk::connect(&zk::servers(), Duration::from_secs(6)).await;
    for name in ["a", "b", "c"] {
        zk::delete_all(
            &zookeeper,
            &format!("{}/{}", zk::DESTINATIONS, destination(name)),
        )
        .await;
    }
    let (refused, block_owner_deletion_refused) = refusals(&operator.log());
    Observed {
        outcomes: progress.outcomes,
        refused,
        block_owner_deletion_refused,
        block_owner_deletion,
        log_path: operator.log_path.clone(),
        elapsed: started.elapsed(),
        timeline: progress.timeline,
    }
}

/// Whether this API server runs the OwnerReferencesPermissionEnforcement
/// admission plugin: a user without update on a CanalInstance's
/// finalizers creates a ConfigMap whose owner reference to it blocks owner
/// deletion.
async fn owner_references_enforced(plane: &ControlPlane) -> bool {
    let client = plane.client().await;
    let namespace = unique_namespace("rbac-probe");
    plane.ensure_namespace(&namespace).await;
    let user = format!("rbac-probe-{namespace}");
    apply(
        &Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(client.clone(), &namespace),
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "probe"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]}),
    )
    .await;
    apply(
        &Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), &namespace),
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "probe"},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "probe"}}),
    )
    .await;
    let instances: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    apply(
        &instances,
        &json!({"apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
            "metadata": {"name": "owner"},
            "spec": {"source": {"address": "127.0.0.1:3306", "credentials": {"secretName": "none"}},
                "zookeeper": {"connect": "127.0.0.1:2181"}}}),
    )
    .await;
    let uid = instances.get("owner").await.unwrap().uid().unwrap();
    let as_user: Api<ConfigMap> = Api::namespaced(plane.client_as(&user, &[]).await, &namespace);
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "owned", "ownerReferences": [{
            "apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance", "name": "owner",
            "uid": uid, "controller": true, "blockOwnerDeletion": true}]}}))
    .unwrap();
    let answer = within(PASS_WAIT, async || {
        match as_user.create(&PostParams::default(), &config_map).await {
            Ok(_) => Some(false),
            Err(kube::Error::Api(status)) if status.message.contains("blockOwnerDeletion") => {
                Some(true)
            }
            // The binding not visible yet.
            Err(_) => None,
        }
    })
    .await;
    answer.expect("the probe ConfigMap was neither created nor refused for blockOwnerDeletion")
}

// ---------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------

fn judge(case: &Case, observed: &Observed) -> Result<String, String> {
    let refused: Vec<String> = observed.refused.iter().map(ToString::to_string).collect();
    let refused = if refused.is_empty() {
        "nothing refused".to_owned()
    } else {
        format!("refused: {}", refused.join(", "))
    };
    let mut failed: Vec<String> = observed
        .outcomes
        .iter()
        .filter(|(_, outcome)| **outcome == Outcome::Failed)
        .map(|(step, _)| format!("{step} failed"))
        .collect();
    let skipped = observed
        .outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Skipped(_)))
        .count();
    if skipped > 0 {
        failed.push(format!("{skipped} later steps skipped"));
    }
    let all_passed = failed.is_empty();
    let failed = if all_passed {
        "all steps passed".to_owned()
    } else {
        failed.join(", ")
    };
    let seen = format!("{failed}; {refused}");
    match &case.expect {
        Expect::Pass { .. } => {
            if !all_passed || !observed.refused.is_empty() {
                return Err(format!("expected to pass, but: {seen}"));
            }
        }
        Expect::Fail { step, refused, .. } => {
            let named = refused.iter().any(|g| observed.refused.contains(g))
                || (observed.block_owner_deletion_refused
                    && refused.iter().any(|g| g.resource.ends_with("/finalizers")));
            if !named {
                let want: Vec<String> = refused.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "the log names none of [{}] as forbidden: {seen}",
                    want.join(", ")
                ));
            }
            match observed.outcomes.get(step) {
                Some(Outcome::Failed) => {}
                Some(Outcome::Passed) => {
                    return Err(format!(
                        "{step} passed without it: not needed, or needed for another step \
                         (fix need()): {seen}"
                    ));
                }
                Some(Outcome::Skipped(missing)) => {
                    return Err(format!(
                        "{step} could not be observed: {missing}, which it builds on, \
                         did not pass: {seen}"
                    ));
                }
                None => return Err(format!("{step} never ran: {seen}")),
            }
        }
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_rule_is_needed_and_together_they_suffice() {
    let Some(plane) = ControlPlane::shared("each_rule_is_needed").await else {
        return;
    };
    plane.install_crd().await;
    let manifest = load_manifest();
    let enforced = owner_references_enforced(plane).await;
    let mut cases = cases(&manifest, enforced);
    // CANAL_RBAC_CASES=pods,leases: only the cases whose name contains one
    // of these (and the baseline).
    if let Ok(filter) = std::env::var("CANAL_RBAC_CASES") {
        let words: Vec<&str> = filter.split(',').filter(|w| !w.is_empty()).collect();
        let mut index = 0;
        cases.retain(|case| {
            index += 1;
            index == 1 || words.iter().any(|w| case.name.contains(w))
        });
    }
    eprintln!(
        "RBAC of {} (ClusterRole {}, Role {}): {} cases, OwnerReferencesPermissionEnforcement {}",
        manifest
            .path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&manifest.path)
            .display(),
        manifest.cluster_role,
        manifest.lease_role,
        cases.len(),
        if enforced { "on" } else { "off" },
    );
    let shared = Shared {
        plane,
        manifest,
        env: LiveEnv::get(),
    };

    // Side by side in this task (the futures are not Send); each case's
    // kubelet and clients run on the runtime's threads.
    let started = Instant::now();
    let observed: BTreeMap<usize, Observed> = futures_util::stream::iter(0..cases.len())
        .map(|index| {
            let (shared, cases) = (&shared, &cases);
            async move { (index, run_case(shared, &cases[index]).await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    // The table.
    let mut problems = Vec::new();
    let mut table = String::from("\nremoved → expected → observed\n");
    for (index, case) in cases.iter().enumerate() {
        let outcome = &observed[&index];
        let expected = match &case.expect {
            Expect::Pass { why } => format!("pass ({why})"),
            Expect::Fail { step, effect, .. } => format!("{step} fails: {effect}"),
        };
        let verdict = judge(case, outcome);
        let (mark, seen) = match &verdict {
            Ok(seen) => ("ok  ", seen.clone()),
            Err(why) => ("FAIL", why.clone()),
        };
        table.push_str(&format!(
            "{mark} {}\n       expected: {expected}\n       observed: {seen} [{:.0} s]\n",
            case.name,
            outcome.elapsed.as_secs_f64()
        ));
        if let Err(why) = verdict {
            problems.push(format!(
                "{}: {why}; steps passed (s since the case began): {}; operator log: {}",
                case.name.trim(),
                outcome.timeline.join(", "),
                outcome.log_path.display()
            ));
        }
    }
    let not_needed: Vec<&str> = cases
        .iter()
        .filter(|c| {
            matches!(c.expect, Expect::Pass { .. }) && !matches!(c.removal, Removal::Nothing)
        })
        .map(|c| c.name.trim())
        .collect();
    table.push_str(&format!(
        "{} cases in {:.0} s; granted but not needed: {}\n",
        cases.len(),
        started.elapsed().as_secs_f64(),
        if not_needed.is_empty() {
            "none".to_owned()
        } else {
            not_needed.join(", ")
        }
    ));
    eprintln!("{table}");

    // What canalinstances/finalizers update would be for: owner references
    // that block owner deletion (checked only where the
    // OwnerReferencesPermissionEnforcement admission plugin runs).
    let blocks = observed[&0].block_owner_deletion;
    eprintln!(
        "the StatefulSet's owner reference: blockOwnerDeletion {}{}",
        match blocks {
            Some(true) => "true",
            Some(false) => "unset",
            None => "unknown (no StatefulSet)",
        },
        if blocks == Some(false) {
            ": canalinstances/finalizers update is not needed even where that admission plugin runs"
        } else {
            ""
        }
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
