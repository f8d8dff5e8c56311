//! Push for the embedded store: how a waiter learns of a commit to the
//! database file by any process, without polling (see the `change` module
//! for what waiters do with it).
//!
//! # Watching
//!
//! The first wait on a [`SqliteStore`](super::SqliteStore) starts one
//! kernel watch (inotify, through the `notify` crate) of the database's
//! directory, not recursive, shared by every handle of that store. Its
//! events for the database file and its write-ahead log (`-wal`) advance
//! the store's [`Notifier`]; every waiter then reads the version of its own
//! item (`SELECT version FROM items WHERE id = ?`, one lookup in the primary
//! key), and only the waiters whose item changed read it whole. Every commit
//! appends to the WAL, so every writer is seen, from any process and any
//! version of monotone. Events of other files in the directory are dropped
//! on the watch's thread. An overflow of the kernel's event queue (or any
//! error of the watch) counts as a change. A process that waits holds one
//! inotify instance per store (Linux allows 128 per user by default,
//! `fs.inotify.max_user_instances`).
//!
//! # Deaths
//!
//! The same watch hears the last close of a holder's descriptor of the
//! live file (`<db>-live`, see `live.rs`), which the kernel reports as
//! `IN_CLOSE_WRITE` when a holder process ends, however it ended. That
//! advances a second notifier, which ends every wait of the store (as a
//! spurious change): each waiter reads its item again and removes a dead
//! holder's record it finds. Opening the live file, and closing a
//! read-only descriptor of it (a check), wake no one.
//!
//! # The doorbell
//!
//! A commit's last write to the WAL comes *before* the commit is visible
//! to readers: the writer still syncs the log and then publishes the commit
//! in the shared-memory index, which the kernel does not report. A waiter
//! woken by that write would read the old version and go back to sleep. So
//! after each commit this store rings a doorbell: it sets the WAL's
//! modification time (one `utimensat`, no file descriptor opened, so none
//! of SQLite's locks is disturbed), an event that comes after the commit is
//! visible. A writer of an older monotone rings no doorbell; its commits are
//! seen when it exits (the kernel reports the close of its files) or, for a
//! process that keeps running, at the waiter's next safety check of the
//! version (every `--poll`).
//!
//! # Where there is no push
//!
//! On other systems than Linux and Android, or when the watch cannot be set
//! up (too many inotify instances, a directory that cannot be watched), the
//! store's waiters poll the version every `--poll` instead, and say once so
//! under `RUST_LOG=monotone=debug`. A file system that accepts a watch but
//! reports no other host's writes (a network file system) is not one SQLite
//! supports anyway.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::change::Notifier;

/// How the processes sharing one database file tell each other of commits:
/// the doorbell this store rings after each of its commits, and the watch
/// (started by the first waiter) that hears everyone's.
#[derive(Debug)]
pub(crate) struct CommitSignal {
    /// The database file, symbolic links resolved: SQLite keeps the WAL
    /// beside the file itself.
    db: PathBuf,
    /// Its write-ahead log.
    wal: PathBuf,
    /// The name of its live file (`live.rs`), whose last close by a holder
    /// is a death.
    live: OsString,
    /// The watch, once a waiter asked for it; `None` inside if it could not
    /// be set up (waiters poll).
    watch: OnceLock<Option<imp::Watch>>,
}

impl CommitSignal {
    /// The signal of the database `db` (which exists, symbolic links
    /// resolved), whose live file is named `live`. Starts nothing.
    pub fn new(db: &Path, live: OsString) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        CommitSignal {
            db: db.to_path_buf(),
            wal: PathBuf::from(wal),
            live,
            watch: OnceLock::new(),
        }
    }

    /// A commit of this store is visible now: ring the doorbell for every
    /// watcher of the file (see the module docs). Never fails: a doorbell
    /// that cannot ring leaves waiters to their safety checks.
    pub fn committed(&self) {
        imp::ring(&self.wal);
    }

    /// The notifier that the file's watch advances, starting the watch on
    /// the first call; `None` if this store cannot push (its waiters poll).
    pub fn notifier(&self) -> Option<&Notifier> {
        self.watch().map(imp::Watch::notifier)
    }

    /// The notifier of holders' deaths (the last close of the live file by
    /// a holder), which the same watch advances; `None` as for
    /// [`notifier`](Self::notifier).
    pub fn deaths(&self) -> Option<&Notifier> {
        self.watch().map(imp::Watch::deaths)
    }

    /// The notifiers of commits and deaths, if a waiter of this store has
    /// started the watch already (this starts nothing).
    pub fn started(&self) -> Option<(&Notifier, &Notifier)> {
        let watch = self.watch.get()?.as_ref()?;
        Some((watch.notifier(), watch.deaths()))
    }

    fn watch(&self) -> Option<&imp::Watch> {
        self.watch
            .get_or_init(|| imp::Watch::start(&self.db, &self.wal, &self.live))
            .as_ref()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::ffi::OsString;
    use std::path::Path;
    use std::sync::Arc;

    use nix::fcntl::AT_FDCWD;
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    use notify::event::{AccessKind, AccessMode, EventKind};
    use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};

    use crate::change::Notifier;

    /// A watch of the database's directory and the notifiers it advances.
    #[derive(Debug)]
    pub struct Watch {
        notifier: Arc<Notifier>,
        deaths: Arc<Notifier>,
        /// Watching until dropped, with the store.
        _watcher: RecommendedWatcher,
    }

    impl Watch {
        /// Watch the directory of `db` for events of `db` and `wal`, or say
        /// (under `RUST_LOG=monotone=debug`) why not.
        pub fn start(db: &Path, wal: &Path, live: &OsString) -> Option<Watch> {
            match Self::try_start(db, wal, live.clone()) {
                Ok(watch) => {
                    tracing::debug!(file = %db.display(), "sqlite: waiters are told of commits by the kernel (inotify)");
                    Some(watch)
                }
                Err(e) => {
                    tracing::debug!(file = %db.display(), error = %e, "sqlite: cannot watch the database for changes; waiters poll every --poll");
                    None
                }
            }
        }

        fn try_start(db: &Path, wal: &Path, live: OsString) -> notify::Result<Watch> {
            let dir = match db.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let names: [OsString; 2] = [db, wal].map(|p| p.file_name().unwrap_or_default().into());
            let notifier = Arc::new(Notifier::new());
            let deaths = Arc::new(Notifier::new());
            let (told, told_deaths) = (Arc::clone(&notifier), Arc::clone(&deaths));
            let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
                let (change, death) = match &event {
                    Ok(e) => (concerns(e, &names), is_death(e, &live)),
                    // An error of the watch may hide a change or a death.
                    Err(_) => (true, true),
                };
                if change {
                    told.notify();
                }
                if death {
                    told_deaths.notify();
                }
            })?;
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            Ok(Watch {
                notifier,
                deaths,
                _watcher: watcher,
            })
        }

        pub fn notifier(&self) -> &Notifier {
            &self.notifier
        }

        pub fn deaths(&self) -> &Notifier {
            &self.deaths
        }
    }

    /// Whether `event` is the last close of a holder's descriptor of the
    /// live file (`IN_CLOSE_WRITE`), which frees its liveness lock, or a
    /// lost event.
    fn is_death(event: &Event, live: &OsString) -> bool {
        event.need_rescan()
            || (matches!(
                event.kind,
                EventKind::Access(AccessKind::Close(AccessMode::Write))
            ) && event.paths.iter().any(|p| p.file_name() == Some(live)))
    }

    /// Whether `event` may be a commit to the database: any event of the
    /// file or its WAL except opening one or closing it unwritten (every
    /// process that opens the store does that), and a lost event.
    fn concerns(event: &Event, names: &[OsString; 2]) -> bool {
        if event.need_rescan() {
            return true;
        }
        if matches!(
            event.kind,
            EventKind::Access(
                AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
            )
        ) {
            return false;
        }
        event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
    }

    /// Set the WAL's modification time to now: an event (IN_ATTRIB) that
    /// every watch of the directory receives. Errors are dropped: the
    /// waiters' safety checks cover a doorbell that did not ring.
    pub fn ring(wal: &Path) {
        let rang = utimensat(
            AT_FDCWD,
            wal,
            &TimeSpec::UTIME_OMIT,
            &TimeSpec::UTIME_NOW,
            UtimensatFlags::FollowSymlink,
        );
        if let Err(e) = rang {
            tracing::debug!(wal = %wal.display(), error = %e, "sqlite: cannot ring the doorbell");
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::ffi::OsString;
    use std::path::Path;

    use crate::change::Notifier;

    /// No watch here: waiters poll.
    #[derive(Debug)]
    pub enum Watch {}

    impl Watch {
        pub fn start(db: &Path, _wal: &Path, _live: &OsString) -> Option<Watch> {
            tracing::debug!(file = %db.display(), "sqlite: this system has no watch of the database; waiters poll every --poll");
            None
        }

        pub fn notifier(&self) -> &Notifier {
            match *self {}
        }

        pub fn deaths(&self) -> &Notifier {
            match *self {}
        }
    }

    /// Nobody listens.
    pub fn ring(_wal: &Path) {}
}
