/*!
Leases: tickets that expire when their holder stops renewing them.

A ticket joined with a lease ([`Queue::join_leased`]) stays in its queue only
while its holder renews it. Most callers hold one through a
[`LeaseHolder`](crate::LeaseHolder), which renews in the background and says
when the lease can no longer be counted on, and wait for their turn with
[`wait_for_position`](crate::wait_for_position), which also removes the
expired tickets ahead of them. Permanent tickets (joined without a lease, as
in monotone 0.4) never expire.

# The protocol

No step relies on two hosts' wall clocks agreeing. Each process measures
time on its own monotonic clock only, and a removal is a conditional write on
what the remover saw, as in the DynamoDB Lock Client's record version number
scheme:

1. **Join.** The holder notes its monotonic time `s₀` *before* it sends the
   join. The stored ticket carries its lease duration `L` and a renewal count
   (its record version) of 0.
2. **Renew.** Every `L/3` (after a failure, sooner) the holder notes its time
   `s` and sends one write that adds one to the renewal count, conditional on
   the ticket still being its own. Renewing changes neither the fencing token
   nor anything a join or leave of another process is conditional on, so it
   never makes them retry.
3. **Holder's deadline.** After the renewal sent at `s` succeeded, the holder
   counts on its lease until `s + L − L/10` (minus any reserve it asked for,
   see [`HolderOptions`](crate::HolderOptions)). If no later renewal has
   succeeded by then, it considers the lease lost, at once and for good,
   even if a late answer says a renewal went through. A renewal that finds
   the ticket gone or changed loses the lease at once.
4. **Observer.** Any process that wants a ticket gone (a waiter behind it)
   reads the queue. For each leased ticket it remembers the renewal count and
   the monotonic time `o` at which a read that returned that count *came back*
   ([`LeaseWatch`]). Only when a later read shows the same count at a time of
   at least `o + L` may it remove the ticket, with a write conditional on the
   count (and the queue's version) being what it saw: a renewal that lands
   first makes the removal fail and restarts the watch.
5. **Fencing.** Removing an expired ticket is a write like a leave: the
   fencing token grows by one, so whoever becomes head afterwards holds a
   larger token than the removed holder ever saw.

## Why the holder always gives up first

The renewal with count `n` was sent at `s` and applied at some real time
`w ≥ s`. Any read returning count `n` was served after `w`, so an observer's
`o` (taken when that read came back) is at least `s` in real time. The
observer removes no earlier than `L` after `o` on its clock; the holder gives
up `0.9 L` after `s` on its clock. So the holder gives up first as long as
its clock does not run more than 1/0.9 ≈ 11 % slower than the observer's
over one lease. Real clocks differ by a few parts per million, so the rest of
the margin, `L/10` (1.5 s of a 15 s lease), is time for the holder's owner to
notice the loss and stop acting (kill its command, stop writing as leader).

**The assumption**: clock *rates* differ by less than 10 % between hosts, and
a holder that is paused (stopped by a debugger or SIGSTOP, a VM frozen) for
longer than its margin cannot act on its loss in time. Fencing tokens cover
that case: whatever a stale holder writes to carries a smaller token than the
new head's. Clock *offsets* do not matter at all: the wall-clock time stored
with each renewal ([`Lease::renewed_at`]) is shown, never used.

## What an observer costs

A waiter reads the queue once per poll interval (see
[`WaitOptions`](crate::WaitOptions)) and, when a ticket ahead of it has been
seen unrenewed for a full lease, writes once to remove it. A dead holder's
ticket is removed at most one lease plus one poll interval after the holder's
last renewal was first seen, and the waiter sleeps until exactly the moment
that ticket could expire rather than a whole poll past it.
*/

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::queue::{FencingToken, Ticket};

/// The shortest lease a ticket may have.
pub const MIN_LEASE: Duration = Duration::from_millis(50);

/// The longest lease a ticket may have: a ticket that may stay a day without
/// a sign of life is a permanent ticket in all but name.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// The holder counts on its lease for this fraction of it after a renewal
/// was sent (9/10): the other tenth is the safety margin described in the
/// [module docs](self).
pub const HOLDER_SHARE: (u32, u32) = (9, 10);

/// How long after sending its last successful renewal a holder may count on
/// a lease of `lease`: nine tenths of it.
pub fn holder_validity(lease: Duration) -> Duration {
    lease * HOLDER_SHARE.0 / HOLDER_SHARE.1
}

/// The lease of a leased ticket, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// How long the ticket may go without a renewal before an observer may
    /// remove it.
    pub duration: Duration,
    /// How many times the holder renewed the ticket: its record version,
    /// which observers watch.
    pub renewals: u64,
    /// The holder's wall-clock time of its last renewal (or of the join), if
    /// the store keeps it. For display only: no decision depends on it.
    pub renewed_at: Option<SystemTime>,
}

impl Lease {
    /// A lease as stored; mostly useful to backends and tests.
    pub fn new(duration: Duration, renewals: u64, renewed_at: Option<SystemTime>) -> Self {
        Lease {
            duration,
            renewals,
            renewed_at,
        }
    }
}

/// Check a lease duration.
pub(crate) fn validate(lease: Duration) -> Result<()> {
    if lease < MIN_LEASE || lease > MAX_LEASE {
        return Err(Error::invalid(format!(
            "a lease of {} ms is out of range: it must be from {} ms to {} h",
            lease.as_millis(),
            MIN_LEASE.as_millis(),
            MAX_LEASE.as_secs() / 3600
        )));
    }
    Ok(())
}

/// Whole milliseconds of a duration, as stored.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch of a wall-clock time, as stored.
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, millis)
}

/// The wall-clock time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_unix_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A record that may carry a lease and that observers watch: a queue's
/// [`Ticket`], or a claim of a claim pool.
pub trait Leased: Clone {
    /// What identifies the record across reads: the same key with the same
    /// renewal count is the same, unrenewed lease.
    type Key: Eq + Hash + Clone;

    /// This record's key.
    fn lease_key(&self) -> Self::Key;

    /// Its lease; `None` for a permanent record, which never expires.
    fn lease(&self) -> Option<&Lease>;
}

impl Leased for Ticket {
    /// The process and its ticket's counter: a process that left and came
    /// back holds another ticket.
    type Key = (String, u64);

    fn lease_key(&self) -> Self::Key {
        (self.process_id.clone(), self.counter)
    }

    fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }
}

/// Proof that an observer watched a leased record (by default a
/// [`Ticket`]) go unrenewed for a full lease on its own clock: the only way
/// to ask a store to remove another process's ticket
/// ([`Queue::expire`](crate::Queue::expire)) or claim. Made by
/// [`LeaseWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired<T = Ticket> {
    item: T,
    token: FencingToken,
}

impl<T: Leased> Expired<T> {
    /// The record as the observer last saw it, with the lease and renewal
    /// count it watched.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// The renewal count the observer watched.
    pub fn renewals(&self) -> u64 {
        self.item.lease().map_or(0, |l| l.renewals)
    }

    /// The lease the observer watched.
    pub fn duration(&self) -> Duration {
        self.item.lease().map_or(Duration::ZERO, |l| l.duration)
    }

    /// The fencing token in the read that found the record expired. A store
    /// may make its removal conditional on it, to save a read.
    pub fn seen_token(&self) -> FencingToken {
        self.token
    }
}

impl Expired<Ticket> {
    /// The ticket as the observer last saw it.
    pub fn ticket(&self) -> &Ticket {
        &self.item
    }
}

/// What an observer remembers of one leased record.
#[derive(Debug, Clone, Copy)]
struct Watched {
    renewals: u64,
    duration: Duration,
    /// When a read first showed this renewal count (when it came back).
    since: Instant,
}

/// An observer's memory of the leased records (by default [`Ticket`]s) it
/// has seen: step 4 of the [protocol](self).
///
/// Feed it every read with the time the read came back; it returns the
/// records whose renewal count has not changed for at least their lease
/// since this observer first saw that count.
#[derive(Debug)]
pub struct LeaseWatch<T: Leased = Ticket> {
    watched: HashMap<T::Key, Watched>,
}

impl<T: Leased> Default for LeaseWatch<T> {
    fn default() -> Self {
        LeaseWatch {
            watched: HashMap::new(),
        }
    }
}

impl<T: Leased> LeaseWatch<T> {
    /// A watch that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a read of `items` (with the store's `token`) that came back at
    /// `read_at`, and return those of them that expired. Records not in
    /// `items` are forgotten; permanent ones are never returned.
    pub fn observe(
        &mut self,
        items: &[T],
        token: FencingToken,
        read_at: Instant,
    ) -> Vec<Expired<T>> {
        let mut expired = Vec::new();
        let mut still = HashMap::with_capacity(items.len());
        for item in items {
            let Some(lease) = item.lease() else { continue };
            let key = item.lease_key();
            let watched = match self.watched.remove(&key) {
                Some(w) if w.renewals == lease.renewals && w.duration == lease.duration => w,
                // New to us, or renewed since: the full lease starts now.
                _ => Watched {
                    renewals: lease.renewals,
                    duration: lease.duration,
                    since: read_at,
                },
            };
            if read_at.saturating_duration_since(watched.since) >= watched.duration {
                expired.push(Expired {
                    item: item.clone(),
                    token,
                });
            }
            still.insert(key, watched);
        }
        self.watched = still;
        expired
    }

    /// The earliest time at which a read could find one of the watched
    /// records expired, if any is watched.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.watched.values().map(|w| w.since + w.duration).min()
    }

    /// How many leased records are being watched.
    pub fn len(&self) -> usize {
        self.watched.len()
    }

    /// Whether no leased record is being watched.
    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Tags;

    fn leased(pid: &str, counter: u64, ms: u64, renewals: u64) -> Ticket {
        Ticket::new(pid, counter, 0, Tags::new()).with_lease(Some(Lease::new(
            Duration::from_millis(ms),
            renewals,
            None,
        )))
    }

    fn names(e: &[Expired]) -> Vec<&str> {
        e.iter().map(|e| e.ticket().process_id.as_str()).collect()
    }

    #[test]
    fn a_ticket_expires_only_after_a_full_lease_seen_unchanged() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = LeaseWatch::new();
        let a = leased("a", 1, 300, 0);
        assert!(w
            .observe(std::slice::from_ref(&a), FencingToken(1), t0)
            .is_empty());
        assert_eq!(w.next_expiry(), Some(t0 + ms(300)));
        assert!(w
            .observe(std::slice::from_ref(&a), FencingToken(1), t0 + ms(299))
            .is_empty());
        let e = w.observe(std::slice::from_ref(&a), FencingToken(2), t0 + ms(300));
        assert_eq!(names(&e), ["a"]);
        assert_eq!(e[0].renewals(), 0);
        assert_eq!(e[0].seen_token(), FencingToken(2));
    }

    #[test]
    fn a_renewal_restarts_the_watch() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = LeaseWatch::new();
        w.observe(&[leased("a", 1, 300, 0)], FencingToken(1), t0);
        // Renewed: seen with count 1 at 250 ms, so it may expire at 550 ms.
        assert!(w
            .observe(&[leased("a", 1, 300, 1)], FencingToken(1), t0 + ms(250))
            .is_empty());
        assert!(w
            .observe(&[leased("a", 1, 300, 1)], FencingToken(1), t0 + ms(549))
            .is_empty());
        let e = w.observe(&[leased("a", 1, 300, 1)], FencingToken(1), t0 + ms(550));
        assert_eq!(e[0].renewals(), 1);
    }

    #[test]
    fn the_wall_clock_and_old_tickets_do_not_shorten_the_watch() {
        // A ticket renewed "long ago" by its wall clock is still watched for
        // a full lease from the first time this observer saw it.
        let t0 = Instant::now();
        let mut w = LeaseWatch::new();
        let mut old = leased("old", 1, 100, 7);
        old.lease.as_mut().unwrap().renewed_at = Some(SystemTime::UNIX_EPOCH);
        assert!(w.observe(&[old.clone()], FencingToken(9), t0).is_empty());
        assert!(w
            .observe(&[old], FencingToken(9), t0 + Duration::from_millis(99))
            .is_empty());
    }

    #[test]
    fn permanent_tickets_never_expire_and_gone_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut w = LeaseWatch::new();
        let p = Ticket::new("p", 1, 0, Tags::new());
        let a = leased("a", 2, 100, 0);
        w.observe(&[p.clone(), a], FencingToken(2), t0);
        assert_eq!(w.len(), 1);
        // `a` left and came back with a new counter: a new ticket, watched
        // from scratch.
        let later = t0 + Duration::from_secs(10);
        let back = leased("a", 3, 100, 0);
        assert!(w
            .observe(&[p.clone(), back.clone()], FencingToken(4), later)
            .is_empty());
        assert_eq!(w.len(), 1);
        let e = w.observe(
            &[p, back],
            FencingToken(4),
            later + Duration::from_millis(100),
        );
        assert_eq!(names(&e), ["a"]);
        assert_eq!(e[0].ticket().counter, 3);
    }

    #[test]
    fn lease_bounds() {
        assert!(validate(MIN_LEASE).is_ok());
        assert!(validate(MAX_LEASE).is_ok());
        let e = validate(Duration::from_millis(49)).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(validate(MAX_LEASE + Duration::from_millis(1)).is_err());
        assert_eq!(
            holder_validity(Duration::from_secs(15)),
            Duration::from_millis(13_500)
        );
    }
}
