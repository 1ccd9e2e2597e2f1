//! The writes of read positions and recalls, written once for both
//! backends.
//!
//! Their statements are the same on SQLite and MySQL but for the row lock
//! MySQL needs (`FOR UPDATE`; SQLite's writer is alone), so, as with the
//! reads (see [`crate::reads`]), they are a macro each backend's `writes`
//! module expands over its own connection type.

/// Expands to `mark_read` and `recall` transaction bodies over `$conn`
/// (`sqlx::sqlite::SqliteConnection` or `sqlx::mysql::MySqlConnection`),
/// with `$lock` appended to the reads that must hold their row until commit.
macro_rules! writes {
    ($conn:ty, lock = $lock:literal) => {
        /// Moves a read position forward (and the acknowledged position with
        /// it); see [`crate::ConversationStore::mark_read`].
        pub(super) async fn mark_read(
            conn: &mut $conn,
            crate::rows::args::Read {
                user,
                conversation,
                seq,
            }: &crate::rows::args::Read,
        ) -> crate::error::Result<crate::repo::ReadMark> {
            use crate::rows::{from_db, to_db};
            let (conversation, user) = (to_db(conversation.0), to_db(user.0));
            let position: Option<i64> = sqlx::query_scalar(concat!(
                "SELECT read_seq FROM conversation_members \
                 WHERE conversation_id = ? AND user_id = ? ",
                $lock
            ))
            .bind(conversation)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(previous) = position else {
                return Err(crate::StoreError::Forbidden(
                    "not a member of the conversation",
                ));
            };
            // The end only grows; read without a lock (appends hold it), a
            // stale end only clamps lower.
            let end: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = ?")
                .bind(conversation)
                .fetch_one(&mut *conn)
                .await?;
            let target = to_db(seq.0).min(end);
            let read = previous.max(target);
            if read > previous {
                sqlx::query(
                    "UPDATE conversation_members SET read_seq = ?, \
                     acked_seq = CASE WHEN acked_seq < ? THEN ? ELSE acked_seq END \
                     WHERE conversation_id = ? AND user_id = ?",
                )
                .bind(read)
                .bind(read)
                .bind(read)
                .bind(conversation)
                .bind(user)
                .execute(&mut *conn)
                .await?;
            }
            Ok(crate::repo::ReadMark {
                previous: chat_proto::Seq(from_db(previous)),
                read_seq: chat_proto::Seq(from_db(read)),
            })
        }

        /// Turns a message into a tombstone; see
        /// [`crate::ConversationStore::recall`].
        pub(super) async fn recall(
            conn: &mut $conn,
            args: &crate::repo::RecallArgs,
        ) -> crate::error::Result<crate::repo::Recall> {
            use crate::rows::{from_db, into_user_ids, role_from_db, to_db, DbText, MessageRow};
            let conversation = to_db(args.conversation.0);
            let actor = to_db(args.actor.0);
            let members: Vec<i64> = sqlx::query_scalar(
                "SELECT user_id FROM conversation_members WHERE conversation_id = ? \
                 ORDER BY user_id",
            )
            .bind(conversation)
            .fetch_all(&mut *conn)
            .await?;
            if !members.contains(&actor) {
                return Err(crate::StoreError::Forbidden(
                    "not a member of the conversation",
                ));
            }
            // Lock the message row alone (a lock taken through the join
            // would also hold the sender's account row, which every append
            // of that sender checks).
            let found: Option<i64> = sqlx::query_scalar(concat!(
                "SELECT seq FROM messages WHERE conversation_id = ? AND seq = ? ",
                $lock
            ))
            .bind(conversation)
            .bind(to_db(args.seq.0))
            .fetch_optional(&mut *conn)
            .await?;
            if found.is_none() {
                return Err(crate::StoreError::NotFound("message"));
            }
            let row: Option<MessageRow> = sqlx::query_as(&format!(
                "{} WHERE m.conversation_id = ? AND m.seq = ?",
                crate::rows::SELECT_MESSAGE
            ))
            .bind(conversation)
            .bind(to_db(args.seq.0))
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else {
                return Err(crate::StoreError::NotFound("message"));
            };
            let mut message = row.into_message()?;
            let members = into_user_ids(members);
            if message.recalled.is_some() {
                return Ok(crate::repo::Recall {
                    message,
                    changed: false,
                    members,
                });
            }
            // A group's owner and admins may remove any message of it.
            let role: Option<DbText> = sqlx::query_scalar(
                "SELECT gm.role FROM chat_groups g \
                 JOIN group_members gm ON gm.group_id = g.id \
                 WHERE g.conversation_id = ? AND gm.user_id = ?",
            )
            .bind(conversation)
            .bind(actor)
            .fetch_optional(&mut *conn)
            .await?;
            let moderator = match role {
                Some(role) => role_from_db(&role.0)? != chat_proto::Role::Member,
                None => false,
            };
            if !moderator {
                if message.sender_id != args.actor {
                    return Err(crate::StoreError::Forbidden(
                        "only its sender, or a group's owner or admins, may recall a message",
                    ));
                }
                if args.now_ms - message.server_ts_ms > args.window_ms {
                    return Err(crate::StoreError::Forbidden(
                        "the time to recall this message has passed",
                    ));
                }
            }
            sqlx::query(
                "UPDATE messages SET body = '', recalled_by = ?, recalled_at_ms = ? \
                 WHERE conversation_id = ? AND seq = ?",
            )
            .bind(actor)
            .bind(args.now_ms)
            .bind(conversation)
            .bind(to_db(args.seq.0))
            .execute(&mut *conn)
            .await?;
            message.body.clear();
            message.recalled = Some(chat_proto::Recalled {
                by: chat_proto::UserId(from_db(actor)),
                at_ms: args.now_ms,
            });
            Ok(crate::repo::Recall {
                message,
                changed: true,
                members,
            })
        }
    };
}

pub(crate) use writes;
