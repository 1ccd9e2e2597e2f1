//! One conformance suite for every store backend.
//!
//! Each check is an async function over `Arc<dyn Store>`; the
//! `conformance!` macro at the bottom instantiates every one of them as a
//! test for SQLite (a fresh file in a temporary directory) and for MariaDB (a
//! fresh database, dropped afterwards). Checks that need several store
//! instances (reopening a file, several nodes on one database) are written
//! per backend after the shared ones.
//!
//! MariaDB is found at `CHATD_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`). If it cannot be reached the MariaDB tests
//! print `SKIPPED` and pass, unless `CHATD_TEST_REQUIRE_SERVICES=1`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chat_proto::{
    ConversationId, ConversationKind, Cursor, GroupId, JoinPolicy, Role, Seq, Target, UserId,
};
use chat_store::{Appended, FriendAddResult, NewMessage, Store, StoreError};

/// The clock every check passes to the store.
const NOW: i64 = 1_700_000_000_000;

async fn user(store: &Arc<dyn Store>, name: &str) -> UserId {
    store
        .create_user(name, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", NOW)
        .await
        .unwrap()
        .id
}

/// Whose a token is and when it expires, if it is still valid at `now`.
async fn token_owner(store: &Arc<dyn Store>, token: &str, now: i64) -> Option<(UserId, i64)> {
    store
        .user_for_token(token, now)
        .await
        .unwrap()
        .map(|(user, expires)| (user.id, expires))
}

/// Makes `a` and `b` friends and returns their conversation.
async fn befriend(store: &Arc<dyn Store>, a: UserId, b: UserId) -> ConversationId {
    assert!(matches!(
        store.add_friend_request(a, b, None, NOW).await.unwrap(),
        FriendAddResult::Pending(_)
    ));
    store
        .respond_friend_request(a, b, true, NOW)
        .await
        .unwrap()
        .unwrap()
}

fn message(sender: UserId, target: Target, client_msg_id: &str, body: &str) -> NewMessage {
    NewMessage {
        sender_id: sender,
        sender_name: format!("user{}", sender.0),
        target,
        client_msg_id: client_msg_id.to_owned(),
        body: body.to_owned(),
        now_ms: NOW,
    }
}

async fn send(store: &Arc<dyn Store>, sender: UserId, target: Target, id: &str) -> Appended {
    store
        .append_message(message(sender, target, id, &format!("body of {id}")))
        .await
        .unwrap()
}

fn seqs(messages: &[chat_proto::ChatMessage]) -> Vec<u64> {
    messages.iter().map(|message| message.seq.0).collect()
}

// ---------------------------------------------------------------------------
// Users and tokens
// ---------------------------------------------------------------------------

async fn users_have_unique_names_whatever_the_case(store: Arc<dyn Store>) {
    let alice = store.create_user("Alice", "hash-a", NOW).await.unwrap();
    assert_eq!(alice.name, "Alice");
    assert_eq!(alice.password_hash, "hash-a");
    assert_eq!(alice.created_at_ms, NOW);
    // A trailing space makes a different name; case does not.
    let spaced = store.create_user("alice ", "hash-c", NOW).await.unwrap();
    let ids: HashSet<UserId> = [alice.id, spaced.id].into();
    assert_eq!(ids.len(), 2);
    for taken in ["Alice", "alice", "ALICE"] {
        assert!(matches!(
            store.create_user(taken, "other", NOW + 1).await,
            Err(StoreError::Conflict(_))
        ));
    }
    // Looked up in any case, found with the case its owner chose.
    for asked in ["Alice", "alice", "ALICE"] {
        assert_eq!(
            store.user_by_name(asked).await.unwrap(),
            Some(alice.clone())
        );
    }
    // A name that only looks like a taken one is refused too: a Cyrillic
    // `а` in `аlice`, `rn` for `m`.
    assert!(matches!(
        store.create_user("\u{430}lice", "other", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    store.create_user("mary", "hash", NOW).await.unwrap();
    assert!(matches!(
        store.create_user("rnary", "other", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.user_by_name("\u{430}lice").await.unwrap(), None);
    assert_eq!(store.user_by_id(alice.id).await.unwrap(), Some(alice));
    assert_eq!(store.user_by_id(UserId(999_999)).await.unwrap(), None);
    assert_eq!(store.user_by_id(UserId(u64::MAX)).await.unwrap(), None);
}

async fn users_store_any_text_verbatim(store: Arc<dyn Store>) {
    for name in [
        "'; DROP TABLE users; --",
        "名前😀",
        "Robert\"); DELETE FROM messages;",
        "back\\slash %_ wildcard",
        "zero\u{0}byte",
    ] {
        let created = store.create_user(name, name, NOW).await.unwrap();
        let found = store.user_by_name(name).await.unwrap().unwrap();
        assert_eq!(found.name, name);
        assert_eq!(found.password_hash, name);
        assert_eq!(found.id, created.id);
    }
    // A LIKE pattern is not a name.
    assert_eq!(store.user_by_name("back%").await.unwrap(), None);
    // The table the first name threatened is still there.
    assert!(store.user_by_name("名前😀").await.unwrap().is_some());
}

async fn tokens_expire_and_revoke(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    store.create_token("t1", alice, NOW + 1000).await.unwrap();
    store.create_token("t2", alice, NOW + 10).await.unwrap();
    assert_eq!(
        token_owner(&store, "t1", NOW).await,
        Some((alice, NOW + 1000))
    );
    assert_eq!(
        token_owner(&store, "t2", NOW + 9).await,
        Some((alice, NOW + 10))
    );
    // A token is valid strictly before its expiry.
    assert_eq!(token_owner(&store, "t2", NOW + 10).await, None);
    assert_eq!(token_owner(&store, "unknown", NOW).await, None);
    assert!(matches!(
        store.create_token("t1", alice, NOW + 5).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_token("t3", UserId(999_999), NOW + 5).await,
        Err(StoreError::NotFound(_))
    ));
    store.revoke_token("t1", NOW).await.unwrap();
    assert_eq!(token_owner(&store, "t1", NOW).await, None);
    // Revoking an unknown token is fine, and sweeps expired ones: t2 is gone
    // even for a clock that would still accept it.
    store.revoke_token("never-issued", NOW + 20).await.unwrap();
    assert_eq!(token_owner(&store, "t2", NOW).await, None);
}

async fn tokens_are_listed_per_user(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    store.create_token("late", alice, NOW + 300).await.unwrap();
    store.create_token("soon", alice, NOW + 100).await.unwrap();
    store.create_token("gone", alice, NOW - 1).await.unwrap();
    store.create_token("bobs", bob, NOW + 100).await.unwrap();
    assert_eq!(
        store.tokens_of(alice, NOW).await.unwrap(),
        vec![
            ("soon".to_owned(), NOW + 100),
            ("late".to_owned(), NOW + 300)
        ]
    );
    assert_eq!(store.tokens_of(UserId(999_999), NOW).await.unwrap(), vec![]);
}

async fn expired_tokens_are_purged(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    store.create_token("old", alice, NOW + 10).await.unwrap();
    store.create_token("older", alice, NOW + 5).await.unwrap();
    store.create_token("live", alice, NOW + 1000).await.unwrap();
    assert_eq!(store.purge_expired_tokens(NOW).await.unwrap(), 0);
    assert_eq!(store.purge_expired_tokens(NOW + 10).await.unwrap(), 2);
    // Gone even for a clock that would still accept them.
    assert_eq!(token_owner(&store, "old", NOW).await, None);
    assert_eq!(
        token_owner(&store, "live", NOW).await,
        Some((alice, NOW + 1000))
    );
    assert_eq!(store.purge_expired_tokens(NOW + 10).await.unwrap(), 0);
}

async fn password_hashes_are_replaced_only_if_unchanged(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let original = store
        .user_by_id(alice)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    store
        .create_token("device", alice, NOW + 1000)
        .await
        .unwrap();
    assert!(store
        .replace_password_hash(alice, &original, "$argon2id$stronger")
        .await
        .unwrap());
    assert_eq!(
        store
            .user_by_id(alice)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "$argon2id$stronger"
    );
    // A hash changed meanwhile (a password reset) is not overwritten.
    assert!(!store
        .replace_password_hash(alice, &original, "$argon2id$stale")
        .await
        .unwrap());
    assert_eq!(
        store
            .user_by_id(alice)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "$argon2id$stronger"
    );
    // Tokens stay valid: the password is the same.
    assert_eq!(
        token_owner(&store, "device", NOW).await,
        Some((alice, NOW + 1000))
    );
}

// ---------------------------------------------------------------------------
// Friends
// ---------------------------------------------------------------------------

async fn friend_request_then_accept(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let request = match store
        .add_friend_request(alice, bob, Some("hi 👋 '; --"), NOW)
        .await
        .unwrap()
    {
        FriendAddResult::Pending(request) => request,
        other => panic!("expected a pending request, got {other:?}"),
    };
    assert_eq!(
        (request.from.id, request.from.name.as_str()),
        (alice, "alice")
    );
    assert_eq!((request.to.id, request.to.name.as_str()), (bob, "bob"));
    assert_eq!(request.message.as_deref(), Some("hi 👋 '; --"));
    assert_eq!(request.created_at_ms, NOW);
    assert_eq!(
        store.pending_requests(bob).await.unwrap(),
        (vec![request.clone()], vec![])
    );
    assert_eq!(
        store.pending_requests(alice).await.unwrap(),
        (vec![], vec![request.clone()])
    );
    assert!(matches!(
        store.add_friend_request(alice, bob, None, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.add_friend_request(alice, alice, None, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .add_friend_request(alice, UserId(999_999), None, NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Only the asked user can answer, and only a pending request.
    assert!(matches!(
        store.respond_friend_request(bob, alice, true, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.friends_of(alice).await.unwrap().is_empty());

    let conversation = store
        .respond_friend_request(alice, bob, true, NOW)
        .await
        .unwrap()
        .unwrap();
    let alice_friends = store.friends_of(alice).await.unwrap();
    assert_eq!(alice_friends.len(), 1);
    assert_eq!(alice_friends[0].id, bob);
    assert_eq!(alice_friends[0].name, "bob");
    assert_eq!(alice_friends[0].conversation_id, conversation);
    assert_eq!(
        (
            alice_friends[0].remark.clone(),
            alice_friends[0].category.clone()
        ),
        (None, None)
    );
    assert_eq!(
        store
            .friend(bob, alice)
            .await
            .unwrap()
            .unwrap()
            .conversation_id,
        conversation
    );
    assert!(store
        .is_conversation_member(conversation, alice)
        .await
        .unwrap());
    assert!(store
        .is_conversation_member(conversation, bob)
        .await
        .unwrap());
    assert_eq!(store.pending_requests(bob).await.unwrap(), (vec![], vec![]));
    assert_eq!(
        store.pending_requests(alice).await.unwrap(),
        (vec![], vec![])
    );
    assert!(matches!(
        store.respond_friend_request(alice, bob, true, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    for (from, to) in [(alice, bob), (bob, alice)] {
        assert!(matches!(
            store.add_friend_request(from, to, None, NOW).await,
            Err(StoreError::Conflict(_))
        ));
    }
}

async fn friend_request_back_accepts(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    store
        .add_friend_request(alice, bob, None, NOW)
        .await
        .unwrap();
    store
        .add_friend_request(carol, bob, None, NOW + 1)
        .await
        .unwrap();
    let conversation = match store
        .add_friend_request(bob, alice, None, NOW)
        .await
        .unwrap()
    {
        FriendAddResult::Accepted(conversation) => conversation,
        other => panic!("expected an acceptance, got {other:?}"),
    };
    assert_eq!(
        store
            .friend(alice, bob)
            .await
            .unwrap()
            .unwrap()
            .conversation_id,
        conversation
    );
    assert_eq!(
        store
            .friend(bob, alice)
            .await
            .unwrap()
            .unwrap()
            .conversation_id,
        conversation
    );
    // Carol's request to Bob is untouched.
    let (incoming, outgoing) = store.pending_requests(bob).await.unwrap();
    assert_eq!(incoming.len(), 1);
    assert_eq!(incoming[0].from.id, carol);
    assert!(outgoing.is_empty());
    assert_eq!(
        store.pending_requests(alice).await.unwrap(),
        (vec![], vec![])
    );
}

async fn friend_request_decline(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    store
        .add_friend_request(alice, bob, None, NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .respond_friend_request(alice, bob, false, NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.friend(alice, bob).await.unwrap(), None);
    assert_eq!(store.pending_requests(bob).await.unwrap(), (vec![], vec![]));
    // Declined is not final: Alice may ask again.
    assert!(matches!(
        store
            .add_friend_request(alice, bob, None, NOW)
            .await
            .unwrap(),
        FriendAddResult::Pending(_)
    ));
}

async fn remove_and_befriend_again_reuses_conversation(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let conversation = befriend(&store, alice, bob).await;
    send(&store, alice, Target::User(bob), "m1").await;
    store.remove_friend(bob, alice).await.unwrap();
    assert_eq!(store.friend(alice, bob).await.unwrap(), None);
    assert_eq!(store.friend(bob, alice).await.unwrap(), None);
    assert!(matches!(
        store.remove_friend(alice, bob).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .append_message(message(alice, Target::User(bob), "m2", "x"))
            .await,
        Err(StoreError::Forbidden(_))
    ));
    // The history stays with both.
    assert_eq!(
        seqs(&store.history(conversation, None, None, 10).await.unwrap()),
        [1]
    );
    assert!(store
        .is_conversation_member(conversation, bob)
        .await
        .unwrap());

    let again = befriend(&store, bob, alice).await;
    assert_eq!(again, conversation);
    assert_eq!(
        send(&store, bob, Target::User(alice), "m3")
            .await
            .message
            .seq,
        Seq(2)
    );
}

async fn update_friend_sets_keeps_and_clears(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    befriend(&store, alice, bob).await;
    let updated = store
        .update_friend(
            alice,
            bob,
            Some("Bobby 😀"),
            Some("'; DROP TABLE friends; --"),
        )
        .await
        .unwrap();
    assert_eq!(updated.remark.as_deref(), Some("Bobby 😀"));
    assert_eq!(
        updated.category.as_deref(),
        Some("'; DROP TABLE friends; --")
    );
    // None leaves a field alone.
    let updated = store
        .update_friend(alice, bob, None, Some("work"))
        .await
        .unwrap();
    assert_eq!(updated.remark.as_deref(), Some("Bobby 😀"));
    assert_eq!(updated.category.as_deref(), Some("work"));
    // Setting the same values again is not an error.
    store
        .update_friend(alice, bob, None, Some("work"))
        .await
        .unwrap();
    // "" clears.
    let updated = store
        .update_friend(alice, bob, Some(""), None)
        .await
        .unwrap();
    assert_eq!(updated.remark, None);
    assert_eq!(updated.category.as_deref(), Some("work"));
    assert_eq!(store.friend(alice, bob).await.unwrap(), Some(updated));
    // Each side has its own.
    let other_side = store.friend(bob, alice).await.unwrap().unwrap();
    assert_eq!((other_side.remark, other_side.category), (None, None));
    let carol = user(&store, "carol").await;
    assert!(matches!(
        store.update_friend(alice, carol, Some("x"), None).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn friends_are_listed_by_name(store: Arc<dyn Store>) {
    let me = user(&store, "me").await;
    for name in ["zed", "Bob", "amy"] {
        let friend = user(&store, name).await;
        befriend(&store, me, friend).await;
    }
    let names: Vec<String> = store
        .friends_of(me)
        .await
        .unwrap()
        .into_iter()
        .map(|friend| friend.name)
        .collect();
    assert_eq!(names, ["Bob", "amy", "zed"]);
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

async fn groups_create_join_and_roles(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let bob = user(&store, "bob").await;
    let amy = user(&store, "amy").await;
    let group = store
        .create_group(owner, "Rust 🦀 '; --", "a description", NOW)
        .await
        .unwrap();
    assert_eq!(group.name, "Rust 🦀 '; --");
    assert_eq!(group.description, "a description");
    assert_eq!(group.owner_id, owner);
    assert_eq!(group.member_count, 1);
    assert_eq!(group.created_at_ms, NOW);
    assert_eq!(store.group(group.id).await.unwrap(), Some(group.clone()));
    assert_eq!(
        store.role(group.id, owner).await.unwrap(),
        Some(Role::Owner)
    );
    assert!(store
        .is_conversation_member(group.conversation_id, owner)
        .await
        .unwrap());

    store
        .add_member(group.id, bob, Role::Member, NOW)
        .await
        .unwrap();
    store
        .add_member(group.id, amy, Role::Member, NOW)
        .await
        .unwrap();
    assert!(matches!(
        store.add_member(group.id, bob, Role::Member, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .add_member(GroupId(999_999), bob, Role::Member, NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .add_member(group.id, UserId(999_999), Role::Member, NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.group(group.id).await.unwrap().unwrap().member_count,
        3
    );
    assert_eq!(store.role(group.id, bob).await.unwrap(), Some(Role::Member));
    assert!(store
        .is_conversation_member(group.conversation_id, bob)
        .await
        .unwrap());

    store.set_role(group.id, bob, Role::Admin).await.unwrap();
    assert_eq!(store.role(group.id, bob).await.unwrap(), Some(Role::Admin));
    assert!(matches!(
        store.set_role(group.id, UserId(999_999), Role::Admin).await,
        Err(StoreError::NotFound(_))
    ));
    let members: Vec<(UserId, Role)> = store
        .members(group.id)
        .await
        .unwrap()
        .into_iter()
        .map(|member| (member.id, member.role))
        .collect();
    assert_eq!(
        members,
        [
            (owner, Role::Owner),
            (bob, Role::Admin),
            (amy, Role::Member)
        ]
    );
    assert!(store.members(GroupId(999_999)).await.unwrap().is_empty());

    let second = store.create_group(bob, "second", "", NOW).await.unwrap();
    let of_bob: Vec<(GroupId, Role)> = store
        .groups_of(bob)
        .await
        .unwrap()
        .into_iter()
        .map(|(group, role)| (group.id, role))
        .collect();
    assert_eq!(of_bob, [(group.id, Role::Admin), (second.id, Role::Owner)]);
    assert_eq!(store.groups_of(bob).await.unwrap()[0].0.member_count, 3);
    assert!(store.groups_of(UserId(999_999)).await.unwrap().is_empty());
}

async fn set_role_owner_transfers_ownership(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let bob = user(&store, "bob").await;
    let group = store.create_group(owner, "g", "", NOW).await.unwrap();
    store
        .add_member(group.id, bob, Role::Member, NOW)
        .await
        .unwrap();
    // Handing the group to its owner changes nothing.
    store.set_role(group.id, owner, Role::Owner).await.unwrap();
    // The owner cannot simply step down.
    assert!(matches!(
        store.set_role(group.id, owner, Role::Member).await,
        Err(StoreError::Conflict(_))
    ));
    store.set_role(group.id, bob, Role::Owner).await.unwrap();
    assert_eq!(store.group(group.id).await.unwrap().unwrap().owner_id, bob);
    assert_eq!(store.role(group.id, bob).await.unwrap(), Some(Role::Owner));
    assert_eq!(
        store.role(group.id, owner).await.unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(store.members(group.id).await.unwrap()[0].id, bob);
}

async fn closed_groups_policies_invitations_and_bans(store: Arc<dyn Store>) {
    use chat_proto::JoinPolicy;
    use chat_store::group_access::JoinOutcome;
    let owner = user(&store, "owner").await;
    let admin = user(&store, "admin").await;
    let member = user(&store, "member").await;
    let asker = user(&store, "asker").await;
    let invitee = user(&store, "invitee").await;
    let group = store
        .create_group_with_policy(owner, "closed", "", JoinPolicy::Approval, NOW)
        .await
        .unwrap();
    assert_eq!(group.join_policy, JoinPolicy::Approval);
    assert_eq!(
        store.group(group.id).await.unwrap().unwrap().join_policy,
        JoinPolicy::Approval
    );
    let g = group.id;
    for (user, role) in [(admin, Role::Admin), (member, Role::Member)] {
        store.add_member(g, user, Role::Member, NOW).await.unwrap();
        store.set_role_as(g, owner, user, role).await.unwrap();
    }
    // Asking an approval group waits for the owner or an admin.
    assert_eq!(
        store.request_join(g, asker, NOW).await.unwrap(),
        JoinOutcome::Pending
    );
    assert_eq!(
        store.request_join(g, asker, NOW + 1).await.unwrap(),
        JoinOutcome::Pending
    );
    assert_eq!(store.join_requests(g).await.unwrap().len(), 1);
    assert!(store.standing(g, asker).await.unwrap().requested);
    assert!(matches!(
        store.respond_join(g, member, asker, true, NOW).await,
        Err(StoreError::Forbidden(_))
    ));
    store
        .respond_join(g, admin, asker, true, NOW)
        .await
        .unwrap();
    assert_eq!(store.role(g, asker).await.unwrap(), Some(Role::Member));
    assert!(matches!(
        store.respond_join(g, admin, asker, true, NOW).await,
        Err(StoreError::NotFound(_))
    ));

    // Only the owner and admins set the policy; an invite-only group does
    // not exist for those not invited.
    assert!(matches!(
        store.set_join_policy(g, member, JoinPolicy::Open).await,
        Err(StoreError::Forbidden(_))
    ));
    store
        .set_join_policy(g, admin, JoinPolicy::Invite)
        .await
        .unwrap();
    assert!(matches!(
        store.request_join(g, invitee, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    store.invite(g, member, invitee, NOW).await.unwrap();
    assert!(matches!(
        store.invite(g, member, invitee, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    let invitations = store.invitations_of(invitee).await.unwrap();
    assert_eq!(invitations.len(), 1);
    assert_eq!(invitations[0].0, g);
    assert_eq!(invitations[0].1.id, member);
    assert_eq!(
        store.request_join(g, invitee, NOW).await.unwrap(),
        JoinOutcome::Joined
    );
    assert!(store.invitations_of(invitee).await.unwrap().is_empty());

    // Kicks follow the roles, checked with the change; a ban keeps the
    // user out, even invited, until lifted.
    assert!(matches!(
        store.kick(g, admin, owner, false, NOW).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.kick(g, member, asker, false, NOW).await,
        Err(StoreError::Forbidden(_))
    ));
    store.kick(g, admin, asker, true, NOW).await.unwrap();
    assert_eq!(store.role(g, asker).await.unwrap(), None);
    assert!(store.standing(g, asker).await.unwrap().banned);
    store
        .set_join_policy(g, owner, JoinPolicy::Open)
        .await
        .unwrap();
    assert!(matches!(
        store.request_join(g, asker, NOW).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.invite(g, member, asker, NOW).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.unban(g, member, asker).await,
        Err(StoreError::Forbidden(_))
    ));
    store.unban(g, admin, asker).await.unwrap();
    assert_eq!(
        store.request_join(g, asker, NOW).await.unwrap(),
        JoinOutcome::Joined
    );

    // Roles and dissolving stay the owner's.
    assert!(matches!(
        store.set_role_as(g, admin, member, Role::Admin).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.dissolve_as(g, admin).await,
        Err(StoreError::Forbidden(_))
    ));
    let former = store.dissolve_as(g, owner).await.unwrap();
    assert_eq!(former.len(), 5);
    assert!(store.group(g).await.unwrap().is_none());
}

async fn leave_kick_and_dissolve(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let group = store.create_group(owner, "g", "", NOW).await.unwrap();
    store
        .add_member(group.id, bob, Role::Member, NOW)
        .await
        .unwrap();
    store
        .add_member(group.id, carol, Role::Admin, NOW)
        .await
        .unwrap();
    // Sending first: what a store learned about a sender's right to send
    // must not outlive the right.
    send(&store, bob, Target::Group(group.id), "b0").await;

    store.remove_member(group.id, bob).await.unwrap();
    assert_eq!(store.role(group.id, bob).await.unwrap(), None);
    assert!(!store
        .is_conversation_member(group.conversation_id, bob)
        .await
        .unwrap());
    assert!(matches!(
        store.remove_member(group.id, bob).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.remove_member(GroupId(999_999), bob).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.remove_member(group.id, owner).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .append_message(message(bob, Target::Group(group.id), "b1", "x"))
            .await,
        Err(StoreError::Forbidden(_))
    ));
    // Joining again after leaving is allowed.
    store
        .add_member(group.id, bob, Role::Member, NOW)
        .await
        .unwrap();
    send(&store, carol, Target::Group(group.id), "c1").await;
    send(&store, owner, Target::Group(group.id), "o0").await;

    let mut expected = vec![owner, bob, carol];
    expected.sort();
    assert_eq!(store.dissolve_group(group.id).await.unwrap(), expected);
    assert_eq!(store.group(group.id).await.unwrap(), None);
    assert_eq!(store.role(group.id, owner).await.unwrap(), None);
    assert!(store.members(group.id).await.unwrap().is_empty());
    assert!(store.groups_of(carol).await.unwrap().is_empty());
    assert!(!store
        .is_conversation_member(group.conversation_id, owner)
        .await
        .unwrap());
    assert_eq!(store.unacked_count(owner).await.unwrap(), 0);
    assert!(matches!(
        store.dissolve_group(group.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .append_message(message(owner, Target::Group(group.id), "o1", "x"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    // A new group never gets the old id.
    let next = store.create_group(owner, "g", "", NOW).await.unwrap();
    assert!(next.id > group.id);
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

async fn append_numbers_and_deduplicates(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let conversation = befriend(&store, alice, bob).await;
    let body = "名前😀 '; DROP TABLE messages; -- \\ \"quoted\"";
    let first = store
        .append_message(message(alice, Target::User(bob), "c-1", body))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.message.conversation_id, conversation);
    assert_eq!(first.message.seq, Seq(1));
    assert_eq!(first.message.sender_id, alice);
    assert_eq!(first.message.target, Target::User(bob));
    assert_eq!(first.message.body, body);
    assert_eq!(first.message.client_msg_id, "c-1");
    assert_eq!(first.message.server_ts_ms, NOW);
    let mut both = vec![alice, bob];
    both.sort();
    assert_eq!(first.recipients, both);
    assert_eq!(
        send(&store, bob, Target::User(alice), "c-1")
            .await
            .message
            .seq,
        Seq(2)
    );
    assert_eq!(
        send(&store, alice, Target::User(bob), "c-2")
            .await
            .message
            .seq,
        Seq(3)
    );

    // A resend returns the original, whatever else it carries.
    let mut resend = message(alice, Target::User(bob), "c-1", "different body");
    resend.now_ms = NOW + 5000;
    let again = store.append_message(resend).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.seq, Seq(1));
    assert_eq!(again.message.body, body);
    assert_eq!(again.message.server_ts_ms, NOW);
    assert_eq!(again.message.sender_name, "alice");
    assert_eq!(again.recipients, both);
    let history = store.history(conversation, None, None, 100).await.unwrap();
    assert_eq!(seqs(&history), [1, 2, 3]);
    assert_eq!(history[0].body, body);
    assert_eq!(history[0].sender_name, "alice");
    assert_eq!(history[1].sender_name, "bob");
    assert_eq!(history[1].target, Target::User(alice));
}

async fn append_refuses_strangers(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let conversation = befriend(&store, alice, bob).await;
    let group = store.create_group(alice, "g", "", NOW).await.unwrap();
    let refusals = [
        (carol, Target::User(alice), "not friends"),
        (alice, Target::User(alice), "oneself"),
        (carol, Target::Group(group.id), "not a member"),
    ];
    for (sender, target, why) in refusals {
        let result = store
            .append_message(message(sender, target, why, "x"))
            .await;
        assert!(
            matches!(result, Err(StoreError::Forbidden(_))),
            "{why}: {result:?}"
        );
    }
    for target in [
        Target::User(UserId(999_999)),
        Target::Group(GroupId(999_999)),
    ] {
        let result = store
            .append_message(message(alice, target, "nobody", "x"))
            .await;
        assert!(
            matches!(result, Err(StoreError::NotFound(_))),
            "{target:?}: {result:?}"
        );
    }
    // Refused sends take no number and leave no trace.
    assert_eq!(
        send(&store, alice, Target::User(bob), "ok")
            .await
            .message
            .seq,
        Seq(1)
    );
    assert_eq!(
        send(&store, alice, Target::Group(group.id), "ok-g")
            .await
            .message
            .seq,
        Seq(1)
    );
    assert_eq!(
        seqs(&store.history(conversation, None, None, 10).await.unwrap()),
        [1]
    );
    assert_eq!(store.unacked_count(carol).await.unwrap(), 0);
}

/// A resend is recognised before the sender's right to send is checked: a
/// client repeating a send it had no answer for gets the original back,
/// even if the friendship ended in between.
async fn resends_are_answered_after_the_friendship_ended(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    befriend(&store, alice, bob).await;
    let first = send(&store, alice, Target::User(bob), "before").await;
    store.remove_friend(alice, bob).await.unwrap();
    let again = store
        .append_message(message(alice, Target::User(bob), "before", "again"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.seq, first.message.seq);
    assert_eq!(again.message.body, first.message.body);
    assert!(matches!(
        store
            .append_message(message(alice, Target::User(bob), "after", "x"))
            .await,
        Err(StoreError::Forbidden(_))
    ));
}

async fn group_messages_reach_every_member(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let group = store.create_group(owner, "g", "", NOW).await.unwrap();
    store
        .add_member(group.id, bob, Role::Member, NOW)
        .await
        .unwrap();
    store
        .add_member(group.id, carol, Role::Member, NOW)
        .await
        .unwrap();
    let sent = send(&store, bob, Target::Group(group.id), "g1").await;
    let mut everyone = vec![owner, bob, carol];
    everyone.sort();
    assert_eq!(sent.recipients, everyone);
    assert_eq!(sent.message.conversation_id, group.conversation_id);
    assert_eq!(sent.message.target, Target::Group(group.id));
    assert_eq!(store.unacked(owner, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.unacked(bob, None, 10).await.unwrap().len(), 0);
}

async fn history_pages_both_ways(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let conversation = befriend(&store, alice, bob).await;
    for i in 1..=10 {
        send(&store, alice, Target::User(bob), &format!("m{i}")).await;
    }
    let page = |before: Option<u64>, after: Option<u64>, limit: u32| {
        let store = store.clone();
        async move {
            seqs(
                &store
                    .history(conversation, before.map(Seq), after.map(Seq), limit)
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(page(None, None, 3).await, [8, 9, 10]);
    assert_eq!(page(Some(8), None, 3).await, [5, 6, 7]);
    assert_eq!(page(Some(3), None, 5).await, [1, 2]);
    assert_eq!(page(Some(1), None, 5).await, Vec::<u64>::new());
    assert_eq!(page(None, Some(0), 4).await, [1, 2, 3, 4]);
    assert_eq!(page(None, Some(8), 4).await, [9, 10]);
    assert_eq!(page(None, Some(10), 4).await, Vec::<u64>::new());
    assert_eq!(page(Some(6), Some(2), 10).await, [3, 4, 5]);
    assert_eq!(page(None, None, 0).await, Vec::<u64>::new());
    assert_eq!(page(Some(u64::MAX), None, 2).await, [9, 10]);
    assert_eq!(page(None, None, u32::MAX).await.len(), 10);
    assert!(store
        .history(ConversationId(999_999), None, None, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn ack_moves_forward_within_the_log(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let conversation = befriend(&store, alice, bob).await;
    for i in 1..=3 {
        send(&store, alice, Target::User(bob), &format!("m{i}")).await;
    }
    assert_eq!(store.ack(bob, conversation, Seq(2)).await.unwrap(), Seq(2));
    assert_eq!(store.ack(bob, conversation, Seq(1)).await.unwrap(), Seq(2));
    assert_eq!(store.ack(bob, conversation, Seq(99)).await.unwrap(), Seq(3));
    assert_eq!(
        store.ack(bob, conversation, Seq(u64::MAX)).await.unwrap(),
        Seq(3)
    );
    assert_eq!(
        store.ack(bob, conversation, Seq::ZERO).await.unwrap(),
        Seq(3)
    );
    assert!(matches!(
        store.ack(carol, conversation, Seq(1)).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.ack(bob, ConversationId(999_999), Seq(1)).await,
        Err(StoreError::Forbidden(_))
    ));
    // The clamp follows the log as it grows.
    send(&store, alice, Target::User(bob), "m4").await;
    assert_eq!(store.ack(bob, conversation, Seq(99)).await.unwrap(), Seq(4));
}

async fn unacked_is_others_messages_past_the_ack(store: Arc<dyn Store>) {
    let me = user(&store, "me").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let with_bob = befriend(&store, me, bob).await;
    let with_carol = befriend(&store, me, carol).await;
    send(&store, bob, Target::User(me), "b1").await; // 1
    send(&store, me, Target::User(bob), "m1").await; // 2, mine
    send(&store, bob, Target::User(me), "b2").await; // 3
    send(&store, carol, Target::User(me), "c1").await; // 1
    send(&store, carol, Target::User(me), "c2").await; // 2

    let all = store.unacked(me, None, 100).await.unwrap();
    let positions: Vec<(ConversationId, u64)> = all
        .iter()
        .map(|message| (message.conversation_id, message.seq.0))
        .collect();
    let (first, second) = if with_bob < with_carol {
        (with_bob, with_carol)
    } else {
        (with_carol, with_bob)
    };
    let expected_for = |conversation| {
        if conversation == with_bob {
            vec![(with_bob, 1), (with_bob, 3)]
        } else {
            vec![(with_carol, 1), (with_carol, 2)]
        }
    };
    let mut expected = expected_for(first);
    expected.extend(expected_for(second));
    assert_eq!(positions, expected);
    assert!(all.iter().all(|message| message.sender_id != me));
    assert_eq!(store.unacked_count(me).await.unwrap(), 4);

    // Paging: a start position continues after it.
    let page = store.unacked(me, None, 3).await.unwrap();
    assert_eq!(page.len(), 3);
    let last = page.last().unwrap();
    let rest = store
        .unacked(
            me,
            Some(Cursor {
                conversation_id: last.conversation_id,
                seq: last.seq,
            }),
            3,
        )
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].conversation_id, rest[0].seq.0), expected[3]);

    store.ack(me, with_bob, Seq(1)).await.unwrap();
    assert_eq!(store.unacked_count(me).await.unwrap(), 3);
    store.ack(me, with_bob, Seq(3)).await.unwrap();
    store.ack(me, with_carol, Seq(1)).await.unwrap();
    let left = store.unacked(me, None, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].conversation_id, left[0].seq), (with_carol, Seq(2)));
    // Bob's own message is not unacked for him; mine is.
    let bobs = store.unacked(bob, None, 100).await.unwrap();
    assert_eq!(seqs(&bobs), [2]);
    assert_eq!(store.unacked_count(bob).await.unwrap(), 1);
}

async fn sync_follows_cursors_or_acks(store: Arc<dyn Store>) {
    let me = user(&store, "me").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let with_bob = befriend(&store, me, bob).await;
    let with_carol = befriend(&store, me, carol).await;
    let strangers = befriend(&store, bob, carol).await;
    send(&store, bob, Target::User(me), "b1").await; // 1
    send(&store, me, Target::User(bob), "m1").await; // 2
    send(&store, bob, Target::User(me), "b2").await; // 3
    send(&store, carol, Target::User(me), "c1").await; // 1
    send(&store, bob, Target::User(carol), "bc").await;
    store.ack(me, with_bob, Seq(1)).await.unwrap();

    // No cursors: others' messages past the ack, in every conversation.
    let synced = store.sync(me, &[], 100).await.unwrap();
    let mut positions: Vec<(ConversationId, u64)> = synced
        .iter()
        .map(|message| (message.conversation_id, message.seq.0))
        .collect();
    let mut expected = vec![(with_bob, 3), (with_carol, 1)];
    expected.sort();
    assert_eq!(positions, expected);

    // A cursor means "I have seen up to here": every sender after it.
    let cursors = [
        Cursor {
            conversation_id: with_bob,
            seq: Seq(1),
        },
        // Not mine: ignored.
        Cursor {
            conversation_id: strangers,
            seq: Seq::ZERO,
        },
    ];
    let synced = store.sync(me, &cursors, 100).await.unwrap();
    positions = synced
        .iter()
        .map(|message| (message.conversation_id, message.seq.0))
        .collect();
    let mut expected = vec![(with_bob, 2), (with_bob, 3), (with_carol, 1)];
    expected.sort();
    assert_eq!(positions, expected);
    assert!(synced
        .iter()
        .all(|message| message.conversation_id != strangers));

    // The limit counts across conversations.
    let limited = store.sync(me, &cursors, 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(
        limited
            .iter()
            .map(|message| (message.conversation_id, message.seq.0))
            .collect::<Vec<_>>(),
        expected[..2]
    );
    assert!(store.sync(me, &cursors, 0).await.unwrap().is_empty());
    // Up to date: nothing.
    let current = [
        Cursor {
            conversation_id: with_bob,
            seq: Seq(3),
        },
        Cursor {
            conversation_id: with_carol,
            seq: Seq(1),
        },
    ];
    assert!(store.sync(me, &current, 100).await.unwrap().is_empty());
}

async fn late_joiner_gets_only_later_messages(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let late = user(&store, "late").await;
    let group = store.create_group(owner, "g", "", NOW).await.unwrap();
    let other = user(&store, "other").await;
    store
        .add_member(group.id, other, Role::Member, NOW)
        .await
        .unwrap();
    for i in 1..=3 {
        send(&store, other, Target::Group(group.id), &format!("early{i}")).await;
    }
    store
        .add_member(group.id, late, Role::Member, NOW)
        .await
        .unwrap();
    assert_eq!(store.unacked_count(late).await.unwrap(), 0);
    assert!(store.unacked(late, None, 10).await.unwrap().is_empty());
    assert!(store.sync(late, &[], 10).await.unwrap().is_empty());
    // History is still readable.
    assert_eq!(
        seqs(
            &store
                .history(group.conversation_id, None, None, 10)
                .await
                .unwrap()
        ),
        [1, 2, 3]
    );
    let sent = send(&store, other, Target::Group(group.id), "later").await;
    assert!(sent.recipients.contains(&late));
    assert_eq!(seqs(&store.unacked(late, None, 10).await.unwrap()), [4]);
    assert_eq!(store.unacked_count(owner).await.unwrap(), 4);
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

/// Senders, and messages each, for the concurrent-append checks.
const TASKS: usize = 8;
const PER_TASK: usize = 50;

async fn concurrent_appends_are_gap_free(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let group = store.create_group(owner, "busy", "", NOW).await.unwrap();
    let mut senders = Vec::new();
    for task in 0..TASKS {
        let sender = user(&store, &format!("sender{task}")).await;
        store
            .add_member(group.id, sender, Role::Member, NOW)
            .await
            .unwrap();
        senders.push(sender);
    }
    let mut handles = Vec::new();
    for sender in senders {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..PER_TASK {
                let sent = send(&store, sender, Target::Group(group.id), &format!("{i}")).await;
                assert!(!sent.duplicate);
                seqs.push(sent.message.seq.0);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        let seqs = handle.await.unwrap();
        // Each sender's own messages are numbered in the order it sent them.
        assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]));
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = u64::try_from(TASKS * PER_TASK).unwrap();
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let history = store
        .history(group.conversation_id, None, Some(Seq::ZERO), 1000)
        .await
        .unwrap();
    assert_eq!(seqs(&history), (1..=total).collect::<Vec<_>>());
}

/// Good and refused writes of every kind at once: in a batch, a refused
/// write must not cost the others their commit or their numbers.
async fn refused_writes_do_not_disturb_others(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let stranger = user(&store, "stranger").await;
    let conversation = befriend(&store, alice, bob).await;
    let mut handles = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            match i % 3 {
                0 => store
                    .append_message(message(alice, Target::User(bob), &format!("ok{i}"), "x"))
                    .await
                    .map(|sent| Some(sent.message.seq.0)),
                1 => store
                    .append_message(message(stranger, Target::User(bob), &format!("no{i}"), "x"))
                    .await
                    .map(|_| None),
                _ => store.create_user("alice", "taken", NOW).await.map(|_| None),
            }
        }));
    }
    let mut numbers = Vec::new();
    for (i, handle) in handles.into_iter().enumerate() {
        match (i % 3, handle.await.unwrap()) {
            (0, Ok(Some(seq))) => numbers.push(seq),
            (1, Err(StoreError::Forbidden(_))) | (2, Err(StoreError::Conflict(_))) => {}
            (kind, other) => panic!("write {i} of kind {kind}: {other:?}"),
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        store
            .history(conversation, None, None, 100)
            .await
            .unwrap()
            .len(),
        20
    );
}

async fn a_panicking_commit_hook_leaves_the_store_working(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    befriend(&store, alice, bob).await;
    let pending = store
        .queue_append(
            message(alice, Target::User(bob), "boom", "first"),
            Box::new(|_| panic!("a hook that fails")),
        )
        .await
        .unwrap();
    // The message is committed and answered all the same.
    assert_eq!(pending.await.unwrap().message.seq, Seq(1));
    // And the store goes on: the next append commits and runs its hook.
    let (ran, ran_rx) = std::sync::mpsc::channel();
    let pending = store
        .queue_append(
            message(alice, Target::User(bob), "after", "second"),
            Box::new(move |appended| {
                let _ = ran.send(appended.message.seq);
            }),
        )
        .await
        .unwrap();
    assert_eq!(pending.await.unwrap().message.seq, Seq(2));
    assert_eq!(ran_rx.try_recv(), Ok(Seq(2)));
}

// ---------------------------------------------------------------------------
// Conversations: the list, read positions, recall
// ---------------------------------------------------------------------------

async fn send_at(
    store: &Arc<dyn Store>,
    sender: UserId,
    target: Target,
    id: &str,
    body: &str,
    now_ms: i64,
) -> Appended {
    let mut new = message(sender, target, id, body);
    new.now_ms = now_ms;
    store.append_message(new).await.unwrap()
}

async fn conversation_list_is_newest_first_with_counts(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let with_bob = befriend(&store, alice, bob).await;
    let with_carol = befriend(&store, alice, carol).await;
    store
        .update_friend(alice, bob, Some("Bobby"), None)
        .await
        .unwrap();
    let group = store.create_group(carol, "team", "", NOW).await.unwrap();
    store
        .add_member(group.id, alice, Role::Member, NOW)
        .await
        .unwrap();

    // Nothing said yet: every conversation is listed, nothing unread.
    let list = store.conversations(alice, None, 10).await.unwrap();
    assert_eq!(list.len(), 3);
    assert!(list
        .iter()
        .all(|c| c.last_message.is_none() && c.read_seq == Seq(0)));

    send_at(
        &store,
        bob,
        Target::User(alice),
        "b1",
        "hello alice",
        NOW + 10,
    )
    .await;
    send_at(
        &store,
        bob,
        Target::User(alice),
        "b2",
        &"x".repeat(300),
        NOW + 20,
    )
    .await;
    send_at(
        &store,
        carol,
        Target::Group(group.id),
        "c1",
        "team news",
        NOW + 30,
    )
    .await;
    send_at(
        &store,
        alice,
        Target::User(carol),
        "a1",
        "hi carol",
        NOW + 40,
    )
    .await;

    let list = store.conversations(alice, None, 10).await.unwrap();
    let order: Vec<ConversationId> = list.iter().map(|c| c.conversation_id).collect();
    assert_eq!(order, [with_carol, group.conversation_id, with_bob]);
    let carol_entry = &list[0];
    assert_eq!(carol_entry.kind, ConversationKind::Direct);
    assert_eq!(carol_entry.peer.as_ref().unwrap().1, "carol");
    // Alice wrote last there: her own message is read.
    assert_eq!(
        (carol_entry.last_seq, carol_entry.read_seq),
        (Seq(1), Seq(1))
    );
    assert_eq!(carol_entry.last_activity_ms, NOW + 40);
    let group_entry = &list[1];
    assert_eq!(group_entry.kind, ConversationKind::Group);
    assert_eq!(group_entry.group, Some((group.id, "team".to_owned())));
    assert_eq!(
        (group_entry.last_seq, group_entry.read_seq),
        (Seq(1), Seq(0))
    );
    let bob_entry = &list[2];
    let peer = bob_entry.peer.as_ref().unwrap();
    assert_eq!(
        (peer.0, peer.1.as_str(), peer.2.as_deref()),
        (bob, "bob", Some("Bobby"))
    );
    assert_eq!((bob_entry.last_seq, bob_entry.read_seq), (Seq(2), Seq(0)));
    let last = bob_entry.last_message.as_ref().unwrap();
    assert_eq!((last.seq, last.sender_id), (Seq(2), bob));
    assert_eq!(last.preview, "x".repeat(100));
    assert!(!last.recalled);

    // Paging by (activity, id) walks the same order without repeats.
    let first = store.conversations(alice, None, 2).await.unwrap();
    let cursor = chat_proto::ConversationCursor {
        last_activity_ms: first[1].last_activity_ms,
        conversation_id: first[1].conversation_id,
    };
    let rest = store.conversations(alice, Some(cursor), 2).await.unwrap();
    let paged: Vec<ConversationId> = first
        .iter()
        .chain(&rest)
        .map(|c| c.conversation_id)
        .collect();
    assert_eq!(paged, order);

    let unread = store.unread_counts(alice).await.unwrap();
    let counts: Vec<(ConversationId, u64)> = unread
        .iter()
        .map(|count| (count.conversation_id, count.unread))
        .collect();
    let mut expected = vec![(with_bob, 2), (group.conversation_id, 1)];
    expected.sort_unstable();
    assert_eq!(counts, expected);

    // Leaving the group takes it off the list.
    store.remove_member(group.id, alice).await.unwrap();
    let list = store.conversations(alice, None, 10).await.unwrap();
    assert_eq!(list.len(), 2);
    // Bob's list shows alice's pair conversation with one unread... none:
    // bob wrote both messages there.
    let bob_list = store.conversations(bob, None, 10).await.unwrap();
    assert_eq!(bob_list.len(), 1);
    assert_eq!(bob_list[0].read_seq, Seq(2));
}

async fn read_positions_move_forward_within_the_log(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let stranger = user(&store, "stranger").await;
    let conversation = befriend(&store, alice, bob).await;
    for id in ["1", "2", "3"] {
        send(&store, bob, Target::User(alice), id).await;
    }
    let mark = store.mark_read(alice, conversation, Seq(2)).await.unwrap();
    assert_eq!((mark.previous, mark.read_seq), (Seq(0), Seq(2)));
    // Never back, never past the end.
    let mark = store.mark_read(alice, conversation, Seq(1)).await.unwrap();
    assert_eq!((mark.previous, mark.read_seq), (Seq(2), Seq(2)));
    let mark = store.mark_read(alice, conversation, Seq(99)).await.unwrap();
    assert_eq!((mark.previous, mark.read_seq), (Seq(2), Seq(3)));
    // What was read was received: nothing is left unacknowledged.
    assert_eq!(store.unacked_count(alice).await.unwrap(), 0);
    assert!(matches!(
        store.mark_read(stranger, conversation, Seq(1)).await,
        Err(StoreError::Forbidden(_))
    ));
    let positions = store.read_positions(conversation).await.unwrap();
    let positions: Vec<(UserId, Seq)> = positions
        .iter()
        .map(|position| (position.user_id, position.read_seq))
        .collect();
    assert_eq!(positions, [(alice, Seq(3)), (bob, Seq(3))]);
    assert!(store.unread_counts(alice).await.unwrap().is_empty());

    let participants = store.participants(conversation).await.unwrap().unwrap();
    assert_eq!(participants.kind, ConversationKind::Direct);
    assert_eq!(participants.members, [alice, bob]);
    assert!(store
        .participants(ConversationId(999_999))
        .await
        .unwrap()
        .is_none());
}

/// Many appends queued at once (a pipelining client) commit in few
/// transactions: each sender's read position ends at its own last message,
/// and an ack queued among them is clamped to what committed before it.
async fn pipelined_sends_leave_each_sender_read_up_to_its_last(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let conversation = befriend(&store, alice, bob).await;
    let mut pending = Vec::new();
    for i in 0..40 {
        let (from, to) = if i % 3 == 0 {
            (bob, alice)
        } else {
            (alice, bob)
        };
        pending.push(
            store
                .queue_append(
                    message(from, Target::User(to), &format!("p{i}"), "x"),
                    Box::new(|_| {}),
                )
                .await
                .unwrap(),
        );
    }
    // An ack queued behind the appends, for more than is committed yet.
    let acked = {
        let store = store.clone();
        tokio::spawn(async move { store.ack(bob, conversation, Seq(1000)).await })
    };
    let mut last = std::collections::HashMap::new();
    for (i, pending) in pending.into_iter().enumerate() {
        let appended = pending.await.unwrap();
        let sender = if i % 3 == 0 { bob } else { alice };
        last.insert(sender, appended.message.seq);
    }
    let acked = acked.await.unwrap().unwrap();
    assert!(acked <= Seq(40), "{acked:?}");
    let positions: Vec<(UserId, Seq)> = store
        .read_positions(conversation)
        .await
        .unwrap()
        .iter()
        .map(|position| (position.user_id, position.read_seq))
        .collect();
    assert_eq!(positions, [(alice, last[&alice]), (bob, last[&bob])]);
    // Unread: what the other sent after one's own last message.
    let unread = |user: UserId| {
        let store = store.clone();
        async move {
            store
                .unread_counts(user)
                .await
                .unwrap()
                .iter()
                .map(|count| count.unread)
                .sum::<u64>()
        }
    };
    assert_eq!(unread(alice).await, 40 - last[&alice].0);
    assert_eq!(unread(bob).await, 40 - last[&bob].0);
}

async fn group_reads_name_the_senders_they_cover(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let group = store.create_group(owner, "g", "", NOW).await.unwrap();
    for member in [bob, carol] {
        store
            .add_member(group.id, member, Role::Member, NOW)
            .await
            .unwrap();
    }
    let conversation = group.conversation_id;
    send(&store, bob, Target::Group(group.id), "b1").await;
    send(&store, carol, Target::Group(group.id), "c1").await;
    send(&store, bob, Target::Group(group.id), "b2").await;
    send(&store, owner, Target::Group(group.id), "o1").await;
    let senders = store
        .senders_between(conversation, Seq(0), Seq(3), owner)
        .await
        .unwrap();
    assert_eq!(senders, [bob, carol]);
    let senders = store
        .senders_between(conversation, Seq(2), Seq(4), owner)
        .await
        .unwrap();
    assert_eq!(senders, [bob]);
    // A late joiner has nothing unread from before.
    let dave = user(&store, "dave").await;
    store
        .add_member(group.id, dave, Role::Member, NOW)
        .await
        .unwrap();
    assert!(store.unread_counts(dave).await.unwrap().is_empty());
}

async fn recall_rules_and_tombstones(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let admin = user(&store, "admin").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let group = store.create_group(owner, "g", "", NOW).await.unwrap();
    store
        .add_member(group.id, admin, Role::Admin, NOW)
        .await
        .unwrap();
    for member in [bob, carol] {
        store
            .add_member(group.id, member, Role::Member, NOW)
            .await
            .unwrap();
    }
    let conversation = group.conversation_id;
    send_at(&store, bob, Target::Group(group.id), "b1", "oops", NOW).await;
    send_at(&store, bob, Target::Group(group.id), "b2", "old", NOW).await;
    send_at(&store, carol, Target::Group(group.id), "c1", "spam", NOW).await;
    let args = |actor: UserId, seq: u64, now_ms: i64| chat_store::RecallArgs {
        actor,
        conversation,
        seq: Seq(seq),
        now_ms,
        window_ms: 120_000,
    };

    // Another member may not; the sender may within the window.
    assert!(matches!(
        store.recall(args(carol, 1, NOW + 1000)).await,
        Err(StoreError::Forbidden(_))
    ));
    let recall = store.recall(args(bob, 1, NOW + 1000)).await.unwrap();
    assert!(recall.changed);
    assert_eq!(recall.message.body, "");
    assert_eq!(
        recall.message.recalled,
        Some(chat_proto::Recalled {
            by: bob,
            at_ms: NOW + 1000
        })
    );
    assert_eq!(recall.members.len(), 4);
    // Twice changes nothing and answers the same tombstone.
    let again = store.recall(args(bob, 1, NOW + 5000)).await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.message, recall.message);
    // Past the window the sender may not; an admin may, any time.
    assert!(matches!(
        store.recall(args(bob, 2, NOW + 121_000)).await,
        Err(StoreError::Forbidden(_))
    ));
    let removed = store.recall(args(admin, 3, NOW + 999_000)).await.unwrap();
    assert_eq!(removed.message.recalled.unwrap().by, admin);
    assert!(matches!(
        store.recall(args(bob, 99, NOW)).await,
        Err(StoreError::NotFound(_))
    ));
    let outsider = user(&store, "outsider").await;
    assert!(matches!(
        store.recall(args(outsider, 2, NOW)).await,
        Err(StoreError::Forbidden(_))
    ));

    // History, sync and the list show the tombstones.
    let history = store.history(conversation, None, None, 10).await.unwrap();
    let bodies: Vec<(&str, bool)> = history
        .iter()
        .map(|message| (message.body.as_str(), message.recalled.is_some()))
        .collect();
    assert_eq!(bodies, [("", true), ("old", false), ("", true)]);
    let synced = store
        .sync(
            owner,
            &[Cursor {
                conversation_id: conversation,
                seq: Seq(0),
            }],
            10,
        )
        .await
        .unwrap();
    assert_eq!(synced[0].recalled.map(|r| r.by), Some(bob));
    let list = store.conversations(owner, None, 10).await.unwrap();
    let last = list[0].last_message.as_ref().unwrap();
    assert!(last.recalled);
    assert_eq!(last.preview, "");

    // In a pair conversation only the sender may recall.
    let with_bob = befriend(&store, carol, bob).await;
    send_at(&store, carol, Target::User(bob), "p1", "private", NOW).await;
    let pair = |actor: UserId| chat_store::RecallArgs {
        actor,
        conversation: with_bob,
        seq: Seq(1),
        now_ms: NOW + 10,
        window_ms: 120_000,
    };
    assert!(matches!(
        store.recall(pair(bob)).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(store.recall(pair(carol)).await.unwrap().changed);
}

// ---------------------------------------------------------------------------
// Instantiation for every backend
// ---------------------------------------------------------------------------

/// A login's one read agrees with the reads it stands for, and stops at
/// the account for a disabled or deleted one; a disabled account's token
/// finds no one.
async fn login_view_is_the_reads_it_replaces(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let dave = user(&store, "dave").await;
    let erin = user(&store, "erin").await;
    // Two friends, one with a remark and a category (text columns set),
    // one without (NULLs); the order is by name.
    befriend(&store, alice, erin).await;
    befriend(&store, alice, bob).await;
    store
        .update_friend(alice, erin, Some("from work ✓"), Some("colleagues"))
        .await
        .unwrap();
    store
        .add_friend_request(carol, alice, Some("hi, it's carol"), NOW)
        .await
        .unwrap();
    store
        .add_friend_request(alice, dave, None, NOW + 1)
        .await
        .unwrap();
    // Two groups: an open one, and a closed one where alice is an admin.
    let group = store.create_group(bob, "g", "", NOW).await.unwrap();
    store
        .add_member(group.id, alice, Role::Member, NOW)
        .await
        .unwrap();
    let closed = store
        .create_group_with_policy(erin, "closed", "by invitation", JoinPolicy::Invite, NOW)
        .await
        .unwrap();
    store
        .add_member(closed.id, alice, Role::Admin, NOW)
        .await
        .unwrap();
    send(&store, bob, Target::User(alice), "b1").await;
    send(&store, bob, Target::Group(group.id), "b2").await;
    store.record_login(alice, NOW).await.unwrap();

    let view = store.login_view(alice).await.unwrap();
    let account = view.account.clone().expect("a live account");
    assert_eq!(Some(account.clone()), store.account(alice).await.unwrap());
    assert_eq!(account.last_login_at_ms, Some(NOW));
    assert_eq!(view.friends, store.friends_of(alice).await.unwrap());
    assert_eq!(view.friends.len(), 2);
    assert_eq!(view.friends[1].remark.as_deref(), Some("from work ✓"));
    assert_eq!(view.groups, store.groups_of(alice).await.unwrap());
    assert_eq!(view.groups.len(), 2);
    assert!(view
        .groups
        .iter()
        .any(|(group, role)| *role == Role::Admin && group.join_policy == JoinPolicy::Invite));
    let (incoming, outgoing) = store.pending_requests(alice).await.unwrap();
    assert_eq!(view.incoming_requests, incoming);
    assert_eq!(view.outgoing_requests, outgoing);
    assert_eq!(incoming[0].message.as_deref(), Some("hi, it's carol"));
    assert_eq!(view.unacked, store.unacked_count(alice).await.unwrap());
    assert_eq!(view.unacked, 2);
    assert_eq!(view.unread, store.unread_counts(alice).await.unwrap());
    assert_eq!(view.unread.len(), 2);

    store
        .create_token("alice's", alice, NOW + 1000)
        .await
        .unwrap();
    store.disable_account(alice, None, NOW).await.unwrap();
    let view = store.login_view(alice).await.unwrap();
    assert!(view.account.expect("still there").is_disabled());
    assert!(view.friends.is_empty() && view.groups.is_empty() && view.unacked == 0);
    // A token made after the account was disabled still finds no one.
    store
        .create_token("later", alice, NOW + 1000)
        .await
        .unwrap();
    assert_eq!(store.user_for_token("later", NOW).await.unwrap(), None);
    assert!(store
        .login_view(UserId(999_999))
        .await
        .unwrap()
        .account
        .is_none());
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let backend = crate::common::SqliteFile::new().await;
                    super::$check(backend.store.clone()).await;
                    backend.store.close().await;
                }
            )*
        }

        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(database) = crate::common::MariaDb::create(stringify!($check)).await
                    else {
                        return;
                    };
                    let store = database.open().await;
                    super::$check(store.clone()).await;
                    store.close().await;
                    database.drop_now().await;
                }
            )*
        }
    };
}

conformance!(
    users_have_unique_names_whatever_the_case,
    users_store_any_text_verbatim,
    tokens_expire_and_revoke,
    expired_tokens_are_purged,
    tokens_are_listed_per_user,
    login_view_is_the_reads_it_replaces,
    password_hashes_are_replaced_only_if_unchanged,
    friend_request_then_accept,
    friend_request_back_accepts,
    friend_request_decline,
    remove_and_befriend_again_reuses_conversation,
    update_friend_sets_keeps_and_clears,
    friends_are_listed_by_name,
    groups_create_join_and_roles,
    set_role_owner_transfers_ownership,
    leave_kick_and_dissolve,
    closed_groups_policies_invitations_and_bans,
    append_numbers_and_deduplicates,
    append_refuses_strangers,
    resends_are_answered_after_the_friendship_ended,
    group_messages_reach_every_member,
    history_pages_both_ways,
    ack_moves_forward_within_the_log,
    unacked_is_others_messages_past_the_ack,
    sync_follows_cursors_or_acks,
    late_joiner_gets_only_later_messages,
    concurrent_appends_are_gap_free,
    refused_writes_do_not_disturb_others,
    a_panicking_commit_hook_leaves_the_store_working,
    conversation_list_is_newest_first_with_counts,
    read_positions_move_forward_within_the_log,
    pipelined_sends_leave_each_sender_read_up_to_its_last,
    group_reads_name_the_senders_they_cover,
    recall_rules_and_tombstones,
);
