//! Reading an item whole, and the one write protocol of the items kept in
//! a record (queues, documents, tallies, claim pools): a transaction
//! conditional on the record's `mod_revision` as read, whose failure branch
//! reads the item again, so that a lost race costs one request and no
//! separate read.
//!
//! # Writes whose answer is lost
//!
//! A member that dies (or a network that breaks) after a write reached it
//! leaves the write's outcome unknown: it may have been applied, or may
//! still be. Every record written carries the random id of the operation
//! that wrote it (`request`), and [`update`] sends the very same
//! transaction again, conditional on the same `mod_revision`: of the two,
//! at most one can ever apply. If the resent one applies, it is the write;
//! if its condition fails, the record was written since, and the first
//! write after the revision read ([`first_write_after`]) is looked up: it
//! is this operation's if it carries its id. So an acknowledged result is
//! never applied twice nor reported for a write that did not land, through
//! any failover. Only if the cluster compacted that revision away
//! meanwhile is the outcome unknowable: the operation fails as Unavailable
//! (exit code 6) and says so.

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, GetResponse, Txn, TxnOp, TxnOpResponse,
};
use tokio::time::Instant;
use tracing::debug;

use super::layout::{item_end, not_ours, LeaseValue, Record};
use super::store::EtcdStore;
use super::watch::first_write_after;
use crate::backoff::Jitter;
use crate::error::{Error, ErrorKind, Result};
use crate::store::item_type::ItemType;

/// A lease key as read: its value and the key's etcd version (renewals + 1).
#[derive(Debug, Clone)]
pub(super) struct LeaseRead {
    pub key: Vec<u8>,
    pub value: LeaseValue,
    pub version: i64,
}

impl LeaseRead {
    /// How many times the lease was renewed: every put after the first.
    pub fn renewals(&self) -> u64 {
        u64::try_from(self.version - 1).unwrap_or(0)
    }
}

/// An item as one read saw it: its record (with the record key's
/// `mod_revision`, 0 if absent), its lease keys, and the revision of the
/// read.
#[derive(Debug, Clone, Default)]
pub(super) struct ItemRead {
    pub record: Option<Record>,
    pub mod_revision: i64,
    pub leases: Vec<LeaseRead>,
    pub revision: i64,
}

impl ItemRead {
    /// The item of a `Range` of its keys, whose record key is `key`.
    pub fn decode(key: &[u8], response: &GetResponse) -> Result<ItemRead> {
        let mut read = ItemRead {
            revision: response.header().map_or(0, |h| h.revision()),
            ..ItemRead::default()
        };
        for kv in response.kvs() {
            if kv.key() == key {
                read.record = Some(Record::decode(key, kv.value())?);
                read.mod_revision = kv.mod_revision();
            } else {
                read.leases.push(LeaseRead {
                    key: kv.key().to_vec(),
                    value: LeaseValue::decode(kv.key(), kv.value())?,
                    version: kv.version(),
                });
            }
        }
        Ok(read)
    }

    /// The record, if it is a `wanted`; `None` if there is none; WrongType
    /// if it is another kind of item.
    pub fn record_of(&self, id: &str, wanted: ItemType) -> Result<Option<&Record>> {
        match &self.record {
            None => Ok(None),
            Some(r) if r.item_type() == wanted => Ok(Some(r)),
            Some(r) => Err(r.item_type().wrong_type(id, wanted)),
        }
    }

    /// Lease keys without a record are not monotone's doing.
    pub fn check_leases_have_a_record(&self) -> Result<()> {
        match (&self.record, self.leases.first()) {
            (None, Some(l)) => Err(not_ours(
                &l.key,
                "a lease key of an item that does not exist",
            )),
            _ => Ok(()),
        }
    }
}

/// What to do with an item as read.
pub(super) enum Plan<T> {
    /// Nothing to write; the answer, as of the read.
    Answer(T),
    /// Write: these operations, if the record is as read and `compares`
    /// hold; then the answer.
    Write {
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        answer: T,
    },
    /// Delete every key of the item, if the record is as read; then the
    /// answer.
    Remove(T),
}

impl EtcdStore {
    /// One consistent read of every key of the item at `key`, retried on
    /// another member while the cluster cannot be reached.
    pub(super) async fn read_item(
        &self,
        what: &str,
        key: &[u8],
        deadline: Instant,
    ) -> Result<ItemRead> {
        self.read_item_with(what, key, GetOptions::new(), deadline)
            .await
    }

    /// One consistent read of the record at `key` alone, without its
    /// lease keys (a waiter's check of the version).
    pub(super) async fn read_record(
        &self,
        what: &str,
        key: &[u8],
        deadline: Instant,
    ) -> Result<ItemRead> {
        let response = self
            .get(what, key.to_vec(), GetOptions::new(), deadline)
            .await?;
        ItemRead::decode(key, &response)
    }

    /// The same, with `options` (a serializable read).
    pub(super) async fn read_item_with(
        &self,
        what: &str,
        key: &[u8],
        options: GetOptions,
        deadline: Instant,
    ) -> Result<ItemRead> {
        let options = options.with_range(item_end(key));
        let response = self.get(what, key.to_vec(), options, deadline).await?;
        ItemRead::decode(key, &response)
    }

    /// Read the item at `key` (`id`), plan what to write on it with `plan`
    /// (given the read and this operation's request id, which every record
    /// it writes must carry), and write it as one transaction conditional
    /// on the record as read; when another client wrote first, plan again
    /// on the item as the failed transaction returned it, after a backoff.
    /// See the module docs for writes whose answer is lost.
    pub(super) async fn update<T>(
        &self,
        id: &str,
        key: &[u8],
        mut plan: impl FnMut(&ItemRead, &str) -> Result<Plan<T>>,
    ) -> Result<T> {
        let what = format!("`{id}`");
        let deadline = self.deadline();
        let request = super::layout::request_id();
        let policy = &self.inner.config.backoff;
        let mut attempts = policy.start(std::time::Instant::now(), Jitter::from_entropy());
        let mut read = self.read_item(&what, key, deadline).await?;
        loop {
            let (compares, ops, answer, removes) = match plan(&read, &request)? {
                Plan::Answer(t) => return Ok(t),
                Plan::Write {
                    compares,
                    ops,
                    answer,
                } => (compares, ops, answer, false),
                Plan::Remove(answer) => {
                    let all = etcd_client::DeleteOptions::new().with_range(item_end(key));
                    (
                        vec![],
                        vec![TxnOp::delete(key.to_vec(), Some(all))],
                        answer,
                        true,
                    )
                }
            };
            let mut when = vec![Compare::mod_revision(
                key.to_vec(),
                CompareOp::Equal,
                read.mod_revision,
            )];
            when.extend(compares);
            let txn = Txn::new().when(when).and_then(ops).or_else(vec![TxnOp::get(
                key.to_vec(),
                Some(GetOptions::new().with_range(item_end(key))),
            )]);
            let response = match self.send_until_known(&what, txn, deadline).await? {
                Sent::Known(r) => r,
                Sent::Lost => {
                    // The resent transaction's condition failed: the record
                    // was written after the read. The first such write is
                    // ours if it carries our request id.
                    if self
                        .wrote_first(&what, key, read.mod_revision, &request, removes, deadline)
                        .await?
                    {
                        return Ok(answer);
                    }
                    read = self.read_item(&what, key, deadline).await?;
                    continue;
                }
            };
            if response.succeeded() {
                return Ok(answer);
            }
            let Some(TxnOpResponse::Get(fresh)) = response.op_responses().into_iter().next() else {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("etcd: {what}: a transaction's answer lacks its read"),
                ));
            };
            read = ItemRead::decode(key, &fresh)?;
            let delay = attempts.next_delay(std::time::Instant::now()).map_err(|spent| {
                Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{what}: gave up after {} attempts in {:.1}s, as other clients kept writing it first",
                        spent.attempts,
                        spent.elapsed.as_secs_f64()
                    ),
                )
            })?;
            debug!(
                id,
                retry = attempts.retries(),
                ?delay,
                "etcd: another client wrote first; retrying"
            );
            tokio::time::sleep(delay).await;
            if delay > policy.reuse_within {
                read = self.read_item(&what, key, deadline).await?;
            }
        }
    }

    /// Send a conditional `txn`; while its outcome is unknown (the cluster
    /// could not be reached), send it again: its condition makes sure that
    /// at most one of the copies applies. [`Sent::Lost`] when a copy's
    /// condition failed after an earlier copy's outcome was unknown: that
    /// one may be the write that made the condition fail.
    async fn send_until_known(&self, what: &str, txn: Txn, deadline: Instant) -> Result<Sent> {
        let mut delay = std::time::Duration::from_millis(20);
        let mut unknown = false;
        loop {
            match self.txn(what, txn.clone()).await {
                Ok(r) if unknown && !r.succeeded() => return Ok(Sent::Lost),
                Ok(r) => return Ok(Sent::Known(r)),
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    unknown |= !super::error::not_sent(&e);
                    delay = self.pause(what, &e, delay, deadline).await.ok_or_else(|| {
                        Error::new(
                            ErrorKind::Unavailable,
                            format!(
                                "{}; the write may or may not have been applied",
                                e.message()
                            ),
                        )
                    })?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the first write of `key` after `revision` carries `request`
    /// (or, when the write was a removal, removed the item: the item as
    /// read is gone either way).
    async fn wrote_first(
        &self,
        what: &str,
        key: &[u8],
        revision: i64,
        request: &str,
        removes: bool,
        deadline: Instant,
    ) -> Result<bool> {
        let (kind, value) = first_write_after(self, what, key, revision, deadline).await?;
        let ours = match kind {
            EventType::Delete => removes,
            EventType::Put => Record::decode(key, &value).is_ok_and(|r| r.request() == request),
        };
        debug!(what, ours, "etcd: looked up a write whose answer was lost");
        Ok(ours)
    }
}

/// How a conditional write went.
enum Sent {
    /// Its answer.
    Known(etcd_client::TxnResponse),
    /// An earlier copy's outcome was unknown and a later copy's condition
    /// failed.
    Lost,
}
