//! The read queries, written once for both backends.
//!
//! Reads are plain `SELECT`s with the same text on SQLite and MySQL, so they
//! are written once here as a macro that each backend expands over its own
//! pool type. (A generic function over `sqlx::Database` would need a long
//! list of encode and decode bounds repeated at every use; the macro keeps
//! the queries readable.) The writes are written once the same way (see
//! `shared_writes.rs`), with the few clauses that differ passed in.

/// Expands to a `Reads` struct wrapping a `sqlx::Pool<$database>`, with one
/// method per read of the repository traits.
macro_rules! reads {
    ($database:ty) => {
        use std::collections::HashMap;

        use chat_proto::{
            ChatMessage, ConversationId, Cursor, FriendRequestInfo, GroupId, Role, Seq, UserId,
        };

        use crate::error::Result;
        use crate::admin::AccountRecord;
        use crate::repo::{FriendRecord, GroupRecord, LoginView, MemberRecord, UserRecord};
        use crate::rows::{
            from_db, into_messages, limit_to_db, role_from_db, to_db, DbText, FriendRow,
            GroupRoleRow, GroupRow, MemberRow, MembershipRow, MessageRow, RequestRow, UserRow,
            COUNT_UNACKED, SELECT_AFTER, SELECT_AFTER_FROM_OTHERS, SELECT_FRIEND, SELECT_GROUP,
            SELECT_GROUPS_OF, SELECT_MEMBERS, SELECT_MEMBERSHIPS, SELECT_MESSAGE, SELECT_REQUEST,
            SELECT_TOKEN_USER, SELECT_UNACKED, SELECT_USER, TokenUserRow,
        };

        /// The read side of the store: every query that changes nothing.
        #[derive(Debug, Clone)]
        pub(crate) struct Reads {
            pool: sqlx::Pool<$database>,
            /// How long a read may take, if bounded.
            timeout: Option<std::time::Duration>,
        }

        impl Reads {
            /// Reads through `pool`, without a time bound.
            #[allow(dead_code)] // Each backend uses one of the constructors.
            pub(crate) fn new(pool: sqlx::Pool<$database>) -> Reads {
                Reads {
                    pool,
                    timeout: None,
                }
            }

            /// Reads through `pool`; a read that takes longer than `timeout`
            /// (through [`Reads::bounded`]) fails with `TimedOut`.
            #[allow(dead_code)] // Each backend uses one of the constructors.
            pub(crate) fn with_timeout(
                pool: sqlx::Pool<$database>,
                timeout: std::time::Duration,
            ) -> Reads {
                Reads {
                    pool,
                    timeout: Some(timeout),
                }
            }

            /// Runs `read` (one of this struct's reads) within the time bound,
            /// if there is one.
            pub(crate) async fn bounded<T>(
                &self,
                read: impl std::future::Future<Output = Result<T>>,
            ) -> Result<T> {
                match self.timeout {
                    Some(limit) => crate::error::within(limit, read).await,
                    None => read.await,
                }
            }

            /// The pool, for the operators' queries (`crate::admin`).
            pub(crate) fn pool(&self) -> &sqlx::Pool<$database> {
                &self.pool
            }

            /// Closes the pool.
            pub(crate) async fn close(&self) {
                self.pool.close().await;
            }

            // A deleted account's row stays as a tombstone for its messages
            // (see `crate::admin`); to everyone else it is no account.
            pub(crate) async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
                // By exact name first: two accounts whose names clashed
                // before names had keys (see `crate::names`) are both
                // found by their own names.
                let row: Option<UserRow> = sqlx::query_as(&format!(
                    "{SELECT_USER} WHERE (name = ? OR name_key = ?) AND deleted_at_ms IS NULL \
                     ORDER BY name = ? DESC LIMIT 1"
                ))
                .bind(name)
                .bind(crate::names::key(name))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(UserRecord::from))
            }

            pub(crate) async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
                let row: Option<UserRow> = sqlx::query_as(&format!(
                    "{SELECT_USER} WHERE id = ? AND deleted_at_ms IS NULL"
                ))
                .bind(to_db(id.0))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(UserRecord::from))
            }

            pub(crate) async fn user_for_token(
                &self,
                token_hash: &str,
                now_ms: i64,
            ) -> Result<Option<(UserRecord, i64)>> {
                let row: Option<TokenUserRow> = sqlx::query_as(SELECT_TOKEN_USER)
                    .bind(token_hash)
                    .bind(now_ms)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Into::into))
            }

            pub(crate) async fn tokens_of(
                &self,
                user: UserId,
                now_ms: i64,
            ) -> Result<Vec<(String, i64)>> {
                let rows: Vec<(DbText, i64)> = sqlx::query_as(
                    "SELECT token_hash, expires_at_ms FROM tokens \
                     WHERE user_id = ? AND expires_at_ms > ? \
                     ORDER BY expires_at_ms, token_hash",
                )
                .bind(to_db(user.0))
                .bind(now_ms)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(hash, expires_at_ms)| (hash.0, expires_at_ms))
                    .collect())
            }

            pub(crate) async fn friends_of(&self, user: UserId) -> Result<Vec<FriendRecord>> {
                friends_of(&mut *self.pool.acquire().await?, user).await
            }

            pub(crate) async fn friend(
                &self,
                user: UserId,
                friend: UserId,
            ) -> Result<Option<FriendRecord>> {
                let row: Option<FriendRow> = sqlx::query_as(&format!(
                    "{SELECT_FRIEND} WHERE f.user_id = ? AND f.friend_id = ?"
                ))
                .bind(to_db(user.0))
                .bind(to_db(friend.0))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(FriendRecord::from))
            }

            pub(crate) async fn pending_requests(
                &self,
                user: UserId,
            ) -> Result<(Vec<FriendRequestInfo>, Vec<FriendRequestInfo>)> {
                pending_requests(&mut *self.pool.acquire().await?, user).await
            }

            pub(crate) async fn group(&self, group: GroupId) -> Result<Option<GroupRecord>> {
                let row: Option<GroupRow> =
                    sqlx::query_as(&format!("{SELECT_GROUP} WHERE g.id = ?"))
                        .bind(to_db(group.0))
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(GroupRecord::from))
            }

            pub(crate) async fn role(&self, group: GroupId, user: UserId) -> Result<Option<Role>> {
                let role: Option<DbText> = sqlx::query_scalar(
                    "SELECT role FROM group_members WHERE group_id = ? AND user_id = ?",
                )
                .bind(to_db(group.0))
                .bind(to_db(user.0))
                .fetch_optional(&self.pool)
                .await?;
                role.map(|role| role_from_db(&role.0)).transpose()
            }

            pub(crate) async fn members(&self, group: GroupId) -> Result<Vec<MemberRecord>> {
                let rows: Vec<MemberRow> = sqlx::query_as(SELECT_MEMBERS)
                    .bind(to_db(group.0))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(MemberRow::into_record).collect()
            }

            pub(crate) async fn groups_of(&self, user: UserId) -> Result<Vec<(GroupRecord, Role)>> {
                groups_of(&mut *self.pool.acquire().await?, user).await
            }

            pub(crate) async fn is_conversation_member(
                &self,
                conversation: ConversationId,
                user: UserId,
            ) -> Result<bool> {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
                )
                .bind(to_db(conversation.0))
                .bind(to_db(user.0))
                .fetch_optional(&self.pool)
                .await?;
                Ok(found.is_some())
            }

            pub(crate) async fn history(
                &self,
                conversation: ConversationId,
                before: Option<Seq>,
                after: Option<Seq>,
                limit: u32,
            ) -> Result<Vec<ChatMessage>> {
                // `before` bounds the page on both paths, so a client can ask
                // for a window between two positions.
                let before = before.map_or(i64::MAX, |seq| to_db(seq.0));
                if let Some(after) = after {
                    let rows: Vec<MessageRow> = sqlx::query_as(&format!(
                        "{SELECT_MESSAGE} WHERE m.conversation_id = ? AND m.seq > ? \
                         AND m.seq < ? ORDER BY m.seq LIMIT ?"
                    ))
                    .bind(to_db(conversation.0))
                    .bind(to_db(after.0))
                    .bind(before)
                    .bind(limit_to_db(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    into_messages(rows)
                } else {
                    let mut rows: Vec<MessageRow> = sqlx::query_as(&format!(
                        "{SELECT_MESSAGE} WHERE m.conversation_id = ? AND m.seq < ? \
                         ORDER BY m.seq DESC LIMIT ?"
                    ))
                    .bind(to_db(conversation.0))
                    .bind(before)
                    .bind(limit_to_db(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.reverse();
                    into_messages(rows)
                }
            }

            pub(crate) async fn unacked(
                &self,
                user: UserId,
                start: Option<Cursor>,
                limit: u32,
            ) -> Result<Vec<ChatMessage>> {
                // Without a start, (0, 0) is before every stored message.
                let (start_conversation, start_seq) = start.map_or((0, 0), |cursor| {
                    (to_db(cursor.conversation_id.0), to_db(cursor.seq.0))
                });
                let rows: Vec<MessageRow> = sqlx::query_as(SELECT_UNACKED)
                    .bind(to_db(user.0))
                    .bind(to_db(user.0))
                    .bind(start_conversation)
                    .bind(start_conversation)
                    .bind(start_seq)
                    .bind(limit_to_db(limit))
                    .fetch_all(&self.pool)
                    .await?;
                into_messages(rows)
            }

            pub(crate) async fn unacked_count(&self, user: UserId) -> Result<u64> {
                unacked_count(&mut *self.pool.acquire().await?, user).await
            }

            pub(crate) async fn sync(
                &self,
                user: UserId,
                cursors: &[Cursor],
                limit: u32,
            ) -> Result<Vec<ChatMessage>> {
                let memberships: Vec<MembershipRow> = sqlx::query_as(SELECT_MEMBERSHIPS)
                    .bind(to_db(user.0))
                    .fetch_all(&self.pool)
                    .await?;
                // Cursors for conversations the user is not in are ignored:
                // the walk below covers only memberships.
                let seen: HashMap<i64, i64> = cursors
                    .iter()
                    .map(|cursor| (to_db(cursor.conversation_id.0), to_db(cursor.seq.0)))
                    .collect();
                let mut messages = Vec::new();
                let mut remaining = limit_to_db(limit);
                for membership in memberships {
                    if remaining <= 0 {
                        break;
                    }
                    let rows: Vec<MessageRow> = match seen.get(&membership.conversation_id) {
                        Some(&seq) if seq < membership.last_seq => {
                            sqlx::query_as(SELECT_AFTER)
                                .bind(membership.conversation_id)
                                .bind(seq)
                                .bind(remaining)
                                .fetch_all(&self.pool)
                                .await?
                        }
                        None if membership.acked_seq < membership.last_seq => {
                            sqlx::query_as(SELECT_AFTER_FROM_OTHERS)
                                .bind(membership.conversation_id)
                                .bind(membership.acked_seq)
                                .bind(to_db(user.0))
                                .bind(remaining)
                                .fetch_all(&self.pool)
                                .await?
                        }
                        // Nothing past the position this conversation starts from.
                        _ => continue,
                    };
                    remaining -= i64::try_from(rows.len()).unwrap_or(i64::MAX);
                    messages.extend(into_messages(rows)?);
                }
                Ok(messages)
            }

            pub(crate) async fn conversations(
                &self,
                user: UserId,
                before: Option<chat_proto::ConversationCursor>,
                limit: u32,
            ) -> Result<Vec<crate::repo::ConversationRecord>> {
                let (activity, id) = before.map_or((i64::MAX, i64::MAX), |cursor| {
                    (cursor.last_activity_ms, to_db(cursor.conversation_id.0))
                });
                let rows: Vec<crate::rows::ConversationRow> =
                    sqlx::query_as(crate::rows::SELECT_CONVERSATIONS)
                        .bind(to_db(user.0))
                        .bind(activity)
                        .bind(activity)
                        .bind(id)
                        .bind(limit_to_db(limit))
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter()
                    .map(crate::rows::ConversationRow::into_record)
                    .collect()
            }

            /// Everything a login answers with about the user's world, read
            /// on one connection. Each statement through the pool checks a
            /// connection out and back in, which on SQLite is a round trip
            /// to the connection's thread each way; a login makes seven.
            #[allow(dead_code)] // SQLite reads a login on a thread of its own.
            pub(crate) async fn login_view(&self, user: UserId) -> Result<LoginView> {
                let mut conn = self.pool.acquire().await?;
                let account = super::admin::account(&mut *conn, user).await?;
                if account.as_ref().is_none_or(AccountRecord::is_disabled) {
                    return Ok(LoginView {
                        account,
                        ..LoginView::default()
                    });
                }
                let friends = friends_of(&mut conn, user).await?;
                let groups = groups_of(&mut conn, user).await?;
                let (incoming_requests, outgoing_requests) =
                    pending_requests(&mut conn, user).await?;
                let unacked = unacked_count(&mut conn, user).await?;
                let unread = unread_counts(&mut conn, user).await?;
                Ok(LoginView {
                    account,
                    friends,
                    groups,
                    incoming_requests,
                    outgoing_requests,
                    unacked,
                    unread,
                })
            }

            pub(crate) async fn unread_counts(
                &self,
                user: UserId,
            ) -> Result<Vec<chat_proto::UnreadCount>> {
                unread_counts(&mut *self.pool.acquire().await?, user).await
            }

            pub(crate) async fn read_positions(
                &self,
                conversation: ConversationId,
            ) -> Result<Vec<chat_proto::ReadPosition>> {
                let rows: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT user_id, read_seq FROM conversation_members                      WHERE conversation_id = ? ORDER BY user_id",
                )
                .bind(to_db(conversation.0))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(user, read)| chat_proto::ReadPosition {
                        user_id: UserId(from_db(user)),
                        read_seq: Seq(from_db(read)),
                    })
                    .collect())
            }

            pub(crate) async fn participants(
                &self,
                conversation: ConversationId,
            ) -> Result<Option<crate::repo::Participants>> {
                let kind: Option<DbText> =
                    sqlx::query_scalar("SELECT kind FROM conversations WHERE id = ?")
                        .bind(to_db(conversation.0))
                        .fetch_optional(&self.pool)
                        .await?;
                let Some(kind) = kind else {
                    return Ok(None);
                };
                let kind = if kind.0 == "group" {
                    chat_proto::ConversationKind::Group
                } else {
                    chat_proto::ConversationKind::Direct
                };
                let members: Vec<i64> = sqlx::query_scalar(
                    "SELECT user_id FROM conversation_members WHERE conversation_id = ?                      ORDER BY user_id",
                )
                .bind(to_db(conversation.0))
                .fetch_all(&self.pool)
                .await?;
                Ok(Some(crate::repo::Participants {
                    kind,
                    members: crate::rows::into_user_ids(members),
                }))
            }

            pub(crate) async fn senders_between(
                &self,
                conversation: ConversationId,
                after: Seq,
                upto: Seq,
                reader: UserId,
            ) -> Result<Vec<UserId>> {
                let upto = to_db(upto.0);
                let after = to_db(after.0).max(upto.saturating_sub(1000));
                let senders: Vec<i64> = sqlx::query_scalar(
                    "SELECT DISTINCT sender_id FROM messages                      WHERE conversation_id = ? AND seq > ? AND seq <= ? AND sender_id <> ?                      ORDER BY sender_id",
                )
                .bind(to_db(conversation.0))
                .bind(after)
                .bind(upto)
                .bind(to_db(reader.0))
                .fetch_all(&self.pool)
                .await?;
                Ok(crate::rows::into_user_ids(senders))
            }
        }

        /// A connection of the pool.
        type Conn = <$database as sqlx::Database>::Connection;

        async fn friends_of(conn: &mut Conn, user: UserId) -> Result<Vec<FriendRecord>> {
            let rows: Vec<FriendRow> = sqlx::query_as(&format!(
                "{SELECT_FRIEND} WHERE f.user_id = ? ORDER BY u.name, u.id"
            ))
            .bind(to_db(user.0))
            .fetch_all(&mut *conn)
            .await?;
            Ok(rows.into_iter().map(FriendRecord::from).collect())
        }

        async fn pending_requests(
            conn: &mut Conn,
            user: UserId,
        ) -> Result<(Vec<FriendRequestInfo>, Vec<FriendRequestInfo>)> {
            let incoming: Vec<RequestRow> = sqlx::query_as(&format!(
                "{SELECT_REQUEST} WHERE r.to_id = ? ORDER BY r.created_at_ms, r.from_id"
            ))
            .bind(to_db(user.0))
            .fetch_all(&mut *conn)
            .await?;
            let outgoing: Vec<RequestRow> = sqlx::query_as(&format!(
                "{SELECT_REQUEST} WHERE r.from_id = ? ORDER BY r.created_at_ms, r.to_id"
            ))
            .bind(to_db(user.0))
            .fetch_all(&mut *conn)
            .await?;
            Ok((
                incoming.into_iter().map(FriendRequestInfo::from).collect(),
                outgoing.into_iter().map(FriendRequestInfo::from).collect(),
            ))
        }

        async fn groups_of(conn: &mut Conn, user: UserId) -> Result<Vec<(GroupRecord, Role)>> {
            let rows: Vec<GroupRoleRow> = sqlx::query_as(SELECT_GROUPS_OF)
                .bind(to_db(user.0))
                .fetch_all(&mut *conn)
                .await?;
            rows.into_iter().map(GroupRoleRow::into_record).collect()
        }

        async fn unacked_count(conn: &mut Conn, user: UserId) -> Result<u64> {
            let count: i64 = sqlx::query_scalar(COUNT_UNACKED)
                .bind(to_db(user.0))
                .bind(to_db(user.0))
                .fetch_one(&mut *conn)
                .await?;
            Ok(from_db(count))
        }

        async fn unread_counts(
            conn: &mut Conn,
            user: UserId,
        ) -> Result<Vec<chat_proto::UnreadCount>> {
            let rows: Vec<(i64, i64, i64)> = sqlx::query_as(crate::rows::SELECT_UNREAD)
                .bind(to_db(user.0))
                .fetch_all(&mut *conn)
                .await?;
            Ok(rows.into_iter().map(crate::rows::unread_count).collect())
        }
    };
}

pub(crate) use reads;
