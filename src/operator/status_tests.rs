use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::operator::crd::CanalInstance;

fn instance() -> CanalInstance {
    let text = include_str!("../../tests/fixtures/operator/orders.yaml");
    let mut instance: CanalInstance = serde_saphyr::from_str(text).unwrap();
    instance.metadata.generation = Some(3);
    instance
}

fn statefulset(replicas: i32, ready: i32, updated: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            generation: Some(7),
            ..Default::default()
        },
        spec: None,
        status: Some(StatefulSetStatus {
            observed_generation: Some(7),
            replicas,
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            ..Default::default()
        }),
    }
}

fn pods() -> Vec<PodAddress> {
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
}

fn cursor(id: &str, journal: &str, position: i64, timestamp: i64) -> ClientCursorStatus {
    ClientCursorStatus {
        client_id: id.into(),
        journal_name: Some(journal.into()),
        position: Some(position),
        gtid: None,
        timestamp: Some(timestamp),
        error: None,
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn seen() -> ZkState {
    ZkState::Seen(ZkFacts {
        running: Some((
            "10.1.0.6:11111".into(),
            Timestamp::from_second(1_799_999_000).unwrap(),
        )),
        members: vec!["10.1.0.5:11111".into(), "10.1.0.6:11111".into()],
        cursors: vec![
            cursor("1001", "mysql-bin.000004", 120, 1_799_999_990_000),
            cursor("1002", "mysql-bin.000003", 999, 1_799_999_900_000),
        ],
    })
}

fn observe<'a>(sts: Option<&'a StatefulSet>, pods: &'a [PodAddress], zk: ZkState) -> Observed<'a> {
    Observed {
        outcome: Outcome::Applied,
        statefulset: sts,
        pods,
        zookeeper: zk,
        config_hash: Some("h1".into()),
        cursor_reset: None,
        label_selector: "app=x".into(),
        now: now(),
    }
}

fn condition<'a>(status: &'a CanalInstanceStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"))
}

#[test]
fn a_healthy_instance_reports_its_active_pod_and_slowest_cursor() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let status = desired_status(&instance(), &observe(Some(&sts), &pods, seen()));
    let active = status.active_server.as_ref().unwrap();
    assert_eq!(active.pod.as_deref(), Some("orders-1"));
    assert_eq!(active.address, "10.1.0.6:11111");
    assert_eq!(status.members.len(), 2);
    assert_eq!(status.members[0].pod.as_deref(), Some("orders-0"));
    assert_eq!(status.binlog.as_deref(), Some("mysql-bin.000003:999"));
    assert_eq!(status.binlog_lag_seconds, Some(100));
    assert_eq!(status.replicas_summary.as_deref(), Some("2/2"));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(condition(&status, READY).status, "True");
    assert_eq!(condition(&status, DEGRADED).status, "False");
    assert_eq!(condition(&status, PROGRESSING).status, "False");
    assert_eq!(condition(&status, PAUSED).status, "False");
    assert_eq!(condition(&status, RECONCILING).status, "False");
    assert_eq!(condition(&status, STALLED).status, "False");
    for c in &status.conditions {
        assert_eq!(c.observed_generation, Some(3), "{}", c.type_);
        assert!(!c.reason.is_empty() && !c.message.is_empty(), "{}", c.type_);
    }
}

#[test]
fn every_condition_is_set_on_the_first_reconcile() {
    let pods = [];
    let status = desired_status(&instance(), &observe(None, &pods, ZkState::Connecting));
    for type_ in [READY, PROGRESSING, DEGRADED, PAUSED] {
        condition(&status, type_);
    }
    assert_eq!(condition(&status, PROGRESSING).reason, "Creating");
    assert_eq!(condition(&status, READY).status, "False");
}

#[test]
fn unchanged_facts_give_an_identical_status() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let mut instance = instance();
    let first = desired_status(&instance, &observe(Some(&sts), &pods, seen()));
    instance.status = Some(first.clone());
    let mut later = observe(Some(&sts), &pods, seen());
    later.now = now();
    let second = desired_status(&instance, &later);
    assert!(!differs(Some(&first), &second), "{first:#?}\n{second:#?}");
}

#[test]
fn transition_times_move_only_when_a_condition_flips() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let mut instance = instance();
    let first = desired_status(&instance, &observe(Some(&sts), &pods, seen()));
    instance.status = Some(first.clone());
    let mut later = observe(Some(&sts), &pods, ZkState::Seen(ZkFacts::default()));
    later.now = Timestamp::from_second(1_800_000_100).unwrap();
    let second = desired_status(&instance, &later);
    assert_eq!(condition(&second, READY).status, "False");
    assert_eq!(condition(&second, READY).reason, "NoActiveServer");
    assert_ne!(
        condition(&second, READY).last_transition_time,
        condition(&first, READY).last_transition_time
    );
    assert_eq!(
        condition(&second, DEGRADED).last_transition_time,
        condition(&first, DEGRADED).last_transition_time
    );
}

#[test]
fn a_rollout_is_progressing() {
    let sts = statefulset(2, 1, 1);
    let pods = pods();
    let status = desired_status(&instance(), &observe(Some(&sts), &pods, seen()));
    let progressing = condition(&status, PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "RollingOut")
    );
    assert_eq!(
        condition(&status, READY).status,
        "True",
        "the active server still serves"
    );
}

#[test]
fn invalid_spec_and_unreachable_zookeeper_degrade() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let mut observed = observe(Some(&sts), &pods, seen());
    observed.outcome = Outcome::Invalid {
        reason: "SecretMissing",
        message: "spec.source.credentials: Secret shop/x does not exist".into(),
    };
    let status = desired_status(&instance(), &observed);
    let degraded = condition(&status, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SecretMissing")
    );
    assert_eq!(condition(&status, READY).status, "False");

    let mut instance = instance();
    instance.status = Some(desired_status(
        &instance,
        &observe(Some(&sts), &pods, seen()),
    ));
    let status = desired_status(
        &instance,
        &observe(
            Some(&sts),
            &pods,
            ZkState::Unreachable("connection refused".into()),
        ),
    );
    assert_eq!(condition(&status, DEGRADED).reason, "ZooKeeperUnreachable");
    assert_eq!(
        status.active_server.as_ref().map(|a| a.address.as_str()),
        Some("10.1.0.6:11111"),
        "the last known active server stays visible"
    );
}

#[test]
fn a_refused_apply_degrades_but_does_not_stall() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let mut observed = observe(Some(&sts), &pods, seen());
    observed.outcome = Outcome::ApplyFailed {
        message: "the API server refused a child: admission webhook denied it".into(),
    };
    let status = desired_status(&instance(), &observed);
    let degraded = condition(&status, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ApplyFailed")
    );
    assert_eq!(
        condition(&status, STALLED).status,
        "False",
        "the operator retries a refused apply: nothing waits for a human yet"
    );
    assert_eq!(condition(&status, READY).reason, "ApplyFailed");

    observed.outcome = Outcome::Invalid {
        reason: "InvalidSpec",
        message: "spec.replicas: must be at least 0".into(),
    };
    let status = desired_status(&instance(), &observed);
    let stalled = condition(&status, STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "InvalidSpec")
    );
}

#[test]
fn paused_and_cursor_reset_are_reported() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let mut observed = observe(Some(&sts), &pods, seen());
    observed.outcome = Outcome::Paused;
    observed.cursor_reset = Some(CursorResetResult::Applied(AppliedCursorReset {
        nonce: "n1".into(),
        applied_at: "2027-01-15T08:00:00Z".into(),
        client_ids: vec!["1001".into()],
        succeeded: true,
        message: None,
    }));
    let mut instance = instance();
    instance.spec.paused = true;
    let status = desired_status(&instance, &observed);
    assert_eq!(condition(&status, PAUSED).status, "True");
    let reset = condition(&status, CURSOR_RESET);
    assert_eq!(reset.status, "True");
    assert!(reset.message.contains("1001"), "{}", reset.message);
    assert_eq!(status.cursor_reset.as_ref().unwrap().nonce, "n1");

    // Later reconciles keep the condition and the applied nonce.
    instance.status = Some(status.clone());
    let later = desired_status(&instance, &observe(Some(&sts), &pods, seen()));
    assert_eq!(condition(&later, CURSOR_RESET).message, reset.message);
    assert_eq!(later.cursor_reset, status.cursor_reset);
}

#[test]
fn an_address_without_a_pod_is_still_reported() {
    let sts = statefulset(2, 2, 2);
    let pods = [];
    let status = desired_status(&instance(), &observe(Some(&sts), &pods, seen()));
    let active = status.active_server.unwrap();
    assert_eq!(
        (active.address.as_str(), active.pod),
        ("10.1.0.6:11111", None)
    );
}

#[test]
fn an_operator_restart_keeps_ready_while_zookeeper_connects() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let mut instance = instance();
    let first = desired_status(&instance, &observe(Some(&sts), &pods, seen()));
    instance.status = Some(first.clone());
    let restarted = desired_status(&instance, &observe(Some(&sts), &pods, ZkState::Connecting));
    assert_eq!(condition(&restarted, READY).status, "True");
    assert_eq!(
        condition(&restarted, READY).last_transition_time,
        condition(&first, READY).last_transition_time
    );
    // A pod name now on another IP is not the active server any more.
    let moved = vec![
        PodAddress {
            name: "orders-0".into(),
            ip: "10.1.0.5".into(),
        },
        PodAddress {
            name: "orders-1".into(),
            ip: "10.1.0.9".into(),
        },
    ];
    let later = desired_status(&instance, &observe(Some(&sts), &moved, ZkState::Connecting));
    assert_eq!(later.active_server.unwrap().pod, None);
}

#[test]
fn a_failed_reset_is_recorded_so_the_nonce_is_not_retried() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let mut observed = observe(Some(&sts), &pods, seen());
    observed.outcome = Outcome::Paused;
    observed.cursor_reset = Some(CursorResetResult::Failed {
        nonce: "n2".into(),
        message: "no client has a cursor".into(),
    });
    let status = desired_status(&instance(), &observed);
    let recorded = status.cursor_reset.unwrap();
    assert_eq!((recorded.nonce.as_str(), recorded.succeeded), ("n2", false));
    assert_eq!(recorded.message.as_deref(), Some("no client has a cursor"));
    assert_eq!(
        condition_status(&status.conditions, CURSOR_RESET),
        Some("False")
    );
}

fn condition_status<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[test]
fn paused_follows_the_spec_even_when_the_spec_is_invalid() {
    let sts = statefulset(2, 2, 2);
    let pods = pods();
    let mut instance = instance();
    instance.spec.paused = true;
    let mut observed = observe(Some(&sts), &pods, seen());
    observed.outcome = Outcome::Invalid {
        reason: "InvalidSpec",
        message: "spec.server.extraProperties: x".into(),
    };
    let status = desired_status(&instance, &observed);
    assert_eq!(condition(&status, PAUSED).status, "True");
}

#[test]
fn reconciling_while_rolling_out_or_waiting_for_a_leader() {
    let rolling = statefulset(2, 1, 1);
    let pods = pods();
    let status = desired_status(&instance(), &observe(Some(&rolling), &pods, seen()));
    assert_eq!(condition(&status, RECONCILING).status, "True");
    let settled = statefulset(2, 2, 2);
    let waiting = desired_status(
        &instance(),
        &observe(Some(&settled), &pods, ZkState::Seen(ZkFacts::default())),
    );
    assert_eq!(condition(&waiting, RECONCILING).reason, "Progressing");
    assert_eq!(condition(&waiting, STALLED).status, "False");
}

fn pod_counts(desired: i32, replicas: i32, ready: i32, updated: i32) -> PodCounts {
    PodCounts::of(Some(&statefulset(replicas, ready, updated)), desired)
}

fn verdict(v: &Verdict) -> (bool, &str, &str) {
    (v.holds, v.reason, v.message.as_str())
}

#[test]
fn pod_counts_roll_until_every_pod_is_updated_and_ready() {
    assert!(!pod_counts(2, 2, 2, 2).rolling());
    assert!(pod_counts(2, 2, 1, 2).rolling());
    assert!(pod_counts(2, 2, 2, 1).rolling());
    assert!(pod_counts(3, 2, 2, 2).rolling());
    let mut unseen = statefulset(2, 2, 2);
    unseen.metadata.generation = Some(8);
    assert!(PodCounts::of(Some(&unseen), 2).rolling());
    assert!(!PodCounts::of(None, 2).rolling(), "nothing to roll yet");
}

#[test]
fn degraded_names_the_most_pressing_problem() {
    let unready = pod_counts(2, 2, 0, 2);
    let invalid = Outcome::Invalid {
        reason: "InvalidSpec",
        message: "spec.x".into(),
    };
    let unreachable = ZkState::Unreachable("refused".into());
    let problem = degraded(&invalid, &unreachable, &unready);
    assert_eq!(problem, Some(Problem::new("InvalidSpec", "spec.x")));
    let problem = degraded(&Outcome::Applied, &unreachable, &unready);
    assert_eq!(
        problem,
        Some(Problem::new(
            "ZooKeeperUnreachable",
            "ZooKeeper cannot be read: refused"
        ))
    );
    let problem = degraded(&Outcome::Applied, &seen(), &unready);
    assert_eq!(
        problem.map(|p| p.message),
        Some("none of the 2 pods is ready; see their events and logs".to_owned())
    );
    assert_eq!(
        degraded(&Outcome::Applied, &seen(), &pod_counts(0, 2, 0, 2)),
        None,
        "scaling to zero is no problem"
    );
    assert_eq!(
        verdict(&degraded_condition(None)),
        (false, "AsExpected", "nothing needs attention")
    );
}

#[test]
fn progressing_tells_creating_from_rolling_out_from_settled() {
    let creating = progressing_condition(&Outcome::Applied, &PodCounts::of(None, 2));
    assert_eq!(
        verdict(&creating),
        (true, "Creating", "the StatefulSet is being created")
    );
    let rolling = progressing_condition(&Outcome::Applied, &pod_counts(2, 2, 1, 1));
    assert_eq!(
        verdict(&rolling),
        (true, "RollingOut", "1 of 2 pods updated, 1 ready")
    );
    let paused = progressing_condition(&Outcome::Paused, &pod_counts(2, 2, 1, 1));
    assert_eq!(
        verdict(&paused),
        (false, "Settled", "1 of 2 pods ready at the current spec")
    );
}

#[test]
fn paused_follows_the_flag() {
    assert_eq!(paused_condition(true).reason, "Paused");
    assert_eq!(
        verdict(&paused_condition(false)),
        (false, "Reconciling", "changes to the spec are applied")
    );
}

#[test]
fn ready_needs_an_active_server_and_no_problem_but_unready_pods() {
    let server = ActiveServer {
        address: "10.1.0.6:11111".into(),
        pod: Some("orders-1".into()),
        since: None,
    };
    let unready = Problem::new("NoReadyPods", "none ready");
    assert_eq!(
        verdict(&ready_condition(None, Some(&server), 2)),
        (true, "Active", "orders-1 is serving the destination")
    );
    assert_eq!(
        ready_condition(Some(&unready), Some(&server), 2).reason,
        "Active",
        "an active server still serves while its pod restarts"
    );
    assert_eq!(
        ready_condition(Some(&unready), None, 2).reason,
        "NoReadyPods"
    );
    assert_eq!(
        ready_condition(Some(&Problem::new("ApplyFailed", "x")), Some(&server), 2).reason,
        "ApplyFailed"
    );
    assert_eq!(
        ready_condition(None, Some(&server), 0).reason,
        "ScaledToZero"
    );
    let unnamed = ActiveServer {
        pod: None,
        ..server
    };
    assert_eq!(
        ready_condition(None, Some(&unnamed), 2).message,
        "10.1.0.6:11111 is serving the destination"
    );
    assert_eq!(ready_condition(None, None, 2).reason, "NoActiveServer");
}

#[test]
fn only_an_invalid_spec_stalls() {
    let invalid = Outcome::Invalid {
        reason: "SecretMissing",
        message: "spec.source.credentials".into(),
    };
    assert_eq!(
        verdict(&stalled_condition(stalled(&invalid).as_ref())),
        (true, "SecretMissing", "spec.source.credentials")
    );
    let refused = Outcome::ApplyFailed {
        message: "denied".into(),
    };
    assert_eq!(stalled(&refused), None);
    assert_eq!(
        verdict(&stalled_condition(None)),
        (false, "AsExpected", "nothing blocks reconciliation")
    );
}

#[test]
fn reconciling_while_rolling_out_or_waiting_and_not_when_blocked() {
    let settled = pod_counts(2, 2, 2, 2);
    let rolling = pod_counts(2, 2, 1, 1);
    let applied = &Outcome::Applied;
    assert_eq!(
        reconciling_condition(applied, &rolling, false, true, false).message,
        "the StatefulSet is rolling out"
    );
    assert_eq!(
        reconciling_condition(applied, &settled, false, false, false).message,
        "waiting for a server to take the destination"
    );
    for (paused, stalled) in [(true, false), (false, true)] {
        assert_eq!(
            verdict(&reconciling_condition(
                applied, &settled, paused, false, stalled
            )),
            (false, "Settled", "the instance is at its spec")
        );
    }
}

#[test]
fn cursor_reset_condition_names_the_nonce_and_the_clients() {
    let applied = |client_ids: Vec<String>| {
        CursorResetResult::Applied(AppliedCursorReset {
            nonce: "n1".into(),
            applied_at: "2027-01-15T08:00:00Z".into(),
            client_ids,
            succeeded: true,
            message: None,
        })
    };
    assert_eq!(
        cursor_reset_condition(&applied(vec!["1001".into(), "1002".into()])).message,
        "nonce n1: moved 1001, 1002 to the requested position"
    );
    assert_eq!(
        cursor_reset_condition(&applied(Vec::new())).message,
        "nonce n1: moved no client (none had a cursor) to the requested position"
    );
    let failed = CursorResetResult::Failed {
        nonce: "n2".into(),
        message: "no client".into(),
    };
    assert_eq!(
        verdict(&cursor_reset_condition(&failed)),
        (false, "Failed", "nonce n2: no client")
    );
}

#[test]
fn a_transition_time_moves_only_when_the_status_flips() {
    let earlier = Timestamp::from_second(1_700_000_000).unwrap();
    let old = Verdict::new(READY, true, "Active", "x").stamp(&[], Some(1), earlier);
    let same =
        Verdict::new(READY, true, "Active", "y").stamp(std::slice::from_ref(&old), Some(2), now());
    assert_eq!(same.last_transition_time, Time(earlier));
    assert_eq!(
        (same.message.as_str(), same.observed_generation),
        ("y", Some(2))
    );
    let flipped = Verdict::new(READY, false, "NoActiveServer", "z").stamp(&[old], Some(2), now());
    assert_eq!(flipped.last_transition_time, Time(now()));
}

#[test]
fn addresses_find_their_pod_and_cursors_their_lag() {
    let pods = pods();
    assert_eq!(pod_of(&pods, "10.1.0.5:11111").as_deref(), Some("orders-0"));
    assert_eq!(
        pod_of(&pods, "[10.1.0.6]:11111").as_deref(),
        Some("orders-1")
    );
    assert_eq!(pod_of(&pods, "10.1.0.7:11111"), None);
    let behind = cursor("1", "mysql-bin.000001", 4, now().as_millisecond() - 2_500);
    assert_eq!(lag_seconds(&behind, now()), Some(2));
    let ahead = cursor("1", "mysql-bin.000001", 4, now().as_millisecond() + 5_000);
    assert_eq!(lag_seconds(&ahead, now()), Some(0), "clocks differ");
    assert_eq!(lag_seconds(&cursor("1", "f", 4, 0), now()), None);
    assert_eq!(
        binlog_position(&behind).as_deref(),
        Some("mysql-bin.000001:4")
    );
    let gtid_only = ClientCursorStatus {
        position: None,
        ..behind
    };
    assert_eq!(binlog_position(&gtid_only), None);
}
