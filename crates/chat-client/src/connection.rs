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
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chat_proto::{
    Call, ErrorBody, Frame, FrameCodec, LoginRequest, LoginResponse, MessageType, Push, Request,
    Response, SendRequest, SendResponse, ServerMessage, Target, UserId, UserRef,
    CLIENT_MAX_PAYLOAD,
};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};

use crate::client_msg_ids::ClientMsgIds;
use crate::error::{ClientError, Result};
use crate::transport::{self, ByteStream, ClientTls, ServerAddress, TransportStream};

/// How many encoded frames may wait for the writer before callers wait too.
const OUTBOX_CAPACITY: usize = 1024;
/// On a byte stream the writer writes out its buffer once it holds this many
/// bytes, so one huge burst does not build one huge buffer.
const MAX_WRITE_BATCH: usize = 256 * 1024;

/// What a reader hands a waiting caller: the server's answer (success or
/// error status), or a failure of the connection or of the frame.
type ReplyResult = Result<std::result::Result<Response, ErrorBody>>;

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

/// Turns the usual ways of naming a user into a [`UserRef`]: a `&str` or
/// `String` is a name, a [`UserId`] is an id.
pub trait IntoUserRef {
    /// The reference.
    fn into_user_ref(self) -> UserRef;
}

impl IntoUserRef for &str {
    fn into_user_ref(self) -> UserRef {
        UserRef::Name(self.to_owned())
    }
}

impl IntoUserRef for String {
    fn into_user_ref(self) -> UserRef {
        UserRef::Name(self)
    }
}

impl IntoUserRef for &String {
    fn into_user_ref(self) -> UserRef {
        UserRef::Name(self.clone())
    }
}

impl IntoUserRef for UserId {
    fn into_user_ref(self) -> UserRef {
        UserRef::Id(self)
    }
}

impl IntoUserRef for UserRef {
    fn into_user_ref(self) -> UserRef {
        self
    }
}

impl IntoUserRef for &UserRef {
    fn into_user_ref(self) -> UserRef {
        self.clone()
    }
}

/// State shared by the connection handle and its two tasks.
struct Shared {
    /// A `std` mutex is enough: every critical section is a map insert or
    /// remove and never awaits.
    state: Mutex<State>,
    /// Flips to `true` once, when the connection closes.
    closed: watch::Sender<bool>,
}

struct State {
    /// Callers waiting for a reply, by request id.
    pending: HashMap<u32, oneshot::Sender<ReplyResult>>,
    /// Why the connection closed, once it has.
    closed_reason: Option<String>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts and removes), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the connection closed (keeping the first reason) and fails
    /// every waiting caller.
    fn close(&self, reason: String) {
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
    fn complete(&self, request_id: u32, reply: ReplyResult) -> Option<ReplyResult> {
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
/// frame sent with [`Connection::send_raw`] whose id was not registered.
#[derive(Debug, Clone, PartialEq)]
pub struct UnmatchedReply {
    /// The request id in the frame's header.
    pub request_id: u32,
    /// The response or error the frame carried.
    pub result: std::result::Result<Response, ErrorBody>,
}

/// A registered wait for the reply to one request id; see
/// [`Connection::expect_reply`]. Dropping it withdraws the registration.
pub struct PendingReply {
    request_id: u32,
    receiver: oneshot::Receiver<ReplyResult>,
    shared: Arc<Shared>,
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

/// The frames of a byte stream (TCP or TLS), cut by the frame codec. An
/// error is the reason the connection ends.
fn byte_frames<R>(
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
fn byte_sink<W>(writer: W) -> FramedWrite<W, BytesCodec>
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
struct WebSocketFrames<S> {
    messages: S,
    max_payload: usize,
    ended: bool,
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
struct WebSocketSink<S> {
    messages: S,
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

async fn read_loop<R>(
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

async fn write_loop<W>(mut outbox: mpsc::Receiver<Bytes>, mut sink: W, shared: Arc<Shared>)
where
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

#[cfg(test)]
mod tests {
    //! These tests put a scripted peer on the other end of a real socket, so
    //! they can reorder replies, go silent or hang up at exact moments that a
    //! real server never would on demand.

    use chat_proto::{
        ConversationId, Frame, FriendListRequest, GroupListRequest, HistoryRequest, PingRequest,
        PingResponse, PresencePush, Status,
    };
    use tokio::net::TcpListener;
    use tokio_util::codec::Framed;

    use super::*;

    async fn peer() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        (listener, address)
    }

    async fn accept(listener: &TcpListener) -> Framed<TcpStream, FrameCodec> {
        let (stream, _) = listener.accept().await.unwrap();
        Framed::new(stream, FrameCodec::default())
    }

    async fn reply(server: &mut Framed<TcpStream, FrameCodec>, response: &Response, id: u32) {
        let mut buf = BytesMut::new();
        response.encode(id, &mut buf).unwrap();
        futures::SinkExt::send(server, buf.freeze()).await.unwrap();
    }

    fn pong(ts: i64) -> Response {
        Response::Ping(PingResponse { server_ts_ms: ts })
    }

    #[tokio::test]
    async fn replies_in_any_order_reach_their_callers() {
        let (listener, address) = peer().await;
        let server = tokio::spawn(async move {
            let mut server = accept(&listener).await;
            let mut ids = Vec::new();
            for _ in 0..3 {
                let frame: Frame = server.next().await.unwrap().unwrap();
                assert_ne!(frame.header.request_id, 0);
                ids.push(frame.header.request_id);
            }
            // Answer in reverse, each carrying its own id as the timestamp.
            for &id in ids.iter().rev() {
                reply(&mut server, &pong(i64::from(id)), id).await;
            }
            server
        });
        let connection = Connection::connect(address).await.unwrap();
        let (a, b, c) = tokio::join!(
            connection.call(PingRequest {}),
            connection.call(PingRequest {}),
            connection.call(PingRequest {})
        );
        let mut stamps = vec![
            a.unwrap().server_ts_ms,
            b.unwrap().server_ts_ms,
            c.unwrap().server_ts_ms,
        ];
        stamps.sort_unstable();
        stamps.dedup();
        assert_eq!(stamps.len(), 3, "every caller got its own reply");
        drop(server.await.unwrap());
    }

    #[tokio::test]
    async fn an_error_status_becomes_a_server_error() {
        let (listener, address) = peer().await;
        tokio::spawn(async move {
            let mut server = accept(&listener).await;
            let frame: Frame = server.next().await.unwrap().unwrap();
            let mut buf = BytesMut::new();
            ErrorBody {
                error: Status::Unauthorized,
                message: "log in first".to_owned(),
            }
            .encode(frame.header.message_type, frame.header.request_id, &mut buf);
            futures::SinkExt::send(&mut server, buf.freeze())
                .await
                .unwrap();
            server.next().await
        });
        let connection = Connection::connect(address).await.unwrap();
        let error = connection.call(FriendListRequest {}).await.unwrap_err();
        assert_eq!(error.status(), Some(Status::Unauthorized));
        assert!(error.is_server_error());
    }

    #[tokio::test]
    async fn a_closed_connection_fails_every_waiting_request() {
        let (listener, address) = peer().await;
        tokio::spawn(async move {
            let mut server = accept(&listener).await;
            // Read both requests, then hang up without answering.
            let _ = server.next().await;
            let _ = server.next().await;
        });
        let connection = Connection::connect(address).await.unwrap();
        connection.set_request_timeout(Duration::from_secs(30));
        let (a, b) = tokio::join!(
            connection.call(PingRequest {}),
            connection.call(GroupListRequest {})
        );
        assert!(matches!(a, Err(ClientError::Closed(_))), "{a:?}");
        assert!(matches!(b, Err(ClientError::Closed(_))), "{b:?}");
        connection.closed().await;
        assert!(connection.is_closed());
        let after = connection.call(PingRequest {}).await;
        assert!(matches!(after, Err(ClientError::Closed(_))), "{after:?}");
        assert_eq!(connection.next_push().await, None);
    }

    #[tokio::test]
    async fn a_silent_server_times_the_request_out() {
        let (listener, address) = peer().await;
        tokio::spawn(async move {
            let mut server = accept(&listener).await;
            while server.next().await.is_some() {}
        });
        let connection = Connection::connect(address).await.unwrap();
        connection.set_request_timeout(Duration::from_millis(50));
        let error = connection.call(PingRequest {}).await.unwrap_err();
        assert!(matches!(error, ClientError::Timeout(_)), "{error:?}");
        assert!(connection.shared.lock().pending.is_empty());
    }

    #[tokio::test]
    async fn pushes_queue_in_order_and_unmatched_replies_are_kept() {
        let (listener, address) = peer().await;
        tokio::spawn(async move {
            let mut server = accept(&listener).await;
            let mut buf = BytesMut::new();
            for user in 1..=3 {
                Push::PushPresence(PresencePush {
                    user_id: UserId(user),
                    online: true,
                })
                .encode(&mut buf)
                .unwrap();
            }
            ErrorBody {
                error: Status::ProtocolError,
                message: "bad magic".to_owned(),
            }
            .encode(0, 0, &mut buf);
            futures::SinkExt::send(&mut server, buf.freeze())
                .await
                .unwrap();
            server.next().await
        });
        let connection = Connection::connect(address).await.unwrap();
        for user in 1..=3 {
            let push = connection.next_push_timeout(Duration::from_secs(5)).await;
            assert_eq!(
                push,
                Some(Push::PushPresence(PresencePush {
                    user_id: UserId(user),
                    online: true
                }))
            );
        }
        let unmatched = connection
            .next_unmatched_reply(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(unmatched.request_id, 0);
        assert_eq!(unmatched.result.unwrap_err().error, Status::ProtocolError);
    }

    #[tokio::test]
    async fn a_reply_of_the_wrong_type_is_a_protocol_error() {
        let (listener, address) = peer().await;
        tokio::spawn(async move {
            let mut server = accept(&listener).await;
            let frame: Frame = server.next().await.unwrap().unwrap();
            reply(&mut server, &pong(1), frame.header.request_id).await;
            server.next().await
        });
        let connection = Connection::connect(address).await.unwrap();
        let error = connection.call(GroupListRequest {}).await.unwrap_err();
        assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    }

    #[tokio::test]
    async fn send_raw_reaches_the_server_verbatim_and_request_ids_are_distinct() {
        let (listener, address) = peer().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = vec![0u8; 5];
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut received)
                .await
                .unwrap();
            received
        });
        let connection = Connection::connect(address).await.unwrap();
        connection.send_raw(b"hello").await.unwrap();
        assert_eq!(server.await.unwrap(), b"hello");
        let ids: std::collections::HashSet<u32> = (0..1000)
            .map(|_| connection.allocate_request_id())
            .collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&0));
        let first = connection.new_client_msg_id();
        assert_ne!(first, connection.new_client_msg_id());
        assert!(first.len() <= 64);
    }

    #[tokio::test]
    async fn request_ids_skip_zero_when_the_counter_wraps() {
        let (listener, address) = peer().await;
        let _server = tokio::spawn(async move { listener.accept().await });
        let connection = Connection::connect(address).await.unwrap();
        connection
            .next_request_id
            .store(u32::MAX, Ordering::Relaxed);
        assert_eq!(connection.allocate_request_id(), u32::MAX);
        assert_eq!(connection.allocate_request_id(), 1);
    }

    #[tokio::test]
    async fn an_undecodable_reply_fails_only_its_request() {
        let (listener, address) = peer().await;
        tokio::spawn(async move {
            let mut server = accept(&listener).await;
            let first: Frame = server.next().await.unwrap().unwrap();
            let second: Frame = server.next().await.unwrap().unwrap();
            let mut buf = BytesMut::new();
            chat_proto::frame::encode_json(
                &mut buf,
                chat_proto::Flags::RESPONSE,
                first.header.message_type,
                Status::Ok,
                first.header.request_id,
                &serde_json::json!({"nonsense": true}),
            )
            .unwrap();
            Response::Ping(PingResponse { server_ts_ms: 7 })
                .encode(second.header.request_id, &mut buf)
                .unwrap();
            futures::SinkExt::send(&mut server, buf.freeze())
                .await
                .unwrap();
            server.next().await
        });
        let connection = Connection::connect(address).await.unwrap();
        let history = connection.call(HistoryRequest {
            conversation_id: ConversationId(1),
            before_seq: None,
            after_seq: None,
            limit: None,
        });
        let (first, second) = tokio::join!(history, async {
            // Make sure the history request is written first.
            tokio::task::yield_now().await;
            connection.call(PingRequest {}).await
        });
        assert!(matches!(first, Err(ClientError::Protocol(_))), "{first:?}");
        assert_eq!(second.unwrap().server_ts_ms, 7);
        assert!(!connection.is_closed());
    }
}
