//! What queues and claim pools share: their lease keys, the renewal of one
//! (a single transaction that reads nothing first and leaves the record
//! alone), and the item's token and waiting for it to change.
//!
//! A leased ticket's or claim's lease lives in a key of its own beside the
//! item's record (see `layout.rs`): `{"type":"LEASE","holder":..,
//! "lease_ms":..,"renewed_at_ms":..}`, whose etcd version less one is the
//! renewal count. A renewal is one put on that key, conditional on its
//! value starting as this holder's lease does; it never touches the record,
//! so it never makes a join, leave or claim retry, and never changes the
//! fencing token. A removal (leave, release, expiry) deletes the lease key
//! in the transaction that rewrites the record; an expiry is also
//! conditional on the lease key's version being the one the observer
//! watched, so a renewal that lands first wins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use tokio::time::Instant;

use super::item::{ItemRead, LeaseRead};
use super::layout::{item_end, not_ours, record_key, starts_with, LeaseValue, Record, SIDE};
use super::store::EtcdStore;
use super::watch::wait_for_change;
use crate::error::{Error, Result};
use crate::lease::holder_id::HolderId;
use crate::lease::record::{unix_millis, LeaseRecord};
use crate::store::item_type::ItemType;

/// The leases of `read` whose keys are `record key + \0 + kind + NAME`, by
/// NAME, with their holders.
pub(super) fn leases_of<'a>(
    key: &[u8],
    kind: &str,
    read: &'a ItemRead,
) -> Result<Vec<(String, &'a LeaseRead, LeaseRecord)>> {
    let mut head = key.to_vec();
    head.push(SIDE);
    head.extend_from_slice(kind.as_bytes());
    read.leases
        .iter()
        .map(|l| {
            let name = l
                .key
                .strip_prefix(head.as_slice())
                .and_then(|n| std::str::from_utf8(n).ok())
                .ok_or_else(|| {
                    not_ours(&l.key, "a key beside an item that is not one of its leases")
                })?;
            let record = LeaseRecord {
                duration_ms: l.value.lease_ms,
                renewals: l.renewals(),
                renewed_at_ms: l.value.renewed_at_ms,
                holder: l.value.holder_id,
            };
            Ok((name.to_owned(), l, record))
        })
        .collect()
}

/// The operation that writes a new lease of `holder` at `lease_key`.
pub(super) fn put_lease(lease_key: Vec<u8>, holder: &str, lease: &LeaseRecord) -> TxnOp {
    let value = LeaseValue {
        holder: holder.to_owned(),
        lease_ms: lease.duration_ms,
        holder_id: lease.holder,
        renewed_at_ms: lease.renewed_at_ms,
    };
    TxnOp::put(lease_key, value.encode(), None)
}

/// The condition that the lease at `lease_key` is still at the renewal
/// count `renewals` an observer watched.
pub(super) fn unrenewed(lease_key: Vec<u8>, renewals: u64) -> Compare {
    let version = i64::try_from(renewals).unwrap_or(i64::MAX - 1) + 1;
    Compare::version(lease_key, CompareOp::Equal, version)
}

/// The lease durations and holder ids a handle has written or renewed, by
/// holder and lease key, so that a renewal needs no read to know what to
/// write.
#[derive(Debug, Default)]
struct KnownLeases(Mutex<HashMap<Vec<u8>, (String, Known)>>);

/// What a renewal writes again: the lease's duration and holder id.
type Known = (u64, Option<HolderId>);

impl KnownLeases {
    fn note(&self, lease_key: &[u8], holder: &str, known: Known) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lease_key.to_vec(), (holder.to_owned(), known));
    }

    fn get(&self, lease_key: &[u8], holder: &str) -> Option<Known> {
        let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known
            .get(lease_key)
            .filter(|(h, _)| h == holder)
            .map(|(_, k)| *k)
    }
}

/// What a queue's or claim pool's handle holds: where the item is, what
/// it last read (where a watch for its next change starts) and the leases
/// it wrote (so that it renews them without a read).
#[derive(Debug)]
pub(super) struct LeasedItem {
    pub store: EtcdStore,
    pub id: String,
    pub key: Vec<u8>,
    last: Mutex<Option<(u64, i64)>>,
    known: KnownLeases,
}

impl LeasedItem {
    pub fn new(store: &EtcdStore, id: &str) -> Self {
        LeasedItem {
            key: record_key(store.prefix(), id),
            store: store.clone(),
            id: id.to_owned(),
            last: Mutex::new(None),
            known: KnownLeases::default(),
        }
    }

    pub fn what(&self) -> String {
        format!("`{}`", self.id)
    }

    /// This handle wrote `lease` for `holder` at `lease_key`.
    pub fn wrote_lease(&self, lease_key: &[u8], holder: &str, lease: &LeaseRecord) {
        self.known
            .note(lease_key, holder, (lease.duration_ms, lease.holder));
    }

    /// A read of the item found it at `version` at `revision`.
    pub fn read_at(&self, version: u64, revision: i64) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, revision));
    }

    fn revision_of(&self, version: u64) -> Option<i64> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.filter(|(v, _)| *v == version).map(|(_, r)| r)
    }

    /// Renew `holder`'s lease at `lease_key`: one transaction that puts
    /// the lease if it is still `holder`'s with the same duration, and
    /// reads the item: `Ok` with the item after the renewal, or `Err` with
    /// the item as it is when the lease is gone (or another's). The
    /// duration is the one this handle wrote, else a read finds it first.
    pub async fn renew(
        &self,
        lease_key: &[u8],
        holder: &str,
    ) -> Result<std::result::Result<ItemRead, ItemRead>> {
        let (store, what, key) = (&self.store, self.what(), &self.key);
        let (lease_ms, holder_id) = match self.known.get(lease_key, holder) {
            Some(known) => known,
            None => {
                let read = store.read_item(&what, key, store.deadline()).await?;
                let found = read
                    .leases
                    .iter()
                    .find(|l| l.key == lease_key && l.value.holder == holder)
                    .map(|l| (l.value.lease_ms, l.value.holder_id));
                match found {
                    Some(known) => known,
                    None => return Ok(Err(read)),
                }
            }
        };
        let value = LeaseValue {
            holder: holder.to_owned(),
            lease_ms,
            holder_id,
            renewed_at_ms: unix_millis(SystemTime::now()),
        };
        let whole = || {
            TxnOp::get(
                key.clone(),
                Some(GetOptions::new().with_range(item_end(key))),
            )
        };
        let txn = Txn::new()
            .when(starts_with(lease_key, &value.stable_prefix()).to_vec())
            .and_then(vec![
                TxnOp::put(lease_key.to_vec(), value.encode(), None),
                whole(),
            ])
            .or_else(vec![whole()]);
        // A renewal applied twice is harmless; one whose answer is lost is
        // an error worth retrying (the holder's keeper does, within its
        // margin).
        let response = store.txn(&what, txn).await?;
        let read = match response.op_responses().last() {
            Some(TxnOpResponse::Get(g)) => ItemRead::decode(key, g)?,
            _ => {
                return Err(Error::new(
                    crate::error::ErrorKind::Unavailable,
                    format!("etcd: {what}: a renewal's answer lacks its read"),
                ))
            }
        };
        if !response.succeeded() {
            return Ok(Err(read));
        }
        self.known.note(lease_key, holder, (lease_ms, holder_id));
        Ok(Ok(read))
    }

    /// The item's version (fencing token) now: one consistent read of its
    /// record key alone (0 if there is none), noted as where a watch for
    /// its next change starts. `version_of` reads the version of a record
    /// of the item's kind.
    pub async fn token(
        &self,
        wanted: ItemType,
        version_of: fn(&Record) -> Option<u64>,
    ) -> Result<u64> {
        let (store, what) = (&self.store, self.what());
        let read = store
            .read_record(&what, &self.key, store.deadline())
            .await?;
        let version = read
            .record_of(&self.id, wanted)?
            .and_then(version_of)
            .unwrap_or(0);
        self.read_at(version, read.revision);
        Ok(version)
    }

    /// Wait until the item's version (fencing token) is no longer `seen`,
    /// or until `until`: an etcd watch of its record key from this
    /// handle's last read at `seen` (or from a read made now), see
    /// `watch.rs`.
    pub async fn wait(
        &self,
        wanted: ItemType,
        version_of: fn(&Record) -> Option<u64>,
        seen: u64,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let revision = match self.revision_of(seen) {
            Some(r) => r,
            None => {
                if self.token(wanted, version_of).await? != seen {
                    return Ok(true);
                }
                self.revision_of(seen).unwrap_or(0)
            }
        };
        let key = self.key.clone();
        let pushed = move |value: &[u8]| {
            Record::decode(&key, value)
                .ok()
                .as_ref()
                .and_then(version_of)
        };
        wait_for_change(
            &self.store,
            &self.what(),
            &self.key,
            revision,
            seen,
            pushed,
            || self.token(wanted, version_of),
            until,
            poll,
        )
        .await
    }
}
