//! [`ClaimHolder`]: a leased claim that renews itself in the background and
//! says at once when it can no longer be counted on.
//!
//! Built as [`LeaseHolder`](crate::LeaseHolder) is: the holder claims
//! (counting its lease from when a request that preceded the claim was
//! sent, see [`Claimed::written_at`]) and hands the claim to the one holder
//! of leased records, [`Held`] (in `lease/held.rs`, shared with tickets),
//! which renews it and plays the holder's part of the
//! [`lease`](crate::lease) protocol: an owner that stops using the name when
//! told is done strictly before any observer may remove the claim. What is
//! particular to a claim is here: claiming, and how a claim is renewed
//! ([`ClaimPool::renew`]) and given back ([`ClaimPool::release`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::claim::{Claim, ClaimPool, Claimed};

use crate::claim::candidates::Candidates;
use crate::claim::wait::wait_for_claim;
use crate::error::{Error, Result};
use crate::lease::held::{check_lease, Held, Hold};
use crate::lease::keeper::{HolderOptions, LeaseStatus, Renew};
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::wait::WaitOptions;

/// A leased claim, renewed in the background while this value lives.
///
/// Get one with [`ClaimHolder::claim`] (or [`claim_waiting`](Self::claim_waiting),
/// which waits for a candidate to free up). Watch [`lost`](Self::lost) (or
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
}

#[async_trait]
impl Renew for HeldClaim {
    async fn renew(&self) -> Result<()> {
        self.pool.renew(&self.owner, &self.name).await.map(|_| ())
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
    async fn release(&self) -> Result<FencingToken> {
        Ok(self.pool.release(&self.owner).await?.fencing_token)
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
    /// a lease of `lease`, and start renewing it; fails with
    /// [`ErrorKind::Exhausted`](crate::ErrorKind::Exhausted) at once if
    /// every candidate is taken.
    ///
    /// The lease is counted from when the request that made the claim was
    /// sent ([`Claimed::written_at`]). If the owner holds a leased claim
    /// already, that claim is renewed once first (its last renewal may be
    /// old) and then held; a permanent claim cannot be held and is an
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error, as
    /// are a lease out of range and options that leave no time to renew.
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

    /// As [`claim`](Self::claim), but while every candidate is taken, wait
    /// for one to free up as [`wait_for_claim`] does, up to `wait`'s
    /// timeout.
    pub async fn claim_waiting(
        pool: Arc<dyn ClaimPool>,
        owner: &str,
        candidates: &Candidates,
        lease: Duration,
        options: HolderOptions,
        wait: &WaitOptions,
    ) -> Result<ClaimHolder> {
        check_lease(lease, &options)?;
        let claimed = wait_for_claim(&*pool, owner, candidates, Some(lease), wait).await?;
        let Claimed {
            claim,
            added,
            written_at,
        } = claimed;
        let Some(stored) = claim.value.lease.as_ref().map(|l| l.duration) else {
            return Err(Error::invalid(format!(
                "`{owner}` holds a permanent claim of `{}` in claim pool `{}`; \
                 release it before claiming with a lease",
                claim.value.name,
                pool.id()
            )));
        };
        // The lease actually stored: a claim made before keeps its own.
        options.check(stored)?;
        let fresh = written_at.filter(|at| added && at.elapsed() < options.interval(stored));
        let (claim, since) = match fresh {
            Some(at) => (claim, at),
            // Held already, or made long enough ago (it waited to be served)
            // that its lease may be mostly spent: renew once first.
            None => {
                let sent = Instant::now();
                let renewed = pool.renew(owner, &claim.value.name).await?;
                (Fenced::new(renewed.value, claim.fencing_token), sent)
            }
        };
        let record = HeldClaim {
            pool,
            owner: claim.value.owner.clone(),
            name: claim.value.name.clone(),
        };
        let held = Held::start(record, stored, &options, since);
        Ok(ClaimHolder { claim, added, held })
    }

    /// The claim and the pool's token as claimed.
    pub fn claimed(&self) -> &Fenced<Claim> {
        &self.claim
    }

    /// Whether this holder's claim was made for it; `false` if the owner
    /// held the claim already (see [`Claimed::added`]).
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
