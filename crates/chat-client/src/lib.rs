//! The chatd client library.
//!
//! - [`Connection`] is one connection, over plain TCP, TLS or WebSocket:
//!   typed requests awaited by request id (many in flight at once) and a
//!   queue of pushes. Tests and tools that want the protocol as it is use it
//!   directly.
//! - [`transport`] names servers ([`ServerAddress`]: `host:port`,
//!   `tls://host:port`, `ws://host:port/ws`, `wss://host:port/ws`), holds the
//!   TLS trust settings ([`ClientTls`]) and opens the byte stream or
//!   WebSocket that frames travel on.
//! - [`Client`] wraps connections with reconnect and resume: it logs in again
//!   after a lost connection, syncs what it missed, fills gaps, and hands the
//!   application each message once and in order per conversation as an
//!   [`Event`].
//!
//! The `chat` terminal client is its own crate (`chat-cli`), so that
//! embedders of this library do not pull in its command line and line
//! editor.
//!
//! [`ClientError`] is the one error type of this crate.

pub mod client;
mod client_msg_ids;
pub mod connection;
pub mod delivery;
pub mod error;
pub mod event;
pub mod transport;

pub use client::{Client, ClientOptions, ReconnectPolicy};
pub use connection::{Connection, ConnectionOptions, IntoUserRef, PendingReply, UnmatchedReply};
pub use error::{ClientError, Result};
pub use event::Event;
pub use transport::{ClientTls, Scheme, ServerAddress};
