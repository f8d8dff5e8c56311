//! The [`Queue`] trait, its [`Ticket`]s and [`FencingToken`], and its contract.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::Result;
use crate::lease::{Expired, Lease};

/// Free-form labels a process attaches to its ticket when it joins, ordered
/// by key (for example `role=zk`, `az=eu-west-1a`).
pub type Tags = BTreeMap<String, String>;

/// A number that grows by exactly one with every write to a queue.
///
/// Every queue operation returns the token of the state it saw or wrote. Hand
/// it to other systems along with any decision taken from the queue (who
/// leads, who is next): they can refuse a request carrying a token smaller
/// than one they have already seen, because it was taken from a stale view.
///
/// A queue that does not exist has the token 0.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A process's place in a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ticket {
    /// The process that joined.
    pub process_id: String,
    /// The queue's counter when this process joined: 1 for the first ticket
    /// of a new queue, growing with every join, never reused while the queue
    /// exists.
    pub counter: u64,
    /// Index of this ticket among the queue's tickets ordered by counter;
    /// 0 is the head of the queue.
    pub position: usize,
    /// The tags given when the process joined.
    pub tags: Tags,
    /// The ticket's lease, or `None` for a permanent ticket (one joined
    /// without a lease, as every ticket of monotone 0.4).
    pub lease: Option<Lease>,
}

impl Ticket {
    /// A permanent ticket; mostly useful to backends and tests.
    pub fn new(process_id: impl Into<String>, counter: u64, position: usize, tags: Tags) -> Self {
        Ticket {
            process_id: process_id.into(),
            counter,
            position,
            tags,
            lease: None,
        }
    }

    /// The same ticket with `lease`.
    pub fn with_lease(mut self, lease: Option<Lease>) -> Self {
        self.lease = lease;
        self
    }
}

/// A result together with the fencing token of the queue state it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fenced<T> {
    /// The result itself.
    pub value: T,
    /// The queue's token when the result was read or written.
    pub fencing_token: FencingToken,
}

impl<T> Fenced<T> {
    /// Pair a value with a token.
    pub fn new(value: T, fencing_token: FencingToken) -> Self {
        Fenced {
            value,
            fencing_token,
        }
    }
}

/// What [`Queue::join_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Joined {
    /// The process's ticket, and the token after the join.
    pub ticket: Fenced<Ticket>,
    /// Whether this call added the ticket; `false` if the process was in
    /// the queue already, in which case nothing was written and the ticket
    /// is the existing one.
    pub added: bool,
    /// When the write that added the ticket was sent, on this process's
    /// monotonic clock (at or before the moment the ticket came to exist):
    /// a leased ticket's holder counts its lease from here, not from the
    /// start of a join that may have retried for a while.
    pub written_at: Option<Instant>,
}

impl Joined {
    /// What a join did; mostly useful to backends.
    pub fn new(ticket: Fenced<Ticket>, added: bool) -> Self {
        Joined {
            ticket,
            added,
            written_at: None,
        }
    }

    /// A join that added `ticket` with a write sent at `at`.
    pub fn written(ticket: Fenced<Ticket>, at: Instant) -> Self {
        Joined {
            ticket,
            added: true,
            written_at: Some(at),
        }
    }
}

/// An ordered queue of process ids, stored under one id, whose every write
/// yields a new [`FencingToken`].
///
/// Obtain one from [`Store::queue`](crate::Store::queue); the handle is cheap
/// and holds no lock.
///
/// # Contract
///
/// Every backend upholds these, and the conformance suite checks them:
///
/// - Each operation is atomic and linearizable across every process and host
///   using the same store; no ticket or write is ever lost or duplicated.
/// - A queue that does not exist has no tickets and the fencing token 0.
/// - The first ticket of a new queue gets counter 1, and the fencing token
///   becomes 1. Every later write (a join or a leave) adds exactly 1 to the
///   token; reads return it unchanged.
/// - Tickets are ordered by counter, ascending; a ticket's `position` is its
///   index in that order.
/// - [`join`](Queue::join) is idempotent: joining again returns the existing
///   ticket (with its original tags) and the current token, and writes
///   nothing.
/// - [`leave`](Queue::leave) of a process that is not in the queue, or on a
///   queue that does not exist, fails with
///   [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) and writes nothing.
///   Leaving keeps the queue (empty, if it was the last ticket), so its token
///   keeps growing.
/// - If the id holds a counter, every method fails with
///   [`ErrorKind::WrongType`](crate::ErrorKind::WrongType) and changes nothing.
/// - A successful write is durable in its store before it returns.
/// - [`remove`](Queue::remove) deletes the queue, tickets and token together;
///   a queue created again under the same id starts over at token 1.
///
/// ## Leases
///
/// The protocol is described in the [`lease`](crate::lease) module; the
/// store's part of it:
///
/// - A ticket joined with a lease ([`join_leased`](Queue::join_leased)) carries
///   it in [`Ticket::lease`], with 0 renewals; a ticket joined without one is
///   permanent and never expires. Joining again returns the existing ticket,
///   leased or not, unchanged.
/// - [`renew`](Queue::renew) adds one to the lease's `renewals` (its record
///   version) and writes nothing else: the fencing token stays, and no other
///   process's join or leave has to retry because of it. It fails with
///   [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) if the process no
///   longer holds that ticket (it expired and was removed, or left) or the
///   ticket has no lease.
/// - [`expire`](Queue::expire) removes a ticket only if it is exactly as an
///   [`Expired`] observation saw it: same counter, same renewals. It is a
///   write like a leave: the token grows by one. A renewal that came first
///   wins, and the ticket stays.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// The id this queue is stored under.
    fn id(&self) -> &str;

    /// Add `process_id` at the back of the queue, with a lease of the given
    /// duration or (`None`) a permanent ticket, or return its existing ticket
    /// if it is already in the queue. A lease must be from
    /// [`MIN_LEASE`](crate::lease::MIN_LEASE) to
    /// [`MAX_LEASE`](crate::lease::MAX_LEASE).
    async fn join_with(
        &self,
        process_id: &str,
        tags: Tags,
        lease: Option<Duration>,
    ) -> Result<Joined>;

    /// Add `process_id` at the back of the queue with a permanent ticket, or
    /// return its existing ticket if it is already in the queue.
    async fn join(&self, process_id: &str, tags: Tags) -> Result<Fenced<Ticket>> {
        Ok(self.join_with(process_id, tags, None).await?.ticket)
    }

    /// Add `process_id` at the back of the queue with a ticket that expires
    /// unless renewed within `lease`, or return its existing ticket. Most
    /// callers want a [`LeaseHolder`](crate::LeaseHolder), which joins this
    /// way and renews in the background.
    async fn join_leased(
        &self,
        process_id: &str,
        tags: Tags,
        lease: Duration,
    ) -> Result<Fenced<Ticket>> {
        Ok(self.join_with(process_id, tags, Some(lease)).await?.ticket)
    }

    /// Renew the lease of `process_id`'s ticket numbered `counter`: one
    /// write that leaves the fencing token as it is. Returns the ticket with
    /// its renewed lease.
    async fn renew(&self, process_id: &str, counter: u64) -> Result<Fenced<Ticket>>;

    /// Remove the ticket an observer watched go unrenewed for a full lease,
    /// if it is still exactly as observed. Returns the new token, or `None`
    /// if the ticket changed (renewed, left, re-joined) or is gone.
    async fn expire(&self, expired: &Expired) -> Result<Option<FencingToken>>;

    /// Take `process_id` out of the queue; returns the new token.
    async fn leave(&self, process_id: &str) -> Result<FencingToken>;

    /// The ticket of `process_id`; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound)
    /// if it is not in the queue.
    async fn ticket(&self, process_id: &str) -> Result<Fenced<Ticket>>;

    /// Every ticket, ordered by counter.
    async fn tickets(&self) -> Result<Fenced<Vec<Ticket>>>;

    /// Delete the queue. Returns the token it had, or `None` if there was no
    /// queue under this id (which is not an error).
    async fn remove(&self) -> Result<Option<FencingToken>>;
}
