//! The `sustained` scenario against a real chatd: per-interval figures in
//! its JSON, and the same checks as every message run.

mod common;

use std::time::Duration;

use chat_bench::{run_sustained, PairsOptions, PairsTarget, SustainedOptions};
use common::{assert_clean_and_consistent, short_load, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_json_carries_every_interval() {
    let server = TestServer::start().await;
    let mut load = short_load(4);
    load.duration = Duration::from_secs(3);
    let report = run_sustained(&SustainedOptions {
        pairs: PairsOptions {
            target: PairsTarget::Chatd(vec![server.server()]),
            pairs: 2,
            load,
        },
        interval: Duration::from_millis(500),
        // The server runs in this process, so its CPU time and RSS are ours.
        server_pid: Some(std::process::id()),
        database: Some(server.database()),
    })
    .await
    .unwrap();
    assert_eq!(report.scenario, "sustained");
    assert_clean_and_consistent(&report, 1);

    let line = report.to_json_line();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["scenario"], "sustained");
    assert_eq!(json["params"]["interval_secs"], 0.5);
    let sustained = &json["sustained"];
    let intervals = sustained["intervals"].as_array().unwrap();
    assert!(
        (5..=7).contains(&intervals.len()),
        "{} intervals in 3 s of 0.5 s",
        intervals.len()
    );
    let mut delivered = 0;
    for interval in intervals {
        for field in [
            "end_secs",
            "secs",
            "sent",
            "delivered",
            "delivered_per_sec",
            "server_cpu_secs",
            "server_cpu_us_per_message",
            "server_rss_kib",
            "db_bytes",
            "wal_bytes",
            "wal_max_bytes",
            "loadavg_1m",
        ] {
            assert!(interval.get(field).is_some(), "{field} missing: {interval}");
        }
        assert!(
            interval["delivered_per_sec"].as_f64().unwrap() > 0.0,
            "{interval}"
        );
        assert!(
            interval["server_rss_kib"].as_u64().unwrap() > 0,
            "{interval}"
        );
        assert!(interval["db_bytes"].as_u64().unwrap() > 0, "{interval}");
        assert!(
            interval["wal_max_bytes"].as_u64().unwrap() >= interval["wal_bytes"].as_u64().unwrap()
        );
        delivered += interval["delivered"].as_u64().unwrap();
    }
    // Intervals cover the sending time; only the drain comes after them.
    assert!(delivered <= report.delivered);
    assert!(
        delivered * 10 >= report.delivered * 8,
        "{delivered} of {}",
        report.delivered
    );
    for field in [
        "first_delivered_per_sec",
        "last_delivered_per_sec",
        "last_over_first",
        "median_delivered_per_sec",
        "server_cpu_us_per_message",
        "server_rss_first_kib",
        "server_rss_last_kib",
        "wal_max_bytes",
        "db_last_bytes",
    ] {
        assert!(
            sustained.get(field).is_some(),
            "{field} missing: {sustained}"
        );
    }
    assert!(sustained["last_over_first"].as_f64().unwrap() > 0.0);
    assert!(report.to_table().contains("last/first"));

    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("sustained.svg");
    report
        .sustained
        .as_ref()
        .unwrap()
        .plot(&plot, "test")
        .unwrap();
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
    server.stop().await;
}

#[tokio::test]
async fn sustained_refuses_what_it_cannot_measure() {
    let server = TestServer::start().await;
    let options = |interval: Duration, database: Option<std::path::PathBuf>| SustainedOptions {
        pairs: PairsOptions {
            target: PairsTarget::Chatd(vec![server.server()]),
            pairs: 1,
            load: short_load(1),
        },
        interval,
        server_pid: None,
        database,
    };
    // An interval longer than the run, and a database that is not there.
    assert!(run_sustained(&options(Duration::from_secs(5), None))
        .await
        .is_err());
    let missing = server.database().with_file_name("missing.db");
    assert!(
        run_sustained(&options(Duration::from_millis(500), Some(missing)))
            .await
            .is_err()
    );
    server.stop().await;
}
