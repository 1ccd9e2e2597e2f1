//! `chatd admin copy-store` as docs/operations.md (section 9) tells an
//! operator to use it: a SQLite node with a history (friends with remarks, a
//! group with roles, direct and group messages, one recalled, read
//! positions moved, a deleted account, a dissolved group) is stopped, copied
//! into a fresh MariaDB database with the real binary, and a node started on
//! MariaDB serves the same people: their old tokens log them in, history,
//! unread counts and the recalled tombstone are as they were, the next
//! message takes the next sequence number, and new ids are never old ones.
//! Skipped with a `SKIPPED:` line when MariaDB is absent, unless
//! `CHATD_TEST_REQUIRE_SERVICES=1`.

mod common;

#[path = "common/admin_cli.rs"]
mod admin_cli;
#[path = "common/cluster.rs"]
mod cluster;

use std::collections::HashMap;

use admin_cli::AdminCli;
use chat_proto::{
    ConversationId, ConversationListRequest, ConversationListResponse, GroupCreateRequest,
    JoinPolicy, Role, Seq, Target, UserId,
};
use chat_store::{NewMessage, RecallArgs, Store};
use common::TestServer;
use serde_json::Value;

/// Milliseconds since the Unix epoch (recall checks its window against
/// the message's time).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn send(store: &dyn Store, from: (UserId, &str), target: Target, body: &str) -> Seq {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    store
        .append_message(NewMessage {
            sender_id: from.0,
            sender_name: from.1.to_owned(),
            target,
            client_msg_id: format!("m{id}"),
            body: body.to_owned(),
            now_ms: now_ms(),
        })
        .await
        .unwrap()
        .message
        .seq
}

/// Unread counts by conversation, as the conversation list shows them.
async fn unread(connection: &chat_client::Connection) -> HashMap<ConversationId, (u64, Seq)> {
    let list: ConversationListResponse = connection
        .call(ConversationListRequest::default())
        .await
        .expect("conversation list");
    list.conversations
        .iter()
        .map(|entry| (entry.conversation_id, (entry.unread, entry.last_seq)))
        .collect()
}

fn rows_of(report: &Value) -> HashMap<String, u64> {
    report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|table| {
            (
                table["table"].as_str().unwrap().to_owned(),
                table["rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_node_moves_to_mariadb_and_every_client_carries_on() {
    let Some(admin_url) = cluster::need_mysql("copy_store").await else {
        return;
    };

    // The SQLite node: accounts and their tokens come from real logins.
    // Its database lives on after the node, as on a real machine.
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let server = TestServer::start_with(|config| config.store = sqlite_url.clone()).await;
    let (_alice, alice_login) = server.user("alice").await;
    let (_bob, bob_login) = server.user("bob").await;
    let (_carol, carol_login) = server.user("carol").await;
    let (_dave, dave_login) = server.user("dave").await;
    let (alice, bob, carol, dave) = (
        alice_login.user.id,
        bob_login.user.id,
        carol_login.user.id,
        dave_login.user.id,
    );
    server.shutdown().await;

    // A history, written to the store directly.
    let store = chat_store::open(&sqlite_url).await.unwrap();
    let now = now_ms();
    store
        .add_friend_request(alice, bob, None, now)
        .await
        .unwrap();
    let direct = store
        .respond_friend_request(alice, bob, true, now)
        .await
        .unwrap()
        .unwrap();
    store
        .update_friend(alice, bob, Some("Bobby"), Some("work"))
        .await
        .unwrap();
    // A backslash, quotes and an emoji: nothing may be read as an escape.
    let bob_remark = "Al \\n 'the' \"boss\" 🦀";
    store
        .update_friend(bob, alice, Some(bob_remark), None)
        .await
        .unwrap();
    store
        .add_friend_request(dave, alice, None, now)
        .await
        .unwrap();
    let with_dave = store
        .respond_friend_request(dave, alice, true, now)
        .await
        .unwrap()
        .unwrap();
    // Pending, one with a note and one without (a NULL).
    store
        .add_friend_request(carol, bob, Some("hi bob"), now)
        .await
        .unwrap();
    store
        .add_friend_request(carol, alice, None, now)
        .await
        .unwrap();

    let group = store
        .create_group(alice, "rustaceans", "a \"quoted\" group", now)
        .await
        .unwrap();
    store
        .add_member(group.id, bob, Role::Admin, now)
        .await
        .unwrap();
    store
        .add_member(group.id, carol, Role::Member, now)
        .await
        .unwrap();
    // A group that is gone: its id must never be handed out again.
    let dissolved = store
        .create_group(carol, "short-lived", "", now)
        .await
        .unwrap();
    store.dissolve_group(dissolved.id).await.unwrap();

    let to_bob = Target::User(bob);
    let to_alice = Target::User(alice);
    let to_group = Target::Group(group.id);
    send(&*store, (bob, "bob"), to_alice, "hello alice").await;
    send(&*store, (alice, "alice"), to_bob, "hi bob").await;
    let recalled = send(&*store, (alice, "alice"), to_bob, "oops, wrong chat").await;
    let last_direct = send(&*store, (alice, "alice"), to_bob, "a \\ backslash").await;
    store
        .recall(RecallArgs {
            actor: alice,
            conversation: direct,
            seq: recalled,
            now_ms: now_ms(),
            window_ms: 600_000,
        })
        .await
        .unwrap();
    // Bob read up to alice's first message: two unread.
    store.mark_read(bob, direct, Seq(2)).await.unwrap();
    send(&*store, (carol, "carol"), to_group, "first").await;
    send(&*store, (alice, "alice"), to_group, "second").await;
    let last_group = send(&*store, (alice, "alice"), to_group, "third").await;
    let group_conversation = group.conversation_id;
    store
        .mark_read(carol, group_conversation, Seq(2))
        .await
        .unwrap();
    send(&*store, (dave, "dave"), to_alice, "forget me").await;
    store.close().await;

    // Dave asks to be forgotten.
    let sqlite_admin = AdminCli::new(&sqlite_url);
    sqlite_admin
        .run(&["users", "delete", "dave", "--yes"])
        .await
        .ok();
    let stats_before = sqlite_admin.run(&["--json", "stats"]).await.ok().json();

    let database = cluster::TestDatabase::create(&admin_url).await;

    // Only a SQLite store is a source, and never one in use.
    AdminCli::new(&database.url())
        .run(&["copy-store", "--to", &database.url()])
        .await
        .failed_with("copies a SQLite store");
    let running = chat_store::open(&sqlite_url).await.unwrap();
    sqlite_admin
        .run(&["copy-store", "--to", &database.url()])
        .await
        .failed_with("in use (is chatd still running on it? stop it first)");
    running.close().await;

    // The move.
    let report = sqlite_admin
        .run(&["--json", "copy-store", "--to", &database.url()])
        .await
        .ok()
        .json();
    let rows = rows_of(&report);
    let order: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|table| table["table"].as_str().unwrap())
        .collect();
    assert_eq!(order[0], "users", "parents first: {order:?}");
    assert_eq!(rows["users"], 4);
    // Dave's tokens went with his account.
    assert_eq!(rows["tokens"], 3);
    assert_eq!(rows["friends"], 2, "alice and bob, both directions");
    assert_eq!(rows["friend_requests"], 2);
    assert_eq!(rows["chat_groups"], 1);
    assert_eq!(rows["group_members"], 3);
    assert_eq!(rows["messages"], 8);
    assert_eq!(report["rows"], rows.values().sum::<u64>());
    let counters: HashMap<&str, i64> = report["id_counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|counter| {
            (
                counter["table"].as_str().unwrap(),
                counter["next_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counters["chat_groups"], dissolved.id.0 as i64 + 1);
    assert_eq!(counters["users"], dave.0 as i64 + 1);

    // The same counts from the new store, and no second copy on top.
    let mysql_admin = AdminCli::new(&database.url());
    let mut stats_after = mysql_admin.run(&["--json", "stats"]).await.ok().json();
    assert_eq!(stats_after["backend"], "mysql");
    let mut stats_before = stats_before;
    for stats in [&mut stats_before, &mut stats_after] {
        let object = stats.as_object_mut().unwrap();
        object.remove("backend");
        object.remove("database_bytes");
    }
    assert_eq!(stats_after, stats_before);
    sqlite_admin
        .run(&["copy-store", "--to", &database.url()])
        .await
        .failed_with("the target database is not empty (users has 4 rows)");

    // The MariaDB node.
    let mysql_url = database.url();
    let server = TestServer::start_with(|config| config.store = mysql_url).await;

    // Bob's old token works; his id, friends, requests and unread counts
    // are as they were.
    let bob_connection = server.connect().await;
    let login = bob_connection
        .login_with_token(&bob_login.token)
        .await
        .expect("the old token logs in");
    assert_eq!(login.user.id, bob);
    let alice_as_friend = login
        .friends
        .iter()
        .find(|friend| friend.id == alice)
        .expect("alice is bob's friend");
    assert_eq!(alice_as_friend.remark.as_deref(), Some(bob_remark));
    assert_eq!(alice_as_friend.category, None);
    assert_eq!(alice_as_friend.conversation_id, direct);
    assert_eq!(login.incoming_requests.len(), 1);
    assert_eq!(
        login.incoming_requests[0].message.as_deref(),
        Some("hi bob")
    );
    assert_eq!(login.groups.len(), 1);
    assert_eq!(login.groups[0].my_role, Some(Role::Admin));
    let counts = unread(&bob_connection).await;
    assert_eq!(counts[&direct], (2, last_direct));
    assert_eq!(counts[&group_conversation], (3, last_group));

    // History, with the recalled message as a tombstone.
    let history = common::whole_history(&bob_connection, direct).await;
    let bodies: Vec<&str> = history
        .iter()
        .map(|message| message.body.as_str())
        .collect();
    assert_eq!(bodies, ["hello alice", "hi bob", "", "a \\ backslash"]);
    for (index, message) in history.iter().enumerate() {
        assert_eq!(message.seq, Seq(index as u64 + 1));
    }
    let tombstone = history[2].recalled.as_ref().expect("still recalled");
    assert_eq!(tombstone.by, alice);
    assert!(history[1].recalled.is_none());

    // The next message takes the next number, in both conversations.
    let sent = bob_connection.send(to_alice, "moved!").await.unwrap();
    assert_eq!((sent.conversation_id, sent.seq), (direct, Seq(5)));
    let sent = bob_connection.send(to_group, "here too").await.unwrap();
    assert_eq!(sent.seq, Seq(last_group.0 + 1));

    // Alice's token too; her remark for bob, and dave as a deleted account
    // whose message is erased.
    let alice_connection = server.connect().await;
    let login = alice_connection
        .login_with_token(&alice_login.token)
        .await
        .expect("the old token logs in");
    assert_eq!(login.user.id, alice);
    let bob_as_friend = login
        .friends
        .iter()
        .find(|friend| friend.id == bob)
        .expect("bob is alice's friend");
    assert_eq!(bob_as_friend.remark.as_deref(), Some("Bobby"));
    assert_eq!(bob_as_friend.category.as_deref(), Some("work"));
    assert!(login.friends.iter().all(|friend| friend.id != dave));
    let from_dave = common::whole_history(&alice_connection, with_dave).await;
    assert_eq!(from_dave.len(), 1);
    assert_eq!(from_dave[0].sender_id, dave);
    assert_eq!(from_dave[0].body, "");
    assert!(
        from_dave[0].sender_name.starts_with("deleted account"),
        "{}",
        from_dave[0].sender_name
    );
    assert_eq!(unread(&alice_connection).await[&direct], (1, Seq(5)));

    // Carol read one of the group's three; the dead account stays dead.
    let carol_connection = server.connect().await;
    carol_connection
        .login_with_token(&carol_login.token)
        .await
        .expect("the old token logs in");
    assert_eq!(
        unread(&carol_connection).await[&group_conversation],
        (2, Seq(last_group.0 + 1))
    );
    assert!(server
        .connect()
        .await
        .login_with_token(&dave_login.token)
        .await
        .is_err());

    // New accounts and groups get ids never used before.
    let (erin, erin_login) = server.user("erin").await;
    assert!(erin_login.user.id.0 > dave.0, "{:?}", erin_login.user.id);
    let created = erin
        .call(GroupCreateRequest {
            name: "newcomers".to_owned(),
            description: "".to_owned(),
            join_policy: JoinPolicy::Open,
        })
        .await
        .unwrap();
    assert!(
        created.group.id.0 > dissolved.id.0,
        "{:?}",
        created.group.id
    );
    server.shutdown().await;

    // The human report, into a second database.
    let second = cluster::TestDatabase::create(&admin_url).await;
    let text = sqlite_admin
        .run(&["copy-store", "--to", &second.url()])
        .await
        .ok()
        .stdout;
    assert!(text.starts_with("copied "), "{text}");
    assert!(text.contains("\nTABLE "), "{text}");
    assert!(text.contains("every table's count matches"), "{text}");
    assert!(text.contains("new ids continue: users from "), "{text}");
}
