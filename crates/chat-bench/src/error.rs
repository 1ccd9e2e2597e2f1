//! The one error type of the load generator's library.

use chat_proto::{FrameError, MessageError, Status};

/// Why a benchmark could not run (as opposed to a run that found lost or
/// duplicated messages, which is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The peer broke the framing rules.
    #[error("framing error: {0}")]
    Frame(#[from] FrameError),
    /// A payload could not be encoded or decoded.
    #[error("message error: {0}")]
    Message(#[from] MessageError),
    /// The server answered a setup request with an error status.
    #[error("{request} failed: {status} ({message})")]
    Refused {
        /// The request that failed, e.g. `"register"`.
        request: &'static str,
        /// The status the server answered with.
        status: Status,
        /// The server's explanation.
        message: String,
    },
    /// The server answered with something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server closed the connection while an answer was awaited.
    #[error("the server closed the connection during {0}")]
    Closed(&'static str),
    /// A bounded step did not finish in time.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
    },
    /// The options do not describe a run that can happen.
    #[error("invalid options: {0}")]
    Options(String),
    /// A worker process failed or said something unexpected.
    #[error("worker: {0}")]
    Worker(String),
    /// The latency plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A short, stable name for tallying failures: no addresses or ids, so
    /// a thousand failed connections make one line, not a thousand.
    #[must_use]
    pub fn kind(&self) -> String {
        match self {
            Error::Io { source, .. } => format!("io: {}", source.kind()),
            Error::Frame(_) => "framing".to_owned(),
            Error::Message(_) => "bad payload".to_owned(),
            Error::Refused {
                request, status, ..
            } => format!("{request}: {}", status.name()),
            Error::Protocol(_) => "protocol violation".to_owned(),
            Error::Closed(during) => format!("closed during {during}"),
            Error::Timeout { what, .. } => format!("timeout: {what}"),
            Error::Options(_) => "options".to_owned(),
            Error::Worker(_) => "worker".to_owned(),
            Error::Plot(_) => "plot".to_owned(),
        }
    }
}
