//! [`SqliteStore`]: the connection that every handle of one store shares,
//! the transaction each operation runs in, the `items` row that every
//! kind of item has, and waiting for an item's version to change (told by
//! the file's watch, `watch.rs`, or polling where there is none).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::time::Instant;

use super::error::map_err;
use super::live::{LiveFile, DEATH_SETTLE};
use super::schema::{self, SqliteOptions};
use super::watch::CommitSignal;
use crate::change::poll_for_change;
use crate::error::{Error, ErrorKind, Result};
use crate::lease::alive::KeepAlive;
use crate::lease::holder_id::{HolderId, MAX_HOLDER_ID};
use crate::store::item_type::ItemType;

/// A store in a SQLite database file. Clones share one connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    shown: String,
    conn: Mutex<Connection>,
    /// Rung after every commit; heard by this store's waiters.
    signal: CommitSignal,
    /// Which holders are alive (`live.rs`).
    live: LiveFile,
    /// Signs of life this store took for holders that wrote without one.
    kept: Mutex<Vec<KeepAlive>>,
}

impl SqliteStore {
    /// Open the database at `path`, creating the file if it does not exist.
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
                conn: Mutex::new(conn),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` in a transaction on a blocking thread; `f` also gets the
    /// file's name for its error messages. Writers pass
    /// `Immediate` so the write lock is held from the first read on.
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
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let map = |e| map_err(&inner.shown, what, e);
            // A panic while holding the lock drops the transaction, which
            // rolls back, so the connection is still usable.
            let mut conn = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(behavior).map_err(map)?;
            let result = match f(&tx, &inner.shown) {
                Ok(Outcome::Commit(v)) => tx.commit().map_err(map).map(|()| {
                    inner.signal.committed();
                    (v, "committed")
                }),
                // Dropping the transaction rolls it back: nothing was written.
                Ok(Outcome::Unchanged(v)) => Ok((v, "nothing written")),
                Err(e) => Err(e),
            };
            tracing::debug!(
                file = %inner.shown,
                operation = what.trim_start_matches("cannot "),
                outcome = result.as_ref().map_or("error", |(_, o)| *o),
                elapsed = ?started.elapsed(),
                "sqlite transaction"
            );
            result.map(|(v, _)| v)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("sqlite task failed: {e}")))?
    }
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

    /// Wait until the version of the `wanted` item under `id` is not
    /// `seen`, or `until`: at every event of the file's watch and every
    /// `poll` (the safety check), or where there is no watch, every `poll`.
    /// A holder's death (see `live.rs`) ends the wait too (`true`, a
    /// spurious change), so that the waiter reads its item and removes the
    /// dead holder's record.
    pub(super) async fn wait_for_change(
        &self,
        id: &str,
        wanted: ItemType,
        seen: u64,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let version = || self.version_of(id, wanted);
        let signal = &self.inner.signal;
        let (Some(notifier), Some(deaths)) = (signal.notifier(), signal.deaths()) else {
            return poll_for_change(seen, until, poll, version).await;
        };
        let mut died = deaths.subscribe();
        tokio::select! {
            changed = notifier.wait_for_change(seen, until, poll, version) => changed,
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
