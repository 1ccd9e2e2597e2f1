//! Limits: requests per connection (over TCP, TLS and WebSocket alike), connections per address,
//! the idle timeout (over all three), and a client that never reads while
//! others chat.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chat_client::Connection;
use chat_proto::{
    GroupJoinRequest, GroupMembersRequest, LogoutRequest, PingRequest, Push, RegisterRequest,
    Request, Response, SessionEndReason, Status, Target,
};
use common::{
    drain_pushes, next_message, open_group, unique, RawClient, TestServer, Wire, PUSH_WAIT,
};

crate::over_every_wire!(
    requests_beyond_the_rate_are_refused_and_the_connection_recovers,
    idle_connections_are_closed_and_busy_ones_stay,
);

/// Waits for the session-ended push, skipping presence, and returns its reason.
async fn expect_session_ended(connection: &Connection) -> SessionEndReason {
    loop {
        match connection.next_push_timeout(PUSH_WAIT).await {
            Some(Push::PushSessionEnded(ended)) => return ended.reason,
            Some(Push::PushPresence(_)) => {}
            other => panic!("expected push_session_ended, got {other:?}"),
        }
    }
}

async fn requests_beyond_the_rate_are_refused_and_the_connection_recovers(wire: Wire) {
    let server = TestServer::start_over(wire, |config| {
        config.rate_limit_per_sec = 5;
        config.rate_limit_burst = 5;
    })
    .await;
    let connection = server.connect().await;
    // Six pings queued at once reach the server within the same moment
    // (one write on a byte stream, six messages on a WebSocket): the burst
    // covers five, the sixth is over the rate.
    let mut frames = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..6 {
        let request_id = connection.allocate_request_id();
        let mut frame = BytesMut::new();
        Request::Ping(PingRequest {})
            .encode(request_id, &mut frame)
            .unwrap();
        frames.push(frame);
        pending.push(connection.expect_reply(request_id).unwrap());
    }
    for frame in &frames {
        connection.send_raw(frame).await.unwrap();
    }
    let mut answers = Vec::new();
    for reply in pending {
        answers.push(reply.wait(PUSH_WAIT).await);
    }
    for answer in &answers[..5] {
        assert!(matches!(answer, Ok(Response::Ping(_))), "{answer:?}");
    }
    assert_eq!(
        answers[5].as_ref().unwrap_err().status(),
        Some(Status::RateLimited)
    );
    // Still refused right away; the connection stays open.
    assert_eq!(
        common::status_of(connection.call(PingRequest {}).await),
        Status::RateLimited
    );
    assert!(!connection.is_closed());
    // Another connection has its own allowance.
    server.connect().await.call(PingRequest {}).await.unwrap();
    // A second later the bucket has refilled. This waits in real time: the
    // session's bucket reads the system's monotonic clock, and a paused
    // Tokio clock would in any case jump ahead while the runtime waits on
    // the socket. The refill arithmetic is unit-tested with synthetic
    // instants in `limits.rs`; here a rate of whole requests per second
    // makes one second the shortest refill of a five-request burst.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..5 {
        connection.call(PingRequest {}).await.unwrap();
    }
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_refused() {
    let server = TestServer::start_with(|config| config.max_connections_per_ip = 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let connection = server.connect().await;
        connection.call(PingRequest {}).await.unwrap();
        open.push(connection);
    }
    let refused = server.connect().await;
    let answer = refused
        .next_unmatched_reply(PUSH_WAIT)
        .await
        .expect("an error frame for the refused connection");
    assert_eq!(answer.request_id, 0);
    assert_eq!(answer.result.unwrap_err().error, Status::RateLimited);
    tokio::time::timeout(PUSH_WAIT, refused.closed())
        .await
        .expect("the refused connection is closed");
    // The three admitted ones are unharmed.
    for connection in &open {
        connection.call(PingRequest {}).await.unwrap();
    }
    // Closing one frees a place (the server notices the close shortly).
    drop(open.pop());
    common::poll::eventually(PUSH_WAIT, "a place freed after a close", || async {
        server.connect().await.call(PingRequest {}).await.is_ok()
    })
    .await;
}

/// Runs in real time with the shortest timeout the config allows (one
/// second). A paused Tokio clock is not sound here: the server shares the
/// test's runtime, and while that runtime waits on a socket (or on the
/// store's threads) the paused clock jumps to the next timer, so the idle
/// timer could fire while a ping is on its way.
async fn idle_connections_are_closed_and_busy_ones_stay(wire: Wire) {
    let server = TestServer::start_over(wire, |config| config.idle_timeout_secs = 1).await;
    let name = unique("idler");
    let setup = server.connect().await;
    setup
        .call(RegisterRequest {
            name: name.to_owned(),
            password: common::PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    drop(setup);
    // The idle clock starts at the last frame the server read, which comes
    // after this instant.
    let started = Instant::now();
    let (idle, _) = server.login(&name).await;
    let anonymous = server.connect().await;
    let busy = server.connect().await;

    let idle_ones_closed = AtomicBool::new(false);
    let watch_idle = async {
        assert_eq!(expect_session_ended(&idle).await, SessionEndReason::Idle);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(800),
            "closed too early: {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "closed too late: {elapsed:?}"
        );
        tokio::time::timeout(PUSH_WAIT, idle.closed())
            .await
            .expect("closed after the push");
        // Not logged in is no exemption.
        assert_eq!(
            expect_session_ended(&anonymous).await,
            SessionEndReason::Idle
        );
        tokio::time::timeout(PUSH_WAIT, anonymous.closed())
            .await
            .expect("closed after the push");
        idle_ones_closed.store(true, Ordering::SeqCst);
    };
    let keep_busy = async {
        // Pinging every 300 ms keeps it open until the idle ones are closed
        // and half a timeout beyond; had the pings not counted, it would
        // have been closed at the timeout like them.
        while !(idle_ones_closed.load(Ordering::SeqCst)
            && started.elapsed() >= Duration::from_millis(1500))
        {
            tokio::time::sleep(Duration::from_millis(300)).await;
            busy.call(PingRequest {}).await.unwrap();
        }
    };
    tokio::join!(watch_idle, keep_busy);
    assert!(!busy.is_closed());
    assert!(busy.try_next_push().is_none());
    busy.call(PingRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_without_slowing_others_or_losing_messages() {
    const MAX_MESSAGES: usize = 6000;
    let server = TestServer::start_with(|config| {
        config.outbox_len = 16;
        // The shortest the config allows: the cut-off comes a write
        // timeout after the socket buffers fill.
        config.write_timeout_secs = 1;
    })
    .await;
    let (alice, _) = server.user(&unique("alice")).await;
    let (bob, _) = server.user(&unique("bob")).await;
    let slow_name = unique("slow");
    let group = open_group(&alice, "busy").await;
    bob.call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    let slow_id = {
        let (slow, login) = server.user(&slow_name).await;
        slow.call(GroupJoinRequest { group_id: group.id })
            .await
            .unwrap();
        slow.call(LogoutRequest {}).await.unwrap();
        login.user.id
    };
    drain_pushes(&alice).await;
    drain_pushes(&bob).await;

    // The slow client logs in, reads its login response, and then never
    // reads again.
    let mut slow = RawClient::connect_with_small_buffer(&server).await;
    slow.login(&slow_name).await;

    // Alice and Bob chat with bodies big enough to fill the socket buffers
    // soon, until the server has cut the slow client off.
    let body = "x".repeat(4000);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut slowest = Duration::ZERO;
    let mut cut_off = false;
    while sent < MAX_MESSAGES && started.elapsed() < Duration::from_secs(60) {
        for speaker in [&alice, &bob] {
            let before = Instant::now();
            speaker.send(Target::Group(group.id), &body).await.unwrap();
            slowest = slowest.max(before.elapsed());
            sent += 1;
        }
        if sent.is_multiple_of(50) {
            let members = alice
                .call(GroupMembersRequest { group_id: group.id })
                .await
                .unwrap()
                .members;
            let slow_member = members.iter().find(|m| m.id == slow_id).unwrap();
            if !slow_member.online {
                cut_off = true;
                break;
            }
        }
    }
    eprintln!(
        "slow reader cut off: {cut_off} after {sent} messages in {:?}; slowest send {slowest:?}",
        started.elapsed()
    );
    assert!(
        cut_off,
        "the slow client was still connected after {sent} messages"
    );
    // Every send was answered quickly although one recipient was stuck.
    assert!(
        slowest < Duration::from_secs(1),
        "a send took {slowest:?} while a client did not read"
    );
    // The others got every message in between (each gets the other's).
    let mut received = 0;
    while received < sent / 2 {
        next_message(&alice).await;
        received += 1;
    }

    // The cut-off connection is closed: reading what the socket holds ends
    // in end-of-stream (or a reset) rather than hanging.
    tokio::time::timeout(Duration::from_secs(10), async {
        while slow.read_frame().await.is_some() {}
    })
    .await
    .expect("the slow connection is closed");

    // Back again, the slow client gets every message it missed, in order.
    let (again, login) = server.login(&slow_name).await;
    assert_eq!(login.unacked, sent as u64);
    for seq in 1..=sent as u64 {
        let message = next_message(&again).await;
        assert_eq!(message.seq.0, seq);
        assert_eq!(message.conversation_id, group.conversation_id);
    }
    common::expect_no_push(&again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_outbox_ends_the_session_and_loses_nothing() {
    const MESSAGES: usize = 60;
    let server = TestServer::start_with(|config| config.outbox_len = 16).await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice, _) = server.user(&alice_name).await;
    let (bob, bob_login) = server.user(&bob_name).await;
    common::befriend(&alice, &bob, &bob_name, &alice_name).await;
    drain_pushes(&bob).await;

    // Bob's session is busy for a while (registrations, each a password
    // hash, handled in order), so pushes pile up in its outbox.
    let mut batch = BytesMut::new();
    let first_name = unique("busy");
    for index in 0..20 {
        let request_id = bob.allocate_request_id();
        Request::Register(chat_proto::RegisterRequest {
            name: if index == 0 {
                first_name.clone()
            } else {
                unique("busy")
            },
            password: common::PASSWORD.to_owned(),
        })
        .encode(request_id, &mut batch)
        .unwrap();
    }
    bob.send_raw(&batch).await.unwrap();
    // Once the first registration is stored the session has read the batch
    // and is busy with the other nineteen. (Not its answer: the answers of
    // one read are written together, after the last.)
    common::wait_until_stored(&server, &first_name).await;
    let bodies: Vec<String> = (0..MESSAGES).map(|n| format!("pile {n}")).collect();
    let started = Instant::now();
    for body in &bodies {
        alice
            .send(Target::User(bob_login.user.id), body)
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!("{MESSAGES} messages sent to a busy session in {elapsed:?}");
    eprintln!("{MESSAGES} messages sent to a busy session in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "sending took {elapsed:?}");

    // More pushes than the outbox holds: the session is ended as a slow
    // consumer instead of buffering without bound.
    let mut reason = None;
    while let Some(push) = bob.next_push_timeout(PUSH_WAIT).await {
        if let Push::PushSessionEnded(ended) = push {
            reason = Some(ended.reason);
        }
    }
    assert_eq!(reason, Some(SessionEndReason::SlowConsumer));
    assert!(bob.is_closed());

    // Everything is still owed and arrives at the next login, in order.
    let (bob, login) = server.login(&bob_name).await;
    assert_eq!(login.unacked, MESSAGES as u64);
    for body in &bodies {
        assert_eq!(&next_message(&bob).await.body, body);
    }
    common::expect_no_push(&bob).await;
}

/// Behind a proxy that speaks the PROXY protocol, the per-address limits
/// count the clients' addresses, not the proxy's.
#[tokio::test]
async fn the_proxy_protocol_names_the_client_for_per_address_limits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = TestServer::start_with(|config| {
        config.proxy_protocol = true;
        config.max_connections_per_ip = 1;
    })
    .await;
    let ping = {
        let mut buf = bytes::BytesMut::new();
        chat_proto::Request::Ping(chat_proto::PingRequest {})
            .encode(1, &mut buf)
            .unwrap();
        buf
    };
    async fn open(
        server: &TestServer,
        header: &str,
        ping: &[u8],
    ) -> (tokio::net::TcpStream, chat_proto::Frame) {
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(ping);
        stream.write_all(&bytes).await.unwrap();
        let mut buf = bytes::BytesMut::new();
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                if let Some(frame) = chat_proto::frame::decode(&mut buf, 1 << 20).unwrap() {
                    return frame;
                }
                assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed early");
            }
        })
        .await
        .unwrap();
        (stream, frame)
    }
    // Two clients behind one proxy address: both served.
    let (_first, pong) = open(
        &server,
        "PROXY TCP4 10.0.0.1 10.0.0.9 40000 7000\r\n",
        &ping,
    )
    .await;
    assert_eq!(pong.header.status, 0);
    let (_second, pong) = open(
        &server,
        "PROXY TCP4 10.0.0.2 10.0.0.9 40001 7000\r\n",
        &ping,
    )
    .await;
    assert_eq!(pong.header.status, 0);
    // A second connection of the same client is over its limit of one.
    let (_third, refused) = open(
        &server,
        "PROXY TCP4 10.0.0.1 10.0.0.9 40002 7000\r\n",
        &ping,
    )
    .await;
    assert_eq!(
        refused.header.status,
        chat_proto::Status::RateLimited.code()
    );
    // A connection without the header is refused as a protocol error.
    let (_bare, refused) = open(&server, "", &ping).await;
    assert_eq!(
        refused.header.status,
        chat_proto::Status::ProtocolError.code()
    );
}

/// As the protocol document says, only whole frames reset the idle timer:
/// a client trickling the bytes of one frame is closed at the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_frame_does_not_reset_the_idle_timer() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start_with(|config| config.idle_timeout_secs = 1).await;
    let mut raw = RawClient::connect(&server).await;
    let mut frame = BytesMut::new();
    Request::Ping(PingRequest {}).encode(1, &mut frame).unwrap();
    let started = Instant::now();
    // One byte every 200 ms: the frame would be whole after ~3 s. Stop
    // writing past the timeout (or once the server has closed).
    for byte in &frame[..frame.len() - 1] {
        if started.elapsed() > Duration::from_millis(1500)
            || raw.stream.write_all(&[*byte]).await.is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ended = raw.read_frame().await.expect("a session_ended push");
    assert_eq!(
        ended.header.message_type,
        chat_proto::MessageType::PushSessionEnded.code()
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "closed late: {elapsed:?}");
    assert!(raw.read_frame().await.is_none(), "the connection closes");
}
