//! Shared by the integration tests: a real chatd on an ephemeral port with
//! a temporary SQLite store, and helpers to make users and friends.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chat_client::Connection;
use chat_proto::{LoginResponse, Push, Status};
use chat_server::{Config, RunningServer};
use tempfile::TempDir;

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery";

/// How long a test waits for a push that should come.
pub const PUSH_WAIT: Duration = Duration::from_secs(5);

/// How long a test waits to be sure a push does not come.
pub const NO_PUSH_WAIT: Duration = Duration::from_millis(300);

/// A running chatd over a temporary SQLite file.
pub struct TestServer {
    server: Option<RunningServer>,
    addr: SocketAddr,
    config: Config,
    dir: TempDir,
}

impl TestServer {
    /// A server with test-friendly defaults.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `adjust` may change first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".to_owned(),
            store: format!("sqlite://{}", dir.path().join("chat.db").display()),
            // Tests fire requests quickly; the limits have their own tests.
            rate_limit_per_sec: 0,
            shutdown_grace_secs: 5,
            ..Config::default()
        };
        adjust(&mut config);
        let server = chat_server::start(config.clone())
            .await
            .expect("server starts");
        TestServer {
            addr: server.local_addr(),
            server: Some(server),
            config,
            dir,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops gracefully and starts again on the same store and address.
    pub async fn restart(&mut self) {
        self.server
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        let config = Config {
            listen: self.addr.to_string(),
            ..self.config.clone()
        };
        let server = chat_server::start(config).await.expect("server restarts");
        self.addr = server.local_addr();
        self.server = Some(server);
    }

    /// Stops gracefully.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }

    /// A new connection, not logged in.
    pub async fn connect(&self) -> Connection {
        Connection::connect(self.addr).await.expect("connects")
    }

    /// Registers `name` and logs in on a new connection.
    pub async fn user(&self, name: &str) -> (Connection, LoginResponse) {
        let connection = self.connect().await;
        connection
            .register(name, PASSWORD)
            .await
            .expect("registers");
        let login = connection.login(name, PASSWORD).await.expect("logs in");
        (connection, login)
    }

    /// Logs an existing user in on a new connection.
    pub async fn login(&self, name: &str) -> (Connection, LoginResponse) {
        let connection = self.connect().await;
        let login = connection.login(name, PASSWORD).await.expect("logs in");
        (connection, login)
    }
}

/// A name no other test in this process uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Makes `a` and `b` friends: `a` asks, `b` accepts. Drains the pushes this
/// causes so later assertions see only their own.
pub async fn befriend(a: &Connection, b: &Connection, b_name: &str, a_name: &str) {
    a.friend_add(b_name, None).await.expect("friend request");
    expect_push(b, |push| matches!(push, Push::PushFriendRequest(_))).await;
    b.friend_respond(a_name, true).await.expect("accepts");
    expect_push(a, |push| matches!(push, Push::PushFriendUpdate(_))).await;
}

/// Waits for the next push that `matches`, skipping presence pushes and
/// failing on any other push or on a timeout.
pub async fn expect_push(connection: &Connection, matches: impl Fn(&Push) -> bool) -> Push {
    loop {
        let push = connection
            .next_push_timeout(PUSH_WAIT)
            .await
            .expect("a push arrives in time");
        if matches(&push) {
            return push;
        }
        assert!(
            matches!(push, Push::PushPresence(_)),
            "unexpected push {push:?}"
        );
    }
}

/// Asserts no push but presence arrives within a short while.
pub async fn expect_no_push(connection: &Connection) {
    while let Some(push) = connection.next_push_timeout(NO_PUSH_WAIT).await {
        assert!(
            matches!(push, Push::PushPresence(_)),
            "unexpected push {push:?}"
        );
    }
}

/// The status of a failed call, panicking if it succeeded.
pub fn status_of<T: std::fmt::Debug>(result: chat_client::Result<T>) -> Status {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error
            .status()
            .unwrap_or_else(|| panic!("expected a server error, got {error}")),
    }
}

/// Waits for the pushed message with this body, skipping any other push
/// (presence, group and friend events) but failing on a timeout.
pub async fn expect_message(connection: &Connection, body: &str) -> chat_proto::ChatMessage {
    loop {
        match connection.next_push_timeout(PUSH_WAIT).await {
            Some(Push::PushMessage(message)) if message.body == body => return message,
            Some(_) => {}
            None => panic!("no message {body:?} arrived in time"),
        }
    }
}
