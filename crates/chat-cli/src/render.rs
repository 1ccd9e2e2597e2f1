//! How `chat` shows things: human lines and `--json` lines. Pure functions,
//! so the formats scripts depend on are pinned by unit tests.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use chat_proto::{
    ChatMessage, Conversation, ConversationKind, Friend, FriendRequestInfo, FriendUpdateKind,
    GroupEventKind, GroupEventPush, Member, Status, Target,
};
use serde::Serialize;
use serde_json::{json, Value};

use chat_client::Event;

/// Whether times are shown in UTC rather than the local time zone.
static UTC: AtomicBool = AtomicBool::new(false);

/// Shows times in UTC (`true`, `chat --utc`) or in the local time zone
/// (the default) from now on, in this process.
pub fn set_utc(utc: bool) {
    UTC.store(utc, Ordering::Relaxed);
}

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS`, in
/// the local time zone unless [`set_utc`] chose UTC.
#[must_use]
pub fn format_time(ms: i64) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S";
    let Some(utc) = chrono::DateTime::from_timestamp_millis(ms) else {
        return format!("@{ms}");
    };
    if UTC.load(Ordering::Relaxed) {
        utc.format(FORMAT).to_string()
    } else {
        utc.with_timezone(&chrono::Local).format(FORMAT).to_string()
    }
}

/// Makes text from the network safe to print on a terminal: control
/// characters (which could move the cursor or recolour the screen) are
/// shown escaped instead of interpreted.
#[must_use]
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One message as `time #seq [id] name said: text` (or, once recalled,
/// `time #seq [id] name: (message recalled)`), prefixed with
/// `[group NAME/ID] ` for group messages (`group_name` when known).
#[must_use]
pub fn message_line(message: &ChatMessage, group_name: Option<&str>) -> String {
    let mut line = String::new();
    if let Target::Group(group_id) = message.target {
        match group_name {
            Some(name) => {
                let _ = write!(line, "[group {}/{group_id}] ", printable(name));
            }
            None => {
                let _ = write!(line, "[group {group_id}] ");
            }
        }
    }
    let _ = write!(
        line,
        "{} #{} [{}] {}",
        format_time(message.server_ts_ms),
        message.seq,
        message.sender_id,
        printable(&message.sender_name),
    );
    match message.recalled {
        Some(recalled) if recalled.by == message.sender_id => {
            line.push_str(": (message recalled)");
        }
        Some(recalled) => {
            let _ = write!(line, ": (message removed by [{}])", recalled.by);
        }
        None => {
            let _ = write!(line, " said: {}", printable(&message.body));
        }
    }
    line
}

/// One entry of the conversation list: name (remark first), unread count,
/// presence, and the newest message.
#[must_use]
pub fn conversation_line(conversation: &Conversation) -> String {
    let mut line = match (&conversation.peer, &conversation.group) {
        (Some(peer), _) => {
            let name = peer.remark.as_deref().filter(|remark| !remark.is_empty());
            format!(
                "{} [{}] {}",
                printable(name.unwrap_or(&peer.name)),
                peer.id,
                if peer.online { "online" } else { "offline" }
            )
        }
        (None, Some(group)) => format!("[group {}/{}]", printable(&group.name), group.id),
        (None, None) => match conversation.kind {
            ConversationKind::Direct => format!("conversation {}", conversation.conversation_id),
            ConversationKind::Group => {
                format!("group conversation {}", conversation.conversation_id)
            }
        },
    };
    if conversation.unread > 0 {
        let _ = write!(line, ", {} unread", conversation.unread);
    }
    if let Some(last) = &conversation.last_message {
        let _ = write!(
            line,
            " | {} {}: {}",
            format_time(last.server_ts_ms),
            printable(&last.sender_name),
            if last.recalled {
                "(message recalled)".to_owned()
            } else {
                printable(&last.preview)
            }
        );
    }
    line
}

/// A friend as one line: name, id, remark, category, presence.
#[must_use]
pub fn friend_line(friend: &Friend) -> String {
    let mut line = format!(
        "{} [{}] {}",
        printable(&friend.name),
        friend.id,
        if friend.online { "online" } else { "offline" }
    );
    if let Some(remark) = friend.remark.as_deref().filter(|r| !r.is_empty()) {
        let _ = write!(line, ", remark: {}", printable(remark));
    }
    if let Some(category) = friend.category.as_deref().filter(|c| !c.is_empty()) {
        let _ = write!(line, ", category: {}", printable(category));
    }
    line
}

/// A pending friend request as one line, from the point of view of `me`.
#[must_use]
pub fn request_line(request: &FriendRequestInfo, incoming: bool) -> String {
    let mut line = if incoming {
        format!(
            "{} [{}] wants to be your friend (accept {0} / decline {0})",
            printable(&request.from.name),
            request.from.id
        )
    } else {
        format!(
            "you asked {} [{}] to be friends",
            printable(&request.to.name),
            request.to.id
        )
    };
    if let Some(message) = request.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = write!(line, ": \"{}\"", printable(message));
    }
    line
}

/// A group as one line.
#[must_use]
pub fn group_line(group: &chat_proto::Group) -> String {
    let mut line = format!(
        "{} [{}] {} members",
        printable(&group.name),
        group.id,
        group.member_count
    );
    if let Some(role) = group.my_role {
        let _ = write!(line, ", you are {}", role.as_str());
    }
    if !group.description.is_empty() {
        let _ = write!(line, " - {}", printable(&group.description));
    }
    line
}

/// A group member as one line.
#[must_use]
pub fn member_line(member: &Member) -> String {
    format!(
        "{} [{}] {}, {}",
        printable(&member.name),
        member.id,
        member.role.as_str(),
        if member.online { "online" } else { "offline" }
    )
}

/// A group event as one line; `who` names user ids where known.
#[must_use]
pub fn group_event_line(
    event: &GroupEventPush,
    group_name: Option<&str>,
    who: &dyn Fn(chat_proto::UserId) -> String,
) -> String {
    let group = match group_name {
        Some(name) => format!("[group {}/{}]", printable(name), event.group_id),
        None => format!("[group {}]", event.group_id),
    };
    let user = who(event.user_id);
    let actor = who(event.actor_id);
    let what = match event.kind {
        GroupEventKind::Joined => format!("{user} joined"),
        GroupEventKind::Left => format!("{user} left"),
        GroupEventKind::Kicked => format!("{user} was removed by {actor}"),
        GroupEventKind::RoleChanged => format!(
            "{user} is now {}",
            event.role.map_or("?", chat_proto::Role::as_str)
        ),
        GroupEventKind::Dissolved => format!("dissolved by {actor}"),
    };
    format!("{group} {what}")
}

/// A non-message event as one human line (messages use [`message_line`]).
#[must_use]
pub fn event_line(event: &Event, who: &dyn Fn(chat_proto::UserId) -> String) -> String {
    match event {
        Event::Message(message) => message_line(message, None),
        Event::FriendRequest(request) => format!("* {}", request_line(request, true)),
        Event::FriendUpdate(update) => {
            let name = printable(&update.user.name);
            match update.kind {
                FriendUpdateKind::Accepted => format!("* {name} accepted: you are now friends"),
                FriendUpdateKind::Declined => format!("* {name} declined your friend request"),
                FriendUpdateKind::Removed => format!("* {name} is no longer your friend"),
            }
        }
        Event::Presence(presence) => format!(
            "* {} is {}",
            who(presence.user_id),
            if presence.online { "online" } else { "offline" }
        ),
        Event::Group(group_event) => format!("* {}", group_event_line(group_event, None, who)),
        Event::Read(read) => format!(
            "* {} read up to #{} (conversation {})",
            who(read.user_id),
            read.read_seq,
            read.conversation_id
        ),
        Event::Typing(typing) => format!(
            "* {} is typing… (conversation {})",
            who(typing.user_id),
            typing.conversation_id
        ),
        Event::Recall(recall) => format!(
            "* message #{} of conversation {} was recalled by {}",
            recall.seq,
            recall.conversation_id,
            who(recall.recalled.by)
        ),
        Event::GroupJoinRequest(request) => format!(
            "* {} [{}] asks to join group {}",
            printable(&request.user.name),
            request.user.id,
            request.group_id
        ),
        Event::GroupInvitation(invitation) => format!(
            "* {} invites you to group {}/{} (join it to accept)",
            printable(&invitation.inviter.name),
            printable(&invitation.group.name),
            invitation.group.id
        ),
        Event::SessionEnded(ended) => {
            format!(
                "* session ended by the server: {}",
                printable(&ended.message)
            )
        }
        Event::Disconnected { reason } => format!("* connection lost ({reason}); reconnecting"),
        Event::Reconnected { address, login } => match login {
            Some(_) => format!("* reconnected to {address}; session resumed"),
            None => format!("* reconnected to {address}"),
        },
        Event::LoginFailed { error } => format!("* could not log in again: {error}"),
        Event::GaveUp { error } => format!("* gave up reconnecting: {error}"),
    }
}

/// The `--json` line of a successful command: `{"type":"response",
/// "command":..., "ok":true, "data":...}`, plus any `extra` top-level fields
/// (a `gcreate` line carries `"group_id"`).
#[must_use]
pub fn json_response(command: &str, data: &impl Serialize, extra: &[(&str, Value)]) -> String {
    let mut line = json!({
        "type": "response",
        "command": command,
        "ok": true,
        "data": data,
    });
    if let Value::Object(map) = &mut line {
        for (key, value) in extra {
            map.insert((*key).to_owned(), value.clone());
        }
    }
    line.to_string()
}

/// The `--json` line of a failed command.
#[must_use]
pub fn json_error(command: &str, status: Option<Status>, message: &str) -> String {
    json!({
        "type": "response",
        "command": command,
        "ok": false,
        "status": status.map(Status::name),
        "error": message,
    })
    .to_string()
}

/// The `--json` line of an event: `{"type":"event","event":...,"data":...}`.
#[must_use]
pub fn json_event(event: &Event) -> String {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("type".to_owned(), Value::String("event".to_owned()));
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use chat_proto::{ConversationId, GroupId, Seq, UserId, UserSummary};

    use super::*;

    fn message(target: Target, body: &str) -> ChatMessage {
        ChatMessage {
            conversation_id: ConversationId(1),
            seq: Seq(1),
            sender_id: UserId(2),
            sender_name: "bob".to_owned(),
            target,
            client_msg_id: "x".to_owned(),
            body: body.to_owned(),
            server_ts_ms: 1_700_000_000_123,
            recalled: None,
        }
    }

    #[test]
    fn times_are_utc_calendar_dates() {
        set_utc(true);
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_time(-1000), "1969-12-31 23:59:59");
    }

    #[test]
    fn message_lines_have_the_documented_shape() {
        set_utc(true);
        assert_eq!(
            message_line(&message(Target::User(UserId(1)), "hi"), None),
            "2023-11-14 22:13:20 #1 [2] bob said: hi"
        );
        assert_eq!(
            message_line(&message(Target::Group(GroupId(3)), "hi"), Some("rust")),
            "[group rust/3] 2023-11-14 22:13:20 #1 [2] bob said: hi"
        );
        assert_eq!(
            message_line(&message(Target::Group(GroupId(3)), "hi"), None),
            "[group 3] 2023-11-14 22:13:20 #1 [2] bob said: hi"
        );
        let mut recalled = message(Target::Group(GroupId(3)), "");
        recalled.recalled = Some(chat_proto::Recalled {
            by: UserId(2),
            at_ms: 1_700_000_001_000,
        });
        assert_eq!(
            message_line(&recalled, None),
            "[group 3] 2023-11-14 22:13:20 #1 [2] bob: (message recalled)"
        );
        recalled.recalled = Some(chat_proto::Recalled {
            by: UserId(9),
            at_ms: 1_700_000_001_000,
        });
        assert!(message_line(&recalled, None).ends_with("bob: (message removed by [9])"));
    }

    #[test]
    fn conversation_lines_show_remark_unread_and_preview() {
        set_utc(true);
        let conversation = Conversation {
            conversation_id: ConversationId(4),
            kind: ConversationKind::Direct,
            peer: Some(chat_proto::Peer {
                id: UserId(2),
                name: "bob".to_owned(),
                remark: Some("Bobby".to_owned()),
                online: true,
            }),
            group: None,
            last_message: Some(chat_proto::MessagePreview {
                seq: Seq(7),
                sender_id: UserId(2),
                sender_name: "bob".to_owned(),
                preview: "see you\x1b".to_owned(),
                server_ts_ms: 1_700_000_000_123,
                recalled: false,
            }),
            last_seq: Seq(7),
            read_seq: Seq(5),
            unread: 2,
            last_activity_ms: 1_700_000_000_123,
        };
        assert_eq!(
            conversation_line(&conversation),
            "Bobby [2] online, 2 unread | 2023-11-14 22:13:20 bob: see you\\u{1b}"
        );
    }

    #[test]
    fn control_characters_are_not_sent_to_the_terminal() {
        let line = message_line(&message(Target::User(UserId(1)), "a\x1b[2Jb\nc"), None);
        assert!(line.ends_with("said: a\\u{1b}[2Jb\\nc"), "{line}");
        assert_eq!(printable("héllo 😀"), "héllo 😀");
    }

    #[test]
    fn json_lines_carry_type_command_and_data() {
        let line = json_response(
            "gcreate",
            &json!({"group": {"id": 5}}),
            &[("group_id", json!(5))],
        );
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["type"], "response");
        assert_eq!(value["command"], "gcreate");
        assert_eq!(value["ok"], true);
        assert_eq!(value["group_id"], 5);
        assert_eq!(value["data"]["group"]["id"], 5);

        let line = json_error("chat", Some(Status::Forbidden), "not friends");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["ok"], false);
        assert_eq!(value["status"], "forbidden");

        let line = json_event(&Event::Message(message(Target::User(UserId(1)), "hi")));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["type"], "event");
        assert_eq!(value["event"], "message");
        assert_eq!(value["data"]["body"], "hi");
    }

    #[test]
    fn requests_and_friends_read_naturally() {
        let request = FriendRequestInfo {
            from: UserSummary {
                id: UserId(2),
                name: "bob".to_owned(),
            },
            to: UserSummary {
                id: UserId(1),
                name: "alice".to_owned(),
            },
            message: Some("hi".to_owned()),
            created_at_ms: 0,
        };
        assert_eq!(
            request_line(&request, true),
            "bob [2] wants to be your friend (accept bob / decline bob): \"hi\""
        );
        assert_eq!(
            request_line(&request, false),
            "you asked alice [1] to be friends: \"hi\""
        );
        let friend = Friend {
            id: UserId(2),
            name: "bob".to_owned(),
            remark: Some("Bobby".to_owned()),
            category: None,
            online: true,
            conversation_id: ConversationId(1),
        };
        assert_eq!(friend_line(&friend), "bob [2] online, remark: Bobby");
    }
}
