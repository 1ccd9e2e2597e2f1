//! One connection to a chatd server, over plain TCP, TLS or WebSocket.
//!
//! A [`Connection`] owns two tasks. The reader task takes frames from the
//! transport and routes each reply to the caller waiting for its request
//! id, and each push to the push queue. The writer task takes encoded
//! frames from a bounded outbox and hands the transport whatever is ready
//! before flushing: on TCP and TLS that is one buffer and one write, on a
//! WebSocket one binary message per frame, sent together. Callers only
//! encode, queue and wait, so any number of requests can be in flight at
//! once, from any number of tasks sharing the connection (`&self`
//! everywhere; wrap it in an `Arc`). Nothing above the two tasks knows which
//! transport carries the frames (see [`crate::transport`]).
//!
//! When the connection closes, for whatever reason, every waiting request
//! fails at once with [`ClientError::Closed`] and the push queue ends after
//! the pushes already received.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_proto::{
    Call, Frame, FrameCodec, LoginRequest, LoginResponse, MessageType, Push, Request, Response,
    SendRequest, SendResponse, Target, CLIENT_MAX_PAYLOAD,
};
use futures::{Sink, Stream, StreamExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::client_msg_ids::ClientMsgIds;
use crate::error::{ClientError, Result};
use crate::transport::{self, ByteStream, ClientTls, ServerAddress, TransportStream};

mod frames;
mod into_user_ref;
mod pending;
mod tasks;
#[cfg(test)]
mod tests;

use frames::{byte_frames, byte_sink, WebSocketFrames, WebSocketSink};
pub use into_user_ref::IntoUserRef;
pub use pending::{PendingReply, UnmatchedReply};
use pending::{Shared, State};
use tasks::{read_loop, write_loop};

/// How many encoded frames may wait for the writer before callers wait too.
const OUTBOX_CAPACITY: usize = 1024;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// How long a request waits for its response before failing with
    /// [`ClientError::Timeout`]. Changeable later with
    /// [`Connection::set_request_timeout`].
    pub request_timeout: Duration,
    /// How long opening the connection may take, TLS and WebSocket
    /// handshakes included.
    pub connect_timeout: Duration,
    /// The largest frame payload accepted from the server; a larger one is a
    /// protocol violation that closes the connection.
    pub max_payload: usize,
    /// Whom to trust on `tls://` and `wss://` addresses; `None` trusts the
    /// system's root certificates. Plain addresses ignore it.
    pub tls: Option<ClientTls>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_payload: CLIENT_MAX_PAYLOAD,
            tls: None,
        }
    }
}

/// One connection to a chatd server; see the [module docs](self).
pub struct Connection {
    shared: Arc<Shared>,
    outbox: mpsc::Sender<Bytes>,
    pushes: tokio::sync::Mutex<mpsc::UnboundedReceiver<Push>>,
    unmatched: tokio::sync::Mutex<mpsc::UnboundedReceiver<UnmatchedReply>>,
    next_request_id: AtomicU32,
    request_timeout_ms: AtomicU64,
    client_msg_ids: ClientMsgIds,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

fn unexpected_response(expected: MessageType, got: &Response) -> ClientError {
    ClientError::Protocol(format!(
        "expected a {} response, got {}",
        expected.name(),
        got.message_type().name()
    ))
}

impl Connection {
    /// Connects over plain TCP with default [`ConnectionOptions`]. For TLS
    /// and WebSocket addresses see [`Connection::connect_url`].
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the TCP connection cannot be opened.
    pub async fn connect<A>(address: A) -> Result<Connection>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        Self::connect_with(address, ConnectionOptions::default()).await
    }

    /// Connects over plain TCP with the given options.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the TCP connection cannot be opened
    /// within `options.connect_timeout`.
    pub async fn connect_with<A>(address: A, options: ConnectionOptions) -> Result<Connection>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        let address_text = address.to_string();
        let opening = async {
            let stream = TcpStream::connect(address).await?;
            // Chat traffic is small request/response frames: waiting to
            // coalesce them (Nagle) only adds latency. Failure to set it is
            // harmless.
            let _ = stream.set_nodelay(true);
            Ok(TransportStream::Bytes(ByteStream::Tcp(stream)))
        };
        Self::open(&address_text, opening, options).await
    }

    /// Connects to an address in any of the forms [`ServerAddress`] parses:
    /// `host:port`, `tls://host:port`, `ws://host:port[/path]`,
    /// `wss://host:port[/path]`.
    ///
    /// # Errors
    /// [`ClientError::InvalidAddress`] for an address in none of the forms;
    /// otherwise as [`Connection::connect_to`].
    pub async fn connect_url(url: &str, options: ConnectionOptions) -> Result<Connection> {
        let address = ServerAddress::parse(url)?;
        Self::connect_to(&address, options).await
    }

    /// Connects to `address` over the transport it names: TCP, then TLS
    /// (trusting `options.tls`, or the system's roots) and the WebSocket
    /// upgrade where the address asks for them.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the connection cannot be opened within
    /// `options.connect_timeout`; its text says why, e.g. that the server's
    /// certificate has an unknown issuer or does not match the host name.
    /// [`ClientError::TlsConfig`] when `options.tls` is `None` and the
    /// system's roots cannot be loaded.
    pub async fn connect_to(
        address: &ServerAddress,
        options: ConnectionOptions,
    ) -> Result<Connection> {
        let system_roots;
        let tls = match &options.tls {
            Some(tls) => Some(tls),
            None if address.scheme().uses_tls() => {
                system_roots = ClientTls::system_roots()?;
                Some(&system_roots)
            }
            None => None,
        };
        let opening = transport::connect(address, tls, options.max_payload);
        Self::open(&address.to_string(), opening, options.clone()).await
    }

    /// Runs `opening` within the connect timeout and starts the connection
    /// on what it opened.
    async fn open(
        address: &str,
        opening: impl std::future::Future<Output = std::io::Result<TransportStream>>,
        options: ConnectionOptions,
    ) -> Result<Connection> {
        let connect_error = |error| ClientError::Connect {
            address: address.to_owned(),
            error,
        };
        let stream = tokio::time::timeout(options.connect_timeout, opening)
            .await
            .map_err(|_| {
                connect_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", options.connect_timeout),
                ))
            })?
            .map_err(connect_error)?;
        let local_addr = stream.tcp().local_addr().map_err(connect_error)?;
        let peer_addr = stream.tcp().peer_addr().map_err(connect_error)?;
        Ok(Self::start(stream, local_addr, peer_addr, &options))
    }

    /// Splits the transport into a stream of frames for the reader task and
    /// a sink of encoded frames for the writer task.
    fn start(
        stream: TransportStream,
        local_addr: SocketAddr,
        peer_addr: SocketAddr,
        options: &ConnectionOptions,
    ) -> Connection {
        let codec = FrameCodec::new(options.max_payload);
        match stream {
            TransportStream::Bytes(ByteStream::Tcp(stream)) => {
                let (read_half, write_half) = stream.into_split();
                Self::spawn(
                    byte_frames(read_half, codec),
                    byte_sink(write_half),
                    local_addr,
                    peer_addr,
                    options,
                )
            }
            TransportStream::Bytes(tls @ ByteStream::Tls(_)) => {
                let (read_half, write_half) = tokio::io::split(tls);
                Self::spawn(
                    byte_frames(read_half, codec),
                    byte_sink(write_half),
                    local_addr,
                    peer_addr,
                    options,
                )
            }
            TransportStream::WebSocket(websocket) => {
                let (sink, messages) = websocket.split();
                Self::spawn(
                    WebSocketFrames {
                        messages,
                        max_payload: options.max_payload,
                        ended: false,
                    },
                    WebSocketSink { messages: sink },
                    local_addr,
                    peer_addr,
                    options,
                )
            }
        }
    }

    fn spawn<R, W>(
        frames: R,
        sink: W,
        local_addr: SocketAddr,
        peer_addr: SocketAddr,
        options: &ConnectionOptions,
    ) -> Connection
    where
        R: Stream<Item = std::result::Result<Frame, String>> + Send + Unpin + 'static,
        W: Sink<Bytes, Error = std::io::Error> + Send + Unpin + 'static,
    {
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: HashMap::new(),
                closed_reason: None,
            }),
            closed,
        });
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        // Pushes are queued without bound on purpose: a bounded queue would
        // have to stall the reader when the application is slow to take
        // pushes, and a stalled reader would starve every waiting request.
        // The server bounds what it sends to one session (its outbox).
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let (unmatched_tx, unmatched_rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(
            frames,
            Arc::clone(&shared),
            push_tx,
            unmatched_tx,
        ));
        let writer = tokio::spawn(write_loop(outbox_rx, sink, Arc::clone(&shared)));
        Connection {
            shared,
            outbox,
            pushes: tokio::sync::Mutex::new(push_rx),
            unmatched: tokio::sync::Mutex::new(unmatched_rx),
            next_request_id: AtomicU32::new(1),
            request_timeout_ms: AtomicU64::new(duration_to_ms(options.request_timeout)),
            client_msg_ids: ClientMsgIds::new(),
            local_addr,
            peer_addr,
            reader,
            writer,
        }
    }

    /// The local address of the TCP connection (under TLS and WebSocket
    /// too).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's address.
    #[must_use]
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The current per-request timeout.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.load(Ordering::Relaxed))
    }

    /// Changes the per-request timeout for requests started from now on.
    pub fn set_request_timeout(&self, timeout: Duration) {
        self.request_timeout_ms
            .store(duration_to_ms(timeout), Ordering::Relaxed);
    }

    /// Whether the connection has closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Why the connection closed, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<String> {
        self.shared.lock().closed_reason.clone()
    }

    /// Resolves once the connection has closed.
    pub async fn closed(&self) {
        let mut receiver = self.shared.closed.subscribe();
        // `wait_for` checks the current value first; it only errs if the
        // sender is gone, which `self` prevents.
        let _ = receiver.wait_for(|closed| *closed).await;
    }

    /// Closes the connection: waiting requests fail, the socket is shut down.
    pub fn close(&self) {
        self.shared.close("closed by the client".to_owned());
        self.reader.abort();
    }

    /// A fresh request id: from an atomic counter, never 0 (0 marks pushes).
    pub fn allocate_request_id(&self) -> u32 {
        loop {
            let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// A fresh `client_msg_id` for a [`SendRequest`]: a random
    /// per-connection prefix and a counter, so it is unique for the sender.
    pub fn new_client_msg_id(&self) -> String {
        self.client_msg_ids.next()
    }

    /// Registers a wait for the reply to `request_id`, for frames sent with
    /// [`Connection::send_raw`]. Register before sending, so a fast reply is
    /// not missed.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the connection is already closed.
    pub fn expect_reply(&self, request_id: u32) -> Result<PendingReply> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            // Checked under the same lock `close` takes, so a wait can never
            // be registered after the pending map was failed and emptied.
            if let Some(reason) = &state.closed_reason {
                return Err(ClientError::Closed(reason.clone()));
            }
            state.pending.insert(request_id, sender);
        }
        Ok(PendingReply {
            request_id,
            receiver,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Queues bytes for the server exactly as given: for tests of malformed
    /// input (garbage, split frames, many frames in one write). On a
    /// WebSocket the bytes become one binary message.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the connection is closed.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        self.enqueue(Bytes::copy_from_slice(bytes)).await
    }

    async fn enqueue(&self, frame: Bytes) -> Result<()> {
        if let Some(reason) = self.close_reason() {
            return Err(ClientError::Closed(reason));
        }
        self.outbox.send(frame).await.map_err(|_| {
            ClientError::Closed(
                self.close_reason()
                    .unwrap_or_else(|| "the writer stopped".to_owned()),
            )
        })
    }

    /// Sends a request and waits for its response, at most the connection's
    /// request timeout.
    ///
    /// # Errors
    /// [`ClientError::Server`] for a non-zero status (see
    /// [`ClientError::status`]), [`ClientError::Closed`] when the connection
    /// is or becomes closed, [`ClientError::Timeout`], and
    /// [`ClientError::Protocol`] for a reply of the wrong type.
    pub async fn request(&self, request: Request) -> Result<Response> {
        self.request_with_timeout(request, self.request_timeout())
            .await
    }

    /// As [`Connection::request`] with an explicit timeout.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub async fn request_with_timeout(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Response> {
        let request_id = self.allocate_request_id();
        let mut buf = BytesMut::new();
        request.encode(request_id, &mut buf)?;
        let pending = self.expect_reply(request_id)?;
        self.enqueue(buf.freeze()).await?;
        let response = pending.wait(timeout).await?;
        let expected = request.message_type();
        if response.message_type() != expected {
            return Err(unexpected_response(expected, &response));
        }
        Ok(response)
    }

    /// Waits for the next push. Returns `None` once the connection has closed
    /// and every push received before that has been taken.
    pub async fn next_push(&self) -> Option<Push> {
        self.pushes.lock().await.recv().await
    }

    /// As [`Connection::next_push`], but gives up after `timeout` (also
    /// returning `None`).
    pub async fn next_push_timeout(&self, timeout: Duration) -> Option<Push> {
        tokio::time::timeout(timeout, self.next_push())
            .await
            .ok()
            .flatten()
    }

    /// A push that has already arrived, without waiting.
    pub fn try_next_push(&self) -> Option<Push> {
        self.pushes.try_lock().ok()?.try_recv().ok()
    }

    /// Waits at most `timeout` for a reply nobody registered for (see
    /// [`UnmatchedReply`]).
    pub async fn next_unmatched_reply(&self, timeout: Duration) -> Option<UnmatchedReply> {
        let mut receiver = self.unmatched.lock().await;
        tokio::time::timeout(timeout, receiver.recv())
            .await
            .ok()
            .flatten()
    }

    /// Any request, typed by the message table (see [`chat_proto::Call`]):
    /// `connection.call(GroupJoinRequest { group_id })` answers with a
    /// [`chat_proto::GroupJoinResponse`]. Every request without a method of
    /// its own below goes through here.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub async fn call<R: Call>(&self, request: R) -> Result<R::Response> {
        R::from_response(self.request(request.into_request()).await?)
            .map_err(|other| unexpected_response(R::TYPE, &other))
    }

    /// `login` with a name or id and a password.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub async fn login(&self, user: impl IntoUserRef, password: &str) -> Result<LoginResponse> {
        self.call(LoginRequest {
            user: Some(user.into_user_ref()),
            password: Some(password.to_owned()),
            token: None,
        })
        .await
    }

    /// `login` with a session token from an earlier login.
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub async fn login_with_token(&self, token: &str) -> Result<LoginResponse> {
        self.call(LoginRequest {
            user: None,
            password: None,
            token: Some(token.to_owned()),
        })
        .await
    }

    /// `send` with a freshly generated `client_msg_id` (see
    /// [`Connection::new_client_msg_id`]); to choose the id, and so be able
    /// to send again without storing twice, call a [`SendRequest`].
    ///
    /// # Errors
    /// As [`Connection::request`].
    pub async fn send(&self, to: Target, body: &str) -> Result<SendResponse> {
        self.call(SendRequest {
            to,
            client_msg_id: self.new_client_msg_id(),
            body: body.to_owned(),
        })
        .await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close("connection dropped".to_owned());
        // Aborting both tasks drops both socket halves, which closes the
        // socket; nothing else holds them.
        self.reader.abort();
        self.writer.abort();
    }
}

fn duration_to_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
