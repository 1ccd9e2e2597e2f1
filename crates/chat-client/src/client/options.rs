//! How a [`Client`](super::Client) connects and reconnects.

use std::time::Duration;

use crate::connection::ConnectionOptions;

/// How reconnecting backs off and when it gives up.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// The delay before the first attempt (before jitter).
    pub initial_backoff: Duration,
    /// The longest delay between attempts (before jitter).
    pub max_backoff: Duration,
    /// Give up after this many failed attempts in a row.
    pub max_attempts: u32,
    /// Give up once this much time has passed since the connection was lost.
    pub max_elapsed: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_attempts: 50,
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt number `attempt` (0-based), given a jitter
    /// value in `[0, 1)`: the exponential delay `initial * 2^attempt`, capped,
    /// of which the upper half is scaled by the jitter ("equal jitter"), so
    /// clients that lost the same server spread out but never retry at once.
    #[must_use]
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        let exponential = self.initial_backoff.saturating_mul(factor);
        let capped = exponential.min(self.max_backoff);
        let half = capped / 2;
        // NaN would make `mul_f64` panic; treat it as no jitter.
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        half + half.mul_f64(jitter)
    }
}

/// Settings of a [`Client`](super::Client).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Server addresses in any form [`ServerAddress`](crate::transport::ServerAddress) parses (`host:port`,
    /// `tls://host:port`, `ws://host:port/ws`, `wss://host:port/ws`);
    /// reconnects rotate through them, each over its own transport.
    pub addresses: Vec<String>,
    /// Settings of each connection.
    pub connection: ConnectionOptions,
    /// Backoff and limits of reconnecting.
    pub reconnect: ReconnectPolicy,
    /// How often acknowledgements of taken messages are sent (batched).
    pub ack_interval: Duration,
    /// How often to ping an otherwise idle connection so the server's idle
    /// timeout does not close it; `None` never pings.
    pub keepalive: Option<Duration>,
}

impl ClientOptions {
    /// Options for one server address, with defaults for the rest.
    pub fn new(address: impl Into<String>) -> Self {
        Self::with_addresses(vec![address.into()])
    }

    /// Options for several addresses of one cluster.
    #[must_use]
    pub fn with_addresses(addresses: Vec<String>) -> Self {
        Self {
            addresses,
            connection: ConnectionOptions::default(),
            reconnect: ReconnectPolicy::default(),
            ack_interval: Duration::from_millis(100),
            keepalive: Some(Duration::from_secs(15)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_jitter_in_the_upper_half() {
        let policy = ReconnectPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_attempts: 10,
            max_elapsed: Duration::from_secs(60),
        };
        assert_eq!(policy.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(3, 0.0), Duration::from_millis(400));
        assert_eq!(policy.backoff(3, 0.5), Duration::from_millis(600));
        assert_eq!(policy.backoff(10, 1.0), Duration::from_secs(2));
        assert_eq!(policy.backoff(u32::MAX, 0.0), Duration::from_secs(1));
        // Out-of-range jitter is clamped, never panics.
        assert_eq!(policy.backoff(0, 7.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(0, f64::NAN), Duration::from_millis(50));
    }
}
