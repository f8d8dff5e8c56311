//! The process group a locked command runs in, and the guard that leads it.
//!
//! `monotone lock -- COMMAND` does not start COMMAND itself. It starts a copy
//! of itself as a *guard* (`monotone __monotone-lock-guard PID --go DIR --
//! COMMAND`, PID being `monotone`'s) as the leader of a new process group,
//! and the guard starts COMMAND in that group and waits for it:
//!
//! ```text
//! monotone lock            holds the lease, forwards signals, kills the group
//! └── guard                process group leader; reports COMMAND's status
//!     └── COMMAND          and everything it starts (sh -c children too)
//! ```
//!
//! - The guard is started *before* the lock is taken ([`Group::prepare`]),
//!   so that the hand-over does not wait for a process to start: it waits
//!   in a private folder DIR (0700, made by `monotone`) for the go on a
//!   FIFO, `DIR/go`. Once the lock is held, `monotone` writes COMMAND's
//!   environment and the holder to keep alive into `DIR/env`, then one
//!   byte into the FIFO ([`Prepared::start`]); the guard reads them and
//!   starts COMMAND. Without the go (the lock was not acquired, `monotone`
//!   was interrupted or died) the FIFO's only writer closes, the guard
//!   reads its end and exits without running anything; `monotone` also
//!   kills it. DIR is removed when the group has ended (a SIGKILLed
//!   `monotone` leaves it in the temporary folder).
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
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use monotone::{HolderId, KeepAlive};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{getpgrp, getppid, Pid};
use tokio::signal::unix::{signal, SignalKind};

/// The first argument that makes `monotone` the guard of a command.
pub const GUARD_ARG: &str = "__monotone-lock-guard";

/// The guard's arguments `--go DIR`: wait for the go on `DIR/go` (see
/// [`GO_FIFO`]), then read `DIR/env` (see [`Go`]).
const GO_ARG: &str = "--go";

/// The FIFO the guard waits on for the go: one byte.
const GO_FIFO: &str = "go";

/// The file that holds what the guard is told with the go.
const GO_FILE: &str = "env";

/// How often a guard without a parent-death signal checks its parent.
const PARENT_CHECK: Duration = Duration::from_millis(100);

/// A command running under a guard in its own process group.
#[derive(Debug)]
pub struct Group {
    guard: tokio::process::Child,
    pgid: Pid,
    status: Option<ExitStatus>,
    /// The guard's folder, removed once the guard has exited.
    dir: Option<tempfile::TempDir>,
    /// The go's FIFO, kept open until the guard has exited: a FIFO that
    /// no one holds open loses what was written into it, and the guard
    /// may open it after the go was given.
    go: Option<std::fs::File>,
}

/// A guard started ahead of its command, waiting for the go: see the
/// [module docs](self). Dropped without [`start`](Prepared::start), the
/// guard is killed and runs nothing.
#[derive(Debug)]
pub struct Prepared {
    /// Taken by [`start`](Prepared::start).
    guard: Option<tokio::process::Child>,
    pgid: Pid,
    /// Handed on to the [`Group`] by [`start`](Prepared::start).
    dir: Option<tempfile::TempDir>,
    /// The FIFO's only writer (opened for reading and writing, so that
    /// neither side's open waits for the other).
    go: std::fs::File,
}

impl Group {
    /// Start the guard of `command` (program and arguments) as the leader
    /// of a new process group, waiting for the go.
    pub fn prepare(command: &[OsString]) -> io::Result<Prepared> {
        let dir = tempfile::Builder::new()
            .prefix("monotone-guard-")
            .tempdir()?;
        let fifo = dir.path().join(GO_FIFO);
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )?;
        let go = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)?;
        let exe = std::env::current_exe()?;
        let guard = tokio::process::Command::new(exe)
            .arg(GUARD_ARG)
            .arg(std::process::id().to_string())
            .arg(GO_ARG)
            .arg(dir.path())
            .arg("--")
            .args(command)
            .process_group(0)
            .spawn()?;
        let pid = guard
            .id()
            .ok_or_else(|| io::Error::other("the guard exited at once"))?;
        Ok(Prepared {
            guard: Some(guard),
            pgid: Pid::from_raw(pid as i32),
            dir: Some(dir),
            go,
        })
    }
}

impl Prepared {
    /// Give the guard the go: it starts COMMAND with `env` added to its
    /// environment, having taken a sign of life of the holder of `alive`
    /// (kept for as long as the guard lives).
    pub fn start(
        mut self,
        env: &[(String, String)],
        alive: Option<&KeepAlive>,
    ) -> io::Result<Group> {
        let dir = self.dir.as_ref().expect("a prepared guard has its folder");
        if let Some(status) = self
            .guard
            .as_mut()
            .map(|g| g.try_wait())
            .transpose()?
            .flatten()
        {
            return Err(io::Error::other(format!(
                "the guard ended early ({status})"
            )));
        }
        let told = Go {
            live: alive.map(|a| (a.path().to_owned(), a.holder())),
            env: env.to_vec(),
        };
        std::fs::write(dir.path().join(GO_FILE), told.encode())?;
        self.go.write_all(&[1])?;
        Ok(Group {
            guard: self.guard.take().expect("a prepared guard is started once"),
            pgid: self.pgid,
            status: None,
            dir: self.dir.take(),
            go: Some(self.go.try_clone()?),
        })
    }
}

impl Drop for Prepared {
    /// Not started: kill the guard (its group is the guard alone).
    fn drop(&mut self) {
        if self.guard.is_some() {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

impl Group {
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
        // The guard read its folder before it started COMMAND.
        self.dir.take();
        self.go.take();
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

/// The guard's arguments: its parent, its folder, COMMAND.
struct GuardArgs {
    parent: Pid,
    dir: PathBuf,
    command: Vec<OsString>,
}

impl GuardArgs {
    /// `PID --go DIR -- COMMAND...`.
    fn parse(args: Vec<OsString>) -> Option<GuardArgs> {
        let mut args = args.into_iter();
        let parent = Pid::from_raw(args.next()?.to_str()?.parse().ok()?);
        (args.next()? == GO_ARG).then_some(())?;
        let dir = PathBuf::from(args.next()?);
        (args.next()? == "--").then_some(())?;
        let command: Vec<OsString> = args.collect();
        (!command.is_empty()).then_some(GuardArgs {
            parent,
            dir,
            command,
        })
    }
}

/// What the guard is told with the go, in `DIR/env`: the holder to keep
/// alive, if any, and COMMAND's environment. Fields end with a NUL byte
/// (which no path, name or value holds): the path to keep alive in (empty
/// for none), the holder id (empty for none), then each name and value,
/// then `go`, so that a file cut short is never taken for a whole one.
#[derive(Debug, PartialEq)]
struct Go {
    live: Option<(PathBuf, HolderId)>,
    env: Vec<(String, String)>,
}

impl Go {
    const END: &'static [u8] = b"go";

    fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let (path, holder) = match &self.live {
            Some((p, h)) => (
                p.as_os_str().as_bytes().to_vec(),
                h.get().to_string().into_bytes(),
            ),
            None => (vec![], vec![]),
        };
        let mut fields = vec![path, holder];
        for (k, v) in &self.env {
            fields.push(k.as_bytes().to_vec());
            fields.push(v.as_bytes().to_vec());
        }
        fields.push(Self::END.to_vec());
        fields
            .into_iter()
            .flat_map(|mut f| {
                f.push(0);
                f
            })
            .collect()
    }

    fn decode(bytes: &[u8]) -> Option<Go> {
        use std::os::unix::ffi::OsStrExt;
        let mut fields: Vec<&[u8]> = bytes.strip_suffix(&[0])?.split(|b| *b == 0).collect();
        (fields.pop()? == Self::END).then_some(())?;
        let mut fields = fields.into_iter();
        let (path, holder) = (fields.next()?, fields.next()?);
        let live = match (path.is_empty(), holder.is_empty()) {
            (true, true) => None,
            (false, false) => {
                let holder = std::str::from_utf8(holder).ok()?.parse().ok()?;
                Some((
                    PathBuf::from(std::ffi::OsStr::from_bytes(path)),
                    HolderId::new(holder)?,
                ))
            }
            _ => return None,
        };
        let rest: Vec<&[u8]> = fields.collect();
        if rest.len() % 2 != 0 {
            return None;
        }
        let env = rest
            .chunks(2)
            .map(|kv| {
                Some((
                    String::from_utf8(kv[0].to_vec()).ok()?,
                    String::from_utf8(kv[1].to_vec()).ok()?,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Go { live, env })
    }
}

/// Wait for the go (see the [module docs](self)): what the guard was told,
/// or `None` if `monotone` gave up (or died) before it gave it.
fn wait_for_go(dir: &Path) -> io::Result<Option<Go>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Opened without waiting for a writer: if `monotone` is gone already,
    // there is none, and the read below finds the end at once.
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(dir.join(GO_FIFO))?;
    nix::fcntl::fcntl(
        &fifo,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )?;
    let mut byte = [0u8; 1];
    loop {
        match fifo.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let told = std::fs::read(dir.join(GO_FILE))?;
    Go::decode(&told)
        .map(Some)
        .ok_or_else(|| io::Error::other("what the lock's process told the guard is not whole"))
}

/// `monotone __monotone-lock-guard PID --go DIR -- COMMAND...`: wait for
/// the go (see the [module docs](self)); then keep the holder alive (a
/// sign of life of its own, see `monotone::KeepAlive`) for as long as this
/// process lives, run COMMAND in this process group with the environment
/// it was told, kill the group if our parent (PID) dies, and exit as
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
        dir,
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
    runtime.block_on(guard(program.clone(), rest.to_vec(), &dir, parent))
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

/// The guard itself. Everything it can do before the go (its runtime,
/// its signal handlers) is done before, so that COMMAND starts as soon as
/// the go comes.
async fn guard(program: OsString, args: Vec<OsString>, dir: &Path, parent: Pid) -> ExitCode {
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
    // The one thing this runtime has to do meanwhile: a blocking read is
    // fine (signals that come are noted by their handlers and read later;
    // the parent's death ends the read: its end of the FIFO closes).
    let Go { live, env } = match wait_for_go(dir) {
        Ok(Some(go)) => go,
        // Nothing to run: `monotone` gave up on the lock, or died.
        Ok(None) => return ExitCode::from(1),
        Err(e) => {
            eprintln!("monotone: error: the lock guard cannot read its go: {e}");
            return ExitCode::from(1);
        }
    };
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
    let mut child = match tokio::process::Command::new(&program)
        .args(&args)
        .envs(env)
        .spawn()
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_go_reads_back_as_written_and_a_cut_one_is_refused() {
        let go = Go {
            live: Some((
                PathBuf::from("/var/lib/monotone/db-live"),
                HolderId::new(77).unwrap(),
            )),
            env: vec![
                ("MONOTONE_ID".into(), "lock".into()),
                ("EMPTY".into(), String::new()),
                ("MONOTONE_CLAIM_MEMBERS".into(), r#"[{"name":"1"}]"#.into()),
            ],
        };
        let bytes = go.encode();
        assert_eq!(Go::decode(&bytes), Some(go));
        for cut in 0..bytes.len() {
            assert_eq!(Go::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let none = Go {
            live: None,
            env: vec![],
        };
        assert_eq!(none.encode(), b"\0\0go\0");
        assert_eq!(Go::decode(&none.encode()), Some(none));
        assert_eq!(Go::decode(b"/p\0\0go\0"), None, "a path without a holder");
        assert_eq!(Go::decode(b"\0\0K\0go\0"), None, "a name without a value");
    }

    #[test]
    fn guard_arguments_are_exact() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let parsed =
            GuardArgs::parse(args(&["12", "--go", "/tmp/d", "--", "sh", "-c", "x"])).unwrap();
        assert_eq!(parsed.parent, Pid::from_raw(12));
        assert_eq!(parsed.dir, PathBuf::from("/tmp/d"));
        assert_eq!(parsed.command, args(&["sh", "-c", "x"]));
        for bad in [
            &["12", "--go", "/tmp/d", "--"][..],
            &["12", "/tmp/d", "--", "true"],
            &["x", "--go", "/tmp/d", "--", "true"],
            &["12", "--go", "/tmp/d", "true"],
        ] {
            assert!(GuardArgs::parse(args(bad)).is_none(), "{bad:?}");
        }
    }
}
