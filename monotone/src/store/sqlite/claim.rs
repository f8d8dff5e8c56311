//! Claim pools in SQLite: a row of `items` with type `CLAIMS` (its version
//! is the pool's fencing token; `members` its roster size, NULL for a pool
//! never sealed) and one row of `claims` per claim (schema version 4; tags
//! and holders since version 5, roster sizes since version 6).
//!
//! Every operation is one transaction that reads the pool's rows (at most
//! [`MAX_CANDIDATES`](crate::MAX_CANDIDATES)), applies the rule of
//! `claim/state.rs` to them, and writes the one row the rule changed and the
//! version. Writers begin with `BEGIN IMMEDIATE`, so concurrent claimers
//! queue on the file's write lock and each sees the claims of those before
//! it: a claim is never retried, and the first free candidate is the first
//! free one at the moment of the write.
//!
//! | operation | statements, in one transaction |
//! |---|---|
//! | claim | `BEGIN IMMEDIATE`; the `items` row and the pool's `claims` rows; an upsert of the `items` row (version and roster size) and an insert into `claims` (nothing if the owner holds a claim, or every candidate is taken, or the roster is full) |
//! | release, expire | `BEGIN IMMEDIATE`; the rows; a delete from `claims` and an update of the version |
//! | renew | `BEGIN IMMEDIATE`; the rows; an update of the one claim's lease |
//! | renew and read (a holder's renewal) | as renew, and (as a claim does) a delete and a new version per claim of a holder found gone |
//! | claim of an owner, list, roster | the rows |
//!
//! A claim, a list, a roster and a claim of an owner also ask the kernel
//! whether the holder of each leased claim they read lives (`live.rs`: one
//! `fcntl` per claim with a holder, no statement). A claim removes the
//! claims of holders that are gone in its own transaction before it picks a
//! name (a delete and a new version apiece, as an expiry), so their names
//! are free to it; a read that finds one runs a write transaction that
//! removes them and answers from what is left.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{params, Transaction, TransactionBehavior};
use tokio::time::Instant;

use super::error::map_err;
use super::store::{item, to_holder, to_u64, Outcome, SqliteStore};
use crate::claim::state::{claim_lease_gone, Asked, ClaimOutcome, ClaimPoolState, ClaimRecord};
use crate::claim::{Claim, ClaimPool, ClaimRequest, Claimed, Roster};
use crate::error::{Error, ErrorKind, Result};
use crate::lease::alive::KeepAlive;
use crate::lease::expiry::Expired;
use crate::lease::holder_id::HolderId;
use crate::lease::record as lease;
use crate::lease::record::LeaseRecord;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::store::item_type::ItemType;
use crate::validate;

/// A claim pool in a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteClaimPool {
    pub(super) store: SqliteStore,
    pub(super) id: String,
}

/// The pool `id` as stored, `None` if absent; WrongType if the id holds
/// another kind of item, Corrupt if a row holds what monotone never writes.
fn load(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<Option<ClaimPoolState>> {
    let Some(row) = item(tx, shown, id)? else {
        return Ok(None);
    };
    if row.kind != ItemType::ClaimPool.stored() {
        return Err(row.wrong_type(id, ItemType::ClaimPool));
    }
    type Columns = (
        String,
        String,
        i64,
        i64,
        Option<i64>,
        i64,
        Option<i64>,
        String,
        Option<i64>,
    );
    let rows: Vec<Columns> = tx
        .prepare_cached(
            "SELECT name, owner, candidate_index, token, lease_ms, renewals, renewed_at_ms, tags, holder
             FROM claims WHERE pool_id = ?1",
        )
        .and_then(|mut s| {
            s.query_map([id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })?
            .collect()
        })
        .map_err(|e| map_err(shown, "cannot read", e))?;
    let mut claims = BTreeMap::new();
    for (name, owner, index, token, lease_ms, renewals, renewed_at_ms, tags, holder) in rows {
        let lease = match lease_ms {
            None => None,
            Some(ms) => Some(LeaseRecord {
                duration_ms: to_u64(ms, id, "claim lease")?,
                renewals: to_u64(renewals, id, "claim renewal count")?,
                renewed_at_ms: renewed_at_ms
                    .and_then(|t| u64::try_from(t).ok())
                    .unwrap_or(0),
                holder: to_holder(holder, id)?,
            }),
        };
        let tags = serde_json::from_str(&tags).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("claim pool `{id}`: the tags of the claim of `{name}` are unreadable: {e}"),
            )
        })?;
        let record = ClaimRecord {
            owner,
            index: usize::try_from(to_u64(index, id, "candidate index")?).map_err(|_| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("item `{id}`: a candidate index is too large"),
                )
            })?,
            token: to_u64(token, id, "claim token")?,
            tags,
            lease,
        };
        claims.insert(name, record);
    }
    let members: Option<i64> = tx
        .prepare_cached("SELECT members FROM items WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)))
        .map_err(|e| map_err(shown, "cannot read", e))?;
    let members = members
        .map(|m| to_u64(m, id, "roster size").map(|m| m as usize))
        .transpose()?;
    Ok(Some(
        ClaimPoolState::new(row.version, claims, BTreeMap::new()).with_members(members),
    ))
}

/// Set the pool's version (creating its `items` row).
fn write_version(tx: &Transaction<'_>, shown: &str, id: &str, version: u64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO items (id, type, value, version) VALUES (?1, 'CLAIMS', 0, ?2)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
    )
    .and_then(|mut s| s.execute(params![id, version as i64]))
    .map_err(|e| map_err(shown, "cannot write", e))?;
    Ok(())
}

/// Set the pool's version and roster size (creating its `items` row).
fn write_pool(tx: &Transaction<'_>, shown: &str, id: &str, pool: &ClaimPoolState) -> Result<()> {
    let members = pool.members().map(|m| m as i64);
    tx.prepare_cached(
        "INSERT INTO items (id, type, value, version, members) VALUES (?1, 'CLAIMS', 0, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, members = excluded.members",
    )
    .and_then(|mut s| s.execute(params![id, pool.version as i64, members]))
    .map_err(|e| map_err(shown, "cannot write", e))?;
    Ok(())
}

/// Delete the claim of `name`, and set the version.
fn delete_claim(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    name: &str,
    version: u64,
) -> Result<()> {
    tx.prepare_cached("DELETE FROM claims WHERE pool_id = ?1 AND name = ?2")
        .and_then(|mut s| s.execute([id, name]))
        .map_err(|e| map_err(shown, "cannot write", e))?;
    write_version(tx, shown, id, version)
}

/// Remove from `pool` (loaded in `tx`) the claims whose holder the kernel
/// says is gone (see `live.rs`), each as an expiry: a new token apiece.
/// Whether any was removed.
fn reap(
    store: &SqliteStore,
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    pool: &mut ClaimPoolState,
) -> Result<bool> {
    let seen = pool.claims();
    let mut reaped = false;
    for claim in seen.value {
        if !store.is_dead(claim.lease.as_ref().and_then(|l| l.holder)) {
            continue;
        }
        let dead = Expired::dead(claim, FencingToken(pool.version));
        if let Some(token) = pool.expire(id, &dead)? {
            delete_claim(tx, shown, id, &dead.item().name, token.get())?;
            tracing::debug!(pool = id, name = %dead.item().name, owner = %dead.item().owner, %token,
                "removed the claim of a holder that is gone");
            reaped = true;
        }
    }
    Ok(reaped)
}

impl SqliteClaimPool {
    /// One write transaction that adds one renewal to `owner`'s claim of
    /// `name`; with `reaping`, it also removes the claims of holders found
    /// gone. The renewed claim, and the pool's claims after it.
    async fn renewing(
        &self,
        owner: &str,
        name: &str,
        reaping: bool,
    ) -> Result<(Fenced<Claim>, Fenced<Vec<Claim>>)> {
        validate::owner(owner)?;
        let now = lease::unix_millis(SystemTime::now());
        let (id, owner, name) = (self.id.clone(), owner.to_owned(), name.to_owned());
        let store = self.store.clone();
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot renew",
                move |tx, shown| {
                    let Some(mut pool) = load(tx, shown, &id)? else {
                        return Err(claim_lease_gone(&id, &owner, &name));
                    };
                    let renewed = pool.renew(&id, &owner, &name, now)?;
                    let lease = renewed
                        .value
                        .lease
                        .as_ref()
                        .expect("a renewed claim is leased");
                    tx.prepare_cached(
                        "UPDATE claims SET renewals = ?3, renewed_at_ms = ?4
                         WHERE pool_id = ?1 AND name = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id, name, lease.renewals as i64, now as i64])
                    })
                    .map_err(|e| map_err(shown, "cannot renew", e))?;
                    if reaping {
                        reap(&store, tx, shown, &id, &mut pool)?;
                    }
                    Ok(Outcome::Commit((renewed, pool.claims())))
                },
            )
            .await
    }

    /// Answer `read` from the pool as stored; if a claim of a holder that
    /// is gone is in it, remove it first (a write transaction, entered only
    /// then).
    async fn read_reaped<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&str, Option<&ClaimPoolState>) -> Result<T> + Send + Sync + Clone + 'static,
    {
        let (id, store) = (self.id.clone(), self.store.clone());
        let answer = read.clone();
        let found = self
            .store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| {
                    let pool = load(tx, shown, &id)?;
                    let dead = pool.as_ref().is_some_and(|p| {
                        p.claims()
                            .value
                            .iter()
                            .any(|c| store.is_dead(c.lease.as_ref().and_then(|l| l.holder)))
                    });
                    if dead {
                        return Ok(Outcome::Unchanged(None));
                    }
                    answer(&id, pool.as_ref()).map(|v| Outcome::Unchanged(Some(v)))
                },
            )
            .await?;
        if let Some(v) = found {
            return Ok(v);
        }
        let (id, store) = (self.id.clone(), self.store.clone());
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot remove a dead holder's claim",
                move |tx, shown| {
                    let mut pool = load(tx, shown, &id)?;
                    let reaped = match pool.as_mut() {
                        Some(p) => reap(&store, tx, shown, &id, p)?,
                        None => false,
                    };
                    let v = read(&id, pool.as_ref())?;
                    Ok(if reaped {
                        Outcome::Commit(v)
                    } else {
                        Outcome::Unchanged(v)
                    })
                },
            )
            .await
    }
}

#[async_trait]
impl ClaimPool for SqliteClaimPool {
    fn id(&self) -> &str {
        &self.id
    }

    async fn token(&self) -> Result<FencingToken> {
        Ok(FencingToken(
            self.store.version_of(&self.id, ItemType::ClaimPool).await?,
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
        let (id, wanted) = (&self.id, ItemType::ClaimPool);
        let store = &self.store;
        store
            .wait_for_change(id, wanted, seen.get(), until, poll, None)
            .await
    }

    async fn claim_as(&self, owner: &str, request: &ClaimRequest) -> Result<Claimed> {
        validate::owner(owner)?;
        validate::tags(&request.tags)?;
        let lease = LeaseRecord::starting_now(request.lease, request.holder)?;
        self.store.ensure_alive(request.holder)?;
        let (id, owner, request) = (self.id.clone(), owner.to_owned(), request.clone());
        let store = self.store.clone();
        self.store
            .run(TransactionBehavior::Immediate, "cannot claim", move |tx, shown| {
                // The write lock is ours from here: the claim exists no
                // earlier than this.
                let written_at = tokio::time::Instant::now();
                let mut pool = load(tx, shown, &id)?.unwrap_or_default();
                // A name whose holder is gone is free.
                let reaped = reap(&store, tx, shown, &id, &mut pool)?;
                let asked = Asked::new(&owner, &request, lease);
                let claim = match pool.claim(&id, &asked)? {
                    // What was reaped is written all the same.
                    ClaimOutcome::Existing(c) if reaped => return Ok(Outcome::Commit(Claimed::existing(c))),
                    ClaimOutcome::Existing(c) => return Ok(Outcome::Unchanged(Claimed::existing(c))),
                    ClaimOutcome::Claimed(c) => c,
                };
                write_pool(tx, shown, &id, &pool)?;
                let c = &claim.value;
                let lease_ms = c.lease.as_ref().map(|l| lease::millis(l.duration) as i64);
                let renewed_at = lease.map(|l| l.renewed_at_ms as i64);
                let tags = serde_json::to_string(&c.tags).expect("a map of strings serializes");
                // Holder ids are at most i64::MAX: stored as they are.
                let holder = request.holder.map(|h| h.get() as i64);
                tx.prepare_cached(
                    "INSERT INTO claims (pool_id, name, owner, candidate_index, token, lease_ms, renewals, renewed_at_ms, tags, holder)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9)",
                )
                .and_then(|mut s| {
                    s.execute(params![id, c.name, c.owner, c.index as i64, c.token.get() as i64, lease_ms, renewed_at, tags, holder])
                })
                .map_err(|e| map_err(shown, "cannot claim", e))?;
                Ok(Outcome::Commit(Claimed::made(claim, written_at)))
            })
            .await
    }

    async fn renew(&self, owner: &str, name: &str) -> Result<Fenced<Claim>> {
        Ok(self.renewing(owner, name, false).await?.0)
    }

    /// One write transaction: the renewal, and the pool as it left it,
    /// after the claims of holders found gone (see `live.rs`) were removed
    /// in the same transaction.
    async fn renew_and_read(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<(Fenced<Claim>, Fenced<Vec<Claim>>)> {
        self.renewing(owner, name, true).await
    }

    async fn expire(&self, expired: &Expired<Claim>) -> Result<Option<FencingToken>> {
        let id = self.id.clone();
        let expired = expired.clone();
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot remove an expired claim",
                move |tx, shown| {
                    let Some(mut pool) = load(tx, shown, &id)? else {
                        return Ok(Outcome::Unchanged(None));
                    };
                    match pool.expire(&id, &expired)? {
                        None => Ok(Outcome::Unchanged(None)),
                        Some(token) => {
                            delete_claim(tx, shown, &id, &expired.item().name, token.get())?;
                            Ok(Outcome::Commit(Some(token)))
                        }
                    }
                },
            )
            .await
    }

    async fn release_if(&self, owner: &str, token: Option<FencingToken>) -> Result<Fenced<Claim>> {
        validate::owner(owner)?;
        let (id, owner) = (self.id.clone(), owner.to_owned());
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot release",
                move |tx, shown| {
                    let Some(mut pool) = load(tx, shown, &id)? else {
                        return Err(Error::claim_not_found(&id, &owner));
                    };
                    let released = pool.release(&id, &owner, token)?;
                    delete_claim(
                        tx,
                        shown,
                        &id,
                        &released.value.name,
                        released.fencing_token.get(),
                    )?;
                    Ok(Outcome::Commit(released))
                },
            )
            .await
    }

    /// The owner's claim, unless its holder is gone (see `live.rs`): then
    /// it is removed first, and this is NotFound.
    async fn claim_of(&self, owner: &str) -> Result<Fenced<Claim>> {
        validate::owner(owner)?;
        let owner = owner.to_owned();
        self.read_reaped(move |id, pool| match pool {
            None => Err(Error::claim_not_found(id, &owner)),
            Some(pool) => pool.claim_of(id, &owner),
        })
        .await
    }

    /// Every claim, after the claims of holders found gone (see `live.rs`)
    /// were removed.
    async fn claims(&self) -> Result<Fenced<Vec<Claim>>> {
        self.read_reaped(|_, pool| {
            Ok(match pool {
                Some(p) => p.claims(),
                None => ClaimPoolState::default().claims(),
            })
        })
        .await
    }

    /// The roster, after the claims of holders found gone (see `live.rs`)
    /// were removed: a dead member's place is open to a replacement.
    async fn roster(&self) -> Result<Fenced<Roster>> {
        self.read_reaped(|_, pool| {
            Ok(match pool {
                Some(p) => p.roster(),
                None => ClaimPoolState::default().roster(),
            })
        })
        .await
    }

    async fn remove(&self) -> Result<Option<FencingToken>> {
        self.store
            .remove_item(
                &self.id,
                Some("DELETE FROM claims WHERE pool_id = ?1"),
                |r, id| {
                    if r.kind == ItemType::ClaimPool.stored() {
                        Ok(FencingToken(r.version))
                    } else {
                        Err(r.wrong_type(id, ItemType::ClaimPool))
                    }
                },
            )
            .await
    }
}
