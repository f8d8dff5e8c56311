//! [`SqliteStore`]: the connections that every handle of one store shares,
//! the transaction each operation runs in, the `items` row that every
//! kind of item has, and waiting for an item's version to change (told by
//! the file's watch, `watch.rs`, or polling where there is none).
//!
//! # Connections
//!
//! A store opens the file on two kinds of connection, so that a process
//! serving many requests (`monotone serve`) never makes a read wait for a
//! write:
//!
//! - **one write connection**, on which every operation that writes runs,
//!   one at a time in this process (SQLite lets one writer at a time into
//!   the file anyway). An operation waits at most the busy timeout from
//!   the moment it arrives: first for this process's other writes to lend
//!   it the connection ([`Writer`]), then, with what is left of its
//!   timeout, for other processes' write lock (SQLite's busy handler). So
//!   while another process holds the lock, queued writes all fail after one
//!   busy timeout, not the k-th after k of them. The waiting is done on the
//!   blocking thread that runs the operation, so that handing the
//!   connection from one write to the next costs a thread wake-up, not a
//!   trip through the async runtime;
//! - **up to [`READERS`] read connections**, opened when first needed and
//!   kept for the next read, with `query_only` on. In WAL mode a read sees
//!   the last commit and does not wait for a writer, of this process or
//!   another.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::error::map_err;
use super::live::{LiveFile, DEATH_SETTLE};
use super::schema::{self, SqliteOptions};
use super::watch::CommitSignal;
use crate::change::poll_for_change;
use crate::error::{Error, ErrorKind, Result};
use crate::lease::alive::KeepAlive;
use crate::lease::holder_id::{HolderId, MAX_HOLDER_ID};
use crate::store::item_type::ItemType;

/// The most read connections a store keeps open at once; more reads at
/// once wait for one of them (a read holds one for a few statements).
pub const READERS: usize = 4;

/// A store in a SQLite database file. Clones share its connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    shown: String,
    options: SqliteOptions,
    writer: Writer,
    /// Read connections not in use.
    idle_readers: Mutex<Vec<Connection>>,
    /// A permit per read connection that may be open.
    readers: Arc<tokio::sync::Semaphore>,
    /// Rung after every commit; heard by this store's waiters.
    signal: CommitSignal,
    /// Which holders are alive (`live.rs`).
    live: LiveFile,
    /// Signs of life this store took for holders that wrote without one.
    kept: Mutex<Vec<KeepAlive>>,
}

impl SqliteStore {
    /// Open the database at `path`, creating the file if it does not exist
    /// (with mode 0600 on Unix: readable and writable by its owner only;
    /// an existing file's mode is left alone).
    ///
    /// Fails with [`ErrorKind::Config`] if the file is not a monotone
    /// database (another program's database, a newer schema, not SQLite at
    /// all) or cannot be written; such a file is left untouched. This does
    /// blocking file I/O; from async code prefer [`crate::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// [`open`](Self::open) with settings other than the defaults.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let conn = schema::open(&path, &options)?;
        // SQLite keeps its side files beside the file itself.
        let db = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let live = LiveFile::new(&db);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                shown: path.display().to_string(),
                signal: CommitSignal::new(&db, live.file_name()),
                live,
                kept: Mutex::new(Vec::new()),
                path,
                options,
                writer: Writer::new(conn),
                idle_readers: Mutex::new(Vec::new()),
                readers: Arc::new(tokio::sync::Semaphore::new(READERS)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` in a transaction on a blocking thread; `f` also gets the
    /// file's name for its error messages. Writers pass `Immediate`, so the
    /// write lock is held from the first read on, and run on the write
    /// connection; readers pass `Deferred` and run on a read connection,
    /// where a write fails.
    pub(super) async fn run<T, F>(
        &self,
        behavior: TransactionBehavior,
        what: &'static str,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &str) -> Result<Outcome<T>> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let arrived = Instant::now();
        let task = match behavior {
            TransactionBehavior::Deferred => {
                let permit = Arc::clone(&inner.readers)
                    .acquire_owned()
                    .await
                    .map_err(|e| Error::new(ErrorKind::Unavailable, format!("sqlite: {e}")))?;
                tokio::task::spawn_blocking(move || {
                    let reused = inner
                        .idle_readers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop();
                    let mut conn = match reused {
                        Some(conn) => conn,
                        None => schema::open_reader(&inner.path, &inner.options)?,
                    };
                    // Nothing commits here (the connection is query_only).
                    let result =
                        transaction(&inner.shown, &mut conn, behavior, what, arrived, f, || {});
                    // A connection whose transaction panicked is dropped
                    // with it (which rolls it back), not kept.
                    inner
                        .idle_readers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(conn);
                    drop(permit);
                    result
                })
            }
            _ => tokio::task::spawn_blocking(move || {
                let timeout = inner.options.busy_timeout;
                let Some(mut conn) = inner.writer.borrow(arrived + timeout) else {
                    return Err(busy(&inner.shown, what, timeout));
                };
                // What is left of this operation's busy timeout, for
                // SQLite's busy handler; none left means one try.
                let left = timeout.saturating_sub(arrived.elapsed());
                conn.busy_timeout(left)
                    .map_err(|e| map_err(&inner.shown, what, e))?;
                transaction(&inner.shown, &mut conn, behavior, what, arrived, f, || {
                    inner.signal.committed()
                })
            }),
        };
        task.await
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("sqlite task failed: {e}")))?
    }
}

/// The write connection, lent to one operation at a time.
#[derive(Debug)]
struct Writer {
    /// `None` while lent.
    conn: Mutex<Option<Connection>>,
    /// Told when the connection comes back.
    returned: Condvar,
}

impl Writer {
    fn new(conn: Connection) -> Self {
        Writer {
            conn: Mutex::new(Some(conn)),
            returned: Condvar::new(),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection, once no other operation of this process has it, or
    /// `None` if that is not before `deadline`. Blocks the thread.
    fn borrow(&self, deadline: Instant) -> Option<Lent<'_>> {
        let mut slot = self.slot();
        loop {
            // Whoever is woken takes the connection if it is there, even
            // at its deadline: a wake-up is never lost on one that gives up.
            if let Some(conn) = slot.take() {
                return Some(Lent {
                    writer: self,
                    conn: Some(conn),
                });
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            slot = self
                .returned
                .wait_timeout(slot, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The write connection while an operation has it; given back when
/// dropped, also after a panic (the transaction, dropped first, rolls back).
struct Lent<'a> {
    writer: &'a Writer,
    conn: Option<Connection>,
}

impl std::ops::Deref for Lent<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("lent until dropped")
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("lent until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        *self.writer.slot() = self.conn.take();
        self.writer.returned.notify_one();
    }
}

/// Run `f` in a transaction of `behavior` on `conn`, committing what it
/// asks to commit; `committed` runs after a commit.
fn transaction<T, F>(
    shown: &str,
    conn: &mut Connection,
    behavior: TransactionBehavior,
    what: &'static str,
    arrived: Instant,
    f: F,
    committed: impl FnOnce(),
) -> Result<T>
where
    F: FnOnce(&Transaction<'_>, &str) -> Result<Outcome<T>>,
{
    let map = |e| map_err(shown, what, e);
    let tx = conn.transaction_with_behavior(behavior).map_err(map)?;
    let result = match f(&tx, shown) {
        Ok(Outcome::Commit(v)) => tx.commit().map_err(map).map(|()| {
            committed();
            (v, "committed")
        }),
        // Dropping the transaction rolls it back: nothing was written.
        Ok(Outcome::Unchanged(v)) => Ok((v, "nothing written")),
        Err(e) => Err(e),
    };
    tracing::debug!(
        file = %shown,
        operation = what.trim_start_matches("cannot "),
        outcome = result.as_ref().map_or("error", |(_, o)| *o),
        elapsed = ?arrived.elapsed(),
        "sqlite transaction"
    );
    result.map(|(v, _)| v)
}

/// The error of a write that waited its whole busy timeout for this
/// process's earlier writes: the same as when SQLite's busy handler gives up.
fn busy(shown: &str, what: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "sqlite database {shown}: {what}: it stayed locked by other writers for longer \
             than the busy timeout ({timeout:?})"
        ),
    )
}

/// How far a store's notifications had come when a read began (see
/// [`SqliteStore::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadMark {
    /// The sequence of commit notifications.
    pub commits: u64,
    /// The sequence of holders' deaths.
    pub deaths: u64,
}

impl SqliteStore {
    /// The version of the `wanted` item under `id`, from its `items` row
    /// alone: 0 if absent, WrongType if the id holds another kind.
    pub(super) async fn version_of(&self, id: &str, wanted: ItemType) -> Result<u64> {
        let id = id.to_owned();
        self.run(
            TransactionBehavior::Deferred,
            "cannot read",
            move |tx, shown| match item(tx, shown, &id)? {
                None => Ok(Outcome::Unchanged(0)),
                Some(r) if r.kind == wanted.stored() => Ok(Outcome::Unchanged(r.version)),
                Some(r) => Err(r.wrong_type(&id, wanted)),
            },
        )
        .await
    }

    /// Whether this store's waiters are told of commits (see `watch.rs`).
    /// The first call starts the file's watch.
    pub(super) fn pushes(&self) -> bool {
        self.inner.signal.notifier().is_some()
    }

    /// Where this store's watch runs: the point its notifications had
    /// reached, to be taken just before a read whose token a waiter will
    /// wait on (see [`wait_for_change`](Self::wait_for_change)); `None`
    /// before the first wait started the watch.
    pub(super) fn mark(&self) -> Option<ReadMark> {
        let (commits, deaths) = self.inner.signal.started()?;
        Some(ReadMark {
            commits: commits.sequence(),
            deaths: deaths.sequence(),
        })
    }

    /// Wait until the version of the `wanted` item under `id` is not
    /// `seen`, or `until`: at every event of the file's watch and every
    /// `poll` (the safety check), or where there is no watch, every `poll`.
    /// A holder's death (see `live.rs`) ends the wait too (`true`, a
    /// spurious change), so that the waiter reads its item and removes the
    /// dead holder's record.
    ///
    /// `read`: the [`mark`](Self::mark) taken before the read that saw
    /// `seen`, if the caller kept one: a death since then ends the wait at
    /// once, and without a commit since then the first version check is
    /// skipped (see [`Notifier::wait_for_change`]).
    pub(super) async fn wait_for_change(
        &self,
        id: &str,
        wanted: ItemType,
        seen: u64,
        until: Option<tokio::time::Instant>,
        poll: Duration,
        read: Option<ReadMark>,
    ) -> Result<bool> {
        let version = || self.version_of(id, wanted);
        let signal = &self.inner.signal;
        let (Some(notifier), Some(deaths)) = (signal.notifier(), signal.deaths()) else {
            return poll_for_change(seen, until, poll, version).await;
        };
        let mut died = deaths.subscribe();
        if read.is_some_and(|r| r.deaths != *died.borrow_and_update()) {
            tokio::time::sleep(DEATH_SETTLE).await;
            return Ok(true);
        }
        let read_at = read.map(|r| r.commits);
        tokio::select! {
            changed = notifier.wait_for_change(seen, until, poll, read_at, version) => changed,
            // The sender lives as long as the store: this never fails.
            _ = died.changed() => {
                tokio::time::sleep(DEATH_SETTLE).await;
                Ok(true)
            }
        }
    }

    /// Take the kernel's sign of life of `holder` before it writes its
    /// record (see `live.rs`).
    pub(super) fn keep_alive(&self, holder: HolderId) -> Result<Option<KeepAlive>> {
        self.inner.live.hold(holder)
    }

    /// Before `holder` writes its record: make sure it has a sign of life
    /// (see `live.rs`); nothing for a write without a holder.
    pub(super) fn ensure_alive(&self, holder: Option<HolderId>) -> Result<()> {
        match holder {
            Some(h) => self.inner.live.ensure(h, &self.inner.kept),
            None => Ok(()),
        }
    }

    /// Whether the kernel says the holder of a record is gone; false for a
    /// record without a holder.
    pub(super) fn is_dead(&self, holder: Option<HolderId>) -> bool {
        holder.is_some_and(|h| self.inner.live.is_dead(h))
    }

    /// Delete the row of `id` (and, for a queue or a claim pool, its other
    /// rows, with `rows`: a `DELETE` whose `?1` is the id), if `last`
    /// accepts it: `last` gives what the removal reports, or the WrongType
    /// error that keeps the row.
    pub(super) async fn remove_item<T: Send + 'static>(
        &self,
        id: &str,
        rows: Option<&'static str>,
        last: fn(&Row, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        let id = id.to_owned();
        self.run(
            TransactionBehavior::Immediate,
            "cannot delete",
            move |tx, shown| {
                let Some(row) = item(tx, shown, &id)? else {
                    return Ok(Outcome::Unchanged(None));
                };
                let last = last(&row, &id)?;
                let map = |e| map_err(shown, "cannot delete", e);
                if let Some(delete) = rows {
                    tx.execute(delete, [&id]).map_err(map)?;
                }
                tx.execute("DELETE FROM items WHERE id = ?1", [&id])
                    .map_err(map)?;
                Ok(Outcome::Commit(Some(last)))
            },
        )
        .await
    }
}

/// Whether an operation wrote something that must be committed.
pub(super) enum Outcome<T> {
    Commit(T),
    Unchanged(T),
}

/// An item's row: its type, value and version. The value is signed, as a
/// tally's may be; [`Row::count`] reads a counter's or queue's.
pub(super) struct Row {
    pub(super) kind: String,
    pub(super) value: i64,
    pub(super) version: u64,
}

/// Read the row of `id`, if any. `shown` names the file in errors.
pub(super) fn item(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<Option<Row>> {
    let row = tx
        .prepare_cached("SELECT type, value, version FROM items WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()
        })
        .map_err(|e| map_err(shown, "cannot read", e))?;
    row.map(|(kind, value, version)| {
        Ok(Row {
            kind,
            value,
            version: to_u64(version, id, "version")?,
        })
    })
    .transpose()
}

impl Row {
    /// The value of a counter or queue, which is never negative.
    pub(super) fn count(&self, id: &str) -> Result<u64> {
        to_u64(self.value, id, "value")
    }

    /// The WrongType error for this row found where `wanted` was asked for.
    /// A type this build does not know cannot be in the file: the schema's
    /// `CHECK` admits only known ones.
    pub(super) fn wrong_type(&self, id: &str, wanted: ItemType) -> Error {
        match ItemType::from_stored(&self.kind) {
            Some(found) => found.wrong_type(id, wanted),
            None => Error::new(
                ErrorKind::Corrupt,
                format!("item `{id}` has the unknown type `{}`", self.kind),
            ),
        }
    }
}

pub(super) fn to_u64(v: i64, id: &str, column: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| {
        Error::new(
            ErrorKind::Corrupt,
            format!("item `{id}` has a negative {column} ({v})"),
        )
    })
}

/// A `holder` column: empty, or a holder id; Corrupt otherwise.
pub(super) fn to_holder(v: Option<i64>, id: &str) -> Result<Option<HolderId>> {
    v.map(|n| {
        u64::try_from(n)
            .ok()
            .and_then(HolderId::new)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "item `{id}` has a holder id of {n}, not one from 1 to {MAX_HOLDER_ID}"
                    ),
                )
            })
    })
    .transpose()
}

/// SQLite integers are signed: the largest value a counter can reach here.
pub(super) fn checked_next(v: u64, id: &str) -> Result<u64> {
    v.checked_add(1)
        .filter(|n| *n <= i64::MAX as u64)
        .ok_or_else(|| Error::overflow(id))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::Store;

    fn store(busy_timeout: Duration) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions::default().with_busy_timeout(busy_timeout);
        let store = SqliteStore::open_with(dir.path().join("m.db"), options).unwrap();
        (dir, store)
    }

    /// Another process's connection holding the file's write lock.
    fn lock(store: &SqliteStore) -> Connection {
        let conn = Connection::open(store.path()).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn
    }

    /// While another connection holds the write lock and a write of this
    /// store waits for it, a read answers (from the last commit) and the
    /// write is still waiting; once the lock is released, the write goes
    /// through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_wait_behind_a_waiting_write() {
        let (_dir, store) = store(Duration::from_secs(30));
        let counter = store.counter("c").unwrap();
        assert_eq!(counter.next().await.unwrap(), 1);
        let lock = lock(&store);
        let writer = store.counter("c").unwrap();
        let write = tokio::spawn(async move { writer.next().await });
        // Let the write take the write connection and wait on the lock.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let read = tokio::time::timeout(Duration::from_secs(10), counter.get())
            .await
            .expect("the read waited behind the write");
        assert_eq!(read.unwrap(), 1);
        assert!(!write.is_finished(), "the write did not wait for the lock");
        lock.execute_batch("ROLLBACK").unwrap();
        assert_eq!(write.await.unwrap().unwrap(), 2);
    }

    /// Writes queued behind one that waits for another process's lock each
    /// give up one busy timeout after they arrived, not one after another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_queued_write_waits_one_busy_timeout_from_its_arrival() {
        const WRITES: usize = 8;
        let busy = Duration::from_millis(300);
        let (_dir, store) = store(busy);
        let lock = lock(&store);
        let writes: Vec<_> = (0..WRITES)
            .map(|_| {
                let counter = store.counter("c").unwrap();
                tokio::spawn(async move {
                    let arrived = std::time::Instant::now();
                    let result = counter.next().await;
                    (result, arrived.elapsed())
                })
            })
            .collect();
        for write in writes {
            let (result, waited) = write.await.unwrap();
            let e = result.expect_err("the file stayed locked");
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert!(e.to_string().contains("busy timeout"), "{e}");
            // One after another they would take 300 ms, 600 ms, ... 2.4 s.
            assert!(waited < busy * 3, "waited {waited:?}");
        }
        lock.execute_batch("ROLLBACK").unwrap();
        assert_eq!(store.counter("c").unwrap().next().await.unwrap(), 1);
    }

    /// A read connection refuses writes: an operation that passed
    /// `Deferred` yet wrote would fail, not write outside the write lock.
    #[tokio::test]
    async fn read_connections_cannot_write() {
        let (_dir, store) = store(Duration::from_secs(1));
        let e = store
            .run(
                TransactionBehavior::Deferred,
                "cannot write",
                |tx, shown| {
                    tx.execute(
                    "INSERT INTO items (id, type, value, version) VALUES ('x', 'COUNTER', 1, 1)",
                    [],
                )
                .map_err(|e| map_err(shown, "cannot write", e))?;
                    Ok(Outcome::Commit(()))
                },
            )
            .await
            .expect_err("a read connection wrote");
        assert!(e.to_string().contains("readonly"), "{e}");
        assert_eq!(store.counter("x").unwrap().get().await.unwrap(), 0);
    }
}

#[cfg(all(test, unix))]
mod file_mode_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::Store;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A new file, its WAL and its shared-memory file are the owner's
    /// only, whatever the umask (this process's, which is not changed
    /// here: it lets others read files it creates unless set otherwise).
    #[tokio::test]
    async fn new_files_are_private_and_existing_ones_keep_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let store = SqliteStore::open(&path).unwrap();
        store.counter("c").unwrap().next().await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }

        let existing = dir.path().join("existing.db");
        std::fs::write(&existing, b"").unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
        let store = SqliteStore::open(&existing).unwrap();
        store.counter("c").unwrap().next().await.unwrap();
        assert_eq!(mode(&existing), 0o640);
    }
}
