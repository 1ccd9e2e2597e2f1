//! What a [`Client`](crate::Client) tells the application.

use chat_proto::{
    ChatMessage, FriendRequestInfo, FriendUpdatePush, GroupEventPush, GroupInvitation,
    GroupJoinRequestPush, LoginResponse, PresencePush, ReadPush, RecallPush, SessionEndedPush,
    TypingPush,
};
use serde::Serialize;

/// One thing that happened, in the order it happened. Messages arrive once
/// each and in sequence order per conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// A message in one of the user's conversations, from somebody else or
    /// from another session of the same user (never one this client sent).
    Message(ChatMessage),
    /// Somebody asks the user to be friends.
    FriendRequest(FriendRequestInfo),
    /// A friend request was answered, or a friendship ended.
    FriendUpdate(FriendUpdatePush),
    /// A friend or group member came online or went offline.
    Presence(PresencePush),
    /// Something happened in a group.
    Group(GroupEventPush),
    /// Somebody read a conversation up to a seq: the other participant (a
    /// read receipt) or the user on another device.
    Read(ReadPush),
    /// Somebody is typing in a conversation (show it for a few seconds).
    Typing(TypingPush),
    /// A message was recalled or removed.
    Recall(RecallPush),
    /// Somebody asks to join a group the user owns or administers.
    GroupJoinRequest(GroupJoinRequestPush),
    /// The user was invited to a group (join it to accept).
    GroupInvitation(GroupInvitation),
    /// The server announced the end of this connection's session; the client
    /// reconnects unless the reason was a logout.
    SessionEnded(SessionEndedPush),
    /// The connection was lost; the client is reconnecting.
    Disconnected {
        /// Why it was lost.
        reason: String,
    },
    /// The client is connected again, logged in again if it was before
    /// (`login` is the new login's response) and resynchronised.
    Reconnected {
        /// The server it reached.
        address: String,
        /// The login response, when the session was resumed.
        login: Option<Box<LoginResponse>>,
    },
    /// After a reconnect neither the token nor the password was accepted;
    /// the client stays connected but logged out.
    LoginFailed {
        /// The server's answer.
        error: String,
    },
    /// Reconnecting failed for good; no more events follow.
    GaveUp {
        /// The last error.
        error: String,
    },
}
