//! What ships in `deploy/` for running chatd as a service: the example
//! configuration is exactly what the code generates, the systemd unit
//! passes `systemd-analyze verify` (where that tool exists), and
//! `chatd --version` names the build.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use chat_proto::{PingRequest, RegisterRequest};
use chat_server::Config;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn the_example_configuration_is_what_the_code_generates() {
    let committed = std::fs::read_to_string(deploy_dir().join("chatd.toml")).unwrap();
    assert!(
        committed == Config::example_toml(),
        "deploy/chatd.toml is stale: regenerate it with \
         `chatd --print-example-config > deploy/chatd.toml`"
    );
    let printed = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .arg("--print-example-config")
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert_eq!(String::from_utf8(printed.stdout).unwrap(), committed);
    // And chatd starts from it: it parses into the defaults.
    let parsed: Config = toml::from_str(&committed).unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn version_names_the_release_and_the_commit() {
    let output = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let version = String::from_utf8(output.stdout).unwrap();
    let prefix = format!("chatd {} (", env!("CARGO_PKG_VERSION"));
    let commit = version
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("unexpected version line {version:?}"));
    assert!(
        commit == "unknown"
            || (!commit.is_empty() && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit:?}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
    else {
        // Past the harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the_systemd_unit_verifies needs systemd-analyze"
        );
        return;
    };
    // The unit names the installed binary; verify checks it exists, so the
    // test's copy points at the binary under test.
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/chatd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/chatd --config /etc/chatd/chatd.toml"));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("chatd.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/chatd", env!("CARGO_BIN_EXE_chatd")),
    )
    .unwrap();
    let verified = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
}

/// A full disk under the log: every line chatd writes to stderr fails. It
/// must go on serving (the log is lost, not the node).
#[tokio::test]
async fn chatd_serves_on_when_its_log_cannot_be_written() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        let _ = writeln!(std::io::stderr(), "SKIPPED: no /dev/full on this system");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["--listen", &addr, "--http-listen", "", "--log", "debug"])
        .arg("--store")
        .arg(format!("sqlite://{}", dir.path().join("chat.db").display()))
        .stderr(full)
        .spawn()
        .expect("chatd starts");
    let mut connection = None;
    for _ in 0..100 {
        if let Ok(connected) = chat_client::Connection::connect(addr.as_str()).await {
            connection = Some(connected);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let connection = connection.expect("chatd listens");
    connection
        .call(RegisterRequest {
            name: "logless".to_owned(),
            password: "correct horse battery".to_owned(),
        })
        .await
        .expect("registers");
    connection
        .login("logless", "correct horse battery")
        .await
        .expect("logs in");
    connection
        .call(PingRequest {})
        .await
        .expect("still serving");
    assert!(
        child.try_wait().unwrap().is_none(),
        "chatd is still running"
    );
    let _ = child.kill();
    let _ = child.wait();
}
