//! Queues in DynamoDB: read the item, apply the rule of
//! [`QueueState`], write it back conditional on the `Version` read.

use async_trait::async_trait;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::backoff::Attempts;
use super::schema::{
    decode, encode_entry, n, s, Item, Stored, StoredQueue, QUEUE, QUEUE_CREATE_CONDITION,
    QUEUE_JOIN_UPDATE, QUEUE_LEAVE_LAST_UPDATE, QUEUE_LEAVE_UPDATE, QUEUE_REMOVE_CONDITION,
    QUEUE_VERSION_CONDITION, VERSION,
};
use super::table::{Update, Written};
use super::DynamoDbStore;
use crate::error::{Error, ErrorKind, Result};
use crate::item_type::ItemType;
use crate::queue::{Fenced, FencingToken, Queue, Tags, Ticket};
use crate::state::{JoinOutcome, QueueEntry, QueueState};
use crate::validate;

/// A queue in a [`DynamoDbStore`].
#[derive(Debug, Clone)]
pub struct DynamoDbQueue {
    pub(super) store: DynamoDbStore,
    pub(super) id: String,
}

impl DynamoDbQueue {
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

    /// A consistent read, then (unless already in the queue) one
    /// `UpdateItem` adding the entry, conditional on the version read.
    async fn join(&self, process_id: &str, tags: Tags) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        validate::tags(&tags)?;
        let what = format!("queue `{}`: join of process `{process_id}`", self.id);
        let table = &self.store.inner.table;
        let mut seen = self.read(&what).await?;
        let mut attempts = self.store.attempts();
        loop {
            let mut state = seen.as_ref().map(|q| q.state.clone()).unwrap_or_default();
            let ticket = match state.join(&self.id, process_id, tags.clone())? {
                JoinOutcome::Existing(ticket) => return Ok(ticket),
                JoinOutcome::Joined(ticket) => ticket,
            };
            let entry = encode_entry(&QueueEntry {
                process_id: process_id.to_owned(),
                counter: ticket.value.counter,
                tags: tags.clone(),
            });
            let (condition, mut values) = Self::condition(seen.as_ref());
            values.extend([
                (":queue", s(QUEUE)),
                (":version", n(state.version)),
                (":value", n(state.value)),
                (":entry", AttributeValue::Ss(vec![entry])),
            ]);
            let update = Update {
                update: QUEUE_JOIN_UPDATE,
                condition,
                values: dedup(values),
                returns: ReturnValue::None,
                resend_unanswered: true,
            };
            match table.update(&what, &self.id, &update).await? {
                Written::Done(_) => return Ok(ticket),
                Written::ConditionFailed(item) => {
                    seen = self.after_conflict(&what, item, &mut attempts).await?;
                }
            }
        }
    }

    /// A consistent read, then one `UpdateItem` taking the entry out,
    /// conditional on the version read.
    async fn leave(&self, process_id: &str) -> Result<FencingToken> {
        validate::process_id(process_id)?;
        let what = format!("queue `{}`: leave of process `{process_id}`", self.id);
        let table = &self.store.inner.table;
        let mut seen = self.read(&what).await?;
        let mut attempts = self.store.attempts();
        loop {
            let Some(queue) = seen.as_ref() else {
                return Err(Error::queue_not_found(&self.id));
            };
            let mut state = queue.state.clone();
            let token = state.leave(&self.id, process_id)?;
            let raw = queue
                .raw_entry(process_id)
                .expect("a member of the state has a stored entry")
                .to_owned();
            let (condition, mut values) = Self::condition(Some(queue));
            values.push((":version", n(state.version)));
            let update = if state.entries().is_empty() {
                QUEUE_LEAVE_LAST_UPDATE
            } else {
                values.push((":entry", AttributeValue::Ss(vec![raw])));
                QUEUE_LEAVE_UPDATE
            };
            let update = Update {
                update,
                condition,
                values,
                returns: ReturnValue::None,
                resend_unanswered: true,
            };
            match table.update(&what, &self.id, &update).await? {
                Written::Done(_) => return Ok(token),
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
        let table = &self.store.inner.table;
        let values = [
            (":queue", s(QUEUE)),
            (":number", s("N")),
            (":zero", n(0)),
            (":max", n(u64::MAX)),
        ];
        let mut attempts = self.store.attempts();
        loop {
            match table
                .delete(&what, &self.id, QUEUE_REMOVE_CONDITION, &values)
                .await?
            {
                Written::Done(old) if old.is_empty() => return Ok(None),
                Written::Done(old) => {
                    let version = match old.get(VERSION) {
                        Some(AttributeValue::N(v)) => v.parse().ok(),
                        _ => None,
                    };
                    return version.map(|v| Some(FencingToken(v))).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Corrupt,
                            format!(
                                "dynamodb table `{}`: queue `{}` was removed, but its `{VERSION}` was unreadable",
                                table.name, self.id
                            ),
                        )
                    });
                }
                Written::ConditionFailed(item) => {
                    // Not a readable queue: say why, or retry if it changed.
                    let _ = self.after_conflict(&what, item, &mut attempts).await?;
                }
            }
        }
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
