//! Tokens and secrets: expired tokens purged, a logout ending the other
//! sessions of its token, stored password hashes kept within bounds and
//! brought to the configured cost at login, and secrets kept out of printed
//! configuration.

mod common;

use std::time::{Duration, Instant};

use chat_proto::{
    FriendListRequest, LogoutRequest, Push, SessionEndReason, SessionListRequest,
    SessionRevokeRequest, Status,
};
use common::poll::eventually;
use common::{expect_silence, status_of, unique, TestServer, PASSWORD, PUSH_WAIT};

/// The server's SQLite database, opened beside it.
async fn database(server: &TestServer) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&server.config().store)
        .await
        .expect("the test database opens")
}

async fn stored_hash(pool: &sqlx::SqlitePool, name: &str) -> String {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE name = ?")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("the user is stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_purged_without_anyone_logging_out() {
    let server = TestServer::start_with(|config| {
        config.token_ttl_secs = 1;
        config.token_purge_interval_secs = 1;
    })
    .await;
    let name = unique("expiring");
    server.user(&name).await;
    server.login(&name).await;
    let pool = database(&server).await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM tokens")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 2);
    // The tokens expire after a second; the purge runs every second (both
    // the shortest the config allows, and both on the wall clock the store
    // compares with, so a paused Tokio clock cannot stand in).
    eventually(Duration::from_secs(10), "expired tokens purged", || async {
        count().await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_ends_the_other_sessions_of_the_same_token() {
    let server = TestServer::start().await;
    let name = unique("devices");
    let (first, login) = server.user(&name).await;
    // A second connection resumes with the first one's token; a third
    // logged in with the password and holds a token of its own.
    let resumed = server.connect().await;
    resumed.login_with_token(&login.token).await.unwrap();
    let (other_device, _) = server.login(&name).await;
    first.call(LogoutRequest {}).await.unwrap();
    match common::expect_push(&resumed, |push| matches!(push, Push::PushSessionEnded(_))).await {
        Push::PushSessionEnded(ended) => assert_eq!(ended.reason, SessionEndReason::LoggedOut),
        _ => unreachable!("matched a session_ended push"),
    }
    tokio::time::timeout(PUSH_WAIT, resumed.closed())
        .await
        .expect("the resumed session is closed");
    // The device with its own token stays logged in.
    expect_silence(&other_device).await;
    other_device.call(FriendListRequest {}).await.unwrap();
    // And the token no longer logs in.
    assert_eq!(
        status_of(server.connect().await.login_with_token(&login.token).await),
        Status::Unauthorized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_hash_asking_for_a_huge_cost_matches_nothing() {
    let server = TestServer::start().await;
    let name = unique("tampered");
    server.user(&name).await;
    let pool = database(&server).await;
    let honest = stored_hash(&pool, &name).await;
    assert!(honest.contains("m=19456,t=2,p=1"), "{honest}");
    // 4 GiB and a thousand passes: verifying it would exhaust memory or
    // hold a hashing thread for minutes.
    let bomb = honest.replace("m=19456,t=2", "m=4194304,t=1000");
    sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
        .bind(&bomb)
        .bind(&name)
        .execute(&pool)
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        status_of(server.connect().await.login(name.as_str(), PASSWORD).await),
        Status::Unauthorized
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_are_brought_to_the_configured_cost_at_login() {
    let mut server = TestServer::start_with(|config| config.password_hash_iterations = 1).await;
    let name = unique("rehashed");
    let (_, before) = server.user(&name).await;
    let pool = database(&server).await;
    assert!(stored_hash(&pool, &name).await.contains(",t=1,"));
    server
        .restart_with(|config| config.password_hash_iterations = 3)
        .await;
    server.login(&name).await;
    eventually(PUSH_WAIT, "the hash replaced", || async {
        stored_hash(&pool, &name).await.contains(",t=3,")
    })
    .await;
    // The same password still logs in, and earlier tokens still work.
    server.login(&name).await;
    server
        .connect()
        .await
        .login_with_token(&before.token)
        .await
        .unwrap();
}

#[test]
fn print_config_hides_passwords() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args([
            "--print-config",
            "--store",
            "mysql://chat:store-secret@db.internal:3306/chat",
            "--redis",
            "redis://:redis-secret@redis.internal:6379",
        ])
        .env("CHATD_ADMIN_TOKEN", "admin-secret-0123456789abcdef")
        .output()
        .expect("chatd runs");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    for secret in ["store-secret", "redis-secret", "admin-secret"] {
        assert!(!printed.contains(secret), "{secret} in\n{printed}");
    }
    assert!(printed.contains("mysql://chat:***@db.internal:3306/chat"));
}

async fn session_list(connection: &chat_client::Connection) -> Vec<chat_proto::SessionInfo> {
    connection
        .call(SessionListRequest {})
        .await
        .unwrap()
        .sessions
}

async fn session_revoke(
    connection: &chat_client::Connection,
    id: &str,
) -> chat_client::Result<chat_proto::SessionRevokeResponse> {
    connection
        .call(SessionRevokeRequest { id: id.to_owned() })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lists_their_logins_and_ends_another_one() {
    let server = TestServer::start().await;
    let name = unique("many devices");
    let (phone, phone_login) = server.user(&name).await;
    let (laptop, _) = server.login(&name).await;
    // The tablet resumes with the phone's token: the same login.
    let tablet = server.connect().await;
    tablet.login_with_token(&phone_login.token).await.unwrap();
    let listed = session_list(&laptop).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let mine: Vec<_> = listed.iter().filter(|session| session.current).collect();
    assert_eq!(mine.len(), 1);
    assert!(listed
        .iter()
        .all(|session| session.id.len() == 16 && !phone_login.token.contains(&session.id)));
    let phone_id = listed
        .iter()
        .find(|session| !session.current)
        .unwrap()
        .id
        .clone();
    // The phone sees the same two logins, its own marked.
    let from_phone = session_list(&phone).await;
    assert_eq!(
        from_phone
            .iter()
            .find(|session| session.current)
            .unwrap()
            .id,
        phone_id
    );

    // Ending one's own login this way is refused; unknown ids are not found.
    assert_eq!(
        status_of(session_revoke(&laptop, &mine[0].id).await),
        Status::BadRequest
    );
    assert_eq!(
        status_of(session_revoke(&laptop, "0000000000000000").await),
        Status::NotFound
    );
    // Somebody else cannot end this user's logins.
    let (stranger, _) = server.user(&unique("stranger")).await;
    assert_eq!(
        status_of(session_revoke(&stranger, &phone_id).await),
        Status::NotFound
    );

    session_revoke(&laptop, &phone_id).await.unwrap();
    for ended in [&phone, &tablet] {
        match common::expect_push(ended, |push| matches!(push, Push::PushSessionEnded(_))).await {
            Push::PushSessionEnded(push) => {
                assert_eq!(push.reason, SessionEndReason::LoggedOut);
            }
            _ => unreachable!("matched a session_ended push"),
        }
    }
    assert_eq!(
        status_of(
            server
                .connect()
                .await
                .login_with_token(&phone_login.token)
                .await
        ),
        Status::Unauthorized
    );
    let left = session_list(&laptop).await;
    assert_eq!(left.len(), 1);
    assert!(left[0].current);
    expect_silence(&laptop).await;
}
