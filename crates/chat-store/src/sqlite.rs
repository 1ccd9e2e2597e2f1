//! The SQLite backend: the embedded default.
//!
//! The database runs in WAL mode. By default with `synchronous=NORMAL`: a
//! commit is in the write-ahead log when it returns, so it survives the
//! process being killed at any moment (`kill -9` included), and the log is
//! synced to disk at checkpoints; an operating-system crash or power cut can
//! lose the last commits before the latest sync. `sqlite://PATH?synchronous=full`
//! syncs the log at every commit instead, so nothing acknowledged is lost
//! even then, at the price of one disk sync per batch. Reads go through a
//! pool of read-only connections, a login's on a thread of its own
//! (`login.rs`). Writes go through two writers, each with
//! a read-write connection of its own, which SQLite serialises: appends and
//! acks through the hot-path thread (`hot.rs`, a direct rusqlite
//! connection), everything else through the writer task (`writer.rs`, on
//! sqlx). Each commits whatever is queued (up to 256 writes) in one
//! transaction and answers each write only after that transaction's
//! `COMMIT`: group commit, one disk sync for many messages, none
//! acknowledged early.
//!
//! The write-ahead log (`PATH-wal`) is kept under a bound, 64 MiB unless
//! the URL says otherwise (`?wal_limit=256MiB`): a background thread copies
//! it into the database, and the hot-path writer restarts it from the
//! beginning when it grows long, holding appends back if it ever reaches the
//! bound (see `checkpoint.rs`). Closing the store empties it.

mod checkpoint;
mod hot;
mod login;
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

pub(crate) use backup::database_file;
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

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Result, StoreError};
use crate::url_params::take_params;
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
    /// Appends and acks.
    hot: HotWriter,
    /// Logins' reads.
    login: login::LoginReader,
    /// For `sqlite::memory:`, the private directory holding the throw-away
    /// file; removed when the store is dropped.
    _scratch: Option<tempfile::TempDir>,
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
        // A throw-away database is a file in a private directory, so that it
        // takes exactly the path a real one takes (the hot-path thread's
        // own connection, WAL, checkpoints): every line that stores a
        // message is the one the tests run.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let scratch = if in_memory {
            Some(tempfile::tempdir().map_err(|error| {
                StoreError::Config(format!(
                    "cannot make a directory for sqlite::memory: {error}"
                ))
            })?)
        } else {
            None
        };
        let url = match &scratch {
            Some(dir) => format!("sqlite://{}", dir.path().join("chat.db").display()),
            None => url,
        };
        let url = url.as_str();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| StoreError::Config(format!("bad SQLite URL {url:?}: {error}")))?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        if options.get_filename().as_os_str().is_empty() {
            // SQLite would give every connection a private temporary
            // database: the readers would never see what the writer wrote.
            return Err(StoreError::Config(format!(
                "SQLite URL {url:?} names no file: expected sqlite://PATH"
            )));
        }
        let writer_options = options
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            // The hot path's checkpointer thread does the checkpoints, and
            // the log's file is cut back as the hot connection's is.
            .pragma("wal_autocheckpoint", "0")
            .pragma(
                "journal_size_limit",
                checkpoint::journal_size_limit(wal_limit).to_string(),
            );
        // One connection that never expires: the writer of everything but
        // appends and acks.
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
        let pragma = match synchronous {
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Extra => "EXTRA",
            _ => "NORMAL",
        };
        let hot = match HotWriter::start(options.get_filename(), pragma, wal_limit) {
            Ok(hot) => hot,
            Err(error) => {
                writer_pool.close().await;
                return Err(error);
            }
        };
        let reader_options = options.read_only(true);
        // No liveness test at checkout: a connection to a local file cannot
        // have been hung up on, and the test is a round trip to the
        // connection's thread before every read.
        let read_pool = match SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_with(reader_options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(error) => {
                writer_pool.close().await;
                return Err(error.into());
            }
        };
        let login = match login::LoginReader::start(reader_options.get_filename()) {
            Ok(login) => login,
            Err(error) => {
                read_pool.close().await;
                writer_pool.close().await;
                return Err(error);
            }
        };
        Ok(SqliteStore {
            hot,
            login,
            reads: Reads::new(read_pool),
            writer: Writer::start(writer_pool),
            _scratch: scratch,
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

    /// A login's reads, on the login thread in one round trip.
    async fn read_login_view(&self, user: chat_proto::UserId) -> Result<crate::repo::LoginView> {
        self.login.view(user).await
    }

    /// Closes the store: the writers first, so every queued write commits
    /// before the connections go; the log last, once nothing else can hold
    /// it.
    async fn shut_down(&self) {
        self.hot.close().await;
        self.writer.close().await;
        self.reads.close().await;
        self.login.close().await;
        self.hot.close_log().await;
    }
}

crate::dispatch::impl_store!(SqliteStore, backend = "sqlite");

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
    let rest = take_params(url, |name, value| {
        match name {
            "synchronous" => {
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
            "wal_limit" => params.wal_limit = checkpoint::parse_limit(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((rest, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{NewMessage, Store};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_hot_thread_is_reported_not_hidden() {
        use crate::repo::{FriendStore, MessageStore, UserStore};
        use chat_proto::Target;
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let alice = store.create_user("alice", "h", 1).await.unwrap().id;
        let bob = store.create_user("bob", "h", 1).await.unwrap().id;
        store.add_friend_request(alice, bob, None, 1).await.unwrap();
        store
            .respond_friend_request(alice, bob, true, 1)
            .await
            .unwrap();
        let message = |id: &str| NewMessage {
            sender_id: alice,
            sender_name: "alice".to_owned(),
            target: Target::User(bob),
            client_msg_id: id.to_owned(),
            body: "hi".to_owned(),
            now_ms: 1,
        };
        store.append_message(message("1")).await.unwrap();
        assert_eq!(store.failure(), None);

        store.hot.inject_panic().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.failure().is_none() {
            assert!(std::time::Instant::now() < deadline, "no failure reported");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failure = store.failure().unwrap();
        assert!(failure.contains("hot-path thread panicked"), "{failure}");
        assert!(failure.contains("on purpose"), "{failure}");
        // Appends fail from then on, instead of waiting forever.
        assert!(store.append_message(message("2")).await.is_err());
        store.close().await;
    }

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
