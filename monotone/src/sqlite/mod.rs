//! The embedded store: one SQLite file shared by every process on a host.
//!
//! The CLI's default store. Every operation runs in its own transaction; those
//! that write begin with `BEGIN IMMEDIATE`, which takes the file's write lock
//! up front, so concurrent processes queue on the lock (for up to
//! [`BUSY_TIMEOUT`]) rather than racing on a stale read. The file is in WAL
//! mode with `synchronous=FULL`: a write is on disk before it is acknowledged.
//! See [`schema`] for the tables and for how a file is recognised as ours.
//!
//! Not for network file systems: SQLite's locks need a local disk.

mod error;
mod schema;
mod tally;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use self::error::map_err;
pub use self::schema::{SqliteOptions, APPLICATION_ID, BUSY_TIMEOUT, SCHEMA_VERSION};
pub use self::tally::SqliteTally;
use crate::counter::Counter;
use crate::error::{Error, ErrorKind, Result};
use crate::item_type::ItemType;
use crate::queue::{Fenced, FencingToken, Queue, Tags, Ticket};
use crate::store::{Location, Store};
use crate::tally::Tally;
use crate::validate;

const COUNTER: &str = "COUNTER";
const QUEUE: &str = "QUEUE";

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
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                shown: path.display().to_string(),
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
    async fn run<T, F>(&self, behavior: TransactionBehavior, what: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &str) -> Result<Outcome<T>> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let map = |e| map_err(&inner.shown, what, e);
            // A panic while holding the lock drops the transaction, which
            // rolls back, so the connection is still usable.
            let mut conn = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(behavior).map_err(map)?;
            match f(&tx, &inner.shown)? {
                Outcome::Commit(v) => {
                    tx.commit().map_err(map)?;
                    Ok(v)
                }
                // Dropping the transaction rolls it back: nothing was written.
                Outcome::Unchanged(v) => Ok(v),
            }
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("sqlite task failed: {e}")))?
    }
}

impl SqliteStore {
    /// Delete the row of `id`, a counter or a tally (a queue's tickets go
    /// too, see its `remove`), if `last` accepts it: `last` gives what the
    /// removal reports, or the WrongType error that keeps the row.
    async fn remove_item<T: Send + 'static>(
        &self,
        id: &str,
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
                tx.execute("DELETE FROM items WHERE id = ?1", [&id])
                    .map_err(|e| map_err(shown, "cannot delete", e))?;
                Ok(Outcome::Commit(Some(last)))
            },
        )
        .await
    }
}

/// Whether an operation wrote something that must be committed.
enum Outcome<T> {
    Commit(T),
    Unchanged(T),
}

impl Store for SqliteStore {
    fn counter(&self, id: &str) -> Result<Box<dyn Counter>> {
        validate::id(id)?;
        Ok(Box::new(SqliteCounter {
            store: self.clone(),
            id: id.into(),
        }))
    }

    fn queue(&self, id: &str) -> Result<Box<dyn Queue>> {
        validate::id(id)?;
        Ok(Box::new(SqliteQueue {
            store: self.clone(),
            id: id.into(),
        }))
    }

    fn tally(&self, id: &str) -> Result<Box<dyn Tally>> {
        validate::id(id)?;
        Ok(Box::new(SqliteTally {
            store: self.clone(),
            id: id.into(),
        }))
    }

    fn location(&self) -> Location {
        Location::Sqlite {
            path: self.inner.path.clone(),
        }
    }
}

/// An item's row: its type, value and version. The value is signed, as a
/// tally's may be; [`Row::count`] reads a counter's or queue's.
struct Row {
    kind: String,
    value: i64,
    version: u64,
}

/// Read the row of `id`, if any. `shown` names the file in errors.
fn item(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<Option<Row>> {
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
    fn count(&self, id: &str) -> Result<u64> {
        to_u64(self.value, id, "value")
    }

    /// The WrongType error for this row found where `wanted` was asked for.
    /// A type this build does not know cannot be in the file: the schema's
    /// `CHECK` admits only known ones.
    fn wrong_type(&self, id: &str, wanted: ItemType) -> Error {
        match ItemType::from_stored(&self.kind) {
            Some(found) => found.wrong_type(id, wanted),
            None => Error::new(
                ErrorKind::Corrupt,
                format!("item `{id}` has the unknown type `{}`", self.kind),
            ),
        }
    }
}

fn to_u64(v: i64, id: &str, column: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| {
        Error::new(
            ErrorKind::Corrupt,
            format!("item `{id}` has a negative {column} ({v})"),
        )
    })
}

/// SQLite integers are signed: the largest value a counter can reach here.
fn checked_next(v: u64, id: &str) -> Result<u64> {
    v.checked_add(1)
        .filter(|n| *n <= i64::MAX as u64)
        .ok_or_else(|| Error::overflow(id))
}

/// A counter in a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteCounter {
    store: SqliteStore,
    id: String,
}

#[async_trait]
impl Counter for SqliteCounter {
    fn id(&self) -> &str {
        &self.id
    }

    async fn get(&self) -> Result<u64> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| match item(tx, shown, &id)? {
                    None => Ok(Outcome::Unchanged(0)),
                    Some(r) if r.kind == COUNTER => Ok(Outcome::Unchanged(r.count(&id)?)),
                    Some(r) => Err(r.wrong_type(&id, ItemType::Counter)),
                },
            )
            .await
    }

    async fn next(&self) -> Result<u64> {
        let id = self.id.clone();
        self.store
            .run(TransactionBehavior::Immediate, "cannot write", move |tx, shown| {
                let row = item(tx, shown, &id)?;
                let (value, version) = match row {
                    None => (1, 1),
                    Some(r) if r.kind == COUNTER => {
                        (checked_next(r.count(&id)?, &id)?, checked_next(r.version, &id)?)
                    }
                    Some(r) => return Err(r.wrong_type(&id, ItemType::Counter)),
                };
                tx.prepare_cached(
                    "INSERT INTO items (id, type, value, version) VALUES (?1, 'COUNTER', ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET value = excluded.value, version = excluded.version",
                )
                .and_then(|mut s| s.execute(params![id, value as i64, version as i64]))
                .map_err(|e| map_err(shown, "cannot write", e))?;
                Ok(Outcome::Commit(value))
            })
            .await
    }

    async fn remove(&self) -> Result<Option<u64>> {
        self.store
            .remove_item(&self.id, |r, id| match r.kind.as_str() {
                COUNTER => r.count(id),
                _ => Err(r.wrong_type(id, ItemType::Counter)),
            })
            .await
    }
}

/// A queue in a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    store: SqliteStore,
    id: String,
}

/// The queue's row, `None` if absent; WrongType if it is a counter.
fn queue_row(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<Option<Row>> {
    match item(tx, shown, id)? {
        Some(r) if r.kind == QUEUE => Ok(Some(r)),
        Some(r) => Err(r.wrong_type(id, ItemType::Queue)),
        None => Ok(None),
    }
}

fn decode_tags(json: &str, id: &str, process_id: &str) -> Result<Tags> {
    serde_json::from_str(json).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("queue `{id}`: the tags of process `{process_id}` are unreadable: {e}"),
        )
    })
}

/// The ticket of `process_id` with its position, if it is in the queue.
fn find_ticket(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    process_id: &str,
) -> Result<Option<Ticket>> {
    let map = |e| map_err(shown, "cannot read", e);
    let found = tx
        .prepare_cached("SELECT counter, tags FROM tickets WHERE queue_id = ?1 AND process_id = ?2")
        .and_then(|mut s| {
            s.query_row([id, process_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
        })
        .map_err(map)?;
    let Some((counter, tags)) = found else {
        return Ok(None);
    };
    let position: i64 = tx
        .prepare_cached("SELECT count(*) FROM tickets WHERE queue_id = ?1 AND counter < ?2")
        .and_then(|mut s| s.query_row(params![id, counter], |r| r.get(0)))
        .map_err(map)?;
    Ok(Some(Ticket::new(
        process_id,
        to_u64(counter, id, "ticket counter")?,
        position as usize,
        decode_tags(&tags, id, process_id)?,
    )))
}

#[async_trait]
impl Queue for SqliteQueue {
    fn id(&self) -> &str {
        &self.id
    }

    async fn join(&self, process_id: &str, tags: Tags) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        validate::tags(&tags)?;
        let (id, pid) = (self.id.clone(), process_id.to_owned());
        self.store
            .run(TransactionBehavior::Immediate, "cannot join", move |tx, shown| {
                let map = |e| map_err(shown, "cannot join", e);
                let (value, version) = match queue_row(tx, shown, &id)? {
                    Some(r) => (r.count(&id)?, r.version),
                    None => (0, 0),
                };
                if let Some(existing) = find_ticket(tx, shown, &id, &pid)? {
                    return Ok(Outcome::Unchanged(Fenced::new(existing, FencingToken(version))));
                }
                let counter = checked_next(value, &id)?;
                let version = checked_next(version, &id)?;
                let tags_json = serde_json::to_string(&tags).expect("a map of strings serializes");
                tx.prepare_cached(
                    "INSERT INTO items (id, type, value, version) VALUES (?1, 'QUEUE', ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET value = excluded.value, version = excluded.version",
                )
                .and_then(|mut s| s.execute(params![id, counter as i64, version as i64]))
                .map_err(map)?;
                tx.prepare_cached(
                    "INSERT INTO tickets (queue_id, process_id, counter, tags) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![id, pid, counter as i64, tags_json]))
                .map_err(map)?;
                let ticket = find_ticket(tx, shown, &id, &pid)?.ok_or_else(|| {
                    Error::new(ErrorKind::Corrupt, format!("queue `{id}`: a ticket vanished while joining"))
                })?;
                Ok(Outcome::Commit(Fenced::new(ticket, FencingToken(version))))
            })
            .await
    }

    async fn leave(&self, process_id: &str) -> Result<FencingToken> {
        validate::process_id(process_id)?;
        let (id, pid) = (self.id.clone(), process_id.to_owned());
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot leave",
                move |tx, shown| {
                    let map = |e| map_err(shown, "cannot leave", e);
                    let row =
                        queue_row(tx, shown, &id)?.ok_or_else(|| Error::queue_not_found(&id))?;
                    let deleted = tx
                        .prepare_cached(
                            "DELETE FROM tickets WHERE queue_id = ?1 AND process_id = ?2",
                        )
                        .and_then(|mut s| s.execute([&id, &pid]))
                        .map_err(map)?;
                    if deleted == 0 {
                        return Err(Error::process_not_found(&id, &pid));
                    }
                    let version = checked_next(row.version, &id)?;
                    tx.prepare_cached("UPDATE items SET version = ?2 WHERE id = ?1")
                        .and_then(|mut s| s.execute(params![id, version as i64]))
                        .map_err(map)?;
                    Ok(Outcome::Commit(FencingToken(version)))
                },
            )
            .await
    }

    async fn ticket(&self, process_id: &str) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        let (id, pid) = (self.id.clone(), process_id.to_owned());
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| {
                    let row = queue_row(tx, shown, &id)?;
                    let ticket = match row {
                        Some(_) => find_ticket(tx, shown, &id, &pid)?,
                        None => None,
                    };
                    match (row, ticket) {
                        (Some(r), Some(t)) => {
                            Ok(Outcome::Unchanged(Fenced::new(t, FencingToken(r.version))))
                        }
                        _ => Err(Error::process_not_found(&id, &pid)),
                    }
                },
            )
            .await
    }

    async fn tickets(&self) -> Result<Fenced<Vec<Ticket>>> {
        let id = self.id.clone();
        self.store
            .run(TransactionBehavior::Deferred, "cannot read", move |tx, shown| {
                let Some(row) = queue_row(tx, shown, &id)? else {
                    return Ok(Outcome::Unchanged(Fenced::new(vec![], FencingToken(0))));
                };
                let rows = tx
                    .prepare_cached(
                        "SELECT process_id, counter, tags FROM tickets WHERE queue_id = ?1 ORDER BY counter",
                    )
                    .and_then(|mut s| {
                        s.query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(|e| map_err(shown, "cannot read", e))?;
                let tickets = rows
                    .into_iter()
                    .enumerate()
                    .map(|(position, (pid, counter, tags))| {
                        let counter = to_u64(counter, &id, "ticket counter")?;
                        let tags = decode_tags(&tags, &id, &pid)?;
                        Ok(Ticket::new(pid, counter, position, tags))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Outcome::Unchanged(Fenced::new(tickets, FencingToken(row.version))))
            })
            .await
    }

    async fn remove(&self) -> Result<Option<FencingToken>> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot delete",
                move |tx, shown| {
                    let Some(row) = queue_row(tx, shown, &id)? else {
                        return Ok(Outcome::Unchanged(None));
                    };
                    let map = |e| map_err(shown, "cannot delete", e);
                    tx.execute("DELETE FROM tickets WHERE queue_id = ?1", [&id])
                        .map_err(map)?;
                    tx.execute("DELETE FROM items WHERE id = ?1", [&id])
                        .map_err(map)?;
                    Ok(Outcome::Commit(Some(FencingToken(row.version))))
                },
            )
            .await
    }
}
