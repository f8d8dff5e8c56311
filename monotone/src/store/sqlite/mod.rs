//! The embedded store: one SQLite file shared by every process on a host.
//!
//! The CLI's default store. Every operation runs in its own transaction; those
//! that write begin with `BEGIN IMMEDIATE`, which takes the file's write lock
//! up front, so concurrent processes queue on the lock (for up to
//! [`BUSY_TIMEOUT`]) rather than racing on a stale read. The file is in WAL
//! mode with `synchronous=FULL`: a write is on disk before it is acknowledged.
//! See `schema.rs` for the tables and for how a file is recognised as ours.
//!
//! | operation | statements, in one transaction |
//! |---|---|
//! | document read | the `items` row, then the `documents` row |
//! | a watcher's check ([`Document::read_if_changed`]) | the `items` row; the `documents` row only if the version changed |
//! | document compare-and-set, remove | `BEGIN IMMEDIATE`; the `items` row; an upsert of it and of (or a delete of) the `documents` row |
//!
//! Claim pools are in the `claim` module.
//!
//! Not for network file systems: SQLite's locks need a local disk.

mod claim;
mod error;
mod schema;
mod tally;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

pub use self::claim::SqliteClaimPool;
use self::error::map_err;
pub use self::schema::{SqliteOptions, APPLICATION_ID, BUSY_TIMEOUT, SCHEMA_VERSION};
pub use self::tally::SqliteTally;
use crate::claim::ClaimPool;
use crate::counter::Counter;
use crate::document::state as document_state;
use crate::document::{CasOutcome, Document, Snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::Expired;
use crate::lease::record as lease;
use crate::lease::record::Lease;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::state;
use crate::queue::ticket::{Joined, Tags, Ticket};
use crate::queue::Queue;
use crate::store::item_type::ItemType;
use crate::store::{Location, Store};
use crate::tally::Tally;
use crate::validate;

const COUNTER: &str = "COUNTER";
const QUEUE: &str = "QUEUE";
const DOCUMENT: &str = "DOCUMENT";

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
            let started = std::time::Instant::now();
            let map = |e| map_err(&inner.shown, what, e);
            // A panic while holding the lock drops the transaction, which
            // rolls back, so the connection is still usable.
            let mut conn = inner.conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(behavior).map_err(map)?;
            let result = match f(&tx, &inner.shown) {
                Ok(Outcome::Commit(v)) => tx.commit().map_err(map).map(|()| (v, "committed")),
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
    /// Delete the row of `id` (and, for a queue or a claim pool, its other
    /// rows, with `rows`: a `DELETE` whose `?1` is the id), if `last`
    /// accepts it: `last` gives what the removal reports, or the WrongType
    /// error that keeps the row.
    async fn remove_item<T: Send + 'static>(
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

    fn document(&self, id: &str) -> Result<Box<dyn Document>> {
        validate::id(id)?;
        Ok(Box::new(SqliteDocument {
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

    fn claim_pool(&self, id: &str) -> Result<Box<dyn ClaimPool>> {
        validate::id(id)?;
        Ok(Box::new(SqliteClaimPool {
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
            .remove_item(&self.id, None, |r, id| match r.kind.as_str() {
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

/// The columns of a ticket row, in the order [`ticket_row`] reads them.
const TICKET_COLUMNS: &str = "process_id, counter, tags, lease_ms, renewals, renewed_at_ms";

/// A ticket row as read, before decoding.
struct TicketRow {
    process_id: String,
    counter: i64,
    tags: String,
    lease_ms: Option<i64>,
    renewals: i64,
    renewed_at_ms: Option<i64>,
}

fn ticket_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TicketRow> {
    Ok(TicketRow {
        process_id: r.get(0)?,
        counter: r.get(1)?,
        tags: r.get(2)?,
        lease_ms: r.get(3)?,
        renewals: r.get(4)?,
        renewed_at_ms: r.get(5)?,
    })
}

impl TicketRow {
    /// The ticket of queue `id` at `position`; Corrupt if a column holds
    /// what monotone never writes.
    fn decode(self, id: &str, position: usize) -> Result<Ticket> {
        let counter = to_u64(self.counter, id, "ticket counter")?;
        let tags = decode_tags(&self.tags, id, &self.process_id)?;
        let lease = match self.lease_ms {
            None => None,
            Some(ms) => Some(Lease::new(
                Duration::from_millis(to_u64(ms, id, "lease")?),
                to_u64(self.renewals, id, "renewal count")?,
                self.renewed_at_ms
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(lease::from_unix_millis),
            )),
        };
        Ok(Ticket::new(self.process_id, counter, position, tags).with_lease(lease))
    }
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
        .prepare_cached(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE queue_id = ?1 AND process_id = ?2"
        ))
        .and_then(|mut s| s.query_row([id, process_id], ticket_row).optional())
        .map_err(map)?;
    let Some(row) = found else {
        return Ok(None);
    };
    let position: i64 = tx
        .prepare_cached("SELECT count(*) FROM tickets WHERE queue_id = ?1 AND counter < ?2")
        .and_then(|mut s| s.query_row(params![id, row.counter], |r| r.get(0)))
        .map_err(map)?;
    row.decode(id, position as usize).map(Some)
}

/// Take `process_id`'s ticket out of queue `row` (`id`) and add one to the
/// queue's version; NotFound if it is not there. Returns the new token.
fn remove_ticket(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    row: &Row,
    process_id: &str,
) -> Result<FencingToken> {
    let map = |e| map_err(shown, "cannot leave", e);
    let deleted = tx
        .prepare_cached("DELETE FROM tickets WHERE queue_id = ?1 AND process_id = ?2")
        .and_then(|mut s| s.execute([id, process_id]))
        .map_err(map)?;
    if deleted == 0 {
        return Err(Error::process_not_found(id, process_id));
    }
    let version = checked_next(row.version, id)?;
    tx.prepare_cached("UPDATE items SET version = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, version as i64]))
        .map_err(map)?;
    Ok(FencingToken(version))
}

#[async_trait]
impl Queue for SqliteQueue {
    fn id(&self) -> &str {
        &self.id
    }

    async fn join_with(
        &self,
        process_id: &str,
        tags: Tags,
        lease: Option<Duration>,
    ) -> Result<Joined> {
        validate::process_id(process_id)?;
        validate::tags(&tags)?;
        if let Some(d) = lease {
            lease::validate(d)?;
        }
        let lease_ms = lease.map(|d| lease::millis(d) as i64);
        let now = lease::unix_millis(SystemTime::now()) as i64;
        let (id, pid) = (self.id.clone(), process_id.to_owned());
        self.store
            .run(TransactionBehavior::Immediate, "cannot join", move |tx, shown| {
                let map = |e| map_err(shown, "cannot join", e);
                let (value, version) = match queue_row(tx, shown, &id)? {
                    Some(r) => (r.count(&id)?, r.version),
                    None => (0, 0),
                };
                if let Some(existing) = find_ticket(tx, shown, &id, &pid)? {
                    return Ok(Outcome::Unchanged(Joined::new(Fenced::new(existing, FencingToken(version)), false)));
                }
                // The write lock is ours from here: the ticket exists no
                // earlier than this.
                let written_at = tokio::time::Instant::now();
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
                    "INSERT INTO tickets (queue_id, process_id, counter, tags, lease_ms, renewals, renewed_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![id, pid, counter as i64, tags_json, lease_ms, lease_ms.map(|_| now)])
                })
                .map_err(map)?;
                let ticket = find_ticket(tx, shown, &id, &pid)?.ok_or_else(|| {
                    Error::new(ErrorKind::Corrupt, format!("queue `{id}`: a ticket vanished while joining"))
                })?;
                Ok(Outcome::Commit(Joined::written(Fenced::new(ticket, FencingToken(version)), written_at)))
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
                    let row =
                        queue_row(tx, shown, &id)?.ok_or_else(|| Error::queue_not_found(&id))?;
                    remove_ticket(tx, shown, &id, &row, &pid).map(Outcome::Commit)
                },
            )
            .await
    }

    /// One write transaction: the renewal count goes up by one where the
    /// process still holds that leased ticket; the version stays.
    async fn renew(&self, process_id: &str, counter: u64) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        let (id, pid) = (self.id.clone(), process_id.to_owned());
        let now = lease::unix_millis(SystemTime::now()) as i64;
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot renew",
                move |tx, shown| {
                    let Some(row) = queue_row(tx, shown, &id)? else {
                        return Err(state::lease_gone(&id, &pid, counter));
                    };
                    let renewed = tx
                        .prepare_cached(
                            "UPDATE tickets SET renewals = renewals + 1, renewed_at_ms = ?4
                             WHERE queue_id = ?1 AND process_id = ?2 AND counter = ?3
                               AND lease_ms IS NOT NULL",
                        )
                        .and_then(|mut s| s.execute(params![id, pid, counter as i64, now]))
                        .map_err(|e| map_err(shown, "cannot renew", e))?;
                    let ticket = find_ticket(tx, shown, &id, &pid)?;
                    match ticket {
                        Some(t) if renewed == 1 => {
                            Ok(Outcome::Commit(Fenced::new(t, FencingToken(row.version))))
                        }
                        Some(t) if t.counter == counter => Err(state::lease_removed(&id, &pid)),
                        _ => Err(state::lease_gone(&id, &pid, counter)),
                    }
                },
            )
            .await
    }

    /// One write transaction that removes the ticket only if it is as the
    /// observer saw it.
    async fn expire(&self, expired: &Expired) -> Result<Option<FencingToken>> {
        let id = self.id.clone();
        let expired = expired.clone();
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot remove an expired ticket",
                move |tx, shown| {
                    let Some(row) = queue_row(tx, shown, &id)? else {
                        return Ok(Outcome::Unchanged(None));
                    };
                    let seen = expired.ticket();
                    let now = find_ticket(tx, shown, &id, &seen.process_id)?;
                    let unchanged = now.is_some_and(|t| {
                        t.counter == seen.counter
                            && t.lease.is_some()
                            && t.lease.as_ref().map(|l| (l.duration, l.renewals))
                                == seen.lease.as_ref().map(|l| (l.duration, l.renewals))
                    });
                    if !unchanged {
                        return Ok(Outcome::Unchanged(None));
                    }
                    remove_ticket(tx, shown, &id, &row, &seen.process_id)
                        .map(|token| Outcome::Commit(Some(token)))
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
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| {
                    let Some(row) = queue_row(tx, shown, &id)? else {
                        return Ok(Outcome::Unchanged(Fenced::new(vec![], FencingToken(0))));
                    };
                    let rows = tx
                        .prepare_cached(&format!(
                        "SELECT {TICKET_COLUMNS} FROM tickets WHERE queue_id = ?1 ORDER BY counter"
                    ))
                        .and_then(|mut s| {
                            s.query_map([&id], ticket_row)?
                                .collect::<rusqlite::Result<Vec<_>>>()
                        })
                        .map_err(|e| map_err(shown, "cannot read", e))?;
                    let tickets = rows
                        .into_iter()
                        .enumerate()
                        .map(|(position, row)| row.decode(&id, position))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Outcome::Unchanged(Fenced::new(
                        tickets,
                        FencingToken(row.version),
                    )))
                },
            )
            .await
    }

    async fn remove(&self) -> Result<Option<FencingToken>> {
        self.store
            .remove_item(
                &self.id,
                Some("DELETE FROM tickets WHERE queue_id = ?1"),
                |r, id| match r.kind.as_str() {
                    QUEUE => Ok(FencingToken(r.version)),
                    _ => Err(r.wrong_type(id, ItemType::Queue)),
                },
            )
            .await
    }
}

/// A document in a [`SqliteStore`]: its version in `items`, its text in
/// `documents`. A change check reads the `items` row only: one lookup in
/// the primary key's b-tree, whatever the document's size.
#[derive(Debug, Clone)]
pub struct SqliteDocument {
    store: SqliteStore,
    id: String,
}

/// The document's version (0 if absent); WrongType if the id holds
/// something else.
fn document_version(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<u64> {
    match item(tx, shown, id)? {
        None => Ok(0),
        Some(r) if r.kind == DOCUMENT => Ok(r.version),
        Some(r) => Err(r.wrong_type(id, ItemType::Document)),
    }
}

/// The document's value, `None` if it has none (absent or removed).
fn document_value(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
) -> Result<Option<serde_json::Value>> {
    let text: Option<String> = tx
        .prepare_cached("SELECT body FROM documents WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(|e| map_err(shown, "cannot read", e))?;
    text.map(|t| document_state::decode(&format!("sqlite database {shown}"), id, &t))
        .transpose()
}

/// The document as it is: version, then value.
fn document_snapshot(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<Snapshot> {
    let version = document_version(tx, shown, id)?;
    Ok(Snapshot::new(document_value(tx, shown, id)?, version))
}

/// Set the document's version, and its text (`None` deletes it).
fn write_document(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    version: u64,
    text: Option<&str>,
) -> Result<()> {
    let map = |e| map_err(shown, "cannot write", e);
    tx.prepare_cached(
        "INSERT INTO items (id, type, value, version) VALUES (?1, 'DOCUMENT', 0, ?2)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
    )
    .and_then(|mut s| s.execute(params![id, version as i64]))
    .map_err(map)?;
    match text {
        Some(text) => tx
            .prepare_cached(
                "INSERT INTO documents (id, body) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            )
            .and_then(|mut s| s.execute(params![id, text])),
        None => tx
            .prepare_cached("DELETE FROM documents WHERE id = ?1")
            .and_then(|mut s| s.execute([id])),
    }
    .map_err(map)?;
    Ok(())
}

/// Whether the document has a text (exists), without reading it.
fn document_exists(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<bool> {
    tx.prepare_cached("SELECT 1 FROM documents WHERE id = ?1")
        .and_then(|mut s| s.exists([id]))
        .map_err(|e| map_err(shown, "cannot read", e))
}

#[async_trait]
impl Document for SqliteDocument {
    fn id(&self) -> &str {
        &self.id
    }

    async fn read(&self) -> Result<Snapshot> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| Ok(Outcome::Unchanged(document_snapshot(tx, shown, &id)?)),
            )
            .await
    }

    async fn read_if_changed(&self, known: u64) -> Result<Option<Snapshot>> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| {
                    let version = document_version(tx, shown, &id)?;
                    if version == known {
                        return Ok(Outcome::Unchanged(None));
                    }
                    let value = document_value(tx, shown, &id)?;
                    Ok(Outcome::Unchanged(Some(Snapshot::new(value, version))))
                },
            )
            .await
    }

    async fn compare_and_set(
        &self,
        expected: u64,
        value: Option<&serde_json::Value>,
    ) -> Result<CasOutcome> {
        let text = value
            .map(|v| document_state::encode(&self.id, v))
            .transpose()?;
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot write",
                move |tx, shown| {
                    let version = document_version(tx, shown, &id)?;
                    if version != expected {
                        let value = document_value(tx, shown, &id)?;
                        return Ok(Outcome::Unchanged(CasOutcome::Conflict(Snapshot::new(
                            value, version,
                        ))));
                    }
                    if text.is_none() && !document_exists(tx, shown, &id)? {
                        return Ok(Outcome::Unchanged(CasOutcome::Done { version }));
                    }
                    let version = checked_next(version, &id)?;
                    write_document(tx, shown, &id, version, text.as_deref())?;
                    Ok(Outcome::Commit(CasOutcome::Done { version }))
                },
            )
            .await
    }

    async fn remove(&self) -> Result<Option<u64>> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot delete",
                move |tx, shown| {
                    let version = document_version(tx, shown, &id)?;
                    if !document_exists(tx, shown, &id)? {
                        return Ok(Outcome::Unchanged(None));
                    }
                    let version = checked_next(version, &id)?;
                    write_document(tx, shown, &id, version, None)?;
                    Ok(Outcome::Commit(Some(version)))
                },
            )
            .await
    }
}
