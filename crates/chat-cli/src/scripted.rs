//! Scripted mode: commands from stdin, one per line.

use std::process::ExitCode;
use std::sync::Arc;

use crate::command::{self, Command};
use chat_client::Client;
use tokio::io::AsyncBufReadExt;

use crate::shell::{Failure, Flow, Shell, Sink};

fn stdout_sink() -> Sink {
    Arc::new(|line: String| println!("{line}"))
}

/// Fills in a password left off a `register` or `login` line from
/// `CHAT_PASSWORD`: a script has nobody to ask.
fn with_password(command: Command) -> Result<Command, Failure> {
    let from_env = || {
        std::env::var("CHAT_PASSWORD").map_err(|_| Failure {
            status: None,
            message: "no password given on the line or in CHAT_PASSWORD".to_owned(),
        })
    };
    Ok(match command {
        Command::Register {
            name,
            password: None,
        } => Command::Register {
            name,
            password: Some(from_env()?),
        },
        Command::Login {
            user,
            password: None,
        } => Command::Login {
            user,
            password: Some(from_env()?),
        },
        other => other,
    })
}

/// Runs the commands on stdin. The exit status is non-zero if any command
/// failed; without `keep_going` the first failure ends the run.
pub async fn run(client: Client, json: bool, keep_going: bool) -> ExitCode {
    let mut shell = Shell::new(client, json, stdout_sink(), stdout_sink());
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut failed = false;
    let mut number = 0u64;
    let stderr = |line: String| eprintln!("{line}");
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(error) => {
                eprintln!("chat: cannot read stdin: {error}");
                failed = true;
                break;
            }
        };
        number += 1;
        let word = line.split_whitespace().next().unwrap_or("").to_owned();
        let outcome = match command::parse(&line) {
            Ok(None) => continue,
            Ok(Some(command)) => match with_password(command) {
                Ok(command) => shell.execute(command).await,
                Err(failure) => Err(failure),
            },
            Err(error) => Err(Failure {
                status: None,
                message: error.0,
            }),
        };
        match outcome {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => break,
            Err(failure) => {
                failed = true;
                let tagged = |text: String| stderr(format!("chat: line {number}: {text}"));
                shell.report(&word, &failure, &tagged);
                if !keep_going {
                    break;
                }
            }
        }
    }
    shell.close().await;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs a single command (the one-shot subcommands).
///
/// # Errors
/// When the command fails.
pub async fn run_one(client: Client, json: bool, command: Command) -> anyhow::Result<ExitCode> {
    let mut shell = Shell::new(client, json, stdout_sink(), stdout_sink());
    let outcome = shell.execute(command).await;
    shell.close().await;
    match outcome {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(failure) => anyhow::bail!(failure.message),
    }
}
