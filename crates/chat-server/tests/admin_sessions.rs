//! `chatd admin` with running nodes: listing sessions, ending them when an
//! account is kicked, disabled, deleted or given a new password (on one
//! node, and on every node of a cluster through Redis), closed
//! registration, and the admin endpoint's guard (its token, loopback
//! clients only).

mod common;

#[path = "common/admin_cli.rs"]
mod admin_cli;
#[path = "common/cluster.rs"]
mod cluster;

use std::time::Duration;

use admin_cli::{AdminCli, ADMIN_TOKEN};
use chat_client::Connection;
use chat_proto::{PingRequest, Push, RegisterRequest, SessionEndReason, SessionEndedPush, Status};
use chat_server::admin::endpoint::DEFAULT_END_MESSAGE;
use chat_server::config::Registration;
use chat_server::service::account::DISABLED;
use common::{status_of, TestServer, PASSWORD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node with the admin endpoint on, and the command pointed at it.
async fn node_with_admin() -> (TestServer, AdminCli) {
    let server = TestServer::start_with(|config| {
        config.admin_token = Some(ADMIN_TOKEN.to_owned());
    })
    .await;
    let admin = AdminCli::new(&server.config().store).with_node(&server.http_addr().to_string());
    (server, admin)
}

/// Waits for the push that ends the session, skipping any other, and
/// checks the connection closes after it.
async fn session_ended(connection: &Connection) -> SessionEndedPush {
    loop {
        match connection.next_push_timeout(common::PUSH_WAIT).await {
            Some(Push::PushSessionEnded(ended)) => {
                let closed = tokio::time::timeout(common::PUSH_WAIT, async {
                    while connection.call(PingRequest {}).await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await;
                assert!(
                    closed.is_ok(),
                    "the connection stays open after session_ended"
                );
                return ended;
            }
            Some(_) => {}
            None => panic!("no session_ended push arrived in time"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_ends_every_session_and_refuses_logins() {
    let (server, admin) = node_with_admin().await;
    let (phone, phone_login) = server.user("alice").await;
    let (laptop, _) = server.login("alice").await;
    let (bob, _) = server.user("bob").await;
    common::befriend(&phone, &bob, "bob", "alice").await;

    let listed = admin.run(&["--json", "sessions", "list"]).await.ok().json();
    let sessions = listed["nodes"][0]["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 3);
    let alices: Vec<_> = sessions.iter().filter(|s| s["user"] == "alice").collect();
    assert_eq!(alices.len(), 2);
    assert!(alices.iter().all(|s| s["transport"] == "tcp"));
    assert!(alices
        .iter()
        .all(|s| s["address"].as_str().unwrap().starts_with("127.0.0.1:")));
    let text = admin.run(&["sessions", "list"]).await.ok().stdout;
    assert!(text.starts_with("NODE "), "{text}");
    assert!(text.contains("  SESSION  USER "), "{text}");
    assert!(text.ends_with("3 sessions\n"), "{text}");
    let online = admin
        .run(&["--json", "users", "list", "--online"])
        .await
        .ok()
        .json();
    assert_eq!(online["users"].as_array().unwrap().len(), 2);
    assert_eq!(online["users"][0]["name"], "alice");
    assert_eq!(online["users"][0]["sessions"], 2);
    let shown = admin
        .run(&["--json", "users", "show", "alice"])
        .await
        .ok()
        .json();
    assert_eq!(shown["sessions"].as_array().unwrap().len(), 2);

    let disabled = admin
        .run(&["--json", "users", "disable", "alice", "--reason", "abuse"])
        .await
        .ok();
    assert!(disabled.stderr.is_empty(), "{}", disabled.stderr);
    let disabled = disabled.json();
    assert_eq!(disabled["sessions_ended"][0]["ended_here"], 2);
    assert_eq!(disabled["tokens_revoked"], 2);
    for connection in [&phone, &laptop] {
        let ended = session_ended(connection).await;
        // logged_out: the client must not log in again with its token.
        assert_eq!(ended.reason, SessionEndReason::LoggedOut);
        assert_eq!(ended.message, DISABLED);
    }
    // Bob stays, and sees Alice go.
    common::expect_push(
        &bob,
        |push| matches!(push, Push::PushPresence(presence) if !presence.online),
    )
    .await;
    let listed = admin.run(&["--json", "sessions", "list"]).await.ok().json();
    assert_eq!(listed["nodes"][0]["sessions"].as_array().unwrap().len(), 1);

    // No way back in: the password says "disabled", the token is revoked.
    let again = server.connect().await;
    let refused = again.login("alice", PASSWORD).await.unwrap_err();
    assert_eq!(refused.status(), Some(Status::Forbidden));
    assert!(refused.to_string().contains("disabled"), "{refused}");
    assert_eq!(
        status_of(again.login_with_token(&phone_login.token).await),
        Status::Unauthorized
    );

    admin.run(&["users", "enable", "alice"]).await.ok();
    again.login("alice", PASSWORD).await.expect("enabled again");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_password_reset_and_delete_end_sessions() {
    let (server, admin) = node_with_admin().await;
    let (alice, login) = server.user("alice").await;

    // A kick ends the sessions, not the account.
    let kicked = admin
        .run(&["--json", "sessions", "kick", "alice"])
        .await
        .ok()
        .json();
    assert_eq!(kicked["sessions_ended"][0]["ended_here"], 1);
    let ended = session_ended(&alice).await;
    assert_eq!(ended.reason, SessionEndReason::LoggedOut);
    assert_eq!(ended.message, DEFAULT_END_MESSAGE);
    let alice = server.connect().await;
    alice
        .login_with_token(&login.token)
        .await
        .expect("a kicked user may come back");

    let reset = admin
        .run_with_input(&["users", "reset-password", "alice"], "another password\n")
        .await
        .ok();
    assert!(reset.stdout.contains("1 session ended"), "{}", reset.stdout);
    assert!(session_ended(&alice)
        .await
        .message
        .contains("password was reset"));
    let alice = server.connect().await;
    assert_eq!(
        status_of(alice.login("alice", PASSWORD).await),
        Status::Unauthorized
    );
    alice
        .login("alice", "another password")
        .await
        .expect("the new password works");

    admin.run(&["users", "delete", "alice", "--yes"]).await.ok();
    assert_eq!(
        session_ended(&alice).await.message,
        "this account was deleted"
    );
    let alice = server.connect().await;
    assert_eq!(
        status_of(alice.login("alice", "another password").await),
        Status::Unauthorized
    );
    admin
        .run(&["sessions", "kick", "nobody"])
        .await
        .failed_with("404");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_lets_only_operators_create_accounts() {
    let server = TestServer::start_with(|config| config.registration = Registration::Closed).await;
    let connection = server.connect().await;
    let refused = connection
        .call(RegisterRequest {
            name: "mallory".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(Status::Forbidden));
    assert!(
        refused.to_string().contains("registration is closed"),
        "{refused}"
    );
    AdminCli::new(&server.config().store)
        .run_with_input(&["users", "create", "dave"], &format!("{PASSWORD}\n"))
        .await
        .ok();
    connection
        .login("dave", PASSWORD)
        .await
        .expect("an operator's account logs in");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_sessions_go_on_and_the_command_says_so() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    // The operator's configuration names the node but has no token.
    let disabled = AdminCli::new(&server.config().store)
        .with_node(&server.http_addr().to_string())
        .without_token()
        .run(&["users", "disable", "alice"])
        .await
        .ok();
    assert!(
        disabled.stderr.contains("the admin endpoint is off"),
        "{}",
        disabled.stderr
    );
    common::expect_no_push(&alice).await;
    // The account is disabled all the same: the next login is refused.
    let again = server.connect().await;
    assert_eq!(
        status_of(again.login("alice", PASSWORD).await),
        Status::Forbidden
    );
    server.shutdown().await;
}

/// One HTTP/1.1 request on a fresh connection, with `prefix` sent first
/// (a PROXY header); the status and body of the answer.
async fn http(addr: std::net::SocketAddr, request: &str, prefix: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{prefix}{request}").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(common::PUSH_WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get_sessions(token: Option<&str>) -> String {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    format!("GET /admin/sessions HTTP/1.1\r\nHost: x\r\n{authorization}Connection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_wants_its_token_and_a_local_client() {
    let (server, _) = node_with_admin().await;
    let addr = server.http_addr();
    let (status, body) = http(addr, &get_sessions(Some(ADMIN_TOKEN)), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"sessions\":[]"), "{body}");
    assert_eq!(http(addr, &get_sessions(None), "").await.0, 401);
    assert_eq!(
        http(addr, &get_sessions(Some("wrong-token-0123456789")), "")
            .await
            .0,
        401
    );
    let end = "POST /admin/sessions/end HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
               Content-Length: 15\r\nConnection: close\r\n\r\n{\"user\":\"bob\"}\n";
    assert_eq!(http(addr, end, "").await.0, 401);
    server.shutdown().await;

    // Off without a token: the paths do not exist.
    let server = TestServer::start().await;
    assert_eq!(
        http(server.http_addr(), &get_sessions(Some(ADMIN_TOKEN)), "")
            .await
            .0,
        404
    );
    server.shutdown().await;

    // Behind a proxy, a client from elsewhere is refused even with the
    // token, unless remote admin is allowed.
    for (allow_remote, expected) in [(false, 403), (true, 200)] {
        let server = TestServer::start_with(|config| {
            config.admin_token = Some(ADMIN_TOKEN.to_owned());
            config.proxy_protocol = true;
            config.admin_allow_remote = allow_remote;
        })
        .await;
        let proxy = "PROXY TCP4 203.0.113.7 127.0.0.1 40000 7080\r\n";
        let (status, body) =
            http(server.http_addr(), &get_sessions(Some(ADMIN_TOKEN)), proxy).await;
        assert_eq!(status, expected, "{body}");
        let local = "PROXY TCP4 127.0.0.1 127.0.0.1 40000 7080\r\n";
        assert_eq!(
            http(server.http_addr(), &get_sessions(Some(ADMIN_TOKEN)), local)
                .await
                .0,
            200
        );
        // The command sends the header itself when the nodes expect one.
        let listed = AdminCli::new(&server.config().store)
            .with_node(&server.http_addr().to_string())
            .with_proxy_protocol()
            .run(&["sessions", "list"])
            .await
            .ok();
        assert!(listed.stdout.ends_with("0 sessions\n"), "{}", listed.stdout);
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_ends_sessions_on_every_node_of_a_cluster() {
    let mysql = cluster::need_mysql("admin_sessions").await;
    let redis = cluster::need_redis("admin_sessions").await;
    let (Some(mysql), Some(redis)) = (mysql, redis) else {
        return;
    };
    let database = cluster::TestDatabase::create(&mysql).await;
    let prefix = format!("{}:", cluster::unique("chat_admin_"));
    let _keys = cluster::RedisKeys::new(&redis, &prefix);
    let mut nodes = Vec::new();
    for index in 0..2 {
        let config = chat_server::Config {
            listen: "127.0.0.1:0".to_owned(),
            http_listen: "127.0.0.1:0".to_owned(),
            store: database.url(),
            redis: Some(redis.clone()),
            node_id: Some(format!("node-{index}")),
            redis_prefix: prefix.clone(),
            heartbeat_secs: 1,
            rate_limit_per_sec: 0,
            shutdown_grace_secs: 5,
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            ..chat_server::Config::default()
        };
        nodes.push(chat_server::start(config).await.expect("node starts"));
    }
    let http: Vec<String> = nodes
        .iter()
        .map(|node| node.http_addr().unwrap().to_string())
        .collect();
    // Alice on both nodes, Bob on node 1 only.
    let (alice_0, _) = cluster::user_on(nodes[0].local_addr(), "alice").await;
    let (alice_1, _) = cluster::login_on(nodes[1].local_addr(), "alice").await;
    let (_bob, _) = cluster::user_on(nodes[1].local_addr(), "bob").await;

    // The whole cluster is listed by asking every node.
    let every_node = AdminCli::new(&database.url())
        .with_node(&http[0])
        .with_node(&http[1]);
    let listed = every_node
        .run(&["--json", "sessions", "list"])
        .await
        .ok()
        .json();
    let per_node: Vec<(String, usize)> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            (
                node["node"].as_str().unwrap().to_owned(),
                node["sessions"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        per_node,
        [("node-0".to_owned(), 1), ("node-1".to_owned(), 2)]
    );

    // One node is asked; the bus ends the session on the other.
    let disabled = AdminCli::new(&database.url())
        .with_node(&http[0])
        .run(&["--json", "users", "disable", "alice"])
        .await
        .ok()
        .json();
    assert_eq!(disabled["sessions_ended"][0]["ended_here"], 1);
    assert_eq!(disabled["sessions_ended"][0]["other_nodes_told"], 1);
    for connection in [&alice_0, &alice_1] {
        let ended = session_ended(connection).await;
        assert_eq!(ended.message, DISABLED);
    }
    let listed = every_node
        .run(&["--json", "sessions", "list"])
        .await
        .ok()
        .json();
    assert_eq!(listed["nodes"][0]["sessions"].as_array().unwrap().len(), 0);
    assert_eq!(listed["nodes"][1]["sessions"].as_array().unwrap().len(), 1);
    for node in nodes {
        node.shutdown().await.expect("clean shutdown");
    }
}
