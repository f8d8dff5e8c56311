//! A queue's [`Ticket`]s, their [`Tags`], what a join asks for
//! ([`JoinRequest`]) and what it did ([`Joined`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::lease::holder_id::HolderId;
use crate::lease::record::Lease;
use crate::queue::fencing::Fenced;

/// Free-form labels a process attaches to its ticket when it joins, ordered
/// by key (for example `role=zk`, `az=eu-west-1a`).
pub type Tags = BTreeMap<String, String>;

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

/// What a join asks for ([`Queue::join_as`](crate::Queue::join_as)): the
/// ticket's tags, its lease (or a permanent ticket), and the holder that
/// asks, if one does.
///
/// ```
/// use std::time::Duration;
/// use monotone::{lease::HolderId, JoinRequest, Tags};
///
/// let holder = HolderId::random();
/// let request = JoinRequest::new()
///     .with_tags(Tags::from([("role".into(), "zk".into())]))
///     .with_lease(Some(Duration::from_secs(15)))
///     .held_by(holder);
/// assert_eq!(request.holder, Some(holder));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinRequest {
    /// The ticket's tags.
    pub tags: Tags,
    /// A lease of this duration, or (`None`) a permanent ticket.
    pub lease: Option<Duration>,
    /// The holder that joins (a [`LeaseHolder`](crate::LeaseHolder)), stored
    /// with the ticket's lease; `None` for a join without a holder. A holder
    /// needs a lease.
    pub holder: Option<HolderId>,
}

impl JoinRequest {
    /// A permanent ticket without tags or holder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set [`tags`](Self::tags).
    pub fn with_tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// Set [`lease`](Self::lease).
    pub fn with_lease(mut self, lease: Option<Duration>) -> Self {
        self.lease = lease;
        self
    }

    /// Set [`holder`](Self::holder).
    pub fn held_by(mut self, holder: HolderId) -> Self {
        self.holder = Some(holder);
        self
    }
}

/// What [`Queue::join_as`](crate::Queue::join_as) did.
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
