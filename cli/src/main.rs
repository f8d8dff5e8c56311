/*!
The `monotone` command: atomic counters and queues from the shell.

`main` parses the command line, opens the store it selects, runs one command
and prints its result as one pretty-printed JSON document on stdout, in
monotone 0.4's shapes, so boot scripts can pipe it into `jq`. On failure it
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
mod store_url;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::commands::{CommandError, Output};
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        let store = monotone::open(&choice.url()).await?;
        match cli.command {
            Command::Lock(args) => commands::lock::run(store, &cli.id, args, print).await,
            command => {
                let output =
                    commands::run(&*store, &cli.id, command)
                        .await
                        .map_err(|e| match e {
                            CommandError::Usage(m) => Failure::Usage(m),
                            CommandError::Store(e) => Failure::Store(e),
                        })?;
                print(output).map(|()| ExitCode::SUCCESS)
            }
        }
    });
    // Do not wait for work left on blocking threads (a read of stdin).
    runtime.shutdown_background();
    result
}

fn print(output: Output) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(&output)
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
