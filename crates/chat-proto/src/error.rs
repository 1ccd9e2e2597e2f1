//! Errors of the wire layer.

use crate::status::Status;

/// A violation of the framing rules. The stream cannot be trusted after one,
/// so a server answers with an error frame and closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first two bytes were not `0x4348`.
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// The header names a protocol version this implementation does not speak.
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion {
        /// The version in the header.
        version: u8,
        /// The request id in the header, so the error frame can echo it.
        request_id: u32,
    },
    /// Reserved flag bits were set.
    #[error("reserved flag bits set: {0:#04x}")]
    ReservedFlags(u8),
    /// The declared payload length is above the limit. Detected from the header
    /// alone, before the body is buffered.
    #[error("payload of {length} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The declared length.
        length: u32,
        /// The configured limit.
        max: usize,
        /// The request id in the header, so the error frame can echo it.
        request_id: u32,
    },
    /// The underlying transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The status an error frame for this violation carries.
    #[must_use]
    pub fn status(&self) -> Status {
        match self {
            FrameError::BadMagic(_) | FrameError::ReservedFlags(_) => Status::ProtocolError,
            FrameError::UnsupportedVersion { .. } => Status::UnsupportedVersion,
            FrameError::TooLarge { .. } => Status::TooLarge,
            FrameError::Io(_) => Status::Internal,
        }
    }

    /// The request id to echo in the error frame (0 when the header was not
    /// trustworthy enough to read one).
    #[must_use]
    pub fn request_id(&self) -> u32 {
        match self {
            FrameError::UnsupportedVersion { request_id, .. }
            | FrameError::TooLarge { request_id, .. } => *request_id,
            _ => 0,
        }
    }
}

/// A well-framed message whose type or payload cannot be understood. The
/// stream is still in sync, so a server answers with an error status and keeps
/// the connection open.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The header's type code is not one this implementation knows, or is not
    /// valid in this direction (a push type sent as a request).
    #[error("unknown message type {0:#06x}")]
    UnknownType(u16),
    /// The payload is not valid UTF-8 JSON of the expected shape.
    #[error("invalid payload for {message_type}: {source}")]
    InvalidPayload {
        /// The message type's name.
        message_type: &'static str,
        /// What serde found wrong.
        source: serde_json::Error,
    },
    /// The payload could not be serialized (only for values that are not
    /// representable as JSON, which no message type of this crate has).
    #[error("cannot encode payload: {0}")]
    Encode(serde_json::Error),
}

impl MessageError {
    /// The status a response to this error carries.
    #[must_use]
    pub fn status(&self) -> Status {
        match self {
            MessageError::UnknownType(_) => Status::UnknownType,
            MessageError::InvalidPayload { .. } => Status::BadRequest,
            MessageError::Encode(_) => Status::Internal,
        }
    }
}
