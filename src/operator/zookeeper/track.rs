//! One destination's view, kept current with ZooKeeper's one-shot
//! watches: data (or, while missing, exists) watches on `running` and on
//! every cursor, child watches on `{dest}` and `{dest}/cluster`. A fired
//! watch re-reads its node only, which re-arms it.

use std::collections::{BTreeMap, HashMap};

use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use zookeeper_client::{Client, Error as ZkError, EventType, OneshotWatcher, Stat, WatchedEvent};

use super::{
    key::{Paths, is_client_id, sort_client_ids},
    session::ended,
    view::{ClientCursor, DestinationView, RunningView},
};

/// How often a node may appear or vanish between a read and its exists
/// watch before the read gives up.
const MAX_RACES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    Running,
    Members,
    Clients,
    Cursor(String),
}

/// A watch that fired.
pub(crate) struct Fired {
    node: Node,
    arm: u64,
    event: WatchedEvent,
}

impl Fired {
    /// The session behind the watch ended: nothing more will fire.
    pub fn session_ended(&self) -> bool {
        self.event.event_type == EventType::Session && ended(self.event.session_state)
    }
}

pub(crate) struct Tracker {
    client: Client,
    paths: Paths,
    running: Option<RunningView>,
    members: Vec<String>,
    /// Numeric children of `{dest}` and their cursor (`None`: none yet).
    clients: BTreeMap<String, Option<ClientCursor>>,
    watches: FuturesUnordered<BoxFuture<'static, Fired>>,
    /// The current watch of each node; others are stale.
    armed: HashMap<Node, u64>,
    next_arm: u64,
}

impl Tracker {
    pub fn new(client: Client, paths: Paths) -> Tracker {
        Tracker {
            client,
            paths,
            running: None,
            members: Vec::new(),
            clients: BTreeMap::new(),
            watches: FuturesUnordered::new(),
            armed: HashMap::new(),
            next_arm: 0,
        }
    }

    pub fn view(&self) -> DestinationView {
        let mut ids: Vec<String> = self.clients.keys().cloned().collect();
        sort_client_ids(&mut ids);
        DestinationView {
            running: self.running.clone(),
            members: self.members.clone(),
            cursors: ids
                .iter()
                .filter_map(|id| self.clients.get(id).cloned().flatten())
                .collect(),
        }
    }

    /// Reads every node with fresh watches. The previous watches are
    /// dropped only afterwards, so ZooKeeper keeps watching throughout.
    pub async fn read_all(&mut self) -> Result<(), ZkError> {
        let _previous = std::mem::take(&mut self.watches);
        self.armed.clear();
        self.read_running().await?;
        self.read_members().await?;
        self.read_clients(true).await
    }

    /// The next watch to fire (pending while none is armed).
    pub async fn next_fired(&mut self) -> Fired {
        match self.watches.next().await {
            Some(fired) => fired,
            None => std::future::pending().await,
        }
    }

    /// A watch that has already fired, if any.
    pub fn fired_now(&mut self) -> Option<Fired> {
        self.watches.next().now_or_never().flatten()
    }

    /// Re-reads (and re-arms) the node whose watch fired.
    pub async fn on_fired(&mut self, fired: Fired) -> Result<(), ZkError> {
        if self.armed.get(&fired.node) != Some(&fired.arm) {
            return Ok(());
        }
        self.armed.remove(&fired.node);
        match fired.node {
            Node::Running => self.read_running().await,
            Node::Members => self.read_members().await,
            Node::Clients => self.read_clients(false).await,
            Node::Cursor(id) if self.clients.contains_key(&id) => self.read_cursor(&id).await,
            Node::Cursor(_) => Ok(()),
        }
    }

    fn arm(&mut self, node: Node, watcher: OneshotWatcher) {
        self.next_arm += 1;
        let arm = self.next_arm;
        self.armed.insert(node.clone(), arm);
        self.watches.push(Box::pin(async move {
            let event = watcher.changed().await;
            Fired { node, arm, event }
        }));
    }

    async fn read_running(&mut self) -> Result<(), ZkError> {
        let (node, watcher) = watch_data(&self.client, &self.paths.running).await?;
        self.running = node.map(|(data, stat)| RunningView::from_node(&data, stat.ctime));
        self.arm(Node::Running, watcher);
        Ok(())
    }

    async fn read_members(&mut self) -> Result<(), ZkError> {
        let (children, watcher) = watch_children(&self.client, &self.paths.cluster).await?;
        let mut members = children.unwrap_or_default();
        members.sort();
        self.members = members;
        self.arm(Node::Members, watcher);
        Ok(())
    }

    /// The client list; cursors of new clients (of all with `all`).
    async fn read_clients(&mut self, all: bool) -> Result<(), ZkError> {
        let (children, watcher) = watch_children(&self.client, &self.paths.destination).await?;
        self.arm(Node::Clients, watcher);
        let ids: Vec<String> = children
            .unwrap_or_default()
            .into_iter()
            .filter(|child| is_client_id(child))
            .collect();
        let gone: Vec<String> = self
            .clients
            .keys()
            .filter(|id| !ids.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.clients.remove(&id);
            self.armed.remove(&Node::Cursor(id));
        }
        for id in ids {
            if all || !self.clients.contains_key(&id) {
                self.read_cursor(&id).await?;
            }
        }
        Ok(())
    }

    async fn read_cursor(&mut self, id: &str) -> Result<(), ZkError> {
        let path = self.paths.cursor(id);
        let cursor = match watch_data(&self.client, &path).await {
            Ok((node, watcher)) => {
                self.arm(Node::Cursor(id.to_owned()), watcher);
                node.and_then(|(data, _)| ClientCursor::from_node(id, &path, &data))
            }
            // One client's ACL does not hide the others.
            Err(ZkError::NoAuth) => Some(ClientCursor::failed(
                id,
                format!(
                    "{path}: not authorized to read it; give the operator's ZooKeeper \
                     credentials (spec.zookeeper.auth) read access"
                ),
            )),
            Err(error) => return Err(error),
        };
        self.clients.insert(id.to_owned(), cursor);
        Ok(())
    }
}

/// A node's data and stat (`None` while it does not exist), with a watch
/// that fires when it changes, appears or vanishes.
async fn watch_data(
    client: &Client,
    path: &str,
) -> Result<(Option<(Vec<u8>, Stat)>, OneshotWatcher), ZkError> {
    watch_while_present(client, path, move || async move {
        let (data, stat, watcher) = client.get_and_watch_data(path).await?;
        Ok(((data, stat), watcher))
    })
    .await
}

/// A node's children (`None` while it does not exist), with a watch that
/// fires when they change or the node appears or vanishes.
async fn watch_children(
    client: &Client,
    path: &str,
) -> Result<(Option<Vec<String>>, OneshotWatcher), ZkError> {
    watch_while_present(client, path, move || client.list_and_watch_children(path)).await
}

/// `read` (a read with a watch) while `path` exists; while it does not, an
/// exists watch instead. The node may appear or vanish between the two
/// requests: then both are tried again.
async fn watch_while_present<T, Read>(
    client: &Client,
    path: &str,
    read: impl Fn() -> Read,
) -> Result<(Option<T>, OneshotWatcher), ZkError>
where
    Read: Future<Output = Result<(T, OneshotWatcher), ZkError>>,
{
    for _ in 0..MAX_RACES {
        match read().await {
            Ok((found, watcher)) => return Ok((Some(found), watcher)),
            Err(ZkError::NoNode) => {}
            Err(error) => return Err(error),
        }
        if let (None, watcher) = client.check_and_watch_stat(path).await? {
            return Ok((None, watcher));
        }
    }
    Err(ZkError::UnexpectedError(format!(
        "{path} keeps appearing and vanishing"
    )))
}
