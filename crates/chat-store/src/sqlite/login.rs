//! A login's reads, on a thread with a connection of its own.
//!
//! Through sqlx, every statement is a message to the connection's thread
//! and an answer back, and one more pair when the connection returns to the
//! pool (sqlx pings it). A login reads seven things (account, friends,
//! groups, requests each way, unacknowledged and unread counts), so a storm
//! of token resumes spent most of its CPU switching threads, not in
//! SQLite. This thread owns a read-only rusqlite connection and reads a
//! whole login in one job, in one read transaction (so the seven agree
//! with each other): one round trip per login. The statements are the
//! ones the sqlx path runs (`rows.rs`), and the rows decode through the
//! same structs (`rows::direct`); the conformance suite checks that a
//! login's view equals the separate reads.

use std::path::Path;
use std::time::Duration;

use chat_proto::UserId;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::admin::AccountRecord;
use crate::error::{Result, StoreError};
use crate::repo::{FriendRecord, LoginView};
use crate::rows::direct::FromRow;
use crate::rows::{
    from_db, to_db, unread_count, AccountRow, FriendRow, GroupRoleRow, RequestRow, COUNT_UNACKED,
    SELECT_ACCOUNT, SELECT_FRIEND, SELECT_GROUPS_OF, SELECT_REQUEST, SELECT_UNREAD,
};

/// Logins that may wait for the thread before callers wait to queue.
const QUEUE_LEN: usize = 256;

/// How long a read waits for a writer's lock (only a checkpoint that
/// restarts the log takes one readers can see).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

enum Job {
    View {
        user: UserId,
        reply: oneshot::Sender<Result<LoginView>>,
    },
    Close(oneshot::Sender<()>),
}

/// The handle to the login thread.
#[derive(Debug)]
pub(super) struct LoginReader {
    jobs: mpsc::Sender<Job>,
}

impl LoginReader {
    /// Opens a read-only connection to the database at `path` and starts
    /// the thread.
    pub(super) fn start(path: &Path) -> Result<LoginReader> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(engine)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(engine)?;
        conn.set_prepared_statement_cache_capacity(16);
        let (jobs, receiver) = mpsc::channel(QUEUE_LEN);
        std::thread::Builder::new()
            .name("sqlite-login".to_owned())
            .spawn(move || run(&conn, receiver))
            .map_err(|error| StoreError::Config(format!("cannot start a thread: {error}")))?;
        Ok(LoginReader { jobs })
    }

    /// See [`crate::UserStore::login_view`].
    pub(super) async fn view(&self, user: UserId) -> Result<LoginView> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::View { user, reply })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Answers what is queued, closes the connection and stops the thread.
    pub(super) async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        if self.jobs.send(Job::Close(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

fn engine(error: rusqlite::Error) -> StoreError {
    StoreError::Engine(error.to_string())
}

/// The statements, made once.
struct Statements {
    account: String,
    friends: String,
    incoming: String,
    outgoing: String,
}

fn run(conn: &Connection, mut jobs: mpsc::Receiver<Job>) {
    let statements = Statements {
        account: format!("{SELECT_ACCOUNT} AND id = ?"),
        friends: format!("{SELECT_FRIEND} WHERE f.user_id = ? ORDER BY u.name, u.id"),
        incoming: format!("{SELECT_REQUEST} WHERE r.to_id = ? ORDER BY r.created_at_ms, r.from_id"),
        outgoing: format!("{SELECT_REQUEST} WHERE r.from_id = ? ORDER BY r.created_at_ms, r.to_id"),
    };
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::View { user, reply } => {
                // A bug in one login's read must not end the thread, and
                // with it every later login.
                let view = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    read(conn, &statements, user)
                }))
                .unwrap_or_else(|_| {
                    tracing::error!(%user, "reading a login panicked");
                    Err(StoreError::Engine("reading the login failed".to_owned()))
                });
                let _ = reply.send(view);
            }
            Job::Close(done) => {
                jobs.close();
                // Logins queued before the close are still answered.
                while let Ok(Job::View { user, reply }) = jobs.try_recv() {
                    let _ = reply.send(read(conn, &statements, user));
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

fn read(conn: &Connection, statements: &Statements, user: UserId) -> Result<LoginView> {
    let id = to_db(user.0);
    // One read transaction: the seven reads see one state of the database.
    let transaction = conn.unchecked_transaction().map_err(engine)?;
    let account = transaction
        .prepare_cached(&statements.account)
        .and_then(|mut statement| statement.query_row([id], AccountRow::from_row).optional())
        .map_err(engine)?
        .map(AccountRecord::from);
    if account.as_ref().is_none_or(AccountRecord::is_disabled) {
        return Ok(LoginView {
            account,
            ..LoginView::default()
        });
    }
    let friends = rows(&transaction, &statements.friends, id, FriendRow::from_row)?
        .into_iter()
        .map(FriendRecord::from)
        .collect();
    let groups = rows(&transaction, SELECT_GROUPS_OF, id, GroupRoleRow::from_row)?
        .into_iter()
        .map(GroupRoleRow::into_record)
        .collect::<Result<_>>()?;
    let incoming_requests = rows(&transaction, &statements.incoming, id, RequestRow::from_row)?
        .into_iter()
        .map(Into::into)
        .collect();
    let outgoing_requests = rows(&transaction, &statements.outgoing, id, RequestRow::from_row)?
        .into_iter()
        .map(Into::into)
        .collect();
    let unacked: i64 = transaction
        .prepare_cached(COUNT_UNACKED)
        .and_then(|mut statement| statement.query_row([id, id], |row| row.get(0)))
        .map_err(engine)?;
    let unread = rows(&transaction, SELECT_UNREAD, id, |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?
    .into_iter()
    .map(unread_count)
    .collect();
    transaction.commit().map_err(engine)?;
    Ok(LoginView {
        account,
        friends,
        groups,
        incoming_requests,
        outgoing_requests,
        unacked: from_db(unacked),
        unread,
    })
}

/// The rows of a statement with the user's id as its one parameter.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    id: i64,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.query_map([id], map)?.collect())
        .map_err(engine)
}
