//! Changes to a destination's nodes: a fenced cursor reset, and deleting
//! the destination. Each runs on a ZooKeeper session of its own, closed at
//! the end; closing it also removes the reset's lock if deleting it failed.

use std::time::Duration;

use zookeeper_client::{
    Acls, Client, CreateMode, Error as ZkError, MultiWriteError, MultiWriter, Stat,
};

use super::{
    ObservedKey, ObserverSettings, ZkAdminError,
    error::InvalidRequest,
    key::{Paths, check_client_id, is_client_id, sort_client_ids},
    session,
};
use crate::{
    binlog::position::LogPosition,
    cursor::json::{self, CursorRecord},
    ha::nodes::{self, ServerRunning},
};

/// The `address` the operator writes into `running` while it resets
/// cursors; servers see another owner and stand by. An ip:port that no
/// server has, because canal's Java cluster client parses the port as a
/// number and would fail on anything else during the reset.
pub const RESET_ADDRESS: &str = "0.0.0.0:0";

/// How long the reset waits after fencing the active server, so a cursor
/// write it had in flight lands before the new cursors.
pub const FENCE_GRACE: Duration = Duration::from_millis(1500);

/// How long a whole admin operation may take; past it the session is
/// closed (releasing the lock) and the operation fails.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the lock may be lost to racing servers before giving up.
const LOCK_ATTEMPTS: usize = 5;

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

/// Moves cursors to `position` while servers may run the destination:
/// takes `{dest}/running` from the active server (fencing it: it stops at
/// once and writes no cursor), waits [`FENCE_GRACE`], writes the cursor of
/// `client_id` (created if missing) or of every client, reads them back,
/// and deletes `running` again so the servers race and the winner resumes
/// from the new cursors. Returns the client ids moved.
pub async fn reset_cursors(
    key: &ObservedKey,
    client_id: Option<&str>,
    position: &LogPosition,
) -> Result<Vec<String>, ZkAdminError> {
    check_position(position)?;
    if let Some(id) = client_id {
        check_client_id(id)?;
    }
    let (client, paths) = connect(key).await?;
    let outcome = tokio::time::timeout(
        ADMIN_TIMEOUT,
        reset_with(&client, &paths, client_id, position),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ZkAdminError::TimedOut {
            operation: "the cursor reset of",
            path: paths.destination.clone(),
            after: ADMIN_TIMEOUT,
        })
    });
    // Dropping the last handle closes the session: the lock goes with it
    // even when the reset stopped half-way.
    drop(client);
    outcome
}

async fn reset_with(
    client: &Client,
    paths: &Paths,
    client_id: Option<&str>,
    position: &LogPosition,
) -> Result<Vec<String>, ZkAdminError> {
    // Nothing to reset is said before fencing anyone.
    match client_id {
        None => {
            clients(client, paths).await?;
        }
        Some(_) => nodes::ensure_persistent(client, &paths.destination)
            .await
            .map_err(|e| ZkAdminError::request("create", &paths.destination, e))?,
    }
    take_lock(client, paths).await?;
    let outcome = fenced_reset(client, paths, client_id, position).await;
    if let Err(error) = nodes::delete_own(client, &paths.running).await {
        tracing::warn!(path = %paths.running, %error, "cannot delete the reset's lock; it goes with the session");
    }
    match &outcome {
        Ok(ids) => {
            tracing::info!(destination = %paths.destination, clients = ?ids, %position, "cursors reset")
        }
        Err(error) => {
            tracing::warn!(destination = %paths.destination, %error, "cursor reset failed")
        }
    }
    outcome
}

async fn fenced_reset(
    client: &Client,
    paths: &Paths,
    client_id: Option<&str>,
    position: &LogPosition,
) -> Result<Vec<String>, ZkAdminError> {
    tokio::time::sleep(FENCE_GRACE).await;
    let ids = match client_id {
        Some(id) => vec![id.to_owned()],
        None => clients(client, paths).await?,
    };
    write_cursors(client, paths, &ids, position).await?;
    for id in &ids {
        let path = paths.cursor(id);
        let (data, _) = client
            .get_data(&path)
            .await
            .map_err(|e| ZkAdminError::request("read", &path, e))?;
        match json::parse(&data) {
            Ok(record) if record.position == *position => {}
            Ok(record) => {
                return Err(ZkAdminError::NotApplied {
                    path,
                    found: record.position.to_string(),
                });
            }
            Err(error) => {
                return Err(ZkAdminError::NotApplied {
                    path,
                    found: error.to_string(),
                });
            }
        }
    }
    // Held from start to end: no server can have run in between.
    let session = client.session_id().0;
    match client.check_stat(&paths.running).await {
        Ok(Some(stat)) if stat.ephemeral_owner == session => Ok(ids),
        Ok(Some(_)) => Err(ZkAdminError::LockLost {
            path: paths.running.clone(),
            reason: "another session holds it now".into(),
        }),
        Ok(None) => Err(ZkAdminError::LockLost {
            path: paths.running.clone(),
            reason: "it was deleted".into(),
        }),
        Err(error) => Err(ZkAdminError::request("read", &paths.running, error)),
    }
}

/// The destination's client ids (numeric children); an error when none.
async fn clients(client: &Client, paths: &Paths) -> Result<Vec<String>, ZkAdminError> {
    let children = match client.list_children(&paths.destination).await {
        Ok(children) => children,
        Err(ZkError::NoNode) => Vec::new(),
        Err(error) => return Err(ZkAdminError::request("list", &paths.destination, error)),
    };
    let mut ids: Vec<String> = children.into_iter().filter(|c| is_client_id(c)).collect();
    if ids.is_empty() {
        return Err(ZkAdminError::NoClients {
            destination: paths
                .destination
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            path: paths.destination.clone(),
        });
    }
    sort_client_ids(&mut ids);
    Ok(ids)
}

/// Creates the ephemeral `running` of this session in place of the
/// current holder's, in one multi, so no server gets in between.
async fn take_lock(client: &Client, paths: &Paths) -> Result<(), ZkAdminError> {
    let path = &paths.running;
    let data = ServerRunning::active(RESET_ADDRESS).to_json();
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    let busy = |reason: String| ZkAdminError::LockBusy {
        path: path.clone(),
        reason,
    };
    for _ in 0..LOCK_ATTEMPTS {
        let holder = match client.get_data(path).await {
            Ok(found) => Some(found),
            Err(ZkError::NoNode) => None,
            Err(error) => return Err(ZkAdminError::request("read", path, error)),
        };
        let previous = holder
            .as_ref()
            .and_then(|(data, _)| ServerRunning::parse(data))
            .map(|r| r.address);
        if previous.as_deref() == Some(RESET_ADDRESS) {
            return Err(busy(format!(
                "another cursor reset holds it ({RESET_ADDRESS})"
            )));
        }
        let mut multi = client.new_multi_writer();
        let prepared = match &holder {
            Some((_, stat)) => multi
                .add_check_version(path, stat.version)
                .and_then(|()| multi.add_delete(path, Some(stat.version))),
            None => Ok(()),
        }
        .and_then(|()| multi.add_create(path, &data, &ephemeral));
        prepared.map_err(|e| ZkAdminError::request("prepare", path, e))?;
        match multi.commit().await {
            Ok(_) => {
                tracing::info!(%path, previous = previous.as_deref().unwrap_or("none"), "took the running node for a cursor reset");
                return Ok(());
            }
            // A server took or left it in between: look again.
            Err(MultiWriteError::OperationFailed {
                source: ZkError::BadVersion | ZkError::NoNode | ZkError::NodeExists,
                ..
            }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(error) => return Err(busy(ZkError::from(error).to_string())),
        }
    }
    Err(busy(format!(
        "servers kept taking it ({LOCK_ATTEMPTS} attempts)"
    )))
}

/// Writes every cursor in one multi; a version check catches a late write
/// of the fenced server between the read and the write (then it retries).
async fn write_cursors(
    client: &Client,
    paths: &Paths,
    ids: &[String],
    position: &LogPosition,
) -> Result<(), ZkAdminError> {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let mut multi = client.new_multi_writer();
        // The path of every operation, for errors.
        let mut operations = Vec::new();
        for id in ids {
            add_cursor_write(client, paths, id, position, &mut multi, &mut operations).await?;
        }
        match multi.commit().await {
            Ok(_) => return Ok(()),
            Err(MultiWriteError::OperationFailed { index, source }) => {
                let path = operations
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| paths.destination.clone());
                let raced = matches!(
                    source,
                    ZkError::BadVersion | ZkError::NodeExists | ZkError::NoNode
                );
                if !raced || attempt == ATTEMPTS {
                    return Err(ZkAdminError::request("write", &path, source));
                }
                tracing::info!(%path, %source, "a cursor changed while it was being reset; writing again");
            }
            Err(MultiWriteError::RequestFailed { source }) => {
                return Err(ZkAdminError::request("write", &paths.destination, source));
            }
        }
    }
    Ok(())
}

/// Adds the write of `id`'s cursor to `multi`: a set at the version read
/// when the cursor exists, else its creation (and its client node's when
/// missing). The source address a cursor records is kept. Each operation's
/// path goes to `operations`, in order.
async fn add_cursor_write(
    client: &Client,
    paths: &Paths,
    id: &str,
    position: &LogPosition,
    multi: &mut MultiWriter<'_>,
    operations: &mut Vec<String>,
) -> Result<(), ZkAdminError> {
    let path = paths.cursor(id);
    let existing: Option<(Vec<u8>, Stat)> = match client.get_data(&path).await {
        Ok(found) => Some(found),
        Err(ZkError::NoNode) => None,
        Err(error) => return Err(ZkAdminError::request("read", &path, error)),
    };
    let source = existing
        .as_ref()
        .and_then(|(data, _)| json::parse(data).ok())
        .map(|r| (r.source_host, r.source_port))
        .unwrap_or_default();
    let record = CursorRecord {
        position: position.clone(),
        source_host: source.0,
        source_port: source.1,
    };
    let text = json::to_json(&record);
    let prepared = match &existing {
        Some((_, stat)) => {
            operations.push(path.clone());
            multi.add_set_data(&path, text.as_bytes(), Some(stat.version))
        }
        None => {
            let parent = paths.client(id);
            let has_parent = client
                .check_stat(&parent)
                .await
                .map_err(|e| ZkAdminError::request("read", &parent, e))?
                .is_some();
            let created = if has_parent {
                Ok(())
            } else {
                operations.push(parent.clone());
                multi.add_create(&parent, b"", &persistent())
            };
            operations.push(path.clone());
            created.and_then(|()| multi.add_create(&path, text.as_bytes(), &persistent()))
        }
    };
    prepared.map_err(|e| ZkAdminError::request("prepare", &path, e))
}

/// Deletes `/otter/canal/destinations/{dest}` and everything below it (the
/// Delete cleanup policy); a missing destination is fine. Nothing outside
/// that node is touched.
pub async fn delete_destination(key: &ObservedKey) -> Result<(), ZkAdminError> {
    let (client, paths) = connect(key).await?;
    let deleted = tokio::time::timeout(ADMIN_TIMEOUT, async {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            match delete_tree(&client, &paths.destination).await {
                Ok(()) => {
                    tracing::info!(path = %paths.destination, "deleted the destination's nodes");
                    return Ok(());
                }
                // A live server re-created a node meanwhile: once more.
                Err((_, ZkError::NotEmpty)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err((path, error)) => return Err(ZkAdminError::request("delete", &path, error)),
            }
        }
        let children = client
            .list_children(&paths.destination)
            .await
            .unwrap_or_default();
        Err(ZkAdminError::InUse {
            path: paths.destination.clone(),
            reason: format!("its children ({}) keep reappearing", children.join(", ")),
        })
    })
    .await;
    deleted.unwrap_or_else(|_| {
        Err(ZkAdminError::TimedOut {
            operation: "deleting",
            path: paths.destination.clone(),
            after: ADMIN_TIMEOUT,
        })
    })
}

/// Deletes `path` and its descendants; the failing path and error.
async fn delete_tree(client: &Client, path: &str) -> Result<(), (String, ZkError)> {
    let children = match client.list_children(path).await {
        Ok(children) => children,
        Err(ZkError::NoNode) => return Ok(()),
        Err(error) => return Err((path.to_owned(), error)),
    };
    for child in children {
        Box::pin(delete_tree(client, &format!("{path}/{child}"))).await?;
    }
    match client.delete(path, None).await {
        Ok(()) | Err(ZkError::NoNode) => Ok(()),
        Err(error) => Err((path.to_owned(), error)),
    }
}

/// A session of its own for one admin operation.
async fn connect(key: &ObservedKey) -> Result<(Client, Paths), ZkAdminError> {
    let session = key.session_key()?;
    let paths = Paths::new(&key.destination)?;
    let client = session::open(
        &session.connect,
        session.auth.as_ref(),
        &ObserverSettings::default(),
    )
    .await
    .map_err(ZkAdminError::Unreachable)?;
    Ok((client, paths))
}

/// A position canal-server can resume from.
fn check_position(position: &LogPosition) -> Result<(), ZkAdminError> {
    if position.journal_name.is_empty() && position.gtid.is_empty() {
        return Err(InvalidRequest::NoPosition.into());
    }
    if !position.journal_name.is_empty() && position.position < 4 {
        return Err(InvalidRequest::BeforeFirstEvent {
            journal_name: position.journal_name.clone(),
            position: position.position,
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_to_reset_to() {
        assert!(check_position(&LogPosition::new("mysql-bin.000001", 4)).is_ok());
        assert!(check_position(&LogPosition::new("mysql-bin.000001", 3)).is_err());
        assert!(check_position(&LogPosition::default()).is_err());
        let gtid = LogPosition {
            gtid: "0-1-5".into(),
            ..Default::default()
        };
        assert!(check_position(&gtid).is_ok());
    }

    #[test]
    fn the_lock_names_the_operator() {
        assert_eq!(
            ServerRunning::active(RESET_ADDRESS).to_json(),
            br#"{"active":true,"address":"0.0.0.0:0"}"#
        );
    }
}
