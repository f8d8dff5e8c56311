//! Queues in SQLite: a row of `items` with type `QUEUE` (its `value` the
//! last ticket counter handed out, its `version` the fencing token) and one
//! row of `tickets` per member (schema version 1; leases since version 2,
//! their holders since version 5).
//!
//! The queue's rules are written once, in `queue/state.rs`, and applied here
//! as the memory and DynamoDB stores apply them: every write is one
//! `BEGIN IMMEDIATE` transaction that loads the queue as the process it is
//! about sees it (`QueueState::around`: the `items` row, that process's
//! `tickets` row, and a count of the tickets ahead of it), applies the one
//! rule, and writes back only the rows the rule changed. No rule needs the
//! other tickets' rows: a write reads one ticket and counts those ahead (in
//! the `(queue_id, counter)` index), rather than decoding the whole queue,
//! and holds the write lock no longer than that. The lock is held from the
//! first read, so concurrent writers queue on it and each sees the writes of
//! those before it.
//!
//! | operation | statements, in one transaction |
//! |---|---|
//! | join | `BEGIN IMMEDIATE`; the `items` row, the process's `tickets` row and a count of the rows ahead; an upsert of the `items` row and an insert into `tickets` (nothing if the process is in the queue: the re-join rule answers from its row) |
//! | leave, expire | `BEGIN IMMEDIATE`; the same reads; a delete from `tickets` and an update of the `items` row |
//! | renew | `BEGIN IMMEDIATE`; the same reads; an update of the one ticket's lease |
//! | renew and read (a holder's renewal) | the renew's transaction, then (another, read-only) those of `tickets`: the write lock is not held while the whole queue is read |
//! | ticket | the same reads |
//! | tickets | the `items` row and the `tickets` rows, ordered by counter |
//!
//! `ticket`, `tickets` and so a holder's renewal (which reads the whole
//! queue to reap the dead, see `lease/mod.rs`) also ask the kernel whether the holder of each
//! leased ticket they read lives (`live.rs`: one `fcntl` per ticket with a
//! holder, no statement); a ticket whose holder is gone is removed with
//! the transaction of an expiry, and the read is made again.
//!
//! The reads decode the rows directly: `tickets` orders them by counter, and
//! `ticket` counts the tickets with a smaller counter for its position, as
//! the rules do. The conformance suite (`monotone/tests/conformance`), run
//! unchanged on every store, is what keeps these reads and the rules in
//! step.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use tokio::time::Instant;

use super::error::map_err;
use super::store::{item, to_holder, to_u64, Outcome, ReadMark, Row, SqliteStore};
use crate::error::{Error, ErrorKind, Result};
use crate::lease::alive::KeepAlive;
use crate::lease::expiry::Expired;
use crate::lease::holder_id::HolderId;
use crate::lease::record as lease;
use crate::lease::record::{Lease, LeaseRecord};
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::state::{self, JoinOutcome, QueueEntry, QueueState};
use crate::queue::ticket::{JoinRequest, Joined, Tags, Ticket};
use crate::queue::Queue;
use crate::store::item_type::ItemType;
use crate::validate;

/// A queue in a [`SqliteStore`].
#[derive(Debug)]
pub struct SqliteQueue {
    pub(super) store: SqliteStore,
    pub(super) id: String,
    /// The token of this handle's last read of every ticket and the
    /// [`ReadMark`] taken before it, so that a wait on that token right
    /// after it needs no read of its own (see `wait_for_change`).
    pub(super) last_read: std::sync::Mutex<Option<(u64, ReadMark)>>,
}

impl Clone for SqliteQueue {
    /// Another handle of the same queue, without this one's last read.
    fn clone(&self) -> Self {
        SqliteQueue {
            store: self.store.clone(),
            id: self.id.clone(),
            last_read: Default::default(),
        }
    }
}

/// The queue's row, `None` if absent; WrongType if it is a counter.
fn queue_row(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<Option<Row>> {
    match item(tx, shown, id)? {
        Some(r) if r.kind == ItemType::Queue.stored() => Ok(Some(r)),
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
const TICKET_COLUMNS: &str = "process_id, counter, tags, lease_ms, renewals, renewed_at_ms, holder";

/// A ticket row as read, before decoding.
struct TicketRow {
    process_id: String,
    counter: i64,
    tags: String,
    lease_ms: Option<i64>,
    renewals: i64,
    renewed_at_ms: Option<i64>,
    holder: Option<i64>,
}

fn ticket_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TicketRow> {
    Ok(TicketRow {
        process_id: r.get(0)?,
        counter: r.get(1)?,
        tags: r.get(2)?,
        lease_ms: r.get(3)?,
        renewals: r.get(4)?,
        renewed_at_ms: r.get(5)?,
        holder: r.get(6)?,
    })
}

/// A ticket row's columns, checked: what monotone writes.
struct Checked {
    process_id: String,
    counter: u64,
    tags: Tags,
    /// The lease's milliseconds, renewal count, renewal time (`None` if
    /// the column is empty) and holder.
    lease: Option<(u64, u64, Option<u64>, Option<HolderId>)>,
}

impl TicketRow {
    /// The row's columns, checked; Corrupt if one holds what monotone never
    /// writes.
    fn check(self, id: &str) -> Result<Checked> {
        let counter = to_u64(self.counter, id, "ticket counter")?;
        let tags = decode_tags(&self.tags, id, &self.process_id)?;
        let lease = match self.lease_ms {
            None => None,
            Some(ms) => Some((
                to_u64(ms, id, "lease")?,
                to_u64(self.renewals, id, "renewal count")?,
                self.renewed_at_ms.and_then(|ms| u64::try_from(ms).ok()),
                to_holder(self.holder, id)?,
            )),
        };
        Ok(Checked {
            process_id: self.process_id,
            counter,
            tags,
            lease,
        })
    }

    /// The ticket of queue `id` at `position`.
    fn decode(self, id: &str, position: usize) -> Result<Ticket> {
        let c = self.check(id)?;
        let lease = c.lease.map(|(ms, renewals, renewed_at, holder)| {
            Lease::new(
                Duration::from_millis(ms),
                renewals,
                renewed_at.map(lease::from_unix_millis),
            )
            .with_holder(holder)
        });
        Ok(Ticket::new(c.process_id, c.counter, position, c.tags).with_lease(lease))
    }
}

/// The row of `process_id`'s ticket and its position (the number of tickets
/// with a smaller counter), if it is in the queue.
fn row_of(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    process_id: &str,
) -> Result<Option<(TicketRow, usize)>> {
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
    Ok(Some((row, position as usize)))
}

/// The ticket of `process_id` with its position, if it is in the queue.
fn find_ticket(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    process_id: &str,
) -> Result<Option<Ticket>> {
    row_of(tx, shown, id, process_id)?
        .map(|(row, position)| row.decode(id, position))
        .transpose()
}

/// The rows of queue `id`'s tickets, ordered by counter.
fn ticket_rows(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<Vec<TicketRow>> {
    tx.prepare_cached(&format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE queue_id = ?1 ORDER BY counter"
    ))
    .and_then(|mut s| s.query_map([id], ticket_row)?.collect())
    .map_err(|e| map_err(shown, "cannot read", e))
}

/// Queue `id` as `process_id` sees it, for the rules about that process to
/// apply to ([`QueueState::around`]): the `items` row, the process's
/// `tickets` row, and a count of the tickets ahead of it (of them all if it
/// has no ticket). `None` if there is no queue under this id. WrongType if
/// the id holds another kind of item, Corrupt if a row holds what monotone
/// never writes.
fn load_around(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    process_id: &str,
) -> Result<Option<QueueState>> {
    let Some(row) = queue_row(tx, shown, id)? else {
        return Ok(None);
    };
    let value = row.count(id)?;
    let (before, ticket) = match row_of(tx, shown, id, process_id)? {
        Some((t, position)) => {
            let c = t.check(id)?;
            let lease = c
                .lease
                .map(|(duration_ms, renewals, renewed_at, holder)| LeaseRecord {
                    duration_ms,
                    renewals,
                    // An empty renewal time (which monotone never writes) is
                    // the epoch: it is shown, never used.
                    renewed_at_ms: renewed_at.unwrap_or(0),
                    holder,
                });
            let entry = QueueEntry {
                process_id: c.process_id,
                counter: c.counter,
                tags: c.tags,
            };
            (position, Some((entry, lease)))
        }
        // A process that joins comes after every ticket there is.
        None => {
            let all: i64 = tx
                .prepare_cached("SELECT count(*) FROM tickets WHERE queue_id = ?1")
                .and_then(|mut s| s.query_row([id], |r| r.get(0)))
                .map_err(|e| map_err(shown, "cannot read", e))?;
            (all as usize, None)
        }
    };
    Ok(Some(QueueState::around(row.version, value, before, ticket)))
}

/// SQLite integers are signed: a counter, version or renewal count beyond
/// `i64::MAX` cannot be stored, and is the same overflow as past `u64::MAX`
/// in the other stores.
fn storable(n: u64, id: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::overflow(id))
}

/// Write the queue's `items` row: its last counter and its version.
fn write_item(
    tx: &Transaction<'_>,
    shown: &str,
    what: &str,
    id: &str,
    queue: &QueueState,
) -> Result<()> {
    let (value, version) = (storable(queue.value, id)?, storable(queue.version, id)?);
    tx.prepare_cached(
        "INSERT INTO items (id, type, value, version) VALUES (?1, 'QUEUE', ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET value = excluded.value, version = excluded.version",
    )
    .and_then(|mut s| s.execute(params![id, value, version]))
    .map_err(|e| map_err(shown, what, e))?;
    Ok(())
}

/// Insert the row of `ticket`, which the rule just added with `lease`.
fn insert_ticket(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    ticket: &Ticket,
    lease: Option<&LeaseRecord>,
) -> Result<()> {
    let tags = serde_json::to_string(&ticket.tags).expect("a map of strings serializes");
    let counter = storable(ticket.counter, id)?;
    let (lease_ms, renewals, renewed_at_ms) = match lease {
        None => (None, 0, None),
        Some(l) => (
            Some(storable(l.duration_ms, id)?),
            storable(l.renewals, id)?,
            Some(storable(l.renewed_at_ms, id)?),
        ),
    };
    // Holder ids are at most i64::MAX: stored as they are.
    let holder = lease.and_then(|l| l.holder).map(|h| h.get() as i64);
    tx.prepare_cached(
        "INSERT INTO tickets (queue_id, process_id, counter, tags, lease_ms, renewals, renewed_at_ms, holder)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            ticket.process_id,
            counter,
            tags,
            lease_ms,
            renewals,
            renewed_at_ms,
            holder
        ])
    })
    .map_err(|e| map_err(shown, "cannot join", e))?;
    Ok(())
}

/// Delete the row of `process_id`'s ticket, which the rule just removed
/// (a leave, an expiry), and write the queue's new version.
fn delete_ticket(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    process_id: &str,
    queue: &QueueState,
) -> Result<()> {
    tx.prepare_cached("DELETE FROM tickets WHERE queue_id = ?1 AND process_id = ?2")
        .and_then(|mut s| s.execute([id, process_id]))
        .map_err(|e| map_err(shown, "cannot leave", e))?;
    write_item(tx, shown, "cannot leave", id, queue)
}

/// Write the lease of `ticket`, which the rule just renewed.
fn update_lease(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    ticket: &Ticket,
    lease: &LeaseRecord,
) -> Result<()> {
    let counter = storable(ticket.counter, id)?;
    let renewals = storable(lease.renewals, id)?;
    let renewed_at_ms = storable(lease.renewed_at_ms, id)?;
    tx.prepare_cached(
        "UPDATE tickets SET renewals = ?4, renewed_at_ms = ?5
         WHERE queue_id = ?1 AND process_id = ?2 AND counter = ?3",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            ticket.process_id,
            counter,
            renewals,
            renewed_at_ms
        ])
    })
    .map_err(|e| map_err(shown, "cannot renew", e))?;
    Ok(())
}

impl SqliteQueue {
    /// The ticket of `process_id` as stored.
    async fn read_ticket(&self, process_id: &str) -> Result<Fenced<Ticket>> {
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

    /// Every ticket as stored.
    async fn read_tickets(&self) -> Result<Fenced<Vec<Ticket>>> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| {
                    let Some(row) = queue_row(tx, shown, &id)? else {
                        return Ok(Outcome::Unchanged(Fenced::new(vec![], FencingToken(0))));
                    };
                    let tickets = ticket_rows(tx, shown, &id)?
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

    /// Remove those of `tickets` (read with `token`) whose holder the
    /// kernel says is gone (see `live.rs`), each with the conditional write
    /// of an expiry; whether any was removed.
    async fn reap(&self, tickets: &[Ticket], token: FencingToken) -> Result<bool> {
        let mut removed = false;
        for ticket in tickets {
            if !self
                .store
                .is_dead(ticket.lease.as_ref().and_then(|l| l.holder))
            {
                continue;
            }
            let dead = Expired::dead(ticket.clone(), token);
            if let Some(token) = self.expire(&dead).await? {
                tracing::debug!(
                    queue = %self.id,
                    process = %ticket.process_id,
                    counter = ticket.counter,
                    %token,
                    "removed the ticket of a holder that is gone"
                );
            }
            // Removed, or changed since: read again either way.
            removed = true;
        }
        Ok(removed)
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    fn id(&self) -> &str {
        &self.id
    }

    async fn token(&self) -> Result<FencingToken> {
        Ok(FencingToken(
            self.store.version_of(&self.id, ItemType::Queue).await?,
        ))
    }

    fn pushes(&self) -> bool {
        self.store.pushes()
    }

    fn keep_alive(&self, holder: HolderId) -> Result<Option<KeepAlive>> {
        self.store.keep_alive(holder)
    }

    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let (id, wanted) = (&self.id, ItemType::Queue);
        // A waiter reads every ticket, then waits on the token it read.
        let read = self
            .last_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let read = read
            .filter(|(token, _)| *token == seen.get())
            .map(|(_, m)| m);
        let store = &self.store;
        store
            .wait_for_change(id, wanted, seen.get(), until, poll, read)
            .await
    }

    async fn join_as(&self, process_id: &str, request: &JoinRequest) -> Result<Joined> {
        validate::process_id(process_id)?;
        validate::tags(&request.tags)?;
        let lease = LeaseRecord::starting_now(request.lease, request.holder)?;
        self.store.ensure_alive(request.holder)?;
        let (id, pid, tags) = (self.id.clone(), process_id.to_owned(), request.tags.clone());
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot join",
                move |tx, shown| {
                    // The write lock is ours from here: the ticket exists no
                    // earlier than this.
                    let written_at = tokio::time::Instant::now();
                    let mut queue = load_around(tx, shown, &id, &pid)?.unwrap_or_default();
                    let joined = match queue.join(&id, &pid, tags, lease)? {
                        JoinOutcome::Existing(t) => {
                            return Ok(Outcome::Unchanged(Joined::new(t, false)))
                        }
                        JoinOutcome::Joined(t) => t,
                    };
                    let ticket = &joined.value;
                    write_item(tx, shown, "cannot join", &id, &queue)?;
                    insert_ticket(tx, shown, &id, ticket, queue.lease_of(ticket.counter))?;
                    Ok(Outcome::Commit(Joined::written(joined, written_at)))
                },
            )
            .await
    }

    async fn leave_if(&self, process_id: &str, counter: Option<u64>) -> Result<FencingToken> {
        validate::process_id(process_id)?;
        let (id, pid) = (self.id.clone(), process_id.to_owned());
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot leave",
                move |tx, shown| {
                    let Some(mut queue) = load_around(tx, shown, &id, &pid)? else {
                        return Err(Error::queue_not_found(&id));
                    };
                    let token = queue.leave(&id, &pid, counter)?;
                    delete_ticket(tx, shown, &id, &pid, &queue)?;
                    Ok(Outcome::Commit(token))
                },
            )
            .await
    }

    /// One write transaction: the renewal count goes up by one where the
    /// process still holds that leased ticket; the version stays.
    async fn renew(&self, process_id: &str, counter: u64) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        let (id, pid) = (self.id.clone(), process_id.to_owned());
        let now = lease::unix_millis(SystemTime::now());
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot renew",
                move |tx, shown| {
                    let Some(mut queue) = load_around(tx, shown, &id, &pid)? else {
                        return Err(state::lease_gone(&id, &pid, counter));
                    };
                    let renewed = queue.renew(&id, &pid, counter, now)?;
                    let lease = queue.lease_of(counter).expect("a renewed ticket is leased");
                    update_lease(tx, shown, &id, &renewed.value, lease)?;
                    Ok(Outcome::Commit(renewed))
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
                    let pid = &expired.ticket().process_id;
                    let Some(mut queue) = load_around(tx, shown, &id, pid)? else {
                        return Ok(Outcome::Unchanged(None));
                    };
                    match queue.expire(&id, &expired)? {
                        None => Ok(Outcome::Unchanged(None)),
                        Some(token) => {
                            delete_ticket(tx, shown, &id, pid, &queue)?;
                            Ok(Outcome::Commit(Some(token)))
                        }
                    }
                },
            )
            .await
    }

    /// The ticket as read, unless its holder is gone (see `live.rs`): then
    /// it is removed first, and this is NotFound.
    async fn ticket(&self, process_id: &str) -> Result<Fenced<Ticket>> {
        let found = self.read_ticket(process_id).await?;
        if self
            .reap(std::slice::from_ref(&found.value), found.fencing_token)
            .await?
        {
            return self.read_ticket(process_id).await;
        }
        Ok(found)
    }

    /// Every ticket, after the tickets of holders found gone (see
    /// `live.rs`) were removed.
    async fn tickets(&self) -> Result<Fenced<Vec<Ticket>>> {
        loop {
            let mark = self.store.mark();
            let all = self.read_tickets().await?;
            if !self.reap(&all.value, all.fencing_token).await? {
                *self.last_read.lock().unwrap_or_else(|e| e.into_inner()) =
                    mark.map(|m| (all.fencing_token.get(), m));
                return Ok(all);
            }
        }
    }

    async fn remove(&self) -> Result<Option<FencingToken>> {
        self.store
            .remove_item(
                &self.id,
                Some("DELETE FROM tickets WHERE queue_id = ?1"),
                |r, id| match r.kind.as_str() {
                    k if k == ItemType::Queue.stored() => Ok(FencingToken(r.version)),
                    _ => Err(r.wrong_type(id, ItemType::Queue)),
                },
            )
            .await
    }
}
