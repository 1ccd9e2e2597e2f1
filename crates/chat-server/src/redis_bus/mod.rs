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

mod envelope;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chat_proto::UserId;
use futures::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, RedisError, Script};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::bus::{Bus, EndedSessions};
use crate::config::Config;
use crate::hub::{Ending, Hub, SessionId};

/// The longest any single Redis call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest establishing the connections to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The first delay before reconnecting after a failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Users written per script call when (re-)registering a whole node.
const RESYNC_CHUNK: usize = 500;
/// Entries of dead nodes removed per heartbeat, so one sweep never holds
/// Redis for long.
const SWEEP_BUDGET: usize = 1000;
/// Presence changes written in one pipelined round.
const OP_BATCH: usize = 256;
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

impl Shared {
    /// Forwards frames to the other live nodes where any of their users has
    /// a session. Each route is one call of the route script, which looks
    /// the nodes up and publishes once per node; a whole batch goes out as
    /// one pipeline, so the calls reach Redis (and each node's channel) in
    /// order, in one round trip.
    async fn route(&self, batch: &[Route]) {
        let Some(mut connection) = self.connection() else {
            // Local-only while Redis is away; the store keeps the rest.
            return;
        };
        let keys = &self.keys;
        let mut pipeline = redis::pipe();
        for route in batch {
            let call = pipeline
                .cmd("EVALSHA")
                .arg(self.scripts.route.get_hash())
                .arg(route.users.len());
            for &user in &route.users {
                call.arg(keys.user_nodes(user));
            }
            call.arg(&keys.prefix)
                .arg(&keys.me)
                .arg(route.frame.as_ref());
            for &user in &route.users {
                call.arg(user.0);
            }
            call.ignore();
        }
        let routed =
            tokio::time::timeout(CALL_TIMEOUT, pipeline.query_async::<()>(&mut connection)).await;
        match routed {
            Ok(Ok(())) => {
                metrics::counter!("chatd_bus_envelopes_sent_total").increment(batch.len() as u64);
            }
            Ok(Err(error)) if error.kind() == redis::ErrorKind::NoScriptError => {
                // Redis lost its script cache without dropping the
                // connection (SCRIPT FLUSH): load it again for the next
                // batch; this one's recipients recover by sync.
                tracing::warn!("Redis forgot the routing script; loading it again");
                let _ = tokio::time::timeout(
                    CALL_TIMEOUT,
                    self.scripts
                        .route
                        .prepare_invoke()
                        .load_async(&mut connection),
                )
                .await;
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "cross-node delivery failed; recipients recover by sync");
                self.suspect.notify_one();
            }
            Err(_) => {
                tracing::debug!("cross-node delivery timed out; recipients recover by sync");
                self.suspect.notify_one();
            }
        }
    }
}

/// A push waiting to be forwarded to other nodes.
struct Route {
    users: Vec<UserId>,
    frame: Bytes,
}

/// How many pushes may wait for forwarding before new ones are dropped.
const ROUTE_QUEUE: usize = 65_536;

/// The most pushes forwarded in one pipelined round trip.
const ROUTE_BATCH: usize = 128;

/// Forwards pushes in the order they were handed over, so each
/// conversation's pushes leave this node in the order they were committed;
/// whatever queued up during one round trip goes out in the next.
async fn route_loop(shared: Arc<Shared>, mut routes: mpsc::Receiver<Route>) {
    let mut batch = Vec::with_capacity(ROUTE_BATCH);
    while routes.recv_many(&mut batch, ROUTE_BATCH).await > 0 {
        shared.route(&batch).await;
        batch.clear();
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
    /// is unreachable. A `std` lock: it is held only to clone or replace a
    /// handle, never across an await.
    link: RwLock<Option<MultiplexedConnection>>,
    /// Rung by a caller whose Redis call failed, so the link task checks the
    /// connection now rather than at the next heartbeat.
    suspect: Notify,
}

impl Shared {
    fn connection(&self) -> Option<MultiplexedConnection> {
        self.link.read().expect("link lock poisoned").clone()
    }

    fn set_connection(&self, connection: Option<MultiplexedConnection>) {
        *self.link.write().expect("link lock poisoned") = connection;
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
        if let Some(task) = self.task.lock().expect("task lock poisoned").take() {
            task.abort();
        }
        if let Some(router) = self.router.lock().expect("task lock poisoned").take() {
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
        if let Some(router) = self.router.lock().expect("task lock poisoned").take() {
            router.abort();
        }
        let _ = self.stop.send(true);
        let task = self.task.lock().expect("task lock poisoned").take();
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

/// Why the link left the connected state.
enum Left {
    /// `close` was called (or the bus was dropped).
    Stopped,
    /// The connection failed; reconnect.
    Lost(String),
}

/// The link task: connects, subscribes, heartbeats, writes presence
/// changes, receives envelopes, and reconnects.
struct Link {
    shared: Arc<Shared>,
    client: redis::Client,
    /// The URL without password, for logs.
    url: String,
    heartbeat: Duration,
    rebalance_per_sec: u32,
    changes: mpsc::UnboundedReceiver<PresenceChange>,
    stop: watch::Receiver<bool>,
    connected: watch::Sender<bool>,
}

/// The connections of one joined period.
struct Joined {
    connection: MultiplexedConnection,
    messages: PubSubStream,
}

impl Link {
    async fn run(mut self) {
        let mut failures = 0u32;
        let mut down_since: Option<Instant> = None;
        loop {
            let delay = if failures == 0 {
                Duration::ZERO
            } else {
                backoff(failures)
            };
            let attempt = {
                let client = self.client.clone();
                let shared = self.shared.clone();
                let heartbeat = self.heartbeat;
                async move {
                    tokio::time::sleep(delay).await;
                    match tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        connect(&client, &shared, heartbeat),
                    )
                    .await
                    {
                        Ok(result) => result,
                        Err(_) => Err("timed out connecting".to_owned()),
                    }
                }
            };
            let Some(result) = self.while_away(attempt).await else {
                return;
            };
            match result {
                Ok(joined) => {
                    failures = 0;
                    match down_since.take() {
                        Some(since) => tracing::warn!(
                            node = %self.shared.keys.me,
                            redis = %self.url,
                            after = ?since.elapsed(),
                            "Redis is back: rejoined the cluster"
                        ),
                        None => tracing::info!(
                            node = %self.shared.keys.me,
                            redis = %self.url,
                            "joined the cluster"
                        ),
                    }
                    let left = self.joined(joined).await;
                    self.shared.set_connection(None);
                    self.connected.send_replace(false);
                    match left {
                        Left::Stopped => return,
                        Left::Lost(reason) => {
                            tracing::error!(
                                node = %self.shared.keys.me,
                                redis = %self.url,
                                %reason,
                                "lost Redis: serving local users only; cross-node delivery and \
                                 presence are paused (messages stay stored) until it returns"
                            );
                            down_since = Some(Instant::now());
                        }
                    }
                }
                Err(reason) => {
                    if failures == 0 && down_since.is_none() {
                        tracing::error!(
                            node = %self.shared.keys.me,
                            redis = %self.url,
                            %reason,
                            "cannot reach Redis: serving local users only; retrying with backoff"
                        );
                        down_since = Some(Instant::now());
                    } else {
                        tracing::debug!(%reason, failures, "Redis still unreachable");
                    }
                    failures = failures.saturating_add(1);
                }
            }
        }
    }

    /// Drives `attempt` to completion while answering presence changes
    /// locally; `None` when the bus is stopping.
    async fn while_away<T>(&mut self, attempt: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                result = &mut attempt => return Some(result),
                change = self.changes.recv() => match change {
                    // Nothing to write: the re-registration after the
                    // reconnect covers every user the hub holds by then.
                    Some(change) => { let _ = change.reply.send(None); }
                    None => return None,
                },
                _ = self.stop.changed() => return None,
            }
        }
    }

    /// Serves one connected period; returns why it ended.
    async fn joined(&mut self, joined: Joined) -> Left {
        let Joined {
            mut connection,
            mut messages,
        } = joined;
        self.shared.set_connection(Some(connection.clone()));
        // Register every local user before answering any queued change, so
        // those changes (which read the hub when processed) come after it.
        if let Err(reason) = self.resync(&mut connection).await {
            return Left::Lost(reason);
        }
        self.connected.send_replace(true);
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shared_channel_reported = false;
        loop {
            tokio::select! {
                biased;
                stopped = self.stop.changed() => {
                    // An error means the bus was dropped without `close`:
                    // leave as a crash would, without withdrawing.
                    if stopped.is_ok() {
                        self.withdraw(&mut connection).await;
                    }
                    return Left::Stopped;
                }
                message = messages.next() => match message {
                    Some(message) => self.receive(message.get_payload_bytes()),
                    None => return Left::Lost("the subscription connection closed".to_owned()),
                },
                change = self.changes.recv() => {
                    let Some(change) = change else {
                        return Left::Stopped;
                    };
                    let mut batch = vec![change];
                    while batch.len() < OP_BATCH {
                        match self.changes.try_recv() {
                            Ok(change) => batch.push(change),
                            Err(_) => break,
                        }
                    }
                    if let Err(reason) = self.write_changes(&mut connection, batch).await {
                        return Left::Lost(reason);
                    }
                }
                _ = heartbeat.tick() => {
                    match self.beat(&mut connection).await {
                        Ok(Beat { existed, subscribers, live_nodes, users }) => {
                            self.rebalance(live_nodes, users);
                            if subscribers == 0 {
                                return Left::Lost("this node's subscription is gone".to_owned());
                            }
                            if subscribers > 1 && !shared_channel_reported {
                                // Two nodes under one id would each withdraw
                                // the other's users' presence.
                                tracing::warn!(
                                    node = %self.shared.keys.me,
                                    subscribers,
                                    "another subscriber listens on this node's channel: is the node id unique?"
                                );
                                shared_channel_reported = true;
                            }
                            if !existed {
                                // Redis forgot this node (restarted without
                                // dropping the connection, or the node was
                                // late and got swept): register everything.
                                tracing::warn!(node = %self.shared.keys.me, "registration lost in Redis; registering again");
                                if let Err(reason) = self.resync(&mut connection).await {
                                    return Left::Lost(reason);
                                }
                            }
                        }
                        Err(reason) => return Left::Lost(reason),
                    }
                }
                () = self.shared.suspect.notified() => {
                    let ping = redis::cmd("PING");
                    let answer = tokio::time::timeout(CALL_TIMEOUT, ping.query_async::<String>(&mut connection)).await;
                    if let Err(reason) = flatten(answer) {
                        return Left::Lost(reason);
                    }
                }
            }
        }
    }

    /// Hands an envelope from another node to the local hub.
    fn receive(&self, payload: &[u8]) {
        if payload.is_empty() {
            // The heartbeat's check of this node's own subscription.
            return;
        }
        if let Some(order) = payload.strip_prefix(envelope::END_ENVELOPE) {
            match envelope::parse_end_order(order) {
                Some(envelope::EndOrder {
                    user,
                    token_hash: None,
                    message,
                }) => {
                    let ended = self
                        .shared
                        .hub
                        .end_sessions(user, &Ending::ByOperator(message));
                    tracing::info!(%user, sessions = ended, "sessions ended by an operator on another node");
                }
                Some(envelope::EndOrder {
                    user,
                    token_hash: Some(token_hash),
                    message,
                }) => {
                    let ended = self.shared.hub.end_token_sessions(
                        user,
                        &token_hash,
                        None,
                        &Ending::ByOperator(message),
                    );
                    tracing::debug!(%user, sessions = ended, "sessions of a revoked token ended");
                }
                None => tracing::warn!(
                    len = payload.len(),
                    "ignored a malformed end order on this node's channel"
                ),
            }
            return;
        }
        match envelope::parse(payload) {
            Some((users, frame)) => {
                metrics::counter!("chatd_bus_envelopes_received_total").increment(1);
                self.shared.hub.deliver(&users, &frame, None);
            }
            None => tracing::warn!(
                len = payload.len(),
                "ignored a malformed envelope on this node's channel"
            ),
        }
    }

    /// Writes a batch of presence changes in one pipelined round and
    /// answers each. An error means the connection is unusable.
    async fn write_changes(
        &self,
        connection: &mut MultiplexedConnection,
        batch: Vec<PresenceChange>,
    ) -> Result<(), String> {
        let keys = &self.shared.keys;
        let calls = batch.iter().map(|change| {
            let present = self.shared.hub.session_count(change.user) > 0;
            let mut invocation = self.shared.scripts.presence.prepare_invoke();
            invocation
                .key(keys.user_nodes(change.user))
                .key(keys.node_users())
                .arg(&keys.prefix)
                .arg(&keys.me)
                .arg(change.user.0)
                .arg(if present { "1" } else { "0" });
            let mut connection = connection.clone();
            async move {
                flatten(
                    tokio::time::timeout(
                        CALL_TIMEOUT,
                        invocation.invoke_async::<u64>(&mut connection),
                    )
                    .await,
                )
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut failure = None;
        for (change, result) in batch.into_iter().zip(results) {
            match result {
                Ok(others) => {
                    let _ = change.reply.send(Some(others));
                }
                Err(reason) => {
                    let _ = change.reply.send(None);
                    failure.get_or_insert(reason);
                }
            }
        }
        // Any failure may have left Redis behind the hub: reconnecting
        // re-registers everything, which is the simplest way to be right.
        failure.map_or(Ok(()), Err)
    }

    /// Makes Redis hold exactly this node's current users: registers every
    /// user in the hub, then withdraws entries the hub no longer has (left
    /// from before an outage or a previous run under the same node id).
    async fn resync(&self, connection: &mut MultiplexedConnection) -> Result<(), String> {
        let keys = &self.shared.keys;
        let users = self.shared.hub.users();
        let current: HashSet<u64> = users.iter().map(|user| user.0).collect();
        for chunk in users.chunks(RESYNC_CHUNK) {
            self.bulk(connection, true, chunk.iter().map(|user| user.0))
                .await?;
        }
        let registered: Vec<u64> = flatten(
            tokio::time::timeout(
                CALL_TIMEOUT,
                redis::cmd("SMEMBERS")
                    .arg(keys.node_users())
                    .query_async::<Vec<u64>>(connection),
            )
            .await,
        )?;
        let stale: Vec<u64> = registered
            .into_iter()
            .filter(|user| !current.contains(user))
            .collect();
        for chunk in stale.chunks(RESYNC_CHUNK) {
            self.bulk(connection, false, chunk.iter().copied()).await?;
        }
        tracing::debug!(
            node = %keys.me,
            users = users.len(),
            stale = stale.len(),
            "registered local users"
        );
        Ok(())
    }

    async fn bulk(
        &self,
        connection: &mut MultiplexedConnection,
        add: bool,
        users: impl Iterator<Item = u64>,
    ) -> Result<(), String> {
        let keys = &self.shared.keys;
        let mut invocation = self.shared.scripts.bulk.prepare_invoke();
        invocation
            .key(keys.node_users())
            .arg(&keys.prefix)
            .arg(&keys.me)
            .arg(if add { "1" } else { "0" });
        for user in users {
            invocation.arg(user);
        }
        flatten(
            tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<u64>(connection)).await,
        )
        .map(|_| ())
    }

    /// One heartbeat: whether the liveness key still existed, and how many
    /// subscribers this node's channel has.
    async fn beat(&self, connection: &mut MultiplexedConnection) -> Result<Beat, String> {
        heartbeat(&self.shared, self.heartbeat, connection).await
    }

    /// Asks some of this node's users to reconnect (through the load
    /// balancer, to a less busy node) while it holds clearly more than the
    /// cluster's average: at most `rebalance_per_sec` per second, until the
    /// spread is even. Without it, a node restarted after a failure would
    /// stay empty while the survivors carry everyone (and the next failure
    /// hits them all).
    fn rebalance(&self, live_nodes: u64, users: u64) {
        let mine = self.shared.hub.user_count() as u64;
        let excess = rebalance_excess(mine, live_nodes, users);
        if excess == 0 || self.rebalance_per_sec == 0 {
            return;
        }
        let budget = u64::from(self.rebalance_per_sec) * self.heartbeat.as_secs().max(1);
        let quota = excess.min(budget) as usize;
        let mut moved = 0;
        for user in self.shared.hub.users().into_iter().take(quota) {
            moved += self.shared.hub.end_sessions(user, &Ending::Rebalance);
        }
        tracing::info!(
            users = mine,
            average = users / live_nodes.max(1),
            moved,
            "more users here than the cluster's average; asked some to reconnect"
        );
    }

    /// Withdraws the node's presence on the way out (best effort: if it
    /// fails, the liveness key expires on its own).
    async fn withdraw(&self, connection: &mut MultiplexedConnection) {
        let keys = &self.shared.keys;
        let mut invocation = self.shared.scripts.withdraw.prepare_invoke();
        invocation
            .key(keys.node_alive())
            .key(keys.nodes())
            .key(keys.node_users())
            .arg(&keys.prefix)
            .arg(&keys.me);
        let result = flatten(
            tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<u64>(connection)).await,
        );
        match result {
            Ok(_) => tracing::info!(node = %keys.me, "left the cluster"),
            Err(reason) => tracing::warn!(
                node = %keys.me,
                %reason,
                "could not withdraw presence; it expires within three heartbeats"
            ),
        }
    }
}

/// Opens the command and subscription connections, loads the scripts and
/// sends the first heartbeat.
async fn connect(
    client: &redis::Client,
    shared: &Shared,
    heartbeat_period: Duration,
) -> Result<Joined, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(CALL_TIMEOUT);
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|error| error.to_string())?;
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|error| error.to_string())?;
    pubsub
        .subscribe(shared.keys.channel())
        .await
        .map_err(|error| error.to_string())?;
    // Load the scripts now, so no call later has to fall back from EVALSHA
    // to EVAL (which would reorder it behind calls sent after it).
    for script in shared.scripts.all() {
        script
            .prepare_invoke()
            .load_async(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
    }
    heartbeat(shared, heartbeat_period, &mut connection).await?;
    Ok(Joined {
        connection,
        messages: pubsub.into_on_message(),
    })
}

/// What one heartbeat learned.
struct Beat {
    /// Whether this node's liveness key still existed.
    existed: bool,
    /// How many listen on this node's channel (1 when all is well).
    subscribers: u64,
    /// Live nodes in the cluster, this one included.
    live_nodes: u64,
    /// Users registered on live nodes (a user on two nodes counts twice).
    users: u64,
}

/// How many users a node holding `mine` should move, when `users` are
/// spread over `live_nodes`: none unless it holds more than a quarter above
/// the average and at least three more (small clusters do not flap).
fn rebalance_excess(mine: u64, live_nodes: u64, users: u64) -> u64 {
    if live_nodes < 2 {
        return 0;
    }
    let average = users.div_ceil(live_nodes);
    if mine <= average + (average / 4).max(2) {
        return 0;
    }
    mine - average
}

async fn heartbeat(
    shared: &Shared,
    period: Duration,
    connection: &mut MultiplexedConnection,
) -> Result<Beat, String> {
    let keys = &shared.keys;
    let ttl = (period * 3).as_secs().max(1);
    let now_ms = crate::context::now_ms();
    let mut invocation = shared.scripts.heartbeat.prepare_invoke();
    invocation
        .key(keys.node_alive())
        .key(keys.nodes())
        .arg(&keys.prefix)
        .arg(&keys.me)
        .arg(ttl)
        .arg(now_ms)
        .arg(SWEEP_BUDGET);
    let (existed, subscribers, live_nodes, users): (u8, u64, u64, u64) =
        flatten(tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(connection)).await)?;
    Ok(Beat {
        existed: existed == 1,
        subscribers,
        live_nodes,
        users,
    })
}

/// A timed Redis call's outcome as one error text.
fn flatten<T>(
    result: Result<Result<T, RedisError>, tokio::time::error::Elapsed>,
) -> Result<T, String> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// The delay before reconnect attempt `failures` (1-based): exponential from
/// [`INITIAL_BACKOFF`], capped at [`MAX_BACKOFF`], with the upper half
/// jittered so nodes that lost Redis together do not return in lockstep.
fn backoff(failures: u32) -> Duration {
    let exponential = INITIAL_BACKOFF.saturating_mul(2u32.saturating_pow(failures.min(16) - 1));
    let capped = exponential.min(MAX_BACKOFF);
    let half = capped / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// A URL with its password hidden, for logs.
fn redact(url: &str) -> String {
    match redis::parse_redis_url(url) {
        Some(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for failures in 1..40 {
            let delay = backoff(failures);
            assert!(delay <= MAX_BACKOFF, "{failures}: {delay:?}");
            assert!(delay >= INITIAL_BACKOFF / 2, "{failures}: {delay:?}");
        }
        assert!(backoff(20) >= MAX_BACKOFF / 2);
    }

    #[test]
    fn rebalances_only_a_clear_excess() {
        assert_eq!(rebalance_excess(12, 1, 12), 0);
        assert_eq!(rebalance_excess(12, 3, 12), 8);
        assert_eq!(rebalance_excess(5, 3, 12), 0);
        assert_eq!(rebalance_excess(6, 3, 12), 0);
        assert_eq!(rebalance_excess(7, 3, 12), 3);
        assert_eq!(rebalance_excess(400, 3, 1000), 0);
        assert_eq!(rebalance_excess(600, 3, 1000), 266);
        assert_eq!(rebalance_excess(0, 3, 0), 0);
    }

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

    #[test]
    fn redacts_passwords() {
        assert!(!redact("redis://:hunter2@127.0.0.1:6379").contains("hunter2"));
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
