//! The bus: delivery and presence across the whole deployment.
//!
//! Services never talk to the [`Hub`] directly; they hand pushes to a
//! [`Bus`]. A single node uses [`LocalBus`], which is the hub and nothing
//! more. A cluster uses [`crate::redis_bus::RedisBus`], which delivers to the
//! local hub and forwards to the other nodes where a user is connected. The
//! bus never carries anything that is not also in the store: a push lost in
//! transit is recovered by the client's sync.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chat_proto::UserId;

use crate::hub::{Ending, Hub, SessionId};

/// Cluster-wide delivery and presence.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Delivers an encoded push frame to every session of `users`, on any
    /// node, except the session `except` of this node. It does not wait:
    /// local sessions get the frame queued at once and forwarding to other
    /// nodes is queued in call order, so calls made in commit order deliver
    /// in commit order. (It may run on the store's writer; it must not block.)
    fn deliver(&self, users: &[UserId], frame: Bytes, except: Option<SessionId>);

    /// Records that a session of `user` opened here, leaving `local_sessions`
    /// sessions of that user on this node. Returns whether the user just came
    /// online (had no session anywhere before).
    async fn session_opened(&self, user: UserId, local_sessions: usize) -> bool;

    /// Records that a session of `user` closed here, leaving `local_sessions`.
    /// Returns whether the user just went offline everywhere.
    async fn session_closed(&self, user: UserId, local_sessions: usize) -> bool;

    /// Whether each of `users` is online anywhere, in the same order.
    async fn online(&self, users: &[UserId]) -> Vec<bool>;

    /// Ends every session of `user` on every node, each with a
    /// `session_ended` push (`logged_out`) carrying `message`: an operator
    /// kicked, disabled or deleted the account, or reset its password.
    async fn end_sessions(&self, user: UserId, message: &str) -> EndedSessions;

    /// Ends the sessions of `user`, on every node, that hold the token with
    /// the hash `token_hash`, but the session `except` of this node; each
    /// gets a `session_ended` push (`logged_out`) carrying `message`. The
    /// user logged out, and the token is revoked.
    async fn end_token_sessions(
        &self,
        user: UserId,
        token_hash: &str,
        except: SessionId,
        message: &str,
    ) -> EndedSessions;

    /// This node's name in the cluster, if it has one.
    fn node_id(&self) -> Option<&str> {
        None
    }

    /// Stops background work and withdraws this node's presence.
    async fn close(&self);

    /// Whether the bus can reach the rest of the cluster right now (a
    /// single node's bus always can). Readiness probes report it.
    fn is_connected(&self) -> bool {
        true
    }

    /// Pushes waiting to be forwarded to other nodes (none on one node).
    fn forward_queue_depth(&self) -> usize {
        0
    }
}

/// What [`Bus::end_sessions`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedSessions {
    /// Sessions ended on this node.
    pub here: usize,
    /// Other nodes that host the user and were told to end its sessions
    /// there; `None` when the other nodes could not be reached (the bus is
    /// disconnected), so sessions elsewhere may go on.
    pub other_nodes: Option<u64>,
}

/// The bus of a single node: the hub is the whole world.
#[derive(Debug, Clone)]
pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    /// A bus over `hub`.
    #[must_use]
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn deliver(&self, users: &[UserId], frame: Bytes, except: Option<SessionId>) {
        self.hub.deliver(users, &frame, except);
    }

    async fn session_opened(&self, _user: UserId, local_sessions: usize) -> bool {
        local_sessions == 1
    }

    async fn session_closed(&self, _user: UserId, local_sessions: usize) -> bool {
        local_sessions == 0
    }

    async fn online(&self, users: &[UserId]) -> Vec<bool> {
        users
            .iter()
            .map(|&user| self.hub.session_count(user) > 0)
            .collect()
    }

    async fn end_sessions(&self, user: UserId, message: &str) -> EndedSessions {
        EndedSessions {
            here: self
                .hub
                .end_sessions(user, &Ending::ByOperator(message.to_owned())),
            other_nodes: Some(0),
        }
    }

    async fn end_token_sessions(
        &self,
        user: UserId,
        token_hash: &str,
        except: SessionId,
        message: &str,
    ) -> EndedSessions {
        EndedSessions {
            here: self.hub.end_token_sessions(
                user,
                token_hash,
                Some(except),
                &Ending::ByOperator(message.to_owned()),
            ),
            other_nodes: Some(0),
        }
    }

    async fn close(&self) {}
}
