//! The `chat` binary over TLS against a real chatd with a certificate from
//! a private CA: `--tls` and `--ca`, a CA that did not sign the server's
//! certificate, and `--ca` where there is no TLS.

#[path = "../../chat-server/tests/common/tls.rs"]
mod tls;

use chat_server::Config;

/// Runs `chat` with `args` and nothing on stdin (so it connects, has no
/// commands to run, and exits); returns whether it succeeded and its stderr.
async fn run_chat(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(args)
        .env_remove("CHAT_SERVER")
        .env_remove("CHAT_CA")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("chat runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn chat_speaks_tls_with_tls_and_ca_flags() {
    let dir = tempfile::tempdir().unwrap();
    let ca = tls::TestCa::new();
    let (cert, key) = ca.issue(dir.path(), "server");
    let ca_file = ca.write_ca(dir.path(), "ours");
    let stranger_file = tls::TestCa::new().write_ca(dir.path(), "stranger");
    let server = chat_server::start(Config {
        listen: "127.0.0.1:0".to_owned(),
        http_listen: String::new(),
        store: format!("sqlite://{}", dir.path().join("chat.db").display()),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Config::default()
    })
    .await
    .expect("chatd starts");
    let address = format!("localhost:{}", server.local_addr().port());
    let ca = ca_file.to_str().unwrap();

    let (ok, stderr) = run_chat(&["--server", &address, "--tls", "--ca", ca]).await;
    assert!(ok, "{stderr}");
    let url = format!("tls://{address}");
    let (ok, stderr) = run_chat(&["--server", &url, "--ca", ca]).await;
    assert!(ok, "{stderr}");

    let stranger = stranger_file.to_str().unwrap();
    let (ok, stderr) = run_chat(&["--server", &url, "--ca", stranger]).await;
    assert!(!ok);
    // Both test CAs have the same (empty) name, so the client may tell
    // "unknown issuer" or "named issuer, bad signature"; either way, no.
    assert!(
        stderr.contains("TLS handshake failed")
            && (stderr.contains("unknown issuer") || stderr.contains("not signed by it")),
        "{stderr}"
    );

    let (ok, stderr) = run_chat(&["--server", &address, "--ca", ca]).await;
    assert!(!ok);
    assert!(stderr.contains("--ca is for TLS"), "{stderr}");
    server.shutdown().await.unwrap();
}
