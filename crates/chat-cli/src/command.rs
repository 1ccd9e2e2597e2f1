//! The `chat` command language: one command per line, the same in the
//! interactive and the scripted mode. Parsing is a pure function over the
//! line, so every rule is tested without a terminal or a server.
//!
//! Arguments are separated by whitespace; an argument with spaces can be
//! written in double quotes (`remark "Bob Smith" old friend`). The last,
//! free-text argument of a command (`TEXT...`) is the rest of the line as
//! typed, so a message keeps its inner spacing and quotes.

use std::time::Duration;

use chat_proto::{GroupId, Role, UserId, UserRef};

/// Names a user on the command line: all digits is an id (account names
/// may not be all digits), anything else a name.
#[must_use]
pub fn user_ref(text: &str) -> UserRef {
    match parse_id(text) {
        Some(id) => UserRef::Id(UserId(id)),
        None => UserRef::Name(text.to_owned()),
    }
}

fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A conversation named on the command line (for `history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationRef {
    /// A friend, by name or id.
    Friend(UserRef),
    /// A group, by id.
    Group(GroupId),
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help`: list the commands.
    Help,
    /// `quit`: leave.
    Quit,
    /// `register NAME [PASSWORD]`: create an account (password prompted
    /// for, or from `CHAT_PASSWORD`, when left out).
    Register {
        /// The account name.
        name: String,
        /// The password, if given on the line.
        password: Option<String>,
    },
    /// `login NAME|ID [PASSWORD]`.
    Login {
        /// The account.
        user: UserRef,
        /// The password, if given on the line.
        password: Option<String>,
    },
    /// `logout`.
    Logout,
    /// `friends`: friends with remark, category and presence, and pending
    /// requests.
    Friends,
    /// `add NAME [GREETING...]`: ask somebody to be friends.
    Add {
        /// Whom.
        user: UserRef,
        /// An optional greeting.
        greeting: Option<String>,
    },
    /// `accept NAME`.
    Accept {
        /// Whose request.
        user: UserRef,
    },
    /// `decline NAME`.
    Decline {
        /// Whose request.
        user: UserRef,
    },
    /// `remove NAME`: end a friendship.
    Remove {
        /// The friend.
        user: UserRef,
    },
    /// `remark NAME TEXT`: set (or, with `-`, clear) a friend's remark name.
    Remark {
        /// The friend.
        user: UserRef,
        /// The remark; empty clears it.
        text: String,
    },
    /// `category NAME TEXT`: put a friend in a category (`-` clears it).
    Category {
        /// The friend.
        user: UserRef,
        /// The category; empty clears it.
        text: String,
    },
    /// `chat NAME TEXT...`: send to a friend.
    Chat {
        /// The friend.
        user: UserRef,
        /// The message.
        text: String,
    },
    /// `groups`: my groups.
    Groups,
    /// `gcreate NAME [DESCRIPTION...]`.
    GroupCreate {
        /// The group's name.
        name: String,
        /// Its description (may be empty).
        description: String,
    },
    /// `gjoin GROUP_ID`.
    GroupJoin {
        /// The group.
        group_id: GroupId,
    },
    /// `gleave GROUP_ID`.
    GroupLeave {
        /// The group.
        group_id: GroupId,
    },
    /// `gdissolve GROUP_ID`.
    GroupDissolve {
        /// The group.
        group_id: GroupId,
    },
    /// `gmembers GROUP_ID`.
    GroupMembers {
        /// The group.
        group_id: GroupId,
    },
    /// `gkick GROUP_ID NAME`.
    GroupKick {
        /// The group.
        group_id: GroupId,
        /// The member.
        user: UserRef,
    },
    /// `grole GROUP_ID NAME ROLE`.
    GroupRole {
        /// The group.
        group_id: GroupId,
        /// The member.
        user: UserRef,
        /// The new role.
        role: Role,
    },
    /// `gchat GROUP_ID TEXT...`: send to a group.
    GroupChat {
        /// The group.
        group_id: GroupId,
        /// The message.
        text: String,
    },
    /// `history NAME|GROUP_ID [N]`: the last N messages of a conversation.
    History {
        /// The conversation.
        conversation: ConversationRef,
        /// How many (default 20).
        count: u32,
    },
    /// `conversations`: the conversation list, newest first, with unread
    /// counts.
    Conversations,
    /// `recall NAME|GROUP_ID SEQ`: take back a message (one's own within the
    /// server's window; any, as a group's owner or admin).
    Recall {
        /// The conversation.
        conversation: ConversationRef,
        /// The message's sequence number (shown as `#SEQ`).
        seq: u64,
    },
    /// `wait N [SECONDS]`: wait until N more messages have arrived.
    Wait {
        /// How many messages.
        count: u32,
        /// How long at most (default 10 seconds).
        timeout: Duration,
    },
}

/// How many messages `history` shows when no count is given.
pub const DEFAULT_HISTORY: u32 = 20;
/// The most `history` can show at once (the server's page limit).
pub const MAX_HISTORY: u32 = 200;
/// How long `wait` waits when no time is given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// A line that is not a valid command; the text says what is wrong and
/// how the command is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// One entry of the command table: the word, its aliases, the usage line
/// and what it does. Drives `help` and tab completion.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// The command word.
    pub word: &'static str,
    /// Other words accepted for it.
    pub aliases: &'static [&'static str],
    /// The arguments, as shown by `help`.
    pub usage: &'static str,
    /// One line about what it does.
    pub summary: &'static str,
    /// Whether the first argument names a friend or a requester (for tab
    /// completion).
    pub takes_friend: bool,
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandSpec] = &[
    spec(
        "register",
        &[],
        "NAME [PASSWORD]",
        "create an account",
        false,
    ),
    spec("login", &[], "NAME|ID [PASSWORD]", "log in", false),
    spec("logout", &[], "", "log out", false),
    spec(
        "friends",
        &["f"],
        "",
        "list friends and friend requests",
        false,
    ),
    spec(
        "add",
        &[],
        "NAME [GREETING...]",
        "ask somebody to be friends",
        false,
    ),
    spec("accept", &[], "NAME", "accept a friend request", true),
    spec("decline", &[], "NAME", "decline a friend request", true),
    spec("remove", &[], "NAME", "end a friendship", true),
    spec(
        "remark",
        &[],
        "NAME TEXT",
        "set a friend's remark name (- clears)",
        true,
    ),
    spec(
        "category",
        &[],
        "NAME TEXT",
        "set a friend's category (- clears)",
        true,
    ),
    spec(
        "chat",
        &["msg", "say"],
        "NAME TEXT...",
        "send a message to a friend",
        true,
    ),
    spec("groups", &["g"], "", "list my groups", false),
    spec(
        "gcreate",
        &[],
        "NAME [DESCRIPTION...]",
        "create a group",
        false,
    ),
    spec("gjoin", &[], "GROUP_ID", "join a group", false),
    spec("gleave", &[], "GROUP_ID", "leave a group", false),
    spec(
        "gdissolve",
        &[],
        "GROUP_ID",
        "dissolve a group you own",
        false,
    ),
    spec("gmembers", &[], "GROUP_ID", "list a group's members", false),
    spec(
        "gkick",
        &[],
        "GROUP_ID NAME",
        "remove a member from a group",
        false,
    ),
    spec(
        "grole",
        &[],
        "GROUP_ID NAME ROLE",
        "set a member's role (owner, admin, member)",
        false,
    ),
    spec(
        "gchat",
        &["gmsg"],
        "GROUP_ID TEXT...",
        "send a message to a group",
        false,
    ),
    spec(
        "history",
        &["h"],
        "NAME|GROUP_ID [N]",
        "show the last N messages (default 20)",
        true,
    ),
    spec(
        "conversations",
        &["c", "inbox"],
        "",
        "list conversations, newest first, with unread counts",
        false,
    ),
    spec(
        "recall",
        &[],
        "NAME|GROUP_ID SEQ",
        "take back message #SEQ (yours, within the server's window)",
        true,
    ),
    spec(
        "wait",
        &[],
        "N [SECONDS]",
        "wait until N more messages have arrived (default 10 s)",
        false,
    ),
    spec("help", &["?"], "", "show this list", false),
    spec("quit", &["exit", "q"], "", "leave", false),
];

const fn spec(
    word: &'static str,
    aliases: &'static [&'static str],
    usage: &'static str,
    summary: &'static str,
    takes_friend: bool,
) -> CommandSpec {
    CommandSpec {
        word,
        aliases,
        usage,
        summary,
        takes_friend,
    }
}

/// The spec of a command word or alias.
#[must_use]
pub fn find_spec(word: &str) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|spec| spec.word == word || spec.aliases.contains(&word))
}

/// The `help` text: one line per command.
#[must_use]
pub fn help_text() -> String {
    let mut text = String::from("Commands:\n");
    for spec in COMMANDS {
        let head = if spec.usage.is_empty() {
            spec.word.to_owned()
        } else {
            format!("{} {}", spec.word, spec.usage)
        };
        text.push_str(&format!("  {head:<34} {}\n", spec.summary));
    }
    text.push_str("Times are shown in UTC.");
    text
}

/// Tab completion: the position where the word being completed starts and
/// the candidates for it. The first word completes to command words; the
/// second, for commands that name a friend, to `names`.
#[must_use]
pub fn complete(line: &str, pos: usize, names: &[String]) -> (usize, Vec<String>) {
    let Some(before) = line.get(..pos) else {
        return (pos, Vec::new());
    };
    let start = before.rfind(char::is_whitespace).map_or(0, |index| {
        index + before[index..].chars().next().map_or(1, char::len_utf8)
    });
    let prefix = &before[start..];
    let earlier: Vec<&str> = before[..start].split_whitespace().collect();
    let mut candidates: Vec<String> = match earlier.as_slice() {
        [] => COMMANDS
            .iter()
            .map(|spec| spec.word)
            .filter(|word| word.starts_with(prefix))
            .map(str::to_owned)
            .collect(),
        [word] => match find_spec(&word.to_lowercase()) {
            Some(spec) if spec.takes_friend => names
                .iter()
                .filter(|name| name.starts_with(prefix))
                .cloned()
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    candidates.sort();
    candidates.dedup();
    (start, candidates)
}

/// Splits off the first argument: a bare word, or a string in double or
/// single quotes (no escapes; the other kind of quote may appear inside).
/// Returns the argument and the rest (leading spaces removed). A quote in
/// the middle of a bare word is refused rather than kept, so that a
/// mistyped quote never silently becomes part of a name.
fn next_argument(input: &str) -> Result<Option<(String, &str)>, ParseError> {
    let input = input.trim_start();
    let Some(first) = input.chars().next() else {
        return Ok(None);
    };
    if first == '"' || first == '\'' {
        let quoted = &input[1..];
        let end = quoted
            .find(first)
            .ok_or_else(|| ParseError(format!("unterminated quote ({first})")))?;
        let rest = &quoted[end + 1..];
        if rest.starts_with(|c: char| !c.is_whitespace()) {
            return Err(ParseError(format!(
                "put a space after the closing quote ({first})"
            )));
        }
        return Ok(Some((quoted[..end].to_owned(), rest.trim_start())));
    }
    let end = input.find(char::is_whitespace).unwrap_or(input.len());
    let word = &input[..end];
    if word.contains(['"', '\'']) {
        return Err(ParseError(format!(
            "{word:?} has a quote inside; quote the whole argument ('like this')"
        )));
    }
    Ok(Some((word.to_owned(), input[end..].trim_start())))
}

/// The arguments of one command being parsed.
struct Arguments<'a> {
    rest: &'a str,
    spec: &'static CommandSpec,
}

impl<'a> Arguments<'a> {
    fn usage(&self) -> ParseError {
        ParseError(format!("usage: {} {}", self.spec.word, self.spec.usage))
    }

    fn required(&mut self) -> Result<String, ParseError> {
        self.optional()?.ok_or_else(|| self.usage())
    }

    fn optional(&mut self) -> Result<Option<String>, ParseError> {
        match next_argument(self.rest)? {
            Some((argument, rest)) => {
                self.rest = rest;
                Ok(Some(argument))
            }
            None => Ok(None),
        }
    }

    /// The rest of the line, verbatim apart from surrounding whitespace.
    fn text(&mut self) -> String {
        let text = self.rest.trim().to_owned();
        self.rest = "";
        text
    }

    fn required_text(&mut self) -> Result<String, ParseError> {
        let text = self.text();
        if text.is_empty() {
            return Err(self.usage());
        }
        Ok(text)
    }

    fn group_id(&mut self) -> Result<GroupId, ParseError> {
        let text = self.required()?;
        parse_id(&text)
            .map(GroupId)
            .ok_or_else(|| ParseError(format!("{text:?} is not a group id (a number)")))
    }

    fn number(&mut self, what: &str) -> Result<Option<u64>, ParseError> {
        match self.optional()? {
            None => Ok(None),
            Some(text) => parse_id(&text)
                .map(Some)
                .ok_or_else(|| ParseError(format!("{text:?} is not a {what} (a number)"))),
        }
    }

    fn end(&self) -> Result<(), ParseError> {
        if self.rest.trim().is_empty() {
            Ok(())
        } else {
            Err(ParseError(format!(
                "unexpected {:?}; usage: {} {}",
                self.rest.trim(),
                self.spec.word,
                self.spec.usage
            )))
        }
    }
}

/// A free-text argument where `-` means "clear".
fn clearable(text: String) -> String {
    if text == "-" {
        String::new()
    } else {
        text
    }
}

/// Parses one line. Blank lines and lines starting with `#` are `Ok(None)`.
///
/// # Errors
/// A [`ParseError`] naming the problem and the command's usage.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = match line.find(char::is_whitespace) {
        Some(end) => (&line[..end], line[end..].trim_start()),
        None => (line, ""),
    };
    let word_lower = word.to_lowercase();
    let spec = find_spec(&word_lower)
        .ok_or_else(|| ParseError(format!("unknown command {word:?}; try `help`")))?;
    let mut args = Arguments { rest, spec };
    let command = match spec.word {
        "help" => Command::Help,
        "quit" => Command::Quit,
        // A password is the rest of the line, so it may contain spaces.
        "register" => Command::Register {
            name: args.required()?,
            password: Some(args.text()).filter(|text| !text.is_empty()),
        },
        "login" => Command::Login {
            user: user_ref(&args.required()?),
            password: Some(args.text()).filter(|text| !text.is_empty()),
        },
        "logout" => Command::Logout,
        "friends" => Command::Friends,
        "add" => {
            let user = user_ref(&args.required()?);
            let greeting = Some(args.text()).filter(|text| !text.is_empty());
            Command::Add { user, greeting }
        }
        "accept" => Command::Accept {
            user: user_ref(&args.required()?),
        },
        "decline" => Command::Decline {
            user: user_ref(&args.required()?),
        },
        "remove" => Command::Remove {
            user: user_ref(&args.required()?),
        },
        "remark" => Command::Remark {
            user: user_ref(&args.required()?),
            text: clearable(args.required_text()?),
        },
        "category" => Command::Category {
            user: user_ref(&args.required()?),
            text: clearable(args.required_text()?),
        },
        "chat" => Command::Chat {
            user: user_ref(&args.required()?),
            text: args.required_text()?,
        },
        "groups" => Command::Groups,
        "gcreate" => Command::GroupCreate {
            name: args.required()?,
            description: args.text(),
        },
        "gjoin" => Command::GroupJoin {
            group_id: args.group_id()?,
        },
        "gleave" => Command::GroupLeave {
            group_id: args.group_id()?,
        },
        "gdissolve" => Command::GroupDissolve {
            group_id: args.group_id()?,
        },
        "gmembers" => Command::GroupMembers {
            group_id: args.group_id()?,
        },
        "gkick" => Command::GroupKick {
            group_id: args.group_id()?,
            user: user_ref(&args.required()?),
        },
        "grole" => {
            let group_id = args.group_id()?;
            let user = user_ref(&args.required()?);
            let role_text = args.required()?;
            let role = Role::parse(&role_text.to_lowercase()).ok_or_else(|| {
                ParseError(format!(
                    "{role_text:?} is not a role (owner, admin or member)"
                ))
            })?;
            Command::GroupRole {
                group_id,
                user,
                role,
            }
        }
        "gchat" => Command::GroupChat {
            group_id: args.group_id()?,
            text: args.required_text()?,
        },
        "history" => {
            let target = args.required()?;
            let conversation = match parse_id(&target) {
                Some(id) => ConversationRef::Group(GroupId(id)),
                None => ConversationRef::Friend(UserRef::Name(target)),
            };
            let count = args.number("count")?.unwrap_or(u64::from(DEFAULT_HISTORY));
            let count = u32::try_from(count)
                .unwrap_or(MAX_HISTORY)
                .clamp(1, MAX_HISTORY);
            Command::History {
                conversation,
                count,
            }
        }
        "conversations" => Command::Conversations,
        "recall" => {
            let target = args.required()?;
            let conversation = match parse_id(&target) {
                Some(id) => ConversationRef::Group(GroupId(id)),
                None => ConversationRef::Friend(UserRef::Name(target)),
            };
            let seq = args
                .required()?
                .trim_start_matches('#')
                .parse::<u64>()
                .map_err(|_| ParseError("SEQ is the number shown as #SEQ".to_owned()))?;
            Command::Recall { conversation, seq }
        }
        "wait" => {
            let count = args.number("count")?.ok_or_else(|| args.usage())?;
            let count = u32::try_from(count)
                .map_err(|_| ParseError(format!("{count} messages is too many to wait for")))?;
            let timeout = args
                .number("number of seconds")?
                .map_or(DEFAULT_WAIT, Duration::from_secs);
            Command::Wait { count, timeout }
        }
        other => return Err(ParseError(format!("unknown command {other:?}"))),
    };
    args.end()?;
    Ok(Some(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line).unwrap().unwrap()
    }

    fn name(text: &str) -> UserRef {
        UserRef::Name(text.to_owned())
    }

    #[test]
    fn blank_and_comment_lines_are_nothing() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \t"), Ok(None));
        assert_eq!(parse("# a comment"), Ok(None));
    }

    #[test]
    fn session_commands() {
        assert_eq!(
            ok("register alice s3cret-pass"),
            Command::Register {
                name: "alice".into(),
                password: Some("s3cret-pass".into())
            }
        );
        assert_eq!(
            ok("register alice correct horse battery"),
            Command::Register {
                name: "alice".into(),
                password: Some("correct horse battery".into())
            }
        );
        assert_eq!(
            ok("register alice"),
            Command::Register {
                name: "alice".into(),
                password: None
            }
        );
        assert_eq!(
            ok("login 42 pw"),
            Command::Login {
                user: UserRef::Id(UserId(42)),
                password: Some("pw".into())
            }
        );
        assert_eq!(
            ok("LOGIN alice"),
            Command::Login {
                user: name("alice"),
                password: None
            }
        );
        assert_eq!(ok("logout"), Command::Logout);
        assert_eq!(ok("quit"), Command::Quit);
        assert_eq!(ok("exit"), Command::Quit);
        assert_eq!(ok("help"), Command::Help);
    }

    #[test]
    fn chat_keeps_the_text_verbatim() {
        assert_eq!(
            ok("chat bob  hello,   \"world\"  "),
            Command::Chat {
                user: name("bob"),
                text: "hello,   \"world\"".into()
            }
        );
        assert_eq!(
            ok("msg \"Bob Smith\" hi"),
            Command::Chat {
                user: name("Bob Smith"),
                text: "hi".into()
            }
        );
        assert_eq!(
            ok("chat bob 😀 ünïcode'; DROP TABLE users;--"),
            Command::Chat {
                user: name("bob"),
                text: "😀 ünïcode'; DROP TABLE users;--".into()
            }
        );
    }

    #[test]
    fn friend_commands() {
        assert_eq!(ok("friends"), Command::Friends);
        assert_eq!(
            ok("add bob"),
            Command::Add {
                user: name("bob"),
                greeting: None
            }
        );
        assert_eq!(
            ok("add bob hi there"),
            Command::Add {
                user: name("bob"),
                greeting: Some("hi there".into())
            }
        );
        assert_eq!(ok("accept bob"), Command::Accept { user: name("bob") });
        assert_eq!(ok("decline bob"), Command::Decline { user: name("bob") });
        assert_eq!(
            ok("remove 7"),
            Command::Remove {
                user: UserRef::Id(UserId(7))
            }
        );
        assert_eq!(
            ok("remark bob Bobby B"),
            Command::Remark {
                user: name("bob"),
                text: "Bobby B".into()
            }
        );
        assert_eq!(
            ok("category bob -"),
            Command::Category {
                user: name("bob"),
                text: String::new()
            }
        );
    }

    #[test]
    fn group_commands() {
        assert_eq!(ok("groups"), Command::Groups);
        assert_eq!(
            ok("gcreate rust the rust fans"),
            Command::GroupCreate {
                name: "rust".into(),
                description: "the rust fans".into()
            }
        );
        assert_eq!(
            ok("gcreate rust"),
            Command::GroupCreate {
                name: "rust".into(),
                description: String::new()
            }
        );
        assert_eq!(
            ok("gjoin 3"),
            Command::GroupJoin {
                group_id: GroupId(3)
            }
        );
        assert_eq!(
            ok("gleave 3"),
            Command::GroupLeave {
                group_id: GroupId(3)
            }
        );
        assert_eq!(
            ok("gdissolve 3"),
            Command::GroupDissolve {
                group_id: GroupId(3)
            }
        );
        assert_eq!(
            ok("gmembers 3"),
            Command::GroupMembers {
                group_id: GroupId(3)
            }
        );
        assert_eq!(
            ok("gkick 3 bob"),
            Command::GroupKick {
                group_id: GroupId(3),
                user: name("bob")
            }
        );
        assert_eq!(
            ok("grole 3 bob Admin"),
            Command::GroupRole {
                group_id: GroupId(3),
                user: name("bob"),
                role: Role::Admin
            }
        );
        assert_eq!(
            ok("gchat 3 hi all"),
            Command::GroupChat {
                group_id: GroupId(3),
                text: "hi all".into()
            }
        );
    }

    #[test]
    fn history_and_wait() {
        assert_eq!(
            ok("history bob"),
            Command::History {
                conversation: ConversationRef::Friend(name("bob")),
                count: DEFAULT_HISTORY
            }
        );
        assert_eq!(
            ok("history 3 5"),
            Command::History {
                conversation: ConversationRef::Group(GroupId(3)),
                count: 5
            }
        );
        assert_eq!(
            ok("history bob 100000"),
            Command::History {
                conversation: ConversationRef::Friend(name("bob")),
                count: MAX_HISTORY
            }
        );
        assert_eq!(
            ok("wait 2"),
            Command::Wait {
                count: 2,
                timeout: DEFAULT_WAIT
            }
        );
        assert_eq!(
            ok("wait 2 30"),
            Command::Wait {
                count: 2,
                timeout: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(parse("fly away").unwrap_err().0.contains("unknown command"));
        assert_eq!(parse("chat bob").unwrap_err().0, "usage: chat NAME TEXT...");
        assert!(parse("gjoin abc").unwrap_err().0.contains("not a group id"));
        assert!(parse("gjoin").unwrap_err().0.contains("usage"));
        assert!(parse("grole 3 bob king")
            .unwrap_err()
            .0
            .contains("not a role"));
        assert!(parse("logout now").unwrap_err().0.contains("unexpected"));
        assert!(parse("wait").unwrap_err().0.contains("usage"));
        assert!(parse("wait x").is_err());
        assert!(parse("wait 99999999999").is_err());
        assert!(parse("remark \"bob").unwrap_err().0.contains("quote"));
        assert!(parse("gjoin 99999999999999999999999").is_err());
    }

    #[test]
    fn conversations_and_recall() {
        assert_eq!(ok("conversations"), Command::Conversations);
        assert_eq!(ok("inbox"), Command::Conversations);
        assert_eq!(
            ok("recall bob #12"),
            Command::Recall {
                conversation: ConversationRef::Friend(name("bob")),
                seq: 12
            }
        );
        assert_eq!(
            ok("recall 7 3"),
            Command::Recall {
                conversation: ConversationRef::Group(GroupId(7)),
                seq: 3
            }
        );
        assert!(parse("recall bob twelve").is_err());
    }

    #[test]
    fn quotes_of_either_kind_make_one_argument() {
        assert_eq!(
            ok("register 'd a v e' secretpass"),
            Command::Register {
                name: "d a v e".to_owned(),
                password: Some("secretpass".to_owned())
            }
        );
        assert_eq!(
            ok("register \"it's me\""),
            Command::Register {
                name: "it's me".to_owned(),
                password: None
            }
        );
        // A stray quote is refused, never kept as part of a name.
        assert!(parse("register 'd a").is_err());
        assert!(parse("register d'a").is_err());
        assert!(parse("register 'd'a").is_err());
        // Free text after the arguments keeps its quotes.
        assert_eq!(
            ok("chat bob it's \"fine\""),
            Command::Chat {
                user: name("bob"),
                text: "it's \"fine\"".to_owned()
            }
        );
    }

    #[test]
    fn every_command_has_a_unique_word_and_a_parse() {
        let mut words = std::collections::HashSet::new();
        for spec in COMMANDS {
            assert!(words.insert(spec.word), "{} twice", spec.word);
            for alias in spec.aliases {
                assert!(words.insert(alias), "{alias} twice");
            }
            // Every word is known to the parser: at worst a usage error.
            if let Err(error) = parse(spec.word) {
                assert!(error.0.starts_with("usage"), "{}: {error}", spec.word);
            }
        }
        assert!(help_text().contains("gcreate NAME [DESCRIPTION...]"));
    }

    #[test]
    fn completion_offers_commands_then_names() {
        let names = vec!["bob".to_owned(), "bea".to_owned(), "carol".to_owned()];
        assert_eq!(
            complete("gc", 2, &names),
            (0, vec!["gchat".to_owned(), "gcreate".to_owned()])
        );
        assert_eq!(
            complete("chat b", 6, &names),
            (5, vec!["bea".to_owned(), "bob".to_owned()])
        );
        assert_eq!(complete("chat ", 5, &names).1.len(), 3);
        assert_eq!(
            complete("accept c", 8, &names),
            (7, vec!["carol".to_owned()])
        );
        // No names where a group id or free text goes.
        assert!(complete("gjoin b", 7, &names).1.is_empty());
        assert!(complete("chat bob he", 11, &names).1.is_empty());
        // A position inside a multi-byte character completes nothing.
        assert_eq!(complete("é", 1, &names), (1, Vec::new()));
    }

    #[test]
    fn user_refs_are_ids_when_all_digits() {
        assert_eq!(user_ref("12"), UserRef::Id(UserId(12)));
        assert_eq!(user_ref("a12"), name("a12"));
        assert_eq!(user_ref(""), name(""));
    }
}
