//! Claim pools in DynamoDB: one item per pool, its claims in a map by name,
//! and the claimers that lost a race waiting in it to be served.
//!
//! # Why claimers wait in the pool
//!
//! A claim takes the first candidate free at the moment of the write, so a
//! claim is a write conditional on the pool's `Version` as read: whoever
//! wrote since may have taken that very candidate. When 64 claimers start
//! at once, all of them read the same pool and all try the same name; one
//! wins, 63 lose and try the next name, one wins, 62 lose, and so on.
//! Conditions on the name alone would not help: they all want the same one.
//! Measured with randomised backoff alone (64 processes at once against the
//! local test server, the test
//! `processes_claiming_at_once_get_distinct_first_free_names` in
//! `tests/dynamodb_processes.rs`): a median of 10 to 11
//! claim writes (18 to 19 requests) per claim, up to 21 (38), 13 s until the
//! last claimer had its name, and in 2 runs of 5 a claimer gave up after
//! the 15 s retry budget.
//!
//! So a claimer that lost a race writes its request into the pool instead
//! (`Waiting`, by owner: its candidates' digest, and the tags, lease and
//! holder of the claim it asks for, so that the claim made for it is that
//! one), which takes
//! one `UpdateItem` that changes neither `Version` nor `Claims`, and so makes
//! nobody retry. Whoever writes a claim next makes the claims of every
//! waiting claimer with the same candidates too, in the same write, one
//! after the other by the pool's rule (each gets the first candidate free
//! after the ones before it, and the version grows by one per claim; see
//! `ClaimPoolState::serve`), and takes their entries out of `Waiting`. A
//! waiting claimer whose own write then fails finds its claim in the item
//! the failure returned. One successful write serves everyone who waited,
//! so at 64-way contention a claim costs a few requests, not dozens:
//! measured the same way, a median of 2 claim writes (4 requests: the read,
//! the lost write, the wait, the write that made or found the claim), at
//! most 3 (5), and the last claimer had its name after 3 to 4.5 s.
//!
//! Each claim is still linearizable: it takes effect in the one write that
//! made it, between the claimer's request and its answer, as the first
//! candidate free at that moment. A waiting claimer whose candidates are
//! all taken leaves `Waiting` with a write conditional on its entry still
//! being there: if it is gone, a writer served it meanwhile, and it has its
//! claim after all. A claimer that dies while it waits may be served after
//! its death: its claim is then as if its own write had succeeded and its
//! answer were lost (a leased claim expires; a permanent one stays until
//! the owner releases it, and claiming again as the same owner returns it).
//!
//! # Rosters
//!
//! A pool sealed at a roster of N members (see the
//! [`ClaimPool`](crate::ClaimPool) contract's *Rosters*) holds N in its
//! `Members` attribute (N), written by the write that makes the first claim
//! asked with `members`: the creating `UpdateItem`, or a claim write
//! conditional on the pool's `Version`, so the size and the claims it
//! governs are never out of step. The pool stays one item. A waiting
//! claimer's entry holds the size it asked for (`members`), and whoever
//! serves it applies the pool's rules to it as to its own claim. A claim
//! refused because the roster is full is refused after the read alone.
//!
//! # Requests
//!
//! | operation | requests, without contention |
//! |---|---|
//! | claim | 2: a consistent `GetItem`, an `UpdateItem` conditional on `Version`; 1 (the `GetItem`) if the owner holds a claim, or every candidate is taken |
//! | claim, after losing a race | one `UpdateItem` to wait in the pool (returning the pool), then an `UpdateItem` per attempt; the claim may come with another claimer's write |
//! | release | 2: `GetItem`, `UpdateItem` conditional on the claim (not on `Version`) |
//! | renew | 1 `UpdateItem`, conditional on the owner |
//! | renew and read (a holder's renewal) | 1 `UpdateItem`, conditional on the owner, returning the pool |
//! | expire | 1 `UpdateItem`, conditional on the claim as observed |
//! | claim of an owner, list, roster | 1 `GetItem` |
//! | remove | 1 `DeleteItem` |

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use tokio::time::Instant;

use super::schema::{
    claim_placeholders, claims_write_update, decode, encode_claim, encode_waiter, item_bytes, n, s,
    Item, Stored, CLAIMS_CREATE_CONDITION, CLAIMS_CREATE_UPDATE, CLAIMS_CREATE_WAITING_UPDATE,
    CLAIMS_DROP_UPDATE, CLAIMS_EXPIRE_CONDITION, CLAIMS_RELEASE_CONDITION, CLAIMS_REMOVE_CONDITION,
    CLAIMS_RENEW_CONDITION, CLAIMS_RENEW_UPDATE, CLAIMS_SET_MEMBERS, CLAIMS_UNWAIT_CONDITION,
    CLAIMS_UNWAIT_UPDATE, CLAIMS_VERSION_CONDITION, CLAIMS_WAIT_CONDITION, CLAIMS_WAIT_UPDATE,
    CLAIM_POOL, ME_PLACEHOLDER, NAME_PLACEHOLDER, VERSION,
};
use super::store::DynamoDbStore;
use super::table::{Update, UpdateRequest, Written};
use crate::backoff::Attempts;
use crate::claim::candidates::MAX_NAME_BYTES;
use crate::claim::state::{claim_lease_gone, Asked, ClaimOutcome, ClaimPoolState, Waiter};
use crate::claim::{Claim, ClaimPool, ClaimRequest, Claimed, Roster};
use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::Expired;
use crate::lease::record as lease;
use crate::lease::record::LeaseRecord;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::store::item_type::ItemType;
use crate::validate;

/// The most waiting claimers one write serves, so that its update
/// expression stays well inside DynamoDB's 4 KB (about 36 bytes each).
pub const SERVED_PER_WRITE: usize = 63;

/// DynamoDB's largest item, in bytes.
pub const ITEM_LIMIT: usize = 400 * 1024;

/// A claimer waits in the pool only if the pool, its entry and its claim
/// to come would still fit in an item with this much to spare, for the
/// claims that a write makes for others (a claim is up to a name longer
/// than the waiting entry it replaces, and a write serves at most
/// [`SERVED_PER_WRITE`]); otherwise it just tries again.
const WAITING_RESERVE: usize = SERVED_PER_WRITE * (MAX_NAME_BYTES + 64);

/// A claim pool in a [`DynamoDbStore`].
#[derive(Debug, Clone)]
pub struct DynamoDbClaimPool {
    pub(super) store: DynamoDbStore,
    pub(super) id: String,
}

/// A pool as read: its state (`None` if absent) and the item's size.
#[derive(Debug, Clone)]
struct Seen {
    pool: Option<ClaimPoolState>,
    bytes: usize,
}

impl Seen {
    fn holds(&self, owner: &str) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|p| p.held_by(owner).is_some())
    }
}

impl DynamoDbClaimPool {
    /// One `UpdateItem` adding one renewal to `owner`'s claim of `name`,
    /// conditional on the claim being this owner's; the pool as it wrote it
    /// (`ALL_NEW`: returned attributes cost no read units, only the bytes
    /// of the answer).
    async fn renewed(&self, owner: &str, name: &str) -> Result<ClaimPoolState> {
        validate::owner(owner)?;
        let what = format!(
            "claim pool `{}`: renewal of `{owner}`'s claim of `{name}`",
            self.id
        );
        let table = &self.store.inner.table;
        let mut attempts = self.store.attempts();
        loop {
            let now = lease::unix_millis(SystemTime::now());
            let update = Update {
                update: CLAIMS_RENEW_UPDATE,
                condition: CLAIMS_RENEW_CONDITION,
                values: vec![
                    (":pool", s(CLAIM_POOL)),
                    (":owner", s(owner)),
                    (":one", n(1)),
                    (":now", n(now)),
                ],
                returns: ReturnValue::AllNew,
                resend_unanswered: true,
            };
            let item = match table
                .update_named(&what, &self.id, &update, &claim_name(name))
                .await?
            {
                Written::Done(new) => return Ok(self.decode(Some(&new))?.pool.unwrap_or_default()),
                Written::ConditionFailed(item) => {
                    table.returned_or_read(&what, &self.id, item).await?
                }
            };
            // Why did the condition fail? The rule says; if it says the
            // claim is there, it changed in between: try again.
            match self.decode(item.as_ref())?.pool {
                None => return Err(claim_lease_gone(&self.id, owner, name)),
                Some(mut pool) => {
                    pool.renew(&self.id, owner, name, now)?;
                }
            }
            self.store.back_off(&mut attempts, &what).await?;
        }
    }

    fn table_name(&self) -> &str {
        &self.store.inner.table.name
    }

    /// The pool in `item`: absent, or WrongType if another kind, Corrupt if
    /// unreadable.
    fn decode(&self, item: Option<&Item>) -> Result<Seen> {
        let Some(item) = item else {
            return Ok(Seen {
                pool: None,
                bytes: 0,
            });
        };
        match decode(self.table_name(), &self.id, item)? {
            Stored::ClaimPool(pool) => Ok(Seen {
                pool: Some(pool),
                bytes: item_bytes(item),
            }),
            other => Err(other.wrong_type(&self.id, ItemType::ClaimPool)),
        }
    }

    /// One strongly consistent read.
    async fn read(&self, what: &str) -> Result<Seen> {
        let item = self.store.inner.table.get(what, &self.id).await?;
        self.decode(item.as_ref())
    }

    /// After a failed condition (`returned` is what it returned, decoded):
    /// back off, then the pool to try again on: the returned one if the
    /// wait was short enough for it to be still fresh, else a new read.
    async fn after_conflict(
        &self,
        what: &str,
        returned: Option<Seen>,
        attempts: &mut Attempts<'_>,
    ) -> Result<Seen> {
        let waited = self.store.back_off(attempts, what).await?;
        match returned {
            Some(seen) if waited <= self.store.inner.backoff.reuse_within => Ok(seen),
            _ => self.read(what).await,
        }
    }

    /// The write that turns `before` (as read; `None`: absent) into `after`:
    /// the claims `after` has and `before` had not, and out of `Waiting` the
    /// claimers `before` had and `after` has not, conditional on the
    /// version read and on each of those claimers still waiting as read.
    /// Waiting and leaving `Waiting` change no version, so without the
    /// second part a claimer that gave up and left after this writer's read
    /// would still be given a claim it no longer asked for.
    fn claims_write(
        &self,
        before: Option<&ClaimPoolState>,
        after: &ClaimPoolState,
    ) -> UpdateRequest {
        let mut names = HashMap::new();
        let mut values = HashMap::from([
            (":pool".to_owned(), s(CLAIM_POOL)),
            (":version".to_owned(), n(after.version)),
        ]);
        let seals = after.members() != before.and_then(ClaimPoolState::members);
        if let Some(members) = after.members().filter(|_| seals) {
            values.insert(":members".into(), n(members as u64));
        }
        let (update, condition) = match before {
            None => {
                let claims = after
                    .records()
                    .iter()
                    .map(|(name, r)| (name.clone(), encode_claim(r)))
                    .collect();
                let waiting = after
                    .waiting()
                    .iter()
                    .map(|(owner, w)| (owner.clone(), encode_waiter(w)))
                    .collect();
                values.insert(":claims".into(), AttributeValue::M(claims));
                values.insert(":waiting".into(), AttributeValue::M(waiting));
                let mut update = CLAIMS_CREATE_UPDATE.to_owned();
                if seals {
                    update.push_str(CLAIMS_SET_MEMBERS);
                }
                (update, CLAIMS_CREATE_CONDITION.to_owned())
            }
            Some(before) => {
                values.insert(":expected".into(), n(before.version));
                let made: Vec<_> = after
                    .records()
                    .iter()
                    .filter(|(name, _)| !before.records().contains_key(*name))
                    .collect();
                let gone: Vec<&String> = before
                    .waiting()
                    .keys()
                    .filter(|owner| !after.waiting().contains_key(*owner))
                    .collect();
                for (i, (name, record)) in made.iter().enumerate() {
                    let (placeholder, _, value) = claim_placeholders(i);
                    names.insert(placeholder, (*name).clone());
                    values.insert(value, encode_claim(record));
                }
                let mut condition = CLAIMS_VERSION_CONDITION.to_owned();
                for (i, owner) in gone.iter().enumerate() {
                    let (_, placeholder, _) = claim_placeholders(i);
                    let digest = format!(":d{i}");
                    condition.push_str(&format!(
                        " AND #waiting.{placeholder}.#candidates = {digest}"
                    ));
                    names.insert(placeholder, (*owner).clone());
                    values.insert(digest, s(&before.waiting()[*owner].candidates));
                }
                (
                    claims_write_update(made.len(), gone.len(), seals),
                    condition,
                )
            }
        };
        names.extend(super::schema::names_in(&[&update, &condition]));
        UpdateRequest {
            update,
            condition,
            names,
            values,
            returns: ReturnValue::None,
            // Conditional on the version: sent twice, the second finds the
            // version moved on and fails, and the claimer finds its claim.
            resend_unanswered: true,
        }
    }

    /// Write `owner`'s request into the pool's `Waiting`, returning the pool
    /// as it then is; `None` if it does not wait after all (the pool is
    /// near DynamoDB's item size limit, or changed kind meanwhile).
    async fn wait_in(
        &self,
        what: &str,
        owner: &str,
        request: &ClaimRequest,
        seen: &Seen,
    ) -> Result<Option<Seen>> {
        let waiter = Waiter {
            candidates: request.candidates.digest(),
            lease_ms: request.lease.map(lease::millis),
            tags: request.tags.clone(),
            holder: request.holder,
            members: request.members,
        };
        let entry = encode_waiter(&waiter);
        let needs = owner.len() + 1 + super::schema::value_bytes(&entry);
        // The claim made for it carries the same tags.
        let claim_to_come = needs + MAX_NAME_BYTES + 128;
        if seen.bytes + needs + claim_to_come + WAITING_RESERVE > ITEM_LIMIT {
            return Ok(None);
        }
        let mut values = vec![(":pool", s(CLAIM_POOL))];
        let (update, condition) = if seen.pool.is_some() {
            values.push((":waiter", entry));
            values.push((":map", s("M")));
            (CLAIMS_WAIT_UPDATE, CLAIMS_WAIT_CONDITION)
        } else {
            let waiting = HashMap::from([(owner.to_owned(), entry)]);
            values.push((":waiting", AttributeValue::M(waiting)));
            values.push((":empty", AttributeValue::M(HashMap::new())));
            values.push((":zero", n(0)));
            (CLAIMS_CREATE_WAITING_UPDATE, CLAIMS_CREATE_CONDITION)
        };
        let update = Update {
            update,
            condition,
            values,
            returns: ReturnValue::AllNew,
            resend_unanswered: true,
        };
        let names = me_name(update.update, owner);
        match self
            .store
            .inner
            .table
            .update_named(what, &self.id, &update, &names)
            .await
        {
            Ok(Written::Done(item)) => self.decode(Some(&item)).map(Some),
            Ok(Written::ConditionFailed(item)) => {
                // Gone, or created, since it was read: try again as before.
                self.decode(item.as_ref())?;
                Ok(None)
            }
            // Too large an item after all: try again without waiting.
            Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Take `owner`'s request out of `Waiting`, if it is still there.
    /// `None` when it was; else the pool as it is, in which the owner was
    /// served meanwhile (or the pool is gone).
    async fn stop_waiting(&self, what: &str, owner: &str) -> Result<Option<Seen>> {
        let update = Update {
            update: CLAIMS_UNWAIT_UPDATE,
            condition: CLAIMS_UNWAIT_CONDITION,
            values: vec![(":pool", s(CLAIM_POOL))],
            returns: ReturnValue::None,
            resend_unanswered: true,
        };
        let table = &self.store.inner.table;
        let names = me_name(update.condition, owner);
        match table.update_named(what, &self.id, &update, &names).await? {
            Written::Done(_) => Ok(None),
            Written::ConditionFailed(item) => {
                let item = table.returned_or_read(what, &self.id, item).await?;
                self.decode(item.as_ref()).map(Some)
            }
        }
    }
}

/// The `#me` placeholder's name (the owner), if `expression` uses it.
fn me_name(expression: &str, owner: &str) -> Vec<(&'static str, String)> {
    if expression.contains(ME_PLACEHOLDER) {
        vec![(ME_PLACEHOLDER, owner.to_owned())]
    } else {
        vec![]
    }
}

/// The `#name` placeholder's name: the claim's name.
fn claim_name(name: &str) -> Vec<(&'static str, String)> {
    vec![(NAME_PLACEHOLDER, name.to_owned())]
}

/// The `Version` an `UpdateItem` returned.
fn returned_version(table: &str, id: &str, item: &Item) -> Result<u64> {
    match item.get(VERSION) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("dynamodb table `{table}`: claim pool `{id}`: the write returned no readable `{VERSION}`"),
        )
    })
}

#[async_trait]
impl ClaimPool for DynamoDbClaimPool {
    fn id(&self) -> &str {
        &self.id
    }

    /// One strongly consistent `GetItem` of the `Type` and `Version` alone,
    /// which waiters poll.
    async fn token(&self) -> Result<FencingToken> {
        let version = self.store.version_of(&self.id, ItemType::ClaimPool).await?;
        Ok(FencingToken(version))
    }

    /// A consistent read; unless the owner holds a claim or nothing is
    /// free, one `UpdateItem` conditional on the version read that makes
    /// the claim (and those of the claimers waiting for the same
    /// candidates). After a lost race: wait in the pool (see the module
    /// docs) and try again on the pool as the failed write returned it.
    async fn claim_as(&self, owner: &str, request: &ClaimRequest) -> Result<Claimed> {
        validate::owner(owner)?;
        validate::tags(&request.tags)?;
        let lease = LeaseRecord::starting_now(request.lease, request.holder)?;
        let what = format!("claim pool `{}`: claim of `{owner}`", self.id);
        let table = &self.store.inner.table;
        let asked = Asked::new(owner, request, lease);
        let mut seen = self.read(&what).await?;
        let mut attempts = self.store.attempts();
        // When this claimer's request was written into `Waiting`, if it was.
        let mut waiting_since: Option<Instant> = None;
        loop {
            let mut before = seen.pool.clone().unwrap_or_default();
            if before.held_by(owner).is_some() {
                // The re-join rule: this claim (made for this request while
                // it waited, or found), or an error without a write.
                let claim = match before.claim(&self.id, &asked) {
                    Ok(ClaimOutcome::Existing(claim)) => claim,
                    Ok(ClaimOutcome::Claimed(_)) => unreachable!("the owner holds a claim"),
                    Err(e) => {
                        // Whoever made the owner's claim took a waiting
                        // entry of this owner out; make sure none is left
                        // for a later writer to serve.
                        if waiting_since.is_some() {
                            self.stop_waiting(&what, owner).await?;
                        }
                        return Err(e);
                    }
                };
                return Ok(match waiting_since {
                    // Served while waiting: a claim made for this request,
                    // after the request was written.
                    Some(at) => {
                        let token = claim.value.token;
                        Claimed::made(Fenced::new(claim.value, token), at)
                    }
                    None => Claimed::existing(claim),
                });
            }
            let mut after = before.clone();
            let now_ms = lease::unix_millis(SystemTime::now());
            let served = match after.serve(&self.id, &asked, SERVED_PER_WRITE, now_ms) {
                Ok(served) => served,
                Err(e) if e.kind() == ErrorKind::Exhausted && waiting_since.is_some() => {
                    match self.stop_waiting(&what, owner).await? {
                        None => return Err(e),
                        Some(now) => {
                            // Served meanwhile (or the pool is gone): look again.
                            waiting_since = waiting_since.filter(|_| now.holds(owner));
                            seen = now;
                            continue;
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            let write = self.claims_write(seen.pool.as_ref(), &after);
            let sent = Instant::now();
            match table.send_update(&what, &self.id, &write).await? {
                Written::Done(_) => {
                    if !served.others.is_empty() || !served.dropped.is_empty() {
                        tracing::debug!(
                            pool = %self.id,
                            %owner,
                            served = served.others.len(),
                            dropped = served.dropped.len(),
                            "served waiting claimers"
                        );
                    }
                    return Ok(Claimed::made(served.mine, sent));
                }
                Written::ConditionFailed(item) => {
                    let returned = item.map(|i| self.decode(Some(&i))).transpose()?;
                    if let Some(now) = returned.as_ref().filter(|r| r.holds(owner)) {
                        seen = now.clone();
                        continue;
                    }
                    if waiting_since.is_none() {
                        let last = returned.clone().unwrap_or(Seen {
                            pool: seen.pool.clone(),
                            bytes: seen.bytes,
                        });
                        let at = Instant::now();
                        if let Some(now) = self.wait_in(&what, owner, request, &last).await? {
                            tracing::debug!(pool = %self.id, %owner, "lost a race: waiting in the pool");
                            waiting_since = Some(at);
                            seen = now;
                            continue;
                        }
                    }
                    seen = match self.after_conflict(&what, returned, &mut attempts).await {
                        Ok(seen) => seen,
                        // Giving up: not without leaving `Waiting`, where a
                        // later writer would make a claim nobody asked for.
                        Err(e) if waiting_since.is_some() => {
                            match self.stop_waiting(&what, owner).await {
                                Ok(Some(now)) if now.holds(owner) => now,
                                _ => return Err(e),
                            }
                        }
                        Err(e) => return Err(e),
                    };
                }
            }
        }
    }

    /// One `UpdateItem` adding one renewal, conditional on the claim being
    /// this owner's, returning the pool (`ALL_NEW`: returned attributes cost
    /// no read units, only the bytes of the answer).
    async fn renew(&self, owner: &str, name: &str) -> Result<Fenced<Claim>> {
        self.renewed(owner, name).await?.claim_of(&self.id, owner)
    }

    /// As [`renew`](ClaimPool::renew): its one `UpdateItem` returns the
    /// whole pool, which is the read.
    async fn renew_and_read(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<(Fenced<Claim>, Fenced<Vec<Claim>>)> {
        let pool = self.renewed(owner, name).await?;
        Ok((pool.claim_of(&self.id, owner)?, pool.claims()))
    }

    /// One `UpdateItem` removing the claim if it is as observed; the
    /// version grows by one, atomically.
    async fn expire(&self, expired: &Expired<Claim>) -> Result<Option<FencingToken>> {
        let claim = expired.item();
        let Some(seen_lease) = claim.lease.as_ref() else {
            return Ok(None);
        };
        let what = format!(
            "claim pool `{}`: expiry of `{}`'s claim of `{}`",
            self.id, claim.owner, claim.name
        );
        let table = &self.store.inner.table;
        let update = Update {
            update: CLAIMS_DROP_UPDATE,
            condition: CLAIMS_EXPIRE_CONDITION,
            values: vec![
                (":pool", s(CLAIM_POOL)),
                (":owner", s(&claim.owner)),
                (":token", n(claim.token.get())),
                (":renewals", n(seen_lease.renewals)),
                (":lease_ms", n(lease::millis(seen_lease.duration))),
                (":one", n(1)),
            ],
            returns: ReturnValue::UpdatedNew,
            // Sent twice, the second finds the claim gone: not removed twice.
            resend_unanswered: true,
        };
        match table
            .update_named(&what, &self.id, &update, &claim_name(&claim.name))
            .await?
        {
            Written::Done(new) => Ok(Some(FencingToken(returned_version(
                self.table_name(),
                &self.id,
                &new,
            )?))),
            Written::ConditionFailed(item) => {
                // Changed or gone; or not a pool at all, which is an error.
                self.decode(item.as_ref())?;
                Ok(None)
            }
        }
    }

    /// A consistent read, then one `UpdateItem` removing the owner's claim,
    /// conditional on that claim (not on the version): a claim or renewal
    /// of another owner in between does not make it retry.
    async fn release_if(&self, owner: &str, token: Option<FencingToken>) -> Result<Fenced<Claim>> {
        validate::owner(owner)?;
        let what = format!("claim pool `{}`: release by `{owner}`", self.id);
        let table = &self.store.inner.table;
        let mut seen = self.read(&what).await?;
        let mut attempts = self.store.attempts();
        loop {
            let Some(pool) = seen.pool.as_ref() else {
                return Err(Error::claim_not_found(&self.id, owner));
            };
            // The rule says whether this claim is to go; the write is
            // conditional on that very claim (its token).
            let claim = pool.clone().release(&self.id, owner, token)?.value;
            let update = Update {
                update: CLAIMS_DROP_UPDATE,
                condition: CLAIMS_RELEASE_CONDITION,
                values: vec![
                    (":pool", s(CLAIM_POOL)),
                    (":owner", s(owner)),
                    (":token", n(claim.token.get())),
                    (":one", n(1)),
                ],
                returns: ReturnValue::UpdatedNew,
                // Sent twice, the second finds the claim gone and the
                // release reports NotFound, as a lost answer allows.
                resend_unanswered: true,
            };
            match table
                .update_named(&what, &self.id, &update, &claim_name(&claim.name))
                .await?
            {
                Written::Done(new) => {
                    let token = returned_version(self.table_name(), &self.id, &new)?;
                    return Ok(Fenced::new(claim, FencingToken(token)));
                }
                Written::ConditionFailed(item) => {
                    let returned = item.map(|i| self.decode(Some(&i))).transpose()?;
                    seen = self.after_conflict(&what, returned, &mut attempts).await?;
                }
            }
        }
    }

    /// One consistent read.
    async fn claim_of(&self, owner: &str) -> Result<Fenced<Claim>> {
        validate::owner(owner)?;
        let what = format!("claim pool `{}`: claim of `{owner}`", self.id);
        match self.read(&what).await?.pool {
            None => Err(Error::claim_not_found(&self.id, owner)),
            Some(pool) => pool.claim_of(&self.id, owner),
        }
    }

    /// One consistent read.
    async fn claims(&self) -> Result<Fenced<Vec<Claim>>> {
        let what = format!("claim pool `{}`: claims", self.id);
        Ok(self.read(&what).await?.pool.unwrap_or_default().claims())
    }

    /// One consistent read.
    async fn roster(&self) -> Result<Fenced<Roster>> {
        let what = format!("claim pool `{}`: roster", self.id);
        Ok(self.read(&what).await?.pool.unwrap_or_default().roster())
    }

    /// One `DeleteItem` under the pool condition, returning the old item;
    /// only its `Version` is read back, so an unreadable pool can still be
    /// removed.
    async fn remove(&self) -> Result<Option<FencingToken>> {
        let what = format!("claim pool `{}`: remove", self.id);
        let values = [
            (":pool", s(CLAIM_POOL)),
            (":number", s("N")),
            (":zero", n(0)),
            (":max", n(u64::MAX)),
        ];
        self.store
            .remove_versioned(&what, &self.id, CLAIMS_REMOVE_CONDITION, &values, |item| {
                self.decode(item).map(|_| ())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::{CLAIMS, TYPE, WAITING};
    use super::*;
    use crate::claim::candidates::MAX_CANDIDATES;
    use crate::claim::state::ClaimRecord;
    use crate::queue::ticket::Tags;
    use std::collections::BTreeMap;

    /// The item of a pool of `claims` claims with owners of `owner` bytes
    /// and names of `name` bytes, leased, with numbers as large as they get
    /// in practice (tokens and renewals of 12 digits, times of 13).
    fn pool_item(claims: usize, owner: usize, name: usize) -> Item {
        let records: BTreeMap<String, ClaimRecord> = (0..claims)
            .map(|i| {
                let name = format!("{i:0>name$}");
                let owner = format!("{i:0>owner$}");
                let record = ClaimRecord {
                    owner,
                    index: i,
                    token: 100_000_000_000 + i as u64,
                    tags: Tags::new(),
                    lease: Some(LeaseRecord {
                        duration_ms: 86_400_000,
                        renewals: 100_000_000_000,
                        renewed_at_ms: 1_790_000_000_000,
                        holder: crate::lease::holder_id::HolderId::new(
                            crate::lease::holder_id::MAX_HOLDER_ID,
                        ),
                    }),
                };
                (name, record)
            })
            .collect();
        let claims = records
            .iter()
            .map(|(n, r)| (n.clone(), encode_claim(r)))
            .collect();
        HashMap::from([
            (
                "ID".to_owned(),
                s(&"i".repeat(crate::validate::MAX_ID_BYTES)),
            ),
            (TYPE.to_owned(), s(CLAIM_POOL)),
            (VERSION.to_owned(), n(999_999_999_999u64)),
            (CLAIMS.to_owned(), AttributeValue::M(claims)),
            (WAITING.to_owned(), AttributeValue::M(HashMap::new())),
        ])
    }

    #[test]
    fn a_full_pool_of_the_longest_owners_and_names_fits_one_item() {
        let full = item_bytes(&pool_item(
            MAX_CANDIDATES,
            crate::validate::MAX_ID_BYTES,
            MAX_NAME_BYTES,
        ));
        let per_claim = (full - item_bytes(&pool_item(0, 0, 0))) / MAX_CANDIDATES;
        println!(
            "a full pool of {MAX_CANDIDATES} claims, owners of {} bytes, names of {MAX_NAME_BYTES}: \
             {full} bytes ({per_claim} a claim) of {ITEM_LIMIT}",
            crate::validate::MAX_ID_BYTES
        );
        assert!(full < ITEM_LIMIT, "{full}");
        // Claimers can still wait in it: at least a few of the longest.
        let waiter = crate::validate::MAX_ID_BYTES + 64;
        assert!(full + WAITING_RESERVE + 4 * waiter < ITEM_LIMIT, "{full}");
        // The largest pools that fit, for the docs: names as short as `1`..`255`.
        for owner in [16, 64, 1024] {
            let per =
                (item_bytes(&pool_item(100, owner, 3)) - item_bytes(&pool_item(0, owner, 3))) / 100;
            println!(
                "owners of {owner} bytes, names of 3: {per} bytes a claim, {} claims in an item",
                ITEM_LIMIT / per
            );
        }
    }

    #[test]
    fn a_claim_write_stays_inside_the_expression_limit() {
        let update = claims_write_update(SERVED_PER_WRITE + 1, SERVED_PER_WRITE + 1, true);
        assert!(update.len() < 4096, "{} bytes", update.len());
        assert!(
            update.starts_with("SET #version = :version, #members = :members, #claims.#n0 = :c0, ")
        );
        assert!(update.ends_with(&format!(", #waiting.#w{SERVED_PER_WRITE}")));
        assert!(update.contains(" REMOVE #waiting.#w0, #waiting.#w1"));
    }
}
