//! The MySQL / MariaDB backend, for several nodes sharing one database.
//!
//! Every connection runs at READ COMMITTED: each statement sees what other
//! nodes have committed, and the few places that must stay consistent until
//! commit take row locks explicitly (see `writes.rs` and `batch.rs`).
//!
//! Appends and acks, the writes every chat message makes, take the hot path
//! (`hot.rs`): a task with a connection of its own commits everything queued
//! in one transaction, so one log sync covers many messages, and answers
//! (and runs the commit hooks) in commit order. Every other write is a
//! transaction of its own on the pool. InnoDB resolves a deadlock by rolling
//! one transaction back; that transaction (or batch) is simply run again, a
//! few times at most.
//!
//! Every call is bounded in time: `?timeout=SECONDS` in the URL (default
//! [`DEFAULT_TIMEOUT`]) bounds waiting for a pooled connection, each read,
//! each write transaction, and an append or ack from queueing to its answer.
//! A database that stops answering makes calls fail with
//! [`StoreError::TimedOut`] within that bound instead of hanging.

mod batch;
mod hot;
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

mod group_access {
    crate::group_access::queries!(
        sqlx::MySql,
        sqlx::mysql::MySqlConnection,
        lock = "FOR UPDATE",
        insert_ignore = "INSERT IGNORE"
    );
}

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::{Executor as _, MySqlPool};

use crate::error::{within, Result, StoreError};
use crate::rows::BoxFuture;
use crate::url_params::take_params;
use hot::HotWriter;
use reads::Reads;

/// Connections per store (per node), for reads and the writes off the hot
/// path (the hot path has a connection of its own).
const MAX_CONNECTIONS: u32 = 16;

/// How long a store call may take when the URL does not say: long enough
/// for a loaded database's slowest batch, short enough that a client told
/// `unavailable` is still there to retry.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a transaction is tried when InnoDB keeps choosing it as a
/// deadlock victim.
const MAX_ATTEMPTS: u32 = 5;

/// MySQL's error number for "Deadlock found when trying to get lock".
const ER_LOCK_DEADLOCK: u16 = 1213;

/// MySQL's error number for "Lock wait timeout exceeded".
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// The body of a write transaction: runs inside an open transaction with its
/// arguments; a plain function pointer, so it can be run again on retry.
type TransactionBody<A, T> = for<'c> fn(&'c mut MySqlConnection, &'c A) -> BoxFuture<'c, Result<T>>;

/// A store in a MySQL or MariaDB database, safe to share with other nodes
/// (other `MysqlStore`s on the same database).
#[derive(Debug)]
pub struct MysqlStore {
    pool: MySqlPool,
    reads: Reads,
    hot: HotWriter,
    timeout: Duration,
}

impl MysqlStore {
    /// Connects to the database named by `url` and brings its schema up to
    /// date.
    ///
    /// `url` is `mysql://USER:PASSWORD@HOST:PORT/DATABASE` (`mariadb://` is
    /// accepted as a synonym), optionally with `?timeout=SECONDS` (a positive
    /// number, fractions allowed; default [`DEFAULT_TIMEOUT`]): the most any
    /// store call waits for the database. The database must exist; it should
    /// have the default character set utf8mb4, although every table names its
    /// own. Several nodes may open one database at once: migrations take a
    /// lock.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a malformed URL, one without a database or
    /// with a bad `timeout`; a database error if the server cannot be reached
    /// (within the timeout) or refuses the login; a migration error if the
    /// schema cannot be applied.
    pub async fn open(url: &str) -> Result<Self> {
        let (options, timeout) = connect_options(url)?;
        let lock_wait = lock_wait_secs(timeout);
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    prepare_session(conn, lock_wait).await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        if let Err(error) = migrate(&pool).await {
            pool.close().await;
            return Err(error);
        }
        if let Err(error) = admin::backfill_name_keys(&pool).await {
            pool.close().await;
            return Err(error);
        }
        Ok(MysqlStore {
            reads: Reads::with_timeout(pool.clone(), timeout),
            hot: HotWriter::start(options, timeout, lock_wait),
            pool,
            timeout,
        })
    }

    /// Closes the store: the hot path first, so what is queued commits;
    /// every other write returns only after its commit, so once callers
    /// have stopped there is nothing else in flight. The reads share the
    /// pool: closing them closes it.
    async fn shut_down(&self) {
        self.hot.close().await;
        self.reads.close().await;
    }

    /// A login's reads, on one connection, within the read timeout.
    async fn read_login_view(&self, user: chat_proto::UserId) -> Result<crate::repo::LoginView> {
        self.reads.bounded(self.reads.login_view(user)).await
    }

    /// Runs `body` in a transaction: commits if it returns `Ok`, rolls back
    /// if it returns an error, and runs it again from the start if InnoDB
    /// rolled it back to break a deadlock. All of it within the timeout.
    async fn write<A, T>(&self, args: A, body: TransactionBody<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        within(self.timeout, async {
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
                        // A failed rollback leaves nothing to do: the
                        // connection is discarded and the server rolls back
                        // on disconnect.
                        if let Err(rollback) = transaction.rollback().await {
                            tracing::debug!(error = %rollback, "rollback failed");
                        }
                        Err(error)
                    }
                };
                match outcome {
                    Err(StoreError::Database(error))
                        if is_lock_conflict(&error) && attempt < MAX_ATTEMPTS =>
                    {
                        tracing::debug!(attempt, "deadlock; running the transaction again");
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                    outcome => return outcome,
                }
            }
        })
        .await
    }
}

/// How long to wait before attempt `attempt + 1`: a little longer each time,
/// so the two transactions that collided do not collide again.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(u64::from(attempt) * 7)
}

/// Whether InnoDB rolled the transaction (or, for a lock wait timeout, its
/// last statement) back because of another transaction's locks; running it
/// again is the cure.
fn is_lock_conflict(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|database| database.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|mysql| {
            mysql.number() == ER_LOCK_DEADLOCK || mysql.number() == ER_LOCK_WAIT_TIMEOUT
        })
}

/// Sets up a new connection: READ COMMITTED (see the module docs), and lock
/// waits shorter than the store's timeout, so a lock held too long ends as
/// a retryable error before the caller gives up.
async fn prepare_session(conn: &mut MySqlConnection, lock_wait_secs: u64) -> sqlx::Result<()> {
    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await?;
    conn.execute(format!("SET SESSION innodb_lock_wait_timeout = {lock_wait_secs}").as_str())
        .await?;
    Ok(())
}

/// InnoDB's lock wait bound for a store timeout: half of it, in whole
/// seconds (the unit the server takes), at least one.
fn lock_wait_secs(timeout: Duration) -> u64 {
    (timeout.as_secs() / 2).max(1)
}

/// The connection options and the store timeout of a store URL
/// (`mysql://` or `mariadb://`, with this crate's own `timeout` parameter).
///
/// # Errors
/// [`StoreError::Config`] for a malformed URL, one that names no database,
/// or a bad `timeout`.
pub(crate) fn connect_options(url: &str) -> Result<(MySqlConnectOptions, Duration)> {
    let url = match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url.to_owned(),
    };
    let (url, timeout) = split_timeout(&url)?;
    let options = MySqlConnectOptions::from_str(&url)
        .map_err(|error| StoreError::Config(format!("bad MySQL URL: {error}")))?;
    if options.get_database().is_none_or(str::is_empty) {
        return Err(StoreError::Config(
            "the MySQL URL must name a database: mysql://USER:PASSWORD@HOST:PORT/DATABASE"
                .to_owned(),
        ));
    }
    Ok((options, timeout))
}

/// Takes this crate's own `timeout` parameter out of a MySQL URL and returns
/// the rest with the duration it names (or the default).
fn split_timeout(url: &str) -> Result<(String, Duration)> {
    let mut timeout = DEFAULT_TIMEOUT;
    let url = take_params(url, |name, value| {
        if name != "timeout" {
            return Ok(false);
        }
        timeout = value
            .parse::<f64>()
            .ok()
            .filter(|secs| *secs > 0.0)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "timeout={value:?} in the MySQL URL: expected a positive number of seconds"
                ))
            })?;
        Ok(true)
    })?;
    Ok((url, timeout))
}

crate::dispatch::impl_store!(MysqlStore, backend = "mysql");

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_taken_out_of_the_url() {
        let (url, timeout) = split_timeout("mysql://u@h:3306/chat").unwrap();
        assert_eq!(url, "mysql://u@h:3306/chat");
        assert_eq!(timeout, DEFAULT_TIMEOUT);
        let (url, timeout) =
            split_timeout("mysql://u@h:3306/chat?ssl-mode=disabled&timeout=2.5").unwrap();
        assert_eq!(url, "mysql://u@h:3306/chat?ssl-mode=disabled");
        assert_eq!(timeout, Duration::from_millis(2500));
        for bad in ["0", "-1", "soon", "", "inf", "NaN"] {
            assert!(
                split_timeout(&format!("mysql://u@h/chat?timeout={bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn lock_waits_end_before_the_caller_gives_up() {
        assert_eq!(lock_wait_secs(Duration::from_secs(5)), 2);
        assert_eq!(lock_wait_secs(Duration::from_millis(500)), 1);
        assert_eq!(lock_wait_secs(Duration::from_secs(60)), 30);
    }
}
