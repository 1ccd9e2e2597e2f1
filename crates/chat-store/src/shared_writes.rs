//! The write transactions that are the same on SQLite and MySQL but for
//! the row lock MySQL takes on the group it changes (`FOR UPDATE`; SQLite's
//! writer is alone): tokens, a friend's remark and category, and a group's
//! members, roles and dissolution. Written once, as a macro each backend's
//! `writes` module expands over its connection type (as `reads.rs` does
//! over the pool); what differs between the backends (upserts, `RETURNING`,
//! the locking of a friendship's pair) stays in each backend's `writes.rs`.

/// Expands to the shared write bodies over `$conn`, with `$lock` appended
/// to the read of the group row a change starts from. The expansion uses
/// the names every backend's `writes` module imports (`args`, `Result`,
/// `StoreError`, the row helpers of `crate::rows`, the id types).
macro_rules! writes {
    ($conn:ty, lock = $lock:literal) => {
        /// The group's conversation and owner, locked until commit where
        /// the backend needs it; `NotFound` for no such group. Every change
        /// of a group's members starts here.
        async fn group_for_change(
            conn: &mut $conn,
            group: chat_proto::GroupId,
        ) -> crate::error::Result<(i64, i64)> {
            sqlx::query_as(concat!(
                "SELECT conversation_id, owner_id FROM chat_groups WHERE id = ? ",
                $lock
            ))
            .bind(crate::rows::to_db(group.0))
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(crate::error::StoreError::NotFound("group"))
        }

        pub(super) async fn create_token(
            conn: &mut $conn,
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
            conn: &mut $conn,
            (token_hash, now_ms): &args::RevokeToken,
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
            (user, friend, remark, category): &args::FriendUpdate,
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
            (group, user): &args::GroupUser,
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
            (group, user, role): &args::NewRole,
        ) -> Result<()> {
            let (_conversation, owner) = group_for_change(conn, *group).await?;
            let current: Option<crate::rows::DbText> =
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
