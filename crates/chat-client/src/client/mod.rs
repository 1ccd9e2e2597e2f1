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
//! Requests that are safe to repeat are retried on the next connection when
//! the connection drops under them: those sent with
//! [`Client::call_idempotent`] (reads, `ack`, `friend_update`), logins, and
//! [`Client::send`], which the server de-duplicates by `client_msg_id`.
//! Those sent with [`Client::call`] fail with the connection error and the
//! application decides.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_proto::{
    Call, ChatMessage, ConversationId, ConversationListRequest, ConversationListResponse,
    LoginResponse, LogoutRequest, LogoutResponse, ReadRequest, ReadResponse, Request, Response,
    SendRequest, SendResponse, Seq, Status, Target, UserSummary,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::client_msg_ids::ClientMsgIds;
use crate::connection::{Connection, IntoUserRef};
use crate::delivery::DeliveryState;
use crate::error::{ClientError, Result};
use crate::event::Event;
use crate::transport::ServerAddress;

mod options;
mod resume;
mod session;
mod supervisor;
#[cfg(test)]
mod tests;

pub use options::{ClientOptions, ReconnectPolicy};
use session::{Credentials, Session, Shared};
use supervisor::Supervisor;

/// The most attempts of one retried request on a connection that stays open
/// (timeouts) before the timeout is reported.
const MAX_TIMEOUT_RETRIES: u32 = 3;

/// Pauses before repeating an idempotent request answered `unavailable`.
const UNAVAILABLE_RETRIES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

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
        self.call_with(Retry::Once, request).await
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
        self.call_with(Retry::Idempotent, request).await
    }

    async fn call_with<R>(&self, retry: Retry, request: R) -> Result<R::Response>
    where
        R: Call + Clone,
    {
        self.with_retry(retry, |c| {
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
