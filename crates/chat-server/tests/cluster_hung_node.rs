//! A hung node behind HAProxy, with real OS processes: three `chatd`
//! processes on MariaDB and Redis behind the shipped HAProxy configuration
//! (deploy/haproxy/chat.cfg, with active `/readyz` checks). One node is
//! frozen with SIGSTOP; its users must be served by the other nodes within
//! a few seconds (the kernel keeps completing TCP handshakes for a stopped
//! process, so only an active check notices). Needs MariaDB, Redis and
//! haproxy.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/processes.rs"]
mod processes;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_client::{Client, ClientOptions, ReconnectPolicy};
use chat_proto::{PingRequest, RegisterRequest};
use cluster::{free_port, unique, RedisKeys, TestDatabase, PASSWORD};
use processes::{nodes_of, start_haproxy, NodeProcess, NodeSpec};

const SUITE: &str = "cluster_hung_node";

/// How long the users of a frozen node may stay unserved (the target is 5 s;
/// the margin absorbs a loaded test machine).
const UNSERVED_BOUND: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_frozen_node_are_served_by_the_others_within_seconds() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    let Some(haproxy_binary) = cluster::need_haproxy(SUITE) else {
        return;
    };
    let database = TestDatabase::create(&services.mysql).await;
    let prefix = format!("{}:", unique("hung_"));
    let _keys = RedisKeys::new(&services.redis, &prefix);
    let mut nodes = Vec::new();
    for index in 0..3 {
        let (chat, http) = NodeProcess::addresses();
        let spec = NodeSpec {
            index,
            store: &database.url(),
            redis: &services.redis,
            prefix: &prefix,
            extra: &[],
        };
        // One at a time: the first applies the migrations.
        nodes.push(NodeProcess::spawn(&spec, chat, http).await);
    }
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addresses: Vec<_> = nodes.iter().map(|node| (node.chat, node.http)).collect();
    let _haproxy = start_haproxy(&haproxy_binary, &addresses, front, web).await;
    // Let the first checks pass.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Enough users that every node holds some (least connections).
    let mut users = Vec::new();
    for _ in 0..9 {
        let name = unique("hung_user_");
        let mut options = ClientOptions::new(front.to_string());
        options.reconnect = ReconnectPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            ..ReconnectPolicy::default()
        };
        options.connection.request_timeout = Duration::from_secs(2);
        let client = Client::connect(options).await.expect("connects");
        client
            .call(RegisterRequest {
                name: name.to_owned(),
                password: PASSWORD.to_owned(),
            })
            .await
            .expect("registers");
        let login = client
            .login(name.as_str(), PASSWORD)
            .await
            .expect("logs in");
        users.push((client, login.user.id));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut on_node = vec![Vec::new(); nodes.len()];
    for (index, (_, id)) in users.iter().enumerate() {
        for node in nodes_of(&services.redis, &prefix, *id).await {
            let node: usize = node.trim_start_matches("node-").parse().unwrap();
            on_node[node].push(index);
        }
    }
    eprintln!("users by node: {on_node:?}");
    let frozen = (0..nodes.len())
        .max_by_key(|&node| on_node[node].len())
        .unwrap();
    assert!(
        !on_node[frozen].is_empty(),
        "no user on any node: {on_node:?}"
    );

    nodes[frozen].signal("-STOP");
    let stopped = Instant::now();
    // Every user of the frozen node pings until a node answers.
    let waits = on_node[frozen].iter().map(|&index| {
        let (client, _) = &users[index];
        async move {
            loop {
                let ping = tokio::time::timeout(
                    Duration::from_millis(500),
                    client.call_idempotent(PingRequest {}),
                )
                .await;
                if let Ok(Ok(_)) = ping {
                    return stopped.elapsed();
                }
                assert!(
                    stopped.elapsed() < UNSERVED_BOUND,
                    "a user of the frozen node is still unserved after {:?}",
                    stopped.elapsed()
                );
            }
        }
    });
    let unserved = futures::future::join_all(waits).await;
    eprintln!(
        "users of the frozen node served again after {unserved:?} (frozen node held {} of {})",
        on_node[frozen].len(),
        users.len()
    );
    // And they chat: a user of the frozen node reaches one of another node.
    let other = (0..nodes.len()).find(|&node| node != frozen && !on_node[node].is_empty());
    if let Some(other) = other {
        let (sender, _) = &users[on_node[frozen][0]];
        let (_, receiver_id) = users[on_node[other][0]];
        // Not friends: the point is that the request is served at all.
        let answer = sender
            .send(chat_proto::Target::User(receiver_id), "still here")
            .await;
        assert!(
            matches!(&answer, Err(error) if error.status().is_some()),
            "expected a server's answer, got {answer:?}"
        );
    }
    nodes[frozen].signal("-CONT");
    for (client, _) in users {
        client.close().await;
    }
}
