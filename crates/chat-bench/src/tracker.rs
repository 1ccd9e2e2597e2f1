//! The receiver's check of one incoming stream: order, loss and duplication.

use std::collections::BTreeSet;

/// Gaps remembered per stream. A sequence number far beyond anything sent
/// (a corrupt body) must not make the receiver allocate without bound; the
/// numbers past this many are simply never found and count as lost.
const MAX_REMEMBERED_GAPS: usize = 1 << 16;

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next number, or a later one (leaving a gap).
    InOrder,
    /// A number that fills an earlier gap: it arrived after a later one.
    Late,
    /// A number that had already arrived.
    Duplicate,
}

/// Tracks the sequence numbers (from 1) seen on one stream by one receiver.
#[derive(Debug, Clone, Default)]
pub struct StreamTracker {
    /// The number after the highest one seen.
    next: u64,
    /// Numbers below `next` not seen yet.
    missing: BTreeSet<u64>,
    /// Distinct numbers seen.
    unique: u64,
    /// Arrivals of numbers already seen.
    duplicated: u64,
    /// Arrivals after a higher number of the same stream.
    out_of_order: u64,
}

impl StreamTracker {
    /// A tracker that has seen nothing.
    #[must_use]
    pub fn new() -> Self {
        Self {
            next: 1,
            ..Self::default()
        }
    }

    /// Records the arrival of `seq`.
    pub fn observe(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let room = MAX_REMEMBERED_GAPS.saturating_sub(self.missing.len()) as u64;
            let gap_end = seq.min(self.next.saturating_add(room));
            self.missing.extend(self.next..gap_end);
            self.next = seq.saturating_add(1);
            self.unique += 1;
            Arrival::InOrder
        } else if self.missing.remove(&seq) {
            self.unique += 1;
            self.out_of_order += 1;
            Arrival::Late
        } else {
            self.duplicated += 1;
            Arrival::Duplicate
        }
    }

    /// Distinct numbers seen.
    #[must_use]
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Arrivals of numbers already seen.
    #[must_use]
    pub fn duplicated(&self) -> u64 {
        self.duplicated
    }

    /// Arrivals after a higher number.
    #[must_use]
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Of the `sent` numbers 1..=sent that the server accepted, how many never arrived.
    #[must_use]
    pub fn lost(&self, accepted: u64) -> u64 {
        accepted.saturating_sub(self.unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_is_clean() {
        let mut tracker = StreamTracker::new();
        for seq in 1..=100 {
            assert_eq!(tracker.observe(seq), Arrival::InOrder);
        }
        assert_eq!(tracker.unique(), 100);
        assert_eq!(tracker.lost(100), 0);
        assert_eq!((tracker.duplicated(), tracker.out_of_order()), (0, 0));
        assert_eq!(tracker.lost(103), 3);
    }

    #[test]
    fn late_duplicate_and_missing_are_told_apart() {
        let mut tracker = StreamTracker::new();
        assert_eq!(tracker.observe(1), Arrival::InOrder);
        assert_eq!(tracker.observe(3), Arrival::InOrder);
        assert_eq!(tracker.observe(5), Arrival::InOrder);
        assert_eq!(tracker.observe(2), Arrival::Late);
        assert_eq!(tracker.observe(2), Arrival::Duplicate);
        assert_eq!(tracker.observe(5), Arrival::Duplicate);
        assert_eq!(tracker.unique(), 4);
        assert_eq!(tracker.duplicated(), 2);
        assert_eq!(tracker.out_of_order(), 1);
        // 4 never came.
        assert_eq!(tracker.lost(5), 1);
    }

    #[test]
    fn an_absurd_number_does_not_allocate_without_bound() {
        let mut tracker = StreamTracker::new();
        tracker.observe(u64::MAX - 1);
        assert!(tracker.missing.len() <= MAX_REMEMBERED_GAPS);
        assert_eq!(tracker.observe(u64::MAX - 1), Arrival::Duplicate);
        assert_eq!(tracker.observe(u64::MAX), Arrival::InOrder);
    }
}
