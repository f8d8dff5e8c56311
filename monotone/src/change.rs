//! Waiting for an item to change: the one store capability that everything
//! which waits is built on ([`wait_for_position`](crate::wait_for_position),
//! [`wait_for_claim`](crate::wait_for_claim), [`Changes`](crate::Changes),
//! and through them the holders, `lock`, `queue wait`, `claim --timeout` and
//! `doc watch`).
//!
//! # The capability
//!
//! "Tell me when item X changes after version V, or when a deadline
//! passes." Every item that is waited on has a number that grows with every
//! write: a queue's or claim pool's fencing token, a document's version.
//! [`Queue`](crate::Queue), [`ClaimPool`](crate::ClaimPool) and
//! [`Document`](crate::Document) each have
//!
//! - a cheap read of that number alone (`token()`, `version()`);
//! - `wait_for_change(seen, until, poll)`: returns `true` once the number is
//!   no longer `seen` (a spurious `true` is allowed: the caller reads the
//!   item again either way), `false` once `until` passes;
//! - `pushes()`: whether the handle is told of changes (push) or polls.
//!
//! Waiting on a version cannot miss a change: a write between the caller's
//! read and its call makes the version differ at once. A renewal of a lease
//! changes no version (renewals must never make other writes retry), so it
//! wakes no waiter; a waiter that watches leases looks again when a lease
//! it watches could have expired (see below).
//!
//! Versions of queues and claim pools start over when the item is removed
//! ([`Queue::remove`](crate::Queue::remove)): a waiter on an item that is
//! removed and written again up to the very version it saw, between two of
//! its checks, learns of it at the next write.
//!
//! # Push and poll
//!
//! A store that cannot push keeps the default: [`poll_for_change`] reads the
//! version every `poll` (each time a random part between half and all of
//! it, so that many waiters do not read in step), the first time one `poll`
//! after the call, since the caller has just read the version it passes,
//! and not at all once `until` is less than a poll away (the caller reads
//! its item at `until` anyway): so a poller never reads more often than
//! one read per poll.
//!
//! A store that pushes has a [`Notifier`]: a sequence number that advances
//! whenever the item may have changed (the memory store: every write; the
//! SQLite store: every event of the database file or its write-ahead log,
//! from any process). [`Notifier::wait_for_change`] checks the version at
//! once, then again at every advance, and also every `poll` in case a
//! notification was lost (for SQLite, an overflow of the kernel's event
//! queue): `poll` is its safety re-read. Every waiter of a changed store
//! re-reads only the version of its own item, so a write wakes the waiters
//! of other items for one cheap check each, and only the waiters of the
//! changed item read it whole.
//!
//! # How a waiter sleeps
//!
//! A waiter reads its item, decides, and then waits until the first of:
//! a change (pushed, or found by polling), the moment a lease it watches
//! could have expired ([`LeaseWatch::next_expiry`](crate::LeaseWatch::next_expiry)),
//! its deadline, and, while it watches leased records, its next look at
//! them: a quarter of the shortest lease, within the poll bounds (see
//! [`WaitOptions`](crate::WaitOptions)). That last one is there whether the
//! store pushes or not, because only reading tells a live holder's renewals
//! from a dead one's silence: it keeps a dead holder's removal within one
//! lease plus that interval of its last renewal, as the
//! [`lease`](crate::lease) module promises. With push and no leases to
//! watch, a waiter reads its item only when it changed, and checks the
//! version every `poll`; so a very long poll still hands over at once.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::error::Result;

/// The shortest interval [`poll_for_change`] and
/// [`Notifier::wait_for_change`] accept; shorter ones are taken as this.
const MIN_POLL: Duration = Duration::from_millis(1);

/// `now` plus a random part between half and all of `poll`: when a poller
/// looks next, so that many pollers do not look in step.
pub(crate) fn jittered(now: Instant, poll: Duration) -> Instant {
    later(now, poll.mul_f64(0.5 + fastrand::f64() / 2.0))
}

/// `now + d`, or a time decades away if that is past what an [`Instant`]
/// holds (a caller may pass `Duration::MAX` for "never").
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30))
}

/// The default `wait_for_change` of a store that cannot push: read the
/// version with `version` every `poll` (jittered, the first time one poll
/// from now) until it is not `seen` (`true`) or `until` passes (`false`,
/// without a last read; and without any read once `until` is within one
/// poll, as the caller reads at `until` anyway).
pub(crate) async fn poll_for_change<F, Fut>(
    seen: u64,
    until: Option<Instant>,
    poll: Duration,
    mut version: F,
) -> Result<bool>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<u64>> + Send,
{
    let poll = poll.max(MIN_POLL);
    loop {
        let now = Instant::now();
        // The caller reads again at `until`: no check is worth its cost
        // within one poll of it.
        if let Some(until) = until.filter(|u| *u <= later(now, poll)) {
            sleep_until(until).await;
            return Ok(false);
        }
        sleep_until(jittered(now, poll)).await;
        if version().await? != seen {
            return Ok(true);
        }
    }
}

/// The change notifications of one store that pushes: a sequence number
/// that advances ([`notify`](Self::notify)) whenever an item of the store
/// may have changed, which any number of waiters await. Cheap to advance
/// with no one waiting.
#[derive(Debug)]
pub(crate) struct Notifier {
    sequence: watch::Sender<u64>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            sequence: watch::Sender::new(0),
        }
    }
}

impl Notifier {
    /// A notifier no one waits on yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Something in the store may have changed: every waiter checks its
    /// item's version again.
    pub fn notify(&self) {
        self.sequence.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later advance.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sequence.subscribe()
    }

    /// The current sequence number: taken before a read, it tells a later
    /// wait whether anything was notified since (see
    /// [`wait_for_change`](Self::wait_for_change)).
    pub fn sequence(&self) -> u64 {
        *self.sequence.borrow()
    }

    /// Wait until `version` (a read of one item's version) is no longer
    /// `seen` (`true`) or `until` passes (`false`): check it now, then at
    /// every notification, and every `safety` in case one was lost.
    ///
    /// `read_at`: the [`sequence`](Self::sequence) taken just before the
    /// read that saw `seen`, if the caller has one. While the sequence is
    /// still there, nothing was notified since that read began, so every
    /// write that read did not see is still to be notified: the first
    /// check is skipped (a waiter that reads its item every poll interval
    /// then costs one read per interval, not two).
    pub async fn wait_for_change<F, Fut>(
        &self,
        seen: u64,
        until: Option<Instant>,
        safety: Duration,
        read_at: Option<u64>,
        mut version: F,
    ) -> Result<bool>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<u64>> + Send,
    {
        let safety = safety.max(MIN_POLL);
        // Subscribed before the first check: a write after it is a
        // notification this waiter has not seen yet.
        let mut notified = self.sequence.subscribe();
        let mut check = read_at != Some(*notified.borrow_and_update());
        loop {
            if check && version().await? != seen {
                return Ok(true);
            }
            check = true;
            let recheck = later(Instant::now(), safety);
            let wake = until.map_or(recheck, |u| u.min(recheck));
            tokio::select! {
                // The sender lives as long as `self`: this never fails.
                _ = notified.changed() => {}
                () = sleep_until(wake) => {
                    if until.is_some_and(|u| Instant::now() >= u) {
                        return Ok(false);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A version that a test sets, and a count of the reads of it.
    #[derive(Default)]
    struct Version {
        now: AtomicU64,
        reads: AtomicU64,
    }

    impl Version {
        async fn read(&self) -> Result<u64> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.now.load(Ordering::SeqCst))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn polling_reads_once_per_poll_and_ends_at_until() {
        let v = Version::default();
        let t0 = Instant::now();
        let poll = Duration::from_secs(1);
        let until = t0 + Duration::from_secs(10);
        let changed = poll_for_change(0, Some(until), poll, || v.read())
            .await
            .unwrap();
        assert!(!changed);
        assert_eq!(Instant::now(), until, "not a moment before until");
        let reads = v.reads.load(Ordering::SeqCst);
        assert!(
            (8..=18).contains(&reads),
            "one read per 0.5-1 s, none in the last second: {reads}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn polling_finds_a_change_at_its_next_read() {
        let v = Arc::new(Version::default());
        let t0 = Instant::now();
        let writer = {
            let v = Arc::clone(&v);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(3500)).await;
                v.now.store(1, Ordering::SeqCst);
            })
        };
        let changed = poll_for_change(0, None, Duration::from_secs(1), || v.read())
            .await
            .unwrap();
        assert!(changed);
        let waited = Instant::now() - t0;
        assert!(
            waited >= Duration::from_millis(3500) && waited <= Duration::from_millis(4500),
            "{waited:?}"
        );
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_notification_wakes_at_once_however_long_the_safety_interval() {
        let v = Arc::new(Version::default());
        let bell = Arc::new(Notifier::new());
        let t0 = Instant::now();
        let writer = {
            let (v, bell) = (Arc::clone(&v), Arc::clone(&bell));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                bell.notify(); // something else changed: the waiter goes on
                tokio::time::sleep(Duration::from_secs(2)).await;
                v.now.store(1, Ordering::SeqCst);
                bell.notify();
            })
        };
        let hour = Duration::from_secs(3600);
        let changed = bell
            .wait_for_change(0, Some(t0 + hour), hour, None, || v.read())
            .await
            .unwrap();
        assert!(changed);
        assert_eq!(Instant::now() - t0, Duration::from_secs(7));
        assert_eq!(v.reads.load(Ordering::SeqCst), 3, "now, and once per ring");
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_version_returns_at_once_and_a_lost_ring_is_caught_by_the_safety_read() {
        let v = Arc::new(Version::default());
        v.now.store(4, Ordering::SeqCst);
        let bell = Notifier::new();
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        assert!(bell
            .wait_for_change(3, None, hour, None, || v.read())
            .await
            .unwrap());
        assert_eq!(Instant::now(), t0);
        // A write nobody rang for: found by the safety read.
        let writer = {
            let v = Arc::clone(&v);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                v.now.store(5, Ordering::SeqCst);
            })
        };
        let safety = Duration::from_secs(10);
        assert!(bell
            .wait_for_change(4, None, safety, None, || v.read())
            .await
            .unwrap());
        assert_eq!(Instant::now() - t0, safety);
        // Nothing changes: false at until.
        let until = Instant::now() + Duration::from_secs(25);
        assert!(!bell
            .wait_for_change(5, Some(until), safety, None, || v.read())
            .await
            .unwrap());
        assert_eq!(Instant::now(), until);
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_right_after_a_read_skips_its_first_check_unless_rung_since() {
        let v = Arc::new(Version::default());
        let bell = Arc::new(Notifier::new());
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        // Read at sequence 0, nothing rung since: no check until `until`.
        let at = bell.sequence();
        let until = t0 + Duration::from_secs(1);
        assert!(!bell
            .wait_for_change(0, Some(until), hour, Some(at), || v.read())
            .await
            .unwrap());
        assert_eq!(v.reads.load(Ordering::SeqCst), 0, "no read in the wait");
        // A write and its ring after the read began: the wait checks at
        // once and finds it (a waiter never misses what its read missed).
        let at = bell.sequence();
        v.now.store(1, Ordering::SeqCst);
        bell.notify();
        assert!(bell
            .wait_for_change(0, None, hour, Some(at), || v.read())
            .await
            .unwrap());
        assert_eq!(Instant::now(), until, "at once");
        assert_eq!(v.reads.load(Ordering::SeqCst), 1);
        // A ring during the wait is checked as ever.
        let at = bell.sequence();
        let writer = {
            let (v, bell) = (Arc::clone(&v), Arc::clone(&bell));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                v.now.store(2, Ordering::SeqCst);
                bell.notify();
            })
        };
        assert!(bell
            .wait_for_change(1, None, hour, Some(at), || v.read())
            .await
            .unwrap());
        assert_eq!(Instant::now() - until, Duration::from_secs(3));
        assert_eq!(v.reads.load(Ordering::SeqCst), 2, "only the ring's check");
        writer.await.unwrap();
    }
}
