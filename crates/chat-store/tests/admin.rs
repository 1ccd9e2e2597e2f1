//! The operators' side of the store (`AdminStore`) on every backend:
//! listing and describing accounts, passwords, disabling, deleting, stats,
//! and an existing database upgraded in place by the new migration.
//!
//! Like the conformance suite, each check runs on a SQLite file and on a
//! MariaDB database of its own (skipped with `SKIPPED:` when MariaDB is
//! absent, unless `CHATD_TEST_REQUIRE_SERVICES=1`).

mod common;

use std::sync::Arc;

use chat_proto::{Role, Target, UserId};
use chat_store::admin::{deleted_account_name, like_pattern};
use chat_store::{FriendAddResult, NewMessage, Store, StoreError};

const NOW: i64 = 1_700_000_000_000;

async fn user(store: &Arc<dyn Store>, name: &str) -> UserId {
    store.create_user(name, "hash", NOW).await.unwrap().id
}

async fn befriend(store: &Arc<dyn Store>, a: UserId, b: UserId) -> chat_proto::ConversationId {
    store.add_friend_request(a, b, None, NOW).await.unwrap();
    store
        .respond_friend_request(a, b, true, NOW)
        .await
        .unwrap()
        .unwrap()
}

async fn send(store: &Arc<dyn Store>, sender: UserId, target: Target, id: &str) {
    store
        .append_message(NewMessage {
            sender_id: sender,
            sender_name: String::new(),
            target,
            client_msg_id: id.to_owned(),
            body: format!("secret {id}"),
            now_ms: NOW,
        })
        .await
        .unwrap();
}

async fn accounts_are_listed_described_and_disabled(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "Bobby").await;
    let carol = user(&store, "carol_50%").await;
    befriend(&store, alice, bob).await;
    store.create_group(alice, "g", "", NOW).await.unwrap();
    store.create_token("t1", alice, NOW * 2).await.unwrap();
    send(&store, alice, Target::User(bob), "m1").await;

    let all = store.accounts(None).await.unwrap();
    let ids: Vec<UserId> = all.iter().map(|account| account.id).collect();
    assert_eq!(ids, [alice, bob, carol]);
    let names = |pattern: &str| {
        let store = store.clone();
        let like = like_pattern(pattern);
        async move {
            store
                .accounts(Some(&like))
                .await
                .unwrap()
                .into_iter()
                .map(|account| account.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("bob").await, ["Bobby"]);
    assert_eq!(names("b*").await, ["Bobby"]);
    assert_eq!(names("?lice").await, ["alice"]);
    assert_eq!(names("50%").await, ["carol_50%"]);
    assert!(names("_").await.iter().all(|name| name.contains('_')));

    assert!(store
        .account(alice)
        .await
        .unwrap()
        .unwrap()
        .last_login_at_ms
        .is_none());
    store.record_login(alice, NOW).await.unwrap();
    // Within a minute of the last one, a login is not written again.
    store.record_login(alice, NOW + 30_000).await.unwrap();
    assert_eq!(
        store
            .account(alice)
            .await
            .unwrap()
            .unwrap()
            .last_login_at_ms,
        Some(NOW)
    );
    store.record_login(alice, NOW + 61_000).await.unwrap();
    assert_eq!(
        store
            .account(alice)
            .await
            .unwrap()
            .unwrap()
            .last_login_at_ms,
        Some(NOW + 61_000)
    );

    let details = store.account_details(alice).await.unwrap().unwrap();
    assert_eq!(details.friends, 1);
    assert_eq!(details.groups, 1);
    assert_eq!(details.groups_owned, 1);
    assert_eq!(details.messages_sent, 1);
    assert_eq!(details.tokens, 1);
    assert!(!details.account.is_disabled());

    assert_eq!(
        store
            .disable_account(alice, Some("spam"), NOW + 5)
            .await
            .unwrap(),
        1
    );
    let disabled = store.account(alice).await.unwrap().unwrap();
    assert!(disabled.is_disabled());
    assert_eq!(disabled.disabled_at_ms, Some(NOW + 5));
    assert_eq!(disabled.disabled_reason.as_deref(), Some("spam"));
    assert!(store.user_for_token("t1", NOW).await.unwrap().is_none());
    assert!(store.enable_account(alice).await.unwrap());
    assert!(!store.enable_account(alice).await.unwrap());
    let enabled = store.account(alice).await.unwrap().unwrap();
    assert!(!enabled.is_disabled());
    assert_eq!(enabled.disabled_reason, None);
    assert!(matches!(
        store.disable_account(UserId(999), None, NOW).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn set_password_revokes_tokens(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    store.create_token("t1", alice, NOW * 2).await.unwrap();
    store.create_token("t2", alice, NOW * 2).await.unwrap();
    assert_eq!(store.set_password(alice, "new-hash").await.unwrap(), 2);
    assert_eq!(
        store
            .user_by_id(alice)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new-hash"
    );
    assert!(store.user_for_token("t2", NOW).await.unwrap().is_none());
    assert!(matches!(
        store.set_password(UserId(999), "x").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn delete_erases_the_person_and_keeps_the_logs(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let dave = user(&store, "dave").await;
    let direct = befriend(&store, alice, bob).await;
    assert!(matches!(
        store
            .add_friend_request(alice, dave, None, NOW)
            .await
            .unwrap(),
        FriendAddResult::Pending(_)
    ));
    // Carol joins before Bob, but Bob is an admin: the admin inherits.
    let shared = store.create_group(alice, "shared", "", NOW).await.unwrap();
    store
        .add_member(shared.id, carol, Role::Member, NOW)
        .await
        .unwrap();
    store
        .add_member(shared.id, bob, Role::Admin, NOW + 1)
        .await
        .unwrap();
    // Only Carol, a plain member, is left to inherit this one.
    let members_only = store.create_group(alice, "members", "", NOW).await.unwrap();
    store
        .add_member(members_only.id, carol, Role::Member, NOW)
        .await
        .unwrap();
    let alone = store.create_group(alice, "alone", "", NOW).await.unwrap();
    store.create_token("t", alice, NOW * 2).await.unwrap();
    send(&store, alice, Target::User(bob), "a1").await;
    send(&store, bob, Target::User(alice), "b1").await;
    send(&store, alice, Target::Group(shared.id), "a2").await;

    let deleted = store.delete_account(alice, NOW + 9).await.unwrap();
    assert_eq!(deleted.former_name, "alice");
    assert_eq!(deleted.tombstone_name, deleted_account_name(alice));
    assert_eq!(
        deleted.groups_handed_over,
        [(shared.id, bob), (members_only.id, carol)]
    );
    assert_eq!(deleted.groups_dissolved, [alone.id]);
    assert_eq!(deleted.friendships_ended, 1);
    assert_eq!(deleted.messages_erased, 2);

    // Nobody finds the account any more, and its name is free.
    assert!(store.user_by_name("alice").await.unwrap().is_none());
    assert!(store.user_by_id(alice).await.unwrap().is_none());
    assert!(store.account(alice).await.unwrap().is_none());
    assert!(store.user_for_token("t", NOW).await.unwrap().is_none());
    assert!(store.friends_of(bob).await.unwrap().is_empty());
    assert!(store.pending_requests(dave).await.unwrap().0.is_empty());
    assert!(store.groups_of(alice).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_account(alice, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    let again = user(&store, "alice").await;
    assert_ne!(again, alice);

    // Bob still reads the conversation, with the sender shown as deleted
    // and the bodies gone; his own message is untouched.
    let history = store.history(direct, None, None, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].sender_id, alice);
    assert_eq!(history[0].sender_name, deleted_account_name(alice));
    assert_eq!(history[0].body, "");
    assert!(history[0].client_msg_id.starts_with("erased:"));
    assert_eq!(history[1].body, "secret b1");
    assert!(store.is_conversation_member(direct, bob).await.unwrap());
    assert!(!store.is_conversation_member(direct, alice).await.unwrap());

    let shared_now = store.group(shared.id).await.unwrap().unwrap();
    assert_eq!(shared_now.owner_id, bob);
    assert_eq!(shared_now.member_count, 2);
    assert_eq!(store.role(shared.id, bob).await.unwrap(), Some(Role::Owner));
    let group_log = store
        .history(shared.conversation_id, None, None, 10)
        .await
        .unwrap();
    assert_eq!(group_log[0].body, "");
    assert_eq!(
        store.role(members_only.id, carol).await.unwrap(),
        Some(Role::Owner)
    );
    assert!(store.group(alone.id).await.unwrap().is_none());

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.users, 4);
    assert_eq!(stats.users_deleted, 1);
    assert_eq!(stats.groups, 2);
    assert_eq!(stats.messages, 3);
    assert!(stats.conversations >= 3);
    assert!(stats.database_bytes > 0);
    let groups = store.all_groups().await.unwrap();
    assert_eq!(groups.len(), 2);
}

macro_rules! on_every_backend {
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

on_every_backend!(
    accounts_are_listed_described_and_disabled,
    set_password_revokes_tokens,
    delete_erases_the_person_and_keeps_the_logs,
);

/// Data written by the old schema must read the same after the upgrade,
/// with the new columns empty.
async fn check_upgraded(store: &Arc<dyn Store>) {
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(alice.password_hash, "old-hash");
    let account = store.account(alice.id).await.unwrap().unwrap();
    assert!(!account.is_disabled());
    assert_eq!(account.last_login_at_ms, None);
    assert_eq!(store.stats().await.unwrap().users, 1);
}

/// An account as the first schema stored it.
const OLD_USER: &[&str] =
    &["INSERT INTO users (name, password_hash, created_at_ms) VALUES ('alice', 'old-hash', 1)"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_sqlite_database_upgrades_in_place() {
    let (_dir, url) = common::old_database("sqlite", None, "0002", OLD_USER).await;
    let store: Arc<dyn Store> =
        Arc::new(chat_store::sqlite::SqliteStore::open(&url).await.unwrap());
    check_upgraded(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_mariadb_database_upgrades_in_place() {
    let Some(database) = common::MariaDb::create("upgrade").await else {
        return;
    };
    common::old_database("mysql", Some(&database), "0002", OLD_USER).await;
    let store = database.open().await;
    check_upgraded(&store).await;
    store.close().await;
    database.drop_now().await;
}
