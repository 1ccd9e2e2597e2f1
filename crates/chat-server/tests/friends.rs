//! Friends over real TCP: requests and their answers with the pushes they
//! cause, removal, re-befriending, remarks and categories, and presence.

mod common;

use chat_client::IntoUserRef;
use chat_proto::{
    FriendAddOutcome, FriendAddRequest, FriendListRequest, FriendRemoveRequest,
    FriendRespondRequest, FriendUpdateKind, FriendUpdateRequest, LogoutRequest, Push,
    RegisterRequest, Status, Target, UserId,
};
use common::{
    befriend, expect_no_push, expect_push, expect_silence, next_message, status_of, unique,
    whole_history, TestServer,
};

/// Waits for a friend update push and returns it.
async fn expect_friend_update(
    connection: &chat_client::Connection,
) -> chat_proto::FriendUpdatePush {
    match expect_push(connection, |push| matches!(push, Push::PushFriendUpdate(_))).await {
        Push::PushFriendUpdate(update) => update,
        _ => unreachable!("matched a friend update"),
    }
}

/// Waits for a presence push about `user`, skipping presence of others.
async fn expect_presence(connection: &chat_client::Connection, user: UserId) -> bool {
    loop {
        match connection
            .next_push_timeout(common::PUSH_WAIT)
            .await
            .expect("a presence push arrives in time")
        {
            Push::PushPresence(presence) if presence.user_id == user => return presence.online,
            Push::PushPresence(_) => {}
            other => panic!("unexpected push {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_request_is_pushed_and_accepting_it_is_pushed_back() {
    let server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, alice_login) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;

    let asked = alice
        .call(FriendAddRequest {
            user: bob_name.as_str().into_user_ref(),
            message: Some("hi, it's alice".to_owned()),
        })
        .await
        .unwrap();
    assert_eq!(asked.outcome, FriendAddOutcome::Pending);
    assert_eq!(asked.user, bob_login.user);
    assert!(asked.friend.is_none());
    let Push::PushFriendRequest(pushed) =
        expect_push(&bob, |push| matches!(push, Push::PushFriendRequest(_))).await
    else {
        unreachable!()
    };
    assert_eq!(pushed.request.from, alice_login.user);
    assert_eq!(pushed.request.to, bob_login.user);
    assert_eq!(pushed.request.message.as_deref(), Some("hi, it's alice"));

    // Both sides see the pending request in their lists.
    let alice_list = alice.call(FriendListRequest {}).await.unwrap();
    assert_eq!(alice_list.outgoing_requests.len(), 1);
    assert_eq!(alice_list.outgoing_requests[0].to, bob_login.user);
    assert!(alice_list.incoming_requests.is_empty());
    let bob_list = bob.call(FriendListRequest {}).await.unwrap();
    assert_eq!(bob_list.incoming_requests.len(), 1);
    assert_eq!(bob_list.incoming_requests[0].from, alice_login.user);

    // Asking again, or asking oneself, is a conflict.
    assert_eq!(
        status_of(
            alice
                .call(FriendAddRequest {
                    user: bob_name.as_str().into_user_ref(),
                    message: None
                })
                .await
        ),
        Status::Conflict
    );
    assert_eq!(
        status_of(
            alice
                .call(FriendAddRequest {
                    user: alice_name.as_str().into_user_ref(),
                    message: None
                })
                .await
        ),
        Status::Conflict
    );
    assert_eq!(
        status_of(
            alice
                .call(FriendAddRequest {
                    user: alice_login.user.id.into_user_ref(),
                    message: None
                })
                .await
        ),
        Status::Conflict
    );

    let accepted = bob
        .call(FriendRespondRequest {
            user: alice_name.as_str().into_user_ref(),
            accept: true,
        })
        .await
        .unwrap();
    assert!(accepted.accepted);
    let bobs_view = accepted.friend.expect("the new friend");
    assert_eq!(bobs_view.id, alice_login.user.id);
    assert!(bobs_view.online);
    let update = expect_friend_update(&alice).await;
    assert_eq!(update.kind, FriendUpdateKind::Accepted);
    assert_eq!(update.user, bob_login.user);
    let alices_view = update.friend.expect("the new friend in the push");
    assert_eq!(alices_view.id, bob_login.user.id);
    assert_eq!(alices_view.name, bob_name);
    assert_eq!(alices_view.conversation_id, bobs_view.conversation_id);

    // The request is gone and they are friends both ways.
    for (who, friend) in [(&alice, bob_login.user.id), (&bob, alice_login.user.id)] {
        let list = who.call(FriendListRequest {}).await.unwrap();
        assert!(list.incoming_requests.is_empty() && list.outgoing_requests.is_empty());
        assert_eq!(list.friends.len(), 1);
        assert_eq!(list.friends[0].id, friend);
    }
    assert_eq!(
        status_of(
            alice
                .call(FriendAddRequest {
                    user: bob_name.as_str().into_user_ref(),
                    message: None
                })
                .await
        ),
        Status::Conflict
    );
    assert_eq!(
        status_of(
            bob.call(FriendRespondRequest {
                user: alice_name.as_str().into_user_ref(),
                accept: true
            })
            .await
        ),
        Status::NotFound
    );
}

#[tokio::test]
async fn an_offline_user_finds_the_request_at_login_and_can_decline_it() {
    let server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, alice_login) = server.user(&alice_name).await;
    server
        .connect()
        .await
        .call(RegisterRequest {
            name: bob_name.to_owned(),
            password: common::PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    alice
        .call(FriendAddRequest {
            user: bob_name.as_str().into_user_ref(),
            message: Some("remember me?".to_owned()),
        })
        .await
        .unwrap();

    let (bob, bob_login) = server.login(&bob_name).await;
    assert_eq!(bob_login.incoming_requests.len(), 1);
    assert_eq!(bob_login.incoming_requests[0].from, alice_login.user);
    assert_eq!(
        bob_login.incoming_requests[0].message.as_deref(),
        Some("remember me?")
    );
    assert!(bob_login.outgoing_requests.is_empty());
    // The sender sees it as outgoing at login too.
    let (alice_again, alice_relogin) = server.login(&alice_name).await;
    assert_eq!(alice_relogin.outgoing_requests.len(), 1);
    assert_eq!(alice_relogin.outgoing_requests[0].to, bob_login.user);
    drop(alice_again);

    let declined = bob
        .call(FriendRespondRequest {
            user: alice_login.user.id.into_user_ref(),
            accept: false,
        })
        .await
        .unwrap();
    assert!(!declined.accepted);
    assert!(declined.friend.is_none());
    let update = expect_friend_update(&alice).await;
    assert_eq!(update.kind, FriendUpdateKind::Declined);
    assert_eq!(update.user, bob_login.user);
    assert!(update.friend.is_none());
    for who in [&alice, &bob] {
        let list = who.call(FriendListRequest {}).await.unwrap();
        assert!(list.friends.is_empty());
        assert!(list.incoming_requests.is_empty() && list.outgoing_requests.is_empty());
    }
    assert_eq!(
        status_of(alice.send(Target::User(bob_login.user.id), "hello?").await),
        Status::Forbidden
    );
    // Declined is not forever: Alice may ask again.
    let again = alice
        .call(FriendAddRequest {
            user: bob_name.as_str().into_user_ref(),
            message: None,
        })
        .await
        .unwrap();
    assert_eq!(again.outcome, FriendAddOutcome::Pending);
}

#[tokio::test]
async fn asking_someone_who_already_asked_accepts_at_once() {
    let server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, alice_login) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    alice
        .call(FriendAddRequest {
            user: bob_name.as_str().into_user_ref(),
            message: None,
        })
        .await
        .unwrap();
    expect_push(&bob, |push| matches!(push, Push::PushFriendRequest(_))).await;

    let crossed = bob
        .call(FriendAddRequest {
            user: alice_name.as_str().into_user_ref(),
            message: None,
        })
        .await
        .unwrap();
    assert_eq!(crossed.outcome, FriendAddOutcome::Accepted);
    assert_eq!(crossed.user, alice_login.user);
    let friend = crossed.friend.expect("the new friend");
    assert_eq!(friend.id, alice_login.user.id);
    let update = expect_friend_update(&alice).await;
    assert_eq!(update.kind, FriendUpdateKind::Accepted);
    assert_eq!(update.user, bob_login.user);
    assert_eq!(
        update.friend.expect("friend in the push").conversation_id,
        friend.conversation_id
    );
    // Bob got no request push for his own acceptance.
    expect_no_push(&bob).await;
    let sent = bob
        .send(Target::User(alice_login.user.id), "hi")
        .await
        .unwrap();
    assert_eq!(sent.conversation_id, friend.conversation_id);
    assert!(alice
        .call(FriendListRequest {})
        .await
        .unwrap()
        .outgoing_requests
        .is_empty());
}

#[tokio::test]
async fn removing_a_friend_stops_chat_and_befriending_again_restores_the_conversation() {
    let server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, alice_login) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    befriend(&alice, &bob, &bob_name, &alice_name).await;
    let first = alice
        .send(Target::User(bob_login.user.id), "before the quarrel")
        .await
        .unwrap();
    next_message(&bob).await;

    let removed = alice
        .call(FriendRemoveRequest {
            user: bob_name.as_str().into_user_ref(),
        })
        .await
        .unwrap();
    assert_eq!(removed.user, bob_login.user);
    let update = expect_friend_update(&bob).await;
    assert_eq!(update.kind, FriendUpdateKind::Removed);
    assert_eq!(update.user, alice_login.user);
    for (who, other) in [(&alice, bob_login.user.id), (&bob, alice_login.user.id)] {
        assert!(who
            .call(FriendListRequest {})
            .await
            .unwrap()
            .friends
            .is_empty());
        assert_eq!(
            status_of(who.send(Target::User(other), "still friends?").await),
            Status::Forbidden
        );
    }
    assert_eq!(
        status_of(
            alice
                .call(FriendRemoveRequest {
                    user: bob_name.as_str().into_user_ref()
                })
                .await
        ),
        Status::NotFound
    );

    befriend(&bob, &alice, &alice_name, &bob_name).await;
    let friends = alice.call(FriendListRequest {}).await.unwrap().friends;
    assert_eq!(friends[0].conversation_id, first.conversation_id);
    let second = alice
        .send(Target::User(bob_login.user.id), "friends again")
        .await
        .unwrap();
    assert_eq!(second.conversation_id, first.conversation_id);
    assert_eq!(second.seq.0, first.seq.0 + 1);
    let history = whole_history(&bob, first.conversation_id).await;
    let bodies: Vec<_> = history.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["before the quarrel", "friends again"]);
}

#[tokio::test]
async fn remark_and_category_set_clear_and_stay_unchanged() {
    let server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, _) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    befriend(&alice, &bob, &bob_name, &alice_name).await;

    let friend = alice
        .call(FriendUpdateRequest {
            user: bob_name.as_str().into_user_ref(),
            remark: Some("Bobby".to_owned()),
            category: Some("work".to_owned()),
        })
        .await
        .unwrap()
        .friend;
    assert_eq!(friend.id, bob_login.user.id);
    assert_eq!(friend.remark.as_deref(), Some("Bobby"));
    assert_eq!(friend.category.as_deref(), Some("work"));

    // None leaves a field alone.
    let friend = alice
        .call(FriendUpdateRequest {
            user: bob_login.user.id.into_user_ref(),
            remark: Some("Robert".to_owned()),
            category: None,
        })
        .await
        .unwrap()
        .friend;
    assert_eq!(friend.remark.as_deref(), Some("Robert"));
    assert_eq!(friend.category.as_deref(), Some("work"));
    let friend = alice
        .call(FriendUpdateRequest {
            user: bob_name.as_str().into_user_ref(),
            remark: None,
            category: Some("family".to_owned()),
        })
        .await
        .unwrap()
        .friend;
    assert_eq!(friend.remark.as_deref(), Some("Robert"));
    assert_eq!(friend.category.as_deref(), Some("family"));
    let friend = alice
        .call(FriendUpdateRequest {
            user: bob_name.as_str().into_user_ref(),
            remark: None,
            category: None,
        })
        .await
        .unwrap()
        .friend;
    assert_eq!(friend.remark.as_deref(), Some("Robert"));
    assert_eq!(friend.category.as_deref(), Some("family"));

    // An empty string clears a field.
    let friend = alice
        .call(FriendUpdateRequest {
            user: bob_name.as_str().into_user_ref(),
            remark: Some("".to_owned()),
            category: None,
        })
        .await
        .unwrap()
        .friend;
    assert_eq!(friend.remark, None);
    assert_eq!(friend.category.as_deref(), Some("family"));

    // The list and a fresh login agree; the remark is Alice's alone.
    let listed = alice.call(FriendListRequest {}).await.unwrap().friends;
    assert_eq!(listed[0].remark, None);
    assert_eq!(listed[0].category.as_deref(), Some("family"));
    let (_alice_again, login) = server.login(&alice_name).await;
    assert_eq!(login.friends[0].category.as_deref(), Some("family"));
    let bobs = bob.call(FriendListRequest {}).await.unwrap().friends;
    assert_eq!(bobs[0].remark, None);
    assert_eq!(bobs[0].category, None);

    let friend = alice
        .call(FriendUpdateRequest {
            user: bob_name.as_str().into_user_ref(),
            remark: None,
            category: Some("".to_owned()),
        })
        .await
        .unwrap()
        .friend;
    assert_eq!(friend.category, None);

    // Only friends have remarks.
    let stranger = unique("stranger");
    server
        .connect()
        .await
        .call(RegisterRequest {
            name: stranger.to_owned(),
            password: common::PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            alice
                .call(FriendUpdateRequest {
                    user: stranger.as_str().into_user_ref(),
                    remark: Some("x".to_owned()),
                    category: None
                })
                .await
        ),
        Status::NotFound
    );
}

#[tokio::test]
async fn presence_follows_logins_logouts_and_disconnects() {
    let server = TestServer::start().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, alice_login) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    befriend(&alice, &bob, &bob_name, &alice_name).await;
    let alice_id = alice_login.user.id;
    let list = bob.call(FriendListRequest {}).await.unwrap().friends;
    assert!(list[0].online);

    // Logout: friends see Alice go offline, and the list says so.
    alice.call(LogoutRequest {}).await.unwrap();
    assert!(!expect_presence(&bob, alice_id).await);
    assert!(!bob.call(FriendListRequest {}).await.unwrap().friends[0].online);

    // Login: online again; her login shows Bob online.
    let (alice, relogin) = server.login(&alice_name).await;
    assert!(expect_presence(&bob, alice_id).await);
    assert!(relogin.friends[0].online);
    assert!(bob.call(FriendListRequest {}).await.unwrap().friends[0].online);

    // A second session changes nothing for friends, and neither does
    // closing one of two sessions.
    let (alice_laptop, _) = server.login(&alice_name).await;
    expect_silence(&bob).await;
    drop(alice_laptop);
    expect_silence(&bob).await;
    assert!(bob.call(FriendListRequest {}).await.unwrap().friends[0].online);

    // Dropping the last connection without logging out is going offline.
    drop(alice);
    assert!(!expect_presence(&bob, alice_id).await);
    assert!(!bob.call(FriendListRequest {}).await.unwrap().friends[0].online);

    // Users who are not friends hear nothing.
    let (carol, _) = server.user(&unique("carol")).await;
    let (_alice, _) = server.login(&alice_name).await;
    assert!(expect_presence(&bob, alice_id).await);
    expect_silence(&carol).await;
    // Presence is about others: Bob's own login does not echo to him.
    let (_bob_laptop, _) = server.login(&bob_name).await;
    expect_silence(&bob).await;
    assert_eq!(bob_login.user.name, bob_name);
}
