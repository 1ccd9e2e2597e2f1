//! The error a request handler returns, and how store and protocol errors
//! become one.

use chat_proto::{ErrorBody, MessageError, Status};
use chat_store::log_throttle::{self, LogThrottle, Verdict};
use chat_store::StoreError;

/// A failed request: the status the client sees and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ServiceError {
    /// The status code of the error response.
    pub status: Status,
    /// The human-readable message of the error response.
    pub message: String,
}

/// The result of a request handler.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl ServiceError {
    /// An error with this status and message.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, message)
    }

    /// `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Status::Forbidden, message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Status::NotFound, message)
    }

    /// `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Status::Conflict, message)
    }

    /// `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(Status::Unauthorized, message)
    }

    /// `internal`, for failures whose details stay in the server log.
    pub fn internal() -> Self {
        Self::new(Status::Internal, "internal server error")
    }

    /// The error body sent to the client.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.status,
            message: self.message.clone(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::not_found(format!("{what} not found")),
            StoreError::Conflict(what) => Self::conflict(what),
            StoreError::Forbidden(what) => Self::forbidden(what),
            other => {
                log_store_failure("store failure", &other);
                Self::new(Status::Unavailable, "storage is unavailable, retry later")
            }
        }
    }
}

/// Store failures, logged at most every few seconds with a count: during a
/// database outage every request fails alike, and a line each would bury
/// the log (and let clients decide how much of it is written).
pub static STORE_FAILURES: LogThrottle = LogThrottle::new(log_throttle::DEFAULT_INTERVAL);

/// Logs a store failure through [`STORE_FAILURES`]; `what` says what failed.
pub fn log_store_failure(what: &str, error: &dyn std::fmt::Display) {
    match STORE_FAILURES.failure(std::time::Instant::now()) {
        Verdict::Log { suppressed: 0 } => tracing::error!(%error, "{what}"),
        Verdict::Log { suppressed } => {
            tracing::error!(%error, more = suppressed, "{what} ({suppressed} more store failures since the last line)");
        }
        Verdict::Suppress => {}
    }
}

/// Notes that a request succeeded; logs once that the store works again
/// after failures.
pub fn note_success() {
    if let Some(failures) = STORE_FAILURES.success() {
        tracing::warn!(
            failures,
            "the store answers again after {failures} failed requests"
        );
    }
}

impl From<MessageError> for ServiceError {
    fn from(error: MessageError) -> Self {
        Self::new(error.status(), error.to_string())
    }
}
