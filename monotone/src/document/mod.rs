//! Documents: the [`Document`] trait, its contract, and what every store
//! gets on top of it ([`DocumentExt`]: the checked write and the update
//! helper) (here), and beside it
//!
//! - `state.rs`: the rules that do not depend on a store (the size limit,
//!   the encoding, the top-level diff);
//! - `cache.rs`: [`CachedDocument`], a local copy kept fresh in the
//!   background;
//! - `changes.rs`: [`Changes`](crate::Changes), a document's change stream.
//!
//! The cached reader and the change stream only need this trait.
//!
//! [`CachedDocument`]: crate::CachedDocument

pub(crate) mod cache;
pub(crate) mod changes;
pub(crate) mod state;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use crate::backoff::{Backoff, Jitter};
use crate::change::poll_for_change;
use crate::error::{Error, ErrorKind, Result};
use crate::queue::fencing::FencingToken;

/// A document as one read saw it: its value (`None` when there is no
/// document) and its version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// The JSON value; `None` if the document does not exist (never written,
    /// or removed). A document holding JSON `null` is `Some(Value::Null)`.
    pub value: Option<Value>,
    /// The number of writes the document has had, removals included: 0 if it
    /// was never written.
    pub version: u64,
}

impl Snapshot {
    /// A snapshot of `value` at `version`.
    pub fn new(value: Option<Value>, version: u64) -> Self {
        Snapshot { value, version }
    }

    /// Whether the document exists.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The version as a fencing token, for systems that refuse writes made
    /// from a stale view.
    pub fn fencing_token(&self) -> FencingToken {
        FencingToken(self.version)
    }
}

/// What [`Document::compare_and_set`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CasOutcome {
    /// The document was at the expected version, and now holds what was
    /// asked, at this version: the expected one plus 1, or the expected one
    /// itself when the document held what was asked already (the same
    /// value, or absent and asked to be removed), which writes nothing.
    Done {
        /// The document's version now.
        version: u64,
    },
    /// The document was at another version; nothing was written. It is as
    /// this snapshot shows (as of the failed attempt).
    Conflict(Snapshot),
}

/// One JSON value shared under an id, with a version that grows by one with
/// every write: zkstate's shared state, on any store.
///
/// Obtain one from [`Store::document`](crate::Store::document); the handle
/// is cheap and holds no lock. The convenient calls are in [`DocumentExt`];
/// a cached reader is [`CachedDocument`](crate::CachedDocument), a change
/// stream [`Changes`](crate::Changes).
///
/// # Contract
///
/// Every store upholds these, and the conformance suite checks them:
///
/// - A document that was never written is absent (`value: None`, which is not
///   JSON `null`) at version 0.
/// - Every write (a set, or the removal of an existing document) adds exactly
///   1 to the version; reads never change it.
/// - **A write of what the document holds already is no write**: setting
///   the value it has (equal as JSON: same keys and values, whatever their
///   order or spacing in the input), or removing an absent document,
///   writes nothing and leaves the version as it is. This one rule holds
///   for [`compare_and_set`](Document::compare_and_set) (and so for
///   [`DocumentExt::write`] at a version, and `--if-version` on the command
///   line) as for [`DocumentExt::update`] (which does not even send the
///   write): at the expected version an identical write succeeds with the
///   version unchanged; at another version it is a conflict like any
///   other. So a version stands for a change, and a watcher never sees a
///   version that changed nothing. Versions never repeat or go
///   back for an id: removing a document keeps its version in the store (a
///   marker without a value), and a document written again goes on from
///   there. So the version is a fencing token, and a change check by version
///   alone is sound.
/// - [`compare_and_set`](Document::compare_and_set) writes only if the
///   document is at the expected version, atomically: of many writers that
///   read the same version, exactly one succeeds. The others get
///   [`CasOutcome::Conflict`] with the document as it was, and nothing is
///   written.
/// - [`read`](Document::read) is one consistent read: it sees every write
///   acknowledged before it started.
/// - A value whose compact JSON text is longer than
///   [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES) is refused with
///   [`ErrorKind::InvalidInput`] before anything is read or written.
/// - If the id holds another kind of item (a counter, a queue), every method
///   fails with [`ErrorKind::WrongType`] and changes nothing; and the id of a
///   document, removed or not, stays a document's.
/// - A successful write is durable in its store before it returns.
/// - [`version`](Document::version) is the version [`read`](Document::read)
///   would return, read as cheaply as the store can;
///   [`wait_for_change`](Document::wait_for_change) returns `true` once it
///   is not the one seen, `false` once `until` passes (as
///   [`Queue::wait_for_change`](crate::Queue::wait_for_change) does for a
///   queue).
#[async_trait]
pub trait Document: Send + Sync + fmt::Debug {
    /// The id this document is stored under.
    fn id(&self) -> &str;

    /// The document now: one consistent read.
    async fn read(&self) -> Result<Snapshot>;

    /// The document, if its version is not `known`; `None` if it is. This is
    /// a watcher's poll: stores avoid reading an unchanged value where they
    /// can (see each store's docs for what one check costs).
    async fn read_if_changed(&self, known: u64) -> Result<Option<Snapshot>> {
        let now = self.read().await?;
        Ok((now.version != known).then_some(now))
    }

    /// Set the document to `value` (`None` removes it) if it is at version
    /// `expected` (0 for a document never written).
    async fn compare_and_set(&self, expected: u64, value: Option<&Value>) -> Result<CasOutcome>;

    /// Remove the document whatever its version. Returns the version the
    /// removal produced, or `None` if there was no document (nothing is
    /// written then).
    async fn remove(&self) -> Result<Option<u64>>;

    /// The retry policy of [`DocumentExt::update`] on this store.
    fn backoff(&self) -> Backoff {
        Backoff::default()
    }

    /// The document's version now (0 if it was never written): what a
    /// watcher checks. The default reads the whole document; stores read
    /// the version alone.
    async fn version(&self) -> Result<u64> {
        Ok(self.read().await?.version)
    }

    /// Whether this handle is told of changes by its store (push), rather
    /// than finding them by reading the version every `poll` of
    /// [`wait_for_change`](Document::wait_for_change).
    fn pushes(&self) -> bool {
        false
    }

    /// Wait until the document's version is no longer `seen` (`true`,
    /// possibly spurious: read it again) or `until` passes (`false`; `None`
    /// waits for ever), as [`Queue::wait_for_change`](crate::Queue::wait_for_change)
    /// does for a queue.
    async fn wait_for_change(
        &self,
        seen: u64,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        poll_for_change(seen, until, poll, || self.version()).await
    }
}

/// What every [`Document`] can do through its essential methods.
#[async_trait]
pub trait DocumentExt: Document {
    /// Set the document to `value` if it is at version `expected`; the new
    /// version (`expected` itself if the document holds `value` already:
    /// nothing is written). At another version it fails with
    /// [`ErrorKind::VersionMismatch`], naming the current version, and
    /// writes nothing.
    async fn write(&self, expected: u64, value: &Value) -> Result<u64> {
        cas_or_mismatch(
            self.id(),
            expected,
            self.compare_and_set(expected, Some(value)).await?,
        )
    }

    /// Remove the document if it is at version `expected`: the version the
    /// removal produced, or `None` if it was absent (nothing written).
    /// VersionMismatch at another version.
    async fn remove_if(&self, expected: u64) -> Result<Option<u64>> {
        let outcome = self.compare_and_set(expected, None).await?;
        let version = cas_or_mismatch(self.id(), expected, outcome)?;
        // An absent document is "removed" without a write: same version.
        Ok((version != expected).then_some(version))
    }

    /// Read the document, give its value to `change`, and write what it
    /// returns (`None` removes the document) conditional on the version
    /// read; when another writer won, read again and call `change` again,
    /// backing off as [`Document::backoff`] says. Returns the document as
    /// written. When `change` returns the value it was given, nothing is
    /// written and the snapshot read is returned. An error from `change`
    /// ends the update, with nothing written. Gives up with
    /// [`ErrorKind::Conflict`] when the retry budget is spent.
    ///
    /// `change` may run several times: keep it free of side effects. Each
    /// attempt reads and writes the whole document, so under contention a
    /// large document costs its size once more per lost race (on DynamoDB
    /// in read and write units).
    async fn update<F>(&self, mut change: F) -> Result<Snapshot>
    where
        F: FnMut(Option<&Value>) -> Result<Option<Value>> + Send,
    {
        let policy = self.backoff();
        let mut attempts = policy.start(now(), Jitter::from_entropy());
        let mut seen = self.read().await?;
        loop {
            let wanted = change(seen.value.as_ref())?;
            if wanted == seen.value {
                return Ok(seen);
            }
            match self.compare_and_set(seen.version, wanted.as_ref()).await? {
                CasOutcome::Done { version } => return Ok(Snapshot::new(wanted, version)),
                CasOutcome::Conflict(current) => {
                    let delay = attempts.next_delay(now()).map_err(|spent| {
                        Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "document `{}`: update gave up after {} attempts in {:.1}s, \
                                 as other writers kept writing it first",
                                self.id(),
                                spent.attempts,
                                spent.elapsed.as_secs_f64()
                            ),
                        )
                    })?;
                    tracing::debug!(
                        id = self.id(),
                        retry = attempts.retries(),
                        ?delay,
                        "document update: another writer won; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    // Soon after the conflict, the document it returned is
                    // likely still current; after a longer wait, read again.
                    seen = if delay <= policy.reuse_within {
                        current
                    } else {
                        self.read().await?
                    };
                }
            }
        }
    }
}

impl<D: Document + ?Sized> DocumentExt for D {}

/// The time the update helper's budget is counted in: tokio's clock, so that
/// a paused clock pauses it too.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The new version of a write, or the VersionMismatch error of a conflict.
fn cas_or_mismatch(id: &str, expected: u64, outcome: CasOutcome) -> Result<u64> {
    match outcome {
        CasOutcome::Done { version } => Ok(version),
        CasOutcome::Conflict(current) => {
            Err(Error::version_mismatch(id, expected, current.version))
        }
    }
}
