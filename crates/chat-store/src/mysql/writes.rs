//! The bodies of the MySQL write transactions. Each runs inside a transaction
//! opened by `MysqlStore::transaction` at READ COMMITTED, checks before it
//! writes, and is run again from the start if InnoDB picks it as a deadlock
//! victim.
//!
//! Several nodes write to one database, so each body takes the row locks that
//! make its checks hold until it commits: the two users' rows for anything
//! about a friendship (locked in id order, so two such transactions never
//! wait on each other in a cycle), the group's row for anything about a
//! group's members, and the conversation's row to take a sequence number.

use chat_proto::{
    ChatMessage, ConversationId, FriendRequestInfo, GroupId, Role, Seq, Target, UserId, UserSummary,
};
use sqlx::mysql::MySqlConnection;

use crate::error::{Result, StoreError};
use crate::repo::{Appended, FriendAddResult, FriendRecord, GroupRecord, NewMessage, UserRecord};
use crate::rows::{
    args, from_db, insert_error, into_user_ids, is_unique_violation, role_from_db, role_to_db,
    target_to_db, to_db, DbText, FriendRow, MessageRow, SELECT_FRIEND, SELECT_MESSAGE,
};

pub(super) async fn create_user(
    conn: &mut MySqlConnection,
    (name, password_hash, now_ms): &args::NewUser,
) -> Result<UserRecord> {
    let id = sqlx::query("INSERT INTO users (name, password_hash, created_at_ms) VALUES (?, ?, ?)")
        .bind(name)
        .bind(password_hash)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .map_err(|error| insert_error(error, "user name taken", "user"))?
        .last_insert_id();
    Ok(UserRecord {
        id: UserId(id),
        name: name.clone(),
        password_hash: password_hash.clone(),
        created_at_ms: *now_ms,
    })
}

pub(super) async fn create_token(
    conn: &mut MySqlConnection,
    (token_hash, user, expires_at_ms): &args::NewToken,
) -> Result<()> {
    sqlx::query("INSERT INTO tokens (token_hash, user_id, expires_at_ms) VALUES (?, ?, ?)")
        .bind(token_hash)
        .bind(to_db(user.0))
        .bind(expires_at_ms)
        .execute(&mut *conn)
        .await
        .map_err(|error| insert_error(error, "token exists", "user"))?;
    Ok(())
}

pub(super) async fn revoke_token(
    conn: &mut MySqlConnection,
    (token_hash, now_ms): &args::RevokeToken,
) -> Result<()> {
    sqlx::query("DELETE FROM tokens WHERE token_hash = ? OR expires_at_ms <= ?")
        .bind(token_hash)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Locks the rows of users `a` and `b` until commit and returns their names
/// (`None` for one that does not exist). Every change to a friendship or a
/// friend request takes this lock first, so two nodes acting on one pair at
/// once run one after the other.
async fn lock_pair(
    conn: &mut MySqlConnection,
    a: UserId,
    b: UserId,
) -> Result<(Option<String>, Option<String>)> {
    let rows: Vec<(i64, DbText)> =
        sqlx::query_as("SELECT id, name FROM users WHERE id IN (?, ?) ORDER BY id FOR UPDATE")
            .bind(to_db(a.0))
            .bind(to_db(b.0))
            .fetch_all(&mut *conn)
            .await?;
    let name_of = |user: UserId| {
        rows.iter()
            .find(|(id, _)| *id == to_db(user.0))
            .map(|(_, name)| name.0.clone())
    };
    Ok((name_of(a), name_of(b)))
}

pub(super) async fn add_friend_request(
    conn: &mut MySqlConnection,
    (from, to, message, now_ms): &args::FriendRequest,
) -> Result<FriendAddResult> {
    if from == to {
        return Err(StoreError::Conflict("cannot befriend oneself"));
    }
    let (from_name, to_name) = lock_pair(conn, *from, *to).await?;
    let to_name = to_name.ok_or(StoreError::NotFound("user"))?;
    let from_name = from_name.ok_or(StoreError::NotFound("user"))?;
    let friends: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM friends WHERE user_id = ? AND friend_id = ?")
            .bind(to_db(from.0))
            .bind(to_db(to.0))
            .fetch_optional(&mut *conn)
            .await?;
    if friends.is_some() {
        return Err(StoreError::Conflict("already friends"));
    }
    if pending(conn, *from, *to).await? {
        return Err(StoreError::Conflict("friend request already pending"));
    }
    if pending(conn, *to, *from).await? {
        // They asked first: asking back is accepting.
        let conversation = befriend(conn, *from, *to, *now_ms).await?;
        return Ok(FriendAddResult::Accepted(conversation));
    }
    sqlx::query(
        "INSERT INTO friend_requests (from_id, to_id, message, created_at_ms) VALUES (?, ?, ?, ?)",
    )
    .bind(to_db(from.0))
    .bind(to_db(to.0))
    .bind(message)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(FriendAddResult::Pending(FriendRequestInfo {
        from: UserSummary {
            id: *from,
            name: from_name,
        },
        to: UserSummary {
            id: *to,
            name: to_name,
        },
        message: message.clone(),
        created_at_ms: *now_ms,
    }))
}

/// Whether `from` has a pending request to `to`.
async fn pending(conn: &mut MySqlConnection, from: UserId, to: UserId) -> Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM friend_requests WHERE from_id = ? AND to_id = ?")
            .bind(to_db(from.0))
            .bind(to_db(to.0))
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

/// Makes `a` and `b` friends (the caller holds [`lock_pair`]): consumes
/// requests either way, finds or opens their conversation and makes both its
/// members. A pair that was friends before gets its old conversation back,
/// with each side's acknowledged position as it was.
async fn befriend(
    conn: &mut MySqlConnection,
    a: UserId,
    b: UserId,
    now_ms: i64,
) -> Result<ConversationId> {
    let (lo, hi) = (to_db(a.0.min(b.0)), to_db(a.0.max(b.0)));
    sqlx::query(
        "DELETE FROM friend_requests WHERE (from_id = ? AND to_id = ?) OR (from_id = ? AND to_id = ?)",
    )
    .bind(lo)
    .bind(hi)
    .bind(hi)
    .bind(lo)
    .execute(&mut *conn)
    .await?;
    let existing: Option<(i64, i64)> = sqlx::query_as(
        "SELECT id, last_seq FROM conversations WHERE kind = 'direct' AND user_lo = ? AND user_hi = ?",
    )
    .bind(lo)
    .bind(hi)
    .fetch_optional(&mut *conn)
    .await?;
    let (conversation, last_seq) = match existing {
        Some(row) => row,
        None => {
            let id = sqlx::query(
                "INSERT INTO conversations (kind, user_lo, user_hi, last_seq) \
                 VALUES ('direct', ?, ?, 0)",
            )
            .bind(lo)
            .bind(hi)
            .execute(&mut *conn)
            .await?
            .last_insert_id();
            (to_db(id), 0)
        }
    };
    sqlx::query(
        "INSERT INTO friends (user_id, friend_id, remark, category, conversation_id, created_at_ms) \
         VALUES (?, ?, NULL, NULL, ?, ?), (?, ?, NULL, NULL, ?, ?)",
    )
    .bind(lo)
    .bind(hi)
    .bind(conversation)
    .bind(now_ms)
    .bind(hi)
    .bind(lo)
    .bind(conversation)
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(|error| insert_error(error, "already friends", "user"))?;
    // A member row kept from an earlier friendship keeps its position; a new
    // one starts at the conversation's end. Nobody can send in a direct
    // conversation while its pair is not friends, so last_seq cannot move
    // under us here.
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, acked_seq) \
         VALUES (?, ?, ?), (?, ?, ?) ON DUPLICATE KEY UPDATE acked_seq = acked_seq",
    )
    .bind(conversation)
    .bind(lo)
    .bind(last_seq)
    .bind(conversation)
    .bind(hi)
    .bind(last_seq)
    .execute(&mut *conn)
    .await?;
    Ok(ConversationId(from_db(conversation)))
}

pub(super) async fn respond_friend_request(
    conn: &mut MySqlConnection,
    (from, to, accept, now_ms): &args::FriendResponse,
) -> Result<Option<ConversationId>> {
    lock_pair(conn, *from, *to).await?;
    let deleted = sqlx::query("DELETE FROM friend_requests WHERE from_id = ? AND to_id = ?")
        .bind(to_db(from.0))
        .bind(to_db(to.0))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound("friend request"));
    }
    if *accept {
        Ok(Some(befriend(conn, *from, *to, *now_ms).await?))
    } else {
        Ok(None)
    }
}

pub(super) async fn remove_friend(
    conn: &mut MySqlConnection,
    (user, friend): &args::UserPair,
) -> Result<()> {
    lock_pair(conn, *user, *friend).await?;
    // The conversation and its members stay: both keep their history and
    // anything not yet delivered; sending needs the friendship, now gone.
    let deleted = sqlx::query(
        "DELETE FROM friends WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)",
    )
    .bind(to_db(user.0))
    .bind(to_db(friend.0))
    .bind(to_db(friend.0))
    .bind(to_db(user.0))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound("friend"));
    }
    Ok(())
}

pub(super) async fn update_friend(
    conn: &mut MySqlConnection,
    (user, friend, remark, category): &args::FriendUpdate,
) -> Result<FriendRecord> {
    // NULL leaves the column as it is; '' clears it to NULL. A stored value
    // is never '', so NULLIF only ever clears a new empty value. The
    // connection reports matched rows (not changed rows), so setting the
    // same value again is not mistaken for "not friends".
    let updated = sqlx::query(
        "UPDATE friends SET remark = NULLIF(COALESCE(?, remark), ''), \
         category = NULLIF(COALESCE(?, category), '') WHERE user_id = ? AND friend_id = ?",
    )
    .bind(remark)
    .bind(category)
    .bind(to_db(user.0))
    .bind(to_db(friend.0))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound("friend"));
    }
    let row: FriendRow = sqlx::query_as(&format!(
        "{SELECT_FRIEND} WHERE f.user_id = ? AND f.friend_id = ?"
    ))
    .bind(to_db(user.0))
    .bind(to_db(friend.0))
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.into())
}

pub(super) async fn create_group(
    conn: &mut MySqlConnection,
    (owner, name, description, now_ms): &args::NewGroup,
) -> Result<GroupRecord> {
    let conversation =
        sqlx::query("INSERT INTO conversations (kind, last_seq) VALUES ('group', 0)")
            .execute(&mut *conn)
            .await?
            .last_insert_id();
    let id = sqlx::query(
        "INSERT INTO chat_groups (name, description, owner_id, conversation_id, created_at_ms) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(name)
    .bind(description)
    .bind(to_db(owner.0))
    .bind(to_db(conversation))
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(|error| insert_error(error, "group exists", "user"))?
    .last_insert_id();
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id, role, joined_at_ms) VALUES (?, ?, 'owner', ?)",
    )
    .bind(to_db(id))
    .bind(to_db(owner.0))
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, acked_seq) VALUES (?, ?, 0)",
    )
    .bind(to_db(conversation))
    .bind(to_db(owner.0))
    .execute(&mut *conn)
    .await?;
    Ok(GroupRecord {
        id: GroupId(id),
        name: name.clone(),
        description: description.clone(),
        owner_id: *owner,
        conversation_id: ConversationId(conversation),
        member_count: 1,
        created_at_ms: *now_ms,
    })
}

/// Locks a group's row until commit and returns its conversation and owner,
/// or `NotFound`. Every change to a group's members takes this lock first.
async fn lock_group(conn: &mut MySqlConnection, group: GroupId) -> Result<(i64, i64)> {
    sqlx::query_as("SELECT conversation_id, owner_id FROM chat_groups WHERE id = ? FOR UPDATE")
        .bind(to_db(group.0))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("group"))
}

pub(super) async fn add_member(
    conn: &mut MySqlConnection,
    (group, user, role, now_ms): &args::NewMember,
) -> Result<()> {
    let (conversation, _owner) = lock_group(conn, *group).await?;
    if *role == Role::Owner {
        return Err(StoreError::Conflict(
            "a group has one owner; hand it over with set_role",
        ));
    }
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id, role, joined_at_ms) VALUES (?, ?, ?, ?)",
    )
    .bind(to_db(group.0))
    .bind(to_db(user.0))
    .bind(role_to_db(*role))
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(|error| insert_error(error, "already a member", "user"))?;
    // Locking the conversation row waits for any append in flight and holds
    // off the next, so the new member's position is exactly the end: what
    // was said before joining is history, not offline messages, and nothing
    // said after is skipped.
    let last_seq: i64 =
        sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ? FOR UPDATE")
            .bind(conversation)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, acked_seq) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE acked_seq = ?",
    )
    .bind(conversation)
    .bind(to_db(user.0))
    .bind(last_seq)
    .bind(last_seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn remove_member(
    conn: &mut MySqlConnection,
    (group, user): &args::GroupUser,
) -> Result<()> {
    let (conversation, owner) = lock_group(conn, *group).await?;
    if owner == to_db(user.0) {
        return Err(StoreError::Conflict(
            "the owner cannot leave; hand the group over or dissolve it",
        ));
    }
    let deleted = sqlx::query("DELETE FROM group_members WHERE group_id = ? AND user_id = ?")
        .bind(to_db(group.0))
        .bind(to_db(user.0))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound("member"));
    }
    sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?")
        .bind(conversation)
        .bind(to_db(user.0))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn set_role(
    conn: &mut MySqlConnection,
    (group, user, role): &args::NewRole,
) -> Result<()> {
    let (_conversation, owner) = lock_group(conn, *group).await?;
    let current: Option<DbText> =
        sqlx::query_scalar("SELECT role FROM group_members WHERE group_id = ? AND user_id = ?")
            .bind(to_db(group.0))
            .bind(to_db(user.0))
            .fetch_optional(&mut *conn)
            .await?;
    let current = role_from_db(&current.ok_or(StoreError::NotFound("member"))?.0)?;
    let is_owner = owner == to_db(user.0);
    match (*role, is_owner) {
        (Role::Owner, true) => return Ok(()),
        (_, true) => {
            return Err(StoreError::Conflict(
                "the owner's role changes only by handing the group to another member",
            ))
        }
        (Role::Owner, false) => {
            sqlx::query(
                "UPDATE group_members SET role = 'admin' WHERE group_id = ? AND user_id = ?",
            )
            .bind(to_db(group.0))
            .bind(owner)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE chat_groups SET owner_id = ? WHERE id = ?")
                .bind(to_db(user.0))
                .bind(to_db(group.0))
                .execute(&mut *conn)
                .await?;
        }
        (_, false) => {}
    }
    if current != *role {
        sqlx::query("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?")
            .bind(role_to_db(*role))
            .bind(to_db(group.0))
            .bind(to_db(user.0))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn dissolve_group(
    conn: &mut MySqlConnection,
    group: &GroupId,
) -> Result<Vec<UserId>> {
    let (conversation, _owner) = lock_group(conn, *group).await?;
    let members: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id")
            .bind(to_db(group.0))
            .fetch_all(&mut *conn)
            .await?;
    sqlx::query("DELETE FROM group_members WHERE group_id = ?")
        .bind(to_db(group.0))
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ?")
        .bind(conversation)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM chat_groups WHERE id = ?")
        .bind(to_db(group.0))
        .execute(&mut *conn)
        .await?;
    Ok(into_user_ids(members))
}

pub(super) async fn append_message(
    conn: &mut MySqlConnection,
    message: &NewMessage,
) -> Result<Appended> {
    let sender = to_db(message.sender_id.0);
    if let Some(original) = stored(conn, sender, &message.client_msg_id).await? {
        return duplicate(conn, original).await;
    }
    let conversation = match message.target {
        Target::User(to) => {
            let row: Option<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT u.id, f.conversation_id FROM users u \
                 LEFT JOIN friends f ON f.user_id = ? AND f.friend_id = u.id WHERE u.id = ?",
            )
            .bind(sender)
            .bind(to_db(to.0))
            .fetch_optional(&mut *conn)
            .await?;
            let (_, conversation) = row.ok_or(StoreError::NotFound("user"))?;
            conversation.ok_or(StoreError::Forbidden("not friends"))?
        }
        Target::Group(group) => {
            let row: Option<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT g.conversation_id, m.user_id FROM chat_groups g \
                 LEFT JOIN group_members m ON m.group_id = g.id AND m.user_id = ? WHERE g.id = ?",
            )
            .bind(sender)
            .bind(to_db(group.0))
            .fetch_optional(&mut *conn)
            .await?;
            let (conversation, member) = row.ok_or(StoreError::NotFound("group"))?;
            member.ok_or(StoreError::Forbidden("not a member of the group"))?;
            conversation
        }
    };
    // The increment locks the conversation's row until commit: appends to
    // one conversation from every node queue here, one at a time, so each
    // takes the next number and none is skipped or taken twice.
    sqlx::query("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ?")
        .bind(conversation)
        .execute(&mut *conn)
        .await?;
    let seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ?")
        .bind(conversation)
        .fetch_one(&mut *conn)
        .await?;
    let (target_kind, target_id) = target_to_db(message.target);
    let inserted = sqlx::query(
        "INSERT INTO messages (conversation_id, seq, sender_id, target_kind, target_id, \
         client_msg_id, body, server_ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(conversation)
    .bind(seq)
    .bind(sender)
    .bind(target_kind)
    .bind(target_id)
    .bind(&message.client_msg_id)
    .bind(&message.body)
    .bind(message.now_ms)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(error) if is_unique_violation(&error) => {
            // Another node stored this (sender, client_msg_id) after our
            // check; InnoDB made this insert wait for it to commit. Give the
            // number back (the row is still locked by us, so nobody took a
            // later one) and answer with the original.
            sqlx::query("UPDATE conversations SET last_seq = last_seq - 1 WHERE id = ?")
                .bind(conversation)
                .execute(&mut *conn)
                .await?;
            let original = stored(conn, sender, &message.client_msg_id)
                .await?
                .ok_or(StoreError::Database(error))?;
            return duplicate(conn, original).await;
        }
        Err(error) => return Err(error.into()),
    }
    let conversation_id = ConversationId(from_db(conversation));
    Ok(Appended {
        message: ChatMessage {
            conversation_id,
            seq: Seq(from_db(seq)),
            sender_id: message.sender_id,
            sender_name: message.sender_name.clone(),
            target: message.target,
            client_msg_id: message.client_msg_id.clone(),
            body: message.body.clone(),
            server_ts_ms: message.now_ms,
        },
        duplicate: false,
        recipients: recipients(conn, conversation_id.0).await?,
    })
}

/// The answer to a resend: the original and its conversation's members.
async fn duplicate(conn: &mut MySqlConnection, original: ChatMessage) -> Result<Appended> {
    let recipients = recipients(conn, original.conversation_id.0).await?;
    Ok(Appended {
        message: original,
        duplicate: true,
        recipients,
    })
}

/// The message `sender` stored under `client_msg_id`, if any.
async fn stored(
    conn: &mut MySqlConnection,
    sender: i64,
    client_msg_id: &str,
) -> Result<Option<ChatMessage>> {
    let row: Option<MessageRow> = sqlx::query_as(&format!(
        "{SELECT_MESSAGE} WHERE m.sender_id = ? AND m.client_msg_id = ?"
    ))
    .bind(sender)
    .bind(client_msg_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(MessageRow::into_message).transpose()
}

/// Everyone a conversation's messages are for, by id.
async fn recipients(conn: &mut MySqlConnection, conversation: u64) -> Result<Vec<UserId>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM conversation_members WHERE conversation_id = ? ORDER BY user_id",
    )
    .bind(to_db(conversation))
    .fetch_all(&mut *conn)
    .await?;
    Ok(into_user_ids(ids))
}

pub(super) async fn ack(
    conn: &mut MySqlConnection,
    (user, conversation, seq): &args::Ack,
) -> Result<Seq> {
    // A plain read of the end is enough to clamp: it only grows, so a value a
    // moment old is still a position that exists. Reading it without a lock
    // keeps acks from queueing behind appends.
    let last_seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ?")
            .bind(to_db(conversation.0))
            .fetch_optional(&mut *conn)
            .await?;
    let not_member = StoreError::Forbidden("not a member of the conversation");
    let Some(last_seq) = last_seq else {
        return Err(not_member);
    };
    let target = to_db(seq.0).min(last_seq);
    let matched = sqlx::query(
        "UPDATE conversation_members SET acked_seq = GREATEST(acked_seq, ?) \
         WHERE conversation_id = ? AND user_id = ?",
    )
    .bind(target)
    .bind(to_db(conversation.0))
    .bind(to_db(user.0))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if matched == 0 {
        return Err(not_member);
    }
    let acked: i64 = sqlx::query_scalar(
        "SELECT acked_seq FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
    )
    .bind(to_db(conversation.0))
    .bind(to_db(user.0))
    .fetch_one(&mut *conn)
    .await?;
    Ok(Seq(from_db(acked)))
}
