//! The chatd client library.
//!
//! [`Connection`] is one TCP connection: typed requests awaited by request id
//! (many in flight at once) and a stream of pushes.
//!
//! [`ClientError`] is the one error type of this crate.

pub mod connection;
pub mod error;

pub use connection::{Connection, ConnectionOptions, IntoUserRef, PendingReply, UnmatchedReply};
pub use error::{ClientError, Result};
