//! Rate limits: requests per connection, failed logins per account and per
//! address, registrations and per-user quotas, connections per address.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use chat_store::log_throttle::{LogThrottle, Verdict};

use crate::lock::Mutex;

/// A token bucket for one connection's requests. Owned by the session, so it
/// needs no lock. Its rate and burst are the node's, passed in at each take
/// rather than kept in every connection.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

/// How a [`TokenBucket`] refills: `rate_per_sec` tokens a second up to
/// `burst`; a rate of 0 means unlimited.
#[derive(Debug, Clone, Copy)]
pub struct Refill {
    rate_per_sec: f64,
    burst: f64,
}

impl Refill {
    /// Refilling at `rate_per_sec` up to `burst` (at least 1).
    #[must_use]
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self {
            rate_per_sec: f64::from(rate_per_sec),
            burst: f64::from(burst.max(1)),
        }
    }
}

impl TokenBucket {
    /// A full bucket.
    #[must_use]
    pub fn new(refill: Refill) -> Self {
        Self {
            tokens: refill.burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, refill: Refill, now: Instant) -> bool {
        if refill.rate_per_sec == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * refill.rate_per_sec).min(refill.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The key per-address limits count under: an IPv4 address as it is, an
/// IPv6 address by its /64 network (one subscriber's usual allocation, so
/// rotating through the addresses of one network does not buy a fresh
/// allowance each time). An IPv4 address mapped into IPv6 counts as IPv4.
#[must_use]
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
    }
}

/// Keys a [`WindowCounter`] remembers at most by default. An attacker who
/// rotates through source addresses can make the map no larger than this.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// One key's count in its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

/// The state behind a [`WindowCounter`]'s lock.
#[derive(Debug)]
struct Windows<K> {
    entries: HashMap<K, Window>,
    /// Keys in the order their windows started, oldest first. An element
    /// whose start no longer matches its key's entry is stale (the key was
    /// forgotten or started a new window) and is skipped.
    order: VecDeque<(K, Instant)>,
}

/// Counts events per key in a fixed window (one minute for logins). Shared
/// by all sessions of the node; the critical section is a map lookup, so a
/// plain mutex is the simplest correct choice. It holds at most `max_keys`
/// keys: past that, the key whose window started first is forgotten, so the
/// map's size and the work per call stay bounded whatever the keys.
#[derive(Debug)]
pub struct WindowCounter<K> {
    limit: u32,
    window: Duration,
    max_keys: usize,
    state: Mutex<Windows<K>>,
}

impl<K: Eq + Hash + Clone> WindowCounter<K> {
    /// At most `limit` events per `window` per key (0 = unlimited), for at
    /// most [`DEFAULT_MAX_KEYS`] keys.
    #[must_use]
    pub fn new(limit: u32, window: Duration) -> Self {
        Self::with_max_keys(limit, window, DEFAULT_MAX_KEYS)
    }

    /// As [`WindowCounter::new`], remembering at most `max_keys` keys.
    #[must_use]
    pub fn with_max_keys(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys: max_keys.max(1),
            state: Mutex::new(Windows {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Counts one event for `key` unless `key` is already at its limit:
    /// check and count are one step, so concurrent attempts cannot all slip
    /// past the check before any of them is counted. Returns whether it was
    /// counted (false = limited).
    pub fn try_acquire(&self, key: K, now: Instant) -> bool {
        if self.limit == 0 {
            return true;
        }
        let mut state = self.state.lock();
        let window = self.window;
        let current = state
            .entries
            .get(&key)
            .copied()
            .filter(|entry| now.saturating_duration_since(entry.start) < window);
        let entry = match current {
            Some(entry) => entry,
            None => {
                state.entries.remove(&key);
                state.make_room(self.max_keys);
                let entry = Window {
                    start: now,
                    count: 0,
                };
                state.order.push_back((key.clone(), now));
                entry
            }
        };
        if entry.count >= self.limit {
            state.entries.insert(key, entry);
            return false;
        }
        state.entries.insert(
            key,
            Window {
                count: entry.count + 1,
                ..entry
            },
        );
        true
    }

    /// How many events `key` has in its current window.
    pub fn count(&self, key: &K, now: Instant) -> u32 {
        self.state
            .lock()
            .entries
            .get(key)
            .filter(|entry| now.saturating_duration_since(entry.start) < self.window)
            .map_or(0, |entry| entry.count)
    }

    /// Takes back one event counted by [`WindowCounter::try_acquire`] (the
    /// attempt turned out not to be a failure).
    pub fn release(&self, key: &K) {
        if let Some(entry) = self.state.lock().entries.get_mut(key) {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    /// Forgets `key` (after a successful login).
    pub fn clear(&self, key: &K) {
        self.state.lock().entries.remove(key);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Eq + Hash + Clone> Windows<K> {
    /// Forgets the oldest keys until one more fits under `max_keys`, and
    /// drops stale order elements so the queue stays near the map's size.
    fn make_room(&mut self, max_keys: usize) {
        while self.entries.len() >= max_keys {
            let Some((key, start)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|entry| entry.start == start)
            {
                self.entries.remove(&key);
            }
        }
        if self.order.len() > 2 * max_keys {
            let entries = &self.entries;
            self.order
                .retain(|(key, start)| entries.get(key).is_some_and(|entry| entry.start == *start));
        }
    }
}

/// Refusals of one kind, logged as a summary rather than a line each: a
/// client decides how often it is refused, and must not decide how much
/// the server writes to its log.
#[derive(Debug)]
pub struct RefusalLog {
    what: &'static str,
    throttle: LogThrottle,
}

impl RefusalLog {
    /// A summary of refusals of `what`, at most one line per `interval`.
    #[must_use]
    pub const fn new(what: &'static str, interval: Duration) -> Self {
        Self {
            what,
            throttle: LogThrottle::new(interval),
        }
    }

    /// Notes one refusal; returns whether a line was written.
    pub fn refused(&self, reason: &'static str, now: Instant) -> bool {
        match self.throttle.failure(now) {
            Verdict::Log { suppressed } => {
                tracing::info!(
                    what = self.what,
                    reason,
                    refused_since_last_line = suppressed + 1,
                    "refusing requests"
                );
                true
            }
            Verdict::Suppress => false,
        }
    }
}

/// Open connections per address, and in all.
#[derive(Debug)]
pub struct ConnectionLimiter {
    per_ip: u32,
    total: u32,
    counts: Mutex<(u32, HashMap<IpAddr, u32>)>,
}

impl ConnectionLimiter {
    /// At most `per_ip` connections from one address and `total` in all
    /// (0 = unlimited).
    #[must_use]
    pub fn new(per_ip: u32, total: u32) -> Self {
        Self {
            per_ip,
            total,
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    /// Counts a new connection from `ip`, or refuses it.
    pub fn try_acquire(&self, ip: IpAddr) -> bool {
        if !self.try_acquire_total() {
            return false;
        }
        if !self.try_acquire_ip(ip) {
            self.release_total();
            return false;
        }
        true
    }

    /// Counts a new connection against the total only, or refuses it. Used
    /// at accept when the client's address is not known yet (behind a
    /// proxy, it comes in the PROXY header).
    pub fn try_acquire_total(&self) -> bool {
        let mut guard = self.counts.lock();
        let (total, _) = &mut *guard;
        if self.total != 0 && *total >= self.total {
            return false;
        }
        *total += 1;
        true
    }

    /// Counts a connection already counted in the total against its
    /// address, or refuses it.
    pub fn try_acquire_ip(&self, ip: IpAddr) -> bool {
        let mut guard = self.counts.lock();
        let (_, per_ip) = &mut *guard;
        let count = per_ip.entry(ip).or_insert(0);
        if self.per_ip != 0 && *count >= self.per_ip {
            return false;
        }
        *count += 1;
        true
    }

    /// Forgets a connection from `ip`.
    pub fn release(&self, ip: IpAddr) {
        self.release_ip(ip);
        self.release_total();
    }

    /// Forgets a connection counted by [`ConnectionLimiter::try_acquire_total`].
    pub fn release_total(&self) {
        let mut guard = self.counts.lock();
        guard.0 = guard.0.saturating_sub(1);
    }

    /// Forgets a connection counted by [`ConnectionLimiter::try_acquire_ip`].
    pub fn release_ip(&self, ip: IpAddr) {
        let mut guard = self.counts.lock();
        let (_, per_ip) = &mut *guard;
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let start = Instant::now();
        let refill = Refill::new(10, 3);
        let mut bucket = TokenBucket::new(refill);
        assert!(bucket.try_take(refill, start));
        assert!(bucket.try_take(refill, start));
        assert!(bucket.try_take(refill, start));
        assert!(!bucket.try_take(refill, start));
        assert!(bucket.try_take(refill, start + Duration::from_millis(150)));
    }

    #[test]
    fn bucket_refills_in_proportion_to_time_and_no_further_than_the_burst() {
        let start = Instant::now();
        let refill = Refill::new(4, 4);
        let mut bucket = TokenBucket::new(refill);
        assert_eq!(
            (0..10).filter(|_| bucket.try_take(refill, start)).count(),
            4
        );
        // A token every 250 ms: one is back after 250 ms, not two, and
        // half a token is not enough.
        let quarter = start + Duration::from_millis(250);
        assert!(bucket.try_take(refill, quarter));
        assert!(!bucket.try_take(refill, quarter));
        assert!(!bucket.try_take(refill, quarter + Duration::from_millis(125)));
        assert!(bucket.try_take(refill, quarter + Duration::from_millis(250)));
        assert!(!bucket.try_take(refill, quarter + Duration::from_millis(250)));
        // A long quiet spell refills up to the burst and no further.
        let later = start + Duration::from_secs(3600);
        assert_eq!(
            (0..10).filter(|_| bucket.try_take(refill, later)).count(),
            4
        );
    }

    #[test]
    fn an_earlier_instant_adds_no_tokens() {
        let start = Instant::now();
        let refill = Refill::new(10, 1);
        let mut bucket = TokenBucket::new(refill);
        assert!(bucket.try_take(refill, start + Duration::from_secs(1)));
        assert!(!bucket.try_take(refill, start));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let refill = Refill::new(0, 1);
        let mut bucket = TokenBucket::new(refill);
        let now = Instant::now();
        assert!((0..10_000).all(|_| bucket.try_take(refill, now)));
    }

    #[test]
    fn try_acquire_counts_and_refuses_atomically() {
        let counter = WindowCounter::new(2, Duration::from_secs(60));
        let now = Instant::now();
        assert!(counter.try_acquire("a", now));
        assert!(counter.try_acquire("a", now));
        assert!(!counter.try_acquire("a", now));
        counter.release(&"a");
        assert!(counter.try_acquire("a", now));
        assert!(counter.try_acquire("a", now + Duration::from_secs(61)));
        counter.clear(&"a");
        assert!(counter.try_acquire("a", now));
        assert!(counter.try_acquire("b", now));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        assert_eq!(address_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_key(v4), v4);
    }

    #[test]
    fn the_map_is_capped_and_forgets_the_oldest_first() {
        let counter = WindowCounter::with_max_keys(1, Duration::from_secs(60), 3);
        let start = Instant::now();
        for (offset, key) in [1u32, 2, 3].into_iter().enumerate() {
            assert!(counter.try_acquire(key, start + Duration::from_secs(offset as u64)));
        }
        assert!(!counter.try_acquire(1, start + Duration::from_secs(5)));
        // A fourth key evicts key 1, whose window started first.
        assert!(counter.try_acquire(4, start + Duration::from_secs(6)));
        assert_eq!(counter.len(), 3);
        assert_eq!(counter.count(&1, start + Duration::from_secs(6)), 0);
        assert_eq!(counter.count(&2, start + Duration::from_secs(6)), 1);
        // A flood of new keys keeps the map (and its order queue) bounded.
        for key in 100..10_000 {
            counter.try_acquire(key, start + Duration::from_secs(7));
            counter.clear(&key);
        }
        assert!(counter.len() <= 3);
        assert!(counter.state.lock().order.len() <= 7);
    }

    #[test]
    fn refusals_are_summarised() {
        let log = RefusalLog::new("registrations", Duration::from_secs(10));
        let start = Instant::now();
        let written = (0..1000)
            .filter(|step| log.refused("test", start + Duration::from_millis(*step)))
            .count();
        assert_eq!(written, 1);
        assert!(log.refused("test", start + Duration::from_secs(11)));
    }

    #[test]
    fn connection_limits() {
        let limiter = ConnectionLimiter::new(2, 3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limiter.try_acquire(a));
        assert!(limiter.try_acquire(a));
        assert!(!limiter.try_acquire(a));
        assert!(limiter.try_acquire(b));
        assert!(!limiter.try_acquire(b));
        limiter.release(a);
        assert!(limiter.try_acquire(b));
    }
}
