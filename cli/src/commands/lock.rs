//! `monotone -i NAME lock [-p PID] [-n N] [--ttl D] [--no-wait | --timeout D]
//! [-t KEY=VALUE]... [--kill-after D] [-- COMMAND [ARGS...]]`
//!
//! Join the queue NAME with a leased ticket, wait until it is among the
//! first N, run COMMAND in its own process group (see [`crate::group`])
//! while a [`LeaseHolder`] renews the lease, and leave the queue when
//! COMMAND ends. Without COMMAND: print the ticket once acquired and hold
//! the lock until stdin closes or a signal arrives.
//!
//! # Timing
//!
//! The holder counts on its lease until nine tenths of the ttl after its last
//! successful renewal was sent (see `monotone::lease`) and reserves
//! `--kill-after` of that for stopping the command: when the lease is lost,
//! the group gets SIGTERM, and SIGKILL `--kill-after` later, at the latest
//! nine tenths of a ttl after the last renewal; no other process may take
//! the lock before a full ttl after it. Renewals go out every third of the
//! time left between the last renewal and the SIGTERM, at most every third
//! of the ttl.
//!
//! # Exit status
//!
//! COMMAND's own (128 + the signal if a signal ended it); 9 when the lock
//! was not acquired (`--no-wait`, `--timeout`); 10 when the lease was lost
//! while the lock was held (the command was killed); the usual codes for
//! failures before COMMAND ran; 128 + the signal if a signal ended
//! `monotone` while it waited.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use monotone::{
    Error, ErrorKind, Fenced, HolderOptions, LeaseHolder, Queue, Store, Tags, Ticket, WaitOptions,
};
use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

use super::queue::{tag_map, TicketOutput};
use super::{Output, Place};
use crate::args::LockArgs;
use crate::exit::Failure;
use crate::group::{shell_code, Group};

/// The shortest `--ttl`: a renewal takes milliseconds to tens of
/// milliseconds, and a lease must leave room for a slow one or two.
pub const MIN_TTL: Duration = Duration::from_millis(200);

/// The default `--kill-after`, unless a fifth of the ttl is shorter.
pub const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(3);

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

fn usage(message: String) -> Failure {
    Failure::Usage(message)
}

impl Plan {
    fn new(args: LockArgs) -> Result<Plan, Failure> {
        let ttl = args.ttl;
        if ttl < MIN_TTL {
            return Err(usage(format!(
                "--ttl {} is too short to renew safely; use at least {}",
                humantime::format_duration(ttl),
                humantime::format_duration(MIN_TTL)
            )));
        }
        if ttl > monotone::lease::MAX_LEASE {
            return Err(usage(format!(
                "--ttl {} is longer than the longest lease, {}",
                humantime::format_duration(ttl),
                humantime::format_duration(monotone::lease::MAX_LEASE)
            )));
        }
        let kill_after = args
            .kill_after
            .unwrap_or_else(|| DEFAULT_KILL_AFTER.min(ttl / 5));
        if kill_after > ttl / 2 {
            return Err(usage(format!(
                "--kill-after {} leaves too little of the {} ttl to renew in; \
                 it may be at most half the ttl",
                humantime::format_duration(kill_after),
                humantime::format_duration(ttl)
            )));
        }
        // The time from a renewal to the SIGTERM when no later one succeeds.
        let window = monotone::lease::holder_validity(ttl).saturating_sub(kill_after);
        let renew_every = (ttl / 3).min(window / 3);
        let process_id = match args.process_id {
            Some(p) => p,
            None => default_process_id(),
        };
        if let Some(program) = args.command.first() {
            check_command(program)?;
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
            holder: HolderOptions::new()
                .with_renew_every(renew_every)
                .with_reserve(kill_after),
            wait: WaitOptions::new()
                .with_timeout(timeout)
                .with_poll(monotone::DEFAULT_MIN_POLL, args.poll),
            tags: tag_map(args.tags).map_err(crate::failure)?,
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

/// Refuse a command that cannot be found or run before taking the lock.
fn check_command(program: &OsString) -> Result<(), Failure> {
    let shown = program.to_string_lossy();
    if program.is_empty() {
        return Err(usage("the command after -- is empty".into()));
    }
    let found = if Path::new(program).components().count() > 1 {
        which::which(Path::new(program))
    } else {
        which::which(program)
    };
    found
        .map(|_| ())
        .map_err(|e| usage(format!("cannot run `{shown}`: {e}; nothing was locked")))
}

/// The signals `monotone lock` passes on to its command.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, Failure> {
        let handle = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Failure::Other(format!("cannot handle {name}: {e}")))
        };
        Ok(Signals {
            int: handle(SignalKind::interrupt(), "SIGINT")?,
            term: handle(SignalKind::terminate(), "SIGTERM")?,
            hup: handle(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// The next signal to arrive.
    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.hup.recv() => Signal::SIGHUP,
        }
    }
}

fn signal_code(sig: Signal) -> ExitCode {
    ExitCode::from(128 + sig as u8)
}

/// Leave the queue, or let the ticket expire if the store cannot be reached
/// within `patience`.
async fn release_within(holder: LeaseHolder, patience: Duration) {
    let who = holder.process_id().to_owned();
    match tokio::time::timeout(patience, holder.release()).await {
        Ok(Ok(token)) => tracing::debug!(process = %who, ?token, "released the lock"),
        Ok(Err(e)) => eprintln!("monotone: could not release the lock ({e}); it expires by itself"),
        Err(_) => eprintln!(
            "monotone: the store did not answer the release within {}; the lock expires by itself",
            humantime::format_duration(patience)
        ),
    }
}

/// Leave the queue; if the store does not answer within a lease, the lease
/// has run out anyway.
async fn release(holder: LeaseHolder) {
    let patience = holder.lease();
    release_within(holder, patience).await;
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
    let holder = LeaseHolder::join(
        queue,
        &plan.process_id,
        plan.tags.clone(),
        plan.ttl,
        plan.holder.clone(),
    )
    .await?;
    tracing::debug!(queue = id, process = %plan.process_id, ttl = ?plan.ttl, holders = plan.holders, "waiting for the lock");
    let head = tokio::select! {
        head = holder.wait_for_position(plan.holders, &plan.wait) => head,
        sig = signals.recv() => {
            release(holder).await;
            return Ok(signal_code(sig));
        }
    };
    let head = match head {
        Ok(head) => head,
        Err(e) => {
            if e.kind() != ErrorKind::LeaseLost {
                release(holder).await;
            }
            return Err(Failure::Store(match e.kind() {
                ErrorKind::Timeout => Error::new(
                    ErrorKind::Timeout,
                    format!("lock `{id}` not acquired: {}", e.message()),
                ),
                _ => e,
            }));
        }
    };
    tracing::debug!(queue = id, process = %plan.process_id, token = %head.fencing_token, "acquired the lock");
    if plan.command.is_empty() {
        hold(holder, head, place, signals, print).await
    } else {
        run_command(&*store, holder, head, &plan, signals).await
    }
}

/// Without a command: print the ticket, hold until stdin closes or a signal
/// arrives, then leave.
async fn hold(
    holder: LeaseHolder,
    head: Fenced<Ticket>,
    place: Place,
    mut signals: Signals,
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
        release(holder).await;
        return Err(e);
    }
    let stdin_closed = stdin_closed();
    tokio::select! {
        _ = stdin_closed => {}
        _ = signals.recv() => {}
        lost = holder.lost() => return Err(Failure::Store(lost)),
    }
    release(holder).await;
    Ok(ExitCode::SUCCESS)
}

/// Completes when stdin reaches its end (or cannot be read). The read
/// blocks a thread of its own, which does not keep the process alive.
fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    rx
}

/// Run the command under the lock; see the module docs.
async fn run_command(
    store: &dyn Store,
    holder: LeaseHolder,
    head: Fenced<Ticket>,
    plan: &Plan,
    mut signals: Signals,
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
    let mut group = match Group::spawn(&plan.command, &env) {
        Ok(g) => g,
        Err(e) => {
            release(holder).await;
            return Err(Failure::Other(format!("cannot start the command: {e}")));
        }
    };
    loop {
        tokio::select! {
            status = group.wait() => {
                let status = status.map_err(|e| Failure::Other(format!("lost track of the command: {e}")))?;
                // The lock is still held: whatever the command left running
                // in its group gets the grace period, then SIGKILL.
                let _ = group.end_stragglers(plan.kill_after).await;
                release(holder).await;
                return Ok(ExitCode::from(shell_code(status)));
            }
            sig = signals.recv() => {
                tracing::debug!(%sig, "passing the signal to the command");
                group.signal(sig);
            }
            lost = holder.lost() => {
                tracing::debug!(error = %lost, "lease lost: stopping the command");
                let _ = group.terminate(plan.kill_after).await;
                // Most likely the store is unreachable: try to leave briefly.
                release_within(holder, Duration::from_secs(1)).await;
                return Err(Failure::Store(Error::new(
                    ErrorKind::LeaseLost,
                    format!("lock lost, command stopped: {}", lost.message()),
                )));
            }
        }
    }
}
