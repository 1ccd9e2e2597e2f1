//! `chatd admin` on a store, as an operator runs it: the real binary
//! against a real SQLite file and, when MariaDB is there, a real MariaDB
//! database (skipped with a `SKIPPED:` line otherwise, unless
//! `CHATD_TEST_REQUIRE_SERVICES=1`). No server runs: every command here
//! works on the store alone.

#[path = "common/admin_cli.rs"]
mod admin_cli;
#[path = "common/cluster.rs"]
mod cluster;

use std::sync::Arc;

use admin_cli::AdminCli;
use chat_proto::{Role, Target, UserId};
use chat_server::auth::Passwords;
use chat_store::{NewMessage, Store};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

fn id_of(value: &Value) -> UserId {
    UserId(value["id"].as_u64().expect("an id"))
}

async fn password_is(store: &Arc<dyn Store>, name: &str, password: &str) -> bool {
    let user = store.user_by_name(name).await.unwrap().unwrap();
    Passwords::new()
        .verify(password.to_owned(), user.password_hash)
        .await
        .unwrap()
}

/// Every store command, on the store at `url` (already created and
/// migrated: `store` is open on it).
async fn user_and_group_commands(url: &str, store: Arc<dyn Store>) {
    let admin = AdminCli::new(url);

    // Accounts are made with a password from standard input.
    let alice = admin
        .run_with_input(
            &["--json", "users", "create", "alice"],
            &format!("{PASSWORD}\n"),
        )
        .await
        .ok()
        .json();
    assert_eq!(alice["name"], "alice");
    let alice = id_of(&alice);
    assert!(password_is(&store, "alice", PASSWORD).await);
    admin
        .run_with_input(&["users", "create", "alice"], &format!("{PASSWORD}\n"))
        .await
        .failed_with("taken");
    admin
        .run_with_input(&["users", "create", "shorty"], "short\n")
        .await
        .failed_with("password must be 8 to 128 characters");
    admin
        .run_with_input(
            &["users", "create", "Deleted account #9"],
            &format!("{PASSWORD}\n"),
        )
        .await
        .failed_with("reserved");
    admin
        .run(&["users", "create", "nopassword"])
        .await
        .failed_with("no password on standard input");
    let created = admin
        .run_with_input(&["users", "create", "bob"], &format!("{PASSWORD}\n"))
        .await
        .ok();
    assert!(
        created.stdout.starts_with("created bob (id "),
        "{}",
        created.stdout
    );
    let bob = store.user_by_name("bob").await.unwrap().unwrap().id;
    let carol = id_of(
        &admin
            .run_with_input(
                &["--json", "users", "create", "carol"],
                &format!("{PASSWORD}\n"),
            )
            .await
            .ok()
            .json(),
    );

    // A world to describe: friends, a group, messages.
    store.add_friend_request(alice, bob, None, 1).await.unwrap();
    let direct = store
        .respond_friend_request(alice, bob, true, 1)
        .await
        .unwrap()
        .unwrap();
    let group = store
        .create_group(alice, "rustaceans", "", 1)
        .await
        .unwrap();
    store
        .add_member(group.id, carol, Role::Member, 2)
        .await
        .unwrap();
    store
        .add_member(group.id, bob, Role::Admin, 3)
        .await
        .unwrap();
    for (id, target) in [("m1", Target::User(bob)), ("m2", Target::Group(group.id))] {
        store
            .append_message(NewMessage {
                sender_id: alice,
                sender_name: "alice".to_owned(),
                target,
                client_msg_id: id.to_owned(),
                body: "a secret".to_owned(),
                now_ms: 5,
            })
            .await
            .unwrap();
    }

    // Listing, filtering, describing.
    let listed = admin.run(&["--json", "users", "list"]).await.ok().json();
    let names: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let filtered = admin
        .run(&["--json", "users", "list", "--name", "B*"])
        .await
        .ok()
        .json();
    assert_eq!(filtered["users"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["users"][0]["name"], "bob");
    let table = admin.run(&["users", "list", "--name", "ro"]).await.ok();
    assert!(table.stdout.starts_with("ID  NAME"), "{}", table.stdout);
    assert!(table.stdout.contains("carol"), "{}", table.stdout);
    assert!(table.stdout.ends_with("1 user\n"), "{}", table.stdout);

    let shown = admin.run(&["--json", "users", "show", "alice"]).await.ok();
    // No node to ask: the sessions are unknown, which is a warning only.
    assert!(
        shown.stderr.contains("warning: sessions unknown"),
        "{}",
        shown.stderr
    );
    let shown = shown.json();
    assert_eq!(shown["friends"], 1);
    assert_eq!(shown["groups"], 1);
    assert_eq!(shown["groups_owned"], 1);
    assert_eq!(shown["messages_sent"], 2);
    assert_eq!(shown["disabled"], false);
    assert_eq!(shown["sessions"], Value::Null);
    let by_id = admin
        .run(&["--json", "users", "show", &alice.0.to_string()])
        .await
        .ok()
        .json();
    assert_eq!(by_id["name"], "alice");
    let text = admin.run(&["users", "show", "bob"]).await.ok().stdout;
    assert!(text.contains("name:        bob\n"), "{text}");
    assert!(text.contains("status:      active\n"), "{text}");
    admin
        .run(&["users", "show", "nobody"])
        .await
        .failed_with("no account \"nobody\"");

    // A new password, and the old tokens stop working.
    store
        .create_token("old-token", alice, i64::MAX)
        .await
        .unwrap();
    let reset = admin
        .run_with_input(
            &["--json", "users", "reset-password", "alice"],
            "a brand new password\n",
        )
        .await
        .ok()
        .json();
    assert_eq!(reset["tokens_revoked"], 1);
    assert!(password_is(&store, "alice", "a brand new password").await);
    assert!(store
        .user_for_token("old-token", 0)
        .await
        .unwrap()
        .is_none());

    // Disabling keeps a reason for operators; enabling lifts it.
    let disabled = admin
        .run(&[
            "--json",
            "users",
            "disable",
            "bob",
            "--reason",
            "spam reports",
        ])
        .await
        .ok()
        .json();
    assert_eq!(disabled["reason"], "spam reports");
    let bob_shown = admin
        .run(&["--json", "users", "show", "bob"])
        .await
        .ok()
        .json();
    assert_eq!(bob_shown["disabled"], true);
    assert_eq!(bob_shown["disabled_reason"], "spam reports");
    let text = admin.run(&["users", "list"]).await.ok().stdout;
    assert!(text.contains("(spam reports)"), "{text}");
    let enabled = admin
        .run(&["--json", "users", "enable", "bob"])
        .await
        .ok()
        .json();
    assert_eq!(enabled["was_disabled"], true);
    let again = admin.run(&["users", "enable", "bob"]).await.ok().stdout;
    assert_eq!(again, "bob was not disabled\n");

    // Groups.
    let groups = admin.run(&["--json", "groups", "list"]).await.ok().json();
    assert_eq!(groups["groups"].as_array().unwrap().len(), 1);
    assert_eq!(groups["groups"][0]["owner"], "alice");
    assert_eq!(groups["groups"][0]["member_count"], 3);
    let group_id = group.id.0.to_string();
    let shown = admin
        .run(&["--json", "groups", "show", &group_id])
        .await
        .ok()
        .json();
    assert_eq!(shown["name"], "rustaceans");
    assert_eq!(shown["members"].as_array().unwrap().len(), 3);
    admin
        .run(&["groups", "show", "999"])
        .await
        .failed_with("no group 999");

    let stats = admin.run(&["--json", "stats"]).await.ok().json();
    assert_eq!(stats["users"], 3);
    assert_eq!(stats["groups"], 1);
    assert_eq!(stats["messages"], 2);
    assert_eq!(stats["conversations"], 2);
    assert!(stats["database_bytes"].as_u64().unwrap() > 0);
    let text = admin.run(&["stats"]).await.ok().stdout;
    assert!(text.starts_with("users:          3 ("), "{text}");

    // Deleting asks for --yes, then takes the person and keeps the logs.
    admin
        .run(&["users", "delete", "alice"])
        .await
        .failed_with("cannot be undone: add --yes");
    let deleted = admin
        .run(&["--json", "users", "delete", "alice", "--yes"])
        .await
        .ok()
        .json();
    assert_eq!(deleted["former_name"], "alice");
    assert_eq!(deleted["messages_erased"], 2);
    assert_eq!(deleted["friendships_ended"], 1);
    // Bob is an admin: he inherits the group, though Carol joined first.
    assert_eq!(deleted["groups_handed_over"][0]["new_owner_id"], bob.0);
    let shown_as = deleted["shown_as"].as_str().unwrap().to_owned();
    let history = store.history(direct, None, None, 10).await.unwrap();
    assert_eq!(history[0].sender_name, shown_as);
    assert_eq!(history[0].body, "");
    admin
        .run(&["users", "show", "alice"])
        .await
        .failed_with("no account");
    let listed = admin.run(&["--json", "users", "list"]).await.ok().json();
    assert_eq!(listed["users"].as_array().unwrap().len(), 2);

    admin
        .run(&["groups", "dissolve", &group_id])
        .await
        .failed_with("add --yes");
    let dissolved = admin
        .run(&["--json", "groups", "dissolve", &group_id, "--yes"])
        .await
        .ok()
        .json();
    assert_eq!(dissolved["members"].as_array().unwrap().len(), 2);
    let groups = admin.run(&["--json", "groups", "list"]).await.ok().json();
    assert!(groups["groups"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_group_commands_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let store = chat_store::open(&url).await.unwrap();
    user_and_group_commands(&url, store.clone()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_group_commands_on_mariadb() {
    let Some(admin_url) = cluster::need_mysql("admin_users").await else {
        return;
    };
    let database = cluster::TestDatabase::create(&admin_url).await;
    let store = chat_store::open(&database.url()).await.unwrap();
    user_and_group_commands(&database.url(), store.clone()).await;
    store.close().await;
    // MariaDB has no file to copy: the command says what to use instead.
    AdminCli::new(&database.url())
        .run(&["backup", "/tmp/never-written.db"])
        .await
        .failed_with("mariadb-dump --single-transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let admin = AdminCli::new(&format!("sqlite://{}", path.display()));
    admin
        .run(&["users", "list"])
        .await
        .failed_with("no database at");
    admin.run(&["stats"]).await.failed_with("no database at");
    admin
        .run(&["backup", &dir.path().join("copy.db").display().to_string()])
        .await
        .failed_with("no database at");
    assert!(!path.exists());
}
