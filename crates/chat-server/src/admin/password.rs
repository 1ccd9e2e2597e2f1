//! Reading a new password for `chatd admin users create` and
//! `reset-password`: typed twice without echo at a terminal, or one line
//! from standard input for scripts.

use std::io::{BufRead, IsTerminal, Write};

use crate::service::validate;

/// Reads a new password for `name` and checks it against the password
/// rules.
///
/// # Errors
/// A one-line reason: the two entries differ, the input ended, or the
/// password breaks a rule.
pub fn read_new_password(name: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden(&format!("New password for {name}: "))?;
        let second = prompt_hidden("Again: ")?;
        if first != second {
            return Err("the two passwords differ".to_owned());
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|error| format!("cannot read the password from standard input: {error}"))?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            return Err("no password on standard input (one line expected)".to_owned());
        }
        password
    };
    validate::password(&password).map_err(|error| error.message)?;
    Ok(password)
}

/// Asks on standard error and reads one line from the terminal with echo
/// off.
fn prompt_hidden(prompt: &str) -> Result<String, String> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let line = {
        let _quiet = EchoOff::new();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|error| format!("cannot read the password: {error}"))?;
        line
    };
    // The Enter the operator typed was not echoed either.
    let _ = writeln!(stderr);
    if line.is_empty() {
        return Err("no password given".to_owned());
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Turns the terminal's echo off while it lives, and back on when dropped
/// (also when reading fails).
struct EchoOff {
    #[cfg(unix)]
    saved: Option<rustix::termios::Termios>,
}

impl EchoOff {
    #[cfg(unix)]
    fn new() -> EchoOff {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(saved) = &saved {
            let mut quiet = saved.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
        }
        EchoOff { saved }
    }

    #[cfg(not(unix))]
    fn new() -> EchoOff {
        EchoOff {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}
