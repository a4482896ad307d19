//! End to end: the operator on a real API server, the kubelet stand-in
//! running real canal-server processes as the pods, MariaDB and ZooKeeper.
//! Rows reach a client through the active Service (resolved as kube-proxy
//! would: the ready pods its selector matches; the endpointslice
//! controller refuses the stand-in's loopback pod IPs); the status matches
//! ZooKeeper; killing the active process moves the status and the Service
//! to the new leader.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use canal::client::cluster::active_server;
use canal::operator::crd::CanalInstance;
use common::k8s::{ControlPlane, FIELD_MANAGER, unique_namespace, wait_api};
use common::kubelet::{Kubelet, Signal};
use common::operator::OperatorProcess;
use common::rows::receive;
use common::scene::LiveSchema;
use common::zk;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use mysql_async::prelude::Queryable;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The ready pod IPs Service `name` routes to: its selector over the
/// namespace's pods, as the endpoints controller and kube-proxy see it.
async fn service_endpoints(services: &Api<Service>, pods: &Api<Pod>, name: &str) -> Vec<String> {
    let Ok(service) = services.get(name).await else {
        return Vec::new();
    };
    let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
    if selector.is_empty() {
        return Vec::new();
    }
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let Ok(list) = pods
        .list(&ListParams::default().labels(&labels.join(",")))
        .await
    else {
        return Vec::new();
    };
    let mut addresses: Vec<String> = list
        .items
        .into_iter()
        .filter(|pod| {
            pod.metadata.deletion_timestamp.is_none()
                && pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|pod| pod.status?.pod_ip)
        .collect();
    addresses.sort();
    addresses
}

#[tokio::test]
async fn rows_flow_through_the_active_service_and_follow_a_failover() {
    let Some(plane) = ControlPlane::shared("rows_flow_through_the_active_service").await else {
        return;
    };
    plane.install_crd().await;
    let namespace = unique_namespace("e2e");
    plane.ensure_namespace(&namespace).await;
    let client = plane.client().await;
    let kubelet = Kubelet::start(client.clone(), &namespace);
    let operator = OperatorProcess::start(plane, &namespace);

    let live = LiveSchema::create("e2e", &["items (id INT PRIMARY KEY, note VARCHAR(40))"]).await;
    let (env, schema, id) = (&live.env, &live.name, live.server_id);
    let (journal_name, position) = live.file_position();
    let insert = async |ids: std::ops::RangeInclusive<i32>| {
        let mut conn = env.root().await;
        for id in ids {
            conn.query_drop(format!(
                "INSERT INTO `{schema}`.items VALUES ({id}, 'row {id}')"
            ))
            .await
            .unwrap();
        }
    };

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "replication"},
        "stringData": {"username": env.user, "password": env.password}});
    secrets
        .patch(
            "replication",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let destination = format!("e2e{id}");
    let object = json!({
        "apiVersion": "canal.otter.dev/v1alpha1", "kind": "CanalInstance",
        "metadata": {"name": "orders"},
        "spec": {
            "destination": destination,
            "source": {
                "address": env.address,
                "credentials": {"secretName": "replication"},
                "serverIdBase": i64::from(id) * 10,
                "start": {"journalName": journal_name, "position": position},
            },
            "zookeeper": {"connect": zk::servers()},
            "filter": {"include": [format!("{schema}\\..*")]},
        },
    });
    let instances: Api<CanalInstance> = Api::namespaced(client.clone(), &namespace);
    instances
        .patch(
            "orders",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();

    // The status names the active pod, and the active Service routes to it alone.
    let zookeeper = zk::connect(&zk::servers(), Duration::from_secs(6)).await;
    let (first_pod, first_ip) = wait_api("Ready with an active pod", WAIT, async || {
        let instance = instances.get("orders").await.ok()?;
        let status = instance.status?;
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let active = status.active_server?;
        let pod = active.pod?;
        ready.then_some((pod, active.address))
    })
    .await;
    let running = active_server(&zookeeper, &destination)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        running, first_ip,
        "status.activeServer.address is ZooKeeper's running node"
    );
    let first_pod_ip = kubelet.pod_ip(&first_pod).unwrap();
    assert_eq!(first_ip, format!("{first_pod_ip}:11111"));

    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let endpoints = wait_api("the active Service's endpoint", WAIT, async || {
        let endpoints = service_endpoints(&services, &pods, "orders").await;
        (endpoints == [first_pod_ip.to_string()]).then_some(endpoints)
    })
    .await;

    insert(1..=3).await;
    let address = format!("{}:11111", endpoints[0]);
    receive(&address, &destination, schema, &[1, 2, 3]).await;

    // status.cursors follows the client's acknowledged cursor in ZooKeeper.
    let cursor_path = format!("/otter/canal/destinations/{destination}/1001/cursor");
    let status_cursor = wait_api("status.cursors to match ZooKeeper", WAIT, async || {
        let (data, _) = zookeeper.get_data(&cursor_path).await.ok()?;
        let record = canal::cursor::json::parse(&data).ok()?;
        let instance = instances.get("orders").await.ok()?;
        let status = instance.status?;
        let cursor = status.cursors.into_iter().find(|c| c.client_id == "1001")?;
        let matches = cursor.journal_name.as_deref() == Some(record.position.journal_name.as_str())
            && cursor.position == Some(record.position.position as i64)
            && status.binlog
                == Some(format!(
                    "{}:{}",
                    record.position.journal_name, record.position.position
                ));
        matches.then_some(cursor)
    })
    .await;
    assert!(status_cursor.timestamp.is_some_and(|t| t > 0));

    // Freeze the active process (a hung server or a partitioned node; a
    // killed one is restarted in place by the kubelet and may win again):
    // its session expires, the other pod takes over, and the status and the
    // active Service follow it.
    let killed_at = Instant::now();
    assert!(kubelet.kill_process(&first_pod, Signal::Stop));
    let (second_pod, second_address) =
        wait_api("a new active pod in the status", WAIT, async || {
            let instance = instances.get("orders").await.ok()?;
            let active = instance.status?.active_server?;
            let pod = active.pod?;
            (pod != first_pod).then_some((pod, active.address))
        })
        .await;
    let status_after = killed_at.elapsed();
    let running = active_server(&zookeeper, &destination)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running, second_address);
    let second_ip: Ipv4Addr = kubelet.pod_ip(&second_pod).unwrap();
    let since = instances
        .get("orders")
        .await
        .unwrap()
        .status
        .unwrap()
        .active_server
        .unwrap()
        .since;
    let since: k8s_openapi::jiff::Timestamp = since.unwrap().parse().unwrap();
    let lag_after_lock = k8s_openapi::jiff::Timestamp::now().duration_since(since);
    wait_api("the active Service to follow", WAIT, async || {
        (service_endpoints(&services, &pods, "orders").await == [second_ip.to_string()])
            .then_some(())
    })
    .await;
    let service_after = killed_at.elapsed();
    eprintln!(
        "failover: status after {:.2} s, Service after {:.2} s (session timeout 6 s); \
         status seen {:.2} s after the new leader took the lock",
        status_after.as_secs_f64(),
        service_after.as_secs_f64(),
        lag_after_lock.as_secs_f64()
    );
    // The frozen server resumes fenced: it must not take the destination back.
    assert!(kubelet.kill_process(&first_pod, Signal::Cont));

    // Rows written after the failover arrive through the Service, resuming
    // from the acknowledged cursor.
    insert(4..=6).await;
    let seen = receive(
        &format!("{second_ip}:11111"),
        &destination,
        schema,
        &[4, 5, 6],
    )
    .await;
    assert!(
        !seen.contains(&"1".to_owned()),
        "acknowledged rows came back: {seen:?}"
    );

    // The failover is an Event and a metric.
    let metrics = operator.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("canal_operator_active_server_changes_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), &namespace);
    wait_api("an ActiveServerChanged event", WAIT, async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("ActiveServerChanged")
                    && e.note.as_deref().is_some_and(|n| n.contains(&second_pod))
            })
            .map(|_| ())
    })
    .await;

    // A cursor reset while paused: back to the start, reported in a
    // condition, and the rows are delivered again.
    let patch = |value: serde_json::Value| {
        let instances = instances.clone();
        async move {
            instances
                .patch("orders", &PatchParams::default(), &Patch::Merge(&value))
                .await
                .unwrap();
        }
    };
    patch(json!({"spec": {"paused": true}})).await;
    patch(
        json!({"spec": {"cursorReset": {"nonce": "rewind-1", "clientId": "1001",
        "position": {"journalName": journal_name, "position": position}}}}),
    )
    .await;
    let condition = wait_api("CursorReset=True", WAIT, async || {
        let status = instances.get("orders").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "CursorReset" && c.status == "True")
    })
    .await;
    assert!(
        condition.message.contains("rewind-1") && condition.message.contains("1001"),
        "{}",
        condition.message
    );
    let (data, _) = zookeeper.get_data(&cursor_path).await.unwrap();
    let record = canal::cursor::json::parse(&data).unwrap();
    assert_eq!(
        (
            record.position.journal_name.as_str(),
            record.position.position
        ),
        (journal_name, position)
    );
    patch(json!({"spec": {"cursorReset": null, "paused": false}})).await;
    // The status names the server that won the race after the reset.
    let active = wait_api(
        "the status to name the new active server",
        WAIT,
        async || {
            let running = active_server(&zookeeper, &destination).await.ok()??;
            let status = instances.get("orders").await.ok()?.status?;
            let active = status.active_server?;
            (active.address == running).then_some(())?;
            kubelet.pod_ip(&active.pod?)
        },
    )
    .await;
    receive(&format!("{active}:11111"), &destination, schema, &[1, 2, 3]).await;
    let reset = instances
        .get("orders")
        .await
        .unwrap()
        .status
        .unwrap()
        .cursor_reset
        .unwrap();
    assert!(reset.succeeded && reset.nonce == "rewind-1");

    kubelet.shutdown().await;
    zk::delete_all(
        &zookeeper,
        &format!("/otter/canal/destinations/{destination}"),
    )
    .await;
}
