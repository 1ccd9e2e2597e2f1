//! `chatd`, the chat server.
//!
//! Layers, from the socket inwards: [`server`] accepts connections on the
//! chat and HTTP listeners and owns the lifecycle; [`accept`] applies the
//! limits, the PROXY header and TLS; a [`transport::Transport`] is the byte
//! stream (TCP, TLS or WebSocket); a [`session::Session`] per connection turns frames into
//! typed requests and writes responses and pushes; the [`service`] modules
//! act on the store and hand pushes to the [`bus::Bus`], which reaches every
//! session of a user through this node's [`hub::Hub`] (and, in a cluster,
//! through other nodes). [`web`] holds the browser client served at `/`.
//! [`admin`] is `chatd admin`, for operators, and the
//! admin endpoint it talks to.

pub mod accept;
pub mod admin;
pub mod auth;
pub mod bus;
pub mod config;
pub mod context;
pub mod error;
pub mod http;
pub mod hub;
pub mod limits;
pub mod lock;
pub mod proxy;
pub mod redis_bus;
pub mod server;
pub mod service;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod web;

pub use config::Config;
pub use server::{run, start, RunningServer};
