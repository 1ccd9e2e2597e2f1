//! The `group` scenario against a real chatd.

mod common;

use chat_bench::{run_group, GroupOptions};
use common::{assert_clean_and_consistent, short_load, TestServer};

#[tokio::test]
async fn every_member_gets_every_message_once_in_order() {
    let server = TestServer::start().await;
    let members = 6;
    let report = run_group(&GroupOptions {
        servers: vec![server.server()],
        members,
        senders: 2,
        conns_per_task: 4,
        load: short_load(2),
    })
    .await
    .unwrap();
    assert_eq!(report.scenario, "group");
    // Each message reaches every member but its sender.
    assert_clean_and_consistent(&report, members as u64 - 1);
    server.stop().await;
}

#[tokio::test]
async fn impossible_groups_are_refused_before_any_setup() {
    let server = TestServer::start().await;
    for (members, senders) in [(1, 1), (3, 0), (3, 4)] {
        let result = run_group(&GroupOptions {
            servers: vec![server.server()],
            members,
            senders,
            conns_per_task: 4,
            load: short_load(1),
        })
        .await;
        assert!(
            matches!(result, Err(chat_bench::Error::Options(_))),
            "{members} members, {senders} senders"
        );
    }
    server.stop().await;
}
