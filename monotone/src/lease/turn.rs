//! A holder's turn: when another holder holds the ticket of its process id
//! (the claim of its owner), wait until that record is gone, then make its
//! own. Written once, here, for [`LeaseHolder`](crate::LeaseHolder) and
//! [`ClaimHolder`](crate::ClaimHolder).
//!
//! The record in the way answers a holder's request with
//! [`ErrorKind::Held`] (see the re-join rule in `again.rs`). The waiter is
//! an observer of that one record in the sense of the [`lease`](crate::lease)
//! protocol: it reads it (one cheap read: the ticket of one process, the
//! claim of one owner), feeds every read to a [`LeaseWatch`], and removes it
//! (with the primitive's `expire`) only once the watch found it unrenewed
//! for a full lease on this process's own clock. So a live holder keeps its
//! record, and the waiter's turn comes when that holder releases it (the
//! next read finds it gone) or dies (one observed lease later). Then it
//! makes its own record at once; if another waiter was quicker, it waits
//! again.
//!
//! Between two reads it waits on the version of the item that holds the
//! record (the queue's or the pool's token) with the primitive's
//! `wait_for_change` (the `change` module's capability): a release is a
//! write, so where the store pushes the waiter reads again at once, however
//! long the poll. It also looks again, whether or not the item changed, as
//! [`WaitOptions`] say: a quarter of the record's lease, within the bounds,
//! never past the moment the record could expire, nor past the timeout
//! (only a read tells a live holder's renewals, which change no version,
//! from a dead one's silence). With a timeout of zero it tries once and does
//! not wait: a record in the way is then [`ErrorKind::Timeout`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::{Expired, LeaseWatch, Leased};
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::wait::WaitOptions;

/// What a holder waits its turn for: a record it makes, and the record of
/// another holder that may be in the way.
#[async_trait]
pub(crate) trait Turn: Send + Sync {
    /// The record: a ticket or a claim.
    type Item: Leased + Send + Sync;
    /// What making the record gives.
    type Made: Send;

    /// Make the record as the holder asks (join, claim), by `deadline` if
    /// making it waits too; [`ErrorKind::Held`] while another holder holds
    /// it.
    async fn make(&self, deadline: Option<Instant>) -> Result<Self::Made>;

    /// The record in the way, with the token of the read; `None` if it is
    /// gone.
    async fn in_the_way(&self) -> Result<Option<Fenced<Self::Item>>>;

    /// Remove the record in the way, watched expire.
    async fn expire(&self, expired: &Expired<Self::Item>) -> Result<Option<FencingToken>>;

    /// Wait until the token of the item that holds the record is no longer
    /// `seen` (`true`) or `until` passes (`false`): the primitive's
    /// `wait_for_change`.
    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool>;

    /// Whether the store tells of changes (the primitive's `pushes`).
    fn pushes(&self) -> bool;

    /// What the holder asks for, in messages: "the ticket of process `a` in
    /// queue `q`".
    fn what(&self) -> String;
}

/// Make `turn`'s record, waiting (as the [module docs](self) say, up to
/// `options`' timeout) while another holder holds it.
pub(crate) async fn wait_turn<T: Turn>(turn: &T, options: &WaitOptions) -> Result<T::Made> {
    let started = Instant::now();
    let deadline = options.timeout.map(|t| started + t);
    let mut watch = LeaseWatch::<T::Item>::new();
    let mut announced = false;
    loop {
        match turn.make(deadline).await {
            Err(e) if e.kind() == ErrorKind::Held => {}
            other => return other,
        }
        // Watch the record in the way until it goes, or expires.
        while let Some(other) = turn.in_the_way().await? {
            let read_at = Instant::now();
            let Some(lease) = other.value.lease().cloned() else {
                // Permanent now: making the record says so.
                break;
            };
            let mut removed = false;
            let seen = std::slice::from_ref(&other.value);
            for expired in watch.observe(seen, other.fencing_token, read_at) {
                if let Some(token) = turn.expire(&expired).await? {
                    tracing::debug!(what = %turn.what(), %token, "removed another holder's record, which expired");
                    removed = true;
                }
            }
            if removed {
                break;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} is held by another holder{}",
                        turn.what(),
                        Waited(now.duration_since(started))
                    ),
                ));
            }
            let poll = options.poll_among(std::iter::once(&lease));
            let look = WaitOptions::next_look(poll, now, watch.next_expiry(), deadline);
            if !announced {
                // Asked only once there is something to wait for: on SQLite
                // the first question starts the file's watch.
                announced = true;
                tracing::debug!(
                    what = %turn.what(),
                    changes = if turn.pushes() { "pushed" } else { "polled" },
                    "waiting for another holder's record to go"
                );
            }
            turn.wait_for_change(other.fencing_token, look, poll)
                .await?;
        }
    }
}

/// `" (after waiting 2.5s)"`, or nothing for a wait too short to mention.
struct Waited(std::time::Duration);

impl fmt::Display for Waited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.as_millis() >= 100 {
            write!(f, " (after waiting {:.1}s)", self.0.as_secs_f64())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::change::{poll_for_change, Notifier};
    use crate::lease::record::Lease;
    use crate::queue::ticket::{Tags, Ticket};

    const LEASE: Duration = Duration::from_millis(400);

    /// One record, another holder's until `renewing` stops and it expires,
    /// or until it is released; then the waiter's. With a `bell`, a store
    /// that pushes; without, one that polls.
    struct Scripted {
        state: Mutex<State>,
        bell: Option<Notifier>,
    }

    #[derive(Default)]
    struct State {
        /// The other holder's record: renewed on each read while `renewing`.
        other: Option<Ticket>,
        renewing: bool,
        /// The token of the item holding the record: grows when it goes.
        token: u64,
        makes: u32,
        expired: u32,
    }

    impl Scripted {
        fn held(renewing: bool) -> Scripted {
            let other =
                Ticket::new("p", 1, 0, Tags::new()).with_lease(Some(Lease::new(LEASE, 0, None)));
            Scripted {
                state: Mutex::new(State {
                    other: Some(other),
                    renewing,
                    token: 1,
                    ..State::default()
                }),
                bell: None,
            }
        }

        fn pushing(mut self) -> Scripted {
            self.bell = Some(Notifier::new());
            self
        }

        /// The other holder lets go of its record.
        fn release(&self) {
            let mut s = self.state.lock().unwrap();
            s.other = None;
            s.token += 1;
            drop(s);
            if let Some(bell) = &self.bell {
                bell.notify();
            }
        }

        async fn token(&self) -> Result<u64> {
            Ok(self.state.lock().unwrap().token)
        }
    }

    #[async_trait]
    impl Turn for Scripted {
        type Item = Ticket;
        type Made = u32;

        async fn make(&self, _: Option<Instant>) -> Result<u32> {
            let mut s = self.state.lock().unwrap();
            s.makes += 1;
            match s.other {
                Some(_) => Err(Error::new(ErrorKind::Held, "held")),
                None => Ok(s.makes),
            }
        }

        async fn in_the_way(&self) -> Result<Option<Fenced<Ticket>>> {
            let mut s = self.state.lock().unwrap();
            let (renewing, token) = (s.renewing, s.token);
            Ok(s.other.as_mut().map(|t| {
                if renewing {
                    t.lease.as_mut().unwrap().renewals += 1;
                }
                Fenced::new(t.clone(), FencingToken(token))
            }))
        }

        async fn expire(&self, expired: &Expired<Ticket>) -> Result<Option<FencingToken>> {
            let mut s = self.state.lock().unwrap();
            assert_eq!(Some(expired.ticket()), s.other.as_ref(), "removed as seen");
            s.other = None;
            s.expired += 1;
            s.token += 1;
            Ok(Some(FencingToken(s.token)))
        }

        async fn wait_for_change(
            &self,
            seen: FencingToken,
            until: Option<Instant>,
            poll: Duration,
        ) -> Result<bool> {
            let token = || self.token();
            match &self.bell {
                Some(bell) => {
                    bell.wait_for_change(seen.get(), until, poll, None, token)
                        .await
                }
                None => poll_for_change(seen.get(), until, poll, token).await,
            }
        }

        fn pushes(&self) -> bool {
            self.bell.is_some()
        }

        fn what(&self) -> String {
            "the ticket of process `p` in queue `q`".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_holders_record_is_removed_after_one_observed_lease() {
        let turn = Scripted::held(false);
        let started = Instant::now();
        let made = wait_turn(&turn, &WaitOptions::new()).await.unwrap();
        let took = started.elapsed();
        assert!(took >= LEASE, "never before a full lease: {took:?}");
        assert!(took <= LEASE + LEASE / 4, "about one lease: {took:?}");
        let s = turn.state.lock().unwrap();
        assert_eq!((made, s.expired), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_holders_record_is_never_removed_and_the_wait_times_out() {
        let turn = Scripted::held(true);
        let options = WaitOptions::new().with_timeout(Some(LEASE * 5));
        let err = wait_turn(&turn, &options).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(
            err.to_string(),
            "the ticket of process `p` in queue `q` is held by another holder (after waiting 2.0s)"
        );
        assert_eq!(turn.state.lock().unwrap().expired, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_of_zero_tries_once() {
        let turn = Scripted::held(true);
        let options = WaitOptions::new().with_timeout(Some(Duration::ZERO));
        let err = wait_turn(&turn, &options).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(turn.state.lock().unwrap().makes, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_record_is_the_waiters_at_the_next_look() {
        let turn = std::sync::Arc::new(Scripted::held(true));
        let releaser = {
            let turn = std::sync::Arc::clone(&turn);
            tokio::spawn(async move {
                tokio::time::sleep(LEASE * 3).await;
                turn.release();
                Instant::now()
            })
        };
        let made = wait_turn(&*turn, &WaitOptions::new()).await.unwrap();
        let released = releaser.await.unwrap();
        assert!(
            released.elapsed() <= LEASE / 4,
            "within a poll: {:?}",
            released.elapsed()
        );
        assert!(made >= 2);
        assert_eq!(
            turn.state.lock().unwrap().expired,
            0,
            "released, not expired"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_push_a_released_record_is_the_waiters_at_once_however_long_the_poll() {
        let turn = std::sync::Arc::new(Scripted::held(true).pushing());
        let releaser = {
            let turn = std::sync::Arc::clone(&turn);
            tokio::spawn(async move {
                // Between two looks at the lease (every 400 ms here).
                tokio::time::sleep(LEASE * 3 + LEASE / 8).await;
                turn.release();
                Instant::now()
            })
        };
        let hour = Duration::from_secs(3600);
        let options = WaitOptions::new().with_poll(hour, hour);
        let made = wait_turn(&*turn, &options).await.unwrap();
        let released = releaser.await.unwrap();
        assert_eq!(released.elapsed(), Duration::ZERO, "at the release");
        assert!(made >= 2);
        assert_eq!(turn.state.lock().unwrap().expired, 0);
    }
}
