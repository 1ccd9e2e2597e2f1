//! The task behind a [`Client`](super::Client): the one owner of the
//! connection's pushes and of the delivery state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{
    AckRequest, ChatMessage, ConversationId, HistoryRequest, PingRequest, Push, Seq,
    SessionEndReason, SyncRequest,
};
use tokio::sync::{mpsc, watch};

use super::options::ClientOptions;
use super::resume::resume;
use super::session::Shared;
use super::{Command, LinkState};
use crate::connection::Connection;
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

/// The background task that owns the connection's pushes and the delivery
/// state.
pub(super) struct Supervisor {
    pub(super) shared: Arc<Shared>,
    pub(super) options: ClientOptions,
    /// `options.addresses`, parsed.
    pub(super) addresses: Vec<ServerAddress>,
    /// Index of the address to try on the next reconnect.
    pub(super) next_address: usize,
    pub(super) connection: Arc<Connection>,
    pub(super) link: watch::Sender<LinkState>,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) delivery: DeliveryState,
    /// What the server has confirmed as acknowledged, per conversation.
    pub(super) acked: HashMap<ConversationId, Seq>,
}

impl Supervisor {
    pub(super) async fn run(mut self) {
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
