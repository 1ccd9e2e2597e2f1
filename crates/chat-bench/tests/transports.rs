//! The scenarios over TLS and WebSocket.
//!
//! A real chatd runs in this process over plain TCP; in front of it a small
//! bridge in this file terminates TLS (certificate made at run time with
//! rcgen) and/or the WebSocket, passing frames through unchanged: one binary
//! message per frame in both directions, as chatd's own WebSocket listener
//! does. The bench connects to the bridge exactly as it would to chatd.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chat_bench::{
    run_group, run_idle, run_login, run_pairs, GroupOptions, IdleOptions, LoginKind, LoginOptions,
    PairsOptions, PairsTarget, Server,
};
use chat_proto::{FrameCodec, CLIENT_MAX_PAYLOAD};
use common::{assert_clean_and_consistent, short_load, TestServer};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::FramedRead;

/// What the bridge offers in front of chatd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Tls,
    Ws,
    Wss,
}

/// A TLS and/or WebSocket front for a chatd, with its certificate's CA in
/// a file for `--ca`.
struct Bridge {
    url: String,
    ca_file: PathBuf,
    _dir: TempDir,
}

impl Bridge {
    async fn start(backend: SocketAddr, front: Front) -> Bridge {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("chatd.pem");
        std::fs::write(&ca_file, certified.cert.pem()).unwrap();
        let acceptor = (front != Front::Ws).then(|| {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                certified.signing_key.serialize_der(),
            ));
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![certified.cert.der().clone()], key)
                .unwrap();
            TlsAcceptor::from(Arc::new(config))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(chatd) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = chatd.set_nodelay(true);
                    let _ = tcp.set_nodelay(true);
                    match (front, acceptor) {
                        (Front::Ws, _) | (_, None) => websocket_to_chatd(tcp, chatd).await,
                        (Front::Tls, Some(acceptor)) => {
                            if let Ok(mut tls) = acceptor.accept(tcp).await {
                                let mut chatd = chatd;
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut chatd).await;
                            }
                        }
                        (Front::Wss, Some(acceptor)) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                websocket_to_chatd(tls, chatd).await;
                            }
                        }
                    }
                });
            }
        });
        let url = match front {
            Front::Tls => format!("tls://localhost:{port}"),
            Front::Ws => format!("ws://localhost:{port}/ws"),
            Front::Wss => format!("wss://localhost:{port}/ws"),
        };
        Bridge {
            url,
            ca_file,
            _dir: dir,
        }
    }

    async fn server(&self) -> Server {
        Server::resolve(&self.url, false, Some(&self.ca_file))
            .await
            .unwrap()
    }
}

/// Upgrades `client` (offering `chatd.v1` is required) and relays: each
/// binary message goes to chatd as it is, each frame from chatd goes back
/// as one binary message.
async fn websocket_to_chatd<S>(client: S, chatd: TcpStream)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    #[allow(clippy::result_large_err)] // tungstenite's callback type
    let agree = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let offered = request
            .headers()
            .get("Sec-WebSocket-Protocol")
            .is_some_and(|value| value == "chatd.v1");
        if !offered {
            return Err(ErrorResponse::new(Some("chatd.v1 expected".into())));
        }
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("chatd.v1"),
        );
        Ok(response)
    };
    let Ok(websocket) = tokio_tungstenite::accept_hdr_async(client, agree).await else {
        return;
    };
    let (mut to_client, mut from_client) = websocket.split();
    let (chatd_read, mut chatd_write) = chatd.into_split();
    let upstream = async move {
        while let Some(Ok(message)) = from_client.next().await {
            if let Message::Binary(frame) = message {
                if chatd_write.write_all(&frame).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = async move {
        let mut frames = FramedRead::new(chatd_read, FrameCodec::new(CLIENT_MAX_PAYLOAD));
        while let Some(Ok(frame)) = frames.next().await {
            let mut buf = BytesMut::new();
            frame.write_to(&mut buf);
            if to_client.send(Message::Binary(buf.freeze())).await.is_err() {
                return;
            }
        }
        let _ = to_client.close().await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[tokio::test]
async fn pairs_over_tls_lose_nothing() {
    let chatd = TestServer::start().await;
    let bridge = Bridge::start(chatd.addr(), Front::Tls).await;
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Chatd(vec![bridge.server().await]),
        pairs: 2,
        load: short_load(8),
    })
    .await
    .unwrap();
    assert_clean_and_consistent(&report, 1);
    assert_eq!(report.params["transport"], "tls");
    chatd.stop().await;
}

#[tokio::test]
async fn pairs_over_secure_websocket_lose_nothing() {
    let chatd = TestServer::start().await;
    let bridge = Bridge::start(chatd.addr(), Front::Wss).await;
    let mut load = short_load(8);
    load.ack_every = 5;
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Chatd(vec![bridge.server().await]),
        pairs: 2,
        load,
    })
    .await
    .unwrap();
    assert_clean_and_consistent(&report, 1);
    assert_eq!(report.params["transport"], "wss");
    assert!(
        report.target.starts_with("wss://localhost:"),
        "{}",
        report.target
    );
    chatd.stop().await;
}

#[tokio::test]
async fn a_group_over_websocket_loses_nothing() {
    let chatd = TestServer::start().await;
    let bridge = Bridge::start(chatd.addr(), Front::Ws).await;
    let report = run_group(&GroupOptions {
        servers: vec![bridge.server().await],
        members: 5,
        senders: 2,
        conns_per_task: 2,
        load: short_load(4),
    })
    .await
    .unwrap();
    assert_clean_and_consistent(&report, 4);
    assert_eq!(report.params["transport"], "ws");
    chatd.stop().await;
}

#[tokio::test]
async fn token_logins_over_tls_all_succeed() {
    let chatd = TestServer::start().await;
    let bridge = Bridge::start(chatd.addr(), Front::Tls).await;
    let report = run_login(&LoginOptions {
        servers: vec![bridge.server().await],
        users: 4,
        concurrency: 2,
        duration: Duration::from_millis(1000),
        count: 30,
        kind: LoginKind::Token,
        sources: Vec::new(),
        progress: false,
    })
    .await
    .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert!(report.acknowledged > 0);
    assert_eq!(report.acknowledged, report.sent);
    chatd.stop().await;
}

#[tokio::test]
async fn idle_workers_hold_secure_websockets() {
    // The workers are separate processes: they get the address and the CA
    // file, and must make the same connections.
    let chatd = TestServer::start().await;
    let bridge = Bridge::start(chatd.addr(), Front::Wss).await;
    let report = run_idle(&IdleOptions {
        servers: vec![bridge.server().await],
        connections: 4,
        server_pid: None,
        per_worker: 2,
        sessions_per_user: 1,
        sources: Vec::new(),
        ping_interval: Duration::from_millis(200),
        settle: Duration::from_millis(300),
        setup_timeout: Duration::from_secs(120),
        tokens: None,
        worker_program: PathBuf::from(env!("CARGO_BIN_EXE_chat-bench")),
        progress: false,
    })
    .await
    .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.connections, Some(4));
    chatd.stop().await;
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_setup_with_the_reason() {
    let chatd = TestServer::start().await;
    let bridge = Bridge::start(chatd.addr(), Front::Tls).await;
    let stranger = Bridge::start(chatd.addr(), Front::Tls).await;
    // The address of one bridge with the other's CA.
    let mut server = bridge.server().await;
    server.tls = stranger.server().await.tls;
    let error = run_pairs(&PairsOptions {
        target: PairsTarget::Chatd(vec![server]),
        pairs: 1,
        load: short_load(1),
    })
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(text.contains(&bridge.url), "{text}");
    chatd.stop().await;
}
