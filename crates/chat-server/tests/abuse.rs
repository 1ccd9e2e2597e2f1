//! Abuse: registration floods (limits per address, IPv6 per /64, and per
//! node; logins served before registrations), failed logins counted per
//! /64, an account lockout that cannot lock the owner out, and per-user
//! quotas for friend requests, group creations and group joins.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_client::IntoUserRef;
use chat_proto::{
    FriendAddRequest, GroupCreateRequest, GroupId, GroupJoinRequest, LoginRequest, RegisterRequest,
    Request, Status, UserRef,
};
use common::{open_group, status_of, unique, RawClient, TestServer, PASSWORD};
use tokio::io::AsyncWriteExt;

/// A raw connection whose PROXY header says it comes from `ip`.
async fn from_address(server: &TestServer, ip: &str) -> RawClient {
    let mut stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connects");
    let header = if ip.contains(':') {
        format!("PROXY TCP6 {ip} 2001:db8::ffff 40000 7000\r\n")
    } else {
        format!("PROXY TCP4 {ip} 10.0.0.9 40000 7000\r\n")
    };
    stream.write_all(header.as_bytes()).await.expect("writes");
    RawClient::from_stream(stream)
}

/// Sends `request` and returns the status of its answer.
async fn status(client: &mut RawClient, request: Request) -> Status {
    let request_id = client.write_request(&request).await;
    loop {
        let frame = client.read_frame().await.expect("an answer");
        if frame.header.flags.is_response() && frame.header.request_id == request_id {
            return Status::from_code(frame.header.status).expect("a known status");
        }
    }
}

fn register(name: &str) -> Request {
    Request::Register(RegisterRequest {
        name: name.to_owned(),
        password: PASSWORD.to_owned(),
    })
}

fn login(name: &str, password: &str) -> Request {
    Request::Login(LoginRequest {
        user: Some(UserRef::Name(name.to_owned())),
        password: Some(password.to_owned()),
        token: None,
    })
}

/// Registers from `ip` on a fresh connection; returns the status.
async fn register_from(server: &TestServer, ip: &str, name: &str) -> Status {
    let mut client = from_address(server, ip).await;
    status(&mut client, register(name)).await
}

/// Logs in from `ip` on a fresh connection; returns the status.
async fn login_from(server: &TestServer, ip: &str, name: &str, password: &str) -> Status {
    let mut client = from_address(server, ip).await;
    status(&mut client, login(name, password)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_address_counting_ipv6_per_64() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol = true;
        config.registrations_per_ip_per_hour = 2;
        config.registrations_per_minute = 0;
    })
    .await;
    let first = "2001:db8:7:1::1";
    assert_eq!(
        register_from(&server, first, &unique("flood")).await,
        Status::Ok
    );
    // Another address of the same /64 shares the allowance.
    assert_eq!(
        register_from(&server, "2001:db8:7:1:ffff::2", &unique("flood")).await,
        Status::Ok
    );
    assert_eq!(
        register_from(&server, "2001:db8:7:1:abcd::3", &unique("flood")).await,
        Status::RateLimited
    );
    // The next /64 and an IPv4 address have their own.
    assert_eq!(
        register_from(&server, "2001:db8:7:2::1", &unique("flood")).await,
        Status::Ok
    );
    assert_eq!(
        register_from(&server, "192.0.2.10", &unique("flood")).await,
        Status::Ok
    );
    // A refused name check (taken) costs no hash and counts nothing.
    let mut client = from_address(&server, "192.0.2.11").await;
    let taken = unique("taken");
    assert_eq!(status(&mut client, register(&taken)).await, Status::Ok);
    for _ in 0..3 {
        assert_eq!(
            status(&mut client, register(&taken)).await,
            Status::Conflict
        );
    }
    assert_eq!(
        status(&mut client, register(&unique("flood"))).await,
        Status::Ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_node_whatever_the_address() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol = true;
        config.registrations_per_ip_per_hour = 0;
        config.registrations_per_minute = 3;
    })
    .await;
    for index in 1..=3 {
        let ip = format!("198.51.100.{index}");
        assert_eq!(
            register_from(&server, &ip, &unique("spread")).await,
            Status::Ok
        );
    }
    assert_eq!(
        register_from(&server, "198.51.100.4", &unique("spread")).await,
        Status::RateLimited
    );
}

/// However many registrations wait for a password hash, a login is served
/// after at most the hashes already running: it does not queue behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_does_not_hold_up_logins() {
    const FLOOD: usize = 40;
    let server = TestServer::start_with(|config| {
        config.registrations_per_ip_per_hour = 0;
        config.registrations_per_minute = 0;
        // Slower hashes, so the flood is still queued when the login comes.
        config.password_hash_iterations = 8;
    })
    .await;
    let victim = unique("victim");
    server.user(&victim).await;
    let finished = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let connection = server.connect().await;
        let finished = finished.clone();
        flood.push(tokio::spawn(async move {
            connection.set_request_timeout(Duration::from_secs(60));
            // Registered, or refused as busy: either way it is over.
            let _ = connection
                .call(RegisterRequest {
                    name: unique("flooder"),
                    password: PASSWORD.to_owned(),
                })
                .await;
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // Wait until the flood is being hashed.
    common::poll::eventually(Duration::from_secs(30), "a flooder answered", || async {
        finished.load(Ordering::SeqCst) > 0
    })
    .await;
    let connection = server.connect().await;
    connection
        .login(victim.as_str(), PASSWORD)
        .await
        .expect("the login is served, not refused as busy");
    let finished_before_the_login = finished.load(Ordering::SeqCst);
    assert!(
        finished_before_the_login <= FLOOD / 2,
        "the login waited for {finished_before_the_login} of {FLOOD} registrations"
    );
    for task in flood {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_count_per_64() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol = true;
        config.login_failures_per_ip = 2;
        config.login_failures_per_account = 0;
    })
    .await;
    let name = unique("target");
    assert_eq!(register_from(&server, "192.0.2.1", &name).await, Status::Ok);
    for ip in ["2001:db8:9:9::1", "2001:db8:9:9::2"] {
        assert_eq!(
            login_from(&server, ip, &name, "wrong password").await,
            Status::Unauthorized
        );
    }
    // A third address of the same /64 is refused before any hash...
    assert_eq!(
        login_from(&server, "2001:db8:9:9:1:2:3:4", &name, PASSWORD).await,
        Status::RateLimited
    );
    // ...and the next /64 is not.
    assert_eq!(
        login_from(&server, "2001:db8:9:a::1", &name, PASSWORD).await,
        Status::Ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_account_still_admits_addresses_that_have_not_failed() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol = true;
        config.login_failures_per_ip = 100;
        config.login_failures_per_account = 3;
    })
    .await;
    let name = unique("owner");
    assert_eq!(register_from(&server, "192.0.2.1", &name).await, Status::Ok);
    let attacker = "203.0.113.66";
    for _ in 0..3 {
        assert_eq!(
            login_from(&server, attacker, &name, "guess guess").await,
            Status::Unauthorized
        );
    }
    // The attacker's address is locked out of the account, even with the
    // right password...
    assert_eq!(
        login_from(&server, attacker, &name, PASSWORD).await,
        Status::RateLimited
    );
    // ...but the owner, from an address that has not failed, logs in.
    assert_eq!(
        login_from(&server, "192.0.2.1", &name, PASSWORD).await,
        Status::Ok
    );
    // A second guessing address gets its wrong answer, then is locked out
    // too.
    let second = "203.0.113.67";
    assert_eq!(
        login_from(&server, second, &name, "guess again").await,
        Status::Unauthorized
    );
    assert_eq!(
        login_from(&server, second, &name, "guess more").await,
        Status::RateLimited
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friend_requests_group_creations_and_joins_have_per_user_quotas() {
    let server = TestServer::start_with(|config| {
        config.friend_requests_per_hour = 2;
        config.group_creations_per_hour = 1;
        config.group_joins_per_hour = 1;
    })
    .await;
    let (sender, _) = server.user(&unique("asker")).await;
    let mut others = Vec::new();
    for _ in 0..3 {
        let name = unique("asked");
        server.user(&name).await;
        others.push(name);
    }
    sender
        .call(FriendAddRequest {
            user: others[0].as_str().into_user_ref(),
            message: None,
        })
        .await
        .unwrap();
    // A refused request (already asked) does not use the quota up.
    assert_eq!(
        status_of(
            sender
                .call(FriendAddRequest {
                    user: others[0].as_str().into_user_ref(),
                    message: None
                })
                .await
        ),
        Status::Conflict
    );
    sender
        .call(FriendAddRequest {
            user: others[1].as_str().into_user_ref(),
            message: None,
        })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            sender
                .call(FriendAddRequest {
                    user: others[2].as_str().into_user_ref(),
                    message: None
                })
                .await
        ),
        Status::RateLimited
    );
    // Quotas are per user: another user still has all of theirs.
    let (creator, _) = server.user(&unique("creator")).await;
    let group = open_group(&creator, "first").await;
    assert_eq!(
        status_of(
            creator
                .request(Request::GroupCreate(GroupCreateRequest {
                    name: "second".into(),
                    description: String::new(),
                    join_policy: chat_proto::JoinPolicy::Open,
                }))
                .await
        ),
        Status::RateLimited
    );
    let (joiner, _) = server.user(&unique("joiner")).await;
    let (other_creator, _) = server.user(&unique("another creator")).await;
    let other_group = open_group(&other_creator, "other").await;
    // A join that fails (no such group) does not use the quota up.
    assert_eq!(
        status_of(
            joiner
                .call(GroupJoinRequest {
                    group_id: GroupId(u64::MAX >> 12)
                })
                .await
        ),
        Status::NotFound
    );
    joiner
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            joiner
                .call(GroupJoinRequest {
                    group_id: other_group.id
                })
                .await
        ),
        Status::RateLimited
    );
}
