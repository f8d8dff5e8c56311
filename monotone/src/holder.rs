//! [`LeaseHolder`]: a leased ticket that renews itself in the background and
//! says at once when it can no longer be counted on.
//!
//! The holder plays the holder's part of the [`lease`](crate::lease)
//! protocol: it notes its monotonic time before each join or renewal it
//! sends, renews every third of the lease (sooner after a failure), and
//! counts on its lease only until [`holder_validity`] (nine tenths of the
//! lease) after the send time of its last successful renewal, minus the
//! [`reserve`](HolderOptions::reserve) its owner asked for. Then, or as soon
//! as a renewal finds the ticket gone, the lease is lost for good: the
//! status turns to [`LeaseStatus::Lost`] and [`LeaseHolder::lost`] completes.
//! An owner that stops acting on the lease when told is therefore done
//! strictly before any observer may remove the ticket.
//!
//! A renewal is one write; its request races the deadline, so a store that
//! stops answering cannot hold the loss back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::debug;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::{self, holder_validity};
use crate::queue::{Fenced, FencingToken, Queue, Tags, Ticket};
use crate::wait::{wait_for_position, WaitOptions};

/// How a [`LeaseHolder`] renews and when it gives up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HolderOptions {
    /// Time between renewals; `None`: a third of the lease.
    pub renew_every: Option<Duration>,
    /// Give up this much earlier than the holder's own deadline, to leave the
    /// owner time to stop acting (for example to kill a command and wait for
    /// it) before any observer may remove the ticket.
    pub reserve: Duration,
}

impl HolderOptions {
    /// Renew every third of the lease, reserve nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set [`renew_every`](Self::renew_every).
    pub fn with_renew_every(mut self, every: Duration) -> Self {
        self.renew_every = Some(every);
        self
    }

    /// Set [`reserve`](Self::reserve).
    pub fn with_reserve(mut self, reserve: Duration) -> Self {
        self.reserve = reserve;
        self
    }

    /// How long after a renewal was sent the lease may be counted on.
    fn validity(&self, lease: Duration) -> Duration {
        holder_validity(lease).saturating_sub(self.reserve)
    }

    fn renew_every(&self, lease: Duration) -> Duration {
        self.renew_every.unwrap_or(lease / 3)
    }

    /// At least one renewal must fit before the deadline, with room for a
    /// retry: renewals at most half the validity apart.
    fn check(&self, lease: Duration) -> Result<()> {
        let validity = self.validity(lease);
        let every = self.renew_every(lease);
        if every.is_zero() || every * 2 > validity {
            return Err(Error::invalid(format!(
                "a lease of {} ms cannot be renewed safely every {} ms while giving up {} ms \
                 early: renewals must be at most half of the {} ms it may be counted on apart",
                lease.as_millis(),
                every.as_millis(),
                (lease - validity).as_millis(),
                validity.as_millis()
            )));
        }
        Ok(())
    }
}

/// Whether a lease may be counted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Held, and may be counted on until `until` unless renewed before.
    Held {
        /// The holder's deadline, on this process's monotonic clock.
        until: Instant,
        /// Renewals that succeeded since the holder started.
        renewals: u64,
    },
    /// Lost for good; why, in one line.
    Lost(String),
}

/// A leased ticket, renewed in the background while this value lives.
///
/// Get one with [`LeaseHolder::join`]. Watch [`lost`](Self::lost) (or
/// [`status`](Self::status)) and stop acting on the lease when it says so;
/// give the ticket back with [`release`](Self::release). Dropping the holder
/// stops the renewals and leaves the queue in the background, on a best
/// effort basis (the leave needs a running Tokio runtime; if it cannot run,
/// the ticket expires after one observed lease instead).
pub struct LeaseHolder {
    queue: Arc<dyn Queue>,
    joined: Fenced<Ticket>,
    lease: Duration,
    status: watch::Receiver<LeaseStatus>,
    renewer: JoinHandle<()>,
    released: bool,
}

impl fmt::Debug for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseHolder")
            .field("queue", &self.queue.id())
            .field("ticket", &self.joined.value)
            .field("status", &*self.status.borrow())
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
    /// renewed once first (its last renewal may be old) and then held; a permanent ticket cannot be held and is an
    /// [`ErrorKind::InvalidInput`] error, as are a lease out of range and
    /// options that leave no time to renew.
    pub async fn join(
        queue: Arc<dyn Queue>,
        process_id: &str,
        tags: Tags,
        lease: Duration,
        options: HolderOptions,
    ) -> Result<LeaseHolder> {
        lease::validate(lease)?;
        options.check(lease)?;
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
        let validity = options.validity(lease);
        let (tx, rx) = watch::channel(LeaseStatus::Held {
            until: since + validity,
            renewals: 0,
        });
        let renewer = tokio::spawn(renew(
            Arc::clone(&queue),
            joined.value.process_id.clone(),
            joined.value.counter,
            options.renew_every(lease),
            validity,
            since,
            tx,
        ));
        Ok(LeaseHolder {
            queue,
            joined,
            lease,
            status: rx,
            renewer,
            released: false,
        })
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
        self.lease
    }

    /// The queue the ticket is in.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// The current status. Checks the deadline itself, like
    /// [`is_held`](Self::is_held).
    pub fn status(&self) -> LeaseStatus {
        match &*self.status.borrow() {
            LeaseStatus::Held { until, .. } if *until <= Instant::now() => {
                LeaseStatus::Lost(lost_by_deadline(self.queue.id(), self.process_id()))
            }
            status => status.clone(),
        }
    }

    /// A receiver that sees every change of status, to select on.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.status.clone()
    }

    /// Whether the lease may be counted on now. Checks the deadline itself,
    /// so it is right even if the renewing task has not run for a while.
    pub fn is_held(&self) -> bool {
        match &*self.status.borrow() {
            LeaseStatus::Held { until, .. } => Instant::now() < *until,
            LeaseStatus::Lost(_) => false,
        }
    }

    /// Complete when the lease is lost, with the reason as an
    /// [`ErrorKind::LeaseLost`] error. Cancel-safe: select on it.
    pub async fn lost(&self) -> Error {
        let mut rx = self.status.clone();
        loop {
            let deadline = match &*rx.borrow_and_update() {
                LeaseStatus::Lost(why) => return Error::new(ErrorKind::LeaseLost, why.clone()),
                LeaseStatus::Held { until, .. } => *until,
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The renewer is gone (released or aborted).
                        return Error::new(ErrorKind::LeaseLost, "the lease was released");
                    }
                }
                // The renewer declares the loss at this very time; do not
                // depend on it being scheduled.
                () = sleep_until(deadline) => {
                    if matches!(&*rx.borrow(), LeaseStatus::Held { until, .. } if *until <= Instant::now()) {
                        return Error::new(ErrorKind::LeaseLost, lost_by_deadline(self.queue.id(), self.process_id()));
                    }
                }
            }
        }
    }

    /// Wait until the held ticket is among the first `within` of its queue
    /// (see [`wait_for_position`]), or fail with
    /// [`ErrorKind::LeaseLost`] as soon as the lease is lost.
    pub async fn wait_for_position(
        &self,
        within: usize,
        options: &WaitOptions,
    ) -> Result<Fenced<Ticket>> {
        tokio::select! {
            got = wait_for_position(&*self.queue, self.process_id(), within, options) => {
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
        self.released = true;
        self.renewer.abort();
        match self.queue.leave(self.process_id()).await {
            Ok(token) => Ok(Some(token)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LeaseHolder {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let queue = Arc::clone(&self.queue);
            let pid = self.process_id().to_owned();
            runtime.spawn(async move {
                let left = queue.leave(&pid).await;
                debug!(queue = queue.id(), process = %pid, ok = left.is_ok(), "left the queue on drop");
            });
        }
    }
}

fn lost_by_deadline(id: &str, process_id: &str) -> String {
    format!(
        "the lease of process `{process_id}` in queue `{id}` can no longer be counted on: \
         no renewal succeeded in time"
    )
}

/// The renewing task: step 2 and 3 of the protocol.
async fn renew(
    queue: Arc<dyn Queue>,
    process_id: String,
    counter: u64,
    every: Duration,
    validity: Duration,
    since: Instant,
    status: watch::Sender<LeaseStatus>,
) {
    let retry = (every / 4).max(Duration::from_millis(5));
    let mut last = since;
    let mut next = since + every;
    let mut renewals = 0u64;
    loop {
        let deadline = last + validity;
        tokio::select! {
            () = sleep_until(next) => {}
            () = sleep_until(deadline) => break,
        }
        let sent = Instant::now();
        tokio::select! {
            renewed = queue.renew(&process_id, counter) => match renewed {
                Ok(_) => {
                    renewals += 1;
                    last = sent;
                    next = sent + every;
                    debug!(queue = queue.id(), process = %process_id, renewals, "renewed the lease");
                    status.send_replace(LeaseStatus::Held { until: sent + validity, renewals });
                }
                Err(e) if e.is_temporary() => {
                    debug!(queue = queue.id(), process = %process_id, error = %e, "renewal failed; retrying");
                    next = Instant::now() + retry;
                }
                Err(e) => {
                    debug!(queue = queue.id(), process = %process_id, error = %e, "lease lost");
                    status.send_replace(LeaseStatus::Lost(e.to_string()));
                    return;
                }
            },
            () = sleep_until(deadline) => break,
        }
    }
    debug!(queue = queue.id(), process = %process_id, "lease lost: no renewal in time");
    status.send_replace(LeaseStatus::Lost(lost_by_deadline(queue.id(), &process_id)));
}
