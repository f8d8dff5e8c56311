//! Holding a lease from the command line, shared by `monotone lock` (a
//! queue ticket) and `monotone claim --ttl` (a claim): the timing of
//! renewals and of the kill, the signals passed on, holding until stdin
//! closes, and running a command in its own process group (see
//! [`crate::group`]) that is killed when the lease is lost.
//!
//! # Timing
//!
//! The holder counts on its lease until nine tenths of the ttl after its last
//! successful renewal was sent (see `monotone::lease`) and reserves
//! `--kill-after` of that for stopping the command: when the lease is lost,
//! the group gets SIGTERM, and SIGKILL `--kill-after` later, at the latest
//! nine tenths of a ttl after the last renewal; no other process may take
//! the lease over before a full ttl after it. Renewals go out every third of
//! the time left between the last renewal and the SIGTERM, at most every
//! third of the ttl.

use std::ffi::OsString;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use monotone::{
    ClaimHolder, Error, ErrorKind, FencingToken, HolderOptions, KeepAlive, LeaseHolder,
};
use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

use super::values::check_ttl;
use crate::exit::Failure;
use crate::group::{shell_code, Group, Prepared};

/// The default `--kill-after`, unless a fifth of the ttl is shorter.
pub const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(3);

/// A lease's ttl and kill timing, checked.
#[derive(Debug, Clone)]
pub struct Timing {
    pub ttl: Duration,
    pub kill_after: Duration,
    pub holder: HolderOptions,
}

fn usage(message: String) -> Failure {
    Failure::Usage(message)
}

impl Timing {
    /// The timing of a lease of `ttl` whose command gets `kill_after`
    /// (default: [`DEFAULT_KILL_AFTER`], or a fifth of the ttl) between
    /// SIGTERM and SIGKILL.
    pub fn new(ttl: Duration, kill_after: Option<Duration>) -> Result<Timing, Failure> {
        check_ttl(ttl).map_err(usage)?;
        let kill_after = kill_after.unwrap_or_else(|| DEFAULT_KILL_AFTER.min(ttl / 5));
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
        Ok(Timing {
            ttl,
            kill_after,
            holder: HolderOptions::new()
                .with_renew_every(renew_every)
                .with_reserve(kill_after),
        })
    }
}

/// Refuse a command that cannot be found or run before taking the lease
/// (see [`crate::program`] for what is checked); `nothing` says what was
/// not done ("nothing was locked").
pub fn check_command(program: &OsString, nothing: &str) -> Result<(), Failure> {
    crate::program::check(program).map(|_| ()).map_err(|e| {
        usage(format!(
            "cannot run `{}`: {}; {nothing}",
            program.to_string_lossy(),
            e.reason()
        ))
    })
}

/// The signals a holder passes on to its command.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> Result<Signals, Failure> {
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
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.hup.recv() => Signal::SIGHUP,
        }
    }
}

/// The exit code of a `monotone` that a signal ended while it waited.
pub fn signal_code(sig: Signal) -> ExitCode {
    ExitCode::from(128 + sig as u8)
}

/// A lease held by a command-line holder: a lock's ticket or a claim.
pub(crate) trait Held: Sized {
    /// "lock", "claim": what is held, in messages.
    const NOUN: &'static str;

    /// The lease's duration, as stored.
    fn lease(&self) -> Duration;

    /// Completes when the lease is lost.
    fn lost(&self) -> impl Future<Output = Error>;

    /// Stop renewing and give the lease back; `None` if it was gone.
    fn release(self) -> impl Future<Output = monotone::Result<Option<FencingToken>>>;

    /// The kernel's sign of life of the holder, where the store keeps one.
    fn keep_alive(&self) -> Option<&KeepAlive>;
}

impl Held for LeaseHolder {
    const NOUN: &'static str = "lock";

    fn lease(&self) -> Duration {
        LeaseHolder::lease(self)
    }

    fn lost(&self) -> impl Future<Output = Error> {
        LeaseHolder::lost(self)
    }

    fn release(self) -> impl Future<Output = monotone::Result<Option<FencingToken>>> {
        LeaseHolder::release(self)
    }

    fn keep_alive(&self) -> Option<&KeepAlive> {
        LeaseHolder::keep_alive(self)
    }
}

impl Held for ClaimHolder {
    const NOUN: &'static str = "claim";

    fn lease(&self) -> Duration {
        ClaimHolder::lease(self)
    }

    fn lost(&self) -> impl Future<Output = Error> {
        ClaimHolder::lost(self)
    }

    fn release(self) -> impl Future<Output = monotone::Result<Option<FencingToken>>> {
        ClaimHolder::release(self)
    }

    fn keep_alive(&self) -> Option<&KeepAlive> {
        ClaimHolder::keep_alive(self)
    }
}

/// Give the lease back, or let it expire if the store cannot be reached
/// within `patience`.
pub async fn release_within<H: Held>(holder: H, patience: Duration) {
    let noun = H::NOUN;
    match tokio::time::timeout(patience, holder.release()).await {
        Ok(Ok(token)) => tracing::debug!(?token, "released the {noun}"),
        Ok(Err(e)) => eprintln!("monotone: could not release the {noun} ({e}); it expires by itself"),
        Err(_) => eprintln!(
            "monotone: the store did not answer the release within {}; the {noun} expires by itself",
            humantime::format_duration(patience)
        ),
    }
}

/// Give the lease back; if the store does not answer within a lease, the
/// lease has run out anyway.
pub async fn release<H: Held>(holder: H) {
    let patience = holder.lease();
    release_within(holder, patience).await;
}

/// Without a command, once the holder's document is printed: hold until
/// stdin closes, stdout is closed (its reader is gone: see
/// [`stdout_closed`]) or a signal arrives, then give the lease back.
pub async fn hold_until_done<H: Held>(
    holder: H,
    mut signals: Signals,
) -> Result<ExitCode, Failure> {
    let stdin_closed = stdin_closed();
    let stdout_closed = stdout_closed();
    tokio::select! {
        _ = stdin_closed => {}
        _ = stdout_closed => tracing::debug!("stdout was closed: nobody reads what the holder prints"),
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

/// Completes as soon as stdout is closed at its other end: the reader of a
/// pipe or a socket went away (`head` had its line, the script that read
/// the lock's document exited), or the terminal hung up. A thread of its
/// own waits in `poll(2)` for POLLERR or POLLHUP on stdout, which the
/// kernel reports at once, without anything being written; on a file or
/// `/dev/null` it never completes. The thread does not keep the process
/// alive.
pub async fn stdout_closed() {
    if watch_stdout().await.is_err() {
        // Stdout cannot be watched: it is never reported closed.
        std::future::pending::<()>().await;
    }
}

fn watch_stdout() -> tokio::sync::oneshot::Receiver<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let closed = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
        loop {
            // No events asked for: only the ones always reported wake it.
            let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) if fds[0].revents().is_some_and(|r| r.intersects(closed)) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// Start the guard of `command` ahead of the lease (see [`Group::prepare`]),
/// `None` without a command.
pub fn prepare(command: &[OsString]) -> Result<Option<Prepared>, Failure> {
    if command.is_empty() {
        return Ok(None);
    }
    Group::prepare(command)
        .map(Some)
        .map_err(|e| Failure::Other(format!("cannot start the command's guard: {e}")))
}

/// Run the command of `guard` with `env` in its own process group while
/// `holder` holds its lease: signals are passed on, the group is ended when
/// the command ends or the lease is lost, and the lease is given back.
/// Exits as the command did; with [`ErrorKind::LeaseLost`] when the lease
/// was lost.
pub async fn run_command<H: Held>(
    holder: H,
    guard: Prepared,
    env: &[(String, String)],
    kill_after: Duration,
    mut signals: Signals,
) -> Result<ExitCode, Failure> {
    let mut group = match guard.start(env, holder.keep_alive()) {
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
                // The lease is still held: whatever the command left running
                // in its group gets the grace period, then SIGKILL.
                let _ = group.end_stragglers(kill_after).await;
                release(holder).await;
                return Ok(ExitCode::from(shell_code(status)));
            }
            sig = signals.recv() => {
                tracing::debug!(%sig, "passing the signal to the command");
                group.signal(sig);
            }
            lost = holder.lost() => {
                tracing::debug!(error = %lost, "lease lost: stopping the command");
                let _ = group.terminate(kill_after).await;
                // Most likely the store is unreachable: try to give it back briefly.
                release_within(holder, Duration::from_secs(1)).await;
                return Err(Failure::Store(Error::new(
                    ErrorKind::LeaseLost,
                    format!("{} lost, command stopped: {}", H::NOUN, lost.message()),
                )));
            }
        }
    }
}
