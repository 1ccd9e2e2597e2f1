//! Push payloads other than a new message (a `push_message` carries a
//! [`ChatMessage`](super::ChatMessage)): friendships, presence, group events,
//! the end of a session, read positions, typing and recalls.

use serde::{Deserialize, Serialize};

use super::{Friend, FriendRequestInfo, GroupInvitation, Recalled, Role, UserSummary};
use crate::ids::{ConversationId, GroupId, Seq, UserId};

/// `push_friend_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRequestPush {
    /// The request.
    pub request: FriendRequestInfo,
}

/// What happened to a friendship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendUpdateKind {
    /// The user's request was accepted; `friend` is set.
    Accepted,
    /// The user's request was declined.
    Declined,
    /// The friendship was ended by the other side.
    Removed,
}

/// `push_friend_update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendUpdatePush {
    /// The other user.
    pub user: UserSummary,
    /// What happened.
    pub kind: FriendUpdateKind,
    /// The new friend, when accepted.
    pub friend: Option<Friend>,
}

/// `push_presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresencePush {
    /// Whose presence changed.
    pub user_id: UserId,
    /// Whether they have at least one session online now.
    pub online: bool,
}

/// Kinds of group events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupEventKind {
    /// `user_id` joined.
    Joined,
    /// `user_id` left.
    Left,
    /// `user_id` was removed by `actor_id`.
    Kicked,
    /// `user_id` now has `role`.
    RoleChanged,
    /// The group was dissolved by its owner.
    Dissolved,
}

/// `push_group_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEventPush {
    /// The group.
    pub group_id: GroupId,
    /// What happened.
    pub kind: GroupEventKind,
    /// The member concerned (for dissolve: the owner).
    pub user_id: UserId,
    /// Who did it.
    pub actor_id: UserId,
    /// The new role, for `role_changed` and `joined`.
    pub role: Option<Role>,
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The server is shutting down or draining: reconnect (perhaps to
    /// another node) and resume with the token.
    Draining,
    /// No traffic for longer than the idle timeout.
    Idle,
    /// The client read too slowly and its outbox overflowed; reconnect and sync.
    SlowConsumer,
    /// The login ended: an operator ended it (kick, disable, delete,
    /// password reset), or another connection holding the same token
    /// logged out. Do not resume with the token.
    LoggedOut,
}

/// `push_session_ended`: the last frame before the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEndedPush {
    /// Why.
    pub reason: SessionEndReason,
    /// A human-readable explanation.
    pub message: String,
}

/// `push_read`: `user_id` has read `conversation_id` up to `read_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPush {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who read (the user themselves, when read on another device).
    pub user_id: UserId,
    /// Their read position now.
    pub read_seq: Seq,
}

/// `push_typing`: `user_id` is typing in `conversation_id`. Show it for a
/// few seconds; a typing user sends it again every few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingPush {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who is typing.
    pub user_id: UserId,
}

/// `push_recall`: the message at `seq` is a tombstone now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallPush {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message.
    pub seq: Seq,
    /// Who took it back, and when.
    pub recalled: Recalled,
}

/// `push_group_join_request`: somebody asks to join a group the user
/// administers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoinRequestPush {
    /// The group.
    pub group_id: GroupId,
    /// Who asks.
    pub user: UserSummary,
}

/// `push_group_invitation`: the user was invited to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInvitationPush {
    /// The invitation.
    pub invitation: GroupInvitation,
}
