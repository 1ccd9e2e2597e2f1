//! The write transactions off the hot path, written once for both backends
//! (appends and acks are each backend's `hot.rs`): accounts, tokens, friend
//! requests and friendships, groups and their members. A macro each
//! backend's `writes` module expands over its connection type, as
//! `reads.rs` does over the pool.
//!
//! Several MySQL nodes write to one database, so each body takes the row
//! locks that make its checks hold until it commits: the two users' rows
//! for anything about a friendship (locked in id order, so two such
//! transactions never wait on each other in a cycle), the group's row for
//! anything about a group's members, and the conversation's row where a
//! member's position must match the conversation's end. SQLite's writer
//! is alone (`BEGIN IMMEDIATE`), so the same reads there lock nothing.
//!
//! What differs between the backends is passed in, and nothing else: the
//! lock clause, the two upserts of a conversation member, and how a
//! backend reports the id an `INSERT` assigned (the `inserted_id` function
//! of its `writes` module).

/// Expands to the write bodies over `$conn`, with `$lock` appended to the
/// reads that must hold their rows until commit, `$keep_position` to the
/// insert of conversation members that keeps the position of a member row
/// that exists already, and `$set_position` (two placeholders: acked and
/// read position) to the one that moves it. The expansion calls
/// `inserted_id(&result)` (the id the last `INSERT` assigned), which the
/// expanding module must define.
macro_rules! writes {
    (
        $conn:ty,
        lock = $lock:literal,
        keep_position = $keep_position:literal,
        set_position = $set_position:literal
    ) => {
        use chat_proto::{ConversationId, FriendRequestInfo, GroupId, Role, UserId, UserSummary};

        use crate::error::{Result, StoreError};
        use crate::repo::{FriendAddResult, FriendRecord, GroupRecord, UserRecord};
        use crate::rows::{
            args, from_db, insert_error, into_user_ids, role_from_db, role_to_db, to_db, DbText,
            FriendRow, SELECT_FRIEND, USER_NAME_TAKEN,
        };

        pub(super) async fn create_user(
            conn: &mut $conn,
            args::NewUser { name, password_hash, now_ms }: &args::NewUser,
        ) -> Result<UserRecord> {
            let inserted = sqlx::query(
                "INSERT INTO users (name, name_key, name_skeleton, password_hash, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(name)
            .bind(crate::names::key(name))
            .bind(crate::names::skeleton(name))
            .bind(password_hash)
            .bind(now_ms)
            .execute(&mut *conn)
            .await
            .map_err(|error| insert_error(error, USER_NAME_TAKEN, "user"))?;
            Ok(UserRecord {
                id: UserId(from_db(inserted_id(&inserted))),
                name: name.clone(),
                password_hash: password_hash.clone(),
                created_at_ms: *now_ms,
            })
        }

        /// Locks the rows of users `a` and `b` until commit (on MySQL) and
        /// returns their names (`None` for one that does not exist). Every
        /// change to a friendship or a friend request takes this lock first,
        /// so two nodes acting on one pair at once run one after the other.
        async fn lock_pair(
            conn: &mut $conn,
            a: UserId,
            b: UserId,
        ) -> Result<(Option<String>, Option<String>)> {
            let rows: Vec<(i64, DbText)> = sqlx::query_as(concat!(
                "SELECT id, name FROM users WHERE id IN (?, ?) ORDER BY id ",
                $lock
            ))
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
            conn: &mut $conn,
            args::FriendRequest { from, to, message, now_ms }: &args::FriendRequest,
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
        async fn pending(conn: &mut $conn, from: UserId, to: UserId) -> Result<bool> {
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
            conn: &mut $conn,
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
                Some((id, last_seq)) => {
                    // Friends again: the conversation comes back to the top.
                    sqlx::query("UPDATE conversations SET last_activity_ms = ? WHERE id = ?")
                        .bind(now_ms)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                    (id, last_seq)
                }
                None => {
                    let inserted = sqlx::query(
                        "INSERT INTO conversations (kind, user_lo, user_hi, last_seq, last_activity_ms) \
                         VALUES ('direct', ?, ?, 0, ?)",
                    )
                    .bind(lo)
                    .bind(hi)
                    .bind(now_ms)
                    .execute(&mut *conn)
                    .await?;
                    (inserted_id(&inserted), 0)
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
            sqlx::query(concat!(
                "INSERT INTO conversation_members (conversation_id, user_id, acked_seq, read_seq) \
                 VALUES (?, ?, ?, ?), (?, ?, ?, ?) ",
                $keep_position
            ))
            .bind(conversation)
            .bind(lo)
            .bind(last_seq)
            .bind(last_seq)
            .bind(conversation)
            .bind(hi)
            .bind(last_seq)
            .bind(last_seq)
            .execute(&mut *conn)
            .await?;
            Ok(ConversationId(from_db(conversation)))
        }

        pub(super) async fn respond_friend_request(
            conn: &mut $conn,
            args::FriendResponse { from, to, accept, now_ms }: &args::FriendResponse,
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
            conn: &mut $conn,
            args::FriendPair { user, friend }: &args::FriendPair,
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

        pub(super) async fn create_group(
            conn: &mut $conn,
            args::NewGroup { owner, name, description, now_ms }: &args::NewGroup,
        ) -> Result<GroupRecord> {
            let inserted = sqlx::query(
                "INSERT INTO conversations (kind, last_seq, last_activity_ms) VALUES ('group', 0, ?)",
            )
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
            let conversation = inserted_id(&inserted);
            let inserted = sqlx::query(
                "INSERT INTO chat_groups (name, description, owner_id, conversation_id, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(name)
            .bind(description)
            .bind(to_db(owner.0))
            .bind(conversation)
            .bind(now_ms)
            .execute(&mut *conn)
            .await
            .map_err(|error| insert_error(error, "group exists", "user"))?;
            let id = inserted_id(&inserted);
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

        /// The group's conversation and owner, locked until commit where
        /// the backend needs it; `NotFound` for no such group. Every change
        /// of a group's members starts here.
        async fn group_for_change(conn: &mut $conn, group: GroupId) -> Result<(i64, i64)> {
            sqlx::query_as(concat!(
                "SELECT conversation_id, owner_id FROM chat_groups WHERE id = ? ",
                $lock
            ))
            .bind(to_db(group.0))
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound("group"))
        }

        pub(super) async fn add_member(
            conn: &mut $conn,
            args::NewMember { group, user, role, now_ms }: &args::NewMember,
        ) -> Result<()> {
            let (conversation, _owner) = group_for_change(conn, *group).await?;
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
            // Locking the conversation row waits for any append in flight and
            // holds off the next, so the new member's position is exactly the
            // end: what was said before joining is history, not offline
            // messages, and nothing said after is skipped.
            let last_seq: i64 = sqlx::query_scalar(concat!(
                "SELECT last_seq FROM conversations WHERE id = ? ",
                $lock
            ))
            .bind(conversation)
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query(concat!(
                "INSERT INTO conversation_members (conversation_id, user_id, acked_seq, read_seq) \
                 VALUES (?, ?, ?, ?) ",
                $set_position
            ))
            .bind(conversation)
            .bind(to_db(user.0))
            .bind(last_seq)
            .bind(last_seq)
            .bind(last_seq)
            .bind(last_seq)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(super) async fn create_token(
            conn: &mut $conn,
            args::NewToken { token_hash, user, expires_at_ms }: &args::NewToken,
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
            conn: &mut $conn,
            args::RevokeToken { token_hash, now_ms }: &args::RevokeToken,
        ) -> Result<()> {
            sqlx::query("DELETE FROM tokens WHERE token_hash = ? OR expires_at_ms <= ?")
                .bind(token_hash)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        pub(super) async fn update_friend(
            conn: &mut $conn,
            args::FriendUpdate { user, friend, remark, category }: &args::FriendUpdate,
        ) -> Result<FriendRecord> {
            // NULL leaves the column as it is; '' clears it to NULL. A stored value
            // is never '', so NULLIF only ever clears a new empty value. (MySQL
            // connections report matched rows, not changed rows, so setting the
            // same value again is not mistaken for "not friends".)
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

        pub(super) async fn remove_member(
            conn: &mut $conn,
            args::GroupUser { group, user }: &args::GroupUser,
        ) -> Result<()> {
            let (conversation, owner) = group_for_change(conn, *group).await?;
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
            conn: &mut $conn,
            args::NewRole { group, user, role }: &args::NewRole,
        ) -> Result<()> {
            let (_conversation, owner) = group_for_change(conn, *group).await?;
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
            conn: &mut $conn,
            group: &GroupId,
        ) -> Result<Vec<UserId>> {
            let (conversation, _owner) = group_for_change(conn, *group).await?;
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
    };
}

pub(crate) use writes;
