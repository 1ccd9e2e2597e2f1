//! `Connection` against a real chatd: many requests in flight, typed errors,
//! raw bytes, and what happens to waiting requests when the server dies.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chat_client::{ClientError, Connection, IntoUserRef};
use chat_proto::{
    FriendAddRequest, FriendListRequest, PingRequest, Push, RegisterRequest, Request, SendRequest,
    Status, Target, HEADER_LEN,
};
use common::{befriend, logged_in, register, TestServer, PASSWORD, PATIENCE};

#[tokio::test]
async fn many_requests_in_flight_each_get_their_own_answer() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    register(server.addr(), "bob").await;
    befriend(server.addr(), "alice", "bob").await;
    let alice = Arc::new(logged_in(server.addr(), "alice").await);
    let bob_id = alice
        .call(FriendListRequest {})
        .await
        .expect("friend list")
        .friends[0]
        .id;

    // 100 sends at once on one connection: every answer reaches its own
    // caller, so the sequence numbers are 100 distinct ones.
    let sends = (0..100).map(|i| {
        let alice = Arc::clone(&alice);
        async move { alice.send(Target::User(bob_id), &format!("m{i}")).await }
    });
    let mut seqs: Vec<u64> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|result| result.expect("send").seq.0)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());

    // Resending with the same client_msg_id is answered with the first
    // position and marked as a duplicate.
    let first = alice
        .call(SendRequest {
            to: Target::User(bob_id),
            client_msg_id: "fixed-id-1".to_owned(),
            body: "once".to_owned(),
        })
        .await
        .expect("send");
    let again = alice
        .call(SendRequest {
            to: Target::User(bob_id),
            client_msg_id: "fixed-id-1".to_owned(),
            body: "once".to_owned(),
        })
        .await
        .expect("resend");
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    server.stop().await;
}

#[tokio::test]
async fn server_errors_carry_their_status() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    let connection = Connection::connect(server.addr()).await.expect("connect");

    let error = connection.call(FriendListRequest {}).await.unwrap_err();
    assert_eq!(error.status(), Some(Status::Unauthorized), "{error}");
    let error = connection
        .login("alice", "wrong password")
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::Unauthorized), "{error}");
    let error = connection
        .call(RegisterRequest {
            name: "alice".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::Conflict), "{error}");
    // The connection is still fine after errors.
    connection.login("alice", PASSWORD).await.expect("login");
    let error = connection
        .call(FriendAddRequest {
            user: "nobody-here".into_user_ref(),
            message: None,
        })
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::NotFound), "{error}");
    connection.call(PingRequest {}).await.expect("ping");
    server.stop().await;
}

#[tokio::test]
async fn raw_frames_split_anywhere_are_answered() {
    let server = TestServer::start().await;
    let connection = Connection::connect(server.addr()).await.expect("connect");
    let request_id = connection.allocate_request_id();
    let mut frame = BytesMut::new();
    Request::Ping(PingRequest {})
        .encode(request_id, &mut frame)
        .expect("encode");
    let reply = connection.expect_reply(request_id).expect("register wait");
    // The header in two pieces, then the body.
    connection.send_raw(&frame[..5]).await.expect("send");
    tokio::time::sleep(Duration::from_millis(20)).await;
    connection
        .send_raw(&frame[5..HEADER_LEN])
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(20)).await;
    connection
        .send_raw(&frame[HEADER_LEN..])
        .await
        .expect("send");
    let response = reply.wait(PATIENCE).await.expect("pong");
    assert_eq!(response.message_type(), chat_proto::MessageType::Ping);
    server.stop().await;
}

#[tokio::test]
async fn garbage_gets_an_error_frame_and_a_closed_connection() {
    let server = TestServer::start().await;
    let connection = Connection::connect(server.addr()).await.expect("connect");
    connection
        .send_raw(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("send");
    let reply = connection
        .next_unmatched_reply(PATIENCE)
        .await
        .expect("an error frame");
    assert_eq!(reply.request_id, 0);
    let error = reply.result.expect_err("an error");
    assert_eq!(error.error, Status::ProtocolError);
    tokio::time::timeout(PATIENCE, connection.closed())
        .await
        .expect("the server closes the connection");
    let after = connection.call(PingRequest {}).await.unwrap_err();
    assert!(matches!(after, ClientError::Closed(_)), "{after:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_crashing_server_fails_waiting_requests_at_once() {
    let mut server = TestServer::start().await;
    register(server.addr(), "alice").await;
    let connection = logged_in(server.addr(), "alice").await;
    connection.set_request_timeout(Duration::from_secs(60));
    server.crash_and_restart(Duration::ZERO).await;
    // Whatever was in flight or comes after fails fast with Closed, well
    // before the 60 s timeout.
    let started = std::time::Instant::now();
    let error = connection.call(PingRequest {}).await.unwrap_err();
    assert!(matches!(error, ClientError::Closed(_)), "{error:?}");
    assert!(started.elapsed() < PATIENCE);
    assert!(connection.next_push().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_graceful_shutdown_says_draining() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    let connection = logged_in(server.addr(), "alice").await;
    let stopping = tokio::spawn(server.stop());
    let mut reason = None;
    while let Some(push) = connection.next_push_timeout(PATIENCE).await {
        if let Push::PushSessionEnded(ended) = push {
            reason = Some(ended.reason);
        }
    }
    assert_eq!(reason, Some(chat_proto::SessionEndReason::Draining));
    assert!(connection.is_closed());
    stopping.await.expect("server stops");
}
