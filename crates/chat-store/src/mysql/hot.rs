//! The hot path of the MySQL store: appends and acks, group-committed.
//!
//! With `innodb_flush_log_at_trx_commit=1` (the default, and what makes an
//! acknowledged message survive a crash) every commit waits for a log sync.
//! A transaction per message caps a node at what InnoDB's own group commit
//! folds together, a few thousand messages a second. So, as on SQLite
//! (`sqlite/hot.rs`), appends and acks go to one task per store that owns a
//! connection of its own: it takes everything queued (up to [`MAX_BATCH`]
//! writes or [`MAX_BATCH_BYTES`] of text), runs it as one transaction
//! (`batch.rs`: three round trips whatever the batch holds), and
//! only after the `COMMIT` runs each append's commit hook and answers, in
//! commit order. One log sync then covers every message that arrived during
//! the previous commit.
//!
//! A deadlock or lock wait timeout (with another node's batch or another
//! write) rolls the batch back and runs it again, in the same order, a few
//! times; then each write alone, in order. A resend met at the `INSERT`
//! (see `batch.rs`) runs the batch again at once, looking resends up. A
//! database error that is not about locks runs the writes alone, so one bad
//! write fails only itself. Nothing is answered before the transaction that holds it
//! commits. A batch, retries included, gets the store's timeout; past it
//! the connection is dropped (the server rolls back whatever it held) and
//! the batch's writes fail with `TimedOut`.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chat_proto::{ConversationId, Seq, UserId};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

use super::batch::{self, Item, Outcome, RouteCache};
use super::{backoff, is_lock_conflict, prepare_session, MAX_ATTEMPTS};
use crate::error::{Result, StoreError};
use crate::log_throttle::{self, LogThrottle, Verdict};
use crate::repo::{Appended, NewMessage, OnCommit, PendingAppend};

/// Most writes one transaction takes.
const MAX_BATCH: usize = 256;

/// Most message text one transaction takes (the first write of a batch is
/// always taken): keeps a batch's `INSERT` well inside the server's
/// `max_allowed_packet` (16 MiB by default) however large messages may be.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Writes that may wait for the task before callers wait to queue.
const QUEUE_LEN: usize = 4 * MAX_BATCH;

/// Prepared statements the hot connection keeps. A batch's statements
/// differ in text with its size (one placeholder group per row), so this
/// holds every size of every statement and steady traffic never prepares.
const STATEMENT_CACHE: usize = 2048;

/// A write for the task.
enum Job {
    Append {
        message: NewMessage,
        on_commit: OnCommit,
        reply: oneshot::Sender<Result<Appended>>,
    },
    Ack {
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
        reply: oneshot::Sender<Result<Seq>>,
    },
}

/// What the task receives.
enum Command {
    Write(Job),
    /// Commit what was queued before, take nothing more, and stop.
    Close(oneshot::Sender<()>),
}

/// The handle to the hot-path task.
#[derive(Debug)]
pub(super) struct HotWriter {
    commands: mpsc::Sender<Command>,
    timeout: Duration,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// Set if the task dies.
    failure: crate::error::Failure,
}

impl HotWriter {
    /// Starts the task; it connects with `options` when the first write
    /// comes (and again after losing its connection). Must be called inside
    /// a Tokio runtime.
    pub(super) fn start(
        options: MySqlConnectOptions,
        timeout: Duration,
        lock_wait_secs: u64,
    ) -> HotWriter {
        let (commands, receiver) = mpsc::channel(QUEUE_LEN);
        let committer = Committer {
            options: options.statement_cache_capacity(STATEMENT_CACHE),
            timeout,
            lock_wait_secs,
            conn: None,
            routes: RouteCache::default(),
        };
        let failure = crate::error::Failure::default();
        let watched = failure.clone();
        // The committer runs as a task of its own so that a panic in it is
        // seen here (as the join error) and recorded, not just lost with
        // the queue: every later append would be refused, and the node
        // should stop (see `Store::failure`).
        let task = tokio::spawn(async move {
            if let Err(error) = tokio::spawn(committer.run(receiver)).await {
                if error.is_panic() {
                    watched.set(format!(
                        "the MySQL hot-path task panicked: {}",
                        crate::error::panic_text(error.into_panic().as_ref())
                    ));
                }
            }
        });
        HotWriter {
            commands,
            timeout,
            task: tokio::sync::Mutex::new(Some(task)),
            failure,
        }
    }

    /// What stopped, if the hot-path task died.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure.get()
    }

    /// Queues an append and returns its pending result; see
    /// [`crate::MessageStore::queue_append`]. The result comes within the
    /// store's timeout of this call.
    pub(super) async fn queue(
        &self,
        message: NewMessage,
        on_commit: OnCommit,
    ) -> Result<PendingAppend> {
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        self.submit(
            Job::Append {
                message,
                on_commit,
                reply,
            },
            deadline,
        )
        .await?;
        let timeout = self.timeout;
        Ok(Box::pin(async move {
            wait_until(answer, deadline, timeout).await
        }))
    }

    /// Moves an acknowledged position; see [`crate::MessageStore::ack`].
    pub(super) async fn ack(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<Seq> {
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        self.submit(
            Job::Ack {
                user,
                conversation,
                seq,
                reply,
            },
            deadline,
        )
        .await?;
        self.wait(answer, deadline).await
    }

    /// Commits what is queued and stops the task. Writes sent afterwards
    /// fail with `PoolClosed`. Calling it again is harmless.
    pub(super) async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Close(done)).await.is_ok() {
            let _ = stopped.await;
        }
        if let Some(task) = self.task.lock().await.take() {
            if let Err(error) = task.await {
                tracing::error!(%error, "the MySQL hot-path task failed");
            }
        }
    }

    async fn submit(&self, job: Job, deadline: Instant) -> Result<()> {
        match timeout_at(deadline, self.commands.send(Command::Write(job))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(StoreError::TimedOut(self.timeout)),
        }
    }

    async fn wait<T>(&self, answer: oneshot::Receiver<Result<T>>, deadline: Instant) -> Result<T> {
        wait_until(answer, deadline, self.timeout).await
    }
}

/// The answer to a queued write, or `TimedOut` at `deadline`.
async fn wait_until<T>(
    answer: oneshot::Receiver<Result<T>>,
    deadline: Instant,
    timeout: Duration,
) -> Result<T> {
    match timeout_at(deadline, answer).await {
        Ok(Ok(result)) => result,
        // The task answers every write it takes; a dropped reply means it
        // stopped without running this one.
        Ok(Err(_)) => Err(closed()),
        Err(_) => Err(StoreError::TimedOut(timeout)),
    }
}

fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

/// The task's state: how to connect, the connection while it works, and
/// where senders' messages go.
struct Committer {
    options: MySqlConnectOptions,
    timeout: Duration,
    lock_wait_secs: u64,
    conn: Option<MySqlConnection>,
    routes: RouteCache,
}

impl Committer {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // A write taken from the queue that did not fit the batch before.
        let mut carried = None;
        let mut closing = None;
        while closing.is_none() {
            let first = match carried.take() {
                Some(job) => Command::Write(job),
                None => match commands.recv().await {
                    Some(command) => command,
                    None => break,
                },
            };
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Write(job) => {
                        let size = job_bytes(&job);
                        if !batch.is_empty() && bytes + size > MAX_BATCH_BYTES {
                            carried = Some(job);
                            break;
                        }
                        bytes += size;
                        batch.push(job);
                    }
                    Command::Close(done) => {
                        // Everything queued before the close still commits;
                        // anything after is dropped unanswered (its caller
                        // sees the store closed).
                        closing = Some(done);
                        commands.close();
                        break;
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = commands.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.commit(std::mem::take(&mut batch)).await;
            }
        }
        if let Some(carried) = carried {
            self.commit(vec![carried]).await;
        }
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(self.timeout, conn.close()).await;
        }
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    /// Commits `batch` and answers every write in it, in order.
    async fn commit(&mut self, batch: Vec<Job>) {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let items: Vec<Item<'_>> = batch.iter().map(item).collect();
        let result = self.attempt(&items, deadline).await;
        drop(items);
        metrics::histogram!("chatd_store_commit_batch_size").record(batch.len() as f64);
        metrics::histogram!("chatd_store_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                if let Some(failures) = BATCH_FAILURES.success() {
                    tracing::warn!(
                        failures,
                        "MySQL batches commit again after {failures} failed"
                    );
                }
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    answer(job, outcome);
                }
            }
            Err(error) if batch.len() > 1 && self.conn.is_some() => {
                // The database refused something in the batch, or kept
                // choosing it as a deadlock victim: commit the writes one by
                // one, in order, so that only what fails fails.
                if let Verdict::Log { suppressed } =
                    BATCH_FAILURES.failure(Instant::now().into_std())
                {
                    tracing::warn!(%error, writes = batch.len(), suppressed, "MySQL batch failed; committing its writes one by one");
                }
                for job in batch {
                    let result = self.attempt(&[item(&job)], deadline).await;
                    match result.map(|mut outcomes| outcomes.pop()) {
                        Ok(Some(outcome)) => answer(job, outcome),
                        Ok(None) => fail(job, &StoreError::Engine("no outcome".to_owned())),
                        Err(error) => fail(job, &error),
                    }
                }
            }
            Err(error) => {
                // Timed out or lost the connection: trying each write again
                // would only take longer to say the same.
                if let Verdict::Log { suppressed } =
                    BATCH_FAILURES.failure(Instant::now().into_std())
                {
                    tracing::warn!(%error, writes = batch.len(), suppressed, "MySQL batch failed");
                }
                for job in batch {
                    fail(job, &error);
                }
            }
        }
    }

    /// Runs `items` as one transaction and commits it, trying again after a
    /// lock conflict, until `deadline`. On a timeout or a lost connection
    /// the connection is dropped (so `self.conn` is `None` after those).
    async fn attempt(&mut self, items: &[Item<'_>], deadline: Instant) -> Result<Vec<Outcome>> {
        if Instant::now() >= deadline {
            return Err(StoreError::TimedOut(self.timeout));
        }
        match timeout_at(deadline, self.retrying(items)).await {
            Ok(result) => result,
            Err(_) => {
                // Whatever the connection was doing is abandoned with it; the
                // server rolls back an open transaction when it goes.
                self.conn = None;
                Err(StoreError::TimedOut(self.timeout))
            }
        }
    }

    async fn retrying(&mut self, items: &[Item<'_>]) -> Result<Vec<Outcome>> {
        let mut attempt = 1;
        let mut look_up_resends = false;
        loop {
            let error = match self.once(items, look_up_resends).await {
                Ok(outcomes) => return Ok(outcomes),
                Err(error) => error,
            };
            if is_connection_lost(&error) {
                self.conn = None;
                return Err(error);
            }
            if let Some(conn) = &mut self.conn {
                if let Err(rollback) = conn.execute("ROLLBACK").await {
                    tracing::debug!(error = %rollback, "rollback failed; reconnecting");
                    self.conn = None;
                }
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            if batch::is_resend(&error) && !look_up_resends {
                // Not a conflict: run again at once, looking resends up.
                look_up_resends = true;
            } else if is_lock_conflict_error(&error) || batch::is_resend(&error) {
                // A resend met again: another node committed the same
                // message after we looked; the next look finds it.
                tracing::debug!(attempt, %error, "lock conflict; running the batch again");
                tokio::time::sleep(backoff(attempt)).await;
            } else {
                return Err(error);
            }
            attempt += 1;
        }
    }

    /// One try: the batch's statements and its `COMMIT`.
    async fn once(&mut self, items: &[Item<'_>], look_up_resends: bool) -> Result<Vec<Outcome>> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(StoreError::Engine("no connection".to_owned()));
        };
        batch::run(conn, items, look_up_resends, &mut self.routes).await
    }

    /// A new connection. It runs with autocommit off: each batch's first
    /// statement opens its transaction, which saves a `BEGIN` round trip
    /// per batch.
    async fn connect(&self) -> Result<MySqlConnection> {
        let mut conn = self.options.connect().await?;
        prepare_session(&mut conn, self.lock_wait_secs).await?;
        conn.execute("SET SESSION autocommit = 0").await?;
        Ok(conn)
    }
}

/// How much text a write adds to a batch's statements.
/// Failed batches, logged once per interval with a count (a database outage
/// fails every batch).
static BATCH_FAILURES: LogThrottle = LogThrottle::new(log_throttle::DEFAULT_INTERVAL);

fn job_bytes(job: &Job) -> usize {
    match job {
        Job::Append { message, .. } => message.body.len() + message.client_msg_id.len(),
        Job::Ack { .. } => 0,
    }
}

fn item(job: &Job) -> Item<'_> {
    match job {
        Job::Append { message, .. } => Item::Append(message),
        Job::Ack {
            user,
            conversation,
            seq,
            ..
        } => Item::Ack {
            user: *user,
            conversation: *conversation,
            seq: *seq,
        },
    }
}

/// Answers a write after its transaction committed: an append's hook first,
/// so hooks run in commit order on this task.
fn answer(job: Job, outcome: Outcome) {
    match (job, outcome) {
        (
            Job::Append {
                on_commit, reply, ..
            },
            Outcome::Appended(result),
        ) => {
            if let Ok(appended) = &result {
                // A hook that panics must not take the task (and with it
                // every later write of this node) down.
                if std::panic::catch_unwind(AssertUnwindSafe(|| on_commit(appended))).is_err() {
                    tracing::error!("a commit hook panicked");
                }
            }
            let _ = reply.send(result);
        }
        (Job::Ack { reply, .. }, Outcome::Acked(result)) => {
            let _ = reply.send(result);
        }
        // The batch gives each item the outcome of its kind.
        (job, _) => fail(job, &StoreError::Engine("mismatched outcome".to_owned())),
    }
}

/// Answers a write with (a copy of) the error that failed it.
fn fail(job: Job, error: &StoreError) {
    match job {
        Job::Append { reply, .. } => {
            let _ = reply.send(Err(copy(error)));
        }
        Job::Ack { reply, .. } => {
            let _ = reply.send(Err(copy(error)));
        }
    }
}

/// One error for each of the writes that shared a failed batch.
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::NotFound(what) => StoreError::NotFound(what),
        StoreError::Conflict(what) => StoreError::Conflict(what),
        StoreError::Forbidden(what) => StoreError::Forbidden(what),
        StoreError::TimedOut(limit) => StoreError::TimedOut(*limit),
        StoreError::Database(sqlx::Error::PoolClosed) => closed(),
        other => StoreError::Engine(other.to_string()),
    }
}

/// Whether InnoDB broke a deadlock or a lock wait: running the batch again
/// may succeed.
fn is_lock_conflict_error(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(error) if is_lock_conflict(error))
}

/// Whether the error says nothing about the statements, only that the
/// connection is gone or unusable (the server did not answer with an error
/// of its own).
fn is_connection_lost(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(error) if error.as_database_error().is_none())
}
