//! The repository traits for a backend, written once.
//!
//! Both backends implement every trait method the same way: a read goes to
//! the backend's `Reads` (see [`crate::reads`]), within the time bound the
//! backend gave it (MySQL's `timeout`; none on SQLite), a write hands its arguments
//! and the body of its transaction (a function of the backend's `writes`
//! module) to the backend's `write` method, which runs it the way that
//! backend commits (the SQLite group-commit writer, or a MySQL transaction
//! with deadlock retry). These macros write that mapping once; each backend
//! expands [`impl_store`] next to its own `reads`, `writes` and `write`.
//! [`delegate`] writes the methods that are one transaction each from a
//! table: the method's parameters and the arguments value they make.

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
                ChatMessage, ConversationCursor, ConversationId, Cursor, FriendRequestInfo,
                GroupId, ReadPosition, Role, Seq, UnreadCount, UserId,
            };

            use $crate::error::Result;
            use $crate::repo::{
                ConversationRecord, ConversationStore, FriendAddResult, FriendRecord, FriendStore,
                GroupRecord, GroupStore, LoginView, MemberRecord, MessageStore, NewMessage,
                OnCommit, Participants, PendingAppend, ReadMark, Recall, RecallArgs, TokenStore,
                UserRecord, UserStore,
            };
            use $crate::rows::args;

            $crate::dispatch::delegate! {
                impl UserStore for $store, bodies in writes {
                    writes {
                        fn create_user(name: &str, password_hash: &str, now_ms: i64) -> UserRecord
                            = args::NewUser {
                                name: name.to_owned(),
                                password_hash: password_hash.to_owned(),
                                now_ms,
                            };
                    }

                    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
                        self.reads.bounded(self.reads.user_by_name(name)).await
                    }

                    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
                        self.reads.bounded(self.reads.user_by_id(id)).await
                    }

                    async fn login_view(&self, user: UserId) -> Result<LoginView> {
                        self.read_login_view(user).await
                    }
                }
            }

            $crate::dispatch::delegate! {
                impl TokenStore for $store, bodies in writes {
                    writes {
                        fn create_token(token_hash: &str, user: UserId, expires_at_ms: i64) -> ()
                            = args::NewToken {
                                token_hash: token_hash.to_owned(),
                                user,
                                expires_at_ms,
                            };
                        fn revoke_token(token_hash: &str, now_ms: i64) -> ()
                            = args::RevokeToken { token_hash: token_hash.to_owned(), now_ms };
                    }

                    async fn user_for_token(
                        &self,
                        token_hash: &str,
                        now_ms: i64,
                    ) -> Result<Option<(UserRecord, i64)>> {
                        self.reads
                            .bounded(self.reads.user_for_token(token_hash, now_ms))
                            .await
                    }

                    async fn tokens_of(
                        &self,
                        user: UserId,
                        now_ms: i64,
                    ) -> Result<Vec<(String, i64)>> {
                        self.reads.bounded(self.reads.tokens_of(user, now_ms)).await
                    }
                }
            }

            $crate::dispatch::delegate! {
                impl FriendStore for $store, bodies in writes {
                    writes {
                        fn add_friend_request(
                            from: UserId,
                            to: UserId,
                            message: Option<&str>,
                            now_ms: i64,
                        ) -> FriendAddResult = args::FriendRequest {
                            from,
                            to,
                            message: message.map(str::to_owned),
                            now_ms,
                        };
                        fn respond_friend_request(
                            from: UserId,
                            to: UserId,
                            accept: bool,
                            now_ms: i64,
                        ) -> Option<ConversationId>
                            = args::FriendResponse { from, to, accept, now_ms };
                        fn remove_friend(user: UserId, friend: UserId) -> ()
                            = args::FriendPair { user, friend };
                        fn update_friend(
                            user: UserId,
                            friend: UserId,
                            remark: Option<&str>,
                            category: Option<&str>,
                        ) -> FriendRecord = args::FriendUpdate {
                            user,
                            friend,
                            remark: remark.map(str::to_owned),
                            category: category.map(str::to_owned),
                        };
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

                    async fn pending_requests(
                        &self,
                        user: UserId,
                    ) -> Result<(Vec<FriendRequestInfo>, Vec<FriendRequestInfo>)> {
                        self.reads.bounded(self.reads.pending_requests(user)).await
                    }
                }
            }

            $crate::dispatch::delegate! {
                impl GroupStore for $store, bodies in writes {
                    writes {
                        fn create_group(owner: UserId, name: &str, description: &str, now_ms: i64)
                            -> GroupRecord
                            = args::NewGroup {
                                owner,
                                name: name.to_owned(),
                                description: description.to_owned(),
                                now_ms,
                            };
                        fn add_member(group: GroupId, user: UserId, role: Role, now_ms: i64) -> ()
                            = args::NewMember { group, user, role, now_ms };
                        fn remove_member(group: GroupId, user: UserId) -> ()
                            = args::GroupUser { group, user };
                        fn set_role(group: GroupId, user: UserId, role: Role) -> ()
                            = args::NewRole { group, user, role };
                        fn dissolve_group(group: GroupId) -> Vec<UserId> = group;
                    }

                    async fn group(&self, group: GroupId) -> Result<Option<GroupRecord>> {
                        self.reads.bounded(self.reads.group(group)).await
                    }

                    async fn role(&self, group: GroupId, user: UserId) -> Result<Option<Role>> {
                        self.reads.bounded(self.reads.role(group, user)).await
                    }

                    async fn members(&self, group: GroupId) -> Result<Vec<MemberRecord>> {
                        self.reads.bounded(self.reads.members(group)).await
                    }

                    async fn groups_of(&self, user: UserId) -> Result<Vec<(GroupRecord, Role)>> {
                        self.reads.bounded(self.reads.groups_of(user)).await
                    }
                }
            }

            #[async_trait]
            impl MessageStore for $store {
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

            $crate::dispatch::delegate! {
                impl ConversationStore for $store, bodies in writes {
                    writes {
                        fn mark_read(user: UserId, conversation: ConversationId, seq: Seq)
                            -> ReadMark = args::Read { user, conversation, seq };
                        fn recall(recall: RecallArgs) -> Recall = recall;
                    }

                    async fn conversations(
                        &self,
                        user: UserId,
                        before: Option<ConversationCursor>,
                        limit: u32,
                    ) -> Result<Vec<ConversationRecord>> {
                        self.reads
                            .bounded(self.reads.conversations(user, before, limit))
                            .await
                    }

                    async fn unread_counts(&self, user: UserId) -> Result<Vec<UnreadCount>> {
                        self.reads.bounded(self.reads.unread_counts(user)).await
                    }

                    async fn read_positions(
                        &self,
                        conversation: ConversationId,
                    ) -> Result<Vec<ReadPosition>> {
                        self.reads
                            .bounded(self.reads.read_positions(conversation))
                            .await
                    }

                    async fn participants(
                        &self,
                        conversation: ConversationId,
                    ) -> Result<Option<Participants>> {
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

/// Implements `$trait` for `$store`. Each method under `writes` is one
/// transaction: it gathers its parameters into the arguments value after
/// its `=` and hands that, with the body of the same name in module
/// `$bodies`, to the store's `write`. The methods after `writes` (the
/// reads) are written out as they are.
macro_rules! delegate {
    (
        impl $trait:ident for $store:ty, bodies in $bodies:ident {
            writes {
                $(
                    fn $method:ident($($param:ident: $type:ty),* $(,)?) -> $output:ty = $args:expr;
                )*
            }
            $($reads:tt)*
        }
    ) => {
        #[async_trait::async_trait]
        impl $trait for $store {
            $(
                async fn $method(&self, $($param: $type),*) -> $crate::error::Result<$output> {
                    self.write($args, |conn, args| Box::pin($bodies::$method(conn, args)))
                        .await
                }
            )*
            $($reads)*
        }
    };
}

pub(crate) use delegate;
