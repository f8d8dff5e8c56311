//! Queues: the [`Queue`] trait and its contract (here), and beside it
//!
//! - `fencing.rs`: [`FencingToken`] and [`Fenced`], which every primitive
//!   shares;
//! - `ticket.rs`: [`Ticket`], [`Tags`], [`JoinRequest`], [`Joined`];
//! - `state.rs`: a queue's whole state as one value and the rules that
//!   change it, written once and applied by every store;
//! - `wait.rs`: waiting for a place among the first N
//!   ([`wait_for_position`](crate::wait_for_position),
//!   [`WaitOptions`](crate::WaitOptions));
//! - `holder.rs`: [`LeaseHolder`](crate::LeaseHolder), a leased ticket
//!   renewed in the background.
//!
//! Leases, and why removing an expired ticket is safe, are in
//! [`lease`](crate::lease); each store's queue is in `store/`.

pub(crate) mod fencing;
pub(crate) mod holder;
pub(crate) mod state;
pub(crate) mod ticket;
pub(crate) mod wait;

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::change::poll_for_change;
use crate::error::Result;
use crate::lease::alive::KeepAlive;
use crate::lease::expiry::Expired;
use crate::lease::holder_id::HolderId;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::ticket::{JoinRequest, Joined, Tags, Ticket};

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
/// - A join of a process that is in the queue already writes nothing, and
///   follows one rule (written once, in `lease/again.rs`):
///   - a join without a holder ([`join`](Queue::join), `queue join`) that
///     asks for the ticket there (the same tags; the same lease duration,
///     or permanent both) gets it back with the current token: joining
///     again is idempotent, as in monotone 0.4 (a rebooted host gets its
///     ticket back), even when a holder made the ticket. One that asks for
///     anything else (other tags, another lease, a lease where the ticket
///     is permanent or the reverse) fails with
///     [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch), naming what
///     differs: leave first to join anew;
///   - a join by a holder ([`JoinRequest::holder`], as a
///     [`LeaseHolder`](crate::LeaseHolder) joins) gets the ticket only if
///     that holder made it (the same request sent again); a leased ticket
///     that another holder, or a join without a holder, made fails with
///     [`ErrorKind::Held`](crate::ErrorKind::Held): a holder never shares
///     a ticket with another, it waits for it to go (see
///     [`LeaseHolder::join_waiting`](crate::LeaseHolder::join_waiting)). A
///     permanent ticket, which never expires, fails with
///     [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch).
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
///   it in [`Ticket::lease`], with 0 renewals and the holder that joined
///   ([`Lease::holder`](crate::Lease::holder)); a ticket joined without one
///   is permanent and never expires.
/// - [`leave_if`](Queue::leave_if) with a counter takes the ticket out only
///   if it is that one, so that a holder that lost its lease never removes
///   the ticket of the holder after it: counters are never reused while the
///   queue exists.
/// - [`renew`](Queue::renew) adds one to the lease's `renewals` (its record
///   version) and writes nothing else: the fencing token stays, and no other
///   process's join or leave has to retry because of it. It fails with
///   [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) if the process no
///   longer holds that ticket (it expired and was removed, or left) or the
///   ticket has no lease.
/// - [`renew_and_read`](Queue::renew_and_read) does what `renew` does and
///   returns, beside the renewed ticket, exactly what
///   [`tickets`](Queue::tickets) would return right after it (the same
///   tickets with the same renewal counts, and the same token).
/// - [`expire`](Queue::expire) removes a ticket only if it is exactly as an
///   [`Expired`] observation saw it: same counter, same renewals. It is a
///   write like a leave: the token grows by one. A renewal that came first
///   wins, and the ticket stays.
///
/// ## Waiting for a change
///
/// - [`token`](Queue::token) is the token [`tickets`](Queue::tickets) would
///   return, read as cheaply as the store can.
/// - [`wait_for_change`](Queue::wait_for_change) returns `true` once the
///   token is not the one seen (at once if it is not already), `false` once
///   `until` passes with no change; a renewal is no change. On a store that
///   [`pushes`](Queue::pushes), it returns promptly after a write by any
///   handle or process, however long `poll` is. The protocol is described
///   in the `change` module's docs, summed up on
///   [`wait_for_position`](crate::wait_for_position).
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// The id this queue is stored under.
    fn id(&self) -> &str;

    /// Add `process_id` at the back of the queue with the tags, lease and
    /// holder of `request`, or, if it is in the queue already, apply the
    /// re-join rule of the [contract](Queue): its ticket, or
    /// [`ErrorKind::Held`](crate::ErrorKind::Held) or
    /// [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch) without a write.
    /// A lease must be from [`MIN_LEASE`](crate::lease::MIN_LEASE) to
    /// [`MAX_LEASE`](crate::lease::MAX_LEASE); a holder needs one.
    async fn join_as(&self, process_id: &str, request: &JoinRequest) -> Result<Joined>;

    /// [`join_as`](Queue::join_as) without a holder: add `process_id` with
    /// a lease of the given duration or (`None`) a permanent ticket, or
    /// return its ticket if it is that one.
    async fn join_with(
        &self,
        process_id: &str,
        tags: Tags,
        lease: Option<Duration>,
    ) -> Result<Joined> {
        let request = JoinRequest::new().with_tags(tags).with_lease(lease);
        self.join_as(process_id, &request).await
    }

    /// Add `process_id` at the back of the queue with a permanent ticket, or
    /// return its ticket if it is that one (the same tags, permanent).
    async fn join(&self, process_id: &str, tags: Tags) -> Result<Fenced<Ticket>> {
        Ok(self.join_with(process_id, tags, None).await?.ticket)
    }

    /// Add `process_id` at the back of the queue with a ticket that expires
    /// unless renewed within `lease`, or return its ticket if it is that
    /// one. Most callers want a [`LeaseHolder`](crate::LeaseHolder), which
    /// joins with a holder and renews in the background.
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

    /// [`renew`](Queue::renew), and every ticket of the queue as the renewal
    /// left it, with the queue's token: what a holder reads to reap the
    /// dead (see [the living reap the dead](crate::lease#the-living-reap-the-dead)).
    /// The same errors as `renew`. The default renews, then reads
    /// [`tickets`](Queue::tickets) (two requests); stores read the queue
    /// with the renewal where they can, at no extra request.
    async fn renew_and_read(
        &self,
        process_id: &str,
        counter: u64,
    ) -> Result<(Fenced<Ticket>, Fenced<Vec<Ticket>>)> {
        let renewed = self.renew(process_id, counter).await?;
        Ok((renewed, self.tickets().await?))
    }

    /// Remove the ticket an observer watched go unrenewed for a full lease,
    /// if it is still exactly as observed. Returns the new token, or `None`
    /// if the ticket changed (renewed, left, re-joined) or is gone.
    async fn expire(&self, expired: &Expired) -> Result<Option<FencingToken>>;

    /// Take `process_id`'s ticket out of the queue: whichever it holds
    /// (`counter` `None`), or only the ticket numbered `counter`
    /// ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound) otherwise, and
    /// nothing is written). Returns the new token.
    async fn leave_if(&self, process_id: &str, counter: Option<u64>) -> Result<FencingToken>;

    /// Take `process_id` out of the queue, whichever ticket it holds;
    /// returns the new token.
    async fn leave(&self, process_id: &str) -> Result<FencingToken> {
        self.leave_if(process_id, None).await
    }

    /// The ticket of `process_id`; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound)
    /// if it is not in the queue.
    async fn ticket(&self, process_id: &str) -> Result<Fenced<Ticket>>;

    /// Every ticket, ordered by counter.
    async fn tickets(&self) -> Result<Fenced<Vec<Ticket>>>;

    /// Delete the queue. Returns the token it had, or `None` if there was no
    /// queue under this id (which is not an error).
    async fn remove(&self) -> Result<Option<FencingToken>>;

    /// The queue's fencing token now (0 for an absent queue): what a waiter
    /// checks. The default reads every ticket; stores read the token alone.
    async fn token(&self) -> Result<FencingToken> {
        Ok(self.tickets().await?.fencing_token)
    }

    /// Take the kernel's sign of life of `holder` before it writes its
    /// ticket, where the store has kernel liveness (SQLite on Linux; see the
    /// [protocol](crate::lease)): keep it for as long as the ticket lives;
    /// `None` where the store has none (the lease rules alone apply). A
    /// store that has it removes the tickets of holders it finds gone when
    /// it reads them for a waiter, a claimer or a list.
    fn keep_alive(&self, holder: HolderId) -> Result<Option<KeepAlive>> {
        let _ = holder;
        Ok(None)
    }

    /// Whether this handle is told of changes by its store (push), rather
    /// than finding them by reading the token every `poll` of
    /// [`wait_for_change`](Queue::wait_for_change).
    fn pushes(&self) -> bool {
        false
    }

    /// Wait until the queue's token is no longer `seen` (`true`; it may
    /// also return `true` when nothing changed, so read the queue again) or
    /// until `until` passes (`false`; `None` waits for ever). A store that
    /// [`pushes`](Queue::pushes) returns at the first change and reads the
    /// token again every `poll` in case a notification was lost; the
    /// default reads it every `poll` (between half and all of it, the first
    /// time one poll from now).
    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        poll_for_change(seen.get(), until, poll, || async {
            Ok(self.token().await?.get())
        })
        .await
    }
}
