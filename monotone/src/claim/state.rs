//! A claim pool's whole state as one value, and the rules that change it.
//!
//! Every store applies these rules: memory and DynamoDB keep a pool in one
//! record and write back what a rule changed; SQLite loads the pool's rows
//! (at most [`MAX_CANDIDATES`]) in its transaction, applies the same rule,
//! and writes the rows it changed. So a pool's semantics are written once.
//!
//! Claimers that lost a race on a DynamoDB pool wait in it (see
//! [`Waiter`]) and are served by whoever writes next: [`ClaimPoolState::serve`].
//!
//! # Rosters
//!
//! A pool may be *sealed* at a roster of N members (the bootstrap barrier,
//! see [`ClaimPool`](crate::ClaimPool)'s contract): the first claim made
//! with `members` N records N in the pool, and from then on
//!
//! - a claim that asks for another roster size is
//!   [`ErrorKind::InvalidInput`], whoever asks, and writes nothing;
//! - while the pool holds N claims, a claimer that holds none gets
//!   [`ErrorKind::Exhausted`] naming the roster size, and nothing changes;
//!   a claim without `members` is a claim like any other: it counts
//!   towards the N and is refused the same way while the roster is full;
//! - a released or expired member's name is free, and the next claimer
//!   takes it if it is its first free candidate (with a range, the lowest
//!   missing number: the freed one).
//!
//! A roster size is never recorded on a pool that already holds N claims
//! or more, nor for an owner that holds a claim made without one (both
//! [`ErrorKind::InvalidInput`]): a sealed pool never holds more claims than
//! its roster. The size stays until the pool is removed. The roster is the
//! pool's claims in the listing order, complete once there are N of them:
//! [`roster_complete`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::claim::{Claim, ClaimRequest, Roster};

use crate::claim::candidates::{listing_order, Candidates, MAX_CANDIDATES};
use crate::error::{Error, ErrorKind, Result};
use crate::lease::again::{again, Again};
use crate::lease::expiry::Expired;
use crate::lease::holder_id::HolderId;
use crate::lease::record::LeaseRecord;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::ticket::Tags;

/// One claim as stored, under its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimRecord {
    pub owner: String,
    /// The claimed name's index in the candidates it was claimed from.
    pub index: usize,
    /// The pool's version right after the claim was made.
    pub token: u64,
    pub tags: Tags,
    pub lease: Option<LeaseRecord>,
}

/// A claimer waiting to be served: what it asked for, so that another
/// claimer with the same candidates can make its claim for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiter {
    /// The [digest](Candidates::digest) of its candidates.
    pub candidates: String,
    /// The lease it asked for, in milliseconds; `None`: a permanent claim.
    pub lease_ms: Option<u64>,
    /// The tags it asked for.
    pub tags: Tags,
    /// The holder that asked, if one did (with a lease).
    pub holder: Option<HolderId>,
    /// The roster size it asked for, if it did.
    pub members: Option<usize>,
}

/// A claim asked for: who, from which candidates, with which tags and
/// lease (whose holder is the one that asks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub owner: &'a str,
    pub candidates: &'a Candidates,
    pub tags: &'a Tags,
    pub lease: Option<LeaseRecord>,
    /// The roster size asked for (`members`), if any.
    pub members: Option<usize>,
}

impl<'a> Asked<'a> {
    /// What `request` asks for `owner`, with its lease as a record.
    pub fn new(owner: &'a str, request: &'a ClaimRequest, lease: Option<LeaseRecord>) -> Self {
        Asked {
            owner,
            candidates: &request.candidates,
            tags: &request.tags,
            lease,
            members: request.members,
        }
    }
}

/// A pool: its version (the fencing token), its claims by name, the
/// claimers waiting to be served, by owner, and the roster size it is
/// sealed at, if it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClaimPoolState {
    pub version: u64,
    claims: BTreeMap<String, ClaimRecord>,
    waiting: BTreeMap<String, Waiter>,
    members: Option<usize>,
}

/// What [`ClaimPoolState::claim`] did.
#[derive(Debug)]
pub(crate) enum ClaimOutcome {
    /// The owner held a claim already; nothing changed.
    Existing(Fenced<Claim>),
    /// The claim was made; the state must be written back.
    Claimed(Fenced<Claim>),
}

/// What [`ClaimPoolState::serve`] did: the caller's claim, the other waiters
/// it served (owner and name) and those whose entries it dropped because
/// they hold a claim already.
#[derive(Debug)]
#[cfg_attr(not(feature = "aws"), allow(dead_code))] // the DynamoDB store's
pub(crate) struct Served {
    pub mine: Fenced<Claim>,
    pub others: Vec<(String, String)>,
    pub dropped: Vec<String>,
}

impl ClaimPoolState {
    /// A state from stored parts.
    pub fn new(
        version: u64,
        claims: BTreeMap<String, ClaimRecord>,
        waiting: BTreeMap<String, Waiter>,
    ) -> Self {
        ClaimPoolState {
            version,
            claims,
            waiting,
            members: None,
        }
    }

    /// The same state, sealed at a roster of `members` (as stored).
    pub fn with_members(mut self, members: Option<usize>) -> Self {
        self.members = members;
        self
    }

    /// The roster size the pool is sealed at, if it is.
    pub fn members(&self) -> Option<usize> {
        self.members
    }

    pub fn token(&self) -> FencingToken {
        FencingToken(self.version)
    }

    #[cfg_attr(not(feature = "aws"), allow(dead_code))] // the DynamoDB store's
    pub fn records(&self) -> &BTreeMap<String, ClaimRecord> {
        &self.claims
    }

    // The waiting claimers serve the DynamoDB store only.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub fn waiting(&self) -> &BTreeMap<String, Waiter> {
        &self.waiting
    }

    fn claim_named(&self, name: &str, record: &ClaimRecord) -> Claim {
        Claim::new(
            name,
            &record.owner,
            record.index,
            FencingToken(record.token),
        )
        .with_tags(record.tags.clone())
        .with_lease(record.lease.as_ref().map(LeaseRecord::lease))
    }

    /// The name `owner` holds, with its record.
    pub fn held_by(&self, owner: &str) -> Option<(&String, &ClaimRecord)> {
        self.claims.iter().find(|(_, r)| r.owner == owner)
    }

    /// The claim of `owner`, with the current token.
    pub fn claim_of(&self, id: &str, owner: &str) -> Result<Fenced<Claim>> {
        let (name, record) = self
            .held_by(owner)
            .ok_or_else(|| Error::claim_not_found(id, owner))?;
        Ok(Fenced::new(self.claim_named(name, record), self.token()))
    }

    /// Every claim, in the listing order of the pool's contract (see
    /// [`listing_order`]).
    pub fn claims(&self) -> Fenced<Vec<Claim>> {
        let mut all: Vec<Claim> = self
            .claims
            .iter()
            .map(|(name, r)| self.claim_named(name, r))
            .collect();
        all.sort_by(|a, b| listing_order(&a.name, &b.name));
        Fenced::new(all, self.token())
    }

    /// Every claim in the listing order, with the roster size.
    pub fn roster(&self) -> Fenced<Roster> {
        let claims = self.claims();
        Fenced::new(
            Roster {
                size: self.members,
                claims: claims.value,
            },
            claims.fencing_token,
        )
    }

    /// The roster rules a claim must pass before anything else is looked
    /// at (see the module docs): a roster size within bounds and within the
    /// candidates, the pool's own if it has one; and one that is recorded
    /// only on a pool with room for it, by an owner without a claim.
    fn check_members(&self, id: &str, request: &Asked<'_>) -> Result<()> {
        let Some(n) = request.members else {
            return Ok(());
        };
        check_roster_size(n)?;
        if n > request.candidates.len() {
            return Err(Error::invalid(format!(
                "a roster of {n} members needs at least {n} candidates, and this claim names {}; \
                 nothing was written",
                request.candidates.len()
            )));
        }
        match self.members {
            Some(m) if m != n => Err(other_roster(id, m, n)),
            Some(_) => Ok(()),
            None => {
                if let Some((name, _)) = self.held_by(request.owner) {
                    return Err(Error::invalid(format!(
                        "`{}` holds `{name}` in claim pool `{id}`, claimed without a roster size, \
                         and this claim asks for a roster of {n}: release it first; nothing was \
                         written",
                        request.owner
                    )));
                }
                if self.claims.len() >= n {
                    return Err(Error::invalid(format!(
                        "claim pool `{id}` holds {} claims made without a roster size, too many \
                         to seal a roster of {n} on it; nothing was written",
                        self.claims.len()
                    )));
                }
                Ok(())
            }
        }
    }

    /// The first candidate no one holds, with its index.
    fn first_free(&self, candidates: &Candidates) -> Option<(usize, String)> {
        candidates
            .iter()
            .enumerate()
            .find(|(_, name)| !self.claims.contains_key(name.as_ref()))
            .map(|(i, name)| (i, name.into_owned()))
    }

    /// Claim the first free candidate for `request.owner`, unless it holds
    /// a claim already: then the re-join rule (`lease/again.rs`) says
    /// whether its claim is the one asked for ([`ClaimOutcome::Existing`]),
    /// held by another holder ([`ErrorKind::Held`]) or another claim
    /// ([`ErrorKind::Mismatch`]). Checks everything before it changes
    /// anything.
    pub fn claim(&mut self, id: &str, request: &Asked<'_>) -> Result<ClaimOutcome> {
        self.check_members(id, request)?;
        if let Some((name, record)) = self.held_by(request.owner) {
            let owner = request.owner;
            return match again(
                &record.tags,
                record.lease.as_ref(),
                request.tags,
                request.lease.as_ref(),
            ) {
                Again::Same => Ok(ClaimOutcome::Existing(Fenced::new(
                    self.claim_named(name, record),
                    self.token(),
                ))),
                Again::Held => Err(Error::new(
                    ErrorKind::Held,
                    format!(
                        "`{owner}`'s claim of `{name}` in claim pool `{id}` is held by another \
                         holder; nothing was written"
                    ),
                )),
                Again::Differs { held, asked } => Err(Error::new(
                    ErrorKind::Mismatch,
                    format!(
                        "`{owner}` holds `{name}` in claim pool `{id}` with {held}, and this claim \
                         asks for {asked}: release it first to claim anew; nothing was written"
                    ),
                )),
            };
        }
        if self.claims.len() >= MAX_CANDIDATES {
            return Err(Error::new(
                ErrorKind::Exhausted,
                format!(
                    "claim pool `{id}` holds {} claims, the most one pool may hold; \
                     nothing was claimed",
                    self.claims.len()
                ),
            ));
        }
        let members = self.members.or(request.members);
        if let Some(n) = members.filter(|n| self.claims.len() >= *n) {
            return Err(roster_full(id, n));
        }
        let (index, name) = self
            .first_free(request.candidates)
            .ok_or_else(|| Error::exhausted(id, request.candidates.len()))?;
        let version = self.next_version(id)?;
        let record = ClaimRecord {
            owner: request.owner.to_owned(),
            index,
            token: version,
            tags: request.tags.clone(),
            lease: request.lease,
        };
        let claim = self.claim_named(&name, &record);
        self.claims.insert(name, record);
        self.version = version;
        self.members = members;
        Ok(ClaimOutcome::Claimed(Fenced::new(claim, self.token())))
    }

    /// Take `owner`'s claim out: whichever it holds (`token` `None`), or
    /// only the claim made at `token`; NotFound if it holds none (not that
    /// one). Returns the claim as it was, with the new token.
    pub fn release(
        &mut self,
        id: &str,
        owner: &str,
        token: Option<FencingToken>,
    ) -> Result<Fenced<Claim>> {
        let name = self
            .held_by(owner)
            .filter(|(_, r)| token.is_none_or(|t| t.get() == r.token))
            .map(|(name, _)| name.clone())
            .ok_or_else(|| match token {
                None => Error::claim_not_found(id, owner),
                Some(t) => Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "`{owner}` holds no claim made at token {t} in claim pool `{id}`: \
                         it expired and was removed, or was released"
                    ),
                ),
            })?;
        self.remove_claim(id, &name)
    }

    /// The version after one more write: at most `i64::MAX`, the most
    /// SQLite can store.
    fn next_version(&self, id: &str) -> Result<u64> {
        self.version
            .checked_add(1)
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or_else(|| Error::overflow(id))
    }

    fn remove_claim(&mut self, id: &str, name: &str) -> Result<Fenced<Claim>> {
        let version = self.next_version(id)?;
        let record = self.claims.remove(name).expect("the caller found it");
        self.version = version;
        Ok(Fenced::new(self.claim_named(name, &record), self.token()))
    }

    /// Renew the lease of `owner`'s claim of `name` at `now_ms`; the
    /// version stays. LeaseLost if it holds no such leased claim.
    pub fn renew(
        &mut self,
        id: &str,
        owner: &str,
        name: &str,
        now_ms: u64,
    ) -> Result<Fenced<Claim>> {
        let record = self
            .claims
            .get_mut(name)
            .filter(|r| r.owner == owner)
            .ok_or_else(|| claim_lease_gone(id, owner, name))?;
        let lease = record
            .lease
            .as_mut()
            .ok_or_else(|| claim_lease_gone(id, owner, name))?;
        lease.renewals = lease
            .renewals
            .checked_add(1)
            .ok_or_else(|| Error::overflow(id))?;
        lease.renewed_at_ms = now_ms;
        let record = record.clone();
        Ok(Fenced::new(self.claim_named(name, &record), self.token()))
    }

    /// Whether the claim `expired` watched is still exactly as it was seen.
    pub fn is_unchanged(&self, expired: &Expired<Claim>) -> bool {
        let seen = expired.item();
        let Some(record) = self.claims.get(&seen.name) else {
            return false;
        };
        match (&record.lease, &seen.lease) {
            (Some(now), Some(then)) => {
                record.owner == seen.owner
                    && record.token == seen.token.get()
                    && now.renewals == then.renewals
                    && Duration::from_millis(now.duration_ms) == then.duration
            }
            _ => false,
        }
    }

    /// Remove the claim `expired` watched if it is unchanged (a write like a
    /// release: the version grows by one); `None` if it changed or is gone.
    pub fn expire(&mut self, id: &str, expired: &Expired<Claim>) -> Result<Option<FencingToken>> {
        if !self.is_unchanged(expired) {
            return Ok(None);
        }
        Ok(Some(
            self.remove_claim(id, &expired.item().name)?.fencing_token,
        ))
    }

    /// Add `owner` to the waiting claimers (again: replaced), as the
    /// DynamoDB store's request does.
    #[cfg(test)]
    pub fn wait(&mut self, owner: &str, waiter: Waiter) {
        self.waiting.insert(owner.to_owned(), waiter);
    }

    /// Make `me`'s claim, then serve the waiting claimers whose candidates
    /// are the same as `me`'s, in the order of their owner ids, while free
    /// candidates last and at most `most` of them; waiters that hold a claim
    /// already are dropped from the waiting list, as is `me`. Each claim is
    /// made by the rule of [`claim`](Self::claim), one after the other, so
    /// each gets the first candidate free after the ones before it, and the
    /// version grows by one per claim. `now_ms` is the wall-clock time of
    /// the new leases. Fails (changing nothing) if `me` cannot be served.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub fn serve(&mut self, id: &str, me: &Asked<'_>, most: usize, now_ms: u64) -> Result<Served> {
        let mine = match self.claim(id, me)? {
            ClaimOutcome::Claimed(c) => c,
            ClaimOutcome::Existing(c) => {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "claim pool `{id}`: `{}` was to be served but holds `{}` already",
                        me.owner, c.value.name
                    ),
                ))
            }
        };
        self.waiting.remove(me.owner);
        let digest = me.candidates.digest();
        let mut others = Vec::new();
        let mut dropped = Vec::new();
        let waiting: Vec<(String, Waiter)> = self
            .waiting
            .iter()
            .map(|(o, w)| (o.clone(), w.clone()))
            .collect();
        for (owner, waiter) in waiting {
            if others.len() + dropped.len() >= most {
                break;
            }
            if self.held_by(&owner).is_some() {
                self.waiting.remove(&owner);
                dropped.push(owner);
                continue;
            }
            if waiter.candidates != digest {
                continue;
            }
            let request = Asked {
                owner: &owner,
                candidates: me.candidates,
                tags: &waiter.tags,
                lease: waiter.lease_ms.map(|ms| {
                    LeaseRecord::new(Duration::from_millis(ms), now_ms).held_by(waiter.holder)
                }),
                members: waiter.members,
            };
            match self.claim(id, &request) {
                Ok(ClaimOutcome::Claimed(c)) => {
                    self.waiting.remove(&owner);
                    others.push((owner, c.value.name));
                }
                // Nothing left to claim: the rest find out for themselves.
                Ok(ClaimOutcome::Existing(_)) | Err(_) => break,
            }
        }
        Ok(Served {
            mine,
            others,
            dropped,
        })
    }
}

/// Check a roster size on its own: 1 to [`MAX_CANDIDATES`].
pub(crate) fn check_roster_size(n: usize) -> Result<()> {
    if (1..=MAX_CANDIDATES).contains(&n) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "a roster has 1 to {MAX_CANDIDATES} members, not {n}; nothing was written"
        )))
    }
}

/// The pool is sealed at `held` members, and `asked` were asked for.
fn other_roster(id: &str, held: usize, asked: usize) -> Error {
    Error::invalid(format!(
        "claim pool `{id}` is sealed at a roster of {held} members, and this asks for {asked}; \
         nothing was written"
    ))
}

/// The pool holds its whole roster of `n` members.
pub(crate) fn roster_full(id: &str, n: usize) -> Error {
    Error::new(
        ErrorKind::Exhausted,
        format!(
            "claim pool `{id}` holds its whole roster of {n} members; nothing was claimed \
             (a member's name frees up when it is released or its lease expires)"
        ),
    )
}

/// Whether `roster` (a read of pool `id`) is the complete roster of
/// `members`: `false` while it holds fewer claims; InvalidInput if the pool
/// is sealed at another size, or (never sealed) holds more claims than
/// `members`, as no roster of that size can come of it.
pub(crate) fn roster_complete(id: &str, roster: &Roster, members: usize) -> Result<bool> {
    check_roster_size(members)?;
    match roster.size {
        Some(m) if m != members => return Err(other_roster(id, m, members)),
        _ => {}
    }
    match roster.claims.len() {
        n if n < members => Ok(false),
        n if n == members => Ok(true),
        n => Err(Error::invalid(format!(
            "claim pool `{id}` holds {n} claims made without a roster size, more than a roster \
             of {members}"
        ))),
    }
}

/// The holder's claim is gone, or has no lease.
pub(crate) fn claim_lease_gone(id: &str, owner: &str, name: &str) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!(
            "the lease of `{owner}` on `{name}` in claim pool `{id}` is gone: \
             the claim expired and was removed, or was released"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(n: u64) -> Candidates {
        Candidates::range(1..=n).unwrap()
    }

    const NO_TAGS: &Tags = &Tags::new();

    fn request<'a>(owner: &'a str, candidates: &'a Candidates) -> Asked<'a> {
        Asked {
            owner,
            candidates,
            tags: NO_TAGS,
            lease: None,
            members: None,
        }
    }

    fn claimed(outcome: ClaimOutcome) -> Fenced<Claim> {
        match outcome {
            ClaimOutcome::Claimed(c) => c,
            ClaimOutcome::Existing(c) => panic!("expected a new claim, got {c:?}"),
        }
    }

    #[test]
    fn first_free_in_order_idempotent_and_reused_after_release() {
        let c = range(3);
        let mut p = ClaimPoolState::default();
        let a = claimed(p.claim("p", &request("a", &c)).unwrap());
        assert_eq!(
            (a.value.name.as_str(), a.value.index, a.fencing_token.0),
            ("1", 0, 1)
        );
        assert_eq!(a.value.token, FencingToken(1));
        let b = claimed(p.claim("p", &request("b", &c)).unwrap());
        assert_eq!((b.value.name.as_str(), b.fencing_token.0), ("2", 2));
        match p.claim("p", &request("a", &range(9))).unwrap() {
            ClaimOutcome::Existing(again) => {
                assert_eq!(again.value, a.value);
                assert_eq!(again.fencing_token, FencingToken(2), "the current token");
            }
            other => panic!("not idempotent: {other:?}"),
        }
        let released = p.release("p", "a", None).unwrap();
        assert_eq!(
            (released.value.name.as_str(), released.fencing_token.0),
            ("1", 3)
        );
        let d = claimed(p.claim("p", &request("d", &c)).unwrap());
        assert_eq!((d.value.name.as_str(), d.fencing_token.0), ("1", 4));
        claimed(p.claim("p", &request("e", &c)).unwrap());
        let e = p.claim("p", &request("f", &c)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Exhausted);
        assert!(
            e.to_string().contains("`p`") && e.to_string().contains("3 candidates"),
            "{e}"
        );
        assert_eq!(p.version, 5, "a failed claim writes nothing");
        assert_eq!(
            p.release("p", "a", None).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let order: Vec<_> = p.claims().value.into_iter().map(|c| c.owner).collect();
        assert_eq!(order, ["d", "b", "e"], "by name, numerically");
    }

    #[test]
    fn renewals_leave_the_version_and_expiry_needs_the_claim_unchanged() {
        let c = range(2);
        let mut p = ClaimPoolState::default();
        let lease = Some(LeaseRecord::new(Duration::from_millis(300), 7));
        let a = claimed(
            p.claim(
                "p",
                &Asked {
                    lease,
                    ..request("a", &c)
                },
            )
            .unwrap(),
        );
        let r = p.renew("p", "a", "1", 8).unwrap();
        assert_eq!(r.value.lease.as_ref().unwrap().renewals, 1);
        assert_eq!((r.fencing_token.0, p.version), (1, 1));
        assert_eq!(
            p.renew("p", "a", "2", 9).unwrap_err().kind(),
            ErrorKind::LeaseLost
        );
        assert_eq!(
            p.renew("p", "b", "1", 9).unwrap_err().kind(),
            ErrorKind::LeaseLost
        );
        claimed(p.claim("p", &request("perm", &c)).unwrap());
        assert_eq!(
            p.renew("p", "perm", "2", 9).unwrap_err().kind(),
            ErrorKind::LeaseLost
        );
        // Watched before the renewal: the claim changed since, so it stays.
        let mut watch = crate::lease::expiry::LeaseWatch::new();
        let t0 = tokio::time::Instant::now();
        watch.observe(std::slice::from_ref(&a.value), a.fencing_token, t0);
        let old = watch.observe(
            std::slice::from_ref(&a.value),
            a.fencing_token,
            t0 + Duration::from_millis(300),
        );
        assert_eq!(p.expire("p", &old[0]).unwrap(), None);
        assert_eq!(p.version, 2);
        let now = p.claim_of("p", "a").unwrap().value;
        let mut watch = crate::lease::expiry::LeaseWatch::new();
        watch.observe(std::slice::from_ref(&now), p.token(), t0);
        let seen = watch.observe(
            std::slice::from_ref(&now),
            p.token(),
            t0 + Duration::from_millis(300),
        );
        assert_eq!(p.expire("p", &seen[0]).unwrap(), Some(FencingToken(3)));
        assert!(p.held_by("a").is_none());
        assert_eq!(p.expire("p", &seen[0]).unwrap(), None, "gone already");
    }

    /// The re-join rule (`lease/again.rs`) as a pool applies it, the
    /// candidates aside; and a holder releases its own claim only.
    #[test]
    fn a_claim_of_an_owner_that_holds_one_follows_the_re_join_rule() {
        use crate::lease::again::asked;
        let (h1, h2) = (HolderId::new(1), HolderId::new(2));
        let c = range(5);
        let zk = Tags::from([("role".to_string(), "zk".to_string())]);
        let ask = |owner, tags, lease: Option<u64>, holder| Asked {
            lease: asked(lease, holder),
            tags,
            ..request(owner, &c)
        };
        let mut p = ClaimPoolState::default();
        let held = claimed(p.claim("p", &ask("held", &zk, Some(500), h1)).unwrap());
        assert_eq!(held.value.tags, zk, "stored with the claim");
        let shell = claimed(
            p.claim("p", &ask("shell", NO_TAGS, Some(500), None))
                .unwrap(),
        );
        let perm = claimed(p.claim("p", &ask("perm", &zk, None, None)).unwrap());
        let before = p.clone();
        let cases = [
            (ask("held", NO_TAGS, Some(900), h1), Ok(&held)),
            (ask("held", &zk, Some(500), h2), Err(ErrorKind::Held)),
            (ask("held", &zk, Some(500), None), Ok(&held)),
            (
                ask("held", NO_TAGS, Some(500), None),
                Err(ErrorKind::Mismatch),
            ),
            (ask("shell", NO_TAGS, Some(500), h2), Err(ErrorKind::Held)),
            (ask("shell", NO_TAGS, Some(500), None), Ok(&shell)),
            (ask("shell", NO_TAGS, None, None), Err(ErrorKind::Mismatch)),
            (ask("perm", &zk, Some(500), h2), Err(ErrorKind::Mismatch)),
            (ask("perm", &zk, None, None), Ok(&perm)),
            (
                Asked {
                    candidates: &range(9),
                    ..ask("perm", &zk, None, None)
                },
                Ok(&perm),
            ),
        ];
        for (i, (asked, expected)) in cases.iter().enumerate() {
            match (p.claim("p", asked), expected) {
                (Ok(ClaimOutcome::Existing(got)), Ok(claim)) => {
                    assert_eq!(got.value, claim.value, "case {i}");
                    assert_eq!(got.fencing_token, FencingToken(3), "the current token");
                }
                (Err(e), Err(kind)) => assert_eq!(e.kind(), *kind, "case {i}: {e}"),
                (got, _) => panic!("case {i}: {got:?}"),
            }
            assert_eq!(p, before, "nothing written");
        }
        let e = p
            .claim("p", &ask("shell", NO_TAGS, Some(600), None))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`shell` holds `2` in claim pool `p` with a lease of 500ms, and this claim asks for \
             a lease of 600ms: release it first to claim anew; nothing was written"
        );
        // A holder releases its own claim only: the one made at its token.
        let e = p.release("p", "held", Some(shell.value.token)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "`held` holds no claim made at token 2 in claim pool `p`: it expired and was \
             removed, or was released"
        );
        assert_eq!(p, before, "nothing written");
        let token = Some(held.value.token);
        assert_eq!(
            p.release("p", "held", token).unwrap().fencing_token,
            FencingToken(4)
        );
    }

    #[test]
    fn serving_claims_for_the_waiters_with_the_same_candidates() {
        let c = range(4);
        let other = Candidates::names(["x", "y"]).unwrap();
        let mut p = ClaimPoolState::default();
        claimed(p.claim("p", &request("held", &c)).unwrap());
        let waiter = |c: &Candidates, ms| Waiter {
            candidates: c.digest(),
            lease_ms: ms,
            tags: Tags::new(),
            holder: None,
            members: None,
        };
        let tagged = Tags::from([("addr".to_string(), "10.0.0.5".to_string())]);
        let h = HolderId::new(77);
        p.wait(
            "w-b",
            Waiter {
                tags: tagged.clone(),
                holder: h,
                ..waiter(&c, Some(500))
            },
        );
        p.wait("w-a", waiter(&c, None));
        p.wait("held", waiter(&c, None));
        p.wait("w-other", waiter(&other, None));
        p.wait("w-c", waiter(&c, None));
        p.wait("me", waiter(&c, None));
        let served = p.serve("p", &request("me", &c), 10, 42).unwrap();
        assert_eq!(
            (served.mine.value.name.as_str(), served.mine.fencing_token.0),
            ("2", 2)
        );
        // In owner order, while candidates last: w-a and w-b get 3 and 4;
        // w-c finds nothing left and waits on; w-other claims from another list.
        assert_eq!(
            served.others,
            [
                ("w-a".to_string(), "3".to_string()),
                ("w-b".into(), "4".into())
            ]
        );
        assert_eq!(served.dropped, ["held"]);
        assert_eq!(p.version, 4, "one version per claim");
        let b = p.claim_of("p", "w-b").unwrap().value;
        assert_eq!(b.token, FencingToken(4));
        assert_eq!(
            b.lease.as_ref().unwrap().duration,
            Duration::from_millis(500)
        );
        // Made as the waiter asked: its tags and its holder.
        assert_eq!((b.tags, b.lease.unwrap().holder), (tagged, h));
        let left: Vec<_> = p.waiting().keys().cloned().collect();
        assert_eq!(left, ["w-c", "w-other"]);
        // The caller itself cannot be served: nothing changes.
        let before = p.clone();
        let e = p.serve("p", &request("w-c", &c), 10, 42).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Exhausted);
        assert_eq!(p, before);
    }

    #[test]
    fn serving_stops_at_the_limit() {
        let c = range(10);
        let mut p = ClaimPoolState::default();
        for w in ["a", "b", "c", "d"] {
            p.wait(
                w,
                Waiter {
                    candidates: c.digest(),
                    lease_ms: None,
                    tags: Tags::new(),
                    holder: None,
                    members: None,
                },
            );
        }
        let served = p.serve("p", &request("me", &c), 2, 0).unwrap();
        assert_eq!(served.others.len(), 2);
        assert_eq!(p.waiting().len(), 2);
        assert_eq!(p.version, 3);
    }

    #[test]
    fn a_full_pool_is_exhausted_whatever_the_candidates() {
        let mut p = ClaimPoolState::default();
        let c = Candidates::range(1..=MAX_CANDIDATES as u64).unwrap();
        for i in 0..MAX_CANDIDATES {
            claimed(p.claim("p", &request(&format!("o{i}"), &c)).unwrap());
        }
        let other = Candidates::names(["elsewhere"]).unwrap();
        let e = p.claim("p", &request("late", &other)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Exhausted);
        assert!(e.to_string().contains("the most one pool may hold"), "{e}");
    }

    fn member<'a>(owner: &'a str, candidates: &'a Candidates, n: usize) -> Asked<'a> {
        Asked {
            members: Some(n),
            ..request(owner, candidates)
        }
    }

    #[test]
    fn a_roster_is_sealed_by_its_first_claim_and_refuses_others_while_full() {
        let c = range(255);
        let mut p = ClaimPoolState::default();
        let a = claimed(p.claim("p", &member("a", &c, 3)).unwrap());
        assert_eq!((a.value.name.as_str(), p.members()), ("1", Some(3)));
        // Another roster size: refused, whoever asks, nothing written.
        let before = p.clone();
        for owner in ["a", "b"] {
            let e = p.claim("p", &member(owner, &c, 4)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert_eq!(
                e.to_string(),
                "claim pool `p` is sealed at a roster of 3 members, and this asks for 4; \
                 nothing was written"
            );
            assert_eq!(p, before);
        }
        // The same size again: the member's claim, nothing written.
        match p.claim("p", &member("a", &c, 3)).unwrap() {
            ClaimOutcome::Existing(again) => assert_eq!(again.value, a.value),
            other => panic!("{other:?}"),
        }
        // A claim without a roster size counts towards it.
        claimed(p.claim("p", &request("plain", &c)).unwrap());
        claimed(p.claim("p", &member("c", &c, 3)).unwrap());
        let full = p.clone();
        for late in [member("d", &c, 3), request("e", &c)] {
            let e = p.claim("p", &late).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Exhausted, "{e}");
            assert!(e.to_string().contains("whole roster of 3 members"), "{e}");
            assert_eq!(p, full, "nothing changes");
        }
        // A member's name, released, goes to the next claimer.
        p.release("p", "plain", None).unwrap();
        let d = claimed(p.claim("p", &member("d", &c, 3)).unwrap());
        assert_eq!((d.value.name.as_str(), d.fencing_token.0), ("2", 5));
        let roster = p.roster();
        assert_eq!(roster.value.size, Some(3));
        let names: Vec<_> = roster
            .value
            .claims
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["1", "2", "3"]);
        assert!(roster_complete("p", &roster.value, 3).unwrap());
        assert_eq!(
            roster_complete("p", &roster.value, 2).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        // Released by all, the pool keeps its size.
        for owner in ["a", "c", "d"] {
            p.release("p", owner, None).unwrap();
        }
        assert_eq!(p.members(), Some(3));
        assert!(!roster_complete("p", &p.roster().value, 3).unwrap());
    }

    #[test]
    fn a_roster_size_is_checked_before_anything_is_written() {
        let c = range(5);
        let mut p = ClaimPoolState::default();
        for (asked, why) in [
            (member("a", &c, 0), "1 to 256 members, not 0"),
            (
                member("a", &c, 6),
                "needs at least 6 candidates, and this claim names 5",
            ),
        ] {
            let e = p.claim("p", &asked).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
        assert_eq!(p, ClaimPoolState::default());
        // Not recorded for an owner with a claim made without a size, nor
        // on a pool that holds as many claims as the roster would.
        claimed(p.claim("p", &request("a", &c)).unwrap());
        claimed(p.claim("p", &request("b", &c)).unwrap());
        let before = p.clone();
        let e = p.claim("p", &member("a", &c, 3)).unwrap_err();
        assert!(
            e.to_string().contains("claimed without a roster size"),
            "{e}"
        );
        let e = p.claim("p", &member("c", &c, 2)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains("too many to seal a roster of 2"),
            "{e}"
        );
        assert_eq!(p, before);
        assert!(roster_complete("p", &p.roster().value, 2).unwrap());
        assert!(roster_complete("p", &p.roster().value, 1).is_err());
        // Room left: the third claim seals the pool at 3 and completes it.
        claimed(p.claim("p", &member("c", &c, 3)).unwrap());
        assert_eq!(p.members(), Some(3));
        assert!(roster_complete("p", &p.roster().value, 3).unwrap());
    }

    #[test]
    fn waiters_are_served_by_the_roster_rules() {
        let c = range(9);
        let mut p = ClaimPoolState::default();
        for w in ["w1", "w2", "w3"] {
            p.wait(
                w,
                Waiter {
                    candidates: c.digest(),
                    lease_ms: None,
                    tags: Tags::new(),
                    holder: None,
                    members: Some(3),
                },
            );
        }
        let served = p.serve("p", &member("me", &c, 3), 10, 0).unwrap();
        assert_eq!(served.others.len(), 2, "the roster is full after two more");
        assert_eq!(p.members(), Some(3));
        assert_eq!(p.waiting().keys().collect::<Vec<_>>(), ["w3"]);
    }
}
