//! The `idle` scenario: worker processes of the real binary holding logged-in
//! connections to a chatd running in this test process.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use chat_bench::{loopback_sources, prepare_idle_accounts, read_rss_kib, run_idle, IdleOptions};
use common::TestServer;

#[tokio::test]
async fn workers_hold_every_connection_and_memory_is_measured() {
    let server = TestServer::start().await;
    let report = run_idle(&IdleOptions {
        servers: vec![server.server()],
        connections: 12,
        // The server runs in this process, so this process's RSS is its RSS.
        server_pid: Some(std::process::id()),
        // Three workers, each account logged in on two connections.
        per_worker: 4,
        sessions_per_user: 2,
        sources: loopback_sources(3),
        ping_interval: Duration::from_millis(200),
        settle: Duration::from_millis(500),
        setup_timeout: Duration::from_secs(120),
        tokens: None,
        worker_program: PathBuf::from(env!("CARGO_BIN_EXE_chat-bench")),
        progress: false,
    })
    .await
    .unwrap();
    assert_eq!(report.scenario, "idle");
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.connections, Some(12));
    assert_eq!(report.params["workers"], 3);
    assert!(report.rss_before_kib.is_some() && report.rss_after_kib.is_some());
    assert!(report.rss_per_connection_bytes.is_some());
    server.stop().await;
}

#[test]
fn rss_of_this_process_is_readable_and_of_a_missing_one_is_an_error() {
    assert!(read_rss_kib(std::process::id()).unwrap() > 0);
    assert!(read_rss_kib(u32::MAX).is_err());
}

#[tokio::test]
async fn a_per_worker_count_that_splits_an_account_is_refused() {
    let server = TestServer::start().await;
    let result = run_idle(&IdleOptions {
        servers: vec![server.server()],
        connections: 10,
        server_pid: None,
        per_worker: 5,
        sessions_per_user: 2,
        sources: Vec::new(),
        ping_interval: Duration::from_secs(1),
        settle: Duration::ZERO,
        setup_timeout: Duration::from_secs(10),
        tokens: None,
        worker_program: PathBuf::from(env!("CARGO_BIN_EXE_chat-bench")),
        progress: false,
    })
    .await;
    assert!(matches!(result, Err(chat_bench::Error::Options(_))));
    server.stop().await;
}

#[tokio::test]
async fn accounts_prepared_earlier_are_held_without_registering() {
    let server = TestServer::start().await;
    let tokens = prepare_idle_accounts(&[server.server()], &[], 3)
        .await
        .unwrap();
    assert_eq!(tokens.len(), 3);
    let options = IdleOptions {
        servers: vec![server.server()],
        connections: 6,
        server_pid: None,
        per_worker: 4,
        sessions_per_user: 2,
        sources: Vec::new(),
        ping_interval: Duration::from_secs(1),
        settle: Duration::from_millis(100),
        setup_timeout: Duration::from_secs(60),
        tokens: Some(tokens.clone()),
        worker_program: PathBuf::from(env!("CARGO_BIN_EXE_chat-bench")),
        progress: false,
    };
    let report = run_idle(&options).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.connections, Some(6));
    assert_eq!(report.rss_per_connection_bytes, None);
    // Too few tokens for the connections asked is refused up front.
    let too_few = IdleOptions {
        tokens: Some(tokens[..2].to_vec()),
        ..options
    };
    assert!(matches!(
        run_idle(&too_few).await,
        Err(chat_bench::Error::Options(_))
    ));
    server.stop().await;
}
