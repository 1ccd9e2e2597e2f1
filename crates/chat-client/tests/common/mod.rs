//! Shared by the client's integration tests: a real chatd in-process on an
//! ephemeral port with a temporary SQLite store, helpers to make users and
//! friends through the library, and a driver for the `chat` binary over
//! pipes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chat_client::Connection;
use chat_server::{Config, RunningServer};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

/// The password of every test user.
pub const PASSWORD: &str = "correct horse battery";

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The path of the `chat` binary under test.
pub const CHAT: &str = env!("CARGO_BIN_EXE_chat");

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
    connection.register(name, PASSWORD).await.expect("register");
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
    first.friend_add(b, None).await.expect("friend_add");
    second
        .friend_respond(a, true)
        .await
        .expect("friend_respond");
}

/// A `chat` process in scripted mode, fed line by line, its stdout read as
/// it comes.
pub struct ChatProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stdout line read so far, for failure messages.
    pub seen: Vec<String>,
}

impl ChatProcess {
    /// Starts `chat --server ADDR` with `args`.
    pub fn spawn(addr: SocketAddr, args: &[&str]) -> ChatProcess {
        let mut child = tokio::process::Command::new(CHAT)
            .arg("--server")
            .arg(addr.to_string())
            .args(args)
            .env_remove("CHAT_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chat starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        ChatProcess {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Types one command.
    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to chat");
        stdin.flush().await.expect("flush");
    }

    /// Reads stdout until a line satisfies `matches`; panics with everything
    /// seen after [`PATIENCE`].
    pub async fn expect_line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            match line {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!("chat exited before {what}; saw {:#?}", self.seen),
                Err(_) => panic!("no {what} within {PATIENCE:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Reads stdout until a JSON line satisfies `matches`.
    pub async fn expect_json(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let line = self
            .expect_line(what, |line| {
                serde_json::from_str::<Value>(line).is_ok_and(|value| matches(&value))
            })
            .await;
        serde_json::from_str(&line).expect("json")
    }

    /// Waits for the successful JSON response to `command`; panics on its
    /// error response.
    pub async fn expect_ok(&mut self, command: &str) -> Value {
        let value = self
            .expect_json(&format!("a response to {command}"), |value| {
                value["type"] == "response" && value["command"] == command
            })
            .await;
        assert_eq!(value["ok"], true, "{command} failed: {value}");
        value
    }

    /// Closes stdin and waits for the exit; returns the status, the rest of
    /// stdout and all of stderr.
    pub async fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        drop(self.stdin.take());
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = tokio::time::timeout(PATIENCE, pipe.read_to_string(&mut stderr)).await;
        }
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("chat exits")
            .expect("wait for chat");
        let mut rest = std::mem::take(&mut self.seen);
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await
        {
            rest.push(line);
        }
        (status, rest, stderr)
    }
}

/// Runs `chat` with `args` over a whole script; returns the status, stdout
/// lines and stderr.
pub async fn run_script(
    addr: SocketAddr,
    args: &[&str],
    script: &str,
) -> (ExitStatus, Vec<String>, String) {
    let mut process = ChatProcess::spawn(addr, args);
    for line in script.lines() {
        process.send(line).await;
    }
    process.finish().await
}
