//! [`Changes`]: a document's change stream from a version, by polling.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::document::state::Diff;
use crate::document::{Document, Snapshot};
use crate::error::Result;

/// How often [`Changes::next`] checks the store by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One step of a document's history as a [`Changes`] stream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The version this change produced: the document's version when it was
    /// read.
    pub version: u64,
    /// The version it is a change from: the stream's previous change, or the
    /// version the stream started from. `version - since` writes are folded
    /// into this change when that is more than 1.
    pub since: u64,
    /// The document at `version`; `None` if it was removed.
    pub value: Option<Value>,
    /// What changed at the top level from `since` to `version`; `None` only
    /// for a first change whose `since` value the stream never saw (it
    /// started from a version older than the document's current one, and
    /// the store keeps only the latest value).
    pub diff: Option<Diff>,
}

impl Change {
    /// Whether more than one write went into this change (several writes
    /// between two polls, or a start from an older version).
    pub fn folded(&self) -> bool {
        self.version - self.since > 1
    }

    /// The document as of this change.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.value.clone(), self.version)
    }
}

/// The changes of a document from a version on, found by polling its version
/// (see [`Document::read_if_changed`] for one check's cost on each store):
/// [`next`](Self::next) checks once per poll interval, so a watcher's cost is
/// one check per interval, changes or not.
///
/// # Guarantees
///
/// - Versions only go up: each change's `version` is greater than the one
///   before, and its `since` is the previous change's `version`. A read that
///   returns an older version than one already reported is ignored.
/// - The latest state is never skipped: every poll reads the latest version,
///   and a poll that finds it newer than the last change reports it.
/// - Writes between two polls are folded into one change, which says so
///   ([`Change::folded`], `since`) and diffs the last reported value with the
///   newest. No state between them is reported.
/// - A removed document is a change whose `value` is `None`; writing it again
///   is a later change (versions go on across removal).
///
/// Errors of the store are returned by [`next`](Self::next); the stream stays
/// usable and the next call polls again.
pub struct Changes {
    doc: Arc<dyn Document>,
    since: u64,
    /// The value at `since`, once known: from version 0 it is known (absent).
    seen: Option<Option<Value>>,
    poll_interval: Duration,
    /// When [`next`](Changes::next) may check the store again.
    next_check: Option<tokio::time::Instant>,
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("id", &self.doc.id())
            .field("since", &self.since)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl Changes {
    /// The changes of `doc` after `from_version`: 0 for its whole history
    /// (the first change then holds the whole document as added), its current
    /// version for what happens from now on.
    pub fn new(doc: Arc<dyn Document>, from_version: u64) -> Self {
        Changes {
            doc,
            since: from_version,
            seen: (from_version == 0).then_some(None),
            poll_interval: DEFAULT_POLL_INTERVAL,
            next_check: None,
        }
    }

    /// Poll every `interval` (at least 1 ms) instead of every second.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The version of the last change reported (or the starting version).
    pub fn version(&self) -> u64 {
        self.since
    }

    /// The next change: checks the store every poll interval until the
    /// document's version is past the last one reported. The first call
    /// checks at once; later ones keep to the interval, counted from the
    /// previous check, so a watcher costs one check per interval however
    /// often the document changes.
    pub async fn next(&mut self) -> Result<Change> {
        loop {
            if let Some(at) = self.next_check {
                tokio::time::sleep_until(at).await;
            }
            self.next_check = Some(tokio::time::Instant::now() + self.poll_interval);
            if let Some(change) = self.poll().await? {
                return Ok(change);
            }
        }
    }

    /// Check the store once, now: the change since the last one reported, if
    /// any.
    pub async fn poll(&mut self) -> Result<Option<Change>> {
        let read = match self.seen {
            // The value at `since` is unknown: read it whole, so that the
            // following changes can be diffed.
            None => Some(self.doc.read().await?),
            Some(_) => self.doc.read_if_changed(self.since).await?,
        };
        let Some(now) = read else {
            return Ok(None);
        };
        if now.version < self.since {
            return Ok(None);
        }
        if now.version == self.since {
            self.seen = Some(now.value);
            return Ok(None);
        }
        let diff = self
            .seen
            .as_ref()
            .map(|old| Diff::between(old.as_ref(), now.value.as_ref()));
        let change = Change {
            version: now.version,
            since: self.since,
            value: now.value.clone(),
            diff,
        };
        self.since = now.version;
        self.seen = Some(now.value);
        Ok(Some(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DocumentExt;
    use crate::store::memory::MemoryStore;
    use crate::store::Store;
    use serde_json::json;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn next_checks_once_per_interval_however_often_it_changes() {
        let store = MemoryStore::new();
        let doc: Arc<dyn Document> = Arc::from(store.document("d").unwrap());
        let mut changes =
            Changes::new(Arc::clone(&doc), 0).with_poll_interval(Duration::from_secs(2));
        let t0 = Instant::now();
        doc.write(0, &json!(1)).await.unwrap();
        assert_eq!(changes.next().await.unwrap().version, 1);
        assert_eq!(Instant::now(), t0, "the first check is at once");
        doc.write(1, &json!(2)).await.unwrap();
        doc.write(2, &json!(3)).await.unwrap();
        let c = changes.next().await.unwrap();
        assert_eq!((c.version, c.since, c.folded()), (3, 1, true));
        assert_eq!(
            Instant::now() - t0,
            Duration::from_secs(2),
            "one interval later"
        );
        // Nothing changes: it keeps checking every interval until something does.
        let writer = {
            let doc = Arc::clone(&doc);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(7)).await;
                doc.write(3, &json!(4)).await.unwrap();
            })
        };
        assert_eq!(changes.next().await.unwrap().version, 4);
        assert_eq!(
            Instant::now() - t0,
            Duration::from_secs(10),
            "the check after the write"
        );
        writer.await.unwrap();
    }
}
