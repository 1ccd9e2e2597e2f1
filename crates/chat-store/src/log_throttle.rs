//! Bounded logging of repeated failures.
//!
//! During an outage (the database down, a full disk) every request fails the
//! same way; a line per failure would bury the log and let clients decide
//! how much is written. A [`LogThrottle`] lets the first failure through,
//! then one line per interval with how many were left out, and reports the
//! recovery once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a failure that keeps happening is logged again.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// What [`LogThrottle::failure`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log this one; `suppressed` others were left out since the last line.
    Log {
        /// Failures not logged since the last logged one.
        suppressed: u64,
    },
    /// Count it, log nothing.
    Suppress,
}

/// Counts failures of one kind and decides which to log.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    failing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_logged: Option<Instant>,
    suppressed: u64,
    since_first: u64,
}

impl LogThrottle {
    /// A throttle that logs at most once per `interval`.
    #[must_use]
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            failing: AtomicBool::new(false),
            state: Mutex::new(State {
                last_logged: None,
                suppressed: 0,
                since_first: 0,
            }),
        }
    }

    /// Records a failure at `now` and says whether to log it.
    pub fn failure(&self, now: Instant) -> Verdict {
        self.failing.store(true, Ordering::Relaxed);
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // counters: keep counting.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.since_first += 1;
        let due = state
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            state.last_logged = Some(now);
            let suppressed = std::mem::take(&mut state.suppressed);
            Verdict::Log { suppressed }
        } else {
            state.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Records a success. Returns how many failures there were in all if
    /// this ends a run of failures (log the recovery once), else `None`.
    /// Cheap when nothing failed: one relaxed load.
    pub fn success(&self) -> Option<u64> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        if !self.failing.swap(false, Ordering::Relaxed) {
            return None;
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total = std::mem::take(&mut state.since_first);
        state.suppressed = 0;
        state.last_logged = None;
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_one_per_interval_with_a_count() {
        let throttle = LogThrottle::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(throttle.failure(start), Verdict::Log { suppressed: 0 });
        for step in 1..=100 {
            let now = start + Duration::from_millis(step * 10);
            assert_eq!(throttle.failure(now), Verdict::Suppress);
        }
        assert_eq!(
            throttle.failure(start + Duration::from_secs(5)),
            Verdict::Log { suppressed: 100 }
        );
        assert_eq!(
            throttle.failure(start + Duration::from_secs(6)),
            Verdict::Suppress
        );
        assert_eq!(throttle.success(), Some(103));
        assert_eq!(throttle.success(), None);
        // A new outage is logged at once again.
        assert_eq!(
            throttle.failure(start + Duration::from_secs(7)),
            Verdict::Log { suppressed: 0 }
        );
    }

    #[test]
    fn success_without_failures_reports_nothing() {
        let throttle = LogThrottle::new(DEFAULT_INTERVAL);
        assert_eq!(throttle.success(), None);
    }
}
