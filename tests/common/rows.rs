//! Reading rows through a canal client, for the end-to-end tests:
//! subscribing, receiving with acks, and the ids of the rows received.

use std::time::{Duration, Instant};

use canal::client::{CanalClient, ClientError, Login, Received};
use canal::protocol::entry::{Entry, EntryType, RowChange};
use prost::Message;

const WAIT: Duration = Duration::from_secs(90);

/// The `id` of every row change of `schema` in `entries`.
pub fn row_ids(entries: &[Entry], schema: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter(|e| e.header.as_ref().is_some_and(|h| h.schema_name == schema))
        .filter_map(|e| RowChange::decode(e.store_value.as_slice()).ok())
        .filter(|rc| rc.is_ddl != Some(true))
        .flat_map(|rc| rc.row_datas)
        .filter_map(|row| {
            row.after_columns
                .into_iter()
                .find(|c| c.name == "id")
                .map(|c| c.value)
        })
        .collect()
}

/// Subscribes at `address` and receives (and acknowledges) until every id
/// in `want` has arrived.
pub async fn receive(address: &str, destination: &str, schema: &str, want: &[i32]) -> Vec<String> {
    let mut client = CanalClient::connect(address, &Login::default(), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {address}: {e}"));
    client.subscribe(destination, "1001", "").await.unwrap();
    let want: Vec<String> = want.iter().map(i32::to_string).collect();
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !want.iter().all(|id| seen.contains(id)) {
        assert!(
            Instant::now() < deadline,
            "rows {want:?} did not arrive from {address}; got {seen:?}"
        );
        let received = client
            .get(100, Some(Duration::from_millis(500)))
            .await
            .unwrap_or_else(|e| panic!("GET from {address}: {e}"));
        seen.extend(row_ids(&received.entries, schema));
        if received.batch_id > 0 {
            client.ack(received.batch_id).await.unwrap();
        }
    }
    seen
}

/// The first column of every row in `received` (the id of the tests'
/// tables), in order.
pub fn first_column_ids(received: &Received) -> Vec<String> {
    received
        .entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter_map(|e| RowChange::decode(e.store_value.as_slice()).ok())
        .flat_map(|rc| rc.row_datas)
        .map(|row| row.after_columns[0].value.clone())
        .collect()
}

/// A client connected to `address` and subscribed to `destination` as 1001
/// (no login), or why not (a standby refuses the subscription).
pub async fn try_subscribe(address: &str, destination: &str) -> Result<CanalClient, ClientError> {
    let mut client =
        CanalClient::connect(address, &Login::default(), Duration::from_secs(5)).await?;
    client.subscribe(destination, "1001", "").await?;
    Ok(client)
}

/// Receives (and acks) until `count` rows arrived; returns their first
/// columns. Panics after `timeout`.
pub async fn receive_acked(
    client: &mut CanalClient,
    count: usize,
    timeout: Duration,
) -> Vec<String> {
    let started = Instant::now();
    let mut rows = Vec::new();
    while rows.len() < count {
        assert!(started.elapsed() < timeout, "only {rows:?} arrived");
        let received = client
            .get(100, Some(Duration::from_millis(100)))
            .await
            .unwrap();
        if received.batch_id == -1 {
            continue;
        }
        rows.extend(first_column_ids(&received));
        client.ack(received.batch_id).await.unwrap();
    }
    // The last ack is processed once a following request is answered.
    let _ = client.get(1, Some(Duration::from_millis(1))).await;
    rows
}
