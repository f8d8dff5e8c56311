//! A queue's [`Ticket`]s, their [`Tags`], and what a join did
//! ([`Joined`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

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

/// What [`Queue::join_with`](crate::Queue::join_with) did.
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
