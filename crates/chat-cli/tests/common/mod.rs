//! Shared by the `chat` binary's tests: everything the client library's
//! tests share (a real chatd in-process, users and friends), and a driver
//! for the `chat` binary over pipes.

#![allow(dead_code)]

#[path = "../../../chat-client/tests/common/mod.rs"]
mod client;

pub use client::*;

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

/// The path of the `chat` binary under test.
pub const CHAT: &str = env!("CARGO_BIN_EXE_chat");

/// A `chat` process in scripted mode, fed line by line, its stdout read as
/// it comes.
pub struct ChatProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stdout line read so far, for failure messages.
    pub seen: Vec<String>,
}

impl ChatProcess {
    /// Starts `chat --server ADDR` with `args`.
    pub fn spawn(addr: SocketAddr, args: &[&str]) -> ChatProcess {
        let mut child = tokio::process::Command::new(CHAT)
            .arg("--server")
            .arg(addr.to_string())
            .args(args)
            .env_remove("CHAT_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chat starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        ChatProcess {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Types one command.
    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to chat");
        stdin.flush().await.expect("flush");
    }

    /// Reads stdout until a line satisfies `matches`; panics with everything
    /// seen after [`PATIENCE`].
    pub async fn expect_line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            match line {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!("chat exited before {what}; saw {:#?}", self.seen),
                Err(_) => panic!("no {what} within {PATIENCE:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Reads stdout until a JSON line satisfies `matches`.
    pub async fn expect_json(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let line = self
            .expect_line(what, |line| {
                serde_json::from_str::<Value>(line).is_ok_and(|value| matches(&value))
            })
            .await;
        serde_json::from_str(&line).expect("json")
    }

    /// Waits for the successful JSON response to `command`; panics on its
    /// error response.
    pub async fn expect_ok(&mut self, command: &str) -> Value {
        let value = self
            .expect_json(&format!("a response to {command}"), |value| {
                value["type"] == "response" && value["command"] == command
            })
            .await;
        assert_eq!(value["ok"], true, "{command} failed: {value}");
        value
    }

    /// Closes stdin and waits for the exit; returns the status, the rest of
    /// stdout and all of stderr.
    pub async fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        drop(self.stdin.take());
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = tokio::time::timeout(PATIENCE, pipe.read_to_string(&mut stderr)).await;
        }
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("chat exits")
            .expect("wait for chat");
        let mut rest = std::mem::take(&mut self.seen);
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await
        {
            rest.push(line);
        }
        (status, rest, stderr)
    }
}

/// Runs `chat` with `args` over a whole script; returns the status, stdout
/// lines and stderr.
pub async fn run_script(
    addr: SocketAddr,
    args: &[&str],
    script: &str,
) -> (ExitStatus, Vec<String>, String) {
    let mut process = ChatProcess::spawn(addr, args);
    for line in script.lines() {
        process.send(line).await;
    }
    process.finish().await
}
