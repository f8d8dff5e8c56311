//! Counters: a counter's value is the etcd version of its key (the number
//! of puts since the key was created), so `next` is one put that reads
//! nothing first and never loses a race: etcd applies puts one at a time.
//!
//! `next` is one transaction:
//!
//! ```text
//! if value(K) starts with {"type":"COUNTER",  and  fence(request) does not exist
//! then put K {"type":"COUNTER","request":ID} (returning the previous version: value = it + 1)
//! else if K does not exist and fence(request) does not exist
//!      then put K ... (value = 1)
//!      else get K (another kind of item: WrongType; not monotone's: Corrupt)
//! ```
//!
//! A put whose answer is lost (a member died with it) may have applied, or
//! may still apply. Such a put is made impossible from then on by writing
//! its *fence* (the key `K\0fence/ID`, which its condition says must not
//! exist); then the key's history from a revision the put cannot precede
//! (one seen less than a second ago, else read before the put, served by a
//! member without a round of consensus) up to the fence's write is
//! searched for its id ([`writes_until`]): found, its version is the value; not
//! found, it never applied and never will, and the put is sent again with
//! a new id (deleting the fence in the same transaction). So every value
//! is handed out exactly once, through any failover.

use async_trait::async_trait;
use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use tokio::time::Instant;

use super::layout::{not_ours, record_key, request_id, starts_with, type_prefix, Record, SIDE};
use super::store::EtcdStore;
use super::watch::writes_until;
use crate::counter::Counter;
use crate::error::{Error, ErrorKind, Result};
use crate::store::item_type::ItemType;

/// A counter in an [`EtcdStore`](super::EtcdStore).
#[derive(Debug, Clone)]
pub struct EtcdCounter {
    pub(super) store: EtcdStore,
    pub(super) id: String,
    pub(super) key: Vec<u8>,
}

impl EtcdCounter {
    pub(super) fn new(store: &EtcdStore, id: &str) -> Self {
        EtcdCounter {
            key: record_key(store.prefix(), id),
            store: store.clone(),
            id: id.to_owned(),
        }
    }

    fn what(&self) -> String {
        format!("`{}`", self.id)
    }

    fn fence(&self, request: &str) -> Vec<u8> {
        let mut k = self.key.clone();
        k.push(SIDE);
        k.extend_from_slice(format!("fence/{request}").as_bytes());
        k
    }

    /// The error for the key holding something that is not a counter.
    fn not_a_counter(&self, value: &[u8]) -> Error {
        match Record::decode(&self.key, value) {
            Ok(r) if r.item_type() != ItemType::Counter => {
                r.item_type().wrong_type(&self.id, ItemType::Counter)
            }
            Ok(_) => not_ours(&self.key, "a counter record not in monotone's own form"),
            Err(e) => e,
        }
    }

    /// The transaction of one `next` with `request`, deleting the fences of
    /// earlier attempts.
    fn next_txn(&self, request: &str, fences: &[Vec<u8>]) -> Txn {
        let record = Record::Counter {
            request: request.to_owned(),
        }
        .encode();
        let fence = self.fence(request);
        let unfenced = Compare::mod_revision(fence, CompareOp::Equal, 0);
        let mut when = starts_with(&self.key, &type_prefix(ItemType::Counter)).to_vec();
        when.push(unfenced.clone());
        let cleanup: Vec<TxnOp> = fences
            .iter()
            .map(|f| TxnOp::delete(f.clone(), None))
            .collect();
        let mut increment = vec![TxnOp::put(
            self.key.clone(),
            record.clone(),
            Some(PutOptions::new().with_prev_key()),
        )];
        increment.extend(cleanup.iter().cloned());
        let mut create = vec![TxnOp::put(self.key.clone(), record, None)];
        create.extend(cleanup);
        let otherwise = Txn::new()
            .when(vec![
                Compare::version(self.key.clone(), CompareOp::Equal, 0),
                unfenced,
            ])
            .and_then(create)
            .or_else(vec![TxnOp::get(self.key.clone(), None)]);
        Txn::new()
            .when(when)
            .and_then(increment)
            .or_else(vec![TxnOp::txn(otherwise)])
    }

    /// The value a `next` transaction's answer says it handed out.
    fn value_of(&self, response: &TxnResponse) -> Result<u64> {
        let ops = response.op_responses();
        if response.succeeded() {
            let Some(TxnOpResponse::Put(put)) = ops.first() else {
                return Err(self.malformed());
            };
            let previous = put.prev_key().map_or(0, |kv| kv.version());
            return u64::try_from(previous + 1).map_err(|_| self.malformed());
        }
        let Some(TxnOpResponse::Txn(inner)) = ops.first() else {
            return Err(self.malformed());
        };
        if inner.succeeded() {
            return Ok(1);
        }
        match inner.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => match get.kvs().first() {
                Some(kv) => Err(self.not_a_counter(kv.value())),
                None => Err(self.malformed()),
            },
            _ => Err(self.malformed()),
        }
    }

    fn malformed(&self) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "etcd: {}: a transaction's answer is not what was asked",
                self.what()
            ),
        )
    }

    /// A revision that every write sent from now on lands above.
    async fn lower_bound(&self, deadline: Instant) -> Result<i64> {
        if let Some(r) = self.store.recent_revision() {
            return Ok(r);
        }
        let response = self
            .store
            .get(
                &self.what(),
                self.key.clone(),
                GetOptions::new().with_serializable().with_keys_only(),
                deadline,
            )
            .await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// After the answer of `request`'s put was lost: fence it, then its
    /// value if it applied.
    async fn look_up(&self, request: &str, since: i64, deadline: Instant) -> Result<Option<u64>> {
        let what = self.what();
        let fence = Txn::new().and_then(vec![TxnOp::put(
            self.fence(request),
            b"{\"type\":\"FENCE\"}".to_vec(),
            None,
        )]);
        let mut delay = std::time::Duration::from_millis(20);
        loop {
            match self.store.txn(&what, fence.clone()).await {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    delay = self
                        .store
                        .pause(&what, &e, delay, deadline)
                        .await
                        .ok_or_else(|| unknown(&e))?;
                }
                Err(e) => return Err(e),
            }
        }
        let fence = self.fence(request);
        let writes = writes_until(&self.store, &what, &self.key, &fence, since + 1, deadline)
            .await
            .map_err(|e| unknown(&e))?;
        let found = writes.into_iter().find_map(|(kind, value, version)| {
            let ours = kind == etcd_client::EventType::Put
                && Record::decode(&self.key, &value).is_ok_and(|r| r.request() == request);
            ours.then(|| u64::try_from(version).unwrap_or(0))
        });
        if found.is_some() {
            // The fence has done its work; a failure to drop it leaves one
            // small key beside the counter (removed with it).
            let drop = Txn::new().and_then(vec![TxnOp::delete(fence, None)]);
            let _ = self.store.txn(&what, drop).await;
        }
        Ok(found)
    }
}

/// `e`, saying that a value may have been taken without being handed out.
fn unknown(e: &Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "{}; an increment whose answer was lost may or may not have been applied \
             (a value may be skipped, never repeated)",
            e.message()
        ),
    )
}

#[async_trait]
impl Counter for EtcdCounter {
    fn id(&self) -> &str {
        &self.id
    }

    async fn get(&self) -> Result<u64> {
        let deadline = self.store.deadline();
        let response = self
            .store
            .get(&self.what(), self.key.clone(), GetOptions::new(), deadline)
            .await?;
        match response.kvs().first() {
            None => Ok(0),
            Some(kv) if kv.value().starts_with(&type_prefix(ItemType::Counter)) => {
                Record::decode(&self.key, kv.value())?;
                Ok(u64::try_from(kv.version()).unwrap_or(0))
            }
            Some(kv) => Err(self.not_a_counter(kv.value())),
        }
    }

    async fn next(&self) -> Result<u64> {
        let deadline = self.store.deadline();
        let since = self.lower_bound(deadline).await?;
        let mut fences = Vec::new();
        let mut delay = std::time::Duration::from_millis(20);
        loop {
            let request = request_id();
            match self
                .store
                .txn(&self.what(), self.next_txn(&request, &fences))
                .await
            {
                Ok(response) => return self.value_of(&response),
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    if !super::error::not_sent(&e) {
                        if let Some(value) = self.look_up(&request, since, deadline).await? {
                            return Ok(value);
                        }
                        fences.push(self.fence(&request));
                    }
                    delay = self
                        .store
                        .pause(&self.what(), &e, delay, deadline)
                        .await
                        .ok_or(e)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn remove(&self) -> Result<Option<u64>> {
        let what = self.what();
        let all = DeleteOptions::new()
            .with_range(super::layout::item_end(&self.key))
            .with_prev_key();
        let txn = Txn::new()
            .when(starts_with(&self.key, &type_prefix(ItemType::Counter)).to_vec())
            .and_then(vec![TxnOp::delete(self.key.clone(), Some(all))])
            .or_else(vec![TxnOp::get(self.key.clone(), None)]);
        let deadline = self.store.deadline();
        let mut delay = std::time::Duration::from_millis(20);
        let response = loop {
            match self.store.txn(&what, txn.clone()).await {
                Ok(r) => break r,
                // Removing twice removes once: send it again.
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    delay = self
                        .store
                        .pause(&what, &e, delay, deadline)
                        .await
                        .ok_or(e)?;
                }
                Err(e) => return Err(e),
            }
        };
        match response.op_responses().first() {
            Some(TxnOpResponse::Delete(d)) => Ok(d
                .prev_kvs()
                .iter()
                .find(|kv| kv.key() == self.key)
                .map(|kv| u64::try_from(kv.version()).unwrap_or(0))),
            Some(TxnOpResponse::Get(g)) => match g.kvs().first() {
                None => Ok(None),
                Some(kv) => Err(self.not_a_counter(kv.value())),
            },
            _ => Err(self.malformed()),
        }
    }
}
