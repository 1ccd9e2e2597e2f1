//! Conversations as people use them, through the protocol: the conversation
//! list with previews and unread counts, read positions and receipts, typing,
//! and recall (on SQLite; the store conformance suite runs the same store
//! code on MariaDB, and `cluster_chat.rs` carries receipts and typing across
//! nodes).

mod common;

use chat_client::{Connection, IntoUserRef};
use chat_proto::{
    ConversationCursor, ConversationId, ConversationKind, ConversationListRequest,
    ConversationListResponse, Cursor, FriendListRequest, FriendRemoveRequest, FriendUpdateRequest,
    GroupJoinRequest, GroupLeaveRequest, GroupSetRoleRequest, HistoryRequest, Push,
    ReadPositionsRequest, ReadRequest, RecallRequest, Role, Seq, Status, SyncRequest, Target,
    TypingRequest, UserId,
};
use common::{
    befriend, drain_pushes, expect_no_push, expect_push, open_group, status_of, unique, TestServer,
};

async fn list(connection: &Connection) -> ConversationListResponse {
    connection
        .call(ConversationListRequest::default())
        .await
        .expect("conversation list")
}

async fn read(connection: &Connection, conversation_id: ConversationId, seq: u64) -> Seq {
    connection
        .call(ReadRequest {
            conversation_id,
            seq: Seq(seq),
        })
        .await
        .expect("read")
        .read_seq
}

async fn typing(connection: &Connection, conversation_id: ConversationId) {
    connection
        .call(TypingRequest { conversation_id })
        .await
        .expect("typing is answered");
}

fn recall(conversation_id: ConversationId, seq: u64) -> RecallRequest {
    RecallRequest {
        conversation_id,
        seq: Seq(seq),
    }
}

/// Two friends, each logged in once; returns their connections, ids and the
/// pair's conversation.
async fn pair(
    server: &TestServer,
) -> (
    (Connection, UserId, String),
    (Connection, UserId, String),
    ConversationId,
) {
    let (a_name, b_name) = (unique("ann"), unique("ben"));
    let (a, a_login) = server.user(&a_name).await;
    let (b, b_login) = server.user(&b_name).await;
    befriend(&a, &b, &b_name, &a_name).await;
    let conversation = a
        .call(FriendListRequest {})
        .await
        .unwrap()
        .friends
        .into_iter()
        .find(|friend| friend.name == b_name)
        .unwrap()
        .conversation_id;
    drain_pushes(&a).await;
    drain_pushes(&b).await;
    (
        (a, a_login.user.id, a_name),
        (b, b_login.user.id, b_name),
        conversation,
    )
}

#[tokio::test]
async fn the_list_orders_by_activity_with_previews_and_counts() {
    let server = TestServer::start().await;
    let ((alice, alice_id, alice_name), (bob, bob_id, bob_name), with_bob) = pair(&server).await;
    let carol_name = unique("cat");
    let (carol, _) = server.user(&carol_name).await;
    befriend(&alice, &carol, &carol_name, &alice_name).await;
    let group = open_group(&carol, "team").await;
    alice
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    alice
        .call(FriendUpdateRequest {
            user: bob_id.into_user_ref(),
            remark: Some("Bobby".to_owned()),
            category: None,
        })
        .await
        .unwrap();

    bob.send(Target::User(alice_id), "first").await.unwrap();
    bob.send(Target::User(alice_id), "second").await.unwrap();
    carol
        .send(Target::Group(group.id), "team news")
        .await
        .unwrap();

    let page = list(&alice).await;
    assert!(!page.has_more);
    let kinds: Vec<ConversationKind> = page.conversations.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ConversationKind::Group,
            ConversationKind::Direct,
            ConversationKind::Direct
        ]
    );
    let team = &page.conversations[0];
    assert_eq!(team.group.as_ref().unwrap().name, "team");
    assert_eq!((team.unread, team.last_seq), (1, Seq(1)));
    assert_eq!(team.last_message.as_ref().unwrap().preview, "team news");
    let bob_entry = &page.conversations[1];
    assert_eq!(bob_entry.conversation_id, with_bob);
    let peer = bob_entry.peer.as_ref().unwrap();
    assert_eq!((peer.id, peer.name.as_str()), (bob_id, bob_name.as_str()));
    assert_eq!(peer.remark.as_deref(), Some("Bobby"));
    assert!(peer.online);
    assert_eq!(bob_entry.unread, 2);
    assert_eq!(bob_entry.last_message.as_ref().unwrap().preview, "second");
    // The friendship with carol has no message yet.
    assert!(page.conversations[2].last_message.is_none());

    // Paging walks the same order.
    let first = alice
        .call(ConversationListRequest {
            before: None,
            limit: Some(1),
        })
        .await
        .unwrap();
    assert!(first.has_more);
    let last = &first.conversations[0];
    let rest = alice
        .call(ConversationListRequest {
            before: Some(ConversationCursor {
                last_activity_ms: last.last_activity_ms,
                conversation_id: last.conversation_id,
            }),
            limit: Some(5),
        })
        .await
        .unwrap();
    assert_eq!(rest.conversations.len(), 2);
    assert_eq!(rest.conversations[0].conversation_id, with_bob);
    assert_eq!(
        status_of(
            alice
                .call(ConversationListRequest {
                    before: None,
                    limit: Some(0)
                })
                .await
        ),
        Status::BadRequest
    );

    // Answering clears the count: whoever writes has read.
    alice.send(Target::User(bob_id), "reply").await.unwrap();
    let page = list(&alice).await;
    assert_eq!(page.conversations[0].conversation_id, with_bob);
    assert_eq!(page.conversations[0].unread, 0);
    // A login reports what is unread.
    let (_again, login) = server.login(&alice_name).await;
    let unread: Vec<(ConversationId, u64)> = login
        .unread
        .iter()
        .map(|count| (count.conversation_id, count.unread))
        .collect();
    assert_eq!(unread, [(group.conversation_id, 1)]);

    // Leaving the group takes it off the list.
    alice
        .call(GroupLeaveRequest { group_id: group.id })
        .await
        .unwrap();
    let page = list(&alice).await;
    assert_eq!(page.conversations.len(), 2);
    assert!(page
        .conversations
        .iter()
        .all(|c| c.kind == ConversationKind::Direct));
}

#[tokio::test]
async fn a_read_reaches_the_peer_and_the_readers_other_sessions() {
    let server = TestServer::start().await;
    let ((alice, alice_id, alice_name), (bob, bob_id, _), conversation) = pair(&server).await;
    let (alice_phone, _) = server.login(&alice_name).await;
    drain_pushes(&bob).await;
    for body in ["one", "two", "three"] {
        bob.send(Target::User(alice_id), body).await.unwrap();
    }
    drain_pushes(&alice).await;
    drain_pushes(&alice_phone).await;

    assert_eq!(read(&alice, conversation, 2).await, Seq(2));
    // Bob sees the receipt; alice's phone clears its count.
    let receipt = expect_push(&bob, |push| matches!(push, Push::PushRead(_))).await;
    let Push::PushRead(receipt) = receipt else {
        unreachable!()
    };
    assert_eq!(
        (receipt.conversation_id, receipt.user_id, receipt.read_seq),
        (conversation, alice_id, Seq(2))
    );
    let Push::PushRead(mine) =
        expect_push(&alice_phone, |push| matches!(push, Push::PushRead(_))).await
    else {
        unreachable!()
    };
    assert_eq!((mine.user_id, mine.read_seq), (alice_id, Seq(2)));
    // The session that read is not told what it did.
    expect_no_push(&alice).await;
    assert_eq!(list(&alice_phone).await.conversations[0].unread, 1);

    // Never backwards, never past the end; a repeat pushes nothing.
    assert_eq!(read(&alice, conversation, 1).await, Seq(2));
    assert_eq!(read(&alice, conversation, 999).await, Seq(3));
    let Push::PushRead(receipt) = expect_push(&bob, |push| matches!(push, Push::PushRead(_))).await
    else {
        unreachable!()
    };
    assert_eq!(receipt.read_seq, Seq(3));
    assert_eq!(read(&alice, conversation, 3).await, Seq(3));
    expect_no_push(&bob).await;

    let positions = bob
        .call(ReadPositionsRequest {
            conversation_id: conversation,
        })
        .await
        .unwrap()
        .positions;
    let positions: Vec<(UserId, Seq)> = positions.iter().map(|p| (p.user_id, p.read_seq)).collect();
    let mut expected = vec![(alice_id, Seq(3)), (bob_id, Seq(3))];
    expected.sort_unstable();
    assert_eq!(positions, expected);

    // Strangers may neither read nor look.
    let (stranger, _) = server.user(&unique("eve")).await;
    assert_eq!(
        status_of(
            stranger
                .call(ReadRequest {
                    conversation_id: conversation,
                    seq: Seq(1)
                })
                .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            stranger
                .call(ReadPositionsRequest {
                    conversation_id: conversation
                })
                .await
        ),
        Status::Forbidden
    );
}

#[tokio::test]
async fn group_receipts_go_to_the_senders_they_cover() {
    let server = TestServer::start().await;
    let owner_name = unique("own");
    let (owner, _) = server.user(&owner_name).await;
    let (bob, bob_login) = server.user(&unique("bob")).await;
    let (carol, _) = server.user(&unique("car")).await;
    let (dave, dave_login) = server.user(&unique("dav")).await;
    let group = open_group(&owner, "g").await;
    for member in [&bob, &carol, &dave] {
        member
            .call(GroupJoinRequest { group_id: group.id })
            .await
            .unwrap();
    }
    bob.send(Target::Group(group.id), "from bob").await.unwrap();
    dave.send(Target::Group(group.id), "from dave")
        .await
        .unwrap();
    for member in [&owner, &bob, &carol, &dave] {
        drain_pushes(member).await;
    }

    // Carol reads bob's message only: bob is told, dave and the owner not.
    assert_eq!(read(&carol, group.conversation_id, 1).await, Seq(1));
    let Push::PushRead(receipt) = expect_push(&bob, |push| matches!(push, Push::PushRead(_))).await
    else {
        unreachable!()
    };
    assert_eq!(receipt.read_seq, Seq(1));
    expect_no_push(&dave).await;
    expect_no_push(&owner).await;
    // Then the rest: dave is told.
    read(&carol, group.conversation_id, 2).await;
    expect_push(&dave, |push| matches!(push, Push::PushRead(_))).await;
    expect_no_push(&bob).await;

    // "Read by N": bob's message is read by bob, carol and dave (who wrote
    // after it), not the owner.
    let positions = owner
        .call(ReadPositionsRequest {
            conversation_id: group.conversation_id,
        })
        .await
        .unwrap()
        .positions;
    let read_first = positions.iter().filter(|p| p.read_seq >= Seq(1)).count();
    assert_eq!(read_first, 3);
    let dave_position = positions
        .iter()
        .find(|p| p.user_id == dave_login.user.id)
        .unwrap();
    assert_eq!(dave_position.read_seq, Seq(2));
    let _ = bob_login;
}

#[tokio::test]
async fn typing_reaches_online_participants_and_repeats_are_dropped_quietly() {
    let server = TestServer::start().await;
    let ((alice, alice_id, alice_name), (bob, _, bob_name), conversation) = pair(&server).await;
    let (bob_phone, _) = server.login(&bob_name).await;
    drain_pushes(&alice).await;

    typing(&bob, conversation).await;
    let Push::PushTyping(push) =
        expect_push(&alice, |push| matches!(push, Push::PushTyping(_))).await
    else {
        unreachable!()
    };
    let bob_id = push.user_id;
    assert_eq!(push.conversation_id, conversation);
    assert_ne!(bob_id, alice_id);
    // Not to the typist's own sessions.
    expect_no_push(&bob_phone).await;
    // A fast typist: ten more within the second are answered and dropped.
    for _ in 0..10 {
        typing(&bob, conversation).await;
    }
    expect_no_push(&alice).await;
    // Another session of bob has its own allowance.
    typing(&bob_phone, conversation).await;
    expect_push(&alice, |push| matches!(push, Push::PushTyping(_))).await;
    // Nothing is stored: alice logging in later gets no typing.
    let (_, login) = server.login(&alice_name).await;
    assert_eq!(login.unacked, 0);

    // Outsiders may not.
    let (stranger, _) = server.user(&unique("eve")).await;
    assert_eq!(
        status_of(
            stranger
                .call(TypingRequest {
                    conversation_id: conversation
                })
                .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            stranger
                .call(TypingRequest {
                    conversation_id: ConversationId(987_654)
                })
                .await
        ),
        Status::Forbidden
    );
}

#[tokio::test]
async fn recall_by_the_sender_within_the_window_and_by_group_admins() {
    let server = TestServer::start().await;
    let owner_name = unique("own");
    let (owner, owner_login) = server.user(&owner_name).await;
    let (admin, admin_login) = server.user(&unique("adm")).await;
    let (bob, bob_login) = server.user(&unique("bob")).await;
    let (carol, _) = server.user(&unique("car")).await;
    let group = open_group(&owner, "g").await;
    for member in [&admin, &bob, &carol] {
        member
            .call(GroupJoinRequest { group_id: group.id })
            .await
            .unwrap();
    }
    owner
        .call(GroupSetRoleRequest {
            group_id: group.id,
            user: admin_login.user.id.into_user_ref(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    let conversation = group.conversation_id;
    bob.send(Target::Group(group.id), "oops").await.unwrap();
    bob.send(Target::Group(group.id), "keep").await.unwrap();
    carol.send(Target::Group(group.id), "spam").await.unwrap();
    for member in [&owner, &admin, &bob, &carol] {
        drain_pushes(member).await;
    }

    // A member may not recall someone else's message.
    assert_eq!(
        status_of(carol.call(recall(conversation, 1)).await),
        Status::Forbidden
    );
    // The sender may: everyone else is told.
    let tombstone = bob.call(recall(conversation, 1)).await.unwrap().message;
    assert_eq!(tombstone.body, "");
    let recalled = tombstone.recalled.expect("a tombstone");
    assert_eq!(recalled.by, bob_login.user.id);
    for member in [&owner, &admin, &carol] {
        let Push::PushRecall(push) =
            expect_push(member, |push| matches!(push, Push::PushRecall(_))).await
        else {
            unreachable!()
        };
        assert_eq!((push.conversation_id, push.seq), (conversation, Seq(1)));
        assert_eq!(push.recalled, recalled);
    }
    // Twice is the same answer and no push.
    let again = bob.call(recall(conversation, 1)).await.unwrap().message;
    assert_eq!(again, tombstone);
    expect_no_push(&carol).await;
    // An admin removes carol's message.
    let removed = admin.call(recall(conversation, 3)).await.unwrap().message;
    assert_eq!(removed.recalled.unwrap().by, admin_login.user.id);
    assert_eq!(
        status_of(bob.call(recall(conversation, 99)).await),
        Status::NotFound
    );

    // History, sync and the list show tombstones.
    let history = owner
        .call(HistoryRequest {
            conversation_id: conversation,
            before_seq: None,
            after_seq: None,
            limit: None,
        })
        .await
        .unwrap()
        .messages;
    let shown: Vec<(&str, bool)> = history
        .iter()
        .map(|m| (m.body.as_str(), m.recalled.is_some()))
        .collect();
    assert_eq!(shown, [("", true), ("keep", false), ("", true)]);
    let synced = owner
        .call(SyncRequest {
            cursors: vec![Cursor {
                conversation_id: conversation,
                seq: Seq(0),
            }],
            limit: None,
        })
        .await
        .unwrap()
        .messages;
    assert_eq!(synced.len(), 3);
    assert!(synced[0].recalled.is_some() && synced[2].recalled.is_some());
    let entry = list(&owner).await.conversations.remove(0);
    assert!(entry.last_message.unwrap().recalled);
    let _ = owner_login;
}

#[tokio::test]
async fn past_the_window_a_sender_may_not_recall() {
    let server = TestServer::start_with(|config| config.recall_window_secs = 0).await;
    let ((alice, _, _), (bob, bob_id, _), conversation) = pair(&server).await;
    alice.send(Target::User(bob_id), "too late").await.unwrap();
    assert_eq!(
        status_of(alice.call(recall(conversation, 1)).await),
        Status::Forbidden
    );
    // In a pair neither side is an admin: the other may not either.
    assert_eq!(
        status_of(bob.call(recall(conversation, 1)).await),
        Status::Forbidden
    );
}

#[tokio::test]
async fn a_former_friend_sees_no_presence_typing_or_receipts() {
    let server = TestServer::start().await;
    let ((ann, ann_id, ann_name), (ben, ben_id, ben_name), conversation) = pair(&server).await;
    ben.send(Target::User(ann_id), "bye").await.unwrap();
    drain_pushes(&ann).await;
    ben.call(FriendRemoveRequest {
        user: ann_name.as_str().into_user_ref(),
    })
    .await
    .unwrap();
    drain_pushes(&ann).await;
    drain_pushes(&ben).await;

    // The conversation stays in the list, without the other's presence.
    let page = list(&ann).await;
    let entry = &page.conversations[0];
    assert_eq!(entry.conversation_id, conversation);
    let peer = entry.peer.as_ref().unwrap();
    assert_eq!(peer.id, ben_id);
    assert!(!peer.online, "a former friend's presence must not show");
    // No typing at them, no receipts to them, no look at their position.
    assert_eq!(
        status_of(
            ann.call(TypingRequest {
                conversation_id: conversation
            })
            .await
        ),
        Status::Forbidden
    );
    assert_eq!(read(&ann, conversation, 1).await, Seq(1));
    expect_no_push(&ben).await;
    let positions = ann
        .call(ReadPositionsRequest {
            conversation_id: conversation,
        })
        .await
        .unwrap()
        .positions;
    assert_eq!(positions.len(), 1);
    assert_ne!(positions[0].user_id, ben_id);
    // Friends again: the conversation is theirs again, at the top.
    befriend(&ben, &ann, &ann_name, &ben_name).await;
    let page = list(&ann).await;
    assert_eq!(page.conversations[0].conversation_id, conversation);
    assert!(page.conversations[0].peer.as_ref().unwrap().online);
}
