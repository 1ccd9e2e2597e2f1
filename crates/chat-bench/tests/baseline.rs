//! The bare relay and the `pairs` scenario against it.

mod common;

use std::net::SocketAddr;

use chat_bench::{run_pairs, PairsOptions, PairsTarget, Relay};
use common::{assert_clean_and_consistent, short_load};

async fn relay() -> Relay {
    Relay::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("relay starts")
}

#[tokio::test]
async fn closed_loop_pairs_through_the_relay_lose_nothing() {
    let relay = relay().await;
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Relay(relay.local_addr()),
        pairs: 3,
        load: short_load(1),
    })
    .await
    .unwrap();
    assert_eq!(report.scenario, "baseline");
    assert_clean_and_consistent(&report, 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn pipelined_pairs_through_the_relay_lose_nothing() {
    let relay = relay().await;
    let mut load = short_load(16);
    load.body_len = 300;
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Relay(relay.local_addr()),
        pairs: 2,
        load,
    })
    .await
    .unwrap();
    assert_clean_and_consistent(&report, 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_count_bound_stops_the_run_at_exactly_that_many_messages() {
    let relay = relay().await;
    let mut load = short_load(4);
    load.count = 50;
    load.duration = std::time::Duration::from_secs(30);
    let started = std::time::Instant::now();
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Relay(relay.local_addr()),
        pairs: 2,
        load,
    })
    .await
    .unwrap();
    // Two pairs, two streams each, fifty messages per stream.
    assert_eq!(report.sent, 200);
    assert_clean_and_consistent(&report, 1);
    // It stopped because of the count, long before the duration.
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
    relay.shutdown().await;
}

#[tokio::test]
async fn a_fixed_rate_spaces_the_sends() {
    let relay = relay().await;
    let mut load = short_load(4);
    // Four streams share 200/s: 50/s each, so 20 messages per stream take
    // at least 19 intervals of 20 ms. Slowness can only make it longer.
    load.rate = Some(200.0);
    load.count = 20;
    load.duration = std::time::Duration::from_secs(30);
    let started = std::time::Instant::now();
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Relay(relay.local_addr()),
        pairs: 2,
        load,
    })
    .await
    .unwrap();
    assert_eq!(report.sent, 80);
    assert_clean_and_consistent(&report, 1);
    assert!(started.elapsed() >= std::time::Duration::from_millis(380));
    relay.shutdown().await;
}

#[tokio::test]
async fn a_relay_that_goes_away_is_reported_not_hidden() {
    let relay = relay().await;
    let addr = relay.local_addr();
    let mut load = short_load(1);
    load.duration = std::time::Duration::from_millis(1500);
    load.drain_timeout = std::time::Duration::from_millis(500);
    let run = tokio::spawn(async move {
        run_pairs(&PairsOptions {
            target: PairsTarget::Relay(addr),
            pairs: 2,
            load,
        })
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    relay.shutdown().await;
    let report = run.await.unwrap().unwrap();
    assert!(!report.is_clean(), "{}", report.to_table());
    assert!(report.connection_errors > 0, "{}", report.to_table());
}
