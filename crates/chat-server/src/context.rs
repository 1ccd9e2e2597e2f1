//! What every request handler can reach: configuration, store, bus, hub and
//! the shared limiters.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_proto::frame::encode_json;
use chat_proto::{ChatMessage, Flags, MessageType, Push, Status, UserId};
use chat_store::Store;

use crate::auth::Passwords;
use crate::bus::Bus;
use crate::config::Config;
use crate::hub::{Hub, SessionId};
use crate::limits::WindowCounter;

/// Shared state of one running node. Cheap to share behind an `Arc`.
pub struct Context {
    /// The validated configuration.
    pub config: Config,
    /// The persistent store.
    pub store: Arc<dyn Store>,
    /// Cluster-wide delivery and presence.
    pub bus: Arc<dyn Bus>,
    /// This node's sessions.
    pub hub: Arc<Hub>,
    /// Password hashing off the async workers.
    pub passwords: Passwords,
    /// Failed password logins per account.
    pub login_failures_by_account: WindowCounter<UserId>,
    /// Failed password logins per client address.
    pub login_failures_by_ip: WindowCounter<IpAddr>,
}

impl Context {
    /// Shared state for `config` over an opened store and bus.
    pub fn new(config: Config, store: Arc<dyn Store>, bus: Arc<dyn Bus>, hub: Arc<Hub>) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            login_failures_by_account: WindowCounter::new(
                config.login_failures_per_account,
                minute,
            ),
            login_failures_by_ip: WindowCounter::new(config.login_failures_per_ip, minute),
            config,
            store,
            bus,
            hub,
            passwords: Passwords::new(),
        }
    }

    /// Encodes a push once, so the same bytes can go to every recipient.
    #[must_use]
    pub fn encode_push(push: &Push) -> Bytes {
        let mut buf = BytesMut::with_capacity(256);
        // Pushes are plain structs of strings and numbers: they always encode.
        let _ = push.encode(&mut buf);
        buf.freeze()
    }

    /// Encodes a `push_message` frame straight from a stored message, with
    /// no copy of it.
    #[must_use]
    pub fn encode_message_push(message: &ChatMessage) -> Bytes {
        let mut buf = BytesMut::with_capacity(192 + message.body.len());
        // A message is strings and numbers: it always encodes.
        let _ = encode_json(
            &mut buf,
            Flags::PUSH,
            MessageType::PushMessage.code(),
            Status::Ok,
            0,
            message,
        );
        buf.freeze()
    }

    /// Sends a push to every session of `users` (but `except`), anywhere.
    pub fn push(&self, users: &[UserId], push: &Push, except: Option<SessionId>) {
        if users.is_empty() {
            return;
        }
        self.bus.deliver(users, Self::encode_push(push), except);
    }
}

/// The logged-in user a session acts as. Set only by a successful login; no
/// field of any request can change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    /// The user's name.
    pub name: String,
    /// The session.
    pub session: SessionId,
    /// The hash of the session's token, revoked at logout.
    pub token_hash: String,
}

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
