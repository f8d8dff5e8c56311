//! etcd watches, for the three things this store asks of a key's history:
//!
//! - [`wait_for_change`]: block until an item's record changes after a
//!   revision (a waiter's wait, a document watcher's), or a deadline
//!   passes: the `wait_for_change` of the `change` module's capability,
//!   pushed by the server.
//! - [`first_write_after`]: the write that followed a revision, to learn
//!   whether a conditional write whose answer was lost is the one that
//!   landed.
//! - [`writes_until`]: every write of a key from one revision up to a
//!   marker's, to look for a blind write whose answer was lost.
//!
//! A watch that starts at a revision that was compacted away gets no
//! events: the waits then return `true` at once (the caller reads afresh, so it
//! never skips the latest state), and the history lookups fail as
//! Unavailable: the outcome of that write cannot be known.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchStream};
use tokio::time::Instant;
use tracing::debug;

use super::error::{from_etcd, timed_out};
use super::store::EtcdStore;
use crate::error::{Error, ErrorKind, Result};

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

/// Wait until the version of the record at `key` is no longer `seen`
/// (`true`), or `until` passes (`false`): an etcd watch of the record key
/// from `revision` (a read that found it at `seen`) on, so the server
/// pushes every write of the record; `version_of` says what version a
/// written value holds (`None`: not a record of this kind, which is a
/// change: the caller reads it and reports it). Renewals write lease keys,
/// never the record, so they wake no one.
///
/// Every `poll` it also reads the version (`reread`), as the `change`
/// module asks of a store that pushes: a member cut off from the rest of
/// its cluster keeps a watch open but silent, and that read, which needs
/// a quorum, finds the change (or fails) instead. A watch that breaks, is
/// canceled or starts at a compacted revision returns `true` at once: the
/// caller reads afresh, so it never skips the latest state.
#[allow(clippy::too_many_arguments)]
pub(super) async fn wait_for_change<Fut>(
    store: &EtcdStore,
    what: &str,
    key: &[u8],
    revision: i64,
    seen: u64,
    version_of: impl Fn(&[u8]) -> Option<u64>,
    mut reread: impl FnMut() -> Fut,
    until: Option<Instant>,
    poll: Duration,
) -> Result<bool>
where
    Fut: std::future::Future<Output = Result<u64>>,
{
    let poll = poll.max(Duration::from_millis(1));
    let far = || Instant::now() + Duration::from_secs(60 * 60 * 24 * 365);
    let opened = until.unwrap_or_else(far).min(store.deadline());
    let mut stream = match open(store, what, key, None, revision + 1, opened).await {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::Unavailable => {
            // The caller's read tries the other members within its own
            // time, and fails as this did if none answers.
            debug!(what, error = %e, "cannot watch; reading again");
            return Ok(until.is_none_or(|u| Instant::now() < u));
        }
        Err(e) => return Err(e),
    };
    loop {
        let check = Instant::now().checked_add(poll).unwrap_or_else(far);
        let wake = until.map_or(check, |u| u.min(check));
        let message = tokio::select! {
            m = stream.message() => m,
            () = tokio::time::sleep_until(wake) => {
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Ok(false);
                }
                if reread().await? != seen {
                    return Ok(true);
                }
                continue;
            }
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => {
                debug!(what, "the watch ended; reading again");
                return Ok(true);
            }
        };
        if response.compact_revision() > 0 || response.canceled() {
            debug!(
                what,
                compacted = response.compact_revision(),
                "watch canceled; reading again"
            );
            return Ok(true);
        }
        for event in response.events() {
            let version = match (event.event_type(), event.kv()) {
                (EventType::Delete, _) => Some(0),
                (EventType::Put, Some(kv)) => version_of(kv.value()),
                (EventType::Put, None) => None,
            };
            if version != Some(seen) {
                return Ok(true);
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
