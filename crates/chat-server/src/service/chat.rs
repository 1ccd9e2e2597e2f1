//! Sending, acknowledging, history and sync.

use std::future::Future;
use std::pin::Pin;

use chat_proto::{
    AckRequest, AckResponse, HistoryRequest, HistoryResponse, SendRequest, SendResponse, Status,
    SyncRequest, SyncResponse, PAGE_BODY_BUDGET, SYNC_MAX_CURSORS,
};
use chat_store::NewMessage;

use crate::context::{now_ms, Context, Identity};
use crate::error::{Result, ServiceError};
use crate::service::validate;

const HISTORY_DEFAULT: u32 = 50;
const HISTORY_MAX: u32 = 200;
const SYNC_DEFAULT: u32 = 500;
const SYNC_MAX: u32 = 1000;

/// Stores a message and pushes it to every session of every recipient
/// (the sender's other sessions included). Answers only after the commit.
///
/// # Errors
/// `bad_request`/`too_large` for an invalid body or id, `forbidden` if not
/// friends or not a member, `not_found` for an unknown target.
pub async fn send(ctx: &Context, me: &Identity, request: SendRequest) -> Result<SendResponse> {
    send_queued(ctx, me, request).await?.await
}

/// A send whose message has its place in the commit queue; resolves to the
/// answer once it is committed.
pub type PendingSend = Pin<Box<dyn Future<Output = Result<SendResponse>> + Send>>;

/// Checks a send and queues its message for commit, returning as soon as it
/// is queued: a session queues a client's pipelined sends in order and
/// answers each when it commits (see [`send`] for the rest).
///
/// # Errors
/// As [`send`], for what can be told before the commit.
pub async fn send_queued(
    ctx: &Context,
    me: &Identity,
    request: SendRequest,
) -> Result<PendingSend> {
    let id_chars = request.client_msg_id.chars().count();
    if id_chars == 0 || id_chars > validate::MAX_CLIENT_MSG_ID_CHARS {
        return Err(ServiceError::bad_request(
            "client_msg_id must be 1 to 64 characters",
        ));
    }
    if request.body.len() > ctx.config.max_message_len {
        return Err(ServiceError::new(
            Status::TooLarge,
            format!(
                "message body is {} bytes; the limit is {}",
                request.body.len(),
                ctx.config.max_message_len
            ),
        ));
    }
    if request.body.trim().is_empty() {
        return Err(ServiceError::bad_request("message body must not be empty"));
    }
    // Deliver from the commit hook: on SQLite it runs on the writer in
    // commit order, so every conversation's pushes leave in sequence order
    // even when many senders share a commit. A resend (duplicate) is pushed
    // again: the first push may have died with a node that crashed right
    // after the commit, and clients drop what they already have.
    let bus = ctx.bus.clone();
    let except = me.session;
    let on_commit: chat_store::OnCommit = Box::new(move |appended: &chat_store::Appended| {
        if !appended.duplicate {
            crate::telemetry::messages_committed(1);
        }
        let frame = Context::encode_message_push(&appended.message);
        bus.deliver(&appended.recipients, frame, Some(except));
    });
    let pending = ctx
        .store
        .queue_append(
            NewMessage {
                sender_id: me.user,
                sender_name: me.name.to_string(),
                target: request.to,
                client_msg_id: request.client_msg_id,
                body: request.body,
                now_ms: now_ms(),
            },
            on_commit,
        )
        .await?;
    Ok(Box::pin(async move {
        let appended = pending.await?;
        let message = appended.message;
        Ok(SendResponse {
            conversation_id: message.conversation_id,
            seq: message.seq,
            server_ts_ms: message.server_ts_ms,
            duplicate: appended.duplicate,
        })
    }))
}

/// Moves the user's acknowledged position forward.
///
/// # Errors
/// `forbidden` if the user is not in the conversation.
pub async fn ack(ctx: &Context, me: &Identity, request: AckRequest) -> Result<AckResponse> {
    let acked_seq = ctx
        .store
        .ack(me.user, request.conversation_id, request.seq)
        .await?;
    Ok(AckResponse { acked_seq })
}

/// A page of a conversation the user takes part in.
///
/// # Errors
/// `forbidden` if not a member of the conversation, `bad_request` for a bad limit.
pub async fn history(
    ctx: &Context,
    me: &Identity,
    request: HistoryRequest,
) -> Result<HistoryResponse> {
    let limit = request.limit.unwrap_or(HISTORY_DEFAULT);
    if limit == 0 || limit > HISTORY_MAX {
        return Err(ServiceError::bad_request("limit must be 1 to 200"));
    }
    if !ctx
        .store
        .is_conversation_member(request.conversation_id, me.user)
        .await?
    {
        return Err(ServiceError::forbidden("not a member of this conversation"));
    }
    // Ask for one more than the page to learn whether there is more.
    let mut messages = ctx
        .store
        .history(
            request.conversation_id,
            request.before_seq,
            request.after_seq,
            limit + 1,
        )
        .await?;
    let mut has_more = messages.len() > limit as usize;
    if has_more {
        if request.after_seq.is_some() {
            messages.truncate(limit as usize);
        } else {
            messages.remove(0);
        }
    }
    // Keep the page within the byte budget, dropping from the far end of
    // the paging direction so the next page continues where this one stops.
    let lengths = messages.iter().map(|message| message.body.len());
    let keep = if request.after_seq.is_some() {
        within_budget(lengths)
    } else {
        within_budget(lengths.rev())
    };
    if keep < messages.len() {
        has_more = true;
        if request.after_seq.is_some() {
            messages.truncate(keep);
        } else {
            messages.drain(..messages.len() - keep);
        }
    }
    Ok(HistoryResponse { messages, has_more })
}

/// What the client missed.
///
/// # Errors
/// `bad_request` for a bad limit or too many cursors.
pub async fn sync(ctx: &Context, me: &Identity, request: SyncRequest) -> Result<SyncResponse> {
    let limit = request.limit.unwrap_or(SYNC_DEFAULT);
    if limit == 0 || limit > SYNC_MAX {
        return Err(ServiceError::bad_request("limit must be 1 to 1000"));
    }
    if request.cursors.len() > SYNC_MAX_CURSORS {
        return Err(ServiceError::bad_request(format!(
            "at most {SYNC_MAX_CURSORS} cursors; leave out those of conversations \
             that are read up to their acknowledged position"
        )));
    }
    let mut messages = ctx.store.sync(me.user, &request.cursors, limit + 1).await?;
    let mut has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    let keep = within_budget(messages.iter().map(|message| message.body.len()));
    if keep < messages.len() {
        has_more = true;
        messages.truncate(keep);
    }
    Ok(SyncResponse { messages, has_more })
}

/// How many messages, from the start, fit in [`PAGE_BODY_BUDGET`] (always
/// at least one, so paging makes progress).
fn within_budget(body_lengths: impl Iterator<Item = usize>) -> usize {
    let mut total = 0;
    let mut count = 0;
    for length in body_lengths {
        total += length;
        if count > 0 && total > PAGE_BODY_BUDGET {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_stop_at_the_byte_budget_but_never_at_zero() {
        assert_eq!(within_budget([10, 20, 30].into_iter()), 3);
        assert_eq!(within_budget(std::iter::repeat_n(4096, 1000)), 256);
        assert_eq!(within_budget([PAGE_BODY_BUDGET * 2, 1].into_iter()), 1);
        assert_eq!(within_budget(std::iter::empty()), 0);
    }
}
