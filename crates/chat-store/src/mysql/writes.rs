//! The bodies of the MySQL write transactions off the hot path (appends and
//! acks are in `batch.rs`). Each runs inside a transaction opened by
//! `MysqlStore::write` at READ COMMITTED, checks before it writes, and is run
//! again from the start if InnoDB picks it as a deadlock victim.
//!
//! The bodies are the ones SQLite runs (see `crate::shared_writes`, which
//! says which row locks each takes); only what MySQL spells its own way is
//! here: the lock clause, the upserts of a conversation member, and how it
//! reports the id an `INSERT` assigned.

use sqlx::mysql::{MySqlConnection, MySqlQueryResult};

/// The id the `INSERT` that gave `result` assigned (MySQL's
/// `LAST_INSERT_ID()`, which sqlx reports with every result).
fn inserted_id(result: &MySqlQueryResult) -> i64 {
    crate::rows::to_db(result.last_insert_id())
}

crate::conversations::writes!(MySqlConnection, lock = "FOR UPDATE");

crate::shared_writes::writes!(
    MySqlConnection,
    lock = "FOR UPDATE",
    keep_position = "ON DUPLICATE KEY UPDATE acked_seq = acked_seq",
    set_position = "ON DUPLICATE KEY UPDATE acked_seq = ?, read_seq = ?"
);
