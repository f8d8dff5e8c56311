//! etcd watches, for the three things this store asks of a key's history:
//!
//! - [`wait_for_change`]: block until an item changes after a revision (a
//!   waiter's wait, a document watcher's), or a deadline passes. No
//!   polling: the server pushes each change.
//! - [`first_write_after`]: the write that followed a revision, to learn
//!   whether a conditional write whose answer was lost is the one that
//!   landed.
//! - [`writes_until`]: every write of a key from one revision up to a
//!   marker's, to look for a blind write whose answer was lost.
//!
//! A watch that starts at a revision that was compacted away gets no
//! events: the waits then return at once (the caller reads afresh, so it
//! never skips the latest state), and the history lookups fail as
//! Unavailable: the outcome of that write cannot be known.

use std::time::Duration;

use etcd_client::{Event, EventType, WatchOptions, WatchStream};
use tokio::time::Instant;
use tracing::debug;

use super::error::{from_etcd, timed_out};
use super::store::EtcdStore;
use crate::error::{Error, ErrorKind, Result};

/// What one event means to a waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// The item's version moved: wake now.
    Changed,
    /// A lease was renewed: wake, but not before a poll interval has passed
    /// since the wait began (see [`wait_for_change`]).
    Renewed,
    /// Nothing the waiter cares about.
    Nothing,
}

/// Open a watch of `[key, end)` (of `key` alone without `end`) from
/// `revision` on.
async fn open(
    store: &EtcdStore,
    what: &str,
    key: &[u8],
    end: Option<Vec<u8>>,
    revision: i64,
    deadline: Instant,
) -> Result<WatchStream> {
    let mut options = WatchOptions::new().with_start_revision(revision);
    if let Some(end) = end {
        options = options.with_range(end);
    }
    let limit = store.config().request_timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        let mut client = store.client();
        let e = match tokio::time::timeout(limit, client.watch(key.to_vec(), Some(options.clone())))
            .await
        {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => from_etcd(what, e),
            Err(_) => timed_out(what, limit),
        };
        if e.kind() != ErrorKind::Unavailable {
            return Err(e);
        }
        delay = store.pause(what, &e, delay, deadline).await.ok_or(e)?;
    }
}

/// Wait until an event among the keys of the item at `key` after
/// `revision` matters (`judge`
/// says which do), or `until` passes. True: look again (something changed,
/// or a lease was renewed and `poll` has passed since the wait began, or
/// the watch broke or started at a compacted revision: a spurious true
/// costs one read); false: `until` passed first.
///
/// Renewals wake a waiter at most once per `poll`, so that many waiters of
/// a queue whose holders renew often re-read it at most that often, while
/// the write that frees a place wakes them at once.
pub(super) async fn wait_for_change(
    store: &EtcdStore,
    what: &str,
    key: &[u8],
    revision: i64,
    judge: impl Fn(&Event) -> Seen,
    until: Instant,
    poll: Duration,
) -> Result<bool> {
    let started = Instant::now();
    let end = super::layout::item_end(key);
    let mut stream = match open(store, what, key, Some(end), revision + 1, until).await {
        Ok(s) => s,
        Err(e) => {
            debug!(what, error = %e, "cannot watch; looking again");
            return Ok(Instant::now() < until);
        }
    };
    let mut renewed: Option<Instant> = None;
    loop {
        let wake = renewed.map_or(until, |r| r.min(until));
        let message = tokio::select! {
            m = stream.message() => m,
            () = tokio::time::sleep_until(wake) => return Ok(renewed.is_some() && wake < until),
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => {
                debug!(what, "the watch ended; looking again");
                return Ok(true);
            }
        };
        if response.compact_revision() > 0 || response.canceled() {
            debug!(
                what,
                compacted = response.compact_revision(),
                "watch canceled; looking again"
            );
            return Ok(true);
        }
        for event in response.events() {
            match judge(event) {
                Seen::Changed => return Ok(true),
                Seen::Renewed => {
                    let at = (started + poll).max(Instant::now());
                    renewed = Some(renewed.map_or(at, |r| r.min(at)));
                }
                Seen::Nothing => {}
            }
        }
    }
}

/// The first write of `key` after `revision` (its type and, for a put, the
/// value written), which must have happened already: the caller saw the
/// key's modification revision move past `revision`.
pub(super) async fn first_write_after(
    store: &EtcdStore,
    what: &str,
    key: &[u8],
    revision: i64,
    deadline: Instant,
) -> Result<(EventType, Vec<u8>)> {
    let mut stream = open(store, what, key, None, revision + 1, deadline).await?;
    loop {
        let response = next(&mut stream, what, deadline).await?;
        if let Some(e) = response.events().first() {
            let value = e.kv().map(|kv| kv.value().to_vec()).unwrap_or_default();
            return Ok((e.event_type(), value));
        }
    }
}

/// Every write of `key` from `revision` (included) up to the write of
/// `marker`, a key among the item's that the caller wrote after them: `(type,
/// value, version)` in order. A watch delivers events in the order of
/// their revisions, so once the marker's write arrives, every earlier
/// write of `key` has. (etcd 3.4 may report a watch's progress before it
/// sends the history it still owes, so progress reports cannot say that.)
pub(super) async fn writes_until(
    store: &EtcdStore,
    what: &str,
    key: &[u8],
    marker: &[u8],
    revision: i64,
    deadline: Instant,
) -> Result<Vec<(EventType, Vec<u8>, i64)>> {
    let end = super::layout::item_end(key);
    let mut stream = open(store, what, key, Some(end), revision, deadline).await?;
    let mut writes = Vec::new();
    loop {
        let response = next(&mut stream, what, deadline).await?;
        for e in response.events() {
            let Some(kv) = e.kv() else { continue };
            if kv.key() == marker {
                return Ok(writes);
            }
            if kv.key() == key {
                writes.push((e.event_type(), kv.value().to_vec(), kv.version()));
            }
        }
    }
}

/// The next response of a history watch, failing on a compacted revision,
/// a broken stream or the deadline.
async fn next(
    stream: &mut WatchStream,
    what: &str,
    deadline: Instant,
) -> Result<etcd_client::WatchResponse> {
    let response = tokio::select! {
        r = stream.message() => r.map_err(|e| from_etcd(what, e))?,
        () = tokio::time::sleep_until(deadline) => return Err(Error::new(
            ErrorKind::Unavailable,
            format!("etcd: {what}: the key's history did not come in time"),
        )),
    };
    let response = response.ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            format!("etcd: {what}: the watch ended"),
        )
    })?;
    if response.compact_revision() > 0 {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "etcd: {what}: the key's history was compacted (to revision {})",
                response.compact_revision()
            ),
        ));
    }
    if response.canceled() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "etcd: {what}: the watch was canceled: {}",
                response.cancel_reason()
            ),
        ));
    }
    Ok(response)
}
