//! The repository traits the services call, and the records they return.
//!
//! Every method that changes more than one row does so in one transaction, so
//! that two nodes acting at once on one MySQL database cannot interleave
//! halfway (two users asking each other to be friends at the same moment, two
//! senders taking the next sequence number of one conversation).
//!
//! Times are milliseconds since the Unix epoch, passed in by the caller.

use async_trait::async_trait;
use chat_proto::{
    ChatMessage, ConversationCursor, ConversationId, ConversationKind, Cursor, FriendRequestInfo,
    GroupId, JoinPolicy, MessagePreview, ReadPosition, Role, Seq, Target, UnreadCount, UserId,
};

use crate::admin::AdminStore;
use crate::error::Result;
use crate::group_access::GroupAccessStore;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The account's id.
    pub id: UserId,
    /// The unique name.
    pub name: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// When it was created.
    pub created_at_ms: i64,
}

/// One side of a friendship, as the owner of the friend list sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRecord {
    /// The friend's id.
    pub id: UserId,
    /// The friend's account name.
    pub name: String,
    /// The owner's remark for the friend.
    pub remark: Option<String>,
    /// The owner's category for the friend.
    pub category: Option<String>,
    /// The pair's 1:1 conversation.
    pub conversation_id: ConversationId,
}

/// The result of [`FriendStore::add_friend_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FriendAddResult {
    /// A new pending request was stored.
    Pending(FriendRequestInfo),
    /// The other user had asked first: their request was consumed and the two
    /// are friends now, sharing this conversation.
    Accepted(ConversationId),
}

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group's id.
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// Description, possibly empty.
    pub description: String,
    /// Current owner.
    pub owner_id: UserId,
    /// The group's conversation.
    pub conversation_id: ConversationId,
    /// Number of members.
    pub member_count: u32,
    /// When it was created.
    pub created_at_ms: i64,
    /// Who may join.
    pub join_policy: JoinPolicy,
}

/// A member of a group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member's id.
    pub id: UserId,
    /// The member's account name.
    pub name: String,
    /// The member's role.
    pub role: Role,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The sender (the session's user).
    pub sender_id: UserId,
    /// The sender's account name, copied into the returned message.
    pub sender_name: String,
    /// A friend or a group.
    pub target: Target,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The text.
    pub body: String,
    /// The commit time to record.
    pub now_ms: i64,
}

/// The result of [`MessageStore::append_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message (the original one when `duplicate`).
    pub message: ChatMessage,
    /// Whether `(sender, client_msg_id)` had been stored before; nothing new
    /// was written then.
    pub duplicate: bool,
    /// Everyone the message is for: the conversation's members, sender included.
    pub recipients: Vec<UserId>,
}

/// What [`MessageStore::queue_append`] runs after the commit.
pub type OnCommit = Box<dyn FnOnce(&Appended) + Send>;

/// An append that is queued for commit; resolves once it is committed (or
/// refused). See [`MessageStore::queue_append`].
pub type PendingAppend =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Appended>> + Send>>;

/// Accounts.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates an account.
    ///
    /// # Errors
    /// [`StoreError::Conflict`](crate::StoreError::Conflict) if the name is taken.
    async fn create_user(&self, name: &str, password_hash: &str, now_ms: i64)
        -> Result<UserRecord>;

    /// Looks an account up by exact name.
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>>;

    /// Looks an account up by id.
    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>>;

    /// What a login answers with about the user's world, read together:
    /// the account (`None` if deleted; nothing else is read for a deleted or
    /// disabled one), friends, groups with the user's role, pending friend
    /// requests each way, the unacknowledged count and the unread counts.
    async fn login_view(&self, user: UserId) -> Result<LoginView>;
}

/// Everything a login answers with; see [`UserStore::login_view`].
#[derive(Debug, Clone, Default)]
pub struct LoginView {
    /// The account, `None` if it was deleted.
    pub account: Option<crate::admin::AccountRecord>,
    /// The user's friends, by name.
    pub friends: Vec<FriendRecord>,
    /// The user's groups and the user's role in each.
    pub groups: Vec<(GroupRecord, Role)>,
    /// Friend requests to the user, oldest first.
    pub incoming_requests: Vec<FriendRequestInfo>,
    /// Friend requests from the user, oldest first.
    pub outgoing_requests: Vec<FriendRequestInfo>,
    /// Messages to the user not yet acknowledged.
    pub unacked: u64,
    /// The conversations with unread messages.
    pub unread: Vec<UnreadCount>,
}

/// Session tokens, stored only as hashes.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a token hash for `user` valid until `expires_at_ms`.
    ///
    /// # Errors
    /// `Conflict` if the hash is stored already, `NotFound` for an unknown user.
    async fn create_token(&self, token_hash: &str, user: UserId, expires_at_ms: i64) -> Result<()>;

    /// The account a still-valid token belongs to, and when the token
    /// expires; `None` also for a deleted or disabled account's token.
    async fn user_for_token(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(UserRecord, i64)>>;

    /// The hashes of `user`'s tokens still valid at `now_ms`, with their
    /// expiry, soonest to expire first.
    async fn tokens_of(&self, user: UserId, now_ms: i64) -> Result<Vec<(String, i64)>>;

    /// Revokes a token; revoking an unknown token is not an error. Also
    /// removes tokens that have expired before `now_ms`.
    async fn revoke_token(&self, token_hash: &str, now_ms: i64) -> Result<()>;
}

/// Friendships and friend requests.
#[async_trait]
pub trait FriendStore: Send + Sync {
    /// `from` asks `to` to be friends, in one transaction: if `to` had asked
    /// `from`, the two become friends (with a 1:1 conversation whose members
    /// are both); otherwise a pending request is stored.
    ///
    /// # Errors
    /// `NotFound` if `to` does not exist, `Conflict` if they are already
    /// friends, the same request is pending, or `from == to`.
    async fn add_friend_request(
        &self,
        from: UserId,
        to: UserId,
        message: Option<&str>,
        now_ms: i64,
    ) -> Result<FriendAddResult>;

    /// `to` answers the pending request from `from`. On accept the two become
    /// friends and the conversation id is returned (the old one, if they were
    /// friends before and removed each other).
    ///
    /// # Errors
    /// `NotFound` if no such request is pending.
    async fn respond_friend_request(
        &self,
        from: UserId,
        to: UserId,
        accept: bool,
        now_ms: i64,
    ) -> Result<Option<ConversationId>>;

    /// Ends a friendship in both directions; neither may then send in their
    /// conversation, which is kept for history: both stay its members (they
    /// may read it, and what one had not acked is still delivered), and it is
    /// theirs again if they befriend each other again.
    ///
    /// # Errors
    /// `NotFound` if they are not friends.
    async fn remove_friend(&self, user: UserId, friend: UserId) -> Result<()>;

    /// `user`'s friends, ordered by name.
    async fn friends_of(&self, user: UserId) -> Result<Vec<FriendRecord>>;

    /// One friend of `user`, if they are friends.
    async fn friend(&self, user: UserId, friend: UserId) -> Result<Option<FriendRecord>>;

    /// Sets `user`'s remark and/or category for `friend`. `None` leaves a field
    /// as it is; `Some("")` clears it.
    ///
    /// # Errors
    /// `NotFound` if they are not friends.
    async fn update_friend(
        &self,
        user: UserId,
        friend: UserId,
        remark: Option<&str>,
        category: Option<&str>,
    ) -> Result<FriendRecord>;

    /// Pending requests to `user` (incoming) and from `user` (outgoing), oldest first.
    async fn pending_requests(
        &self,
        user: UserId,
    ) -> Result<(Vec<FriendRequestInfo>, Vec<FriendRequestInfo>)>;
}

/// Groups and memberships.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates a group with `owner` as its owner and only member.
    async fn create_group(
        &self,
        owner: UserId,
        name: &str,
        description: &str,
        now_ms: i64,
    ) -> Result<GroupRecord>;

    /// A group by id (`None` once dissolved).
    async fn group(&self, group: GroupId) -> Result<Option<GroupRecord>>;

    /// `user`'s role in `group`, if a member.
    async fn role(&self, group: GroupId, user: UserId) -> Result<Option<Role>>;

    /// Adds a member. The member's acknowledged position in the group's
    /// conversation starts at its current end: earlier messages are history,
    /// not offline messages.
    ///
    /// # Errors
    /// `NotFound` for an unknown group or user, `Conflict` if already a
    /// member or if `role` is [`Role::Owner`] (ownership moves only by
    /// [`GroupStore::set_role`]).
    async fn add_member(&self, group: GroupId, user: UserId, role: Role, now_ms: i64)
        -> Result<()>;

    /// Removes a member (leave or kick).
    ///
    /// # Errors
    /// `NotFound` for an unknown group or if not a member, `Conflict` for
    /// the owner (who must hand the group over or dissolve it).
    async fn remove_member(&self, group: GroupId, user: UserId) -> Result<()>;

    /// Sets a member's role. Setting [`Role::Owner`] transfers ownership in
    /// the same transaction: the previous owner becomes an admin.
    ///
    /// # Errors
    /// `NotFound` for an unknown group or if not a member, `Conflict` when
    /// giving the owner a lesser role (hand the group over instead).
    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> Result<()>;

    /// Dissolves a group: removes it and all memberships (its messages are
    /// kept but no longer reachable). Returns the members it had.
    ///
    /// # Errors
    /// `NotFound` for an unknown group.
    async fn dissolve_group(&self, group: GroupId) -> Result<Vec<UserId>>;

    /// A group's members, owner first, then admins, then members by name.
    async fn members(&self, group: GroupId) -> Result<Vec<MemberRecord>>;

    /// The groups `user` belongs to, with `user`'s role in each.
    async fn groups_of(&self, user: UserId) -> Result<Vec<(GroupRecord, Role)>>;
}

/// Conversations, messages and delivery cursors.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores a message in one transaction: checks the sender may write to
    /// the target (friends for a user, member for a group), returns the
    /// original if `(sender, client_msg_id)` was stored before, and otherwise
    /// takes the conversation's next sequence number and inserts. Returns only
    /// after the commit.
    ///
    /// # Errors
    /// `NotFound` for an unknown user or group, `Forbidden` if not friends or
    /// not a member.
    ///
    /// Written once over [`MessageStore::queue_append`], the one append
    /// each backend implements: the same queue and commit, without a hook.
    async fn append_message(&self, message: NewMessage) -> Result<Appended> {
        let pending = self
            .queue_append(message, Box::new(|_: &Appended| {}))
            .await?;
        pending.await
    }

    /// As [`MessageStore::append_message`], but returns as soon as the
    /// append has its place in the commit queue, with a future of its
    /// result, and calls `on_commit` with the result right after the
    /// commit. A session queues a client's pipelined sends one after
    /// another (keeping their order) and answers each when it commits.
    /// Appends go through one writer per store (group commit), and the
    /// hooks run on it in commit order, so a caller that delivers from the
    /// hook delivers each conversation in sequence order even when many
    /// senders' appends share one commit. (On MySQL that holds per store:
    /// hooks of two nodes writing one conversation run in two processes.)
    /// The hook must be quick and must not block; a hook that panics is
    /// caught and logged, and the write stands.
    async fn queue_append(&self, message: NewMessage, on_commit: OnCommit)
        -> Result<PendingAppend>;

    /// Whether `user` is a member of `conversation` (may read and ack it).
    async fn is_conversation_member(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<bool>;

    /// A page of a conversation in ascending order: after `after` if given
    /// (oldest first), else before `before` (or the end) taking the newest.
    /// With both, the oldest after `after` that are also before `before`.
    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<Seq>,
        after: Option<Seq>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>>;

    /// Moves `user`'s acknowledged position in `conversation` forward to `seq`
    /// (never back, never past the conversation's end) and returns it.
    ///
    /// # Errors
    /// `Forbidden` if `user` is not a member.
    async fn ack(&self, user: UserId, conversation: ConversationId, seq: Seq) -> Result<Seq>;

    /// Messages others sent to `user` after `user`'s acknowledged position in
    /// each of `user`'s conversations, ordered by (conversation, seq), at most
    /// `limit`, starting after `start` (for paging).
    async fn unacked(
        &self,
        user: UserId,
        start: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>>;

    /// How many messages [`MessageStore::unacked`] would return in all.
    async fn unacked_count(&self, user: UserId) -> Result<u64>;

    /// What a client missed: for each of `user`'s conversations, messages
    /// after the client's cursor (any sender) if it gave one, else after the
    /// acknowledged position (others' messages only). Ordered by
    /// (conversation, seq), at most `limit`. Cursors for conversations
    /// `user` is not a member of are ignored.
    async fn sync(&self, user: UserId, cursors: &[Cursor], limit: u32) -> Result<Vec<ChatMessage>>;
}

/// One entry of a user's conversation list, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// For a direct conversation: the other user's id, name, and the
    /// remark the list's owner gave them (while they are friends).
    pub peer: Option<(UserId, String, Option<String>)>,
    /// For a group conversation: the group's id and name.
    pub group: Option<(GroupId, String)>,
    /// The newest message, shortened.
    pub last_message: Option<MessagePreview>,
    /// The newest message's sequence number.
    pub last_seq: Seq,
    /// How far the list's owner has read.
    pub read_seq: Seq,
    /// The newest message's time, or when the conversation began.
    pub last_activity_ms: i64,
    /// For a direct conversation, whether the two are friends now (the
    /// conversation stays theirs after they stop being friends, but the
    /// other's presence, typing and receipts do not).
    pub peer_is_friend: bool,
}

/// What [`ConversationStore::mark_read`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMark {
    /// The read position before.
    pub previous: Seq,
    /// The read position now (never less than before).
    pub read_seq: Seq,
}

/// A conversation's kind and everyone in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participants {
    /// Direct or group.
    pub kind: ConversationKind,
    /// Its members, by id.
    pub members: Vec<UserId>,
}

/// A recall to store; see [`ConversationStore::recall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallArgs {
    /// Who asks.
    pub actor: UserId,
    /// The conversation.
    pub conversation: ConversationId,
    /// The message.
    pub seq: Seq,
    /// The time to record.
    pub now_ms: i64,
    /// How long after sending a sender may recall, in milliseconds.
    pub window_ms: i64,
}

/// What [`ConversationStore::recall`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recall {
    /// The message as it is now: a tombstone.
    pub message: ChatMessage,
    /// Whether this call made it one (false: it was one already).
    pub changed: bool,
    /// Everyone in the conversation.
    pub members: Vec<UserId>,
}

/// The conversation list, read positions and recall.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// A page of `user`'s conversations, most recent activity first,
    /// starting after `before`.
    async fn conversations(
        &self,
        user: UserId,
        before: Option<ConversationCursor>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>>;

    /// `user`'s conversations with unread messages, by conversation id.
    async fn unread_counts(&self, user: UserId) -> Result<Vec<UnreadCount>>;

    /// Moves `user`'s read position in `conversation` forward to `seq`
    /// (never back, never past the end), and the acknowledged position with
    /// it (what was read was received).
    ///
    /// # Errors
    /// `Forbidden` if `user` is not a member.
    async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<ReadMark>;

    /// Every member's read position in `conversation`, by user id.
    async fn read_positions(&self, conversation: ConversationId) -> Result<Vec<ReadPosition>>;

    /// The kind and members of `conversation` (`None` if there is no such
    /// conversation).
    async fn participants(&self, conversation: ConversationId) -> Result<Option<Participants>>;

    /// The senders, other than `reader`, of the messages after `after` up to
    /// and including `upto` (of the last 1,000 of them at most).
    async fn senders_between(
        &self,
        conversation: ConversationId,
        after: Seq,
        upto: Seq,
        reader: UserId,
    ) -> Result<Vec<UserId>>;

    /// Recalls a message: its body is erased and who and when recorded; the
    /// row and its seq stay. Allowed to its sender within `window_ms` of
    /// sending, and to a group's owner and admins at any time. Recalling a
    /// recalled message changes nothing and answers with the tombstone.
    ///
    /// # Errors
    /// `Forbidden` if `actor` is not a member or may not recall it,
    /// `NotFound` if there is no such message.
    async fn recall(&self, recall: RecallArgs) -> Result<Recall>;
}

/// A whole store: every repository, the operators' view, and a way to
/// close it.
#[async_trait]
pub trait Store:
    UserStore
    + TokenStore
    + FriendStore
    + GroupStore
    + GroupAccessStore
    + MessageStore
    + ConversationStore
    + AdminStore
{
    /// Waits for in-flight writes and closes the connections.
    async fn close(&self);

    /// A short name for logs: `"sqlite"` or `"mysql"`.
    fn backend(&self) -> &'static str;

    /// Set once a part of the store that cannot restart itself has died (a
    /// hot-path thread or task panicked): appends and acks fail from then
    /// on, so the node must stop and be restarted by its supervisor rather
    /// than go on accepting clients it cannot serve.
    fn failure(&self) -> Option<String> {
        None
    }
}
