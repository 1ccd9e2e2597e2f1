//! Malformed, hostile and unusual input: every bad frame gets a clear
//! status, framing errors close only the offending connection, and nothing
//! disturbs other clients.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use chat_client::IntoUserRef;
use chat_proto::frame::{self, encode_json};
use chat_proto::{
    AckRequest, ErrorBody, Flags, Frame, FriendAddRequest, FriendListRequest, FriendRespondRequest,
    FriendUpdateRequest, GroupCreateRequest, GroupDissolveRequest, GroupInfoRequest,
    GroupJoinRequest, GroupKickRequest, GroupListRequest, GroupSetRoleRequest, JoinPolicy,
    LogoutRequest, PingRequest, RegisterRequest, Request, SendRequest, Status, Target,
};
use common::{
    befriend, expect_message, expect_push, open_group, status_of, unique, TestServer, Wire,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

// Byte-stream behaviour: on WebSocket one message carries exactly one
// frame by contract (tests/transports.rs checks what happens otherwise).
crate::over_byte_streams!(
    ten_requests_in_one_write_get_ten_answers_in_order,
    a_request_written_one_byte_at_a_time_is_understood,
);

crate::over_every_wire!(
    an_unknown_type_is_answered_and_the_connection_stays,
    bad_json_wrong_types_and_invalid_utf8_are_bad_requests,
    an_oversize_frame_is_refused_before_its_body_and_closes_only_that_connection,
    framing_errors_answer_then_close,
    nothing_but_ping_register_and_login_before_login,
    nobody_can_act_as_somebody_else,
    sql_metacharacters_and_multibyte_text_are_stored_verbatim,
    oversize_fields_are_refused_with_a_status,
    optional_fields_sent_as_null_mean_left_out,
);

/// Any byte stream a raw connection can run over (TCP or TLS).
trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for S {}

/// A raw connection for writing arbitrary bytes and reading frames back,
/// over the server's transport: on a byte stream each write is bytes, on a
/// WebSocket each write is one binary message.
struct Raw {
    link: Link,
    buf: BytesMut,
}

enum Link {
    Stream(Box<dyn ByteStream>),
    WebSocket(Box<WebSocketStream<TcpStream>>),
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let link = match server.wire() {
            Wire::Tcp => Link::Stream(Box::new(TcpStream::connect(server.addr()).await.unwrap())),
            Wire::Tls => {
                let stream = TcpStream::connect(server.addr()).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let tls = server.tls_connector().connect(name, stream).await.unwrap();
                Link::Stream(Box::new(tls))
            }
            Wire::WebSocket => {
                let url = server.url();
                let stream = TcpStream::connect(server.http_addr()).await.unwrap();
                let (socket, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
                Link::WebSocket(Box::new(socket))
            }
        };
        Raw {
            link,
            buf: BytesMut::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Stream(stream) => {
                stream.write_all(bytes).await.unwrap();
                stream.flush().await.unwrap();
            }
            Link::WebSocket(socket) => socket.send(Message::binary(bytes.to_vec())).await.unwrap(),
        }
    }

    /// The next frame, or `None` when the server closed the connection.
    async fn read(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(frame) = frame::decode(&mut self.buf, usize::MAX >> 1).unwrap() {
                    return Some(frame);
                }
                match &mut self.link {
                    Link::Stream(stream) => {
                        if stream.read_buf(&mut self.buf).await.ok()? == 0 {
                            return None;
                        }
                    }
                    Link::WebSocket(socket) => match socket.next().await? {
                        Ok(Message::Binary(bytes)) => self.buf.extend_from_slice(&bytes),
                        Ok(Message::Close(_)) | Err(_) => return None,
                        Ok(_) => {}
                    },
                }
            }
        })
        .await
        .expect("the server answers in time")
    }

    async fn expect_closed(&mut self) {
        assert!(self.read().await.is_none(), "connection should be closed");
    }
}

fn request_bytes(request: &Request, request_id: u32) -> BytesMut {
    let mut buf = BytesMut::new();
    request.encode(request_id, &mut buf).unwrap();
    buf
}

fn raw_frame(flags: u8, message_type: u16, request_id: u32, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u16(0x4348);
    buf.put_u8(1);
    buf.put_u8(flags);
    buf.put_u16(message_type);
    buf.put_u16(0);
    buf.put_u32(request_id);
    buf.put_u32(payload.len() as u32);
    buf.put_slice(payload);
    buf
}

fn error_of(frame: &Frame) -> ErrorBody {
    assert!(frame.header.flags.is_response());
    let body: ErrorBody = serde_json::from_slice(&frame.payload).unwrap();
    assert_eq!(body.error.code(), frame.header.status);
    body
}

async fn still_serves(raw: &mut Raw) {
    raw.write(&request_bytes(&Request::Ping(PingRequest {}), 999))
        .await;
    let frame = raw.read().await.expect("a pong");
    assert_eq!(frame.header.request_id, 999);
    assert_eq!(frame.header.status, 0);
}

async fn ten_requests_in_one_write_get_ten_answers_in_order(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let mut raw = Raw::connect(&server).await;
    let mut batch = BytesMut::new();
    for id in 1..=10 {
        batch.extend_from_slice(&request_bytes(&Request::Ping(PingRequest {}), id));
    }
    raw.write(&batch).await;
    for id in 1..=10 {
        let frame = raw.read().await.unwrap();
        assert_eq!(frame.header.request_id, id);
        assert_eq!(frame.header.status, 0);
        assert!(frame.header.flags.is_response());
    }
}

async fn a_request_written_one_byte_at_a_time_is_understood(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let mut raw = Raw::connect(&server).await;
    let name = unique("trickle");
    let bytes = request_bytes(
        &Request::Register(RegisterRequest {
            name: name.clone(),
            password: common::PASSWORD.to_owned(),
        }),
        7,
    );
    for byte in bytes.iter() {
        raw.write(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let frame = raw.read().await.unwrap();
    assert_eq!(frame.header.request_id, 7);
    assert_eq!(frame.header.status, 0, "{:?}", frame.payload);
    let connection = server.connect().await;
    connection
        .login(name.as_str(), common::PASSWORD)
        .await
        .unwrap();
}

async fn an_unknown_type_is_answered_and_the_connection_stays(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let mut raw = Raw::connect(&server).await;
    raw.write(&raw_frame(0, 0x7777, 5, b"{}")).await;
    let frame = raw.read().await.unwrap();
    assert_eq!(frame.header.request_id, 5);
    assert_eq!(frame.header.message_type, 0x7777);
    assert_eq!(error_of(&frame).error, Status::UnknownType);
    // A push type sent as a request is just as unknown.
    raw.write(&raw_frame(0, 0x8001, 6, b"{}")).await;
    assert_eq!(
        error_of(&raw.read().await.unwrap()).error,
        Status::UnknownType
    );
    still_serves(&mut raw).await;
}

async fn bad_json_wrong_types_and_invalid_utf8_are_bad_requests(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let mut raw = Raw::connect(&server).await;
    let cases: [&[u8]; 6] = [
        b"{",
        b"not json",
        br#"{"name": 5, "password": "longenough"}"#,
        br#"{"name": "x"}"#,
        b"{\"name\": \"\xff\xfe\", \"password\": \"longenough\"}",
        b"[]",
    ];
    for (index, payload) in cases.iter().enumerate() {
        let id = index as u32 + 1;
        raw.write(&raw_frame(0, 0x0002, id, payload)).await;
        let frame = raw.read().await.unwrap();
        assert_eq!(frame.header.request_id, id);
        assert_eq!(error_of(&frame).error, Status::BadRequest, "case {index}");
    }
    // Request id 0 and non-request flags are refused too.
    raw.write(&raw_frame(0, 0x0001, 0, b"{}")).await;
    assert_eq!(
        error_of(&raw.read().await.unwrap()).error,
        Status::BadRequest
    );
    raw.write(&raw_frame(0b01, 0x0001, 9, b"{}")).await;
    assert_eq!(
        error_of(&raw.read().await.unwrap()).error,
        Status::BadRequest
    );
    still_serves(&mut raw).await;
}

async fn an_oversize_frame_is_refused_before_its_body_and_closes_only_that_connection(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let (bystander, _) = server.user(&unique("bystander")).await;
    let mut raw = Raw::connect(&server).await;
    // Declare 100 MiB and send only the header: the answer must not wait
    // for the body.
    let mut header = raw_frame(0, 0x0002, 77, b"");
    header[12..16].copy_from_slice(&(100u32 << 20).to_be_bytes());
    raw.write(&header).await;
    let frame = raw.read().await.unwrap();
    assert_eq!(frame.header.request_id, 77);
    assert_eq!(error_of(&frame).error, Status::TooLarge);
    raw.expect_closed().await;
    bystander.call(PingRequest {}).await.unwrap();
}

async fn framing_errors_answer_then_close(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;

    let mut raw = Raw::connect(&server).await;
    raw.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        error_of(&raw.read().await.unwrap()).error,
        Status::ProtocolError
    );
    raw.expect_closed().await;

    let mut raw = Raw::connect(&server).await;
    let mut frame = raw_frame(0, 0x0001, 31, b"{}");
    frame[2] = 9;
    raw.write(&frame).await;
    let answer = raw.read().await.unwrap();
    assert_eq!(answer.header.request_id, 31);
    assert_eq!(error_of(&answer).error, Status::UnsupportedVersion);
    raw.expect_closed().await;

    let mut raw = Raw::connect(&server).await;
    raw.write(&raw_frame(0b1000_0000, 0x0001, 32, b"{}")).await;
    assert_eq!(
        error_of(&raw.read().await.unwrap()).error,
        Status::ProtocolError
    );
    raw.expect_closed().await;

    // The server is unharmed.
    let mut raw = Raw::connect(&server).await;
    still_serves(&mut raw).await;
}

async fn nothing_but_ping_register_and_login_before_login(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let connection = server.connect().await;
    connection.call(PingRequest {}).await.unwrap();
    assert_eq!(
        status_of(connection.call(FriendListRequest {}).await),
        Status::Unauthorized
    );
    assert_eq!(
        status_of(
            connection
                .send(Target::User(chat_proto::UserId(1)), "x")
                .await
        ),
        Status::Unauthorized
    );
    assert_eq!(
        status_of(connection.call(GroupListRequest {}).await),
        Status::Unauthorized
    );
    assert_eq!(
        status_of(connection.call(LogoutRequest {}).await),
        Status::Unauthorized
    );
}

async fn nobody_can_act_as_somebody_else(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let (alice, alice_login) = server.user(&unique("alice")).await;
    let alice_name = alice_login.user.name.clone();
    let (bob, bob_login) = server.user(&unique("bob")).await;
    let bob_name = bob_login.user.name.clone();
    let (mallory, mallory_login) = server.user(&unique("mallory")).await;
    befriend(&alice, &bob, &bob_name, &alice_name).await;
    let conversation = alice
        .send(Target::User(bob_login.user.id), "private")
        .await
        .unwrap()
        .conversation_id;

    // Not a friend: cannot write to Bob, read or ack their conversation.
    assert_eq!(
        status_of(mallory.send(Target::User(bob_login.user.id), "hi").await),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            mallory
                .call(chat_proto::HistoryRequest {
                    conversation_id: conversation,
                    before_seq: None,
                    after_seq: None,
                    limit: None,
                })
                .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            mallory
                .call(AckRequest {
                    conversation_id: conversation,
                    seq: chat_proto::Seq(1)
                })
                .await
        ),
        Status::Forbidden
    );
    // Cannot answer a friend request addressed to somebody else.
    assert_eq!(
        status_of(
            mallory
                .call(FriendRespondRequest {
                    user: alice_name.as_str().into_user_ref(),
                    accept: true
                })
                .await
        ),
        Status::NotFound
    );
    assert_eq!(
        status_of(
            mallory
                .send(Target::User(bob_login.user.id), "still mallory")
                .await
        ),
        Status::Forbidden
    );
    // Group admin powers need the role.
    let group = open_group(&alice, "club").await;
    mallory
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    bob.call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            mallory
                .call(GroupKickRequest {
                    group_id: group.id,
                    user: bob_name.as_str().into_user_ref(),
                    ban: false
                })
                .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            mallory
                .call(GroupDissolveRequest { group_id: group.id })
                .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            mallory
                .call(GroupSetRoleRequest {
                    group_id: group.id,
                    user: mallory_login.user.name.as_str().into_user_ref(),
                    role: chat_proto::Role::Owner
                })
                .await
        ),
        Status::Forbidden
    );
    // A sender smuggled into the payload is ignored: the session's user is
    // the sender.
    let smuggled = format!(
        r#"{{"to": {{"group": {}}}, "client_msg_id": "x2", "body": "who am i", "sender_id": {}}}"#,
        group.id, alice_login.user.id
    );
    let reply_to = mallory.allocate_request_id();
    let pending = mallory.expect_reply(reply_to).unwrap();
    mallory
        .send_raw(&raw_frame(0, 0x0301, reply_to, smuggled.as_bytes()))
        .await
        .unwrap();
    pending.wait(Duration::from_secs(5)).await.unwrap();
    let message = expect_message(&bob, "who am i").await;
    assert_eq!(message.sender_id, mallory_login.user.id);
    // Logging in as Alice needs Alice's password.
    let other = server.connect().await;
    assert_eq!(
        status_of(other.login(alice_name.as_str(), "not her password").await),
        Status::Unauthorized
    );
}

async fn sql_metacharacters_and_multibyte_text_are_stored_verbatim(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let tricky_name = "Robert'); DROP TABLE users;--";
    let emoji_name = "名前😀\"\\%_";
    let (robert, robert_login) = server.user(tricky_name).await;
    assert_eq!(robert_login.user.name, tricky_name);
    let (emoji, emoji_login) = server.user(emoji_name).await;
    assert_eq!(emoji_login.user.name, emoji_name);

    let greeting = "' OR '1'='1 -- 你好";
    robert
        .call(FriendAddRequest {
            user: emoji_name.into_user_ref(),
            message: Some(greeting.to_owned()),
        })
        .await
        .unwrap();
    let chat_proto::Push::PushFriendRequest(request) = expect_push(&emoji, |p| {
        matches!(p, chat_proto::Push::PushFriendRequest(_))
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(request.request.message.as_deref(), Some(greeting));
    assert_eq!(request.request.from.name, tricky_name);
    emoji
        .call(FriendRespondRequest {
            user: tricky_name.into_user_ref(),
            accept: true,
        })
        .await
        .unwrap();

    let remark = "x'; DELETE FROM friends; --ß";
    let category = "Ünïcødé 🎉 %";
    let updated = emoji
        .call(FriendUpdateRequest {
            user: tricky_name.into_user_ref(),
            remark: Some(remark.to_owned()),
            category: Some(category.to_owned()),
        })
        .await
        .unwrap()
        .friend;
    assert_eq!(updated.remark.as_deref(), Some(remark));
    assert_eq!(updated.category.as_deref(), Some(category));
    let listed = emoji.call(FriendListRequest {}).await.unwrap().friends;
    assert_eq!(listed[0].remark.as_deref(), Some(remark));

    let body = "SELECT * FROM messages; -- ' \" \\ \n 🚀 ñ 中文 \u{200d}";
    let msg_id = "id'; DROP TABLE messages;--";
    let sent = robert
        .call(SendRequest {
            to: Target::User(emoji_login.user.id),
            client_msg_id: msg_id.to_owned(),
            body: body.to_owned(),
        })
        .await
        .unwrap();
    let chat_proto::Push::PushMessage(message) =
        expect_push(&emoji, |p| matches!(p, chat_proto::Push::PushMessage(_))).await
    else {
        unreachable!()
    };
    assert_eq!(message.body, body);
    assert_eq!(message.client_msg_id, msg_id);
    let again = robert
        .call(SendRequest {
            to: Target::User(emoji_login.user.id),
            client_msg_id: msg_id.to_owned(),
            body: body.to_owned(),
        })
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, sent.seq);

    let group_name = "'; DROP TABLE groups; -- 群";
    let description = "100% \"quoted\" \\ back\\slash 🙂";
    let group = robert
        .call(GroupCreateRequest {
            name: group_name.to_owned(),
            description: description.to_owned(),
            join_policy: JoinPolicy::Open,
        })
        .await
        .unwrap()
        .group;
    let info = emoji
        .call(GroupInfoRequest { group_id: group.id })
        .await
        .unwrap()
        .group;
    assert_eq!(info.name, group_name);
    assert_eq!(info.description, description);

    // Everything survives a restart byte for byte.
    let mut server = server;
    drop((robert, emoji));
    server.restart().await;
    let (emoji, _) = server.login(emoji_name).await;
    let history = emoji
        .call(chat_proto::HistoryRequest {
            conversation_id: sent.conversation_id,
            before_seq: None,
            after_seq: None,
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(history.messages[0].body, body);
    assert_eq!(history.messages[0].sender_name, tricky_name);
}

async fn oversize_fields_are_refused_with_a_status(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let connection = server.connect().await;
    assert_eq!(
        status_of(
            connection
                .call(RegisterRequest {
                    name: "n".repeat(33),
                    password: common::PASSWORD.to_owned()
                })
                .await
        ),
        Status::BadRequest
    );
    assert_eq!(
        status_of(
            connection
                .call(RegisterRequest {
                    name: "shortpw".to_owned(),
                    password: "1234567".to_owned()
                })
                .await
        ),
        Status::BadRequest
    );
    assert_eq!(
        status_of(
            connection
                .call(RegisterRequest {
                    name: "longpw".to_owned(),
                    password: "p".repeat(129)
                })
                .await
        ),
        Status::BadRequest
    );
    let (alice, alice_login) = server.user(&unique("alice")).await;
    let (bob, bob_login) = server.user(&unique("bob")).await;
    befriend(&alice, &bob, &bob_login.user.name, &alice_login.user.name).await;
    let limit = server.config().max_message_len;
    assert_eq!(
        status_of(
            alice
                .send(Target::User(bob_login.user.id), &"x".repeat(limit + 1))
                .await
        ),
        Status::TooLarge
    );
    alice
        .send(Target::User(bob_login.user.id), &"x".repeat(limit))
        .await
        .unwrap();
    assert_eq!(
        status_of(alice.send(Target::User(bob_login.user.id), "").await),
        Status::BadRequest
    );
    assert_eq!(
        status_of(
            alice
                .call(GroupCreateRequest {
                    name: "g".repeat(65),
                    description: "".to_owned(),
                    join_policy: JoinPolicy::Open
                })
                .await
        ),
        Status::BadRequest
    );
    assert_eq!(
        status_of(
            alice
                .call(FriendUpdateRequest {
                    user: bob_login.user.name.as_str().into_user_ref(),
                    remark: Some("r".repeat(65)),
                    category: None
                })
                .await
        ),
        Status::BadRequest
    );
    assert_eq!(
        status_of(
            alice
                .call(SendRequest {
                    to: Target::User(bob_login.user.id),
                    client_msg_id: "i".repeat(65),
                    body: "x".to_owned()
                })
                .await
        ),
        Status::BadRequest
    );
    // Unknown ids are not found.
    assert_eq!(
        status_of(
            alice
                .call(GroupJoinRequest {
                    group_id: chat_proto::GroupId(999_999)
                })
                .await
        ),
        Status::NotFound
    );
    assert_eq!(
        status_of(
            alice
                .call(FriendAddRequest {
                    user: "nobody-by-that-name".into_user_ref(),
                    message: None
                })
                .await
        ),
        Status::NotFound
    );
    assert_eq!(
        status_of(
            alice
                .send(Target::Group(chat_proto::GroupId(424_242)), "x")
                .await
        ),
        Status::NotFound
    );
    // A field of the wrong type.
    let mut buf = BytesMut::new();
    let request_id = alice.allocate_request_id();
    encode_json(
        &mut buf,
        Flags::REQUEST,
        0x0202,
        Status::Ok,
        request_id,
        &serde_json::json!({"group_id": "not a number"}),
    )
    .unwrap();
    let pending = alice.expect_reply(request_id).unwrap();
    alice.send_raw(&buf).await.unwrap();
    assert_eq!(
        status_of(pending.wait(Duration::from_secs(5)).await),
        Status::BadRequest
    );
}

/// The protocol document says an optional request field sent as `null`
/// means the same as one left out, for fields with a default too.
async fn optional_fields_sent_as_null_mean_left_out(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let (connection, _) = server.user(&unique("nulls")).await;
    for (message_type, payload) in [
        (
            chat_proto::MessageType::GroupCreate,
            &br#"{"name": "null description", "description": null}"#[..],
        ),
        (
            chat_proto::MessageType::Sync,
            br#"{"cursors": null, "limit": null}"#,
        ),
        (
            chat_proto::MessageType::FriendAdd,
            br#"{"user": "nobody at all", "message": null}"#,
        ),
    ] {
        let request_id = connection.allocate_request_id();
        let pending = connection.expect_reply(request_id).unwrap();
        connection
            .send_raw(&raw_frame(0, message_type.code(), request_id, payload))
            .await
            .unwrap();
        let answer = pending.wait(Duration::from_secs(5)).await;
        match message_type {
            // Understood, and refused for what it asks, not for its shape.
            chat_proto::MessageType::FriendAdd => {
                assert_eq!(status_of(answer), Status::NotFound);
            }
            _ => {
                answer.unwrap_or_else(|error| panic!("{message_type:?}: {error}"));
            }
        }
    }
}
