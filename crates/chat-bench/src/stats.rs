//! Counters and latency histograms: per task while running (no sharing on
//! the hot path except a few relaxed counters for the progress bar), merged
//! at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, at three
/// significant digits.
const HIGHEST_MICROS: u64 = 600_000_000;

/// A latency histogram in microseconds.
#[must_use]
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds")
}

/// Records `micros`, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    let _ = histogram.record(micros.clamp(1, HIGHEST_MICROS));
}

/// Everything one task counted.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Send requests written.
    pub sent: u64,
    /// Send requests the server answered with success.
    pub acknowledged: u64,
    /// Send requests the server answered with an error.
    pub rejected: u64,
    /// Message pushes received and recognised (including duplicates).
    pub delivered: u64,
    /// Pushes of a number already received.
    pub duplicated: u64,
    /// Pushes that arrived after a higher number of their stream.
    pub out_of_order: u64,
    /// Accepted messages that some receiver never got.
    pub lost: u64,
    /// Message pushes whose body the bench did not write, or from a stream
    /// the receiver does not expect (e.g. its own messages echoed back).
    pub unexpected: u64,
    /// Per sending stream, a server sequence number that did not rise.
    pub server_seq_regressions: u64,
    /// Pushes that arrived after a higher sequence number of the same
    /// conversation from another sender: allowed by the protocol, reported.
    pub overtaken: u64,
    /// Connections that broke or were closed by the server mid-run.
    pub connection_errors: u64,
    /// Error responses by status name, and other failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// End-to-end latency: send (or due) time to the receiver's push.
    pub latency: Histogram<u64>,
    /// Send to the server's acknowledgement.
    pub ack_latency: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty counters and histograms.
    #[must_use]
    pub fn new() -> Self {
        Self {
            sent: 0,
            acknowledged: 0,
            rejected: 0,
            delivered: 0,
            duplicated: 0,
            out_of_order: 0,
            lost: 0,
            unexpected: 0,
            server_seq_regressions: 0,
            overtaken: 0,
            connection_errors: 0,
            errors: BTreeMap::new(),
            latency: new_histogram(),
            ack_latency: new_histogram(),
        }
    }

    /// Counts one failure of kind `kind`.
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_insert(0) += 1;
    }

    /// Adds another task's counts to these.
    pub fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.acknowledged += other.acknowledged;
        self.rejected += other.rejected;
        self.delivered += other.delivered;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.lost += other.lost;
        self.unexpected += other.unexpected;
        self.server_seq_regressions += other.server_seq_regressions;
        self.overtaken += other.overtaken;
        self.connection_errors += other.connection_errors;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_insert(0) += count;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.ack_latency.add(&other.ack_latency);
    }
}

/// Counters shared by all tasks, read by the progress bar and by the run's
/// coordinator. Relaxed: they are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct Live {
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages acknowledged.
    pub acknowledged: AtomicU64,
    /// Messages delivered.
    pub delivered: AtomicU64,
    /// Failures of any kind.
    pub failures: AtomicU64,
}

impl Live {
    /// Adds `count` to `counter`.
    pub fn add(counter: &AtomicU64, count: u64) {
        counter.fetch_add(count, Ordering::Relaxed);
    }

    /// Reads `counter`.
    #[must_use]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_errors_and_samples() {
        let mut a = Stats::new();
        a.sent = 3;
        a.error("rate_limited");
        record(&mut a.latency, 100);
        let mut b = Stats::new();
        b.sent = 4;
        b.error("rate_limited");
        b.error("closed");
        record(&mut b.latency, 0);
        record(&mut b.latency, u64::MAX);
        a.merge(&b);
        assert_eq!(a.sent, 7);
        assert_eq!(a.errors["rate_limited"], 2);
        assert_eq!(a.errors["closed"], 1);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.latency.min(), 1);
    }
}
