//! Three nodes on one MariaDB and one Redis, behind nginx: friends, groups
//! and presence between users on different nodes, one account logged in
//! on two nodes at once, and the conversation list, read receipts, typing
//! and recall between nodes.

#[path = "common/cluster.rs"]
mod cluster;

use chat_client::IntoUserRef;
use chat_proto::{
    ConversationListRequest, FriendListRequest, FriendRemoveRequest, FriendUpdateKind,
    GroupCreateRequest, GroupJoinRequest, GroupMembersRequest, JoinPolicy, LogoutRequest, Push,
    ReadRequest, RecallRequest, Seq, Target, TypingRequest,
};
use cluster::{befriend, login_on, message_with, no_message, push_where, user_on, Cluster};

const SUITE: &str = "cluster_chat";

fn is_presence(push: &Push, user: chat_proto::UserId, online: bool) -> bool {
    matches!(push, Push::PushPresence(p) if p.user_id == user && p.online == online)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_groups_and_presence_across_three_nodes() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    let cluster = Cluster::start(&services, &services.redis, 3).await;
    let (alice, alice_login) = user_on(cluster.node(0), "alice").await;
    let (bob, bob_login) = user_on(cluster.node(1), "bob").await;
    let (carol, _) = user_on(cluster.node(2), "carol").await;
    // Dave comes in through nginx, wherever it sends him.
    let (dave, _) = user_on(cluster.proxy(), "dave").await;
    let bob_id = bob_login.user.id;
    let alice_id = alice_login.user.id;

    // A friend request and its answer cross nodes as pushes.
    befriend(&alice, "alice", &bob, "bob").await;
    let friends = alice.call(FriendListRequest {}).await.unwrap().friends;
    assert_eq!(friends.len(), 1);
    assert!(friends[0].online, "bob is online on another node");

    // 1:1 both ways, each message exactly once.
    alice.send(Target::User(bob_id), "hi bob").await.unwrap();
    let message = message_with(&bob, "hi bob").await;
    assert_eq!(message.sender_id, alice_id);
    bob.send(Target::User(alice_id), "hi alice").await.unwrap();
    message_with(&alice, "hi alice").await;
    no_message(&bob).await;
    no_message(&alice).await;

    // A group with a member on every node, and one behind the proxy.
    let group = alice
        .call(GroupCreateRequest {
            name: "everyone".to_owned(),
            description: "".to_owned(),
            join_policy: JoinPolicy::Open,
        })
        .await
        .unwrap()
        .group;
    for member in [&bob, &carol, &dave] {
        member
            .call(GroupJoinRequest { group_id: group.id })
            .await
            .unwrap();
    }
    carol
        .send(Target::Group(group.id), "hello group")
        .await
        .unwrap();
    for member in [&alice, &bob, &dave] {
        let message = message_with(member, "hello group").await;
        assert_eq!(message.conversation_id, group.conversation_id);
        no_message(member).await;
    }
    no_message(&carol).await;
    let members = dave
        .call(GroupMembersRequest { group_id: group.id })
        .await
        .unwrap()
        .members;
    assert_eq!(members.len(), 4);
    assert!(
        members.iter().all(|member| member.online),
        "every member is online somewhere: {members:?}"
    );

    // Presence: bob leaves node 1, alice on node 0 sees him go; he comes
    // back on node 2, she sees him come.
    bob.call(LogoutRequest {}).await.unwrap();
    push_where(&alice, "bob offline", |push| {
        is_presence(push, bob_id, false)
    })
    .await;
    assert!(!alice.call(FriendListRequest {}).await.unwrap().friends[0].online);
    let (bob_again, _) = login_on(cluster.node(2), "bob").await;
    push_where(&alice, "bob online", |push| is_presence(push, bob_id, true)).await;
    assert!(alice.call(FriendListRequest {}).await.unwrap().friends[0].online);

    // Ending the friendship is pushed across nodes too.
    alice
        .call(FriendRemoveRequest {
            user: "bob".into_user_ref(),
        })
        .await
        .unwrap();
    let update = push_where(&bob_again, "friendship ended", |push| {
        matches!(push, Push::PushFriendUpdate(_))
    })
    .await;
    let Push::PushFriendUpdate(update) = update else {
        unreachable!()
    };
    assert_eq!(update.kind, FriendUpdateKind::Removed);

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_on_two_nodes_gets_every_message_on_both() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    let cluster = Cluster::start(&services, &services.redis, 3).await;
    let (erin_0, erin_login) = user_on(cluster.node(0), "erin").await;
    let (erin_1, _) = login_on(cluster.node(1), "erin").await;
    let (frank, frank_login) = user_on(cluster.node(2), "frank").await;
    let erin_id = erin_login.user.id;
    let frank_id = frank_login.user.id;
    befriend(&frank, "frank", &erin_0, "erin").await;

    frank
        .send(Target::User(erin_id), "to both of you")
        .await
        .unwrap();
    message_with(&erin_0, "to both of you").await;
    message_with(&erin_1, "to both of you").await;

    // What one session sends reaches the other session too, not itself.
    erin_0
        .send(Target::User(frank_id), "from node 0")
        .await
        .unwrap();
    message_with(&frank, "from node 0").await;
    message_with(&erin_1, "from node 0").await;
    no_message(&erin_0).await;

    // Leaving one node is not going offline.
    erin_0.call(LogoutRequest {}).await.unwrap();
    frank
        .send(Target::User(erin_id), "still there?")
        .await
        .unwrap();
    message_with(&erin_1, "still there?").await;
    assert!(frank.call(FriendListRequest {}).await.unwrap().friends[0].online);
    erin_1.call(LogoutRequest {}).await.unwrap();
    push_where(&frank, "erin offline", |push| {
        is_presence(push, erin_id, false)
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_typing_and_recall_cross_nodes() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    let cluster = Cluster::start(&services, &services.redis, 3).await;
    let (gina_0, gina_login) = user_on(cluster.node(0), "gina").await;
    let (gina_2, _) = login_on(cluster.node(2), "gina").await;
    let (hank, hank_login) = user_on(cluster.node(1), "hank").await;
    let gina_id = gina_login.user.id;
    let hank_id = hank_login.user.id;
    befriend(&hank, "hank", &gina_0, "gina").await;
    for body in ["one", "two"] {
        hank.send(Target::User(gina_id), body).await.unwrap();
    }
    let conversation = message_with(&gina_0, "two").await.conversation_id;
    message_with(&gina_2, "two").await;

    // The list on node 2 counts what hank wrote on node 1.
    let list = gina_2
        .call(ConversationListRequest::default())
        .await
        .unwrap();
    assert_eq!(list.conversations[0].conversation_id, conversation);
    assert_eq!(list.conversations[0].unread, 2);
    assert_eq!(
        list.conversations[0].last_message.as_ref().unwrap().preview,
        "two"
    );

    // Reading on node 0: the receipt reaches hank on node 1 and gina's
    // session on node 2.
    gina_0
        .call(ReadRequest {
            conversation_id: conversation,
            seq: Seq(2),
        })
        .await
        .unwrap();
    let is_read = |push: &Push| matches!(push, Push::PushRead(read) if read.user_id == gina_id && read.read_seq == Seq(2));
    push_where(&hank, "gina's receipt", is_read).await;
    push_where(&gina_2, "gina's own read", is_read).await;
    let list = gina_2
        .call(ConversationListRequest::default())
        .await
        .unwrap();
    assert_eq!(list.conversations[0].unread, 0);

    // Typing on node 1 reaches both of gina's sessions.
    hank.call(TypingRequest {
        conversation_id: conversation,
    })
    .await
    .unwrap();
    let is_typing =
        |push: &Push| matches!(push, Push::PushTyping(typing) if typing.user_id == hank_id);
    push_where(&gina_0, "hank typing", is_typing).await;
    push_where(&gina_2, "hank typing", is_typing).await;

    // A recall on node 1 reaches both of gina's sessions.
    hank.call(RecallRequest {
        conversation_id: conversation,
        seq: Seq(1),
    })
    .await
    .unwrap();
    let is_recall = |push: &Push| matches!(push, Push::PushRecall(recall) if recall.seq == Seq(1) && recall.recalled.by == hank_id);
    push_where(&gina_0, "the recall", is_recall).await;
    push_where(&gina_2, "the recall", is_recall).await;
    cluster.shutdown().await;
}
