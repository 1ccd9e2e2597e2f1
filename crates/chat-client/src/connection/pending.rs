//! Callers waiting for replies: the table of request ids the reader
//! answers, and why the connection closed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_proto::{ErrorBody, Response};
use tokio::sync::{oneshot, watch};

use crate::error::{ClientError, Result};

/// What a reader hands a waiting caller: the server's answer (success or
/// error status), or a failure of the connection or of the frame.
pub(super) type ReplyResult = Result<std::result::Result<Response, ErrorBody>>;

/// State shared by the connection handle and its two tasks.
pub(super) struct Shared {
    /// A `std` mutex is enough: every critical section is a map insert or
    /// remove and never awaits.
    pub(super) state: Mutex<State>,
    /// Flips to `true` once, when the connection closes.
    pub(super) closed: watch::Sender<bool>,
}

pub(super) struct State {
    /// Callers waiting for a reply, by request id.
    pub(super) pending: HashMap<u32, oneshot::Sender<ReplyResult>>,
    /// Why the connection closed, once it has.
    pub(super) closed_reason: Option<String>,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts and removes), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the connection closed (keeping the first reason) and fails
    /// every waiting caller.
    pub(super) fn close(&self, reason: String) {
        let (pending, reason) = {
            let mut state = self.lock();
            let reason = state.closed_reason.get_or_insert(reason).clone();
            (std::mem::take(&mut state.pending), reason)
        };
        for (_, waiter) in pending {
            let _ = waiter.send(Err(ClientError::Closed(reason.clone())));
        }
        self.closed.send_replace(true);
    }

    /// Hands a reply to its waiting caller; returns it when nobody waits.
    pub(super) fn complete(&self, request_id: u32, reply: ReplyResult) -> Option<ReplyResult> {
        let waiter = self.lock().pending.remove(&request_id);
        match waiter {
            Some(waiter) => {
                // The caller may have given up (timeout, cancellation); then
                // the reply is simply dropped.
                let _ = waiter.send(reply);
                None
            }
            None => Some(reply),
        }
    }
}

/// A reply the server sent for a request id nobody was waiting for: an error
/// frame with request id 0 after a framing violation, or the answer to a
/// frame sent with [`Connection::send_raw`](super::Connection::send_raw) whose id was not registered.
#[derive(Debug, Clone, PartialEq)]
pub struct UnmatchedReply {
    /// The request id in the frame's header.
    pub request_id: u32,
    /// The response or error the frame carried.
    pub result: std::result::Result<Response, ErrorBody>,
}

/// A registered wait for the reply to one request id; see
/// [`Connection::expect_reply`](super::Connection::expect_reply). Dropping it withdraws the registration.
pub struct PendingReply {
    pub(super) request_id: u32,
    pub(super) receiver: oneshot::Receiver<ReplyResult>,
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for PendingReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReply")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl PendingReply {
    /// The request id this waits for.
    #[must_use]
    pub fn request_id(&self) -> u32 {
        self.request_id
    }

    /// Waits for the reply, at most `timeout`.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the server answered with an error status,
    /// [`ClientError::Closed`] when the connection closed first,
    /// [`ClientError::Timeout`] when nothing came in time, and
    /// [`ClientError::Protocol`] when the reply could not be decoded.
    pub async fn wait(mut self, timeout: Duration) -> Result<Response> {
        match tokio::time::timeout(timeout, &mut self.receiver).await {
            Ok(Ok(reply)) => reply?.map_err(ClientError::Server),
            Ok(Err(_)) => {
                // The sender is only dropped without sending if the
                // connection was torn down; report it as closed.
                let reason = self.shared.lock().closed_reason.clone();
                Err(ClientError::Closed(
                    reason.unwrap_or_else(|| "connection dropped".to_owned()),
                ))
            }
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        // After a timeout or a cancelled caller the entry must not linger.
        self.shared.lock().pending.remove(&self.request_id);
    }
}
