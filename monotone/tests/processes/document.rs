//! What the multi-process document check uses: the update every worker
//! makes, the watcher that follows the document meanwhile, and the checks
//! on what it saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monotone::{Change, Changes, Document, Snapshot};
use serde_json::{json, Value};

/// `v` with the number under "n" one higher, the rest kept.
pub fn incremented(v: Option<&Value>) -> monotone::Result<Option<Value>> {
    let mut v = v.cloned().unwrap_or_else(|| json!({}));
    v["n"] = json!(v["n"].as_u64().unwrap_or(0) + 1);
    Ok(Some(v))
}

/// Follow `doc` from version `start`, one check per `interval`, until the
/// version `end` holds (0 while the workers run; the caller stores the
/// document's version once they are done): so a lost update fails the
/// caller's checks rather than leaving the watcher waiting for it.
pub async fn follow(
    doc: Arc<dyn Document>,
    start: u64,
    end: Arc<AtomicU64>,
    interval: Duration,
) -> Vec<Change> {
    let mut changes = Changes::new(doc, start);
    let mut seen = vec![];
    loop {
        let end = end.load(Ordering::SeqCst);
        if end != 0 && changes.version() >= end {
            return seen;
        }
        let next_check = tokio::time::Instant::now() + interval;
        if let Some(c) = changes.poll().await.unwrap() {
            seen.push(c);
        }
        tokio::time::sleep_until(next_check).await;
    }
}

/// A watcher that started at `start` saw versions only rise, each change
/// starting where the last ended and holding the value of its version
/// (`n` = version - start), and ended on the final state `now`.
pub fn check_history(seen: &[Change], start: u64, now: &Snapshot) {
    let mut since = start;
    for c in seen {
        assert_eq!(c.since, since, "each change starts where the last ended");
        assert!(c.version > c.since, "versions only rise");
        assert_eq!(
            c.value.as_ref().unwrap()["n"],
            c.version - start,
            "the value of that version"
        );
        since = c.version;
    }
    assert_eq!(
        seen.last().unwrap().snapshot(),
        *now,
        "ends on the final state"
    );
}
