//! A queue's state as one value, and the rules that change it.
//!
//! Every store applies these rules, so the queue's semantics are written
//! once. Memory and DynamoDB keep a queue in one record: they load its whole
//! state, apply one rule and write it back atomically. SQLite keeps a row per
//! ticket, and every rule reads or changes the ticket of one process only (a
//! join, a leave, a renewal, an expiry, a ticket's read): so it loads the
//! queue as that process sees it ([`QueueState::around`]: the queue's
//! version and last counter, the process's ticket if it has one, and how
//! many tickets come before it), applies the same rule, and writes back the
//! rows the rule changed (see `store/sqlite/queue.rs`): a rule costs it one
//! ticket's row and a count, not a decoding of the whole queue.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::lease::again::{again, Again};
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
/// counter; or the part of it that one process's rules need (see
/// [`around`](QueueState::around)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueueState {
    pub version: u64,
    pub value: u64,
    /// How many tickets come before the first of `entries` without being
    /// among them: 0 for a whole queue.
    before: usize,
    entries: Vec<QueueEntry>,
    leases: BTreeMap<u64, LeaseRecord>,
}

/// What [`QueueState::join`] did.
#[derive(Debug)]
pub(crate) enum JoinOutcome {
    /// The process was already in the queue with the ticket asked for;
    /// nothing changed.
    Existing(Fenced<Ticket>),
    /// The process was added; the state must be written back.
    Joined(Fenced<Ticket>),
}

impl QueueState {
    /// A whole queue from stored parts, in any order of entries. A lease
    /// whose counter has no entry is dropped: it belongs to no ticket.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))] // the DynamoDB store's
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
            before: 0,
            entries,
            leases,
        }
    }

    /// The queue as one process sees it, for the rules about that process:
    /// the queue's version and last counter, the process's ticket (its
    /// entry and lease) if it has one, and `before`, the number of tickets
    /// ahead of that ticket (all the tickets of the queue if the process
    /// has none, since a join puts it behind them).
    ///
    /// Every rule but [`tickets`](Self::tickets) reads and changes only the
    /// ticket of the process it is about, so each answers the same on this
    /// part of a queue as on the whole: positions count from `before`.
    pub fn around(
        version: u64,
        value: u64,
        before: usize,
        ticket: Option<(QueueEntry, Option<LeaseRecord>)>,
    ) -> Self {
        let mut leases = BTreeMap::new();
        let entries = match ticket {
            None => vec![],
            Some((entry, lease)) => {
                if let Some(lease) = lease {
                    leases.insert(entry.counter, lease);
                }
                vec![entry]
            }
        };
        QueueState {
            version,
            value,
            before,
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

    fn ticket_at(&self, index: usize) -> Ticket {
        let e = &self.entries[index];
        let position = self.before + index;
        Ticket::new(e.process_id.clone(), e.counter, position, e.tags.clone())
            .with_lease(self.leases.get(&e.counter).map(LeaseRecord::lease))
    }

    /// The index of `process_id`'s entry (its position less `before`).
    fn position_of(&self, process_id: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.process_id == process_id)
    }

    pub fn ticket(&self, id: &str, process_id: &str) -> Result<Fenced<Ticket>> {
        let position = self
            .position_of(process_id)
            .ok_or_else(|| Error::process_not_found(id, process_id))?;
        Ok(Fenced::new(self.ticket_at(position), self.token()))
    }

    /// Every ticket, in order: of a whole queue only.
    pub fn tickets(&self) -> Fenced<Vec<Ticket>> {
        debug_assert_eq!(self.before, 0, "the tickets of part of a queue");
        let tickets = (0..self.entries.len()).map(|p| self.ticket_at(p)).collect();
        Fenced::new(tickets, self.token())
    }

    /// Add `process_id` with `tags` and `lease` (`None`: a permanent
    /// ticket; its holder is the one that asks), unless it is in the queue
    /// already: then the re-join rule (`lease/again.rs`) says whether its
    /// ticket is the one asked for ([`JoinOutcome::Existing`]), held by
    /// another holder ([`ErrorKind::Held`]) or another ticket
    /// ([`ErrorKind::Mismatch`]). Checks everything before it changes
    /// anything.
    pub fn join(
        &mut self,
        id: &str,
        process_id: &str,
        tags: Tags,
        lease: Option<LeaseRecord>,
    ) -> Result<JoinOutcome> {
        if let Some(position) = self.position_of(process_id) {
            let entry = &self.entries[position];
            let there = self.leases.get(&entry.counter);
            return match again(&entry.tags, there, &tags, lease.as_ref()) {
                Again::Same => Ok(JoinOutcome::Existing(Fenced::new(
                    self.ticket_at(position),
                    self.token(),
                ))),
                Again::Held => Err(held_by_another(id, process_id)),
                Again::Differs { held, asked } => Err(Error::new(
                    ErrorKind::Mismatch,
                    format!(
                        "process `{process_id}` is in queue `{id}` with {held}, and this join \
                         asks for {asked}: leave the queue first to join anew; nothing was written"
                    ),
                )),
            };
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

    /// Take `process_id`'s ticket out: whichever it holds (`counter`
    /// `None`), or only the ticket numbered `counter`, NotFound otherwise
    /// (that ticket expired and was removed, or left, and the process may
    /// be in the queue again with another).
    pub fn leave(
        &mut self,
        id: &str,
        process_id: &str,
        counter: Option<u64>,
    ) -> Result<FencingToken> {
        let position = self
            .position_of(process_id)
            .filter(|p| counter.is_none_or(|c| self.entries[*p].counter == c))
            .ok_or_else(|| match counter {
                None => Error::process_not_found(id, process_id),
                Some(c) => Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "ticket {c} of process `{process_id}` is not in queue `{id}`: \
                         it expired and was removed, or left"
                    ),
                ),
            })?;
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
        self.leave(id, &expired.ticket().process_id, None).map(Some)
    }
}

/// A holder's join found the process's ticket held by another holder (or
/// made by a join without one).
pub(crate) fn held_by_another(id: &str, process_id: &str) -> Error {
    Error::new(
        ErrorKind::Held,
        format!(
            "the ticket of process `{process_id}` in queue `{id}` is held by another holder; \
             nothing was written"
        ),
    )
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
        match q.join("q", "a", Tags::new(), None).unwrap() {
            JoinOutcome::Existing(t) => {
                assert_eq!(t.value, a.value);
                assert_eq!(t.fencing_token, FencingToken(2), "the current token");
            }
            other => panic!("join was not idempotent: {other:?}"),
        }
        // Asking for another ticket is refused, and writes nothing.
        let before = q.clone();
        let err = q
            .join("q", "a", [("x".into(), "y".into())].into(), None)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Mismatch);
        assert_eq!(
            err.to_string(),
            "process `a` is in queue `q` with no tags, and this join asks for tags {x=y}: \
             leave the queue first to join anew; nothing was written"
        );
        assert_eq!(q, before);
        assert_eq!(q.leave("q", "a", None).unwrap(), FencingToken(3));
        assert_eq!(q.ticket("q", "b").unwrap().value.position, 0);
        let c = joined(q.join("q", "c", Tags::new(), None).unwrap());
        assert_eq!(
            (c.value.counter, c.value.position, c.fencing_token.0),
            (3, 1, 4)
        );
        let err = q.leave("q", "a", None).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::NotFound);
        assert_eq!(q.version, 4, "a failed leave must not write");
    }

    /// The re-join rule (`lease/again.rs`) as a queue applies it: what comes
    /// back, and that nothing is written unless a ticket is added.
    #[test]
    fn a_join_of_a_process_in_the_queue_follows_the_re_join_rule() {
        use crate::lease::again::asked;
        use crate::lease::holder_id::HolderId;
        let (h1, h2) = (HolderId::new(1), HolderId::new(2));
        let mut q = QueueState::default();
        let held = joined(
            q.join("q", "held", Tags::new(), asked(Some(500), h1))
                .unwrap(),
        );
        let shell = joined(
            q.join("q", "shell", Tags::new(), asked(Some(500), None))
                .unwrap(),
        );
        let perm = joined(q.join("q", "perm", Tags::new(), None).unwrap());
        let before = q.clone();
        // (process, lease asked, holder asking) -> the ticket, or the error's kind.
        let cases = [
            ("held", Some(900), h1, Ok(&held)),
            ("held", Some(500), h2, Err(ErrorKind::Held)),
            ("held", Some(500), None, Ok(&held)),
            ("held", None, None, Err(ErrorKind::Mismatch)),
            ("shell", Some(500), h2, Err(ErrorKind::Held)),
            ("shell", Some(500), None, Ok(&shell)),
            ("shell", Some(600), None, Err(ErrorKind::Mismatch)),
            ("perm", Some(500), h2, Err(ErrorKind::Mismatch)),
            ("perm", Some(500), None, Err(ErrorKind::Mismatch)),
            ("perm", None, None, Ok(&perm)),
        ];
        for (pid, lease, holder, expected) in cases {
            let got = q.join("q", pid, Tags::new(), asked(lease, holder));
            match (got, expected) {
                (Ok(JoinOutcome::Existing(t)), Ok(ticket)) => {
                    assert_eq!(t.value, ticket.value, "{pid} {lease:?} {holder:?}");
                    assert_eq!(t.fencing_token, FencingToken(3), "the current token");
                }
                (Err(e), Err(kind)) => assert_eq!(e.kind(), kind, "{pid}: {e}"),
                (got, _) => panic!("{pid} {lease:?} {holder:?}: {got:?}"),
            }
            assert_eq!(q, before, "nothing written");
        }
        let e = q
            .join("q", "held", Tags::new(), asked(Some(500), h2))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the ticket of process `held` in queue `q` is held by another holder; \
             nothing was written"
        );
        // A holder leaves its own ticket only: the one numbered as it joined.
        let e = q.leave("q", "held", Some(shell.value.counter)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "ticket 2 of process `held` is not in queue `q`: it expired and was removed, or left"
        );
        let e = q.leave("q", "nobody", Some(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(q, before, "nothing written");
        let counter = Some(held.value.counter);
        assert_eq!(q.leave("q", "held", counter).unwrap(), FencingToken(4));
        assert_eq!(q.leave("q", "shell", None).unwrap(), FencingToken(5));
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

    /// A whole queue of permanent and leased tickets, and the part of it
    /// that `process_id` sees, as the SQLite store loads it.
    fn whole_and_around(process_id: &str) -> (QueueState, QueueState) {
        let mut whole = QueueState::default();
        for (pid, lease) in [("a", None), ("b", Some(300)), ("c", None), ("d", Some(500))] {
            let lease = lease.map(|ms| LeaseRecord::new(Duration::from_millis(ms), 7));
            joined(whole.join("q", pid, Tags::new(), lease).unwrap());
        }
        whole.leave("q", "a", None).unwrap();
        let (before, ticket) = match whole.position_of(process_id) {
            Some(i) => {
                let e = whole.entries[i].clone();
                let lease = whole.lease_of(e.counter).copied();
                (i, Some((e, lease)))
            }
            None => (whole.entries.len(), None),
        };
        let part = QueueState::around(whole.version, whole.value, before, ticket);
        (whole, part)
    }

    #[test]
    fn the_rules_answer_the_same_on_the_part_of_a_queue_one_process_sees() {
        for pid in ["a", "b", "c", "d", "new"] {
            let (whole, part) = whole_and_around(pid);
            assert_eq!(
                whole.ticket("q", pid).map_err(|e| e.to_string()),
                part.ticket("q", pid).map_err(|e| e.to_string()),
                "{pid}"
            );
            for lease in [None, Some(300), Some(400)] {
                let (mut w, mut p) = (whole.clone(), part.clone());
                let lease = lease.map(|ms| LeaseRecord::new(Duration::from_millis(ms), 9));
                let (jw, jp) = (
                    w.join("q", pid, Tags::new(), lease)
                        .map_err(|e| e.to_string()),
                    p.join("q", pid, Tags::new(), lease)
                        .map_err(|e| e.to_string()),
                );
                assert_eq!(format!("{jw:?}"), format!("{jp:?}"), "join {pid}");
                assert_eq!((w.version, w.value), (p.version, p.value), "join {pid}");
            }
            let (mut w, mut p) = (whole.clone(), part.clone());
            assert_eq!(
                w.leave("q", pid, None).map_err(|e| e.to_string()),
                p.leave("q", pid, None).map_err(|e| e.to_string()),
                "leave {pid}"
            );
            assert_eq!(w.version, p.version, "leave {pid}");
            for counter in 1..=5 {
                let (mut w, mut p) = (whole.clone(), part.clone());
                assert_eq!(
                    w.renew("q", pid, counter, 11).map_err(|e| e.to_string()),
                    p.renew("q", pid, counter, 11).map_err(|e| e.to_string()),
                    "renew {pid} {counter}"
                );
            }
        }
    }

    #[test]
    fn an_expiry_on_the_part_of_a_queue_removes_what_it_would_from_the_whole() {
        let (whole, _) = whole_and_around("b");
        let read_at = tokio::time::Instant::now();
        let mut watch = crate::lease::expiry::LeaseWatch::new();
        let tickets = whole.tickets();
        watch.observe(&tickets.value, tickets.fencing_token, read_at);
        let later = read_at + Duration::from_secs(1);
        let expired = watch.observe(&tickets.value, tickets.fencing_token, later);
        assert_eq!(expired.len(), 2, "b and d");
        for expired in expired {
            let pid = expired.ticket().process_id.clone();
            let (mut w, mut p) = whole_and_around(&pid);
            assert_eq!(
                w.expire("q", &expired).unwrap(),
                p.expire("q", &expired).unwrap(),
                "{pid}"
            );
            assert!(p.expire("q", &expired).unwrap().is_none(), "once");
            // Another process's part does not hold the ticket: nothing to
            // remove there, as the SQLite store never asks.
            let (_, mut other) = whole_and_around("c");
            assert!(!other.is_unchanged(&expired));
            assert_eq!(other.expire("q", &expired).unwrap(), None);
        }
    }
}
