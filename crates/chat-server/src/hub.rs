//! The hub: which sessions are connected to this node, by user.
//!
//! Delivery is the hot path (every message fans out through here), so the
//! table is sharded by user id and guarded by short `RwLock`
//! critical sections that never await: a lookup and a `try_send` per session.
//! A task owning the table would add a channel hop to every delivery for no
//! gain in clarity.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chat_proto::UserId;
use tokio::sync::Notify;

use crate::lock::{Mutex, RwLock};

const SHARDS: usize = 64;

/// Identifies a session on this node. Never reused while the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Frames waiting to be written to one session, and whether it must end.
#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Bytes>,
    ended: Option<Ending>,
}

/// Why the hub tells a session to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Its outbox overflowed: the client reads too slowly.
    SlowConsumer,
    /// An operator ended it (kicked, disabled, deleted, or the password
    /// was reset); the message says which, for the user.
    ByOperator(String),
    /// This node holds more than its share of the cluster's users: the
    /// session is asked to reconnect (through the load balancer, to a less
    /// busy node). What it had queued is still written.
    Rebalance,
}

/// What an operator sees of a logged-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDetails {
    /// The user's name at login (shared with the session's identity).
    pub name: Arc<str>,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub transport: &'static str,
    /// The client's address (from the PROXY header behind a proxy).
    pub peer: SocketAddr,
    /// When it logged in, in milliseconds since the Unix epoch.
    pub logged_in_at_ms: i64,
}

/// The hub's view of one logged-in session: where to put frames for it, and
/// how to tell it to go away.
///
/// The outbox is a mutex-guarded deque rather than a channel because an idle
/// session then costs no allocation at all (a bounded tokio channel allocates
/// a block of slots up front), which matters at tens of thousands of idle
/// connections; the lock is held only to push or to take the whole queue.
#[derive(Debug)]
pub struct SessionHandle {
    /// The session.
    pub id: SessionId,
    /// Its user.
    pub user: UserId,
    /// Who and where, for operators; `None` in tests that need no more.
    pub details: Option<SessionDetails>,
    /// The hash of the token the session logged in with (or was given at
    /// login), so a logout can end every session that holds it.
    pub token_hash: Option<Arc<str>>,
    capacity: usize,
    outbox: Mutex<Outbox>,
    wake: Notify,
    /// Set while the session writes a login backlog and does not drain its
    /// outbox; live pushes may then queue up to [`CATCH_UP_FACTOR`] times
    /// the capacity, so a long backlog in busy conversations does not end
    /// the session as a slow consumer (and again at every next login).
    catching_up: AtomicBool,
}

/// How much more an outbox may hold while its session catches up.
pub const CATCH_UP_FACTOR: usize = 16;

impl SessionHandle {
    /// A handle for a session that may have up to `capacity` frames queued.
    #[must_use]
    pub fn new(id: SessionId, user: UserId, capacity: usize) -> Self {
        Self {
            id,
            user,
            details: None,
            token_hash: None,
            capacity,
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            catching_up: AtomicBool::new(false),
        }
    }

    /// The same handle, described for operators.
    #[must_use]
    pub fn with_details(mut self, details: SessionDetails) -> Self {
        self.details = Some(details);
        self
    }

    /// The same handle, holding the token with the hash `token_hash`.
    #[must_use]
    pub fn with_token_hash(mut self, token_hash: Arc<str>) -> Self {
        self.token_hash = Some(token_hash);
        self
    }

    /// Queues an encoded frame. A full outbox means the client reads slower
    /// than it is written to: rather than buffer without bound, the session
    /// is killed (its messages stay stored for its next login or sync).
    pub fn push(&self, frame: Bytes) -> bool {
        let mut outbox = self.outbox.lock();
        if outbox.ended.is_some() {
            return false;
        }
        let limit = if self.catching_up.load(Ordering::Relaxed) {
            self.capacity.saturating_mul(CATCH_UP_FACTOR)
        } else {
            self.capacity
        };
        if outbox.frames.len() >= limit {
            outbox.ended = Some(Ending::SlowConsumer);
            outbox.frames.clear();
            drop(outbox);
            self.wake.notify_one();
            return false;
        }
        let was_empty = outbox.frames.is_empty();
        outbox.frames.push_back(frame);
        drop(outbox);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Raises the outbox limit while the session writes its login backlog;
    /// the session lowers it again once it has drained the outbox.
    pub fn set_catching_up(&self, catching_up: bool) {
        self.catching_up.store(catching_up, Ordering::Relaxed);
    }

    /// Tells the session to end, for `why`. What it had queued is dropped
    /// (it is stored, and comes back at the client's next login or sync);
    /// an ending already decided stays.
    pub fn end(&self, why: Ending) {
        let mut outbox = self.outbox.lock();
        if outbox.ended.is_none() {
            if why != Ending::Rebalance {
                outbox.frames.clear();
            }
            outbox.ended = Some(why);
        }
        drop(outbox);
        self.wake.notify_one();
    }

    /// Wakes the session's waiter without queuing anything (the server's
    /// shutdown, which the session then reads from its own signal).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until frames are queued or the session is told to end.
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Takes every queued frame even after the session was told to end (a
    /// session leaving politely still writes what it had).
    pub fn take_queued(&self) -> VecDeque<Bytes> {
        std::mem::take(&mut self.outbox.lock().frames)
    }

    /// Takes every queued frame; once the session must end, why instead.
    ///
    /// # Errors
    /// The [`Ending`] the session was given.
    pub fn take(&self) -> Result<VecDeque<Bytes>, Ending> {
        let mut outbox = self.outbox.lock();
        if let Some(ending) = &outbox.ended {
            return Err(ending.clone());
        }
        Ok(std::mem::take(&mut outbox.frames))
    }
}

/// The sessions of this node, by user.
#[derive(Debug)]
pub struct Hub {
    shards: Vec<RwLock<HashMap<UserId, Vec<Arc<SessionHandle>>>>>,
    next_session: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    #[must_use]
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            next_session: AtomicU64::new(1),
        }
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    fn shard(&self, user: UserId) -> &RwLock<HashMap<UserId, Vec<Arc<SessionHandle>>>> {
        &self.shards[(user.0 as usize) % SHARDS]
    }

    /// Adds a session; returns how many sessions its user has here now.
    pub fn register(&self, handle: Arc<SessionHandle>) -> usize {
        let mut shard = self.shard(handle.user).write();
        let sessions = shard.entry(handle.user).or_default();
        sessions.push(handle);
        sessions.len()
    }

    /// Removes a session; returns how many sessions its user still has here.
    pub fn unregister(&self, user: UserId, session: SessionId) -> usize {
        let mut shard = self.shard(user).write();
        let Some(sessions) = shard.get_mut(&user) else {
            return 0;
        };
        sessions.retain(|handle| handle.id != session);
        let remaining = sessions.len();
        if remaining == 0 {
            shard.remove(&user);
        }
        remaining
    }

    /// Queues `frame` for every session of `users` here, except `except`.
    /// Returns how many sessions it was queued for.
    pub fn deliver(&self, users: &[UserId], frame: &Bytes, except: Option<SessionId>) -> usize {
        let mut delivered = 0;
        let mut dropped = 0;
        for &user in users {
            let shard = self.shard(user).read();
            if let Some(sessions) = shard.get(&user) {
                for handle in sessions {
                    if Some(handle.id) == except {
                        continue;
                    }
                    if handle.push(frame.clone()) {
                        delivered += 1;
                    } else {
                        dropped += 1;
                    }
                }
            }
        }
        crate::telemetry::pushes(delivered as u64, dropped);
        delivered
    }

    /// How many users have a session here.
    #[must_use]
    pub fn user_count(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().len()).sum()
    }

    /// How many sessions `user` has here.
    #[must_use]
    pub fn session_count(&self, user: UserId) -> usize {
        let shard = self.shard(user).read();
        shard.get(&user).map_or(0, Vec::len)
    }

    /// Ends every session of `user` here with `why`; returns how many.
    pub fn end_sessions(&self, user: UserId, why: &Ending) -> usize {
        let shard = self.shard(user).read();
        let Some(sessions) = shard.get(&user) else {
            return 0;
        };
        for handle in sessions {
            handle.end(why.clone());
        }
        sessions.len()
    }

    /// Ends the sessions of `user` here that hold the token with the hash
    /// `token_hash`, but `except`; returns how many.
    pub fn end_token_sessions(
        &self,
        user: UserId,
        token_hash: &str,
        except: Option<SessionId>,
        why: &Ending,
    ) -> usize {
        let shard = self.shard(user).read();
        let Some(sessions) = shard.get(&user) else {
            return 0;
        };
        let mut ended = 0;
        for handle in sessions {
            if Some(handle.id) != except && handle.token_hash.as_deref() == Some(token_hash) {
                handle.end(why.clone());
                ended += 1;
            }
        }
        ended
    }

    /// Every logged-in session here, by user id then session id.
    #[must_use]
    pub fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        let mut all: Vec<Arc<SessionHandle>> = self
            .shards
            .iter()
            .flat_map(|shard| shard.read().values().flatten().cloned().collect::<Vec<_>>())
            .collect();
        all.sort_by_key(|handle| (handle.user, handle.id));
        all
    }

    /// Every user with a session here.
    #[must_use]
    pub fn users(&self) -> Vec<UserId> {
        self.shards
            .iter()
            .flat_map(|shard| shard.read().keys().copied().collect::<Vec<_>>())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_to_every_session_but_the_excepted_one() {
        let hub = Hub::new();
        let user = UserId(7);
        let first = Arc::new(SessionHandle::new(hub.next_session_id(), user, 4));
        let second = Arc::new(SessionHandle::new(hub.next_session_id(), user, 4));
        assert_eq!(hub.register(first.clone()), 1);
        assert_eq!(hub.register(second.clone()), 2);
        let frame = Bytes::from_static(b"x");
        assert_eq!(hub.deliver(&[user, UserId(8)], &frame, Some(first.id)), 1);
        assert!(first.take().unwrap().is_empty());
        assert_eq!(second.take().unwrap(), vec![frame]);
        assert_eq!(hub.unregister(user, first.id), 1);
        assert_eq!(hub.unregister(user, second.id), 0);
        assert_eq!(hub.session_count(user), 0);
    }

    #[tokio::test]
    async fn an_operator_ends_every_session_of_a_user() {
        let hub = Hub::new();
        let user = UserId(3);
        let first = Arc::new(SessionHandle::new(hub.next_session_id(), user, 4));
        let second = Arc::new(SessionHandle::new(hub.next_session_id(), user, 4));
        let other = Arc::new(SessionHandle::new(hub.next_session_id(), UserId(4), 4));
        for handle in [&first, &second, &other] {
            hub.register(handle.clone());
        }
        assert_eq!(hub.sessions().len(), 3);
        let frame = Bytes::from_static(b"x");
        hub.deliver(&[user], &frame, None);
        let why = Ending::ByOperator("bye".to_owned());
        assert_eq!(hub.end_sessions(user, &why), 2);
        assert_eq!(hub.end_sessions(UserId(5), &why), 0);
        for handle in [&first, &second] {
            tokio::time::timeout(std::time::Duration::from_secs(1), handle.wait())
                .await
                .unwrap();
            assert_eq!(handle.take(), Err(why.clone()));
            // Nothing more is queued for an ended session.
            assert!(!handle.push(frame.clone()));
        }
        assert!(other.take().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_wake_ends_the_wait_and_leaves_the_outbox_as_it_was() {
        let handle = SessionHandle::new(SessionId(1), UserId(1), 4);
        handle.wake();
        tokio::time::timeout(std::time::Duration::from_secs(1), handle.wait())
            .await
            .expect("woken");
        assert!(handle.take().unwrap().is_empty());
        assert!(handle.push(Bytes::from_static(b"y")));
    }

    #[test]
    fn catching_up_raises_the_limit_until_lowered() {
        let hub = Hub::new();
        let handle = Arc::new(SessionHandle::new(hub.next_session_id(), UserId(1), 2));
        hub.register(handle.clone());
        handle.set_catching_up(true);
        let frame = Bytes::from_static(b"x");
        for _ in 0..2 * CATCH_UP_FACTOR {
            assert_eq!(hub.deliver(&[UserId(1)], &frame, None), 1);
        }
        assert_eq!(handle.take().unwrap().len(), 2 * CATCH_UP_FACTOR);
        handle.set_catching_up(false);
        assert_eq!(hub.deliver(&[UserId(1)], &frame, None), 1);
        assert_eq!(hub.deliver(&[UserId(1)], &frame, None), 1);
        assert_eq!(hub.deliver(&[UserId(1)], &frame, None), 0);
        assert_eq!(handle.take(), Err(Ending::SlowConsumer));
    }

    #[tokio::test]
    async fn a_full_outbox_kills_the_session() {
        let hub = Hub::new();
        let handle = Arc::new(SessionHandle::new(hub.next_session_id(), UserId(1), 1));
        hub.register(handle.clone());
        let frame = Bytes::from_static(b"x");
        assert_eq!(hub.deliver(&[UserId(1)], &frame, None), 1);
        assert_eq!(hub.deliver(&[UserId(1)], &frame, None), 0);
        tokio::time::timeout(std::time::Duration::from_secs(1), handle.wait())
            .await
            .unwrap();
        assert!(handle.take().is_err());
    }
}
