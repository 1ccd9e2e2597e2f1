//! What only the SQLite backend has: a file that outlives the process, an
//! in-memory mode, and a writer that must finish its queue when closed.

mod common;

use std::sync::Arc;

use chat_proto::{Role, Seq, Target, UserId};
use chat_store::sqlite::SqliteStore;
use chat_store::{FriendAddResult, MessageStore, NewMessage, Store, StoreError, UserStore};

const NOW: i64 = 1_700_000_000_000;

fn message(sender: UserId, target: Target, client_msg_id: &str) -> NewMessage {
    NewMessage {
        sender_id: sender,
        sender_name: String::new(),
        target,
        client_msg_id: client_msg_id.to_owned(),
        body: format!("body of {client_msg_id} 😀"),
        now_ms: NOW,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_file_keeps_everything() {
    let file = common::SqliteFile::new().await;
    let store = file.store.clone();
    let alice = store.create_user("alice", "hash", NOW).await.unwrap();
    let bob = store.create_user("bob", "hash", NOW).await.unwrap().id;
    let carol = store.create_user("carol", "hash", NOW).await.unwrap().id;
    store
        .add_friend_request(alice.id, bob, None, NOW)
        .await
        .unwrap();
    let conversation = store
        .respond_friend_request(alice.id, bob, true, NOW)
        .await
        .unwrap()
        .unwrap();
    store
        .update_friend(alice.id, bob, Some("B"), Some("friends"))
        .await
        .unwrap();
    store
        .add_friend_request(carol, alice.id, Some("hello"), NOW)
        .await
        .unwrap();
    let group = store.create_group(alice.id, "g", "d", NOW).await.unwrap();
    store
        .add_member(group.id, bob, Role::Admin, NOW)
        .await
        .unwrap();
    store.create_token("token", bob, NOW + 1000).await.unwrap();
    for i in 1..=3 {
        store
            .append_message(message(alice.id, Target::User(bob), &format!("d{i}")))
            .await
            .unwrap();
    }
    store
        .append_message(message(bob, Target::Group(group.id), "g1"))
        .await
        .unwrap();
    store.ack(bob, conversation, Seq(2)).await.unwrap();
    store.close().await;
    drop(store);
    drop(file.store);

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&file.url).await.unwrap());
    assert_eq!(
        store.user_by_name("alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .user_for_token("token", NOW)
            .await
            .unwrap()
            .map(|(user, expires)| (user.id, expires)),
        Some((bob, NOW + 1000))
    );
    let friend = store.friend(alice.id, bob).await.unwrap().unwrap();
    assert_eq!(friend.remark.as_deref(), Some("B"));
    assert_eq!(friend.conversation_id, conversation);
    let (incoming, _) = store.pending_requests(alice.id).await.unwrap();
    assert_eq!(incoming.len(), 1);
    assert_eq!(incoming[0].message.as_deref(), Some("hello"));
    assert_eq!(
        store.group(group.id).await.unwrap().unwrap().member_count,
        2
    );
    assert_eq!(store.role(group.id, bob).await.unwrap(), Some(Role::Admin));
    let history = store.history(conversation, None, None, 10).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[2].body, "body of d3 😀");
    // Bob acked 2 of 3 direct messages; the group message is his own.
    assert_eq!(store.unacked_count(bob).await.unwrap(), 1);
    assert_eq!(store.unacked_count(alice.id).await.unwrap(), 1);
    // Numbering and ids go on where they stopped.
    let next = store
        .append_message(message(alice.id, Target::User(bob), "d4"))
        .await
        .unwrap();
    assert_eq!(next.message.seq, Seq(4));
    let dave = store.create_user("dave", "hash", NOW).await.unwrap().id;
    assert!(dave > carol);
    // A resend of a message from before the restart is still recognised.
    let resend = store
        .append_message(message(alice.id, Target::User(bob), "d1"))
        .await
        .unwrap();
    assert!(resend.duplicate);
    assert_eq!(resend.message.seq, Seq(1));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_what_was_queued_and_refuses_the_rest() {
    let file = common::SqliteFile::new().await;
    let store = file.store.clone();
    let alice = store.create_user("alice", "hash", NOW).await.unwrap().id;
    let bob = store.create_user("bob", "hash", NOW).await.unwrap().id;
    let FriendAddResult::Pending(_) = store
        .add_friend_request(alice, bob, None, NOW)
        .await
        .unwrap()
    else {
        panic!("expected a pending request");
    };
    let conversation = store
        .respond_friend_request(alice, bob, true, NOW)
        .await
        .unwrap()
        .unwrap();

    let mut sends = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        sends.push(tokio::spawn(async move {
            store
                .append_message(message(alice, Target::User(bob), &format!("m{i}")))
                .await
        }));
    }
    tokio::task::yield_now().await;
    store.close().await;
    // Closing twice is harmless.
    store.close().await;
    let mut acknowledged = Vec::new();
    for send in sends {
        match send.await.unwrap() {
            Ok(sent) => acknowledged.push(sent.message.seq.0),
            Err(StoreError::Database(sqlx::Error::PoolClosed)) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert!(matches!(
        store.create_user("late", "hash", NOW).await,
        Err(StoreError::Database(_))
    ));
    assert!(store.user_by_name("alice").await.is_err());
    drop(store);
    drop(file.store);

    // Every send that was answered is on disk, numbered without gaps.
    acknowledged.sort_unstable();
    let count = u64::try_from(acknowledged.len()).unwrap();
    assert_eq!(acknowledged, (1..=count).collect::<Vec<_>>());
    let store = SqliteStore::open(&file.url).await.unwrap();
    let stored = store.history(conversation, None, None, 1000).await.unwrap();
    assert_eq!(u64::try_from(stored.len()).unwrap(), count);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_store_works_and_is_private() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    let other = SqliteStore::open("sqlite::memory:").await.unwrap();
    let owner = store.create_user("owner", "hash", NOW).await.unwrap().id;
    assert!(store.user_by_name("owner").await.unwrap().is_some());
    assert!(other.user_by_name("owner").await.unwrap().is_none());
    let group = store.create_group(owner, "g", "", NOW).await.unwrap();
    let mut sends = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        sends.push(tokio::spawn(async move {
            store
                .append_message(message(owner, Target::Group(group.id), &format!("m{i}")))
                .await
                .unwrap()
                .message
                .seq
                .0
        }));
    }
    let mut seqs = Vec::new();
    for send in sends {
        seqs.push(send.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_eq!(
        store
            .history(group.conversation_id, None, None, 100)
            .await
            .unwrap()
            .len(),
        50
    );
    assert_eq!(store.backend(), "sqlite");
    store.close().await;
    other.close().await;
}

#[tokio::test]
async fn bad_urls_are_errors() {
    assert!(matches!(
        chat_store::open("postgres://localhost/chat").await,
        Err(StoreError::Config(_))
    ));
    assert!(matches!(
        chat_store::open("sqlite://").await,
        Err(StoreError::Config(_))
    ));
    let directory = tempfile::tempdir().unwrap();
    let missing = directory.path().join("no-such-directory").join("chat.db");
    assert!(matches!(
        chat_store::open(&format!("sqlite://{}", missing.display())).await,
        Err(StoreError::Database(_))
    ));
    // A file that is not a database is refused, not overwritten.
    let not_a_database = directory.path().join("notes.txt");
    std::fs::write(
        &not_a_database,
        "just some text, long enough to fill a header....",
    )
    .unwrap();
    assert!(
        chat_store::open(&format!("sqlite://{}", not_a_database.display()))
            .await
            .is_err()
    );
    assert_eq!(
        std::fs::read_to_string(&not_a_database).unwrap(),
        "just some text, long enough to fill a header...."
    );
    // A MySQL URL must name its database; this is checked before connecting.
    assert!(matches!(
        chat_store::open("mysql://root@127.0.0.1:9").await,
        Err(StoreError::Config(_))
    ));
}

/// Accounts created before names had keys get them when the store opens;
/// names that clash (in case, or by looking alike) both keep working, the
/// older one keeps the name's keys, nothing is merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_before_keys_get_them_and_clashes_stay_apart() {
    let file = common::SqliteFile::new().await;
    file.store.close().await;
    let raw = sqlx::SqlitePool::connect(&file.url).await.unwrap();
    // As an older chatd wrote them: no keys.
    for name in ["Case", "case", "alice", "\u{430}lice", "bob"] {
        sqlx::query("INSERT INTO users (name, password_hash, created_at_ms) VALUES (?, 'h', 0)")
            .bind(name)
            .execute(&raw)
            .await
            .unwrap();
    }
    raw.close().await;
    let store = SqliteStore::open(&file.url).await.unwrap();
    // Every account is still found by its own name...
    for name in ["Case", "case", "alice", "\u{430}lice", "bob"] {
        let found = store.user_by_name(name).await.unwrap().unwrap();
        assert_eq!(found.name, name);
    }
    // ...and by its key, the older of a clashing pair.
    assert_eq!(
        store.user_by_name("CASE").await.unwrap().unwrap().name,
        "Case"
    );
    assert_eq!(
        store.user_by_name("BOB").await.unwrap().unwrap().name,
        "bob"
    );
    // New accounts cannot take any of these names in another case.
    for taken in ["CASE", "Alice", "Bob"] {
        assert!(matches!(
            store.create_user(taken, "h", NOW).await,
            Err(StoreError::Conflict(_))
        ));
    }
    store.close().await;
}
