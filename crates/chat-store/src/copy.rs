//! Moving a single node's SQLite store into a MySQL or MariaDB database.
//!
//! Both schemas have the same tables with the same column names, and the
//! same migrations, so a row of one is a row of the other. The copy reads
//! the tables and their columns from SQLite itself (`pragma table_info`),
//! so a column a later migration adds is copied without a change here, and
//! writes them parents first (by `pragma foreign_key_list`), in batches of
//! multi-row `INSERT`s whose values are all bound. Every id, sequence
//! number, token hash, read and acknowledged position, and recalled or
//! deleted state is a column value, so it arrives as it was: clients keep
//! their tokens, ids and cursors.
//!
//! The source must not be in use: the copy holds SQLite's exclusive lock
//! from start to end, and refuses when it cannot take it (a running chatd
//! holds the database open). The target must be empty: it is migrated first
//! (opened as a store), and refused if any table has a row.
//!
//! The target's session is strict (`STRICT_ALL_TABLES`): a value its column
//! cannot hold (SQLite's text has no length limit) fails the copy instead
//! of being cut short. All rows go in one transaction, checked table by
//! table (the target's row count must equal the source's) before the
//! commit, so a copy that fails leaves the target as empty as it found it
//! and can simply be run again.
//! The id counters (SQLite's `sqlite_sequence`, for ids that are never
//! handed out twice, even after their row was deleted) are carried over
//! before the transaction, as `AUTO_INCREMENT` of the empty tables: MySQL
//! cannot change them inside a transaction, and raising them on an empty
//! table is harmless if the copy then fails.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::TryStreamExt as _;
use sqlx::mysql::MySqlConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteLockingMode, SqliteRow};
use sqlx::{Connection as _, MySql, QueryBuilder, Row as _, TypeInfo as _, ValueRef as _};

use crate::error::{within, Result, StoreError};
use crate::mysql::MysqlStore;
use crate::rows::DbText;
use crate::Store as _;

/// Rows per `INSERT` at most (MySQL takes at most 65,535 bound values in
/// one statement; no table of ours has 100 columns).
const BATCH_ROWS: usize = 500;

/// Bytes of text and blobs per `INSERT` at most, well under the smallest
/// `max_allowed_packet` a server is likely to have (MariaDB's default is
/// 16 MiB).
const BATCH_BYTES: usize = 1 << 20;

/// The tables that are the migration tool's own, not chatd's data.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// How many rows of one table were copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopied {
    /// The table.
    pub table: String,
    /// Its rows, in the source and now in the target.
    pub rows: u64,
}

/// Where an id counter continues in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdCounter {
    /// The table whose ids it hands out.
    pub table: String,
    /// The id the next new row gets (above every id ever handed out,
    /// including those of deleted rows).
    pub next_id: i64,
}

/// What [`copy_sqlite_to_mysql`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The SQLite database file that was copied.
    pub source: PathBuf,
    /// Every table, parents first, with its rows.
    pub tables: Vec<TableCopied>,
    /// The id counters carried over.
    pub id_counters: Vec<IdCounter>,
}

/// A table of the source as the copy sees it.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<String>,
    /// The primary key's columns, in key order (rows are read in this
    /// order, which is also the order InnoDB stores them in).
    key: Vec<String>,
    /// The tables its foreign keys refer to.
    parents: Vec<String>,
}

/// One value of a SQLite row, by its storage class.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    /// Bytes it adds to a statement, roughly.
    fn size(&self) -> usize {
        match self {
            Value::Text(text) => text.len(),
            Value::Blob(bytes) => bytes.len(),
            Value::Null | Value::Integer(_) | Value::Real(_) => 8,
        }
    }
}

/// Copies every table of the SQLite store at `from_url` (`sqlite://PATH`)
/// into the empty MySQL or MariaDB database at `to_url`, calling `progress`
/// after each table. See the module docs for what is checked and when.
///
/// # Errors
/// [`StoreError::Config`] when the source is not a SQLite file, is missing,
/// or is in use (chatd must be stopped), when the target is not a MySQL URL
/// or is not empty, or when the two schemas differ; a database error when
/// either database fails; [`StoreError::Engine`] when a table's row counts
/// differ after the copy. Nothing is committed to the target in any of
/// these cases.
pub async fn copy_sqlite_to_mysql(
    from_url: &str,
    to_url: &str,
    mut progress: impl FnMut(&TableCopied) + Send,
) -> Result<CopyReport> {
    if !from_url.starts_with("sqlite:") {
        return Err(StoreError::Config(
            "the source of a copy must be a SQLite store (sqlite://PATH)".to_owned(),
        ));
    }
    if !(to_url.starts_with("mysql:") || to_url.starts_with("mariadb:")) {
        return Err(StoreError::Config(
            "the target of a copy must be a MySQL or MariaDB database \
             (mysql://USER:PASSWORD@HOST:PORT/DATABASE)"
                .to_owned(),
        ));
    }
    if from_url.contains(":memory:") || from_url.contains("mode=memory") {
        return Err(StoreError::Config(
            "an in-memory store has nothing to copy".to_owned(),
        ));
    }
    let source_path = crate::sqlite::database_file(from_url)?;
    if !source_path.is_file() {
        return Err(StoreError::Config(format!(
            "no database at {}",
            source_path.display()
        )));
    }
    let mut source = open_source(&source_path).await?;
    let copied = copy_from(&mut source, to_url, &mut progress).await;
    // Closing ends the exclusive lock (and, for a database in WAL mode,
    // checkpoints its log into the file).
    if let Err(error) = source.close().await {
        tracing::debug!(%error, "closing the SQLite source failed");
    }
    let (tables, id_counters) = copied?;
    Ok(CopyReport {
        source: source_path,
        tables,
        id_counters,
    })
}

/// How long [`open_source`] keeps trying while the source is in use: long
/// enough for a chatd (or a store) that has just stopped to let go of the
/// file, far shorter than anyone would wait for a running one.
const IN_USE_PATIENCE: Duration = Duration::from_secs(3);

/// Opens the source with SQLite's exclusive lock, refusing when another
/// connection has the database open, and brings its schema up to date.
/// SQLite's busy handler does not cover every lock a write-ahead-log
/// database takes on open (the shared-memory index, the exclusive
/// locking mode), so a source that is busy is tried again for a short
/// while rather than at once called in use.
async fn open_source(path: &std::path::Path) -> Result<SqliteConnection> {
    let deadline = tokio::time::Instant::now() + IN_USE_PATIENCE;
    loop {
        match open_source_once(path).await {
            Err(StoreError::Config(reason))
                if reason.contains("in use") && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// One attempt of [`open_source`].
async fn open_source_once(path: &std::path::Path) -> Result<SqliteConnection> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .locking_mode(SqliteLockingMode::Exclusive)
        // A running chatd holds the database for as long as it runs, so a
        // long wait would not help; a short one lets a chatd (or store) that
        // has just stopped finish letting go of the file.
        .busy_timeout(Duration::from_millis(900))
        .foreign_keys(true);
    let in_use = |error: sqlx::Error| {
        if is_busy(&error) {
            StoreError::Config(format!(
                "{} is in use (is chatd still running on it? stop it first)",
                path.display()
            ))
        } else {
            StoreError::Database(error)
        }
    };
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(in_use)?;
    // In exclusive locking mode the first read takes the lock on the whole
    // file, and keeps it until the connection closes; in WAL mode it cannot
    // while any other connection has the database open.
    let locked = async {
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await?;
        sqlx::query("COMMIT").execute(&mut conn).await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if let Err(error) = locked {
        let _ = conn.close().await;
        return Err(in_use(error));
    }
    // As every admin command does: the schema of this version of chatd,
    // so that the columns match the target's.
    if let Err(error) = sqlx::migrate!("./migrations/sqlite").run(&mut conn).await {
        let _ = conn.close().await;
        return Err(error.into());
    }
    Ok(conn)
}

/// Whether SQLite answered "busy" or "locked".
fn is_busy(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|database| database.code())
        .and_then(|code| code.parse::<i32>().ok())
        // The primary result code is the low byte of an extended one.
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

async fn copy_from(
    source: &mut SqliteConnection,
    to_url: &str,
    progress: &mut (impl FnMut(&TableCopied) + Send),
) -> Result<(Vec<TableCopied>, Vec<IdCounter>)> {
    let tables = in_dependency_order(source_tables(source).await?)?;

    // Opening the target as a store applies its migrations.
    let store = MysqlStore::open(to_url).await?;
    store.close().await;
    let (options, timeout) = crate::mysql::connect_options(to_url)?;
    let mut target = within(timeout, async {
        Ok(MySqlConnection::connect_with(&options).await?)
    })
    .await?;
    // Strict: a value the target's column cannot hold fails the copy
    // instead of being cut short with a warning, whatever the server's
    // default; and an id is stored as it is, even 0.
    let copied = match sqlx::query(
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    )
    .execute(&mut target)
    .await
    {
        Ok(_) => copy_into(source, &mut target, &tables, progress).await,
        Err(error) => Err(error.into()),
    };
    if let Err(error) = target.close().await {
        tracing::debug!(%error, "closing the MySQL target failed");
    }
    copied
}

async fn copy_into(
    source: &mut SqliteConnection,
    target: &mut MySqlConnection,
    tables: &[Table],
    progress: &mut (impl FnMut(&TableCopied) + Send),
) -> Result<(Vec<TableCopied>, Vec<IdCounter>)> {
    check_same_migrations(source, target).await?;
    for table in tables {
        check_target_table(target, table).await?;
    }
    for table in tables {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM `{}`", table.name))
            .fetch_one(&mut *target)
            .await?;
        if rows > 0 {
            return Err(StoreError::Config(format!(
                "the target database is not empty ({} has {rows} row{}): \
                 a copy only fills a new, empty database",
                table.name,
                if rows == 1 { "" } else { "s" }
            )));
        }
    }

    let id_counters = id_counters(source, tables).await?;
    for counter in &id_counters {
        // A number read from the database, not text: DDL takes no bound
        // values.
        sqlx::query(&format!(
            "ALTER TABLE `{}` AUTO_INCREMENT = {}",
            counter.table, counter.next_id
        ))
        .execute(&mut *target)
        .await?;
    }

    let mut transaction = target.begin().await?;
    let mut copied = Vec::with_capacity(tables.len());
    for table in tables {
        let rows = copy_table(source, &mut transaction, table).await?;
        let in_source: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{}\"", table.name))
                .fetch_one(&mut *source)
                .await?;
        let in_target: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM `{}`", table.name))
            .fetch_one(&mut *transaction)
            .await?;
        if i64::try_from(rows).ok() != Some(in_source) || in_target != in_source {
            return Err(StoreError::Engine(format!(
                "{}: {in_source} rows in SQLite, {rows} copied, {in_target} in the target; \
                 nothing was committed",
                table.name
            )));
        }
        let table_copied = TableCopied {
            table: table.name.clone(),
            rows,
        };
        progress(&table_copied);
        copied.push(table_copied);
    }
    transaction.commit().await?;
    Ok((copied, id_counters))
}

/// Copies one table's rows in batches; returns how many.
async fn copy_table(
    source: &mut SqliteConnection,
    target: &mut MySqlConnection,
    table: &Table,
) -> Result<u64> {
    let select = format!(
        "SELECT {} FROM \"{}\" ORDER BY {}",
        quoted(&table.columns, '"'),
        table.name,
        if table.key.is_empty() {
            "rowid".to_owned()
        } else {
            quoted(&table.key, '"')
        }
    );
    let mut rows = sqlx::query(&select).fetch(&mut *source);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH_ROWS);
    let mut batch_bytes = 0;
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let values = row_values(&row, table)?;
        batch_bytes += values.iter().map(Value::size).sum::<usize>();
        batch.push(values);
        if batch.len() >= BATCH_ROWS || batch_bytes >= BATCH_BYTES {
            count += insert(target, table, &batch).await?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        count += insert(target, table, &batch).await?;
    }
    Ok(count)
}

/// One multi-row `INSERT` of `rows`, every value bound.
async fn insert(target: &mut MySqlConnection, table: &Table, rows: &[Vec<Value>]) -> Result<u64> {
    let mut builder: QueryBuilder<'_, MySql> = QueryBuilder::new(format!(
        "INSERT INTO `{}` ({}) ",
        table.name,
        quoted(&table.columns, '`')
    ));
    builder.push_values(rows, |mut row_builder, row| {
        for value in row {
            match value {
                Value::Null => row_builder.push_bind(None::<i64>),
                Value::Integer(integer) => row_builder.push_bind(*integer),
                Value::Real(real) => row_builder.push_bind(*real),
                Value::Text(text) => row_builder.push_bind(text.clone()),
                Value::Blob(bytes) => row_builder.push_bind(bytes.clone()),
            };
        }
    });
    let done = builder.build().execute(&mut *target).await?;
    Ok(done.rows_affected())
}

/// A row's values by storage class (a STRICT table's column holds one
/// class, or NULL).
fn row_values(row: &SqliteRow, table: &Table) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(table.columns.len());
    for (index, column) in table.columns.iter().enumerate() {
        let raw = row.try_get_raw(index)?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            let class = raw.type_info().name().to_owned();
            match class.as_str() {
                "INTEGER" => Value::Integer(row.try_get(index)?),
                "REAL" => Value::Real(row.try_get(index)?),
                "TEXT" => Value::Text(row.try_get(index)?),
                "BLOB" => Value::Blob(row.try_get(index)?),
                other => {
                    return Err(StoreError::Engine(format!(
                        "{}.{column} holds a value of type {other}",
                        table.name
                    )))
                }
            }
        };
        values.push(value);
    }
    Ok(values)
}

/// The source's tables (not SQLite's own, nor the migrations'), in the
/// order they were created, with their columns, keys and parents.
async fn source_tables(source: &mut SqliteConnection) -> Result<Vec<Table>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ? ORDER BY rowid",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut *source)
    .await?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        check_identifier(&name)?;
        let columns: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid")
                .bind(&name)
                .fetch_all(&mut *source)
                .await?;
        let mut key: Vec<(i64, String)> = columns
            .iter()
            .filter(|(_, pk)| *pk > 0)
            .map(|(column, pk)| (*pk, column.clone()))
            .collect();
        key.sort();
        let parents: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?)")
                .bind(&name)
                .fetch_all(&mut *source)
                .await?;
        let columns: Vec<String> = columns.into_iter().map(|(column, _)| column).collect();
        for column in &columns {
            check_identifier(column)?;
        }
        tables.push(Table {
            name,
            columns,
            key: key.into_iter().map(|(_, column)| column).collect(),
            parents,
        });
    }
    Ok(tables)
}

/// Orders tables so that every table comes after the tables it refers to,
/// keeping the given order where the references allow.
fn in_dependency_order(mut pending: Vec<Table>) -> Result<Vec<Table>> {
    let names: HashSet<String> = pending.iter().map(|table| table.name.clone()).collect();
    let mut placed = HashSet::new();
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|table| {
            table.parents.iter().all(|parent| {
                parent == &table.name || placed.contains(parent) || !names.contains(parent)
            })
        });
        let Some(ready) = ready else {
            let stuck: Vec<&str> = pending.iter().map(|table| table.name.as_str()).collect();
            return Err(StoreError::Engine(format!(
                "the foreign keys of {} refer to each other in a cycle",
                stuck.join(", ")
            )));
        };
        let table = pending.remove(ready);
        placed.insert(table.name.clone());
        ordered.push(table);
    }
    Ok(ordered)
}

/// Both databases must have had the same migrations applied, or their
/// columns may differ.
async fn check_same_migrations(
    source: &mut SqliteConnection,
    target: &mut MySqlConnection,
) -> Result<()> {
    let query = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
    let in_source: Vec<i64> = sqlx::query_scalar(query).fetch_all(&mut *source).await?;
    let in_target: Vec<i64> = sqlx::query_scalar(query).fetch_all(&mut *target).await?;
    if in_source == in_target {
        Ok(())
    } else {
        Err(StoreError::Config(format!(
            "the schemas differ: the SQLite store has migrations {in_source:?}, \
             the target {in_target:?} (was the target made by another version of chatd?)"
        )))
    }
}

/// The target must have the table and every column of it.
async fn check_target_table(target: &mut MySqlConnection, table: &Table) -> Result<()> {
    let columns: Vec<DbText> = sqlx::query_scalar(
        "SELECT column_name FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ?",
    )
    .bind(&table.name)
    .fetch_all(&mut *target)
    .await?;
    let columns: HashSet<String> = columns.into_iter().map(|DbText(name)| name).collect();
    if columns.is_empty() {
        return Err(StoreError::Config(format!(
            "the target database has no table {}",
            table.name
        )));
    }
    if let Some(missing) = table
        .columns
        .iter()
        .find(|column| !columns.contains(*column))
    {
        return Err(StoreError::Config(format!(
            "the target's table {} has no column {missing}",
            table.name
        )));
    }
    Ok(())
}

/// The id counters of the copied tables: one past the last id SQLite
/// handed out, which may be above every id still there.
async fn id_counters(source: &mut SqliteConnection, tables: &[Table]) -> Result<Vec<IdCounter>> {
    let has_sequences: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' \
         AND name = 'sqlite_sequence')",
    )
    .fetch_one(&mut *source)
    .await?;
    if !has_sequences {
        return Ok(Vec::new());
    }
    let sequences: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT name, seq FROM sqlite_sequence")
            .fetch_all(&mut *source)
            .await?
            .into_iter()
            .collect();
    Ok(tables
        .iter()
        .filter_map(|table| {
            sequences.get(&table.name).map(|seq| IdCounter {
                table: table.name.clone(),
                next_id: seq.saturating_add(1),
            })
        })
        .collect())
}

/// Table and column names go into SQL text (names cannot be bound), so
/// only plain ones are taken.
fn check_identifier(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        Ok(())
    } else {
        Err(StoreError::Engine(format!(
            "the SQLite store has a table or column named {name:?}, which chatd never makes"
        )))
    }
}

/// `a, b, c` with each name in `quote`s.
fn quoted(names: &[String], quote: char) -> String {
    names
        .iter()
        .map(|name| format!("{quote}{name}{quote}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, parents: &[&str]) -> Table {
        Table {
            name: name.to_owned(),
            columns: vec!["id".to_owned()],
            key: vec!["id".to_owned()],
            parents: parents.iter().map(|&parent| parent.to_owned()).collect(),
        }
    }

    fn names(tables: &[Table]) -> Vec<&str> {
        tables.iter().map(|table| table.name.as_str()).collect()
    }

    #[test]
    fn parents_come_first() {
        let ordered = in_dependency_order(vec![
            table("messages", &["conversations", "users"]),
            table("users", &[]),
            table("conversations", &["users"]),
            table("tree", &["tree"]),
        ])
        .unwrap();
        assert_eq!(
            names(&ordered),
            ["users", "conversations", "messages", "tree"]
        );
        assert!(in_dependency_order(vec![table("a", &["b"]), table("b", &["a"])]).is_err());
    }

    #[test]
    fn only_plain_names_go_into_sql() {
        assert!(check_identifier("conversation_members").is_ok());
        assert!(check_identifier("users`; DROP TABLE users; --").is_err());
        assert!(check_identifier("a b").is_err());
        assert!(check_identifier("1abc").is_err());
        assert!(check_identifier("").is_err());
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_copy() {
        let refused = |result: Result<CopyReport>| matches!(result, Err(StoreError::Config(_)));
        assert!(refused(
            copy_sqlite_to_mysql("mysql://u@h/a", "mysql://u@h/b", |_| {}).await
        ));
        assert!(refused(
            copy_sqlite_to_mysql("sqlite://x.db", "sqlite://y.db", |_| {}).await
        ));
        assert!(refused(
            copy_sqlite_to_mysql("sqlite::memory:", "mysql://u@h/b", |_| {}).await
        ));
        let dir = tempfile::tempdir().unwrap();
        let missing = format!("sqlite://{}", dir.path().join("none.db").display());
        assert!(refused(
            copy_sqlite_to_mysql(&missing, "mysql://u@h/b", |_| {}).await
        ));
        assert!(!dir.path().join("none.db").exists());
    }

    #[tokio::test]
    async fn refuses_a_database_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chat.db").display());
        let store = crate::sqlite::SqliteStore::open(&url).await.unwrap();
        let refused = copy_sqlite_to_mysql(&url, "mysql://u@127.0.0.1:9/b", |_| {}).await;
        match refused {
            Err(StoreError::Config(reason)) => assert!(reason.contains("in use"), "{reason}"),
            other => panic!("copied a database in use: {other:?}"),
        }
        store.close().await;
        // Stopped, it is free; the source is read (and the lock taken and
        // given back) before the target is reached.
        let mut source = open_source(&dir.path().join("chat.db")).await.unwrap();
        let tables = in_dependency_order(source_tables(&mut source).await.unwrap()).unwrap();
        source.close().await.unwrap();
        assert_eq!(tables[0].name, "users");
        let order: Vec<&str> = names(&tables);
        let position = |name: &str| order.iter().position(|table| *table == name).unwrap();
        assert!(position("conversations") < position("messages"));
        assert!(position("chat_groups") < position("group_members"));
        assert!(!order.contains(&MIGRATIONS_TABLE));
    }
}
