//! The admin endpoint: `/admin/...` on a node's HTTP listener, through
//! which `chatd admin` sees and ends the node's sessions.
//!
//! - `GET /admin/sessions`: this node's logged-in sessions
//!   ([`SessionList`]).
//! - `POST /admin/sessions/end` with an [`EndRequest`]: ends every session
//!   of a user, on this node and, through the cluster bus, on every other
//!   node ([`EndResponse`]).
//!
//! It is off (every path answers 404, as for a path that does not exist)
//! unless the node has an `admin_token`. Each request must carry it as
//! `Authorization: Bearer TOKEN`, and by default come from a loopback
//! address, so only someone on the node's own machine who can read its
//! configuration can use it.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_proto::{Status, UserId, UserRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::{ConnectionInfo, HttpState};
use crate::service::resolve_user;

/// What a session is told when an operator ends it without saying why.
pub const DEFAULT_END_MESSAGE: &str = "an operator ended this session";

/// One logged-in session, as `GET /admin/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// The session's number on its node (not reused while the node runs).
    pub session: u64,
    /// The user's id.
    pub user_id: UserId,
    /// The user's name at login.
    pub user: String,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub transport: String,
    /// The client's address (the real client behind a PROXY-protocol
    /// load balancer).
    pub address: String,
    /// When it logged in, in milliseconds since the Unix epoch.
    pub logged_in_at_ms: i64,
}

/// The answer to `GET /admin/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// The node's id in the cluster, or `null` for a node without one.
    pub node: Option<String>,
    /// Its logged-in sessions, by user id.
    pub sessions: Vec<SessionEntry>,
}

/// The body of `POST /admin/sessions/end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRequest {
    /// The user, by id (a number) or name (a string).
    pub user: UserRef,
    /// What the sessions are told (`push_session_ended`'s message).
    #[serde(default)]
    pub message: Option<String>,
}

/// The answer to `POST /admin/sessions/end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndResponse {
    /// The user's id.
    pub user_id: UserId,
    /// Sessions ended on the node that was asked.
    pub ended_here: usize,
    /// Other nodes hosting the user that were told to end its sessions;
    /// `null` when they could not be reached (Redis is down).
    pub other_nodes: Option<u64>,
}

/// The admin routes, to merge into the HTTP router.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/admin/sessions", get(list_sessions))
        .route("/admin/sessions/end", post(end_sessions))
}

async fn list_sessions(
    State(state): State<Arc<HttpState>>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = authorize(&state, &connection, &headers) {
        return refusal;
    }
    let ctx = &state.ctx;
    let sessions = ctx
        .hub
        .sessions()
        .into_iter()
        .filter_map(|handle| {
            let details = handle.details.as_ref()?;
            Some(SessionEntry {
                session: handle.id.0,
                user_id: handle.user,
                user: details.name.to_string(),
                transport: details.transport.to_owned(),
                address: details.peer.to_string(),
                logged_in_at_ms: details.logged_in_at_ms,
            })
        })
        .collect();
    let node = ctx
        .bus
        .node_id()
        .map(str::to_owned)
        .or_else(|| ctx.config.node_id.clone());
    Json(SessionList { node, sessions }).into_response()
}

async fn end_sessions(
    State(state): State<Arc<HttpState>>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
    body: Result<Json<EndRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(refusal) = authorize(&state, &connection, &headers) {
        return refusal;
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error(rejection.status(), "bad_request", &rejection.body_text()),
    };
    let ctx = &state.ctx;
    let user = match (resolve_user(ctx, &request.user).await, &request.user) {
        (Ok(user), _) => user.id,
        // A deleted account is found no more, but its sessions may still
        // run: an id is taken as it is.
        (Err(failure), UserRef::Id(id)) if failure.status == Status::NotFound => *id,
        (Err(failure), _) => {
            let status = match failure.status {
                Status::NotFound => StatusCode::NOT_FOUND,
                Status::BadRequest => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return error(status, failure.status.name(), &failure.message);
        }
    };
    let message = request
        .message
        .filter(|message| !message.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_END_MESSAGE.to_owned());
    let ended = ctx.bus.end_sessions(user, &message).await;
    tracing::info!(
        %user,
        here = ended.here,
        other_nodes = ?ended.other_nodes,
        client = %connection.client,
        "sessions ended by an operator"
    );
    Json(EndResponse {
        user_id: user,
        ended_here: ended.here,
        other_nodes: ended.other_nodes,
    })
    .into_response()
}

/// Lets a request through only when the endpoint is on, the client may use
/// it, and it carries the token; otherwise the answer to send instead.
#[allow(clippy::result_large_err)]
fn authorize(
    state: &HttpState,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let config = &state.ctx.config;
    let Some(expected) = &config.admin_token else {
        // Off: answer as for any path that does not exist.
        return Err(error(StatusCode::NOT_FOUND, "not_found", "no such path"));
    };
    if !config.admin_allow_remote && !connection.client.ip().is_loopback() {
        tracing::warn!(client = %connection.client, "refused an admin request from a remote address");
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin endpoint answers only this machine (admin_allow_remote is off)",
        ));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_secret(presented, expected) {
        tracing::warn!(client = %connection.client, "refused an admin request with a wrong or missing token");
        let mut refusal = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required (Authorization: Bearer ...)",
        );
        refusal
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(refusal);
    }
    Ok(())
}

/// Compares two secrets in time that does not depend on where they first
/// differ: their digests are compared whole.
fn same_secret(presented: &str, expected: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented
        .iter()
        .zip(expected.iter())
        .fold(0u8, |differences, (a, b)| differences | (a ^ b))
        == 0
}

fn error(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": error, "message": message})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("0123456789abcdef", "0123456789abcdef"));
        assert!(!same_secret("0123456789abcdeX", "0123456789abcdef"));
        assert!(!same_secret("", "0123456789abcdef"));
    }

    #[test]
    fn end_requests_name_users_by_id_or_name() {
        let by_name: EndRequest = serde_json::from_str(r#"{"user": "alice"}"#).unwrap();
        assert_eq!(by_name.user, UserRef::Name("alice".to_owned()));
        assert_eq!(by_name.message, None);
        let by_id: EndRequest = serde_json::from_str(r#"{"user": 7, "message": "bye"}"#).unwrap();
        assert_eq!(by_id.user, UserRef::Id(UserId(7)));
    }
}
