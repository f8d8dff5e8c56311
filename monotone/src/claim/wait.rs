//! Claiming a name, and while every candidate is taken, waiting for one to
//! free up: removing the leased claims whose holders stopped renewing them.
//!
//! The waiter is an observer in the sense of the [`lease`](crate::lease)
//! protocol, as a queue's waiter is (see [`wait_for_position`]): it reads
//! the pool, feeds every read to a [`LeaseWatch`], and removes (with
//! [`ClaimPool::expire`]) only the claims among its candidates that the
//! watch found unrenewed for a full lease on this process's own clock. It
//! claims again as soon as a read shows a candidate free (released by its
//! holder) or it removed an expired claim.
//!
//! Between reads it waits on the pool's token with
//! [`ClaimPool::wait_for_change`], as a queue's waiter does (see
//! [`WaitOptions`]): it reads the pool again when a claim is made,
//! released or expires (pushed by the store where it can, found by polling
//! the token where it cannot), while it watches leased claims at its next
//! look at them (a quarter of the shortest lease among the candidates'
//! claims, within the poll bounds), when a watched claim could expire, and
//! at its timeout. Each read may be followed by a claim when a candidate
//! looks free, and one write per expired claim removed. A dead holder's
//! claim is removed at most one lease plus one poll interval after the
//! waiter first read it.
//!
//! # Waiting for a roster
//!
//! [`wait_for_roster`] waits until a pool holds the whole roster it is
//! sealed at (see the [`ClaimPool`] contract's *Rosters*): it reads the
//! pool ([`ClaimPool::roster`]), and while the roster is not complete waits
//! with [`ClaimPool::wait_for_change`] for the pool's token to change
//! before it reads again (pushed by the store where it can; where it
//! cannot, the token is read every [`WaitOptions::max_poll`]). No lease is
//! watched, so a read finds nothing that a change of the token would not
//! show: on a pushing store it reads the pool once per change, on a
//! polling one it reads the token once per poll and the pool once per
//! change. It removes no claim: the claimers do that (above).
//!
//! [`wait_for_position`]: crate::wait_for_position

use std::time::Duration;

use tokio::time::Instant;

use crate::claim::{Claim, ClaimPool, ClaimRequest, Claimed};

use crate::claim::candidates::{Candidates, MAX_CANDIDATES};
use crate::claim::state::{roster_complete, roster_full};
use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::LeaseWatch;
use crate::queue::fencing::Fenced;
use crate::queue::wait::WaitOptions;

/// Claim the first free name of `candidates` for `owner` (with a lease of
/// `lease`, or for good), as [`ClaimPool::claim_with`] does; while every
/// candidate is taken, wait for one to free up, removing expired claims as
/// the [`lease`](crate::lease) protocol allows, until
/// [`WaitOptions::timeout`].
///
/// With a timeout of zero it claims once and does not wait. When the
/// timeout passes with every candidate still taken, it fails with
/// [`ErrorKind::Exhausted`], as a claim does; with any other error of the
/// store at once.
pub async fn wait_for_claim(
    pool: &dyn ClaimPool,
    owner: &str,
    candidates: &Candidates,
    lease: Option<Duration>,
    options: &WaitOptions,
) -> Result<Claimed> {
    let request = ClaimRequest::new(candidates.clone()).with_lease(lease);
    wait_for_claim_as(pool, owner, &request, options).await
}

/// [`wait_for_claim`] of a claim as `request` asks ([`ClaimPool::claim_as`]:
/// its candidates, tags, lease and holder).
pub async fn wait_for_claim_as(
    pool: &dyn ClaimPool,
    owner: &str,
    request: &ClaimRequest,
    options: &WaitOptions,
) -> Result<Claimed> {
    let candidates = &request.candidates;
    let started = Instant::now();
    let deadline = options.timeout.map(|t| started + t);
    let mut watch = LeaseWatch::<Claim>::new();
    let mut try_claim = true;
    let mut announced = false;
    loop {
        if try_claim {
            match pool.claim_as(owner, request).await {
                Err(e) if e.kind() == ErrorKind::Exhausted => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Err(waited(e, now.duration_since(started)));
                    }
                }
                other => return other,
            }
        }
        if !announced {
            announced = true;
            tracing::debug!(
                pool = pool.id(),
                owner,
                changes = if pool.pushes() { "pushed" } else { "polled" },
                "every candidate is taken: waiting for one to free up"
            );
        }
        let all = pool.roster().await?;
        let read_at = Instant::now();
        let ours: Vec<Claim> = all
            .value
            .claims
            .iter()
            .filter(|c| candidates.index_of(&c.name).is_some())
            .cloned()
            .collect();
        // A candidate released since, in a pool with room: claim it at once.
        try_claim = ours.len() < candidates.len()
            && all.value.claims.len() < MAX_CANDIDATES
            && !all.value.is_full();
        for expired in watch.observe(&ours, all.fencing_token, read_at) {
            if let Some(token) = pool.expire(&expired).await? {
                tracing::debug!(
                    pool = pool.id(),
                    expired = %expired.item().name,
                    owner = %expired.item().owner,
                    %token,
                    "removed a claim whose lease expired"
                );
                try_claim = true;
            }
        }
        if try_claim {
            continue;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            let e = match all.value.size {
                Some(n) if all.value.is_full() => roster_full(pool.id(), n),
                _ => Error::exhausted(pool.id(), candidates.len()),
            };
            return Err(waited(e, now.duration_since(started)));
        }
        let poll = options.poll_among(ours.iter().filter_map(|c| c.lease.as_ref()));
        let look = WaitOptions::next_look(poll, now, watch.next_expiry(), deadline);
        pool.wait_for_change(all.fencing_token, look, poll).await?;
    }
}

/// Wait until pool `pool` holds a complete roster of `members` (see the
/// [`ClaimPool`] contract's *Rosters*), and return it: the claims in the
/// listing order, with the pool's token when it was read. With `owner`, the
/// roster must hold `owner`'s claim: the waiter is one of the members.
///
/// Fails with [`ErrorKind::InvalidInput`] if the pool is sealed at another
/// roster size (or, never sealed, holds more claims than `members`),
/// [`ErrorKind::NotFound`] if `owner`'s claim is gone (released, expired),
/// [`ErrorKind::Timeout`] when [`WaitOptions::timeout`] passes first
/// (`Some(Duration::ZERO)`: looks once), and with the store's error if a
/// read fails. It writes nothing: a claim it waits for stays.
pub async fn wait_for_roster(
    pool: &dyn ClaimPool,
    members: usize,
    owner: Option<&str>,
    options: &WaitOptions,
) -> Result<Fenced<Vec<Claim>>> {
    let started = Instant::now();
    let deadline = options.timeout.map(|t| started + t);
    loop {
        let read = pool.roster().await?;
        let roster = &read.value;
        if let Some(owner) = owner.filter(|o| !roster.claims.iter().any(|c| c.owner == *o)) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "`{owner}` holds no claim in claim pool `{}` any more (released, or expired) \
                     while it waited for the roster of {members}",
                    pool.id()
                ),
            ));
        }
        if roster_complete(pool.id(), roster, members)? {
            return Ok(Fenced::new(read.value.claims, read.fencing_token));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            let who = owner.map_or(String::new(), |o| format!("; `{o}`'s claim stays"));
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "claim pool `{}` holds {} of a roster of {members} after waiting {:.1}s{who}",
                    pool.id(),
                    roster.claims.len(),
                    now.duration_since(started).as_secs_f64()
                ),
            ));
        }
        let look = WaitOptions::next_look(options.max_poll, now, None, deadline);
        pool.wait_for_change(read.fencing_token, look, options.max_poll)
            .await?;
    }
}

/// `e`, saying how long the claimer waited, if it did.
fn waited(e: Error, waited: Duration) -> Error {
    if waited < Duration::from_millis(100) {
        return e;
    }
    Error::new(
        e.kind(),
        format!(
            "{} (after waiting {:.1}s for a candidate to free up)",
            e.message(),
            waited.as_secs_f64()
        ),
    )
}
