//! The command line: the global flags ([`Cli`]), the list of commands
//! ([`Command`]) and [`parse`]. Each command's own arguments are in its
//! file beside the code that runs them (`commands/<name>.rs`, `serve/`).
//! monotone 0.4's flags and commands are kept exactly; `--store`, `lock`,
//! `doc`, `tally`, `claim` and `serve` are new.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use monotone::Store;

use crate::commands::claim::{self, ClaimArgs};
use crate::commands::completions::{CompletionsArgs, ManArgs};
use crate::commands::counter::{self, CounterArgs};
use crate::commands::doc::{self, DocAction, DocArgs};
use crate::commands::lock::{self, LockArgs};
use crate::commands::queue::{self, QueueArgs};
use crate::commands::tally::{self, TallyArgs};
use crate::commands::{print, Output};
use crate::exit::Failure;
use crate::serve::ServeArgs;

const ABOUT: &str = "Atomic counters, queues, locks, claim pools, tallies and shared JSON \
documents for configuration management in distributed systems, from the shell or over HTTP";

// Lines of at most 79 characters, so that no terminal wraps them.
const STORE_HELP: &str = "\
Choosing the store:
  --store URL, else the MONOTONE_STORE environment variable:
    sqlite:PATH    a SQLite file shared by the processes of this host
    memory:        this process only (for trying things out)
    dynamodb://TABLE?region=R&endpoint=URL
                   a DynamoDB table (region and endpoint optional)
  -r/--region or -t/--table select DynamoDB as in monotone 0.4 (table
  Counters unless -t; region from -r, else the AWS configuration, else
  eu-west-1). With none of these, the store is the SQLite file
  $XDG_DATA_HOME/monotone/monotone.db
  (else ~/.local/share/monotone/monotone.db), created on first use.

Output is one JSON document on stdout (doc watch: one JSON line per change).
On failure nothing is printed on stdout, one line goes to stderr, and the
exit code says why:
   0  success (also when stdout was closed early, as by head)
   1  anything else
   2  usage or invalid input; nothing was changed
   3  not found
   4  wrong type: the id holds another kind of item
   5  contention or throttling
   6  store unavailable
   7  store misconfigured
   8  corrupt data in the store
   9  not acquired in time (queue wait, lock, claim --timeout)
  10  lease lost
  11  every candidate of a claim pool is taken
  12  --if-version found another version (stderr names it)
  13  joined or claimed again asking for another ticket or claim (other
      tags, another --ttl): nothing was written; leave or release first
lock and claim -- COMMAND exit as COMMAND did (see their --help).

Examples:
  monotone -i mycounter counter next
  monotone -i myzkcluster queue -p $(hostname -f) join | jq .ticket.counter
  monotone -i leader queue -p $(hostname -f) join --ttl 15s
  monotone -i leader queue -p $(hostname -f) wait --timeout 5m
  monotone -i nightly-report lock --no-wait -- ./report.sh
  echo '{\"globs\": [\"/usr/sbin/*\"]}' | monotone -i agent-config doc set
  monotone -i agent-config doc watch --from-version 0 | jq -c .value
  monotone -i gpu-quota tally add -- -3      (or: tally add --by -3)
  monotone -i myzk claim -p $(hostname -f) --range 1..255 | jq -r .name
  monotone --store sqlite:/var/lib/monotone.db serve --listen localhost:7777
  monotone completions bash > /etc/bash_completion.d/monotone
  monotone man | man -l -";

/// `monotone [global flags] <counter|queue|lock|doc|tally|claim|serve|completions|man> ...`
#[derive(Debug, Parser)]
#[command(name = "monotone", version, about = ABOUT, after_help = STORE_HELP)]
pub struct Cli {
    /// Id of the counter, queue, lock, document, tally or claim pool to use
    /// (every command but serve, completions and man)
    #[arg(short, long, value_name = "ID")]
    pub id: Option<String>,

    /// AWS region of the DynamoDB table (selects DynamoDB)
    #[arg(short, long, value_name = "REGION")]
    pub region: Option<String>,

    /// DynamoDB table [default: Counters] (selects DynamoDB)
    #[arg(short, long, value_name = "TABLE")]
    pub table: Option<String>,

    /// Store URL: sqlite:PATH, memory: or dynamodb://TABLE [env: MONOTONE_STORE]
    #[arg(long, value_name = "URL", conflicts_with_all = ["region", "table"])]
    pub store: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands; each one's help is in its file.
#[derive(Debug, Subcommand)]
pub enum Command {
    Counter(CounterArgs),
    Queue(QueueArgs),
    Lock(LockArgs),
    Doc(DocArgs),
    Tally(TallyArgs),
    Claim(ClaimArgs),
    Serve(ServeArgs),
    Completions(CompletionsArgs),
    Man(ManArgs),
}

/// The command line of this process, or clap's outcome when it is not one
/// to run (a usage error, or `--help`).
pub fn parse() -> Result<Cli, Failure> {
    parse_from(std::env::args_os())
}

/// [`parse`] of the arguments `args` (the first being the program).
pub fn parse_from<I, T>(args: I) -> Result<Cli, Failure>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let definition = definition();
    let matches = definition
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| Failure::Parse(with_usage(e, &definition, &args)))?;
    Cli::from_arg_matches(&matches).map_err(Failure::Parse)
}

/// `e`, naming the (sub)command at fault in a usage line where clap gave
/// none (a bad value), so that the one line printed names its help.
fn with_usage(
    mut e: clap::Error,
    root: &clap::Command,
    args: &[std::ffi::OsString],
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    if e.get(ContextKind::Usage).is_none() {
        let reached = reached(root, args);
        e.insert(ContextKind::Usage, ContextValue::StyledStr(reached.into()));
    }
    e
}

/// The names of the commands `args` reach (`monotone doc set`), skipping the
/// values of options so that `-i counter` is not read as a command.
fn reached(root: &clap::Command, args: &[std::ffi::OsString]) -> String {
    let mut path = vec![root];
    let takes_value = |path: &[&clap::Command], is: &dyn Fn(&clap::Arg) -> bool| {
        path.iter()
            .flat_map(|c| c.get_arguments())
            .any(|a| is(a) && a.get_action().takes_values())
    };
    let mut words = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let skip_value = if let Some(long) = word.strip_prefix("--") {
            !long.contains('=') && takes_value(&path, &|a| a.get_long() == Some(long))
        } else if let Some(short) = word.strip_prefix('-') {
            let mut chars = short.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => takes_value(&path, &|a| a.get_short() == Some(c)),
                _ => false,
            }
        } else {
            if let Some(sub) = path.last().and_then(|c| c.find_subcommand(word)) {
                path.push(sub);
            }
            false
        };
        if skip_value {
            words.next();
        }
    }
    path.iter()
        .map(|c| c.get_name())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command line's definition, as `--help`, the completions and the
/// manual page show it: the derive's, but a command given without its
/// subcommand (`monotone -i x counter`) is a one-line usage error naming
/// the subcommands rather than the whole help (a bare `monotone` still
/// prints the help).
pub fn definition() -> clap::Command {
    Cli::command().mut_subcommands(|c| c.arg_required_else_help(false))
}

impl Command {
    /// Run the command on the item `id` of `store`. `serve`, which serves
    /// every id, runs through [`crate::serve::run`] instead.
    pub async fn run(self, store: Arc<dyn Store>, id: &str) -> Result<ExitCode, Failure> {
        let printed = |output: Output| print(&output).map(|()| ExitCode::SUCCESS);
        match self {
            Command::Counter(args) => printed(counter::run(&*store, id, args).await?),
            Command::Queue(args) => printed(queue::run(&*store, id, args).await?),
            Command::Lock(args) => lock::run(store, id, args, |output| print(&output)).await,
            Command::Doc(DocArgs {
                action: DocAction::Watch { from_version, poll },
            }) => doc::watch(&*store, id, from_version, poll)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Doc(args) => printed(doc::run(&*store, id, args).await?),
            Command::Tally(args) => printed(tally::run(&*store, id, args).await?),
            Command::Claim(args) => claim::run(store, id, args, |output| print(&output)).await,
            Command::Serve(_) | Command::Completions(_) | Command::Man(_) => Err(Failure::Usage(
                "serve, completions and man are not commands on one id".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::queue::QueueAction;

    #[test]
    fn definition_is_consistent() {
        definition().debug_assert();
    }

    #[test]
    fn help_lines_fit_a_terminal() {
        for line in STORE_HELP.lines() {
            assert!(line.chars().count() < 80, "{line:?} would wrap");
        }
    }

    #[test]
    fn monotone_0_4_forms_parse() {
        let cli = Cli::try_parse_from([
            "monotone", "-i", "q", "queue", "-p", "foo", "join", "-t", "a=1", "-t", "b=x=y",
        ])
        .unwrap();
        let Command::Queue(q) = cli.command else {
            panic!("not a queue command")
        };
        assert_eq!(q.process_id.as_deref(), Some("foo"));
        let QueueAction::Join { tags, .. } = q.action else {
            panic!("not join")
        };
        assert_eq!(tags, [("a".into(), "1".into()), ("b".into(), "x=y".into())]);

        let cli = Cli::try_parse_from([
            "monotone",
            "-r",
            "us-east-1",
            "-t",
            "T",
            "-i",
            "c",
            "counter",
            "next",
        ])
        .unwrap();
        assert_eq!(
            (cli.region.as_deref(), cli.table.as_deref()),
            (Some("us-east-1"), Some("T"))
        );
        // -p is also accepted after the queue action.
        let cli =
            Cli::try_parse_from(["monotone", "-i", "q", "queue", "leave", "-p", "foo"]).unwrap();
        let Command::Queue(q) = cli.command else {
            panic!("not a queue command")
        };
        assert_eq!(q.process_id.as_deref(), Some("foo"));
    }

    #[test]
    fn bad_tags_and_conflicts_are_usage_errors() {
        for tag in ["novalue", "=v"] {
            let e =
                Cli::try_parse_from(["monotone", "-i", "q", "queue", "-p", "p", "join", "-t", tag])
                    .unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        }
        let e = Cli::try_parse_from([
            "monotone", "--store", "memory:", "-t", "T", "-i", "c", "counter", "get",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
