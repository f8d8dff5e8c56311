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

# Where things are

- [`cli`]: the global flags, the list of commands, and `parse`.
- `commands/<name>.rs`: one command each, its clap arguments beside the code
  that runs them ([`commands::counter`], [`commands::queue`],
  [`commands::lock`], [`commands::doc`], [`commands::tally`],
  [`commands::claim`]); [`commands::values`] reads the values several of
  them take (durations, tags); [`commands::hold`] holds a lease for `lock`
  and `claim --ttl`.
- [`serve`]: `monotone serve`, its arguments and its HTTP routes.
- [`exit`]: failures, the one line each prints, and exit codes.
- [`store_url`]: which store the flags and the environment select.
- [`group`]: the process group a command runs in under a lease.
- [`program`]: whether a command can be run, checked before a lease is
  taken for it.

`main` is `run(parse())`: errors of either, from clap's to the store's, are
printed once, by [`exit::Failure::report`].
*/

mod cli;
mod commands;
mod exit;
mod group;
mod program;
mod serve;
mod store_url;

use std::process::ExitCode;

use crate::cli::{parse, Cli, Command};
use crate::exit::Failure;
use crate::store_url::StoreChoice;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == group::GUARD_ARG) {
        return group::guard_main(args.collect());
    }
    match run(parse()) {
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

/// A command that takes no `-i`: refuse one rather than ignore it.
fn no_id(cli: &Cli, command: &str) -> Result<(), Failure> {
    match cli.id {
        None => Ok(()),
        Some(_) => Err(Failure::Usage(format!("{command} takes no -i/--id"))),
    }
}

/// Open the store the command line selects and run its command on it.
fn run(parsed: Result<Cli, Failure>) -> Result<ExitCode, Failure> {
    let cli = parsed?;
    init_tracing();
    // What needs neither an id nor a store.
    match &cli.command {
        Command::Completions(args) => {
            no_id(&cli, "completions")?;
            return commands::completions::completions(args).map(|()| ExitCode::SUCCESS);
        }
        Command::Man(_) => {
            no_id(&cli, "man")?;
            return commands::completions::man().map(|()| ExitCode::SUCCESS);
        }
        _ => {}
    }
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
            store_url::create_private_dir(dir).map_err(|e| {
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
            (command, _) => command.run(store, &id).await,
        }
    });
    // Do not wait for work left on blocking threads (a read of stdin).
    runtime.shutdown_background();
    result
}
