//! The chatd wire format.
//!
//! A connection carries a stream of frames. Each frame is a fixed 16-byte
//! [`Header`] followed by a JSON payload of `header.length` bytes. This crate
//! turns bytes into frames ([`frame::decode`], [`FrameCodec`]), frames into typed
//! messages ([`Request`], [`Response`], [`Push`]) and back. It knows nothing
//! about sockets or runtimes, so every part of it is testable with byte literals.
//!
//! `docs/protocol.md` at the repository root is the contract for client writers.

pub mod codec;
pub mod error;
pub mod frame;
pub mod ids;
pub mod message;
pub mod status;

pub use codec::FrameCodec;
pub use error::{FrameError, MessageError};
pub use frame::{
    Flags, Frame, Header, CLIENT_MAX_PAYLOAD, DEFAULT_MAX_PAYLOAD, HEADER_LEN, MAGIC,
    PAGE_BODY_BUDGET, SYNC_MAX_CURSORS, VERSION,
};
pub use ids::{ConversationId, GroupId, Seq, UserId};
pub use message::*;
pub use status::Status;
