//! The link: the one task that owns the connections to Redis. It connects
//! (with backoff), subscribes to this node's channel, registers every local
//! user, heartbeats, writes presence changes in order, hands envelopes from
//! other nodes to the hub, notices a dead connection, and starts over.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, RedisError};
use tokio::sync::{mpsc, watch};

use super::{envelope, PresenceChange, Shared, CALL_TIMEOUT};
use crate::hub::Ending;

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

/// Why the link left the connected state.
enum Left {
    /// `close` was called (or the bus was dropped).
    Stopped,
    /// The connection failed; reconnect.
    Lost(String),
}

/// The link task: connects, subscribes, heartbeats, writes presence
/// changes, receives envelopes, and reconnects.
pub(super) struct Link {
    pub(super) shared: Arc<Shared>,
    pub(super) client: redis::Client,
    /// The URL without password, for logs.
    pub(super) url: String,
    pub(super) heartbeat: Duration,
    pub(super) rebalance_per_sec: u32,
    pub(super) changes: mpsc::UnboundedReceiver<PresenceChange>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) connected: watch::Sender<bool>,
}

/// The connections of one joined period.
struct Joined {
    connection: MultiplexedConnection,
    messages: PubSubStream,
}

impl Link {
    pub(super) async fn run(mut self) {
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
        let mut membership = Membership::new(self.heartbeat);
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
                            if membership.settled(live_nodes, Instant::now()) {
                                self.rebalance(live_nodes, users);
                            }
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

/// How long the set of live nodes must stay the same before a node moves
/// users: a node is live here at its first heartbeat, but the load
/// balancer sends it nobody until its own health checks have passed
/// (HAProxy as shipped: two checks a second apart). Users moved before
/// then all land on the nodes the balancer already knows, and the spread
/// they leave is within the slack that keeps small clusters from flapping,
/// so it would stay uneven.
const SETTLE_HEARTBEATS: u32 = 5;

/// The number of live nodes, and since when it has been that.
struct Membership {
    nodes: u64,
    since: Instant,
    settle: Duration,
}

impl Membership {
    fn new(heartbeat: Duration) -> Membership {
        Membership {
            nodes: 0,
            since: Instant::now(),
            settle: heartbeat * SETTLE_HEARTBEATS,
        }
    }

    /// Notes `nodes` live at `now`; whether that number has held for the
    /// settling time.
    fn settled(&mut self, nodes: u64, now: Instant) -> bool {
        if nodes != self.nodes {
            self.nodes = nodes;
            self.since = now;
        }
        now.duration_since(self.since) >= self.settle
    }
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
pub(super) fn redact(url: &str) -> String {
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
    fn rebalancing_waits_for_the_live_nodes_to_settle() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut membership = Membership::new(second);
        assert!(!membership.settled(1, start));
        assert!(membership.settled(1, start + 5 * second));
        // A node joins: nothing moves until five heartbeats later.
        assert!(!membership.settled(3, start + 6 * second));
        assert!(!membership.settled(3, start + 10 * second));
        assert!(membership.settled(3, start + 11 * second));
        // And again when one leaves.
        assert!(!membership.settled(2, start + 12 * second));
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
    fn redacts_passwords() {
        assert!(!redact("redis://:hunter2@127.0.0.1:6379").contains("hunter2"));
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
