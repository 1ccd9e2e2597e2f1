//! Shared by the client's integration tests (and, through a `#[path]`
//! module, by `chat-cli`'s): a real chatd in-process on an ephemeral port
//! with a temporary SQLite store, and helpers to make users and friends
//! through the library.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chat_client::{Connection, IntoUserRef};
use chat_proto::{FriendAddRequest, FriendRespondRequest, RegisterRequest};
use chat_server::{Config, RunningServer};
use tempfile::TempDir;

/// The password of every test user.
pub const PASSWORD: &str = "correct horse battery";

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running chatd over a temporary SQLite file.
pub struct TestServer {
    server: Option<RunningServer>,
    addr: SocketAddr,
    store: String,
    _dir: TempDir,
}

fn config(listen: String, store: String) -> Config {
    Config {
        listen,
        store,
        // The tests send quickly and register many users from one address;
        // rate and registration limits have their own server tests.
        rate_limit_per_sec: 0,
        registrations_per_ip_per_hour: 0,
        registrations_per_minute: 0,
        shutdown_grace_secs: 5,
        http_listen: String::new(),
        ..Config::default()
    }
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0`.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = format!("sqlite://{}", dir.path().join("chat.db").display());
        let server = chat_server::start(config("127.0.0.1:0".to_owned(), store.clone()))
            .await
            .expect("server starts");
        TestServer {
            addr: server.local_addr(),
            server: Some(server),
            store,
            _dir: dir,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as `host:port`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the server as a crash would (no draining), waits `down_for`,
    /// and starts it again on the same store file and the same address.
    pub async fn crash_and_restart(&mut self, down_for: Duration) {
        self.server.take().expect("running").abort().await;
        tokio::time::sleep(down_for).await;
        self.start_again().await;
    }

    /// Shuts the server down gracefully (sessions are told it is draining),
    /// waits `down_for`, and starts it again on the same store and address.
    pub async fn drain_and_restart(&mut self, down_for: Duration) {
        self.server
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        tokio::time::sleep(down_for).await;
        self.start_again().await;
    }

    async fn start_again(&mut self) {
        // The old listener is gone, but give the kernel a moment if the
        // port is not free yet.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match chat_server::start(config(self.addr.to_string(), self.store.clone())).await {
                Ok(server) => {
                    assert_eq!(server.local_addr(), self.addr);
                    self.server = Some(server);
                    return;
                }
                Err(error) if tokio::time::Instant::now() < deadline => {
                    eprintln!("restart not possible yet: {error:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("server does not restart: {error:#}"),
            }
        }
    }

    /// Stops gracefully.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }
}

/// A user name unique within the test process (names are unique per
/// server, and each test has its own server, but readable distinct names
/// make failures easier to follow).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Registers `name` with [`PASSWORD`].
pub async fn register(addr: SocketAddr, name: &str) {
    let connection = Connection::connect(addr).await.expect("connect");
    connection
        .call(RegisterRequest {
            name: name.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .expect("register");
}

/// A connection logged in as `name`.
pub async fn logged_in(addr: SocketAddr, name: &str) -> Connection {
    let connection = Connection::connect(addr).await.expect("connect");
    connection.login(name, PASSWORD).await.expect("login");
    connection
}

/// Makes `a` and `b` (registered) friends.
pub async fn befriend(addr: SocketAddr, a: &str, b: &str) {
    let first = logged_in(addr, a).await;
    let second = logged_in(addr, b).await;
    first
        .call(FriendAddRequest {
            user: b.into_user_ref(),
            message: None,
        })
        .await
        .expect("friend_add");
    second
        .call(FriendRespondRequest {
            user: a.into_user_ref(),
            accept: true,
        })
        .await
        .expect("friend_respond");
}
