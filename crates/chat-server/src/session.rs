//! One client connection: read frames, act on requests, write responses and
//! pushes.
//!
//! A session is a single task over a [`Transport`] (plain TCP, TLS or
//! WebSocket: the session never knows which). Its read buffer and write
//! buffer live in the struct, so every await in the main `select!` is
//! cancel-safe: a read that loses the race to a push or to shutdown loses no
//! bytes. Requests are
//! handled in the order they arrive (so a client's messages to one
//! conversation keep their order), and everything ready to go out (responses
//! and queued pushes) is written with one `write_all`.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use chat_proto::frame;
use chat_proto::{
    ErrorBody, Frame, FrameError, LoginRequest, LoginResponse, LogoutResponse, MessageType,
    PingResponse, PresencePush, Push, Request, Response, SessionEndReason, SessionEndedPush,
    Status, TypingResponse, UserId,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout};
use tracing::Instrument;

use crate::context::{now_ms, Context, Identity};
use crate::error::{Result, ServiceError};
use crate::hub::{Ending, SessionDetails, SessionHandle};
use crate::limits::{Refill, TokenBucket};
use crate::service::{account, chat, conversations, friends, groups};
use crate::telemetry::{self, LoggedInSession};
use crate::transport::{close_code, ReadError, Transport, WebSocketError};

/// Flush the write buffer mid-batch once it holds this much.
const FLUSH_THRESHOLD: usize = 256 * 1024;
/// Offline messages are read from the store in pages of this many.
const OFFLINE_PAGE: u32 = 500;

/// Why a session ended, for the log.
enum End {
    ClientClosed,
    Framing(FrameError),
    WebSocket(WebSocketError),
    Io(std::io::Error),
    WriteTimeout,
    Idle,
    SlowConsumer,
    Draining,
    Rebalanced,
    ByOperator,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientClosed => f.write_str("client closed the connection"),
            End::Framing(error) => write!(f, "framing error: {error}"),
            End::WebSocket(error) => write!(f, "websocket: {error}"),
            End::Io(error) => write!(f, "i/o error: {error}"),
            End::WriteTimeout => f.write_str("write timed out"),
            End::Idle => f.write_str("idle timeout"),
            End::SlowConsumer => f.write_str("slow consumer"),
            End::Draining => f.write_str("server draining"),
            End::Rebalanced => f.write_str("asked to reconnect to a less busy node"),
            End::ByOperator => f.write_str("ended by an operator"),
        }
    }
}

impl End {
    /// A short fixed label for metrics.
    fn label(&self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::Framing(_) | End::WebSocket(_) => "protocol_error",
            End::Io(_) => "io_error",
            End::WriteTimeout => "write_timeout",
            End::Idle => "idle",
            End::SlowConsumer => "slow_consumer",
            End::Draining => "draining",
            End::Rebalanced => "rebalanced",
            End::ByOperator => "ended_by_operator",
        }
    }

    /// The WebSocket close code that says why (other transports just close).
    fn close_code(&self) -> u16 {
        match self {
            End::Framing(_) => close_code::PROTOCOL_ERROR,
            End::WebSocket(WebSocketError::Text) => close_code::UNSUPPORTED_DATA,
            End::WebSocket(WebSocketError::NotOneFrame) => close_code::PROTOCOL_ERROR,
            End::SlowConsumer => close_code::POLICY_VIOLATION,
            End::Draining | End::Rebalanced => close_code::GOING_AWAY,
            End::ClientClosed | End::Io(_) | End::WriteTimeout | End::Idle | End::ByOperator => {
                close_code::NORMAL
            }
        }
    }
}

/// A logged-in session's hub entry and identity.
struct LoggedIn {
    identity: Identity,
    handle: Arc<SessionHandle>,
    /// Drops `typing` requests that repeat within a second.
    typing: conversations::TypingGate,
    /// Counts the session in the logged-in gauge while it lives.
    _counted: LoggedInSession,
}

/// The state of one connection.
pub struct Session {
    ctx: Arc<Context>,
    transport: Transport,
    peer: SocketAddr,
    read_buf: BytesMut,
    write_buf: BytesMut,
    bucket: TokenBucket,
    login: Option<LoggedIn>,
    shutdown: watch::Receiver<bool>,
    idle_deadline: tokio::time::Instant,
    /// Sends queued for commit, oldest first, answered in this order.
    in_flight: VecDeque<InFlight>,
}

/// A queued send: its request's type and id, when it was read, and its
/// answer to come.
type InFlight = (
    u16,
    u32,
    Instant,
    Pin<Box<dyn Future<Output = Result<Response>> + Send>>,
);

/// Sends one connection may have queued for commit at once.
const MAX_IN_FLIGHT: usize = 64;

impl Session {
    /// A session over an accepted connection. `peer` is the client's
    /// address (from the PROXY header when behind a proxy).
    pub fn new(
        ctx: Arc<Context>,
        transport: Transport,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let bucket = TokenBucket::new(refill(&ctx));
        let idle_deadline = tokio::time::Instant::now() + ctx.config.idle_timeout();
        Self {
            ctx,
            transport,
            peer,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            bucket,
            login: None,
            shutdown,
            idle_deadline,
            in_flight: VecDeque::new(),
        }
    }

    /// Starts with bytes already read from the connection (what followed a
    /// PROXY protocol header).
    #[must_use]
    pub fn with_buffered(mut self, bytes: BytesMut) -> Self {
        self.read_buf = bytes;
        self
    }

    /// Serves the connection until it ends, then withdraws the session from
    /// the hub and tells friends if the user went offline.
    /// Every log line of the session carries its span: peer address,
    /// transport and, once logged in, the user id.
    ///
    /// The session lives on the heap and the future holds a pointer to it:
    /// an `async fn` keeps its by-value arguments for as long as it runs,
    /// so passing the session by value down two calls would keep three
    /// copies of it in every connection's task.
    pub fn run(self) -> impl Future<Output = ()> + Send {
        Box::new(self).run_boxed()
    }

    /// [`Session::run`] for a session already on the heap.
    pub fn run_boxed(self: Box<Self>) -> impl Future<Output = ()> + Send {
        let span = tracing::info_span!(
            "session",
            peer = %self.peer,
            transport = %self.transport.kind(),
            user = tracing::field::Empty,
        );
        self.run_in_span().instrument(span)
    }

    async fn run_in_span(mut self: Box<Self>) {
        let end = self.serve().await;
        tracing::info!(reason = %end, "session ended");
        telemetry::session_ended(end.label());
        let _ = timeout(
            std::time::Duration::from_secs(1),
            self.transport.close(end.close_code(), &end.to_string()),
        )
        .await;
        Box::pin(self.log_out()).await;
    }

    async fn serve(&mut self) -> End {
        // Bytes that came in with a PROXY protocol header are handled first.
        if !self.read_buf.is_empty() {
            if let Err(end) = Box::pin(self.handle_buffered()).await {
                return end;
            }
        }
        let max_payload = self.ctx.config.max_frame_len;
        // One idle timer for the whole session, moved only when it fires
        // early: every frame pushes `idle_deadline` on, and re-arming a
        // timer per frame would cost a timer-wheel update per message.
        let idle = sleep_until(self.idle_deadline);
        tokio::pin!(idle);
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            let handle = self.login.as_ref().map(|login| login.handle.clone());
            // A logged-in session hears of a shutdown through its hub handle
            // (the server wakes every handle once the signal is set), and
            // one that logged in after that wake-up sees the signal here.
            if handle.is_some() && *self.shutdown.borrow() {
                return Box::pin(self.drain(handle.as_deref())).await;
            }
            tokio::select! {
                biased;
                // One waiter: on the hub handle once logged in, else on the
                // shutdown signal (every idle session's task keeps room for
                // its waiter, so not for two).
                woken = wake(handle.as_deref(), &mut self.shutdown) => {
                    if woken == Woken::Shutdown || *self.shutdown.borrow() {
                        return Box::pin(self.drain(handle.as_deref())).await;
                    }
                    // Woken by the hub, so logged in.
                    let Some(handle) = handle else { continue };
                    match handle.take() {
                        Ok(frames) => {
                            // Drained: any login backlog is behind us.
                            handle.set_catching_up(false);
                            for frame in frames {
                                self.write_buf.extend_from_slice(&frame);
                            }
                        }
                        Err(Ending::SlowConsumer) => {
                            Box::pin(self.end_with(SessionEndReason::SlowConsumer, "you read too slowly; reconnect and sync")).await;
                            return End::SlowConsumer;
                        }
                        Err(Ending::Rebalance) => {
                            // Like a drain: answer what is queued, flush, go.
                            Box::pin(self.drain_in_flight()).await;
                            for frame in handle.take_queued() {
                                self.write_buf.extend_from_slice(&frame);
                            }
                            Box::pin(self.end_with(SessionEndReason::Draining, "this node is busier than the others; reconnect")).await;
                            return End::Rebalanced;
                        }
                        Err(Ending::ByOperator(message)) => {
                            // `logged_out`: the login is over, and a client
                            // must not reconnect with its token on its own.
                            Box::pin(self.end_with(SessionEndReason::LoggedOut, &message)).await;
                            return End::ByOperator;
                        }
                    }
                }
                // The answer is written where it is ready, so the select's
                // output (which every idle session's task keeps room for)
                // does not hold a whole response.
                () = std::future::poll_fn(|cx| {
                    let Some((_, _, _, answer)) = self.in_flight.front_mut() else {
                        return std::task::Poll::Pending;
                    };
                    let result = std::task::ready!(answer.as_mut().poll(cx));
                    if let Some((message_type, request_id, started, _)) = self.in_flight.pop_front() {
                        write_answer(&mut self.write_buf, message_type, request_id, started, result);
                    }
                    std::task::Poll::Ready(())
                }), if !self.in_flight.is_empty() => {}
                read = std::future::poll_fn(|cx| {
                    self.transport.poll_read_into(cx, &mut self.read_buf, max_payload)
                }) => {
                    match read {
                        Ok(0) => return End::ClientClosed,
                        Ok(_) => {}
                        Err(error) => return read_error(error),
                    }
                    if let Err(end) = Box::pin(self.handle_buffered()).await {
                        return end;
                    }
                }
                () = &mut idle => {
                    if tokio::time::Instant::now() < self.idle_deadline {
                        // Traffic came since the timer was set.
                        idle.as_mut().reset(self.idle_deadline);
                        continue;
                    }
                    Box::pin(self.end_with(SessionEndReason::Idle, "no traffic within the idle timeout")).await;
                    return End::Idle;
                }
            }
        }
    }

    /// Ends the session for a shutdown: answers the sends already queued
    /// (they commit) and flushes what was queued for it, then says goodbye.
    async fn drain(&mut self, handle: Option<&SessionHandle>) -> End {
        self.drain_in_flight().await;
        if let Some(handle) = handle {
            if let Ok(frames) = handle.take() {
                for frame in frames {
                    self.write_buf.extend_from_slice(&frame);
                }
            }
        }
        self.end_with(
            SessionEndReason::Draining,
            "the server is shutting down; reconnect",
        )
        .await;
        End::Draining
    }

    /// Handles every whole frame in the read buffer.
    async fn handle_buffered(&mut self) -> Result<(), End> {
        loop {
            match frame::decode(&mut self.read_buf, self.ctx.config.max_frame_len) {
                Ok(Some(frame)) => {
                    // Only whole frames count as traffic: a client trickling
                    // a byte at a time cannot hold a connection open forever.
                    self.idle_deadline =
                        tokio::time::Instant::now() + self.ctx.config.idle_timeout();
                    // Boxed: the handlers' futures are large, and an idle
                    // session's task should not carry their space around.
                    Box::pin(self.handle_frame(frame)).await;
                    if self.write_buf.len() >= FLUSH_THRESHOLD {
                        self.flush().await?;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    // The stream is out of sync: answer once, then close.
                    let message_type = if self.read_buf.len() >= 6 {
                        u16::from_be_bytes([self.read_buf[4], self.read_buf[5]])
                    } else {
                        0
                    };
                    ErrorBody {
                        error: error.status(),
                        message: error.to_string(),
                    }
                    .encode(
                        message_type,
                        error.request_id(),
                        &mut self.write_buf,
                    );
                    let _ = self.flush().await;
                    return Err(End::Framing(error));
                }
            }
        }
        // An idle connection keeps no read buffer: release it when empty.
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        Ok(())
    }

    /// Writes out everything buffered.
    async fn flush(&mut self) -> Result<(), End> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let write = self.transport.write_frames(&mut self.write_buf);
        match timeout(self.ctx.config.write_timeout(), write).await {
            Ok(Ok(())) => {
                // Release the buffer so idle sessions hold no memory for it.
                self.write_buf = BytesMut::new();
                Ok(())
            }
            Ok(Err(error)) => Err(End::Io(error)),
            Err(_) => Err(End::WriteTimeout),
        }
    }

    /// Sends a final push and flushes it (best effort: the client may be the
    /// reason the session is ending).
    async fn end_with(&mut self, reason: SessionEndReason, message: &str) {
        let push = Push::PushSessionEnded(SessionEndedPush {
            reason,
            message: message.to_owned(),
        });
        self.write_buf
            .extend_from_slice(&Context::encode_push(&push));
        let _ = self.flush().await;
    }

    /// Handles one well-framed frame, appending exactly one response.
    async fn handle_frame(&mut self, frame: Frame) {
        let header = frame.header;
        let started = Instant::now();
        // A logged-in client's sends are pipelined: each is queued for
        // commit in arrival order, and answered, in the same order, when it
        // has committed; meanwhile the next frames are read.
        if header.message_type == MessageType::Send.code() && self.login.is_some() {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                self.answer_oldest().await;
            }
            let answer = self.queue_send(&frame).await;
            self.in_flight
                .push_back((header.message_type, header.request_id, started, answer));
            return;
        }
        // Anything else waits for the sends before it (a history request
        // must see them), so answers stay in request order.
        self.drain_in_flight().await;
        let result = self.dispatch(&frame).await;
        let unacked = match &result {
            Ok(Response::Login(login)) => Some(login.unacked),
            _ => None,
        };
        write_answer(
            &mut self.write_buf,
            header.message_type,
            header.request_id,
            started,
            result,
        );
        if let Some(unacked) = unacked {
            self.after_login(unacked).await;
        }
    }

    /// Waits for the oldest queued send and writes its answer.
    async fn answer_oldest(&mut self) {
        if let Some((message_type, request_id, started, answer)) = self.in_flight.pop_front() {
            let result = answer.await;
            write_answer(
                &mut self.write_buf,
                message_type,
                request_id,
                started,
                result,
            );
        }
    }

    /// Waits for every queued send and writes their answers.
    async fn drain_in_flight(&mut self) {
        while !self.in_flight.is_empty() {
            self.answer_oldest().await;
        }
    }

    /// Checks a send and queues it for commit; the answer comes later.
    async fn queue_send(
        &mut self,
        frame: &Frame,
    ) -> Pin<Box<dyn Future<Output = Result<Response>> + Send>> {
        let request = match self.check_request(frame) {
            Ok(request) => request,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        let (Request::Send(request), Some(login)) = (request, &self.login) else {
            // The type code said send and the session is logged in.
            return Box::pin(std::future::ready(Err(ServiceError::internal())));
        };
        match chat::send_queued(&self.ctx, &login.identity, request).await {
            Ok(pending) => Box::pin(async move { pending.await.map(Response::Send) }),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    /// The checks every request passes before it is acted on, and its
    /// decoding.
    fn check_request(&mut self, frame: &Frame) -> Result<Request> {
        let header = frame.header;
        if !header.flags.is_request() {
            return Err(ServiceError::bad_request(
                "clients send requests only (flags must be 0)",
            ));
        }
        if header.request_id == 0 {
            return Err(ServiceError::bad_request("request id must not be 0"));
        }
        if header.status != 0 {
            return Err(ServiceError::bad_request("status must be 0 in a request"));
        }
        if !self.bucket.try_take(refill(&self.ctx), Instant::now()) {
            return Err(ServiceError::new(
                Status::RateLimited,
                "too many requests on this connection; slow down",
            ));
        }
        Ok(Request::from_payload(header.message_type, &frame.payload)?)
    }

    async fn dispatch(&mut self, frame: &Frame) -> Result<Response> {
        let request = self.check_request(frame)?;
        let ctx = self.ctx.clone();
        let ctx = &*ctx;
        // One match, each request type once: the three allowed before login,
        // then every other on the logged-in identity (`me` answers
        // `unauthorized` before login).
        match request {
            Request::Ping(_) => Ok(Response::Ping(PingResponse {
                server_ts_ms: now_ms(),
            })),
            Request::Register(r) => account::register(ctx, r, self.peer.ip())
                .await
                .map(Response::Register),
            Request::Login(r) => self.login(r).await.map(Response::Login),
            Request::Logout(_) => {
                account::revoke(ctx, self.me()?).await?;
                self.log_out().await;
                Ok(Response::Logout(LogoutResponse {}))
            }
            Request::Typing(r) => {
                let Some(login) = &mut self.login else {
                    return Err(not_logged_in());
                };
                if !login.typing.admit(r.conversation_id, Instant::now()) {
                    return Ok(Response::Typing(TypingResponse {}));
                }
                conversations::typing(ctx, self.me()?, r)
                    .await
                    .map(Response::Typing)
            }
            Request::SessionList(_) => account::sessions(ctx, self.me()?)
                .await
                .map(Response::SessionList),
            Request::SessionRevoke(r) => account::revoke_session(ctx, self.me()?, r)
                .await
                .map(Response::SessionRevoke),
            Request::FriendAdd(r) => friends::add(ctx, self.me()?, r)
                .await
                .map(Response::FriendAdd),
            Request::FriendRespond(r) => friends::respond(ctx, self.me()?, r)
                .await
                .map(Response::FriendRespond),
            Request::FriendRemove(r) => friends::remove(ctx, self.me()?, r)
                .await
                .map(Response::FriendRemove),
            Request::FriendList(r) => friends::list(ctx, self.me()?, r)
                .await
                .map(Response::FriendList),
            Request::FriendUpdate(r) => friends::update(ctx, self.me()?, r)
                .await
                .map(Response::FriendUpdate),
            Request::GroupCreate(r) => groups::create(ctx, self.me()?, r)
                .await
                .map(Response::GroupCreate),
            Request::GroupJoin(r) => groups::join(ctx, self.me()?, r)
                .await
                .map(Response::GroupJoin),
            Request::GroupLeave(r) => groups::leave(ctx, self.me()?, r)
                .await
                .map(Response::GroupLeave),
            Request::GroupDissolve(r) => groups::dissolve(ctx, self.me()?, r)
                .await
                .map(Response::GroupDissolve),
            Request::GroupKick(r) => groups::kick(ctx, self.me()?, r)
                .await
                .map(Response::GroupKick),
            Request::GroupSetRole(r) => groups::set_role(ctx, self.me()?, r)
                .await
                .map(Response::GroupSetRole),
            Request::GroupInfo(r) => groups::info(ctx, self.me()?, r)
                .await
                .map(Response::GroupInfo),
            Request::GroupMembers(r) => groups::members(ctx, self.me()?, r)
                .await
                .map(Response::GroupMembers),
            Request::GroupList(r) => groups::list(ctx, self.me()?, r)
                .await
                .map(Response::GroupList),
            Request::GroupSetPolicy(r) => groups::set_policy(ctx, self.me()?, r)
                .await
                .map(Response::GroupSetPolicy),
            Request::GroupInvite(r) => groups::invite(ctx, self.me()?, r)
                .await
                .map(Response::GroupInvite),
            Request::GroupRespondJoin(r) => groups::respond_join(ctx, self.me()?, r)
                .await
                .map(Response::GroupRespondJoin),
            Request::GroupUnban(r) => groups::unban(ctx, self.me()?, r)
                .await
                .map(Response::GroupUnban),
            Request::Send(r) => chat::send(ctx, self.me()?, r).await.map(Response::Send),
            Request::Ack(r) => chat::ack(ctx, self.me()?, r).await.map(Response::Ack),
            Request::History(r) => chat::history(ctx, self.me()?, r)
                .await
                .map(Response::History),
            Request::Sync(r) => chat::sync(ctx, self.me()?, r).await.map(Response::Sync),
            Request::ConversationList(r) => conversations::list(ctx, self.me()?, r)
                .await
                .map(Response::ConversationList),
            Request::Read(r) => conversations::read(ctx, self.me()?, r)
                .await
                .map(Response::Read),
            Request::ReadPositions(r) => conversations::read_positions(ctx, self.me()?, r)
                .await
                .map(Response::ReadPositions),
            Request::Recall(r) => conversations::recall(ctx, self.me()?, r)
                .await
                .map(Response::Recall),
        }
    }

    /// Who this session acts as, or `unauthorized` before login.
    fn me(&self) -> Result<&Identity> {
        self.login
            .as_ref()
            .map(|login| &login.identity)
            .ok_or_else(not_logged_in)
    }

    /// Authenticates, then joins the hub so live pushes start to queue.
    async fn login(&mut self, request: LoginRequest) -> Result<LoginResponse> {
        if self.login.is_some() {
            return Err(ServiceError::conflict("already logged in; log out first"));
        }
        let ctx = self.ctx.clone();
        let who = account::authenticate(&ctx, request, self.peer.ip()).await?;
        let session = ctx.hub.next_session_id();
        // Shared with the hub's handle: one copy per session.
        let token_hash: Arc<str> = crate::auth::token_hash(&who.token).into();
        let name: Arc<str> = who.user.name.as_str().into();
        let handle = Arc::new(
            SessionHandle::new(session, who.user.id, ctx.config.outbox_len)
                .with_details(SessionDetails {
                    name: name.clone(),
                    transport: self.transport.kind().as_str(),
                    peer: self.peer,
                    logged_in_at_ms: now_ms(),
                })
                .with_token_hash(token_hash.clone()),
        );
        // Register before reading the backlog: a message committed in
        // between is then both pushed live and in the backlog (the client
        // de-duplicates by sequence number) rather than in neither.
        let local_sessions = ctx.hub.register(handle.clone());
        self.login = Some(LoggedIn {
            identity: Identity {
                user: who.user.id,
                name,
                session,
                token_hash,
            },
            handle,
            typing: conversations::TypingGate::default(),
            _counted: LoggedInSession::start(),
        });
        let response = match account::login_response(&ctx, &who).await {
            Ok(response) => response,
            Err(error) => {
                // A failed request changes nothing: leave the hub again.
                if let Some(login) = self.login.take() {
                    ctx.hub
                        .unregister(login.identity.user, login.identity.session);
                }
                return Err(error);
            }
        };
        if ctx.bus.session_opened(who.user.id, local_sessions).await {
            let friends: Vec<UserId> = response.friends.iter().map(|friend| friend.id).collect();
            ctx.push(
                &friends,
                &Push::PushPresence(PresencePush {
                    user_id: who.user.id,
                    online: true,
                }),
                None,
            );
        }
        tracing::Span::current().record("user", who.user.id.0);
        tracing::info!(user = %who.user.id, "logged in");
        Ok(response)
    }

    /// Pushes every message the user has not acknowledged, after the login
    /// response and before any live push queued meanwhile.
    async fn after_login(&mut self, unacked: u64) {
        let Some(login) = &self.login else { return };
        let user = login.identity.user;
        if unacked > 0 {
            // Live pushes queue while the backlog is written; the limit
            // drops back once the outbox has been drained.
            login.handle.set_catching_up(true);
        }
        let mut start = None;
        let mut remaining = unacked;
        while remaining > 0 {
            let page = match self.ctx.store.unacked(user, start, OFFLINE_PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    // The client still gets them through sync; say so in the log.
                    crate::error::log_store_failure(
                        "could not read offline messages (the client gets them by sync)",
                        &error,
                    );
                    return;
                }
            };
            let Some(last) = page.last() else { break };
            start = Some(chat_proto::Cursor {
                conversation_id: last.conversation_id,
                seq: last.seq,
            });
            remaining = remaining.saturating_sub(page.len() as u64);
            let full = page.len() == OFFLINE_PAGE as usize;
            for message in page {
                let _ = Push::PushMessage(message).encode(&mut self.write_buf);
            }
            if self.write_buf.len() >= FLUSH_THRESHOLD && self.flush().await.is_err() {
                return;
            }
            if !full {
                break;
            }
        }
    }

    /// Leaves the hub and tells friends if this was the user's last session.
    async fn log_out(&mut self) {
        let Some(login) = self.login.take() else {
            return;
        };
        let user = login.identity.user;
        let remaining = self.ctx.hub.unregister(user, login.identity.session);
        if !self.ctx.bus.session_closed(user, remaining).await {
            return;
        }
        let friends = match self.ctx.store.friends_of(user).await {
            Ok(friends) => friends,
            Err(error) => {
                crate::error::log_store_failure("could not announce a user offline", &error);
                return;
            }
        };
        // A reconnect may have logged the user in again meanwhile (and told
        // the friends it is online); then "offline" would be a lie.
        if self.ctx.hub.session_count(user) > 0 {
            return;
        }
        let ids: Vec<UserId> = friends.iter().map(|friend| friend.id).collect();
        self.ctx.push(
            &ids,
            &Push::PushPresence(PresencePush {
                user_id: user,
                online: false,
            }),
            None,
        );
    }
}

/// How every connection's request bucket refills.
fn refill(ctx: &Context) -> Refill {
    Refill::new(ctx.config.rate_limit_per_sec, ctx.config.rate_limit_burst)
}

/// What woke a session's waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
    /// Its hub handle: frames queued, an ending, or the server's shutdown.
    Hub,
    /// The shutdown signal (a session not logged in).
    Shutdown,
}

/// Waits on the hub handle if there is one, else on the shutdown signal.
async fn wake(handle: Option<&SessionHandle>, shutdown: &mut watch::Receiver<bool>) -> Woken {
    match handle {
        Some(handle) => {
            handle.wait().await;
            Woken::Hub
        }
        None => {
            // A dropped sender is a shutdown too.
            let _ = shutdown.changed().await;
            Woken::Shutdown
        }
    }
}

/// Appends the answer to a request to a session's write buffer.
fn write_answer(
    write_buf: &mut BytesMut,
    message_type: u16,
    request_id: u32,
    started: Instant,
    result: Result<Response>,
) {
    let status = result
        .as_ref()
        .map_or_else(|error| error.status, |_| Status::Ok);
    telemetry::request(message_type, status, started.elapsed());
    match result {
        Ok(response) => {
            crate::error::note_success();
            // Responses are plain data and always encode.
            let _ = response.encode(request_id, write_buf);
        }
        Err(error) => {
            // Store failures are logged (throttled) where they are
            // turned into `unavailable`; an internal error is a bug.
            if error.status == Status::Internal {
                tracing::warn!(%error, "request failed");
            }
            error.body().encode(message_type, request_id, write_buf);
        }
    }
}

/// The end a failed read means.
fn read_error(error: ReadError) -> End {
    match error {
        ReadError::Io(error) => End::Io(error),
        ReadError::WebSocket(error) => End::WebSocket(error),
    }
}

/// Answers a connection refused at accept time with one error frame.
pub async fn refuse(mut stream: TcpStream, status: Status, message: &str) {
    let mut buf = BytesMut::new();
    ErrorBody {
        error: status,
        message: message.to_owned(),
    }
    .encode(0, 0, &mut buf);
    let _ = timeout(
        std::time::Duration::from_secs(1),
        stream.write_all(buf.chunk()),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// The answer to a request that needs a login, before one.
fn not_logged_in() -> ServiceError {
    ServiceError::unauthorized("log in first")
}
