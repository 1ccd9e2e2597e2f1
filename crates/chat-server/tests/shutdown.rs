//! Graceful shutdown over real TCP: sessions are told the server is
//! draining and closed, and nothing acknowledged is lost across a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chat_client::Connection;
use chat_proto::{GroupJoinRequest, LogoutRequest, PingRequest, Push, SessionEndReason, Target};
use common::{
    befriend, drain_pushes, expect_no_push, next_message, open_group, unique, whole_history,
    TestServer,
};

/// Takes the pushes left on a closed connection and returns the reason of
/// its session-ended push, which must be the last one.
async fn session_end_reason(connection: &Connection) -> SessionEndReason {
    tokio::time::timeout(common::PUSH_WAIT, connection.closed())
        .await
        .expect("the server closes the connection");
    let mut last = None;
    while let Some(push) = connection.try_next_push() {
        last = Some(push);
    }
    match last {
        Some(Push::PushSessionEnded(ended)) => ended.reason,
        other => panic!("expected push_session_ended last, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_told_the_server_is_draining_and_closed() {
    let mut server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, _) = server.user(&alice_name).await;
    let (bob, _) = server.user(&bob_name).await;
    befriend(&alice, &bob, &bob_name, &alice_name).await;
    let anonymous = server.connect().await;
    anonymous.call(PingRequest {}).await.unwrap();

    server.restart().await;
    for connection in [&alice, &bob, &anonymous] {
        assert_eq!(
            session_end_reason(connection).await,
            SessionEndReason::Draining
        );
    }
    // The restarted server serves the same accounts.
    let (alice, login) = server.login(&alice_name).await;
    assert_eq!(login.friends.len(), 1);
    alice.call(PingRequest {}).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_is_kept_through_a_shutdown_under_load() {
    const MAX_EACH: usize = 5000;
    let mut server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, alice_login) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    befriend(&alice, &bob, &bob_name, &alice_name).await;
    let group = open_group(&alice, "loud").await;
    bob.call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    let alice = Arc::new(alice);
    let bob = Arc::new(bob);

    // Two senders write as fast as they can until the server goes away; each
    // remembers what the server acknowledged.
    let spawn_sender = |connection: Arc<Connection>, to: Target, prefix: &'static str| {
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for index in 0..MAX_EACH {
                let body = format!("{prefix} {index}");
                match connection.send(to, &body).await {
                    Ok(sent) => acknowledged.push((sent.conversation_id, sent.seq, body)),
                    Err(error) => {
                        assert!(error.is_connection_lost(), "{error}");
                        break;
                    }
                }
            }
            acknowledged
        })
    };
    let to_bob = spawn_sender(alice.clone(), Target::User(bob_login.user.id), "direct");
    let to_group = spawn_sender(bob.clone(), Target::Group(group.id), "group");
    // Let some traffic through before pulling the plug mid-stream.
    common::poll::eventually(Duration::from_secs(30), "traffic under way", || async {
        whole_history(&alice, group.conversation_id).await.len() >= 50
    })
    .await;
    server.restart().await;
    let to_bob = to_bob.await.unwrap();
    let to_group = to_group.await.unwrap();
    assert!(
        to_bob.len() < MAX_EACH && to_group.len() < MAX_EACH,
        "the shutdown came too late"
    );
    assert!(!to_bob.is_empty() && !to_group.is_empty());

    eprintln!(
        "acknowledged before the shutdown: {} direct, {} group",
        to_bob.len(),
        to_group.len()
    );
    let (reader, _) = server.login(&alice_name).await;
    for acknowledged in [&to_bob, &to_group] {
        let conversation = acknowledged[0].0;
        let history = whole_history(&reader, conversation).await;
        for (_, seq, body) in acknowledged {
            let stored = history
                .get(seq.0 as usize - 1)
                .unwrap_or_else(|| panic!("acknowledged seq {} is missing", seq.0));
            assert_eq!(stored.seq, *seq);
            assert_eq!(&stored.body, body);
        }
        // No gaps, and at most the one request that was in flight when the
        // connection closed was stored without its answer arriving.
        assert!(
            history.len() <= acknowledged.len() + 1,
            "{} stored, {} acknowledged",
            history.len(),
            acknowledged.len()
        );
    }
    assert_eq!(alice_login.user.name, alice_name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_an_offline_user_are_delivered_after_a_restart() {
    let mut server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, _) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    befriend(&alice, &bob, &bob_name, &alice_name).await;
    let group = open_group(&alice, "news").await;
    bob.call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    bob.call(LogoutRequest {}).await.unwrap();
    drop(bob);
    drain_pushes(&alice).await;

    let mut expected = Vec::new();
    for index in 0..5 {
        let direct = alice
            .send(Target::User(bob_login.user.id), &format!("direct {index}"))
            .await
            .unwrap();
        expected.push((
            direct.conversation_id.0,
            direct.seq.0,
            format!("direct {index}"),
        ));
        let grouped = alice
            .send(Target::Group(group.id), &format!("group {index}"))
            .await
            .unwrap();
        expected.push((
            grouped.conversation_id.0,
            grouped.seq.0,
            format!("group {index}"),
        ));
    }
    expected.sort();

    server.restart().await;
    assert_eq!(session_end_reason(&alice).await, SessionEndReason::Draining);
    let (bob, login) = server.login(&bob_name).await;
    assert_eq!(login.unacked, expected.len() as u64);
    for (conversation, seq, body) in &expected {
        let message = next_message(&bob).await;
        assert_eq!(
            (message.conversation_id.0, message.seq.0, &message.body),
            (*conversation, *seq, body)
        );
    }
    expect_no_push(&bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_queued_for_a_busy_session_are_flushed_before_it_ends() {
    let mut server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, _) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    befriend(&alice, &bob, &bob_name, &alice_name).await;
    drain_pushes(&bob).await;

    // Keep Bob's session busy: a few registrations, each a password hash,
    // handled one after another.
    let mut batch = bytes::BytesMut::new();
    let mut answers = Vec::new();
    let first_name = unique("busy");
    for index in 0..20 {
        let request_id = bob.allocate_request_id();
        chat_proto::Request::Register(chat_proto::RegisterRequest {
            name: if index == 0 {
                first_name.clone()
            } else {
                unique("busy")
            },
            password: common::PASSWORD.to_owned(),
        })
        .encode(request_id, &mut batch)
        .unwrap();
        answers.push(bob.expect_reply(request_id).unwrap());
    }
    bob.send_raw(&batch).await.unwrap();
    // Once the first registration is stored the session has read the batch
    // and is busy with the other nineteen. (Not its answer: the answers of
    // one read are written together, after the last.)
    common::wait_until_stored(&server, &first_name).await;

    // Meanwhile a message for Bob is acknowledged, so its push waits in his
    // outbox, and the server is told to stop.
    let sent = alice
        .send(Target::User(bob_login.user.id), "just in time")
        .await
        .unwrap();
    server.restart().await;
    for answer in answers {
        answer.wait(common::PUSH_WAIT).await.unwrap();
    }
    tokio::time::timeout(common::PUSH_WAIT, bob.closed())
        .await
        .expect("the server closes the connection");
    let mut pushes = Vec::new();
    while let Some(push) = bob.try_next_push() {
        pushes.push(push);
    }
    let delivered = pushes
        .iter()
        .any(|push| matches!(push, Push::PushMessage(m) if m.seq == sent.seq));
    assert!(
        delivered,
        "the push of an acknowledged message was dropped at shutdown: {pushes:?}"
    );
    assert!(
        matches!(
            pushes.last(),
            Some(Push::PushSessionEnded(ended)) if ended.reason == SessionEndReason::Draining
        ),
        "{pushes:?}"
    );
}
