//! Rate limits: requests per connection, failed logins per account and per
//! address, connections per address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket for one connection's requests. Owned by the session, so it
/// needs no lock.
#[derive(Debug)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate_per_sec` up to `burst`; a rate of 0
    /// means unlimited.
    #[must_use]
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate_per_sec: f64::from(rate_per_sec),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.rate_per_sec == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts events per key in a fixed window (one minute for logins). Shared
/// by all sessions of the node; the critical section is a map lookup, so a
/// plain mutex is the simplest correct choice.
#[derive(Debug)]
pub struct WindowCounter<K> {
    limit: u32,
    window: Duration,
    entries: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash + Clone> WindowCounter<K> {
    /// At most `limit` events per `window` per key (0 = unlimited).
    #[must_use]
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            entries: Mutex::new(HashMap::new()),
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
        let mut entries = self.entries.lock().expect("limiter lock poisoned");
        if entries.len() > 100_000 {
            let window = self.window;
            entries.retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
        }
        let entry = entries.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Takes back one event counted by [`WindowCounter::try_acquire`] (the
    /// attempt turned out not to be a failure).
    pub fn release(&self, key: &K) {
        let mut entries = self.entries.lock().expect("limiter lock poisoned");
        if let Some(entry) = entries.get_mut(key) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    /// Forgets `key` (after a successful login).
    pub fn clear(&self, key: &K) {
        self.entries
            .lock()
            .expect("limiter lock poisoned")
            .remove(key);
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
        let mut guard = self.counts.lock().expect("limiter lock poisoned");
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
        let mut guard = self.counts.lock().expect("limiter lock poisoned");
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
        let mut guard = self.counts.lock().expect("limiter lock poisoned");
        guard.0 = guard.0.saturating_sub(1);
    }

    /// Forgets a connection counted by [`ConnectionLimiter::try_acquire_ip`].
    pub fn release_ip(&self, ip: IpAddr) {
        let mut guard = self.counts.lock().expect("limiter lock poisoned");
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
        let mut bucket = TokenBucket::new(10, 3);
        assert!(bucket.try_take(start));
        assert!(bucket.try_take(start));
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start));
        assert!(bucket.try_take(start + Duration::from_millis(150)));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut bucket = TokenBucket::new(0, 1);
        let now = Instant::now();
        assert!((0..10_000).all(|_| bucket.try_take(now)));
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
