//! Typed messages: every request, response and push, and the one table of
//! type codes that maps them to the wire.
//!
//! A request of type `T` is answered by a response frame of the same type `T`
//! with the RESPONSE flag set. On success the response payload is the type's
//! response struct; on failure the status is non-zero and the payload is an
//! [`ErrorBody`]. Pushes use their own type codes (`0x8000` and above) and the
//! PUSH flag.

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::error::MessageError;
use crate::frame::{encode_json, Flags, Frame};
use crate::ids::{ConversationId, GroupId, Seq, UserId};
use crate::status::Status;

/// Declares the type-code table once and derives from it [`MessageType`],
/// [`Request`], [`Response`] and [`Push`] with their conversions.
macro_rules! message_table {
    (
        requests { $( $(#[$rdoc:meta])* $rname:ident = $rcode:literal, $rwire:literal, $req:ty => $resp:ty; )* }
        pushes { $( $(#[$pdoc:meta])* $pname:ident = $pcode:literal, $pwire:literal, $push:ty; )* }
    ) => {
        /// Every message type code, requests (below `0x8000`) and pushes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum MessageType {
            $( $(#[$rdoc])* $rname = $rcode, )*
            $( $(#[$pdoc])* $pname = $pcode, )*
        }

        impl MessageType {
            /// Every request type, in table order.
            pub const REQUESTS: &'static [MessageType] = &[$(MessageType::$rname),*];
            /// Every push type, in table order.
            pub const PUSHES: &'static [MessageType] = &[$(MessageType::$pname),*];

            /// The type with this wire code, if there is one.
            #[must_use]
            pub fn from_code(code: u16) -> Option<MessageType> {
                match code {
                    $( $rcode => Some(MessageType::$rname), )*
                    $( $pcode => Some(MessageType::$pname), )*
                    _ => None,
                }
            }

            /// The wire code.
            #[must_use]
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The stable snake_case name (`"friend_add"`), as in the docs.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $( MessageType::$rname => $rwire, )*
                    $( MessageType::$pname => $pwire, )*
                }
            }

            /// Whether this type is a push (server to client only).
            #[must_use]
            pub fn is_push(self) -> bool {
                match self {
                    $( MessageType::$pname => true, )*
                    _ => false,
                }
            }
        }

        /// A request from client to server.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Request {
            $( $(#[$rdoc])* $rname($req), )*
        }

        impl Request {
            /// This request's type.
            #[must_use]
            pub fn message_type(&self) -> MessageType {
                match self {
                    $( Request::$rname(_) => MessageType::$rname, )*
                }
            }

            /// Parses a request payload of the given type code.
            ///
            /// # Errors
            /// [`MessageError::UnknownType`] for an unknown or push type code,
            /// [`MessageError::InvalidPayload`] for a payload of the wrong shape.
            pub fn from_payload(code: u16, payload: &[u8]) -> Result<Request, MessageError> {
                match MessageType::from_code(code) {
                    $( Some(MessageType::$rname) => parse(MessageType::$rname, payload).map(Request::$rname), )*
                    _ => Err(MessageError::UnknownType(code)),
                }
            }
        }

        /// A successful answer to a request.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Response {
            $( $(#[$rdoc])* $rname($resp), )*
        }

        impl Response {
            /// The type of the request this answers.
            #[must_use]
            pub fn message_type(&self) -> MessageType {
                match self {
                    $( Response::$rname(_) => MessageType::$rname, )*
                }
            }

            /// Parses a successful response payload of the given type code.
            ///
            /// # Errors
            /// As [`Request::from_payload`].
            pub fn from_payload(code: u16, payload: &[u8]) -> Result<Response, MessageError> {
                match MessageType::from_code(code) {
                    $( Some(MessageType::$rname) => parse(MessageType::$rname, payload).map(Response::$rname), )*
                    _ => Err(MessageError::UnknownType(code)),
                }
            }
        }

        $(
            impl Call for $req {
                type Response = $resp;
                const TYPE: MessageType = MessageType::$rname;

                fn into_request(self) -> Request {
                    Request::$rname(self)
                }

                fn from_response(response: Response) -> Result<$resp, Box<Response>> {
                    match response {
                        Response::$rname(response) => Ok(response),
                        other => Err(Box::new(other)),
                    }
                }
            }
        )*

        /// A server-initiated message.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Push {
            $( $(#[$pdoc])* $pname($push), )*
        }

        impl Push {
            /// This push's type.
            #[must_use]
            pub fn message_type(&self) -> MessageType {
                match self {
                    $( Push::$pname(_) => MessageType::$pname, )*
                }
            }

            /// Parses a push payload of the given type code.
            ///
            /// # Errors
            /// [`MessageError::UnknownType`] for an unknown or request type code,
            /// [`MessageError::InvalidPayload`] for a payload of the wrong shape.
            pub fn from_payload(code: u16, payload: &[u8]) -> Result<Push, MessageError> {
                match MessageType::from_code(code) {
                    $( Some(MessageType::$pname) => parse(MessageType::$pname, payload).map(Push::$pname), )*
                    _ => Err(MessageError::UnknownType(code)),
                }
            }
        }
    };
}

/// A request type with its response type, from the one message table: a
/// client sends any request through one generic call (`Connection::call` in
/// the client library) and gets the typed answer back, so a new request
/// type needs no hand-written wrapper.
pub trait Call: Sized {
    /// What a successful answer carries.
    type Response;
    /// The request's type code.
    const TYPE: MessageType;

    /// The request as the enum of all requests.
    fn into_request(self) -> Request;

    /// The typed answer, or the response given back when it answers another
    /// type.
    ///
    /// # Errors
    /// The response itself, when it is not this type's.
    fn from_response(response: Response) -> Result<Self::Response, Box<Response>>;
}

fn parse<T: for<'de> Deserialize<'de>>(
    message_type: MessageType,
    payload: &[u8],
) -> Result<T, MessageError> {
    parse_object(payload).map_err(|source| MessageError::InvalidPayload {
        message_type: message_type.name(),
        source,
    })
}

/// Parses a payload that must be one JSON object.
///
/// serde's derived structs also accept a JSON array of the fields in order
/// (`["alice", "secret"]` would parse as a register request), which the
/// protocol does not allow: a payload is always an object, so that fields are
/// named and a client in another language never depends on field order.
fn parse_object<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, serde_json::Error> {
    let first = payload
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'));
    if first.is_some_and(|&byte| byte != b'{') {
        return Err(serde::de::Error::custom(
            "the payload must be a JSON object",
        ));
    }
    serde_json::from_slice(payload)
}

message_table! {
    requests {
        /// Liveness check; also keeps an idle connection open.
        Ping = 0x0001, "ping", PingRequest => PingResponse;
        /// Creates an account.
        Register = 0x0002, "register", RegisterRequest => RegisterResponse;
        /// Authenticates the session with a password or a session token.
        Login = 0x0003, "login", LoginRequest => LoginResponse;
        /// Ends the session's login and revokes its token.
        Logout = 0x0004, "logout", LogoutRequest => LogoutResponse;
        /// Lists the user's logins (tokens), one per device.
        SessionList = 0x0010, "session_list", SessionListRequest => SessionListResponse;
        /// Ends one of the user's other logins: revokes its token and ends
        /// the sessions that hold it.
        SessionRevoke = 0x0011, "session_revoke", SessionRevokeRequest => SessionRevokeResponse;

        /// Asks another user to become a friend (accepts theirs if they asked first).
        FriendAdd = 0x0101, "friend_add", FriendAddRequest => FriendAddResponse;
        /// Accepts or declines a pending friend request.
        FriendRespond = 0x0102, "friend_respond", FriendRespondRequest => FriendRespondResponse;
        /// Ends a friendship.
        FriendRemove = 0x0103, "friend_remove", FriendRemoveRequest => FriendRemoveResponse;
        /// Lists friends and pending requests.
        FriendList = 0x0104, "friend_list", FriendListRequest => FriendListResponse;
        /// Sets the remark name and/or category of a friend.
        FriendUpdate = 0x0105, "friend_update", FriendUpdateRequest => FriendUpdateResponse;

        /// Creates a group; the creator becomes its owner.
        GroupCreate = 0x0201, "group_create", GroupCreateRequest => GroupCreateResponse;
        /// Joins a group as a member.
        GroupJoin = 0x0202, "group_join", GroupJoinRequest => GroupJoinResponse;
        /// Leaves a group (an owner must dissolve or hand over first).
        GroupLeave = 0x0203, "group_leave", GroupLeaveRequest => GroupLeaveResponse;
        /// Dissolves a group (owner only).
        GroupDissolve = 0x0204, "group_dissolve", GroupDissolveRequest => GroupDissolveResponse;
        /// Removes a member (owner, or admin removing a plain member).
        GroupKick = 0x0205, "group_kick", GroupKickRequest => GroupKickResponse;
        /// Changes a member's role (owner only).
        GroupSetRole = 0x0206, "group_set_role", GroupSetRoleRequest => GroupSetRoleResponse;
        /// Describes one group.
        GroupInfo = 0x0207, "group_info", GroupInfoRequest => GroupInfoResponse;
        /// Lists a group's members with role and presence.
        GroupMembers = 0x0208, "group_members", GroupMembersRequest => GroupMembersResponse;
        /// Lists the groups the session's user belongs to.
        GroupList = 0x0209, "group_list", GroupListRequest => GroupListResponse;
        /// Sets who may join a group (owner or admin).
        GroupSetPolicy = 0x020A, "group_set_policy", GroupSetPolicyRequest => GroupSetPolicyResponse;
        /// Invites a user to a group (any member).
        GroupInvite = 0x020B, "group_invite", GroupInviteRequest => GroupInviteResponse;
        /// Accepts or refuses a request to join (owner or admin).
        GroupRespondJoin = 0x020C, "group_respond_join", GroupRespondJoinRequest => GroupRespondJoinResponse;
        /// Lets a banned user join again (owner or admin).
        GroupUnban = 0x020D, "group_unban", GroupUnbanRequest => GroupUnbanResponse;

        /// Sends a message to a friend or a group.
        Send = 0x0301, "send", SendRequest => SendResponse;
        /// Acknowledges delivery up to a sequence number in a conversation.
        Ack = 0x0302, "ack", AckRequest => AckResponse;
        /// Pages through a conversation's history.
        History = 0x0303, "history", HistoryRequest => HistoryResponse;
        /// Returns the messages a client has not seen yet.
        Sync = 0x0304, "sync", SyncRequest => SyncResponse;
        /// Lists the user's conversations, most recent activity first, with unread counts.
        ConversationList = 0x0305, "conversation_list", ConversationListRequest => ConversationListResponse;
        /// Moves the user's read position in a conversation (a read receipt).
        Read = 0x0306, "read", ReadRequest => ReadResponse;
        /// Where every member of a conversation has read up to.
        ReadPositions = 0x0307, "read_positions", ReadPositionsRequest => ReadPositionsResponse;
        /// Tells the other participants the user is typing (not stored).
        Typing = 0x0308, "typing", TypingRequest => TypingResponse;
        /// Takes a message back: it becomes a tombstone for everyone.
        Recall = 0x0309, "recall", RecallRequest => RecallResponse;
    }
    pushes {
        /// A new message in one of the user's conversations.
        PushMessage = 0x8001, "push_message", ChatMessage;
        /// Somebody asks the user to be friends.
        PushFriendRequest = 0x8002, "push_friend_request", FriendRequestPush;
        /// A friend request the user sent was answered, or a friendship ended.
        PushFriendUpdate = 0x8003, "push_friend_update", FriendUpdatePush;
        /// A friend or group member came online or went offline.
        PushPresence = 0x8004, "push_presence", PresencePush;
        /// Something happened in a group the user belongs to (or belonged to).
        PushGroupEvent = 0x8005, "push_group_event", GroupEventPush;
        /// The server is ending this session; the reason says whether to reconnect.
        PushSessionEnded = 0x8006, "push_session_ended", SessionEndedPush;
        /// A participant (or the user on another device) read a conversation up to a seq.
        PushRead = 0x8007, "push_read", ReadPush;
        /// A participant is typing in a conversation.
        PushTyping = 0x8008, "push_typing", TypingPush;
        /// A message was recalled or removed; it is a tombstone now.
        PushRecall = 0x8009, "push_recall", RecallPush;
        /// Somebody asks to join a group the user owns or administers.
        PushGroupJoinRequest = 0x800A, "push_group_join_request", GroupJoinRequestPush;
        /// The user was invited to a group.
        PushGroupInvitation = 0x800B, "push_group_invitation", GroupInvitationPush;
    }
}

impl Request {
    /// Appends this request as a frame with the given request id.
    ///
    /// # Errors
    /// [`MessageError::Encode`] (not produced by any type in this crate).
    pub fn encode(&self, request_id: u32, buf: &mut BytesMut) -> Result<(), MessageError> {
        encode_json(
            buf,
            Flags::REQUEST,
            self.message_type().code(),
            Status::Ok,
            request_id,
            self,
        )
    }
}

impl Response {
    /// Appends this response as a frame answering `request_id`.
    ///
    /// # Errors
    /// [`MessageError::Encode`] (not produced by any type in this crate).
    pub fn encode(&self, request_id: u32, buf: &mut BytesMut) -> Result<(), MessageError> {
        encode_json(
            buf,
            Flags::RESPONSE,
            self.message_type().code(),
            Status::Ok,
            request_id,
            self,
        )
    }
}

impl Push {
    /// Appends this push as a frame (request id 0).
    ///
    /// # Errors
    /// [`MessageError::Encode`] (not produced by any type in this crate).
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), MessageError> {
        encode_json(
            buf,
            Flags::PUSH,
            self.message_type().code(),
            Status::Ok,
            0,
            self,
        )
    }
}

/// The payload of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The status name, e.g. `"not_found"`.
    pub error: Status,
    /// A human-readable explanation.
    pub message: String,
}

impl ErrorBody {
    /// Appends an error response frame for a request of type `message_type`
    /// (the raw code, since it may be one this side does not know).
    pub fn encode(&self, message_type: u16, request_id: u32, buf: &mut BytesMut) {
        // An ErrorBody is a status name and a string: it always serializes.
        let _ = encode_json(
            buf,
            Flags::RESPONSE,
            message_type,
            self.error,
            request_id,
            self,
        );
    }
}

/// What a client does with a frame it received: a decoded reply to one of
/// its requests, or a push.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// The answer to the request with this id: a response or an error.
    Reply {
        /// The request id echoed by the server.
        request_id: u32,
        /// The response, or the error status and body.
        result: Result<Response, ErrorBody>,
    },
    /// A server-initiated push.
    Push(Push),
}

impl ServerMessage {
    /// Interprets a frame received by a client.
    ///
    /// # Errors
    /// A [`MessageError`] when the frame is a request, of an unknown type, or
    /// its payload does not parse.
    pub fn from_frame(frame: &Frame) -> Result<ServerMessage, MessageError> {
        let header = &frame.header;
        if header.flags.is_push() {
            return Push::from_payload(header.message_type, &frame.payload)
                .map(ServerMessage::Push);
        }
        if !header.flags.is_response() {
            return Err(MessageError::UnknownType(header.message_type));
        }
        let result = if header.status == Status::Ok.code() {
            Ok(Response::from_payload(header.message_type, &frame.payload)?)
        } else {
            let mut body: ErrorBody =
                parse_object(&frame.payload).map_err(|source| MessageError::InvalidPayload {
                    message_type: "error",
                    source,
                })?;
            // The header's status is authoritative; the body's name is for humans.
            if let Some(status) = Status::from_code(header.status) {
                body.error = status;
            }
            Err(body)
        };
        Ok(ServerMessage::Reply {
            request_id: header.request_id,
            result,
        })
    }
}

// ---------------------------------------------------------------------------
// Shared value types
// ---------------------------------------------------------------------------

/// Names a user either by numeric id (a JSON number) or by name (a JSON string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserRef {
    /// By id: `42`.
    Id(UserId),
    /// By name: `"alice"`.
    Name(String),
}

/// The public face of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// The account's id.
    pub id: UserId,
    /// The account's unique name.
    pub name: String,
}

/// A friend as the session's user sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Friend {
    /// The friend's id.
    pub id: UserId,
    /// The friend's account name.
    pub name: String,
    /// The remark (nickname) the session's user gave them, if any.
    pub remark: Option<String>,
    /// The category (folder) the session's user put them in, if any.
    pub category: Option<String>,
    /// Whether they have at least one session online.
    pub online: bool,
    /// The 1:1 conversation between the two.
    pub conversation_id: ConversationId,
}

/// A pending friend request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRequestInfo {
    /// Who asked.
    pub from: UserSummary,
    /// Who was asked.
    pub to: UserSummary,
    /// The optional greeting.
    pub message: Option<String>,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the group (or was handed it); may do everything.
    Owner,
    /// May kick plain members.
    Admin,
    /// May chat.
    Member,
}

impl Role {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A group as seen by the session's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group's id.
    pub id: GroupId,
    /// Its display name (not unique).
    pub name: String,
    /// Its description, possibly empty.
    pub description: String,
    /// Its current owner.
    pub owner_id: UserId,
    /// Its message log.
    pub conversation_id: ConversationId,
    /// How many members it has.
    pub member_count: u32,
    /// The session's user's role, or `null` when not a member.
    pub my_role: Option<Role>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Who may join (`open` from servers that predate join policies).
    #[serde(default)]
    pub join_policy: JoinPolicy,
}

/// Who may join a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinPolicy {
    /// Anyone who knows the group's id.
    #[default]
    Open,
    /// Anyone may ask; the owner or an admin accepts or refuses.
    Approval,
    /// Only users a member invited; to anyone else the group does not exist.
    Invite,
}

impl JoinPolicy {
    /// Whether this is [`JoinPolicy::Open`], the default.
    #[must_use]
    pub fn is_open(&self) -> bool {
        *self == JoinPolicy::Open
    }

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JoinPolicy::Open => "open",
            JoinPolicy::Approval => "approval",
            JoinPolicy::Invite => "invite",
        }
    }

    /// The policy with this wire name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<JoinPolicy> {
        match name {
            "open" => Some(JoinPolicy::Open),
            "approval" => Some(JoinPolicy::Approval),
            "invite" => Some(JoinPolicy::Invite),
            _ => None,
        }
    }
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's id.
    pub id: UserId,
    /// The member's account name.
    pub name: String,
    /// The member's role.
    pub role: Role,
    /// Whether they have at least one session online.
    pub online: bool,
}

/// Where a message goes: a user (1:1) or a group. On the wire
/// `{"user": 42}` or `{"group": 7}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A friend.
    User(UserId),
    /// A group the sender belongs to.
    Group(GroupId),
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Its position in the conversation (gap-free, from 1).
    pub seq: Seq,
    /// Who sent it.
    pub sender_id: UserId,
    /// The sender's account name.
    pub sender_name: String,
    /// Where the sender sent it: the recipient user, or the group.
    pub target: Target,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The text.
    pub body: String,
    /// When the server committed it, in milliseconds since the Unix epoch.
    pub server_ts_ms: i64,
    /// Set when the message was recalled or removed: its body is then empty.
    /// Absent (not `null`) for a message that stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled: Option<Recalled>,
}

/// Who took a message back, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recalled {
    /// The sender (a recall) or a group's owner or admin (a removal).
    pub by: UserId,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A conversation and the highest sequence number a client has seen in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The highest sequence number seen.
    pub seq: Seq,
}

// ---------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------

/// `ping` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {}

/// `ping` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResponse {
    /// The server's clock, in milliseconds since the Unix epoch.
    pub server_ts_ms: i64,
}

/// `register` request. Its `Debug` output hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// 1 to 32 characters, unique, no control characters, not all digits.
    pub name: String,
    /// 8 to 128 characters.
    pub password: String,
}

/// `register` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The new account.
    pub user: UserSummary,
}

/// `login` request: either `user` and `password`, or `token`. Its `Debug`
/// output hides the password and the token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The account, by name or id (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserRef>,
    /// The password (with `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A session token from an earlier login (instead of `user` and `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `login` response: everything a client shows right after logging in. The
/// messages the user has not acknowledged follow as `push_message` frames.
/// Its `Debug` output hides the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Who the session is now.
    pub user: UserSummary,
    /// A token for reconnecting without the password.
    pub token: String,
    /// When the token stops working, in milliseconds since the Unix epoch.
    pub token_expires_at_ms: i64,
    /// The user's friends.
    pub friends: Vec<Friend>,
    /// The user's groups.
    pub groups: Vec<Group>,
    /// Friend requests waiting for the user's answer.
    pub incoming_requests: Vec<FriendRequestInfo>,
    /// Friend requests the user sent that are not answered yet.
    pub outgoing_requests: Vec<FriendRequestInfo>,
    /// How many unacknowledged messages follow as pushes.
    pub unacked: u64,
    /// The conversations with unread messages, read in the same login as
    /// `unacked` (absent from older servers: read as empty).
    #[serde(default)]
    pub unread: Vec<UnreadCount>,
}

/// How far the user has read a conversation that has unread messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadCount {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The user's read position.
    pub read_seq: Seq,
    /// The conversation's newest message.
    pub last_seq: Seq,
    /// Messages after the read position (`last_seq - read_seq`).
    pub unread: u64,
}

/// Reads an optional field that has a default: `null` means the same as
/// leaving the field out, as for every other optional request field.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// What `Debug` output shows in place of a password or a token.
const HIDDEN: &str = "<hidden>";

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("name", &self.name)
            .field("password", &HIDDEN)
            .finish()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| HIDDEN))
            .field("token", &self.token.as_ref().map(|_| HIDDEN))
            .finish()
    }
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("user", &self.user)
            .field("token", &HIDDEN)
            .field("token_expires_at_ms", &self.token_expires_at_ms)
            .field("friends", &self.friends)
            .field("groups", &self.groups)
            .field("incoming_requests", &self.incoming_requests)
            .field("outgoing_requests", &self.outgoing_requests)
            .field("unacked", &self.unacked)
            .finish()
    }
}

/// `logout` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutRequest {}

/// `logout` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutResponse {}

/// `session_list` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListRequest {}

/// One login of the user: a token, held by one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Names the login for `session_revoke`; not the token, and no way to
    /// recover it.
    pub id: String,
    /// When its token stops working, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    /// Whether it is the login of the session that asked.
    pub current: bool,
}

/// `session_list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionListResponse {
    /// The user's unexpired logins, soonest to expire first.
    pub sessions: Vec<SessionInfo>,
}

/// `session_revoke` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevokeRequest {
    /// The `id` of a login from `session_list`, not the asking session's own.
    pub id: String,
}

/// `session_revoke` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevokeResponse {}

// ---------------------------------------------------------------------------
// Friends
// ---------------------------------------------------------------------------

/// `friend_add` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendAddRequest {
    /// Whom to ask.
    pub user: UserRef,
    /// An optional greeting (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state a friend request ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendAddOutcome {
    /// The request waits for the other user's answer.
    Pending,
    /// The other user had already asked; the two are now friends.
    Accepted,
}

/// `friend_add` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendAddResponse {
    /// The user asked.
    pub user: UserSummary,
    /// Pending, or accepted at once.
    pub outcome: FriendAddOutcome,
    /// The new friend, when accepted at once.
    pub friend: Option<Friend>,
}

/// `friend_respond` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRespondRequest {
    /// Who asked.
    pub user: UserRef,
    /// Accept (true) or decline (false).
    pub accept: bool,
}

/// `friend_respond` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRespondResponse {
    /// Who asked.
    pub user: UserSummary,
    /// Whether it was accepted.
    pub accepted: bool,
    /// The new friend, when accepted.
    pub friend: Option<Friend>,
}

/// `friend_remove` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRemoveRequest {
    /// The friend to remove.
    pub user: UserRef,
}

/// `friend_remove` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRemoveResponse {
    /// The former friend.
    pub user: UserSummary,
}

/// `friend_list` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendListRequest {}

/// `friend_list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendListResponse {
    /// The user's friends.
    pub friends: Vec<Friend>,
    /// Requests waiting for the user's answer.
    pub incoming_requests: Vec<FriendRequestInfo>,
    /// Requests the user sent that are not answered yet.
    pub outgoing_requests: Vec<FriendRequestInfo>,
}

/// `friend_update` request. A field left out is unchanged; an empty string
/// clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendUpdateRequest {
    /// The friend.
    pub user: UserRef,
    /// The new remark name (at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// The new category (at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// `friend_update` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendUpdateResponse {
    /// The friend as it now stands.
    pub friend: Friend,
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

/// `group_create` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreateRequest {
    /// 1 to 64 characters.
    pub name: String,
    /// At most 512 characters.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// Who may join; `open` if left out (and left out when `open`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "JoinPolicy::is_open"
    )]
    pub join_policy: JoinPolicy,
}

/// `group_create` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreateResponse {
    /// The new group; the session's user is its owner.
    pub group: Group,
}

/// `group_join` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoinRequest {
    /// The group.
    pub group_id: GroupId,
}

/// `group_join` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoinResponse {
    /// The group joined, or asked to join.
    pub group: Group,
    /// Whether the join waits for the owner's or an admin's approval (the
    /// caller is not a member yet).
    #[serde(default)]
    pub pending: bool,
}

/// `group_leave` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLeaveRequest {
    /// The group.
    pub group_id: GroupId,
}

/// `group_leave` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLeaveResponse {}

/// `group_dissolve` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDissolveRequest {
    /// The group.
    pub group_id: GroupId,
}

/// `group_dissolve` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDissolveResponse {}

/// `group_kick` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKickRequest {
    /// The group.
    pub group_id: GroupId,
    /// The member to remove.
    pub user: UserRef,
    /// Also ban them: they cannot join again until unbanned (left out when
    /// false).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub ban: bool,
}

/// `group_kick` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKickResponse {}

/// `group_set_role` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSetRoleRequest {
    /// The group.
    pub group_id: GroupId,
    /// The member.
    pub user: UserRef,
    /// The new role. Making somebody `owner` hands the group over and makes
    /// the old owner an admin.
    pub role: Role,
}

/// `group_set_role` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSetRoleResponse {}

/// `group_info` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfoRequest {
    /// The group.
    pub group_id: GroupId,
}

/// `group_info` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfoResponse {
    /// The group.
    pub group: Group,
    /// Users waiting for approval to join; shown to the owner and admins
    /// only, empty for everyone else.
    #[serde(default)]
    pub join_requests: Vec<UserSummary>,
}

/// `group_members` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembersRequest {
    /// The group (the session's user must be a member).
    pub group_id: GroupId,
}

/// `group_members` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembersResponse {
    /// The group's members.
    pub members: Vec<Member>,
}

/// `group_list` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupListRequest {}

/// `group_list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupListResponse {
    /// The groups the session's user belongs to.
    pub groups: Vec<Group>,
    /// Invitations waiting for the user: join the group to accept.
    #[serde(default)]
    pub invitations: Vec<GroupInvitation>,
}

/// An invitation to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInvitation {
    /// The group.
    pub group: Group,
    /// Who invited the user.
    pub inviter: UserSummary,
}

/// `group_set_policy` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSetPolicyRequest {
    /// The group.
    pub group_id: GroupId,
    /// Who may join from now on.
    pub join_policy: JoinPolicy,
}

/// `group_set_policy` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSetPolicyResponse {
    /// The group with its new policy.
    pub group: Group,
}

/// `group_invite` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInviteRequest {
    /// The group (the caller must be a member).
    pub group_id: GroupId,
    /// Whom to invite.
    pub user: UserRef,
}

/// `group_invite` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInviteResponse {}

/// `group_respond_join` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRespondJoinRequest {
    /// The group (the caller must be its owner or an admin).
    pub group_id: GroupId,
    /// Who asked to join.
    pub user: UserRef,
    /// Let them in (`true`) or refuse (`false`).
    pub accept: bool,
}

/// `group_respond_join` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRespondJoinResponse {}

/// `group_unban` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUnbanRequest {
    /// The group (the caller must be its owner or an admin).
    pub group_id: GroupId,
    /// Whom to let join again.
    pub user: UserRef,
}

/// `group_unban` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUnbanResponse {}

/// `push_group_join_request`: somebody asks to join a group the user
/// administers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoinRequestPush {
    /// The group.
    pub group_id: GroupId,
    /// Who asks.
    pub user: UserSummary,
}

/// `push_group_invitation`: the user was invited to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInvitationPush {
    /// The invitation.
    pub invitation: GroupInvitation,
}

/// Kinds of group events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupEventKind {
    /// `user_id` joined.
    Joined,
    /// `user_id` left.
    Left,
    /// `user_id` was removed by `actor_id`.
    Kicked,
    /// `user_id` now has `role`.
    RoleChanged,
    /// The group was dissolved by its owner.
    Dissolved,
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

/// `send` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// A friend or a group.
    pub to: Target,
    /// The sender's idempotency key (1 to 64 characters, unique per sender).
    /// A resend with the same key returns the first answer and stores nothing.
    pub client_msg_id: String,
    /// The text (not empty, at most the server's message limit, 4 KiB by default).
    pub body: String,
}

/// `send` response: sent only after the message is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// The conversation it went to.
    pub conversation_id: ConversationId,
    /// Its sequence number there.
    pub seq: Seq,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub server_ts_ms: i64,
    /// Whether this answers a resend of a message stored earlier.
    pub duplicate: bool,
}

/// `ack` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Everything up to and including this sequence number was delivered.
    pub seq: Seq,
}

/// `ack` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// The user's acknowledged position after this ack (acks never move it back).
    pub acked_seq: Seq,
}

/// `history` request. With `after_seq` it pages forwards (oldest first),
/// otherwise backwards from `before_seq` (or from the newest); messages are
/// always returned in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// The conversation (the session's user must take part in it).
    pub conversation_id: ConversationId,
    /// Only messages with a smaller sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<Seq>,
    /// Only messages with a larger sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<Seq>,
    /// At most this many (default 50, at most 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `history` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    /// The page, in ascending sequence order.
    pub messages: Vec<ChatMessage>,
    /// Whether more messages lie beyond the page in the paging direction.
    pub has_more: bool,
}

/// `sync` request: what has the client missed?
///
/// For each conversation of the user, messages after the client's cursor are
/// returned (all senders); for a conversation without a cursor, messages
/// after the user's acknowledged position that others sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The highest sequence number the client holds per conversation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cursors: Vec<Cursor>,
    /// At most this many messages (default 500, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `sync` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Missed messages, ordered by conversation then sequence number.
    pub messages: Vec<ChatMessage>,
    /// Whether more remain (ask again with updated cursors).
    pub has_more: bool,
}

// ---------------------------------------------------------------------------
// Conversations: the list, read positions, typing, recall
// ---------------------------------------------------------------------------

/// Whether a conversation is between two users or of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Two users.
    Direct,
    /// A group.
    Group,
}

/// The other participant of a direct conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Their id.
    pub id: UserId,
    /// Their account name.
    pub name: String,
    /// The remark the user gave them, if any (and if they are still friends).
    pub remark: Option<String>,
    /// Whether they have at least one session online.
    pub online: bool,
}

/// The group of a group conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group's id.
    pub id: GroupId,
    /// Its display name.
    pub name: String,
}

/// The newest message of a conversation, shortened for a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePreview {
    /// Its sequence number.
    pub seq: Seq,
    /// Who sent it.
    pub sender_id: UserId,
    /// The sender's account name.
    pub sender_name: String,
    /// The first characters of its body (at most 100; empty when recalled).
    pub preview: String,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub server_ts_ms: i64,
    /// Whether it was recalled or removed.
    pub recalled: bool,
}

/// One entry of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// The other participant, for a direct conversation.
    pub peer: Option<Peer>,
    /// The group, for a group conversation.
    pub group: Option<GroupSummary>,
    /// The newest message, if there is one.
    pub last_message: Option<MessagePreview>,
    /// The newest message's sequence number (0 when empty).
    pub last_seq: Seq,
    /// How far the user has read.
    pub read_seq: Seq,
    /// Messages after the read position.
    pub unread: u64,
    /// The newest message's time, or when the conversation began; the list's
    /// order (newest first) and, with `conversation_id`, its paging key.
    pub last_activity_ms: i64,
}

/// Where a page of the conversation list starts: after this entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationCursor {
    /// The `last_activity_ms` of the last entry of the previous page.
    pub last_activity_ms: i64,
    /// The `conversation_id` of the last entry of the previous page.
    pub conversation_id: ConversationId,
}

/// `conversation_list` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationListRequest {
    /// Continue after this entry (from the previous page); absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<ConversationCursor>,
    /// At most this many (default 50, at most 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `conversation_list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationListResponse {
    /// The page, most recent activity first.
    pub conversations: Vec<Conversation>,
    /// Whether more entries follow.
    pub has_more: bool,
}

/// `read` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The user has read everything up to and including this sequence number.
    pub seq: Seq,
}

/// `read` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResponse {
    /// The read position after this request (never moves back, never past the end).
    pub read_seq: Seq,
}

/// `read_positions` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPositionsRequest {
    /// The conversation (the user must take part in it).
    pub conversation_id: ConversationId,
}

/// A member's read position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPosition {
    /// The member.
    pub user_id: UserId,
    /// How far they have read.
    pub read_seq: Seq,
}

/// `read_positions` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPositionsResponse {
    /// Every member's position, by user id.
    pub positions: Vec<ReadPosition>,
}

/// `typing` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingRequest {
    /// The conversation the user is typing in.
    pub conversation_id: ConversationId,
}

/// `typing` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingResponse {}

/// `recall` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message.
    pub seq: Seq,
}

/// `recall` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallResponse {
    /// The message as it is now: a tombstone.
    pub message: ChatMessage,
}

// ---------------------------------------------------------------------------
// Pushes
// ---------------------------------------------------------------------------

/// `push_friend_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRequestPush {
    /// The request.
    pub request: FriendRequestInfo,
}

/// What happened to a friendship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendUpdateKind {
    /// The user's request was accepted; `friend` is set.
    Accepted,
    /// The user's request was declined.
    Declined,
    /// The friendship was ended by the other side.
    Removed,
}

/// `push_friend_update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendUpdatePush {
    /// The other user.
    pub user: UserSummary,
    /// What happened.
    pub kind: FriendUpdateKind,
    /// The new friend, when accepted.
    pub friend: Option<Friend>,
}

/// `push_presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresencePush {
    /// Whose presence changed.
    pub user_id: UserId,
    /// Whether they have at least one session online now.
    pub online: bool,
}

/// `push_group_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEventPush {
    /// The group.
    pub group_id: GroupId,
    /// What happened.
    pub kind: GroupEventKind,
    /// The member concerned (for dissolve: the owner).
    pub user_id: UserId,
    /// Who did it.
    pub actor_id: UserId,
    /// The new role, for `role_changed` and `joined`.
    pub role: Option<Role>,
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The server is shutting down or draining: reconnect (perhaps to
    /// another node) and resume with the token.
    Draining,
    /// No traffic for longer than the idle timeout.
    Idle,
    /// The client read too slowly and its outbox overflowed; reconnect and sync.
    SlowConsumer,
    /// The login ended: an operator ended it (kick, disable, delete,
    /// password reset), or another connection holding the same token
    /// logged out. Do not resume with the token.
    LoggedOut,
}

/// `push_session_ended`: the last frame before the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEndedPush {
    /// Why.
    pub reason: SessionEndReason,
    /// A human-readable explanation.
    pub message: String,
}

/// `push_read`: `user_id` has read `conversation_id` up to `read_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPush {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who read (the user themselves, when read on another device).
    pub user_id: UserId,
    /// Their read position now.
    pub read_seq: Seq,
}

/// `push_typing`: `user_id` is typing in `conversation_id`. Show it for a
/// few seconds; a typing user sends it again every few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingPush {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who is typing.
    pub user_id: UserId,
}

/// `push_recall`: the message at `seq` is a tombstone now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallPush {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message.
    pub seq: Seq,
    /// Who took it back, and when.
    pub recalled: Recalled,
}
