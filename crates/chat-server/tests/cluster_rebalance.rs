//! Rebalancing, with real OS processes behind HAProxy: every user lands on
//! the one node that is up; when two more nodes start, the busy node asks a
//! bounded number of its users per second to reconnect, and the load
//! balancer spreads them until the three nodes hold about the same. Needs
//! MariaDB, Redis and haproxy.

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

const SUITE: &str = "cluster_rebalance";
const USERS: usize = 12;

/// How many of `users` Redis places on each of `nodes` nodes.
async fn spread(
    redis: &str,
    prefix: &str,
    users: &[(Client, chat_proto::UserId)],
    nodes: usize,
) -> Vec<usize> {
    let mut counts = vec![0; nodes];
    for (_, id) in users {
        for node in nodes_of(redis, prefix, *id).await {
            let node: usize = node.trim_start_matches("node-").parse().unwrap();
            counts[node] += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_gets_its_share_of_users_back() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    let Some(haproxy_binary) = cluster::need_haproxy(SUITE) else {
        return;
    };
    let database = TestDatabase::create(&services.mysql).await;
    let prefix = format!("{}:", unique("rebalance_"));
    let _keys = RedisKeys::new(&services.redis, &prefix);
    let store = database.url();
    let spec = |index| NodeSpec {
        index,
        store: &store,
        redis: &services.redis,
        prefix: &prefix,
        extra: &[],
    };
    let addresses: Vec<_> = (0..3).map(|_| NodeProcess::addresses()).collect();
    let mut nodes = vec![NodeProcess::spawn(&spec(0), addresses[0].0, addresses[0].1).await];
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _haproxy = start_haproxy(&haproxy_binary, &addresses, front, web).await;
    // Let the checks of the two absent nodes fail.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut users = Vec::new();
    for _ in 0..USERS {
        let name = unique("rebalance_user_");
        let mut options = ClientOptions::new(front.to_string());
        options.reconnect = ReconnectPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..ReconnectPolicy::default()
        };
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
    assert_eq!(
        spread(&services.redis, &prefix, &users, 3).await,
        vec![USERS, 0, 0],
        "every user starts on the only node"
    );

    for (index, (chat, http)) in addresses.iter().enumerate().skip(1) {
        nodes.push(NodeProcess::spawn(&spec(index), *chat, *http).await);
    }
    let started = Instant::now();
    let even = loop {
        let counts = spread(&services.redis, &prefix, &users, 3).await;
        let total: usize = counts.iter().sum();
        if total == USERS && counts.iter().all(|&count| (3..=5).contains(&count)) {
            break counts;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the users did not spread out: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "spread {even:?} {:.1} s after the two nodes started",
        started.elapsed().as_secs_f64()
    );
    // Everyone is served wherever they went.
    for (client, _) in &users {
        client
            .call_idempotent(PingRequest {})
            .await
            .expect("served after moving");
    }
    // And it stays that way: no more moves once the spread is even.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = spread(&services.redis, &prefix, &users, 3).await;
    assert!(
        later.iter().all(|&count| (3..=5).contains(&count)),
        "the spread did not hold: {later:?}"
    );
    for (client, _) in users {
        client.close().await;
    }
    drop(nodes);
}
