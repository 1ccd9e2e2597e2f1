//! Interactive mode: a line editor with history and tab completion;
//! incoming messages are printed above the prompt through rustyline's
//! external printer, which redraws the half-typed line underneath.

use std::borrow::Cow;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use crate::command::{self, Command};
use anyhow::Context as _;
use chat_client::Client;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};

use crate::shell::{Directory, Flow, Shell, Sink};

/// Completion from the live directory, and masking while a password is
/// typed.
struct ChatHelper {
    directory: Option<Arc<Mutex<Directory>>>,
    masking: bool,
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        if self.masking {
            return Ok((pos, Vec::new()));
        }
        let names = self.directory.as_ref().map_or_else(Vec::new, |directory| {
            directory
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .completion_names()
        });
        let (start, candidates) = command::complete(line, pos, &names);
        let pairs = candidates
            .into_iter()
            .map(|candidate| Pair {
                display: candidate.clone(),
                replacement: format!("{candidate} "),
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}

impl Highlighter for ChatHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.masking {
            // Blanks of the same width keep the cursor where it belongs
            // while showing nothing of the password.
            Cow::Owned(" ".repeat(line.chars().count()))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _forced: bool) -> bool {
        self.masking
    }
}

impl Validator for ChatHelper {}

impl Helper for ChatHelper {}

type ChatEditor = Editor<ChatHelper, DefaultHistory>;

fn new_editor(directory: Option<Arc<Mutex<Directory>>>) -> anyhow::Result<ChatEditor> {
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .completion_type(rustyline::CompletionType::List)
        .max_history_size(1000)
        .context("bad editor configuration")?
        .build();
    let mut editor = ChatEditor::with_config(config).context("cannot start the line editor")?;
    editor.set_helper(Some(ChatHelper {
        directory,
        masking: false,
    }));
    Ok(editor)
}

/// Reads a password without showing it.
fn read_password(editor: &mut ChatEditor, prompt: &str) -> anyhow::Result<String> {
    if let Some(helper) = editor.helper_mut() {
        helper.masking = true;
    }
    // Masking works through the highlighter, which rustyline only applies
    // when it believes colours are wanted.
    rustyline::config::Configurer::set_color_mode(editor, rustyline::ColorMode::Forced);
    let result = editor.readline(prompt);
    rustyline::config::Configurer::set_color_mode(editor, rustyline::ColorMode::Enabled);
    if let Some(helper) = editor.helper_mut() {
        helper.masking = false;
    }
    result.context("no password read")
}

/// Asks for a password on the terminal (for the one-shot subcommands).
///
/// # Errors
/// When the terminal cannot be read.
pub fn prompt_password(prompt: &str) -> anyhow::Result<String> {
    let mut editor = new_editor(None)?;
    read_password(&mut editor, prompt)
}

/// Whether the line carries a password, and so stays out of the history.
fn is_secret(command: &Command) -> bool {
    matches!(
        command,
        Command::Register {
            password: Some(_),
            ..
        } | Command::Login {
            password: Some(_),
            ..
        }
    )
}

/// Runs the interactive session until `quit` or end of input.
///
/// # Errors
/// When the terminal cannot be used.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    client: Client,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut editor = new_editor(None)?;
    let printer = Mutex::new(
        editor
            .create_external_printer()
            .context("cannot print above the prompt")?,
    );
    let events: Sink = Arc::new(move |line: String| {
        let mut printer = printer.lock().unwrap_or_else(PoisonError::into_inner);
        if printer.print(format!("{line}\n")).is_err() {
            // The editor is gone (shutting down): plain stdout still works.
            println!("{line}");
        }
    });
    let out: Sink = Arc::new(|line: String| println!("{line}"));
    let mut shell = {
        let _runtime = runtime.enter();
        Shell::new(client, json, out, events)
    };
    if let Some(helper) = editor.helper_mut() {
        helper.directory = Some(shell.directory());
    }
    println!("connected. `register NAME`, `login NAME`, `help` or `quit`.");
    loop {
        let prompt = shell
            .directory()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .me()
            .map_or_else(|| "> ".to_owned(), |me| format!("{}> ", me.name));
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            // Ctrl-C abandons the line, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error).context("cannot read the terminal"),
        };
        let command = match command::parse(&line) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(error) => {
                println!("error: {error}");
                continue;
            }
        };
        if !is_secret(&command) {
            let _ = editor.add_history_entry(line.as_str());
        }
        let command = match command {
            Command::Register {
                name,
                password: None,
            } => match read_password(&mut editor, "password: ") {
                Ok(password) => Command::Register {
                    name,
                    password: Some(password),
                },
                Err(_) => continue,
            },
            Command::Login {
                user,
                password: None,
            } => match read_password(&mut editor, "password: ") {
                Ok(password) => Command::Login {
                    user,
                    password: Some(password),
                },
                Err(_) => continue,
            },
            other => other,
        };
        let word = line.split_whitespace().next().unwrap_or("").to_owned();
        match runtime.block_on(shell.execute(command)) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => break,
            Err(failure) => shell.report(&word, &failure, &|text| println!("{text}")),
        }
    }
    runtime.block_on(shell.close());
    Ok(ExitCode::SUCCESS)
}
