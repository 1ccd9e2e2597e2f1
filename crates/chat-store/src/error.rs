//! The store's error type.

use std::future::Future;
use std::time::Duration;

/// What can go wrong in a store call. The first four are outcomes the caller
/// maps to a protocol status; the rest are failures of the database itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named user, group, request or conversation does not exist.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The row already exists or the state forbids the change.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The acting user may not do this (not friends, not a member, wrong role).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The store URL or options are invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The database failed, reported by a hot path (the direct SQLite
    /// connection, or the MySQL batch writer, which answers every write of a
    /// failed batch with the same failure).
    #[error("database: {0}")]
    Engine(String),
    /// The database did not answer within the store's time bound (MySQL's
    /// `timeout`); the call may or may not have taken effect.
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    /// Applying the embedded migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The result of a store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs `call`, giving up with [`StoreError::TimedOut`] after `limit`.
pub(crate) async fn within<T>(limit: Duration, call: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(StoreError::TimedOut(limit)))
}

/// Set once when a part of the store that cannot restart itself has stopped
/// (a hot-path thread or task died): every later write would fail, so the
/// node should stop and be restarted rather than limp on. See
/// [`crate::Store::failure`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Failure(std::sync::Arc<std::sync::OnceLock<String>>);

impl Failure {
    /// Records what stopped (the first report wins) and logs it.
    pub(crate) fn set(&self, what: String) {
        tracing::error!(failure = %what, "the store cannot go on");
        let _ = self.0.set(what);
    }

    /// What stopped, if anything did.
    pub(crate) fn get(&self) -> Option<String> {
        self.0.get().cloned()
    }

    /// Runs `work` (a thread's whole body), recording a panic as the
    /// failure of `what`.
    pub(crate) fn supervise(&self, what: &str, work: impl FnOnce()) {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            self.set(format!("{what} panicked: {}", panic_text(panic.as_ref())));
        }
    }
}

/// The message of a panic payload.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}
