//! Real OS processes for cluster tests: `chatd` nodes started from the
//! built binary, and HAProxy with the shipped configuration in front of
//! them (deploy/haproxy/chat.cfg, as deploy/cluster-up.sh makes it).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_proto::UserId;

use super::cluster::{free_port, wait_listening};

/// How a node of a test cluster is started.
pub struct NodeSpec<'a> {
    /// Index in the cluster (node id `node-{index}`).
    pub index: usize,
    /// The store URL.
    pub store: &'a str,
    /// The Redis URL.
    pub redis: &'a str,
    /// The cluster's key prefix.
    pub prefix: &'a str,
    /// Extra flags.
    pub extra: &'a [&'a str],
}

impl NodeProcess {
    /// Addresses for a node, picked now; the process starts with `spawn`.
    pub fn addresses() -> (SocketAddr, SocketAddr) {
        let chat = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        (chat, http)
    }

    /// Starts `chatd` behind a proxy (`--proxy-protocol`) on these addresses
    /// and waits until it listens.
    pub async fn spawn(spec: &NodeSpec<'_>, chat: SocketAddr, http: SocketAddr) -> NodeProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(["--listen", &chat.to_string()])
            .args(["--http-listen", &http.to_string()])
            .args(["--store", spec.store])
            .args(["--redis", spec.redis])
            .args(["--redis-prefix", spec.prefix])
            .args(["--node-id", &format!("node-{}", spec.index)])
            .args(["--heartbeat-secs", "1", "--rate-limit-per-sec", "0"])
            .args(["--registrations-per-ip-per-hour", "0"])
            .args(["--registrations-per-minute", "0"])
            .args(["--proxy-protocol", "--log", "warn"])
            .args(spec.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chatd starts");
        let node = NodeProcess { child, chat, http };
        wait_listening(chat, Duration::from_secs(30), "chatd").await;
        node
    }
}

/// Starts HAProxy in front of `nodes` (chat and HTTP addresses) with the
/// shipped configuration, on `front` (chat) and `web` (WebSocket).
pub async fn start_haproxy(
    binary: &Path,
    nodes: &[(SocketAddr, SocketAddr)],
    front: SocketAddr,
    web: SocketAddr,
) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(nodes, front, web)).unwrap();
    let child = Command::new(binary)
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy starts");
    let haproxy = Haproxy { child, _dir: dir };
    wait_listening(front, Duration::from_secs(10), "haproxy").await;
    haproxy
}

/// A `chatd` process.
pub struct NodeProcess {
    child: Child,
    /// The chat listener.
    pub chat: SocketAddr,
    /// The HTTP listener.
    pub http: SocketAddr,
}

impl NodeProcess {
    /// Sends `signal` (`-STOP`, `-CONT`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A foreground HAProxy, killed when dropped.
pub struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// deploy/haproxy/chat.cfg with these nodes and front addresses, the way
/// deploy/cluster-up.sh makes it.
fn haproxy_config(nodes: &[(SocketAddr, SocketAddr)], chat: SocketAddr, web: SocketAddr) -> String {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/chat.cfg"),
    )
    .expect("the shipped HAProxy config");
    let mut out = String::new();
    let mut skipping = false;
    let mut section = "";
    for line in template.lines() {
        let trimmed = line.trim_start();
        if trimmed == "# nodes begin" || trimmed == "# http nodes begin" {
            for (index, (node_chat, node_http)) in nodes.iter().enumerate() {
                if trimmed == "# nodes begin" {
                    out += &format!(
                        "    server node-{index} {node_chat} check port {}\n",
                        node_http.port()
                    );
                } else {
                    out += &format!("    server node-{index} {node_http} check\n");
                }
            }
            skipping = true;
            continue;
        }
        if trimmed == "# nodes end" || trimmed == "# http nodes end" {
            skipping = false;
            continue;
        }
        if skipping || trimmed.starts_with("log ") || line.starts_with('#') {
            continue;
        }
        if trimmed.starts_with("frontend chat") {
            section = "chat";
        } else if trimmed.starts_with("frontend web") {
            section = "web";
        }
        if trimmed.starts_with("bind ") {
            let addr = if section == "web" { web } else { chat };
            out += &format!("    bind {addr}\n");
            continue;
        }
        out += line;
        out.push('\n');
    }
    out
}

/// The node ids Redis lists for `user`.
pub async fn nodes_of(redis_url: &str, prefix: &str, user: UserId) -> Vec<String> {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("SMEMBERS")
        .arg(format!("{prefix}user:{}:nodes", user.0))
        .query_async(&mut connection)
        .await
        .unwrap_or_default()
}
