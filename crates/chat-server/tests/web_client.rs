//! The web client (`web/` at the repository root), tested as a browser
//! would use it:
//!
//! - its protocol module against the byte examples of `docs/protocol.md`,
//!   and its client's delivery rules without a server
//!   (`node --test web/test`);
//! - a type check of every module from its JSDoc annotations
//!   (`tsc --noEmit -p web`);
//! - the browser suite (`node --test web/e2e`): Chromium driven by
//!   playwright-core against real `chatd` processes of this build, as two
//!   and three people would use the page. Screenshots go to
//!   `target/web-screenshots/`.
//!
//! The files themselves are checked without any of that: served from the
//! binary with their content types and the strict headers, and nothing
//! else from `web/`.
//!
//! The rest needs Node.js, `npm ci` run in `web/` and, for the browser suite,
//! Chromium (`/usr/bin/chromium`, or `CHATD_CHROMIUM`). A missing piece
//! skips the test with a `SKIPPED:` line, unless
//! `CHATD_TEST_REQUIRE_SERVICES=1` (as in CI), which makes it a failure.
//! The line is written to the process's standard error directly, not
//! through the test harness's capture, so a plain `cargo test` shows it.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `web/` directory.
fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../web")
        .canonicalize()
        .expect("web/ exists")
}

/// Whether a missing tool must fail the test rather than skip it.
fn required() -> bool {
    std::env::var("CHATD_TEST_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// Skips (returns `false`) with a visible line, or fails when required.
fn available(suite: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    assert!(
        !required(),
        "{suite} needs {what} (CHATD_TEST_REQUIRE_SERVICES=1)"
    );
    // Straight to the file descriptor: `eprintln!` would be captured and
    // shown only for a failing test.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {suite} needs {what}");
    false
}

/// The Node.js executable, if one runs.
fn node() -> Option<String> {
    let node = std::env::var("CHATD_NODE").unwrap_or_else(|_| "node".to_owned());
    let works = Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    works.then_some(node)
}

/// The pieces a suite needs that are not there.
fn missing(needs_modules: bool, needs_browser: bool) -> Vec<String> {
    let mut missing = Vec::new();
    if node().is_none() {
        missing.push("Node.js (node on PATH)".to_owned());
    }
    if needs_modules {
        for module in ["typescript", "playwright-core", "@axe-core/playwright"] {
            if !web_dir().join("node_modules").join(module).is_dir() {
                missing.push(format!("web/node_modules/{module} (run `npm ci` in web/)"));
            }
        }
    }
    if needs_browser && !chromium().is_file() {
        missing.push(format!("Chromium at {}", chromium().display()));
    }
    missing
}

fn chromium() -> PathBuf {
    std::env::var_os("CHATD_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Runs a command in `web/`; fails the test with its output unless it
/// succeeds.
fn run(what: &str, command: &mut Command) {
    let output = command
        .current_dir(web_dir())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Shown with --nocapture: the test runner's summary lines.
    for line in stdout.lines().filter(|line| line.starts_with("# ")) {
        println!("{what}: {line}");
    }
}

#[test]
fn the_protocol_and_client_modules_pass_their_unit_tests() {
    if !available("web client unit tests", &missing(false, false)) {
        return;
    }
    run(
        "node --test web/test",
        Command::new(node().unwrap()).args(["--test", "test/"]),
    );
}

#[test]
fn the_web_client_type_checks() {
    if !available("web client type check", &missing(true, false)) {
        return;
    }
    run(
        "tsc --noEmit -p web",
        Command::new(node().unwrap()).args([
            "node_modules/typescript/bin/tsc",
            "--noEmit",
            "-p",
            ".",
        ]),
    );
}

#[test]
fn the_browser_suite_passes_in_chromium() {
    if !available("browser suite", &missing(true, true)) {
        return;
    }
    let chatd = Path::new(env!("CARGO_BIN_EXE_chatd"));
    // target/<profile>/chatd: screenshots go to target/web-screenshots.
    let target = chatd
        .parent()
        .and_then(Path::parent)
        .expect("chatd is in target/<profile>/");
    run(
        "node --test web/e2e",
        Command::new(node().unwrap())
            .args(["--test", "--test-concurrency=1", "e2e/"])
            .env("CHATD_BIN", chatd)
            .env("CHATD_CHROMIUM", chromium())
            .env("CHATD_SCREENSHOTS", target.join("web-screenshots"))
            // The files built into this chatd are the ones under test.
            .env_remove("CHATD_WEB_ROOT"),
    );
}

/// One GET over a fresh connection: the status, the head (lower case) and
/// the body.
async fn get(http: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(http).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn the_client_is_served_from_the_binary_with_its_content_types() {
    let server = TestServer::start().await;
    let http = server.http_addr();
    let (status, head, body) = get(http, "/").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        body.contains(r#"<script type="module" src="/src/main.js">"#),
        "{body}"
    );
    // No inline script or style anywhere in the page: the CSP forbids them.
    assert!(!body.contains("<script>") && !body.contains("<style") && !body.contains(" style="));
    for header in [
        "content-security-policy: default-src 'self'; connect-src 'self';",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(header), "missing {header} in {head}");
    }
    for (path, content_type) in [
        ("/app.css", "text/css; charset=utf-8"),
        ("/icon.svg", "image/svg+xml"),
        ("/src/main.js", "text/javascript; charset=utf-8"),
        ("/src/protocol.js", "text/javascript; charset=utf-8"),
        ("/src/ui/chat.js", "text/javascript; charset=utf-8"),
    ] {
        let (status, head, body) = get(http, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{path}: {head}"
        );
        assert!(!body.is_empty(), "{path}");
    }
    for path in [
        "/package.json",
        "/tsconfig.json",
        "/e2e/harness.mjs",
        "/test/protocol.test.mjs",
        "/node_modules/playwright-core/package.json",
        "/src/../package.json",
        "/src/missing.js",
        "/index.htm",
    ] {
        let (status, _, body) = get(http, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("not_found"), "{path}: {body}");
    }
    // The other routes are still theirs.
    assert_eq!(get(http, "/healthz").await.0, 200);
    assert_eq!(get(http, "/readyz").await.0, 200);
    assert_eq!(get(http, "/metrics").await.0, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_web_root_serves_a_directory_instead() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>work in progress</p>").unwrap();
    std::fs::write(dir.path().join("src/main.js"), "export {};").unwrap();
    let root = dir.path().to_owned();
    let server = TestServer::start_with(move |config| config.web_root = Some(root)).await;
    let http = server.http_addr();
    assert_eq!(get(http, "/").await.2, "<p>work in progress</p>");
    assert_eq!(get(http, "/src/main.js").await.2, "export {};");
    // Only what the directory holds: nothing falls back to the built-in copy.
    assert_eq!(get(http, "/app.css").await.0, 404);
    server.shutdown().await;
}
