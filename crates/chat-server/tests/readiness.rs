//! `/readyz` follows the engines a node depends on: 503 while the database
//! is silent (a proxy in front of MariaDB stops forwarding) or Redis is
//! down, 200 again once they are back. Needs MariaDB and redis-server.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/tcp_proxy.rs"]
mod tcp_proxy;

use std::net::SocketAddr;
use std::time::Duration;

use chat_server::Config;
use cluster::{RedisProcess, TestDatabase};
use tcp_proxy::SilentProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SUITE: &str = "readiness";

async fn readyz(addr: SocketAddr) -> (u16, String) {
    let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .expect("the HTTP listener accepts in time")
        .unwrap();
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("readyz answers in time")
    .unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Polls `/readyz` until it answers `status` (within `within`).
async fn wait_ready_status(addr: SocketAddr, status: u16, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (got, body) = readyz(addr).await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still {got} ({body}), expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(store: String) -> Config {
    Config {
        listen: "127.0.0.1:0".to_owned(),
        http_listen: "127.0.0.1:0".to_owned(),
        store,
        shutdown_grace_secs: 2,
        heartbeat_secs: 1,
        ..Config::default()
    }
}

#[tokio::test]
async fn readyz_follows_a_silent_database() {
    let Some(admin_url) = cluster::need_mysql(SUITE).await else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let upstream: SocketAddr = {
        let url = database.url();
        let host = url
            .rsplit('@')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        tokio::net::lookup_host(host).await.unwrap().next().unwrap()
    };
    let proxy = SilentProxy::start(upstream).await;
    let proxied = database
        .url()
        .replace(&upstream.to_string(), &proxy.addr.to_string());
    // Every step is bounded: a hang fails here, saying where, rather than
    // holding the suite (once, under the full suite's load, this test sat
    // for minutes; it has not been seen since).
    let node = tokio::time::timeout(Duration::from_secs(30), chat_server::start(config(proxied)))
        .await
        .expect("the node starts within 30 s")
        .expect("node starts");
    let http = node.http_addr().unwrap();
    wait_ready_status(http, 200, Duration::from_secs(5)).await;
    proxy.set_silent(true);
    let body = wait_ready_status(http, 503, Duration::from_secs(6)).await;
    assert!(body.contains("\"store\":\"unavailable\""), "{body}");
    proxy.set_silent(false);
    wait_ready_status(http, 200, Duration::from_secs(15)).await;
    tokio::time::timeout(Duration::from_secs(10), node.abort())
        .await
        .expect("the node stops within 10 s");
}

#[tokio::test]
async fn readyz_follows_redis() {
    let Some(binary) = cluster::need_redis_server(SUITE) else {
        return;
    };
    let mut redis = RedisProcess::start(&binary).await;
    let dir = tempfile::tempdir().unwrap();
    let mut node_config = config(format!("sqlite://{}", dir.path().join("chat.db").display()));
    node_config.redis = Some(redis.url());
    node_config.redis_prefix = format!("{}:", cluster::unique("readyz_"));
    let node = chat_server::start(node_config).await.expect("node starts");
    let http = node.http_addr().unwrap();
    wait_ready_status(http, 200, Duration::from_secs(5)).await;
    redis.kill();
    let body = wait_ready_status(http, 503, Duration::from_secs(10)).await;
    assert!(body.contains("\"bus\":\"disconnected\""), "{body}");
    redis.restart().await;
    wait_ready_status(http, 200, Duration::from_secs(20)).await;
    node.shutdown().await.unwrap();
}
