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
//! [`wait_for_position`]: crate::wait_for_position

use std::time::Duration;

use tokio::time::Instant;

use crate::claim::{Claim, ClaimPool, ClaimRequest, Claimed};

use crate::claim::candidates::{Candidates, MAX_CANDIDATES};
use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::LeaseWatch;
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
        let all = pool.claims().await?;
        let read_at = Instant::now();
        let ours: Vec<Claim> = all
            .value
            .iter()
            .filter(|c| candidates.index_of(&c.name).is_some())
            .cloned()
            .collect();
        // A candidate released since: claim it at once.
        try_claim = ours.len() < candidates.len() && all.value.len() < MAX_CANDIDATES;
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
            return Err(waited(
                Error::exhausted(pool.id(), candidates.len()),
                now.duration_since(started),
            ));
        }
        let poll = options.poll_among(ours.iter().filter_map(|c| c.lease.as_ref()));
        let look = WaitOptions::next_look(poll, now, watch.next_expiry(), deadline);
        pool.wait_for_change(all.fencing_token, look, poll).await?;
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
