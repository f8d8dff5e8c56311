//! Waiting until a process is among the first N tickets of its queue (N = 1:
//! until it leads), removing the expired tickets ahead of it on the way.
//!
//! The waiter is an observer in the sense of the [`lease`](crate::lease)
//! protocol: it reads the queue, feeds every read to a [`LeaseWatch`], and
//! removes (with [`Queue::expire`]) only the tickets ahead of it that the
//! watch found unrenewed for a full lease on this process's own clock.
//!
//! Between reads it waits on the queue's token with
//! [`Queue::wait_for_change`] (the `change` module's capability): pushed
//! by the store where it can, polled where it cannot. What a waiter costs
//! is on [`WaitOptions`].
//!
//! [`wait_for_tickets`] waits instead until the queue holds a number of
//! tickets (monotone 0.4's bootstrap recipe: every member joins, takes its
//! ticket's counter as its id, and waits for the others). It removes
//! nothing, and reads the queue again only when its token changed (pushed,
//! or polled every [`WaitOptions::max_poll`]) or at its timeout.

use std::time::Duration;

use tokio::time::Instant;

use crate::change::jittered;
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
/// # When a waiter reads, and what it costs
///
/// A waiter reads the queue, and then waits until the first of:
///
/// - a change of the queue's token (a join, a leave, an expiry; not a
///   renewal). On a store that [pushes](Queue::pushes) (memory; SQLite on
///   Linux) the store says so at once, from any process, and the waiter
///   checks the token once more every poll interval in case a notification
///   was lost; on one that cannot (DynamoDB) the waiter reads the token
///   every poll interval, each time a random part between half and all of
///   it so that many waiters do not read in step;
/// - while tickets ahead of it are leased, its next look at them, a random
///   time between half and all of the poll interval: only a read tells a
///   renewed lease from an abandoned one, as renewals change no token;
/// - the moment a watched ticket ahead could expire;
/// - the timeout.
///
/// The poll interval is a quarter of the shortest lease ahead, kept within
/// [`WaitOptions::min_poll`] and [`WaitOptions::max_poll`] (10 ms and 1 s by
/// default); with only permanent tickets ahead it is `max_poll`. So with
/// push, a waiter behind permanent tickets reads the queue only when it
/// changed, however long `max_poll` is, and a hand-over takes what the
/// store's notification takes (a millisecond or so on SQLite).
///
/// On DynamoDB a waiter costs one strongly consistent `GetItem` of the
/// token alone per poll interval (read units are charged by the whole
/// item's size all the same) and one `GetItem` of the queue per change:
/// between 1 and 2 per second with the default `max_poll`, or, behind
/// leases of L seconds under 4 s, up to 4 / L reads of the whole queue per
/// second instead; plus one `GetItem` and one `UpdateItem` per expired
/// ticket it removes. A waiter holding a lease of its own also renews it
/// (see [`LeaseHolder`](crate::LeaseHolder)): 3 / L writes per second.
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

    /// When a waiter must look again after a look at `now` that found
    /// nothing to do, whether or not its item changes: while it watches
    /// leases (`expiry` is when one could expire), a random time between
    /// half and all of `poll` but never past `expiry`; and never past the
    /// `deadline`. `None`: only a change.
    pub(crate) fn next_look(
        poll: Duration,
        now: Instant,
        expiry: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Option<Instant> {
        let look = expiry.map(|expiry| jittered(now, poll).min(expiry.max(now)));
        match (look, deadline) {
            (Some(l), Some(d)) => Some(l.min(d)),
            (l, d) => l.or(d),
        }
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
    let mut announced = false;
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
        let look = WaitOptions::next_look(poll, now, watch.next_expiry(), deadline);
        if !announced {
            // Asked only once there is something to wait for: on SQLite the
            // first question starts the file's watch.
            announced = true;
            tracing::debug!(
                queue = queue.id(),
                process = process_id,
                position = mine.position,
                within,
                changes = if queue.pushes() { "pushed" } else { "polled" },
                "waiting for a place in the queue"
            );
        }
        queue.wait_for_change(all.fencing_token, look, poll).await?;
    }
}

/// Wait until `queue` holds at least `members` tickets, and return them
/// all (with the queue's token when they were read). With `process_id`,
/// the waiter is one of them: it must hold a ticket.
///
/// Fails with [`ErrorKind::InvalidInput`] for `members` 0,
/// [`ErrorKind::NotFound`] if the process holds no ticket (never joined,
/// or its ticket is gone), [`ErrorKind::Timeout`] when
/// [`WaitOptions::timeout`] passes first (`Some(Duration::ZERO)`: looks
/// once), and with the store's error if a read fails. It writes nothing.
pub async fn wait_for_tickets(
    queue: &dyn Queue,
    process_id: Option<&str>,
    members: usize,
    options: &WaitOptions,
) -> Result<Fenced<Vec<Ticket>>> {
    if members == 0 {
        return Err(Error::invalid(
            "the number of tickets to wait for must be at least 1",
        ));
    }
    let started = Instant::now();
    let deadline = options.timeout.map(|t| started + t);
    loop {
        let all = queue.tickets().await?;
        if let Some(pid) = process_id.filter(|p| !all.value.iter().any(|t| t.process_id == *p)) {
            return Err(Error::process_not_found(queue.id(), pid));
        }
        if all.value.len() >= members {
            return Ok(all);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "queue `{}` holds {} of {members} tickets after waiting {:.1}s",
                    queue.id(),
                    all.value.len(),
                    now.duration_since(started).as_secs_f64()
                ),
            ));
        }
        let look = WaitOptions::next_look(options.max_poll, now, None, deadline);
        queue
            .wait_for_change(all.fencing_token, look, options.max_poll)
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::ticket::Tags;
    use crate::store::memory::MemoryStore;
    use crate::store::Store;

    #[tokio::test(start_paused = true)]
    async fn with_push_a_waiter_behind_a_permanent_ticket_leads_at_the_leave() {
        let store = MemoryStore::new();
        let queue: Arc<dyn Queue> = Arc::from(store.queue("q").unwrap());
        queue.join("head", Tags::new()).await.unwrap();
        queue.join("next", Tags::new()).await.unwrap();
        let t0 = Instant::now();
        let leaver = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                queue.leave("head").await.unwrap()
            })
        };
        let hour = Duration::from_secs(3600);
        let options = WaitOptions::new().with_poll(hour, hour);
        let head = wait_for_position(&*queue, "next", 1, &options)
            .await
            .unwrap();
        assert_eq!(Instant::now() - t0, Duration::from_secs(5), "at the leave");
        assert_eq!(head.fencing_token, leaver.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn next_look_is_only_a_deadline_unless_leases_are_watched() {
        let now = Instant::now();
        let poll = Duration::from_secs(1);
        let deadline = now + Duration::from_secs(10);
        assert_eq!(WaitOptions::next_look(poll, now, None, None), None);
        assert_eq!(
            WaitOptions::next_look(poll, now, None, Some(deadline)),
            Some(deadline)
        );
        let expiry = now + Duration::from_millis(300);
        assert_eq!(
            WaitOptions::next_look(poll, now, Some(expiry), Some(deadline)),
            Some(expiry),
            "no later than a watched lease could expire"
        );
        let far = now + Duration::from_secs(60);
        let look = WaitOptions::next_look(poll, now, Some(far), Some(deadline)).unwrap();
        assert!(
            look >= now + poll / 2 && look <= now + poll,
            "within one poll"
        );
    }

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
