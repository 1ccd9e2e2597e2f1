//! The interactive `chat` under a pseudo-terminal: the password is not
//! echoed, and a message arriving while a line is half typed is printed
//! above the prompt without corrupting that line.

mod common;

use std::process::Command;
use std::time::Duration;

use chat_proto::{FriendListRequest, Push, Target};
use common::{befriend, logged_in, register, TestServer, CHAT, PASSWORD, PATIENCE};
use expectrl::{Eof, Regex, Session};

/// Runs a blocking terminal step without stalling the runtime that serves
/// the in-process server.
fn blocking<T>(step: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(step)
}

fn spawn_chat(address: &str) -> Session {
    let mut command = Command::new(CHAT);
    command
        .args(["--server", address])
        .env("TERM", "xterm")
        .env_remove("CHAT_PASSWORD");
    let mut session = Session::spawn(command).expect("chat starts under a pty");
    session.set_expect_timeout(Some(PATIENCE));
    session
}

/// Types like a person, one key at a time. (rustyline 14 with an external
/// printer leaves keys that arrive in one burst unread until the next key,
/// so a burst would stall the test; a person's typing is never a burst.)
fn type_keys(session: &mut Session, keys: &str) {
    for key in keys.chars() {
        session.send(key.to_string()).expect("type a key");
        std::thread::sleep(Duration::from_millis(15));
    }
}

fn screen_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arriving_mid_line_does_not_corrupt_the_line() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    register(server.addr(), "bob").await;
    befriend(server.addr(), "alice", "bob").await;
    let bob = logged_in(server.addr(), "bob").await;
    let address = server.address();

    let mut chat = blocking(|| spawn_chat(&address));
    blocking(|| {
        chat.expect("connected").expect("banner");
        chat.expect("> ").expect("first prompt");
        // Without the password on the line it is asked for, and what is
        // typed does not appear.
        type_keys(&mut chat, "login alice\r");
        chat.expect("password: ").expect("password prompt");
        type_keys(&mut chat, &format!("{PASSWORD}\r"));
        let login = chat.expect("logged in as alice").expect("logged in");
        assert!(
            !screen_text(login.before()).contains(PASSWORD),
            "the password was echoed"
        );
        chat.expect("alice> ").expect("prompt after login");
        // Half a line, no Enter.
        type_keys(&mut chat, "chat bob hel");
        chat.expect("chat bob hel").expect("echo of the half line");
    });

    let alice_id = bob
        .call(FriendListRequest {})
        .await
        .expect("friend list")
        .friends
        .iter()
        .find(|friend| friend.name == "alice")
        .expect("alice is a friend")
        .id;
    bob.send(Target::User(alice_id), "ping from bob")
        .await
        .expect("bob sends");

    blocking(|| {
        let shown = chat
            .expect(Regex(r"\[\d+\] bob said: ping from bob"))
            .expect("the message is shown");
        assert!(!screen_text(shown.before()).is_empty());
        // The prompt and the half-typed line are drawn again under it.
        chat.expect("alice> chat bob hel")
            .expect("the half line is redrawn after the message");
        // Finish the line; what is sent is exactly what was typed.
        type_keys(&mut chat, "lo world\r");
        chat.expect(Regex(r"#\d+ \[\d+\] alice said: hello world"))
            .expect("the sent message is echoed like any other");
    });

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let received = loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match bob.next_push_timeout(remaining).await {
            Some(Push::PushMessage(message)) => break message,
            Some(_) => {}
            None => panic!("bob got no message"),
        }
    };
    assert_eq!(received.body, "hello world");

    blocking(|| {
        // Tab completes command words and friend names.
        type_keys(&mut chat, "hist\t");
        chat.expect("history ").expect("command completed");
        type_keys(&mut chat, "b\t");
        chat.expect("history bob ").expect("friend completed");
        type_keys(&mut chat, "1\r");
        chat.expect(Regex(r"alice said: hello world"))
            .expect("history shows the sent message");
        type_keys(&mut chat, "quit\r");
        chat.expect(Eof).expect("chat exits");
    });
    // The pty child is reaped when the session drops. The shutdown drains
    // whatever session the server still holds, so nothing needs to wait
    // for the server to notice the client has gone.
    drop(chat);
    server.stop().await;
}
