//! Queues in DynamoDB: read the item, apply the rule of
//! [`QueueState`], write it back conditional on the `Version` read.

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::schema::{
    decode, encode_entry, encode_lease, n, s, Item, Stored, StoredQueue, QUEUE,
    QUEUE_CREATE_CONDITION, QUEUE_EXPIRE_CONDITION, QUEUE_JOIN_FIRST_LEASE_UPDATE,
    QUEUE_JOIN_LEASED_UPDATE, QUEUE_JOIN_UPDATE, QUEUE_LEAVE_LAST_LEASED_UPDATE,
    QUEUE_LEAVE_LAST_UPDATE, QUEUE_LEAVE_LEASED_UPDATE, QUEUE_LEAVE_UPDATE, QUEUE_REMOVE_CONDITION,
    QUEUE_RENEW_CONDITION, QUEUE_RENEW_UPDATE, QUEUE_VERSION_CONDITION, TICKET_PLACEHOLDER,
};
use super::store::DynamoDbStore;
use super::table::{Update, Written};
use crate::backoff::Attempts;
use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::Expired;
use crate::lease::record as lease;
use crate::lease::record::LeaseRecord;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::state::{self, JoinOutcome, QueueEntry, QueueState};
use crate::queue::ticket::{JoinRequest, Joined, Ticket};
use crate::queue::Queue;
use crate::store::item_type::ItemType;
use crate::validate;

/// A queue in a [`DynamoDbStore`].
#[derive(Debug, Clone)]
pub struct DynamoDbQueue {
    pub(super) store: DynamoDbStore,
    pub(super) id: String,
}

impl DynamoDbQueue {
    /// One `UpdateItem` adding one renewal to the lease of `process_id`'s
    /// ticket numbered `counter`, conditional on the lease still being this
    /// process's; the queue as written (`ALL_NEW`).
    async fn renewed(&self, process_id: &str, counter: u64) -> Result<QueueState> {
        validate::process_id(process_id)?;
        let what = format!("queue `{}`: renewal of process `{process_id}`", self.id);
        let table = &self.store.inner.table;
        let mut attempts = self.store.attempts();
        loop {
            let now = lease::unix_millis(SystemTime::now());
            let update = Update {
                update: QUEUE_RENEW_UPDATE,
                condition: QUEUE_RENEW_CONDITION,
                values: vec![
                    (":queue", s(QUEUE)),
                    (":process", s(process_id)),
                    (":one", n(1)),
                    (":now", n(now)),
                ],
                returns: ReturnValue::AllNew,
                resend_unanswered: true,
            };
            let names = ticket_name(QUEUE_RENEW_UPDATE, counter);
            let item = match table.update_named(&what, &self.id, &update, &names).await? {
                Written::Done(new) => match self.decode(Some(&new))? {
                    Some(queue) => return Ok(queue.state),
                    None => {
                        return Err(Error::new(
                            ErrorKind::Corrupt,
                            format!("{what}: the renewal returned no item"),
                        ))
                    }
                },
                Written::ConditionFailed(item) => {
                    table.returned_or_read(&what, &self.id, item).await?
                }
            };
            // Why did the condition fail? The rule of the state says; if it
            // says the lease is still there, the item changed in between:
            // try again.
            match self.decode(item.as_ref())? {
                None => return Err(state::lease_gone(&self.id, process_id, counter)),
                Some(mut queue) => {
                    queue.state.renew(&self.id, process_id, counter, now)?;
                }
            }
            self.store.back_off(&mut attempts, &what).await?;
        }
    }

    /// The queue in `item`: `None` if absent, WrongType if another kind,
    /// Corrupt if unreadable.
    fn decode(&self, item: Option<&Item>) -> Result<Option<StoredQueue>> {
        match item {
            None => Ok(None),
            Some(item) => match decode(&self.store.inner.table.name, &self.id, item)? {
                Stored::Queue(q) => Ok(Some(q)),
                other => Err(other.wrong_type(&self.id, ItemType::Queue)),
            },
        }
    }

    /// One strongly consistent read.
    async fn read(&self, what: &str) -> Result<Option<StoredQueue>> {
        let item = self.store.inner.table.get(what, &self.id).await?;
        self.decode(item.as_ref())
    }

    /// After a failed condition: back off, then the queue to try again on.
    /// That is the item the server returned with the failure, if it did and
    /// the wait was short enough for it to still be fresh; else a new read.
    /// A returned item that is not a readable queue ends the operation at
    /// once, without waiting.
    async fn after_conflict(
        &self,
        what: &str,
        item: Option<Item>,
        attempts: &mut Attempts<'_>,
    ) -> Result<Option<StoredQueue>> {
        let returned = item.map(|item| self.decode(Some(&item))).transpose()?;
        let waited = self.store.back_off(attempts, what).await?;
        match returned {
            Some(queue) if waited <= self.store.inner.backoff.reuse_within => Ok(queue),
            _ => self.read(what).await,
        }
    }

    /// Take `process_id`'s entry (and lease) out of `queue`, conditional on
    /// its version, and, for an expiry, on the lease's renewal count being
    /// `renewals`. The caller has checked that the process is a member.
    async fn write_removal(
        &self,
        what: &str,
        queue: &StoredQueue,
        process_id: &str,
        renewals: Option<u64>,
    ) -> Result<Written> {
        let mut state = queue.state.clone();
        let token = state.leave(&self.id, process_id, None)?;
        let counter = queue.state.ticket(&self.id, process_id)?.value.counter;
        let leased = queue.state.lease_of(counter).is_some();
        let raw = queue
            .raw_entry(process_id)
            .expect("a member of the state has a stored entry")
            .to_owned();
        let (mut condition, mut values) = Self::condition(Some(queue));
        if let Some(renewals) = renewals {
            condition = QUEUE_EXPIRE_CONDITION;
            values.push((":renewals", n(renewals)));
        }
        values.push((":version", n(token.get())));
        let last = state.entries().is_empty();
        if !last {
            values.push((":entry", AttributeValue::Ss(vec![raw])));
        }
        let update = match (last, leased) {
            (false, false) => QUEUE_LEAVE_UPDATE,
            (true, false) => QUEUE_LEAVE_LAST_UPDATE,
            (false, true) => QUEUE_LEAVE_LEASED_UPDATE,
            (true, true) => QUEUE_LEAVE_LAST_LEASED_UPDATE,
        };
        let update = Update {
            update,
            condition,
            values,
            returns: ReturnValue::None,
            resend_unanswered: true,
        };
        let names = ticket_name(&format!("{} {}", update.update, update.condition), counter);
        self.store
            .inner
            .table
            .update_named(what, &self.id, &update, &names)
            .await
    }

    /// The condition and its values for writing over `seen`.
    fn condition(
        seen: Option<&StoredQueue>,
    ) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
        match seen {
            None => (QUEUE_CREATE_CONDITION, vec![]),
            Some(q) => (
                QUEUE_VERSION_CONDITION,
                vec![(":queue", s(QUEUE)), (":expected", n(q.state.version))],
            ),
        }
    }
}

#[async_trait]
impl Queue for DynamoDbQueue {
    fn id(&self) -> &str {
        &self.id
    }

    /// One strongly consistent `GetItem` of the `Type` and `Version` alone.
    /// DynamoDB cannot push: waiters poll this (the default
    /// `wait_for_change`).
    async fn token(&self) -> Result<FencingToken> {
        let version = self.store.version_of(&self.id, ItemType::Queue).await?;
        Ok(FencingToken(version))
    }

    /// A consistent read, then (unless already in the queue) one
    /// `UpdateItem` adding the entry (and its lease), conditional on the
    /// version read. Sent again after a lost answer, that write finds the
    /// version moved on; the read after it finds the ticket, which the
    /// re-join rule gives back as the one asked for.
    async fn join_as(&self, process_id: &str, request: &JoinRequest) -> Result<Joined> {
        validate::process_id(process_id)?;
        validate::tags(&request.tags)?;
        // Checked once; each attempt takes its own wall-clock time.
        LeaseRecord::starting_now(request.lease, request.holder)?;
        let tags = &request.tags;
        let what = format!("queue `{}`: join of process `{process_id}`", self.id);
        let table = &self.store.inner.table;
        let mut seen = self.read(&what).await?;
        let mut attempts = self.store.attempts();
        loop {
            let record = LeaseRecord::starting_now(request.lease, request.holder)?;
            let mut state = seen.as_ref().map(|q| q.state.clone()).unwrap_or_default();
            // A nested SET needs the map; a queue without live leases gets a
            // new one (dropping any lease that belongs to no ticket).
            let had_leases = state.has_leases();
            let ticket = match state.join(&self.id, process_id, tags.clone(), record)? {
                JoinOutcome::Existing(ticket) => return Ok(Joined::new(ticket, false)),
                JoinOutcome::Joined(ticket) => ticket,
            };
            let counter = ticket.value.counter;
            let entry = encode_entry(&QueueEntry {
                process_id: process_id.to_owned(),
                counter,
                tags: tags.clone(),
            });
            let (condition, mut values) = Self::condition(seen.as_ref());
            values.extend([
                (":queue", s(QUEUE)),
                (":version", n(state.version)),
                (":value", n(state.value)),
                (":entry", AttributeValue::Ss(vec![entry])),
            ]);
            let update = match record {
                None => QUEUE_JOIN_UPDATE,
                Some(record) if had_leases => {
                    values.push((":lease", encode_lease(process_id, &record)));
                    QUEUE_JOIN_LEASED_UPDATE
                }
                Some(record) => {
                    let leases =
                        HashMap::from([(counter.to_string(), encode_lease(process_id, &record))]);
                    values.push((":leases", AttributeValue::M(leases)));
                    QUEUE_JOIN_FIRST_LEASE_UPDATE
                }
            };
            let update = Update {
                update,
                condition,
                values: dedup(values),
                returns: ReturnValue::None,
                resend_unanswered: true,
            };
            let names = ticket_name(update.update, counter);
            let sent = tokio::time::Instant::now();
            match table.update_named(&what, &self.id, &update, &names).await? {
                Written::Done(_) => return Ok(Joined::written(ticket, sent)),
                Written::ConditionFailed(item) => {
                    seen = self.after_conflict(&what, item, &mut attempts).await?;
                }
            }
        }
    }

    /// A consistent read, then one `UpdateItem` taking the entry (and its
    /// lease) out, conditional on the version read.
    async fn leave_if(&self, process_id: &str, counter: Option<u64>) -> Result<FencingToken> {
        validate::process_id(process_id)?;
        let what = format!("queue `{}`: leave of process `{process_id}`", self.id);
        let mut seen = self.read(&what).await?;
        let mut attempts = self.store.attempts();
        loop {
            let Some(queue) = seen.as_ref() else {
                return Err(Error::queue_not_found(&self.id));
            };
            let token = queue.state.clone().leave(&self.id, process_id, counter)?;
            match self.write_removal(&what, queue, process_id, None).await? {
                Written::Done(_) => return Ok(token),
                Written::ConditionFailed(item) => {
                    seen = self.after_conflict(&what, item, &mut attempts).await?;
                }
            }
        }
    }

    /// One `UpdateItem` adding one renewal to the lease, conditional on the
    /// lease still being this process's; it returns the queue as written.
    async fn renew(&self, process_id: &str, counter: u64) -> Result<Fenced<Ticket>> {
        self.renewed(process_id, counter)
            .await?
            .ticket(&self.id, process_id)
    }

    /// As [`renew`](Queue::renew): its one `UpdateItem` returns the whole
    /// queue (`ALL_NEW`), which is the read.
    async fn renew_and_read(
        &self,
        process_id: &str,
        counter: u64,
    ) -> Result<(Fenced<Ticket>, Fenced<Vec<Ticket>>)> {
        let queue = self.renewed(process_id, counter).await?;
        Ok((queue.ticket(&self.id, process_id)?, queue.tickets()))
    }

    /// A consistent read; if the ticket is as the observer saw it, one
    /// `UpdateItem` removing it, conditional on the version read and on the
    /// lease's renewal count.
    async fn expire(&self, expired: &Expired) -> Result<Option<FencingToken>> {
        let pid = &expired.ticket().process_id;
        let what = format!("queue `{}`: expiry of process `{pid}`", self.id);
        let mut seen = self.read(&what).await?;
        let mut attempts = self.store.attempts();
        loop {
            let Some(queue) = seen.as_ref() else {
                return Ok(None);
            };
            let Some(token) = queue.state.clone().expire(&self.id, expired)? else {
                return Ok(None);
            };
            match self
                .write_removal(&what, queue, pid, Some(expired.renewals()))
                .await?
            {
                Written::Done(_) => return Ok(Some(token)),
                Written::ConditionFailed(item) => {
                    seen = self.after_conflict(&what, item, &mut attempts).await?;
                }
            }
        }
    }

    /// One consistent read.
    async fn ticket(&self, process_id: &str) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        let what = format!("queue `{}`: ticket of process `{process_id}`", self.id);
        match self.read(&what).await? {
            None => Err(Error::process_not_found(&self.id, process_id)),
            Some(q) => q.state.ticket(&self.id, process_id),
        }
    }

    /// One consistent read.
    async fn tickets(&self) -> Result<Fenced<Vec<Ticket>>> {
        let what = format!("queue `{}`: tickets", self.id);
        Ok(self
            .read(&what)
            .await?
            .map_or_else(|| QueueState::default().tickets(), |q| q.state.tickets()))
    }

    /// One `DeleteItem` under the queue condition, returning the old item.
    /// Only the old `Version` is read back, so a queue whose members are
    /// unreadable can still be removed.
    async fn remove(&self) -> Result<Option<FencingToken>> {
        let what = format!("queue `{}`: remove", self.id);
        let values = [
            (":queue", s(QUEUE)),
            (":number", s("N")),
            (":zero", n(0)),
            (":max", n(u64::MAX)),
        ];
        self.store
            .remove_versioned(&what, &self.id, QUEUE_REMOVE_CONDITION, &values, |item| {
                self.decode(item).map(|_| ())
            })
            .await
    }
}

/// The `#ticket` placeholder's name (the ticket's counter), if `expression`
/// uses it: DynamoDB refuses unused names.
fn ticket_name(expression: &str, counter: u64) -> Vec<(&'static str, String)> {
    if expression.contains(TICKET_PLACEHOLDER) {
        vec![(TICKET_PLACEHOLDER, counter.to_string())]
    } else {
        vec![]
    }
}

/// Keep the first value of each placeholder.
fn dedup(values: Vec<(&'static str, AttributeValue)>) -> Vec<(&'static str, AttributeValue)> {
    let mut out: Vec<(&'static str, AttributeValue)> = Vec::with_capacity(values.len());
    for (k, v) in values {
        if !out.iter().any(|(seen, _)| *seen == k) {
            out.push((k, v));
        }
    }
    out
}
