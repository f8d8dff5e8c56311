//! [`Changes`]: a document's change stream from a version, told of changes
//! by the store where it pushes, polling the version where it cannot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::document::state::Diff;
use crate::document::{Document, Snapshot};
use crate::error::Result;

/// How often [`Changes::next`] checks the version by default on a store
/// that cannot push (and, on one that pushes, the safety check).
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

/// The changes of a document from a version on. [`next`](Self::next)
/// waits with [`Document::wait_for_change`]: on a store that
/// [pushes](Document::pushes) (memory; SQLite on Linux) it reads the
/// document as soon as a write by any process is visible; on one that
/// cannot (DynamoDB) it checks the version once per poll interval (see
/// [`Document::version`] for one check's cost on each store) and reads the
/// document only when that changed.
///
/// # Guarantees
///
/// - Versions only go up: each change's `version` is greater than the one
///   before, and its `since` is the previous change's `version`. A read that
///   returns an older version than one already reported is ignored.
/// - The latest state is never skipped: every read reads the latest version,
///   and a read that finds it newer than the last change reports it.
/// - Writes between two reads are folded into one change, which says so
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
    /// The version the last read found (`None` before the first): what
    /// [`next`](Changes::next) waits to change.
    read: Option<u64>,
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
            read: None,
        }
    }

    /// Check the version every `interval` (at least 1 ms) instead of every
    /// second: on a store that cannot push, the poll interval; on one that
    /// pushes, the safety check in case a notification was lost.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The version of the last change reported (or the starting version).
    pub fn version(&self) -> u64 {
        self.since
    }

    /// The next change. The first call reads the store at once; later ones
    /// wait for the document's version to move past the one last read
    /// ([`Document::wait_for_change`]), then read it.
    pub async fn next(&mut self) -> Result<Change> {
        loop {
            if let Some(read) = self.read {
                self.doc
                    .wait_for_change(read, None, self.poll_interval)
                    .await?;
            }
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
            self.read = Some(self.since);
            return Ok(None);
        };
        self.read = Some(now.version);
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
    use crate::document::{CasOutcome, DocumentExt};
    use crate::store::memory::MemoryStore;
    use crate::store::Store;
    use async_trait::async_trait;
    use serde_json::json;
    use tokio::time::Instant;

    /// A document of a store that cannot push: the memory store's, with the
    /// default (polling) `wait_for_change`.
    #[derive(Debug)]
    struct Polled(Box<dyn Document>);

    #[async_trait]
    impl Document for Polled {
        fn id(&self) -> &str {
            self.0.id()
        }
        async fn read(&self) -> Result<Snapshot> {
            self.0.read().await
        }
        async fn compare_and_set(
            &self,
            expected: u64,
            value: Option<&Value>,
        ) -> Result<CasOutcome> {
            self.0.compare_and_set(expected, value).await
        }
        async fn remove(&self) -> Result<Option<u64>> {
            self.0.remove().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_push_next_returns_at_the_write_however_long_the_interval() {
        let store = MemoryStore::new();
        let doc: Arc<dyn Document> = Arc::from(store.document("d").unwrap());
        assert!(doc.pushes());
        let mut changes =
            Changes::new(Arc::clone(&doc), 0).with_poll_interval(Duration::from_secs(3600));
        let t0 = Instant::now();
        doc.write(0, &json!(1)).await.unwrap();
        assert_eq!(changes.next().await.unwrap().version, 1);
        assert_eq!(Instant::now(), t0, "the first check is at once");
        let writer = {
            let doc = Arc::clone(&doc);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(7)).await;
                doc.write(1, &json!(2)).await.unwrap();
            })
        };
        let c = changes.next().await.unwrap();
        assert_eq!((c.version, c.since, c.folded()), (2, 1, false));
        assert_eq!(Instant::now() - t0, Duration::from_secs(7), "at the write");
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn without_push_next_checks_once_per_interval_and_folds() {
        let store = MemoryStore::new();
        let doc: Arc<dyn Document> = Arc::new(Polled(store.document("d").unwrap()));
        assert!(!doc.pushes());
        let interval = Duration::from_secs(2);
        let mut changes = Changes::new(Arc::clone(&doc), 0).with_poll_interval(interval);
        let t0 = Instant::now();
        doc.write(0, &json!(1)).await.unwrap();
        assert_eq!(changes.next().await.unwrap().version, 1);
        assert_eq!(Instant::now(), t0, "the first check is at once");
        // Two writes before the next check: one folded change.
        doc.write(1, &json!(2)).await.unwrap();
        doc.write(2, &json!(3)).await.unwrap();
        let c = changes.next().await.unwrap();
        assert_eq!((c.version, c.since, c.folded()), (3, 1, true));
        let waited = Instant::now() - t0;
        assert!(
            waited >= interval / 2 && waited <= interval,
            "at the first check: {waited:?}"
        );
        // Nothing changes for a while: found at the first check after the write.
        let t1 = Instant::now();
        let writer = {
            let doc = Arc::clone(&doc);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(7)).await;
                doc.write(3, &json!(4)).await.unwrap();
            })
        };
        assert_eq!(changes.next().await.unwrap().version, 4);
        let waited = Instant::now() - t1;
        assert!(
            waited >= Duration::from_secs(7) && waited <= Duration::from_secs(9),
            "within an interval of the write: {waited:?}"
        );
        writer.await.unwrap();
    }
}
