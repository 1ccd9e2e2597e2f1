//! `Client` against a real chatd: what the application sees as events, and
//! that acknowledgements follow what it took.

mod common;

use std::time::Duration;

use chat_client::{Client, Event};
use chat_proto::{ChatMessage, FriendListRequest, Push, Target};
use common::{befriend, logged_in, register, TestServer, PASSWORD, PATIENCE};

/// The bodies of the next `count` messages, skipping other events.
async fn next_messages(client: &Client, count: usize) -> Vec<ChatMessage> {
    let mut messages = Vec::new();
    while messages.len() < count {
        match client.next_event_timeout(PATIENCE).await {
            Some(Event::Message(message)) => messages.push(message),
            Some(_) => {}
            None => panic!("only {} of {count} messages arrived", messages.len()),
        }
    }
    messages
}

/// Asserts that no message event comes within a short while.
async fn no_message(client: &Client) {
    while let Some(event) = client.next_event_timeout(Duration::from_millis(400)).await {
        assert!(!matches!(event, Event::Message(_)), "unexpected {event:?}");
    }
}

fn bodies(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

#[tokio::test]
async fn own_sends_are_not_echoed_and_other_devices_see_them() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    register(server.addr(), "bob").await;
    befriend(server.addr(), "alice", "bob").await;

    let laptop = Client::connect_to(server.address()).await.expect("connect");
    let login = laptop.login("alice", PASSWORD).await.expect("login");
    let phone = Client::connect_to(server.address()).await.expect("connect");
    phone.login("alice", PASSWORD).await.expect("login");
    let bob = Client::connect_to(server.address()).await.expect("connect");
    let bob_login = bob.login("bob", PASSWORD).await.expect("login");
    let to_bob = Target::User(bob_login.user.id);
    let to_alice = Target::User(login.user.id);

    bob.send(to_alice, "hi alice").await.expect("send");
    assert_eq!(bodies(&next_messages(&laptop, 1).await), ["hi alice"]);
    assert_eq!(bodies(&next_messages(&phone, 1).await), ["hi alice"]);

    // The laptop sends twice; bob's reply follows straight after, and the
    // laptop's own messages neither come back nor hold the reply up.
    laptop.send(to_bob, "one").await.expect("send");
    laptop.send(to_bob, "two").await.expect("send");
    // Bob's own "hi alice" is not echoed to him either.
    assert_eq!(bodies(&next_messages(&bob, 2).await), ["one", "two"]);
    bob.send(to_alice, "reply").await.expect("send");
    let laptop_saw = next_messages(&laptop, 1).await;
    assert_eq!(bodies(&laptop_saw), ["reply"]);
    assert_eq!(laptop_saw[0].seq.0, 4);
    no_message(&laptop).await;

    // The phone, another session of alice, sees everything in order.
    assert_eq!(
        bodies(&next_messages(&phone, 3).await),
        ["one", "two", "reply"]
    );

    laptop.close().await;
    phone.close().await;
    bob.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_first_own_message_is_not_echoed_by_a_gap_fill() {
    let server = TestServer::start().await;
    register(server.addr(), "carol").await;
    register(server.addr(), "dave").await;
    befriend(server.addr(), "carol", "dave").await;

    let carol = Client::connect_to(server.address()).await.expect("connect");
    carol.login("carol", PASSWORD).await.expect("login");
    let dave = Client::connect_to(server.address()).await.expect("connect");
    let dave_login = dave.login("dave", PASSWORD).await.expect("login");
    let carol_id = carol.me().expect("logged in").id;

    // Carol speaks first: she has no position in the conversation yet, so
    // Dave's reply (seq 2) looks like a gap, and filling it fetches her own
    // seq 1, which must not come back to her as an incoming message.
    carol
        .send(Target::User(dave_login.user.id), "first")
        .await
        .expect("send");
    assert_eq!(bodies(&next_messages(&dave, 1).await), ["first"]);
    dave.send(Target::User(carol_id), "second")
        .await
        .expect("send");
    let seen = next_messages(&carol, 1).await;
    assert_eq!(bodies(&seen), ["second"]);
    assert_eq!(seen[0].seq.0, 2);
    no_message(&carol).await;

    carol.close().await;
    dave.close().await;
    server.stop().await;
}

#[tokio::test]
async fn only_what_the_application_took_is_acknowledged() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    register(server.addr(), "bob").await;
    befriend(server.addr(), "alice", "bob").await;
    let alice = logged_in(server.addr(), "alice").await;
    let bob_id = alice
        .call(FriendListRequest {})
        .await
        .expect("friends")
        .friends[0]
        .id;

    let bob = Client::connect_to(server.address()).await.expect("connect");
    bob.login("bob", PASSWORD).await.expect("login");
    for body in ["first", "second", "third"] {
        alice.send(Target::User(bob_id), body).await.expect("send");
    }
    // Take two; the third stays in the client, untaken.
    assert_eq!(bodies(&next_messages(&bob, 2).await), ["first", "second"]);
    // Let the third arrive in the client too before closing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.flush_acks().await.expect("flush");
    bob.close().await;

    // At the next login only the untaken one is offered again.
    let again = logged_in(server.addr(), "bob").await;
    let mut offered = Vec::new();
    while let Some(push) = again.next_push_timeout(Duration::from_millis(500)).await {
        if let Push::PushMessage(message) = push {
            offered.push(message.body);
        }
    }
    assert_eq!(offered, ["third"]);
    server.stop().await;
}

#[tokio::test]
async fn unread_counts_follow_the_login_messages_and_reads_on_other_devices() {
    let server = TestServer::start().await;
    register(server.addr(), "carl").await;
    register(server.addr(), "dora").await;
    befriend(server.addr(), "carl", "dora").await;
    let dora = Client::connect_to(server.address()).await.expect("connect");
    let dora_login = dora.login("dora", PASSWORD).await.expect("login");
    let carl_raw = logged_in(server.addr(), "carl").await;
    let to_dora = Target::User(dora_login.user.id);
    carl_raw.send(to_dora, "one").await.expect("send");
    carl_raw.send(to_dora, "two").await.expect("send");
    let first = next_messages(&dora, 2).await.remove(0);
    let (conversation, carl_id) = (first.conversation_id, first.sender_id);
    assert_eq!(dora.unread(conversation), 2);

    // A new client starts from the login's counts.
    let tablet = Client::connect_to(server.address()).await.expect("connect");
    tablet.login("dora", PASSWORD).await.expect("login");
    assert_eq!(tablet.unread_counts(), [(conversation, 2)]);

    // Reading on the tablet clears the count on the first client, through
    // a push; the tablet's own count follows its answer.
    tablet
        .read(conversation, chat_proto::Seq(2))
        .await
        .expect("read");
    assert_eq!(tablet.unread(conversation), 0);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match dora.next_event_timeout(PATIENCE).await {
            Some(Event::Read(read)) if read.user_id == dora_login.user.id => break,
            Some(_) => {}
            None => panic!("no read event"),
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
    assert_eq!(dora.unread(conversation), 0);
    assert!(dora.unread_counts().is_empty());

    // Sending counts as reading.
    carl_raw.send(to_dora, "three").await.expect("send");
    next_messages(&dora, 1).await;
    assert_eq!(dora.unread(conversation), 1);
    dora.send(Target::User(carl_id), "answer")
        .await
        .expect("send");
    next_messages(&tablet, 1).await;
    let page = tablet
        .conversations(chat_proto::ConversationListRequest::default())
        .await
        .expect("list");
    assert_eq!(page.conversations[0].unread, 0);

    // A client that logs in with nothing unread counts only what comes.
    let laptop = Client::connect_to(server.address()).await.expect("connect");
    laptop.login("dora", PASSWORD).await.expect("login");
    assert!(laptop.unread_counts().is_empty());
    carl_raw.send(to_dora, "four").await.expect("send");
    // (Messages dora's other clients have not acknowledged yet come first,
    // as at every login; they are read, and count for nothing.)
    while next_messages(&laptop, 1).await[0].body != "four" {}
    assert_eq!(laptop.unread(conversation), 1);
}
