//! The repository traits for a backend, written once.
//!
//! Both backends implement every trait method the same way: a read goes to
//! the backend's `Reads` (see [`crate::reads`]), within the time bound the
//! backend gave it (MySQL's `timeout`; none on SQLite), a write hands its arguments
//! and the body of its transaction (a function of the backend's `writes`
//! module) to the backend's `write` method, which runs it the way that
//! backend commits (the SQLite group-commit writer, or a MySQL transaction
//! with deadlock retry). This macro writes that mapping once; each backend
//! expands it next to its own `reads`, `writes` and `write`.

/// Implements `UserStore`, `TokenStore`, `FriendStore`, `GroupStore`,
/// `MessageStore` and `ConversationStore` for `$store`, which must have a
/// `reads: Reads` field, a `hot` field (its hot path, with `append`, `queue`
/// and `ack`) and a `write(args, body)` method, with a `writes` module in
/// scope.
macro_rules! impl_repositories {
    ($store:ty) => {
        // An anonymous const gives the imports a scope of their own, so the
        // expansion neither needs nor clashes with the caller's imports.
        const _: () = {
            use async_trait::async_trait;
            use chat_proto::{
                ChatMessage, ConversationId, Cursor, FriendRequestInfo, GroupId, Role, Seq, UserId,
            };

            use $crate::error::Result;
            use $crate::repo::{
                Appended, FriendAddResult, FriendRecord, FriendStore, GroupRecord, GroupStore,
                MemberRecord, MessageStore, NewMessage, OnCommit, PendingAppend, TokenStore,
                UserRecord, UserStore,
            };

            #[async_trait]
            impl UserStore for $store {
                async fn create_user(
                    &self,
                    name: &str,
                    password_hash: &str,
                    now_ms: i64,
                ) -> Result<UserRecord> {
                    let args = (name.to_owned(), password_hash.to_owned(), now_ms);
                    self.write(args, |conn, args| Box::pin(writes::create_user(conn, args)))
                        .await
                }

                async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
                    self.reads.bounded(self.reads.user_by_name(name)).await
                }

                async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
                    self.reads.bounded(self.reads.user_by_id(id)).await
                }
            }

            #[async_trait]
            impl TokenStore for $store {
                async fn create_token(
                    &self,
                    token_hash: &str,
                    user: UserId,
                    expires_at_ms: i64,
                ) -> Result<()> {
                    let args = (token_hash.to_owned(), user, expires_at_ms);
                    self.write(args, |conn, args| {
                        Box::pin(writes::create_token(conn, args))
                    })
                    .await
                }

                async fn user_for_token(
                    &self,
                    token_hash: &str,
                    now_ms: i64,
                ) -> Result<Option<(UserId, i64)>> {
                    self.reads
                        .bounded(self.reads.user_for_token(token_hash, now_ms))
                        .await
                }

                async fn tokens_of(&self, user: UserId, now_ms: i64) -> Result<Vec<(String, i64)>> {
                    self.reads.bounded(self.reads.tokens_of(user, now_ms)).await
                }

                async fn revoke_token(&self, token_hash: &str, now_ms: i64) -> Result<()> {
                    let args = (token_hash.to_owned(), now_ms);
                    self.write(args, |conn, args| {
                        Box::pin(writes::revoke_token(conn, args))
                    })
                    .await
                }
            }

            #[async_trait]
            impl FriendStore for $store {
                async fn add_friend_request(
                    &self,
                    from: UserId,
                    to: UserId,
                    message: Option<&str>,
                    now_ms: i64,
                ) -> Result<FriendAddResult> {
                    let args = (from, to, message.map(str::to_owned), now_ms);
                    self.write(args, |conn, args| {
                        Box::pin(writes::add_friend_request(conn, args))
                    })
                    .await
                }

                async fn respond_friend_request(
                    &self,
                    from: UserId,
                    to: UserId,
                    accept: bool,
                    now_ms: i64,
                ) -> Result<Option<ConversationId>> {
                    self.write((from, to, accept, now_ms), |conn, args| {
                        Box::pin(writes::respond_friend_request(conn, args))
                    })
                    .await
                }

                async fn remove_friend(&self, user: UserId, friend: UserId) -> Result<()> {
                    self.write((user, friend), |conn, args| {
                        Box::pin(writes::remove_friend(conn, args))
                    })
                    .await
                }

                async fn friends_of(&self, user: UserId) -> Result<Vec<FriendRecord>> {
                    self.reads.bounded(self.reads.friends_of(user)).await
                }

                async fn friend(
                    &self,
                    user: UserId,
                    friend: UserId,
                ) -> Result<Option<FriendRecord>> {
                    self.reads.bounded(self.reads.friend(user, friend)).await
                }

                async fn update_friend(
                    &self,
                    user: UserId,
                    friend: UserId,
                    remark: Option<&str>,
                    category: Option<&str>,
                ) -> Result<FriendRecord> {
                    let args = (
                        user,
                        friend,
                        remark.map(str::to_owned),
                        category.map(str::to_owned),
                    );
                    self.write(args, |conn, args| {
                        Box::pin(writes::update_friend(conn, args))
                    })
                    .await
                }

                async fn pending_requests(
                    &self,
                    user: UserId,
                ) -> Result<(Vec<FriendRequestInfo>, Vec<FriendRequestInfo>)> {
                    self.reads.bounded(self.reads.pending_requests(user)).await
                }
            }

            #[async_trait]
            impl GroupStore for $store {
                async fn create_group(
                    &self,
                    owner: UserId,
                    name: &str,
                    description: &str,
                    now_ms: i64,
                ) -> Result<GroupRecord> {
                    let args = (owner, name.to_owned(), description.to_owned(), now_ms);
                    self.write(args, |conn, args| {
                        Box::pin(writes::create_group(conn, args))
                    })
                    .await
                }

                async fn group(&self, group: GroupId) -> Result<Option<GroupRecord>> {
                    self.reads.bounded(self.reads.group(group)).await
                }

                async fn role(&self, group: GroupId, user: UserId) -> Result<Option<Role>> {
                    self.reads.bounded(self.reads.role(group, user)).await
                }

                async fn add_member(
                    &self,
                    group: GroupId,
                    user: UserId,
                    role: Role,
                    now_ms: i64,
                ) -> Result<()> {
                    self.write((group, user, role, now_ms), |conn, args| {
                        Box::pin(writes::add_member(conn, args))
                    })
                    .await
                }

                async fn remove_member(&self, group: GroupId, user: UserId) -> Result<()> {
                    self.write((group, user), |conn, args| {
                        Box::pin(writes::remove_member(conn, args))
                    })
                    .await
                }

                async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> Result<()> {
                    self.write((group, user, role), |conn, args| {
                        Box::pin(writes::set_role(conn, args))
                    })
                    .await
                }

                async fn dissolve_group(&self, group: GroupId) -> Result<Vec<UserId>> {
                    self.write(group, |conn, args| {
                        Box::pin(writes::dissolve_group(conn, args))
                    })
                    .await
                }

                async fn members(&self, group: GroupId) -> Result<Vec<MemberRecord>> {
                    self.reads.bounded(self.reads.members(group)).await
                }

                async fn groups_of(&self, user: UserId) -> Result<Vec<(GroupRecord, Role)>> {
                    self.reads.bounded(self.reads.groups_of(user)).await
                }
            }

            #[async_trait]
            impl MessageStore for $store {
                async fn append_message(&self, message: NewMessage) -> Result<Appended> {
                    self.hot.append(message, None).await
                }

                async fn queue_append(
                    &self,
                    message: NewMessage,
                    on_commit: OnCommit,
                ) -> Result<PendingAppend> {
                    self.hot.queue(message, on_commit).await
                }

                async fn is_conversation_member(
                    &self,
                    conversation: ConversationId,
                    user: UserId,
                ) -> Result<bool> {
                    self.reads
                        .bounded(self.reads.is_conversation_member(conversation, user))
                        .await
                }

                async fn history(
                    &self,
                    conversation: ConversationId,
                    before: Option<Seq>,
                    after: Option<Seq>,
                    limit: u32,
                ) -> Result<Vec<ChatMessage>> {
                    self.reads
                        .bounded(self.reads.history(conversation, before, after, limit))
                        .await
                }

                async fn ack(
                    &self,
                    user: UserId,
                    conversation: ConversationId,
                    seq: Seq,
                ) -> Result<Seq> {
                    self.hot.ack(user, conversation, seq).await
                }

                async fn unacked(
                    &self,
                    user: UserId,
                    start: Option<Cursor>,
                    limit: u32,
                ) -> Result<Vec<ChatMessage>> {
                    self.reads
                        .bounded(self.reads.unacked(user, start, limit))
                        .await
                }

                async fn unacked_count(&self, user: UserId) -> Result<u64> {
                    self.reads.bounded(self.reads.unacked_count(user)).await
                }

                async fn sync(
                    &self,
                    user: UserId,
                    cursors: &[Cursor],
                    limit: u32,
                ) -> Result<Vec<ChatMessage>> {
                    self.reads
                        .bounded(self.reads.sync(user, cursors, limit))
                        .await
                }
            }

            #[async_trait]
            impl $crate::repo::ConversationStore for $store {
                async fn conversations(
                    &self,
                    user: UserId,
                    before: Option<chat_proto::ConversationCursor>,
                    limit: u32,
                ) -> Result<Vec<$crate::repo::ConversationRecord>> {
                    self.reads
                        .bounded(self.reads.conversations(user, before, limit))
                        .await
                }

                async fn unread_counts(
                    &self,
                    user: UserId,
                ) -> Result<Vec<chat_proto::UnreadCount>> {
                    self.reads.bounded(self.reads.unread_counts(user)).await
                }

                async fn mark_read(
                    &self,
                    user: UserId,
                    conversation: ConversationId,
                    seq: Seq,
                ) -> Result<$crate::repo::ReadMark> {
                    self.write((user, conversation, seq), |conn, args| {
                        Box::pin(writes::mark_read(conn, args))
                    })
                    .await
                }

                async fn read_positions(
                    &self,
                    conversation: ConversationId,
                ) -> Result<Vec<chat_proto::ReadPosition>> {
                    self.reads
                        .bounded(self.reads.read_positions(conversation))
                        .await
                }

                async fn participants(
                    &self,
                    conversation: ConversationId,
                ) -> Result<Option<$crate::repo::Participants>> {
                    self.reads
                        .bounded(self.reads.participants(conversation))
                        .await
                }

                async fn senders_between(
                    &self,
                    conversation: ConversationId,
                    after: Seq,
                    upto: Seq,
                    reader: UserId,
                ) -> Result<Vec<UserId>> {
                    self.reads
                        .bounded(
                            self.reads
                                .senders_between(conversation, after, upto, reader),
                        )
                        .await
                }

                async fn recall(
                    &self,
                    recall: $crate::repo::RecallArgs,
                ) -> Result<$crate::repo::Recall> {
                    self.write(recall, |conn, args| Box::pin(writes::recall(conn, args)))
                        .await
                }
            }
        };
    };
}

pub(crate) use impl_repositories;

/// Implements every trait of `Store` for `$store`: the repositories (see
/// [`impl_repositories`]), `AdminStore` and `GroupAccessStore`, and `Store`
/// itself, reporting `$backend` as its name. Besides what those need,
/// `$store` must have a `shut_down` method (the backend's order of closing)
/// and its hot path a `failure` method.
macro_rules! impl_store {
    ($store:ty, backend = $backend:literal) => {
        $crate::dispatch::impl_repositories!($store);
        $crate::admin::impl_admin!($store);
        $crate::group_access::impl_group_access!($store);

        #[async_trait::async_trait]
        impl $crate::repo::Store for $store {
            async fn close(&self) {
                self.shut_down().await;
            }

            fn backend(&self) -> &'static str {
                $backend
            }

            fn failure(&self) -> Option<String> {
                self.hot.failure()
            }
        }
    };
}

pub(crate) use impl_store;
