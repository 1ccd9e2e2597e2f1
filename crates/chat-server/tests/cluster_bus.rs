//! The Redis bus on its own: the buses of several nodes on one Redis, each
//! over its own hub, with sessions as bare hub entries (no store, no
//! sockets). Covers cross-node delivery, presence, a crashed node, a node
//! restarting under its old name, and Redis going away and coming back.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/poll.rs"]
mod poll;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_proto::UserId;
use chat_server::bus::Bus;
use chat_server::hub::{Hub, SessionHandle};
use chat_server::redis_bus::{RedisBus, RedisBusOptions, CALL_TIMEOUT};
use futures::StreamExt;
use poll::eventually;

const SUITE: &str = "cluster_bus";
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a frame may take to cross nodes in a test.
const ARRIVAL: Duration = Duration::from_secs(5);
/// How long to watch for a frame that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// One node's bus and hub.
struct Node {
    hub: Arc<Hub>,
    bus: RedisBus,
}

impl Node {
    async fn start(url: &str, prefix: &str, node_id: &str) -> Node {
        let hub = Arc::new(Hub::new());
        let options = RedisBusOptions {
            url: url.to_owned(),
            node_id: node_id.to_owned(),
            prefix: prefix.to_owned(),
            heartbeat: HEARTBEAT,
            rebalance_per_sec: 0,
        };
        let bus = RedisBus::start(options, hub.clone())
            .await
            .expect("bus starts");
        Node { hub, bus }
    }

    /// Opens a session of `user` here, as a login does; returns it and
    /// whether the user came online.
    async fn open(&self, user: u64) -> (Arc<SessionHandle>, bool) {
        let handle = Arc::new(SessionHandle::new(
            self.hub.next_session_id(),
            UserId(user),
            1024,
        ));
        let local = self.hub.register(handle.clone());
        let came_online = self.bus.session_opened(UserId(user), local).await;
        (handle, came_online)
    }

    /// Closes a session, as a logout does; returns whether the user went
    /// offline everywhere.
    async fn close(&self, handle: &SessionHandle) -> bool {
        let local = self.hub.unregister(handle.user, handle.id);
        self.bus.session_closed(handle.user, local).await
    }

    async fn online(&self, users: &[u64]) -> Vec<bool> {
        let users: Vec<UserId> = users.iter().copied().map(UserId).collect();
        self.bus.online(&users).await
    }

    async fn deliver(&self, users: &[u64], frame: &'static [u8]) {
        let users: Vec<UserId> = users.iter().copied().map(UserId).collect();
        self.bus.deliver(&users, Bytes::from_static(frame), None);
    }
}

/// Waits for exactly `expected` on a session: each arrives in time, in
/// order, and nothing more follows.
async fn expect_frames(handle: &SessionHandle, expected: &[&[u8]]) {
    let mut received: Vec<Bytes> = Vec::new();
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    while received.len() < expected.len() {
        received.extend(handle.take().expect("session alive"));
        if received.len() >= expected.len() {
            break;
        }
        if tokio::time::timeout_at(deadline, handle.wait())
            .await
            .is_err()
        {
            break;
        }
    }
    tokio::time::sleep(QUIET).await;
    received.extend(handle.take().expect("session alive"));
    // Pushes from different nodes race each other (local delivery is
    // immediate, forwarding takes a Redis round trip), so compare as sets;
    // each frame must still arrive exactly once.
    let mut received: Vec<&[u8]> = received.iter().map(|frame| &frame[..]).collect();
    let mut expected = expected.to_vec();
    received.sort_unstable();
    expected.sort_unstable();
    assert_eq!(received, expected, "frames of user {}", handle.user);
}

fn prefix() -> String {
    format!("{}:", cluster::unique("chat_test_bus_"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_every_session_on_every_node_once() {
    let Some(url) = cluster::need_redis(SUITE).await else {
        return;
    };
    let prefix = prefix();
    let _keys = cluster::RedisKeys::new(&url, &prefix);
    let a = Node::start(&url, &prefix, "a").await;
    let b = Node::start(&url, &prefix, "b").await;
    let c = Node::start(&url, &prefix, "c").await;
    let (one, _) = a.open(1).await;
    let (two, _) = b.open(2).await;
    let (three_a, _) = a.open(3).await;
    let (three_b, _) = b.open(3).await;
    let (three_c, _) = c.open(3).await;
    let (four, _) = c.open(4).await;

    a.deliver(&[1, 2, 3], b"first").await;
    b.deliver(&[2, 3, 4], b"second").await;
    // The except of a delivery names a session of the delivering node only.
    let three_a_id = three_a.id;
    a.bus
        .deliver(&[UserId(3)], Bytes::from_static(b"third"), Some(three_a_id));
    // A user nobody hosts costs nothing and reaches nobody.
    c.deliver(&[99], b"nobody").await;

    expect_frames(&one, &[b"first"]).await;
    expect_frames(&two, &[b"first", b"second"]).await;
    expect_frames(&three_a, &[b"first", b"second"]).await;
    expect_frames(&three_b, &[b"first", b"second", b"third"]).await;
    expect_frames(&three_c, &[b"first", b"second", b"third"]).await;
    expect_frames(&four, &[b"second"]).await;

    for node in [a, b, c] {
        node.bus.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_goes_only_to_the_nodes_of_its_recipients() {
    let Some(url) = cluster::need_redis(SUITE).await else {
        return;
    };
    let prefix = prefix();
    let _keys = cluster::RedisKeys::new(&url, &prefix);
    let a = Node::start(&url, &prefix, "a").await;
    let b = Node::start(&url, &prefix, "b").await;
    let c = Node::start(&url, &prefix, "c").await;
    let (on_b, _) = b.open(5).await;
    let (_on_c, _) = c.open(6).await;
    // Listen in on the channels of b and c as a fourth subscriber.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{prefix}deliver:b"))
        .await
        .unwrap();
    pubsub
        .subscribe(format!("{prefix}deliver:c"))
        .await
        .unwrap();
    let mut messages = pubsub.into_on_message();

    a.deliver(&[5, 7], b"for b only").await;
    expect_frames(&on_b, &[b"for b only"]).await;
    let mut envelopes = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(QUIET, messages.next()).await {
        let payload: Vec<u8> = message.get_payload_bytes().to_vec();
        // Empty messages are the nodes' heartbeat checks of their own channel.
        if !payload.is_empty() {
            envelopes.push((message.get_channel_name().to_owned(), payload));
        }
    }
    assert_eq!(
        envelopes,
        vec![(format!("{prefix}deliver:b"), b"1 5\nfor b only".to_vec())],
        "one envelope, to b, naming only the user there"
    );
    for node in [a, b, c] {
        node.bus.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_nodes() {
    let Some(url) = cluster::need_redis(SUITE).await else {
        return;
    };
    let prefix = prefix();
    let _keys = cluster::RedisKeys::new(&url, &prefix);
    let a = Node::start(&url, &prefix, "a").await;
    let b = Node::start(&url, &prefix, "b").await;

    let (first, came_online) = a.open(10).await;
    assert!(came_online, "first session anywhere");
    assert_eq!(b.online(&[10, 11]).await, vec![true, false]);
    let (second_here, came_online) = a.open(10).await;
    assert!(!came_online, "second session on the same node");
    let (elsewhere, came_online) = b.open(10).await;
    assert!(!came_online, "already online on another node");

    assert!(!a.close(&first).await);
    assert!(!a.close(&second_here).await, "still online on b");
    assert_eq!(a.online(&[10]).await, vec![true]);
    assert!(b.close(&elsewhere).await, "last session anywhere");
    assert_eq!(a.online(&[10]).await, vec![false]);
    assert_eq!(b.online(&[10]).await, vec![false]);

    a.bus.close().await;
    b.bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_users_go_offline_within_three_heartbeats() {
    let Some(url) = cluster::need_redis(SUITE).await else {
        return;
    };
    let prefix = prefix();
    let _keys = cluster::RedisKeys::new(&url, &prefix);
    let a = Node::start(&url, &prefix, "a").await;
    let b = Node::start(&url, &prefix, "b").await;
    let (_session, _) = a.open(20).await;
    let (watcher, _) = b.open(21).await;
    assert_eq!(b.online(&[20]).await, vec![true]);

    // A crash: the bus is dropped without close, so it neither withdraws
    // nor heartbeats again.
    drop(a);
    let took = eventually(
        HEARTBEAT * 3 + Duration::from_secs(2),
        "offline",
        || async { b.online(&[20]).await == vec![false] },
    )
    .await;
    eprintln!("a crashed node's user showed offline after {took:?}");

    // Delivering to it is harmless, and the survivors' sweep removes the
    // dead node's entries from Redis.
    b.deliver(&[20, 21], b"after the crash").await;
    expect_frames(&watcher, &[b"after the crash"]).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}user:20:nodes");
    eventually(HEARTBEAT * 3, "swept", || {
        let mut connection = connection.clone();
        let key = key.clone();
        async move {
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap();
            members.is_empty()
        }
    })
    .await;
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}nodes"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(nodes, vec!["b".to_owned()]);
    b.bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_node_withdraws_at_once() {
    let Some(url) = cluster::need_redis(SUITE).await else {
        return;
    };
    let prefix = prefix();
    let _keys = cluster::RedisKeys::new(&url, &prefix);
    let a = Node::start(&url, &prefix, "a").await;
    let b = Node::start(&url, &prefix, "b").await;
    let (_session, _) = a.open(30).await;
    assert_eq!(b.online(&[30]).await, vec![true]);
    a.bus.close().await;
    assert_eq!(b.online(&[30]).await, vec![false]);
    b.bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_drops_what_its_previous_life_left() {
    let Some(url) = cluster::need_redis(SUITE).await else {
        return;
    };
    let prefix = prefix();
    let _keys = cluster::RedisKeys::new(&url, &prefix);
    let a = Node::start(&url, &prefix, "a").await;
    let b = Node::start(&url, &prefix, "b").await;
    let (_session, _) = a.open(40).await;
    drop(a);
    // Back under the same name before its old liveness key expired: the
    // user it hosted before must not look online through it.
    let a = Node::start(&url, &prefix, "a").await;
    assert_eq!(b.online(&[40]).await, vec![false]);
    let (session, came_online) = a.open(40).await;
    assert!(came_online);
    b.deliver(&[40], b"welcome back").await;
    expect_frames(&session, &[b"welcome back"]).await;
    a.bus.close().await;
    b.bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_pauses_the_cluster_and_it_resumes() {
    let Some(redis_server) = cluster::need_redis_server(SUITE) else {
        return;
    };
    let mut redis = cluster::RedisProcess::start(&redis_server).await;
    let url = redis.url();
    let prefix = prefix();
    let a = Node::start(&url, &prefix, "a").await;
    let b = Node::start(&url, &prefix, "b").await;
    let (on_a, _) = a.open(50).await;
    let (on_b, _) = b.open(51).await;
    a.deliver(&[50, 51], b"before").await;
    expect_frames(&on_a, &[b"before"]).await;
    expect_frames(&on_b, &[b"before"]).await;

    redis.kill();
    eventually(Duration::from_secs(5), "both nodes notice", || async {
        !a.bus.is_connected() && !b.bus.is_connected()
    })
    .await;
    // Each node keeps serving its own users, without waiting on Redis.
    let started = Instant::now();
    a.deliver(&[50, 51], b"during").await;
    let (late, came_online) = a.open(52).await;
    assert!(came_online, "without Redis a node answers for itself");
    assert_eq!(a.online(&[50, 51]).await, vec![true, false]);
    assert!(started.elapsed() < CALL_TIMEOUT, "nothing waited on Redis");
    expect_frames(&on_a, &[b"during"]).await;
    expect_frames(&on_b, &[]).await;

    // Redis comes back empty; both nodes reconnect, subscribe and register
    // their users again (including the one that logged in meanwhile).
    redis.restart().await;
    assert!(a.bus.wait_connected(Duration::from_secs(10)).await);
    assert!(b.bus.wait_connected(Duration::from_secs(10)).await);
    assert_eq!(b.online(&[50, 52]).await, vec![true, true]);
    assert_eq!(a.online(&[51]).await, vec![true]);
    b.deliver(&[50, 52], b"after").await;
    a.deliver(&[51], b"after").await;
    expect_frames(&on_a, &[b"after"]).await;
    expect_frames(&late, &[b"after"]).await;
    expect_frames(&on_b, &[b"after"]).await;

    a.bus.close().await;
    b.bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_without_redis_and_joins_when_it_appears() {
    let Some(redis_server) = cluster::need_redis_server(SUITE) else {
        return;
    };
    let mut redis = cluster::RedisProcess::start(&redis_server).await;
    let url = redis.url();
    redis.kill();
    let prefix = prefix();
    let a = Node::start(&url, &prefix, "a").await;
    assert!(!a.bus.is_connected());
    let (session, came_online) = a.open(60).await;
    assert!(came_online);
    a.deliver(&[60], b"local").await;
    expect_frames(&session, &[b"local"]).await;

    redis.restart().await;
    assert!(a.bus.wait_connected(Duration::from_secs(10)).await);
    let b = Node::start(&url, &prefix, "b").await;
    assert_eq!(b.online(&[60]).await, vec![true]);
    b.deliver(&[60], b"remote").await;
    expect_frames(&session, &[b"remote"]).await;
    a.bus.close().await;
    b.bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pushes_cross_in_order_and_report_the_hop() {
    let Some(url) = cluster::need_redis(SUITE).await else {
        return;
    };
    let prefix = prefix();
    let _keys = cluster::RedisKeys::new(&url, &prefix);
    let a = Node::start(&url, &prefix, "a").await;
    let b = Node::start(&url, &prefix, "b").await;
    let (session, _) = b.open(70).await;
    let mut hops = Vec::new();
    for n in 0..200u32 {
        let frame = Bytes::from(n.to_be_bytes().to_vec());
        let started = Instant::now();
        a.bus.deliver(&[UserId(70)], frame.clone(), None);
        let arrived = tokio::time::timeout(ARRIVAL, async {
            loop {
                let frames = session.take().expect("session alive");
                if !frames.is_empty() {
                    return frames;
                }
                session.wait().await;
            }
        })
        .await
        .expect("the push arrives");
        hops.push(started.elapsed());
        assert_eq!(Vec::from(arrived), vec![frame], "one push, in order");
    }
    // A burst handed over without waiting goes out in pipelined batches,
    // still in order and each once.
    let burst: Vec<Bytes> = (1000..1500u32)
        .map(|n| Bytes::from(n.to_be_bytes().to_vec()))
        .collect();
    let started = Instant::now();
    for frame in &burst {
        a.bus.deliver(&[UserId(70)], frame.clone(), None);
    }
    let mut received = Vec::new();
    tokio::time::timeout(ARRIVAL, async {
        while received.len() < burst.len() {
            received.extend(session.take().expect("session alive"));
            if received.len() < burst.len() {
                session.wait().await;
            }
        }
    })
    .await
    .expect("the burst arrives");
    assert_eq!(received, burst);
    let burst_took = started.elapsed();
    hops.sort();
    eprintln!(
        "a burst of {} pushes crossed in {burst_took:?}",
        burst.len()
    );
    eprintln!(
        "node to node through Redis: p50 {:?}, p99 {:?}, max {:?}",
        hops[hops.len() / 2],
        hops[hops.len() * 99 / 100],
        hops[hops.len() - 1]
    );
    a.bus.close().await;
    b.bus.close().await;
}
