//! Typed messages: every request, response and push, and the one table of
//! type codes that maps them to the wire.
//!
//! A request of type `T` is answered by a response frame of the same type `T`
//! with the RESPONSE flag set. On success the response payload is the type's
//! response struct; on failure the status is non-zero and the payload is an
//! [`ErrorBody`]. Pushes use their own type codes (`0x8000` and above) and the
//! PUSH flag.
//!
//! This module holds the table and what it derives (the enums, [`Call`],
//! encoding and decoding); the payload structs live in one submodule per
//! feature, re-exported here: `session` (ping, register, login, logout, the
//! user's logins), `friends`, `groups`, `chat` (messages, send, ack,
//! history, sync), `conversations` (the list, read positions, typing,
//! recall) and `push` (every push payload but the message itself).

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::error::MessageError;
use crate::frame::{encode_json, Flags, Frame};
use crate::status::Status;

mod chat;
mod conversations;
mod friends;
mod groups;
mod push;
mod session;

pub use chat::*;
pub use conversations::*;
pub use friends::*;
pub use groups::*;
pub use push::*;
pub use session::*;

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

/// Reads an optional field that has a default: `null` means the same as
/// leaving the field out, as for every other optional request field.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
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
