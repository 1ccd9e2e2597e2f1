//! The SQLite backend: the embedded default.
//!
//! The database runs in WAL mode. By default with `synchronous=NORMAL`: a
//! commit is in the write-ahead log when it returns, so it survives the
//! process being killed at any moment (`kill -9` included), and the log is
//! synced to disk at checkpoints; an operating-system crash or power cut can
//! lose the last commits before the latest sync. `sqlite://PATH?synchronous=full`
//! syncs the log at every commit instead, so nothing acknowledged is lost
//! even then, at the price of one disk sync per batch. Reads go through a pool of read-only connections;
//! every write goes through one writer task, which owns the only read-write
//! connection and commits whatever writes are queued (up to 256) in one
//! transaction, answering each only after that transaction's `COMMIT`: group
//! commit, one disk sync for many messages, none acknowledged early.
//!
//! The write-ahead log (`PATH-wal`) is kept under a bound, 64 MiB unless
//! the URL says otherwise (`?wal_limit=256MiB`): a background thread copies
//! it into the database, and the hot-path writer restarts it from the
//! beginning when it grows long, holding appends back if it ever reaches the
//! bound (see `checkpoint.rs`). Closing the store empties it.

mod checkpoint;
mod hot;
mod writer;
mod writes;

mod backup;

mod reads {
    crate::reads::reads!(sqlx::Sqlite);
}

mod admin {
    crate::admin::queries!(
        sqlx::Sqlite,
        sqlx::sqlite::SqliteConnection,
        erased_id = "'erased:' || conversation_id || ':' || seq",
        lock = "",
        size = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
    );
}

mod group_access {
    crate::group_access::queries!(
        sqlx::Sqlite,
        sqlx::sqlite::SqliteConnection,
        lock = "",
        insert_ignore = "INSERT OR IGNORE"
    );
}

pub use backup::{backup, BackupReport};

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Result, StoreError};
use chat_proto::{ConversationId, Seq, UserId};

use crate::repo::{Appended, NewMessage, OnCommit, PendingAppend, Store};
use hot::HotWriter;
use reads::Reads;
use writer::{WriteBody, Writer};

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
    /// Appends and acks, for a database in a file.
    hot: Option<HotWriter>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database named by `url` and brings its
    /// schema up to date.
    ///
    /// `url` is `sqlite://PATH` (a relative `PATH` is relative to the
    /// working directory; `sqlite:///abs/path` for an absolute one), with
    /// optional parameters `synchronous=normal|full` and `wal_limit=SIZE`
    /// (bytes, or with a unit `KiB`, `MiB` or `GiB`; at least 1 MiB; default
    /// 64 MiB), for example `sqlite://chat.db?synchronous=full&wal_limit=256MiB`
    /// (see the module docs), or `sqlite::memory:` for a throw-away database
    /// that lives as long as the store. Must be called inside a Tokio
    /// runtime: it starts the writer task.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a malformed URL, a database error if the
    /// file cannot be opened or is not a database, a migration error if the
    /// schema cannot be applied (for example, a newer schema than this code).
    pub async fn open(url: &str) -> Result<Self> {
        let (
            url,
            SqliteParams {
                synchronous,
                wal_limit,
            },
        ) = split_params(url)?;
        let url = url.as_str();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| StoreError::Config(format!("bad SQLite URL {url:?}: {error}")))?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && options.get_filename().as_os_str().is_empty() {
            // SQLite would give every connection a private temporary
            // database: the readers would never see what the writer wrote.
            return Err(StoreError::Config(format!(
                "SQLite URL {url:?} names no file: expected sqlite://PATH"
            )));
        }
        let writer_options = if in_memory {
            options.clone()
        } else {
            options
                .clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                // The hot path's checkpointer thread does the checkpoints,
                // and the log's file is cut back as the hot connection's is.
                .pragma("wal_autocheckpoint", "0")
                .pragma(
                    "journal_size_limit",
                    checkpoint::journal_size_limit(wal_limit).to_string(),
                )
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
        if let Err(error) = admin::backfill_name_keys(&writer_pool).await {
            writer_pool.close().await;
            return Err(error);
        }
        let hot = if in_memory {
            None
        } else {
            let pragma = match synchronous {
                SqliteSynchronous::Full => "FULL",
                SqliteSynchronous::Extra => "EXTRA",
                _ => "NORMAL",
            };
            match HotWriter::start(options.get_filename(), pragma, wal_limit) {
                Ok(hot) => Some(hot),
                Err(error) => {
                    writer_pool.close().await;
                    return Err(error);
                }
            }
        };
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
            hot,
            reads: Reads::new(read_pool),
            writer: Writer::start(writer_pool),
        })
    }

    /// Runs a write in the writer's next batch; see [`Writer::write`].
    async fn write<A, T>(&self, args: A, body: WriteBody<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        self.writer.write(args, body).await
    }

    /// Runs a write that refuses before it changes anything; see
    /// [`Writer::write_checked`].
    async fn write_checked<A, T>(&self, args: A, body: WriteBody<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        self.writer.write_checked(args, body).await
    }

    /// Appends a message on the hot path (or, for an in-memory database,
    /// through the writer task), running `on_commit` in commit order.
    async fn append(&self, message: NewMessage, on_commit: Option<OnCommit>) -> Result<Appended> {
        match (&self.hot, on_commit) {
            (Some(hot), on_commit) => hot.append(message, on_commit).await,
            (None, Some(on_commit)) => {
                self.writer
                    .write_checked_then(
                        message,
                        |conn, message| Box::pin(writes::append_message(conn, message)),
                        on_commit,
                    )
                    .await
            }
            (None, None) => {
                self.write_checked(message, |conn, message| {
                    Box::pin(writes::append_message(conn, message))
                })
                .await
            }
        }
    }

    /// Queues an append on the hot path and returns its pending result (for
    /// an in-memory database, appends through the writer task first).
    async fn queue(&self, message: NewMessage, on_commit: OnCommit) -> Result<PendingAppend> {
        match &self.hot {
            Some(hot) => hot.queue(message, on_commit).await,
            None => {
                let appended = self.append(message, Some(on_commit)).await;
                Ok(Box::pin(std::future::ready(appended)))
            }
        }
    }

    /// Moves `user`'s acknowledged position in `conversation`.
    async fn ack_write(&self, user: UserId, conversation: ConversationId, seq: Seq) -> Result<Seq> {
        match &self.hot {
            Some(hot) => hot.ack(user, conversation, seq).await,
            None => {
                self.write_checked((user, conversation, seq), |conn, args| {
                    Box::pin(writes::ack(conn, args))
                })
                .await
            }
        }
    }
}

crate::dispatch::impl_repositories!(SqliteStore);
crate::admin::impl_admin!(SqliteStore);
crate::group_access::impl_group_access!(SqliteStore);

#[async_trait]
impl Store for SqliteStore {
    async fn close(&self) {
        // The writers first, so every queued write commits before the
        // connections go; the log last, once nothing else can hold it.
        if let Some(hot) = &self.hot {
            hot.close().await;
        }
        self.writer.close().await;
        self.reads.close().await;
        if let Some(hot) = &self.hot {
            hot.close_log().await;
        }
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

/// This crate's own parameters of a SQLite URL.
#[derive(Debug, Clone, Copy)]
struct SqliteParams {
    synchronous: SqliteSynchronous,
    /// The bound on the `-wal` file, in bytes.
    wal_limit: u64,
}

/// Takes this crate's own parameters (`synchronous`, `wal_limit`) out of a
/// SQLite URL (sqlx would refuse them) and returns the rest with their values.
fn split_params(url: &str) -> Result<(String, SqliteParams)> {
    let mut params = SqliteParams {
        synchronous: SqliteSynchronous::Normal,
        wal_limit: checkpoint::DEFAULT_WAL_LIMIT,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), params));
    };
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                params.synchronous = match value.to_ascii_lowercase().as_str() {
                    "normal" => SqliteSynchronous::Normal,
                    "full" => SqliteSynchronous::Full,
                    "extra" => SqliteSynchronous::Extra,
                    other => {
                        return Err(StoreError::Config(format!(
                            "synchronous={other:?} in {url:?}: expected normal, full or extra"
                        )))
                    }
                }
            }
            Some(("wal_limit", value)) => params.wal_limit = checkpoint::parse_limit(value)?,
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_parameters_are_taken_out_of_the_url() {
        let (url, params) = split_params("sqlite://chat.db").unwrap();
        assert_eq!(url, "sqlite://chat.db");
        assert!(matches!(params.synchronous, SqliteSynchronous::Normal));
        assert_eq!(params.wal_limit, 64 << 20);
        let (url, params) = split_params("sqlite://chat.db?synchronous=FULL&mode=rwc").unwrap();
        assert_eq!(url, "sqlite://chat.db?mode=rwc");
        assert!(matches!(params.synchronous, SqliteSynchronous::Full));
        let (url, params) =
            split_params("sqlite://chat.db?wal_limit=8MiB&synchronous=full").unwrap();
        assert_eq!(url, "sqlite://chat.db");
        assert!(matches!(params.synchronous, SqliteSynchronous::Full));
        assert_eq!(params.wal_limit, 8 << 20);
        assert!(split_params("sqlite://chat.db?synchronous=sometimes").is_err());
        assert!(split_params("sqlite://chat.db?wal_limit=lots").is_err());
        assert!(split_params("sqlite://chat.db?wal_limit=4KiB").is_err());
    }
}
