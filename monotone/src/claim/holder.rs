//! [`ClaimHolder`]: a leased claim that renews itself in the background and
//! says at once when it can no longer be counted on.
//!
//! Built as [`LeaseHolder`](crate::LeaseHolder) is: the holder makes a
//! random [`HolderId`] and claims with it (counting its lease from when a
//! request that preceded the claim was sent, see [`Claimed::written_at`]);
//! if another holder holds the owner's claim, it waits its turn (see
//! `lease/turn.rs`), so it never shares a name with another holder. Then it
//! hands the claim to the one holder of leased records, [`Held`] (in
//! `lease/held.rs`, shared with tickets), which renews it and plays the
//! holder's part of the [`lease`](crate::lease) protocol: an owner that
//! stops using the name when told is done strictly before any observer may
//! remove the claim. What is particular to a claim is here: claiming, and
//! how a claim is renewed ([`ClaimPool::renew`]; a renewal that finds the
//! name claimed anew, by another holder, loses the lease) and given back
//! ([`ClaimPool::release_if`]: the claim made at its token only).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::claim::{Claim, ClaimPool, ClaimRequest, Claimed};

use crate::claim::candidates::Candidates;
use crate::claim::wait::wait_for_claim_as;
use crate::error::{Error, ErrorKind, Result};
use crate::lease::alive::KeepAlive;
use crate::lease::expiry::Expired;
use crate::lease::held::{check_lease, Held, Hold};
use crate::lease::holder_id::HolderId;
use crate::lease::keeper::{HolderOptions, LeaseStatus, Renew};
use crate::lease::turn::{wait_turn, Turn};
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::wait::WaitOptions;

/// A leased claim, renewed in the background while this value lives.
///
/// Get one with [`ClaimHolder::claim`] (or [`claim_waiting`](Self::claim_waiting),
/// which waits for a candidate to free up and for another holder of the
/// owner's claim to let go; [`claim_as`](Self::claim_as) for tags). Two
/// holders never hold one claim: each has its own [`HolderId`], stored with
/// the claim's lease. Watch [`lost`](Self::lost) (or
/// [`status`](Self::status)) and stop using the name when it says so; give
/// the name back with [`release`](Self::release). Dropping the holder stops
/// the renewals and releases the claim in the background, on a best effort
/// basis (the release needs a running Tokio runtime; if it cannot run, the
/// claim expires after one observed lease instead).
pub struct ClaimHolder {
    claim: Fenced<Claim>,
    added: bool,
    held: Held<HeldClaim>,
}

/// One claim, as its holder renews and releases it.
struct HeldClaim {
    pool: Arc<dyn ClaimPool>,
    owner: String,
    name: String,
    /// The pool's token when the claim was made: which claim of the name.
    token: FencingToken,
    holder: HolderId,
    /// The kernel's sign of life of the holder, where the store keeps one:
    /// dropped with the record, after its release.
    alive: Option<KeepAlive>,
}

impl HeldClaim {
    /// The lease is lost if the name's claim is not the one this holder
    /// made: it expired, and another holder of the owner claimed the same
    /// name since.
    fn check(&self, renewed: &Claim) -> Result<()> {
        if renewed.token == self.token {
            return Ok(());
        }
        Err(crate::claim::state::claim_lease_gone(
            self.pool.id(),
            &self.owner,
            &self.name,
        ))
    }
}

#[async_trait]
impl Renew for HeldClaim {
    type Item = Claim;

    async fn renew(&self) -> Result<Fenced<Vec<Claim>>> {
        let (renewed, all) = self.pool.renew_and_read(&self.owner, &self.name).await?;
        self.check(&renewed.value)?;
        Ok(all)
    }

    fn is_own(&self, claim: &Claim) -> bool {
        claim.name == self.name && claim.owner == self.owner && claim.token == self.token
    }

    async fn expire(&self, expired: &Expired<Claim>) -> Result<Option<FencingToken>> {
        self.pool.expire(expired).await
    }

    fn what(&self) -> String {
        format!(
            "`{}`'s claim of `{}` in claim pool `{}`",
            self.owner,
            self.name,
            self.pool.id()
        )
    }
}

#[async_trait]
impl Hold for HeldClaim {
    /// Only this holder's claim: if it expired and another holder of the
    /// owner claimed since, that claim stays.
    async fn release(&self) -> Result<FencingToken> {
        let released = self.pool.release_if(&self.owner, Some(self.token));
        Ok(released.await?.fencing_token)
    }
}

/// A holder's claim, as it waits its turn (see `lease/turn.rs`): the claim
/// (waiting for a free candidate up to its own timeout), and the owner's
/// claim when another holder's is in the way.
struct Claiming<'a> {
    pool: &'a dyn ClaimPool,
    owner: &'a str,
    request: ClaimRequest,
    free: &'a WaitOptions,
}

#[async_trait]
impl Turn for Claiming<'_> {
    type Item = Claim;
    type Made = Claimed;

    /// Waits for a free candidate up to its own timeout, and no longer
    /// than the turn's `deadline`.
    async fn make(&self, deadline: Option<Instant>) -> Result<Claimed> {
        let mut free = self.free.clone();
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            free.timeout = Some(free.timeout.map_or(left, |t| t.min(left)));
        }
        wait_for_claim_as(self.pool, self.owner, &self.request, &free).await
    }

    async fn in_the_way(&self) -> Result<Option<Fenced<Claim>>> {
        match self.pool.claim_of(self.owner).await {
            Ok(claim) => Ok(Some(claim)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn expire(&self, expired: &Expired<Claim>) -> Result<Option<FencingToken>> {
        self.pool.expire(expired).await
    }

    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        self.pool.wait_for_change(seen, until, poll).await
    }

    fn pushes(&self) -> bool {
        self.pool.pushes()
    }

    fn what(&self) -> String {
        format!(
            "the claim of `{}` in claim pool `{}`",
            self.owner,
            self.pool.id()
        )
    }
}

impl fmt::Debug for ClaimHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimHolder")
            .field("pool", &self.pool().id())
            .field("claim", &self.claim.value)
            .field("status", &self.held.status())
            .finish_non_exhaustive()
    }
}

impl ClaimHolder {
    /// Claim the first free name of `candidates` in `pool` for `owner` with
    /// a lease of `lease`, and start renewing it; without waiting: fails
    /// with [`ErrorKind::Exhausted`](crate::ErrorKind::Exhausted) at once if
    /// every candidate is taken, and with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if another holder
    /// holds the owner's claim. See [`claim_as`](Self::claim_as).
    pub async fn claim(
        pool: Arc<dyn ClaimPool>,
        owner: &str,
        candidates: &Candidates,
        lease: Duration,
        options: HolderOptions,
    ) -> Result<ClaimHolder> {
        let once = WaitOptions::new().with_timeout(Some(Duration::ZERO));
        Self::claim_waiting(pool, owner, candidates, lease, options, &once).await
    }

    /// As [`claim`](Self::claim), but waiting up to `wait`'s timeout, both
    /// while every candidate is taken (as [`wait_for_claim`](crate::wait_for_claim)
    /// does) and while another holder holds the owner's claim.
    pub async fn claim_waiting(
        pool: Arc<dyn ClaimPool>,
        owner: &str,
        candidates: &Candidates,
        lease: Duration,
        options: HolderOptions,
        wait: &WaitOptions,
    ) -> Result<ClaimHolder> {
        let request = ClaimRequest::new(candidates.clone()).with_lease(Some(lease));
        Self::claim_as(pool, owner, &request, options, wait, wait).await
    }

    /// Claim as `request` asks (its candidates, tags and lease, which it
    /// must have) for `owner`, as a holder of its own (a new random
    /// [`HolderId`], in place of the request's), and start renewing it.
    ///
    /// While another holder, or a claim without a holder, holds a leased
    /// claim of `owner`, wait for it to go, up to `turn`'s timeout
    /// ([`ErrorKind::Timeout`](crate::ErrorKind::Timeout) after it): until
    /// it is released, or until this process has watched it go unrenewed for
    /// a full lease and removed it (the [`lease`](crate::lease) protocol).
    /// While every candidate is taken, wait for one to free up as
    /// [`wait_for_claim`](crate::wait_for_claim) does, up to `free`'s
    /// timeout ([`ErrorKind::Exhausted`](crate::ErrorKind::Exhausted) after
    /// it). This holder never holds the owner's claim at the same time as
    /// another. A permanent claim of `owner` never expires: that is an
    /// [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch) error at once
    /// (release it first); a request without a lease, a lease out of range
    /// and options that leave no time to renew are
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) errors.
    ///
    /// The lease is counted from when the request that made the claim was
    /// sent ([`Claimed::written_at`]); a claim made long enough ago (it
    /// waited to be served), or found (this holder's own request sent
    /// again), is renewed once first.
    pub async fn claim_as(
        pool: Arc<dyn ClaimPool>,
        owner: &str,
        request: &ClaimRequest,
        options: HolderOptions,
        turn: &WaitOptions,
        free: &WaitOptions,
    ) -> Result<ClaimHolder> {
        let Some(lease) = request.lease else {
            return Err(Error::invalid(format!(
                "a claim holder of `{owner}` in claim pool `{}` needs a lease",
                pool.id()
            )));
        };
        check_lease(lease, &options)?;
        let holder = HolderId::random();
        // Before the claim is made: a claim without its sign of life would
        // be taken for a dead holder's.
        let alive = pool.keep_alive(holder)?;
        let claiming = Claiming {
            pool: &*pool,
            owner,
            request: request.clone().held_by(holder),
            free,
        };
        let Claimed {
            claim,
            added,
            written_at,
        } = wait_turn(&claiming, turn).await?;
        let record = HeldClaim {
            pool: Arc::clone(&pool),
            owner: claim.value.owner.clone(),
            name: claim.value.name.clone(),
            token: claim.value.token,
            holder,
            alive,
        };
        let fresh = written_at.filter(|at| added && at.elapsed() < options.interval(lease));
        let (claim, since) = match fresh {
            Some(at) => (claim, at),
            // Found (this holder's request sent again), or made long enough
            // ago (it waited to be served) that its lease may be mostly
            // spent: renew once first.
            None => {
                let sent = Instant::now();
                let renewed = pool.renew(owner, &claim.value.name).await?;
                record.check(&renewed.value)?;
                (Fenced::new(renewed.value, claim.fencing_token), sent)
            }
        };
        let held = Held::start(record, lease, &options, since);
        Ok(ClaimHolder { claim, added, held })
    }

    /// This holder's id, stored with its claim's lease.
    pub fn holder(&self) -> HolderId {
        self.held.record().holder
    }

    /// The kernel's sign of life of this holder, where the store keeps one
    /// (see [`KeepAlive`]).
    pub fn keep_alive(&self) -> Option<&KeepAlive> {
        self.held.record().alive.as_ref()
    }

    /// The claim and the pool's token as claimed.
    pub fn claimed(&self) -> &Fenced<Claim> {
        &self.claim
    }

    /// Whether this holder's claim was made by its request; `false` if the
    /// request, sent again after a lost answer, found it made (see
    /// [`Claimed::added`]).
    pub fn added(&self) -> bool {
        self.added
    }

    /// The name held.
    pub fn name(&self) -> &str {
        &self.claim.value.name
    }

    /// Who holds it.
    pub fn owner(&self) -> &str {
        &self.claim.value.owner
    }

    /// The lease's duration, as stored.
    pub fn lease(&self) -> Duration {
        self.held.lease()
    }

    /// The pool the claim is in.
    pub fn pool(&self) -> &Arc<dyn ClaimPool> {
        &self.held.record().pool
    }

    /// The current status. Checks the deadline itself, so it is right even
    /// if the renewing task has not run for a while.
    pub fn status(&self) -> LeaseStatus {
        self.held.status()
    }

    /// A receiver that sees every change of status, to select on.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.held.watch()
    }

    /// Whether the lease may be counted on now.
    pub fn is_held(&self) -> bool {
        self.held.is_held()
    }

    /// Complete when the lease is lost, with the reason as an
    /// [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) error.
    /// Cancel-safe: select on it.
    pub async fn lost(&self) -> Error {
        self.held.lost().await
    }

    /// Stop renewing and release the claim. Returns the token of the
    /// release, or `None` if the claim was gone already (it expired and was
    /// removed).
    pub async fn release(mut self) -> Result<Option<FencingToken>> {
        self.held.release().await
    }
}

impl Drop for ClaimHolder {
    /// Stops the renewals and releases the claim in the background (see
    /// [`ClaimHolder`]), as the one holder core does for every leased record.
    fn drop(&mut self) {
        self.held.let_go();
    }
}
