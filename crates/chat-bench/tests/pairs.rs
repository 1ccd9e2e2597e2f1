//! The `pairs` scenario against a real chatd.

mod common;

use chat_bench::{run_pairs, PairsOptions, PairsTarget, Server};
use common::{assert_clean_and_consistent, short_load, TestServer};

#[tokio::test]
async fn closed_loop_pairs_through_chatd_lose_nothing() {
    let server = TestServer::start().await;
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Chatd(vec![server.server()]),
        pairs: 2,
        load: short_load(1),
    })
    .await
    .unwrap();
    assert_eq!(report.scenario, "pairs");
    assert_clean_and_consistent(&report, 1);
    server.stop().await;
}

#[tokio::test]
async fn pipelined_pairs_with_receiver_acks_lose_nothing() {
    let server = TestServer::start().await;
    let mut load = short_load(8);
    load.ack_every = 5;
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Chatd(vec![server.server()]),
        pairs: 2,
        load,
    })
    .await
    .unwrap();
    assert_clean_and_consistent(&report, 1);
    server.stop().await;
}

#[tokio::test]
async fn the_servers_cpu_is_reported_per_delivered_message() {
    // The server runs in this process, so its CPU time is this process's.
    let server = TestServer::start().await;
    let mut load = short_load(4);
    load.server_pid = Some(std::process::id());
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Chatd(vec![server.server()]),
        pairs: 2,
        load,
    })
    .await
    .unwrap();
    assert_clean_and_consistent(&report, 1);
    let secs = report.server_cpu_secs.expect("CPU measured");
    let per = report.server_cpu_us_per_delivery.expect("CPU per message");
    assert!(secs > 0.0, "{}", report.to_table());
    let expected = secs * 1e6 / report.delivered as f64;
    assert!((per - expected).abs() < 1e-6, "{per} against {expected}");
    assert!(report.to_json_line().contains("server_cpu_us_per_delivery"));
    assert!(report.to_table().contains("per delivered message"));
    server.stop().await;
}

#[tokio::test]
async fn a_server_pid_that_is_not_running_is_refused_before_setup() {
    let mut load = short_load(1);
    load.server_pid = Some(u32::MAX);
    let error = run_pairs(&PairsOptions {
        target: PairsTarget::Chatd(vec![Server::tcp("127.0.0.1:9".parse().unwrap())]),
        pairs: 1,
        load,
    })
    .await
    .unwrap_err();
    assert!(error.to_string().contains("/proc/"), "{error}");
}

#[tokio::test]
async fn two_runs_on_one_database_do_not_collide() {
    let server = TestServer::start().await;
    for _ in 0..2 {
        let mut load = short_load(2);
        load.count = 20;
        let report = run_pairs(&PairsOptions {
            target: PairsTarget::Chatd(vec![server.server()]),
            pairs: 1,
            load,
        })
        .await
        .unwrap();
        assert_eq!(report.sent, 40);
        assert_clean_and_consistent(&report, 1);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_rate_limited_server_makes_the_run_fail() {
    // The server's default limit (50 requests/s, burst 100) refuses part of
    // an unthrottled stream: the run must say so, not hide it.
    let dir = tempfile::tempdir().unwrap();
    let server = chat_server::start(chat_server::Config {
        listen: "127.0.0.1:0".to_owned(),
        store: format!("sqlite://{}", dir.path().join("x.db").display()),
        rate_limit_per_sec: 50,
        rate_limit_burst: 10,
        log: "warn".to_owned(),
        http_listen: String::new(),
        ..chat_server::Config::default()
    })
    .await
    .unwrap();
    let mut load = short_load(8);
    load.count = 300;
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Chatd(vec![Server::tcp(server.local_addr())]),
        pairs: 1,
        load,
    })
    .await
    .unwrap();
    assert!(!report.is_clean(), "{}", report.to_table());
    assert!(report.rejected > 0, "{}", report.to_table());
    assert!(
        report
            .errors
            .keys()
            .any(|kind| kind.contains("rate_limited")),
        "{}",
        report.to_table()
    );
    // What was refused is not counted as lost: it was never accepted.
    assert_eq!(report.lost, 0, "{}", report.to_table());
    assert_eq!(report.delivered, report.acknowledged);
    server.shutdown().await.unwrap();
}
