//! A queue's whole state as one value, and the rules that change it.
//!
//! Every store applies these rules, so the queue's semantics are written
//! once: memory and DynamoDB keep a queue in one record, load this state,
//! apply one rule and write it back atomically; SQLite loads the queue's rows
//! into this state in its write transaction, applies the same rule, and
//! writes back the rows the rule changed (see `store/sqlite/queue.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::lease::expiry::Expired;
use crate::lease::record::LeaseRecord;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::ticket::{Tags, Ticket};

/// One member of a queue as stored: monotone 0.4's `{"process_id",
/// "counter", "tags"}`. The position is derived, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueEntry {
    pub process_id: String,
    pub counter: u64,
    #[serde(default)]
    pub tags: Tags,
}

/// A queue: its version (the fencing token), the last counter handed out,
/// its entries ordered by counter, and the leases of its leased tickets by
/// counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueueState {
    pub version: u64,
    pub value: u64,
    entries: Vec<QueueEntry>,
    leases: BTreeMap<u64, LeaseRecord>,
}

/// What [`QueueState::join`] did.
#[derive(Debug)]
pub(crate) enum JoinOutcome {
    /// The process was already in the queue; nothing changed.
    Existing(Fenced<Ticket>),
    /// The process was added; the state must be written back.
    Joined(Fenced<Ticket>),
}

impl QueueState {
    /// A state from stored parts, in any order of entries. A lease whose
    /// counter has no entry is dropped: it belongs to no ticket.
    pub fn new(
        version: u64,
        value: u64,
        mut entries: Vec<QueueEntry>,
        mut leases: BTreeMap<u64, LeaseRecord>,
    ) -> Self {
        entries.sort_by_key(|e| e.counter);
        leases.retain(|c, _| entries.binary_search_by_key(c, |e| e.counter).is_ok());
        QueueState {
            version,
            value,
            entries,
            leases,
        }
    }

    #[cfg_attr(not(feature = "aws"), allow(dead_code))] // the DynamoDB store's
    pub fn entries(&self) -> &[QueueEntry] {
        &self.entries
    }

    /// The lease of the ticket numbered `counter`, if it has one.
    pub fn lease_of(&self, counter: u64) -> Option<&LeaseRecord> {
        self.leases.get(&counter)
    }

    /// Whether any ticket has a lease.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))] // the DynamoDB store's
    pub fn has_leases(&self) -> bool {
        !self.leases.is_empty()
    }

    pub fn token(&self) -> FencingToken {
        FencingToken(self.version)
    }

    fn ticket_at(&self, position: usize) -> Ticket {
        let e = &self.entries[position];
        Ticket::new(e.process_id.clone(), e.counter, position, e.tags.clone())
            .with_lease(self.leases.get(&e.counter).map(LeaseRecord::lease))
    }

    fn position_of(&self, process_id: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.process_id == process_id)
    }

    pub fn ticket(&self, id: &str, process_id: &str) -> Result<Fenced<Ticket>> {
        let position = self
            .position_of(process_id)
            .ok_or_else(|| Error::process_not_found(id, process_id))?;
        Ok(Fenced::new(self.ticket_at(position), self.token()))
    }

    pub fn tickets(&self) -> Fenced<Vec<Ticket>> {
        let tickets = (0..self.entries.len()).map(|p| self.ticket_at(p)).collect();
        Fenced::new(tickets, self.token())
    }

    /// Add `process_id` with `lease` (`None`: a permanent ticket), unless it
    /// is in the queue already.
    pub fn join(
        &mut self,
        id: &str,
        process_id: &str,
        tags: Tags,
        lease: Option<LeaseRecord>,
    ) -> Result<JoinOutcome> {
        if let Some(position) = self.position_of(process_id) {
            return Ok(JoinOutcome::Existing(Fenced::new(
                self.ticket_at(position),
                self.token(),
            )));
        }
        let counter = self
            .value
            .checked_add(1)
            .ok_or_else(|| Error::overflow(id))?;
        let version = self
            .version
            .checked_add(1)
            .ok_or_else(|| Error::overflow(id))?;
        // A counter larger than every stored one keeps the entries sorted,
        // unless a corrupt record holds entries above `value`; sort anyway.
        self.entries.push(QueueEntry {
            process_id: process_id.to_owned(),
            counter,
            tags,
        });
        self.entries.sort_by_key(|e| e.counter);
        if let Some(lease) = lease {
            self.leases.insert(counter, lease);
        }
        self.value = counter;
        self.version = version;
        let position = self.position_of(process_id).expect("just pushed");
        Ok(JoinOutcome::Joined(Fenced::new(
            self.ticket_at(position),
            self.token(),
        )))
    }

    pub fn leave(&mut self, id: &str, process_id: &str) -> Result<FencingToken> {
        let position = self
            .position_of(process_id)
            .ok_or_else(|| Error::process_not_found(id, process_id))?;
        let version = self
            .version
            .checked_add(1)
            .ok_or_else(|| Error::overflow(id))?;
        let gone = self.entries.remove(position);
        self.leases.remove(&gone.counter);
        self.version = version;
        Ok(self.token())
    }

    /// Renew the lease of `process_id`'s ticket `counter` at `now_ms`; the
    /// version stays. LeaseLost if that ticket is gone or has no lease.
    pub fn renew(
        &mut self,
        id: &str,
        process_id: &str,
        counter: u64,
        now_ms: u64,
    ) -> Result<Fenced<Ticket>> {
        let position = self
            .position_of(process_id)
            .filter(|p| self.entries[*p].counter == counter)
            .ok_or_else(|| lease_gone(id, process_id, counter))?;
        let lease = self
            .leases
            .get_mut(&counter)
            .ok_or_else(|| lease_removed(id, process_id))?;
        lease.renewals = lease
            .renewals
            .checked_add(1)
            .ok_or_else(|| Error::overflow(id))?;
        lease.renewed_at_ms = now_ms;
        Ok(Fenced::new(self.ticket_at(position), self.token()))
    }

    /// Whether the ticket `expired` watched is still exactly as it was seen:
    /// the same process at the same counter, with the same lease and renewal
    /// count.
    pub fn is_unchanged(&self, expired: &Expired) -> bool {
        let seen = expired.ticket();
        let Some(position) = self.position_of(&seen.process_id) else {
            return false;
        };
        let counter = self.entries[position].counter;
        match (self.leases.get(&counter), &seen.lease) {
            (Some(now), Some(then)) => {
                counter == seen.counter
                    && now.renewals == then.renewals
                    && Duration::from_millis(now.duration_ms) == then.duration
            }
            _ => false,
        }
    }

    /// Remove the ticket `expired` watched if it is unchanged (a write like a
    /// leave: the version grows by one); `None` if it changed or is gone.
    pub fn expire(&mut self, id: &str, expired: &Expired) -> Result<Option<FencingToken>> {
        if !self.is_unchanged(expired) {
            return Ok(None);
        }
        self.leave(id, &expired.ticket().process_id).map(Some)
    }
}

/// The holder's ticket is no longer in the queue.
pub(crate) fn lease_gone(id: &str, process_id: &str, counter: u64) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!(
            "the lease of process `{process_id}` in queue `{id}` is gone: \
             its ticket {counter} expired and was removed, or left"
        ),
    )
}

/// The holder's ticket is there but has no lease any more.
pub(crate) fn lease_removed(id: &str, process_id: &str) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!(
            "the ticket of process `{process_id}` in queue `{id}` has no lease: \
             it was rewritten by a client that does not know leases"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(outcome: JoinOutcome) -> Fenced<Ticket> {
        match outcome {
            JoinOutcome::Joined(t) => t,
            JoinOutcome::Existing(t) => panic!("expected a new ticket, got {t:?}"),
        }
    }

    #[test]
    fn join_leave_rules() {
        let mut q = QueueState::default();
        let a = joined(q.join("q", "a", Tags::new(), None).unwrap());
        assert_eq!(
            (a.value.counter, a.value.position, a.fencing_token.0),
            (1, 0, 1)
        );
        let b = joined(q.join("q", "b", Tags::new(), None).unwrap());
        assert_eq!(
            (b.value.counter, b.value.position, b.fencing_token.0),
            (2, 1, 2)
        );
        match q
            .join("q", "a", [("x".into(), "y".into())].into(), None)
            .unwrap()
        {
            JoinOutcome::Existing(t) => {
                assert_eq!(t.value, a.value);
                assert_eq!(t.fencing_token, FencingToken(2), "the current token");
            }
            other => panic!("join was not idempotent: {other:?}"),
        }
        assert_eq!(q.leave("q", "a").unwrap(), FencingToken(3));
        assert_eq!(q.ticket("q", "b").unwrap().value.position, 0);
        let c = joined(q.join("q", "c", Tags::new(), None).unwrap());
        assert_eq!(
            (c.value.counter, c.value.position, c.fencing_token.0),
            (3, 1, 4)
        );
        let err = q.leave("q", "a").unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::NotFound);
        assert_eq!(q.version, 4, "a failed leave must not write");
    }

    #[test]
    fn entries_are_ordered_whatever_the_stored_order() {
        let e = |p: &str, c| QueueEntry {
            process_id: p.into(),
            counter: c,
            tags: Tags::new(),
        };
        let q = QueueState::new(
            5,
            9,
            vec![e("late", 9), e("early", 2), e("mid", 4)],
            BTreeMap::new(),
        );
        let order: Vec<_> = q
            .tickets()
            .value
            .into_iter()
            .map(|t| (t.process_id, t.position))
            .collect();
        assert_eq!(
            order,
            [("early".into(), 0), ("mid".into(), 1), ("late".into(), 2)]
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let mut q = QueueState::new(1, u64::MAX, vec![], BTreeMap::new());
        assert_eq!(
            q.join("q", "a", Tags::new(), None).unwrap_err().kind(),
            crate::error::ErrorKind::Unsupported
        );
        assert_eq!(q.value, u64::MAX);
    }
}
