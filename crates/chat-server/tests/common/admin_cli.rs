//! Running the real `chatd admin` binary from a test, as an operator would.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The admin token the tests' nodes and commands share.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// How long one command may take (a debug build hashing a password
/// included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// `chatd admin` pointed at one store and, optionally, at nodes.
#[derive(Debug, Clone)]
pub struct AdminCli {
    store: String,
    nodes: Vec<String>,
    token: Option<String>,
    proxy_protocol: bool,
}

/// What one command did.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status was 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Outcome {
    /// Asserts the command succeeded and returns it.
    #[track_caller]
    pub fn ok(self) -> Outcome {
        assert!(
            self.success,
            "the command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts the command failed with one line on standard error that
    /// contains `reason`, and nothing on standard output.
    #[track_caller]
    pub fn failed_with(self, reason: &str) {
        assert!(!self.success, "the command succeeded: {}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line of reason: {:?}", self.stderr);
        assert!(
            lines[0].starts_with("chatd admin: ") && lines[0].contains(reason),
            "{:?} does not say {reason:?}",
            lines[0]
        );
        assert!(
            self.stdout.is_empty(),
            "nothing on stdout: {:?}",
            self.stdout
        );
    }

    /// Its standard output as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {:?}", self.stdout))
    }
}

impl AdminCli {
    /// Commands on the store at `store` (a URL), with no node to ask.
    pub fn new(store: &str) -> AdminCli {
        AdminCli {
            store: store.to_owned(),
            nodes: Vec::new(),
            token: None,
            proxy_protocol: false,
        }
    }

    /// The same, asking the node whose HTTP listener is at `http` with the
    /// test admin token.
    pub fn with_node(mut self, http: &str) -> AdminCli {
        self.nodes.push(http.to_owned());
        self.token = Some(ADMIN_TOKEN.to_owned());
        self
    }

    /// The same, with no admin token (as an operator whose configuration
    /// has none).
    pub fn without_token(mut self) -> AdminCli {
        self.token = None;
        self
    }

    /// The same, for nodes that expect a PROXY protocol header.
    pub fn with_proxy_protocol(mut self) -> AdminCli {
        self.proxy_protocol = true;
        self
    }

    /// Runs `chatd admin ARGS` with nothing on standard input.
    pub async fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_input(args, "").await
    }

    /// Runs `chatd admin ARGS` with `input` on standard input (not a
    /// terminal, as in a script).
    pub async fn run_with_input(&self, args: &[&str], input: &str) -> Outcome {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatd"));
        command.arg("admin").arg("--store").arg(&self.store);
        // Nothing of the test's environment may configure the command.
        for variable in [
            "CHATD_CONFIG",
            "CHATD_STORE",
            "CHATD_ADMIN_TOKEN",
            "CHATD_HTTP_LISTEN",
        ] {
            command.env_remove(variable);
        }
        if let Some(token) = &self.token {
            command.arg("--admin-token").arg(token);
        }
        if self.nodes.is_empty() {
            // No node: the default HTTP address must not reach some other
            // test's node either.
            command.arg("--http-listen").arg("");
        }
        if self.proxy_protocol {
            command.arg("--proxy-protocol");
        }
        for node in &self.nodes {
            command.arg("--http").arg(node);
        }
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("chatd runs");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("writes stdin");
        drop(stdin);
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("chatd admin {args:?} did not finish in time"))
            .expect("chatd finishes");
        Outcome {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
