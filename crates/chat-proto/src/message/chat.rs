//! Chat payloads: messages and where they go, sending, acknowledging,
//! history and sync.

use serde::{Deserialize, Serialize};

use super::null_as_default;
use crate::ids::{ConversationId, GroupId, Seq, UserId};

/// Where a message goes: a user (1:1) or a group. On the wire
/// `{"user": 42}` or `{"group": 7}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A friend.
    User(UserId),
    /// A group the sender belongs to.
    Group(GroupId),
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Its position in the conversation (gap-free, from 1).
    pub seq: Seq,
    /// Who sent it.
    pub sender_id: UserId,
    /// The sender's account name.
    pub sender_name: String,
    /// Where the sender sent it: the recipient user, or the group.
    pub target: Target,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The text.
    pub body: String,
    /// When the server committed it, in milliseconds since the Unix epoch.
    pub server_ts_ms: i64,
    /// Set when the message was recalled or removed: its body is then empty.
    /// Absent (not `null`) for a message that stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled: Option<Recalled>,
}

/// Who took a message back, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recalled {
    /// The sender (a recall) or a group's owner or admin (a removal).
    pub by: UserId,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A conversation and the highest sequence number a client has seen in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The highest sequence number seen.
    pub seq: Seq,
}

/// `send` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// A friend or a group.
    pub to: Target,
    /// The sender's idempotency key (1 to 64 characters, unique per sender).
    /// A resend with the same key returns the first answer and stores nothing.
    pub client_msg_id: String,
    /// The text (not empty, at most the server's message limit, 4 KiB by default).
    pub body: String,
}

/// `send` response: sent only after the message is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// The conversation it went to.
    pub conversation_id: ConversationId,
    /// Its sequence number there.
    pub seq: Seq,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub server_ts_ms: i64,
    /// Whether this answers a resend of a message stored earlier.
    pub duplicate: bool,
}

/// `ack` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Everything up to and including this sequence number was delivered.
    pub seq: Seq,
}

/// `ack` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// The user's acknowledged position after this ack (acks never move it back).
    pub acked_seq: Seq,
}

/// `history` request. With `after_seq` it pages forwards (oldest first),
/// otherwise backwards from `before_seq` (or from the newest); messages are
/// always returned in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// The conversation (the session's user must take part in it).
    pub conversation_id: ConversationId,
    /// Only messages with a smaller sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<Seq>,
    /// Only messages with a larger sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<Seq>,
    /// At most this many (default 50, at most 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `history` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    /// The page, in ascending sequence order.
    pub messages: Vec<ChatMessage>,
    /// Whether more messages lie beyond the page in the paging direction.
    pub has_more: bool,
}

/// `sync` request: what has the client missed?
///
/// For each conversation of the user, messages after the client's cursor are
/// returned (all senders); for a conversation without a cursor, messages
/// after the user's acknowledged position that others sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The highest sequence number the client holds per conversation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cursors: Vec<Cursor>,
    /// At most this many messages (default 500, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `sync` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Missed messages, ordered by conversation then sequence number.
    pub messages: Vec<ChatMessage>,
    /// Whether more remain (ask again with updated cursors).
    pub has_more: bool,
}
