//! The resilient client: a [`Connection`] that comes back.
//!
//! A [`Client`] owns a background task, the supervisor, which is the one
//! owner of the delivery state. It reads pushes, de-duplicates and orders
//! messages by (conversation, sequence number), fills gaps with `history`,
//! acknowledges what the application has taken, and when the connection is
//! lost it reconnects with exponential backoff and jitter (rotating through the
//! configured addresses), logs in again with the session token (or the
//! password when the token is refused), and syncs from its cursors.
//!
//! Requests that are safe to repeat (reads, `ack`, `friend_update`, and
//! `send`, which the server de-duplicates by `client_msg_id`) are retried on
//! the next connection when the connection drops under them; the others fail
//! with the connection error and the application decides.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_proto::{
    AckRequest, Call, ChatMessage, ConversationId, ConversationListRequest,
    ConversationListResponse, HistoryRequest, LoginResponse, LogoutRequest, LogoutResponse,
    PingRequest, Push, ReadRequest, ReadResponse, Request, Response, SendRequest, SendResponse,
    Seq, SessionEndReason, Status, SyncRequest, Target, UserRef, UserSummary,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::client_msg_ids::ClientMsgIds;
use crate::connection::{Connection, ConnectionOptions, IntoUserRef};
use crate::delivery::{DeliveryState, Verdict};
use crate::error::{ClientError, Result};
use crate::event::Event;
use crate::transport::ServerAddress;

/// The most messages asked for per `history` page while filling a gap (the
/// server's maximum).
const HISTORY_PAGE: u32 = 200;
/// The most `sync` rounds after one reconnect, so a server that always says
/// "more" cannot keep the client busy forever.
const MAX_SYNC_ROUNDS: usize = 1000;
/// The most attempts of one retried request on a connection that stays open
/// (timeouts) before the timeout is reported.
const MAX_TIMEOUT_RETRIES: u32 = 3;

/// Pauses before repeating an idempotent request answered `unavailable`.
const UNAVAILABLE_RETRIES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// How reconnecting backs off and when it gives up.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// The delay before the first attempt (before jitter).
    pub initial_backoff: Duration,
    /// The longest delay between attempts (before jitter).
    pub max_backoff: Duration,
    /// Give up after this many failed attempts in a row.
    pub max_attempts: u32,
    /// Give up once this much time has passed since the connection was lost.
    pub max_elapsed: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_attempts: 50,
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt number `attempt` (0-based), given a jitter
    /// value in `[0, 1)`: the exponential delay `initial * 2^attempt`, capped,
    /// of which the upper half is scaled by the jitter ("equal jitter"), so
    /// clients that lost the same server spread out but never retry at once.
    #[must_use]
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        let exponential = self.initial_backoff.saturating_mul(factor);
        let capped = exponential.min(self.max_backoff);
        let half = capped / 2;
        // NaN would make `mul_f64` panic; treat it as no jitter.
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        half + half.mul_f64(jitter)
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Server addresses in any form [`ServerAddress`] parses (`host:port`,
    /// `tls://host:port`, `ws://host:port/ws`, `wss://host:port/ws`);
    /// reconnects rotate through them, each over its own transport.
    pub addresses: Vec<String>,
    /// Settings of each connection.
    pub connection: ConnectionOptions,
    /// Backoff and limits of reconnecting.
    pub reconnect: ReconnectPolicy,
    /// How often acknowledgements of taken messages are sent (batched).
    pub ack_interval: Duration,
    /// How often to ping an otherwise idle connection so the server's idle
    /// timeout does not close it; `None` never pings.
    pub keepalive: Option<Duration>,
}

impl ClientOptions {
    /// Options for one server address, with defaults for the rest.
    pub fn new(address: impl Into<String>) -> Self {
        Self::with_addresses(vec![address.into()])
    }

    /// Options for several addresses of one cluster.
    #[must_use]
    pub fn with_addresses(addresses: Vec<String>) -> Self {
        Self {
            addresses,
            connection: ConnectionOptions::default(),
            reconnect: ReconnectPolicy::default(),
            ack_interval: Duration::from_millis(100),
            keepalive: Some(Duration::from_secs(15)),
        }
    }
}

/// How the client last logged in, to do it again after a reconnect.
#[derive(Debug, Clone)]
struct Credentials {
    /// With the password: the account as given. `None` for a token login.
    user: Option<UserRef>,
    password: Option<String>,
}

/// The session as far as the application and the supervisor both need it.
#[derive(Debug, Default)]
struct Session {
    credentials: Option<Credentials>,
    token: Option<String>,
    me: Option<UserSummary>,
    /// `client_msg_id`s of this client's sends not yet accounted for by the
    /// supervisor: a copy of one met in `sync` or `history` is not delivered.
    own_pending: HashSet<String>,
    /// The highest sequence number the application has taken per
    /// conversation, not yet acknowledged to the server.
    taken: std::collections::HashMap<ConversationId, Seq>,
    /// The user's read position and the newest seq known per conversation,
    /// kept current from the login, pushes and this client's reads.
    unread: std::collections::HashMap<ConversationId, ReadState>,
}

/// How far the user has read a conversation, and where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadState {
    read: Seq,
    last: Seq,
}

impl Default for ReadState {
    fn default() -> Self {
        ReadState {
            read: Seq::ZERO,
            last: Seq::ZERO,
        }
    }
}

impl Session {
    /// Keeps what a successful login returned.
    fn remember(&mut self, login: &LoginResponse) {
        self.token = Some(login.token.clone());
        self.me = Some(login.user.clone());
        self.reset_unread(login);
    }

    /// Starts the unread counts again from a login's.
    fn reset_unread(&mut self, login: &LoginResponse) {
        self.unread = login
            .unread
            .iter()
            .map(|count| {
                (
                    count.conversation_id,
                    ReadState {
                        read: count.read_seq,
                        last: count.last_seq,
                    },
                )
            })
            .collect();
    }

    /// A message at `seq` exists; the user's own messages count as read.
    /// A conversation the login did not list as unread was read up to its
    /// end, so one first met here starts read up to just before `seq`.
    fn saw_message(&mut self, conversation: ConversationId, seq: Seq, own: bool) {
        let before = Seq(seq.0.saturating_sub(1));
        let state = self.unread.entry(conversation).or_insert(ReadState {
            read: before,
            last: before,
        });
        state.last = state.last.max(seq);
        if own {
            state.read = state.read.max(seq);
        }
    }

    /// The user read up to `seq`.
    fn read_up_to(&mut self, conversation: ConversationId, seq: Seq) {
        let state = self.unread.entry(conversation).or_default();
        state.read = state.read.max(seq);
        state.last = state.last.max(seq);
    }
}

/// What the application sees of the connection.
#[derive(Clone)]
enum LinkState {
    /// Reconnecting; requests wait.
    Connecting,
    /// Usable (and logged in again if the session was).
    Ready(Arc<Connection>),
    /// Gave up; requests fail with this text.
    Failed(String),
}

struct Shared {
    /// A `std` mutex: every critical section is a few map operations and
    /// never awaits.
    session: Mutex<Session>,
}

impl Shared {
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps what a successful re-login returned.
    fn remember(&self, login: &LoginResponse) {
        self.session().remember(login);
    }
}

enum Command {
    /// A send of this client succeeded.
    OwnSent {
        conversation_id: ConversationId,
        seq: Seq,
        client_msg_id: String,
    },
    /// Acknowledge what the application has taken now, then answer.
    FlushAcks(oneshot::Sender<()>),
    /// Acknowledge, close the connection and stop.
    Close(oneshot::Sender<()>),
}

/// A connection to a chatd server (or cluster) that survives losing it;
/// see the [module docs](self).
pub struct Client {
    shared: Arc<Shared>,
    link: watch::Receiver<LinkState>,
    commands: mpsc::UnboundedSender<Command>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    client_msg_ids: ClientMsgIds,
    supervisor: JoinHandle<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("me", &self.me())
            .finish_non_exhaustive()
    }
}

/// Whether a request may be sent again after the connection dropped under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Repeating it has the same effect as doing it once.
    Idempotent,
    /// Repeating it might do it twice: report the failure instead.
    Once,
}

impl Client {
    /// Connects to the first reachable address (each is tried once, in
    /// order); reconnects later follow `options.reconnect`.
    ///
    /// # Errors
    /// [`ClientError::InvalidAddress`] when an address is in none of the
    /// accepted forms (checked before connecting, since reconnects could
    /// never use it); [`ClientError::Connect`] (the last address's error)
    /// when none is reachable, or when `options.addresses` is empty.
    pub async fn connect(options: ClientOptions) -> Result<Client> {
        let addresses = options
            .addresses
            .iter()
            .map(|address| ServerAddress::parse(address))
            .collect::<Result<Vec<_>>>()?;
        let mut last_error = None;
        let mut connected = None;
        for (index, address) in addresses.iter().enumerate() {
            match Connection::connect_to(address, options.connection.clone()).await {
                Ok(connection) => {
                    connected = Some((index, connection));
                    break;
                }
                Err(error) => last_error = Some(error),
            }
        }
        let Some((index, connection)) = connected else {
            return Err(last_error.unwrap_or_else(|| ClientError::Connect {
                address: String::new(),
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no server address given",
                ),
            }));
        };
        let connection = Arc::new(connection);
        let shared = Arc::new(Shared {
            session: Mutex::new(Session::default()),
        });
        let (link_tx, link) = watch::channel(LinkState::Ready(Arc::clone(&connection)));
        let (commands, command_rx) = mpsc::unbounded_channel();
        // Unbounded: an application that is slow to take events must not
        // stall the supervisor, which also answers the server (acks, pings).
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            shared: Arc::clone(&shared),
            options,
            addresses,
            next_address: index + 1,
            connection,
            link: link_tx,
            events: event_tx,
            commands: command_rx,
            delivery: DeliveryState::new(),
            acked: std::collections::HashMap::new(),
        };
        let supervisor = tokio::spawn(supervisor.run());
        Ok(Client {
            shared,
            link,
            commands,
            events: tokio::sync::Mutex::new(event_rx),
            client_msg_ids: ClientMsgIds::new(),
            supervisor,
        })
    }

    /// Connects to one address with default options.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_to(address: impl Into<String>) -> Result<Client> {
        Self::connect(ClientOptions::new(address)).await
    }

    /// The logged-in user, if any.
    #[must_use]
    pub fn me(&self) -> Option<UserSummary> {
        self.shared.session().me.clone()
    }

    /// The current session token, if logged in.
    #[must_use]
    pub fn token(&self) -> Option<String> {
        self.shared.session().token.clone()
    }

    /// The connection in use right now, if there is one. Use it for
    /// requests only: its pushes belong to the client.
    #[must_use]
    pub fn connection(&self) -> Option<Arc<Connection>> {
        match &*self.link.borrow() {
            LinkState::Ready(connection) => Some(Arc::clone(connection)),
            _ => None,
        }
    }

    /// Waits for the next event. A message counts as delivered (and is
    /// acknowledged to the server soon after) once it is returned here.
    /// Returns `None` after [`Event::GaveUp`] or [`Client::close`].
    pub async fn next_event(&self) -> Option<Event> {
        let event = self.events.lock().await.recv().await;
        if let Some(Event::Message(message)) = &event {
            self.mark_taken(message);
        }
        event
    }

    /// As [`Client::next_event`], but `None` also when nothing came within
    /// `timeout`.
    pub async fn next_event_timeout(&self, timeout: Duration) -> Option<Event> {
        tokio::time::timeout(timeout, self.next_event())
            .await
            .ok()
            .flatten()
    }

    fn mark_taken(&self, message: &ChatMessage) {
        let mut session = self.shared.session();
        let taken = session
            .taken
            .entry(message.conversation_id)
            .or_insert(Seq::ZERO);
        if message.seq > *taken {
            *taken = message.seq;
        }
    }

    /// Acknowledges everything taken so far now, rather than at the next
    /// batch.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the client has stopped.
    pub async fn flush_acks(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::FlushAcks(done))
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())
    }

    /// Acknowledges what was taken, closes the connection and stops the
    /// client.
    pub async fn close(self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Waits until a connection other than `previous` is ready.
    async fn ready_connection(
        &self,
        previous: Option<&Arc<Connection>>,
    ) -> Result<Arc<Connection>> {
        let mut link = self.link.clone();
        let state = link
            .wait_for(|state| match state {
                LinkState::Connecting => false,
                LinkState::Ready(connection) => {
                    previous.is_none_or(|previous| !Arc::ptr_eq(previous, connection))
                }
                LinkState::Failed(_) => true,
            })
            .await
            .map_err(|_| stopped())?;
        match &*state {
            LinkState::Ready(connection) => Ok(Arc::clone(connection)),
            LinkState::Failed(error) => Err(ClientError::ReconnectFailed {
                attempts: 0,
                last_error: error.clone(),
            }),
            LinkState::Connecting => Err(stopped()),
        }
    }

    /// Runs `call` on the current connection; with [`Retry::Idempotent`]
    /// runs it again on the next connection when this one is lost under it.
    async fn with_retry<T, F, Fut>(&self, retry: Retry, call: F) -> Result<T>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut connection = self.ready_connection(None).await?;
        let mut timeouts = 0;
        let mut unavailable = 0;
        loop {
            match call(Arc::clone(&connection)).await {
                // `unavailable` does not mean "not done": the store may have
                // committed before its connection broke. Repeating an
                // idempotent request (a send keeps its client_msg_id) is safe
                // and settles it; after a few tries the caller decides.
                Err(error)
                    if retry == Retry::Idempotent
                        && error.status() == Some(Status::Unavailable)
                        && unavailable < UNAVAILABLE_RETRIES.len() =>
                {
                    tokio::time::sleep(UNAVAILABLE_RETRIES[unavailable]).await;
                    unavailable += 1;
                }
                Err(error) if retry == Retry::Idempotent && error.is_connection_lost() => {
                    if !connection.is_closed() {
                        // A timeout on a connection that is still open: the
                        // server is slow, not gone. Try again a few times.
                        timeouts += 1;
                        if timeouts >= MAX_TIMEOUT_RETRIES {
                            return Err(error);
                        }
                        continue;
                    }
                    tracing::debug!(%error, "connection lost under a request; retrying");
                    connection = self.ready_connection(Some(&connection)).await?;
                }
                other => return other,
            }
        }
    }

    /// Sends any request once on the current connection.
    ///
    /// # Errors
    /// As [`Connection::request`], and [`ClientError::ReconnectFailed`] when
    /// the client has given up reconnecting.
    pub async fn request(&self, request: Request) -> Result<Response> {
        self.with_retry(Retry::Once, |connection| {
            let request = request.clone();
            async move { connection.request(request).await }
        })
        .await
    }

    /// `login` with a password; remembered (with the token the server
    /// returns) to log in again after a reconnect.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn login(&self, user: impl IntoUserRef, password: &str) -> Result<LoginResponse> {
        let user = user.into_user_ref();
        let response = self
            .with_retry(Retry::Idempotent, |c| {
                let user = user.clone();
                async move { c.login(user, password).await }
            })
            .await?;
        self.remember_login(
            Credentials {
                user: Some(user),
                password: Some(password.to_owned()),
            },
            &response,
        );
        Ok(response)
    }

    /// `login` with a token from an earlier login; remembered like
    /// [`Client::login`] (with no password to fall back on).
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn login_with_token(&self, token: &str) -> Result<LoginResponse> {
        let response = self
            .with_retry(Retry::Idempotent, |c| async move {
                c.login_with_token(token).await
            })
            .await?;
        self.remember_login(
            Credentials {
                user: None,
                password: None,
            },
            &response,
        );
        Ok(response)
    }

    fn remember_login(&self, credentials: Credentials, response: &LoginResponse) {
        let mut session = self.shared.session();
        session.credentials = Some(credentials);
        session.remember(response);
    }

    /// `logout`; the client stays connected but will not log in again.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn logout(&self) -> Result<LogoutResponse> {
        // Forget first, so a reconnect racing with the logout does not log
        // the session back in.
        {
            let mut session = self.shared.session();
            session.credentials = None;
            session.token = None;
        }
        let result = self.call(LogoutRequest {}).await;
        self.shared.session().me = None;
        result
    }

    /// Any request, typed by the message table: `client.call(ReadRequest
    /// { .. })` answers with a [`chat_proto::ReadResponse`]. Sent once; see
    /// [`Client::call_idempotent`] for requests that may be repeated.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn call<R>(&self, request: R) -> Result<R::Response>
    where
        R: Call + Clone,
    {
        self.with_retry(Retry::Once, |c| {
            let request = request.clone();
            async move { c.call(request).await }
        })
        .await
    }

    /// As [`Client::call`], for a request that has the same effect however
    /// often it is repeated (reads and most of the rest): repeated on a new
    /// connection if the old one broke under it, and a few times after
    /// `unavailable`.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn call_idempotent<R>(&self, request: R) -> Result<R::Response>
    where
        R: Call + Clone,
    {
        self.with_retry(Retry::Idempotent, |c| {
            let request = request.clone();
            async move { c.call(request).await }
        })
        .await
    }

    /// A page of the user's conversations (`conversation_list`), most
    /// recent activity first; also brings this client's unread counts up to
    /// date for the conversations on the page.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn conversations(
        &self,
        request: ConversationListRequest,
    ) -> Result<ConversationListResponse> {
        let page = self.call_idempotent(request).await?;
        let mut session = self.shared.session();
        for conversation in &page.conversations {
            let state = session
                .unread
                .entry(conversation.conversation_id)
                .or_default();
            state.last = state.last.max(conversation.last_seq);
            state.read = state.read.max(conversation.read_seq);
        }
        Ok(page)
    }

    /// Marks a conversation read up to `seq` (`read`); the user's other
    /// sessions and the other participants are told.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn read(&self, conversation_id: ConversationId, seq: Seq) -> Result<ReadResponse> {
        let response = self
            .call_idempotent(ReadRequest {
                conversation_id,
                seq,
            })
            .await?;
        self.shared
            .session()
            .read_up_to(conversation_id, response.read_seq);
        Ok(response)
    }

    /// Unread messages in a conversation, as far as this client knows
    /// (from the login, pushes, reads and [`Client::conversations`]).
    pub fn unread(&self, conversation_id: ConversationId) -> u64 {
        self.shared
            .session()
            .unread
            .get(&conversation_id)
            .map_or(0, |state| state.last.0.saturating_sub(state.read.0))
    }

    /// Every conversation with unread messages and how many, by id.
    pub fn unread_counts(&self) -> Vec<(ConversationId, u64)> {
        let session = self.shared.session();
        let mut counts: Vec<(ConversationId, u64)> = session
            .unread
            .iter()
            .map(|(id, state)| (*id, state.last.0.saturating_sub(state.read.0)))
            .filter(|(_, unread)| *unread > 0)
            .collect();
        counts.sort_unstable();
        counts
    }

    /// A fresh `client_msg_id`, unique for this client.
    pub fn new_client_msg_id(&self) -> String {
        self.client_msg_ids.next()
    }

    /// `send` with a fresh `client_msg_id`.
    ///
    /// # Errors
    /// As [`Client::send_with_id`].
    pub async fn send(&self, to: Target, body: &str) -> Result<SendResponse> {
        let client_msg_id = self.new_client_msg_id();
        self.send_with_id(to, &client_msg_id, body).await
    }

    /// `send` with the caller's `client_msg_id`. If the connection drops
    /// before the answer, the same request (same id) is sent again on the
    /// next connection; the server stores it once and answers the resend
    /// with the original position (`duplicate` set).
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn send_with_id(
        &self,
        to: Target,
        client_msg_id: &str,
        body: &str,
    ) -> Result<SendResponse> {
        self.shared
            .session()
            .own_pending
            .insert(client_msg_id.to_owned());
        let result = self
            .call_idempotent(SendRequest {
                to,
                client_msg_id: client_msg_id.to_owned(),
                body: body.to_owned(),
            })
            .await;
        match &result {
            Ok(response) => {
                // If the supervisor is gone nothing reads positions anymore.
                let _ = self.commands.send(Command::OwnSent {
                    conversation_id: response.conversation_id,
                    seq: response.seq,
                    client_msg_id: client_msg_id.to_owned(),
                });
            }
            Err(_) => {
                self.shared.session().own_pending.remove(client_msg_id);
            }
        }
        result
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

fn stopped() -> ClientError {
    ClientError::Closed("the client has stopped".to_owned())
}

/// The background task that owns the connection's pushes and the delivery
/// state.
struct Supervisor {
    shared: Arc<Shared>,
    options: ClientOptions,
    /// `options.addresses`, parsed.
    addresses: Vec<ServerAddress>,
    /// Index of the address to try on the next reconnect.
    next_address: usize,
    connection: Arc<Connection>,
    link: watch::Sender<LinkState>,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    delivery: DeliveryState,
    /// What the server has confirmed as acknowledged, per conversation.
    acked: std::collections::HashMap<ConversationId, Seq>,
}

impl Supervisor {
    async fn run(mut self) {
        let mut ack_tick = tokio::time::interval(self.options.ack_interval);
        ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without keepalive the branch below never fires.
        let keepalive_period = self
            .options
            .keepalive
            .unwrap_or(Duration::from_secs(365 * 24 * 3600));
        let mut keepalive = tokio::time::interval_at(
            tokio::time::Instant::now() + keepalive_period,
            keepalive_period,
        );
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let connection = Arc::clone(&self.connection);
            tokio::select! {
                command = self.commands.recv() => match command {
                    // Every handle is gone: nobody listens anymore.
                    None => break,
                    Some(Command::OwnSent { conversation_id, seq, client_msg_id }) => {
                        // Until the position is recorded, the id is what
                        // keeps the message from coming back as an event.
                        if self.delivery.own_sent(conversation_id, seq) {
                            self.shared.session().own_pending.remove(&client_msg_id);
                        }
                    }
                    Some(Command::FlushAcks(done)) => {
                        self.flush_acks().await;
                        let _ = done.send(());
                    }
                    Some(Command::Close(done)) => {
                        self.flush_acks().await;
                        self.connection.close();
                        let _ = done.send(());
                        break;
                    }
                },
                push = connection.next_push() => match push {
                    Some(push) => self.handle_push(push).await,
                    None => {
                        if !self.reconnect().await {
                            break;
                        }
                    }
                },
                _ = ack_tick.tick() => self.flush_acks().await,
                _ = keepalive.tick() => {
                    if self.options.keepalive.is_some() {
                        // Off the supervisor, so a slow answer does not hold up
                        // pushes; a timeout means the link is dead, and closing
                        // it makes the push branch notice and reconnect.
                        let pinged = Arc::clone(&self.connection);
                        tokio::spawn(async move {
                            if let Err(ClientError::Timeout(_)) = pinged.call(PingRequest {}).await {
                                pinged.close();
                            }
                        });
                    }
                }
            }
        }
    }

    fn emit(&self, event: Event) {
        // The receiver lives in the Client handle; once it is dropped the
        // supervisor is aborted too, so a failed send can only race with
        // that.
        let _ = self.events.send(event);
    }

    async fn handle_push(&mut self, push: Push) {
        match push {
            Push::PushMessage(message) => self.receive(message).await,
            Push::PushFriendRequest(push) => self.emit(Event::FriendRequest(push.request)),
            Push::PushFriendUpdate(push) => self.emit(Event::FriendUpdate(push)),
            Push::PushPresence(push) => self.emit(Event::Presence(push)),
            Push::PushGroupEvent(push) => self.emit(Event::Group(push)),
            Push::PushRead(push) => {
                {
                    let mut session = self.shared.session();
                    if session.me.as_ref().map(|me| me.id) == Some(push.user_id) {
                        session.read_up_to(push.conversation_id, push.read_seq);
                    }
                }
                self.emit(Event::Read(push));
            }
            Push::PushTyping(push) => self.emit(Event::Typing(push)),
            Push::PushRecall(push) => self.emit(Event::Recall(push)),
            Push::PushGroupJoinRequest(push) => self.emit(Event::GroupJoinRequest(push)),
            Push::PushGroupInvitation(push) => self.emit(Event::GroupInvitation(push.invitation)),
            Push::PushSessionEnded(push) => {
                if push.reason == SessionEndReason::LoggedOut {
                    let mut session = self.shared.session();
                    session.credentials = None;
                    session.token = None;
                }
                self.emit(Event::SessionEnded(push));
            }
        }
    }

    /// Feeds one message through de-duplication and gap filling.
    async fn receive(&mut self, message: ChatMessage) {
        match self.delivery.classify(message.conversation_id, message.seq) {
            Verdict::Duplicate => {}
            Verdict::Next => self.deliver(message),
            Verdict::Gap { after, before } => {
                if let Err(error) = self.fill_gap(message.conversation_id, after, before).await {
                    // Without the missing messages this one must wait: the
                    // sync after the reconnect brings it back in order.
                    tracing::debug!(%error, "could not fill a gap; will resync");
                    return;
                }
                if self.delivery.classify(message.conversation_id, message.seq)
                    != Verdict::Duplicate
                {
                    self.deliver(message);
                }
            }
        }
    }

    /// Delivers the message, unless it is one of this client's own sends.
    fn deliver(&mut self, message: ChatMessage) {
        let own = {
            let mut session = self.shared.session();
            let mine = session.me.as_ref().map(|me| me.id) == Some(message.sender_id);
            session.saw_message(message.conversation_id, message.seq, mine);
            mine && session.own_pending.remove(&message.client_msg_id)
        };
        self.delivery.advance(message.conversation_id, message.seq);
        if !own {
            self.emit(Event::Message(message));
        }
    }

    /// Fetches and delivers the messages strictly between `after` and
    /// `before`.
    async fn fill_gap(
        &mut self,
        conversation_id: ConversationId,
        after: Seq,
        before: Seq,
    ) -> Result<()> {
        let mut cursor = after;
        while cursor.next() < before {
            let missing = before.0 - cursor.0 - 1;
            let limit = u32::try_from(missing)
                .unwrap_or(HISTORY_PAGE)
                .min(HISTORY_PAGE);
            let page = self
                .connection
                .call(HistoryRequest {
                    conversation_id,
                    before_seq: Some(before),
                    after_seq: Some(cursor),
                    limit: Some(limit),
                })
                .await?;
            let mut progressed = false;
            for message in page.messages {
                if message.seq <= cursor || message.seq >= before {
                    continue;
                }
                cursor = message.seq;
                progressed = true;
                if self.delivery.classify(conversation_id, message.seq) != Verdict::Duplicate {
                    self.deliver(message);
                }
            }
            if !progressed {
                // The server has nothing more in the range; numbers are
                // gap-free by contract, so this is a server fault. Deliver
                // what follows rather than stall the conversation forever.
                tracing::warn!(
                    %conversation_id, after = %cursor, before = %before,
                    "history has a hole; delivering past it"
                );
                break;
            }
        }
        Ok(())
    }

    /// Sends acks for what the application has taken beyond what the
    /// server has confirmed.
    async fn flush_acks(&mut self) {
        let due: Vec<(ConversationId, Seq)> = {
            let session = self.shared.session();
            session
                .taken
                .iter()
                .filter(|(conversation, seq)| {
                    self.acked.get(conversation).is_none_or(|acked| acked < seq)
                })
                .map(|(&conversation, &seq)| (conversation, seq))
                .collect()
        };
        if due.is_empty() || self.shared.session().me.is_none() {
            return;
        }
        let connection = Arc::clone(&self.connection);
        let acks = due.iter().map(|&(conversation_id, seq)| {
            let connection = Arc::clone(&connection);
            async move {
                (
                    conversation_id,
                    seq,
                    connection
                        .call(AckRequest {
                            conversation_id,
                            seq,
                        })
                        .await,
                )
            }
        });
        for (conversation_id, seq, result) in futures::future::join_all(acks).await {
            match result {
                Ok(_) => {
                    self.acked.insert(conversation_id, seq);
                }
                Err(error) if error.is_server_error() => {
                    // Refused (say, the user left the group): asking again
                    // cannot succeed, so stop asking.
                    tracing::debug!(%conversation_id, %error, "ack refused");
                    self.acked.insert(conversation_id, seq);
                }
                // Left due: retried at the next flush, on this or the next
                // connection.
                Err(error) => tracing::debug!(%conversation_id, %error, "ack failed"),
            }
        }
    }

    /// Reconnects and resumes. Returns `false` after giving up, or when the
    /// client is closed meanwhile.
    async fn reconnect(&mut self) -> bool {
        let reason = self
            .connection
            .close_reason()
            .unwrap_or_else(|| "connection lost".to_owned());
        tracing::info!(%reason, "connection lost; reconnecting");
        self.link.send_replace(LinkState::Connecting);
        self.emit(Event::Disconnected { reason });
        let policy = self.options.reconnect.clone();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let jitter: f64 = rand::Rng::gen(&mut rand::thread_rng());
            let delay = policy.backoff(attempt, jitter);
            attempt += 1;
            let index = self.next_address % self.addresses.len();
            self.next_address = self.next_address.wrapping_add(1);
            // The address as the application gave it, for its events and logs.
            let address = self.options.addresses[index].clone();
            let outcome = {
                let (shared, options, events) =
                    (&self.shared, &self.options.connection, &self.events);
                let server = &self.addresses[index];
                let try_once = async move {
                    tokio::time::sleep(delay).await;
                    resume(shared, options, events, server).await
                };
                tokio::pin!(try_once);
                // Commands keep being served while waiting, so closing the
                // client never waits for the reconnect to give up.
                loop {
                    tokio::select! {
                        outcome = &mut try_once => break outcome,
                        command = self.commands.recv() => match command {
                            None => return false,
                            Some(Command::Close(done)) => {
                                let _ = done.send(());
                                return false;
                            }
                            // Nothing can be acknowledged without a
                            // connection; what is due stays due for the next.
                            Some(Command::FlushAcks(done)) => {
                                let _ = done.send(());
                            }
                            Some(Command::OwnSent { conversation_id, seq, client_msg_id }) => {
                                if self.delivery.own_sent(conversation_id, seq) {
                                    shared.session().own_pending.remove(&client_msg_id);
                                }
                            }
                        },
                    }
                }
            };
            let last_error = match outcome {
                Ok((connection, login)) => {
                    self.connection = Arc::new(connection);
                    self.link
                        .send_replace(LinkState::Ready(Arc::clone(&self.connection)));
                    tracing::info!(%address, attempt, "reconnected");
                    self.emit(Event::Reconnected {
                        address,
                        login: login.map(Box::new),
                    });
                    self.resync().await;
                    return true;
                }
                Err(error) => {
                    tracing::debug!(%address, attempt, %error, "reconnect attempt failed");
                    error.to_string()
                }
            };
            if attempt >= policy.max_attempts || started.elapsed() >= policy.max_elapsed {
                let error = format!("gave up after {attempt} attempts: {last_error}");
                tracing::warn!(%error, "reconnecting failed");
                self.link.send_replace(LinkState::Failed(error.clone()));
                self.emit(Event::GaveUp { error });
                return false;
            }
        }
    }

    /// Asks the server for everything after the cursors, in rounds.
    async fn resync(&mut self) {
        if self.shared.session().me.is_none() {
            return;
        }
        for _ in 0..MAX_SYNC_ROUNDS {
            let cursors = self.delivery.cursors();
            let page = match self
                .connection
                .call(SyncRequest {
                    cursors,
                    limit: None,
                })
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    // The push branch sees the closed connection next and
                    // reconnects (and syncs) again.
                    tracing::debug!(%error, "sync failed");
                    return;
                }
            };
            let more = page.has_more;
            let count = page.messages.len();
            for message in page.messages {
                self.receive(message).await;
            }
            if !more || count == 0 {
                return;
            }
        }
    }
}

/// Opens a connection and logs in again if the session was logged in.
async fn resume(
    shared: &Shared,
    options: &ConnectionOptions,
    events: &mpsc::UnboundedSender<Event>,
    address: &ServerAddress,
) -> Result<(Connection, Option<LoginResponse>)> {
    // Any error returned here is worth another attempt (connection
    // trouble, a busy or draining server); a refused login is not.
    let connection = Connection::connect_to(address, options.clone()).await?;
    let (credentials, token) = {
        let session = shared.session();
        (session.credentials.clone(), session.token.clone())
    };
    let Some(credentials) = credentials else {
        return Ok((connection, None));
    };
    let mut refusal = None;
    if let Some(token) = &token {
        match connection.login_with_token(token).await {
            Ok(login) => {
                shared.remember(&login);
                return Ok((connection, Some(login)));
            }
            Err(error) if error.status() == Some(Status::Unauthorized) => {
                refusal = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    if let (Some(user), Some(password)) = (&credentials.user, &credentials.password) {
        match connection.login(user, password).await {
            Ok(login) => {
                shared.remember(&login);
                return Ok((connection, Some(login)));
            }
            Err(error) if error.status() == Some(Status::Unauthorized) => {
                refusal = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    // Neither token nor password works any more: retrying cannot help.
    // Stay connected, logged out, and say so.
    {
        let mut session = shared.session();
        session.credentials = None;
        session.token = None;
        session.me = None;
    }
    let error = refusal.map_or_else(|| "no credentials".to_owned(), |e| e.to_string());
    // The receiver lives in the Client handle; see `Supervisor::emit`.
    let _ = events.send(Event::LoginFailed { error });
    Ok((connection, None))
}

#[cfg(test)]
mod tests {
    //! The supervisor against a scripted server, which can leave gaps,
    //! refuse tokens and hang up in the middle of a send at exact moments.

    use std::collections::HashMap;

    use bytes::BytesMut;
    use chat_proto::{
        AckResponse, ChatMessage, ErrorBody, Frame, FrameCodec, HistoryResponse, LoginResponse,
        PingResponse, SendResponse, SyncResponse, UserId,
    };
    use futures::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio_util::codec::Framed;

    use super::*;

    const CONVERSATION: ConversationId = ConversationId(10);
    const ALICE: UserId = UserId(1);
    const BOB: UserId = UserId(2);

    fn from_alice(seq: u64) -> ChatMessage {
        ChatMessage {
            conversation_id: CONVERSATION,
            seq: Seq(seq),
            sender_id: ALICE,
            sender_name: "alice".to_owned(),
            target: Target::User(BOB),
            client_msg_id: format!("alice-{seq}"),
            body: format!("message {seq}"),
            server_ts_ms: 1_700_000_000_000,
            recalled: None,
        }
    }

    enum Control {
        Push(Push),
    }

    /// What the scripted server remembers across connections.
    struct ServerState {
        log: Vec<ChatMessage>,
        requests: Vec<Request>,
        logins: u32,
        /// client_msg_id to position, for idempotent sends.
        sent: HashMap<String, Seq>,
        /// Hang up (without answering) on the first send of a new id.
        hang_up_on_first_send: bool,
        /// Store the first send of a new id but answer `unavailable`, as a
        /// node whose database connection broke right after the commit.
        unavailable_after_first_commit: bool,
    }

    fn login_response(token: &str) -> LoginResponse {
        LoginResponse {
            user: UserSummary {
                id: BOB,
                name: "bob".to_owned(),
            },
            token: token.to_owned(),
            token_expires_at_ms: i64::MAX,
            friends: Vec::new(),
            groups: Vec::new(),
            incoming_requests: Vec::new(),
            outgoing_requests: Vec::new(),
            unacked: 0,
            unread: Vec::new(),
        }
    }

    /// Answers one request; `None` means hang up instead.
    fn answer(
        state: &mut ServerState,
        request: &Request,
    ) -> Option<std::result::Result<Response, Status>> {
        state.requests.push(request.clone());
        Some(match request {
            Request::Ping(_) => Ok(Response::Ping(PingResponse { server_ts_ms: 0 })),
            Request::Login(login) => {
                if login.token.as_deref() == Some("t1") && state.logins > 0 {
                    // The first token no longer works after a "restart".
                    Err(Status::Unauthorized)
                } else {
                    state.logins += 1;
                    let token = if state.logins == 1 { "t1" } else { "t2" };
                    Ok(Response::Login(login_response(token)))
                }
            }
            Request::Ack(ack) => Ok(Response::Ack(AckResponse { acked_seq: ack.seq })),
            Request::History(history) => {
                let after = history.after_seq.unwrap_or(Seq::ZERO);
                let before = history.before_seq.unwrap_or(Seq(u64::MAX));
                let messages: Vec<ChatMessage> = state
                    .log
                    .iter()
                    .filter(|m| m.seq > after && m.seq < before)
                    .take(history.limit.unwrap_or(50) as usize)
                    .cloned()
                    .collect();
                Ok(Response::History(HistoryResponse {
                    messages,
                    has_more: false,
                }))
            }
            Request::Sync(sync) => {
                let after = sync
                    .cursors
                    .iter()
                    .find(|c| c.conversation_id == CONVERSATION)
                    .map_or(Seq::ZERO, |c| c.seq);
                let messages = state
                    .log
                    .iter()
                    .filter(|m| m.seq > after)
                    .cloned()
                    .collect();
                Ok(Response::Sync(SyncResponse {
                    messages,
                    has_more: false,
                }))
            }
            Request::Send(send) => {
                if let Some(&seq) = state.sent.get(&send.client_msg_id) {
                    return Some(Ok(Response::Send(SendResponse {
                        conversation_id: CONVERSATION,
                        seq,
                        server_ts_ms: 0,
                        duplicate: true,
                    })));
                }
                let seq = Seq(state.log.len() as u64 + 1);
                state.sent.insert(send.client_msg_id.clone(), seq);
                state.log.push(ChatMessage {
                    conversation_id: CONVERSATION,
                    seq,
                    sender_id: BOB,
                    sender_name: "bob".to_owned(),
                    target: send.to,
                    client_msg_id: send.client_msg_id.clone(),
                    body: send.body.clone(),
                    server_ts_ms: 0,
                    recalled: None,
                });
                if state.unavailable_after_first_commit {
                    state.unavailable_after_first_commit = false;
                    return Some(Err(Status::Unavailable));
                }
                if state.hang_up_on_first_send {
                    // Committed, but the answer is lost with the connection.
                    state.hang_up_on_first_send = false;
                    return None;
                }
                Ok(Response::Send(SendResponse {
                    conversation_id: CONVERSATION,
                    seq,
                    server_ts_ms: 0,
                    duplicate: false,
                }))
            }
            _ => Err(Status::BadRequest),
        })
    }

    /// Serves connections one after another until the test ends.
    async fn serve(
        listener: TcpListener,
        state: Arc<Mutex<ServerState>>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut framed = Framed::new(stream, FrameCodec::default());
            loop {
                tokio::select! {
                    frame = framed.next() => {
                        let Some(Ok(frame)) = frame else { break };
                        let frame: Frame = frame;
                        let request = Request::from_payload(frame.header.message_type, &frame.payload)
                            .expect("the client sends valid requests");
                        let reply = answer(&mut state.lock().unwrap(), &request);
                        let mut buf = BytesMut::new();
                        match reply {
                            None => break,
                            Some(Ok(response)) => {
                                response.encode(frame.header.request_id, &mut buf).unwrap();
                            }
                            Some(Err(status)) => ErrorBody {
                                error: status,
                                message: "scripted refusal".to_owned(),
                            }
                            .encode(frame.header.message_type, frame.header.request_id, &mut buf),
                        }
                        if framed.send(buf.freeze()).await.is_err() {
                            break;
                        }
                    }
                    control = control.recv() => match control {
                        Some(Control::Push(push)) => {
                            let mut buf = BytesMut::new();
                            push.encode(&mut buf).unwrap();
                            if framed.send(buf.freeze()).await.is_err() {
                                break;
                            }
                        }
                        None => return,
                    },
                }
            }
        }
    }

    struct Harness {
        client: Client,
        state: Arc<Mutex<ServerState>>,
        control: mpsc::UnboundedSender<Control>,
    }

    async fn harness(log: Vec<ChatMessage>) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(ServerState {
            log,
            requests: Vec::new(),
            logins: 0,
            sent: HashMap::new(),
            hang_up_on_first_send: false,
            unavailable_after_first_commit: false,
        }));
        let (control, control_rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(listener, Arc::clone(&state), control_rx));
        let mut options = ClientOptions::new(address);
        options.keepalive = None;
        options.ack_interval = Duration::from_millis(20);
        options.reconnect.initial_backoff = Duration::from_millis(5);
        let client = Client::connect(options).await.unwrap();
        client.login("bob", "password").await.unwrap();
        Harness {
            client,
            state,
            control,
        }
    }

    async fn next_message(client: &Client) -> ChatMessage {
        loop {
            match client.next_event_timeout(Duration::from_secs(10)).await {
                Some(Event::Message(message)) => return message,
                Some(_) => {}
                None => panic!("no message"),
            }
        }
    }

    fn push(harness: &Harness, message: ChatMessage) {
        harness
            .control
            .send(Control::Push(Push::PushMessage(message)))
            .unwrap();
    }

    #[tokio::test]
    async fn a_gap_is_filled_from_history_before_the_message_after_it() {
        let harness = harness((1..=4).map(from_alice).collect()).await;
        push(&harness, from_alice(1));
        push(&harness, from_alice(4));
        let mut seqs = Vec::new();
        for _ in 0..4 {
            seqs.push(next_message(&harness.client).await.seq.0);
        }
        assert_eq!(seqs, [1, 2, 3, 4]);
        // A repeat is dropped.
        push(&harness, from_alice(3));
        assert!(harness
            .client
            .next_event_timeout(Duration::from_millis(200))
            .await
            .is_none());
        harness.client.flush_acks().await.unwrap();
        let state = harness.state.lock().unwrap();
        assert!(state.requests.iter().any(|request| matches!(
            request,
            Request::History(history)
                if history.after_seq == Some(Seq(1)) && history.before_seq == Some(Seq(4))
        )));
        let last_ack = state
            .requests
            .iter()
            .rev()
            .find_map(|request| match request {
                Request::Ack(ack) => Some(ack.seq),
                _ => None,
            });
        assert_eq!(last_ack, Some(Seq(4)));
    }

    #[tokio::test]
    async fn a_send_answered_unavailable_is_repeated_with_the_same_id() {
        let harness = harness(Vec::new()).await;
        harness.state.lock().unwrap().unavailable_after_first_commit = true;
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            harness
                .client
                .send(Target::User(ALICE), "stored, then unavailable"),
        )
        .await
        .expect("the send completes")
        .expect("the repeat succeeds");
        // The first try was stored: the repeat found it, nothing is doubled.
        assert!(response.duplicate);
        assert_eq!(response.seq, Seq(1));
        let state = harness.state.lock().unwrap();
        assert_eq!(state.log.len(), 1);
        let sends: Vec<&str> = state
            .requests
            .iter()
            .filter_map(|request| match request {
                Request::Send(send) => Some(send.client_msg_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(sends.len(), 2);
        assert_eq!(sends[0], sends[1], "the repeat uses the same client_msg_id");
    }

    #[tokio::test]
    async fn after_a_hang_up_mid_send_it_resumes_and_resends_the_same_id() {
        let harness = harness(vec![from_alice(1)]).await;
        push(&harness, from_alice(1));
        assert_eq!(next_message(&harness.client).await.seq, Seq(1));
        harness.state.lock().unwrap().hang_up_on_first_send = true;

        let response = tokio::time::timeout(
            Duration::from_secs(10),
            harness.client.send(Target::User(ALICE), "are you there?"),
        )
        .await
        .expect("the send completes after the reconnect")
        .expect("the send succeeds");
        assert!(response.duplicate, "the resend found the first copy");
        assert_eq!(response.seq, Seq(2));

        // The token was refused, the password worked, and the new token is
        // kept for next time.
        assert_eq!(harness.client.token().as_deref(), Some("t2"));
        {
            let state = harness.state.lock().unwrap();
            let sends: Vec<&str> = state
                .requests
                .iter()
                .filter_map(|request| match request {
                    Request::Send(send) => Some(send.client_msg_id.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(sends.len(), 2);
            assert_eq!(sends[0], sends[1], "the resend uses the same client_msg_id");
            let logins: Vec<(bool, bool)> = state
                .requests
                .iter()
                .filter_map(|request| match request {
                    Request::Login(login) => {
                        Some((login.token.is_some(), login.password.is_some()))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(logins, [(false, true), (true, false), (false, true)]);
            assert!(state.requests.iter().any(|request| matches!(
                request,
                Request::Sync(sync) if sync.cursors == [chat_proto::Cursor {
                    conversation_id: CONVERSATION,
                    seq: Seq(1),
                }]
            )));
        }

        // The own message that sync returned is not shown, and alice's next
        // message follows without a gap.
        harness.state.lock().unwrap().log.push(from_alice(3));
        push(&harness, from_alice(3));
        let mut events = Vec::new();
        let message = loop {
            match harness
                .client
                .next_event_timeout(Duration::from_secs(10))
                .await
            {
                Some(Event::Message(message)) => break message,
                Some(other) => events.push(other),
                None => panic!("no message after the reconnect"),
            }
        };
        assert_eq!(message.seq, Seq(3));
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. })));
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Reconnected { login: Some(_), .. })));
        // Nothing was missing, so nothing was fetched.
        assert!(!harness
            .state
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|request| matches!(request, Request::History(_))));
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_jitter_in_the_upper_half() {
        let policy = ReconnectPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_attempts: 10,
            max_elapsed: Duration::from_secs(60),
        };
        assert_eq!(policy.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(3, 0.0), Duration::from_millis(400));
        assert_eq!(policy.backoff(3, 0.5), Duration::from_millis(600));
        assert_eq!(policy.backoff(10, 1.0), Duration::from_secs(2));
        assert_eq!(policy.backoff(u32::MAX, 0.0), Duration::from_secs(1));
        // Out-of-range jitter is clamped, never panics.
        assert_eq!(policy.backoff(0, 7.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(0, f64::NAN), Duration::from_millis(50));
    }
}
