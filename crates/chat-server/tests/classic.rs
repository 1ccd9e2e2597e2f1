//! The whole classic scenario, end to end over TCP, TLS and WebSocket: two users register,
//! befriend and chat while both are online; one logs out, the other sends;
//! the first logs in again and receives it; then three users create, join
//! and chat in a group.

mod common;

use chat_proto::{
    AckRequest, FriendListRequest, GroupCreateRequest, GroupJoinRequest, GroupMembersRequest,
    JoinPolicy, LogoutRequest, Push, Target,
};
use common::{befriend, expect_push, TestServer, Wire};

crate::over_every_wire!(two_friends_then_a_group_of_three);

async fn two_friends_then_a_group_of_three(wire: Wire) {
    let server = TestServer::start_over(wire, |_| {}).await;
    let (alice, alice_login) = server.user("alice").await;
    let (bob, bob_login) = server.user("bob").await;
    let alice_id = alice_login.user.id;
    let bob_id = bob_login.user.id;
    assert!(alice_login.friends.is_empty());

    befriend(&alice, &bob, "bob", "alice").await;
    let friends = alice.call(FriendListRequest {}).await.unwrap().friends;
    assert_eq!(friends.len(), 1);
    assert_eq!(friends[0].name, "bob");
    assert!(friends[0].online);

    // Both online: a message goes straight through.
    let sent = alice.send(Target::User(bob_id), "hi bob").await.unwrap();
    assert_eq!(sent.seq.0, 1);
    let Push::PushMessage(message) = expect_push(&bob, |p| matches!(p, Push::PushMessage(_))).await
    else {
        unreachable!()
    };
    assert_eq!(message.body, "hi bob");
    assert_eq!(message.sender_id, alice_id);
    assert_eq!(message.sender_name, "alice");
    assert_eq!(message.conversation_id, sent.conversation_id);
    bob.call(AckRequest {
        conversation_id: message.conversation_id,
        seq: message.seq,
    })
    .await
    .unwrap();
    let reply = bob.send(Target::User(alice_id), "hi alice").await.unwrap();
    assert_eq!(reply.seq.0, 2);
    expect_push(
        &alice,
        |p| matches!(p, Push::PushMessage(m) if m.body == "hi alice"),
    )
    .await;

    // Bob logs out; Alice sees him go offline and writes anyway.
    bob.call(LogoutRequest {}).await.unwrap();
    expect_push(
        &alice,
        |p| matches!(p, Push::PushPresence(pr) if !pr.online && pr.user_id == bob_id),
    )
    .await;
    drop(bob);
    let offline = alice
        .send(Target::User(bob_id), "are you there?")
        .await
        .unwrap();
    assert_eq!(offline.seq.0, 3);

    // Bob comes back and gets exactly what he has not acknowledged.
    let (bob, bob_login) = server.login("bob").await;
    assert_eq!(bob_login.unacked, 1);
    assert_eq!(bob_login.friends.len(), 1);
    assert!(bob_login.friends[0].online);
    let Push::PushMessage(missed) = expect_push(&bob, |p| matches!(p, Push::PushMessage(_))).await
    else {
        unreachable!()
    };
    assert_eq!(missed.body, "are you there?");
    assert_eq!(missed.seq, offline.seq);
    bob.call(AckRequest {
        conversation_id: missed.conversation_id,
        seq: missed.seq,
    })
    .await
    .unwrap();

    // A group of three.
    let (carol, _) = server.user("carol").await;
    let group = alice
        .call(GroupCreateRequest {
            name: "book club".to_owned(),
            description: "we read things".to_owned(),
            join_policy: JoinPolicy::Open,
        })
        .await
        .unwrap()
        .group;
    assert_eq!(group.owner_id, alice_id);
    bob.call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    carol
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    let members = alice
        .call(GroupMembersRequest { group_id: group.id })
        .await
        .unwrap()
        .members;
    assert_eq!(members.len(), 3);

    // Drain the join events so the message pushes stand alone.
    for who in [&alice, &bob, &carol] {
        while let Some(push) = who
            .next_push_timeout(std::time::Duration::from_millis(200))
            .await
        {
            assert!(matches!(
                push,
                Push::PushGroupEvent(_) | Push::PushPresence(_)
            ));
        }
    }

    let first = carol
        .send(Target::Group(group.id), "hello book club")
        .await
        .unwrap();
    assert_eq!(first.seq.0, 1);
    for who in [&alice, &bob] {
        let Push::PushMessage(message) =
            expect_push(who, |p| matches!(p, Push::PushMessage(_))).await
        else {
            unreachable!()
        };
        assert_eq!(message.body, "hello book club");
        assert_eq!(message.target, Target::Group(group.id));
    }
    let second = bob.send(Target::Group(group.id), "hi all").await.unwrap();
    assert_eq!(second.seq.0, 2);
    for who in [&alice, &carol] {
        expect_push(
            who,
            |p| matches!(p, Push::PushMessage(m) if m.body == "hi all"),
        )
        .await;
    }
    let history = carol
        .call(chat_proto::HistoryRequest {
            conversation_id: group.conversation_id,
            before_seq: None,
            after_seq: None,
            limit: Some(10),
        })
        .await
        .unwrap();
    let bodies: Vec<_> = history.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["hello book club", "hi all"]);
    server.shutdown().await;
}
