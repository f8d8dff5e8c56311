//! [`LeaseHolder`]: a leased ticket that renews itself in the background and
//! says at once when it can no longer be counted on.
//!
//! The holder makes a random [`HolderId`] and joins with it (counting its
//! lease from when the write that added its ticket was sent). If another
//! holder holds the ticket of its process id, it waits its turn (see
//! `lease/turn.rs`): it never shares a ticket with another holder. Then it
//! hands the ticket to the one holder of leased records, [`Held`] (in
//! `lease/held.rs`, shared with claims), which renews it and plays the
//! holder's part of the [`lease`](crate::lease) protocol: an owner that stops
//! acting on the lease when told is done strictly before any observer may
//! remove the ticket. What is particular to a ticket is here: joining, and
//! how a ticket is renewed and given back ([`Queue::renew`],
//! [`Queue::leave_if`]): by its counter, so that a holder whose ticket
//! expired never renews or removes the ticket of the holder after it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::alive::KeepAlive;
use crate::lease::expiry::Expired;
use crate::lease::held::{check_lease, Held, Hold};
use crate::lease::holder_id::HolderId;
use crate::lease::keeper::{HolderOptions, LeaseStatus, Renew};
use crate::lease::turn::{wait_turn, Turn};
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::ticket::{JoinRequest, Joined, Tags, Ticket};
use crate::queue::wait::{wait_for_position, WaitOptions};
use crate::queue::Queue;

/// A leased ticket, renewed in the background while this value lives.
///
/// Get one with [`LeaseHolder::join`] (or [`join_waiting`](Self::join_waiting),
/// which waits while another holder holds the ticket of the process id).
/// Two holders never hold one ticket: each has its own [`HolderId`],
/// stored with the ticket's lease. Watch [`lost`](Self::lost) (or
/// [`status`](Self::status)) and stop acting on the lease when it says so;
/// give the ticket back with [`release`](Self::release). Dropping the holder
/// stops the renewals and leaves the queue in the background, on a best
/// effort basis (the leave needs a running Tokio runtime; if it cannot run,
/// the ticket expires after one observed lease instead).
pub struct LeaseHolder {
    joined: Fenced<Ticket>,
    held: Held<HeldTicket>,
}

/// One ticket, as its holder renews and leaves it.
struct HeldTicket {
    queue: Arc<dyn Queue>,
    process_id: String,
    counter: u64,
    holder: HolderId,
    /// The kernel's sign of life of the holder, where the store keeps one:
    /// dropped with the record, after its release.
    alive: Option<KeepAlive>,
}

#[async_trait]
impl Renew for HeldTicket {
    type Item = Ticket;

    async fn renew(&self) -> Result<Fenced<Vec<Ticket>>> {
        let (_, all) = self
            .queue
            .renew_and_read(&self.process_id, self.counter)
            .await?;
        Ok(all)
    }

    fn is_own(&self, ticket: &Ticket) -> bool {
        ticket.process_id == self.process_id && ticket.counter == self.counter
    }

    async fn expire(&self, expired: &Expired<Ticket>) -> Result<Option<FencingToken>> {
        self.queue.expire(expired).await
    }

    fn what(&self) -> String {
        format!(
            "process `{}` in queue `{}`",
            self.process_id,
            self.queue.id()
        )
    }
}

#[async_trait]
impl Hold for HeldTicket {
    /// Only this holder's ticket: if it expired and another holder joined
    /// under the same process id since, that ticket stays.
    async fn release(&self) -> Result<FencingToken> {
        self.queue
            .leave_if(&self.process_id, Some(self.counter))
            .await
    }
}

/// A holder's join, as it waits its turn (see `lease/turn.rs`): the join,
/// and the process's ticket when another holder's is in the way.
struct Joining<'a> {
    queue: &'a dyn Queue,
    process_id: &'a str,
    request: JoinRequest,
}

#[async_trait]
impl Turn for Joining<'_> {
    type Item = Ticket;
    /// What the join did, and when it was sent.
    type Made = (Joined, Instant);

    async fn make(&self, _: Option<Instant>) -> Result<(Joined, Instant)> {
        let sent = Instant::now();
        let joined = self.queue.join_as(self.process_id, &self.request).await?;
        Ok((joined, sent))
    }

    async fn in_the_way(&self) -> Result<Option<Fenced<Ticket>>> {
        match self.queue.ticket(self.process_id).await {
            Ok(ticket) => Ok(Some(ticket)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn expire(&self, expired: &Expired<Ticket>) -> Result<Option<FencingToken>> {
        self.queue.expire(expired).await
    }

    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        self.queue.wait_for_change(seen, until, poll).await
    }

    fn pushes(&self) -> bool {
        self.queue.pushes()
    }

    fn what(&self) -> String {
        format!(
            "the ticket of process `{}` in queue `{}`",
            self.process_id,
            self.queue.id()
        )
    }
}

impl fmt::Debug for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseHolder")
            .field("queue", &self.queue().id())
            .field("ticket", &self.joined.value)
            .field("status", &self.held.status())
            .finish_non_exhaustive()
    }
}

impl LeaseHolder {
    /// Join `queue` as `process_id` with a lease of `lease` and start
    /// renewing it; without waiting: if another holder (or a join without a
    /// holder) holds a leased ticket of `process_id`, fail at once with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout). See
    /// [`join_waiting`](Self::join_waiting).
    pub async fn join(
        queue: Arc<dyn Queue>,
        process_id: &str,
        tags: Tags,
        lease: Duration,
        options: HolderOptions,
    ) -> Result<LeaseHolder> {
        let once = WaitOptions::new().with_timeout(Some(Duration::ZERO));
        Self::join_waiting(queue, process_id, tags, lease, options, &once).await
    }

    /// Join `queue` as `process_id` with a lease of `lease`, as a holder of
    /// its own (a new random [`HolderId`]), and start renewing it.
    ///
    /// While another holder, or a join without a holder, holds a leased
    /// ticket of `process_id`, wait for it to go, up to `wait`'s timeout
    /// ([`ErrorKind::Timeout`](crate::ErrorKind::Timeout) after it): until
    /// it leaves, or until this process has watched it go unrenewed for a
    /// full lease and removed it (the [`lease`](crate::lease) protocol).
    /// Then join: this holder never holds a ticket at the same time as
    /// another. A permanent ticket of `process_id` never expires: that is an
    /// [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch) error at once
    /// (leave the queue first); a lease out of range and options that leave
    /// no time to renew are
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) errors.
    ///
    /// The lease is counted from when the write that added the ticket was
    /// sent ([`Joined::written_at`]). If the join finds this holder's own
    /// ticket (a request sent again after a lost answer), that ticket is
    /// renewed once first and then held.
    pub async fn join_waiting(
        queue: Arc<dyn Queue>,
        process_id: &str,
        tags: Tags,
        lease: Duration,
        options: HolderOptions,
        wait: &WaitOptions,
    ) -> Result<LeaseHolder> {
        check_lease(lease, &options)?;
        let holder = HolderId::random();
        // Before the join: a ticket without its sign of life would be
        // taken for a dead holder's.
        let alive = queue.keep_alive(holder)?;
        let joining = Joining {
            queue: &*queue,
            process_id,
            request: JoinRequest::new()
                .with_tags(tags)
                .with_lease(Some(lease))
                .held_by(holder),
        };
        let (joined, sent) = wait_turn(&joining, wait).await?;
        let (joined, since) = if joined.added {
            let since = joined.written_at.unwrap_or(sent);
            (joined.ticket, since)
        } else {
            let sent = Instant::now();
            let renewed = queue.renew(process_id, joined.ticket.value.counter).await?;
            (renewed, sent)
        };
        let ticket = HeldTicket {
            queue: Arc::clone(&queue),
            process_id: joined.value.process_id.clone(),
            counter: joined.value.counter,
            holder,
            alive,
        };
        let held = Held::start(ticket, lease, &options, since);
        Ok(LeaseHolder { joined, held })
    }

    /// This holder's id, stored with its ticket's lease.
    pub fn holder(&self) -> HolderId {
        self.held.record().holder
    }

    /// The kernel's sign of life of this holder, where the store keeps one
    /// (see [`KeepAlive`]).
    pub fn keep_alive(&self) -> Option<&KeepAlive> {
        self.held.record().alive.as_ref()
    }

    /// The ticket and token as joined.
    pub fn joined(&self) -> &Fenced<Ticket> {
        &self.joined
    }

    /// The held ticket's process id.
    pub fn process_id(&self) -> &str {
        &self.joined.value.process_id
    }

    /// The lease's duration, as stored.
    pub fn lease(&self) -> Duration {
        self.held.lease()
    }

    /// The queue the ticket is in.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.held.record().queue
    }

    /// The current status. Checks the deadline itself, so it is right even
    /// if the renewing task has not run for a while.
    pub fn status(&self) -> LeaseStatus {
        self.held.status()
    }

    /// A receiver that sees every change of status, to select on.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.held.watch()
    }

    /// Whether the lease may be counted on now.
    pub fn is_held(&self) -> bool {
        self.held.is_held()
    }

    /// Complete when the lease is lost, with the reason as an
    /// [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) error.
    /// Cancel-safe: select on it.
    pub async fn lost(&self) -> Error {
        self.held.lost().await
    }

    /// Wait until the held ticket is among the first `within` of its queue
    /// (see [`wait_for_position`]), or fail with
    /// [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) as soon as the
    /// lease is lost.
    pub async fn wait_for_position(
        &self,
        within: usize,
        options: &WaitOptions,
    ) -> Result<Fenced<Ticket>> {
        tokio::select! {
            got = wait_for_position(&**self.queue(), self.process_id(), within, options) => {
                let got = got?;
                // The answer counts only if the lease still held when it came.
                if self.is_held() { Ok(got) } else { Err(self.lost().await) }
            }
            e = self.lost() => Err(e),
        }
    }

    /// Stop renewing and leave the queue. Returns the token of the leave,
    /// or `None` if the ticket was gone already (it expired and was removed).
    pub async fn release(mut self) -> Result<Option<FencingToken>> {
        self.held.release().await
    }
}

impl Drop for LeaseHolder {
    /// Stops the renewals and leaves the queue in the background (see
    /// [`LeaseHolder`]), as the one holder core does for every leased record.
    fn drop(&mut self) {
        self.held.let_go();
    }
}
