//! The bodies of the SQLite write transactions. Each runs on the writer
//! connection inside a transaction the writer opened (see `writer.rs`), checks
//! before it writes, and may be run a second time if its batch fails.

use chat_proto::{ConversationId, FriendRequestInfo, GroupId, Role, UserId, UserSummary};
use sqlx::sqlite::SqliteConnection;

use crate::error::{Result, StoreError};
use crate::repo::{FriendAddResult, FriendRecord, GroupRecord, UserRecord};
use crate::rows::{
    args, from_db, insert_error, into_user_ids, role_from_db, role_to_db, to_db, FriendRow,
    SELECT_FRIEND, USER_NAME_TAKEN,
};

pub(super) async fn create_user(
    conn: &mut SqliteConnection,
    (name, password_hash, now_ms): &args::NewUser,
) -> Result<UserRecord> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (name, name_key, name_skeleton, password_hash, created_at_ms) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(name)
    .bind(crate::names::key(name))
    .bind(crate::names::skeleton(name))
    .bind(password_hash)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(|error| insert_error(error, USER_NAME_TAKEN, "user"))?;
    Ok(UserRecord {
        id: UserId(from_db(id)),
        name: name.clone(),
        password_hash: password_hash.clone(),
        created_at_ms: *now_ms,
    })
}

/// The name of a user, or `NotFound`.
async fn user_name(conn: &mut SqliteConnection, user: UserId) -> Result<String> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = ?")
        .bind(to_db(user.0))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("user"))
}

pub(super) async fn add_friend_request(
    conn: &mut SqliteConnection,
    (from, to, message, now_ms): &args::FriendRequest,
) -> Result<FriendAddResult> {
    if from == to {
        return Err(StoreError::Conflict("cannot befriend oneself"));
    }
    let to_name = user_name(conn, *to).await?;
    let from_name = user_name(conn, *from).await?;
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
async fn pending(conn: &mut SqliteConnection, from: UserId, to: UserId) -> Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM friend_requests WHERE from_id = ? AND to_id = ?")
            .bind(to_db(from.0))
            .bind(to_db(to.0))
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

/// Makes `a` and `b` friends: consumes requests either way, finds or opens
/// their conversation and makes both its members. A pair that was friends
/// before gets its old conversation back, with each side's acknowledged
/// position as it was.
async fn befriend(
    conn: &mut SqliteConnection,
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
    let existing: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM conversations WHERE kind = 'direct' AND user_lo = ? AND user_hi = ?",
    )
    .bind(lo)
    .bind(hi)
    .fetch_optional(&mut *conn)
    .await?;
    let conversation =
        match existing {
            Some(id) => {
                // Friends again: the conversation comes back to the top.
                sqlx::query("UPDATE conversations SET last_activity_ms = ? WHERE id = ?")
                    .bind(now_ms)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                id
            }
            None => sqlx::query_scalar(
                "INSERT INTO conversations (kind, user_lo, user_hi, last_seq, last_activity_ms) \
                 VALUES ('direct', ?, ?, 0, ?) RETURNING id",
            )
            .bind(lo)
            .bind(hi)
            .bind(now_ms)
            .fetch_one(&mut *conn)
            .await?,
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
    // one starts at the conversation's end (0 for a new conversation).
    for user in [lo, hi] {
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, acked_seq, read_seq) \
             SELECT id, ?, last_seq, last_seq FROM conversations WHERE id = ? \
             ON CONFLICT (conversation_id, user_id) DO NOTHING",
        )
        .bind(user)
        .bind(conversation)
        .execute(&mut *conn)
        .await?;
    }
    Ok(ConversationId(from_db(conversation)))
}

pub(super) async fn respond_friend_request(
    conn: &mut SqliteConnection,
    (from, to, accept, now_ms): &args::FriendResponse,
) -> Result<Option<ConversationId>> {
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
    conn: &mut SqliteConnection,
    (user, friend): &args::UserPair,
) -> Result<()> {
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

pub(super) async fn create_group(
    conn: &mut SqliteConnection,
    (owner, name, description, now_ms): &args::NewGroup,
) -> Result<GroupRecord> {
    let conversation: i64 = sqlx::query_scalar(
        "INSERT INTO conversations (kind, last_seq, last_activity_ms) VALUES ('group', 0, ?) \
         RETURNING id",
    )
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO chat_groups (name, description, owner_id, conversation_id, created_at_ms) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(name)
    .bind(description)
    .bind(to_db(owner.0))
    .bind(conversation)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(|error| insert_error(error, "group exists", "user"))?;
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id, role, joined_at_ms) VALUES (?, ?, 'owner', ?)",
    )
    .bind(id)
    .bind(to_db(owner.0))
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, acked_seq) VALUES (?, ?, 0)",
    )
    .bind(conversation)
    .bind(to_db(owner.0))
    .execute(&mut *conn)
    .await?;
    Ok(GroupRecord {
        id: GroupId(from_db(id)),
        name: name.clone(),
        description: description.clone(),
        owner_id: *owner,
        conversation_id: ConversationId(from_db(conversation)),
        member_count: 1,
        created_at_ms: *now_ms,
        join_policy: chat_proto::JoinPolicy::Open,
    })
}

/// A group's conversation and owner, or `NotFound`.
async fn group_row(conn: &mut SqliteConnection, group: GroupId) -> Result<(i64, i64)> {
    sqlx::query_as("SELECT conversation_id, owner_id FROM chat_groups WHERE id = ?")
        .bind(to_db(group.0))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("group"))
}

pub(super) async fn add_member(
    conn: &mut SqliteConnection,
    (group, user, role, now_ms): &args::NewMember,
) -> Result<()> {
    let (conversation, _owner) = group_row(conn, *group).await?;
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
    // What was said before joining is history, not offline messages.
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, acked_seq, read_seq) \
         SELECT id, ?, last_seq, last_seq FROM conversations WHERE id = ? \
         ON CONFLICT (conversation_id, user_id) DO UPDATE SET acked_seq = excluded.acked_seq, \
         read_seq = excluded.read_seq",
    )
    .bind(to_db(user.0))
    .bind(conversation)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

crate::conversations::writes!(SqliteConnection, lock = "");

crate::shared_writes::writes!(SqliteConnection, lock = "");
