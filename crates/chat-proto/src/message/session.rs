//! Session payloads: ping, registering, logging in and out, and the user's
//! logins (tokens) on other devices.

use serde::{Deserialize, Serialize};

use super::{Friend, FriendRequestInfo, Group};
use crate::ids::{ConversationId, Seq, UserId};

/// Names a user either by numeric id (a JSON number) or by name (a JSON string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserRef {
    /// By id: `42`.
    Id(UserId),
    /// By name: `"alice"`.
    Name(String),
}

/// The public face of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// The account's id.
    pub id: UserId,
    /// The account's unique name.
    pub name: String,
}

/// `ping` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {}

/// `ping` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResponse {
    /// The server's clock, in milliseconds since the Unix epoch.
    pub server_ts_ms: i64,
}

/// `register` request. Its `Debug` output hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// 1 to 32 characters, unique, no control characters, not all digits.
    pub name: String,
    /// 8 to 128 characters.
    pub password: String,
}

/// `register` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The new account.
    pub user: UserSummary,
}

/// `login` request: either `user` and `password`, or `token`. Its `Debug`
/// output hides the password and the token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The account, by name or id (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserRef>,
    /// The password (with `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A session token from an earlier login (instead of `user` and `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `login` response: everything a client shows right after logging in. The
/// messages the user has not acknowledged follow as `push_message` frames.
/// Its `Debug` output hides the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Who the session is now.
    pub user: UserSummary,
    /// A token for reconnecting without the password.
    pub token: String,
    /// When the token stops working, in milliseconds since the Unix epoch.
    pub token_expires_at_ms: i64,
    /// The user's friends.
    pub friends: Vec<Friend>,
    /// The user's groups.
    pub groups: Vec<Group>,
    /// Friend requests waiting for the user's answer.
    pub incoming_requests: Vec<FriendRequestInfo>,
    /// Friend requests the user sent that are not answered yet.
    pub outgoing_requests: Vec<FriendRequestInfo>,
    /// How many unacknowledged messages follow as pushes.
    pub unacked: u64,
    /// The conversations with unread messages, read in the same login as
    /// `unacked` (absent from older servers: read as empty).
    #[serde(default)]
    pub unread: Vec<UnreadCount>,
}

/// How far the user has read a conversation that has unread messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadCount {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The user's read position.
    pub read_seq: Seq,
    /// The conversation's newest message.
    pub last_seq: Seq,
    /// Messages after the read position (`last_seq - read_seq`).
    pub unread: u64,
}

/// What `Debug` output shows in place of a password or a token.
const HIDDEN: &str = "<hidden>";

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("name", &self.name)
            .field("password", &HIDDEN)
            .finish()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| HIDDEN))
            .field("token", &self.token.as_ref().map(|_| HIDDEN))
            .finish()
    }
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("user", &self.user)
            .field("token", &HIDDEN)
            .field("token_expires_at_ms", &self.token_expires_at_ms)
            .field("friends", &self.friends)
            .field("groups", &self.groups)
            .field("incoming_requests", &self.incoming_requests)
            .field("outgoing_requests", &self.outgoing_requests)
            .field("unacked", &self.unacked)
            .finish()
    }
}

/// `logout` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutRequest {}

/// `logout` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutResponse {}

/// `session_list` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListRequest {}

/// One login of the user: a token, held by one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Names the login for `session_revoke`; not the token, and no way to
    /// recover it.
    pub id: String,
    /// When its token stops working, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    /// Whether it is the login of the session that asked.
    pub current: bool,
}

/// `session_list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListResponse {
    /// The user's unexpired logins, soonest to expire first.
    pub sessions: Vec<SessionInfo>,
}

/// `session_revoke` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevokeRequest {
    /// The `id` of a login from `session_list`, not the asking session's own.
    pub id: String,
}

/// `session_revoke` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevokeResponse {}
