//! [`Held`]: the one holder of a leased record, which both public holders
//! wrap: [`LeaseHolder`](crate::LeaseHolder) (a queue's ticket) and
//! [`ClaimHolder`](crate::ClaimHolder) (a claim).
//!
//! A public holder makes its record (joins, claims), then hands it here with
//! the time its lease counts from. [`Held`] renews it through a
//! [`LeaseKeeper`] (the one renewal loop, in `keeper.rs`), answers whether the
//! lease may be counted on, and gives the record back: on
//! [`release`](Held::release), or in the background when dropped, so that a
//! record left behind by a holder that went away is gone at once rather than
//! after an observer watched it expire. What differs between a ticket and a
//! claim (how to renew it, how to give it back, what to call it) is the
//! record's [`Hold`] implementation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::keeper::{HolderOptions, LeaseKeeper, LeaseStatus, Renew};
use crate::lease::record as lease;
use crate::queue::fencing::FencingToken;

/// A leased record that a holder renews (see [`Renew`]) and gives back.
#[async_trait]
pub(crate) trait Hold: Renew {
    /// Give the record back (leave the queue, release the claim): one write
    /// that adds one to the token, whose new value it returns.
    /// [`ErrorKind::NotFound`] if the record is gone already.
    async fn release(&self) -> Result<FencingToken>;
}

/// A leased record, renewed in the background while this value lives, and
/// given back when it is released or dropped.
pub(crate) struct Held<R: Hold> {
    record: Arc<R>,
    lease: Duration,
    keeper: LeaseKeeper,
    released: bool,
}

/// Check the lease a holder asks for and its options, before it writes
/// anything: a lease out of range, or options that leave no time to renew,
/// are [`ErrorKind::InvalidInput`] errors.
pub(crate) fn check_lease(lease: Duration, options: &HolderOptions) -> Result<()> {
    lease::validate(lease)?;
    options.check(lease)
}

impl<R: Hold> Held<R> {
    /// Hold `record`, whose stored lease is `lease`, counting it from `since`
    /// (the send time of the write that made or last renewed it).
    pub fn start(record: R, lease: Duration, options: &HolderOptions, since: Instant) -> Self {
        let record = Arc::new(record);
        Held {
            keeper: LeaseKeeper::start(Arc::clone(&record), lease, options, since),
            record,
            lease,
            released: false,
        }
    }

    /// The record held.
    pub fn record(&self) -> &R {
        &self.record
    }

    /// The lease's duration, as stored.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The current status. Checks the deadline itself, so it is right even
    /// if the renewing task has not run for a while.
    pub fn status(&self) -> LeaseStatus {
        self.keeper.status()
    }

    /// A receiver that sees every change of status, to select on.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.keeper.watch()
    }

    /// Whether the lease may be counted on now.
    pub fn is_held(&self) -> bool {
        self.keeper.is_held()
    }

    /// Complete when the lease is lost, with the reason as an
    /// [`ErrorKind::LeaseLost`] error. Cancel-safe: select on it.
    pub async fn lost(&self) -> Error {
        self.keeper.lost().await
    }

    /// Stop renewing and give the record back. Returns the token of that
    /// write, or `None` if the record was gone already (it expired and was
    /// removed).
    pub async fn release(&mut self) -> Result<Option<FencingToken>> {
        self.released = true;
        self.keeper.stop();
        match self.record.release().await {
            Ok(token) => Ok(Some(token)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What dropping a holder does: stop renewing, and unless released,
    /// give the record back in the background, on a best effort basis (the
    /// write needs a running Tokio runtime; if it cannot run, the record
    /// expires after one observed lease instead). Does nothing the second
    /// time.
    pub fn let_go(&mut self) {
        self.keeper.stop();
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let record = Arc::clone(&self.record);
            runtime.spawn(async move {
                let released = record.release().await;
                debug!(lease = %record.what(), ok = released.is_ok(), "gave the record back on drop");
            });
        }
    }
}

impl<R: Hold> Drop for Held<R> {
    fn drop(&mut self) {
        self.let_go();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::lease::expiry::Expired;
    use crate::queue::fencing::Fenced;
    use crate::queue::ticket::Ticket;

    /// A record that counts its renewals and releases, and is gone (its
    /// release NotFound, its renewal LeaseLost) once `gone` is set.
    #[derive(Default)]
    struct Counted {
        renewals: AtomicU64,
        releases: AtomicU64,
        gone: AtomicBool,
    }

    #[async_trait]
    impl Renew for Arc<Counted> {
        type Item = Ticket;

        async fn renew(&self) -> Result<Fenced<Vec<Ticket>>> {
            if self.gone.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::LeaseLost, "gone"));
            }
            self.renewals.fetch_add(1, Ordering::SeqCst);
            Ok(Fenced::new(vec![], FencingToken(1)))
        }

        fn is_own(&self, _: &Ticket) -> bool {
            true
        }

        async fn expire(&self, _: &Expired<Ticket>) -> Result<Option<FencingToken>> {
            Ok(None)
        }

        fn what(&self) -> String {
            "a counted record".into()
        }
    }

    #[async_trait]
    impl Hold for Arc<Counted> {
        async fn release(&self) -> Result<FencingToken> {
            if self.gone.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::NotFound, "gone"));
            }
            Ok(FencingToken(
                self.releases.fetch_add(1, Ordering::SeqCst) + 1,
            ))
        }
    }

    const LEASE: Duration = Duration::from_millis(300);

    fn hold(record: &Arc<Counted>) -> Held<Arc<Counted>> {
        Held::start(
            Arc::clone(record),
            LEASE,
            &HolderOptions::new(),
            Instant::now(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn renews_every_third_of_the_lease_and_gives_back_once() {
        let record = Arc::new(Counted::default());
        let mut held = hold(&record);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(record.renewals.load(Ordering::SeqCst), 3);
        assert!(held.is_held());
        assert_eq!(held.release().await.unwrap(), Some(FencingToken(1)));
        drop(held);
        tokio::task::yield_now().await;
        assert_eq!(
            record.releases.load(Ordering::SeqCst),
            1,
            "not again on drop"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_holder_gives_its_record_back_in_the_background() {
        let record = Arc::new(Counted::default());
        drop(hold(&record));
        tokio::task::yield_now().await;
        assert_eq!(record.releases.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_gone_loses_the_lease_and_releases_as_none() {
        let record = Arc::new(Counted::default());
        let mut held = hold(&record);
        record.gone.store(true, Ordering::SeqCst);
        let lost = held.lost().await;
        assert_eq!(lost.kind(), ErrorKind::LeaseLost);
        assert!(!held.is_held());
        assert_eq!(held.release().await.unwrap(), None);
    }
}
