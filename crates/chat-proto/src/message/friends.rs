//! Friend payloads: requests, friendships, remarks and categories.

use serde::{Deserialize, Serialize};

use super::{UserRef, UserSummary};
use crate::ids::{ConversationId, UserId};

/// A friend as the session's user sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Friend {
    /// The friend's id.
    pub id: UserId,
    /// The friend's account name.
    pub name: String,
    /// The remark (nickname) the session's user gave them, if any.
    pub remark: Option<String>,
    /// The category (folder) the session's user put them in, if any.
    pub category: Option<String>,
    /// Whether they have at least one session online.
    pub online: bool,
    /// The 1:1 conversation between the two.
    pub conversation_id: ConversationId,
}

/// A pending friend request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRequestInfo {
    /// Who asked.
    pub from: UserSummary,
    /// Who was asked.
    pub to: UserSummary,
    /// The optional greeting.
    pub message: Option<String>,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// `friend_add` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendAddRequest {
    /// Whom to ask.
    pub user: UserRef,
    /// An optional greeting (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state a friend request ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendAddOutcome {
    /// The request waits for the other user's answer.
    Pending,
    /// The other user had already asked; the two are now friends.
    Accepted,
}

/// `friend_add` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendAddResponse {
    /// The user asked.
    pub user: UserSummary,
    /// Pending, or accepted at once.
    pub outcome: FriendAddOutcome,
    /// The new friend, when accepted at once.
    pub friend: Option<Friend>,
}

/// `friend_respond` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRespondRequest {
    /// Who asked.
    pub user: UserRef,
    /// Accept (true) or decline (false).
    pub accept: bool,
}

/// `friend_respond` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRespondResponse {
    /// Who asked.
    pub user: UserSummary,
    /// Whether it was accepted.
    pub accepted: bool,
    /// The new friend, when accepted.
    pub friend: Option<Friend>,
}

/// `friend_remove` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRemoveRequest {
    /// The friend to remove.
    pub user: UserRef,
}

/// `friend_remove` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRemoveResponse {
    /// The former friend.
    pub user: UserSummary,
}

/// `friend_list` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendListRequest {}

/// `friend_list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendListResponse {
    /// The user's friends.
    pub friends: Vec<Friend>,
    /// Requests waiting for the user's answer.
    pub incoming_requests: Vec<FriendRequestInfo>,
    /// Requests the user sent that are not answered yet.
    pub outgoing_requests: Vec<FriendRequestInfo>,
}

/// `friend_update` request. A field left out is unchanged; an empty string
/// clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendUpdateRequest {
    /// The friend.
    pub user: UserRef,
    /// The new remark name (at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// The new category (at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// `friend_update` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendUpdateResponse {
    /// The friend as it now stands.
    pub friend: Friend,
}
