//! Queues in SQLite: a row of `items` with type `QUEUE` (its `value` the
//! last ticket counter handed out, its `version` the fencing token) and one
//! row of `tickets` per member.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::error::map_err;
use super::store::{checked_next, item, to_u64, Outcome, Row, SqliteStore};
use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::Expired;
use crate::lease::record as lease;
use crate::lease::record::Lease;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::state;
use crate::queue::ticket::{Joined, Tags, Ticket};
use crate::queue::Queue;
use crate::store::item_type::ItemType;
use crate::validate;

/// A queue in a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pub(super) store: SqliteStore,
    pub(super) id: String,
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
                    k if k == ItemType::Queue.stored() => Ok(FencingToken(r.version)),
                    _ => Err(r.wrong_type(id, ItemType::Queue)),
                },
            )
            .await
    }
}
