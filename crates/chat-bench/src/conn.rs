//! One client connection straight on the wire format: a socket, a read
//! buffer that frames are cut from without copying, and a write buffer that
//! collects everything ready so one syscall sends it all.
//!
//! The transport is plain TCP, TLS, or a WebSocket (over TCP or TLS). Plain
//! TCP is driven by readiness, as before: reads and writes go straight to
//! the socket. TLS and WebSocket streams cannot say "readable" without
//! reading, so for them a readiness poll *is* a read (its outcome is kept
//! for the next [`Conn::try_read`]), and a non-blocking read or flush is a
//! poll with a waker that does nothing; the next readiness poll registers
//! the real one. The engine above sees the same calls for every transport.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use chat_client::transport::{self, ByteStream, ClientTls, Scheme, ServerAddress, TransportStream};
use futures::{Sink, Stream};
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use chat_proto::frame::{self, encode_json};
use chat_proto::{
    Flags, Frame, Header, MessageType, Request, Status, CLIENT_MAX_PAYLOAD, HEADER_LEN,
};

use crate::error::{Error, Result};

/// Room made in the read buffer when it runs low: enough that a burst of
/// pushes arrives in one syscall.
const READ_CHUNK: usize = 16 * 1024;

/// The read buffer a connection starts with. Small, because the idle
/// scenario holds thousands of connections that never receive much.
const INITIAL_READ_BUF: usize = 1024;

/// A WebSocket read stops taking ready messages beyond this many bytes, so
/// one busy connection cannot hold its task's other connections back.
const WEBSOCKET_READ_BATCH: usize = 256 * 1024;

/// What a non-blocking read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were appended to the read buffer.
    Data(usize),
    /// Nothing is there now.
    WouldBlock,
    /// The peer closed the connection.
    Closed,
}

/// A server the bench connects to: the address every connection goes to,
/// and the transport and trust settings to speak there.
#[derive(Debug, Clone)]
pub struct Server {
    /// The resolved socket address (resolved once, not per connection).
    pub addr: SocketAddr,
    /// The address as given: its scheme picks the transport, its host is
    /// the name TLS checks, its path the WebSocket request path.
    pub address: ServerAddress,
    /// Whom TLS trusts; `None` trusts the system's roots.
    pub tls: Option<ClientTls>,
    /// The CA file `tls` came from, so worker processes can load it too.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Server {
    /// Plain TCP to `addr`.
    #[must_use]
    pub fn tcp(addr: SocketAddr) -> Server {
        Server {
            addr,
            address: ServerAddress::tcp(addr.ip().to_string(), addr.port()),
            tls: None,
            ca_file: None,
        }
    }

    /// Parses `text` (`host:port`, `tls://host:port`, `ws://host:port[/path]`,
    /// `wss://host:port[/path]`), makes it TLS when `force_tls` is set (see
    /// [`ServerAddress::with_tls`]), resolves the host, and loads the CA file
    /// when one is given (else TLS trusts the system's roots, loaded when
    /// first needed).
    ///
    /// # Errors
    /// [`Error::Options`] for an address in none of the forms, a host that
    /// does not resolve, or an unusable CA file.
    pub async fn resolve(
        text: &str,
        force_tls: bool,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Server> {
        let mut address =
            ServerAddress::parse(text).map_err(|error| Error::Options(error.to_string()))?;
        if force_tls {
            address = address.with_tls();
        }
        // Without a CA file the system's roots are loaded at the first TLS
        // handshake (once per process).
        let tls = match ca_file {
            Some(path) => Some(
                ClientTls::from_ca_file(path).map_err(|error| Error::Options(error.to_string()))?,
            ),
            None => None,
        };
        let addr = tokio::net::lookup_host((address.host(), address.port()))
            .await
            .map_err(|error| Error::io(format!("resolve {}", address.host()), error))?
            .next()
            .ok_or_else(|| Error::Options(format!("{} resolves to no address", address.host())))?;
        Ok(Server {
            addr,
            address,
            tls,
            ca_file: ca_file.map(std::path::Path::to_path_buf),
        })
    }

    /// The transport, for reports: `tcp`, `tls`, `ws` or `wss`.
    #[must_use]
    pub fn transport_name(&self) -> &'static str {
        match self.address.scheme() {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.address, f)
    }
}

/// What carries the frames.
enum Transport {
    /// Plain TCP, driven by readiness.
    Tcp(TcpStream),
    /// TLS over TCP (a [`ByteStream::Tls`]).
    Tls(ByteStream),
    /// A WebSocket, one frame per binary message.
    WebSocket(Box<WebSocketStream<ByteStream>>),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp(_) => "Tcp",
            Transport::Tls(_) => "Tls",
            Transport::WebSocket(_) => "WebSocket",
        })
    }
}

/// A framed client connection.
#[derive(Debug)]
pub struct Conn {
    transport: Transport,
    read_buf: BytesMut,
    write_buf: BytesMut,
    next_request_id: u32,
    /// TLS and WebSocket: what a read made by a readiness poll found, for
    /// the next [`Conn::try_read`].
    polled: Option<io::Result<ReadOutcome>>,
    /// TLS and WebSocket: bytes were handed to the transport that it has
    /// not yet flushed to the socket.
    flush_pending: bool,
}

impl Conn {
    /// Connects to `server`, from `source` when given (binding the socket to
    /// that address first, so many connections can spread over the loopback
    /// range 127.0.0.x and the server's per-address limits and the ephemeral
    /// ports of one address are not the bound), then does the TLS and
    /// WebSocket handshakes the server's address asks for.
    ///
    /// # Errors
    /// [`Error::Io`] when the socket cannot be made, bound or connected, or
    /// a handshake fails (its text says why).
    pub async fn connect(server: &Server, source: Option<IpAddr>) -> Result<Conn> {
        let context = || format!("connect to {server}");
        let stream = match source {
            None => TcpStream::connect(server.addr)
                .await
                .map_err(|error| Error::io(context(), error))?,
            Some(ip) => {
                let socket = if server.addr.is_ipv4() {
                    TcpSocket::new_v4()
                } else {
                    TcpSocket::new_v6()
                }
                .map_err(|error| Error::io(context(), error))?;
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(|error| Error::io(format!("bind {ip}"), error))?;
                socket
                    .connect(server.addr)
                    .await
                    .map_err(|error| Error::io(context(), error))?
            }
        };
        if server.address.scheme() == Scheme::Tcp {
            return Ok(Conn::from_stream(stream));
        }
        let _ = stream.set_nodelay(true);
        let transport = transport::handshake(
            stream,
            &server.address,
            server.tls.as_ref(),
            CLIENT_MAX_PAYLOAD,
        )
        .await
        .map_err(|error| Error::io(context(), error))?;
        Ok(Conn::from_transport(transport))
    }

    /// Wraps a connected socket.
    #[must_use]
    pub fn from_stream(stream: TcpStream) -> Conn {
        // Latency matters more than packet count on loopback; the write
        // buffer already batches whatever is ready.
        let _ = stream.set_nodelay(true);
        Conn::with_transport(Transport::Tcp(stream))
    }

    /// Wraps an open transport (see [`chat_client::transport::handshake`]).
    #[must_use]
    pub fn from_transport(stream: TransportStream) -> Conn {
        Conn::with_transport(match stream {
            TransportStream::Bytes(ByteStream::Tcp(stream)) => Transport::Tcp(stream),
            TransportStream::Bytes(tls) => Transport::Tls(tls),
            TransportStream::WebSocket(websocket) => Transport::WebSocket(websocket),
        })
    }

    fn with_transport(transport: Transport) -> Conn {
        Conn {
            transport,
            read_buf: BytesMut::with_capacity(INITIAL_READ_BUF),
            write_buf: BytesMut::new(),
            next_request_id: 1,
            polled: None,
            flush_pending: false,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.transport {
            Transport::Tcp(stream) => stream,
            Transport::Tls(stream) => stream.tcp(),
            Transport::WebSocket(websocket) => websocket.get_ref().tcp(),
        }
    }

    /// The local address of the socket.
    ///
    /// # Errors
    /// [`Error::Io`] if the socket has none.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.tcp()
            .local_addr()
            .map_err(|error| Error::io("local address", error))
    }

    /// A fresh request id: never 0, as the protocol requires.
    pub fn next_request_id(&mut self) -> u32 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Appends a request frame with a JSON payload to the write buffer and
    /// returns its request id. Nothing is sent until a flush.
    ///
    /// # Errors
    /// [`Error::Message`] if the value cannot be serialized.
    pub fn queue_json<T: Serialize + ?Sized>(
        &mut self,
        message_type: MessageType,
        value: &T,
    ) -> Result<u32> {
        let request_id = self.next_request_id();
        encode_json(
            &mut self.write_buf,
            Flags::REQUEST,
            message_type.code(),
            Status::Ok,
            request_id,
            value,
        )?;
        Ok(request_id)
    }

    /// Appends a typed request to the write buffer and returns its request id.
    ///
    /// # Errors
    /// As [`Conn::queue_json`].
    pub fn queue_request(&mut self, request: &Request) -> Result<u32> {
        let request_id = self.next_request_id();
        request.encode(request_id, &mut self.write_buf)?;
        Ok(request_id)
    }

    /// Appends raw, already framed bytes to the write buffer.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.write_buf.extend_from_slice(bytes);
    }

    /// Appends a frame with this header and payload to the write buffer.
    pub fn queue_frame(
        &mut self,
        flags: Flags,
        message_type: u16,
        status: u16,
        request_id: u32,
        payload: &[u8],
    ) {
        self.write_buf.reserve(HEADER_LEN + payload.len());
        Header {
            flags,
            message_type,
            status,
            request_id,
            // Payloads come from frames that passed the length check.
            length: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        }
        .write_to(&mut self.write_buf);
        self.write_buf.extend_from_slice(payload);
    }

    /// Whether bytes wait to be written.
    #[must_use]
    pub fn has_pending_writes(&self) -> bool {
        !self.write_buf.is_empty() || self.flush_pending
    }

    /// How many bytes wait to be written.
    #[must_use]
    pub fn pending_write_len(&self) -> usize {
        self.write_buf.len()
    }

    /// Writes as much of the write buffer as the socket takes now.
    ///
    /// # Errors
    /// The socket's error (other than "would block").
    pub fn try_flush(&mut self) -> io::Result<()> {
        let Transport::Tcp(stream) = &self.transport else {
            return match self.poll_flush_transport(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => result,
                Poll::Pending => Ok(()),
            };
        };
        while !self.write_buf.is_empty() {
            match stream.try_write(&self.write_buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.write_buf.advance(written),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Writes the whole write buffer, waiting as needed.
    ///
    /// # Errors
    /// [`Error::Io`] on a socket error.
    pub async fn flush(&mut self) -> Result<()> {
        if let Transport::Tcp(stream) = &mut self.transport {
            stream
                .write_all(&self.write_buf)
                .await
                .map_err(|error| Error::io("write", error))?;
            self.write_buf.clear();
            return Ok(());
        }
        poll_fn(|cx| self.poll_flush_transport(cx))
            .await
            .map_err(|error| Error::io("write", error))
    }

    /// TLS and WebSocket: hands the write buffer to the transport (each
    /// frame as one binary message on a WebSocket) and flushes it.
    fn poll_flush_transport(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.transport {
            Transport::Tcp(_) => {}
            Transport::Tls(stream) => {
                while !self.write_buf.is_empty() {
                    let written = ready!(Pin::new(&mut *stream).poll_write(cx, &self.write_buf))?;
                    if written == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.write_buf.advance(written);
                    self.flush_pending = true;
                }
                if self.flush_pending {
                    ready!(Pin::new(&mut *stream).poll_flush(cx))?;
                }
            }
            Transport::WebSocket(websocket) => {
                while !self.write_buf.is_empty() {
                    ready!(Pin::new(websocket.as_mut()).poll_ready(cx)).map_err(websocket_io)?;
                    let len = first_frame_len(&self.write_buf);
                    let message = self.write_buf.split_to(len).freeze();
                    Pin::new(websocket.as_mut())
                        .start_send(Message::Binary(message))
                        .map_err(websocket_io)?;
                    self.flush_pending = true;
                }
                if self.flush_pending {
                    ready!(Pin::new(websocket.as_mut()).poll_flush(cx)).map_err(websocket_io)?;
                }
            }
        }
        self.flush_pending = false;
        Poll::Ready(Ok(()))
    }

    fn reserve_read(&mut self) {
        if self.read_buf.capacity() - self.read_buf.len() < INITIAL_READ_BUF / 2 {
            self.read_buf.reserve(READ_CHUNK);
        }
    }

    /// Reads what the socket has now into the read buffer.
    ///
    /// # Errors
    /// The socket's error (other than "would block").
    pub fn try_read(&mut self) -> io::Result<ReadOutcome> {
        self.reserve_read();
        let Transport::Tcp(stream) = &self.transport else {
            if let Some(outcome) = self.polled.take() {
                return outcome;
            }
            return match self.poll_read_transport(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => Ok(ReadOutcome::WouldBlock),
            };
        };
        match stream.try_read_buf(&mut self.read_buf) {
            Ok(0) => Ok(ReadOutcome::Closed),
            Ok(read) => Ok(ReadOutcome::Data(read)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(error) => Err(error),
        }
    }

    /// TLS and WebSocket: reads what the transport has into the read buffer.
    fn poll_read_transport(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<ReadOutcome>> {
        self.reserve_read();
        match &mut self.transport {
            Transport::Tcp(_) => Poll::Ready(Ok(ReadOutcome::WouldBlock)),
            Transport::Tls(stream) => {
                let read = ready!(tokio_util::io::poll_read_buf(
                    Pin::new(stream),
                    cx,
                    &mut self.read_buf
                ))?;
                Poll::Ready(Ok(if read == 0 {
                    ReadOutcome::Closed
                } else {
                    ReadOutcome::Data(read)
                }))
            }
            Transport::WebSocket(websocket) => {
                // Take every message that is already here, up to a bound, so
                // a burst of pushes costs one wake-up rather than one each.
                let mut read = 0;
                let data_or = |read: usize, otherwise: ReadOutcome| {
                    if read > 0 {
                        ReadOutcome::Data(read)
                    } else {
                        otherwise
                    }
                };
                while read < WEBSOCKET_READ_BATCH {
                    let message = match Pin::new(websocket.as_mut()).poll_next(cx) {
                        Poll::Pending if read > 0 => break,
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(None) => {
                            return Poll::Ready(Ok(data_or(read, ReadOutcome::Closed)))
                        }
                        // The stream is finished after an error: the next
                        // poll says Closed.
                        Poll::Ready(Some(Err(_))) if read > 0 => break,
                        Poll::Ready(Some(Err(error))) => {
                            return Poll::Ready(Err(websocket_io(error)))
                        }
                        Poll::Ready(Some(Ok(message))) => message,
                    };
                    match message {
                        Message::Binary(bytes) => {
                            self.read_buf.extend_from_slice(&bytes);
                            read += bytes.len();
                        }
                        Message::Close(_) => {
                            return Poll::Ready(Ok(data_or(read, ReadOutcome::Closed)))
                        }
                        Message::Text(_) => {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "a WebSocket text message; frames travel in binary ones",
                            )))
                        }
                        // tungstenite answers pings itself.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Poll::Ready(Ok(ReadOutcome::Data(read)))
            }
        }
    }

    /// Cuts the next whole frame out of the read buffer, if one is there.
    ///
    /// # Errors
    /// [`Error::Frame`] when the bytes are not a valid frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        Ok(frame::decode(&mut self.read_buf, CLIENT_MAX_PAYLOAD)?)
    }

    /// Waits for the next whole frame.
    ///
    /// # Errors
    /// [`Error::Closed`] if the server closes first, [`Error::Io`] or
    /// [`Error::Frame`] on a broken stream.
    pub async fn read_frame(&mut self, during: &'static str) -> Result<Frame> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            poll_fn(|cx| self.poll_read_ready(cx))
                .await
                .map_err(|error| Error::io(during, error))?;
            match self.try_read().map_err(|error| Error::io(during, error))? {
                ReadOutcome::Closed => return Err(Error::Closed(during)),
                ReadOutcome::Data(_) | ReadOutcome::WouldBlock => {}
            }
        }
    }

    /// Like [`Conn::read_frame`] but gives up after `limit`.
    ///
    /// # Errors
    /// As [`Conn::read_frame`], and [`Error::Timeout`].
    pub async fn read_frame_within(
        &mut self,
        during: &'static str,
        limit: Duration,
    ) -> Result<Frame> {
        match tokio::time::timeout(limit, self.read_frame(during)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                what: during.to_owned(),
                seconds: limit.as_secs(),
            }),
        }
    }

    /// Registers interest in readability; ready when a read may find data.
    /// On TLS and WebSocket this reads (see the [module docs](self)).
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Transport::Tcp(stream) = &self.transport {
            return stream.poll_read_ready(cx);
        }
        if self.polled.is_none() {
            let outcome = ready!(self.poll_read_transport(cx));
            self.polled = Some(outcome);
        }
        Poll::Ready(Ok(()))
    }

    /// Registers interest in writability; ready when a write may go through.
    /// On TLS and WebSocket this writes and flushes what is pending.
    pub fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Transport::Tcp(stream) = &self.transport {
            return stream.poll_write_ready(cx);
        }
        self.poll_flush_transport(cx)
    }
}

/// The length of the first frame in `buf` according to its header, or all
/// of `buf` when it holds less than a header (raw test bytes), so every
/// WebSocket message carries one frame as the protocol asks.
fn first_frame_len(buf: &[u8]) -> usize {
    if buf.len() < HEADER_LEN {
        return buf.len();
    }
    let length = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
    (HEADER_LEN + length).min(buf.len())
}

fn websocket_io(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(error) => error,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_messages_are_cut_at_frame_boundaries() {
        let mut buf = BytesMut::new();
        Header {
            flags: Flags::REQUEST,
            message_type: MessageType::Ping.code(),
            status: 0,
            request_id: 1,
            length: 2,
        }
        .write_to(&mut buf);
        buf.extend_from_slice(b"{}");
        let one = buf.len();
        buf.extend_from_slice(&buf.clone());
        assert_eq!(first_frame_len(&buf), one);
        assert_eq!(first_frame_len(&buf[..one]), one);
        // A frame cut short, or bytes that are not even a header, go as
        // they are.
        assert_eq!(first_frame_len(&buf[..one - 1]), one - 1);
        assert_eq!(first_frame_len(b"hello"), 5);
    }

    #[tokio::test]
    async fn servers_resolve_with_their_transport() {
        let server = Server::resolve("localhost:7000", true, None).await.unwrap();
        assert_eq!(server.transport_name(), "tls");
        assert_eq!(server.addr.port(), 7000);
        assert!(server.addr.ip().is_loopback());
        assert_eq!(server.to_string(), "tls://localhost:7000");
        let server = Server::resolve("ws://127.0.0.1:7080", false, None)
            .await
            .unwrap();
        assert_eq!(server.transport_name(), "ws");
        assert!(server.tls.is_none());
        assert_eq!(server.to_string(), "ws://127.0.0.1:7080/ws");
        assert_eq!(
            Server::tcp("127.0.0.1:7000".parse().unwrap()).to_string(),
            "127.0.0.1:7000"
        );
        let error = Server::resolve("http://h:1", false, None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("unknown scheme"), "{error}");
        let error = Server::resolve(
            "tls://h:1",
            false,
            Some(std::path::Path::new("/nonexistent")),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
    }
}
