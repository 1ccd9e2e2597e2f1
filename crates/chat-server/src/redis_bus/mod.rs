//! The cluster bus: presence and cross-node delivery through Redis.
//!
//! Every node keeps, in Redis (all keys start with a configurable prefix,
//! `chat:` by default):
//!
//! - `node:{node}`: a liveness key refreshed every heartbeat with a time to
//!   live of three heartbeats. A node that stops heartbeating (it crashed,
//!   or lost Redis) counts as gone once the key expires.
//! - `user:{user}:nodes`: the set of nodes where the user has sessions. A
//!   user is online when any node in the set is alive.
//! - `node:{node}:users`: the users with sessions on the node, so that the
//!   entries of a node that died can be swept from the user sets, and a node
//!   that restarts under the same name can drop what its previous life left.
//! - `nodes`: every node that registered, for the sweep.
//!
//! and subscribes to exactly one channel, `deliver:{node}`. A push goes to
//! the local hub at once and into the forwarding queue; the router task
//! takes the queue in order and, per push, runs one Lua script that finds
//! the other live nodes hosting any of the recipients and publishes one
//! envelope per node with the recipients there and the frame bytes. What
//! queued up during one round trip goes out as one pipeline in the next.
//!
//! Redis holds nothing durable. A push lost in transit (Redis restarting, a
//! node dying) is still in the store, and the client recovers it through
//! sync or gap filling. When Redis is unreachable the node keeps serving its
//! own users (local delivery, local presence), logs the outage once, and
//! reconnects with backoff; on return it subscribes again and re-registers
//! every local user. Every Redis call is bounded by [`CALL_TIMEOUT`], so a
//! hung Redis delays a session by at most that much.
//!
//! One task, the link, owns the connections' lifecycle and every presence
//! write. Presence changes are serialised through it and each one writes
//! what the hub holds *when it is processed*, not what it held when it was
//! queued; so the last write for a user always reflects the hub's latest
//! state, and a full re-registration after a reconnect can never be undone
//! by an older change racing with it. Forwarding does not go through the
//! link: the router uses a clone of the multiplexed command connection, so
//! a burst of presence changes never holds up pushes, nor the reverse.
//!
//! This file holds the [`RedisBus`] handle, its options and what it shares
//! with its tasks; `link.rs` is the link task (connect, reconnect with
//! backoff, heartbeat, presence writes, envelopes received), `route.rs` the
//! forwarding, `envelope.rs` what travels on a node's channel, and `lua/`
//! the scripts.

mod envelope;
mod link;
mod route;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chat_proto::UserId;
use redis::aio::MultiplexedConnection;
use redis::{RedisError, Script};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::bus::{Bus, EndedSessions};
use crate::config::Config;
use crate::hub::{Ending, Hub, SessionId};
use crate::lock::{Mutex, RwLock};
use link::{redact, Link};
use route::{route_loop, Route, ROUTE_QUEUE};

/// The longest any single Redis call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// How long [`RedisBus::start`] waits for the first connection before it
/// starts in local-only mode.
const START_WAIT: Duration = Duration::from_secs(3);

// The Lua scripts, each run atomically by Redis. Each file starts with what
// it does and what it takes (KEYS and ARGV).

/// Registers or withdraws one user here; counts the other live nodes.
const PRESENCE_SCRIPT: &str = include_str!("lua/presence.lua");
/// Registers or withdraws many users of this node at once.
const BULK_SCRIPT: &str = include_str!("lua/bulk.lua");
/// For each user, whether a live node other than this one hosts it.
const ONLINE_SCRIPT: &str = include_str!("lua/online.lua");
/// Publishes a frame to the other live nodes hosting any of the users.
const ROUTE_SCRIPT: &str = include_str!("lua/route.lua");
/// Publishes an order to end a user's sessions to the other live nodes.
const END_SCRIPT: &str = include_str!("lua/end.lua");
/// Keeps this node alive, checks its subscription, sweeps dead nodes.
const HEARTBEAT_SCRIPT: &str = include_str!("lua/heartbeat.lua");
/// Withdraws this node entirely.
const WITHDRAW_SCRIPT: &str = include_str!("lua/withdraw.lua");

/// A Redis bus that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RedisBusError {
    /// The Redis URL does not parse.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] RedisError),
    /// The node id is empty, too long, or has characters other than ASCII
    /// letters, digits, `.`, `_`, `-` and `:`.
    #[error("invalid node id {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ - :")]
    InvalidNodeId(String),
    /// The key prefix is too long or has whitespace.
    #[error("invalid Redis key prefix {0:?}: at most 64 characters, no whitespace")]
    InvalidPrefix(String),
}

/// Where and how a [`RedisBus`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBusOptions {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// This node's name, unique in the cluster.
    pub node_id: String,
    /// Prepended to every key and channel, so several clusters (or test
    /// runs) can share one Redis.
    pub prefix: String,
    /// How often the node proves it is alive; it counts as gone three
    /// heartbeats after the last one.
    pub heartbeat: Duration,
    /// Users per second this node asks to reconnect elsewhere while it holds
    /// clearly more than the cluster's average; 0 turns rebalancing off.
    pub rebalance_per_sec: u32,
}

impl RedisBusOptions {
    /// The options of a node configured with `config`, or `None` when it has
    /// no Redis URL (a single node). A node without a `node_id` gets a random
    /// one.
    #[must_use]
    pub fn from_config(config: &Config) -> Option<RedisBusOptions> {
        let url = config.redis.clone()?;
        let node_id = config.node_id.clone().unwrap_or_else(random_node_id);
        Some(RedisBusOptions {
            url,
            node_id,
            prefix: config.redis_prefix.clone(),
            heartbeat: Duration::from_secs(config.heartbeat_secs.max(1)),
            // Moving users only helps when a load balancer picks their next
            // node; chatd knows it is behind one from the PROXY header.
            rebalance_per_sec: if config.proxy_protocol {
                config.rebalance_per_sec
            } else {
                0
            },
        })
    }

    /// How long after its last heartbeat a node counts as gone.
    #[must_use]
    pub fn presence_ttl(&self) -> Duration {
        self.heartbeat * 3
    }

    fn validate(&self) -> Result<(), RedisBusError> {
        let node_ok = !self.node_id.is_empty()
            && self.node_id.len() <= 64
            && self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if !node_ok {
            return Err(RedisBusError::InvalidNodeId(self.node_id.clone()));
        }
        if self.prefix.len() > 64 || self.prefix.chars().any(char::is_whitespace) {
            return Err(RedisBusError::InvalidPrefix(self.prefix.clone()));
        }
        Ok(())
    }
}

/// A node id for a node that was not given one: `node-` and 8 hex digits.
fn random_node_id() -> String {
    format!("node-{:08x}", rand::random::<u32>())
}

/// Key and channel names of one cluster (one prefix) as seen by one node.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    me: String,
}

impl Keys {
    fn node_alive(&self) -> String {
        format!("{}node:{}", self.prefix, self.me)
    }

    fn node_users(&self) -> String {
        format!("{}node:{}:users", self.prefix, self.me)
    }

    fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    fn user_nodes(&self, user: UserId) -> String {
        format!("{}user:{}:nodes", self.prefix, user.0)
    }

    fn channel(&self) -> String {
        format!("{}deliver:{}", self.prefix, self.me)
    }
}

/// The Lua scripts, hashed once.
struct Scripts {
    presence: Script,
    bulk: Script,
    online: Script,
    route: Script,
    heartbeat: Script,
    withdraw: Script,
    end: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            presence: Script::new(PRESENCE_SCRIPT),
            bulk: Script::new(BULK_SCRIPT),
            online: Script::new(ONLINE_SCRIPT),
            route: Script::new(ROUTE_SCRIPT),
            heartbeat: Script::new(HEARTBEAT_SCRIPT),
            withdraw: Script::new(WITHDRAW_SCRIPT),
            end: Script::new(END_SCRIPT),
        }
    }

    fn all(&self) -> [&Script; 7] {
        [
            &self.presence,
            &self.bulk,
            &self.online,
            &self.route,
            &self.heartbeat,
            &self.withdraw,
            &self.end,
        ]
    }
}

/// What the bus handle and the link task share.
struct Shared {
    keys: Keys,
    hub: Arc<Hub>,
    scripts: Scripts,
    /// The command connection while the node is joined, `None` while Redis
    /// is unreachable. A blocking lock: it is held only to clone or replace
    /// a handle, never across an await.
    link: RwLock<Option<MultiplexedConnection>>,
    /// Rung by a caller whose Redis call failed, so the link task checks the
    /// connection now rather than at the next heartbeat.
    suspect: Notify,
}

impl Shared {
    fn connection(&self) -> Option<MultiplexedConnection> {
        self.link.read().clone()
    }

    fn set_connection(&self, connection: Option<MultiplexedConnection>) {
        *self.link.write() = connection;
    }
}

/// A presence change to write: make Redis match the hub for `user`. The
/// reply is the number of other live nodes hosting the user, or `None`
/// when Redis could not be asked.
struct PresenceChange {
    user: UserId,
    reply: oneshot::Sender<Option<u64>>,
}

/// The cluster bus over Redis; see the [module docs](self).
pub struct RedisBus {
    shared: Arc<Shared>,
    routes: mpsc::Sender<Route>,
    router: Mutex<Option<JoinHandle<()>>>,
    changes: mpsc::UnboundedSender<PresenceChange>,
    stop: watch::Sender<bool>,
    connected: watch::Receiver<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("node_id", &self.shared.keys.me)
            .field("prefix", &self.shared.keys.prefix)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Tells the other nodes that host `user` to end its sessions (only
    /// those holding the token with the hash `token_hash`, if given).
    /// Returns how many were told, `None` if they could not be reached.
    async fn order_end(
        &self,
        user: UserId,
        token_hash: Option<&str>,
        message: &str,
    ) -> Option<u64> {
        let mut connection = self.shared.connection()?;
        let keys = &self.shared.keys;
        let envelope = envelope::end_order(user, token_hash, message);
        let mut invocation = self.shared.scripts.end.prepare_invoke();
        invocation
            .key(keys.user_nodes(user))
            .arg(&keys.prefix)
            .arg(&keys.me)
            .arg(envelope);
        let told = tokio::time::timeout(
            CALL_TIMEOUT,
            invocation.invoke_async::<u64>(&mut connection),
        )
        .await;
        match told {
            Ok(Ok(told)) => Some(told),
            Ok(Err(error)) => {
                tracing::warn!(%user, %error, "could not tell the other nodes to end a user's sessions");
                self.shared.suspect.notify_one();
                None
            }
            Err(_) => {
                tracing::warn!(%user, "telling the other nodes to end a user's sessions timed out");
                self.shared.suspect.notify_one();
                None
            }
        }
    }

    /// Starts the bus of the node whose sessions are in `hub`: connects,
    /// subscribes, registers, and keeps doing so in the background. Waits up
    /// to a few seconds for the first connection; if Redis is not reachable
    /// by then, the node starts serving its local users anyway and joins
    /// the cluster as soon as Redis answers.
    ///
    /// # Errors
    /// [`RedisBusError`] for an unparsable URL, node id or prefix.
    pub async fn start(options: RedisBusOptions, hub: Arc<Hub>) -> Result<RedisBus, RedisBusError> {
        options.validate()?;
        let client =
            redis::Client::open(options.url.as_str()).map_err(RedisBusError::InvalidUrl)?;
        let shared = Arc::new(Shared {
            keys: Keys {
                prefix: options.prefix.clone(),
                me: options.node_id.clone(),
            },
            hub,
            scripts: Scripts::new(),
            link: RwLock::new(None),
            suspect: Notify::new(),
        });
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let (connected_tx, mut connected) = watch::channel(false);
        let link = Link {
            shared: shared.clone(),
            client,
            url: redact(&options.url),
            heartbeat: options.heartbeat,
            rebalance_per_sec: options.rebalance_per_sec,
            changes: changes_rx,
            stop: stop_rx,
            connected: connected_tx,
        };
        let task = tokio::spawn(link.run());
        let (routes, routes_rx) = mpsc::channel(ROUTE_QUEUE);
        let router = tokio::spawn(route_loop(shared.clone(), routes_rx));
        let joined = tokio::time::timeout(START_WAIT, connected.wait_for(|up| *up))
            .await
            .is_ok_and(|joined| joined.is_ok());
        if !joined {
            tracing::error!(
                node = %options.node_id,
                "not joined to the cluster yet: serving local users only until Redis answers"
            );
        }
        Ok(RedisBus {
            shared,
            routes,
            router: Mutex::new(Some(router)),
            changes,
            stop,
            connected,
            task: Mutex::new(Some(task)),
        })
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.shared.keys.me
    }

    /// Whether the node is joined to the cluster right now (connected,
    /// subscribed and registered).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until the node is joined, at most `timeout`; returns whether it
    /// is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut connected = self.connected.clone();
        tokio::time::timeout(timeout, connected.wait_for(|up| *up))
            .await
            .is_ok_and(|joined| joined.is_ok())
    }

    /// Asks the link task to make Redis match the hub for `user`; the number
    /// of other live nodes hosting the user, or `None` if Redis could not be
    /// asked in time.
    async fn reconcile(&self, user: UserId) -> Option<u64> {
        let (reply, answer) = oneshot::channel();
        self.changes.send(PresenceChange { user, reply }).ok()?;
        // The change is written even if this wait gives up: only the answer
        // is lost, and the caller falls back to what this node knows.
        tokio::time::timeout(CALL_TIMEOUT, answer)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        // A node that is dropped without `close` (a crash in tests) must stop
        // heartbeating, so that its presence expires as a real crash's would.
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
        if let Some(router) = self.router.lock().take() {
            router.abort();
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn is_connected(&self) -> bool {
        RedisBus::is_connected(self)
    }

    fn forward_queue_depth(&self) -> usize {
        self.routes.max_capacity() - self.routes.capacity()
    }

    fn deliver(&self, users: &[UserId], frame: Bytes, except: Option<SessionId>) {
        self.shared.hub.deliver(users, &frame, except);
        if users.is_empty() {
            return;
        }
        // Other nodes are reached by the router task, in the order of these
        // calls; a full queue drops the forwarding, never the message (it is
        // stored, and the recipients' clients sync it).
        let route = Route {
            users: users.to_vec(),
            frame,
        };
        if self.routes.try_send(route).is_err() {
            tracing::warn!("cross-node delivery queue is full; remote recipients will sync");
        }
    }

    async fn session_opened(&self, user: UserId, local_sessions: usize) -> bool {
        if local_sessions != 1 {
            // Already registered here by the user's first session.
            return false;
        }
        match self.reconcile(user).await {
            Some(others) => others == 0,
            // Without Redis the node knows only itself, like a single node.
            None => true,
        }
    }

    async fn session_closed(&self, user: UserId, local_sessions: usize) -> bool {
        if local_sessions != 0 {
            return false;
        }
        let others = self.reconcile(user).await;
        // A session of the user may have opened here meanwhile.
        let here = self.shared.hub.session_count(user) > 0;
        match others {
            Some(others) => others == 0 && !here,
            None => !here,
        }
    }

    async fn online(&self, users: &[UserId]) -> Vec<bool> {
        let hub = &self.shared.hub;
        let mut online: Vec<bool> = users
            .iter()
            .map(|&user| hub.session_count(user) > 0)
            .collect();
        let remote: Vec<usize> = (0..users.len()).filter(|&i| !online[i]).collect();
        if remote.is_empty() {
            return online;
        }
        let Some(mut connection) = self.shared.connection() else {
            return online;
        };
        let keys = &self.shared.keys;
        let mut invocation = self.shared.scripts.online.prepare_invoke();
        for &i in &remote {
            invocation.key(keys.user_nodes(users[i]));
        }
        invocation.arg(&keys.prefix).arg(&keys.me);
        let answer = tokio::time::timeout(
            CALL_TIMEOUT,
            invocation.invoke_async::<Vec<i64>>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok(flags)) => {
                for (&i, flag) in remote.iter().zip(flags) {
                    online[i] = flag == 1;
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "presence lookup failed; answering from this node");
                self.shared.suspect.notify_one();
            }
            Err(_) => {
                tracing::debug!("presence lookup timed out; answering from this node");
                self.shared.suspect.notify_one();
            }
        }
        online
    }

    fn node_id(&self) -> Option<&str> {
        Some(&self.shared.keys.me)
    }

    async fn end_sessions(&self, user: UserId, message: &str) -> EndedSessions {
        let here = self
            .shared
            .hub
            .end_sessions(user, &Ending::ByOperator(message.to_owned()));
        let other_nodes = self.order_end(user, None, message).await;
        EndedSessions { here, other_nodes }
    }

    async fn end_token_sessions(
        &self,
        user: UserId,
        token_hash: &str,
        except: SessionId,
        message: &str,
    ) -> EndedSessions {
        let here = self.shared.hub.end_token_sessions(
            user,
            token_hash,
            Some(except),
            &Ending::ByOperator(message.to_owned()),
        );
        let other_nodes = self.order_end(user, Some(token_hash), message).await;
        EndedSessions { here, other_nodes }
    }

    async fn close(&self) {
        // Forwarding stops first: the sessions are gone, and their queued
        // pushes are stored anyway.
        if let Some(router) = self.router.lock().take() {
            router.abort();
        }
        let _ = self.stop.send(true);
        let task = self.task.lock().take();
        if let Some(mut task) = task {
            // The link withdraws this node's presence (one bounded call) and
            // stops; give it a little longer than that, then stop it anyway.
            if tokio::time::timeout(CALL_TIMEOUT * 3, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_node_ids_and_prefixes() {
        let options = |node_id: &str, prefix: &str| RedisBusOptions {
            url: "redis://127.0.0.1".to_owned(),
            node_id: node_id.to_owned(),
            prefix: prefix.to_owned(),
            heartbeat: Duration::from_secs(2),
            rebalance_per_sec: 0,
        };
        assert!(options("node-1", "chat:").validate().is_ok());
        assert!(options("a.b_c:d-9", "").validate().is_ok());
        assert!(options("", "chat:").validate().is_err());
        assert!(options("node 1", "chat:").validate().is_err());
        assert!(options(&"n".repeat(65), "chat:").validate().is_err());
        assert!(options("node-1", "chat :").validate().is_err());
        assert!(random_node_id().starts_with("node-"));
        options(&random_node_id(), "chat:").validate().unwrap();
    }
}
