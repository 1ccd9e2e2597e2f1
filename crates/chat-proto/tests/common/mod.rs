//! Sample values shared by the integration tests: one of every request,
//! response and push, with realistic field values (multi-byte text, optional
//! fields both set and left out).

// Each test file uses its own subset of these helpers, so the ones a given
// file does not call would otherwise be reported as dead code.
#![allow(dead_code)]

use bytes::BytesMut;
use chat_proto::frame::{self, Frame};
use chat_proto::*;

/// A user summary.
pub fn user(id: u64, name: &str) -> UserSummary {
    UserSummary {
        id: UserId(id),
        name: name.to_owned(),
    }
}

/// A friend with every optional field set.
pub fn friend() -> Friend {
    Friend {
        id: UserId(2),
        name: "bob".to_owned(),
        remark: Some("Bobby 🐟".to_owned()),
        category: Some("工作".to_owned()),
        online: true,
        conversation_id: ConversationId(10),
    }
}

/// A friend with no remark and no category.
pub fn plain_friend() -> Friend {
    Friend {
        id: UserId(3),
        name: "carol".to_owned(),
        remark: None,
        category: None,
        online: false,
        conversation_id: ConversationId(11),
    }
}

/// A pending friend request.
pub fn friend_request(message: Option<&str>) -> FriendRequestInfo {
    FriendRequestInfo {
        from: user(4, "dave"),
        to: user(1, "alice"),
        message: message.map(str::to_owned),
        created_at_ms: 1_700_000_000_000,
    }
}

/// A group as a member sees it.
pub fn group() -> Group {
    Group {
        id: GroupId(7),
        name: "rustaceans".to_owned(),
        description: "Ferris fans, \"quoted\" and \\escaped\\".to_owned(),
        owner_id: UserId(1),
        conversation_id: ConversationId(20),
        member_count: 3,
        my_role: Some(Role::Admin),
        created_at_ms: 1_700_000_000_500,
        join_policy: JoinPolicy::Approval,
    }
}

/// A stored group message.
pub fn group_message(seq: u64) -> ChatMessage {
    ChatMessage {
        conversation_id: ConversationId(20),
        seq: Seq(seq),
        sender_id: UserId(2),
        sender_name: "bob".to_owned(),
        target: Target::Group(GroupId(7)),
        client_msg_id: format!("bob-{seq}"),
        body: "héllo\nwörld ✓".to_owned(),
        server_ts_ms: 1_700_000_001_000 + seq as i64,
        recalled: None,
    }
}

/// A stored 1:1 message.
pub fn direct_message(seq: u64) -> ChatMessage {
    ChatMessage {
        conversation_id: ConversationId(10),
        seq: Seq(seq),
        sender_id: UserId(2),
        sender_name: "bob".to_owned(),
        target: Target::User(UserId(1)),
        client_msg_id: format!("bob-direct-{seq}"),
        body: "'; DROP TABLE messages; --".to_owned(),
        server_ts_ms: 1_700_000_002_000 + seq as i64,
        recalled: None,
    }
}

/// One or more samples of every request type.
pub fn requests() -> Vec<Request> {
    vec![
        Request::Ping(PingRequest {}),
        Request::Register(RegisterRequest {
            name: "alice".to_owned(),
            password: "correct horse battery staple".to_owned(),
        }),
        Request::Login(LoginRequest {
            user: Some(UserRef::Name("alice".to_owned())),
            password: Some("correct horse battery staple".to_owned()),
            token: None,
        }),
        Request::Login(LoginRequest {
            user: Some(UserRef::Id(UserId(1))),
            password: Some("pässwörd".to_owned()),
            token: None,
        }),
        Request::Login(LoginRequest {
            user: None,
            password: None,
            token: Some("tok_3q2+7w==".to_owned()),
        }),
        Request::Logout(LogoutRequest {}),
        Request::SessionList(SessionListRequest {}),
        Request::SessionRevoke(SessionRevokeRequest {
            id: "3f2a9c0d1e4b5a6f".into(),
        }),
        Request::FriendAdd(FriendAddRequest {
            user: UserRef::Name("bob".to_owned()),
            message: Some("hi, it's alice".to_owned()),
        }),
        Request::FriendAdd(FriendAddRequest {
            user: UserRef::Id(UserId(2)),
            message: None,
        }),
        Request::FriendRespond(FriendRespondRequest {
            user: UserRef::Name("dave".to_owned()),
            accept: true,
        }),
        Request::FriendRespond(FriendRespondRequest {
            user: UserRef::Id(UserId(4)),
            accept: false,
        }),
        Request::FriendRemove(FriendRemoveRequest {
            user: UserRef::Id(UserId(2)),
        }),
        Request::FriendList(FriendListRequest {}),
        Request::FriendUpdate(FriendUpdateRequest {
            user: UserRef::Name("bob".to_owned()),
            remark: Some("Bobby".to_owned()),
            category: None,
        }),
        Request::FriendUpdate(FriendUpdateRequest {
            user: UserRef::Id(UserId(2)),
            remark: None,
            category: Some(String::new()),
        }),
        Request::GroupCreate(GroupCreateRequest {
            name: "rustaceans".to_owned(),
            description: "Ferris fans".to_owned(),
            join_policy: JoinPolicy::Invite,
        }),
        Request::GroupJoin(GroupJoinRequest {
            group_id: GroupId(7),
        }),
        Request::GroupLeave(GroupLeaveRequest {
            group_id: GroupId(7),
        }),
        Request::GroupDissolve(GroupDissolveRequest {
            group_id: GroupId(7),
        }),
        Request::GroupKick(GroupKickRequest {
            group_id: GroupId(7),
            user: UserRef::Name("carol".to_owned()),
            ban: true,
        }),
        Request::GroupSetPolicy(GroupSetPolicyRequest {
            group_id: GroupId(7),
            join_policy: JoinPolicy::Approval,
        }),
        Request::GroupInvite(GroupInviteRequest {
            group_id: GroupId(7),
            user: UserRef::Name("dave".to_owned()),
        }),
        Request::GroupRespondJoin(GroupRespondJoinRequest {
            group_id: GroupId(7),
            user: UserRef::Id(UserId(4)),
            accept: false,
        }),
        Request::GroupUnban(GroupUnbanRequest {
            group_id: GroupId(7),
            user: UserRef::Name("carol".to_owned()),
        }),
        Request::GroupSetRole(GroupSetRoleRequest {
            group_id: GroupId(7),
            user: UserRef::Id(UserId(3)),
            role: Role::Admin,
        }),
        Request::GroupSetRole(GroupSetRoleRequest {
            group_id: GroupId(7),
            user: UserRef::Id(UserId(3)),
            role: Role::Owner,
        }),
        Request::GroupInfo(GroupInfoRequest {
            group_id: GroupId(7),
        }),
        Request::GroupMembers(GroupMembersRequest {
            group_id: GroupId(7),
        }),
        Request::GroupList(GroupListRequest {}),
        Request::Send(SendRequest {
            to: Target::User(UserId(2)),
            client_msg_id: "alice-0001".to_owned(),
            body: "hello 🌍".to_owned(),
        }),
        Request::Send(SendRequest {
            to: Target::Group(GroupId(7)),
            client_msg_id: "alice-0002".to_owned(),
            body: "\"quotes\", \\backslashes\\ and \u{0001} controls".to_owned(),
        }),
        Request::Ack(AckRequest {
            conversation_id: ConversationId(10),
            seq: Seq(42),
        }),
        Request::History(HistoryRequest {
            conversation_id: ConversationId(10),
            before_seq: Some(Seq(100)),
            after_seq: None,
            limit: Some(20),
        }),
        Request::History(HistoryRequest {
            conversation_id: ConversationId(10),
            before_seq: None,
            after_seq: Some(Seq(5)),
            limit: None,
        }),
        Request::Sync(SyncRequest {
            cursors: vec![
                Cursor {
                    conversation_id: ConversationId(10),
                    seq: Seq(42),
                },
                Cursor {
                    conversation_id: ConversationId(20),
                    seq: Seq(0),
                },
            ],
            limit: Some(1000),
        }),
        Request::Sync(SyncRequest::default()),
        Request::ConversationList(ConversationListRequest::default()),
        Request::ConversationList(ConversationListRequest {
            before: Some(ConversationCursor {
                last_activity_ms: 1_700_000_000_000,
                conversation_id: ConversationId(10),
            }),
            limit: Some(200),
        }),
        Request::Read(ReadRequest {
            conversation_id: ConversationId(10),
            seq: Seq(42),
        }),
        Request::ReadPositions(ReadPositionsRequest {
            conversation_id: ConversationId(20),
        }),
        Request::Typing(TypingRequest {
            conversation_id: ConversationId(10),
        }),
        Request::Recall(RecallRequest {
            conversation_id: ConversationId(10),
            seq: Seq(41),
        }),
    ]
}

/// One or more samples of every successful response type.
pub fn responses() -> Vec<Response> {
    vec![
        Response::Ping(PingResponse {
            server_ts_ms: 1_700_000_000_000,
        }),
        Response::Register(RegisterResponse {
            user: user(1, "alice"),
        }),
        Response::Login(LoginResponse {
            user: user(1, "alice"),
            token: "tok_3q2+7w==".to_owned(),
            token_expires_at_ms: 1_702_592_000_000,
            friends: vec![friend(), plain_friend()],
            groups: vec![group()],
            incoming_requests: vec![friend_request(Some("hello?"))],
            outgoing_requests: vec![FriendRequestInfo {
                from: user(1, "alice"),
                to: user(5, "erin"),
                message: None,
                created_at_ms: 1_700_000_000_100,
            }],
            unacked: 3,
            unread: Vec::new(),
        }),
        Response::Logout(LogoutResponse {}),
        Response::SessionList(SessionListResponse {
            sessions: vec![SessionInfo {
                id: "3f2a9c0d1e4b5a6f".into(),
                expires_at_ms: 1_767_225_600_000,
                current: true,
            }],
        }),
        Response::SessionRevoke(SessionRevokeResponse {}),
        Response::FriendAdd(FriendAddResponse {
            user: user(2, "bob"),
            outcome: FriendAddOutcome::Pending,
            friend: None,
        }),
        Response::FriendAdd(FriendAddResponse {
            user: user(2, "bob"),
            outcome: FriendAddOutcome::Accepted,
            friend: Some(friend()),
        }),
        Response::FriendRespond(FriendRespondResponse {
            user: user(4, "dave"),
            accepted: true,
            friend: Some(plain_friend()),
        }),
        Response::FriendRespond(FriendRespondResponse {
            user: user(4, "dave"),
            accepted: false,
            friend: None,
        }),
        Response::FriendRemove(FriendRemoveResponse {
            user: user(2, "bob"),
        }),
        Response::FriendList(FriendListResponse {
            friends: vec![friend(), plain_friend()],
            incoming_requests: vec![friend_request(None)],
            outgoing_requests: Vec::new(),
        }),
        Response::FriendUpdate(FriendUpdateResponse { friend: friend() }),
        Response::GroupCreate(GroupCreateResponse { group: group() }),
        Response::GroupJoin(GroupJoinResponse {
            group: group(),
            pending: false,
        }),
        Response::GroupJoin(GroupJoinResponse {
            group: Group {
                my_role: None,
                ..group()
            },
            pending: true,
        }),
        Response::GroupSetPolicy(GroupSetPolicyResponse { group: group() }),
        Response::GroupInvite(GroupInviteResponse {}),
        Response::GroupRespondJoin(GroupRespondJoinResponse {}),
        Response::GroupUnban(GroupUnbanResponse {}),
        Response::GroupLeave(GroupLeaveResponse {}),
        Response::GroupDissolve(GroupDissolveResponse {}),
        Response::GroupKick(GroupKickResponse {}),
        Response::GroupSetRole(GroupSetRoleResponse {}),
        Response::GroupInfo(GroupInfoResponse {
            group: Group {
                my_role: None,
                ..group()
            },
            join_requests: Vec::new(),
        }),
        Response::GroupInfo(GroupInfoResponse {
            group: group(),
            join_requests: vec![UserSummary {
                id: UserId(4),
                name: "dave".to_owned(),
            }],
        }),
        Response::GroupMembers(GroupMembersResponse {
            members: vec![
                Member {
                    id: UserId(1),
                    name: "alice".to_owned(),
                    role: Role::Owner,
                    online: true,
                },
                Member {
                    id: UserId(2),
                    name: "bob".to_owned(),
                    role: Role::Admin,
                    online: false,
                },
                Member {
                    id: UserId(3),
                    name: "carol".to_owned(),
                    role: Role::Member,
                    online: true,
                },
            ],
        }),
        Response::GroupList(GroupListResponse {
            groups: vec![group()],
            invitations: vec![GroupInvitation {
                group: Group {
                    my_role: None,
                    ..group()
                },
                inviter: UserSummary {
                    id: UserId(1),
                    name: "alice".to_owned(),
                },
            }],
        }),
        Response::Send(SendResponse {
            conversation_id: ConversationId(10),
            seq: Seq(43),
            server_ts_ms: 1_700_000_003_000,
            duplicate: false,
        }),
        Response::Send(SendResponse {
            conversation_id: ConversationId(10),
            seq: Seq(43),
            server_ts_ms: 1_700_000_003_000,
            duplicate: true,
        }),
        Response::Ack(AckResponse { acked_seq: Seq(42) }),
        Response::History(HistoryResponse {
            messages: vec![direct_message(1), direct_message(2)],
            has_more: true,
        }),
        Response::Sync(SyncResponse {
            messages: vec![direct_message(43), group_message(1), group_message(2)],
            has_more: false,
        }),
        Response::ConversationList(ConversationListResponse {
            conversations: vec![
                Conversation {
                    conversation_id: ConversationId(10),
                    kind: ConversationKind::Direct,
                    peer: Some(Peer {
                        id: UserId(2),
                        name: "bob".to_owned(),
                        remark: Some("Bobby 🦀".to_owned()),
                        online: true,
                    }),
                    group: None,
                    last_message: Some(MessagePreview {
                        seq: Seq(44),
                        sender_id: UserId(2),
                        sender_name: "bob".to_owned(),
                        preview: "lunch?".to_owned(),
                        server_ts_ms: 1_700_000_000_000,
                        recalled: false,
                    }),
                    last_seq: Seq(44),
                    read_seq: Seq(40),
                    unread: 4,
                    last_activity_ms: 1_700_000_000_000,
                },
                Conversation {
                    conversation_id: ConversationId(20),
                    kind: ConversationKind::Group,
                    peer: None,
                    group: Some(GroupSummary {
                        id: GroupId(7),
                        name: "rustaceans".to_owned(),
                    }),
                    last_message: None,
                    last_seq: Seq(0),
                    read_seq: Seq(0),
                    unread: 0,
                    last_activity_ms: 1_600_000_000_000,
                },
            ],
            has_more: true,
        }),
        Response::Read(ReadResponse { read_seq: Seq(42) }),
        Response::ReadPositions(ReadPositionsResponse {
            positions: vec![
                ReadPosition {
                    user_id: UserId(1),
                    read_seq: Seq(3),
                },
                ReadPosition {
                    user_id: UserId(2),
                    read_seq: Seq(0),
                },
            ],
        }),
        Response::Typing(TypingResponse {}),
        Response::Recall(RecallResponse {
            message: ChatMessage {
                body: String::new(),
                recalled: Some(Recalled {
                    by: UserId(1),
                    at_ms: 1_700_000_060_000,
                }),
                ..direct_message(41)
            },
        }),
    ]
}

/// One or more samples of every push type.
pub fn pushes() -> Vec<Push> {
    vec![
        Push::PushMessage(group_message(3)),
        Push::PushMessage(direct_message(44)),
        Push::PushFriendRequest(FriendRequestPush {
            request: friend_request(Some("let's be friends")),
        }),
        Push::PushFriendUpdate(FriendUpdatePush {
            user: user(2, "bob"),
            kind: FriendUpdateKind::Accepted,
            friend: Some(friend()),
        }),
        Push::PushFriendUpdate(FriendUpdatePush {
            user: user(5, "erin"),
            kind: FriendUpdateKind::Declined,
            friend: None,
        }),
        Push::PushFriendUpdate(FriendUpdatePush {
            user: user(2, "bob"),
            kind: FriendUpdateKind::Removed,
            friend: None,
        }),
        Push::PushPresence(PresencePush {
            user_id: UserId(2),
            online: true,
        }),
        Push::PushPresence(PresencePush {
            user_id: UserId(2),
            online: false,
        }),
        Push::PushGroupEvent(GroupEventPush {
            group_id: GroupId(7),
            kind: GroupEventKind::Joined,
            user_id: UserId(3),
            actor_id: UserId(3),
            role: Some(Role::Member),
        }),
        Push::PushGroupEvent(GroupEventPush {
            group_id: GroupId(7),
            kind: GroupEventKind::Left,
            user_id: UserId(3),
            actor_id: UserId(3),
            role: None,
        }),
        Push::PushGroupEvent(GroupEventPush {
            group_id: GroupId(7),
            kind: GroupEventKind::Kicked,
            user_id: UserId(3),
            actor_id: UserId(1),
            role: None,
        }),
        Push::PushGroupEvent(GroupEventPush {
            group_id: GroupId(7),
            kind: GroupEventKind::RoleChanged,
            user_id: UserId(2),
            actor_id: UserId(1),
            role: Some(Role::Admin),
        }),
        Push::PushGroupEvent(GroupEventPush {
            group_id: GroupId(7),
            kind: GroupEventKind::Dissolved,
            user_id: UserId(1),
            actor_id: UserId(1),
            role: None,
        }),
        Push::PushSessionEnded(SessionEndedPush {
            reason: SessionEndReason::Draining,
            message: "server shutting down".to_owned(),
        }),
        Push::PushSessionEnded(SessionEndedPush {
            reason: SessionEndReason::Idle,
            message: "no traffic for 60 s".to_owned(),
        }),
        Push::PushSessionEnded(SessionEndedPush {
            reason: SessionEndReason::SlowConsumer,
            message: "outbox full".to_owned(),
        }),
        Push::PushSessionEnded(SessionEndedPush {
            reason: SessionEndReason::LoggedOut,
            message: "logged out".to_owned(),
        }),
        Push::PushRead(ReadPush {
            conversation_id: ConversationId(10),
            user_id: UserId(2),
            read_seq: Seq(44),
        }),
        Push::PushTyping(TypingPush {
            conversation_id: ConversationId(10),
            user_id: UserId(2),
        }),
        Push::PushRecall(RecallPush {
            conversation_id: ConversationId(20),
            seq: Seq(3),
            recalled: Recalled {
                by: UserId(7),
                at_ms: 1_700_000_060_000,
            },
        }),
        Push::PushGroupJoinRequest(GroupJoinRequestPush {
            group_id: GroupId(7),
            user: UserSummary {
                id: UserId(4),
                name: "dave".to_owned(),
            },
        }),
        Push::PushGroupInvitation(GroupInvitationPush {
            invitation: GroupInvitation {
                group: Group {
                    my_role: None,
                    ..group()
                },
                inviter: UserSummary {
                    id: UserId(1),
                    name: "alice".to_owned(),
                },
            },
        }),
    ]
}

/// Every error status (all but `ok`).
pub fn error_statuses() -> impl Iterator<Item = Status> {
    Status::ALL.iter().copied().filter(|status| !status.is_ok())
}

/// Cuts exactly one frame out of `bytes` and checks nothing is left over.
pub fn decode_one(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD)
        .expect("a valid frame")
        .expect("a whole frame");
    assert!(buf.is_empty(), "{} bytes left after one frame", buf.len());
    frame
}

/// A raw 16-byte header with every field given, including magic and version,
/// so tests can build headers the encoder would never produce.
pub fn raw_header(
    magic: u16,
    version: u8,
    flags: u8,
    message_type: u16,
    status: u16,
    request_id: u32,
    length: u32,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    bytes.extend_from_slice(&magic.to_be_bytes());
    bytes.push(version);
    bytes.push(flags);
    bytes.extend_from_slice(&message_type.to_be_bytes());
    bytes.extend_from_slice(&status.to_be_bytes());
    bytes.extend_from_slice(&request_id.to_be_bytes());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes
}

/// A whole frame with a valid header and the given raw payload bytes.
pub fn raw_frame(
    flags: u8,
    message_type: u16,
    status: u16,
    request_id: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut bytes = raw_header(
        MAGIC,
        VERSION,
        flags,
        message_type,
        status,
        request_id,
        payload.len() as u32,
    );
    bytes.extend_from_slice(payload);
    bytes
}
