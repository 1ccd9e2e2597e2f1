//! TLS and WebSocket, the transports besides plain TCP.
//!
//! The servers here are small and in-test: they speak just enough of the
//! protocol (answering `ping`) over a real TLS or WebSocket connection on
//! 127.0.0.1, and can misbehave on demand (a wrong certificate, a refused
//! subprotocol, a Close in the middle of a request). Certificates are made at
//! run time with rcgen; no key is ever written to the repository.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_client::{
    Client, ClientError, ClientOptions, ClientTls, Connection, ConnectionOptions, Event,
    ReconnectPolicy,
};
use chat_proto::{Frame, FrameCodec, MessageType, PingRequest, PingResponse, Response};
use futures::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response as Http};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::codec::Framed;

/// How long a test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(10);

/// A private CA and a server certificate it signed.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
}

impl Pki {
    /// A fresh CA, and a server certificate for `names` (DNS names or IP
    /// addresses) signed by it.
    fn new(names: &[&str]) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Each CA gets its own name: a stranger CA with the same name would
        // be matched as the issuer and fail on the signature instead.
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("chatd test CA {serial}"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let server_cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server_chain: vec![server_cert.der().clone()],
            server_key_der: server_key.serialize_der(),
        }
    }

    fn client_tls(&self) -> ClientTls {
        ClientTls::from_ca_pem(self.ca_pem.as_bytes()).unwrap()
    }

    fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

fn options_trusting(tls: ClientTls) -> ConnectionOptions {
    ConnectionOptions {
        tls: Some(tls),
        connect_timeout: PATIENCE,
        request_timeout: PATIENCE,
        ..ConnectionOptions::default()
    }
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

/// A pong whose time is the request id it answers, so each caller can tell
/// its own reply.
fn pong_for(request: &Frame) -> Bytes {
    let mut buf = BytesMut::new();
    Response::Ping(PingResponse {
        server_ts_ms: i64::from(request.header.request_id),
    })
    .encode(request.header.request_id, &mut buf)
    .unwrap();
    buf.freeze()
}

fn is_ping(frame: &Frame) -> bool {
    frame.header.message_type == MessageType::Ping.code()
}

/// Answers pings on a byte stream until the client hangs up, or until it
/// has answered `close_after` of them (then hangs up itself).
async fn serve_bytes<S>(stream: S, close_after: Option<usize>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, FrameCodec::default());
    let mut answered = 0;
    while let Some(Ok(frame)) = framed.next().await {
        if is_ping(&frame) {
            if framed.send(pong_for(&frame)).await.is_err() {
                return;
            }
            answered += 1;
            if close_after == Some(answered) {
                return;
            }
        }
    }
}

/// A TLS server with `pki`'s certificate that answers pings; counts the
/// handshakes that succeed. With `close_first_after` it hangs up on the
/// first connection after that many pings.
async fn tls_server(pki: &Pki, close_first_after: Option<usize>) -> (SocketAddr, Arc<AtomicUsize>) {
    let (listener, address) = listen().await;
    let acceptor = pki.acceptor();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&handshakes);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                // A client that rejects the certificate aborts the handshake.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
                    serve_bytes(tls, close_first_after.filter(|_| first)).await;
                }
            });
        }
    });
    (address, handshakes)
}

/// The server side of the upgrade, checking what chatd will check: the
/// client offers `chatd.v1` and, not being a browser, sends no `Origin`.
/// With `agree` false the server leaves the subprotocol out of its answer.
async fn accept_websocket<S>(stream: S, agree: bool) -> Option<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The signature is tungstenite's callback type; its error is an HTTP
    // response, large by nature.
    #[allow(clippy::result_large_err)]
    let check = move |request: &Request, mut response: Http| -> Result<Http, ErrorResponse> {
        let offered = request
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.split(',').any(|p| p.trim() == "chatd.v1"));
        if !offered || request.headers().contains_key("Origin") {
            let mut refusal = ErrorResponse::new(Some("offer chatd.v1, send no Origin".into()));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            return Err(refusal);
        }
        if agree {
            response.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static("chatd.v1"),
            );
        }
        Ok(response)
    };
    tokio_tungstenite::accept_hdr_async(stream, check)
        .await
        .ok()
}

/// One frame out of a binary message, as chatd reads them.
fn frame_of(message: &Message) -> Option<Frame> {
    let Message::Binary(bytes) = message else {
        return None;
    };
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = chat_proto::frame::decode(&mut buf, chat_proto::DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty(), "one frame per message");
    Some(frame)
}

/// Answers pings on a WebSocket, each pong in one binary message, until
/// the client goes away, or until `close_after` are answered (then closes
/// with a reason).
async fn serve_websocket<S>(mut websocket: WebSocketStream<S>, close_after: Option<usize>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut answered = 0;
    while let Some(Ok(message)) = websocket.next().await {
        let Some(frame) = frame_of(&message) else {
            continue;
        };
        if is_ping(&frame) {
            if websocket
                .send(Message::Binary(pong_for(&frame)))
                .await
                .is_err()
            {
                return;
            }
            answered += 1;
            if close_after == Some(answered) {
                let _ = websocket
                    .close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "restarting".into(),
                    }))
                    .await;
                return;
            }
        }
    }
}

/// A WebSocket server (over TLS with `pki`) that answers pings; counts the
/// upgrades that succeed. With `close_first_after` it closes the first
/// connection after that many pings.
async fn websocket_server(
    pki: Option<&Pki>,
    close_first_after: Option<usize>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let (listener, address) = listen().await;
    let acceptor = pki.map(Pki::acceptor);
    let upgrades = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&upgrades);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                match acceptor {
                    None => {
                        if let Some(websocket) = accept_websocket(tcp, true).await {
                            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
                            serve_websocket(websocket, close_first_after.filter(|_| first)).await;
                        }
                    }
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if let Some(websocket) = accept_websocket(tls, true).await {
                            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
                            serve_websocket(websocket, close_first_after.filter(|_| first)).await;
                        }
                    }
                }
            });
        }
    });
    (address, upgrades)
}

/// Three pings at once; each caller must get its own reply.
async fn three_pings_in_flight(connection: &Connection) {
    let (a, b, c) = tokio::join!(
        connection.call(PingRequest {}),
        connection.call(PingRequest {}),
        connection.call(PingRequest {})
    );
    let mut stamps = vec![
        a.unwrap().server_ts_ms,
        b.unwrap().server_ts_ms,
        c.unwrap().server_ts_ms,
    ];
    stamps.sort_unstable();
    stamps.dedup();
    assert_eq!(stamps.len(), 3, "every caller got its own reply");
}

fn connect_error_text(result: chat_client::Result<Connection>) -> String {
    match result {
        Err(error @ ClientError::Connect { .. }) => error.to_string(),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

// -- TLS ------------------------------------------------------------------

#[tokio::test]
async fn tls_with_the_right_ca_round_trips() {
    let pki = Pki::new(&["localhost"]);
    let (address, handshakes) = tls_server(&pki, None).await;
    let url = format!("tls://localhost:{}", address.port());
    let connection = Connection::connect_url(&url, options_trusting(pki.client_tls()))
        .await
        .unwrap();
    three_pings_in_flight(&connection).await;
    assert_eq!(connection.peer_addr().port(), address.port());
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tls_trusts_a_ca_file_and_checks_ip_addresses() {
    let pki = Pki::new(&["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let (address, _) = tls_server(&pki, None).await;
    let tls = ClientTls::from_ca_file(&ca_file).unwrap();
    let connection = Connection::connect_url(&format!("tls://{address}"), options_trusting(tls))
        .await
        .unwrap();
    connection.call(PingRequest {}).await.unwrap();
}

#[tokio::test]
async fn tls_with_an_unknown_issuer_fails_and_says_so() {
    let pki = Pki::new(&["localhost"]);
    let stranger = Pki::new(&["localhost"]);
    let (address, handshakes) = tls_server(&pki, None).await;
    let url = format!("tls://localhost:{}", address.port());
    let text = connect_error_text(
        Connection::connect_url(&url, options_trusting(stranger.client_tls())).await,
    );
    assert!(text.contains("unknown issuer"), "{text}");
    assert!(text.contains(&url), "{text}");
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tls_with_the_wrong_name_fails_and_says_so() {
    // The certificate names localhost; the client asks for 127.0.0.1.
    let pki = Pki::new(&["localhost"]);
    let (address, _) = tls_server(&pki, None).await;
    let text = connect_error_text(
        Connection::connect_url(
            &format!("tls://{address}"),
            options_trusting(pki.client_tls()),
        )
        .await,
    );
    assert!(
        text.contains("does not match the name \"127.0.0.1\""),
        "{text}"
    );
}

#[tokio::test]
async fn tls_to_a_plain_server_says_it_did_not_answer_in_tls() {
    let (listener, address) = listen().await;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // What a plain chatd answers to bytes that are not a frame: an
        // error frame, then the end.
        let mut framed = Framed::new(tcp, FrameCodec::default());
        let mut buf = BytesMut::new();
        chat_proto::ErrorBody {
            error: chat_proto::Status::ProtocolError,
            message: "bad magic".to_owned(),
        }
        .encode(0, 0, &mut buf);
        let _ = framed.send(buf.freeze()).await;
    });
    let pki = Pki::new(&["localhost"]);
    let text = connect_error_text(
        Connection::connect_url(
            &format!("tls://localhost:{}", address.port()),
            options_trusting(pki.client_tls()),
        )
        .await,
    );
    assert!(text.contains("did not answer in TLS"), "{text}");
}

// -- WebSocket ------------------------------------------------------------

#[tokio::test]
async fn websocket_requests_in_flight_and_server_pings_work() {
    let (listener, address) = listen().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut websocket = accept_websocket(tcp, true).await.expect("upgrade");
        websocket
            .send(Message::Ping(Bytes::from_static(b"still there?")))
            .await
            .unwrap();
        // Collect three requests (and the pong), then answer them in
        // reverse, one binary message each.
        let mut requests = Vec::new();
        let mut ponged = false;
        while requests.len() < 3 || !ponged {
            match websocket.next().await.unwrap().unwrap() {
                Message::Pong(payload) => {
                    assert_eq!(&payload[..], b"still there?");
                    ponged = true;
                }
                message => requests.push(frame_of(&message).expect("a binary message")),
            }
        }
        for request in requests.iter().rev() {
            assert!(is_ping(request));
            websocket
                .send(Message::Binary(pong_for(request)))
                .await
                .unwrap();
        }
        websocket
    });
    let url = format!("ws://{address}/ws");
    let connection = Connection::connect_url(&url, ConnectionOptions::default())
        .await
        .unwrap();
    three_pings_in_flight(&connection).await;
    drop(server.await.unwrap());
}

#[tokio::test]
async fn websocket_close_from_the_server_ends_the_connection_with_its_reason() {
    let (listener, address) = listen().await;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut websocket = accept_websocket(tcp, true).await.expect("upgrade");
        // Take the request, then close instead of answering.
        let _ = websocket.next().await;
        let _ = websocket
            .close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "node draining".into(),
            }))
            .await;
        while websocket.next().await.is_some() {}
    });
    let connection = Connection::connect_url(
        &format!("ws://{address}"),
        ConnectionOptions {
            request_timeout: PATIENCE,
            ..ConnectionOptions::default()
        },
    )
    .await
    .unwrap();
    let error = connection.call(PingRequest {}).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Closed(reason) if reason.contains("node draining")),
        "{error:?}"
    );
    tokio::time::timeout(PATIENCE, connection.closed())
        .await
        .unwrap();
    let reason = connection.close_reason().unwrap();
    assert!(reason.contains("1001"), "{reason}");
    assert_eq!(connection.next_push().await, None);
}

#[tokio::test]
async fn websocket_without_the_subprotocol_is_refused() {
    let (listener, address) = listen().await;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = accept_websocket(tcp, false).await;
    });
    let text = connect_error_text(
        Connection::connect_url(&format!("ws://{address}/ws"), ConnectionOptions::default()).await,
    );
    assert!(text.contains("chatd.v1"), "{text}");
}

#[tokio::test]
async fn websocket_message_with_two_frames_is_a_protocol_violation() {
    let (listener, address) = listen().await;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut websocket = accept_websocket(tcp, true).await.expect("upgrade");
        let message = websocket.next().await.unwrap().unwrap();
        let request = frame_of(&message).unwrap();
        let mut both = BytesMut::new();
        both.extend_from_slice(&pong_for(&request));
        both.extend_from_slice(&pong_for(&request));
        let _ = websocket.send(Message::Binary(both.freeze())).await;
        while websocket.next().await.is_some() {}
    });
    let connection =
        Connection::connect_url(&format!("ws://{address}"), ConnectionOptions::default())
            .await
            .unwrap();
    let error = connection.call(PingRequest {}).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Closed(reason) if reason.contains("more than one frame")),
        "{error:?}"
    );
}

#[tokio::test]
async fn secure_websocket_round_trips() {
    let pki = Pki::new(&["localhost"]);
    let (address, upgrades) = websocket_server(Some(&pki), None).await;
    let url = format!("wss://localhost:{}/ws", address.port());
    let connection = Connection::connect_url(&url, options_trusting(pki.client_tls()))
        .await
        .unwrap();
    three_pings_in_flight(&connection).await;
    assert_eq!(upgrades.load(Ordering::SeqCst), 1);
}

// -- The reconnecting client ----------------------------------------------

/// Connects a [`Client`] to `url`, has the server drop it after one ping,
/// and checks that it comes back over the same transport.
async fn client_reconnects_over(url: String, tls: Option<ClientTls>, accepted: Arc<AtomicUsize>) {
    let mut options = ClientOptions::new(url);
    options.connection.tls = tls;
    options.connection.request_timeout = PATIENCE;
    options.keepalive = None;
    options.reconnect = ReconnectPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_attempts: 100,
        max_elapsed: PATIENCE,
    };
    let client = Client::connect(options).await.unwrap();
    client.call_idempotent(PingRequest {}).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next_event_timeout(left).await {
            Some(Event::Reconnected { .. }) => break,
            Some(_) => {}
            None => panic!("no reconnect"),
        }
    }
    // The answer proves the server finished its side of the handshake too.
    client.call_idempotent(PingRequest {}).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    client.close().await;
}

#[tokio::test]
async fn client_reconnects_over_tls() {
    let pki = Pki::new(&["localhost"]);
    let (address, handshakes) = tls_server(&pki, Some(1)).await;
    let url = format!("tls://localhost:{}", address.port());
    client_reconnects_over(url, Some(pki.client_tls()), handshakes).await;
}

#[tokio::test]
async fn client_reconnects_over_websocket() {
    let (address, upgrades) = websocket_server(None, Some(1)).await;
    client_reconnects_over(format!("ws://{address}/ws"), None, upgrades).await;
}

#[tokio::test]
async fn client_refuses_an_invalid_address_before_connecting() {
    let error = Client::connect(ClientOptions::new("http://127.0.0.1:1"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&error, ClientError::InvalidAddress { reason, .. } if reason.contains("scheme")),
        "{error:?}"
    );
}

#[tokio::test]
async fn plain_tcp_urls_still_work() {
    let (listener, address) = listen().await;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        serve_bytes(tcp, None).await;
    });
    let connection = Connection::connect_url(&address.to_string(), ConnectionOptions::default())
        .await
        .unwrap();
    three_pings_in_flight(&connection).await;
}
