//! Waiting until a process is among the first N tickets of its queue (N = 1:
//! until it leads), removing the expired tickets ahead of it on the way.
//!
//! The waiter is an observer in the sense of the [`lease`](crate::lease)
//! protocol: it reads the queue, feeds every read to a [`LeaseWatch`], and
//! removes (with [`Queue::expire`]) only the tickets ahead of it that the
//! watch found unrenewed for a full lease on this process's own clock.
//!
//! How a waiter polls, and what waiting costs, is on [`WaitOptions`].

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::LeaseWatch;
use crate::lease::record::Lease;
use crate::queue::fencing::Fenced;
use crate::queue::ticket::Ticket;
use crate::queue::Queue;

/// The longest time between two reads of a waiter, unless
/// [`WaitOptions::max_poll`] says otherwise.
pub const DEFAULT_MAX_POLL: Duration = Duration::from_secs(1);

/// The shortest time between two reads of a waiter, unless
/// [`WaitOptions::min_poll`] says otherwise.
pub const DEFAULT_MIN_POLL: Duration = Duration::from_millis(10);

/// How to wait (see [`wait_for_position`]).
///
/// # Polling and its cost
///
/// Between reads the waiter sleeps a random time between half and all of its
/// poll interval, so that many waiters do not read in step; but never past
/// the moment a watched ticket ahead could expire, nor past the timeout. The
/// poll interval is a quarter of the shortest lease ahead, kept within
/// [`WaitOptions::min_poll`] and [`WaitOptions::max_poll`] (10 ms and 1 s by
/// default); with only permanent tickets ahead it is `max_poll`.
///
/// So a waiter costs one read per poll: on DynamoDB one strongly consistent
/// `GetItem`, between 1 and 2 per second behind 15 s leases (less than 1.5
/// on average), or up to 4 / L per second behind leases of L seconds under
/// 4 s; plus one `GetItem` and one `UpdateItem` per expired ticket it
/// removes. A waiter holding a lease of its own also renews it (see
/// [`LeaseHolder`](crate::LeaseHolder)): 3 / L writes per second.
///
/// Behind a holder that died, the waiter removes its ticket at most one lease
/// plus one poll interval after the holder's last renewal was first read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitOptions {
    /// Give up after this long with [`ErrorKind::Timeout`]; `None` waits for
    /// ever. `Some(Duration::ZERO)` looks once and does not wait.
    pub timeout: Option<Duration>,
    /// The longest time between two reads of the queue.
    pub max_poll: Duration,
    /// The shortest time between two reads of the queue.
    pub min_poll: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: None,
            max_poll: DEFAULT_MAX_POLL,
            min_poll: DEFAULT_MIN_POLL,
        }
    }
}

impl WaitOptions {
    /// Wait for ever, polling as described [above](WaitOptions).
    pub fn new() -> Self {
        Self::default()
    }

    /// Set [`timeout`](Self::timeout).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set [`min_poll`](Self::min_poll) and [`max_poll`](Self::max_poll).
    pub fn with_poll(mut self, min: Duration, max: Duration) -> Self {
        self.min_poll = min;
        self.max_poll = max.max(min);
        self
    }

    /// The poll interval behind `ahead`: a quarter of the shortest lease,
    /// within the bounds, or the longest interval if none is leased.
    pub fn poll_interval(&self, ahead: &[Ticket]) -> Duration {
        self.poll_among(ahead.iter().filter_map(|t| t.lease.as_ref()))
    }

    /// The poll interval among records with `leases`: a quarter of the
    /// shortest, within the bounds, or the longest interval if there is
    /// none.
    pub(crate) fn poll_among<'a>(&self, leases: impl Iterator<Item = &'a Lease>) -> Duration {
        leases
            .map(|l| l.duration / 4)
            .min()
            .map_or(self.max_poll, |d| d.clamp(self.min_poll, self.max_poll))
    }

    /// When to look again after a look at `now` that found nothing to do:
    /// a random time between half and all of `poll`, but never past
    /// `expiry` (when a watched record could expire) nor `deadline`.
    pub(crate) fn next_look(
        poll: Duration,
        now: Instant,
        expiry: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Instant {
        let mut wake = now + poll.mul_f64(0.5 + fastrand::f64() / 2.0);
        if let Some(expiry) = expiry {
            wake = wake.min(expiry.max(now));
        }
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        wake
    }
}

/// Wait until `process_id` holds one of the first `within` tickets of
/// `queue` (`within` = 1: until it leads), removing expired tickets ahead of
/// it as the [`lease`](crate::lease) protocol allows. Returns its ticket and
/// the queue's fencing token at that moment.
///
/// Fails with [`ErrorKind::NotFound`] if the process is not in the queue,
/// [`ErrorKind::LeaseLost`] if its leased ticket disappears while it waits,
/// [`ErrorKind::Timeout`] when the timeout passes first, and with the
/// store's error if a read or removal fails.
pub async fn wait_for_position(
    queue: &dyn Queue,
    process_id: &str,
    within: usize,
    options: &WaitOptions,
) -> Result<Fenced<Ticket>> {
    if within == 0 {
        return Err(Error::invalid(
            "the number of places to wait for must be at least 1",
        ));
    }
    let started = Instant::now();
    let deadline = options.timeout.map(|t| started + t);
    let mut watch = LeaseWatch::new();
    // The leased ticket seen last, to tell a lost lease from a process that
    // was never in the queue.
    let mut leased: Option<u64> = None;
    loop {
        let all = queue.tickets().await?;
        let read_at = Instant::now();
        let Some(mine) = all.value.iter().find(|t| t.process_id == process_id) else {
            return Err(match leased {
                Some(counter) => crate::queue::state::lease_gone(queue.id(), process_id, counter),
                None => Error::process_not_found(queue.id(), process_id),
            });
        };
        leased = mine.lease.as_ref().map(|_| mine.counter);
        if mine.position < within {
            return Ok(Fenced::new(mine.clone(), all.fencing_token));
        }
        let ahead = &all.value[..mine.position];
        let mut removed = false;
        for expired in watch.observe(ahead, all.fencing_token, read_at) {
            if let Some(token) = queue.expire(&expired).await? {
                tracing::debug!(
                    queue = queue.id(),
                    expired = %expired.ticket().process_id,
                    counter = expired.ticket().counter,
                    %token,
                    "removed a ticket whose lease expired"
                );
                removed = true;
            }
        }
        if removed {
            continue; // look again at once: the place may be ours now
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "process `{process_id}` is at position {} of queue `{}`, not within the first {within}, \
                     after waiting {:.1}s",
                    mine.position,
                    queue.id(),
                    now.duration_since(started).as_secs_f64()
                ),
            ));
        }
        let poll = options.poll_interval(ahead);
        let wake = WaitOptions::next_look(poll, now, watch.next_expiry(), deadline);
        tokio::time::sleep_until(wake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ticket::Tags;

    #[test]
    fn poll_interval_follows_the_shortest_lease_ahead() {
        let o = WaitOptions::default();
        let ms = Duration::from_millis;
        let permanent = Ticket::new("p", 1, 0, Tags::new());
        let leased = |d: u64| {
            Ticket::new("l", 2, 1, Tags::new()).with_lease(Some(Lease::new(ms(d), 0, None)))
        };
        assert_eq!(o.poll_interval(&[]), DEFAULT_MAX_POLL);
        assert_eq!(
            o.poll_interval(std::slice::from_ref(&permanent)),
            DEFAULT_MAX_POLL
        );
        assert_eq!(o.poll_interval(&[permanent, leased(400)]), ms(100));
        assert_eq!(o.poll_interval(&[leased(15_000)]), DEFAULT_MAX_POLL);
        assert_eq!(o.poll_interval(&[leased(20)]), DEFAULT_MIN_POLL);
    }
}
