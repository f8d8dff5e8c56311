//! Claim pools: one record, `{"type":"CLAIMS","version":TOKEN,
//! "members":N,"claims":{NAME: {"owner","index","token","tags"}},...}`
//! (`members` only in a pool sealed at a roster of N, `tags` only on a claim
//! that has some), plus a lease key per leased
//! claim (`\0claim/NAME`, see `leased.rs`). The rules are those of
//! `claim/state.rs`, applied to the pool as one read saw it and written by
//! the item protocol of `item.rs`: a claim is one transaction conditional
//! on the pool as read, so it takes the first candidate free at the moment
//! it lands. Claimers that lose a race retry at once on the pool the failed
//! transaction returned (after a backoff), with no separate read.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, TxnOp};
use tokio::time::Instant;

use super::item::{ItemRead, Plan};
use super::layout::{claim_lease_key, Record, StoredClaim};
use super::leased::{self, put_lease, unrenewed, LeasedItem};
use super::store::EtcdStore;
use crate::claim::state::{claim_lease_gone, Asked, ClaimOutcome, ClaimPoolState, ClaimRecord};
use crate::claim::{Claim, ClaimPool, ClaimRequest, Claimed, Roster};
use crate::error::{Error, Result};
use crate::lease::expiry::Expired;
use crate::lease::record::LeaseRecord;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::store::item_type::ItemType;
use crate::validate;

/// A claim pool in an [`EtcdStore`](super::EtcdStore).
#[derive(Debug)]
pub struct EtcdClaimPool {
    item: LeasedItem,
}

impl EtcdClaimPool {
    pub(super) fn new(store: &EtcdStore, id: &str) -> Self {
        EtcdClaimPool {
            item: LeasedItem::new(store, id),
        }
    }

    /// The pool in `read`, or `None` if there is none.
    fn state(&self, read: &ItemRead) -> Result<Option<ClaimPoolState>> {
        read.check_leases_have_a_record()?;
        let Some(Record::Claims {
            version,
            members,
            claims,
            ..
        }) = read.record_of(&self.item.id, ItemType::ClaimPool)?
        else {
            return Ok(None);
        };
        let mut records: BTreeMap<String, ClaimRecord> = claims
            .iter()
            .map(|(name, c)| {
                let record = ClaimRecord {
                    owner: c.owner.clone(),
                    index: c.index,
                    token: c.token,
                    tags: c.tags.clone(),
                    lease: None,
                };
                (name.clone(), record)
            })
            .collect();
        for (name, l, lease) in leased::leases_of(&self.item.key, "claim/", read)? {
            match records.get_mut(&name) {
                Some(r) if r.owner == l.value.holder => r.lease = Some(lease),
                _ => {
                    return Err(super::layout::not_ours(
                        &l.key,
                        "the lease of a claim the pool does not hold",
                    ))
                }
            }
        }
        Ok(Some(
            ClaimPoolState::new(*version, records, BTreeMap::new()).with_members(*members),
        ))
    }

    async fn read_state(&self) -> Result<ClaimPoolState> {
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

    /// The pool's record for `state`, written by `request`.
    fn put_record(&self, state: &ClaimPoolState, request: &str) -> TxnOp {
        let claims = state
            .records()
            .iter()
            .map(|(name, r)| {
                let stored = StoredClaim {
                    owner: r.owner.clone(),
                    index: r.index,
                    token: r.token,
                    tags: r.tags.clone(),
                };
                (name.clone(), stored)
            })
            .collect();
        let record = Record::Claims {
            version: state.version,
            members: state.members(),
            claims,
            request: request.to_owned(),
        };
        TxnOp::put(self.item.key.clone(), record.encode(), None)
    }

    /// The writes that take the claim of `name` out of `before` (its lease
    /// key too, if it has one), leaving the pool as `after`.
    fn removal(
        &self,
        before: &ClaimPoolState,
        after: &ClaimPoolState,
        name: &str,
        request: &str,
    ) -> Vec<TxnOp> {
        let mut ops = vec![self.put_record(after, request)];
        if before
            .records()
            .get(name)
            .is_some_and(|r| r.lease.is_some())
        {
            ops.push(TxnOp::delete(claim_lease_key(&self.item.key, name), None));
        }
        ops
    }
}

#[async_trait]
impl ClaimPool for EtcdClaimPool {
    fn id(&self) -> &str {
        &self.item.id
    }

    /// A claim of an owner that holds one follows the re-join rule of
    /// `claim/state.rs` on the pool as read and writes nothing.
    async fn claim_as(&self, owner: &str, request: &ClaimRequest) -> Result<Claimed> {
        validate::owner(owner)?;
        validate::tags(&request.tags)?;
        let lease = LeaseRecord::starting_now(request.lease, request.holder)?;
        let claimed = self
            .item
            .store
            .update(&self.item.id, &self.item.key, |read, request_id| {
                let mut state = self.state(read)?.unwrap_or_default();
                let ask = Asked::new(owner, request, lease);
                match state.claim(&self.item.id, &ask)? {
                    ClaimOutcome::Existing(c) => Ok(Plan::Answer(Claimed::existing(c))),
                    ClaimOutcome::Claimed(c) => {
                        let mut ops = vec![self.put_record(&state, request_id)];
                        let mut compares = vec![];
                        if let Some(l) = &lease {
                            let lease_key = claim_lease_key(&self.item.key, &c.value.name);
                            compares.push(Compare::version(lease_key.clone(), CompareOp::Equal, 0));
                            ops.push(put_lease(lease_key, owner, l));
                        }
                        Ok(Plan::Write {
                            compares,
                            ops,
                            answer: Claimed::made(c, Instant::now()),
                        })
                    }
                }
            })
            .await?;
        if let (Some(l), true) = (&lease, claimed.added) {
            let lease_key = claim_lease_key(&self.item.key, &claimed.claim.value.name);
            self.item.wrote_lease(&lease_key, owner, l);
        }
        Ok(claimed)
    }

    async fn renew(&self, owner: &str, name: &str) -> Result<Fenced<Claim>> {
        Ok(self.renew_and_read(owner, name).await?.0)
    }

    /// As [`renew`](ClaimPool::renew): its transaction reads the whole
    /// item after the renewal, which is the read.
    async fn renew_and_read(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<(Fenced<Claim>, Fenced<Vec<Claim>>)> {
        validate::owner(owner)?;
        let lease_key = claim_lease_key(&self.item.key, name);
        let renewed = self.item.renew(&lease_key, owner).await?;
        let gone = || claim_lease_gone(&self.item.id, owner, name);
        match renewed {
            Ok(read) => {
                let state = self.state(&read)?.ok_or_else(gone)?;
                let claim = state.claim_of(&self.item.id, owner).map_err(|_| gone())?;
                Ok((claim, state.claims()))
            }
            Err(read) => {
                self.state(&read)?;
                Err(gone())
            }
        }
    }

    async fn expire(&self, expired: &Expired<Claim>) -> Result<Option<FencingToken>> {
        self.item
            .store
            .update(&self.item.id, &self.item.key, |read, request| {
                let Some(before) = self.state(read)? else {
                    return Ok(Plan::Answer(None));
                };
                let mut after = before.clone();
                let Some(token) = after.expire(&self.item.id, expired)? else {
                    return Ok(Plan::Answer(None));
                };
                let name = &expired.item().name;
                Ok(Plan::Write {
                    compares: vec![unrenewed(
                        claim_lease_key(&self.item.key, name),
                        expired.renewals(),
                    )],
                    ops: self.removal(&before, &after, name, request),
                    answer: Some(token),
                })
            })
            .await
    }

    async fn release_if(&self, owner: &str, token: Option<FencingToken>) -> Result<Fenced<Claim>> {
        validate::owner(owner)?;
        self.item
            .store
            .update(&self.item.id, &self.item.key, |read, request| {
                let Some(before) = self.state(read)? else {
                    return Err(Error::claim_not_found(&self.item.id, owner));
                };
                let mut after = before.clone();
                let released = after.release(&self.item.id, owner, token)?;
                Ok(Plan::Write {
                    compares: vec![],
                    ops: self.removal(&before, &after, &released.value.name, request),
                    answer: released,
                })
            })
            .await
    }

    async fn claim_of(&self, owner: &str) -> Result<Fenced<Claim>> {
        validate::owner(owner)?;
        self.read_state().await?.claim_of(&self.item.id, owner)
    }

    async fn claims(&self) -> Result<Fenced<Vec<Claim>>> {
        Ok(self.read_state().await?.claims())
    }

    /// One consistent read of the pool's keys, as for `claims`: the roster
    /// size is in the record.
    async fn roster(&self) -> Result<Fenced<Roster>> {
        Ok(self.read_state().await?.roster())
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

    /// One consistent read of the pool's record key alone (not its lease
    /// keys).
    async fn token(&self) -> Result<FencingToken> {
        let token = self.item.token(ItemType::ClaimPool, pool_version).await?;
        Ok(FencingToken(token))
    }

    /// etcd pushes every write of the record: see `wait_for_change`.
    fn pushes(&self) -> bool {
        true
    }

    /// An etcd watch of the pool's record key from this handle's last read
    /// (a claim, release or expiry wakes the waiter at once; renewals, which
    /// write lease keys only, wake no one), and a read of the token every
    /// `poll` as the safety check (see `watch.rs`).
    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let (wanted, seen) = (ItemType::ClaimPool, seen.get());
        self.item
            .wait(wanted, pool_version, seen, until, poll)
            .await
    }
}

/// The version (fencing token) of a claim pool's record.
fn pool_version(record: &Record) -> Option<u64> {
    match record {
        Record::Claims { version, .. } => Some(*version),
        _ => None,
    }
}
