//! A queue's whole state as one value, and the rules that change it.
//!
//! Stores that keep a queue in one record (memory, DynamoDB) load this state,
//! apply one rule, and write it back atomically, so the queue's semantics are
//! written once. The SQLite store implements the same rules in SQL and the
//! conformance suite holds both to the same contract.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::queue::{Fenced, FencingToken, Tags, Ticket};

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
/// and its entries ordered by counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueueState {
    pub version: u64,
    pub value: u64,
    entries: Vec<QueueEntry>,
}

/// What [`QueueState::join`] did.
#[derive(Debug)]
pub(crate) enum JoinOutcome {
    /// The process was already in the queue; nothing changed.
    Existing(Fenced<Ticket>),
    /// The process was added; the state must be written back.
    Joined(Fenced<Ticket>),
}

// `new` and `entries` serve the stores that keep a queue in one record.
#[cfg_attr(not(feature = "aws"), allow(dead_code))] // the DynamoDB store's
impl QueueState {
    /// A state from stored parts, in any order of entries.
    pub fn new(version: u64, value: u64, mut entries: Vec<QueueEntry>) -> Self {
        entries.sort_by_key(|e| e.counter);
        QueueState {
            version,
            value,
            entries,
        }
    }

    pub fn entries(&self) -> &[QueueEntry] {
        &self.entries
    }

    pub fn token(&self) -> FencingToken {
        FencingToken(self.version)
    }

    fn ticket_at(&self, position: usize) -> Ticket {
        let e = &self.entries[position];
        Ticket::new(e.process_id.clone(), e.counter, position, e.tags.clone())
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

    pub fn join(&mut self, id: &str, process_id: &str, tags: Tags) -> Result<JoinOutcome> {
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
        self.entries.remove(position);
        self.version = version;
        Ok(self.token())
    }
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
        let a = joined(q.join("q", "a", Tags::new()).unwrap());
        assert_eq!(
            (a.value.counter, a.value.position, a.fencing_token.0),
            (1, 0, 1)
        );
        let b = joined(q.join("q", "b", Tags::new()).unwrap());
        assert_eq!(
            (b.value.counter, b.value.position, b.fencing_token.0),
            (2, 1, 2)
        );
        match q.join("q", "a", [("x".into(), "y".into())].into()).unwrap() {
            JoinOutcome::Existing(t) => {
                assert_eq!(t.value, a.value);
                assert_eq!(t.fencing_token, FencingToken(2), "the current token");
            }
            other => panic!("join was not idempotent: {other:?}"),
        }
        assert_eq!(q.leave("q", "a").unwrap(), FencingToken(3));
        assert_eq!(q.ticket("q", "b").unwrap().value.position, 0);
        let c = joined(q.join("q", "c", Tags::new()).unwrap());
        assert_eq!(
            (c.value.counter, c.value.position, c.fencing_token.0),
            (3, 1, 4)
        );
        let err = q.leave("q", "a").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
        assert_eq!(q.version, 4, "a failed leave must not write");
    }

    #[test]
    fn entries_are_ordered_whatever_the_stored_order() {
        let e = |p: &str, c| QueueEntry {
            process_id: p.into(),
            counter: c,
            tags: Tags::new(),
        };
        let q = QueueState::new(5, 9, vec![e("late", 9), e("early", 2), e("mid", 4)]);
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
        let mut q = QueueState::new(1, u64::MAX, vec![]);
        assert_eq!(
            q.join("q", "a", Tags::new()).unwrap_err().kind(),
            crate::ErrorKind::Unsupported
        );
        assert_eq!(q.value, u64::MAX);
    }
}
