//! `copy_sqlite_to_mysql` at the edges the end-to-end test
//! (`chat-server/tests/copy_store.rs`) does not reach: tables larger than
//! one batch, in rows and in bytes; text that only an exact, byte-wise,
//! no-pad collation keeps apart; and a copy that fails half-way, which
//! must leave the target empty and ready for another try. Needs MariaDB
//! (skipped with `SKIPPED:` when it is absent, unless
//! `CHATD_TEST_REQUIRE_SERVICES=1`).

mod common;

use std::sync::Arc;

use chat_proto::{ConversationId, Seq, Target, UserId};
use chat_store::{copy_sqlite_to_mysql, NewMessage, Store, StoreError};
use common::{MariaDb, SqliteFile};

const NOW: i64 = 1_700_000_000_000;

async fn user(store: &Arc<dyn Store>, name: &str) -> UserId {
    store.create_user(name, "hash", NOW).await.unwrap().id
}

async fn send(store: &Arc<dyn Store>, from: UserId, to: UserId, id: &str, body: &str) {
    store
        .append_message(NewMessage {
            sender_id: from,
            sender_name: String::new(),
            target: Target::User(to),
            client_msg_id: id.to_owned(),
            body: body.to_owned(),
            now_ms: NOW,
        })
        .await
        .unwrap();
}

async fn everything(store: &Arc<dyn Store>, conversation: ConversationId) -> Vec<(u64, String)> {
    let mut messages = Vec::new();
    loop {
        let page = store
            .history(conversation, None, Some(Seq(messages.len() as u64)), 200)
            .await
            .unwrap();
        if page.is_empty() {
            return messages;
        }
        messages.extend(
            page.into_iter()
                .map(|message| (message.seq.0, message.body)),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_rows_and_large_bodies_arrive_exactly() {
    let Some(database) = MariaDb::create("copybatches").await else {
        return;
    };
    let source = SqliteFile::new().await;
    let alice = user(&source.store, "alice").await;
    let bob = user(&source.store, "bob").await;
    // Names that a padding collation would take for one. (A case-blind one
    // is moot: names that differ only in case are one account.)
    user(&source.store, "bob ").await;
    source
        .store
        .add_friend_request(alice, bob, None, NOW)
        .await
        .unwrap();
    let conversation = source
        .store
        .respond_friend_request(alice, bob, true, NOW)
        .await
        .unwrap()
        .unwrap();
    // More rows than one INSERT takes, and bodies that together pass its
    // byte bound several times.
    let large = "x".repeat(700 * 1024);
    for index in 0..1_234 {
        let body = match index % 300 {
            7 => large.clone(),
            8 => format!("{large}\u{1F980} \\ ' \" end "),
            _ => format!("message {index} \\n"),
        };
        send(&source.store, alice, bob, &format!("m{index}"), &body).await;
    }
    send(&source.store, bob, alice, "same", "one").await;
    send(&source.store, bob, alice, "same ", "two").await;
    let expected = everything(&source.store, conversation).await;
    let (_source_dir, source_url) = source.stop().await;

    let mut tables = Vec::new();
    let report = copy_sqlite_to_mysql(&source_url, &database.url(), |table| {
        tables.push(table.table.clone());
    })
    .await
    .unwrap();
    let names: Vec<&str> = report.tables.iter().map(|t| t.table.as_str()).collect();
    assert_eq!(tables, names, "progress after every table");
    let rows = |name: &str| {
        report
            .tables
            .iter()
            .find(|table| table.table == name)
            .unwrap()
            .rows
    };
    assert_eq!(rows("users"), 3);
    assert_eq!(rows("messages"), 1_236);

    let target = database.open().await;
    assert_eq!(everything(&target, conversation).await, expected);
    assert_eq!(
        target.user_by_name("bob ").await.unwrap().unwrap().name,
        "bob "
    );

    target.close().await;
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_fails_half_way_leaves_the_target_empty() {
    let Some(database) = MariaDb::create("copyfails").await else {
        return;
    };
    let source = SqliteFile::new().await;
    let alice = user(&source.store, "alice").await;
    let bob = user(&source.store, "bob").await;
    source
        .store
        .add_friend_request(alice, bob, None, NOW)
        .await
        .unwrap();
    source
        .store
        .respond_friend_request(alice, bob, true, NOW)
        .await
        .unwrap();
    send(&source.store, alice, bob, "m1", "hello").await;
    // SQLite takes text of any length; MySQL's client_msg_id column holds
    // 255 characters. chatd never writes one this long, but a copy must
    // fail loudly on it, never cut it short.
    send(
        &source.store,
        bob,
        alice,
        &"y".repeat(300),
        "too long an id",
    )
    .await;
    let (_source_dir, source_url) = source.stop().await;

    let failed = copy_sqlite_to_mysql(&source_url, &database.url(), |_| {}).await;
    assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
    let target = database.open().await;
    let stats = target.stats().await.unwrap();
    assert_eq!(
        (stats.users, stats.conversations, stats.messages),
        (0, 0, 0),
        "the users and conversations copied before the failure were rolled back"
    );
    target.close().await;

    // Nothing stays behind to stop a second try.
    let good = SqliteFile::new().await;
    let carol = user(&good.store, "carol").await;
    good.store.close().await;
    let report = copy_sqlite_to_mysql(&good.url, &database.url(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.tables[0].rows, 1);
    let target = database.open().await;
    assert_eq!(
        target.user_by_name("carol").await.unwrap().unwrap().id,
        carol
    );
    target.close().await;
    database.drop_now().await;
}
