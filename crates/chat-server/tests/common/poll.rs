//! Waiting for a state instead of for a guessed length of time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `probe` until it is true, for at most `within`; returns how long
/// it took. Panics naming `what` when the deadline passes, so a state the
/// server never reaches fails the test instead of hanging it.
///
/// # Panics
/// When `probe` is still false after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if probe().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
