//! The process group a locked command runs in, and the guard that leads it.
//!
//! `monotone lock -- COMMAND` does not start COMMAND itself. It starts a copy
//! of itself as a *guard* (`monotone __monotone-lock-guard PID -- COMMAND`,
//! PID being `monotone`'s) as the leader of a new process group, and the
//! guard starts COMMAND in that group and waits for it:
//!
//! ```text
//! monotone lock            holds the lease, forwards signals, kills the group
//! └── guard                process group leader; reports COMMAND's status
//!     └── COMMAND          and everything it starts (sh -c children too)
//! ```
//!
//! - Signals for the command (SIGINT, SIGTERM, SIGHUP sent to `monotone`)
//!   are sent to the whole group; the guard only notes them and keeps
//!   waiting for COMMAND.
//! - When the lease is lost, `monotone` sends SIGTERM to the group, then
//!   SIGKILL once the grace period (`--kill-after`) is over; when COMMAND
//!   ends by itself, whatever it left running in the group gets the same.
//!   So nothing in the group runs on after the lock (unless it moved itself
//!   to another process group or session, which `setsid` and daemons do).
//! - If `monotone` dies, even by SIGKILL, the guard finds out and kills the
//!   whole group with SIGKILL at once: on Linux the kernel tells it (the
//!   parent-death signal, `PR_SET_PDEATHSIG`); elsewhere it checks its
//!   parent every 100 ms, so there COMMAND may run up to that long
//!   unfenced.
//! - The guard exits with COMMAND's exit code, or 128 + the signal that
//!   killed COMMAND, as a shell reports it; as `env`, `timeout` and `nohup`
//!   do, 127 if COMMAND (or its `#!` interpreter) cannot be found and 126
//!   if it was found but cannot be run, saying why in one line. `monotone`
//!   refuses such a command before it takes the lock (see
//!   [`crate::program`]); these codes are for what only the start can tell.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use monotone::{HolderId, KeepAlive};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpgrp, getppid, Pid};
use tokio::signal::unix::{signal, SignalKind};

/// The first argument that makes `monotone` the guard of a command.
pub const GUARD_ARG: &str = "__monotone-lock-guard";

/// The guard's arguments `--live PATH HOLDER`: take a sign of life of
/// holder HOLDER in PATH (see `monotone::KeepAlive`) before COMMAND runs.
const LIVE_ARG: &str = "--live";

/// How often a guard without a parent-death signal checks its parent.
const PARENT_CHECK: Duration = Duration::from_millis(100);

/// A command running under a guard in its own process group.
#[derive(Debug)]
pub struct Group {
    guard: tokio::process::Child,
    pgid: Pid,
    status: Option<ExitStatus>,
}

impl Group {
    /// Start `command` (program and arguments) with `env` added to the
    /// environment, in a new process group led by a guard, which keeps a
    /// sign of life of the holder of `alive` for as long as it lives.
    pub fn spawn(
        command: &[OsString],
        env: &[(String, String)],
        alive: Option<&KeepAlive>,
    ) -> io::Result<Group> {
        let exe = std::env::current_exe()?;
        let mut guard = tokio::process::Command::new(exe);
        guard.arg(GUARD_ARG).arg(std::process::id().to_string());
        if let Some(alive) = alive {
            guard
                .arg(LIVE_ARG)
                .arg(alive.path())
                .arg(alive.holder().get().to_string());
        }
        let guard = guard
            .arg("--")
            .args(command)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .spawn()?;
        let pid = guard
            .id()
            .ok_or_else(|| io::Error::other("the guard exited at once"))?;
        Ok(Group {
            guard,
            pgid: Pid::from_raw(pid as i32),
            status: None,
        })
    }

    /// Send `signal` to every process of the group. False if none is left.
    pub fn signal(&self, signal: Signal) -> bool {
        match killpg(self.pgid, signal) {
            Ok(()) => true,
            Err(Errno::ESRCH) => false,
            Err(e) => {
                tracing::debug!(pgid = %self.pgid, %signal, error = %e, "cannot signal the group");
                true
            }
        }
    }

    /// Whether any process of the group is left (zombies included).
    pub fn any_left(&self) -> bool {
        !matches!(killpg(self.pgid, None), Err(Errno::ESRCH))
    }

    /// Wait for the guard to exit: COMMAND's status, as the guard reports it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.guard.wait().await?;
        self.status = Some(status);
        Ok(status)
    }

    /// End the group: SIGTERM to all of it, then, once the guard exited or
    /// `grace` passed, SIGKILL to whatever is left. Returns when SIGKILL
    /// was sent (nothing in the group runs after that) and the guard was
    /// reaped.
    pub async fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if self.signal(Signal::SIGTERM) && self.status.is_none() {
            let _ = tokio::time::timeout(grace, self.wait()).await;
        }
        self.kill_rest().await
    }

    /// After the guard exited: give what is left in the group `grace` to
    /// end after a SIGTERM, then SIGKILL it. Before the guard exited: the
    /// same as [`terminate`](Self::terminate).
    pub async fn end_stragglers(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if self.status.is_none() {
            return self.terminate(grace).await;
        }
        if self.signal(Signal::SIGTERM) {
            let deadline = tokio::time::Instant::now() + grace;
            while self.any_left() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.kill_rest().await
    }

    async fn kill_rest(&mut self) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGKILL);
        self.wait().await
    }
}

/// The exit code a shell would report for `status`: the code, or 128 plus
/// the signal that ended the process.
pub fn shell_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    }
}

/// The guard's arguments: its parent, the holder to keep alive (if any),
/// COMMAND.
struct GuardArgs {
    parent: Pid,
    live: Option<(std::path::PathBuf, HolderId)>,
    command: Vec<OsString>,
}

impl GuardArgs {
    /// `PID [--live PATH HOLDER] -- COMMAND...`.
    fn parse(args: Vec<OsString>) -> Option<GuardArgs> {
        let mut args = args.into_iter();
        let parent = Pid::from_raw(args.next()?.to_str()?.parse().ok()?);
        let mut live = None;
        loop {
            let arg = args.next()?;
            if arg == "--" {
                break;
            }
            if arg != LIVE_ARG {
                return None;
            }
            let path = std::path::PathBuf::from(args.next()?);
            let holder = HolderId::new(args.next()?.to_str()?.parse().ok()?)?;
            live = Some((path, holder));
        }
        let command: Vec<OsString> = args.collect();
        (!command.is_empty()).then_some(GuardArgs {
            parent,
            live,
            command,
        })
    }
}

/// `monotone __monotone-lock-guard PID [--live PATH HOLDER] -- COMMAND...`:
/// keep the holder alive (a sign of life of its own, see
/// `monotone::KeepAlive`) for as long as this process lives, run COMMAND in
/// this process group, kill the group if our parent (PID) dies, and exit as
/// COMMAND did. `args` are the arguments after [`GUARD_ARG`].
///
/// The guard's sign of life is what keeps the holder's record from being
/// removed when `monotone` is killed before its command: the guard holds
/// it until it has sent SIGKILL to its whole group (itself included), and
/// a process with SIGKILL pending runs no more of its own code, so nothing
/// of COMMAND acts after the record may go.
pub fn guard_main(args: Vec<OsString>) -> ExitCode {
    let Some(GuardArgs {
        parent,
        live,
        command,
    }) = GuardArgs::parse(args)
    else {
        eprintln!("monotone: error: the lock guard is started by `monotone lock` only");
        return ExitCode::from(2);
    };
    let (program, rest) = command.split_first().expect("parse checks for a command");
    if let Err(e) = watch_parent() {
        eprintln!("monotone: error: cannot watch the lock's process: {e}");
        return ExitCode::from(1);
    }
    // Kept until this process ends; close-on-exec, so COMMAND has none.
    let _alive = match live.map(|(path, holder)| KeepAlive::join(&path, holder)) {
        Some(Err(e)) => {
            eprintln!("monotone: error: cannot keep the lock's holder alive: {e}");
            return ExitCode::from(1);
        }
        Some(Ok(alive)) => alive,
        None => None,
    };
    // Our parent may have died before we asked to be told (or before we
    // took the holder's sign of life): then run nothing.
    if getppid() != parent {
        return ExitCode::from(128 + Signal::SIGKILL as u8);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("monotone: error: cannot start the lock guard: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(guard(program.clone(), rest.to_vec(), parent))
}

#[cfg(target_os = "linux")]
fn watch_parent() -> nix::Result<()> {
    // The kernel sends this signal when our parent (the thread that forked
    // us, which is `monotone`'s main thread) ends, however it ended.
    nix::sys::prctl::set_pdeathsig(Signal::SIGUSR2)
}

#[cfg(not(target_os = "linux"))]
fn watch_parent() -> nix::Result<()> {
    Ok(())
}

async fn guard(program: OsString, args: Vec<OsString>, parent: Pid) -> ExitCode {
    // Signals sent to the group reach us too: note them (so they do not end
    // us) and let COMMAND decide. Handlers, unlike ignored signals, are
    // reset in COMMAND when it starts.
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::user_defined2(),
    ];
    let mut signals = Vec::new();
    for kind in kinds {
        match signal(kind) {
            Ok(s) => signals.push(s),
            Err(e) => {
                eprintln!("monotone: error: cannot handle signals in the lock guard: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut child = match tokio::process::Command::new(&program).args(&args).spawn() {
        Ok(c) => c,
        Err(e) => {
            let (code, reason) = cannot_start(&program, &e);
            eprintln!(
                "monotone: error: cannot run `{}`: {reason}",
                program.to_string_lossy()
            );
            return ExitCode::from(code);
        }
    };
    let [int, term, hup, orphaned] = &mut signals[..] else {
        unreachable!("four signal streams")
    };
    let mut check = tokio::time::interval(PARENT_CHECK);
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(s) => ExitCode::from(shell_code(s)),
                    Err(e) => {
                        eprintln!("monotone: error: lost track of the command: {e}");
                        ExitCode::from(1)
                    }
                };
            }
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = orphaned.recv() => {
                if getppid() != parent {
                    kill_own_group();
                }
            }
            _ = check.tick(), if cfg!(not(target_os = "linux")) => {
                if getppid() != parent {
                    kill_own_group();
                }
            }
        }
    }
}

/// Why `program` could not be started, and the exit code for it, as `env`,
/// `timeout` and `nohup` give it: 127 when something was not found, 126
/// when it was found but cannot be run. `monotone` checked the program
/// before it took the lock (see [`crate::program`]); a check now tells
/// what changed since, else the system's error says what it could not do.
fn cannot_start(program: &std::ffi::OsStr, error: &io::Error) -> (u8, String) {
    if let Err(why) = crate::program::check(program) {
        return (why.code(), why.reason().to_owned());
    }
    let code = if error.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    let reason = match error.raw_os_error() {
        Some(raw) if raw == Errno::ENOEXEC as i32 => {
            format!("it is neither a script (#!) nor a program for this machine ({error})")
        }
        // The program is there (it was just checked): what is missing is
        // further down, the interpreter of its interpreter.
        Some(raw) if raw == Errno::ENOENT as i32 => {
            format!("an interpreter it names (#! line of its interpreter) does not exist ({error})")
        }
        _ => error.to_string(),
    };
    (code, reason)
}

/// `monotone` died: nothing of its command may run on without the lock.
fn kill_own_group() {
    let _ = killpg(getpgrp(), Signal::SIGKILL);
}
