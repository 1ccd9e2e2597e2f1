//! Chat over real TCP: who may write where, gap-free sequence numbers under
//! concurrency, idempotent resends, history paging, acks, offline delivery,
//! sync, delivery across a restart, and order under pipelining.

mod common;

use std::time::Duration;

use chat_client::Connection;
use chat_proto::{
    AckRequest, ChatMessage, ConversationId, Cursor, GroupJoinRequest, HistoryRequest,
    HistoryResponse, LogoutRequest, PingRequest, Request, Response, SendRequest, SendResponse, Seq,
    Status, SyncRequest, Target, UserId,
};
use common::{
    befriend, drain_pushes, expect_no_push, next_message, open_group, status_of, unique,
    whole_history, TestServer,
};

async fn page(
    connection: &Connection,
    conversation_id: ConversationId,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
) -> chat_client::Result<HistoryResponse> {
    connection
        .call(HistoryRequest {
            conversation_id,
            before_seq: before.map(Seq),
            after_seq: after.map(Seq),
            limit,
        })
        .await
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.0).collect()
}

/// Writes one `send` frame per body without waiting for any answer, then
/// collects the answers in the order the requests were written.
async fn pipelined_sends(
    connection: &Connection,
    to: Target,
    bodies: &[String],
) -> Vec<SendResponse> {
    let mut pending = Vec::with_capacity(bodies.len());
    for body in bodies {
        let request_id = connection.allocate_request_id();
        let mut frame = bytes::BytesMut::new();
        Request::Send(SendRequest {
            to,
            client_msg_id: connection.new_client_msg_id(),
            body: body.clone(),
        })
        .encode(request_id, &mut frame)
        .unwrap();
        pending.push(connection.expect_reply(request_id).unwrap());
        connection.send_raw(&frame).await.unwrap();
    }
    let mut responses = Vec::with_capacity(pending.len());
    for reply in pending {
        match reply.wait(Duration::from_secs(30)).await.unwrap() {
            Response::Send(response) => responses.push(response),
            other => panic!("expected a send response, got {other:?}"),
        }
    }
    responses
}

/// Two friends, both online, with their names and login ids.
async fn two_friends(
    server: &TestServer,
) -> (Connection, UserId, String, Connection, UserId, String) {
    let (a_name, b_name) = (unique("alice"), unique("bob"));
    let (a, a_login) = server.user(&a_name).await;
    let (b, b_login) = server.user(&b_name).await;
    befriend(&a, &b, &b_name, &a_name).await;
    (a, a_login.user.id, a_name, b, b_login.user.id, b_name)
}

#[tokio::test]
async fn one_to_one_needs_friendship_and_groups_need_membership() {
    let server = TestServer::start().await;
    let (alice, _, _, bob, bob_id, _) = two_friends(&server).await;
    let (stranger, stranger_login) = server.user(&unique("stranger")).await;
    alice.send(Target::User(bob_id), "hi friend").await.unwrap();
    next_message(&bob).await;
    assert_eq!(
        status_of(stranger.send(Target::User(bob_id), "hi stranger").await),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            alice
                .send(Target::User(stranger_login.user.id), "who?")
                .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(alice.send(Target::User(UserId(8_888_888)), "nobody").await),
        Status::NotFound
    );
    expect_no_push(&bob).await;
    expect_no_push(&stranger).await;

    let group = open_group(&alice, "members only").await;
    assert_eq!(
        status_of(stranger.send(Target::Group(group.id), "let me in").await),
        Status::Forbidden
    );
    bob.call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    common::expect_group_event(&alice).await;
    let sent = bob.send(Target::Group(group.id), "i'm in").await.unwrap();
    assert_eq!(sent.conversation_id, group.conversation_id);
    assert_eq!(sent.seq, Seq(1));
    assert_eq!(next_message(&alice).await.body, "i'm in");
    // Nor may an outsider read or ack a conversation it is not in.
    assert_eq!(
        status_of(page(&stranger, group.conversation_id, None, None, None).await),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            stranger
                .call(AckRequest {
                    conversation_id: group.conversation_id,
                    seq: Seq(1)
                })
                .await
        ),
        Status::Forbidden
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_get_gap_free_sequence_numbers_in_their_own_order() {
    const SENDERS: usize = 8;
    const EACH: usize = 50;
    let server = TestServer::start().await;
    let (owner, _) = server.user(&unique("owner")).await;
    let group = open_group(&owner, "busy").await;
    let mut senders = vec![owner];
    for _ in 1..SENDERS {
        let (member, _) = server.user(&unique("sender")).await;
        member
            .call(GroupJoinRequest { group_id: group.id })
            .await
            .unwrap();
        senders.push(member);
    }
    let (listener, _) = server.user(&unique("listener")).await;
    listener
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    for connection in senders.iter().chain([&listener]) {
        drain_pushes(connection).await;
    }

    let runs = senders
        .iter()
        .enumerate()
        .map(|(sender, connection)| async move {
            let mut seqs = Vec::with_capacity(EACH);
            for index in 0..EACH {
                let sent = connection
                    .send(Target::Group(group.id), &format!("{sender}:{index}"))
                    .await
                    .unwrap();
                assert_eq!(sent.conversation_id, group.conversation_id);
                assert!(!sent.duplicate);
                seqs.push(sent.seq.0);
            }
            seqs
        });
    let per_sender = futures::future::join_all(runs).await;

    let mut all: Vec<u64> = per_sender.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=(SENDERS * EACH) as u64).collect::<Vec<_>>());
    for seqs in &per_sender {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }

    // The log agrees: every body at the seq its sender was told, and each
    // sender's messages in the order it sent them.
    let history = whole_history(&listener, group.conversation_id).await;
    assert_eq!(
        seqs(&history),
        (1..=(SENDERS * EACH) as u64).collect::<Vec<_>>()
    );
    for (sender, seqs) in per_sender.iter().enumerate() {
        for (index, seq) in seqs.iter().enumerate() {
            assert_eq!(history[*seq as usize - 1].body, format!("{sender}:{index}"));
        }
    }

    // The listener got every message once and in sequence order (on one
    // node pushes leave in commit order, however the senders interleave),
    // so each sender's are in its order too.
    let mut next_index = [0usize; SENDERS];
    let mut seen = std::collections::HashSet::new();
    for expected_seq in 1..=(SENDERS * EACH) as u64 {
        let message = next_message(&listener).await;
        assert!(seen.insert(message.seq.0), "pushed twice: {message:?}");
        assert_eq!(message.seq.0, expected_seq, "pushed out of sequence order");
        let (sender, index) = message.body.split_once(':').unwrap();
        let (sender, index): (usize, usize) = (sender.parse().unwrap(), index.parse().unwrap());
        assert_eq!(index, next_index[sender], "sender {sender} out of order");
        next_index[sender] += 1;
    }
    expect_no_push(&listener).await;
}

#[tokio::test]
async fn a_resend_with_the_same_id_is_answered_from_the_log() {
    let server = TestServer::start().await;
    let (alice, _, _, bob, bob_id, _) = two_friends(&server).await;
    let first = alice
        .call(SendRequest {
            to: Target::User(bob_id),
            client_msg_id: "msg-1".to_owned(),
            body: "only once".to_owned(),
        })
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(next_message(&bob).await.body, "only once");

    let again = alice
        .call(SendRequest {
            to: Target::User(bob_id),
            client_msg_id: "msg-1".to_owned(),
            body: "only once".to_owned(),
        })
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.conversation_id, first.conversation_id);
    assert_eq!(again.server_ts_ms, first.server_ts_ms);
    // Even with a different body the id decides: the original stands.
    let changed = alice
        .call(SendRequest {
            to: Target::User(bob_id),
            client_msg_id: "msg-1".to_owned(),
            body: "a different text".to_owned(),
        })
        .await
        .unwrap();
    assert!(changed.duplicate);
    assert_eq!(changed.seq, first.seq);
    // Each resend pushes the original again (its first push may have died
    // with a crashed node); clients drop it by (conversation, seq).
    for _ in 0..2 {
        let again = next_message(&bob).await;
        assert_eq!(again.seq, first.seq);
        assert_eq!(again.body, "only once");
    }
    expect_no_push(&bob).await;
    let history = whole_history(&bob, first.conversation_id).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].body, "only once");
    assert_eq!(history[0].client_msg_id, "msg-1");

    // The id is the sender's own: another sender may use the same one.
    let bobs = bob
        .call(SendRequest {
            to: Target::Group(open_group(&bob, "g").await.id),
            client_msg_id: "msg-1".to_owned(),
            body: "bob's own".to_owned(),
        })
        .await
        .unwrap();
    assert!(!bobs.duplicate);
    let next = alice
        .call(SendRequest {
            to: Target::User(bob_id),
            client_msg_id: "msg-2".to_owned(),
            body: "second".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(next.seq.0, first.seq.0 + 1);
}

#[tokio::test]
async fn history_pages_backwards_and_forwards() {
    let server = TestServer::start().await;
    let (alice, _, _, bob, bob_id, _) = two_friends(&server).await;
    let bodies: Vec<String> = (1..=25).map(|n| format!("message {n}")).collect();
    let sent = pipelined_sends(&alice, Target::User(bob_id), &bodies).await;
    let conversation = sent[0].conversation_id;

    let newest = page(&bob, conversation, None, None, Some(10))
        .await
        .unwrap();
    assert_eq!(seqs(&newest.messages), (16..=25).collect::<Vec<_>>());
    assert!(newest.has_more);
    assert_eq!(newest.messages[9].body, "message 25");
    let older = page(&bob, conversation, Some(16), None, Some(10))
        .await
        .unwrap();
    assert_eq!(seqs(&older.messages), (6..=15).collect::<Vec<_>>());
    assert!(older.has_more);
    let oldest = page(&bob, conversation, Some(6), None, Some(10))
        .await
        .unwrap();
    assert_eq!(seqs(&oldest.messages), (1..=5).collect::<Vec<_>>());
    assert!(!oldest.has_more);
    let exact = page(&bob, conversation, Some(11), None, Some(10))
        .await
        .unwrap();
    assert_eq!(seqs(&exact.messages), (1..=10).collect::<Vec<_>>());
    assert!(!exact.has_more);

    let first = page(&bob, conversation, None, Some(0), Some(10))
        .await
        .unwrap();
    assert_eq!(seqs(&first.messages), (1..=10).collect::<Vec<_>>());
    assert!(first.has_more);
    let second = page(&bob, conversation, None, Some(10), Some(10))
        .await
        .unwrap();
    assert_eq!(seqs(&second.messages), (11..=20).collect::<Vec<_>>());
    assert!(second.has_more);
    let last = page(&bob, conversation, None, Some(20), Some(10))
        .await
        .unwrap();
    assert_eq!(seqs(&last.messages), (21..=25).collect::<Vec<_>>());
    assert!(!last.has_more);
    let beyond = page(&bob, conversation, None, Some(25), Some(10))
        .await
        .unwrap();
    assert!(beyond.messages.is_empty());
    assert!(!beyond.has_more);

    // The default page holds all 25; the limit is 1 to 200.
    let all = page(&alice, conversation, None, None, None).await.unwrap();
    assert_eq!(seqs(&all.messages), (1..=25).collect::<Vec<_>>());
    assert!(!all.has_more);
    for limit in [0, 201, u32::MAX] {
        assert_eq!(
            status_of(page(&bob, conversation, None, None, Some(limit)).await),
            Status::BadRequest,
            "limit {limit}"
        );
    }
    let max = page(&bob, conversation, None, None, Some(200))
        .await
        .unwrap();
    assert_eq!(max.messages.len(), 25);
    let one = page(&bob, conversation, None, None, Some(1)).await.unwrap();
    assert_eq!(seqs(&one.messages), [25]);
    assert!(one.has_more);
}

#[tokio::test]
async fn acks_only_move_forward_and_stop_at_the_end() {
    let server = TestServer::start().await;
    let (alice, _, _, bob, bob_id, bob_name) = two_friends(&server).await;
    let bodies: Vec<String> = (1..=10).map(|n| format!("m{n}")).collect();
    let sent = pipelined_sends(&alice, Target::User(bob_id), &bodies).await;
    let conversation = sent[0].conversation_id;
    assert_eq!(
        bob.call(AckRequest {
            conversation_id: conversation,
            seq: Seq(5)
        })
        .await
        .unwrap()
        .acked_seq,
        Seq(5)
    );
    assert_eq!(
        bob.call(AckRequest {
            conversation_id: conversation,
            seq: Seq(2)
        })
        .await
        .unwrap()
        .acked_seq,
        Seq(5)
    );
    assert_eq!(
        bob.call(AckRequest {
            conversation_id: conversation,
            seq: Seq(5)
        })
        .await
        .unwrap()
        .acked_seq,
        Seq(5)
    );
    drop(bob);
    // Five remain owed.
    let (bob, login) = server.login(&bob_name).await;
    assert_eq!(login.unacked, 5);
    assert_eq!(
        bob.call(AckRequest {
            conversation_id: conversation,
            seq: Seq(999)
        })
        .await
        .unwrap()
        .acked_seq,
        Seq(10)
    );
    assert_eq!(
        bob.call(AckRequest {
            conversation_id: conversation,
            seq: Seq(7)
        })
        .await
        .unwrap()
        .acked_seq,
        Seq(10)
    );
    drop(bob);
    let (_bob, login) = server.login(&bob_name).await;
    assert_eq!(login.unacked, 0);
    // A later message is owed although the ack once said 999.
    alice.send(Target::User(bob_id), "m11").await.unwrap();
    let (_bob, login) = server.login(&bob_name).await;
    assert_eq!(login.unacked, 1);
}

#[tokio::test]
async fn offline_messages_arrive_at_login_in_order_until_acked() {
    let server = TestServer::start().await;
    let (alice_name, bob_name, carol_name) = (unique("alice"), unique("bob"), unique("carol"));
    let (alice, _) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    let (carol, carol_login) = server.user(&carol_name).await;
    let (bob_id, carol_id) = (bob_login.user.id, carol_login.user.id);
    befriend(&bob, &alice, &alice_name, &bob_name).await;
    befriend(&bob, &carol, &carol_name, &bob_name).await;
    let group = open_group(&alice, "trio").await;
    bob.call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    carol
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    drop(bob);
    drain_pushes(&alice).await;
    drain_pushes(&carol).await;

    // Interleaved across three conversations while Bob is away.
    let mut expected = Vec::new();
    for round in 0..3 {
        expected.push(
            alice
                .send(Target::User(bob_id), &format!("alice {round}"))
                .await
                .unwrap(),
        );
        expected.push(
            carol
                .send(Target::User(bob_id), &format!("carol {round}"))
                .await
                .unwrap(),
        );
        expected.push(
            alice
                .send(Target::Group(group.id), &format!("group {round}"))
                .await
                .unwrap(),
        );
    }
    // Bob's own message from another device is not owed to him.
    let (bob_phone, _) = server.login(&bob_name).await;
    drain_pushes(&bob_phone).await;
    bob_phone
        .send(Target::User(carol_id), "from bob")
        .await
        .unwrap();
    bob_phone.call(LogoutRequest {}).await.unwrap();
    drop(bob_phone);
    let mut order: Vec<(u64, u64)> = expected
        .iter()
        .map(|s| (s.conversation_id.0, s.seq.0))
        .collect();
    order.sort_unstable();

    let (bob, login) = server.login(&bob_name).await;
    assert_eq!(login.unacked, 9);
    let mut received = Vec::new();
    for _ in 0..9 {
        received.push(next_message(&bob).await);
    }
    let got: Vec<(u64, u64)> = received
        .iter()
        .map(|m| (m.conversation_id.0, m.seq.0))
        .collect();
    assert_eq!(got, order);
    assert!(received.iter().all(|m| m.body != "from bob"));
    expect_no_push(&bob).await;

    // Ack the group and the first of Alice's; the rest is owed again, at
    // every login until acked.
    let alice_conversation = expected[0].conversation_id;
    bob.call(AckRequest {
        conversation_id: alice_conversation,
        seq: expected[0].seq,
    })
    .await
    .unwrap();
    bob.call(AckRequest {
        conversation_id: group.conversation_id,
        seq: expected[8].seq,
    })
    .await
    .unwrap();
    drop(bob);
    let still_owed: Vec<(u64, u64)> = order
        .iter()
        .copied()
        .filter(|&(conversation, seq)| {
            conversation != group.conversation_id.0
                && !(conversation == alice_conversation.0 && seq <= expected[0].seq.0)
        })
        .collect();
    assert_eq!(still_owed.len(), 5);
    for _ in 0..2 {
        let (bob, login) = server.login(&bob_name).await;
        assert_eq!(login.unacked, 5);
        let mut got = Vec::new();
        for _ in 0..5 {
            let message = next_message(&bob).await;
            got.push((message.conversation_id.0, message.seq.0));
        }
        assert_eq!(got, still_owed);
        expect_no_push(&bob).await;
    }
}

#[tokio::test]
async fn sync_returns_what_was_missed_with_and_without_cursors() {
    let server = TestServer::start().await;
    let (alice, alice_id, _, bob, bob_id, bob_name) = two_friends(&server).await;
    let bodies: Vec<String> = (1..=4).map(|n| format!("a{n}")).collect();
    let sent = pipelined_sends(&alice, Target::User(bob_id), &bodies).await;
    let direct = sent[0].conversation_id;
    let group = open_group(&alice, "g").await;
    bob.call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    alice.send(Target::Group(group.id), "g1").await.unwrap();
    alice.send(Target::Group(group.id), "g2").await.unwrap();
    bob.call(AckRequest {
        conversation_id: direct,
        seq: Seq(2),
    })
    .await
    .unwrap();
    // Bob's own message: sync by cursor includes it, sync by ack does not.
    let own = bob.send(Target::User(alice_id), "b5").await.unwrap();
    assert_eq!(own.seq, Seq(5));

    let by_ack = bob
        .call(SyncRequest {
            cursors: Vec::new(),
            limit: None,
        })
        .await
        .unwrap();
    assert!(!by_ack.has_more);
    let got: Vec<_> = by_ack
        .messages
        .iter()
        .map(|m| (m.conversation_id, m.seq.0, m.body.as_str()))
        .collect();
    let mut expected = vec![
        (direct, 3, "a3"),
        (direct, 4, "a4"),
        (group.conversation_id, 1, "g1"),
        (group.conversation_id, 2, "g2"),
    ];
    expected.sort_by_key(|(conversation, seq, _)| (conversation.0, *seq));
    assert_eq!(got, expected);

    let by_cursor = bob
        .call(SyncRequest {
            cursors: vec![
                Cursor {
                    conversation_id: direct,
                    seq: Seq(1),
                },
                Cursor {
                    conversation_id: group.conversation_id,
                    seq: Seq(2),
                },
            ],
            limit: None,
        })
        .await
        .unwrap();
    let got: Vec<_> = by_cursor
        .messages
        .iter()
        .map(|m| (m.conversation_id, m.seq.0))
        .collect();
    assert_eq!(got, [(direct, 2), (direct, 3), (direct, 4), (direct, 5)]);

    // Limits page the answer.
    let limited = bob
        .call(SyncRequest {
            cursors: Vec::new(),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(limited.messages.len(), 1);
    assert!(limited.has_more);
    assert_eq!(
        status_of(
            bob.call(SyncRequest {
                cursors: Vec::new(),
                limit: Some(0)
            })
            .await
        ),
        Status::BadRequest
    );
    assert_eq!(
        status_of(
            bob.call(SyncRequest {
                cursors: Vec::new(),
                limit: Some(1001)
            })
            .await
        ),
        Status::BadRequest
    );
    // Sync reads; it does not ack: the same four are still owed.
    drop(bob);
    let (_bob, login) = server.login(&bob_name).await;
    assert_eq!(login.unacked, 4);
    assert_eq!(whole_history(&alice, direct).await.len(), 5);
}

#[tokio::test]
async fn a_message_for_an_offline_user_survives_a_restart() {
    let mut server = TestServer::start().await;
    let (alice, _, _, bob, bob_id, bob_name) = two_friends(&server).await;
    drop(bob);
    let sent = alice
        .send(Target::User(bob_id), "kept across the restart")
        .await
        .unwrap();
    server.restart().await;
    alice.closed().await;
    let (bob, login) = server.login(&bob_name).await;
    assert_eq!(login.unacked, 1);
    let message = next_message(&bob).await;
    assert_eq!(message.body, "kept across the restart");
    assert_eq!(message.seq, sent.seq);
    assert_eq!(message.conversation_id, sent.conversation_id);
    expect_no_push(&bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_burst_arrives_in_send_order() {
    let server = TestServer::start().await;
    let (alice, _, _, bob, bob_id, _) = two_friends(&server).await;
    let bodies: Vec<String> = (0..100).map(|n| format!("burst {n}")).collect();
    let sent = pipelined_sends(&alice, Target::User(bob_id), &bodies).await;
    // Answers in request order, with consecutive sequence numbers.
    let got: Vec<u64> = sent.iter().map(|s| s.seq.0).collect();
    assert_eq!(got, (1..=100).collect::<Vec<_>>());
    for body in &bodies {
        let message = next_message(&bob).await;
        assert_eq!(&message.body, body);
    }
    expect_no_push(&bob).await;
}

/// The cursor limit of `sync` can be reached within the frame limit: one
/// cursor too many is answered `bad_request` and the connection stays,
/// rather than the frame being refused as `too_large` and the connection
/// closed.
#[tokio::test]
async fn too_many_sync_cursors_is_a_bad_request_not_a_closed_connection() {
    let server = TestServer::start().await;
    let (connection, _) = server.user(&unique("many")).await;
    let largest_id = (1u64 << 53) - 1;
    let cursors = |count: usize| {
        vec![
            chat_proto::Cursor {
                conversation_id: chat_proto::ConversationId(largest_id),
                seq: chat_proto::Seq(largest_id),
            };
            count
        ]
    };
    connection
        .call(SyncRequest {
            cursors: cursors(chat_proto::SYNC_MAX_CURSORS),
            limit: None,
        })
        .await
        .expect("as many cursors as allowed");
    assert_eq!(
        common::status_of(
            connection
                .call(SyncRequest {
                    cursors: cursors(chat_proto::SYNC_MAX_CURSORS + 1),
                    limit: None
                })
                .await
        ),
        chat_proto::Status::BadRequest
    );
    connection.call(PingRequest {}).await.unwrap();
}
