//! Conversation payloads: the conversation list, read positions, typing
//! and recall.

use serde::{Deserialize, Serialize};

use super::ChatMessage;
use crate::ids::{ConversationId, GroupId, Seq, UserId};

/// Whether a conversation is between two users or of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Two users.
    Direct,
    /// A group.
    Group,
}

/// The other participant of a direct conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Their id.
    pub id: UserId,
    /// Their account name.
    pub name: String,
    /// The remark the user gave them, if any (and if they are still friends).
    pub remark: Option<String>,
    /// Whether they have at least one session online.
    pub online: bool,
}

/// The group of a group conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group's id.
    pub id: GroupId,
    /// Its display name.
    pub name: String,
}

/// The newest message of a conversation, shortened for a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePreview {
    /// Its sequence number.
    pub seq: Seq,
    /// Who sent it.
    pub sender_id: UserId,
    /// The sender's account name.
    pub sender_name: String,
    /// The first characters of its body (at most 100; empty when recalled).
    pub preview: String,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub server_ts_ms: i64,
    /// Whether it was recalled or removed.
    pub recalled: bool,
}

/// One entry of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// The other participant, for a direct conversation.
    pub peer: Option<Peer>,
    /// The group, for a group conversation.
    pub group: Option<GroupSummary>,
    /// The newest message, if there is one.
    pub last_message: Option<MessagePreview>,
    /// The newest message's sequence number (0 when empty).
    pub last_seq: Seq,
    /// How far the user has read.
    pub read_seq: Seq,
    /// Messages after the read position.
    pub unread: u64,
    /// The newest message's time, or when the conversation began; the list's
    /// order (newest first) and, with `conversation_id`, its paging key.
    pub last_activity_ms: i64,
}

/// Where a page of the conversation list starts: after this entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationCursor {
    /// The `last_activity_ms` of the last entry of the previous page.
    pub last_activity_ms: i64,
    /// The `conversation_id` of the last entry of the previous page.
    pub conversation_id: ConversationId,
}

/// `conversation_list` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationListRequest {
    /// Continue after this entry (from the previous page); absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<ConversationCursor>,
    /// At most this many (default 50, at most 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `conversation_list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationListResponse {
    /// The page, most recent activity first.
    pub conversations: Vec<Conversation>,
    /// Whether more entries follow.
    pub has_more: bool,
}

/// `read` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The user has read everything up to and including this sequence number.
    pub seq: Seq,
}

/// `read` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResponse {
    /// The read position after this request (never moves back, never past the end).
    pub read_seq: Seq,
}

/// `read_positions` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPositionsRequest {
    /// The conversation (the user must take part in it).
    pub conversation_id: ConversationId,
}

/// A member's read position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPosition {
    /// The member.
    pub user_id: UserId,
    /// How far they have read.
    pub read_seq: Seq,
}

/// `read_positions` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPositionsResponse {
    /// Every member's position, by user id.
    pub positions: Vec<ReadPosition>,
}

/// `typing` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingRequest {
    /// The conversation the user is typing in.
    pub conversation_id: ConversationId,
}

/// `typing` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingResponse {}

/// `recall` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message.
    pub seq: Seq,
}

/// `recall` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallResponse {
    /// The message as it is now: a tombstone.
    pub message: ChatMessage,
}
