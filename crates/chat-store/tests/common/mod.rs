//! Fresh stores for the tests: a SQLite file in a temporary directory, or a
//! MariaDB database of its own that is dropped afterwards.

#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::hash::{BuildHasher, RandomState};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chat_store::sqlite::SqliteStore;
use chat_store::{mysql::MysqlStore, Store};
use sqlx::{Connection, Executor, MySqlConnection};

/// A SQLite store in a file of its own; the directory goes when this does.
pub struct SqliteFile {
    /// The open store.
    pub store: Arc<dyn Store>,
    /// The store URL, to open the same file again.
    pub url: String,
    directory: tempfile::TempDir,
}

impl SqliteFile {
    /// Closes the store and lets go of it, as a stopped chatd would, keeping
    /// the file: the directory (removed when dropped) and the URL.
    pub async fn stop(self) -> (tempfile::TempDir, String) {
        self.store.close().await;
        drop(self.store);
        (self.directory, self.url)
    }

    pub async fn new() -> SqliteFile {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", directory.path().join("chat.db").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        SqliteFile {
            store,
            url,
            directory,
        }
    }
}

/// A MariaDB database made for one test. Dropping this drops the database,
/// so it goes even when the test fails halfway.
pub struct MariaDb {
    server_url: String,
    name: String,
    dropped: bool,
}

/// How long to wait for MariaDB before deciding it is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl MariaDb {
    /// Creates `chat_test_<label>_<random>`; `None` (after saying so) when
    /// MariaDB cannot be reached and the environment does not require it.
    ///
    /// # Panics
    /// If MariaDB is unreachable and `CHATD_TEST_REQUIRE_SERVICES=1`, or it
    /// refuses to create the database.
    pub async fn create(label: &str) -> Option<MariaDb> {
        let server_url = std::env::var("CHATD_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
        let server_url = server_url.trim_end_matches('/').to_owned();
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect(&server_url)).await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            failure => {
                let why = match failure {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_owned(),
                };
                if std::env::var("CHATD_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                    panic!("store conformance needs MariaDB at {server_url}: {why}");
                }
                // Straight to the process's stderr: the test harness
                // captures `eprintln!` of passing tests, and a skip must be
                // seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: store conformance ({label}) needs MariaDB at {server_url}: {why}"
                );
                return None;
            }
        };
        // The name is made here from a label and hex digits, never from
        // input, so it can be spliced into the DDL (names cannot be bound).
        let random = RandomState::new().hash_one(std::process::id()) & 0xffff_ffff;
        let label: String = label
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect();
        let name = format!("chat_test_{label}_{random:08x}");
        conn.execute(
            format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin")
                .as_str(),
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
        Some(MariaDb {
            server_url,
            name,
            dropped: false,
        })
    }

    /// The store URL of this database.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server_url, self.name)
    }

    /// The `HOST:PORT` of the MariaDB server.
    pub fn server_address(&self) -> String {
        let rest = self
            .server_url
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        rest.rsplit_once('@')
            .map_or(rest, |(_, address)| address)
            .to_owned()
    }

    /// The store URL of this database reached at `address` instead (a proxy
    /// in front of the server), with `query` appended.
    pub fn url_through(&self, address: std::net::SocketAddr, query: &str) -> String {
        let scheme_and_user = self
            .server_url
            .strip_suffix(self.server_address().as_str())
            .unwrap_or("mysql://");
        format!("{scheme_and_user}{address}/{}{query}", self.name)
    }

    /// Opens a store (a "node") on this database.
    pub async fn open(&self) -> Arc<dyn Store> {
        Arc::new(MysqlStore::open(&self.url()).await.unwrap())
    }

    /// Drops the database now (the normal end of a test).
    pub async fn drop_now(mut self) {
        drop_database(&self.server_url, &self.name).await;
        self.dropped = true;
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // A failed test unwinds through here inside its runtime, where
        // blocking on a future is not allowed: drop on a thread of its own.
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(drop_database(&server_url, &name));
        });
        if dropper.join().is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

async fn drop_database(server_url: &str, name: &str) {
    match MySqlConnection::connect(server_url).await {
        Ok(mut conn) => {
            if let Err(error) = conn
                .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                .await
            {
                eprintln!("could not drop test database {name}: {error}");
            }
            let _ = conn.close().await;
        }
        Err(error) => eprintln!("could not drop test database {name}: {error}"),
    }
}

/// A database as an older chatd left it: the migrations of `backend`
/// numbered below `before` only, then `statements` (rows in that schema).
/// For SQLite, a fresh file in the returned directory, at the returned URL;
/// for MariaDB, `database`, whose URL is returned.
pub async fn old_database(
    backend: &str,
    database: Option<&MariaDb>,
    before: &str,
    statements: &[&str],
) -> (Option<tempfile::TempDir>, String) {
    let migrations = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < before {
            std::fs::copy(&path, migrations.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(migrations.path())
        .await
        .unwrap();
    match database {
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("chat.db").display());
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
                .await
                .unwrap();
            migrator.run(&pool).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            pool.close().await;
            (Some(dir), url)
        }
        Some(database) => {
            let pool = sqlx::MySqlPool::connect(&database.url()).await.unwrap();
            migrator.run(&pool).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            pool.close().await;
            (None, database.url())
        }
    }
}
