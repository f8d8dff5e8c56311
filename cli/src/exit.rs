//! Failures, their one-line messages and their exit codes.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | anything else (cannot write the output, internal error) |
//! | 2 | usage: unknown flag, missing argument, invalid id, process id, tag or amount (also a tally add that would overflow), `-p` on a command that acts on a whole queue or pool, a `--ttl` under 200 ms, a `lock`/`claim` command that cannot be run, `serve` off loopback without a token |
//! | 3 | not found: the process is not in the queue, or the queue does not exist |
//! | 4 | wrong type: a counter command on a queue or a tally, and so on |
//! | 5 | contention: other writers kept winning, or the store throttled us |
//! | 6 | the store is unavailable (network, timeout, I/O error) |
//! | 7 | the store is misconfigured (bad URL, not a monotone database, no table, credentials, permissions, feature not built); `serve` cannot listen or read its token file |
//! | 8 | the store holds data monotone cannot read (reported, never overwritten) |
//! | 9 | not acquired: a wait timed out, or `--no-wait` found the place taken (also: another holder holds the process's ticket or the owner's claim) |
//! | 10 | lease lost: the ticket's lease expired or was removed while held |
//! | 11 | exhausted: every candidate of a claim pool is taken |
//! | 12 | version mismatch: a write conditional on a version found another |
//! | 13 | mismatch: the process (owner) is in the queue (holds a claim) with another ticket (claim) than the one asked for: other tags, another `--ttl`, leased vs permanent; nothing was written (leave or release first) |
//!
//! A usage error from clap is one line that ends by naming the help of the
//! command at fault (`see 'monotone queue --help'`). `lock` and `claim --
//! COMMAND` exit as COMMAND did, 126 or 127 (as `env`) when it could not be
//! started.

use std::process::ExitCode;

use monotone::ErrorKind;

pub const OTHER: u8 = 1;
pub const USAGE: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const WRONG_TYPE: u8 = 4;
pub const CONTENTION: u8 = 5;
pub const UNAVAILABLE: u8 = 6;
pub const CONFIG: u8 = 7;
pub const CORRUPT: u8 = 8;
pub const NOT_ACQUIRED: u8 = 9;
pub const LEASE_LOST: u8 = 10;
pub const EXHAUSTED: u8 = 11;
pub const VERSION_MISMATCH: u8 = 12;
pub const MISMATCH: u8 = 13;

/// Why the command failed.
#[derive(Debug)]
pub enum Failure {
    /// clap's outcome of a command line that is not one to run: a usage
    /// error, or `--help` and `--version`, which clap models as errors too
    /// (reported on stdout, with code 0).
    Parse(clap::Error),
    Usage(String),
    Config(String),
    Store(monotone::Error),
    Other(String),
}

impl From<monotone::Error> for Failure {
    fn from(e: monotone::Error) -> Self {
        Failure::Store(e)
    }
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Parse(e) => match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => USAGE,
            },
            Failure::Usage(_) => USAGE,
            Failure::Config(_) => CONFIG,
            Failure::Other(_) => OTHER,
            Failure::Store(e) => match e.kind() {
                ErrorKind::InvalidInput => USAGE,
                ErrorKind::NotFound => NOT_FOUND,
                ErrorKind::WrongType => WRONG_TYPE,
                ErrorKind::Conflict | ErrorKind::Throttled => CONTENTION,
                ErrorKind::Unavailable => UNAVAILABLE,
                ErrorKind::Corrupt => CORRUPT,
                ErrorKind::Config | ErrorKind::PermissionDenied | ErrorKind::Unsupported => CONFIG,
                ErrorKind::Timeout | ErrorKind::Held => NOT_ACQUIRED,
                ErrorKind::LeaseLost => LEASE_LOST,
                ErrorKind::Exhausted => EXHAUSTED,
                ErrorKind::VersionMismatch => VERSION_MISMATCH,
                ErrorKind::Mismatch => MISMATCH,
                _ => OTHER,
            },
        }
    }

    /// The one line printed on stderr.
    pub fn message(&self) -> String {
        let text = match self {
            Failure::Parse(e) => clap_message(e),
            Failure::Usage(m) | Failure::Config(m) | Failure::Other(m) => m.clone(),
            Failure::Store(e) => e.to_string(),
        };
        one_line(&text)
    }

    /// Print the message and give the exit code: the one place where a
    /// failure is printed.
    pub fn report(self) -> ExitCode {
        if let Failure::Parse(e) = self {
            return clap_error(e);
        }
        eprintln!("monotone: error: {}", self.message());
        ExitCode::from(self.code())
    }
}

/// Messages from other layers may hold newlines; stderr gets one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// clap's own outcome: help and version go to stdout with code 0; any
/// usage error becomes one line on stderr with code 2.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    match e.kind() {
        K::DisplayHelp | K::DisplayVersion => {
            // A closed stdout while printing help is not worth reporting.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        K::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A bare `monotone`: show the help, as a usage error.
            eprint!("{}", e.render());
            ExitCode::from(USAGE)
        }
        _ => {
            eprintln!(
                "monotone: error: {}; see '{} --help'",
                clap_message(&e),
                command_path(&e)
            );
            ExitCode::from(USAGE)
        }
    }
}

/// The (sub)command the error is about, as its usage line names it
/// (`monotone queue`, `monotone doc set`), so that the hint names the help
/// that explains it.
fn command_path(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let usage = match e.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(usage)) => usage.to_string(),
        _ => String::new(),
    };
    let usage = usage.trim();
    let usage = usage.strip_prefix("Usage: ").unwrap_or(usage);
    let words: Vec<&str> = usage
        .split_whitespace()
        .take_while(|w| {
            w.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .take_while(|w| !w.starts_with('-'))
        .collect();
    if words.is_empty() {
        "monotone".into()
    } else {
        words.join(" ")
    }
}

/// clap's message without its usage and tip paragraphs, on one line.
fn clap_message(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let text: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let text = text.join(" ");
    text.strip_prefix("error: ").unwrap_or(&text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use monotone::Error;

    #[test]
    fn each_class_has_its_own_code() {
        let code = |k| Failure::Store(Error::new(k, "x")).code();
        let codes = [
            code(ErrorKind::InvalidInput),
            code(ErrorKind::NotFound),
            code(ErrorKind::WrongType),
            code(ErrorKind::Conflict),
            code(ErrorKind::Unavailable),
            code(ErrorKind::Config),
            code(ErrorKind::Corrupt),
            code(ErrorKind::Timeout),
            code(ErrorKind::LeaseLost),
            code(ErrorKind::Exhausted),
            code(ErrorKind::VersionMismatch),
            code(ErrorKind::Mismatch),
        ];
        assert_eq!(codes, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        assert_eq!(code(ErrorKind::Held), NOT_ACQUIRED);
        assert_eq!(code(ErrorKind::Throttled), CONTENTION);
        assert_eq!(code(ErrorKind::PermissionDenied), CONFIG);
    }

    #[test]
    fn clap_errors_become_one_line() {
        use clap::Parser;
        let e =
            crate::cli::Cli::try_parse_from(["monotone", "-i", "t", "tally", "add"]).unwrap_err();
        assert_eq!(
            clap_message(&e),
            "the following required arguments were not provided: <N>"
        );
    }

    #[test]
    fn hints_name_the_help_of_the_command_at_fault() {
        let path = |line: &[&str]| match crate::cli::parse_from(line.iter().copied()) {
            Err(Failure::Parse(e)) => command_path(&e),
            other => panic!("{line:?}: {other:?}"),
        };
        assert_eq!(path(&["monotone", "--bogus"]), "monotone");
        assert_eq!(
            path(&["monotone", "-i", "q", "queue", "--bogus"]),
            "monotone queue"
        );
        assert_eq!(
            path(&["monotone", "-i", "q", "counter"]),
            "monotone counter"
        );
        assert_eq!(
            path(&["monotone", "-i", "d", "doc", "set", "--if-version", "x"]),
            "monotone doc set"
        );
    }

    #[test]
    fn messages_are_one_line() {
        let f = Failure::Other("first\n  second  and\r\nthird\n".into());
        assert_eq!(f.message(), "first second  and third");
    }
}
