//! The web client (`web/` at the repository root), tested as a browser
//! would use it:
//!
//! - its protocol module against the byte examples of `docs/protocol.md`
//!   (`node --test web/test`);
//! - a type check of every module from its JSDoc annotations
//!   (`tsc --noEmit -p web`);
//! - the browser suite (`node --test web/e2e`): Chromium driven by
//!   playwright-core against real `chatd` processes of this build, as two
//!   and three people would use the page. Screenshots go to
//!   `target/web-screenshots/`.
//!
//! They need Node.js, `npm ci` run in `web/` and, for the browser suite,
//! Chromium (`/usr/bin/chromium`, or `CHATD_CHROMIUM`). A missing piece
//! skips the test with a `SKIPPED:` line, unless
//! `CHATD_TEST_REQUIRE_SERVICES=1` (as in CI), which makes it a failure.
//! The line is written to the process's standard error directly, not
//! through the test harness's capture, so a plain `cargo test` shows it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let _ = writeln!(
        std::io::stderr().lock(),
        "\nSKIPPED: {suite} (missing {what})\n"
    );
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
fn the_protocol_module_decodes_the_documented_bytes() {
    if !available("web client protocol tests", &missing(false, false)) {
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
