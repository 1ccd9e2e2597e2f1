//! Keeping the SQLite write-ahead log short: checkpoints and the log's bound.
//!
//! In WAL mode every commit appends the pages it changed to `PATH-wal`, and
//! a checkpoint copies them into the database file. The log starts again
//! from its beginning only when a checkpoint has copied all of it and no
//! reader still reads an older snapshot out of it. A PASSIVE checkpoint never
//! waits, so under sustained load that moment never comes: the hot writer
//! commits every few milliseconds, always past what the checkpoint copied.
//! The log then grows without bound (8.7 GB after two minutes at ~34k
//! messages/s), and with it the time every read spends looking pages up in
//! it, and the shared-memory index every connection maps.
//!
//! So the work is split:
//! - The checkpointer thread runs a PASSIVE checkpoint every
//!   [`CHECKPOINT_EVERY`], off the commit path. It copies what it can and
//!   blocks nobody, so most of the log is already in the database when the
//!   log is restarted.
//! - The hot writer, between two commit batches (when it holds no
//!   transaction, so no other writer is ever waited on), looks at the log's
//!   size. Past the trigger (half the limit) it wakes the checkpointer for
//!   a round and goes on committing; once that round has ended, it runs a
//!   RESTART checkpoint itself: that copies the little that came in during
//!   the round (appends wait meanwhile: a restart needs a moment with no
//!   writer), waits for readers to leave the log, and the next commit
//!   writes the log from its beginning. `journal_size_limit` (set to the
//!   trigger on both writer connections) then truncates the file back to
//!   the trigger size. If a reader holds an old snapshot (only an outside
//!   process holds one for long: chatd's own reads take milliseconds), the
//!   hot writer carries on and tries again a little later; once the log
//!   would pass the limit itself, it holds appends back and retries until
//!   the checkpoint completes. That backpressure is what bounds the log
//!   under any load.
//!
//! A clean close ends with a TRUNCATE checkpoint once every other connection
//! is closed, so a stopped server leaves an empty log or none.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::{Result, StoreError};

/// The bound on the `-wal` file unless the store URL names another.
pub(crate) const DEFAULT_WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// The smallest bound accepted. Below it the log would restart after nearly
/// every commit batch, and one batch alone could pass it.
pub(crate) const MIN_WAL_LIMIT: u64 = 1024 * 1024;

/// How often the checkpointer copies the log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Room kept below the limit besides the largest batch: other writers'
/// pages (a friend request, a login) land in the same log.
const HEADROOM: u64 = 64 * 1024;

/// How long a restart below the limit waits for readers to leave the log.
/// chatd's own reads last far less; a reader that takes longer is not
/// waited for while there is still room.
const EARLY_WAIT: Duration = Duration::from_millis(20);

/// After a restart below the limit failed, how long before the next try, so
/// that a long reader does not cost every batch [`EARLY_WAIT`].
const EARLY_RETRY_AFTER: Duration = Duration::from_millis(100);

/// At the limit, how long each attempt waits for readers; the hot writer
/// repeats attempts until one completes.
const LIMIT_WAIT: Duration = Duration::from_secs(1);

/// How often the hot writer says it is still holding appends back.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// The `journal_size_limit` for the writer connections under a bound of
/// `limit` bytes: the trigger, half the limit. The file is cut back to it
/// when the log restarts, so that once the file is larger, its size is the
/// length of the current log. The other half is room for what is committed
/// between the trigger and the restart: at ~35k messages/s the log grows
/// ~90 MB/s, and on a busy machine the checkpointer's round before the
/// restart takes up to ~100 ms.
pub(super) fn journal_size_limit(limit: u64) -> u64 {
    limit / 2
}

/// The log's bound, and what the hot writer and the checkpointer share.
#[derive(Debug)]
pub(super) struct WalBound {
    wal_path: PathBuf,
    limit: u64,
    trigger: u64,
    /// Held by whichever thread runs a checkpoint. SQLite runs one at a
    /// time and makes the other sleep in its busy handler, in steps of up to
    /// 100 ms; with this lock the hot writer can see that a round is under
    /// way and go on committing instead. Held only around one checkpoint
    /// call.
    checkpointing: Mutex<()>,
    /// Rounds of the checkpointer begun and ended, so the hot writer can
    /// tell when a round that began after it asked for one has ended.
    rounds_begun: AtomicU64,
    rounds_ended: AtomicU64,
    /// Commit batches of the hot writer so far: the checkpointer restarts
    /// the log itself only when the hot writer has been idle for a round.
    hot_batches: AtomicU64,
    /// The checkpointer thread, which the hot writer wakes for a round.
    checkpointer: OnceLock<Thread>,
    /// Set at close: the hot writer stops holding appends back.
    closing: AtomicBool,
    /// Set once every other connection is closed: the checkpointer runs its
    /// last, truncating checkpoint and ends.
    finishing: AtomicBool,
}

impl WalBound {
    /// The bound for the database file at `database`: its `-wal` file is
    /// kept under `limit` bytes.
    pub(super) fn new(database: &Path, limit: u64) -> WalBound {
        let mut wal_path = OsString::from(database.as_os_str());
        wal_path.push("-wal");
        WalBound {
            wal_path: PathBuf::from(wal_path),
            limit,
            trigger: journal_size_limit(limit),
            checkpointing: Mutex::new(()),
            rounds_begun: AtomicU64::new(0),
            rounds_ended: AtomicU64::new(0),
            hot_batches: AtomicU64::new(0),
            checkpointer: OnceLock::new(),
            closing: AtomicBool::new(false),
            finishing: AtomicBool::new(false),
        }
    }

    /// Names the checkpointer thread, once it runs.
    pub(super) fn set_checkpointer(&self, thread: Thread) {
        let _ = self.checkpointer.set(thread);
    }

    /// The size of the `-wal` file (0 when there is none).
    fn wal_size(&self) -> u64 {
        std::fs::metadata(&self.wal_path).map_or(0, |metadata| metadata.len())
    }

    /// Tells the hot writer to stop holding appends back: the store closes.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Wakes the checkpointer for a round now and returns that round's
    /// number: the first to begin after this call.
    fn ask_for_round(&self) -> u64 {
        let round = self.rounds_begun.load(Ordering::Acquire) + 1;
        if let Some(thread) = self.checkpointer.get() {
            thread.unpark();
        }
        round
    }

    fn round_ended(&self, round: u64) -> bool {
        self.rounds_ended.load(Ordering::Acquire) >= round
    }

    /// Runs one checkpoint of `mode` on `conn` once no other thread runs
    /// one, and says whether it completed; see [`WalBound::run_checkpoint`].
    fn checkpoint(
        &self,
        conn: &Connection,
        mode: &str,
        wait: Duration,
        normal_wait: Duration,
    ) -> bool {
        let _only_checkpoint = self
            .checkpointing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        run_checkpoint(conn, mode, wait, normal_wait)
    }

    /// As [`WalBound::checkpoint`], but `None` at once, without running it,
    /// while another thread runs one.
    fn try_checkpoint(
        &self,
        conn: &Connection,
        mode: &str,
        wait: Duration,
        normal_wait: Duration,
    ) -> Option<bool> {
        let _only_checkpoint = match self.checkpointing.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(run_checkpoint(conn, mode, wait, normal_wait))
    }
}

/// Runs one checkpoint of `mode` on `conn` and says whether it completed
/// (for RESTART and TRUNCATE: copied everything and saw every reader leave
/// the log). `wait` bounds how long SQLite waits for other connections;
/// `conn`'s own busy timeout is `normal_wait` again after.
fn run_checkpoint(conn: &Connection, mode: &str, wait: Duration, normal_wait: Duration) -> bool {
    let started = Instant::now();
    let outcome = conn.busy_timeout(wait).and_then(|()| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            row.get::<_, i64>(0)
        })
    });
    if let Err(error) = conn.busy_timeout(normal_wait) {
        tracing::warn!(%error, "cannot restore the SQLite busy timeout");
    }
    tracing::debug!(
        mode,
        micros = started.elapsed().as_micros(),
        ?outcome,
        "WAL checkpoint"
    );
    match outcome {
        // The first column is 1 when the checkpoint could not complete.
        Ok(busy) => busy == 0,
        Err(error) => {
            tracing::warn!(%error, mode, "WAL checkpoint failed");
            false
        }
    }
}

/// The hot writer's side of the bound, checked after every commit batch.
#[derive(Debug)]
pub(super) struct HotBound {
    bound: Arc<WalBound>,
    /// The connection's busy timeout outside checkpoints.
    normal_wait: Duration,
    /// The log's size after the previous batch (none before the first).
    last_size: Option<u64>,
    /// The most one batch has grown the log: the room the next batch may
    /// need before the limit.
    largest_step: u64,
    /// The checkpointer round asked for, to end before the restart.
    round: Option<u64>,
    /// No restart below the limit before this instant (one just failed).
    retry_at: Option<Instant>,
}

impl HotBound {
    /// The hot writer's view of `bound`; `normal_wait` is its connection's
    /// busy timeout.
    pub(super) fn new(bound: Arc<WalBound>, normal_wait: Duration) -> HotBound {
        HotBound {
            bound,
            normal_wait,
            last_size: None,
            largest_step: 0,
            round: None,
            retry_at: None,
        }
    }

    /// Keeps the log bounded; called by the hot writer between batches, on
    /// its own connection, with no transaction open. Returns at once while
    /// the log is short. Past the trigger, it has the checkpointer copy the
    /// log while this thread goes on committing, then restarts the log
    /// itself, with only what came in the meantime left to copy while
    /// appends wait. At the limit, it holds the writer (and so every append)
    /// until the restart completes or the store closes.
    pub(super) fn after_commit(&mut self, conn: &Connection) {
        self.bound.hot_batches.fetch_add(1, Ordering::Relaxed);
        let size = self.bound.wal_size();
        // A file that only got shorter (cut back after a restart) or was
        // already there at the first batch says nothing about one batch.
        let step = size.saturating_sub(self.last_size.unwrap_or(size));
        self.largest_step = self.largest_step.max(step);
        self.last_size = Some(size);
        if size <= self.bound.trigger {
            self.round = None;
            self.retry_at = None;
            return;
        }
        // Room for twice the largest batch seen and a few pages of other
        // writes: a batch can outgrow every earlier one, and the bound is
        // checked between batches, not inside one.
        let headroom = self.largest_step.saturating_mul(2) + HEADROOM;
        let at_limit = size.saturating_add(headroom) >= self.bound.limit;
        if !at_limit {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return;
            }
            let bound = &self.bound;
            let round = *self.round.get_or_insert_with(|| bound.ask_for_round());
            if !bound.round_ended(round) {
                return;
            }
            match bound.try_checkpoint(conn, "RESTART", EARLY_WAIT, self.normal_wait) {
                // The checkpointer began another round: after the next batch.
                None => return,
                Some(true) => self.retry_at = None,
                Some(false) => self.retry_at = Some(Instant::now() + EARLY_RETRY_AFTER),
            }
            self.round = None;
            return;
        }
        self.round = None;
        self.retry_at = None;
        let holding_since = Instant::now();
        let mut warned = holding_since;
        while !self.bound.closing() {
            if self
                .bound
                .checkpoint(conn, "RESTART", LIMIT_WAIT, self.normal_wait)
            {
                tracing::debug!(
                    held_ms = holding_since.elapsed().as_millis(),
                    "WAL restarted at its limit; appends resume"
                );
                return;
            }
            if warned.elapsed() >= WARN_EVERY {
                warned = Instant::now();
                tracing::warn!(
                    wal_bytes = self.bound.wal_size(),
                    held_secs = holding_since.elapsed().as_secs(),
                    "the SQLite WAL is at its limit and a reader keeps it from restarting; \
                     appends wait (is another process holding a read transaction open?)"
                );
            }
        }
    }
}

/// The checkpointer thread: a PASSIVE checkpoint every [`CHECKPOINT_EVERY`],
/// or at once when the hot writer asks. While the hot writer is idle (no
/// batch for a whole round), it also restarts a log past the trigger
/// itself: other writes fill it slowly, but they fill it. Once told to
/// finish, a last TRUNCATE checkpoint, and the thread ends.
pub(super) fn checkpoint_loop(conn: &Connection, bound: &WalBound, normal_wait: Duration) {
    let mut hot_batches_seen = bound.hot_batches.load(Ordering::Relaxed);
    loop {
        if bound.finishing.load(Ordering::Acquire) {
            // Every other connection is closed: nothing can keep this from
            // completing but another process.
            if !bound.checkpoint(conn, "TRUNCATE", normal_wait, normal_wait) {
                tracing::warn!("the closing WAL checkpoint could not complete");
            }
            return;
        }
        bound.rounds_begun.fetch_add(1, Ordering::AcqRel);
        bound.checkpoint(conn, "PASSIVE", normal_wait, normal_wait);
        bound.rounds_ended.fetch_add(1, Ordering::AcqRel);
        let hot_batches = bound.hot_batches.load(Ordering::Relaxed);
        if hot_batches == hot_batches_seen && bound.wal_size() > bound.trigger {
            bound.checkpoint(conn, "RESTART", EARLY_WAIT, normal_wait);
        }
        hot_batches_seen = hot_batches;
        std::thread::park_timeout(CHECKPOINT_EVERY);
    }
}

/// Tells the checkpointer thread to run its last checkpoint and end.
pub(super) fn finish(bound: &WalBound, checkpointer: &Thread) {
    bound.finishing.store(true, Ordering::Release);
    checkpointer.unpark();
}

/// Parses the `wal_limit` parameter of a store URL: bytes, or a number with
/// a unit `KiB`, `MiB` or `GiB` (any case).
///
/// # Errors
/// [`StoreError::Config`] for anything else, or a limit under 1 MiB.
pub(crate) fn parse_limit(value: &str) -> Result<u64> {
    let bad = || {
        StoreError::Config(format!(
            "wal_limit={value:?}: expected a size such as 64MiB, 512KiB or 1GiB, at least 1MiB"
        ))
    };
    let digits_end = value
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let limit = number.checked_mul(multiplier).ok_or_else(bad)?;
    if limit < MIN_WAL_LIMIT {
        return Err(bad());
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_sizes_with_binary_units() {
        assert_eq!(parse_limit("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_limit("1gib").unwrap(), 1 << 30);
        assert_eq!(parse_limit("2048KiB").unwrap(), 2 << 20);
        assert_eq!(parse_limit("1048576").unwrap(), 1 << 20);
        for bad in [
            "",
            "MiB",
            "64MB",
            "64 MiB",
            "-1MiB",
            "512KiB",
            "99999999999GiB",
        ] {
            assert!(parse_limit(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_trigger_is_half_the_limit() {
        let bound = WalBound::new(Path::new("/tmp/chat.db"), 64 << 20);
        assert_eq!(bound.trigger, 32 << 20);
        assert_eq!(bound.wal_path, Path::new("/tmp/chat.db-wal"));
    }
}
