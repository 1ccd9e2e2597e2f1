//! The `chat` binary in scripted mode, through pipes, against a real chatd.

mod common;

use std::time::Duration;

use chat_proto::{FriendListRequest, Push, ReadRequest, Seq, Target, TypingRequest};
use common::{befriend, register, run_script, unique, ChatProcess, TestServer, PASSWORD};
use serde_json::Value;

fn is_message_with_body(value: &Value, body: &str) -> bool {
    value["type"] == "event" && value["event"] == "message" && value["data"]["body"] == body
}

/// `YYYY-MM-DD HH:MM:SS #SEQ [ID] NAME said: TEXT`
fn is_message_line(line: &str, name: &str, text: &str) -> bool {
    let Some((head, said)) = line.split_once(&format!(" {name} said: ")) else {
        return false;
    };
    let bytes = head.as_bytes();
    said == text
        && head.len() > 21
        && bytes[4] == b'-'
        && bytes[10] == b' '
        && bytes[13] == b':'
        && bytes[19] == b' '
        && head[20..].starts_with('#')
        && head[20..].contains(" [")
        && head.ends_with(']')
}

#[tokio::test]
async fn two_clients_befriend_and_chat() {
    let server = TestServer::start().await;
    let (status, _, stderr) = run_script(
        server.addr(),
        &["--json"],
        &format!("register alice {PASSWORD}\nregister bob {PASSWORD}\n"),
    )
    .await;
    assert!(status.success(), "{stderr}");

    let mut alice = ChatProcess::spawn(server.addr(), &["--json"]);
    let mut bob = ChatProcess::spawn(server.addr(), &["--json"]);
    alice.send(&format!("login alice {PASSWORD}")).await;
    let login = alice.expect_ok("login").await;
    assert_eq!(login["data"]["user"]["name"], "alice");
    assert!(
        login["data"].get("token").is_none(),
        "the token is not printed"
    );
    bob.send(&format!("login bob {PASSWORD}")).await;
    bob.expect_ok("login").await;

    alice.send("add bob hi, it's alice").await;
    alice.expect_ok("add").await;
    let request = bob
        .expect_json("a friend request", |v| v["event"] == "friend_request")
        .await;
    assert_eq!(request["data"]["from"]["name"], "alice");
    bob.send("accept alice").await;
    bob.expect_ok("accept").await;
    alice
        .expect_json("the acceptance", |v| {
            v["event"] == "friend_update" && v["data"]["kind"] == "accepted"
        })
        .await;

    alice
        .send("chat bob hello   bob, 'quoted' & ünïcode 😀")
        .await;
    let sent = alice.expect_ok("chat").await;
    assert_eq!(sent["data"]["duplicate"], false);
    bob.send("wait 1 10").await;
    bob.expect_ok("wait").await;
    assert!(bob
        .seen
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .any(|v| is_message_with_body(&v, "hello   bob, 'quoted' & ünïcode 😀")));

    bob.send("chat alice hi alice").await;
    bob.expect_ok("chat").await;
    let message = alice
        .expect_json("bob's reply", |v| is_message_with_body(v, "hi alice"))
        .await;
    assert_eq!(message["data"]["sender_name"], "bob");
    alice.send("wait 1 10").await;
    alice.expect_ok("wait").await;

    alice.send("friends").await;
    let friends = alice.expect_ok("friends").await;
    assert_eq!(friends["data"]["friends"][0]["name"], "bob");
    assert_eq!(friends["data"]["friends"][0]["online"], true);

    alice.send("quit").await;
    bob.send("quit").await;
    let (alice_status, _, alice_err) = alice.finish().await;
    let (bob_status, _, bob_err) = bob.finish().await;
    assert!(alice_status.success(), "{alice_err}");
    assert!(bob_status.success(), "{bob_err}");
    server.stop().await;
}

#[tokio::test]
async fn a_message_sent_while_offline_arrives_at_the_next_login_once() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    register(server.addr(), "bob").await;
    befriend(server.addr(), "alice", "bob").await;

    let (status, out, stderr) = run_script(
        server.addr(),
        &[],
        &format!("login alice {PASSWORD}\nchat bob are you there?\nquit\n"),
    )
    .await;
    assert!(status.success(), "{stderr}\n{out:#?}");

    // Human output: the summary, then the missed message in the documented
    // format.
    let (status, out, stderr) = run_script(
        server.addr(),
        &[],
        &format!("login bob {PASSWORD}\nwait 1 10\nquit\n"),
    )
    .await;
    assert!(status.success(), "{stderr}\n{out:#?}");
    let summary = out
        .iter()
        .position(|line| line == "1 missed messages:")
        .unwrap_or_else(|| panic!("no missed-messages line in {out:#?}"));
    let message = out
        .iter()
        .position(|line| is_message_line(line, "alice", "are you there?"))
        .unwrap_or_else(|| panic!("no message line in {out:#?}"));
    assert!(summary < message, "{out:#?}");
    assert!(out[0].starts_with("logged in as bob ["), "{out:#?}");

    // It was acknowledged when shown: the next login brings nothing again,
    // so waiting for a message times out and the script fails.
    let (status, out, stderr) = run_script(
        server.addr(),
        &[],
        &format!("login bob {PASSWORD}\nwait 1 1\nquit\n"),
    )
    .await;
    assert!(!status.success(), "{out:#?}");
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(
        !out.iter().any(|line| line.contains("are you there?")),
        "{out:#?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn group_chat_with_the_id_from_gcreate() {
    let server = TestServer::start().await;
    for name in ["alice", "bob", "carol"] {
        register(server.addr(), name).await;
    }
    let mut alice = ChatProcess::spawn(server.addr(), &["--json"]);
    alice.send(&format!("login alice {PASSWORD}")).await;
    alice.expect_ok("login").await;
    alice.send("gcreate rustaceans people who like Rust").await;
    let created = alice.expect_ok("gcreate").await;
    let group_id = created["group_id"]
        .as_u64()
        .expect("gcreate carries group_id");
    assert_eq!(created["data"]["group"]["id"], group_id);

    let mut bob = ChatProcess::spawn(server.addr(), &["--json"]);
    bob.send(&format!("login bob {PASSWORD}")).await;
    bob.expect_ok("login").await;
    bob.send(&format!("gjoin {group_id}")).await;
    bob.expect_ok("gjoin").await;

    // Carol reads as a person would: human output.
    let mut carol = ChatProcess::spawn(server.addr(), &[]);
    carol.send(&format!("login carol {PASSWORD}")).await;
    carol
        .expect_line("carol's login", |line| {
            line.starts_with("logged in as carol")
        })
        .await;
    carol.send(&format!("gjoin {group_id}")).await;
    carol
        .expect_line("carol's join", |line| line.starts_with("joined rustaceans"))
        .await;

    alice.send(&format!("gmembers {group_id}")).await;
    let members = alice.expect_ok("gmembers").await;
    assert_eq!(members["data"]["members"].as_array().map(Vec::len), Some(3));

    bob.send(&format!("gchat {group_id} hello group")).await;
    bob.expect_ok("gchat").await;

    alice.send("wait 1 10").await;
    alice.expect_ok("wait").await;
    let seen_by_alice = alice
        .seen
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| is_message_with_body(v, "hello group"))
        .expect("alice got the group message");
    assert_eq!(seen_by_alice["data"]["target"]["group"], group_id);

    let line = carol
        .expect_line("the group message", |line| line.contains("hello group"))
        .await;
    let prefix = format!("[group rustaceans/{group_id}] ");
    assert!(line.starts_with(&prefix), "{line}");
    assert!(
        is_message_line(&line[prefix.len()..], "bob", "hello group"),
        "{line}"
    );

    alice.send(&format!("history {group_id} 10")).await;
    let history = alice.expect_ok("history").await;
    assert_eq!(history["data"]["messages"][0]["body"], "hello group");

    for process in [&mut alice, &mut bob, &mut carol] {
        process.send("quit").await;
    }
    for process in [alice, bob, carol] {
        let (status, out, stderr) = process.finish().await;
        assert!(status.success(), "{stderr}\n{out:#?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_failed_command_stops_the_script_unless_keep_going() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;

    let script = "login alice wrong-password\nhelp\n";
    let (status, out, _) = run_script(server.addr(), &["--json"], script).await;
    assert!(!status.success());
    let first: Value = serde_json::from_str(&out[0]).expect("json line");
    assert_eq!(first["ok"], false);
    assert_eq!(first["status"], "unauthorized");
    assert!(
        !out.iter().any(|line| line.contains("\"command\":\"help\"")),
        "help must not run after the failure: {out:#?}"
    );

    let (status, out, _) = run_script(server.addr(), &["--json", "--keep-going"], script).await;
    assert!(!status.success(), "still a failure at the end");
    assert!(
        out.iter().any(|line| line.contains("\"command\":\"help\"")),
        "{out:#?}"
    );

    // Unknown commands and usage errors fail the same way, without a server
    // round trip, and name the line.
    let (status, _, stderr) = run_script(server.addr(), &[], "fly to the moon\n").await;
    assert!(!status.success());
    assert!(
        stderr.contains("line 1") && stderr.contains("unknown command"),
        "{stderr}"
    );

    // A command before login says what to do.
    let (status, _, stderr) = run_script(server.addr(), &[], "friends\n").await;
    assert!(!status.success());
    assert!(stderr.contains("not logged in"), "{stderr}");
    server.stop().await;
}

#[tokio::test]
async fn one_shot_register_takes_the_password_from_the_environment() {
    let server = TestServer::start().await;
    let output = tokio::process::Command::new(common::CHAT)
        .args(["--server", &server.address(), "register", "dave"])
        .env("CHAT_PASSWORD", PASSWORD)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("chat runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("registered dave ["));
    // The account works.
    common::logged_in(server.addr(), "dave").await;
    server.stop().await;
}

#[tokio::test]
async fn conversations_unread_counts_receipts_typing_and_recall_in_chat() {
    let server = TestServer::start().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    register(server.addr(), &alice).await;
    register(server.addr(), &bob).await;
    befriend(server.addr(), &alice, &bob).await;
    let bob_connection = common::logged_in(server.addr(), &bob).await;
    let alice_id = bob_connection
        .call(FriendListRequest {})
        .await
        .unwrap()
        .friends[0]
        .id;
    for body in ["one", "two"] {
        bob_connection
            .send(Target::User(alice_id), body)
            .await
            .unwrap();
    }

    let mut chat = ChatProcess::spawn(server.addr(), &["--utc"]);
    chat.send(&format!("login {alice} {PASSWORD}")).await;
    chat.expect_line("the unread summary", |line| {
        line == "2 unread in 1 conversations (see `conversations`)"
    })
    .await;
    chat.send("conversations").await;
    chat.expect_line("bob's entry with 2 unread", |line| {
        line.starts_with(&format!("  {bob} ["))
            && line.contains(", 2 unread | ")
            && line.ends_with(": two")
    })
    .await;

    // Showing the history marks it read, and bob gets the receipt.
    chat.send(&format!("history {bob}")).await;
    chat.expect_line("the second message", |line| {
        line.contains(" #2 [") && line.ends_with(&format!("{bob} said: two"))
    })
    .await;
    // (Alice coming online is pushed to bob first.)
    let receipt = loop {
        match bob_connection
            .next_push_timeout(Duration::from_secs(10))
            .await
        {
            Some(Push::PushRead(read)) => break read,
            Some(Push::PushPresence(_)) => {}
            other => panic!("expected a read receipt, got {other:?}"),
        }
    };
    assert_eq!((receipt.user_id, receipt.read_seq), (alice_id, Seq(2)));
    chat.send("conversations").await;
    chat.expect_line("bob's entry, read", |line| {
        line.starts_with(&format!("  {bob} [")) && !line.contains("unread")
    })
    .await;

    // Bob typing and reading are shown.
    let conversation = bob_connection
        .call(FriendListRequest {})
        .await
        .unwrap()
        .friends[0]
        .conversation_id;
    bob_connection
        .call(TypingRequest {
            conversation_id: conversation,
        })
        .await
        .unwrap();
    chat.expect_line("bob typing", |line| {
        line.starts_with(&format!("* {bob} [")) && line.contains("is typing…")
    })
    .await;

    // Alice's own message is echoed like any other, and she recalls it.
    chat.send(&format!("chat {bob} oops, wrong chat")).await;
    chat.expect_line("the echo", |line| {
        is_message_line(line, &alice, "oops, wrong chat") && line.contains(" #3 [")
    })
    .await;
    bob_connection
        .call(ReadRequest {
            conversation_id: conversation,
            seq: Seq(3),
        })
        .await
        .unwrap();
    chat.expect_line("bob's receipt", |line| {
        line.starts_with(&format!("* {bob} [")) && line.contains("read up to #3")
    })
    .await;
    chat.send(&format!("recall {bob} #3")).await;
    chat.expect_line("the recall", |line| line == "recalled #3")
        .await;
    chat.send(&format!("history {bob} 1")).await;
    chat.expect_line("the tombstone", |line| {
        line.contains(" #3 [") && line.ends_with(&format!("{alice}: (message recalled)"))
    })
    .await;
    chat.send("quit").await;
    let (status, _, stderr) = chat.finish().await;
    assert!(status.success(), "{stderr}");
}
