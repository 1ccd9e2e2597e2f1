//! The bodies of the SQLite write transactions. Each runs on the writer
//! connection inside a transaction the writer opened (see `writer.rs`), checks
//! before it writes, and may be run a second time if its batch fails.
//!
//! The bodies are the ones MySQL runs (see `crate::shared_writes`); only
//! what SQLite spells its own way is here. Its writer is alone, so the reads
//! that lock rows on MySQL lock nothing here.

use sqlx::sqlite::{SqliteConnection, SqliteQueryResult};

/// The id the `INSERT` that gave `result` assigned (its row id).
fn inserted_id(result: &SqliteQueryResult) -> i64 {
    result.last_insert_rowid()
}

crate::conversations::writes!(SqliteConnection, lock = "");

crate::shared_writes::writes!(
    SqliteConnection,
    lock = "",
    keep_position = "ON CONFLICT (conversation_id, user_id) DO NOTHING",
    set_position =
        "ON CONFLICT (conversation_id, user_id) DO UPDATE SET acked_seq = ?, read_seq = ?"
);
