//! Shared by the integration tests: a real chatd on an ephemeral port with a
//! temporary SQLite store, set up the way the benchmarks run it (no request
//! rate limit, so the bench measures the server rather than the limiter).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chat_bench::{LoadOptions, Report, Server};
use chat_server::{Config, RunningServer};
use tempfile::TempDir;

/// The name of the test server's database file in its directory.
const DATABASE: &str = "x.db";

/// A running chatd over a temporary SQLite file.
pub struct TestServer {
    server: RunningServer,
    dir: TempDir,
}

impl TestServer {
    /// Starts one node.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            listen: "127.0.0.1:0".to_owned(),
            store: format!("sqlite://{}", dir.path().join(DATABASE).display()),
            rate_limit_per_sec: 0,
            registrations_per_ip_per_hour: 0,
            registrations_per_minute: 0,
            shutdown_grace_secs: 5,
            log: "warn".to_owned(),
            http_listen: String::new(),
            ..Config::default()
        };
        let server = chat_server::start(config).await.expect("chatd starts");
        TestServer { server, dir }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Its address as a bench target, over plain TCP.
    pub fn server(&self) -> Server {
        Server::tcp(self.addr())
    }

    /// Its SQLite database file.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join(DATABASE)
    }

    /// Stops it gracefully.
    pub async fn stop(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }
}

/// A short, bounded load: a second of sending, a generous drain.
pub fn short_load(window: u32) -> LoadOptions {
    LoadOptions {
        window,
        duration: Duration::from_millis(1000),
        drain_timeout: Duration::from_secs(20),
        ..LoadOptions::default()
    }
}

/// The checks every message run must pass: nothing lost, duplicated or
/// reordered, nothing refused, and the counts add up.
pub fn assert_clean_and_consistent(report: &Report, receivers_per_message: u64) {
    assert_eq!(report.lost, 0, "{}", report.to_table());
    assert_eq!(report.duplicated, 0, "{}", report.to_table());
    assert_eq!(report.out_of_order, 0, "{}", report.to_table());
    assert_eq!(report.unexpected, 0, "{}", report.to_table());
    assert_eq!(report.server_seq_regressions, 0, "{}", report.to_table());
    assert_eq!(report.rejected, 0, "{}", report.to_table());
    assert!(report.errors.is_empty(), "{}", report.to_table());
    assert!(report.drained, "{}", report.to_table());
    assert!(report.sent > 0, "{}", report.to_table());
    assert_eq!(report.acknowledged, report.sent, "{}", report.to_table());
    assert_eq!(
        report.delivered,
        report.sent * receivers_per_message,
        "{}",
        report.to_table()
    );
    assert_eq!(report.latency.len(), report.delivered);
    assert_eq!(report.ack_latency.len(), report.acknowledged);
    assert!(report.is_clean());
}
