//! [`LeaseHolder`]: a leased ticket that renews itself in the background and
//! says at once when it can no longer be counted on.
//!
//! The holder joins (counting its lease from when the write that added its
//! ticket was sent) and hands the ticket to the one holder of leased records,
//! [`Held`] (in `lease/held.rs`, shared with claims), which renews it and
//! plays the holder's part of the [`lease`](crate::lease) protocol: an owner
//! that stops acting on the lease when told is done strictly before any
//! observer may remove the ticket. What is particular to a ticket is here:
//! joining, and how a ticket is renewed ([`Queue::renew`]) and given back
//! ([`Queue::leave`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::lease::held::{check_lease, Held, Hold};
use crate::lease::keeper::{HolderOptions, LeaseStatus, Renew};
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::ticket::{Tags, Ticket};
use crate::queue::wait::{wait_for_position, WaitOptions};
use crate::queue::Queue;

/// A leased ticket, renewed in the background while this value lives.
///
/// Get one with [`LeaseHolder::join`]. Watch [`lost`](Self::lost) (or
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
}

#[async_trait]
impl Renew for HeldTicket {
    async fn renew(&self) -> Result<()> {
        self.queue
            .renew(&self.process_id, self.counter)
            .await
            .map(|_| ())
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
    async fn release(&self) -> Result<FencingToken> {
        self.queue.leave(&self.process_id).await
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
    /// renewing it.
    ///
    /// The lease is counted from when the write that added the ticket was
    /// sent ([`Joined::written_at`](crate::Joined::written_at)). If the
    /// process is in the queue already with a leased ticket, that ticket is
    /// renewed once first (its last renewal may be old) and then held; a
    /// permanent ticket cannot be held and is an
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error, as
    /// are a lease out of range and options that leave no time to renew.
    pub async fn join(
        queue: Arc<dyn Queue>,
        process_id: &str,
        tags: Tags,
        lease: Duration,
        options: HolderOptions,
    ) -> Result<LeaseHolder> {
        check_lease(lease, &options)?;
        let sent = Instant::now();
        let joined = queue.join_with(process_id, tags, Some(lease)).await?;
        let (joined, since) = match &joined.ticket.value.lease {
            None => {
                return Err(Error::invalid(format!(
                    "process `{process_id}` holds a permanent ticket in queue `{}`; \
                     leave the queue before joining it with a lease",
                    queue.id()
                )))
            }
            Some(_) if joined.added => (joined.ticket, joined.written_at.unwrap_or(sent)),
            Some(_) => {
                let sent = Instant::now();
                let renewed = queue.renew(process_id, joined.ticket.value.counter).await?;
                (renewed, sent)
            }
        };
        // The lease actually stored: a re-join keeps the original one.
        let lease = joined.value.lease.as_ref().map_or(lease, |l| l.duration);
        options.check(lease)?;
        let ticket = HeldTicket {
            queue,
            process_id: joined.value.process_id.clone(),
            counter: joined.value.counter,
        };
        let held = Held::start(ticket, lease, &options, since);
        Ok(LeaseHolder { joined, held })
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
