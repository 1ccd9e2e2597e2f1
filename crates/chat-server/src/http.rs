//! The HTTP listener: the WebSocket endpoint for chat clients, health and
//! readiness probes, Prometheus metrics, and the page at `/`.
//!
//! - `GET /ws`: upgrades to a WebSocket that carries the chat protocol, one
//!   frame per binary message (subprotocol `chatd.v1`). A browser's `Origin`
//!   must be the server's own or one of `allowed_origins`, so a foreign
//!   page cannot drive a logged-in browser (cross-site WebSocket hijacking).
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when the store answers and the cluster bus (if any)
//!   is connected; 503 while draining or when either is down.
//! - `GET /metrics`: the Prometheus text format.
//! - `GET /` and the files it loads: the web client ([`crate::web`]).
//! - `/admin/...`: the admin endpoint ([`crate::admin::endpoint`]), off
//!   unless the node has an `admin_token`.
//!
//! Every response carries a strict Content-Security-Policy and friends, and
//! errors are JSON `{"error", "message"}` like the chat protocol's.
//! Connections are served by hyper directly (not `axum::serve`) so the same
//! admission (limits, PROXY header, TLS) applies as on the chat listener,
//! and header size and read time are bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{Extension, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chat_proto::frame::HEADER_LEN;
use chat_proto::UserId;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::accept::ConnectionSlot;
use crate::context::Context;
use crate::session::Session;
use crate::telemetry::{self, OpenConnection};
use crate::transport::Transport;
use crate::web::WebFiles;

/// The WebSocket subprotocol of the chat protocol.
pub const SUBPROTOCOL: &str = "chatd.v1";

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// How long a client may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a readiness check waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A session task handed from an upgraded WebSocket to the node's accept
/// loop, which owns every session task.
pub type SessionTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the handlers share.
pub struct HttpState {
    /// The node.
    pub ctx: Arc<Context>,
    /// Becomes `true` when the node starts draining.
    pub shutdown: watch::Receiver<bool>,
    /// Where upgraded WebSocket sessions go to be run.
    pub sessions: mpsc::UnboundedSender<SessionTask>,
}

/// Facts about the connection a request came on, put into each request.
#[derive(Clone)]
pub struct ConnectionInfo {
    /// The client's address (from the PROXY header behind a proxy).
    pub client: SocketAddr,
    /// Whether the connection is TLS.
    pub secure: bool,
    /// The connection's place under the limits; a WebSocket session keeps
    /// it after the HTTP connection hands the socket over.
    pub slot: Arc<ConnectionSlot>,
}

/// The routes, over shared state.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::admin::endpoint::routes())
        .fallback(web_file)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Serves one admitted connection (plain or TLS) until it closes or is
/// upgraded to a WebSocket.
pub async fn serve_connection<S>(router: Router, stream: S, info: ConnectionInfo)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = info.client;
    let _open = OpenConnection::new(if info.secure { "https" } else { "http" });
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(info.clone());
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%client, %error, "HTTP connection ended with an error");
    }
}

async fn websocket(
    State(state): State<Arc<HttpState>>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if *state.shutdown.borrow() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is shutting down; reconnect",
        );
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return error(rejection.status(), "bad_request", &rejection.body_text());
        }
    };
    if !origin_allowed(&headers, &state.ctx.config.allowed_origins) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "pages from this origin may not open a chat connection",
        );
    }
    let max_message = state.ctx.config.max_frame_len + HEADER_LEN;
    let ctx = state.ctx.clone();
    let shutdown = state.shutdown.clone();
    let sessions = state.sessions.clone();
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        // Small buffers: an idle WebSocket session should cost little more
        // than a TCP one. Every write is flushed at once anyway.
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let secure = connection.secure;
            let transport = Transport::WebSocket {
                socket: Box::new(socket),
                secure,
            };
            let kind = transport.kind().as_str();
            // The session's future is made here so the task holds it, not
            // a second copy of the session it was made from.
            let run = Session::new(ctx, transport, connection.client, shutdown).run();
            let slot = connection.slot;
            let task: SessionTask = Box::pin(async move {
                let _slot = slot;
                let _open = OpenConnection::new(kind);
                run.await;
            });
            // If the node is gone, dropping the task closes the socket.
            let _ = sessions.send(task);
        })
}

/// Whether a request's `Origin` may open a chat connection: no `Origin`
/// (not a browser), the page's own host, or a listed origin.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|allowed| allowed == "*" || allowed == origin)
    {
        return true;
    }
    // The server's own origin: the page was loaded from this very host.
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    match (origin.split_once("://"), host) {
        (Some((scheme, origin_host)), Some(host)) => {
            (scheme == "http" || scheme == "https") && origin_host.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

async fn healthz() -> Response {
    json(StatusCode::OK, serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let draining = *state.shutdown.borrow();
    // A cheap primary-key read that goes through the store's read path.
    let failed = state.ctx.store.failure().is_some();
    let store = !failed
        && matches!(
            tokio::time::timeout(READY_TIMEOUT, state.ctx.store.user_by_id(UserId(0))).await,
            Ok(Ok(_))
        );
    let bus = state.ctx.bus.is_connected();
    let ready = !draining && store && bus;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        serde_json::json!({
            "status": if ready { "ready" } else { "not_ready" },
            "draining": draining,
            "store": if failed { "failed" } else if store { "ok" } else { "unavailable" },
            "bus": if bus { "ok" } else { "disconnected" },
        }),
    )
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let bus = &state.ctx.bus;
    metrics::gauge!("chatd_bus_connected").set(if bus.is_connected() { 1.0 } else { 0.0 });
    metrics::gauge!("chatd_bus_forward_queue_depth").set(bus.forward_queue_depth() as f64);
    telemetry::record_store_files(&state.ctx.config.store);
    let mut response = telemetry::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// A file of the web client, for any path no other route claims.
async fn web_file(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    let method = request.method();
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return error(StatusCode::NOT_FOUND, "not_found", "no such path");
    }
    let files = WebFiles::new(state.ctx.config.web_root.as_deref());
    match files.get(request.uri().path()) {
        Some(file) => {
            // Embedded files are served from the binary without a copy.
            let body = match file.body {
                std::borrow::Cow::Borrowed(bytes) => axum::body::Body::from(bytes),
                std::borrow::Cow::Owned(bytes) => axum::body::Body::from(bytes),
            };
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            );
            response
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such path"),
    }
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "bad_request",
        "method not allowed here",
    )
}

/// Headers that keep the pages from being turned against their users.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, error: &str, message: &str) -> Response {
    json(
        status,
        serde_json::json!({"error": error, "message": message}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn origins() {
        let none: &[String] = &[];
        assert!(origin_allowed(&headers(None, "chat.example:7080"), none));
        assert!(origin_allowed(
            &headers(Some("http://chat.example:7080"), "chat.example:7080"),
            none
        ));
        assert!(origin_allowed(
            &headers(Some("https://Chat.Example"), "chat.example"),
            none
        ));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "chat.example"),
            none
        ));
        assert!(!origin_allowed(
            &headers(Some("null"), "chat.example"),
            none
        ));
        let listed = ["https://app.example".to_owned()];
        assert!(origin_allowed(
            &headers(Some("https://app.example"), "chat.example"),
            &listed
        ));
        assert!(origin_allowed(
            &headers(Some("https://any.example"), "chat.example"),
            &["*".to_owned()]
        ));
    }
}
