//! The hot path of the SQLite store: message appends and acks.
//!
//! Every other write goes through the sqlx writer task ([`super::writer`]),
//! where each statement is a message to sqlx's connection thread and back.
//! For the writes every chat message makes, those hops (a thread wake-up
//! each way, per statement) cost far more than SQLite itself. So appends and
//! acks have a thread of their own that owns a direct connection: it takes
//! everything queued (up to [`MAX_BATCH`]), runs it in one `BEGIN IMMEDIATE
//! ... COMMIT` with cached prepared statements, and only then, in commit
//! order, runs each append's commit hook and answers. Group commit, as in
//! the writer task, without the hops.
//!
//! The statements are the same as the sqlx path's (`writes.rs`), so both
//! paths agree on what is stored; the conformance suite runs through this
//! one for file databases.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use chat_proto::{ChatMessage, ConversationId, GroupId, Seq, Target, UserId};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Failure, Result, StoreError};
use crate::log_throttle::{self, LogThrottle, Verdict};
use crate::repo::{Appended, NewMessage, OnCommit, PendingAppend};
use crate::rows::{from_db, target_to_db, to_db};

use super::checkpoint::{self, HotBound, WalBound};

/// Most writes one transaction takes.
const MAX_BATCH: usize = 256;

/// Writes that may wait for the thread before callers wait to queue.
const QUEUE_LEN: usize = 4 * MAX_BATCH;

/// How long the connection waits for the other writer's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
    Close(oneshot::Sender<()>),
    /// Panics on the thread, as a bug would (tests of the supervision).
    #[cfg(test)]
    Panic,
}

/// What a job produced, kept until the batch has committed.
enum Outcome {
    Appended(Result<Appended>),
    Acked(Result<Seq>),
}

/// The handle to the hot-path thread and the checkpointer thread.
#[derive(Debug)]
pub(super) struct HotWriter {
    jobs: mpsc::Sender<Job>,
    bound: Arc<WalBound>,
    /// The checkpointer thread, taken once to be joined at close (or told
    /// to end on drop). A plain mutex: the store is shared, closing takes
    /// `&self`, and nothing else ever touches it.
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    /// Set if either thread dies.
    failure: Failure,
}

impl HotWriter {
    /// Opens a direct connection to the database file at `path` and starts
    /// the thread, and a second connection for the checkpointer thread.
    /// `synchronous` is the pragma value (`NORMAL`, `FULL`, ...); the
    /// `-wal` file is kept under `wal_limit` bytes (see [`checkpoint`]).
    pub(super) fn start(path: &Path, synchronous: &str, wal_limit: u64) -> Result<HotWriter> {
        let bound = Arc::new(WalBound::new(path, wal_limit));
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(engine)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(engine)?;
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous};"
        ))
        .map_err(engine)?;
        // Checkpoints (copying the log into the database, with a disk sync)
        // would otherwise run inside a commit on this thread, every 1000
        // pages; the checkpointer thread does them instead, and this thread
        // only restarts the log when it grows long.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {};",
            checkpoint::journal_size_limit(wal_limit)
        ))
        .map_err(engine)?;
        conn.set_prepared_statement_cache_capacity(32);
        let checkpointer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(engine)?;
        checkpointer.busy_timeout(BUSY_TIMEOUT).map_err(engine)?;
        let checkpoint_bound = bound.clone();
        let failure = Failure::default();
        let checkpoint_failure = failure.clone();
        let checkpointer = std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || {
                checkpoint_failure.supervise("the SQLite checkpointer thread", || {
                    checkpoint::checkpoint_loop(&checkpointer, &checkpoint_bound, BUSY_TIMEOUT);
                });
            })
            .map_err(|error| StoreError::Config(format!("cannot start a thread: {error}")))?;
        bound.set_checkpointer(checkpointer.thread().clone());
        let (jobs, receiver) = mpsc::channel(QUEUE_LEN);
        let hot_bound = HotBound::new(bound.clone(), BUSY_TIMEOUT);
        let hot_failure = failure.clone();
        let started = std::thread::Builder::new()
            .name("sqlite-hot".to_owned())
            .spawn(move || {
                // A panic here drops the queue: every later append and ack
                // is answered as unavailable, and the failure tells the
                // node to stop (see `Store::failure`).
                hot_failure.supervise("the SQLite hot-path thread", || {
                    run(conn, receiver, hot_bound);
                });
            });
        let hot = HotWriter {
            jobs,
            bound,
            checkpointer: Mutex::new(Some(checkpointer)),
            failure,
        };
        // On failure, dropping `hot` stops the checkpointer.
        started.map_err(|error| StoreError::Config(format!("cannot start a thread: {error}")))?;
        Ok(hot)
    }

    /// Queues an append and returns its pending result; see
    /// [`crate::MessageStore::queue_append`].
    pub(super) async fn queue(
        &self,
        message: NewMessage,
        on_commit: OnCommit,
    ) -> Result<PendingAppend> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Append {
            message,
            on_commit,
            reply,
        })
        .await?;
        Ok(Box::pin(async move { answer.await.map_err(|_| closed())? }))
    }

    /// Moves an acknowledged position; see [`crate::MessageStore::ack`].
    pub(super) async fn ack(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<Seq> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Ack {
            user,
            conversation,
            seq,
            reply,
        })
        .await?;
        answer.await.map_err(|_| closed())?
    }

    /// What stopped, if a thread of the hot path died.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure.get()
    }

    /// Queues a job that panics on the hot thread.
    #[cfg(test)]
    pub(super) async fn inject_panic(&self) {
        let _ = self.jobs.send(Job::Panic).await;
    }

    /// Commits what is queued and stops the hot thread. The checkpointer
    /// goes on until [`HotWriter::close_log`].
    pub(super) async fn close(&self) {
        self.bound.close();
        let (done, stopped) = oneshot::channel();
        if self.jobs.send(Job::Close(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }

    /// Runs the last checkpoint, which empties the log, and stops the
    /// checkpointer. Call it once every other connection to the database is
    /// closed, so that no reader or writer can keep the log from emptying.
    pub(super) async fn close_log(&self) {
        let Some(thread) = self.take_checkpointer() else {
            return;
        };
        checkpoint::finish(&self.bound, thread.thread());
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_or(true, |joined| joined.is_err())
        {
            tracing::error!("the SQLite checkpointer thread failed");
        }
    }

    fn take_checkpointer(&self) -> Option<JoinHandle<()>> {
        self.checkpointer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    async fn submit(&self, job: Job) -> Result<()> {
        self.jobs.send(job).await.map_err(|_| closed())
    }
}

impl Drop for HotWriter {
    /// Stops the checkpointer without waiting, if [`HotWriter::close_log`]
    /// has not (a store that failed to open, or was dropped unclosed).
    fn drop(&mut self) {
        if let Some(thread) = self.take_checkpointer() {
            checkpoint::finish(&self.bound, thread.thread());
        }
    }
}

fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

fn engine(error: rusqlite::Error) -> StoreError {
    StoreError::Engine(error.to_string())
}

fn run(mut conn: Connection, mut jobs: mpsc::Receiver<Job>, mut bound: HotBound) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = jobs.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Some(index) = batch.iter().position(|job| matches!(job, Job::Close(_))) {
            // Everything queued before the close still commits; nothing after.
            for job in batch.drain(index..) {
                if let Job::Close(done) = job {
                    closing.get_or_insert(done);
                }
            }
            jobs.close();
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, &mut batch);
            bound.after_commit(&conn);
        }
    }
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Failed batches, logged once per interval with a count (a full disk fails
/// every batch: a line each would fill what little is left).
static BATCH_FAILURES: LogThrottle = LogThrottle::new(log_throttle::DEFAULT_INTERVAL);

/// Runs a batch in one transaction and answers every job, in order.
fn commit_batch(conn: &mut Connection, batch: &mut Vec<Job>) {
    let started = std::time::Instant::now();
    let together = run_together(conn, batch);
    metrics::histogram!("chatd_store_commit_batch_size").record(batch.len() as f64);
    metrics::histogram!("chatd_store_commit_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match together {
        Ok(outcomes) => {
            if let Some(failures) = BATCH_FAILURES.success() {
                tracing::warn!(failures, "hot batches commit again after {failures} failed");
            }
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                answer(job, outcome);
            }
        }
        Err(error) => {
            if let Verdict::Log { suppressed } = BATCH_FAILURES.failure(started) {
                tracing::warn!(%error, writes = batch.len(), suppressed, "hot batch failed; retrying its writes one by one");
            }
            for job in batch.drain(..) {
                let outcome = run_alone(conn, &job);
                answer(job, outcome);
            }
        }
    }
}

/// The outcome of every job if the transaction committed; a database error
/// (not a refusal) rolls everything back.
fn run_together(conn: &mut Connection, batch: &[Job]) -> Result<Vec<Outcome>> {
    let transaction = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(engine)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut readers = Readers::default();
    for job in batch {
        let outcome = run_job(&transaction, &mut readers, job);
        if let Some(error) = database_error(&outcome) {
            return Err(error);
        }
        outcomes.push(outcome);
    }
    readers.write(&transaction)?;
    transaction.commit().map_err(engine)?;
    Ok(outcomes)
}

fn run_alone(conn: &mut Connection, job: &Job) -> Outcome {
    let mut attempt = || -> Result<Outcome> {
        let transaction = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(engine)?;
        let mut readers = Readers::default();
        let outcome = run_job(&transaction, &mut readers, job);
        if let Some(error) = database_error(&outcome) {
            return Err(error);
        }
        readers.write(&transaction)?;
        transaction.commit().map_err(engine)?;
        Ok(outcome)
    };
    attempt().unwrap_or_else(|error| match job {
        Job::Ack { .. } => Outcome::Acked(Err(error)),
        _ => Outcome::Appended(Err(error)),
    })
}

/// A failure of the database itself, as opposed to a refusal.
fn database_error(outcome: &Outcome) -> Option<StoreError> {
    let error = match outcome {
        Outcome::Appended(Err(error)) | Outcome::Acked(Err(error)) => error,
        _ => return None,
    };
    match error {
        StoreError::NotFound(_) | StoreError::Conflict(_) | StoreError::Forbidden(_) => None,
        other => Some(StoreError::Engine(other.to_string())),
    }
}

fn run_job(conn: &Connection, readers: &mut Readers, job: &Job) -> Outcome {
    match job {
        Job::Append { message, .. } => Outcome::Appended(append(conn, readers, message)),
        Job::Ack {
            user,
            conversation,
            seq,
            ..
        } => Outcome::Acked(
            // An ack reads the member's row: the positions moved so far
            // are written first.
            readers
                .write(conn)
                .and_then(|()| ack(conn, *user, *conversation, *seq)),
        ),
        Job::Close(_) => Outcome::Acked(Err(closed())),
        #[cfg(test)]
        Job::Panic => panic!("a panic on the hot path, on purpose"),
    }
}

/// Answers a job after its batch committed: the append's hook first, so
/// hooks run in commit order on this thread.
fn answer(job: Job, outcome: Outcome) {
    match (job, outcome) {
        (
            Job::Append {
                on_commit, reply, ..
            },
            Outcome::Appended(result),
        ) => {
            if let Ok(appended) = &result {
                // The hook runs delivery code on this thread; a panic in it
                // must not end the thread, and with it every later write.
                // The message is committed: it is answered, and its pushes
                // come back through sync.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_commit(appended)))
                    .is_err()
                {
                    tracing::error!(
                        "a commit hook panicked; the write stands, its pushes are lost"
                    );
                }
            }
            let _ = reply.send(result);
        }
        (Job::Ack { reply, .. }, Outcome::Acked(result)) => {
            let _ = reply.send(result);
        }
        // Jobs and outcomes are made in pairs, and a close is never run.
        _ => {}
    }
}

/// The read positions a transaction's appends moved, written once per
/// sender and conversation before it commits: a sender with several
/// messages in one batch (a pipelining client) moves its row once, to its
/// last message, rather than once per message.
#[derive(Default)]
struct Readers(HashMap<(i64, i64), i64>);

impl Readers {
    /// `sender` wrote `seq` in `conversation`, and so has read it.
    fn note(&mut self, conversation: i64, sender: i64, seq: i64) {
        let position = self.0.entry((conversation, sender)).or_insert(seq);
        *position = (*position).max(seq);
    }

    /// Writes the positions noted since the last call.
    fn write(&mut self, conn: &Connection) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut statement = conn
            .prepare_cached(
                "UPDATE conversation_members SET read_seq = ?1 \
                 WHERE conversation_id = ?2 AND user_id = ?3",
            )
            .map_err(engine)?;
        for ((conversation, sender), seq) in self.0.drain() {
            statement
                .execute(params![seq, conversation, sender])
                .map_err(engine)?;
        }
        Ok(())
    }
}

fn append(conn: &Connection, readers: &mut Readers, message: &NewMessage) -> Result<Appended> {
    let sender = to_db(message.sender_id.0);
    let taken: Option<(i64, i64)> = match message.target {
        Target::User(to) => conn
            .prepare_cached(
                "UPDATE conversations SET last_seq = last_seq + 1, last_activity_ms = ?4 \
                 WHERE id = (SELECT conversation_id FROM friends \
                             WHERE user_id = ?1 AND friend_id = ?2) \
                 AND NOT EXISTS (SELECT 1 FROM messages \
                                 WHERE sender_id = ?1 AND client_msg_id = ?3) \
                 RETURNING id, last_seq",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(
                        params![sender, to_db(to.0), message.client_msg_id, message.now_ms],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()
            }),
        Target::Group(group) => conn
            .prepare_cached(
                "UPDATE conversations SET last_seq = last_seq + 1, last_activity_ms = ?4 \
                 WHERE id = (SELECT g.conversation_id FROM chat_groups g \
                             JOIN group_members m ON m.group_id = g.id \
                             WHERE g.id = ?2 AND m.user_id = ?1) \
                 AND NOT EXISTS (SELECT 1 FROM messages \
                                 WHERE sender_id = ?1 AND client_msg_id = ?3) \
                 RETURNING id, last_seq",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(
                        params![
                            sender,
                            to_db(group.0),
                            message.client_msg_id,
                            message.now_ms
                        ],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()
            }),
    }
    .map_err(engine)?;
    let Some((conversation, seq)) = taken else {
        return duplicate_or_refusal(conn, message);
    };
    let (target_kind, target_id) = target_to_db(message.target);
    conn.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, sender_id, target_kind, target_id, \
         client_msg_id, body, server_ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            conversation,
            seq,
            sender,
            target_kind,
            target_id,
            message.client_msg_id,
            message.body,
            message.now_ms
        ])
    })
    .map_err(engine)?;
    // Whoever writes has read what they answer: every message after a
    // member's read position is someone else's, so the unread count is
    // last_seq - read_seq without counting. Written before the commit.
    readers.note(conversation, sender, seq);
    let conversation_id = ConversationId(from_db(conversation));
    let recipients = match message.target {
        // A pair's conversation has exactly the pair as members.
        Target::User(to) => {
            let mut pair = vec![message.sender_id, to];
            pair.sort_unstable();
            pair
        }
        Target::Group(_) => recipients(conn, conversation)?,
    };
    Ok(Appended {
        message: ChatMessage {
            conversation_id,
            seq: Seq(from_db(seq)),
            sender_id: message.sender_id,
            sender_name: message.sender_name.clone(),
            target: message.target,
            client_msg_id: message.client_msg_id.clone(),
            body: message.body.clone(),
            server_ts_ms: message.now_ms,
            recalled: None,
        },
        duplicate: false,
        recipients,
    })
}

/// Why an append took no number: a resend (answered with the original) or
/// a refusal.
fn duplicate_or_refusal(conn: &Connection, message: &NewMessage) -> Result<Appended> {
    let sender = to_db(message.sender_id.0);
    if let Some(original) = stored(conn, sender, &message.client_msg_id)? {
        let recipients = recipients(conn, to_db(original.conversation_id.0))?;
        return Ok(Appended {
            message: original,
            duplicate: true,
            recipients,
        });
    }
    let (sql, id, refusal, missing) = match message.target {
        Target::User(to) => (
            "SELECT 1 FROM users WHERE id = ?",
            to.0,
            StoreError::Forbidden("not friends"),
            StoreError::NotFound("user"),
        ),
        Target::Group(group) => (
            "SELECT 1 FROM chat_groups WHERE id = ?",
            group.0,
            StoreError::Forbidden("not a member of the group"),
            StoreError::NotFound("group"),
        ),
    };
    let exists: Option<i64> = conn
        .prepare_cached(sql)
        .and_then(|mut statement| {
            statement
                .query_row([to_db(id)], |row| row.get(0))
                .optional()
        })
        .map_err(engine)?;
    Err(if exists.is_some() { refusal } else { missing })
}

/// The stored message a sender sent with this id, if any.
fn stored(conn: &Connection, sender: i64, client_msg_id: &str) -> Result<Option<ChatMessage>> {
    conn.prepare_cached(
        "SELECT m.conversation_id, m.seq, m.sender_id, u.name, m.target_kind, m.target_id, \
         m.client_msg_id, m.body, m.server_ts_ms, m.recalled_by, m.recalled_at_ms \
         FROM messages m JOIN users u ON u.id = m.sender_id \
         WHERE m.sender_id = ? AND m.client_msg_id = ?",
    )
    .and_then(|mut statement| {
        statement
            .query_row(params![sender, client_msg_id], |row| {
                let kind: String = row.get(4)?;
                let target_id: i64 = row.get(5)?;
                let target = if kind == "group" {
                    Target::Group(GroupId(from_db(target_id)))
                } else {
                    Target::User(UserId(from_db(target_id)))
                };
                Ok(ChatMessage {
                    conversation_id: ConversationId(from_db(row.get(0)?)),
                    seq: Seq(from_db(row.get(1)?)),
                    sender_id: UserId(from_db(row.get(2)?)),
                    sender_name: row.get(3)?,
                    target,
                    client_msg_id: row.get(6)?,
                    body: row.get(7)?,
                    server_ts_ms: row.get(8)?,
                    recalled: crate::rows::recalled(row.get(9)?, row.get(10)?),
                })
            })
            .optional()
    })
    .map_err(engine)
}

/// Everyone a conversation's messages are for, by id.
fn recipients(conn: &Connection, conversation: i64) -> Result<Vec<UserId>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT user_id FROM conversation_members WHERE conversation_id = ? ORDER BY user_id",
        )
        .map_err(engine)?;
    let ids = statement
        .query_map([conversation], |row| row.get::<_, i64>(0))
        .map_err(engine)?
        .collect::<Result<Vec<i64>, _>>()
        .map_err(engine)?;
    Ok(ids.into_iter().map(|id| UserId(from_db(id))).collect())
}

fn ack(conn: &Connection, user: UserId, conversation: ConversationId, seq: Seq) -> Result<Seq> {
    // Forward only, and never past the conversation's end.
    let acked: Option<i64> = conn
        .prepare_cached(
            "UPDATE conversation_members SET acked_seq = MAX(acked_seq, MIN(?, \
             (SELECT last_seq FROM conversations WHERE id = conversation_members.conversation_id))) \
             WHERE conversation_id = ? AND user_id = ? RETURNING acked_seq",
        )
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![to_db(seq.0), to_db(conversation.0), to_db(user.0)],
                    |row| row.get(0),
                )
                .optional()
        })
        .map_err(engine)?;
    acked
        .map(|acked| Seq(from_db(acked)))
        .ok_or(StoreError::Forbidden("not a member of the conversation"))
}
