//! The progress bar shown on stderr while a run goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::stats::Live;

/// A bar that fills over the run's duration and shows the live rates.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar labelled `label` over `duration`, refreshed from `live`.
    /// When `enabled` is false (or stderr is not a terminal) nothing is drawn.
    #[must_use]
    pub fn start(label: &str, duration: Duration, live: Arc<Live>, enabled: bool) -> Progress {
        let total_ms = u64::try_from(duration.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if enabled {
            // One plain line even where the bar is not drawn (stderr not a
            // terminal): scripts that profile the server wait for it, since
            // setup (argon2 for every account) must not be in the profile.
            eprintln!(
                "{label}: setup done, measuring for {:.1} s",
                duration.as_secs_f64()
            );
        }
        let bar = if enabled {
            ProgressBar::with_draw_target(Some(total_ms), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        // The template is a constant; a bad one would be a bug caught by tests.
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {elapsed:>4}/{duration:4} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        let ticker = enabled.then(|| {
            let bar = bar.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut last = (0u64, 0u64, Instant::now());
                let mut interval = tokio::time::interval(Duration::from_millis(250));
                loop {
                    interval.tick().await;
                    let sent = Live::get(&live.sent);
                    let delivered = Live::get(&live.delivered);
                    let failures = Live::get(&live.failures);
                    let now = Instant::now();
                    let seconds = (now - last.2).as_secs_f64().max(1e-3);
                    let sent_rate = (sent - last.0) as f64 / seconds;
                    let delivered_rate = (delivered - last.1) as f64 / seconds;
                    last = (sent, delivered, now);
                    bar.set_position(
                        u64::try_from(start.elapsed().as_millis())
                            .unwrap_or(u64::MAX)
                            .min(total_ms),
                    );
                    bar.set_message(format!(
                        "sent {sent} ({sent_rate:.0}/s) delivered {delivered} \
                         ({delivered_rate:.0}/s) failures {failures}"
                    ));
                }
            })
        });
        Progress { bar, ticker }
    }

    /// Replaces the bar's message (e.g. "draining").
    pub fn set_message(&self, message: &str) {
        self.bar.set_prefix(message.to_owned());
    }

    /// Prints a line on stderr above the bar (or alone, when there is none).
    pub fn println(&self, line: &str) {
        // `suspend` hides the bar while the closure runs and also runs it
        // when the bar is hidden, where `ProgressBar::println` prints nothing.
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Stops updating and clears the bar.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}
