//! `chatd admin backup` as docs/operations.md tells an operator to use it:
//! a copy of the live SQLite database taken while messages are being sent,
//! restored by putting the copy where a new server's store is, and every
//! message acknowledged before the backup began is there, in a gap-free
//! log.

mod common;

#[path = "common/admin_cli.rs"]
mod admin_cli;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use admin_cli::AdminCli;
use chat_proto::Target;
use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_traffic_restores_every_acknowledged_message() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (bob, bob_login) = server.user("bob").await;
    common::befriend(&alice, &bob, "bob", "alice").await;
    let bob_id = bob_login.user.id;

    // Alice sends without pause; every answered send is acknowledged, and
    // so committed.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut count = 0u32;
            // Bounded, in case the test stalls: it never needs this many.
            while !stop.load(Ordering::Relaxed) && count < 100_000 {
                let body = format!("message {count}");
                let sent = alice.send(Target::User(bob_id), &body).await.expect("send");
                acknowledged
                    .lock()
                    .unwrap()
                    .push((sent.conversation_id, sent.seq, body));
                count += 1;
            }
        })
    };
    let wait_for = |count: usize| {
        let acknowledged = acknowledged.clone();
        async move {
            common::poll::eventually(Duration::from_secs(30), "messages acknowledged", || async {
                acknowledged.lock().unwrap().len() >= count
            })
            .await;
        }
    };
    wait_for(100).await;

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("backup.db");
    let before_backup = acknowledged.lock().unwrap().clone();
    let report = AdminCli::new(&server.config().store)
        .run(&["--json", "backup", &copy.display().to_string()])
        .await
        .ok()
        .json();
    let sent_during = acknowledged.lock().unwrap().len() - before_backup.len();
    // Sending goes on after the backup too; the copy must not care.
    let total = acknowledged.lock().unwrap().len();
    wait_for(total + 20).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert!(copy.is_file());
    assert!(!dir.path().join("backup.db.partial").exists());
    server.shutdown().await;

    // Restore: the copy becomes the database of a new server.
    let restored_dir = tempfile::tempdir().unwrap();
    let restored_db = restored_dir.path().join("chat.db");
    std::fs::copy(&copy, &restored_db).unwrap();
    let restored = TestServer::start_with(|config| {
        config.store = format!("sqlite://{}", restored_db.display());
    })
    .await;
    let (bob, _) = restored.login("bob").await;
    let conversation = before_backup[0].0;
    let history = common::whole_history(&bob, conversation).await;
    // A gap-free log: the copy is the database as of one commit.
    for (index, message) in history.iter().enumerate() {
        assert_eq!(message.seq.0, index as u64 + 1);
    }
    for (_, seq, body) in &before_backup {
        let stored = history
            .iter()
            .find(|message| message.seq == *seq)
            .unwrap_or_else(|| panic!("acknowledged message {} is not in the backup", seq.0));
        assert_eq!(&stored.body, body);
    }
    eprintln!(
        "backup held {} messages: {} acknowledged before it began, {sent_during} during it",
        history.len(),
        before_backup.len()
    );
    restored.shutdown().await;
}
