//! Each transport as a stream of frames for the reader task and a sink of
//! encoded frames for the writer task.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use chat_proto::{Frame, FrameCodec};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};

/// On a byte stream the writer writes out its buffer once it holds this many
/// bytes, so one huge burst does not build one huge buffer.
const MAX_WRITE_BATCH: usize = 256 * 1024;

/// The frames of a byte stream (TCP or TLS), cut by the frame codec. An
/// error is the reason the connection ends.
pub(super) fn byte_frames<R>(
    reader: R,
    codec: FrameCodec,
) -> impl Stream<Item = std::result::Result<Frame, String>> + Send + Unpin
where
    R: AsyncRead + Send + Unpin,
{
    FramedRead::new(reader, codec)
        .map(|frame| frame.map_err(|error| format!("cannot read from the server: {error}")))
}

/// A sink of encoded frames over a byte stream: frames fed in are collected
/// in one buffer, and a flush writes it, so everything ready goes out in one
/// write (or one per [`MAX_WRITE_BATCH`] bytes).
pub(super) fn byte_sink<W>(writer: W) -> FramedWrite<W, BytesCodec>
where
    W: AsyncWrite + Send + Unpin,
{
    let mut sink = FramedWrite::new(writer, BytesCodec::new());
    sink.set_backpressure_boundary(MAX_WRITE_BATCH);
    sink
}

/// The frames of a WebSocket: each binary message must hold exactly one.
/// Pings are answered by tungstenite as it reads; a Close from the server
/// ends the stream with its code and reason.
pub(super) struct WebSocketFrames<S> {
    pub(super) messages: S,
    pub(super) max_payload: usize,
    pub(super) ended: bool,
}

impl<S> WebSocketFrames<S> {
    fn frame_of(&self, message: Bytes) -> std::result::Result<Frame, String> {
        let mut buf = BytesMut::from(message);
        match chat_proto::frame::decode(&mut buf, self.max_payload) {
            Ok(Some(frame)) if buf.is_empty() => Ok(frame),
            Ok(Some(_)) => {
                Err("a WebSocket message from the server held more than one frame".to_owned())
            }
            Ok(None) => {
                Err("a WebSocket message from the server held an incomplete frame".to_owned())
            }
            Err(error) => Err(format!("bad frame from the server: {error}")),
        }
    }
}

impl<S> Stream for WebSocketFrames<S>
where
    S: Stream<Item = std::result::Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    type Item = std::result::Result<Frame, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            let message = match futures::ready!(self.messages.poll_next_unpin(cx)) {
                None => return Poll::Ready(None),
                Some(Err(error)) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(format!("cannot read from the server: {error}"))));
                }
                Some(Ok(message)) => message,
            };
            let item = match message {
                Message::Binary(bytes) => {
                    let frame = self.frame_of(bytes);
                    if frame.is_err() {
                        self.ended = true;
                    }
                    frame
                }
                Message::Close(close) => {
                    self.ended = true;
                    Err(match close {
                        Some(close) if close.reason.is_empty() => {
                            format!("the server closed the WebSocket (code {})", close.code)
                        }
                        Some(close) => format!(
                            "the server closed the WebSocket (code {}): {}",
                            close.code, close.reason
                        ),
                        None => "the server closed the WebSocket".to_owned(),
                    })
                }
                Message::Text(_) => {
                    self.ended = true;
                    Err("the server sent a WebSocket text message; frames travel in binary messages".to_owned())
                }
                // Pings are answered inside tungstenite; pongs and raw
                // frames carry nothing for us.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            return Poll::Ready(Some(item));
        }
    }
}

/// A sink of encoded frames over a WebSocket: each frame one binary
/// message. The writer feeds every ready frame, then flushes once.
pub(super) struct WebSocketSink<S> {
    pub(super) messages: S,
}

impl<S> Sink<Bytes> for WebSocketSink<S>
where
    S: Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    type Error = std::io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.messages
            .poll_ready_unpin(cx)
            .map_err(websocket_io_error)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Bytes) -> std::io::Result<()> {
        self.messages
            .start_send_unpin(Message::Binary(frame))
            .map_err(websocket_io_error)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.messages
            .poll_flush_unpin(cx)
            .map_err(websocket_io_error)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.messages
            .poll_close_unpin(cx)
            .map_err(websocket_io_error)
    }
}

fn websocket_io_error(error: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    match error {
        tokio_tungstenite::tungstenite::Error::Io(error) => error,
        other => std::io::Error::other(other),
    }
}
