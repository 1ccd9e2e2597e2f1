//! What both backends share: id conversions, row shapes and their mapping to
//! the records of [`crate::repo`], the SQL fragments that read them, and the
//! classification of database errors.
//!
//! Both schemas use the same table and column names and store every integer as
//! a signed 64-bit value, so a row read from SQLite and one read from MySQL
//! decode through the same structs.

use std::future::Future;
use std::pin::Pin;

use chat_proto::{
    ChatMessage, ConversationId, ConversationKind, FriendRequestInfo, GroupId, JoinPolicy,
    MessagePreview, Recalled, Role, Seq, Target, UnreadCount, UserId, UserSummary,
};

use sqlx::mysql::{MySql, MySqlTypeInfo, MySqlValueRef};
use sqlx::sqlite::{Sqlite, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Type};

use crate::admin::AccountRecord;
use crate::error::{Result, StoreError};
use crate::repo::{ConversationRecord, FriendRecord, GroupRecord, MemberRecord, UserRecord};

/// A text column as read from either backend.
///
/// MySQL flags every column with a binary collation as BINARY, and sqlx then
/// refuses to decode it into a `String` (it takes it for a VARBINARY). Our
/// MySQL text columns use the exact `utf8mb4_nopad_bin` collation, so they
/// are read as bytes and checked to be UTF-8 instead; on SQLite this is a
/// plain `String`.
pub(crate) struct DbText(pub(crate) String);

impl Type<MySql> for DbText {
    fn type_info() -> MySqlTypeInfo {
        <String as Type<MySql>>::type_info()
    }

    fn compatible(ty: &MySqlTypeInfo) -> bool {
        <&[u8] as Type<MySql>>::compatible(ty)
    }
}

impl<'r> Decode<'r, MySql> for DbText {
    fn decode(value: MySqlValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let bytes = <&[u8] as Decode<'r, MySql>>::decode(value)?;
        Ok(DbText(std::str::from_utf8(bytes)?.to_owned()))
    }
}

impl Type<Sqlite> for DbText {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbText {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(DbText(<String as Decode<'r, Sqlite>>::decode(value)?))
    }
}

/// The string of an optional text column.
pub(crate) fn text(value: Option<DbText>) -> Option<String> {
    value.map(|DbText(text)| text)
}

/// A boxed, sendable future: what a transaction body returns, so that a body
/// can be stored as a plain function pointer and run again on retry.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Converts an id or sequence number to its column value. Values past
/// `i64::MAX` cannot have been assigned by the store, so they saturate to a
/// value that matches nothing (for an id) or means "the end" (for a sequence
/// number), instead of wrapping to a negative number.
pub(crate) fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Converts a column value back. The store never writes a negative id or
/// sequence number, so clamping at zero only guards against a damaged row.
pub(crate) fn from_db(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A row that does not decode into a record: the database holds something
/// this code never writes.
fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(
        format!("unexpected {what} {value:?} in the database").into(),
    ))
}

/// The column value of a role.
pub(crate) fn role_to_db(role: Role) -> &'static str {
    role.as_str()
}

/// Parses a role column.
pub(crate) fn role_from_db(text: &str) -> Result<Role> {
    Role::parse(text).ok_or_else(|| corrupt("role", text))
}

/// The `target_kind` and `target_id` columns of a message.
pub(crate) fn target_to_db(target: Target) -> (&'static str, i64) {
    match target {
        Target::User(user) => ("user", to_db(user.0)),
        Target::Group(group) => ("group", to_db(group.0)),
    }
}

/// Whether a database error is a unique-key violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|database| database.is_unique_violation())
}

/// Whether a database error is a foreign-key violation (a referenced user,
/// group or conversation does not exist).
pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|database| database.is_foreign_key_violation())
}

/// The conflict of an account whose name is taken, by the same name in
/// another case or by a name it looks like (see [`crate::names`]).
pub(crate) const USER_NAME_TAKEN: &str = "user name taken, or too like a taken one";

/// Maps a failed insert: a unique violation becomes `Conflict(conflict)`, a
/// foreign-key violation `NotFound(missing)`, anything else stays a database
/// error.
pub(crate) fn insert_error(
    error: sqlx::Error,
    conflict: &'static str,
    missing: &'static str,
) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::Conflict(conflict)
    } else if is_foreign_key_violation(&error) {
        StoreError::NotFound(missing)
    } else {
        StoreError::Database(error)
    }
}

/// `SELECT` of a [`UserRow`].
pub(crate) const SELECT_USER: &str = "SELECT id, name, password_hash, created_at_ms FROM users";

/// A row of `users`.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    name: DbText,
    password_hash: DbText,
    created_at_ms: i64,
}

impl From<UserRow> for UserRecord {
    fn from(row: UserRow) -> Self {
        UserRecord {
            id: UserId(from_db(row.id)),
            name: row.name.0,
            password_hash: row.password_hash.0,
            created_at_ms: row.created_at_ms,
        }
    }
}

/// A live token's account (neither deleted nor disabled) with the token's
/// expiry; takes the token's hash and the current time.
pub(crate) const SELECT_TOKEN_USER: &str = "SELECT u.id, u.name, u.password_hash, \
     u.created_at_ms, t.expires_at_ms FROM tokens t JOIN users u ON u.id = t.user_id \
     WHERE t.token_hash = ? AND t.expires_at_ms > ? \
     AND u.deleted_at_ms IS NULL AND u.disabled_at_ms IS NULL";

/// A row of [`SELECT_TOKEN_USER`].
#[derive(sqlx::FromRow)]
pub(crate) struct TokenUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    expires_at_ms: i64,
}

impl From<TokenUserRow> for (UserRecord, i64) {
    fn from(row: TokenUserRow) -> Self {
        (UserRecord::from(row.user), row.expires_at_ms)
    }
}

/// `SELECT` of an [`AccountRow`] from the live accounts.
pub(crate) const SELECT_ACCOUNT: &str = "SELECT id, name, created_at_ms, last_login_at_ms, \
     disabled_at_ms, disabled_reason FROM users WHERE deleted_at_ms IS NULL";

/// An account as operators see it.
#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    id: i64,
    name: DbText,
    created_at_ms: i64,
    last_login_at_ms: Option<i64>,
    disabled_at_ms: Option<i64>,
    disabled_reason: Option<DbText>,
}

impl From<AccountRow> for AccountRecord {
    fn from(row: AccountRow) -> Self {
        AccountRecord {
            id: UserId(from_db(row.id)),
            name: row.name.0,
            created_at_ms: row.created_at_ms,
            last_login_at_ms: row.last_login_at_ms,
            disabled_at_ms: row.disabled_at_ms,
            disabled_reason: text(row.disabled_reason),
        }
    }
}

/// The conversations of the user bound to the one placeholder that have
/// messages after the user's read position: id, read position, last seq.
pub(crate) const SELECT_UNREAD: &str = "SELECT cm.conversation_id, cm.read_seq, c.last_seq \
     FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id \
     WHERE cm.user_id = ? AND c.last_seq > cm.read_seq ORDER BY cm.conversation_id";

/// A row of [`SELECT_UNREAD`].
pub(crate) fn unread_count((conversation, read, last): (i64, i64, i64)) -> UnreadCount {
    UnreadCount {
        conversation_id: ConversationId(from_db(conversation)),
        read_seq: Seq(from_db(read)),
        last_seq: Seq(from_db(last)),
        unread: from_db(last - read),
    }
}

/// The rows a login reads, as the SQLite login thread (`sqlite/login.rs`)
/// reads them with rusqlite: the same structs, so its records come from
/// the same conversions as everything read through sqlx.
pub(crate) mod direct {
    use rusqlite::types::{FromSql, FromSqlResult, ValueRef};
    use rusqlite::Row;

    use super::{AccountRow, DbText, FriendRow, GroupRoleRow, GroupRow, RequestRow};

    impl FromSql for DbText {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            String::column_result(value).map(DbText)
        }
    }

    /// A row struct read by column name.
    pub(crate) trait FromRow: Sized {
        fn from_row(row: &Row<'_>) -> rusqlite::Result<Self>;
    }

    impl FromRow for AccountRow {
        fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(AccountRow {
                id: row.get("id")?,
                name: row.get("name")?,
                created_at_ms: row.get("created_at_ms")?,
                last_login_at_ms: row.get("last_login_at_ms")?,
                disabled_at_ms: row.get("disabled_at_ms")?,
                disabled_reason: row.get("disabled_reason")?,
            })
        }
    }

    impl FromRow for FriendRow {
        fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(FriendRow {
                id: row.get("id")?,
                name: row.get("name")?,
                remark: row.get("remark")?,
                category: row.get("category")?,
                conversation_id: row.get("conversation_id")?,
            })
        }
    }

    impl FromRow for RequestRow {
        fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(RequestRow {
                from_id: row.get("from_id")?,
                from_name: row.get("from_name")?,
                to_id: row.get("to_id")?,
                to_name: row.get("to_name")?,
                message: row.get("message")?,
                created_at_ms: row.get("created_at_ms")?,
            })
        }
    }

    impl FromRow for GroupRoleRow {
        fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(GroupRoleRow {
                group: GroupRow {
                    id: row.get("id")?,
                    name: row.get("name")?,
                    description: row.get("description")?,
                    owner_id: row.get("owner_id")?,
                    conversation_id: row.get("conversation_id")?,
                    created_at_ms: row.get("created_at_ms")?,
                    join_policy: row.get("join_policy")?,
                    member_count: row.get("member_count")?,
                },
                role: row.get("role")?,
            })
        }
    }
}

/// `SELECT` of a [`FriendRow`]; `f` is the owner's side of the friendship.
pub(crate) const SELECT_FRIEND: &str = "SELECT u.id, u.name, f.remark, f.category, \
     f.conversation_id FROM friends f JOIN users u ON u.id = f.friend_id";

/// One direction of a friendship, joined with the friend's name.
#[derive(sqlx::FromRow)]
pub(crate) struct FriendRow {
    id: i64,
    name: DbText,
    remark: Option<DbText>,
    category: Option<DbText>,
    conversation_id: i64,
}

impl From<FriendRow> for FriendRecord {
    fn from(row: FriendRow) -> Self {
        FriendRecord {
            id: UserId(from_db(row.id)),
            name: row.name.0,
            remark: text(row.remark),
            category: text(row.category),
            conversation_id: ConversationId(from_db(row.conversation_id)),
        }
    }
}

/// `SELECT` of a [`RequestRow`].
pub(crate) const SELECT_REQUEST: &str = "SELECT r.from_id, fu.name AS from_name, r.to_id, \
     tu.name AS to_name, r.message, r.created_at_ms FROM friend_requests r \
     JOIN users fu ON fu.id = r.from_id JOIN users tu ON tu.id = r.to_id";

/// A pending friend request with both names.
#[derive(sqlx::FromRow)]
pub(crate) struct RequestRow {
    from_id: i64,
    from_name: DbText,
    to_id: i64,
    to_name: DbText,
    message: Option<DbText>,
    created_at_ms: i64,
}

impl From<RequestRow> for FriendRequestInfo {
    fn from(row: RequestRow) -> Self {
        FriendRequestInfo {
            from: UserSummary {
                id: UserId(from_db(row.from_id)),
                name: row.from_name.0,
            },
            to: UserSummary {
                id: UserId(from_db(row.to_id)),
                name: row.to_name.0,
            },
            message: text(row.message),
            created_at_ms: row.created_at_ms,
        }
    }
}

/// `SELECT` of a [`GroupRow`] from `chat_groups g`.
pub(crate) const SELECT_GROUP: &str = "SELECT g.id, g.name, g.description, g.owner_id, \
     g.conversation_id, g.created_at_ms, g.join_policy, \
     (SELECT COUNT(*) FROM group_members c WHERE c.group_id = g.id) AS member_count \
     FROM chat_groups g";

/// `SELECT` of a [`GroupRoleRow`]: the groups of the user bound to the one
/// placeholder, in the order they were created.
pub(crate) const SELECT_GROUPS_OF: &str = "SELECT g.id, g.name, g.description, g.owner_id, \
     g.conversation_id, g.created_at_ms, g.join_policy, \
     (SELECT COUNT(*) FROM group_members c WHERE c.group_id = g.id) AS member_count, \
     m.role FROM group_members m JOIN chat_groups g ON g.id = m.group_id \
     WHERE m.user_id = ? ORDER BY g.id";

/// A row of `chat_groups` with its member count.
#[derive(sqlx::FromRow)]
pub(crate) struct GroupRow {
    id: i64,
    name: DbText,
    description: DbText,
    owner_id: i64,
    conversation_id: i64,
    created_at_ms: i64,
    join_policy: DbText,
    member_count: i64,
}

impl From<GroupRow> for GroupRecord {
    fn from(row: GroupRow) -> Self {
        GroupRecord {
            id: GroupId(from_db(row.id)),
            name: row.name.0,
            description: row.description.0,
            owner_id: UserId(from_db(row.owner_id)),
            conversation_id: ConversationId(from_db(row.conversation_id)),
            member_count: u32::try_from(row.member_count).unwrap_or(u32::MAX),
            created_at_ms: row.created_at_ms,
            // The column's check (or chatd, on MySQL) allows only the three
            // names; anything else is read as the most closed policy.
            join_policy: JoinPolicy::from_name(&row.join_policy.0).unwrap_or(JoinPolicy::Invite),
        }
    }
}

/// A group with one user's role in it.
#[derive(sqlx::FromRow)]
pub(crate) struct GroupRoleRow {
    #[sqlx(flatten)]
    group: GroupRow,
    role: DbText,
}

impl GroupRoleRow {
    /// The record and the role.
    pub(crate) fn into_record(self) -> Result<(GroupRecord, Role)> {
        let role = role_from_db(&self.role.0)?;
        Ok((self.group.into(), role))
    }
}

/// `SELECT` of [`MemberRow`]s: the members of the group bound to the one
/// placeholder, owner first, then admins, then members, each by name.
pub(crate) const SELECT_MEMBERS: &str = "SELECT u.id, u.name, m.role FROM group_members m \
     JOIN users u ON u.id = m.user_id WHERE m.group_id = ? \
     ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, u.name, u.id";

/// A member of a group with its name.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    id: i64,
    name: DbText,
    role: DbText,
}

impl MemberRow {
    /// The record.
    pub(crate) fn into_record(self) -> Result<MemberRecord> {
        Ok(MemberRecord {
            id: UserId(from_db(self.id)),
            name: self.name.0,
            role: role_from_db(&self.role.0)?,
        })
    }
}

/// `SELECT` of a [`MessageRow`] from `messages m`.
pub(crate) const SELECT_MESSAGE: &str = "SELECT m.conversation_id, m.seq, m.sender_id, \
     u.name AS sender_name, m.target_kind, m.target_id, m.client_msg_id, m.body, \
     m.server_ts_ms, m.recalled_by, m.recalled_at_ms FROM messages m JOIN users u ON u.id = m.sender_id";

/// A stored message with its sender's name.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    conversation_id: i64,
    seq: i64,
    sender_id: i64,
    sender_name: DbText,
    target_kind: DbText,
    target_id: i64,
    client_msg_id: DbText,
    body: DbText,
    server_ts_ms: i64,
    recalled_by: Option<i64>,
    recalled_at_ms: Option<i64>,
}

impl MessageRow {
    /// The message.
    pub(crate) fn into_message(self) -> Result<ChatMessage> {
        let target = match self.target_kind.0.as_str() {
            "user" => Target::User(UserId(from_db(self.target_id))),
            "group" => Target::Group(GroupId(from_db(self.target_id))),
            other => return Err(corrupt("message target kind", other)),
        };
        Ok(ChatMessage {
            conversation_id: ConversationId(from_db(self.conversation_id)),
            seq: Seq(from_db(self.seq)),
            sender_id: UserId(from_db(self.sender_id)),
            sender_name: self.sender_name.0,
            target,
            client_msg_id: self.client_msg_id.0,
            body: self.body.0,
            server_ts_ms: self.server_ts_ms,
            recalled: recalled(self.recalled_by, self.recalled_at_ms),
        })
    }
}

/// The recall of a message from its two columns (both set, or neither).
pub(crate) fn recalled(by: Option<i64>, at_ms: Option<i64>) -> Option<Recalled> {
    match (by, at_ms) {
        (Some(by), Some(at_ms)) => Some(Recalled {
            by: UserId(from_db(by)),
            at_ms,
        }),
        _ => None,
    }
}

/// Decodes a list of message rows.
pub(crate) fn into_messages(rows: Vec<MessageRow>) -> Result<Vec<ChatMessage>> {
    rows.into_iter().map(MessageRow::into_message).collect()
}

/// Decodes a list of ids.
pub(crate) fn into_user_ids(rows: Vec<i64>) -> Vec<UserId> {
    rows.into_iter().map(|id| UserId(from_db(id))).collect()
}

/// A conversation `user` belongs to, with what `user` acknowledged in it
/// and where it ends; what [`crate::MessageStore::sync`] walks.
#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    pub(crate) conversation_id: i64,
    pub(crate) acked_seq: i64,
    pub(crate) last_seq: i64,
}

/// `SELECT` of the [`MembershipRow`]s of the user bound to the one
/// placeholder, by conversation.
pub(crate) const SELECT_MEMBERSHIPS: &str = "SELECT cm.conversation_id, cm.acked_seq, \
     c.last_seq FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id \
     WHERE cm.user_id = ? ORDER BY cm.conversation_id";

/// `SELECT` of the messages of one conversation after a position (two
/// placeholders: conversation, seq), oldest first, with a `LIMIT ?` to bind
/// last. Used by sync for conversations the client gave a cursor for.
pub(crate) const SELECT_AFTER: &str = "SELECT m.conversation_id, m.seq, m.sender_id, \
     u.name AS sender_name, m.target_kind, m.target_id, m.client_msg_id, m.body, \
     m.server_ts_ms, m.recalled_by, m.recalled_at_ms FROM messages m JOIN users u ON u.id = m.sender_id \
     WHERE m.conversation_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?";

/// Like [`SELECT_AFTER`] but only messages others sent (three placeholders:
/// conversation, seq, user, then the limit).
pub(crate) const SELECT_AFTER_FROM_OTHERS: &str = "SELECT m.conversation_id, m.seq, \
     m.sender_id, u.name AS sender_name, m.target_kind, m.target_id, m.client_msg_id, m.body, \
     m.server_ts_ms, m.recalled_by, m.recalled_at_ms FROM messages m JOIN users u ON u.id = m.sender_id \
     WHERE m.conversation_id = ? AND m.seq > ? AND m.sender_id <> ? ORDER BY m.seq LIMIT ?";

/// The unacknowledged messages of a user (placeholders: user, user, start
/// conversation, start conversation, start seq, limit): others' messages past
/// the user's acknowledged position in each conversation, by (conversation,
/// seq), after a paging position.
pub(crate) const SELECT_UNACKED: &str = "SELECT m.conversation_id, m.seq, m.sender_id, \
     u.name AS sender_name, m.target_kind, m.target_id, m.client_msg_id, m.body, \
     m.server_ts_ms, m.recalled_by, m.recalled_at_ms FROM conversation_members cm \
     JOIN messages m ON m.conversation_id = cm.conversation_id AND m.seq > cm.acked_seq \
     JOIN users u ON u.id = m.sender_id \
     WHERE cm.user_id = ? AND m.sender_id <> ? \
     AND (m.conversation_id > ? OR (m.conversation_id = ? AND m.seq > ?)) \
     ORDER BY m.conversation_id, m.seq LIMIT ?";

/// How many messages [`SELECT_UNACKED`] would return without paging
/// (placeholders: user, user).
pub(crate) const COUNT_UNACKED: &str = "SELECT COUNT(*) FROM conversation_members cm \
     JOIN messages m ON m.conversation_id = cm.conversation_id AND m.seq > cm.acked_seq \
     WHERE cm.user_id = ? AND m.sender_id <> ?";

/// `SELECT` of [`ConversationRow`]s (placeholders: user, then the paging
/// key: activity, activity, conversation id, then the limit): the user's
/// conversations, most recent activity first. The page is chosen first,
/// from the user's membership rows and their conversations' activity
/// alone (a sort of the user's memberships, nothing that grows with the
/// number of messages); only its rows are then completed by point lookups
/// (the pair's other user and the user's friend row for them, or the
/// group; the newest message by its key and its preview).
pub(crate) const SELECT_CONVERSATIONS: &str = "SELECT c.id AS conversation_id, c.kind, \
     c.last_seq, c.last_activity_ms, page.read_seq, \
     p.id AS peer_id, p.name AS peer_name, f.remark AS peer_remark, \
     f.friend_id AS peer_friend_id, \
     g.id AS group_id, g.name AS group_name, \
     m.seq AS last_message_seq, m.sender_id AS last_sender_id, s.name AS last_sender_name, \
     SUBSTR(m.body, 1, 100) AS last_preview, m.server_ts_ms AS last_ts_ms, \
     m.recalled_at_ms AS last_recalled_at_ms \
     FROM (SELECT cm.conversation_id, cm.user_id, cm.read_seq \
           FROM conversation_members cm JOIN conversations pc ON pc.id = cm.conversation_id \
           WHERE cm.user_id = ? \
           AND (pc.last_activity_ms < ? OR (pc.last_activity_ms = ? AND pc.id < ?)) \
           ORDER BY pc.last_activity_ms DESC, pc.id DESC LIMIT ?) page \
     JOIN conversations c ON c.id = page.conversation_id \
     LEFT JOIN users p ON c.kind = 'direct' \
         AND p.id = CASE WHEN c.user_lo = page.user_id THEN c.user_hi ELSE c.user_lo END \
     LEFT JOIN friends f ON f.user_id = page.user_id AND f.friend_id = p.id \
     LEFT JOIN chat_groups g ON g.conversation_id = c.id \
     LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq \
     LEFT JOIN users s ON s.id = m.sender_id \
     ORDER BY c.last_activity_ms DESC, c.id DESC";

/// One entry of a user's conversation list.
#[derive(sqlx::FromRow)]
pub(crate) struct ConversationRow {
    conversation_id: i64,
    kind: DbText,
    last_seq: i64,
    last_activity_ms: i64,
    read_seq: i64,
    peer_id: Option<i64>,
    peer_name: Option<DbText>,
    peer_remark: Option<DbText>,
    peer_friend_id: Option<i64>,
    group_id: Option<i64>,
    group_name: Option<DbText>,
    last_message_seq: Option<i64>,
    last_sender_id: Option<i64>,
    last_sender_name: Option<DbText>,
    last_preview: Option<DbText>,
    last_ts_ms: Option<i64>,
    last_recalled_at_ms: Option<i64>,
}

impl ConversationRow {
    /// The record.
    pub(crate) fn into_record(self) -> Result<ConversationRecord> {
        let kind = match self.kind.0.as_str() {
            "direct" => ConversationKind::Direct,
            "group" => ConversationKind::Group,
            other => return Err(corrupt("conversation kind", other)),
        };
        let peer = match (kind, self.peer_id, self.peer_name) {
            (ConversationKind::Direct, Some(id), Some(name)) => {
                Some((UserId(from_db(id)), name.0, text(self.peer_remark)))
            }
            _ => None,
        };
        let group = match (self.group_id, self.group_name) {
            (Some(id), Some(name)) => Some((GroupId(from_db(id)), name.0)),
            _ => None,
        };
        let last_message = match (self.last_message_seq, self.last_sender_id) {
            (Some(seq), Some(sender)) => Some(MessagePreview {
                seq: Seq(from_db(seq)),
                sender_id: UserId(from_db(sender)),
                sender_name: text(self.last_sender_name).unwrap_or_default(),
                preview: text(self.last_preview).unwrap_or_default(),
                server_ts_ms: self.last_ts_ms.unwrap_or_default(),
                recalled: self.last_recalled_at_ms.is_some(),
            }),
            _ => None,
        };
        Ok(ConversationRecord {
            conversation_id: ConversationId(from_db(self.conversation_id)),
            kind,
            peer,
            group,
            last_message,
            last_seq: Seq(from_db(self.last_seq)),
            read_seq: Seq(from_db(self.read_seq)),
            last_activity_ms: self.last_activity_ms,
            peer_is_friend: self.peer_friend_id.is_some(),
        })
    }
}

/// The bound value of a page size. The caller bounds pages; the store only
/// converts the type.
pub(crate) fn limit_to_db(limit: u32) -> i64 {
    i64::from(limit)
}

/// The arguments of each write transaction, as one value a backend can keep
/// while the write waits and hand to the body again on retry. Each is a
/// struct whose fields are named after the trait method's parameters, so a
/// body binds `args.user`, never "the second element".
pub(crate) mod args {
    use chat_proto::{ConversationId, GroupId, JoinPolicy, Role, Seq, UserId};

    /// Declares each arguments struct, every field `pub(crate)`.
    macro_rules! arguments {
        ($($(#[$doc:meta])* $name:ident { $($field:ident: $type:ty),* $(,)? })*) => {
            $(
                $(#[$doc])*
                pub(crate) struct $name {
                    $(pub(crate) $field: $type,)*
                }
            )*
        };
    }

    arguments! {
        /// `create_user`.
        NewUser { name: String, password_hash: String, now_ms: i64 }
        /// `create_token`.
        NewToken { token_hash: String, user: UserId, expires_at_ms: i64 }
        /// `revoke_token`.
        RevokeToken { token_hash: String, now_ms: i64 }
        /// `add_friend_request`: `from` asks `to`, with an optional greeting.
        FriendRequest { from: UserId, to: UserId, message: Option<String>, now_ms: i64 }
        /// `respond_friend_request`: `to` answers `from`'s request.
        FriendResponse { from: UserId, to: UserId, accept: bool, now_ms: i64 }
        /// `remove_friend`.
        FriendPair { user: UserId, friend: UserId }
        /// `update_friend`: `user`'s remark and category for `friend`.
        FriendUpdate {
            user: UserId,
            friend: UserId,
            remark: Option<String>,
            category: Option<String>,
        }
        /// `create_group`.
        NewGroup { owner: UserId, name: String, description: String, now_ms: i64 }
        /// `add_member`.
        NewMember { group: GroupId, user: UserId, role: Role, now_ms: i64 }
        /// `remove_member`.
        GroupUser { group: GroupId, user: UserId }
        /// `set_role`.
        NewRole { group: GroupId, user: UserId, role: Role }
        /// `mark_read`.
        Read { user: UserId, conversation: ConversationId, seq: Seq }
        /// `create_group_with_policy`.
        NewGroupWithPolicy { group: NewGroup, policy: JoinPolicy }
        /// `set_join_policy`.
        JoinPolicyChange { group: GroupId, actor: UserId, policy: JoinPolicy }
        /// `request_join`.
        JoinRequest { group: GroupId, user: UserId, now_ms: i64 }
        /// `respond_join`: `actor` answers `user`'s request.
        JoinResponse { group: GroupId, actor: UserId, user: UserId, accept: bool, now_ms: i64 }
        /// `invite`: `actor` invites `user`.
        Invitation { group: GroupId, actor: UserId, user: UserId, now_ms: i64 }
        /// `kick`: `actor` removes `target`, banning them with `ban`.
        Kick { group: GroupId, actor: UserId, target: UserId, ban: bool, now_ms: i64 }
        /// `unban`: `actor` lifts `target`'s ban.
        Unban { group: GroupId, actor: UserId, target: UserId }
        /// `set_role_as`: `actor` sets `target`'s role.
        RoleChange { group: GroupId, actor: UserId, target: UserId, role: Role }
        /// `dissolve_as`.
        Dissolution { group: GroupId, actor: UserId }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_past_the_signed_range_saturate_instead_of_wrapping() {
        assert_eq!(to_db(0), 0);
        assert_eq!(to_db(42), 42);
        assert_eq!(to_db(u64::MAX), i64::MAX);
        assert_eq!(to_db(1 << 63), i64::MAX);
        assert_eq!(from_db(7), 7);
        assert_eq!(from_db(-1), 0);
    }

    #[test]
    fn roles_and_targets_round_trip() {
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(role_from_db(role_to_db(role)).unwrap(), role);
        }
        assert!(matches!(role_from_db("king"), Err(StoreError::Database(_))));
        assert_eq!(target_to_db(Target::User(UserId(3))), ("user", 3));
        assert_eq!(target_to_db(Target::Group(GroupId(4))), ("group", 4));
    }
}
