//! Shared by the integration tests: a real chatd on an ephemeral port with
//! a temporary SQLite store, and helpers to make users and friends.

#![allow(dead_code)]

pub mod poll;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chat_client::{ClientTls, Connection, ConnectionOptions, IntoUserRef};
use chat_proto::{
    FriendAddRequest, FriendRespondRequest, Group, GroupCreateRequest, JoinPolicy, LoginResponse,
    Push, RegisterRequest, Status,
};
use chat_server::{Config, RunningServer};
use tempfile::TempDir;

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery";

/// How long a test waits for a push that should come.
pub const PUSH_WAIT: Duration = Duration::from_secs(5);

/// How long a test waits to be sure a push does not come.
pub const NO_PUSH_WAIT: Duration = Duration::from_millis(300);

/// The transport a test's clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Plain TCP.
    Tcp,
    /// TLS on the chat listener, with a certificate from a test CA.
    Tls,
    /// WebSocket on the HTTP listener.
    WebSocket,
}

/// Runs an `async fn(Wire)` scenario as one test per transport, so a suite
/// is written once and run over TCP, TLS and WebSocket alike.
#[macro_export]
macro_rules! over_every_wire {
    ($($scenario:ident),* $(,)?) => {
        mod over_tcp {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::common::Wire::Tcp).await } )*
        }
        mod over_tls {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::common::Wire::Tls).await } )*
        }
        mod over_websocket {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::common::Wire::WebSocket).await } )*
        }
    };
}

/// As [`over_every_wire!`], over the byte-stream transports (TCP and TLS)
/// only, for behaviour a WebSocket does not have by design (frames split
/// or joined anywhere in the stream).
#[macro_export]
macro_rules! over_byte_streams {
    ($($scenario:ident),* $(,)?) => {
        mod over_tcp_stream {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::common::Wire::Tcp).await } )*
        }
        mod over_tls_stream {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::common::Wire::Tls).await } )*
        }
    };
}

/// A running chatd over a temporary SQLite file.
pub struct TestServer {
    wire: Wire,
    client_tls: Option<ClientTls>,
    server: Option<RunningServer>,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
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
        Self::start_over(Wire::Tcp, adjust).await
    }

    /// A server whose clients connect over `wire` (with a certificate from
    /// a fresh test CA for TLS).
    pub async fn start_over(wire: Wire, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut client_tls = None;
        let mut certificate = None;
        if wire == Wire::Tls {
            let ca = tls::TestCa::new();
            certificate = Some(ca.issue(dir.path(), "server"));
            let ca_file = ca.write_ca(dir.path(), "test");
            client_tls = Some(ClientTls::from_ca_file(ca_file).expect("CA loads"));
        }
        let mut config = Config {
            listen: "127.0.0.1:0".to_owned(),
            store: format!("sqlite://{}", dir.path().join("chat.db").display()),
            // Tests fire requests quickly and register many users from one
            // address; the limits have their own tests.
            rate_limit_per_sec: 0,
            registrations_per_ip_per_hour: 0,
            registrations_per_minute: 0,
            shutdown_grace_secs: 5,
            http_listen: "127.0.0.1:0".to_owned(),
            ..Config::default()
        };
        if let Some((cert, key)) = certificate {
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
        }
        adjust(&mut config);
        let server = chat_server::start(config.clone())
            .await
            .expect("server starts");
        TestServer {
            wire,
            client_tls,
            addr: server.local_addr(),
            http_addr: server.http_addr(),
            server: Some(server),
            config,
            dir,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTP listener's address (WebSocket, probes, metrics).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr.expect("the HTTP listener is on")
    }

    /// The running node.
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("running")
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops gracefully and starts again on the same store and address.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// Stops gracefully and starts again on the same store and address,
    /// with the configuration `adjust` changes.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        adjust(&mut self.config);
        self.server
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        let http_listen = match self.http_addr {
            Some(addr) => addr.to_string(),
            None => String::new(),
        };
        let config = Config {
            listen: self.addr.to_string(),
            http_listen,
            ..self.config.clone()
        };
        let server = chat_server::start(config).await.expect("server restarts");
        self.addr = server.local_addr();
        self.http_addr = server.http_addr();
        self.server = Some(server);
    }

    /// Stops gracefully.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }

    /// The transport its clients use.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// A TLS connector that trusts the server's test CA.
    pub fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        let tls = self.client_tls.as_ref().expect("a TLS server");
        tokio_rustls::TlsConnector::from(tls.config().clone())
    }

    /// The URL clients of this server's transport connect to.
    pub fn url(&self) -> String {
        match self.wire {
            Wire::Tcp => self.addr.to_string(),
            Wire::Tls => format!("tls://{}", self.addr),
            Wire::WebSocket => format!("ws://{}/ws", self.http_addr()),
        }
    }

    /// Connection options for this server's transport.
    pub fn connection_options(&self) -> ConnectionOptions {
        ConnectionOptions {
            tls: self.client_tls.clone(),
            ..ConnectionOptions::default()
        }
    }

    /// A new connection over the server's transport, not logged in.
    pub async fn connect(&self) -> Connection {
        Connection::connect_url(&self.url(), self.connection_options())
            .await
            .expect("connects")
    }

    /// Registers `name` and logs in on a new connection.
    pub async fn user(&self, name: &str) -> (Connection, LoginResponse) {
        let connection = self.connect().await;
        connection
            .call(RegisterRequest {
                name: name.to_owned(),
                password: PASSWORD.to_owned(),
            })
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
    a.call(FriendAddRequest {
        user: b_name.into_user_ref(),
        message: None,
    })
    .await
    .expect("friend request");
    expect_push(b, |push| matches!(push, Push::PushFriendRequest(_))).await;
    b.call(FriendRespondRequest {
        user: a_name.into_user_ref(),
        accept: true,
    })
    .await
    .expect("accepts");
    expect_push(a, |push| matches!(push, Push::PushFriendUpdate(_))).await;
}

/// Creates an open group owned by `owner`, with no description.
pub async fn open_group(owner: &Connection, name: &str) -> Group {
    owner
        .call(GroupCreateRequest {
            name: name.to_owned(),
            description: String::new(),
            join_policy: JoinPolicy::Open,
        })
        .await
        .expect("group created")
        .group
}

/// Waits until the account `name` is stored, that is until its
/// registration has committed, reading the server's SQLite file beside it.
pub async fn wait_until_stored(server: &TestServer, name: &str) {
    let pool = sqlx::SqlitePool::connect(&server.config().store)
        .await
        .expect("the test database opens");
    poll::eventually(PUSH_WAIT, &format!("{name} stored"), || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users WHERE name = ?")
            .bind(name)
            .fetch_one(&pool)
            .await
            .expect("the users table reads")
            > 0
    })
    .await;
    pool.close().await;
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

/// Asserts that no push at all, presence included, arrives within a short
/// while.
pub async fn expect_silence(connection: &Connection) {
    if let Some(push) = connection.next_push_timeout(NO_PUSH_WAIT).await {
        panic!("expected no push at all, got {push:?}");
    }
}

/// Discards every push until none has come for a short while; returns them.
pub async fn drain_pushes(connection: &Connection) -> Vec<Push> {
    let mut drained = Vec::new();
    while let Some(push) = connection.next_push_timeout(NO_PUSH_WAIT).await {
        drained.push(push);
    }
    drained
}

/// Waits for the next chat message push (skipping presence, failing on
/// anything else).
pub async fn next_message(connection: &Connection) -> chat_proto::ChatMessage {
    match expect_push(connection, |push| matches!(push, Push::PushMessage(_))).await {
        Push::PushMessage(message) => message,
        _ => unreachable!("matched a message push"),
    }
}

/// Waits for the next group event push (skipping presence, failing on
/// anything else).
pub async fn expect_group_event(connection: &Connection) -> chat_proto::GroupEventPush {
    match expect_push(connection, |push| matches!(push, Push::PushGroupEvent(_))).await {
        Push::PushGroupEvent(event) => event,
        _ => unreachable!("matched a group event push"),
    }
}

/// Every message of a conversation, read through `history` pages of 200.
pub async fn whole_history(
    connection: &Connection,
    conversation_id: chat_proto::ConversationId,
) -> Vec<chat_proto::ChatMessage> {
    let mut messages = Vec::new();
    loop {
        let page = connection
            .call(chat_proto::HistoryRequest {
                conversation_id,
                before_seq: None,
                after_seq: Some(chat_proto::Seq(messages.len() as u64)),
                limit: Some(200),
            })
            .await
            .expect("history");
        messages.extend(page.messages);
        if !page.has_more {
            return messages;
        }
    }
}

/// A bare TCP connection that writes request frames and reads frames only
/// when told to: for clients that misbehave on purpose (never reading).
pub struct RawClient {
    /// The socket.
    pub stream: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    next_request_id: u32,
}

impl RawClient {
    /// Connects to `server`.
    pub async fn connect(server: &TestServer) -> RawClient {
        let stream = tokio::net::TcpStream::connect(server.addr())
            .await
            .expect("connects");
        RawClient::from_stream(stream)
    }

    /// Connects to `server` with a small socket receive buffer, so that a
    /// client that stops reading pushes back on the server soon.
    pub async fn connect_with_small_buffer(server: &TestServer) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("receive buffer size");
        let stream = socket.connect(server.addr()).await.expect("connects");
        RawClient::from_stream(stream)
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: tokio::net::TcpStream) -> RawClient {
        RawClient {
            stream,
            buf: bytes::BytesMut::new(),
            next_request_id: 1,
        }
    }

    /// Writes one request; returns its request id.
    pub async fn write_request(&mut self, request: &chat_proto::Request) -> u32 {
        use tokio::io::AsyncWriteExt;
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let mut bytes = bytes::BytesMut::new();
        request.encode(request_id, &mut bytes).expect("encodes");
        self.stream.write_all(&bytes).await.expect("writes");
        request_id
    }

    /// The next frame, or `None` once the server closed the connection.
    pub async fn read_frame(&mut self) -> Option<chat_proto::Frame> {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(PUSH_WAIT, async {
            loop {
                if let Some(frame) =
                    chat_proto::frame::decode(&mut self.buf, usize::MAX >> 1).expect("valid frame")
                {
                    return Some(frame);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the server sends a frame or closes in time")
    }

    /// Reads frames until the response to `request_id`, asserting success.
    pub async fn expect_ok(&mut self, request_id: u32) -> chat_proto::Frame {
        loop {
            let frame = self.read_frame().await.expect("a response");
            if frame.header.flags.is_response() && frame.header.request_id == request_id {
                assert_eq!(
                    frame.header.status,
                    0,
                    "request {request_id} failed: {}",
                    String::from_utf8_lossy(&frame.payload)
                );
                return frame;
            }
        }
    }

    /// Logs in as an existing user and reads the login response (and
    /// nothing after it).
    pub async fn login(&mut self, name: &str) {
        let request_id = self
            .write_request(&chat_proto::Request::Login(chat_proto::LoginRequest {
                user: Some(chat_proto::UserRef::Name(name.to_owned())),
                password: Some(PASSWORD.to_owned()),
                token: None,
            }))
            .await;
        self.expect_ok(request_id).await;
    }
}
