//! Keeping a lease alive: the holder's part of the [`lease`](crate::lease)
//! protocol, shared by every kind of leased record ([`LeaseHolder`]'s
//! ticket, a claim). The renewal loop (`keep`) is written once, here; the one
//! holder that runs it for a record is `Held`, in `held.rs`.
//!
//! A [`LeaseKeeper`] renews through a [`Renew`] every
//! [`renew_every`](HolderOptions::renew_every) (sooner after a failure) and
//! counts on the lease only until [`holder_validity`] (nine tenths of the
//! lease) after the send time of its last successful renewal, minus the
//! [`reserve`](HolderOptions::reserve) its owner asked for. Then, or as soon
//! as a renewal finds the record gone, the lease is lost for good: the
//! status turns to [`LeaseStatus::Lost`] and [`LeaseKeeper::lost`]
//! completes. A renewal request races the deadline, so a store that stops
//! answering cannot hold the loss back.
//!
//! [`LeaseHolder`]: crate::LeaseHolder

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout_at, Instant};
use tracing::debug;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::{Expired, LeaseWatch, Leased};
use crate::queue::fencing::{Fenced, FencingToken};

/// The holder counts on its lease for this fraction of it after a renewal
/// was sent (9/10): the other tenth is the safety margin described in the
/// [module docs](crate::lease).
pub const HOLDER_SHARE: (u32, u32) = (9, 10);

/// How long after sending its last successful renewal a holder may count on
/// a lease of `lease`: nine tenths of it.
pub fn holder_validity(lease: Duration) -> Duration {
    lease * HOLDER_SHARE.0 / HOLDER_SHARE.1
}

/// How a holder of a lease ([`LeaseHolder`](crate::LeaseHolder), a claim
/// holder) renews and when it gives up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HolderOptions {
    /// Time between renewals; `None`: a third of the lease.
    pub renew_every: Option<Duration>,
    /// Give up this much earlier than the holder's own deadline, to leave the
    /// owner time to stop acting (for example to kill a command and wait for
    /// it) before any observer may remove the ticket.
    pub reserve: Duration,
}

impl HolderOptions {
    /// Renew every third of the lease, reserve nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set [`renew_every`](Self::renew_every).
    pub fn with_renew_every(mut self, every: Duration) -> Self {
        self.renew_every = Some(every);
        self
    }

    /// Set [`reserve`](Self::reserve).
    pub fn with_reserve(mut self, reserve: Duration) -> Self {
        self.reserve = reserve;
        self
    }

    /// How long after a renewal was sent the lease may be counted on.
    pub(crate) fn validity(&self, lease: Duration) -> Duration {
        holder_validity(lease).saturating_sub(self.reserve)
    }

    pub(crate) fn interval(&self, lease: Duration) -> Duration {
        self.renew_every.unwrap_or(lease / 3)
    }

    /// At least one renewal must fit before the deadline, with room for a
    /// retry: renewals at most half the validity apart.
    pub(crate) fn check(&self, lease: Duration) -> Result<()> {
        let validity = self.validity(lease);
        let every = self.interval(lease);
        if every.is_zero() || every * 2 > validity {
            return Err(Error::invalid(format!(
                "a lease of {} ms cannot be renewed safely every {} ms while giving up {} ms \
                 early: renewals must be at most half of the {} ms it may be counted on apart",
                lease.as_millis(),
                every.as_millis(),
                (lease - validity).as_millis(),
                validity.as_millis()
            )));
        }
        Ok(())
    }
}

/// Whether a lease may be counted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Held, and may be counted on until `until` unless renewed before.
    Held {
        /// The holder's deadline, on this process's monotonic clock.
        until: Instant,
        /// Renewals that succeeded since the holder started.
        renewals: u64,
    },
    /// Lost for good; why, in one line.
    Lost(String),
}

/// One renewal of one leased record: a single write that changes no
/// fencing token, which also reads every record of its item (the queue's
/// tickets, the pool's claims), so that the holder reaps the dead among
/// them (see [`keep`]).
#[async_trait]
pub(crate) trait Renew: Send + Sync + 'static {
    /// The kind of record renewed: a [`Ticket`](crate::Ticket) or a
    /// [`Claim`](crate::Claim).
    type Item: Leased + Send + Sync + 'static;

    /// Renew once, and return every record of the item as the renewal left
    /// it, with the item's token. A temporary error is retried until the
    /// deadline; any other (the record is gone: [`ErrorKind::LeaseLost`])
    /// loses the lease at once.
    async fn renew(&self) -> Result<Fenced<Vec<Self::Item>>>;

    /// Whether `item` is the record this holder renews: never reaped by it.
    fn is_own(&self, item: &Self::Item) -> bool;

    /// Remove another holder's record that this holder watched go
    /// unrenewed for a full lease, if it is still as watched (the store's
    /// conditional expiry). The new token, or `None` if it changed.
    async fn expire(&self, expired: &Expired<Self::Item>) -> Result<Option<FencingToken>>;

    /// What is leased, for messages: "process `p` in queue `q`".
    fn what(&self) -> String;
}

/// The renewing task of one lease, and its status.
#[derive(Debug)]
pub(crate) struct LeaseKeeper {
    status: watch::Receiver<LeaseStatus>,
    task: JoinHandle<()>,
    what: String,
}

impl LeaseKeeper {
    /// Keep the lease of `lease` alive, counting from `since` (the send
    /// time of the write that created or last renewed it).
    pub fn start<R: Renew>(
        renew: Arc<R>,
        lease: Duration,
        options: &HolderOptions,
        since: Instant,
    ) -> Self {
        let validity = options.validity(lease);
        let (tx, rx) = watch::channel(LeaseStatus::Held {
            until: since + validity,
            renewals: 0,
        });
        let what = renew.what();
        let task = tokio::spawn(keep(renew, options.interval(lease), validity, since, tx));
        LeaseKeeper {
            status: rx,
            task,
            what,
        }
    }

    /// The current status. Checks the deadline itself, so it is right even
    /// if the renewing task has not run for a while.
    pub fn status(&self) -> LeaseStatus {
        match &*self.status.borrow() {
            LeaseStatus::Held { until, .. } if *until <= Instant::now() => {
                LeaseStatus::Lost(lost_by_deadline(&self.what))
            }
            status => status.clone(),
        }
    }

    /// A receiver that sees every change of status.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.status.clone()
    }

    /// Whether the lease may be counted on now.
    pub fn is_held(&self) -> bool {
        matches!(self.status(), LeaseStatus::Held { .. })
    }

    /// Complete when the lease is lost, with the reason as an
    /// [`ErrorKind::LeaseLost`] error. Cancel-safe.
    pub async fn lost(&self) -> Error {
        let mut rx = self.status.clone();
        loop {
            let deadline = match &*rx.borrow_and_update() {
                LeaseStatus::Lost(why) => return Error::new(ErrorKind::LeaseLost, why.clone()),
                LeaseStatus::Held { until, .. } => *until,
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Error::new(ErrorKind::LeaseLost, format!("{}: the lease was released", self.what));
                    }
                }
                // The task declares the loss at this very time; do not
                // depend on it being scheduled.
                () = sleep_until(deadline) => {
                    if let LeaseStatus::Lost(why) = self.status() {
                        return Error::new(ErrorKind::LeaseLost, why);
                    }
                }
            }
        }
    }

    /// Stop renewing.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lost_by_deadline(what: &str) -> String {
    format!("the lease of {what} can no longer be counted on: no renewal succeeded in time")
}

/// The renewing task: steps 2 and 3 of the protocol, and the living
/// reaping the dead: after each renewal, the records of others that it
/// read go to a [`LeaseWatch`] kept across renewals (step 4, the observer's
/// rule, on this process's clock), and those it finds unrenewed for a full
/// lease are expired (step 5). A reaping that fails costs the holder
/// nothing: its lease hangs on its renewals alone.
async fn keep<R: Renew>(
    target: Arc<R>,
    every: Duration,
    validity: Duration,
    since: Instant,
    status: watch::Sender<LeaseStatus>,
) {
    let what = target.what();
    let retry = (every / 4).max(Duration::from_millis(5));
    let mut last = since;
    let mut next = since + every;
    let mut renewals = 0u64;
    let mut watch = LeaseWatch::<R::Item>::new();
    loop {
        let deadline = last + validity;
        tokio::select! {
            () = sleep_until(next) => {}
            () = sleep_until(deadline) => break,
        }
        let sent = Instant::now();
        tokio::select! {
            renewed = target.renew() => match renewed {
                Ok(all) => {
                    renewals += 1;
                    last = sent;
                    next = sent + every;
                    debug!(lease = %what, renewals, "renewed the lease");
                    status.send_replace(LeaseStatus::Held { until: sent + validity, renewals });
                    // No later than the next renewal: a slow store delays
                    // the reaping, never the renewals. (A removal cut short
                    // is a conditional write that landed or did not.)
                    let reaping = reap(&*target, &mut watch, all, Instant::now());
                    if timeout_at(next, reaping).await.is_err() {
                        debug!(lease = %what, "reaping cut short by the next renewal");
                    }
                }
                Err(e) if e.is_temporary() => {
                    debug!(lease = %what, error = %e, "renewal failed; retrying");
                    next = Instant::now() + retry;
                }
                Err(e) => {
                    debug!(lease = %what, error = %e, "lease lost");
                    status.send_replace(LeaseStatus::Lost(e.to_string()));
                    return;
                }
            },
            () = sleep_until(deadline) => break,
        }
    }
    debug!(lease = %what, "lease lost: no renewal in time");
    status.send_replace(LeaseStatus::Lost(lost_by_deadline(&what)));
}

/// Feed the records read with a renewal that came back at `read_at` to
/// `watch`, and expire the others' records it says were left unrenewed for
/// a full lease. Failures are logged only.
async fn reap<R: Renew>(
    target: &R,
    watch: &mut LeaseWatch<R::Item>,
    all: Fenced<Vec<R::Item>>,
    read_at: Instant,
) {
    let others: Vec<R::Item> = all
        .value
        .into_iter()
        .filter(|item| !target.is_own(item))
        .collect();
    for expired in watch.observe(&others, all.fencing_token, read_at) {
        let key = expired.item().lease_key();
        match target.expire(&expired).await {
            Ok(Some(token)) => {
                debug!(lease = %target.what(), ?key, renewals = expired.renewals(), %token,
                    "removed a record left unrenewed for a full lease");
            }
            Ok(None) => debug!(lease = %target.what(), ?key, "an expired record changed first"),
            Err(e) => {
                debug!(lease = %target.what(), ?key, error = %e, "could not remove an expired record")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_counts_on_nine_tenths() {
        assert_eq!(
            holder_validity(Duration::from_secs(15)),
            Duration::from_millis(13_500)
        );
    }
}
