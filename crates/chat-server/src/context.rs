//! What every request handler can reach: configuration, store, bus, hub and
//! the shared limiters.

use std::future::Future;
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
use crate::limits::{RefusalLog, WindowCounter};

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
    /// Failed password logins per account, from any address.
    pub login_failures_by_account: WindowCounter<UserId>,
    /// Failed password logins per account and address: once an account has
    /// too many failures, only addresses that have failed on it are refused.
    pub login_failures_by_account_and_ip: WindowCounter<(UserId, IpAddr)>,
    /// Failed password logins per client address (see
    /// [`address_key`](crate::limits::address_key)).
    pub login_failures_by_ip: WindowCounter<IpAddr>,
    /// Registrations per client address, per hour.
    pub registrations_by_ip: WindowCounter<IpAddr>,
    /// Registrations on this node from all addresses, per minute.
    pub registrations: WindowCounter<()>,
    /// Friend requests per user, per hour.
    pub friend_requests: WindowCounter<UserId>,
    /// Group creations per user, per hour.
    pub group_creations: WindowCounter<UserId>,
    /// Group joins per user, per hour.
    pub group_joins: WindowCounter<UserId>,
    /// Summaries of refused logins.
    pub login_refusals: RefusalLog,
    /// Summaries of refused registrations.
    pub registration_refusals: RefusalLog,
    /// Summaries of requests refused by a per-user quota.
    pub quota_refusals: RefusalLog,
}

/// How often a summary of refusals of one kind is logged at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Context {
    /// Shared state for `config` over an opened store and bus.
    pub fn new(config: Config, store: Arc<dyn Store>, bus: Arc<dyn Bus>, hub: Arc<Hub>) -> Self {
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        Self {
            login_failures_by_account: WindowCounter::new(
                config.login_failures_per_account,
                minute,
            ),
            // Counted whenever the account is counted; its limit only makes
            // it count (0 would turn counting off).
            login_failures_by_account_and_ip: WindowCounter::new(u32::MAX, minute),
            login_failures_by_ip: WindowCounter::new(config.login_failures_per_ip, minute),
            registrations_by_ip: WindowCounter::new(config.registrations_per_ip_per_hour, hour),
            registrations: WindowCounter::new(config.registrations_per_minute, minute),
            friend_requests: WindowCounter::new(config.friend_requests_per_hour, hour),
            group_creations: WindowCounter::new(config.group_creations_per_hour, hour),
            group_joins: WindowCounter::new(config.group_joins_per_hour, hour),
            login_refusals: RefusalLog::new("logins", REFUSAL_LOG_INTERVAL),
            registration_refusals: RefusalLog::new("registrations", REFUSAL_LOG_INTERVAL),
            quota_refusals: RefusalLog::new("per-user quota", REFUSAL_LOG_INTERVAL),
            passwords: Passwords::with_cost(config.password_hash_cost()),
            config,
            store,
            bus,
            hub,
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

impl Context {
    /// Runs `attempt` as one use of a per-user quota: refused with
    /// `rate_limited` (and a summarised log line) when `user` has used up
    /// `quota` for now, and given back when the attempt fails, so that only
    /// what was stored counts.
    ///
    /// # Errors
    /// `rate_limited`, or the attempt's own error.
    pub async fn within_quota<T, E>(
        &self,
        quota: &WindowCounter<UserId>,
        user: UserId,
        what: &'static str,
        attempt: impl Future<Output = Result<T, E>>,
    ) -> crate::error::Result<T>
    where
        E: Into<crate::error::ServiceError>,
    {
        let now = std::time::Instant::now();
        if !quota.try_acquire(user, now) {
            self.quota_refusals.refused(what, now);
            return Err(crate::error::ServiceError::new(
                Status::RateLimited,
                format!("too many {what} for now; retry later"),
            ));
        }
        let result = attempt.await;
        if result.is_err() {
            quota.release(&user);
        }
        result.map_err(Into::into)
    }
}

/// The logged-in user a session acts as. Set only by a successful login; no
/// field of any request can change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    /// The user's name (shared with the hub's handle: one copy per
    /// session).
    pub name: Arc<str>,
    /// The session.
    pub session: SessionId,
    /// The hash of the session's token, revoked at logout.
    pub token_hash: Arc<str>,
}

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
