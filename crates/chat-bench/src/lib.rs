//! `chat-bench`: the load generator for chatd, and the bare relay it is
//! compared against.
//!
//! The hot loops talk the wire format of [`chat_proto`] directly — one task
//! drives several sockets by readiness, reads into one buffer per
//! connection and cuts frames out without copying, and writes everything
//! ready with one syscall — so the bench is not what limits a run. A
//! [`Server`] may also be reached over TLS or WebSocket (the addresses of
//! [`chat_client::ServerAddress`]), to measure what those transports cost;
//! plain TCP keeps its direct path. Setup
//! (accounts, friendships, groups) goes through plain request/answer calls
//! in [`setup`].
//!
//! Every message body carries its stream, its sequence number and its send
//! time ([`payload`]); receivers check them ([`tracker`]) and every run
//! reports lost, duplicated and out-of-order messages along with rates and
//! latency percentiles ([`Report`]).

pub mod conn;
mod engine;
pub mod error;
pub mod idle;
pub mod load;
pub mod login;
pub mod payload;
pub mod plot;
pub mod progress;
pub mod relay;
pub mod report;
pub mod setup;
pub mod stats;
pub mod summary;
pub mod sustained;
pub mod tracker;

pub use conn::Server;
pub use error::{Error, Result};
pub use idle::{
    prepare_idle_accounts, read_rss_kib, run_idle, run_idle_worker, IdleOptions, IdleWorkerOptions,
};
pub use load::{
    loopback_sources, run_group, run_pairs, GroupOptions, LoadOptions, PairsOptions, PairsTarget,
};
pub use login::{run_login, LoginKind, LoginOptions};
pub use plot::{plot_latency, plot_over_time, Panel, TimeSeries};
pub use relay::Relay;
pub use report::Report;
pub use summary::{load_average, summarize};
pub use sustained::{run_sustained, Interval, Sustained, SustainedOptions};
