use std::time::Duration;

use bytes::Bytes;

use super::{state::ResumePoint, *};
use crate::{
    binlog::change::ChangeKind, binlog::position::LogPosition, protocol::entry::EventType,
};

fn event(offset: u64, kind: ChangeKind, size: usize) -> StoredEvent {
    StoredEvent {
        bytes: Bytes::from(vec![offset as u8; size]),
        position: LogPosition::new("mysql-bin.000001", offset),
        kind,
        event_type: match kind {
            ChangeKind::Ddl => EventType::Alter,
            ChangeKind::Rows => EventType::Insert,
            _ => EventType::Query,
        },
    }
}

/// BEGIN, two row entries, END at offsets start, start+1, ...
fn transaction(state: &mut StoreState, start: u64) {
    state.push(event(start, ChangeKind::TransactionBegin, 10));
    state.push(event(start + 1, ChangeKind::Rows, 100));
    state.push(event(start + 2, ChangeKind::Rows, 100));
    state.push(event(start + 3, ChangeKind::TransactionEnd, 10));
}

fn items(capacity_events: usize) -> StoreConfig {
    StoreConfig {
        capacity_events,
        capacity_bytes: usize::MAX / 2,
        batch_mode: BatchMode::ItemSize,
        memunit: 1024,
        ddl_isolation: false,
    }
}

#[test]
fn batches_ack_points_and_eviction() {
    let mut state = StoreState::new(items(100));
    state.subscribe(1001, None);
    transaction(&mut state, 10);
    transaction(&mut state, 20);
    let first = state.take_batch(1001, 3).unwrap().unwrap();
    assert_eq!((first.id, first.entries.len()), (1, 3));
    let second = state.take_batch(1001, 3).unwrap().unwrap();
    assert_eq!((second.id, second.entries.len()), (2, 3));
    // The first batch has no END: acking it moves no cursor (BEGIN without
    // GTID is an ack point, though).
    assert_eq!(state.ack(1001, 1).unwrap().unwrap().position.position, 10);
    assert_eq!(state.len(), 5, "acknowledged events leave the store");
    let cursor = state.ack(1001, 2).unwrap().unwrap();
    assert_eq!(
        cursor.position.position, 20,
        "last ack point in the batch: the second BEGIN"
    );
    assert_eq!(
        state.take_batch(1001, 10).unwrap().unwrap().entries.len(),
        2
    );
    assert!(state.take_batch(1001, 10).unwrap().is_none());
}

#[test]
fn canal_error_texts() {
    let mut state = StoreState::new(items(100));
    state.subscribe(1001, None);
    transaction(&mut state, 10);
    let b1 = state.take_batch(1001, 2).unwrap().unwrap().id;
    let b2 = state.take_batch(1001, 2).unwrap().unwrap().id;
    assert_eq!(
        state.ack(1001, b2).unwrap_err().to_string(),
        "batchId:2 is not the firstly:1"
    );
    assert_eq!(
        state.ack(1001, 9).unwrap_err().to_string(),
        "ack error , clientId:1001 batchId:9 is not exist , please check"
    );
    assert_eq!(
        state.rollback(1001, 9).unwrap_err().to_string(),
        "rollback error, clientId:1001 batchId:9 is not exist , please check"
    );
    assert_eq!(
        state.rollback(1001, b2).unwrap_err().to_string(),
        "batchId:2 is not the firstly:1"
    );
    state.ack(1001, b1).unwrap();
    assert!(state.ack(1001, b1).is_err(), "a batch is acknowledged once");
    assert_eq!(
        state.ack(7, 1).unwrap_err(),
        AckError::NotSubscribed { client: 7 }
    );
}

#[test]
fn rollback_redelivers_everything_outstanding() {
    let mut state = StoreState::new(items(100));
    state.subscribe(1001, None);
    transaction(&mut state, 10);
    state.take_batch(1001, 1).unwrap().unwrap();
    state.ack(1001, 1).unwrap();
    state.take_batch(1001, 1).unwrap().unwrap();
    state.take_batch(1001, 1).unwrap().unwrap();
    state.rollback(1001, 0).unwrap();
    assert_eq!(state.outstanding(1001), 0);
    let again = state.take_batch(1001, 10).unwrap().unwrap();
    assert_eq!(again.entries.len(), 3, "all but the acknowledged BEGIN");
    assert_eq!(again.id, 4, "batch ids keep increasing");
}

#[test]
fn memsize_includes_the_entry_that_crosses_the_limit() {
    let mut state = StoreState::new(StoreConfig {
        batch_mode: BatchMode::MemSize,
        memunit: 100,
        ..items(100)
    });
    state.subscribe(1001, None);
    transaction(&mut state, 10); // 10, 100, 100, 10 bytes
    let batch = state.take_batch(1001, 1).unwrap().unwrap();
    assert_eq!(
        batch.entries.len(),
        2,
        "10 <= 100 so the 100-byte entry is added; 110 > 100 stops"
    );
    assert!(state.has_full_batch(1001, 1));
    assert!(!state.has_full_batch(1001, 2), "110 bytes left, 200 wanted");
}

#[test]
fn ddl_isolation() {
    let mut state = StoreState::new(StoreConfig {
        ddl_isolation: true,
        ..items(100)
    });
    state.subscribe(1001, None);
    transaction(&mut state, 10);
    state.push(event(30, ChangeKind::Ddl, 20));
    transaction(&mut state, 40);
    assert_eq!(
        state.take_batch(1001, 100).unwrap().unwrap().entries.len(),
        4
    );
    assert_eq!(
        state.take_batch(1001, 100).unwrap().unwrap().entries.len(),
        1,
        "the DDL alone"
    );
    assert_eq!(
        state.take_batch(1001, 100).unwrap().unwrap().entries.len(),
        4
    );
}

#[test]
fn capacity_in_events_and_bytes() {
    let mut state = StoreState::new(items(3));
    assert!(
        state.has_room_for(1_000_000),
        "an empty store takes anything"
    );
    state.push(event(1, ChangeKind::Rows, 10));
    state.push(event(2, ChangeKind::Rows, 10));
    assert!(state.has_room_for(10));
    state.push(event(3, ChangeKind::Rows, 10));
    assert!(!state.has_room_for(10), "three events is full");
    let mut bytes = StoreState::new(StoreConfig {
        capacity_bytes: 25,
        ..items(100)
    });
    bytes.push(event(1, ChangeKind::Rows, 10));
    bytes.push(event(2, ChangeKind::Rows, 10));
    assert_eq!(bytes.bytes(), 20);
    assert!(!bytes.has_room_for(10) && bytes.has_room_for(5));
}

#[test]
fn slowest_client_holds_events_and_resume_skips_acknowledged() {
    let mut state = StoreState::new(items(100));
    state.subscribe(1, None);
    // Client 2 acknowledged up to the END at 13 in an earlier run.
    state.subscribe(
        2,
        Some(ResumePoint {
            position: LogPosition::new("mysql-bin.000001", 13),
        }),
    );
    transaction(&mut state, 10);
    transaction(&mut state, 20);
    let batch = state.take_batch(2, 100).unwrap().unwrap();
    assert_eq!(batch.entries.len(), 4, "only the second transaction");
    state.ack(2, batch.id).unwrap();
    assert_eq!(state.len(), 8, "client 1 has acknowledged nothing");
    let batch = state.take_batch(1, 100).unwrap().unwrap();
    state.ack(1, batch.id).unwrap();
    assert!(state.is_empty());
    state.unsubscribe(1);
    state.unsubscribe(2);
}

#[tokio::test]
async fn full_store_blocks_put_until_ack() {
    let store = std::sync::Arc::new(EventStore::new(items(2)));
    store.subscribe(1001, None);
    store.put(event(1, ChangeKind::Rows, 1)).await.unwrap();
    store.put(event(2, ChangeKind::Rows, 1)).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.put(event(3, ChangeKind::TransactionEnd, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!writer.is_finished(), "put waits while the store is full");
    let batch = store.get(1001, 10, Wait::None).await.unwrap().unwrap();
    store.ack(1001, batch.id).unwrap();
    tokio::time::timeout(Duration::from_secs(1), writer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn get_wait_semantics() {
    let store = std::sync::Arc::new(EventStore::new(items(100)));
    store.subscribe(1001, None);
    assert!(store.get(1001, 5, Wait::None).await.unwrap().is_none());
    let started = tokio::time::Instant::now();
    assert!(
        store
            .get(1001, 5, Wait::Up(Duration::from_millis(50)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(started.elapsed() >= Duration::from_millis(50));
    store.put(event(1, ChangeKind::Rows, 1)).await.unwrap();
    let partial = store
        .get(1001, 5, Wait::Up(Duration::from_millis(20)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        partial.entries.len(),
        1,
        "a timed get returns what there is"
    );
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.get(1001, 2, Wait::Full).await })
    };
    store.put(event(2, ChangeKind::Rows, 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !waiter.is_finished(),
        "a blocking get waits for a full batch"
    );
    store.put(event(3, ChangeKind::Rows, 1)).await.unwrap();
    let full = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(full.entries.len(), 2);
    store.close();
    assert!(store.get(1001, 1, Wait::Full).await.is_err());
}

#[test]
fn wait_from_request() {
    assert_eq!(Wait::from_request(Some(-1), None), Wait::None);
    assert_eq!(Wait::from_request(None, None), Wait::Full);
    assert_eq!(Wait::from_request(Some(-5), Some(2)), Wait::Full);
    assert_eq!(
        Wait::from_request(Some(3), Some(3)),
        Wait::Up(Duration::from_secs(3))
    );
    assert_eq!(
        Wait::from_request(Some(2), Some(4)),
        Wait::Up(Duration::from_secs(120))
    );
    assert_eq!(
        Wait::from_request(Some(7), Some(99)),
        Wait::Up(Duration::from_millis(7))
    );
    assert_eq!(
        Wait::from_request(Some(1), Some(0)),
        Wait::Up(Duration::from_nanos(1))
    );
}
