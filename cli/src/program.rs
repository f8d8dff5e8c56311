//! Whether a command can be run, told before it is started: `lock` and
//! `claim --ttl` check the program before they take anything, so that a
//! command that cannot run is refused (exit code 2) with nothing held.
//!
//! What is checked, as `execve` and a shell would find it:
//!
//! - the program: a name without `/` is looked up in `PATH` (an empty entry
//!   is the current directory); a path is taken as it is. It must be a file
//!   (not a directory) that this process may execute;
//! - for a script (a file starting with `#!`), its interpreter: the path on
//!   the `#!` line must be a file this process may execute, and for
//!   `#!/usr/bin/env NAME`, NAME must be found in `PATH` too.
//!
//! What only the start itself can tell is not checked here: a file that is
//! neither a script nor a program for this machine, an interpreter that is
//! itself a script, a file changed between the check and the start. Those
//! fail when the command is started, after the lock was taken; the guard
//! ([`crate::group`]) then exits as `env`, `timeout` and `nohup` do: 127 when
//! something was not found, 126 when it was found but could not be run, and
//! the lock is released.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

/// Why a program cannot be run, with the exit code `env` gives for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRunnable {
    /// Nothing by that name (127).
    NotFound(String),
    /// Found, but not runnable: a directory, no permission, a missing or
    /// unrunnable `#!` interpreter (126, 127 for a missing interpreter).
    Unrunnable { reason: String, code: u8 },
}

impl NotRunnable {
    /// The exit code `env`, `timeout` and `nohup` give for this.
    pub fn code(&self) -> u8 {
        match self {
            NotRunnable::NotFound(_) => 127,
            NotRunnable::Unrunnable { code, .. } => *code,
        }
    }

    /// Why, in a few words after "cannot run `PROGRAM`: ".
    pub fn reason(&self) -> &str {
        match self {
            NotRunnable::NotFound(r) | NotRunnable::Unrunnable { reason: r, .. } => r,
        }
    }
}

/// Where `program` is, if this process can run it; else why not.
pub fn check(program: &OsStr) -> Result<PathBuf, NotRunnable> {
    check_with_path(program, std::env::var_os("PATH").as_deref())
}

fn check_with_path(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, NotRunnable> {
    if program.is_empty() {
        return Err(NotRunnable::NotFound("the program name is empty".into()));
    }
    let found = find(program, path)?;
    if let Some(interpreter) = interpreter(&found) {
        check_interpreter(&interpreter, path)?;
    }
    Ok(found)
}

/// The file `program` names: a path as it is, a name looked up in `path`.
fn find(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, NotRunnable> {
    if program.as_bytes().contains(&b'/') {
        let file = PathBuf::from(program);
        return match runnable(&file) {
            Runnable::Yes => Ok(file),
            Runnable::Missing => Err(NotRunnable::NotFound("no such file".into())),
            Runnable::No(reason) => Err(NotRunnable::Unrunnable { reason, code: 126 }),
        };
    }
    // As execvp: the first runnable file on PATH; a file found but not
    // runnable is reported if nothing runnable comes after it.
    let dirs = path.map_or_else(|| OsString::from("/usr/bin:/bin"), OsStr::to_owned);
    let mut unrunnable = None;
    for dir in std::env::split_paths(&dirs) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let file = dir.join(program);
        match runnable(&file) {
            Runnable::Yes => return Ok(file),
            Runnable::Missing => {}
            Runnable::No(reason) => {
                unrunnable.get_or_insert_with(|| format!("{}: {reason}", file.display()));
            }
        }
    }
    Err(match unrunnable {
        Some(reason) => NotRunnable::Unrunnable { reason, code: 126 },
        None => NotRunnable::NotFound("not found in PATH".into()),
    })
}

enum Runnable {
    Yes,
    Missing,
    No(String),
}

/// Whether `file` is a file this process may execute.
fn runnable(file: &Path) -> Runnable {
    match std::fs::metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Runnable::Missing,
        Err(e) => Runnable::No(format!("cannot look at it ({e})")),
        Ok(m) if m.is_dir() => Runnable::No("it is a directory".into()),
        Ok(_) => match access(file, AccessFlags::X_OK) {
            Ok(()) => Runnable::Yes,
            Err(_) => Runnable::No("not executable (permission denied)".into()),
        },
    }
}

/// The `#!` line of a script: the interpreter and its first argument, if
/// `file` starts with `#!` and can be read.
fn interpreter(file: &Path) -> Option<(PathBuf, Option<OsString>)> {
    let mut head = [0u8; 256];
    let mut f = std::fs::File::open(file).ok()?;
    let mut read = 0;
    while read < head.len() {
        match f.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let line = head[..read].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let program = PathBuf::from(OsStr::from_bytes(words.next()?));
    let argument = words.next().map(|w| OsStr::from_bytes(w).to_owned());
    Some((program, argument))
}

/// The interpreter of a script must be runnable, and what `env` is asked
/// to run must be found.
fn check_interpreter(
    (program, argument): &(PathBuf, Option<OsString>),
    path: Option<&OsStr>,
) -> Result<(), NotRunnable> {
    let shown = program.display();
    match runnable(program) {
        Runnable::Yes => {}
        Runnable::Missing => {
            return Err(NotRunnable::Unrunnable {
                reason: format!("its interpreter {shown} (from its #! line) does not exist"),
                code: 127,
            })
        }
        Runnable::No(why) => {
            return Err(NotRunnable::Unrunnable {
                reason: format!("its interpreter {shown} (from its #! line) cannot be run: {why}"),
                code: 126,
            })
        }
    }
    let via_env = program.file_name() == Some(OsStr::new("env"));
    match argument {
        Some(name) if via_env && !name.as_bytes().starts_with(b"-") => find(name, path)
            .map(|_| ())
            .map_err(|e| NotRunnable::Unrunnable {
                reason: format!(
                    "its interpreter {} (from its #! line, through env) cannot be run: {}",
                    name.to_string_lossy(),
                    e.reason()
                ),
                code: e.code(),
            }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn programs_scripts_and_their_interpreters() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let path = OsString::from(format!("{}:/usr/bin:/bin", d.display()));
        let check = |p: &OsStr| check_with_path(p, Some(&path));
        let ok = file(d, "ok.sh", "#!/bin/sh\necho hi\n", 0o755);
        assert_eq!(check(ok.as_os_str()), Ok(ok.clone()));
        assert_eq!(check(OsStr::new("ok.sh")), Ok(ok), "found in PATH");
        assert_eq!(check(OsStr::new("sh")).unwrap().file_name().unwrap(), "sh");

        let e = check(OsStr::new("no-such-program-here")).unwrap_err();
        assert_eq!((e.code(), e.reason()), (127, "not found in PATH"));
        let e = check(d.join("absent").as_os_str()).unwrap_err();
        assert_eq!(e.code(), 127);

        let plain = file(d, "plain.txt", "data\n", 0o644);
        let e = check(plain.as_os_str()).unwrap_err();
        assert_eq!(e.code(), 126);
        assert!(e.reason().contains("not executable"), "{e:?}");
        let e = check(OsStr::new("plain.txt")).unwrap_err();
        assert!(e.reason().contains("not executable"), "{e:?}");
        let e = check(d.as_os_str()).unwrap_err();
        assert!(e.reason().contains("directory"), "{e:?}");

        let bad = file(d, "bad.sh", "#!/no/such/bash -e\necho hi\n", 0o755);
        let e = check(bad.as_os_str()).unwrap_err();
        assert_eq!(e.code(), 127);
        assert!(e.reason().contains("/no/such/bash"), "{e:?}");
        let by_env = file(d, "env.sh", "#!/usr/bin/env no-such-interpreter\n", 0o755);
        let e = check(by_env.as_os_str()).unwrap_err();
        assert_eq!(e.code(), 127);
        assert!(e.reason().contains("no-such-interpreter"), "{e:?}");
        let env_sh = file(d, "env-ok.sh", "#!/usr/bin/env sh\necho hi\n", 0o755);
        assert!(check(env_sh.as_os_str()).is_ok());
        let not_runnable = file(d, "by-text.sh", &format!("#!{}\n", plain.display()), 0o755);
        assert_eq!(check(not_runnable.as_os_str()).unwrap_err().code(), 126);
        // A program that is neither script nor binary is for the start to
        // tell: not refused here.
        let odd = file(d, "odd", "not a script\n", 0o755);
        assert!(check(odd.as_os_str()).is_ok());
        assert_eq!(check(OsStr::new("")).unwrap_err().code(), 127);
    }
}
