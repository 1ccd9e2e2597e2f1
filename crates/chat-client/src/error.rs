//! The error type of the client library.

use std::time::Duration;

use chat_proto::{ErrorBody, FrameError, MessageError, Status};

/// A `Result` whose error is [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Everything that can go wrong between the application and the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be opened: the TCP connection, the TLS
    /// handshake (an untrusted or mismatched certificate) or the WebSocket
    /// upgrade failed; the error's text says which and why.
    #[error("cannot connect to {address}: {error}")]
    Connect {
        /// The address tried.
        address: String,
        /// Why it failed (part of the message rather than a `source`, so
        /// error chains do not print it twice).
        error: std::io::Error,
    },
    /// A server address is not in one of the accepted forms (`host:port`,
    /// `tls://host:port`, `ws://host:port[/path]`, `wss://host:port[/path]`).
    #[error("invalid server address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings cannot be used (an unreadable CA file, one without
    /// certificates, no system roots).
    #[error("TLS settings: {0}")]
    TlsConfig(String),
    /// The server answered the request with a non-zero status.
    #[error("server error {}: {}", .0.error, .0.message)]
    Server(ErrorBody),
    /// The connection is closed (or closed while the request waited); the
    /// text says why.
    #[error("connection closed: {0}")]
    Closed(String),
    /// No response arrived within the request timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The server sent something that breaks the protocol (an undecodable
    /// frame, a response of the wrong type).
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// A request could not be encoded.
    #[error("cannot encode request: {0}")]
    Encode(#[from] MessageError),
    /// The byte stream from the server is not valid framing.
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
    /// A resilient client gave up reconnecting.
    #[error("gave up reconnecting after {attempts} attempts: {last_error}")]
    ReconnectFailed {
        /// How many connection attempts were made.
        attempts: u32,
        /// The error of the last attempt.
        last_error: String,
    },
    /// A resilient client was asked to do something that needs a login first.
    #[error("not logged in")]
    NotLoggedIn,
}

impl ClientError {
    /// The server's status when the server answered with an error.
    #[must_use]
    pub fn status(&self) -> Option<Status> {
        match self {
            ClientError::Server(body) => Some(body.error),
            _ => None,
        }
    }

    /// Whether the error is the server refusing the request (as opposed to a
    /// transport problem, after which the request may be retried).
    #[must_use]
    pub fn is_server_error(&self) -> bool {
        matches!(self, ClientError::Server(_))
    }

    /// Whether the error means the connection is gone (closed, timed out or
    /// broken), so a retry on a new connection makes sense.
    #[must_use]
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            ClientError::Closed(_)
                | ClientError::Timeout(_)
                | ClientError::Frame(_)
                | ClientError::Connect { .. }
        )
    }
}
