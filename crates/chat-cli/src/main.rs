//! `chat`: the chatd terminal client.
//!
//! Interactive (a line editor with history and completion) when stdin is a
//! terminal; scripted (one command per line, `--json` output for machines)
//! otherwise. The command language is `command.rs`; what is printed,
//! `render.rs` (both pure, and unit-tested here).

mod command;
mod interactive;
mod render;
mod scripted;
mod shell;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::command::Command;
use anyhow::Context;
use chat_client::{Client, ClientOptions, ClientTls, ServerAddress};
use clap::{Parser, Subcommand};

/// Chat with people on a chatd server.
///
/// With a terminal on stdin, `chat` is interactive: type `help` for the
/// commands. Otherwise it reads one command per line from stdin (the same
/// commands) and exits non-zero when one fails.
///
/// The server is reached over plain TCP (`host:port`), TLS
/// (`tls://host:port`, or `host:port` with `--tls`), or WebSocket
/// (`ws://host:port/ws`, or `wss://host:port/ws` over TLS). TLS checks the
/// server's certificate against the host name (or IP address) in the
/// address, trusting the system's root certificates, or with `--ca FILE`
/// only the CA in that file (a private CA, or a self-signed certificate).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The server address: `host:port`, `tls://host:port`,
    /// `ws://host:port[/path]` or `wss://host:port[/path]` (the WebSocket
    /// path defaults to `/ws`). Several, separated by commas, are tried in
    /// turn when reconnecting, each over its own transport.
    #[arg(long, env = "CHAT_SERVER", default_value = "127.0.0.1:7000")]
    server: String,

    /// Use TLS where the address does not say so: `host:port` becomes
    /// `tls://host:port` and `ws://` becomes `wss://`.
    #[arg(long)]
    tls: bool,

    /// Trust only the CA certificates in this PEM file for TLS (a private
    /// CA, or the server's self-signed certificate) instead of the system's
    /// root certificates.
    #[arg(long, env = "CHAT_CA", value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Print every response and event as one JSON line (for scripts).
    #[arg(long)]
    json: bool,

    /// In scripted mode, go on after a failed command (the exit status is
    /// still non-zero at the end).
    #[arg(long)]
    keep_going: bool,

    /// Show times in UTC instead of the local time zone.
    #[arg(long)]
    utc: bool,

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
    render::set_utc(args.utc);
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

/// The client's settings from `--server`, `--tls` and `--ca`.
fn client_options(args: &Args) -> anyhow::Result<ClientOptions> {
    let mut addresses = Vec::new();
    for text in args.server.split(',').map(str::trim) {
        if text.is_empty() {
            continue;
        }
        let mut address = ServerAddress::parse(text)?;
        if args.tls {
            address = address.with_tls();
        }
        addresses.push(address);
    }
    let mut options =
        ClientOptions::with_addresses(addresses.iter().map(ToString::to_string).collect());
    if let Some(ca) = &args.ca {
        // A CA for a connection that never uses TLS is a mistake worth
        // stopping for: the user expects encryption they would not get.
        if !addresses.iter().any(|address| address.scheme().uses_tls()) {
            anyhow::bail!("--ca is for TLS: give a tls:// or wss:// address, or add --tls");
        }
        options.connection.tls = Some(ClientTls::from_ca_file(ca)?);
    }
    Ok(options)
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let options = client_options(&args)?;
    let client = runtime.block_on(Client::connect(options))?;
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
