//! The `login` scenario against a real chatd.

mod common;

use std::time::Duration;

use chat_bench::{run_login, LoginKind, LoginOptions};
use common::TestServer;

fn storm(server: &TestServer, kind: LoginKind) -> LoginOptions {
    LoginOptions {
        servers: vec![server.server()],
        users: 4,
        concurrency: 2,
        duration: Duration::from_millis(1500),
        count: 40,
        kind,
        sources: Vec::new(),
        progress: false,
    }
}

#[tokio::test]
async fn token_resumes_all_succeed_and_are_counted() {
    let server = TestServer::start().await;
    let report = run_login(&storm(&server, LoginKind::Token)).await.unwrap();
    assert_eq!(report.scenario, "login-token");
    assert!(report.is_clean(), "{}", report.to_table());
    assert!(report.sent > 0 && report.sent <= 40);
    assert_eq!(report.acknowledged, report.sent);
    assert_eq!(report.latency.len(), report.acknowledged);
    server.stop().await;
}

#[tokio::test]
async fn password_logins_all_succeed_and_are_counted() {
    let server = TestServer::start().await;
    let report = run_login(&storm(&server, LoginKind::Password))
        .await
        .unwrap();
    assert_eq!(report.scenario, "login-password");
    assert!(report.is_clean(), "{}", report.to_table());
    assert!(report.sent > 0 && report.sent <= 40);
    assert_eq!(report.acknowledged, report.sent);
    server.stop().await;
}

#[tokio::test]
async fn more_concurrency_than_users_is_refused() {
    let server = TestServer::start().await;
    let mut options = storm(&server, LoginKind::Token);
    options.concurrency = 5;
    assert!(matches!(
        run_login(&options).await,
        Err(chat_bench::Error::Options(_))
    ));
    server.stop().await;
}
