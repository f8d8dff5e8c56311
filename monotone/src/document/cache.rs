//! [`CachedDocument`]: a document read from a local copy that a background
//! task keeps fresh, and that refuses to answer once it may be too old
//! (zkstate's `read()` and its 30 second rule).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::document::{Document, Snapshot};
use crate::error::{Error, ErrorKind, Result};

/// zkstate's bound: a copy not confirmed for 30 s is not served.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(30);

/// How a [`CachedDocument`] keeps its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheOptions {
    /// A copy last confirmed fresh longer ago than this is not served:
    /// [`CachedDocument::read`] fails instead.
    pub max_staleness: Duration,
    /// How often the background task checks the store. A third of
    /// `max_staleness` by default, so that two failed checks in a row still
    /// leave the copy servable.
    pub refresh_every: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions::new(DEFAULT_MAX_STALENESS)
    }
}

impl CacheOptions {
    /// A bound of `max_staleness`, checked every third of it.
    pub fn new(max_staleness: Duration) -> Self {
        CacheOptions {
            max_staleness,
            refresh_every: max_staleness / 3,
        }
    }

    /// Set [`refresh_every`](Self::refresh_every) (at least 1 ms).
    pub fn with_refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every.max(Duration::from_millis(1));
        self
    }
}

/// A local copy of a [`Document`], refreshed in the background, with a
/// maximum staleness.
///
/// [`read`](Self::read) answers from memory, without a request. A task
/// checks the store every [`CacheOptions::refresh_every`] with one change
/// check ([`Document::read_if_changed`]: on DynamoDB one `GetItem`, on
/// SQLite one indexed read of the version) and takes any newer version.
/// A copy counts as confirmed fresh as of the moment the last successful
/// check was *sent*, so a check that hangs or fails does not extend it.
/// Once the copy has not been confirmed for longer than
/// [`CacheOptions::max_staleness`], `read` fails with
/// [`ErrorKind::Unavailable`] (the CLI's exit code 6), naming the age and
/// the last error, until a check succeeds again.
///
/// What a read guarantees: the value is one the document really held, no
/// older than `max_staleness` (plus the time the confirming request took
/// to reach the store), and never older than a value this reader returned
/// before. For a read that sees every acknowledged write, use
/// [`Document::read`].
///
/// Time is tokio's clock, so tests pause it. Dropping the reader stops its
/// task.
pub struct CachedDocument {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    doc: Arc<dyn Document>,
    options: CacheOptions,
    state: Mutex<CacheState>,
}

struct CacheState {
    snapshot: Snapshot,
    confirmed: Instant,
    last_error: Option<String>,
}

impl fmt::Debug for CachedDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedDocument")
            .field("id", &self.shared.doc.id())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl CachedDocument {
    /// Read `doc` once (a fresh read) and keep it, with `options`. Must be
    /// called within a tokio runtime, which runs the refreshing task.
    pub async fn open(doc: Arc<dyn Document>, options: CacheOptions) -> Result<Self> {
        let sent = Instant::now();
        let snapshot = doc.read().await?;
        let shared = Arc::new(Shared {
            doc,
            options,
            state: Mutex::new(CacheState {
                snapshot,
                confirmed: sent,
                last_error: None,
            }),
        });
        let task = tokio::spawn(refresh_forever(Arc::clone(&shared)));
        Ok(CachedDocument { shared, task })
    }

    /// The local copy, if it was confirmed fresh within the bound; else
    /// [`ErrorKind::Unavailable`].
    pub fn read(&self) -> Result<Snapshot> {
        let state = self.shared.lock();
        let age = state.confirmed.elapsed();
        let bound = self.shared.options.max_staleness;
        if age > bound {
            let why = state
                .last_error
                .as_deref()
                .map_or_else(String::new, |e| format!("; the last check failed: {e}"));
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "document `{}`: the cached copy (version {}) was last confirmed fresh {:.1}s ago, \
                     more than the {:.1}s allowed{why}",
                    self.shared.doc.id(),
                    state.snapshot.version,
                    age.as_secs_f64(),
                    bound.as_secs_f64()
                ),
            ));
        }
        Ok(state.snapshot.clone())
    }

    /// How long ago the copy was last confirmed fresh.
    pub fn age(&self) -> Duration {
        self.shared.lock().confirmed.elapsed()
    }

    /// Check the store now, as the background task does, and return the
    /// copy as it then is.
    pub async fn refresh(&self) -> Result<Snapshot> {
        self.shared.refresh().await?;
        Ok(self.shared.lock().snapshot.clone())
    }
}

impl Drop for CachedDocument {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The state is replaced field by field with plain values: never
        // half-written, so a poisoned lock still guards a valid copy.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn refresh(&self) -> Result<()> {
        let sent = Instant::now();
        let known = self.lock().snapshot.version;
        // A check that takes longer than the bound could not keep the copy
        // servable anyway; stop waiting for it then.
        let bound = self.options.max_staleness;
        let checked = match tokio::time::timeout(bound, self.doc.read_if_changed(known)).await {
            Ok(checked) => checked,
            Err(_) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "document `{}`: the check did not finish within {:.1}s",
                    self.doc.id(),
                    bound.as_secs_f64()
                ),
            )),
        };
        let mut state = self.lock();
        match checked {
            Ok(newer) => {
                // A slower check may finish after a quicker, later one: keep
                // the newest copy and the latest confirmation.
                if let Some(s) = newer.filter(|s| s.version > state.snapshot.version) {
                    state.snapshot = s;
                }
                state.confirmed = state.confirmed.max(sent);
                state.last_error = None;
                Ok(())
            }
            Err(e) => {
                tracing::debug!(id = self.doc.id(), error = %e, "cached document: refresh failed");
                state.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

async fn refresh_forever(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(shared.options.refresh_every).await;
        // Failures are kept in the state: they show in `read` once the copy
        // is too old.
        let _ = shared.refresh().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DocumentExt;
    use crate::store::memory::MemoryStore;
    use crate::store::Store;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn the_task_keeps_the_copy_fresh_and_takes_new_versions() {
        let store = MemoryStore::new();
        let doc: Arc<dyn Document> = Arc::from(store.document("d").unwrap());
        doc.write(0, &json!(1)).await.unwrap();
        let cached = CachedDocument::open(Arc::clone(&doc), CacheOptions::default())
            .await
            .unwrap();
        doc.write(1, &json!(2)).await.unwrap();
        assert_eq!(cached.read().unwrap().version, 1, "not checked yet");
        tokio::time::sleep(Duration::from_secs(10) + Duration::from_millis(1)).await;
        assert_eq!(cached.read().unwrap(), Snapshot::new(Some(json!(2)), 2));
        // Checked every 10 s, it never goes stale while the store answers.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(
            cached.age() <= Duration::from_secs(10),
            "{:?}",
            cached.age()
        );
        assert_eq!(cached.read().unwrap().version, 2);
        doc.remove().await.unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(cached.read().unwrap(), Snapshot::new(None, 3));
    }

    #[test]
    fn options() {
        let o = CacheOptions::new(Duration::from_secs(9)).with_refresh_every(Duration::ZERO);
        assert_eq!(o.max_staleness, Duration::from_secs(9));
        assert_eq!(o.refresh_every, Duration::from_millis(1));
        assert_eq!(
            CacheOptions::default().refresh_every,
            Duration::from_secs(10)
        );
    }
}
