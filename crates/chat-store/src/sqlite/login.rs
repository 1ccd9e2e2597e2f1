//! A login's reads, on a thread with a connection of its own.
//!
//! Through sqlx, every statement is a message to the connection's thread
//! and an answer back, and one more pair when the connection returns to the
//! pool (sqlx pings it). A login reads seven things (account, friends,
//! groups, requests each way, unacknowledged and unread counts), so a storm
//! of token resumes spent most of its CPU switching threads, not in
//! SQLite. These threads each own a read-only rusqlite connection and
//! read a whole login in one job, in one read transaction (so the seven
//! agree with each other): one round trip per login. There are a few of
//! them, taking jobs from one queue, so one slow login (a long backlog to
//! count) does not hold up the others. The statements are the
//! ones the sqlx path runs (`rows.rs`), and the rows decode through the
//! same structs (`rows::direct`); the conformance suite checks that a
//! login's view equals the separate reads.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
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

/// Logins that may wait for a thread before callers wait to queue.
const QUEUE_LEN: usize = 256;

/// Login threads (and read-only connections).
const THREADS: usize = 2;

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

/// The handle to the login threads.
#[derive(Debug)]
pub(super) struct LoginReader {
    jobs: mpsc::Sender<Job>,
}

/// The queue the threads take jobs from, one at a time.
type SharedJobs = Arc<Mutex<mpsc::Receiver<Job>>>;

impl LoginReader {
    /// Opens read-only connections to the database at `path` and starts
    /// the threads.
    pub(super) fn start(path: &Path) -> Result<LoginReader> {
        let (jobs, receiver) = mpsc::channel(QUEUE_LEN);
        let receiver: SharedJobs = Arc::new(Mutex::new(receiver));
        // Until every thread has started, dropping `reader` (an error
        // below) closes the queue and ends the ones already running.
        let reader = LoginReader { jobs };
        for index in 0..THREADS {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(engine)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(engine)?;
            conn.set_prepared_statement_cache_capacity(16);
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-login-{index}"))
                .spawn(move || run(conn, &receiver))
                .map_err(|error| StoreError::Config(format!("cannot start a thread: {error}")))?;
        }
        Ok(reader)
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

    /// Answers what is queued, then closes the connections and stops the
    /// threads; returns once every connection is closed.
    pub(super) async fn close(&self) {
        let mut stopped = Vec::with_capacity(THREADS);
        for _ in 0..THREADS {
            let (done, closed) = oneshot::channel();
            if self.jobs.send(Job::Close(done)).await.is_err() {
                break;
            }
            stopped.push(closed);
        }
        for closed in stopped {
            let _ = closed.await;
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

fn run(conn: Connection, jobs: &SharedJobs) {
    let statements = Statements {
        account: format!("{SELECT_ACCOUNT} AND id = ?"),
        friends: format!("{SELECT_FRIEND} WHERE f.user_id = ? ORDER BY u.name, u.id"),
        incoming: format!("{SELECT_REQUEST} WHERE r.to_id = ? ORDER BY r.created_at_ms, r.from_id"),
        outgoing: format!("{SELECT_REQUEST} WHERE r.from_id = ? ORDER BY r.created_at_ms, r.to_id"),
    };
    loop {
        // The lock is held while waiting: the thread that holds it takes
        // the next job, the others wait their turn. Every job is answered
        // before a close that was queued after it is taken.
        let job = jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocking_recv();
        match job {
            Some(Job::View { user, reply }) => {
                // A bug in one login's read must not end the thread.
                let view = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    read(&conn, &statements, user)
                }))
                .unwrap_or_else(|_| {
                    tracing::error!(%user, "reading a login panicked");
                    Err(StoreError::Engine("reading the login failed".to_owned()))
                });
                let _ = reply.send(view);
            }
            Some(Job::Close(done)) => {
                // Closed before saying so: the store's last checkpoint
                // runs once every connection is gone.
                drop(conn);
                let _ = done.send(());
                return;
            }
            None => return,
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
