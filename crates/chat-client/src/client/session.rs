//! What a [`Client`](super::Client) knows of its session, shared by the
//! application's handle and the supervisor.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chat_proto::{ConversationId, LoginResponse, Seq, UserRef, UserSummary};

/// How the client last logged in, to do it again after a reconnect.
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    /// With the password: the account as given. `None` for a token login.
    pub(super) user: Option<UserRef>,
    pub(super) password: Option<String>,
}

/// The session as far as the application and the supervisor both need it.
#[derive(Debug, Default)]
pub(super) struct Session {
    pub(super) credentials: Option<Credentials>,
    pub(super) token: Option<String>,
    pub(super) me: Option<UserSummary>,
    /// `client_msg_id`s of this client's sends not yet accounted for by the
    /// supervisor: a copy of one met in `sync` or `history` is not delivered.
    pub(super) own_pending: HashSet<String>,
    /// The highest sequence number the application has taken per
    /// conversation, not yet acknowledged to the server.
    pub(super) taken: HashMap<ConversationId, Seq>,
    /// The user's read position and the newest seq known per conversation,
    /// kept current from the login, pushes and this client's reads.
    pub(super) unread: HashMap<ConversationId, ReadState>,
}

/// How far the user has read a conversation, and where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadState {
    pub(super) read: Seq,
    pub(super) last: Seq,
}

impl Default for ReadState {
    fn default() -> Self {
        ReadState {
            read: Seq::ZERO,
            last: Seq::ZERO,
        }
    }
}

impl Session {
    /// Keeps what a successful login returned.
    pub(super) fn remember(&mut self, login: &LoginResponse) {
        self.token = Some(login.token.clone());
        self.me = Some(login.user.clone());
        self.reset_unread(login);
    }

    /// Starts the unread counts again from a login's.
    pub(super) fn reset_unread(&mut self, login: &LoginResponse) {
        self.unread = login
            .unread
            .iter()
            .map(|count| {
                (
                    count.conversation_id,
                    ReadState {
                        read: count.read_seq,
                        last: count.last_seq,
                    },
                )
            })
            .collect();
    }

    /// A message at `seq` exists; the user's own messages count as read.
    /// A conversation the login did not list as unread was read up to its
    /// end, so one first met here starts read up to just before `seq`.
    pub(super) fn saw_message(&mut self, conversation: ConversationId, seq: Seq, own: bool) {
        let before = Seq(seq.0.saturating_sub(1));
        let state = self.unread.entry(conversation).or_insert(ReadState {
            read: before,
            last: before,
        });
        state.last = state.last.max(seq);
        if own {
            state.read = state.read.max(seq);
        }
    }

    /// The user read up to `seq`.
    pub(super) fn read_up_to(&mut self, conversation: ConversationId, seq: Seq) {
        let state = self.unread.entry(conversation).or_default();
        state.read = state.read.max(seq);
        state.last = state.last.max(seq);
    }
}

pub(super) struct Shared {
    /// A `std` mutex: every critical section is a few map operations and
    /// never awaits.
    pub(super) session: Mutex<Session>,
}

impl Shared {
    pub(super) fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps what a successful re-login returned.
    pub(super) fn remember(&self, login: &LoginResponse) {
        self.session().remember(login);
    }
}
