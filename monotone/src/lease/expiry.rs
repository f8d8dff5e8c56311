//! The observer's part of the [protocol](crate::lease) (step 4): the
//! records that may carry a lease ([`Leased`]), an observer's memory of them
//! ([`LeaseWatch`]), and its proof that one expired ([`Expired`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use crate::lease::record::Lease;
use crate::queue::fencing::FencingToken;
use crate::queue::ticket::Ticket;

/// A record that may carry a lease and that observers watch: a queue's
/// [`Ticket`], or a claim of a claim pool.
pub trait Leased: Clone {
    /// What identifies the record across reads: the same key with the same
    /// renewal count is the same, unrenewed lease.
    type Key: Eq + Hash + Clone + Send + Sync + std::fmt::Debug;

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
    /// Proof that `item`, read with the store's `token`, is the record of
    /// a holder the kernel knows is gone (the SQLite store's kernel
    /// liveness, see the [protocol](crate::lease)): it may be removed at
    /// once, if it is still as read.
    pub(crate) fn dead(item: T, token: FencingToken) -> Self {
        Expired { item, token }
    }

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
/// has seen: step 4 of the [protocol](crate::lease).
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
    use std::time::SystemTime;

    use super::*;
    use crate::queue::ticket::Tags;

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
}
