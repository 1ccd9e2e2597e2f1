//! A consistent copy of a live SQLite database.
//!
//! Copying the database file while chatd runs is not a backup: the newest
//! commits are in the write-ahead log beside it, and a copy taken in the
//! middle of a checkpoint can be torn. `VACUUM INTO` reads the database in
//! one read transaction, so the copy is exactly the database as of one
//! commit, however busy the server is (readers never block the writer in
//! WAL mode, nor the writer them), and it is written compacted, with no log
//! of its own. The copy is written beside the target under a temporary
//! name, synced to disk (SQLite does not sync what `VACUUM INTO` writes),
//! checked, and only then renamed into place, so a backup interrupted
//! half-way never leaves a file that looks like a good one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::SqliteConnectOptions;

use crate::error::{Result, StoreError};

/// How long the copy waits for a lock (only a checkpoint that truncates the
/// log can make a reader wait, and only briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The database that was copied.
    pub source: PathBuf,
    /// The copy.
    pub target: PathBuf,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// Copies the SQLite database of `url` (`sqlite://PATH`) to `target`, which
/// must not exist yet. Safe while chatd writes to the database.
///
/// # Errors
/// [`StoreError::Config`] for a URL that names no SQLite file, a target that
/// exists already, or a source that is missing; [`StoreError::Engine`] when
/// SQLite fails to copy or the copy fails its check; I/O failures as
/// [`StoreError::Engine`] too.
pub async fn backup(url: &str, target: &Path) -> Result<BackupReport> {
    let source = database_file(url)?;
    let target = target.to_owned();
    tokio::task::spawn_blocking(move || copy(&source, &target))
        .await
        .map_err(|error| StoreError::Engine(format!("the backup task failed: {error}")))?
}

/// The database file a `sqlite://` URL names.
pub(crate) fn database_file(url: &str) -> Result<PathBuf> {
    let (url, _params) = super::split_params(url)?;
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::Config(
            "an in-memory database cannot be backed up".to_owned(),
        ));
    }
    let options = SqliteConnectOptions::from_str(&url)
        .map_err(|error| StoreError::Config(format!("bad SQLite URL {url:?}: {error}")))?;
    let path = options.get_filename().to_owned();
    if path.as_os_str().is_empty() {
        return Err(StoreError::Config(format!(
            "SQLite URL {url:?} names no file"
        )));
    }
    Ok(path)
}

fn copy(source: &Path, target: &Path) -> Result<BackupReport> {
    if !source.is_file() {
        return Err(StoreError::Config(format!(
            "no database at {}",
            source.display()
        )));
    }
    if target.exists() {
        return Err(StoreError::Config(format!(
            "{} exists already; a backup never overwrites a file",
            target.display()
        )));
    }
    let mut partial = target.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    // A leftover of an interrupted backup is worthless: start afresh.
    let _ = std::fs::remove_file(&partial);
    let written = write_copy(source, &partial).and_then(|()| {
        check(&partial)?;
        File::open(&partial)
            .and_then(|file| file.sync_all())
            .map_err(|error| io_error("sync", &partial, &error))?;
        std::fs::rename(&partial, target).map_err(|error| io_error("rename", &partial, &error))
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    // The rename is durable once the directory is synced too.
    if let Some(directory) = target.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if let Ok(directory) = File::open(directory) {
            let _ = directory.sync_all();
        }
    }
    let bytes = std::fs::metadata(target)
        .map_err(|error| io_error("stat", target, &error))?
        .len();
    Ok(BackupReport {
        source: source.to_owned(),
        target: target.to_owned(),
        bytes,
    })
}

/// `VACUUM INTO` from a connection of its own. The connection may write
/// (it never does) because a read-only one cannot open a WAL database
/// whose shared-memory file is missing, as it is when chatd is stopped.
fn write_copy(source: &Path, partial: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(engine)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(engine)?;
    let target = partial
        .to_str()
        .ok_or_else(|| StoreError::Config(format!("{} is not UTF-8", partial.display())))?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(engine)?;
    Ok(())
}

/// Opens the copy and asks SQLite whether it is whole.
fn check(copy: &Path) -> Result<()> {
    let conn =
        Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(engine)?;
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(engine)?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(StoreError::Engine(format!(
            "the copy failed its check: {verdict}"
        )))
    }
}

fn engine(error: rusqlite::Error) -> StoreError {
    StoreError::Engine(error.to_string())
}

fn io_error(what: &str, path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Engine(format!("cannot {what} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::{Store, UserStore};

    #[tokio::test]
    async fn copies_a_database_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chat.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store.create_user("alice", "hash", 1).await.unwrap();
        let target = dir.path().join("copy.db");
        let report = backup(&url, &target).await.unwrap();
        assert!(report.bytes > 0);
        assert!(matches!(
            backup(&url, &target).await,
            Err(StoreError::Config(_))
        ));
        store.close().await;
        let copy = SqliteStore::open(&format!("sqlite://{}", target.display()))
            .await
            .unwrap();
        assert!(copy.user_by_name("alice").await.unwrap().is_some());
        copy.close().await;
        assert!(matches!(
            backup("sqlite::memory:", &dir.path().join("x.db")).await,
            Err(StoreError::Config(_))
        ));
    }
}
