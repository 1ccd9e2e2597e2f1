//! A database made before the conversation list existed upgrades in place:
//! its read positions, activity times and unread counts start correct.
//! (`admin.rs` checks the same for the operators' columns.)

mod common;

use std::sync::Arc;

use chat_proto::{ConversationId, Seq, UserId};
use chat_store::Store;

/// What an older chatd stored: alice and bob, friends since t=1000, three
/// messages (alice's, then two of bob's) of which alice acknowledged the
/// first and bob all; and a group of alice's, created at t=5000, with no
/// message yet.
const OLD_DATA: &[&str] = &[
    "INSERT INTO users (id, name, password_hash, created_at_ms) VALUES (1, 'alice', 'h', 1), (2, 'bob', 'h', 1)",
    "INSERT INTO conversations (id, kind, user_lo, user_hi, last_seq) VALUES (1, 'direct', 1, 2, 3)",
    "INSERT INTO conversations (id, kind, user_lo, user_hi, last_seq) VALUES (2, 'group', NULL, NULL, 0)",
    "INSERT INTO friends (user_id, friend_id, remark, category, conversation_id, created_at_ms) VALUES (1, 2, NULL, NULL, 1, 1000), (2, 1, NULL, NULL, 1, 1000)",
    "INSERT INTO conversation_members (conversation_id, user_id, acked_seq) VALUES (1, 1, 1), (1, 2, 3), (2, 1, 0)",
    "INSERT INTO chat_groups (id, name, description, owner_id, conversation_id, created_at_ms) VALUES (1, 'g', '', 1, 2, 5000)",
    "INSERT INTO group_members (group_id, user_id, role, joined_at_ms) VALUES (1, 1, 'owner', 5000)",
    "INSERT INTO messages (conversation_id, seq, sender_id, target_kind, target_id, client_msg_id, body, server_ts_ms) VALUES \
     (1, 1, 1, 'user', 2, 'a1', 'hi bob', 2000), (1, 2, 2, 'user', 1, 'b1', 'hi', 3000), (1, 3, 2, 'user', 1, 'b2', 'there?', 4000)",
];

async fn check_upgraded(store: &Arc<dyn Store>) {
    let (alice, bob) = (UserId(1), UserId(2));
    let list = store.conversations(alice, None, 10).await.unwrap();
    let summary: Vec<(ConversationId, Seq, Seq, i64)> = list
        .iter()
        .map(|c| {
            (
                c.conversation_id,
                c.last_seq,
                c.read_seq,
                c.last_activity_ms,
            )
        })
        .collect();
    // The group began at 5000, after the pair's last message at 4000.
    assert_eq!(
        summary,
        [
            (ConversationId(2), Seq(0), Seq(0), 5000),
            (ConversationId(1), Seq(3), Seq(1), 4000)
        ]
    );
    assert_eq!(list[1].last_message.as_ref().unwrap().preview, "there?");
    // Alice has bob's two unread; bob, who acknowledged and wrote, none.
    let unread = store.unread_counts(alice).await.unwrap();
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0].unread, 2);
    assert!(store.unread_counts(bob).await.unwrap().is_empty());
    // And the store goes on from there.
    let read = store
        .mark_read(alice, ConversationId(1), Seq(3))
        .await
        .unwrap();
    assert_eq!(read.read_seq, Seq(3));
    assert!(store.unread_counts(alice).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_database_from_before_conversations_upgrades_with_correct_counts() {
    let (_dir, url) = common::old_database("sqlite", None, "0003", OLD_DATA).await;
    let store: Arc<dyn Store> =
        Arc::new(chat_store::sqlite::SqliteStore::open(&url).await.unwrap());
    check_upgraded(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_database_from_before_conversations_upgrades_with_correct_counts() {
    let Some(database) = common::MariaDb::create("upgrade_conversations").await else {
        return;
    };
    common::old_database("mysql", Some(&database), "0003", OLD_DATA).await;
    let store = database.open().await;
    check_upgraded(&store).await;
    store.close().await;
    database.drop_now().await;
}
