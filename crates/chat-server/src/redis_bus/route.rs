//! Forwarding: pushes for users on other nodes, in the order they were
//! handed to the bus, one pipelined round trip per batch.

use std::sync::Arc;

use bytes::Bytes;
use chat_proto::UserId;
use tokio::sync::mpsc;

use super::{Shared, CALL_TIMEOUT};

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
pub(super) struct Route {
    pub(super) users: Vec<UserId>,
    pub(super) frame: Bytes,
}

/// How many pushes may wait for forwarding before new ones are dropped.
pub(super) const ROUTE_QUEUE: usize = 65_536;

/// The most pushes forwarded in one pipelined round trip.
const ROUTE_BATCH: usize = 128;

/// Forwards pushes in the order they were handed over, so each
/// conversation's pushes leave this node in the order they were committed;
/// whatever queued up during one round trip goes out in the next.
pub(super) async fn route_loop(shared: Arc<Shared>, mut routes: mpsc::Receiver<Route>) {
    let mut batch = Vec::with_capacity(ROUTE_BATCH);
    while routes.recv_many(&mut batch, ROUTE_BATCH).await > 0 {
        shared.route(&batch).await;
        batch.clear();
    }
}
