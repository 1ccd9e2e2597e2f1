//! `chat`: the chatd terminal client.
//!
//! Interactive (a line editor with history and completion) when stdin is a
//! terminal; scripted (one command per line, `--json` output for machines)
//! otherwise. The command language is `chat_client::command`.

mod interactive;
mod scripted;
mod shell;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use chat_client::command::Command;
use chat_client::{Client, ClientOptions};
use clap::{Parser, Subcommand};

/// Chat with people on a chatd server.
///
/// With a terminal on stdin, `chat` is interactive: type `help` for the
/// commands. Otherwise it reads one command per line from stdin (the same
/// commands) and exits non-zero when one fails.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The server address, `host:port`; several, separated by commas, are
    /// tried in turn when reconnecting.
    #[arg(long, env = "CHAT_SERVER", default_value = "127.0.0.1:7000")]
    server: String,

    /// Print every response and event as one JSON line (for scripts).
    #[arg(long)]
    json: bool,

    /// In scripted mode, go on after a failed command (the exit status is
    /// still non-zero at the end).
    #[arg(long)]
    keep_going: bool,

    #[command(subcommand)]
    command: Option<OneShot>,
}

/// Single commands run without entering a session.
#[derive(Debug, Subcommand)]
enum OneShot {
    /// Create an account; the password comes from `CHAT_PASSWORD` or a
    /// prompt.
    Register {
        /// The account name.
        name: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Logs go to stderr and are quiet by default: the terminal belongs to
    // the conversation. `RUST_LOG=chat_client=debug` shows the client's work.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chat: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let addresses: Vec<String> = args
        .server
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(str::to_owned)
        .collect();
    let client = runtime.block_on(Client::connect(ClientOptions::with_addresses(addresses)))?;
    let interactive = std::io::stdin().is_terminal();
    match args.command {
        Some(OneShot::Register { name }) => {
            let password = match std::env::var("CHAT_PASSWORD") {
                Ok(password) => password,
                Err(_) if interactive => interactive::prompt_password("password: ")?,
                Err(_) => anyhow::bail!("set CHAT_PASSWORD or run on a terminal to be asked"),
            };
            let command = Command::Register {
                name,
                password: Some(password),
            };
            runtime.block_on(scripted::run_one(client, args.json, command))
        }
        None if interactive => interactive::run(&runtime, client, args.json),
        None => Ok(runtime.block_on(scripted::run(client, args.json, args.keep_going))),
    }
}
