//! The MySQL / MariaDB backend, for several nodes sharing one database.
//!
//! Every connection runs at READ COMMITTED: each statement sees what other
//! nodes have committed, and the few places that must stay consistent until
//! commit take row locks explicitly (see `writes.rs`). InnoDB resolves a
//! deadlock by rolling one transaction back; that transaction is simply run
//! again, a few times at most.

mod writes;

mod reads {
    crate::reads::reads!(sqlx::MySql);
}

mod admin {
    crate::admin::queries!(
        sqlx::MySql,
        sqlx::mysql::MySqlConnection,
        erased_id = "CONCAT('erased:', conversation_id, ':', seq)",
        lock = " FOR UPDATE",
        size = "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) \
                FROM information_schema.tables WHERE table_schema = DATABASE()"
    );
}

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::{Executor as _, MySqlPool};

use crate::error::{Result, StoreError};
use chat_proto::{ConversationId, Seq, UserId};

use crate::repo::{Appended, NewMessage, OnCommit, PendingAppend, Store};
use crate::rows::BoxFuture;
use reads::Reads;

/// Connections per store (per node). Enough to keep a node's appends to
/// different conversations from queueing behind each other.
const MAX_CONNECTIONS: u32 = 16;

/// How often a transaction is tried when InnoDB keeps choosing it as a
/// deadlock victim.
const MAX_ATTEMPTS: u32 = 5;

/// MySQL's error number for "Deadlock found when trying to get lock".
const ER_LOCK_DEADLOCK: u16 = 1213;

/// The body of a write transaction: runs inside an open transaction with its
/// arguments; a plain function pointer, so it can be run again on retry.
type TransactionBody<A, T> = for<'c> fn(&'c mut MySqlConnection, &'c A) -> BoxFuture<'c, Result<T>>;

/// A store in a MySQL or MariaDB database, safe to share with other nodes
/// (other `MysqlStore`s on the same database).
#[derive(Debug)]
pub struct MysqlStore {
    pool: MySqlPool,
    reads: Reads,
}

impl MysqlStore {
    /// Connects to the database named by `url` and brings its schema up to
    /// date.
    ///
    /// `url` is `mysql://USER:PASSWORD@HOST:PORT/DATABASE` (`mariadb://` is
    /// accepted as a synonym). The database must exist; it should have the
    /// default character set utf8mb4, although every table names its own.
    /// Several nodes may open one database at once: migrations take a lock.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a malformed URL or one without a database;
    /// a database error if the server cannot be reached or refuses the login;
    /// a migration error if the schema cannot be applied.
    pub async fn open(url: &str) -> Result<Self> {
        let url = match url.strip_prefix("mariadb:") {
            Some(rest) => format!("mysql:{rest}"),
            None => url.to_owned(),
        };
        let options = MySqlConnectOptions::from_str(&url)
            .map_err(|error| StoreError::Config(format!("bad MySQL URL: {error}")))?;
        if options.get_database().is_none_or(str::is_empty) {
            return Err(StoreError::Config(
                "the MySQL URL must name a database: mysql://USER:PASSWORD@HOST:PORT/DATABASE"
                    .to_owned(),
            ));
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if let Err(error) = migrate(&pool).await {
            pool.close().await;
            return Err(error);
        }
        Ok(MysqlStore {
            reads: Reads::new(pool.clone()),
            pool,
        })
    }

    /// Appends a message, then runs `on_commit` with the result. Separate
    /// nodes (and tasks) commit independently, so unlike SQLite this gives
    /// no ordering of hooks between concurrent appends; clients order by
    /// sequence number and fill gaps.
    async fn append(&self, message: NewMessage, on_commit: Option<OnCommit>) -> Result<Appended> {
        let appended = self
            .write(message, |conn, message| {
                Box::pin(writes::append_message(conn, message))
            })
            .await?;
        if let Some(on_commit) = on_commit {
            on_commit(&appended);
        }
        Ok(appended)
    }

    /// Appends at once (MySQL has no commit queue to wait in) and hands back
    /// the result as an already finished future.
    async fn queue(&self, message: NewMessage, on_commit: OnCommit) -> Result<PendingAppend> {
        let appended = self.append(message, Some(on_commit)).await;
        Ok(Box::pin(std::future::ready(appended)))
    }

    /// Moves `user`'s acknowledged position in `conversation`.
    async fn ack_write(&self, user: UserId, conversation: ConversationId, seq: Seq) -> Result<Seq> {
        self.write((user, conversation, seq), |conn, args| {
            Box::pin(writes::ack(conn, args))
        })
        .await
    }

    /// Runs `body` in a transaction: commits if it returns `Ok`, rolls back
    /// if it returns an error, and runs it again from the start if InnoDB
    /// rolled it back to break a deadlock.
    async fn write<A, T>(&self, args: A, body: TransactionBody<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        let mut attempt = 1;
        loop {
            let mut transaction = self.pool.begin().await?;
            let outcome = match body(&mut transaction, &args).await {
                Ok(value) => transaction
                    .commit()
                    .await
                    .map(|()| value)
                    .map_err(StoreError::from),
                Err(error) => {
                    // A failed rollback leaves nothing to do: the connection
                    // is discarded and the server rolls back on disconnect.
                    if let Err(rollback) = transaction.rollback().await {
                        tracing::debug!(error = %rollback, "rollback failed");
                    }
                    Err(error)
                }
            };
            match outcome {
                Err(StoreError::Database(error))
                    if is_deadlock(&error) && attempt < MAX_ATTEMPTS =>
                {
                    tracing::debug!(attempt, "deadlock; running the transaction again");
                    // Back off a little, and differently each time, so the
                    // two transactions that collided do not collide again.
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 7)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

/// Whether InnoDB rolled the transaction back to break a deadlock.
fn is_deadlock(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|database| database.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|mysql| mysql.number() == ER_LOCK_DEADLOCK)
}

crate::dispatch::impl_repositories!(MysqlStore);
crate::admin::impl_admin!(MysqlStore);

#[async_trait]
impl Store for MysqlStore {
    async fn close(&self) {
        // Every write returns only after its commit, so once callers have
        // stopped calling there is nothing in flight to wait for. The reads
        // share the pool: this closes it.
        self.reads.close().await;
    }

    fn backend(&self) -> &'static str {
        "mysql"
    }
}

/// How long a node waits for another node's migrations before giving up.
const MIGRATION_LOCK_SECS: i64 = 60;

/// Applies the embedded migrations under a named lock held on one
/// connection, so nodes of a new cluster starting at once migrate one after
/// another. (sqlx's own lock asks `GET_LOCK` to wait forever with a timeout
/// of -1, which MariaDB does not take as "forever": two nodes then ran the
/// first migration together and one left it marked dirty.)
async fn migrate(pool: &MySqlPool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let locked: Option<i64> =
        sqlx::query_scalar("SELECT GET_LOCK(CONCAT('chatd_migrations_', DATABASE()), ?)")
            .bind(MIGRATION_LOCK_SECS)
            .fetch_one(&mut *conn)
            .await?;
    if locked != Some(1) {
        return Err(StoreError::Config(format!(
            "another node held the migration lock for more than {MIGRATION_LOCK_SECS} s"
        )));
    }
    let mut migrator = sqlx::migrate!("./migrations/mysql");
    migrator.set_locking(false);
    let migrated = migrator.run(&mut *conn).await;
    let released = sqlx::query("SELECT RELEASE_LOCK(CONCAT('chatd_migrations_', DATABASE()))")
        .execute(&mut *conn)
        .await;
    migrated?;
    released?;
    Ok(())
}
