//! Operating chatd: what `chatd admin` does, and the admin endpoint of a
//! running node that it talks to.
//!
//! Most commands work on the store directly (the one the configuration
//! names, SQLite or MySQL), whether or not a node is running on it: SQLite
//! lets another process write between chatd's own batches, and MySQL is
//! shared anyway. What only a running node knows (its sessions) comes from
//! the node's admin [`endpoint`], asked by [`node::Node`]; a command that
//! changes an account so that its sessions must end (disable, delete,
//! password reset) ends them through that endpoint, which ends them on
//! every node of a cluster.
//!
//! [`run`] returns a [`Report`]: text for people, JSON for scripts, and
//! warnings for standard error. Failures are one-line [`AdminError`]s.

pub mod endpoint;
pub mod format;
pub mod node;
mod password;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use chat_proto::{GroupId, UserId, UserRef};
use chat_store::admin::like_pattern;
use chat_store::{AccountRecord, Store};
use serde_json::{json, Value};

use crate::auth::{Passwords, Priority};
use crate::config::Config;
use crate::context::now_ms;
use crate::service::validate;
use endpoint::{EndRequest, EndResponse, SessionList};
use format::{maybe_time, time, Table};
use node::{Node, NodeError};

/// One `chatd admin` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Lists accounts, all or those online or whose name matches.
    UsersList {
        /// Only users with a session on the nodes asked.
        online: bool,
        /// A name pattern: `*` and `?` as in a shell; without them, a part
        /// of the name. ASCII letters match either case.
        name: Option<String>,
    },
    /// Describes one account.
    UsersShow {
        /// A name, or an id (all digits).
        user: String,
    },
    /// Creates an account (also when registration is closed).
    UsersCreate {
        /// Its name.
        name: String,
    },
    /// Sets a new password, revokes the account's tokens and ends its
    /// sessions.
    UsersResetPassword {
        /// A name or id.
        user: String,
    },
    /// Disables an account: no more logins, tokens revoked, sessions ended.
    UsersDisable {
        /// A name or id.
        user: String,
        /// A note for operators, never shown to the user.
        reason: Option<String>,
    },
    /// Lets a disabled account log in again.
    UsersEnable {
        /// A name or id.
        user: String,
    },
    /// Deletes an account for good (see `chat_store::admin`).
    UsersDelete {
        /// A name or id.
        user: String,
        /// The operator confirmed it.
        yes: bool,
    },
    /// Lists every group.
    GroupsList,
    /// Describes one group with its members.
    GroupsShow {
        /// The group.
        id: u64,
    },
    /// Dissolves a group.
    GroupsDissolve {
        /// The group.
        id: u64,
        /// The operator confirmed it.
        yes: bool,
    },
    /// Lists the sessions of the nodes asked.
    SessionsList,
    /// Ends every session of a user, on every node.
    SessionsKick {
        /// A name or id.
        user: String,
    },
    /// Counts users, groups, conversations, messages and the database's size.
    Stats,
    /// Writes a consistent copy of a live SQLite database.
    Backup {
        /// Where; must not exist.
        file: PathBuf,
    },
    /// Copies a stopped SQLite store into an empty MySQL or MariaDB
    /// database (see `chat_store::copy`).
    CopyStore {
        /// The target's store URL, `mysql://USER:PASSWORD@HOST:PORT/DATABASE`.
        to: String,
    },
}

/// How every command runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Print JSON instead of text.
    pub json: bool,
    /// The HTTP listeners of the nodes to ask (`host:port`); none means the
    /// configuration's `http_listen`.
    pub nodes: Vec<String>,
}

/// What a command has to say.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// For people.
    pub text: String,
    /// For scripts.
    pub json: Value,
    /// Things that went wrong without failing the command (its main work
    /// was done), for standard error.
    pub warnings: Vec<String>,
}

impl Report {
    fn new(text: impl Into<String>, json: Value) -> Report {
        Report {
            text: text.into(),
            json,
            warnings: Vec::new(),
        }
    }
}

/// A command that failed, with a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(pub String);

impl From<chat_store::StoreError> for AdminError {
    fn from(error: chat_store::StoreError) -> Self {
        AdminError(error.to_string())
    }
}

impl From<NodeError> for AdminError {
    fn from(error: NodeError) -> Self {
        AdminError(error.to_string())
    }
}

/// Runs one command against the store and nodes `config` names.
///
/// # Errors
/// An [`AdminError`] saying why the command did nothing (or, for a command
/// whose change was made, nothing is an error: see [`Report::warnings`]).
pub async fn run(
    config: &Config,
    options: &Options,
    command: Command,
) -> Result<Report, AdminError> {
    match command {
        Command::SessionsList => sessions_list(config, options).await,
        Command::SessionsKick { user } => sessions_kick(config, options, &user).await,
        Command::Backup { file } => backup(config, file).await,
        Command::CopyStore { to } => copy_store(config, &to).await,
        command => {
            let store = open_store(&config.store).await?;
            let result = Admin {
                config,
                options,
                store: store.clone(),
            }
            .run(command)
            .await;
            store.close().await;
            result
        }
    }
}

/// Opens the store for a command. Unlike chatd, it never creates a SQLite
/// file: a mistyped path must not look like an empty server.
async fn open_store(url: &str) -> Result<Arc<dyn Store>, AdminError> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or(rest);
        if path.contains(":memory:") {
            return Err(AdminError(
                "an in-memory store has nothing to administer".to_owned(),
            ));
        }
        if !std::path::Path::new(path).is_file() {
            return Err(AdminError(format!(
                "no database at {path} (give --store or --config)"
            )));
        }
    }
    chat_store::open(url)
        .await
        .map_err(|error| AdminError(format!("cannot open the store: {error}")))
}

/// A user named on the command line: all digits is an id, like `login 42`.
fn user_ref(text: &str) -> UserRef {
    match text.parse::<u64>() {
        Ok(id) if text.chars().all(|c| c.is_ascii_digit()) => UserRef::Id(UserId(id)),
        _ => UserRef::Name(text.to_owned()),
    }
}

/// The nodes to ask.
fn nodes(config: &Config, options: &Options) -> Result<Vec<Node>, NodeError> {
    let addresses = if options.nodes.is_empty() {
        if config.http_listen.is_empty() {
            return Err(NodeError::Unreachable {
                address: "(none)".to_owned(),
                reason: "the HTTP listener is off (http_listen is empty); give --http".to_owned(),
            });
        }
        vec![config.http_listen.clone()]
    } else {
        options.nodes.clone()
    };
    addresses
        .iter()
        .map(|address| Node::new(address, config))
        .collect()
}

/// The sessions of every node asked, with each node's address.
async fn all_sessions(
    config: &Config,
    options: &Options,
) -> Result<Vec<(String, SessionList)>, AdminError> {
    let mut lists = Vec::new();
    for node in nodes(config, options)? {
        let list = node.sessions().await?;
        lists.push((node.address().to_owned(), list));
    }
    Ok(lists)
}

/// Ends `user`'s sessions through every node asked. Never fails: the
/// account change it follows is done; what could not be done is a warning.
async fn end_sessions(
    config: &Config,
    options: &Options,
    user: UserId,
    message: &str,
) -> (Value, Vec<String>) {
    let nodes = match nodes(config, options) {
        Ok(nodes) => nodes,
        Err(NodeError::Off) => {
            return (
                Value::Null,
                vec![
                    "the admin endpoint is off (no admin_token), so sessions already open \
                     were not ended; set admin_token to end them at once"
                        .to_owned(),
                ],
            )
        }
        Err(error) => return (Value::Null, vec![format!("sessions not ended: {error}")]),
    };
    let mut ended = Vec::new();
    let mut warnings = Vec::new();
    for node in nodes {
        let request = EndRequest {
            user: UserRef::Id(user),
            message: Some(message.to_owned()),
        };
        match node.end_sessions(&request).await {
            Ok(answer) => ended.push(ended_json(node.address(), &answer)),
            Err(error @ NodeError::Unreachable { .. }) => warnings.push(format!(
                "{error}; no session there was ended (a node elsewhere? give its --http)"
            )),
            Err(error) => warnings.push(format!("sessions not ended: {error}")),
        }
    }
    (Value::Array(ended), warnings)
}

fn ended_json(address: &str, answer: &EndResponse) -> Value {
    json!({
        "http": address,
        "ended_here": answer.ended_here,
        "other_nodes_told": answer.other_nodes,
    })
}

/// "2 sessions ended" from the nodes' answers.
fn ended_text(ended: &Value) -> String {
    match ended.as_array() {
        Some(answers) => {
            let count: u64 = answers
                .iter()
                .filter_map(|answer| answer["ended_here"].as_u64())
                .sum();
            let told: u64 = answers
                .iter()
                .filter_map(|answer| answer["other_nodes_told"].as_u64())
                .sum();
            let mut text = format!("{count} session{} ended", plural(count));
            if told > 0 {
                text.push_str(&format!(
                    " here, and {told} other node{} told to end theirs",
                    plural(told)
                ));
            }
            text
        }
        None => "open sessions not ended".to_owned(),
    }
}

fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

fn account_json(account: &AccountRecord) -> Value {
    json!({
        "id": account.id,
        "name": account.name,
        "created_at_ms": account.created_at_ms,
        "last_login_at_ms": account.last_login_at_ms,
        "disabled": account.is_disabled(),
        "disabled_at_ms": account.disabled_at_ms,
        "disabled_reason": account.disabled_reason,
    })
}

fn status_text(account: &AccountRecord) -> String {
    match (account.disabled_at_ms, &account.disabled_reason) {
        (None, _) => "active".to_owned(),
        (Some(at), None) => format!("disabled since {}", time(at)),
        (Some(at), Some(reason)) => format!("disabled since {} ({reason})", time(at)),
    }
}

/// The commands that need the store.
struct Admin<'a> {
    config: &'a Config,
    options: &'a Options,
    store: Arc<dyn Store>,
}

impl Admin<'_> {
    async fn run(&self, command: Command) -> Result<Report, AdminError> {
        match command {
            Command::UsersList { online, name } => self.users_list(online, name).await,
            Command::UsersShow { user } => self.users_show(&user).await,
            Command::UsersCreate { name } => self.users_create(&name).await,
            Command::UsersResetPassword { user } => self.users_reset_password(&user).await,
            Command::UsersDisable { user, reason } => self.users_disable(&user, reason).await,
            Command::UsersEnable { user } => self.users_enable(&user).await,
            Command::UsersDelete { user, yes } => self.users_delete(&user, yes).await,
            Command::GroupsList => self.groups_list().await,
            Command::GroupsShow { id } => self.groups_show(GroupId(id)).await,
            Command::GroupsDissolve { id, yes } => self.groups_dissolve(GroupId(id), yes).await,
            Command::Stats => self.stats().await,
            Command::SessionsList
            | Command::SessionsKick { .. }
            | Command::Backup { .. }
            | Command::CopyStore { .. } => unreachable!("run without the store"),
        }
    }

    /// The live account a command names.
    async fn account(&self, text: &str) -> Result<AccountRecord, AdminError> {
        let user = match user_ref(text) {
            UserRef::Id(id) => self.store.user_by_id(id).await?,
            UserRef::Name(name) => self.store.user_by_name(&name).await?,
        };
        let account = match user {
            Some(user) => self.store.account(user.id).await?,
            None => None,
        };
        account.ok_or_else(|| AdminError(format!("no account {text:?}")))
    }

    async fn users_list(&self, online: bool, name: Option<String>) -> Result<Report, AdminError> {
        let pattern = name.as_deref().map(like_pattern);
        let mut accounts = self.store.accounts(pattern.as_deref()).await?;
        let mut sessions = std::collections::HashMap::<UserId, u64>::new();
        if online {
            for (_, list) in all_sessions(self.config, self.options).await? {
                for session in list.sessions {
                    *sessions.entry(session.user_id).or_default() += 1;
                }
            }
            accounts.retain(|account| sessions.contains_key(&account.id));
        }
        let mut headings = vec!["ID", "NAME", "CREATED", "LAST LOGIN", "STATUS"];
        if online {
            headings.push("SESSIONS");
        }
        let mut table = Table::new(&headings);
        let mut list = Vec::new();
        for account in &accounts {
            let mut row = vec![
                account.id.0.to_string(),
                account.name.clone(),
                time(account.created_at_ms),
                maybe_time(account.last_login_at_ms),
                status_text(account),
            ];
            let mut entry = account_json(account);
            if online {
                let count = sessions.get(&account.id).copied().unwrap_or(0);
                row.push(count.to_string());
                entry["sessions"] = json!(count);
            }
            table.row(row);
            list.push(entry);
        }
        let text = format!(
            "{}{} user{}\n",
            table.render(),
            accounts.len(),
            plural(accounts.len() as u64)
        );
        Ok(Report::new(text, json!({ "users": list })))
    }

    async fn users_show(&self, text: &str) -> Result<Report, AdminError> {
        let account = self.account(text).await?;
        let details = self
            .store
            .account_details(account.id)
            .await?
            .ok_or_else(|| AdminError(format!("no account {text:?}")))?;
        let mut warnings = Vec::new();
        let (sessions_text, sessions_json) = match all_sessions(self.config, self.options).await {
            Ok(lists) => {
                let mut per_node = Vec::new();
                let mut total = 0;
                let mut entries = Vec::new();
                for (address, list) in lists {
                    let mine: Vec<_> = list
                        .sessions
                        .into_iter()
                        .filter(|session| session.user_id == account.id)
                        .collect();
                    total += mine.len();
                    let node = list.node.unwrap_or(address);
                    for session in &mine {
                        entries.push(json!({
                            "node": node,
                            "session": session.session,
                            "transport": session.transport,
                            "address": session.address,
                            "logged_in_at_ms": session.logged_in_at_ms,
                        }));
                        per_node.push(format!(
                            "\n  {node}: {} from {} since {}",
                            session.transport,
                            session.address,
                            time(session.logged_in_at_ms)
                        ));
                    }
                }
                (
                    format!("{total}{}", per_node.concat()),
                    Value::Array(entries),
                )
            }
            Err(error) => {
                warnings.push(format!("sessions unknown: {error}"));
                ("unknown (no node answered)".to_owned(), Value::Null)
            }
        };
        let text = format!(
            "id:          {}\nname:        {}\ncreated:     {}\nlast login:  {}\nstatus:      {}\n\
             sessions:    {}\nfriends:     {}\ngroups:      {} (owns {})\nmessages:    {} sent\n\
             tokens:      {} (devices that can log in again without the password)\n",
            account.id.0,
            account.name,
            time(account.created_at_ms),
            account
                .last_login_at_ms
                .map_or_else(|| "never".to_owned(), time),
            status_text(&account),
            sessions_text,
            details.friends,
            details.groups,
            details.groups_owned,
            details.messages_sent,
            details.tokens,
        );
        let mut json = account_json(&account);
        json["sessions"] = sessions_json;
        json["friends"] = json!(details.friends);
        json["groups"] = json!(details.groups);
        json["groups_owned"] = json!(details.groups_owned);
        json["messages_sent"] = json!(details.messages_sent);
        json["tokens"] = json!(details.tokens);
        let mut report = Report::new(text, json);
        report.warnings = warnings;
        Ok(report)
    }

    async fn users_create(&self, name: &str) -> Result<Report, AdminError> {
        let name = &validate::user_name(name).map_err(|error| AdminError(error.message))?;
        if self.store.user_by_name(name).await?.is_some() {
            return Err(AdminError(format!("the name {name:?} is taken")));
        }
        let password = password::read_new_password(name).map_err(AdminError)?;
        let hash = Passwords::with_cost(self.config.password_hash_cost())
            .hash(password, Priority::Login)
            .await
            .map_err(|error| AdminError(error.message))?;
        let user = self.store.create_user(name, &hash, now_ms()).await?;
        Ok(Report::new(
            format!("created {} (id {})\n", user.name, user.id.0),
            json!({ "id": user.id, "name": user.name }),
        ))
    }

    async fn users_reset_password(&self, text: &str) -> Result<Report, AdminError> {
        let account = self.account(text).await?;
        let password = password::read_new_password(&account.name).map_err(AdminError)?;
        let hash = Passwords::with_cost(self.config.password_hash_cost())
            .hash(password, Priority::Login)
            .await
            .map_err(|error| AdminError(error.message))?;
        let revoked = self.store.set_password(account.id, &hash).await?;
        let (ended, warnings) = end_sessions(
            self.config,
            self.options,
            account.id,
            "your password was reset by an operator; log in with the new one",
        )
        .await;
        let mut report = Report::new(
            format!(
                "new password set for {}; {revoked} token{} revoked; {}\n",
                account.name,
                plural(revoked),
                ended_text(&ended)
            ),
            json!({ "id": account.id, "name": account.name, "tokens_revoked": revoked, "sessions_ended": ended }),
        );
        report.warnings = warnings;
        Ok(report)
    }

    async fn users_disable(
        &self,
        text: &str,
        reason: Option<String>,
    ) -> Result<Report, AdminError> {
        let account = self.account(text).await?;
        let reason = reason.filter(|reason| !reason.trim().is_empty());
        let revoked = self
            .store
            .disable_account(account.id, reason.as_deref(), now_ms())
            .await?;
        let (ended, warnings) = end_sessions(
            self.config,
            self.options,
            account.id,
            crate::service::account::DISABLED,
        )
        .await;
        let mut report = Report::new(
            format!(
                "disabled {}; {revoked} token{} revoked; {}\n",
                account.name,
                plural(revoked),
                ended_text(&ended)
            ),
            json!({
                "id": account.id,
                "name": account.name,
                "reason": reason,
                "tokens_revoked": revoked,
                "sessions_ended": ended,
            }),
        );
        report.warnings = warnings;
        Ok(report)
    }

    async fn users_enable(&self, text: &str) -> Result<Report, AdminError> {
        let account = self.account(text).await?;
        let was_disabled = self.store.enable_account(account.id).await?;
        let text = if was_disabled {
            format!("enabled {}: it can log in again\n", account.name)
        } else {
            format!("{} was not disabled\n", account.name)
        };
        Ok(Report::new(
            text,
            json!({ "id": account.id, "name": account.name, "was_disabled": was_disabled }),
        ))
    }

    async fn users_delete(&self, text: &str, yes: bool) -> Result<Report, AdminError> {
        let account = self.account(text).await?;
        if !yes {
            return Err(AdminError(format!(
                "deleting {} cannot be undone: add --yes",
                account.name
            )));
        }
        let deleted = self.store.delete_account(account.id, now_ms()).await?;
        let (ended, warnings) = end_sessions(
            self.config,
            self.options,
            account.id,
            "this account was deleted",
        )
        .await;
        let handed: Vec<String> = deleted
            .groups_handed_over
            .iter()
            .map(|(group, owner)| format!("group {} to user {}", group.0, owner.0))
            .collect();
        let dissolved: Vec<String> = deleted
            .groups_dissolved
            .iter()
            .map(|group| group.0.to_string())
            .collect();
        let mut text = format!(
            "deleted {} (id {}): {} friendship{} ended, {} message{} erased; {}\n",
            deleted.former_name,
            deleted.id.0,
            deleted.friendships_ended,
            plural(deleted.friendships_ended),
            deleted.messages_erased,
            plural(deleted.messages_erased),
            ended_text(&ended),
        );
        if !handed.is_empty() {
            text.push_str(&format!("handed over: {}\n", handed.join(", ")));
        }
        if !dissolved.is_empty() {
            text.push_str(&format!("dissolved groups: {}\n", dissolved.join(", ")));
        }
        let mut report = Report::new(
            text,
            json!({
                "id": deleted.id,
                "former_name": deleted.former_name,
                "shown_as": deleted.tombstone_name,
                "friendships_ended": deleted.friendships_ended,
                "messages_erased": deleted.messages_erased,
                "groups_handed_over": deleted.groups_handed_over.iter()
                    .map(|(group, owner)| json!({"group_id": group, "new_owner_id": owner}))
                    .collect::<Vec<_>>(),
                "groups_dissolved": deleted.groups_dissolved,
                "sessions_ended": ended,
            }),
        );
        report.warnings = warnings;
        Ok(report)
    }

    /// An account's name for display (a group's owner, a member).
    async fn name_of(&self, user: UserId) -> Result<String, AdminError> {
        Ok(self
            .store
            .user_by_id(user)
            .await?
            .map_or_else(|| format!("#{}", user.0), |user| user.name))
    }

    async fn groups_list(&self) -> Result<Report, AdminError> {
        let groups = self.store.all_groups().await?;
        let mut table = Table::new(&["ID", "NAME", "OWNER", "MEMBERS", "CREATED"]);
        let mut list = Vec::new();
        for group in &groups {
            let owner = self.name_of(group.owner_id).await?;
            table.row(vec![
                group.id.0.to_string(),
                group.name.clone(),
                owner.clone(),
                group.member_count.to_string(),
                time(group.created_at_ms),
            ]);
            list.push(json!({
                "id": group.id,
                "name": group.name,
                "description": group.description,
                "owner_id": group.owner_id,
                "owner": owner,
                "member_count": group.member_count,
                "conversation_id": group.conversation_id,
                "created_at_ms": group.created_at_ms,
            }));
        }
        let text = format!(
            "{}{} group{}\n",
            table.render(),
            groups.len(),
            plural(groups.len() as u64)
        );
        Ok(Report::new(text, json!({ "groups": list })))
    }

    async fn groups_show(&self, id: GroupId) -> Result<Report, AdminError> {
        let group = self
            .store
            .group(id)
            .await?
            .ok_or_else(|| AdminError(format!("no group {}", id.0)))?;
        let members = self.store.members(id).await?;
        let mut table = Table::new(&["ID", "NAME", "ROLE"]);
        for member in &members {
            table.row(vec![
                member.id.0.to_string(),
                member.name.clone(),
                member.role.as_str().to_owned(),
            ]);
        }
        let text = format!(
            "id:           {}\nname:         {}\ndescription:  {}\nowner:        {}\n\
             created:      {}\nconversation: {}\nmembers:      {}\n\n{}",
            group.id.0,
            group.name,
            group.description,
            self.name_of(group.owner_id).await?,
            time(group.created_at_ms),
            group.conversation_id.0,
            members.len(),
            table.render()
        );
        let json = json!({
            "id": group.id,
            "name": group.name,
            "description": group.description,
            "owner_id": group.owner_id,
            "conversation_id": group.conversation_id,
            "created_at_ms": group.created_at_ms,
            "members": members.iter().map(|member| json!({
                "id": member.id,
                "name": member.name,
                "role": member.role.as_str(),
            })).collect::<Vec<_>>(),
        });
        Ok(Report::new(text, json))
    }

    async fn groups_dissolve(&self, id: GroupId, yes: bool) -> Result<Report, AdminError> {
        let group = self
            .store
            .group(id)
            .await?
            .ok_or_else(|| AdminError(format!("no group {}", id.0)))?;
        if !yes {
            return Err(AdminError(format!(
                "dissolving group {} ({}) cannot be undone: add --yes",
                group.id.0, group.name
            )));
        }
        let members = self.store.dissolve_group(id).await?;
        Ok(Report::new(
            format!(
                "dissolved group {} ({}); it had {} member{}\n",
                group.id.0,
                group.name,
                members.len(),
                plural(members.len() as u64)
            ),
            json!({ "id": group.id, "name": group.name, "members": members }),
        ))
    }

    async fn stats(&self) -> Result<Report, AdminError> {
        let stats = self.store.stats().await?;
        let text = format!(
            "users:          {} ({} disabled; {} deleted accounts kept as tombstones)\n\
             groups:         {}\nconversations:  {}\nmessages:       {}\n\
             database:       {}, {}\n",
            stats.users,
            stats.users_disabled,
            stats.users_deleted,
            stats.groups,
            stats.conversations,
            stats.messages,
            self.store.backend(),
            format::bytes(stats.database_bytes),
        );
        Ok(Report::new(
            text,
            json!({
                "backend": self.store.backend(),
                "users": stats.users,
                "users_disabled": stats.users_disabled,
                "users_deleted": stats.users_deleted,
                "groups": stats.groups,
                "conversations": stats.conversations,
                "messages": stats.messages,
                "database_bytes": stats.database_bytes,
            }),
        ))
    }
}

async fn sessions_list(config: &Config, options: &Options) -> Result<Report, AdminError> {
    let lists = all_sessions(config, options).await?;
    let mut table = Table::new(&["NODE", "SESSION", "USER", "TRANSPORT", "ADDRESS", "SINCE"]);
    let mut nodes = Vec::new();
    let mut count = 0;
    for (address, list) in lists {
        let node = list.node.clone().unwrap_or_else(|| address.clone());
        for session in &list.sessions {
            count += 1;
            table.row(vec![
                node.clone(),
                session.session.to_string(),
                format!("{} ({})", session.user, session.user_id.0),
                session.transport.clone(),
                session.address.clone(),
                time(session.logged_in_at_ms),
            ]);
        }
        nodes.push(json!({ "http": address, "node": list.node, "sessions": list.sessions }));
    }
    let text = format!("{}{count} session{}\n", table.render(), plural(count));
    Ok(Report::new(text, json!({ "nodes": nodes })))
}

async fn sessions_kick(
    config: &Config,
    options: &Options,
    user: &str,
) -> Result<Report, AdminError> {
    let mut answers = Vec::new();
    for node in nodes(config, options)? {
        let request = EndRequest {
            user: user_ref(user),
            message: None,
        };
        let answer = node.end_sessions(&request).await?;
        answers.push(ended_json(node.address(), &answer));
    }
    let ended = Value::Array(answers);
    Ok(Report::new(
        format!("{user}: {}\n", ended_text(&ended)),
        json!({ "user": user, "sessions_ended": ended }),
    ))
}

async fn backup(config: &Config, file: PathBuf) -> Result<Report, AdminError> {
    if !config.store.starts_with("sqlite:") {
        return Err(AdminError(
            "backup copies SQLite databases; for MySQL or MariaDB use \
             mariadb-dump --single-transaction (see docs/operations.md)"
                .to_owned(),
        ));
    }
    let report = chat_store::sqlite::backup(&config.store, &file).await?;
    Ok(Report::new(
        format!(
            "backed up {} to {}: {}\n",
            report.source.display(),
            report.target.display(),
            format::bytes(report.bytes)
        ),
        json!({
            "source": report.source,
            "target": report.target,
            "bytes": report.bytes,
        }),
    ))
}

async fn copy_store(config: &Config, to: &str) -> Result<Report, AdminError> {
    if !config.store.starts_with("sqlite:") {
        return Err(AdminError(format!(
            "copy-store copies a SQLite store, and the store is {} \
             (give the SQLite one with --store sqlite://PATH or --config)",
            without_password(&config.store)
        )));
    }
    // A long copy shows how far it got, to a person watching; scripts get
    // only the report.
    let watched = std::io::stderr().is_terminal();
    let report = chat_store::copy_sqlite_to_mysql(&config.store, to, |table| {
        if watched {
            eprintln!(
                "copied {}: {} row{}",
                table.table,
                table.rows,
                plural(table.rows)
            );
        }
    })
    .await
    .map_err(|error| match error {
        chat_store::StoreError::Config(reason) => AdminError(format!("nothing copied: {reason}")),
        error => AdminError(format!("nothing copied: {error}")),
    })?;
    let target = without_password(to);
    let mut table = Table::new(&["TABLE", "ROWS"]);
    for copied in &report.tables {
        table.row(vec![copied.table.clone(), copied.rows.to_string()]);
    }
    let rows: u64 = report.tables.iter().map(|copied| copied.rows).sum();
    let mut text = format!(
        "copied {} to {target}\n{}{rows} row{} in {} tables; every table's count matches\n",
        report.source.display(),
        table.render(),
        plural(rows),
        report.tables.len(),
    );
    if !report.id_counters.is_empty() {
        let counters: Vec<String> = report
            .id_counters
            .iter()
            .map(|counter| format!("{} from {}", counter.table, counter.next_id))
            .collect();
        text.push_str(&format!("new ids continue: {}\n", counters.join(", ")));
    }
    Ok(Report::new(
        text,
        json!({
            "source": report.source,
            "target": target,
            "tables": report.tables.iter()
                .map(|copied| json!({"table": copied.table, "rows": copied.rows}))
                .collect::<Vec<_>>(),
            "rows": rows,
            "id_counters": report.id_counters.iter()
                .map(|counter| json!({"table": counter.table, "next_id": counter.next_id}))
                .collect::<Vec<_>>(),
        }),
    ))
}

/// A store URL fit to print: the password, if any, replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            without_password("mysql://chat:s3cr@t@db:3306/chat"),
            "mysql://chat:***@db:3306/chat"
        );
        assert_eq!(
            without_password("mysql://root@db/chat"),
            "mysql://root@db/chat"
        );
        assert_eq!(
            without_password("sqlite:///var/lib/chatd/chat.db"),
            "sqlite:///var/lib/chatd/chat.db"
        );
    }

    #[test]
    fn digits_name_an_id() {
        assert_eq!(user_ref("42"), UserRef::Id(UserId(42)));
        assert_eq!(user_ref("alice"), UserRef::Name("alice".to_owned()));
        assert_eq!(user_ref("+42"), UserRef::Name("+42".to_owned()));
    }

    #[test]
    fn ended_sessions_read_well() {
        let ended = json!([{"ended_here": 2, "other_nodes_told": 1}]);
        assert_eq!(
            ended_text(&ended),
            "2 sessions ended here, and 1 other node told to end theirs"
        );
        assert_eq!(
            ended_text(&json!([{"ended_here": 1, "other_nodes_told": 0}])),
            "1 session ended"
        );
        assert_eq!(ended_text(&Value::Null), "open sessions not ended");
    }
}
