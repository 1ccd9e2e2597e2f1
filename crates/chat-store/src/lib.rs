//! Persistence for chatd.
//!
//! The services of `chat-server` talk to storage only through the repository
//! traits in [`repo`]; [`Store`] bundles them. Each backend implements all of
//! them: [`sqlite::SqliteStore`] (the embedded default) and
//! [`mysql::MysqlStore`] (for clusters). [`open`] picks one by URL scheme and
//! applies that backend's embedded migrations.
//!
//! Both backends pass one conformance suite (`tests/conformance.rs`). Both
//! group-commit message appends and acks: one transaction for everything
//! queued, answered in commit order. The MySQL store also serialises what
//! must be serialised with row locks, so several nodes can share one
//! database (sequence numbers stay gap-free, a resend is recognised
//! whichever node it reaches).
//!
//! This crate knows SQL and the value types of `chat-proto`; it knows nothing
//! about sockets, sessions or routing.

pub mod admin;
mod conversations;
pub mod copy;
mod dispatch;
pub mod error;
pub mod group_access;
pub mod log_throttle;
pub mod mysql;
pub mod names;
mod reads;
pub mod repo;
mod rows;
mod shared_writes;
pub mod sqlite;
mod url_params;

use std::sync::Arc;

pub use admin::{
    AccountDetails, AccountRecord, AdminStore, DeletedAccount, StoreStats, LOGIN_NOTED_EVERY_MS,
};
pub use copy::{copy_sqlite_to_mysql, CopyReport};
pub use error::{Result, StoreError};
pub use repo::*;

/// Opens the store named by `url` and brings its schema up to date.
///
/// `sqlite://PATH` (created if missing; `sqlite::memory:` for a throw-away
/// store) or `mysql://USER:PASS@HOST:PORT/DB`.
///
/// # Errors
/// [`StoreError::Config`] for an unknown scheme; a database or migration
/// error when the store cannot be opened.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        Ok(Arc::new(mysql::MysqlStore::open(url).await?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported store URL {url:?}: expected sqlite://PATH or mysql://..."
        )))
    }
}
