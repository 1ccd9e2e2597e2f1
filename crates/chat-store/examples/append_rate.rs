//! Measures how many messages per second the SQLite store commits with many
//! concurrent senders (each append durable before it returns).
//!
//! `cargo run --release -p chat-store --example append_rate [SENDERS] [SECONDS] [URL]`
//! (defaults: 100 senders for 5 seconds on a fresh SQLite file in a
//! temporary directory; a `mysql://.../DB` URL must name an empty database).
//! It prints one line; nothing is asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::Target;
use chat_store::{NewMessage, Store};

/// Upper bound on the messages of one sender, so the run ends even if the
/// clock misbehaves.
const MAX_PER_SENDER: usize = 1_000_000;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let senders: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let directory = tempfile::tempdir().expect("temporary directory");
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}", directory.path().join("rate.db").display()));
    let store: Arc<dyn Store> = chat_store::open(&url).await.expect("open store");

    // Pairs of friends; each sender writes to its partner.
    let mut pairs = Vec::new();
    for i in 0..senders {
        let id = store
            .create_user(&format!("user{i}"), "hash", 0)
            .await
            .expect("user")
            .id;
        pairs.push(id);
    }
    for pair in pairs.chunks(2) {
        if let [a, b] = pair {
            store
                .add_friend_request(*a, *b, None, 0)
                .await
                .expect("request");
            store
                .respond_friend_request(*a, *b, true, 0)
                .await
                .expect("accept");
        }
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, &sender) in pairs.iter().enumerate() {
        let Some(&partner) = pairs.get(i ^ 1) else {
            continue;
        };
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while Instant::now() < deadline && sent < MAX_PER_SENDER {
                store
                    .append_message(NewMessage {
                        sender_id: sender,
                        sender_name: String::new(),
                        target: Target::User(partner),
                        client_msg_id: format!("{sent}"),
                        body: "a message of a typical length, some sixty bytes or so".to_owned(),
                        now_ms: 0,
                    })
                    .await
                    .expect("append");
                sent += 1;
            }
            sent
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("sender");
    }
    let elapsed = started.elapsed().as_secs_f64();
    store.close().await;
    println!(
        "{}: {total} appends by {senders} concurrent senders in {elapsed:.1} s: {:.0} appends/s",
        store.backend(),
        total as f64 / elapsed
    );
}
