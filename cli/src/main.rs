/*!
The `monotone` command: atomic counters, queues, locks, tallies, claim pools
and shared JSON documents from the shell, and over HTTP (`monotone serve`, see
[`serve`]).

`main` parses the command line, opens the store it selects, runs one command
and prints its result as one pretty-printed JSON document on stdout, in
monotone 0.4's shapes, so boot scripts can pipe it into `jq`. `doc watch`
instead prints one compact JSON line per change, flushed at once, until it
is interrupted (SIGINT, SIGTERM or SIGHUP: exit code 0), and `lock` runs a command
under a lock and exits as it did (see [`commands::lock`]), as `claim --ttl`
does around a command (see [`commands::claim`]). On failure it
prints nothing on stdout, one line on stderr, and exits with the code of the
failure's class (see [`exit`]). A closed stdout is not a failure: a consumer
like `head` may stop reading whenever it likes.

Diagnostics go through `tracing` to stderr, silent unless `RUST_LOG` asks
(`RUST_LOG=monotone=debug` shows every store request and retry).
*/

mod args;
mod commands;
mod exit;
mod group;
mod serve;
mod store_url;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use monotone::{Document, Store};
use serde::Serialize;

use crate::args::{Cli, Command, DocAction};
use crate::commands::doc::ChangeLine;
use crate::commands::{CommandError, Place};
use crate::exit::Failure;
use crate::store_url::StoreChoice;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == group::GUARD_ARG) {
        return group::guard_main(args.collect());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::clap_error(e),
    };
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    // What needs no store is checked before the store is opened.
    let (id, serving) = match (&cli.command, cli.id.as_deref()) {
        (Command::Serve(args), None) => (String::new(), Some(serve::prepare(args)?)),
        (Command::Serve(_), Some(_)) => {
            return Err(Failure::Usage(
                "serve serves every id of the store; it takes no -i/--id".into(),
            ))
        }
        (_, Some(id)) => (id.to_owned(), None),
        (_, None) => {
            return Err(Failure::Usage(
                "the following required arguments were not provided: --id <ID>".into(),
            ))
        }
    };
    let choice = store_url::choose(&cli, |k| std::env::var(k).ok()).map_err(Failure::Config)?;
    if let StoreChoice::DefaultSqlite(path) = &choice {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Failure::Config(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
    }
    // One command needs one thread; a server uses every core.
    let runtime = match serving {
        Some(_) => tokio::runtime::Builder::new_multi_thread(),
        None => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        let store = monotone::open(&choice.url()).await?;
        match (cli.command, serving) {
            (Command::Serve(args), Some(token)) => serve::run(store, args, token)
                .await
                .map(|()| ExitCode::SUCCESS),
            (Command::Lock(args), _) => {
                commands::lock::run(store, &id, args, |output| print(&output)).await
            }
            (Command::Claim(args), _) => {
                commands::claim::run(store, &id, args, |output| print(&output)).await
            }
            (
                Command::Doc {
                    action: DocAction::Watch { from_version, poll },
                },
                _,
            ) => watch(&*store, &id, from_version, poll)
                .await
                .map(|()| ExitCode::SUCCESS),
            (command, _) => print(
                &commands::run(&*store, &id, command)
                    .await
                    .map_err(failure)?,
            )
            .map(|()| ExitCode::SUCCESS),
        }
    });
    // Do not wait for work left on blocking threads (a read of stdin).
    runtime.shutdown_background();
    result
}

fn failure(e: CommandError) -> Failure {
    match e {
        CommandError::Usage(m) => Failure::Usage(m),
        CommandError::Store(e) => Failure::Store(e),
        CommandError::Output(e) => Failure::Other(format!("cannot write the result: {e}")),
    }
}

/// `doc watch`: one line per change until a signal, a closed stdout (both
/// exit 0) or a store error.
async fn watch(
    store: &dyn Store,
    id: &str,
    from_version: Option<u64>,
    poll: Duration,
) -> Result<(), Failure> {
    let doc: Arc<dyn Document> = Arc::from(store.document(id)?);
    // Listen before the first line, so that a signal sent on seeing it is
    // caught rather than killing the process.
    let mut signals = commands::hold::Signals::new()?;
    let mut emit = |line: &ChangeLine| -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()
    };
    let watching = commands::doc::watch(doc, Place::of(store), from_version, poll, &mut emit);
    tokio::select! {
        done = watching => match done {
            Err(CommandError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(failure),
        },
        _ = signals.recv() => Ok(()),
    }
}

/// Print `output` as one pretty-printed JSON document on stdout.
pub fn print(output: &impl Serialize) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(output)
        .map_err(|e| Failure::Other(format!("cannot encode the result: {e}")))?;
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Other(format!("cannot write the result: {e}"))),
    }
}
