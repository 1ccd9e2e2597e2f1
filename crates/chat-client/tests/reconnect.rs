//! Reconnect with resume: the server goes away (crash or graceful drain) and
//! comes back on the same store and address while a sender and a receiver
//! are logged in and chatting. Afterwards every message the sender was
//! acknowledged for has reached the receiver exactly once, in order.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat_client::{Client, ClientOptions, Event, ReconnectPolicy};
use chat_proto::{PingRequest, Seq, Target};
use common::{befriend, register, TestServer, PASSWORD, PATIENCE};
use tokio::sync::watch;

/// How many messages the sender sends in all.
const MESSAGES: u64 = 300;
/// How many tasks share the sending client.
const SENDERS: u64 = 3;

fn options(address: String) -> ClientOptions {
    let mut options = ClientOptions::new(address);
    options.reconnect = ReconnectPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        max_attempts: 500,
        max_elapsed: Duration::from_secs(60),
    };
    options.connection.request_timeout = Duration::from_secs(5);
    options
}

/// What the receiver saw: bodies with their sequence numbers, in arrival
/// order, and how many times it was told about a reconnect.
struct Received {
    messages: Vec<(Seq, String)>,
    reconnects: usize,
}

async fn receive_until(
    client: Arc<Client>,
    mut acked: watch::Receiver<Option<HashMap<String, Seq>>>,
) -> Received {
    let mut received = Received {
        messages: Vec::new(),
        reconnects: 0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        // Done once the sender has finished and everything it was acked
        // for is here.
        let complete = acked.borrow().as_ref().is_some_and(|all| {
            let bodies: std::collections::HashSet<&str> = received
                .messages
                .iter()
                .map(|(_, body)| body.as_str())
                .collect();
            all.keys().all(|body| bodies.contains(body.as_str()))
        });
        {
            if complete {
                // Linger briefly so a late duplicate would be caught.
                if let Some(Event::Message(message)) =
                    client.next_event_timeout(Duration::from_millis(500)).await
                {
                    received.messages.push((message.seq, message.body));
                }
                return received;
            }
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!remaining.is_zero(), "receiver timed out");
        tokio::select! {
            event = client.next_event_timeout(remaining) => match event {
                Some(Event::Message(message)) => received.messages.push((message.seq, message.body)),
                Some(Event::Reconnected { .. }) => received.reconnects += 1,
                Some(Event::GaveUp { error }) => panic!("receiver gave up: {error}"),
                Some(_) => {}
                None => panic!("receiver's events ended"),
            },
            _ = acked.changed() => {}
        }
    }
}

/// Runs the scenario; `outage` takes the server down and up again.
async fn chat_through_outages(graceful: bool) {
    let mut server = TestServer::start().await;
    register(server.addr(), "alice").await;
    register(server.addr(), "bob").await;
    befriend(server.addr(), "alice", "bob").await;

    let sender = Arc::new(
        Client::connect(options(server.address()))
            .await
            .expect("sender connects"),
    );
    sender
        .login("alice", PASSWORD)
        .await
        .expect("alice logs in");
    let receiver = Arc::new(
        Client::connect(options(server.address()))
            .await
            .expect("receiver connects"),
    );
    let bob = receiver.login("bob", PASSWORD).await.expect("bob logs in");
    let to_bob = Target::User(bob.user.id);

    let (acked_tx, acked_rx) = watch::channel(None);
    let (progress_tx, mut progress) = watch::channel(0u64);

    let receiving = tokio::spawn(receive_until(Arc::clone(&receiver), acked_rx));
    // Several sends in flight at once, so an outage catches some of them
    // between request and answer.
    let progress_tx = Arc::new(progress_tx);
    let sending = {
        let workers: Vec<_> = (0..SENDERS)
            .map(|worker| {
                let sender = Arc::clone(&sender);
                let progress_tx = Arc::clone(&progress_tx);
                tokio::spawn(async move {
                    let mut acked = HashMap::new();
                    let mut duplicates = 0;
                    for i in (worker..MESSAGES).step_by(SENDERS as usize) {
                        let body = format!("message {i}");
                        let response =
                            tokio::time::timeout(PATIENCE * 3, sender.send(to_bob, &body))
                                .await
                                .unwrap_or_else(|_| panic!("send {i} hangs"))
                                .unwrap_or_else(|error| {
                                    panic!("send {i} failed for good: {error}")
                                });
                        if response.duplicate {
                            duplicates += 1;
                        }
                        acked.insert(body, response.seq);
                        progress_tx.send_modify(|sent| *sent += 1);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    (acked, duplicates)
                })
            })
            .collect();
        tokio::spawn(async move {
            let mut all = HashMap::new();
            let mut duplicates = 0;
            for worker in workers {
                let (acked, worker_duplicates) = worker.await.expect("sender task");
                duplicates += worker_duplicates;
                for (body, seq) in acked {
                    assert!(all.insert(body, seq).is_none(), "acknowledged twice");
                }
            }
            acked_tx.send_replace(Some(all.clone()));
            (all, duplicates)
        })
    };

    // Two outages while messages are flowing.
    for at in [MESSAGES / 3, 2 * MESSAGES / 3] {
        progress
            .wait_for(|&sent| sent >= at)
            .await
            .expect("sender running");
        if graceful {
            server.drain_and_restart(Duration::from_millis(200)).await;
        } else {
            server.crash_and_restart(Duration::from_millis(200)).await;
        }
    }

    let (acked, duplicates) = sending.await.expect("sender task");
    let received = receiving.await.expect("receiver task");
    eprintln!(
        "acked {} (of which {duplicates} answered as duplicates), received {}, receiver reconnected {} times",
        acked.len(),
        received.messages.len(),
        received.reconnects
    );
    assert_eq!(acked.len() as u64, MESSAGES);
    // Two outages close together can be bridged by one reconnect (the
    // second comes while the receiver is still backing off); what matters
    // is that it had to reconnect and lost nothing.
    assert!(received.reconnects >= 1, "the receiver did reconnect");

    // Nothing duplicated, in order, nothing acked missing, and the receiver
    // saw each at the position the sender was told.
    let mut seen = std::collections::HashSet::new();
    for (seq, body) in &received.messages {
        assert!(seen.insert(body.clone()), "{body} delivered twice");
        assert_eq!(acked.get(body), Some(seq), "{body} at the acked position");
    }
    for pair in received.messages.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0.next(),
            "delivered in order without gaps"
        );
    }
    for body in acked.keys() {
        assert!(seen.contains(body), "{body} was acked but never delivered");
    }

    Arc::try_unwrap(sender).expect("one owner").close().await;
    Arc::try_unwrap(receiver).expect("one owner").close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acked_is_lost_or_duplicated_across_crashes() {
    chat_through_outages(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_after_a_graceful_restart() {
    chat_through_outages(true).await;
}

#[tokio::test]
async fn a_client_gives_up_after_its_attempts_and_says_so() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    let mut options = options(server.address());
    options.reconnect = ReconnectPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        max_attempts: 3,
        max_elapsed: Duration::from_secs(10),
    };
    let client = Client::connect(options).await.expect("connect");
    client.login("alice", PASSWORD).await.expect("login");
    server.stop().await;
    let mut gave_up = false;
    while let Some(event) = client.next_event_timeout(PATIENCE).await {
        if let Event::GaveUp { .. } = event {
            gave_up = true;
        }
    }
    assert!(gave_up, "a GaveUp event ends the stream");
    let error = client.call_idempotent(PingRequest {}).await.unwrap_err();
    assert!(
        matches!(error, chat_client::ClientError::ReconnectFailed { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn closing_a_client_that_is_reconnecting_is_prompt() {
    let server = TestServer::start().await;
    register(server.addr(), "alice").await;
    // A patient policy: it would keep trying for a minute.
    let client = Client::connect(options(server.address()))
        .await
        .expect("connect");
    client.login("alice", PASSWORD).await.expect("login");
    server.stop().await;
    loop {
        match client.next_event_timeout(PATIENCE).await {
            Some(Event::Disconnected { .. }) => break,
            Some(_) => {}
            None => panic!("no Disconnected event"),
        }
    }
    tokio::time::timeout(Duration::from_secs(2), client.close())
        .await
        .expect("close does not wait for the reconnect to give up");
}
