//! Accounts over real TCP: registration rules, password and id logins,
//! failed-login limits, session tokens, logout, and several sessions of one
//! account at once.

mod common;

use chat_client::ClientError;
use chat_proto::{
    FriendListRequest, LogoutRequest, PingRequest, Push, RegisterRequest, SessionEndReason, Status,
    Target,
};
use common::{
    befriend, expect_no_push, next_message, open_group, status_of, unique, TestServer, PASSWORD,
};

/// The error body of a failed call, panicking if it succeeded.
fn error_of<T: std::fmt::Debug>(result: chat_client::Result<T>) -> chat_proto::ErrorBody {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(ClientError::Server(body)) => body,
        Err(other) => panic!("expected a server error, got {other}"),
    }
}

#[tokio::test]
async fn register_refuses_invalid_names_and_passwords() {
    let server = TestServer::start().await;
    let connection = server.connect().await;
    let long_name = "n".repeat(33);
    for name in [
        "",
        long_name.as_str(),
        "12345",
        "0",
        "bell\u{7}name",
        "new\nline",
        "tab\tname",
        "nul\u{0}name",
        " leading",
        "trailing ",
        " both ",
    ] {
        assert_eq!(
            status_of(
                connection
                    .call(RegisterRequest {
                        name: name.to_owned(),
                        password: PASSWORD.to_owned()
                    })
                    .await
            ),
            Status::BadRequest,
            "name {name:?}"
        );
    }
    for password in ["1234567".to_owned(), "p".repeat(129), String::new()] {
        assert_eq!(
            status_of(
                connection
                    .call(RegisterRequest {
                        name: unique("pw"),
                        password: password.to_owned()
                    })
                    .await
            ),
            Status::BadRequest,
            "password of {} characters",
            password.chars().count()
        );
    }
    // Seven characters that take more than eight bytes are still seven.
    assert_eq!(
        status_of(
            connection
                .call(RegisterRequest {
                    name: unique("pw"),
                    password: "ééééééé".to_owned()
                })
                .await
        ),
        Status::BadRequest
    );

    // The boundaries themselves are accepted.
    let longest = format!("{}x", "n".repeat(31));
    assert_eq!(longest.chars().count(), 32);
    let registered = connection
        .call(RegisterRequest {
            name: longest.to_owned(),
            password: "12345678".to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(registered.user.name, longest);
    connection
        .call(RegisterRequest {
            name: unique("maxpw"),
            password: "p".repeat(128),
        })
        .await
        .unwrap();
    connection
        .call(RegisterRequest {
            name: "agent7".to_owned(),
            password: "12345678".to_owned(),
        })
        .await
        .unwrap();
    connection
        .call(RegisterRequest {
            name: "x".to_owned(),
            password: "12345678".to_owned(),
        })
        .await
        .unwrap();
    // Nothing refused was stored: the refused names are still free to log in as nobody.
    assert_eq!(
        status_of(connection.login(" leading", "12345678").await),
        Status::Unauthorized
    );
}

#[tokio::test]
async fn names_are_unique_whatever_the_case() {
    let server = TestServer::start().await;
    let connection = server.connect().await;
    let lower = connection
        .call(RegisterRequest {
            name: "alice".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap()
        .user;
    for taken in ["alice", "Alice", "ALICE"] {
        assert_eq!(
            status_of(
                connection
                    .call(RegisterRequest {
                        name: taken.to_owned(),
                        password: "another password".to_owned()
                    })
                    .await
            ),
            Status::Conflict
        );
    }
    // The name logs in in any case, with its own password only.
    for asked in ["alice", "Alice"] {
        let connection = server.connect().await;
        assert_eq!(connection.login(asked, PASSWORD).await.unwrap().user, lower);
        assert_eq!(
            status_of(
                server
                    .connect()
                    .await
                    .login(asked, "another password")
                    .await
            ),
            Status::Unauthorized
        );
    }
}

#[tokio::test]
async fn login_by_name_or_by_id_and_wrong_credentials_look_the_same() {
    let server = TestServer::start().await;
    let name = unique("carol");
    let connection = server.connect().await;
    let registered = connection
        .call(RegisterRequest {
            name: name.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap()
        .user;

    let by_name = connection.login(name.as_str(), PASSWORD).await.unwrap();
    assert_eq!(by_name.user, registered);
    assert!(!by_name.token.is_empty());
    assert!(by_name.token_expires_at_ms > 0);
    assert_eq!(by_name.unacked, 0);

    let by_id = server.connect().await;
    let login = by_id.login(registered.id, PASSWORD).await.unwrap();
    assert_eq!(login.user, registered);
    // Every password login gets its own token.
    assert_ne!(login.token, by_name.token);

    let wrong_password = error_of(
        server
            .connect()
            .await
            .login(name.as_str(), "not the password")
            .await,
    );
    let unknown_user = error_of(
        server
            .connect()
            .await
            .login("nobody-with-this-name", PASSWORD)
            .await,
    );
    let unknown_id = error_of(
        server
            .connect()
            .await
            .login(chat_proto::UserId(987_654), PASSWORD)
            .await,
    );
    assert_eq!(wrong_password.error, Status::Unauthorized);
    // An attacker must not learn which names exist.
    assert_eq!(unknown_user, wrong_password);
    assert_eq!(unknown_id, wrong_password);
}

#[tokio::test]
async fn failed_logins_lock_the_account_even_for_the_right_password() {
    let server = TestServer::start_with(|config| {
        config.login_failures_per_account = 3;
        config.login_failures_per_ip = 100;
    })
    .await;
    let name = unique("target");
    let bystander = unique("bystander");
    let setup = server.connect().await;
    let target = setup
        .call(RegisterRequest {
            name: name.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap()
        .user;
    setup
        .call(RegisterRequest {
            name: bystander.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();

    let attacker = server.connect().await;
    for _ in 0..3 {
        assert_eq!(
            status_of(attacker.login(name.as_str(), "guess guess").await),
            Status::Unauthorized
        );
    }
    // The limit counts the account, not the connection: a fresh connection
    // with the right password is refused too, by name and by id.
    let owner = server.connect().await;
    assert_eq!(
        status_of(owner.login(name.as_str(), PASSWORD).await),
        Status::RateLimited
    );
    assert_eq!(
        status_of(setup.login(target.id, PASSWORD).await),
        Status::RateLimited
    );
    assert_eq!(
        status_of(attacker.login(name.as_str(), "guess again").await),
        Status::RateLimited
    );
    // Other accounts are not affected, and the refused connection is still
    // usable.
    owner.login(bystander.as_str(), PASSWORD).await.unwrap();
    owner.call(PingRequest {}).await.unwrap();
}

#[tokio::test]
async fn failed_logins_from_one_address_are_limited_across_accounts() {
    let server = TestServer::start_with(|config| {
        config.login_failures_per_account = 100;
        config.login_failures_per_ip = 3;
    })
    .await;
    let name = unique("honest");
    let setup = server.connect().await;
    setup
        .call(RegisterRequest {
            name: name.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    let attacker = server.connect().await;
    for index in 0..3 {
        assert_eq!(
            status_of(attacker.login(format!("nobody{index}"), PASSWORD).await),
            Status::Unauthorized
        );
    }
    // Every test client shares 127.0.0.1, so the address is now locked out.
    assert_eq!(
        status_of(server.connect().await.login(name.as_str(), PASSWORD).await),
        Status::RateLimited
    );
}

#[tokio::test]
async fn a_token_logs_in_again_until_logout_revokes_it() {
    let server = TestServer::start().await;
    let name = unique("dave");
    let (first, login) = server.user(&name).await;

    // A new connection presents the token instead of the password.
    let second = server.connect().await;
    let resumed = second.login_with_token(&login.token).await.unwrap();
    assert_eq!(resumed.user, login.user);
    assert_eq!(resumed.token, login.token);
    second.call(FriendListRequest {}).await.unwrap();

    // A token that was never issued, and an empty one, are refused.
    let third = server.connect().await;
    assert_eq!(
        status_of(third.login_with_token("bogus-token-value").await),
        Status::Unauthorized
    );
    assert_eq!(
        status_of(third.login_with_token("").await),
        Status::Unauthorized
    );
    // A token that differs in one character is just as bogus.
    let mut altered = login.token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        status_of(third.login_with_token(&altered).await),
        Status::Unauthorized
    );

    // Logout revokes the token: nobody can resume with it any more, and the
    // logged-out connection acts for nobody.
    second.call(LogoutRequest {}).await.unwrap();
    assert_eq!(
        status_of(third.login_with_token(&login.token).await),
        Status::Unauthorized
    );
    assert_eq!(
        status_of(second.call(FriendListRequest {}).await),
        Status::Unauthorized
    );
    assert_eq!(
        status_of(second.call(LogoutRequest {}).await),
        Status::Unauthorized
    );
    // The connection stays open and can log in again, by password.
    let again = second.login(name.as_str(), PASSWORD).await.unwrap();
    assert_eq!(again.user, login.user);
    assert_ne!(again.token, login.token);
    second.call(FriendListRequest {}).await.unwrap();
    // The first session holds the same token (it was handed out at its
    // password login): logging out ended that login there too.
    match common::expect_push(&first, |push| matches!(push, Push::PushSessionEnded(_))).await {
        Push::PushSessionEnded(ended) => assert_eq!(ended.reason, SessionEndReason::LoggedOut),
        _ => unreachable!("matched a session_ended push"),
    }
    // A token and a password together are malformed, not a login.
    let both = third
        .request(chat_proto::Request::Login(chat_proto::LoginRequest {
            user: Some(chat_proto::UserRef::Name(name.clone())),
            password: Some(PASSWORD.to_owned()),
            token: Some(again.token.clone()),
        }))
        .await;
    assert_eq!(status_of(both), Status::BadRequest);
}

#[tokio::test]
async fn logging_in_twice_on_one_connection_is_a_conflict() {
    let server = TestServer::start().await;
    let name = unique("erin");
    let other = unique("frank");
    let (connection, login) = server.user(&name).await;
    server
        .connect()
        .await
        .call(RegisterRequest {
            name: other.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(
        status_of(connection.login(name.as_str(), PASSWORD).await),
        Status::Conflict
    );
    // Not even as somebody else, nor with a token.
    assert_eq!(
        status_of(connection.login(other.as_str(), PASSWORD).await),
        Status::Conflict
    );
    assert_eq!(
        status_of(connection.login_with_token(&login.token).await),
        Status::Conflict
    );
    // The session is still the first user's.
    let list = connection.call(FriendListRequest {}).await.unwrap();
    assert!(list.friends.is_empty());
    let group = open_group(&connection, "mine").await;
    assert_eq!(group.owner_id, login.user.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_of_an_account_gets_every_message() {
    let server = TestServer::start().await;
    let alice_name = unique("alice");
    let bob_name = unique("bob");
    let (alice_phone, alice_login) = server.user(&alice_name).await;
    let (bob_phone, bob_login) = server.user(&bob_name).await;
    befriend(&alice_phone, &bob_phone, &bob_name, &alice_name).await;
    let (alice_laptop, _) = server.login(&alice_name).await;
    let (bob_laptop, _) = server.login(&bob_name).await;
    let bob_tablet = server.connect().await;
    let tablet_login = bob_tablet.login_with_token(&bob_login.token).await.unwrap();
    assert_eq!(tablet_login.user, bob_login.user);

    let sent = alice_phone
        .send(Target::User(bob_login.user.id), "to all your devices")
        .await
        .unwrap();
    for device in [&bob_phone, &bob_laptop, &bob_tablet] {
        let message = next_message(device).await;
        assert_eq!(message.body, "to all your devices");
        assert_eq!(message.seq, sent.seq);
        assert_eq!(message.sender_id, alice_login.user.id);
    }
    // The sender's other device sees what was sent from the phone; the phone
    // itself has the response and gets no push.
    let own = next_message(&alice_laptop).await;
    assert_eq!(own.seq, sent.seq);
    assert_eq!(own.sender_id, alice_login.user.id);
    expect_no_push(&alice_phone).await;

    // A reply from one of Bob's devices reaches Alice's devices and Bob's
    // other devices, but not the device it came from.
    let reply = bob_laptop
        .send(Target::User(alice_login.user.id), "got it")
        .await
        .unwrap();
    for device in [&alice_phone, &alice_laptop, &bob_phone, &bob_tablet] {
        let message = next_message(device).await;
        assert_eq!(message.body, "got it");
        assert_eq!(message.seq, reply.seq);
    }
    expect_no_push(&bob_laptop).await;

    // One device logging out ends the sessions that hold its token (the
    // tablet resumed with the phone's token) and leaves the others
    // receiving.
    bob_phone.call(LogoutRequest {}).await.unwrap();
    match common::expect_push(&bob_tablet, |push| {
        matches!(push, Push::PushSessionEnded(_))
    })
    .await
    {
        Push::PushSessionEnded(ended) => assert_eq!(ended.reason, SessionEndReason::LoggedOut),
        _ => unreachable!("matched a session_ended push"),
    }
    alice_laptop
        .send(Target::User(bob_login.user.id), "still there?")
        .await
        .unwrap();
    for device in [&bob_laptop, &alice_phone] {
        assert_eq!(next_message(device).await.body, "still there?");
    }
    expect_no_push(&bob_phone).await;
}

#[tokio::test]
async fn a_token_stops_working_when_it_expires() {
    let server = TestServer::start_with(|config| config.token_ttl_secs = 1).await;
    let name = unique("grace");
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let before = now_ms();
    let (_first, login) = server.user(&name).await;
    let lifetime = login.token_expires_at_ms - before;
    assert!(
        (1000..=1000 + 5000).contains(&lifetime),
        "the token lives {lifetime} ms"
    );
    // Good until it expires...
    server
        .connect()
        .await
        .login_with_token(&login.token)
        .await
        .unwrap();
    // ...and refused from the moment it expires: not before (the store
    // compares wall-clock milliseconds, so a paused Tokio clock cannot stand
    // in; one second is the shortest lifetime the config allows).
    common::poll::eventually(
        std::time::Duration::from_secs(6),
        "the token expires",
        || async {
            let asked_at = now_ms();
            match server.connect().await.login_with_token(&login.token).await {
                Ok(_) => {
                    assert!(
                        asked_at <= login.token_expires_at_ms,
                        "accepted at {asked_at}, after it expired at {}",
                        login.token_expires_at_ms
                    );
                    false
                }
                Err(error) => {
                    let refused_at = now_ms();
                    assert_eq!(error.status(), Some(Status::Unauthorized), "{error}");
                    assert!(
                        refused_at >= login.token_expires_at_ms,
                        "refused at {refused_at}, before it expired at {}",
                        login.token_expires_at_ms
                    );
                    true
                }
            }
        },
    )
    .await;
    // The password still works and hands out a fresh token.
    let again = server.connect().await;
    let relogin = again.login(name.as_str(), PASSWORD).await.unwrap();
    assert_ne!(relogin.token, login.token);
}

/// Names that look alike are one account or none: case, composition,
/// invisible and bidirectional characters, mixed scripts and whole-script
/// look-alikes cannot be used to pose as somebody else.
#[tokio::test]
async fn names_that_look_alike_cannot_be_two_accounts() {
    let server = TestServer::start().await;
    let connection = server.connect().await;
    let base = unique("Case");
    let registered = connection
        .call(RegisterRequest {
            name: base.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    // The chosen case is kept for display.
    assert_eq!(registered.user.name, base);
    assert_eq!(
        status_of(
            connection
                .call(RegisterRequest {
                    name: base.to_lowercase(),
                    password: PASSWORD.to_owned()
                })
                .await
        ),
        Status::Conflict
    );
    // Logging in (and finding the user) works in any case.
    let login = server
        .connect()
        .await
        .login(base.to_uppercase().as_str(), PASSWORD)
        .await
        .unwrap();
    assert_eq!(login.user.name, base);

    // Precomposed and decomposed are one name, stored precomposed.
    let cafe = unique("café");
    let stored = connection
        .call(RegisterRequest {
            name: cafe.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(stored.user.name, cafe);
    let decomposed = cafe.replace('é', "e\u{301}");
    assert_ne!(decomposed, cafe);
    assert_eq!(
        status_of(
            connection
                .call(RegisterRequest {
                    name: decomposed.to_owned(),
                    password: PASSWORD.to_owned()
                })
                .await
        ),
        Status::Conflict
    );
    let normalised = connection
        .call(RegisterRequest {
            name: unique("fiance\u{301}"),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    assert!(normalised.user.name.starts_with("fiancé"));

    // Invisible and bidirectional characters are refused outright.
    for refused in [
        format!("b\u{200B}{}", unique("ob")),
        format!("\u{202E}{}", unique("evil")),
        format!("{}\u{2066}", unique("isolate")),
    ] {
        assert_eq!(
            status_of(
                connection
                    .call(RegisterRequest {
                        name: refused.to_owned(),
                        password: PASSWORD.to_owned()
                    })
                    .await
            ),
            Status::BadRequest,
            "{refused:?}"
        );
    }

    // Latin with a Cyrillic letter in it is refused; an all-Cyrillic name
    // that looks like a taken Latin one is taken.
    connection
        .call(RegisterRequest {
            name: "ace".to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            connection
                .call(RegisterRequest {
                    name: "\u{430}ce".to_owned(),
                    password: PASSWORD.to_owned()
                })
                .await
        ),
        Status::BadRequest
    );
    assert_eq!(
        status_of(
            connection
                .call(RegisterRequest {
                    name: "\u{430}\u{441}\u{435}".to_owned(),
                    password: PASSWORD.to_owned()
                })
                .await
        ),
        Status::Conflict
    );
    // Cyrillic names of their own are welcome.
    connection
        .call(RegisterRequest {
            name: unique("Дмитрий"),
            password: PASSWORD.to_owned(),
        })
        .await
        .unwrap();
}
