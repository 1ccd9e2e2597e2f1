//! Typed messages: every request, response and push survives a trip through a
//! frame, the type-code table is consistent, and payloads that break the
//! rules are rejected with the documented error and status.

mod common;

use std::collections::{BTreeSet, HashSet};

use bytes::BytesMut;
use chat_proto::frame::Frame;
use chat_proto::*;
use common::{decode_one, error_statuses, raw_frame};

fn covered(types: impl Iterator<Item = MessageType>) -> BTreeSet<u16> {
    types.map(MessageType::code).collect()
}

fn names(codes: &BTreeSet<u16>) -> Vec<&'static str> {
    codes
        .iter()
        .map(|&code| MessageType::from_code(code).map_or("?", MessageType::name))
        .collect()
}

#[test]
fn every_request_type_has_a_sample() {
    let table: BTreeSet<u16> = covered(MessageType::REQUESTS.iter().copied());
    let sampled = covered(common::requests().iter().map(Request::message_type));
    let missing: BTreeSet<u16> = table.difference(&sampled).copied().collect();
    assert!(
        missing.is_empty(),
        "requests without a sample: {:?}",
        names(&missing)
    );
}

#[test]
fn every_response_type_has_a_sample() {
    let table: BTreeSet<u16> = covered(MessageType::REQUESTS.iter().copied());
    let sampled = covered(common::responses().iter().map(Response::message_type));
    let missing: BTreeSet<u16> = table.difference(&sampled).copied().collect();
    assert!(
        missing.is_empty(),
        "responses without a sample: {:?}",
        names(&missing)
    );
}

#[test]
fn every_push_type_has_a_sample() {
    let table: BTreeSet<u16> = covered(MessageType::PUSHES.iter().copied());
    let sampled = covered(common::pushes().iter().map(Push::message_type));
    let missing: BTreeSet<u16> = table.difference(&sampled).copied().collect();
    assert!(
        missing.is_empty(),
        "pushes without a sample: {:?}",
        names(&missing)
    );
}

#[test]
fn type_code_table_is_consistent() {
    let mut codes = HashSet::new();
    let mut names = HashSet::new();
    for &message_type in MessageType::REQUESTS.iter().chain(MessageType::PUSHES) {
        assert!(
            codes.insert(message_type.code()),
            "{message_type:?} code reused"
        );
        assert!(
            names.insert(message_type.name()),
            "{message_type:?} name reused"
        );
        assert_eq!(
            MessageType::from_code(message_type.code()),
            Some(message_type)
        );
        assert_ne!(message_type.code(), 0, "type code 0 is never used");
    }
    for &request in MessageType::REQUESTS {
        assert!(!request.is_push());
        assert!(request.code() < 0x8000, "{request:?} is in the push range");
    }
    for &push in MessageType::PUSHES {
        assert!(push.is_push());
        assert!(push.code() >= 0x8000, "{push:?} is in the request range");
        assert!(push.name().starts_with("push_"));
    }
    // Every code outside the table is unknown.
    let known = (0..=u16::MAX)
        .filter(|&code| MessageType::from_code(code).is_some())
        .count();
    assert_eq!(known, codes.len());
}

#[test]
fn every_request_round_trips_through_a_frame() {
    for (index, request) in common::requests().into_iter().enumerate() {
        let request_id = 1000 + index as u32;
        let mut buf = BytesMut::new();
        request.encode(request_id, &mut buf).unwrap();
        let frame = decode_one(&buf);
        assert!(frame.header.flags.is_request());
        assert_eq!(frame.header.message_type, request.message_type().code());
        assert_eq!(frame.header.status, 0);
        assert_eq!(frame.header.request_id, request_id);
        assert_eq!(frame.header.length as usize, frame.payload.len());
        let decoded = Request::from_payload(frame.header.message_type, &frame.payload)
            .unwrap_or_else(|error| panic!("{request:?}: {error}"));
        assert_eq!(decoded, request);
    }
}

#[test]
fn every_response_round_trips_through_a_frame() {
    for (index, response) in common::responses().into_iter().enumerate() {
        let request_id = u32::MAX - index as u32;
        let mut buf = BytesMut::new();
        response.encode(request_id, &mut buf).unwrap();
        let frame = decode_one(&buf);
        assert!(frame.header.flags.is_response());
        assert!(!frame.header.flags.is_push());
        assert_eq!(frame.header.message_type, response.message_type().code());
        assert_eq!(frame.header.status, Status::Ok.code());
        assert_eq!(frame.header.request_id, request_id);

        let direct = Response::from_payload(frame.header.message_type, &frame.payload).unwrap();
        assert_eq!(direct, response);
        let via_client = ServerMessage::from_frame(&frame).unwrap();
        assert_eq!(
            via_client,
            ServerMessage::Reply {
                request_id,
                result: Ok(response),
            }
        );
    }
}

#[test]
fn every_push_round_trips_through_a_frame() {
    for push in common::pushes() {
        let mut buf = BytesMut::new();
        push.encode(&mut buf).unwrap();
        let frame = decode_one(&buf);
        assert!(frame.header.flags.is_push());
        assert!(!frame.header.flags.is_response());
        assert_eq!(frame.header.message_type, push.message_type().code());
        assert_eq!(frame.header.status, 0);
        assert_eq!(frame.header.request_id, 0, "pushes carry request id 0");

        let direct = Push::from_payload(frame.header.message_type, &frame.payload).unwrap();
        assert_eq!(direct, push);
        assert_eq!(
            ServerMessage::from_frame(&frame).unwrap(),
            ServerMessage::Push(push)
        );
    }
}

#[test]
fn error_responses_round_trip_for_every_status() {
    for status in error_statuses() {
        let body = ErrorBody {
            error: status,
            message: format!("it went wrong: {status} ✗"),
        };
        let mut buf = BytesMut::new();
        body.encode(MessageType::Send.code(), 77, &mut buf);
        let frame = decode_one(&buf);
        assert!(frame.header.flags.is_response());
        assert_eq!(frame.header.status, status.code());
        assert_eq!(frame.header.message_type, MessageType::Send.code());
        assert_eq!(frame.header.request_id, 77);
        let json: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
        assert_eq!(json["error"], status.name());
        assert_eq!(
            ServerMessage::from_frame(&frame).unwrap(),
            ServerMessage::Reply {
                request_id: 77,
                result: Err(body),
            }
        );
    }
}

#[test]
fn error_status_in_the_header_is_authoritative() {
    // The body names a different status than the header: the header wins.
    let payload = br#"{"error":"not_found","message":"no such group"}"#;
    let frame = decode_one(&raw_frame(
        Flags::RESPONSE.bits(),
        MessageType::GroupInfo.code(),
        Status::Forbidden.code(),
        9,
        payload,
    ));
    match ServerMessage::from_frame(&frame).unwrap() {
        ServerMessage::Reply {
            request_id: 9,
            result: Err(body),
        } => {
            assert_eq!(body.error, Status::Forbidden);
            assert_eq!(body.message, "no such group");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn error_response_for_an_unknown_type_decodes() {
    // A server answers a type it does not know with that same raw code, which
    // the client may not know either; the error must still reach the caller.
    let mut buf = BytesMut::new();
    ErrorBody {
        error: Status::UnknownType,
        message: "unknown message type 0x7777".to_owned(),
    }
    .encode(0x7777, 5, &mut buf);
    let frame = decode_one(&buf);
    match ServerMessage::from_frame(&frame).unwrap() {
        ServerMessage::Reply {
            request_id: 5,
            result: Err(body),
        } => assert_eq!(body.error, Status::UnknownType),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn error_response_with_a_broken_body_is_invalid_payload() {
    let frame = decode_one(&raw_frame(
        Flags::RESPONSE.bits(),
        MessageType::Ping.code(),
        Status::Internal.code(),
        3,
        b"{\"error\":",
    ));
    let error = ServerMessage::from_frame(&frame).unwrap_err();
    assert!(
        matches!(error, MessageError::InvalidPayload { .. }),
        "{error:?}"
    );
}

fn assert_invalid_payload(code: u16, payload: &[u8]) {
    let error = Request::from_payload(code, payload).unwrap_err();
    match &error {
        MessageError::InvalidPayload { message_type, .. } => {
            assert_eq!(
                *message_type,
                MessageType::from_code(code).unwrap().name(),
                "the error names the message type"
            );
        }
        other => panic!(
            "{:?}: expected InvalidPayload, got {other:?}",
            String::from_utf8_lossy(payload)
        ),
    }
    assert_eq!(error.status(), Status::BadRequest);
}

#[test]
fn truncated_json_is_invalid_payload() {
    let mut buf = BytesMut::new();
    common::requests()[1].encode(1, &mut buf).unwrap();
    let frame = decode_one(&buf);
    for cut in 0..frame.payload.len() {
        assert_invalid_payload(MessageType::Register.code(), &frame.payload[..cut]);
    }
}

#[test]
fn invalid_json_is_invalid_payload() {
    let register = MessageType::Register.code();
    for payload in [
        &b"not json"[..],
        b"{name: \"alice\"}",
        b"{\"name\":\"alice\",\"password\":\"long enough\"",
        b"{\"name\":\"alice\",\"password\":\"long enough\"}}",
        b"{\"name\":\"alice\",\"password\":\"long enough\"} {}",
        b"{\"name\":\"alice\",\"password\":\"long enough\",}",
        b"{\"name\":\"alice\",\"name\":\"bob\",\"password\":\"long enough\"}",
        // Valid JSON of the wrong shape: a missing field, a mistyped field.
        b"{\"name\":\"alice\"}",
        b"{\"name\":42,\"password\":\"long enough\"}",
        b"null",
        b"",
    ] {
        assert_invalid_payload(register, payload);
    }
    let send = MessageType::Send.code();
    for payload in [
        &br#"{"to":{"channel":1},"client_msg_id":"a","body":"b"}"#[..],
        br#"{"to":{"user":-1},"client_msg_id":"a","body":"b"}"#,
        br#"{"to":{"user":1.5},"client_msg_id":"a","body":"b"}"#,
        br#"{"to":{"user":1,"group":2},"client_msg_id":"a","body":"b"}"#,
        br#"{"to":{"user":18446744073709551616},"client_msg_id":"a","body":"b"}"#,
    ] {
        assert_invalid_payload(send, payload);
    }
    assert_invalid_payload(
        MessageType::GroupSetRole.code(),
        br#"{"group_id":7,"user":3,"role":"Admin"}"#,
    );
}

#[test]
fn payload_must_be_an_object() {
    // The fields of a struct in order would also parse as an array; the
    // protocol allows only objects.
    assert_invalid_payload(MessageType::Register.code(), br#"["alice","long enough"]"#);
    assert_invalid_payload(MessageType::Ping.code(), b"[]");
    assert_invalid_payload(MessageType::Ping.code(), b"\"ping\"");
    assert_invalid_payload(MessageType::Ping.code(), b"0");
    // Whitespace around the object is fine.
    assert_eq!(
        Request::from_payload(MessageType::Ping.code(), b" \r\n\t{ } \n").unwrap(),
        Request::Ping(PingRequest {})
    );
    let error_frame = decode_one(&raw_frame(
        Flags::RESPONSE.bits(),
        MessageType::Ping.code(),
        Status::Internal.code(),
        1,
        br#"["internal","boom"]"#,
    ));
    assert!(ServerMessage::from_frame(&error_frame).is_err());
}

#[test]
fn invalid_utf8_is_invalid_payload() {
    let register = MessageType::Register.code();
    for payload in [
        &b"{\"name\":\"al\xffice\",\"password\":\"long enough\"}"[..],
        b"{\"name\":\"\xc3\",\"password\":\"long enough\"}",
        b"{\"name\":\"\xed\xa0\x80\",\"password\":\"long enough\"}",
        b"\xef\xbb\xbf{\"name\":\"alice\",\"password\":\"long enough\"}",
    ] {
        assert_invalid_payload(register, payload);
    }
    // The same in a push, as a client would see it.
    let frame = decode_one(&raw_frame(
        Flags::PUSH.bits(),
        MessageType::PushSessionEnded.code(),
        0,
        0,
        b"{\"reason\":\"idle\",\"message\":\"\xff\"}",
    ));
    assert!(matches!(
        ServerMessage::from_frame(&frame),
        Err(MessageError::InvalidPayload { .. })
    ));
}

#[test]
fn unknown_fields_are_ignored() {
    // Newer peers may add fields; older ones must keep working.
    let request = Request::from_payload(
        MessageType::Register.code(),
        br#"{"name":"alice","password":"long enough","avatar":{"url":"x"}}"#,
    )
    .unwrap();
    assert_eq!(
        request,
        Request::Register(RegisterRequest {
            name: "alice".to_owned(),
            password: "long enough".to_owned(),
        })
    );
    let response = Response::from_payload(
        MessageType::Ping.code(),
        br#"{"server_ts_ms":5,"node":"a"}"#,
    )
    .unwrap();
    assert_eq!(response, Response::Ping(PingResponse { server_ts_ms: 5 }));
}

#[test]
fn unknown_type_codes_are_rejected() {
    for code in [
        0x0000, 0x0005, 0x0106, 0x030a, 0x7fff, 0x8000, 0x80ff, 0xffff,
    ] {
        let error = Request::from_payload(code, b"{}").unwrap_err();
        assert!(
            matches!(error, MessageError::UnknownType(c) if c == code),
            "{error:?}"
        );
        assert_eq!(error.status(), Status::UnknownType);
        assert!(matches!(
            Response::from_payload(code, b"{}"),
            Err(MessageError::UnknownType(_))
        ));
        assert!(matches!(
            Push::from_payload(code, b"{}"),
            Err(MessageError::UnknownType(_))
        ));
    }
}

#[test]
fn types_are_only_valid_in_their_direction() {
    // A push code sent as a request, and a request code sent as a push.
    for &push in MessageType::PUSHES {
        assert!(matches!(
            Request::from_payload(push.code(), b"{}"),
            Err(MessageError::UnknownType(_))
        ));
        assert!(matches!(
            Response::from_payload(push.code(), b"{}"),
            Err(MessageError::UnknownType(_))
        ));
    }
    for &request in MessageType::REQUESTS {
        assert!(matches!(
            Push::from_payload(request.code(), b"{}"),
            Err(MessageError::UnknownType(_))
        ));
    }
    // A client receiving a request-flagged frame cannot interpret it.
    let mut buf = BytesMut::new();
    Request::Ping(PingRequest {}).encode(1, &mut buf).unwrap();
    let frame = decode_one(&buf);
    assert!(matches!(
        ServerMessage::from_frame(&frame),
        Err(MessageError::UnknownType(_))
    ));
    // A push-flagged frame carrying a request type.
    let frame = decode_one(&raw_frame(
        Flags::PUSH.bits(),
        MessageType::Ping.code(),
        0,
        0,
        b"{}",
    ));
    assert!(matches!(
        ServerMessage::from_frame(&frame),
        Err(MessageError::UnknownType(_))
    ));
}

fn payload_json(frame_bytes: &BytesMut) -> serde_json::Value {
    let frame: Frame = decode_one(frame_bytes);
    serde_json::from_slice(&frame.payload).unwrap()
}

#[test]
fn wire_shapes_match_the_documentation() {
    use serde_json::json;

    let mut buf = BytesMut::new();
    Request::Send(SendRequest {
        to: Target::User(UserId(42)),
        client_msg_id: "c1".to_owned(),
        body: "hi".to_owned(),
    })
    .encode(1, &mut buf)
    .unwrap();
    assert_eq!(
        payload_json(&buf),
        json!({"to": {"user": 42}, "client_msg_id": "c1", "body": "hi"})
    );

    let mut buf = BytesMut::new();
    Request::Login(LoginRequest {
        user: Some(UserRef::Id(UserId(42))),
        password: Some("secret123".to_owned()),
        token: None,
    })
    .encode(1, &mut buf)
    .unwrap();
    assert_eq!(
        payload_json(&buf),
        json!({"user": 42, "password": "secret123"}),
        "absent optional request fields are left out"
    );

    let by_name =
        Request::from_payload(MessageType::FriendAdd.code(), br#"{"user":"bob"}"#).unwrap();
    assert_eq!(
        by_name,
        Request::FriendAdd(FriendAddRequest {
            user: UserRef::Name("bob".to_owned()),
            message: None,
        })
    );
    // A name made of digits is still a name when sent as a JSON string.
    let digits =
        Request::from_payload(MessageType::FriendRemove.code(), br#"{"user":"42"}"#).unwrap();
    assert_eq!(
        digits,
        Request::FriendRemove(FriendRemoveRequest {
            user: UserRef::Name("42".to_owned()),
        })
    );

    let mut buf = BytesMut::new();
    Push::PushGroupEvent(GroupEventPush {
        group_id: GroupId(7),
        kind: GroupEventKind::RoleChanged,
        user_id: UserId(2),
        actor_id: UserId(1),
        role: Some(Role::Admin),
    })
    .encode(&mut buf)
    .unwrap();
    assert_eq!(
        payload_json(&buf),
        json!({"group_id": 7, "kind": "role_changed", "user_id": 2, "actor_id": 1, "role": "admin"})
    );

    let mut buf = BytesMut::new();
    Response::FriendAdd(FriendAddResponse {
        user: common::user(2, "bob"),
        outcome: FriendAddOutcome::Pending,
        friend: None,
    })
    .encode(1, &mut buf)
    .unwrap();
    assert_eq!(
        payload_json(&buf),
        json!({"user": {"id": 2, "name": "bob"}, "outcome": "pending", "friend": null}),
        "absent optional response fields are sent as null"
    );

    // Optional request fields may be given as null, or left out.
    let history = Request::from_payload(
        MessageType::History.code(),
        br#"{"conversation_id":10,"before_seq":null,"limit":null}"#,
    )
    .unwrap();
    assert_eq!(
        history,
        Request::History(HistoryRequest {
            conversation_id: ConversationId(10),
            before_seq: None,
            after_seq: None,
            limit: None,
        })
    );
    // `sync` and `group_create` have defaults for their fields.
    assert_eq!(
        Request::from_payload(MessageType::Sync.code(), b"{}").unwrap(),
        Request::Sync(SyncRequest::default())
    );
    assert_eq!(
        Request::from_payload(MessageType::GroupCreate.code(), br#"{"name":"g"}"#).unwrap(),
        Request::GroupCreate(GroupCreateRequest {
            name: "g".to_owned(),
            description: String::new(),
            join_policy: JoinPolicy::Open,
        })
    );

    let mut buf = BytesMut::new();
    ErrorBody {
        error: Status::RateLimited,
        message: "slow down".to_owned(),
    }
    .encode(MessageType::Send.code(), 3, &mut buf);
    assert_eq!(
        payload_json(&buf),
        json!({"error": "rate_limited", "message": "slow down"})
    );
}

#[test]
fn large_ids_survive_the_round_trip() {
    let request = Request::Ack(AckRequest {
        conversation_id: ConversationId(u64::MAX),
        seq: Seq(u64::MAX - 1),
    });
    let mut buf = BytesMut::new();
    request.encode(u32::MAX, &mut buf).unwrap();
    let frame = decode_one(&buf);
    assert_eq!(
        Request::from_payload(frame.header.message_type, &frame.payload).unwrap(),
        request
    );
}

/// The largest message the server's default limits allow, as JSON escaping
/// makes it largest: every body byte a control character (six bytes each on
/// the wire), and names and ids at their longest.
fn worst_case_message(seq: u64, body_len: usize) -> ChatMessage {
    ChatMessage {
        conversation_id: ConversationId(u64::MAX),
        seq: Seq(seq),
        sender_id: UserId(u64::MAX),
        sender_name: "😀".repeat(32),
        target: Target::Group(GroupId(u64::MAX)),
        client_msg_id: "\u{1}".repeat(64),
        body: "\u{1}".repeat(body_len),
        server_ts_ms: i64::MAX,
        recalled: None,
    }
}

#[test]
fn worst_case_pages_fit_in_the_client_limit() {
    // A page carries bodies up to the budget (or one message, however
    // long): the most messages the page allows, bodies sharing the budget,
    // every byte of them escaped sixfold.
    let sync = Response::Sync(SyncResponse {
        messages: (1..=1000)
            .map(|seq| worst_case_message(seq, PAGE_BODY_BUDGET / 1000))
            .collect(),
        has_more: true,
    });
    let history = Response::History(HistoryResponse {
        messages: (1..=200)
            .map(|seq| worst_case_message(seq, PAGE_BODY_BUDGET / 200))
            .collect(),
        has_more: true,
    });
    let one_long = Response::History(HistoryResponse {
        messages: vec![worst_case_message(1, 16 * 1024)],
        has_more: true,
    });
    for response in [sync, history, one_long] {
        let mut buf = BytesMut::new();
        response.encode(1, &mut buf).unwrap();
        let payload = buf.len() - HEADER_LEN;
        assert!(
            payload > DEFAULT_MAX_PAYLOAD,
            "pages outgrow the request limit, so clients need their own"
        );
        assert!(
            payload <= CLIENT_MAX_PAYLOAD,
            "{:?} page of {payload} bytes exceeds CLIENT_MAX_PAYLOAD",
            response.message_type()
        );
        let mut buf = buf;
        let frame = chat_proto::frame::decode(&mut buf, CLIENT_MAX_PAYLOAD)
            .unwrap()
            .unwrap();
        assert_eq!(
            ServerMessage::from_frame(&frame).unwrap(),
            ServerMessage::Reply {
                request_id: 1,
                result: Ok(response),
            }
        );
    }
}

#[test]
fn debug_output_hides_passwords_and_tokens() {
    use chat_proto::{LoginRequest, LoginResponse, RegisterRequest, UserRef, UserSummary};
    let register = RegisterRequest {
        name: "alice".into(),
        password: "register-secret".into(),
    };
    let login = LoginRequest {
        user: Some(UserRef::Name("alice".into())),
        password: Some("login-secret".into()),
        token: Some("token-secret".into()),
    };
    let response = LoginResponse {
        user: UserSummary {
            id: chat_proto::UserId(1),
            name: "alice".into(),
        },
        token: "response-secret".into(),
        token_expires_at_ms: 0,
        friends: Vec::new(),
        groups: Vec::new(),
        incoming_requests: Vec::new(),
        outgoing_requests: Vec::new(),
        unacked: 0,
        unread: Vec::new(),
    };
    let shown = format!("{register:?} {login:?} {response:#?}");
    for secret in [
        "register-secret",
        "login-secret",
        "token-secret",
        "response-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("alice"));
}
