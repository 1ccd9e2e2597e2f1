//! The task that does the SQLite writes other than appends and acks (those
//! have the hot-path thread, `hot.rs`), with group commit.
//!
//! SQLite allows one writer at a time and, with `synchronous=FULL`, each
//! commit waits for the disk. A commit per write would cap the server at
//! the disk's sync rate. So these writes are sent to this task, which owns
//! a read-write connection, takes everything that is queued (up to
//! [`MAX_BATCH`] writes), runs them in one transaction, and answers each only
//! after that transaction's `COMMIT` returned: one disk sync for the whole
//! batch, and still no write is acknowledged before it is durable. The
//! hot-path thread's transactions and this task's take turns (SQLite's
//! write lock, with a busy timeout).
//!
//! A write that is refused (`NotFound`, `Conflict`, `Forbidden`) leaves
//! nothing behind and the others of its batch still commit: each write
//! starts with a `SAVEPOINT` and a refused one is rolled back to it.
//! (Appends and acks do not come here: they have the hot path's thread,
//! `hot.rs`.) If the database itself fails, the
//! whole batch is rolled back and each write is retried alone in its own
//! transaction, so one bad write cannot fail the writes that happened to
//! share its batch.

use sqlx::sqlite::SqliteConnection;
use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Result, StoreError};
use crate::log_throttle::{self, LogThrottle, Verdict};
use crate::rows::BoxFuture;

/// Failed batches, logged once per interval with a count.
static BATCH_FAILURES: LogThrottle = LogThrottle::new(log_throttle::DEFAULT_INTERVAL);

/// Most writes committed in one transaction. Large enough that a busy server
/// syncs the disk rarely, small enough that the first write of a batch does
/// not wait long for the last.
pub(super) const MAX_BATCH: usize = 256;

/// How many writes may wait for the writer before senders wait too. This is
/// the back-pressure that keeps a burst from growing memory without bound.
const QUEUE_LEN: usize = 4 * MAX_BATCH;

/// The body of a write transaction: runs on the writer connection inside an
/// open transaction, with its arguments. A plain function pointer, so that
/// the writer can run it a second time when it retries a failed batch write
/// by write.
pub(super) type WriteBody<A, T> =
    for<'c> fn(&'c mut SqliteConnection, &'c A) -> BoxFuture<'c, Result<T>>;

/// A handle to the writer task. Cheap to share by reference; the store holds
/// one.
#[derive(Debug)]
pub(super) struct Writer {
    commands: mpsc::Sender<Command>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer task on `pool`, which must hold the store's only
    /// read-write connection (a pool of one).
    pub(super) fn start(pool: SqlitePool) -> Writer {
        let (commands, receiver) = mpsc::channel(QUEUE_LEN);
        let task = tokio::spawn(run(pool, receiver));
        Writer {
            commands,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Runs `body` with `args` in the next batch and returns its result once
    /// the batch has committed (or its error, having written nothing).
    ///
    /// # Errors
    /// The body's own error, or a database error; `PoolClosed` once the
    /// store is closed.
    pub(super) async fn write<A, T>(&self, args: A, body: WriteBody<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        self.submit(args, body).await
    }

    async fn submit<A, T>(&self, args: A, body: WriteBody<A, T>) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            args,
            body,
            outcome: None,
            reply,
        });
        self.commands
            .send(Command::Write(job))
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        // The task answers every job it takes; a dropped reply means it
        // stopped without running this one.
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?
    }

    /// Lets the writes already queued finish, then stops the task. Writes
    /// sent afterwards fail with `PoolClosed`. Calling it again is harmless.
    pub(super) async fn close(&self) {
        // A failed send means the task has already stopped.
        let _ = self.commands.send(Command::Close).await;
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::error!(%error, "the SQLite writer task failed");
            }
        }
    }
}

/// What the writer task receives.
enum Command {
    /// A write to run in the next batch.
    Write(Box<dyn Job>),
    /// Finish what is queued, accept nothing more, and stop.
    Close,
}

/// A queued write with its reply channel, its result type erased so that one
/// batch can hold writes of every kind.
trait Job: Send {
    /// Runs the body inside the open transaction and keeps its outcome.
    /// `Ok(true)`: it wrote and must be committed; `Ok(false)`: it was
    /// refused and its changes must be rolled back; `Err`: the database
    /// failed.
    fn run<'c>(
        &'c mut self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>>;

    /// Sends the kept outcome, after the commit (or after a rollback, for a
    /// refused write).
    fn answer(self: Box<Self>);

    /// Sends a database error instead.
    fn fail(self: Box<Self>, error: sqlx::Error);
}

/// A [`Job`] with its types.
struct TypedJob<A, T> {
    args: A,
    body: WriteBody<A, T>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<A, T> Job for TypedJob<A, T>
where
    A: Send + Sync + 'static,
    T: Send + 'static,
{
    fn run<'c>(
        &'c mut self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            match (self.body)(conn, &self.args).await {
                Err(StoreError::Database(error)) => Err(error),
                Ok(value) => {
                    self.outcome = Some(Ok(value));
                    Ok(true)
                }
                Err(refusal) => {
                    self.outcome = Some(Err(refusal));
                    Ok(false)
                }
            }
        })
    }

    fn answer(self: Box<Self>) {
        let outcome = self
            .outcome
            .unwrap_or(Err(StoreError::Database(sqlx::Error::WorkerCrashed)));
        // The caller may have given up waiting; then nobody needs the answer.
        let _ = self.reply.send(outcome);
    }

    fn fail(self: Box<Self>, error: sqlx::Error) {
        let _ = self.reply.send(Err(StoreError::Database(error)));
    }
}

/// The writer task: batch, commit, answer, until closed.
async fn run(pool: SqlitePool, mut commands: mpsc::Receiver<Command>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = commands.recv().await {
        take(first, &mut batch, &mut commands);
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(command) => take(command, &mut batch, &mut commands),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        match pool.acquire().await {
            Ok(mut conn) => commit_batch(&mut conn, &mut batch).await,
            Err(error) => {
                tracing::error!(%error, "the SQLite writer has no connection");
                for job in batch.drain(..) {
                    job.fail(sqlx::Error::PoolClosed);
                }
            }
        }
    }
    pool.close().await;
}

/// Adds a command to the batch; a close request stops new sends, and the
/// loop ends once what was queued before it is done.
fn take(command: Command, batch: &mut Vec<Box<dyn Job>>, commands: &mut mpsc::Receiver<Command>) {
    match command {
        Command::Write(job) => batch.push(job),
        Command::Close => commands.close(),
    }
}

/// Commits `batch` in one transaction, or write by write if that fails, and
/// answers every job. Leaves `batch` empty.
async fn commit_batch(conn: &mut SqliteConnection, batch: &mut Vec<Box<dyn Job>>) {
    if batch.len() == 1 {
        // Nothing to share the transaction with: skip the savepoints.
        if let Some(job) = batch.pop() {
            commit_alone(conn, job).await;
        }
        return;
    }
    match run_together(conn, batch).await {
        Ok(()) => {
            if let Some(failures) = BATCH_FAILURES.success() {
                tracing::warn!(
                    failures,
                    "write batches commit again after {failures} failed"
                );
            }
            for job in batch.drain(..) {
                job.answer();
            }
        }
        Err(error) => {
            if let Verdict::Log { suppressed } = BATCH_FAILURES.failure(std::time::Instant::now()) {
                tracing::warn!(%error, writes = batch.len(), suppressed, "batch failed; retrying its writes one by one");
            }
            rollback(conn).await;
            for job in batch.drain(..) {
                commit_alone(conn, job).await;
            }
        }
    }
}

/// Runs every job in one transaction.
///
/// Each job starts with a savepoint, and a refused one is rolled back to
/// it. Savepoints are not released one by one (`ROLLBACK TO` the name
/// reaches the newest savepoint of that name, which is this job's); the
/// `COMMIT` releases them all, a statement per job saved.
async fn run_together(
    conn: &mut SqliteConnection,
    batch: &mut [Box<dyn Job>],
) -> Result<(), sqlx::Error> {
    execute(conn, "BEGIN IMMEDIATE").await?;
    for job in batch.iter_mut() {
        execute(conn, "SAVEPOINT write").await?;
        if !job.run(conn).await? {
            execute(conn, "ROLLBACK TO write").await?;
        }
    }
    execute(conn, "COMMIT").await
}

/// Runs one job in its own transaction and answers it.
async fn commit_alone(conn: &mut SqliteConnection, mut job: Box<dyn Job>) {
    let result = async {
        execute(conn, "BEGIN IMMEDIATE").await?;
        if job.run(conn).await? {
            execute(conn, "COMMIT").await
        } else {
            execute(conn, "ROLLBACK").await
        }
    }
    .await;
    match result {
        Ok(()) => job.answer(),
        Err(error) => {
            rollback(conn).await;
            job.fail(error);
        }
    }
}

/// Ends a failed transaction. SQLite may already have rolled it back (then
/// `ROLLBACK` reports that no transaction is active, which is fine).
async fn rollback(conn: &mut SqliteConnection) {
    if let Err(error) = execute(conn, "ROLLBACK").await {
        tracing::debug!(%error, "rollback after a failed write");
    }
}

/// Runs one statement without arguments.
async fn execute(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(&mut *conn).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    /// A pool of one connection to a private in-memory database with one
    /// table.
    async fn pool() -> SqlitePool {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    async fn insert(conn: &mut SqliteConnection, id: &i64) -> Result<i64> {
        sqlx::query("INSERT INTO notes (id) VALUES (?)")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(*id)
    }

    /// Writes, then refuses: the write must be undone.
    async fn insert_then_refuse(conn: &mut SqliteConnection, id: &i64) -> Result<i64> {
        insert(conn, id).await?;
        Err(StoreError::Conflict("refused after writing"))
    }

    /// Fails in the database, failing the batch it is in.
    async fn broken(conn: &mut SqliteConnection, _id: &i64) -> Result<i64> {
        sqlx::query("INSERT INTO no_such_table VALUES (1)")
            .execute(&mut *conn)
            .await?;
        Ok(0)
    }

    async fn stored(pool: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM notes ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// Sends every write before the writer task gets to run (the test
    /// runtime has one thread), so they all land in one batch.
    async fn write_all(
        writer: Arc<Writer>,
        kinds: &[(i64, WriteBody<i64, i64>)],
    ) -> Vec<Result<i64>> {
        let handles: Vec<_> = kinds
            .iter()
            .map(|&(id, body)| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.write(id, body).await })
            })
            .collect();
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.unwrap());
        }
        results
    }

    fn plain() -> WriteBody<i64, i64> {
        |conn, id| Box::pin(insert(conn, id))
    }

    #[tokio::test]
    async fn a_refused_write_leaves_nothing_and_the_batch_commits() {
        let pool = pool().await;
        let writer = Arc::new(Writer::start(pool.clone()));
        let refuse: WriteBody<i64, i64> = |conn, id| Box::pin(insert_then_refuse(conn, id));
        let results = write_all(writer.clone(), &[(1, plain()), (2, refuse), (3, plain())]).await;
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert!(matches!(results[1], Err(StoreError::Conflict(_))));
        assert_eq!(results[2].as_ref().unwrap(), &3);
        assert_eq!(stored(&pool).await, [1, 3]);
        writer.close().await;
    }

    #[tokio::test]
    async fn a_failed_batch_is_retried_write_by_write() {
        let pool = pool().await;
        let writer = Arc::new(Writer::start(pool.clone()));
        let fail: WriteBody<i64, i64> = |conn, id| Box::pin(broken(conn, id));
        let results = write_all(
            writer.clone(),
            &[
                (1, plain()),
                (2, plain()),
                (0, fail),
                (4, plain()),
                (1, plain()),
            ],
        )
        .await;
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert_eq!(results[1].as_ref().unwrap(), &2);
        assert!(matches!(results[2], Err(StoreError::Database(_))));
        assert_eq!(results[3].as_ref().unwrap(), &4);
        // A duplicate key is a database error of that write alone.
        assert!(matches!(results[4], Err(StoreError::Database(_))));
        assert_eq!(stored(&pool).await, [1, 2, 4]);
        writer.close().await;
        assert!(matches!(
            writer.write(5, plain()).await,
            Err(StoreError::Database(sqlx::Error::PoolClosed))
        ));
    }
}
