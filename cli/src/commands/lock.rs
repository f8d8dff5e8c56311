//! `monotone -i NAME lock [-p PID] [-n N] [--ttl D] [--no-wait | --timeout D]
//! [-t KEY=VALUE]... [--kill-after D] [-- COMMAND [ARGS...]]`
//!
//! Join the queue NAME with a leased ticket, wait until it is among the
//! first N, run COMMAND in its own process group (see [`crate::group`])
//! while a [`LeaseHolder`] renews the lease, and leave the queue when
//! COMMAND ends. Without COMMAND: print the ticket once acquired and hold
//! the lock until stdin closes, stdout is closed or a signal arrives.
//!
//! Each `lock` is a holder of its own: if another `lock` (or a leased
//! `queue join`) holds the ticket of the same process id, it waits for that
//! ticket to go (released, or expired after its holder died) before it
//! joins, within the same `--timeout`; it never shares the ticket, so two
//! `lock -p "$(hostname)"` never run their commands at once.
//!
//! The timing of renewals and of the kill is [`hold`](super::hold)'s.
//!
//! # Exit status
//!
//! COMMAND's own (128 + the signal if a signal ended it); 9 when the lock
//! was not acquired (`--no-wait`, `--timeout`); 10 when the lease was lost
//! while the lock was held (the command was killed); the usual codes for
//! failures before COMMAND ran; 128 + the signal if a signal ended
//! `monotone` while it waited. A COMMAND that cannot be run is refused with
//! 2 before anything is locked (see [`crate::program`] for what is
//! checked); what only its start can tell gives 127 (not found) or 126
//! (found, not runnable), as `env` does, with the lock released.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use clap::Args;
use monotone::{
    Error, ErrorKind, Fenced, HolderOptions, LeaseHolder, Queue, Store, Tags, Ticket, WaitOptions,
};

use super::hold::{self, check_command, hold_until_done, signal_code, Signals, Timing};
use super::queue::TicketOutput;
use super::values::{parse_duration, parse_poll, parse_tag, tag_map};
use super::{Output, Place};
use crate::exit::Failure;
use crate::group::Prepared;

const LOCK_HELP: &str = "\
Joins the queue with a leased ticket, waits until it is among the first N,
runs COMMAND in its own process group while renewing the lease, and leaves
the queue when COMMAND ends. COMMAND's environment holds MONOTONE_ID,
MONOTONE_PROCESS_ID, MONOTONE_FENCING_TOKEN, MONOTONE_POSITION,
MONOTONE_COUNTER and MONOTONE_STORE.

Without COMMAND, prints the ticket as JSON once acquired and holds the lock
until stdin closes, its stdout is closed or a signal arrives.

Two locks never share a ticket: a lock whose -p is held by another lock
waits for it to end (or to die and expire) before it joins.

Exit status: COMMAND's (128 + the signal if a signal killed it); 9 when the
lock was not acquired (--no-wait, --timeout); 10 when the lease was lost and
the command was killed; 13 when the process holds a permanent ticket (queue
join without --ttl); 2 for bad arguments (--ttl under 200ms, -n 0) and
for a COMMAND that cannot be run, refused before anything is locked: not
found, not executable, or a script whose #! interpreter is missing. What
only starting it can tell exits as env does, with the lock released: 127
not found, 126 found but not runnable.

Examples:
  monotone -i mongo-init lock -- /usr/local/bin/init-replica-set
  monotone -i hourly-report lock --no-wait -- ./report.sh
  monotone -i backups lock -n 2 --ttl 30s -- ./backup.sh";

/// Run a command while holding a lock (or one of N places) on the queue
#[derive(Debug, Args)]
#[command(after_help = LOCK_HELP)]
pub struct LockArgs {
    /// Id of this holder [default: HOST:PID:N, unique to this invocation]
    #[arg(short, long = "process", value_name = "PROCESS_ID")]
    pub process_id: Option<String>,

    /// How many may hold the lock at once (a semaphore)
    #[arg(short = 'n', long = "holders", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100_000), allow_hyphen_values = true)]
    pub holders: u64,

    /// Lease: how long the lock outlives a holder that stops renewing it
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub ttl: Duration,

    /// Do not wait: if the lock is held (or another lock holds this process
    /// id), exit at once with code 9
    #[arg(long, conflicts_with = "timeout")]
    pub no_wait: bool,

    /// Give up after waiting this long, with exit code 9
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,

    /// While waiting: how often to check the queue on a store that cannot
    /// push (DynamoDB; each check is one read); where the store tells of
    /// changes (the embedded one), how often to check anyway, in case a
    /// notification was lost
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll, allow_hyphen_values = true)]
    pub poll: Duration,

    /// Tag for the ticket, KEY=VALUE; repeat for more
    #[arg(short, long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// When the lease is lost: time between SIGTERM and SIGKILL to the
    /// command's process group [default: 3s, or a fifth of the ttl if shorter]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub kill_after: Option<Duration>,

    /// The command to run under the lock, after --
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// A lock request, checked.
#[derive(Debug)]
struct Plan {
    process_id: String,
    holders: usize,
    ttl: Duration,
    kill_after: Duration,
    holder: HolderOptions,
    wait: WaitOptions,
    tags: Tags,
    command: Vec<OsString>,
}

impl Plan {
    fn new(args: LockArgs) -> Result<Plan, Failure> {
        let Timing {
            ttl,
            kill_after,
            holder,
        } = Timing::new(args.ttl, args.kill_after)?;
        let process_id = match args.process_id {
            Some(p) => p,
            None => default_process_id(),
        };
        if let Some(program) = args.command.first() {
            check_command(program, "nothing was locked")?;
        }
        let timeout = if args.no_wait {
            Some(Duration::ZERO)
        } else {
            args.timeout
        };
        Ok(Plan {
            process_id,
            holders: usize::try_from(args.holders).unwrap_or(usize::MAX),
            ttl,
            kill_after,
            holder,
            wait: WaitOptions::new()
                .with_timeout(timeout)
                .with_poll(monotone::DEFAULT_MIN_POLL, args.poll),
            tags: tag_map(args.tags)?,
            command: args.command,
        })
    }
}

/// `HOST:PID:NANOS`: where this invocation runs, and unique to it.
fn default_process_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{host}:{}:{nanos:x}", std::process::id())
}

/// Run `monotone lock` on the queue `id` of `store`.
pub async fn run(
    store: Arc<dyn Store>,
    id: &str,
    args: LockArgs,
    print: impl FnOnce(Output) -> Result<(), Failure>,
) -> Result<ExitCode, Failure> {
    let plan = Plan::new(args)?;
    let place = Place::of(&*store);
    let queue: Arc<dyn Queue> = Arc::from(store.queue(id)?);
    let mut signals = Signals::new()?;
    // Started now, so that the hand-over does not wait for it.
    let guard = hold::prepare(&plan.command)?;
    let started = Instant::now();
    let joining = LeaseHolder::join_waiting(
        queue,
        &plan.process_id,
        plan.tags.clone(),
        plan.ttl,
        plan.holder.clone(),
        &plan.wait,
    );
    let holder = tokio::select! {
        joined = joining => joined.map_err(|e| not_acquired(id, e))?,
        // A ticket joined meanwhile is leased: it expires.
        sig = signals.recv() => return Ok(signal_code(sig)),
    };
    tracing::debug!(queue = id, process = %plan.process_id, ttl = ?plan.ttl, holders = plan.holders, "waiting for the lock");
    // What is left of the timeout after waiting for the ticket.
    let wait = plan.wait.clone().with_timeout(
        plan.wait
            .timeout
            .map(|t| t.saturating_sub(started.elapsed())),
    );
    let head = tokio::select! {
        head = holder.wait_for_position(plan.holders, &wait) => head,
        sig = signals.recv() => {
            hold::release(holder).await;
            return Ok(signal_code(sig));
        }
    };
    let head = match head {
        Ok(head) => head,
        Err(e) => {
            if e.kind() != ErrorKind::LeaseLost {
                hold::release(holder).await;
            }
            return Err(not_acquired(id, e));
        }
    };
    tracing::debug!(queue = id, process = %plan.process_id, token = %head.fencing_token, "acquired the lock");
    match guard {
        None => hold(holder, head, place, signals, print).await,
        Some(guard) => run_command(&*store, holder, guard, head, &plan, signals).await,
    }
}

/// A timeout while waiting for the lock `id`, saying so; any other error
/// as it is.
fn not_acquired(id: &str, e: Error) -> Failure {
    Failure::Store(match e.kind() {
        ErrorKind::Timeout => Error::new(
            ErrorKind::Timeout,
            format!("lock `{id}` not acquired: {}", e.message()),
        ),
        _ => e,
    })
}

/// Without a command: print the ticket, hold until stdin closes, stdout is
/// closed or a signal arrives, then leave.
async fn hold(
    holder: LeaseHolder,
    head: Fenced<Ticket>,
    place: Place,
    signals: Signals,
    print: impl FnOnce(Output) -> Result<(), Failure>,
) -> Result<ExitCode, Failure> {
    let printed = print(Output::Ticket(TicketOutput {
        id: holder.queue().id().to_owned(),
        region: place.region,
        table: place.table,
        fencing_token: head.fencing_token.get(),
        ticket: head.value.into(),
    }));
    if let Err(e) = printed {
        hold::release(holder).await;
        return Err(e);
    }
    hold_until_done(holder, signals).await
}

/// Run the command under the lock; see [`hold::run_command`].
async fn run_command(
    store: &dyn Store,
    holder: LeaseHolder,
    guard: Prepared,
    head: Fenced<Ticket>,
    plan: &Plan,
    signals: Signals,
) -> Result<ExitCode, Failure> {
    let env = [
        ("MONOTONE_ID", holder.queue().id().to_owned()),
        ("MONOTONE_PROCESS_ID", head.value.process_id.clone()),
        ("MONOTONE_FENCING_TOKEN", head.fencing_token.to_string()),
        ("MONOTONE_POSITION", head.value.position.to_string()),
        ("MONOTONE_COUNTER", head.value.counter.to_string()),
        ("MONOTONE_STORE", store.location().to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    hold::run_command(holder, guard, &env, plan.kill_after, signals).await
}
