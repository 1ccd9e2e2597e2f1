//! The reader and writer tasks of a connection.

use std::sync::Arc;

use bytes::Bytes;
use chat_proto::{Frame, Push, ServerMessage};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::pending::Shared;
use super::UnmatchedReply;
use crate::error::ClientError;

pub(super) async fn read_loop<R>(
    mut frames: R,
    shared: Arc<Shared>,
    pushes: mpsc::UnboundedSender<Push>,
    unmatched: mpsc::UnboundedSender<UnmatchedReply>,
) where
    R: Stream<Item = std::result::Result<Frame, String>> + Unpin,
{
    let reason = loop {
        let frame = match frames.next().await {
            None => break "the server closed the connection".to_owned(),
            Some(Err(reason)) => break reason,
            Some(Ok(frame)) => frame,
        };
        match ServerMessage::from_frame(&frame) {
            Ok(ServerMessage::Push(push)) => {
                // The receiver lives as long as the connection handle.
                let _ = pushes.send(push);
            }
            Ok(ServerMessage::Reply { request_id, result }) => {
                if let Some(Ok(result)) = shared.complete(request_id, Ok(result)) {
                    let _ = unmatched.send(UnmatchedReply { request_id, result });
                }
            }
            Err(error) => {
                // The frame was well formed but its content was not: fail
                // just the request it answers and stay in sync.
                let request_id = frame.header.request_id;
                tracing::warn!(request_id, %error, "undecodable frame from the server");
                if request_id != 0 && !frame.header.flags.is_push() {
                    let _ = shared.complete(
                        request_id,
                        Err(ClientError::Protocol(format!(
                            "undecodable reply to request {request_id}: {error}"
                        ))),
                    );
                }
            }
        }
    };
    tracing::debug!(%reason, "connection closed");
    shared.close(reason);
}

pub(super) async fn write_loop<W>(
    mut outbox: mpsc::Receiver<Bytes>,
    mut sink: W,
    shared: Arc<Shared>,
) where
    W: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    let mut closed = shared.closed.subscribe();
    loop {
        let first = tokio::select! {
            frame = outbox.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            _ = closed.wait_for(|closed| *closed) => break,
        };
        // Everything already queued goes with the first frame: one write on
        // a byte stream, one flush of many messages on a WebSocket.
        let mut written = sink.feed(first).await;
        while written.is_ok() {
            match outbox.try_recv() {
                Ok(frame) => written = sink.feed(frame).await,
                Err(_) => break,
            }
        }
        if written.is_ok() {
            written = sink.flush().await;
        }
        if let Err(error) = written {
            shared.close(format!("cannot write to the server: {error}"));
            return;
        }
    }
    // A clean close (a FIN, TLS close_notify, a WebSocket Close) lets the
    // server see an orderly end.
    let _ = sink.close().await;
}
