//! The byte streams a session can run over: plain TCP, TLS over TCP, and
//! WebSocket.
//!
//! A session only ever asks two things of its transport: "put what has
//! arrived into this buffer" and "send these encoded frames". Plain TCP and
//! TLS carry the frames as one byte stream; WebSocket carries exactly one
//! frame, header included, per binary message. Everything above this module
//! (session, services, hub, bus) is the same for all three.
//!
//! An idle plain-TCP connection holds no read buffer: it waits for
//! readiness first and only then reserves room and reads. TLS and WebSocket
//! cannot be asked for readiness without reading, so they reserve a chunk
//! for the attempt and give it back when nothing came.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::BytesMut;
use chat_proto::frame::{self, HEADER_LEN};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::accept::Rewind;

/// Read at least this much room at a time.
const READ_CHUNK: usize = 4096;

/// WebSocket close codes chatd sends (RFC 6455, section 7.4.1).
pub mod close_code {
    /// The session ended normally (logout, idle timeout, client asked).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary message that is not exactly one valid frame.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message: chatd speaks binary frames only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// The client read too slowly and was disconnected.
    pub const POLICY_VIOLATION: u16 = 1008;
}

/// Which kind of transport a connection uses, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket over plain HTTP.
    Ws,
    /// WebSocket over HTTPS.
    Wss,
}

impl TransportKind {
    /// The label used in logs and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection's byte stream. Boxed variants keep the enum (and so every
/// idle session) as small as a plain TCP stream.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<Rewind>>),
    /// WebSocket (over HTTP or HTTPS; `secure` says which).
    WebSocket {
        /// The upgraded connection.
        socket: Box<WebSocket>,
        /// Whether it runs over TLS.
        secure: bool,
    },
}

/// Why a WebSocket message could not be taken as a frame.
#[derive(Debug, thiserror::Error)]
pub enum WebSocketError {
    /// A text message.
    #[error("text messages are not accepted; send binary frames")]
    Text,
    /// A binary message that is not exactly one whole frame.
    #[error("a binary message must carry exactly one whole frame")]
    NotOneFrame,
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The socket failed (or the WebSocket layer: an oversized or malformed
    /// WebSocket frame).
    Io(io::Error),
    /// A WebSocket message chatd does not accept.
    WebSocket(WebSocketError),
}

impl From<io::Error> for ReadError {
    fn from(error: io::Error) -> Self {
        ReadError::Io(error)
    }
}

impl Transport {
    /// The kind, for logs and metrics.
    #[must_use]
    pub fn kind(&self) -> TransportKind {
        match self {
            Transport::Tcp(_) => TransportKind::Tcp,
            Transport::Tls(_) => TransportKind::Tls,
            Transport::WebSocket { secure: false, .. } => TransportKind::Ws,
            Transport::WebSocket { secure: true, .. } => TransportKind::Wss,
        }
    }

    /// Waits until bytes arrive and appends them to `buf`. `Ok(0)` means the
    /// peer closed. Cancel-safe: when it returns `Pending`, nothing was
    /// consumed.
    ///
    /// # Errors
    /// An I/O error, or a WebSocket message that is not one whole frame.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max_payload: usize,
    ) -> Poll<Result<usize, ReadError>> {
        match self {
            Transport::Tcp(stream) => loop {
                ready!(stream.poll_read_ready(cx))?;
                buf.reserve(READ_CHUNK);
                match stream.try_read_buf(buf) {
                    // Readiness was stale: poll again to register for the next.
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        release_if_empty(buf);
                    }
                    result => return Poll::Ready(result.map_err(ReadError::Io)),
                }
            },
            Transport::Tls(stream) => {
                buf.reserve(READ_CHUNK);
                let polled = tokio_util::io::poll_read_buf(Pin::new(&mut **stream), cx, buf);
                if polled.is_pending() {
                    release_if_empty(buf);
                }
                polled.map_err(ReadError::Io)
            }
            Transport::WebSocket { socket, .. } => loop {
                let message = match ready!(socket.poll_next_unpin(cx)) {
                    None => return Poll::Ready(Ok(0)),
                    Some(Err(error)) => {
                        return Poll::Ready(Err(ReadError::Io(io::Error::other(error))))
                    }
                    Some(Ok(message)) => message,
                };
                match message {
                    Message::Binary(bytes) => {
                        if !is_one_frame(&bytes, max_payload) {
                            return Poll::Ready(Err(ReadError::WebSocket(
                                WebSocketError::NotOneFrame,
                            )));
                        }
                        buf.extend_from_slice(&bytes);
                        return Poll::Ready(Ok(bytes.len()));
                    }
                    Message::Text(_) => {
                        return Poll::Ready(Err(ReadError::WebSocket(WebSocketError::Text)))
                    }
                    Message::Close(_) => return Poll::Ready(Ok(0)),
                    // Pings are answered by the WebSocket layer on the next
                    // read or write; pongs need nothing.
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            },
        }
    }

    /// Sends every frame in `buf` and empties it. On WebSocket each frame
    /// goes as its own binary message, cut out of `buf` without copying.
    ///
    /// # Errors
    /// Whatever the socket says.
    pub async fn write_frames(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        match self {
            Transport::Tcp(stream) => {
                stream.write_all(buf).await?;
                buf.clear();
            }
            Transport::Tls(stream) => {
                stream.write_all(buf).await?;
                // rustls holds records until flushed.
                stream.flush().await?;
                buf.clear();
            }
            Transport::WebSocket { socket, .. } => {
                while buf.len() >= HEADER_LEN {
                    let length = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
                    let whole = (HEADER_LEN + length).min(buf.len());
                    let frame = buf.split_to(whole).freeze();
                    socket
                        .feed(Message::Binary(frame))
                        .await
                        .map_err(io::Error::other)?;
                }
                buf.clear();
                socket.flush().await.map_err(io::Error::other)?;
            }
        }
        Ok(())
    }

    /// Closes the connection politely: a FIN for TCP, `close_notify` for
    /// TLS, a Close message with `code` and `reason` for WebSocket. Bounded
    /// by the caller.
    pub async fn close(&mut self, code: u16, reason: &str) {
        match self {
            Transport::Tcp(stream) => {
                let _ = stream.shutdown().await;
            }
            Transport::Tls(stream) => {
                let _ = stream.shutdown().await;
            }
            Transport::WebSocket { socket, .. } => {
                // A close reason is limited to 123 bytes by the protocol.
                let mut end = reason.len().min(123);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let frame = CloseFrame {
                    code,
                    reason: reason[..end].into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
            }
        }
    }
}

/// Whether `bytes` may go to the session as one frame: exactly one whole
/// frame, or a bad header, which the session answers with its error status
/// before closing, as it does on a byte stream.
fn is_one_frame(bytes: &[u8], max_payload: usize) -> bool {
    match frame::check(bytes, max_payload) {
        Ok(Some(header)) => HEADER_LEN + header.length as usize == bytes.len(),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Gives back a read buffer that holds nothing, so an idle connection keeps
/// no memory for it.
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use chat_proto::{PingRequest, Request};

    fn ping_frame() -> BytesMut {
        let mut buf = BytesMut::new();
        Request::Ping(PingRequest {}).encode(7, &mut buf).unwrap();
        buf
    }

    #[test]
    fn one_whole_frame_is_accepted() {
        let frame = ping_frame();
        assert!(is_one_frame(&frame, 1024));
    }

    #[test]
    fn partial_double_and_garbage_messages_are_refused() {
        let frame = ping_frame();
        assert!(!is_one_frame(&frame[..frame.len() - 1], 1024));
        let mut double = frame.clone();
        double.extend_from_slice(&frame);
        assert!(!is_one_frame(&double, 1024));
        // A bad header goes to the session, which answers it like on TCP.
        assert!(is_one_frame(b"GET / HTTP/1.1\r\n\r\n", 1024));
        let mut tail = double;
        tail.advance(1);
        assert!(is_one_frame(&tail, 1024));
    }

    #[test]
    fn empty_buffers_are_released() {
        let mut buf = BytesMut::with_capacity(4096);
        release_if_empty(&mut buf);
        assert_eq!(buf.capacity(), 0);
        let mut full = BytesMut::from(&b"x"[..]);
        release_if_empty(&mut full);
        assert_eq!(&full[..], b"x");
    }
}
