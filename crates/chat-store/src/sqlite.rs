//! The SQLite backend: the embedded default.
//!
//! The database runs in WAL mode with `synchronous=FULL`, so a commit is on
//! disk when it returns. Reads go through a pool of read-only connections;
//! every write goes through the one writer task (see [`writer`]), which owns
//! the only read-write connection and commits writes in batches.

mod writer;
mod writes;

mod reads {
    crate::reads::reads!(sqlx::Sqlite);
}

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chat_proto::{
    ChatMessage, ConversationId, Cursor, FriendRequestInfo, GroupId, Role, Seq, UserId,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Result, StoreError};
use crate::repo::{
    Appended, FriendAddResult, FriendRecord, FriendStore, GroupRecord, GroupStore, MemberRecord,
    MessageStore, NewMessage, Store, TokenStore, UserRecord, UserStore,
};
use reads::Reads;
use writer::Writer;

/// How long a connection waits for a lock held by another process before it
/// gives up (within this process the writer is alone, so only an outside
/// tool holding the database can make it wait).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read connections. Reads in WAL mode do not block the writer or each
/// other; a few are enough for a machine with few cores.
const READERS: u32 = 4;

/// A store in one SQLite database file.
#[derive(Debug)]
pub struct SqliteStore {
    reads: Reads,
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if missing) the database named by `url` and brings its
    /// schema up to date.
    ///
    /// `url` is `sqlite://PATH` (a relative `PATH` is relative to the
    /// working directory; `sqlite:///abs/path` for an absolute one) or
    /// `sqlite::memory:` for a throw-away database that lives as long as the
    /// store. Must be called inside a Tokio runtime: it starts the writer
    /// task.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a malformed URL, a database error if the
    /// file cannot be opened or is not a database, a migration error if the
    /// schema cannot be applied (for example, a newer schema than this code).
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| StoreError::Config(format!("bad SQLite URL {url:?}: {error}")))?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writer_options = if in_memory {
            options.clone()
        } else {
            options
                .clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
        };
        // One connection that never expires: the only writer, and for an
        // in-memory database the database itself (it disappears with its
        // last connection).
        let writer_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(writer_options)
            .await?;
        if let Err(error) = sqlx::migrate!("./migrations/sqlite")
            .run(&writer_pool)
            .await
        {
            writer_pool.close().await;
            return Err(error.into());
        }
        let read_pool = if in_memory {
            // Another connection would open another, empty database; reads
            // share the writer's connection between batches.
            writer_pool.clone()
        } else {
            let reader_options = options.read_only(true);
            match SqlitePoolOptions::new()
                .max_connections(READERS)
                .connect_with(reader_options)
                .await
            {
                Ok(pool) => pool,
                Err(error) => {
                    writer_pool.close().await;
                    return Err(error.into());
                }
            }
        };
        Ok(SqliteStore {
            reads: Reads::new(read_pool),
            writer: Writer::start(writer_pool),
        })
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<UserRecord> {
        let args = (name.to_owned(), password_hash.to_owned(), now_ms);
        self.writer
            .write(args, |conn, args| Box::pin(writes::create_user(conn, args)))
            .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        self.reads.user_by_name(name).await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        self.reads.user_by_id(id).await
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_token(&self, token_hash: &str, user: UserId, expires_at_ms: i64) -> Result<()> {
        let args = (token_hash.to_owned(), user, expires_at_ms);
        self.writer
            .write(args, |conn, args| {
                Box::pin(writes::create_token(conn, args))
            })
            .await
    }

    async fn user_for_token(&self, token_hash: &str, now_ms: i64) -> Result<Option<(UserId, i64)>> {
        self.reads.user_for_token(token_hash, now_ms).await
    }

    async fn revoke_token(&self, token_hash: &str, now_ms: i64) -> Result<()> {
        let args = (token_hash.to_owned(), now_ms);
        self.writer
            .write(args, |conn, args| {
                Box::pin(writes::revoke_token(conn, args))
            })
            .await
    }
}

#[async_trait]
impl FriendStore for SqliteStore {
    async fn add_friend_request(
        &self,
        from: UserId,
        to: UserId,
        message: Option<&str>,
        now_ms: i64,
    ) -> Result<FriendAddResult> {
        let args = (from, to, message.map(str::to_owned), now_ms);
        self.writer
            .write(args, |conn, args| {
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
        self.writer
            .write((from, to, accept, now_ms), |conn, args| {
                Box::pin(writes::respond_friend_request(conn, args))
            })
            .await
    }

    async fn remove_friend(&self, user: UserId, friend: UserId) -> Result<()> {
        self.writer
            .write((user, friend), |conn, args| {
                Box::pin(writes::remove_friend(conn, args))
            })
            .await
    }

    async fn friends_of(&self, user: UserId) -> Result<Vec<FriendRecord>> {
        self.reads.friends_of(user).await
    }

    async fn friend(&self, user: UserId, friend: UserId) -> Result<Option<FriendRecord>> {
        self.reads.friend(user, friend).await
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
        self.writer
            .write(args, |conn, args| {
                Box::pin(writes::update_friend(conn, args))
            })
            .await
    }

    async fn pending_requests(
        &self,
        user: UserId,
    ) -> Result<(Vec<FriendRequestInfo>, Vec<FriendRequestInfo>)> {
        self.reads.pending_requests(user).await
    }
}

#[async_trait]
impl GroupStore for SqliteStore {
    async fn create_group(
        &self,
        owner: UserId,
        name: &str,
        description: &str,
        now_ms: i64,
    ) -> Result<GroupRecord> {
        let args = (owner, name.to_owned(), description.to_owned(), now_ms);
        self.writer
            .write(args, |conn, args| {
                Box::pin(writes::create_group(conn, args))
            })
            .await
    }

    async fn group(&self, group: GroupId) -> Result<Option<GroupRecord>> {
        self.reads.group(group).await
    }

    async fn role(&self, group: GroupId, user: UserId) -> Result<Option<Role>> {
        self.reads.role(group, user).await
    }

    async fn add_member(
        &self,
        group: GroupId,
        user: UserId,
        role: Role,
        now_ms: i64,
    ) -> Result<()> {
        self.writer
            .write((group, user, role, now_ms), |conn, args| {
                Box::pin(writes::add_member(conn, args))
            })
            .await
    }

    async fn remove_member(&self, group: GroupId, user: UserId) -> Result<()> {
        self.writer
            .write((group, user), |conn, args| {
                Box::pin(writes::remove_member(conn, args))
            })
            .await
    }

    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> Result<()> {
        self.writer
            .write((group, user, role), |conn, args| {
                Box::pin(writes::set_role(conn, args))
            })
            .await
    }

    async fn dissolve_group(&self, group: GroupId) -> Result<Vec<UserId>> {
        self.writer
            .write(group, |conn, args| {
                Box::pin(writes::dissolve_group(conn, args))
            })
            .await
    }

    async fn members(&self, group: GroupId) -> Result<Vec<MemberRecord>> {
        self.reads.members(group).await
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<(GroupRecord, Role)>> {
        self.reads.groups_of(user).await
    }
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append_message(&self, message: NewMessage) -> Result<Appended> {
        self.writer
            .write(message, |conn, message| {
                Box::pin(writes::append_message(conn, message))
            })
            .await
    }

    async fn is_conversation_member(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<bool> {
        self.reads.is_conversation_member(conversation, user).await
    }

    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<Seq>,
        after: Option<Seq>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>> {
        self.reads.history(conversation, before, after, limit).await
    }

    async fn ack(&self, user: UserId, conversation: ConversationId, seq: Seq) -> Result<Seq> {
        self.writer
            .write((user, conversation, seq), |conn, args| {
                Box::pin(writes::ack(conn, args))
            })
            .await
    }

    async fn unacked(
        &self,
        user: UserId,
        start: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ChatMessage>> {
        self.reads.unacked(user, start, limit).await
    }

    async fn unacked_count(&self, user: UserId) -> Result<u64> {
        self.reads.unacked_count(user).await
    }

    async fn sync(&self, user: UserId, cursors: &[Cursor], limit: u32) -> Result<Vec<ChatMessage>> {
        self.reads.sync(user, cursors, limit).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn close(&self) {
        // The writer first, so every queued write commits before the
        // connections go.
        self.writer.close().await;
        self.reads.close().await;
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
