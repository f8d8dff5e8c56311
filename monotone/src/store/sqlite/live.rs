//! Kernel liveness for the embedded store: which holders are alive, as the
//! kernel knows it (the protocol is in the [`lease`](crate::lease) module's
//! docs, "Kernel liveness").
//!
//! Beside the database `<db>` lies `<db>-live`, an empty file created with
//! the database's permission bits (0600 if they cannot be read), so that
//! whoever may write the database may keep a holder alive in it. A holder (a `LeaseHolder`, a
//! `ClaimHolder`: `lock`, `claim ... -- CMD`) takes its sign of life there
//! ([`KeepAlive`]: a shared open file description lock on the one byte at
//! the offset of its [`HolderId`]) before the commit that makes its ticket
//! or claim visible ([`LiveFile::hold`]), and keeps it until it has given
//! its record back. Any process asks with `F_OFD_GETLK` on a read-only
//! descriptor whether that byte is locked ([`LiveFile::is_dead`]):
//! `F_UNLCK` means the holder is gone, since the kernel frees a lock when
//! the last descriptor of its open file description closes, SIGKILL
//! included. One `fcntl` per leased record with a holder, per read that
//! checks: no request to the database.
//!
//! The kernel also reports that last close as `IN_CLOSE_WRITE` on
//! `<db>-live`, which the file's watch (`watch.rs`) turns into a wake of
//! every waiter: it reads its item again and finds the dead holder's record
//! to remove. The report comes just before the kernel frees the lock (in
//! the same close), so a waiter woken by it waits [`DEATH_SETTLE`] before
//! it looks; a waiter that still looked too early finds the death at its
//! next look (within its poll interval).
//!
//! A record whose holder id has no lock here may be removed at once, so
//! only holders that take the lock may store a holder id in this file: a
//! holder that cannot take it fails (with [`ErrorKind::Unavailable`]) before
//! it writes anything. Where `<db>-live` does not exist, nobody ever took a
//! lock in it, and no record is taken for dead. On systems without OFD
//! locks (other than Linux and Android), holders take none and nobody
//! checks: records expire by the lease rules alone, as said once under
//! `RUST_LOG=monotone=debug`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::alive::{self, KeepAlive};
use crate::lease::holder_id::HolderId;

/// How long a waiter woken by a holder's death waits before it looks: the
/// kernel reports the close a moment before it frees the close's locks.
pub(crate) const DEATH_SETTLE: Duration = Duration::from_millis(2);

/// The `<db>-live` file of one database, and a read-only descriptor of it
/// to ask about locks, opened at the first question.
#[derive(Debug)]
pub(crate) struct LiveFile {
    path: PathBuf,
    /// The permission bits the file is created with: the database's.
    mode: u32,
    reader: OnceLock<std::fs::File>,
}

impl LiveFile {
    /// The live file beside the database `db` (symbolic links resolved).
    pub fn new(db: &Path) -> Self {
        let mut path = db.as_os_str().to_owned();
        path.push("-live");
        let mode = std::fs::metadata(db).map_or(0o600, |m| {
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o666
        });
        LiveFile {
            path: PathBuf::from(path),
            mode,
            reader: OnceLock::new(),
        }
    }

    /// The file's name (its last component), as the watch sees it.
    pub fn file_name(&self) -> std::ffi::OsString {
        self.path.file_name().unwrap_or_default().to_owned()
    }

    /// Take `holder`'s lock, before its record is written: `None` on a
    /// system without OFD locks; an error if the lock cannot be taken.
    pub fn hold(&self, holder: HolderId) -> Result<Option<KeepAlive>> {
        if !alive::SUPPORTED {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                tracing::debug!(file = %self.path.display(), "sqlite: no kernel liveness on this system; dead holders' records expire by their leases");
            });
        }
        KeepAlive::join_creating(&self.path, holder, self.mode)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "cannot take the liveness lock of holder {holder} in {}: {e}; nothing was written",
                        self.path.display()
                    ),
                )
            })
    }

    /// Make sure that `holder`, which is about to write a record, has a
    /// sign of life: if no process holds one (its caller did not take one
    /// through [`Queue::keep_alive`](crate::Queue::keep_alive), as a handle
    /// that wraps this store's may not), take one that lives as long as
    /// `kept` does (this store, in this process). So a record with a holder
    /// id is never taken for a dead holder's while its process lives.
    pub fn ensure(&self, holder: HolderId, kept: &Mutex<Vec<KeepAlive>>) -> Result<()> {
        if !alive::SUPPORTED || self.reader().is_some_and(|r| !alive::gone(r, holder)) {
            return Ok(());
        }
        if let Some(alive) = self.hold(holder)? {
            tracing::debug!(%holder, "sqlite: a holder without a sign of life gets one for as long as the store lives");
            kept.lock().unwrap_or_else(|p| p.into_inner()).push(alive);
        }
        Ok(())
    }

    /// The read-only descriptor that asks, once the file exists.
    fn reader(&self) -> Option<&std::fs::File> {
        if let Some(file) = self.reader.get() {
            return Some(file);
        }
        // Not there yet when no holder ever made it: look again next time.
        let file = std::fs::File::open(&self.path).ok()?;
        Some(self.reader.get_or_init(|| file))
    }

    /// Whether the kernel says `holder` is gone: its byte unlocked in a
    /// live file that exists. False where that cannot be known.
    pub fn is_dead(&self, holder: HolderId) -> bool {
        alive::SUPPORTED && self.reader().is_some_and(|r| alive::gone(r, holder))
    }
}
