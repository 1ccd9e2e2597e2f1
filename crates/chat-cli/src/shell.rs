//! Carries out parsed commands against a [`Client`] and shows events; the
//! part both modes share.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::command::{help_text, Command, ConversationRef};
use crate::render::{
    conversation_line, event_line, friend_line, group_event_line, group_line, json_error,
    json_event, json_response, member_line, message_line, printable, request_line,
};
use chat_client::{Client, ClientError, Event};
use chat_proto::{
    ChatMessage, ConversationId, ConversationListRequest, Friend, FriendAddOutcome,
    FriendAddRequest, FriendListRequest, FriendRemoveRequest, FriendRequestInfo,
    FriendRespondRequest, FriendUpdateRequest, Group, GroupCreateRequest, GroupDissolveRequest,
    GroupEventKind, GroupInfoRequest, GroupJoinRequest, GroupKickRequest, GroupLeaveRequest,
    GroupListRequest, GroupMembersRequest, GroupSetRoleRequest, HistoryRequest, JoinPolicy,
    LoginResponse, RecallRequest, RegisterRequest, SendResponse, Seq, Status, Target, UserId,
    UserRef, UserSummary,
};
use serde_json::json;
use tokio::sync::watch;

/// What the client knows about the user's world, kept current from
/// responses and events; used to resolve names, to label group messages and
/// for tab completion.
#[derive(Debug, Default)]
pub struct Directory {
    me: Option<UserSummary>,
    friends: Vec<Friend>,
    groups: Vec<Group>,
    incoming: Vec<FriendRequestInfo>,
}

impl Directory {
    fn find_friend(&self, user: &UserRef) -> Option<&Friend> {
        self.friends.iter().find(|friend| match user {
            UserRef::Id(id) => friend.id == *id,
            UserRef::Name(name) => {
                friend.name == *name || friend.remark.as_deref() == Some(name.as_str())
            }
        })
    }

    fn group(&self, group_id: chat_proto::GroupId) -> Option<&Group> {
        self.groups.iter().find(|group| group.id == group_id)
    }

    fn upsert_friend(&mut self, friend: Friend) {
        self.incoming.retain(|request| request.from.id != friend.id);
        match self.friends.iter_mut().find(|known| known.id == friend.id) {
            Some(known) => *known = friend,
            None => self.friends.push(friend),
        }
    }

    fn upsert_group(&mut self, group: Group) {
        match self.groups.iter_mut().find(|known| known.id == group.id) {
            Some(known) => *known = group,
            None => self.groups.push(group),
        }
    }

    /// A user's name for display: `name [id]` when known.
    fn who(&self, user_id: UserId) -> String {
        if let Some(me) = self.me.as_ref().filter(|me| me.id == user_id) {
            return format!("{} [{}]", printable(&me.name), me.id);
        }
        match self.friends.iter().find(|friend| friend.id == user_id) {
            Some(friend) => format!("{} [{}]", printable(&friend.name), friend.id),
            None => format!("user [{user_id}]"),
        }
    }

    /// Names to offer for tab completion: friends and requesters.
    pub fn completion_names(&self) -> Vec<String> {
        self.friends
            .iter()
            .map(|friend| friend.name.clone())
            .chain(
                self.incoming
                    .iter()
                    .map(|request| request.from.name.clone()),
            )
            .collect()
    }

    /// Who is logged in.
    pub fn me(&self) -> Option<&UserSummary> {
        self.me.as_ref()
    }

    fn apply_login(&mut self, login: &LoginResponse) {
        self.me = Some(login.user.clone());
        self.friends.clone_from(&login.friends);
        self.groups.clone_from(&login.groups);
        self.incoming.clone_from(&login.incoming_requests);
    }

    fn apply_event(&mut self, event: &Event) {
        match event {
            Event::FriendRequest(request) => self.incoming.push(request.clone()),
            Event::FriendUpdate(update) => match &update.friend {
                Some(friend) => self.upsert_friend(friend.clone()),
                None => self.friends.retain(|friend| friend.id != update.user.id),
            },
            Event::Presence(presence) => {
                for friend in &mut self.friends {
                    if friend.id == presence.user_id {
                        friend.online = presence.online;
                    }
                }
            }
            Event::Group(group_event) => {
                let me = self.me.as_ref().map(|me| me.id);
                let gone = group_event.kind == GroupEventKind::Dissolved
                    || (Some(group_event.user_id) == me
                        && matches!(
                            group_event.kind,
                            GroupEventKind::Left | GroupEventKind::Kicked
                        ));
                if gone {
                    self.groups.retain(|group| group.id != group_event.group_id);
                }
            }
            Event::Reconnected {
                login: Some(login), ..
            } => self.apply_login(login),
            Event::LoginFailed { .. } => self.me = None,
            _ => {}
        }
    }
}

/// Where output lines go: stdout, or (interactive) a printer that puts them
/// above the prompt without disturbing the line being typed.
pub type Sink = Arc<dyn Fn(String) + Send + Sync>;

/// A command that did not work: the server's status, if it answered.
#[derive(Debug)]
pub struct Failure {
    /// The status, for a server error.
    pub status: Option<Status>,
    /// What went wrong, for people.
    pub message: String,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            status: None,
            message: message.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        match &error {
            ClientError::Server(body) => Failure {
                status: Some(body.error),
                message: format!("{}: {}", body.error, body.message),
            },
            _ => Failure::new(error.to_string()),
        }
    }
}

/// Whether to go on reading commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Stop.
    Quit,
}

/// Locks a std mutex, ignoring poisoning: the directory is a cache whose
/// every update is a whole assignment, so it is never half-written.
fn lock(directory: &Mutex<Directory>) -> MutexGuard<'_, Directory> {
    directory.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The command executor of one `chat` process.
pub struct Shell {
    client: Arc<Client>,
    directory: Arc<Mutex<Directory>>,
    json: bool,
    /// How many messages the event pump has shown so far.
    received: watch::Receiver<u64>,
    /// How many of those earlier `wait`s have used up.
    waited: u64,
    /// Held while a login's summary is printed, and by the event pump per
    /// event, so the missed messages always follow the summary.
    gate: Arc<tokio::sync::Mutex<()>>,
    out: Sink,
    pump: tokio::task::JoinHandle<()>,
}

impl Shell {
    /// A shell over a connected client; events are shown through `events`,
    /// command output through `out`.
    pub fn new(client: Client, json: bool, out: Sink, events: Sink) -> Shell {
        let client = Arc::new(client);
        let directory = Arc::new(Mutex::new(Directory::default()));
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let (received_tx, received) = watch::channel(0);
        let pump = tokio::spawn(pump_events(
            Arc::clone(&client),
            Arc::clone(&directory),
            Arc::clone(&gate),
            json,
            events,
            received_tx,
        ));
        Shell {
            client,
            directory,
            json,
            received,
            waited: 0,
            gate,
            out,
            pump,
        }
    }

    /// The directory, for tab completion and the prompt.
    pub fn directory(&self) -> Arc<Mutex<Directory>> {
        Arc::clone(&self.directory)
    }

    fn print(&self, line: String) {
        (self.out)(line);
    }

    /// Prints a success: the JSON line, or the human lines.
    fn respond(&self, command: &str, data: &impl serde::Serialize, human: Vec<String>) {
        if self.json {
            self.print(json_response(command, data, &[]));
        } else {
            for line in human {
                self.print(line);
            }
        }
    }

    /// Shows a failed command: on stdout as a JSON line, or on `human` (the
    /// caller's choice of stream) as text.
    pub fn report(&self, command: &str, failure: &Failure, human: &dyn Fn(String)) {
        if self.json {
            self.print(json_error(command, failure.status, &failure.message));
        } else {
            human(format!("error: {}", failure.message));
        }
    }

    /// Acknowledges what was shown and disconnects.
    pub async fn close(self) {
        self.pump.abort();
        // The pump held the other reference; once it is aborted this is the
        // last one, unless the abort has not landed yet.
        let _ = self.pump.await;
        if let Ok(client) = Arc::try_unwrap(self.client) {
            client.close().await;
        }
    }

    /// Carries out one command.
    ///
    /// # Errors
    /// A [`Failure`] when the command did not work.
    pub async fn execute(&mut self, command: Command) -> Result<Flow, Failure> {
        let needs_login = !matches!(
            command,
            Command::Help
                | Command::Quit
                | Command::Register { .. }
                | Command::Login { .. }
                | Command::Wait { .. }
        );
        if needs_login && self.client.me().is_none() {
            return Err(Failure {
                status: Some(Status::Unauthorized),
                message: "not logged in; use `login NAME` (or `register NAME` first)".to_owned(),
            });
        }
        let needs_server = !matches!(
            command,
            Command::Help | Command::Quit | Command::Wait { .. }
        );
        if needs_server && !self.json && self.client.connection().is_none() {
            // The command waits for the reconnect; say so rather than hang.
            self.print("waiting for the server…".to_owned());
        }
        match command {
            Command::Help => {
                self.respond("help", &json!({}), vec![help_text()]);
            }
            Command::Quit => return Ok(Flow::Quit),
            Command::Register { name, password } => {
                let password = password.ok_or_else(|| Failure::new("a password is needed"))?;
                let response = self.client.call(RegisterRequest { name, password }).await?;
                let line = format!(
                    "registered {} [{}]; now `login {}`",
                    printable(&response.user.name),
                    response.user.id,
                    printable(&response.user.name)
                );
                self.respond("register", &response, vec![line]);
            }
            Command::Login { user, password } => {
                let password = password.ok_or_else(|| Failure::new("a password is needed"))?;
                let _gate = self.gate.lock().await;
                let login = self.client.login(user, &password).await?;
                lock(&self.directory).apply_login(&login);
                if self.json {
                    let mut data = serde_json::to_value(&login).unwrap_or_default();
                    // The token is a credential; scripts do not need it.
                    if let Some(map) = data.as_object_mut() {
                        map.remove("token");
                    }
                    self.print(json_response("login", &data, &[]));
                } else {
                    for line in login_summary(&login) {
                        self.print(line);
                    }
                }
            }
            Command::Logout => {
                let response = self.client.logout().await?;
                *lock(&self.directory) = Directory::default();
                self.respond("logout", &response, vec!["logged out".to_owned()]);
            }
            Command::Friends => {
                let list = self.client.call_idempotent(FriendListRequest {}).await?;
                let mut lines = Vec::new();
                {
                    let mut directory = lock(&self.directory);
                    directory.friends.clone_from(&list.friends);
                    directory.incoming.clone_from(&list.incoming_requests);
                }
                lines.push(format!("friends ({}):", list.friends.len()));
                lines.extend(list.friends.iter().map(|f| format!("  {}", friend_line(f))));
                for request in &list.incoming_requests {
                    lines.push(format!("  {}", request_line(request, true)));
                }
                for request in &list.outgoing_requests {
                    lines.push(format!("  {}", request_line(request, false)));
                }
                self.respond("friends", &list, lines);
            }
            Command::Add { user, greeting } => {
                let response = self
                    .client
                    .call(FriendAddRequest {
                        user,
                        message: greeting,
                    })
                    .await?;
                let name = printable(&response.user.name);
                let line = match response.outcome {
                    FriendAddOutcome::Pending => format!("asked {name} to be friends"),
                    FriendAddOutcome::Accepted => format!("you and {name} are now friends"),
                };
                if let Some(friend) = &response.friend {
                    lock(&self.directory).upsert_friend(friend.clone());
                }
                self.respond("add", &response, vec![line]);
            }
            Command::Accept { user } => self.respond_to_request(user, true).await?,
            Command::Decline { user } => self.respond_to_request(user, false).await?,
            Command::Remove { user } => {
                let response = self.client.call(FriendRemoveRequest { user }).await?;
                lock(&self.directory)
                    .friends
                    .retain(|friend| friend.id != response.user.id);
                let line = format!(
                    "{} is no longer your friend",
                    printable(&response.user.name)
                );
                self.respond("remove", &response, vec![line]);
            }
            Command::Remark { user, text } => {
                let response = self
                    .client
                    .call_idempotent(FriendUpdateRequest {
                        user,
                        remark: Some(text),
                        category: None,
                    })
                    .await?;
                lock(&self.directory).upsert_friend(response.friend.clone());
                self.respond("remark", &response, vec![friend_line(&response.friend)]);
            }
            Command::Category { user, text } => {
                let response = self
                    .client
                    .call_idempotent(FriendUpdateRequest {
                        user,
                        remark: None,
                        category: Some(text),
                    })
                    .await?;
                lock(&self.directory).upsert_friend(response.friend.clone());
                self.respond("category", &response, vec![friend_line(&response.friend)]);
            }
            Command::Chat { user, text } => {
                let friend_id = self.friend(&user).await?.id;
                let target = Target::User(friend_id);
                let response = self.client.send(target, &text).await?;
                let line = self.own_message_line(target, text, &response, None);
                self.respond("chat", &response, vec![line]);
            }
            Command::Groups => {
                let list = self.client.call_idempotent(GroupListRequest {}).await?;
                lock(&self.directory).groups.clone_from(&list.groups);
                let mut lines = vec![format!("groups ({}):", list.groups.len())];
                lines.extend(list.groups.iter().map(|g| format!("  {}", group_line(g))));
                self.respond("groups", &list, lines);
            }
            Command::GroupCreate { name, description } => {
                let response = self
                    .client
                    .call(GroupCreateRequest {
                        name,
                        description,
                        join_policy: JoinPolicy::Open,
                    })
                    .await?;
                lock(&self.directory).upsert_group(response.group.clone());
                if self.json {
                    self.print(json_response(
                        "gcreate",
                        &response,
                        &[("group_id", json!(response.group.id))],
                    ));
                } else {
                    self.print(format!("created {}", group_line(&response.group)));
                }
            }
            Command::GroupJoin { group_id } => {
                let response = self.client.call(GroupJoinRequest { group_id }).await?;
                lock(&self.directory).upsert_group(response.group.clone());
                let line = format!("joined {}", group_line(&response.group));
                self.respond("gjoin", &response, vec![line]);
            }
            Command::GroupLeave { group_id } => {
                let response = self.client.call(GroupLeaveRequest { group_id }).await?;
                lock(&self.directory)
                    .groups
                    .retain(|group| group.id != group_id);
                self.respond("gleave", &response, vec![format!("left group {group_id}")]);
            }
            Command::GroupDissolve { group_id } => {
                let response = self.client.call(GroupDissolveRequest { group_id }).await?;
                lock(&self.directory)
                    .groups
                    .retain(|group| group.id != group_id);
                let line = format!("dissolved group {group_id}");
                self.respond("gdissolve", &response, vec![line]);
            }
            Command::GroupMembers { group_id } => {
                let response = self
                    .client
                    .call_idempotent(GroupMembersRequest { group_id })
                    .await?;
                let mut lines = vec![format!(
                    "group {group_id} has {} members:",
                    response.members.len()
                )];
                lines.extend(
                    response
                        .members
                        .iter()
                        .map(|m| format!("  {}", member_line(m))),
                );
                self.respond("gmembers", &response, lines);
            }
            Command::GroupKick { group_id, user } => {
                let shown = user_text(&user);
                let response = self
                    .client
                    .call(GroupKickRequest {
                        group_id,
                        user,
                        ban: false,
                    })
                    .await?;
                let line = format!("removed {shown} from group {group_id}");
                self.respond("gkick", &response, vec![line]);
            }
            Command::GroupRole {
                group_id,
                user,
                role,
            } => {
                let shown = user_text(&user);
                let response = self
                    .client
                    .call(GroupSetRoleRequest {
                        group_id,
                        user,
                        role,
                    })
                    .await?;
                let line = format!("{shown} is now {} of group {group_id}", role.as_str());
                self.respond("grole", &response, vec![line]);
            }
            Command::GroupChat { group_id, text } => {
                let target = Target::Group(group_id);
                let response = self.client.send(target, &text).await?;
                let group_name = lock(&self.directory)
                    .group(group_id)
                    .map(|group| group.name.clone());
                let line = self.own_message_line(target, text, &response, group_name.as_deref());
                self.respond("gchat", &response, vec![line]);
            }
            Command::History {
                conversation,
                count,
            } => {
                let (conversation_id, group_name) = self.conversation(&conversation).await?;
                let page = self
                    .client
                    .call_idempotent(HistoryRequest {
                        conversation_id,
                        before_seq: None,
                        after_seq: None,
                        limit: Some(count),
                    })
                    .await?;
                let lines = page
                    .messages
                    .iter()
                    .map(|message| message_line(message, group_name.as_deref()))
                    .collect();
                self.respond("history", &page, lines);
                // What was shown has been seen.
                if let Some(last) = page.messages.last() {
                    self.client.read(conversation_id, last.seq).await?;
                }
            }
            Command::Conversations => {
                let page = self
                    .client
                    .conversations(ConversationListRequest::default())
                    .await?;
                let mut lines = vec![format!(
                    "conversations ({}{}):",
                    page.conversations.len(),
                    if page.has_more { ", newest" } else { "" }
                )];
                lines.extend(
                    page.conversations
                        .iter()
                        .map(|conversation| format!("  {}", conversation_line(conversation))),
                );
                self.respond("conversations", &page, lines);
            }
            Command::Recall { conversation, seq } => {
                let (conversation_id, _) = self.conversation(&conversation).await?;
                let response = self
                    .client
                    .call_idempotent(RecallRequest {
                        conversation_id,
                        seq: Seq(seq),
                    })
                    .await?;
                self.respond("recall", &response, vec![format!("recalled #{seq}")]);
            }
            Command::Wait { count, timeout } => self.wait(count, timeout).await?,
        }
        Ok(Flow::Continue)
    }

    async fn respond_to_request(&mut self, user: UserRef, accept: bool) -> Result<(), Failure> {
        let response = self
            .client
            .call(FriendRespondRequest { user, accept })
            .await?;
        let name = printable(&response.user.name);
        {
            let mut directory = lock(&self.directory);
            directory
                .incoming
                .retain(|request| request.from.id != response.user.id);
            if let Some(friend) = &response.friend {
                directory.upsert_friend(friend.clone());
            }
        }
        let (command, line) = if accept {
            ("accept", format!("you and {name} are now friends"))
        } else {
            ("decline", format!("declined {name}'s friend request"))
        };
        self.respond(command, &response, vec![line]);
        Ok(())
    }

    /// The line of a message this client just sent, as the other
    /// participants see it.
    fn own_message_line(
        &self,
        target: Target,
        body: String,
        response: &SendResponse,
        group_name: Option<&str>,
    ) -> String {
        let me = self.client.me();
        let message = ChatMessage {
            conversation_id: response.conversation_id,
            seq: response.seq,
            sender_id: me.as_ref().map_or(UserId(0), |me| me.id),
            sender_name: me.map(|me| me.name).unwrap_or_default(),
            target,
            client_msg_id: String::new(),
            body,
            server_ts_ms: response.server_ts_ms,
            recalled: None,
        };
        message_line(&message, group_name)
    }

    /// Finds a friend by name, remark or id, asking the server when the
    /// cache does not know them.
    async fn friend(&self, user: &UserRef) -> Result<Friend, Failure> {
        if let Some(friend) = lock(&self.directory).find_friend(user) {
            return Ok(friend.clone());
        }
        let list = self.client.call_idempotent(FriendListRequest {}).await?;
        let mut directory = lock(&self.directory);
        directory.friends = list.friends;
        directory.find_friend(user).cloned().ok_or_else(|| Failure {
            status: Some(Status::NotFound),
            message: format!("{} is not your friend (see `friends`)", user_text(user)),
        })
    }

    async fn conversation(
        &self,
        conversation: &ConversationRef,
    ) -> Result<(ConversationId, Option<String>), Failure> {
        match conversation {
            ConversationRef::Friend(user) => Ok((self.friend(user).await?.conversation_id, None)),
            ConversationRef::Group(group_id) => {
                let known = lock(&self.directory)
                    .group(*group_id)
                    .map(|group| (group.conversation_id, group.name.clone()));
                if let Some((conversation_id, name)) = known {
                    return Ok((conversation_id, Some(name)));
                }
                let group = self
                    .client
                    .call_idempotent(GroupInfoRequest {
                        group_id: *group_id,
                    })
                    .await?
                    .group;
                Ok((group.conversation_id, Some(group.name)))
            }
        }
    }

    async fn wait(&mut self, count: u32, timeout: Duration) -> Result<(), Failure> {
        let target = self.waited + u64::from(count);
        let mut received = self.received.clone();
        let outcome =
            tokio::time::timeout(timeout, received.wait_for(|&received| received >= target)).await;
        match outcome {
            Ok(Ok(_)) => {
                self.waited = target;
                let line = format!("received {count} messages");
                self.respond("wait", &json!({ "received": count }), vec![line]);
                Ok(())
            }
            Ok(Err(_)) => Err(Failure::new("the connection to the server is gone")),
            Err(_) => {
                let arrived = (*self.received.borrow()).saturating_sub(self.waited);
                Err(Failure::new(format!(
                    "timed out after {}s: {arrived} of {count} messages arrived",
                    timeout.as_secs()
                )))
            }
        }
    }
}

fn user_text(user: &UserRef) -> String {
    match user {
        UserRef::Id(id) => format!("[{id}]"),
        UserRef::Name(name) => printable(name),
    }
}

/// What `login` shows: who you are, friends, groups, requests, and how many
/// missed messages follow.
fn login_summary(login: &LoginResponse) -> Vec<String> {
    let mut lines = vec![format!(
        "logged in as {} [{}]",
        printable(&login.user.name),
        login.user.id
    )];
    lines.push(format!("friends ({}):", login.friends.len()));
    lines.extend(
        login
            .friends
            .iter()
            .map(|f| format!("  {}", friend_line(f))),
    );
    lines.push(format!("groups ({}):", login.groups.len()));
    lines.extend(login.groups.iter().map(|g| format!("  {}", group_line(g))));
    if !login.incoming_requests.is_empty() || !login.outgoing_requests.is_empty() {
        lines.push("friend requests:".to_owned());
        for request in &login.incoming_requests {
            lines.push(format!("  {}", request_line(request, true)));
        }
        for request in &login.outgoing_requests {
            lines.push(format!("  {}", request_line(request, false)));
        }
    }
    let unread: u64 = login.unread.iter().map(|count| count.unread).sum();
    if unread > 0 {
        lines.push(format!(
            "{unread} unread in {} conversations (see `conversations`)",
            login.unread.len()
        ));
    }
    if login.unacked > 0 {
        lines.push(format!("{} missed messages:", login.unacked));
    }
    lines
}

/// Shows every event as it arrives and counts messages for `wait`.
async fn pump_events(
    client: Arc<Client>,
    directory: Arc<Mutex<Directory>>,
    gate: Arc<tokio::sync::Mutex<()>>,
    json: bool,
    sink: Sink,
    received: watch::Sender<u64>,
) {
    while let Some(event) = client.next_event().await {
        let _gate = gate.lock().await;
        lock(&directory).apply_event(&event);
        let line = if json {
            json_event(&event)
        } else {
            human_event(&client, &directory, &event).await
        };
        sink(line);
        if matches!(event, Event::Message(_)) {
            received.send_modify(|count| *count += 1);
        }
    }
}

async fn human_event(client: &Client, directory: &Mutex<Directory>, event: &Event) -> String {
    let group_id = match event {
        Event::Message(message) => match message.target {
            Target::Group(group_id) => Some(group_id),
            Target::User(_) => None,
        },
        Event::Group(group_event) => Some(group_event.group_id),
        _ => None,
    };
    let mut group_name = group_id.and_then(|group_id| {
        lock(directory)
            .group(group_id)
            .map(|group| group.name.clone())
    });
    if let (Some(group_id), None) = (group_id, &group_name) {
        // A group joined elsewhere or a dissolved one: ask, but never let a
        // failed lookup hold the message back.
        if let Ok(info) = client.call_idempotent(GroupInfoRequest { group_id }).await {
            group_name = Some(info.group.name.clone());
            if info.group.my_role.is_some() {
                lock(directory).upsert_group(info.group);
            }
        }
    }
    let directory = lock(directory);
    let who = |user_id| directory.who(user_id);
    match event {
        Event::Message(message) => message_line(message, group_name.as_deref()),
        Event::Group(group_event) => {
            format!(
                "* {}",
                group_event_line(group_event, group_name.as_deref(), &who)
            )
        }
        other => event_line(other, &who),
    }
}
