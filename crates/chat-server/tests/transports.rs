//! The transports and the HTTP side, at the socket: TLS (trust, handshake
//! timeout, plain TCP on a TLS port, certificate reload), WebSocket (origin
//! check, text and malformed messages, fragments, size limits, ping and
//! close), and the probes and metrics.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chat_proto::frame::{self, Frame};
use chat_proto::{PingRequest, Request, Target};
use common::tls::TestCa;
use common::TestServer;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a test waits for something that should happen soon.
const SOON: Duration = Duration::from_secs(5);

fn ping(request_id: u32) -> BytesMut {
    let mut buf = BytesMut::new();
    Request::Ping(PingRequest {})
        .encode(request_id, &mut buf)
        .unwrap();
    buf
}

/// Reads one whole frame from a byte stream.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Frame {
    let mut buf = BytesMut::new();
    tokio::time::timeout(SOON, async {
        loop {
            if let Some(frame) = frame::decode(&mut buf, 1 << 20).unwrap() {
                return frame;
            }
            assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .expect("a frame in time")
}

/// Sends a ping and checks its answer.
async fn ping_round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request_id: u32) {
    stream.write_all(&ping(request_id)).await.unwrap();
    let frame = read_frame(stream).await;
    assert!(frame.header.flags.is_response());
    assert_eq!(frame.header.request_id, request_id);
    assert_eq!(frame.header.status, 0);
}

/// Whether the peer closes `stream` within `within` (EOF or reset).
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut sink = [0u8; 1024];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    read.is_ok()
}

async fn tls_server(
    ca: &TestCa,
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut chat_server::Config),
) -> TestServer {
    let (cert, key) = ca.issue(dir, "server");
    TestServer::start_with(|config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        adjust(config);
    })
    .await
}

#[tokio::test]
async fn tls_carries_the_protocol_and_refuses_untrusted_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = tls_server(&ca, dir.path(), |_| {}).await;
    let mut stream = ca.connect(server.addr()).await.expect("handshake");
    ping_round_trip(&mut stream, 1).await;
    ping_round_trip(&mut stream, 2).await;
    // A client that trusts another CA refuses the server's certificate.
    let other = TestCa::new();
    let error = other.connect(server.addr()).await.expect_err("untrusted");
    assert!(
        error.to_string().contains("UnknownIssuer") || error.to_string().contains("certificate"),
        "{error}"
    );
    // The session survived the failed handshake next to it.
    ping_round_trip(&mut stream, 3).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_closed_and_counted_against_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = tls_server(&ca, dir.path(), |config| {
        config.tls_handshake_timeout_secs = 1;
        config.max_connections_per_ip = 2;
    })
    .await;
    let started = Instant::now();
    let mut silent_a = TcpStream::connect(server.addr()).await.unwrap();
    let mut silent_b = TcpStream::connect(server.addr()).await.unwrap();
    // No pause is needed for the two to be counted first: the accept loop
    // counts each connection against its address before it accepts the
    // next, and the listener hands them over in the order they connected.
    // A third from the same address is over the limit: closed at once.
    let mut third = TcpStream::connect(server.addr()).await.unwrap();
    assert!(closed_within(&mut third, Duration::from_millis(900)).await);
    // The silent ones are closed after the handshake timeout.
    assert!(closed_within(&mut silent_a, SOON).await);
    assert!(closed_within(&mut silent_b, SOON).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Their places are free again.
    let mut stream = ca.connect(server.addr()).await.expect("handshake");
    ping_round_trip(&mut stream, 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn plain_tcp_to_a_tls_port_is_closed_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = tls_server(&ca, dir.path(), |_| {}).await;
    for _ in 0..20 {
        let mut plain = TcpStream::connect(server.addr()).await.unwrap();
        plain.write_all(&ping(1)).await.unwrap();
        assert!(closed_within(&mut plain, Duration::from_secs(2)).await);
    }
    let mut stream = ca.connect(server.addr()).await.expect("handshake");
    ping_round_trip(&mut stream, 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_handshakes_and_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new();
    let server = tls_server(&old_ca, dir.path(), |_| {}).await;
    let mut session = old_ca.connect(server.addr()).await.expect("handshake");
    ping_round_trip(&mut session, 1).await;
    // Renewal: a certificate from another CA replaces the files.
    let new_ca = TestCa::new();
    new_ca.issue(dir.path(), "server");
    server.server().reload_tls().expect("reloads");
    ping_round_trip(&mut session, 2).await;
    assert!(old_ca.connect(server.addr()).await.is_err());
    let mut fresh = new_ca
        .connect(server.addr())
        .await
        .expect("new certificate");
    ping_round_trip(&mut fresh, 1).await;
    // A broken file keeps the certificate in use.
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    assert!(server.server().reload_tls().is_err());
    let mut again = new_ca.connect(server.addr()).await.expect("still served");
    ping_round_trip(&mut again, 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_a_running_chatd() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new();
    let (cert, key) = old_ca.issue(dir.path(), "server");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["--listen", &addr.to_string(), "--http-listen", ""])
        .arg("--store")
        .arg(format!("sqlite://{}", dir.path().join("chat.db").display()))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args(["--log", "warn"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chatd starts");
    let mut session = None;
    for _ in 0..100 {
        if let Ok(stream) = old_ca.connect(addr).await {
            session = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut session = session.expect("chatd listens");
    ping_round_trip(&mut session, 1).await;
    let new_ca = TestCa::new();
    new_ca.issue(dir.path(), "server");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut reloaded = false;
    for _ in 0..100 {
        if new_ca.connect(addr).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "SIGHUP did not reload the certificate");
    ping_round_trip(&mut session, 2).await;
    let _ = child.kill();
    let _ = child.wait();
}

/// Opens a WebSocket to the node's `/ws`, with an `Origin` if given.
async fn websocket(
    server: &TestServer,
    origin: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let addr = server.http_addr();
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("chatd.v1"),
    );
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_str(origin).unwrap());
    }
    let stream = TcpStream::connect(addr).await.unwrap();
    let (socket, response) = tokio_tungstenite::client_async(request, stream).await?;
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "chatd.v1"
    );
    Ok(socket)
}

/// The next data or close message, skipping pings and pongs.
async fn next_message(socket: &mut WebSocketStream<TcpStream>) -> Option<Message> {
    tokio::time::timeout(SOON, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("an answer in time")
}

async fn ws_ping(socket: &mut WebSocketStream<TcpStream>, request_id: u32) {
    socket
        .send(Message::Binary(ping(request_id).freeze()))
        .await
        .unwrap();
    match next_message(socket).await {
        Some(Message::Binary(bytes)) => {
            let mut buf = BytesMut::from(&bytes[..]);
            let frame = frame::decode(&mut buf, 1 << 20)
                .unwrap()
                .expect("one frame");
            assert!(buf.is_empty(), "exactly one frame per message");
            assert_eq!(frame.header.request_id, request_id);
            assert_eq!(frame.header.status, 0);
        }
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

fn close_code(message: Option<Message>) -> Option<u16> {
    match message {
        Some(Message::Close(Some(frame))) => Some(frame.code.into()),
        _ => None,
    }
}

#[tokio::test]
async fn websocket_carries_one_frame_per_binary_message() {
    let server = TestServer::start().await;
    let mut socket = websocket(&server, None).await.expect("upgrade");
    ws_ping(&mut socket, 1).await;
    ws_ping(&mut socket, 2).await;
    // A page of the server's own origin may connect.
    let own = format!("http://{}", server.http_addr());
    let mut browser = websocket(&server, Some(&own)).await.expect("own origin");
    ws_ping(&mut browser, 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_refuses_a_foreign_origin() {
    let server = TestServer::start().await;
    match websocket(&server, Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        Err(other) => panic!("expected 403, got {other}"),
        Ok(_) => panic!("a foreign origin was let in"),
    }
    // An allowed origin, by configuration.
    let listed = TestServer::start_with(|config| {
        config.allowed_origins = vec!["https://app.example".to_owned()];
    })
    .await;
    let mut socket = websocket(&listed, Some("https://app.example"))
        .await
        .expect("listed origin");
    ws_ping(&mut socket, 1).await;
    server.shutdown().await;
    listed.shutdown().await;
}

#[tokio::test]
async fn websocket_text_and_malformed_messages_close_with_a_code() {
    let server = TestServer::start().await;
    let mut text = websocket(&server, None).await.unwrap();
    text.send(Message::text("{\"hello\":1}")).await.unwrap();
    assert_eq!(close_code(next_message(&mut text).await), Some(1003));

    let mut double = websocket(&server, None).await.unwrap();
    let mut two = ping(1);
    two.extend_from_slice(&ping(2));
    double.send(Message::Binary(two.freeze())).await.unwrap();
    assert_eq!(close_code(next_message(&mut double).await), Some(1002));

    // A bad header is answered with its status, as on TCP, then closed.
    let mut garbage = websocket(&server, None).await.unwrap();
    garbage
        .send(Message::binary(&b"GET / HTTP/1.1\r\n\r\n"[..]))
        .await
        .unwrap();
    match next_message(&mut garbage).await {
        Some(Message::Binary(bytes)) => {
            let mut buf = BytesMut::from(&bytes[..]);
            let frame = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
            assert_eq!(
                frame.header.status,
                chat_proto::Status::ProtocolError.code()
            );
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    assert_eq!(close_code(next_message(&mut garbage).await), Some(1002));

    // Others are not disturbed.
    let mut other = websocket(&server, None).await.unwrap();
    ws_ping(&mut other, 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_fragments_are_joined_and_oversized_messages_refused() {
    let server = TestServer::start_with(|config| {
        config.max_frame_len = 2048;
        config.max_message_len = 1024;
    })
    .await;
    let mut socket = websocket(&server, None).await.unwrap();
    let whole = ping(9);
    let (head, tail) = whole.split_at(5);
    socket
        .send(Message::Frame(WsFrame::message(
            head.to_vec(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .await
        .unwrap();
    socket
        .send(Message::Frame(WsFrame::message(
            tail.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
    match next_message(&mut socket).await {
        Some(Message::Binary(bytes)) => {
            let mut buf = BytesMut::from(&bytes[..]);
            let frame = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
            assert_eq!(frame.header.request_id, 9);
        }
        other => panic!("expected the answer, got {other:?}"),
    }
    // Over the frame limit (2048 + header): the connection ends.
    let mut big = websocket(&server, None).await.unwrap();
    let _ = big.send(Message::binary(vec![0u8; 8192])).await;
    let ended = next_message(&mut big).await;
    assert!(
        matches!(ended, None | Some(Message::Close(_))),
        "expected the connection to end, got {ended:?}"
    );
    ws_ping(&mut socket, 10).await;
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_ping_pong_and_close() {
    let server = TestServer::start().await;
    let mut socket = websocket(&server, None).await.unwrap();
    socket
        .send(Message::Ping(bytes::Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(SOON, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Pong(payload))) => return payload,
                Some(Ok(_)) => {}
                other => panic!("no pong: {other:?}"),
            }
        }
    })
    .await
    .expect("a pong in time");
    assert_eq!(&pong[..], b"are you there");
    socket.close(None).await.unwrap();
    // The server answers the close and the stream ends.
    let end = tokio::time::timeout(SOON, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(end.is_ok());
    server.shutdown().await;
}

/// A plain HTTP/1.1 GET; returns the status, the head and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    get_over(stream, addr, path).await
}

/// An HTTP/1.1 GET over `stream`, closing after the answer.
async fn get_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    path: &str,
) -> (u16, String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // A TLS peer may close without close_notify after `Connection: close`.
    let _ = tokio::time::timeout(SOON, stream.read_to_end(&mut response))
        .await
        .expect("an answer in time");
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {response:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn probes_pages_and_errors() {
    let server = TestServer::start().await;
    let http = server.http_addr();
    let (status, _, body) = http_get(http, "/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains("ok"));
    let (status, _, body) = http_get(http, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, head, body) = http_get(http, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("chatd"));
    let head = head.to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'self'",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(header), "missing {header} in {head}");
    }
    let (status, _, body) = http_get(http, "/no/such/page").await;
    assert_eq!(status, 404);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "not_found");
    // A request head over the limit is refused, not buffered.
    let mut stream = TcpStream::connect(http).await.unwrap();
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(SOON, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn readyz_turns_503_while_draining() {
    // A TLS handshake that never finishes holds the drain open for its
    // timeout, long enough to watch the probe.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let server = tls_server(&ca, dir.path(), |config| {
        // The shortest the config allows; a second is plenty to see one
        // answer from the probe.
        config.tls_handshake_timeout_secs = 1;
    })
    .await;
    let http = server.http_addr();
    let https_get = |path: &'static str| {
        let ca = &ca;
        async move { get_over(ca.connect(http).await.expect("https"), http, path).await }
    };
    let _silent = TcpStream::connect(server.addr()).await.unwrap();
    // The drain must wait for it, so it has to be accepted before the
    // shutdown: a later connection whose handshake completes was accepted
    // after it (the listener hands connections over in order).
    ca.connect(server.addr())
        .await
        .expect("a handshake behind the silent connection completes");
    let (status, _, _) = https_get("/readyz").await;
    assert_eq!(status, 200);
    let stopping = tokio::spawn(server.shutdown());
    let mut saw_503 = false;
    for _ in 0..40 {
        let (status, _, body) = https_get("/readyz").await;
        if status == 503 {
            assert!(body.contains("\"draining\":true"), "{body}");
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_503, "readyz never said 503 while draining");
    stopping.await.unwrap();
}

/// The value of one sample in a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(value))
        })
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => value,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_when_a_message_is_sent() {
    let server = TestServer::start().await;
    let http = server.http_addr();
    let (status, head, before) = http_get(http, "/metrics").await;
    assert_eq!(status, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/plain"));
    let committed_before = sample(&before, "chatd_messages_committed_total", &[]);
    let sends_before = sample(
        &before,
        "chatd_requests_total",
        &[("type", "send"), ("status", "ok")],
    );
    let alice_name = common::unique("metrics_a");
    let bob_name = common::unique("metrics_b");
    let (alice, _) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    common::befriend(&alice, &bob, &bob_name, &alice_name).await;
    alice
        .send(Target::User(bob_login.user.id), "counted")
        .await
        .expect("sent");
    common::expect_message(&bob, "counted").await;
    let (_, _, after) = http_get(http, "/metrics").await;
    assert!(sample(&after, "chatd_messages_committed_total", &[]) >= committed_before + 1.0);
    assert!(
        sample(
            &after,
            "chatd_requests_total",
            &[("type", "send"), ("status", "ok")]
        ) >= sends_before + 1.0
    );
    assert!(sample(&after, "chatd_connections_open", &[("transport", "tcp")]) >= 2.0);
    assert!(sample(&after, "chatd_sessions_logged_in", &[]) >= 2.0);
    assert!(sample(&after, "chatd_pushes_delivered_total", &[]) >= 1.0);
    assert!(sample(&after, "chatd_process_resident_memory_bytes", &[]) > 0.0);
    assert!(sample(&after, "chatd_process_open_fds", &[]) > 0.0);
    assert!(after.contains("chatd_request_duration_seconds_bucket"));
    assert!(sample(&after, "chatd_store_commit_batch_size_count", &[]) >= 1.0);
    assert!(after.contains("chatd_store_commit_duration_seconds_bucket"));
    assert!(after.contains("chatd_bus_connected 1"));
    server.shutdown().await;
}
