//! Reading rows through a canal client, for the end-to-end tests.

use std::time::{Duration, Instant};

use canal::client::{CanalClient, Login};
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
