//! Queues: one record, `{"type":"QUEUE","version":TOKEN,"value":LAST,
//! "items":[{"process_id","counter","tags"},...],...}`, plus a lease key
//! per leased ticket (`\0lease/COUNTER`, see `leased.rs`). The rules are
//! those of `queue/state.rs`, applied to the queue as one read saw it and
//! written by the item protocol of `item.rs`.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, TxnOp};
use tokio::time::Instant;

use super::item::{ItemRead, Plan};
use super::layout::{not_ours, ticket_lease_key, Record};
use super::leased::{self, put_lease, unrenewed, LeasedItem};
use super::store::EtcdStore;
use crate::error::{Error, Result};
use crate::lease::expiry::Expired;
use crate::lease::record::LeaseRecord;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::state::{lease_gone, JoinOutcome, QueueState};
use crate::queue::ticket::{JoinRequest, Joined, Ticket};
use crate::queue::Queue;
use crate::store::item_type::ItemType;
use crate::validate;

/// A queue in an [`EtcdStore`](super::EtcdStore).
#[derive(Debug)]
pub struct EtcdQueue {
    item: LeasedItem,
}

impl EtcdQueue {
    pub(super) fn new(store: &EtcdStore, id: &str) -> Self {
        EtcdQueue {
            item: LeasedItem::new(store, id),
        }
    }

    /// The queue in `read`, or `None` if there is none.
    fn state(&self, read: &ItemRead) -> Result<Option<QueueState>> {
        read.check_leases_have_a_record()?;
        let Some(Record::Queue {
            version,
            value,
            items,
            ..
        }) = read.record_of(&self.item.id, ItemType::Queue)?
        else {
            return Ok(None);
        };
        let mut leases = std::collections::BTreeMap::new();
        for (name, l, record) in leased::leases_of(&self.item.key, "lease/", read)? {
            let counter: u64 = name
                .parse()
                .map_err(|_| not_ours(&l.key, "a queue's lease key without a ticket number"))?;
            if !items
                .iter()
                .any(|e| e.counter == counter && e.process_id == l.value.holder)
            {
                return Err(not_ours(
                    &l.key,
                    "the lease of a ticket the queue does not hold",
                ));
            }
            leases.insert(counter, record);
        }
        Ok(Some(QueueState::new(
            *version,
            *value,
            items.clone(),
            leases,
        )))
    }

    /// The queue as one consistent read sees it now (an empty default if
    /// there is none), noted as where a watch for its next change starts.
    async fn read_state(&self) -> Result<QueueState> {
        let read = self
            .item
            .store
            .read_item(
                &self.item.what(),
                &self.item.key,
                self.item.store.deadline(),
            )
            .await?;
        let state = self.state(&read)?.unwrap_or_default();
        self.item.read_at(state.version, read.revision);
        Ok(state)
    }

    /// The record of `state`, written by `request`.
    fn record(state: &QueueState, request: &str) -> Vec<u8> {
        Record::Queue {
            version: state.version,
            value: state.value,
            items: state.entries().to_vec(),
            request: request.to_owned(),
        }
        .encode()
    }
}

#[async_trait]
impl Queue for EtcdQueue {
    fn id(&self) -> &str {
        &self.item.id
    }

    /// A join of a member follows the re-join rule of `queue/state.rs` on
    /// the queue as read and writes nothing.
    async fn join_as(&self, process_id: &str, request: &JoinRequest) -> Result<Joined> {
        validate::process_id(process_id)?;
        validate::tags(&request.tags)?;
        let tags = &request.tags;
        let lease = LeaseRecord::starting_now(request.lease, request.holder)?;
        let joined = self
            .item
            .store
            .update(&self.item.id, &self.item.key, |read, request| {
                let mut state = self.state(read)?.unwrap_or_default();
                match state.join(&self.item.id, process_id, tags.clone(), lease)? {
                    JoinOutcome::Existing(t) => Ok(Plan::Answer(Joined::new(t, false))),
                    JoinOutcome::Joined(t) => {
                        let mut ops = vec![TxnOp::put(
                            self.item.key.clone(),
                            Self::record(&state, request),
                            None,
                        )];
                        let mut compares = vec![];
                        if let Some(l) = &lease {
                            let lease_key = ticket_lease_key(&self.item.key, t.value.counter);
                            compares.push(Compare::version(lease_key.clone(), CompareOp::Equal, 0));
                            ops.push(put_lease(lease_key, process_id, l));
                        }
                        Ok(Plan::Write {
                            compares,
                            ops,
                            answer: Joined::written(t, Instant::now()),
                        })
                    }
                }
            })
            .await?;
        if let (Some(l), true) = (&lease, joined.added) {
            let lease_key = ticket_lease_key(&self.item.key, joined.ticket.value.counter);
            self.item.wrote_lease(&lease_key, process_id, l);
        }
        Ok(joined)
    }

    async fn leave_if(&self, process_id: &str, counter: Option<u64>) -> Result<FencingToken> {
        validate::process_id(process_id)?;
        self.item
            .store
            .update(&self.item.id, &self.item.key, |read, request| {
                let Some(mut state) = self.state(read)? else {
                    return Err(Error::queue_not_found(&self.item.id));
                };
                let before = state.ticket(&self.item.id, process_id)?.value.counter;
                let token = state.leave(&self.item.id, process_id, counter)?;
                let counter = before;
                let mut ops = vec![TxnOp::put(
                    self.item.key.clone(),
                    Self::record(&state, request),
                    None,
                )];
                if read
                    .leases
                    .iter()
                    .any(|l| l.key == ticket_lease_key(&self.item.key, counter))
                {
                    ops.push(TxnOp::delete(
                        ticket_lease_key(&self.item.key, counter),
                        None,
                    ));
                }
                Ok(Plan::Write {
                    compares: vec![],
                    ops,
                    answer: token,
                })
            })
            .await
    }

    /// One transaction when this handle joined or renewed the ticket
    /// before (a [`LeaseHolder`](crate::LeaseHolder)'s renewals); a read
    /// first otherwise, to learn the lease's duration.
    async fn renew(&self, process_id: &str, counter: u64) -> Result<Fenced<Ticket>> {
        Ok(self.renew_and_read(process_id, counter).await?.0)
    }

    /// As [`renew`](Queue::renew): its transaction reads the whole item
    /// after the renewal, which is the read.
    async fn renew_and_read(
        &self,
        process_id: &str,
        counter: u64,
    ) -> Result<(Fenced<Ticket>, Fenced<Vec<Ticket>>)> {
        validate::process_id(process_id)?;
        let lease_key = ticket_lease_key(&self.item.key, counter);
        let renewed = self.item.renew(&lease_key, process_id).await?;
        let gone = || lease_gone(&self.item.id, process_id, counter);
        match renewed {
            Ok(read) => {
                let state = self.state(&read)?.ok_or_else(gone)?;
                let ticket = state
                    .ticket(&self.item.id, process_id)
                    .map_err(|_| gone())?;
                Ok((ticket, state.tickets()))
            }
            Err(read) => {
                // The kind of item and its readability come first.
                self.state(&read)?;
                Err(gone())
            }
        }
    }

    async fn expire(&self, expired: &Expired) -> Result<Option<FencingToken>> {
        self.item
            .store
            .update(&self.item.id, &self.item.key, |read, request| {
                let Some(mut state) = self.state(read)? else {
                    return Ok(Plan::Answer(None));
                };
                let Some(token) = state.expire(&self.item.id, expired)? else {
                    return Ok(Plan::Answer(None));
                };
                let lease_key = ticket_lease_key(&self.item.key, expired.ticket().counter);
                Ok(Plan::Write {
                    compares: vec![unrenewed(lease_key.clone(), expired.renewals())],
                    ops: vec![
                        TxnOp::put(self.item.key.clone(), Self::record(&state, request), None),
                        TxnOp::delete(lease_key, None),
                    ],
                    answer: Some(token),
                })
            })
            .await
    }

    async fn ticket(&self, process_id: &str) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        self.read_state().await?.ticket(&self.item.id, process_id)
    }

    async fn tickets(&self) -> Result<Fenced<Vec<Ticket>>> {
        Ok(self.read_state().await?.tickets())
    }

    async fn remove(&self) -> Result<Option<FencingToken>> {
        self.item
            .store
            .update(&self.item.id, &self.item.key, |read, _| {
                Ok(match self.state(read)? {
                    None => Plan::Answer(None),
                    Some(state) => Plan::Remove(Some(state.token())),
                })
            })
            .await
    }

    /// One consistent read of the queue's record key alone (not its lease
    /// keys).
    async fn token(&self) -> Result<FencingToken> {
        let token = self.item.token(ItemType::Queue, queue_version).await?;
        Ok(FencingToken(token))
    }

    /// etcd pushes every write of the record: see `wait_for_change`.
    fn pushes(&self) -> bool {
        true
    }

    /// An etcd watch of the queue's record key from this handle's last read
    /// (a join, leave or expiry wakes the waiter at once; renewals, which
    /// write lease keys only, wake no one), and a read of the token every
    /// `poll` as the safety check (see `watch.rs`).
    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let (wanted, seen) = (ItemType::Queue, seen.get());
        self.item
            .wait(wanted, queue_version, seen, until, poll)
            .await
    }
}

/// The version (fencing token) of a queue's record.
fn queue_version(record: &Record) -> Option<u64> {
    match record {
        Record::Queue { version, .. } => Some(*version),
        _ => None,
    }
}
