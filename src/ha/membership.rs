//! The ephemeral member nodes (`/otter/canal/cluster/{ip:port}` and
//! `{dest}/cluster/{ip:port}`), kept for the current session and created
//! again for each new one.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, Error as ZkError};

use super::{nodes, zk_session::ZkSession};

/// Keeps `paths` registered until `shutdown`, then deletes them.
pub async fn maintain(zk: Arc<ZkSession>, paths: Vec<String>, shutdown: CancellationToken) {
    loop {
        let client = zk.client();
        let mut generations = zk.generations();
        generations.borrow_and_update();
        let mut members = tokio::task::JoinSet::new();
        for path in &paths {
            members.spawn(keep(client.clone(), path.clone()));
        }
        tokio::select! {
            _ = generations.changed() => members.abort_all(),
            _ = shutdown.cancelled() => {
                members.abort_all();
                for path in &paths {
                    let _ = nodes::delete_own(&client, path).await;
                }
                return;
            }
        }
    }
}

/// Creates the member node for this session. A node another session holds
/// (this address before a restart, whose session has not expired yet) is
/// waited out, never deleted: a second live server misconfigured with the
/// same address must not be able to push the first one out.
async fn keep(client: Client, path: String) {
    let mut reported = false;
    loop {
        match nodes::create_ephemeral(&client, &path, b"").await {
            Ok(_) => return,
            Err(ZkError::NodeExists) => {}
            Err(ZkError::SessionExpired | ZkError::ClientClosed) => return,
            Err(error) => {
                tracing::debug!(%path, %error, "cannot register; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        match client.check_and_watch_stat(&path).await {
            Ok((Some(stat), _)) if stat.ephemeral_owner == client.session_id().0 => return,
            Ok((Some(_), watcher)) => {
                if !reported {
                    tracing::info!(%path, "another session still holds this member node; waiting for it to expire");
                    reported = true;
                }
                watcher.changed().await;
            }
            Ok((None, _)) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
