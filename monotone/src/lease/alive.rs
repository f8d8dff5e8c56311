//! [`KeepAlive`]: a holder's sign of life that the kernel keeps, where the
//! store has one (the SQLite store on Linux; see the [protocol](crate::lease),
//! "Kernel liveness"), and the kernel's answer to whether a holder lives
//! ([`gone`]).
//!
//! A sign of life is a shared (read) lock taken with `F_OFD_SETLK` on the
//! one byte at the offset of the holder's [`HolderId`] in a file, through
//! an open file description of its own (opened read-write, close-on-exec).
//! Several processes may hold it for one holder at once (the holder, and
//! the guard of the command it runs), each through its own description. A
//! process asks with `F_OFD_GETLK` whether a write lock of that byte would
//! conflict: it would while any of them lives; the kernel frees each lock
//! when the last descriptor of its description closes, however the process
//! ended (SIGKILL too).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::lease::holder_id::HolderId;

/// A holder's sign of life kept by the kernel, held for as long as this
/// value lives (see the [module docs](self)).
///
/// A holder takes it before its ticket or claim is written and drops it
/// after giving the record back. While it is held, no other process removes
/// the record before its lease; once every sign of life of the holder is
/// gone, a waiter, claimer or lister of the same store removes the record
/// at once. A program that runs a command under a holder and must keep the
/// holder alive until the command's processes are gone gives the one
/// process that outlives them a sign of life of its own
/// ([`KeepAlive::join`], with this one's [`path`](Self::path) and
/// [`holder`](Self::holder)), as `monotone lock` does for its guard.
#[derive(Debug)]
pub struct KeepAlive {
    /// Holds the lock until closed.
    _file: File,
    path: PathBuf,
    holder: HolderId,
}

impl KeepAlive {
    /// Take a sign of life of `holder` in the file at `path` (created with
    /// mode 0600 if it does not exist), for this process: `Ok(None)` on a
    /// system without open file description locks (other than Linux and
    /// Android).
    pub fn join(path: &Path, holder: HolderId) -> io::Result<Option<KeepAlive>> {
        Self::join_creating(path, holder, 0o600)
    }

    /// [`join`](Self::join), creating the file with the permission bits
    /// `mode` if it does not exist.
    pub(crate) fn join_creating(
        path: &Path,
        holder: HolderId,
        mode: u32,
    ) -> io::Result<Option<KeepAlive>> {
        Ok(imp::hold(path, holder, mode)?.map(|file| KeepAlive {
            _file: file,
            path: path.to_path_buf(),
            holder,
        }))
    }

    /// The file the lock is taken in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The holder whose sign of life this is.
    pub fn holder(&self) -> HolderId {
        self.holder
    }
}

/// Whether the kernel says that no process holds a sign of life of
/// `holder` in `file` (a descriptor of the file, read-only is enough).
/// False where that cannot be known.
pub(crate) fn gone(file: &File, holder: HolderId) -> bool {
    imp::unlocked(file, holder)
}

/// Whether this system has kernel liveness.
pub(crate) const SUPPORTED: bool = cfg!(any(target_os = "linux", target_os = "android"));

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    use nix::fcntl::{fcntl, FcntlArg};
    use nix::libc;

    use crate::lease::holder_id::HolderId;

    /// A lock description of `holder`'s byte.
    fn byte(holder: HolderId, kind: libc::c_int) -> libc::flock {
        libc::flock {
            l_type: kind as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            // Holder ids are at most i64::MAX: a valid offset.
            l_start: holder.get() as libc::off_t,
            l_len: 1,
            // 0, as OFD locks require.
            l_pid: 0,
        }
    }

    pub fn hold(path: &Path, holder: HolderId, mode: u32) -> std::io::Result<Option<File>> {
        // std opens every file close-on-exec. Read access for a read lock;
        // write access so that the last close is reported as
        // IN_CLOSE_WRITE, the death the watches of the file hear.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .open(path)?;
        fcntl(&file, FcntlArg::F_OFD_SETLK(&byte(holder, libc::F_RDLCK)))?;
        Ok(Some(file))
    }

    pub fn unlocked(file: &File, holder: HolderId) -> bool {
        let mut lock = byte(holder, libc::F_WRLCK);
        match fcntl(file, FcntlArg::F_OFD_GETLK(&mut lock)) {
            Ok(_) => lock.l_type == libc::F_UNLCK as libc::c_short,
            Err(e) => {
                tracing::debug!(%holder, error = %e, "cannot ask the kernel whether a holder lives");
                false
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::fs::File;
    use std::path::Path;

    use crate::lease::holder_id::HolderId;

    pub fn hold(_path: &Path, _holder: HolderId, _mode: u32) -> std::io::Result<Option<File>> {
        Ok(None)
    }

    pub fn unlocked(_file: &File, _holder: HolderId) -> bool {
        false
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn a_sign_of_life_is_seen_from_another_description_until_every_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-live");
        let holder = HolderId::new(1 << 40).unwrap();
        let other = HolderId::new(7).unwrap();
        let first = KeepAlive::join(&path, holder).unwrap().unwrap();
        let second = KeepAlive::join(&path, holder).unwrap().unwrap();
        let reader = File::open(&path).unwrap();
        assert!(!gone(&reader, holder));
        assert!(gone(&reader, other), "no one holds another holder's byte");
        drop(first);
        assert!(!gone(&reader, holder), "the guard's sign keeps it alive");
        drop(second);
        assert!(gone(&reader, holder));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
