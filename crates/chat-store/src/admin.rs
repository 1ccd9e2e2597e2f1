//! What operators do to the store (`chatd admin`): look accounts up with
//! what a person needs to know about them, reset passwords, disable and
//! delete accounts, list groups, count things.
//!
//! The queries are written once for both backends, like [`crate::reads`]:
//! a macro that each backend expands over its own pool and connection
//! types, with the few pieces of SQL that differ (string concatenation, row
//! locks, the database's size) passed in. Reads run on the backend's read
//! pool; writes are transaction bodies that run the way the backend runs
//! every write (the SQLite writer's batches, a MySQL transaction retried on
//! deadlock).
//!
//! # Deleting an account
//! The `users` row stays, as a tombstone, because messages keep their
//! sender's id (a conversation's sequence numbers are gap-free, so its
//! messages cannot simply go). Everything else that was the person's goes
//! in one transaction:
//! - the name becomes [`deleted_account_name`] (`deleted account #ID`, a
//!   name nobody can register) and the password hash is emptied, so nobody
//!   can log in as it and its old name is free again;
//! - its tokens, friendships (both directions), pending friend requests
//!   (both directions), group memberships and acknowledged positions are
//!   removed;
//! - each message it sent keeps its conversation, sequence number, target
//!   and time, but its body becomes empty and its `client_msg_id` becomes
//!   `erased:CONVERSATION:SEQ`;
//! - each group it owned passes to its oldest admin (by the time they
//!   joined), else to its oldest member; a group with no other member is
//!   dissolved.
//!
//! A tombstone is invisible to the chat service: [`crate::UserStore`]'s
//! lookups do not find it, and its id is never handed out again.

use async_trait::async_trait;
use chat_proto::{GroupId, UserId};

use crate::error::Result;
use crate::repo::GroupRecord;

/// The name a deleted account's row gets: unique, and one that
/// registration refuses (see [`is_reserved_name`]), so nobody can take it
/// before the account is deleted or pose as a deleted account later.
#[must_use]
pub fn deleted_account_name(id: UserId) -> String {
    format!("deleted account #{}", id.0)
}

/// Whether `name` is kept for deleted accounts: it starts with
/// `deleted account`, in any mix of ASCII case.
#[must_use]
pub fn is_reserved_name(name: &str) -> bool {
    const PREFIX: &str = "deleted account";
    name.get(..PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(PREFIX))
}

/// An account as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// The account's id.
    pub id: UserId,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// Its last successful login, to the minute; `None` if it never logged
    /// in since the store recorded logins.
    pub last_login_at_ms: Option<i64>,
    /// When an operator disabled it, if it is disabled now.
    pub disabled_at_ms: Option<i64>,
    /// The operator's note on why, if one was given.
    pub disabled_reason: Option<String>,
}

/// How precisely logins are noted: [`AdminStore::record_login`] writes
/// only when the last noted login is at least this old.
pub const LOGIN_NOTED_EVERY_MS: i64 = 60_000;

impl AccountRecord {
    /// Whether a login at `now_ms` would be noted (see
    /// [`LOGIN_NOTED_EVERY_MS`]), so a caller can skip the write.
    #[must_use]
    pub fn login_worth_noting(&self, now_ms: i64) -> bool {
        self.last_login_at_ms
            .is_none_or(|last| last <= now_ms - LOGIN_NOTED_EVERY_MS)
    }

    /// Whether the account may not log in.
    #[must_use]
    pub fn is_disabled(&self) -> bool {
        self.disabled_at_ms.is_some()
    }
}

/// An account with counts of what it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDetails {
    /// The account.
    pub account: AccountRecord,
    /// How many friends it has.
    pub friends: u64,
    /// How many groups it belongs to.
    pub groups: u64,
    /// How many of those it owns.
    pub groups_owned: u64,
    /// How many messages it has sent.
    pub messages_sent: u64,
    /// How many unexpired tokens it holds (devices that can log in again
    /// without the password).
    pub tokens: u64,
}

/// What deleting an account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedAccount {
    /// The account's id.
    pub id: UserId,
    /// The name it had.
    pub former_name: String,
    /// The name its tombstone has now.
    pub tombstone_name: String,
    /// Groups it owned that passed to another member, with the new owner.
    pub groups_handed_over: Vec<(GroupId, UserId)>,
    /// Groups it owned alone, dissolved.
    pub groups_dissolved: Vec<GroupId>,
    /// Friendships ended.
    pub friendships_ended: u64,
    /// Messages whose bodies were erased.
    pub messages_erased: u64,
}

/// Counts over the whole store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    /// Accounts (not deleted).
    pub users: u64,
    /// Accounts disabled now.
    pub users_disabled: u64,
    /// Deleted accounts (tombstones).
    pub users_deleted: u64,
    /// Groups.
    pub groups: u64,
    /// Conversations, 1:1 and group.
    pub conversations: u64,
    /// Messages.
    pub messages: u64,
    /// The space the database takes: the SQLite file's pages (without its
    /// write-ahead log), or the MySQL schema's data and indexes.
    pub database_bytes: u64,
}

/// The operators' view of the store.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Every account (deleted ones excepted) by id; with `name_like`, only
    /// those whose name matches it as a SQL `LIKE` pattern compared in
    /// lower case, with `!` as the escape character (see [`like_pattern`]).
    async fn accounts(&self, name_like: Option<&str>) -> Result<Vec<AccountRecord>>;

    /// One account, `None` if there is no such account or it was deleted.
    async fn account(&self, user: UserId) -> Result<Option<AccountRecord>>;

    /// One account with counts, `None` as for [`AdminStore::account`].
    async fn account_details(&self, user: UserId) -> Result<Option<AccountDetails>>;

    /// Notes a successful login at `now_ms`. It writes only when the last
    /// noted login is a minute old or more, so a client reconnecting in a
    /// loop does not write at every login.
    async fn record_login(&self, user: UserId, now_ms: i64) -> Result<()>;

    /// Replaces the password hash and revokes every token of the account.
    /// Returns how many tokens were revoked.
    ///
    /// # Errors
    /// `NotFound` for an unknown or deleted account.
    async fn set_password(&self, user: UserId, password_hash: &str) -> Result<u64>;

    /// Replaces the password hash of `user` with `new_hash` if it still is
    /// `old_hash` (a stronger hash of the same password, made at login);
    /// tokens stay valid. Returns whether it was replaced.
    async fn replace_password_hash(
        &self,
        user: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool>;

    /// Deletes every token that expired before `now_ms`; returns how many.
    async fn purge_expired_tokens(&self, now_ms: i64) -> Result<u64>;

    /// Disables the account (it can no longer log in) and revokes its
    /// tokens, so enabling it again does not revive old devices. Returns
    /// how many tokens were revoked.
    ///
    /// # Errors
    /// `NotFound` for an unknown or deleted account.
    async fn disable_account(&self, user: UserId, reason: Option<&str>, now_ms: i64)
        -> Result<u64>;

    /// Lets a disabled account log in again; returns whether it was
    /// disabled.
    ///
    /// # Errors
    /// `NotFound` for an unknown or deleted account.
    async fn enable_account(&self, user: UserId) -> Result<bool>;

    /// Deletes the account as the [module docs](self) describe, in one
    /// transaction.
    ///
    /// # Errors
    /// `NotFound` for an unknown or already deleted account; `Conflict` if
    /// another account holds the tombstone's name (only possible for a
    /// name registered before such names were reserved).
    async fn delete_account(&self, user: UserId, now_ms: i64) -> Result<DeletedAccount>;

    /// Every group, by id.
    async fn all_groups(&self) -> Result<Vec<GroupRecord>>;

    /// Counts of everything.
    async fn stats(&self) -> Result<StoreStats>;
}

/// Turns an operator's name pattern into the `LIKE` pattern
/// [`AdminStore::accounts`] takes: `*` matches any run of characters, `?`
/// one character; a pattern without either matches names that contain it.
/// ASCII letters match either case.
#[must_use]
pub fn like_pattern(pattern: &str) -> String {
    let mut like = String::with_capacity(pattern.len() + 2);
    for c in pattern.to_ascii_lowercase().chars() {
        match c {
            '*' => like.push('%'),
            '?' => like.push('_'),
            '%' | '_' | '!' => {
                like.push('!');
                like.push(c);
            }
            other => like.push(other),
        }
    }
    if pattern.contains(['*', '?']) {
        like
    } else {
        format!("%{like}%")
    }
}

/// Expands to the admin queries for one backend: `$database` and
/// `$connection` are its sqlx types; `$erased_id` is the SQL expression of
/// an erased message's `client_msg_id`, `$lock` what a `SELECT` that must
/// lock its rows ends with, `$size` the query of the database's size in
/// bytes.
macro_rules! queries {
    ($database:ty, $connection:ty, erased_id = $erased_id:literal, lock = $lock:literal, size = $size:literal) => {
        use chat_proto::{GroupId, UserId};

        use $crate::admin::{
            deleted_account_name, AccountDetails, AccountRecord, DeletedAccount, StoreStats,
        };
        use $crate::error::{Result, StoreError};
        use $crate::repo::GroupRecord;
        use $crate::rows::{
            from_db, is_unique_violation, to_db, AccountRow, DbText, GroupRow, SELECT_ACCOUNT,
            SELECT_GROUP,
        };

        pub(crate) async fn accounts(
            pool: &sqlx::Pool<$database>,
            name_like: Option<&str>,
        ) -> Result<Vec<AccountRecord>> {
            let rows: Vec<AccountRow> = match name_like {
                Some(pattern) => {
                    sqlx::query_as(&format!(
                        "{SELECT_ACCOUNT} AND LOWER(name) LIKE ? ESCAPE '!' ORDER BY id"
                    ))
                    .bind(pattern)
                    .fetch_all(pool)
                    .await?
                }
                None => {
                    sqlx::query_as(&format!("{SELECT_ACCOUNT} ORDER BY id"))
                        .fetch_all(pool)
                        .await?
                }
            };
            Ok(rows.into_iter().map(AccountRecord::from).collect())
        }

        /// One account, read through the pool or on a connection already
        /// checked out (a login's).
        pub(crate) async fn account<'e, E>(executor: E, user: UserId) -> Result<Option<AccountRecord>>
        where
            E: sqlx::Executor<'e, Database = $database>,
        {
            let row: Option<AccountRow> = sqlx::query_as(&format!("{SELECT_ACCOUNT} AND id = ?"))
                .bind(to_db(user.0))
                .fetch_optional(executor)
                .await?;
            Ok(row.map(AccountRecord::from))
        }

        /// `COUNT(*)` of a query with one user placeholder.
        async fn count(pool: &sqlx::Pool<$database>, sql: &str, user: UserId) -> Result<u64> {
            let count: i64 = sqlx::query_scalar(sql)
                .bind(to_db(user.0))
                .fetch_one(pool)
                .await?;
            Ok(from_db(count))
        }

        pub(crate) async fn account_details(
            pool: &sqlx::Pool<$database>,
            user: UserId,
            now_ms: i64,
        ) -> Result<Option<AccountDetails>> {
            let Some(account) = account(pool, user).await? else {
                return Ok(None);
            };
            let friends = count(pool, "SELECT COUNT(*) FROM friends WHERE user_id = ?", user).await?;
            let groups =
                count(pool, "SELECT COUNT(*) FROM group_members WHERE user_id = ?", user).await?;
            let groups_owned =
                count(pool, "SELECT COUNT(*) FROM chat_groups WHERE owner_id = ?", user).await?;
            let messages_sent =
                count(pool, "SELECT COUNT(*) FROM messages WHERE sender_id = ?", user).await?;
            let tokens: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tokens WHERE user_id = ? AND expires_at_ms > ?",
            )
            .bind(to_db(user.0))
            .bind(now_ms)
            .fetch_one(pool)
            .await?;
            Ok(Some(AccountDetails {
                account,
                friends,
                groups,
                groups_owned,
                messages_sent,
                tokens: from_db(tokens),
            }))
        }

        pub(crate) async fn all_groups(pool: &sqlx::Pool<$database>) -> Result<Vec<GroupRecord>> {
            let rows: Vec<GroupRow> = sqlx::query_as(&format!("{SELECT_GROUP} ORDER BY g.id"))
                .fetch_all(pool)
                .await?;
            Ok(rows.into_iter().map(GroupRecord::from).collect())
        }

        /// `COUNT(*)` of a query without placeholders.
        async fn total(pool: &sqlx::Pool<$database>, sql: &str) -> Result<u64> {
            let count: i64 = sqlx::query_scalar(sql).fetch_one(pool).await?;
            Ok(from_db(count))
        }

        pub(crate) async fn stats(pool: &sqlx::Pool<$database>) -> Result<StoreStats> {
            Ok(StoreStats {
                users: total(pool, "SELECT COUNT(*) FROM users WHERE deleted_at_ms IS NULL").await?,
                users_disabled: total(
                    pool,
                    "SELECT COUNT(*) FROM users \
                     WHERE deleted_at_ms IS NULL AND disabled_at_ms IS NOT NULL",
                )
                .await?,
                users_deleted: total(
                    pool,
                    "SELECT COUNT(*) FROM users WHERE deleted_at_ms IS NOT NULL",
                )
                .await?,
                groups: total(pool, "SELECT COUNT(*) FROM chat_groups").await?,
                conversations: total(pool, "SELECT COUNT(*) FROM conversations").await?,
                messages: total(pool, "SELECT COUNT(*) FROM messages").await?,
                database_bytes: total(pool, $size).await?,
            })
        }

        /// The name of a live (not deleted) account, locking its row on
        /// MySQL; `NotFound` otherwise.
        async fn live_user(conn: &mut $connection, user: UserId) -> Result<String> {
            let name: Option<DbText> = sqlx::query_scalar(&format!(
                "SELECT name FROM users WHERE id = ? AND deleted_at_ms IS NULL{}",
                $lock
            ))
            .bind(to_db(user.0))
            .fetch_optional(&mut *conn)
            .await?;
            name.map(|name| name.0).ok_or(StoreError::NotFound("user"))
        }

        /// Revokes every token of `user`; returns how many there were.
        async fn revoke_all(conn: &mut $connection, user: UserId) -> Result<u64> {
            Ok(sqlx::query("DELETE FROM tokens WHERE user_id = ?")
                .bind(to_db(user.0))
                .execute(&mut *conn)
                .await?
                .rows_affected())
        }

        pub(crate) async fn record_login(
            conn: &mut $connection,
            (user, now_ms): &(UserId, i64),
        ) -> Result<()> {
            sqlx::query(
                "UPDATE users SET last_login_at_ms = ? WHERE id = ? \
                 AND (last_login_at_ms IS NULL OR last_login_at_ms <= ?)",
            )
            .bind(now_ms)
            .bind(to_db(user.0))
            .bind(now_ms - $crate::admin::LOGIN_NOTED_EVERY_MS)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        pub(crate) async fn set_password(
            conn: &mut $connection,
            (user, password_hash): &(UserId, String),
        ) -> Result<u64> {
            live_user(conn, *user).await?;
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(password_hash)
                .bind(to_db(user.0))
                .execute(&mut *conn)
                .await?;
            revoke_all(conn, *user).await
        }

        pub(crate) async fn replace_password_hash(
            conn: &mut $connection,
            (user, old_hash, new_hash): &(UserId, String, String),
        ) -> Result<bool> {
            let replaced = sqlx::query(
                "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ? \
                 AND deleted_at_ms IS NULL",
            )
            .bind(new_hash)
            .bind(to_db(user.0))
            .bind(old_hash)
            .execute(&mut *conn)
            .await?;
            Ok(replaced.rows_affected() > 0)
        }

        /// Fills the name keys of accounts created before names had them
        /// (see [`crate::names`]), oldest account first. An account whose
        /// key or skeleton an older account holds keeps none, and the clash
        /// is logged for the operator: both accounts keep working, nothing
        /// is merged. Returns how many clash.
        pub(crate) async fn backfill_name_keys(pool: &sqlx::Pool<$database>) -> Result<u64> {
            let rows: Vec<(i64, DbText)> = sqlx::query_as(
                "SELECT id, name FROM users WHERE name_key IS NULL AND deleted_at_ms IS NULL \
                 ORDER BY id",
            )
            .fetch_all(pool)
            .await?;
            let mut clashes = 0;
            for (id, name) in rows {
                let name = name.0;
                let key = $crate::names::key(&name);
                let skeleton = $crate::names::skeleton(&name);
                let updated = sqlx::query(
                    "UPDATE users SET name_key = ?, name_skeleton = ? \
                     WHERE id = ? AND name_key IS NULL",
                )
                .bind(&key)
                .bind(&skeleton)
                .bind(id)
                .execute(pool)
                .await;
                match updated {
                    Ok(_) => {}
                    Err(error) if is_unique_violation(&error) => {
                        clashes += 1;
                        let older: Option<i64> = sqlx::query_scalar(
                            "SELECT id FROM users WHERE name_key = ? OR name_skeleton = ? LIMIT 1",
                        )
                        .bind(&key)
                        .bind(&skeleton)
                        .fetch_optional(pool)
                        .await?;
                        tracing::warn!(
                            user = id,
                            ?name,
                            clashes_with = older,
                            "an account's name differs only in case from an older account's, \
                             or looks like it; both keep working, but this one is not protected \
                             against look-alikes: ask one of them to take another name"
                        );
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            Ok(clashes)
        }

        pub(crate) async fn purge_expired_tokens(
            conn: &mut $connection,
            now_ms: &i64,
        ) -> Result<u64> {
            let purged = sqlx::query("DELETE FROM tokens WHERE expires_at_ms <= ?")
                .bind(*now_ms)
                .execute(&mut *conn)
                .await?;
            Ok(purged.rows_affected())
        }

        pub(crate) async fn disable_account(
            conn: &mut $connection,
            (user, reason, now_ms): &(UserId, Option<String>, i64),
        ) -> Result<u64> {
            live_user(conn, *user).await?;
            sqlx::query("UPDATE users SET disabled_at_ms = ?, disabled_reason = ? WHERE id = ?")
                .bind(now_ms)
                .bind(reason)
                .bind(to_db(user.0))
                .execute(&mut *conn)
                .await?;
            revoke_all(conn, *user).await
        }

        pub(crate) async fn enable_account(conn: &mut $connection, user: &UserId) -> Result<bool> {
            live_user(conn, *user).await?;
            let disabled: Option<i64> =
                sqlx::query_scalar("SELECT disabled_at_ms FROM users WHERE id = ?")
                    .bind(to_db(user.0))
                    .fetch_one(&mut *conn)
                    .await?;
            if disabled.is_some() {
                sqlx::query(
                    "UPDATE users SET disabled_at_ms = NULL, disabled_reason = NULL WHERE id = ?",
                )
                .bind(to_db(user.0))
                .execute(&mut *conn)
                .await?;
            }
            Ok(disabled.is_some())
        }

        pub(crate) async fn delete_account(
            conn: &mut $connection,
            (user, now_ms): &(UserId, i64),
        ) -> Result<DeletedAccount> {
            let former_name = live_user(conn, *user).await?;
            let id = to_db(user.0);
            let owned: Vec<(i64, i64)> = sqlx::query_as(&format!(
                "SELECT id, conversation_id FROM chat_groups WHERE owner_id = ? ORDER BY id{}",
                $lock
            ))
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            let mut groups_handed_over = Vec::new();
            let mut groups_dissolved = Vec::new();
            for (group, conversation) in owned {
                // The oldest admin, else the oldest member, by when they joined.
                let successor: Option<i64> = sqlx::query_scalar(
                    "SELECT user_id FROM group_members WHERE group_id = ? AND user_id <> ? \
                     ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at_ms, user_id \
                     LIMIT 1",
                )
                .bind(group)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                match successor {
                    Some(successor) => {
                        sqlx::query(
                            "UPDATE group_members SET role = 'owner' \
                             WHERE group_id = ? AND user_id = ?",
                        )
                        .bind(group)
                        .bind(successor)
                        .execute(&mut *conn)
                        .await?;
                        sqlx::query("UPDATE chat_groups SET owner_id = ? WHERE id = ?")
                            .bind(successor)
                            .bind(group)
                            .execute(&mut *conn)
                            .await?;
                        groups_handed_over
                            .push((GroupId(from_db(group)), UserId(from_db(successor))));
                    }
                    None => {
                        // Nobody else is in it: dissolve it as its owner
                        // would have (the messages stay, unreachable).
                        sqlx::query("DELETE FROM conversation_members WHERE conversation_id = ?")
                            .bind(conversation)
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("DELETE FROM group_members WHERE group_id = ?")
                            .bind(group)
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("DELETE FROM chat_groups WHERE id = ?")
                            .bind(group)
                            .execute(&mut *conn)
                            .await?;
                        groups_dissolved.push(GroupId(from_db(group)));
                    }
                }
            }
            for sql in [
                "DELETE FROM group_members WHERE user_id = ?",
                "DELETE FROM conversation_members WHERE user_id = ?",
                "DELETE FROM friends WHERE friend_id = ?",
                "DELETE FROM tokens WHERE user_id = ?",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *conn).await?;
            }
            let friendships_ended = sqlx::query("DELETE FROM friends WHERE user_id = ?")
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM friend_requests WHERE from_id = ? OR to_id = ?")
                .bind(id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            let messages_erased = sqlx::query(&format!(
                "UPDATE messages SET body = '', client_msg_id = {} WHERE sender_id = ?",
                $erased_id
            ))
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            let tombstone_name = deleted_account_name(*user);
            sqlx::query(
                "UPDATE users SET name = ?, name_key = NULL, name_skeleton = NULL, \
                 password_hash = '', last_login_at_ms = NULL, \
                 disabled_at_ms = NULL, disabled_reason = NULL, deleted_at_ms = ? WHERE id = ?",
            )
            .bind(&tombstone_name)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(|error| {
                if is_unique_violation(&error) {
                    StoreError::Conflict("another account holds the deleted account's name")
                } else {
                    StoreError::Database(error)
                }
            })?;
            Ok(DeletedAccount {
                id: *user,
                former_name,
                tombstone_name,
                groups_handed_over,
                groups_dissolved,
                friendships_ended,
                messages_erased,
            })
        }
    };
}

pub(crate) use queries;

/// Implements [`AdminStore`] for `$store`, which must have a `reads: Reads`
/// field with a `pool()`, a `write(args, body)` method, and an `admin`
/// module in scope (an expansion of [`queries!`]).
macro_rules! impl_admin {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chat_proto::UserId;

            use $crate::admin::{
                AccountDetails, AccountRecord, AdminStore, DeletedAccount, StoreStats,
            };
            use $crate::error::Result;
            use $crate::repo::GroupRecord;

            #[async_trait]
            impl AdminStore for $store {
                async fn accounts(&self, name_like: Option<&str>) -> Result<Vec<AccountRecord>> {
                    admin::accounts(self.reads.pool(), name_like).await
                }

                async fn account(&self, user: UserId) -> Result<Option<AccountRecord>> {
                    admin::account(self.reads.pool(), user).await
                }

                async fn account_details(&self, user: UserId) -> Result<Option<AccountDetails>> {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |elapsed| elapsed.as_millis() as i64);
                    admin::account_details(self.reads.pool(), user, now_ms).await
                }

                async fn record_login(&self, user: UserId, now_ms: i64) -> Result<()> {
                    self.write((user, now_ms), |conn, args| {
                        Box::pin(admin::record_login(conn, args))
                    })
                    .await
                }

                async fn set_password(&self, user: UserId, password_hash: &str) -> Result<u64> {
                    self.write((user, password_hash.to_owned()), |conn, args| {
                        Box::pin(admin::set_password(conn, args))
                    })
                    .await
                }

                async fn replace_password_hash(
                    &self,
                    user: UserId,
                    old_hash: &str,
                    new_hash: &str,
                ) -> Result<bool> {
                    self.write(
                        (user, old_hash.to_owned(), new_hash.to_owned()),
                        |conn, args| Box::pin(admin::replace_password_hash(conn, args)),
                    )
                    .await
                }

                async fn purge_expired_tokens(&self, now_ms: i64) -> Result<u64> {
                    self.write(now_ms, |conn, args| {
                        Box::pin(admin::purge_expired_tokens(conn, args))
                    })
                    .await
                }

                async fn disable_account(
                    &self,
                    user: UserId,
                    reason: Option<&str>,
                    now_ms: i64,
                ) -> Result<u64> {
                    self.write((user, reason.map(str::to_owned), now_ms), |conn, args| {
                        Box::pin(admin::disable_account(conn, args))
                    })
                    .await
                }

                async fn enable_account(&self, user: UserId) -> Result<bool> {
                    self.write(user, |conn, args| {
                        Box::pin(admin::enable_account(conn, args))
                    })
                    .await
                }

                async fn delete_account(
                    &self,
                    user: UserId,
                    now_ms: i64,
                ) -> Result<DeletedAccount> {
                    self.write((user, now_ms), |conn, args| {
                        Box::pin(admin::delete_account(conn, args))
                    })
                    .await
                }

                async fn all_groups(&self) -> Result<Vec<GroupRecord>> {
                    admin::all_groups(self.reads.pool()).await
                }

                async fn stats(&self) -> Result<StoreStats> {
                    admin::stats(self.reads.pool()).await
                }
            }
        };
    };
}

pub(crate) use impl_admin;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_like_patterns() {
        assert_eq!(like_pattern("ali"), "%ali%");
        assert_eq!(like_pattern("Ali*"), "ali%");
        assert_eq!(like_pattern("b?b"), "b_b");
        assert_eq!(like_pattern("50%_off!"), "%50!%!_off!!%");
    }

    #[test]
    fn deleted_account_names_are_reserved() {
        let name = deleted_account_name(UserId(42));
        assert_eq!(name, "deleted account #42");
        assert!(is_reserved_name(&name));
        assert!(is_reserved_name("Deleted Account"));
        assert!(!is_reserved_name("deleted"));
        assert!(!is_reserved_name("a deleted account"));
        assert!(!is_reserved_name("délété account"));
    }
}
