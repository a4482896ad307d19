//! The view in the CanalInstance's terms: what the status shows, and the
//! position a `spec.cursorReset` asks for.

use super::view::DestinationView;
use crate::{
    binlog::position::LogPosition,
    operator::{
        crd::{ClientCursorStatus, CursorPosition},
        status::ZkFacts,
    },
};

/// What the status reports from a view.
pub fn facts(view: &DestinationView) -> ZkFacts {
    ZkFacts {
        running: view.running.as_ref().map(|running| {
            // k8s-openapi has its own jiff.
            let since =
                k8s_openapi::jiff::Timestamp::from_millisecond(running.since.as_millisecond())
                    .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
            (running.address.clone(), since)
        }),
        members: view.members.clone(),
        cursors: view
            .cursors
            .iter()
            .map(|cursor| {
                let readable = cursor.error.is_none();
                ClientCursorStatus {
                    client_id: cursor.client_id.clone(),
                    journal_name: Some(cursor.journal_name.clone())
                        .filter(|name| readable && !name.is_empty()),
                    position: readable
                        .then(|| i64::try_from(cursor.position).ok())
                        .flatten(),
                    gtid: cursor.gtid.clone(),
                    timestamp: Some(cursor.timestamp_ms).filter(|&t| readable && t > 0),
                    error: cursor.error.clone(),
                }
            })
            .collect(),
    }
}

/// The position of `spec.cursorReset` (validated again by the reset).
pub fn reset_position(position: &CursorPosition) -> LogPosition {
    LogPosition {
        journal_name: position.journal_name.clone(),
        position: u64::try_from(position.position).unwrap_or(0),
        server_id: 0,
        gtid: position.gtid.clone().unwrap_or_default(),
        timestamp_ms: position.timestamp.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::zookeeper::view::{ClientCursor, RunningView};

    #[test]
    fn view_to_status_facts() {
        let view = DestinationView {
            running: Some(RunningView {
                address: "10.0.0.5:11111".into(),
                active: true,
                since: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            }),
            members: vec!["10.0.0.5:11111".into(), "10.0.0.6:11111".into()],
            cursors: vec![
                ClientCursor {
                    client_id: "1001".into(),
                    journal_name: "mysql-bin.000003".into(),
                    position: 1234,
                    gtid: None,
                    timestamp_ms: 1_700_000_000_000,
                    server_id: Some(1),
                    error: None,
                },
                ClientCursor::failed("1002", "broken".into()),
            ],
        };
        let facts = facts(&view);
        let (address, since) = facts.running.unwrap();
        assert_eq!(address, "10.0.0.5:11111");
        assert_eq!(since.as_second(), 1_700_000_000);
        assert_eq!(facts.members.len(), 2);
        assert_eq!(
            facts.cursors[0].journal_name.as_deref(),
            Some("mysql-bin.000003")
        );
        assert_eq!(facts.cursors[0].position, Some(1234));
        assert_eq!(facts.cursors[1].position, None);
        assert_eq!(facts.cursors[1].error.as_deref(), Some("broken"));
    }

    #[test]
    fn reset_position_from_the_spec() {
        let position = reset_position(&CursorPosition {
            journal_name: "mysql-bin.000007".into(),
            position: 4,
            timestamp: Some(5),
            gtid: Some("0-1-9".into()),
        });
        assert_eq!(
            position,
            LogPosition {
                journal_name: "mysql-bin.000007".into(),
                position: 4,
                server_id: 0,
                gtid: "0-1-9".into(),
                timestamp_ms: 5,
            }
        );
    }
}
