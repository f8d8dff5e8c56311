//! The contract of `Document`, the update helper, the cached reader and the
//! change stream, as plain async functions taking a store, run unchanged
//! against every backend.
//!
//! Each check would fail on the bug it is named after: a compare-and-set
//! that ignores the version, a version that skips, stalls or restarts, a
//! lost update, an oversized write that lands, a stale copy served past its
//! bound, a stream that goes back or stops short of the latest state.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use monotone::{
    CacheOptions, CachedDocument, CasOutcome, Changes, Diff, Document, DocumentExt, ErrorKind,
    Snapshot, Tags,
};
use serde_json::{json, Value};

use super::{kind, together, S};

fn doc(store: &S, id: &str) -> Arc<dyn Document> {
    Arc::from(store.document(id).unwrap())
}

/// The number under "n", 0 if there is none.
fn n(v: Option<&Value>) -> u64 {
    v.and_then(|v| v["n"].as_u64()).unwrap_or(0)
}

/// `v` with "n" one higher.
fn incremented(v: Option<&Value>) -> monotone::Result<Option<Value>> {
    let mut v = v.cloned().unwrap_or_else(|| json!({}));
    v["n"] = json!(n(Some(&v)) + 1);
    Ok(Some(v))
}

pub async fn document_starts_absent(store: S) {
    let d = doc(&store, "fresh");
    assert_eq!(d.id(), "fresh");
    let s = d.read().await.unwrap();
    assert_eq!(s, Snapshot::new(None, 0));
    assert!(!s.exists());
    assert_eq!(d.read_if_changed(0).await.unwrap(), None);
    assert_eq!(d.remove().await.unwrap(), None, "removing nothing is fine");
    // None of that wrote anything: the id is still free for a counter.
    assert_eq!(store.counter("fresh").unwrap().next().await.unwrap(), 1);
}

pub async fn document_versions_grow_by_one_with_every_write(store: S) {
    let d = doc(&store, "cfg");
    assert_eq!(d.write(0, &json!({"a": 1})).await.unwrap(), 1);
    assert_eq!(d.write(1, &json!({"a": 2})).await.unwrap(), 2);
    for expected in 3..=10u64 {
        assert_eq!(
            d.write(expected - 1, &json!({"a": expected}))
                .await
                .unwrap(),
            expected
        );
    }
    let s = d.read().await.unwrap();
    assert_eq!(s, Snapshot::new(Some(json!({"a": 10})), 10));
    assert_eq!(s.fencing_token().get(), 10);
    assert_eq!(d.read_if_changed(10).await.unwrap(), None, "unchanged");
    assert_eq!(d.read_if_changed(9).await.unwrap(), Some(s.clone()));
    // Another handle on the same id sees the same document.
    assert_eq!(doc(&store, "cfg").read().await.unwrap(), s);
}

pub async fn document_holds_any_json(store: S) {
    let values = [
        Value::Null,
        json!(0),
        json!(-1.5),
        json!(u64::MAX),
        json!("text with \"quotes\", \\ and ünïcødé 🦀"),
        json!([]),
        json!({}),
        json!([1, "two", {"three": [null, true]}]),
        json!({"globs": ["/usr/bin/*", "/opt/**/bin/*"], "nested": {"deep": {"er": 1}}}),
    ];
    let d = doc(&store, "any");
    for (i, v) in values.iter().enumerate() {
        d.write(i as u64, v).await.unwrap();
        let s = d.read().await.unwrap();
        assert_eq!(s.value.as_ref(), Some(v), "round trip of {v}");
        assert!(s.exists(), "a document holding {v} exists");
    }
}

pub async fn document_write_on_another_version_conflicts_and_writes_nothing(store: S) {
    let d = doc(&store, "cas");
    d.write(0, &json!({"who": "first"})).await.unwrap();
    let err = d.write(0, &json!({"who": "second"})).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VersionMismatch);
    let msg = err.to_string();
    assert!(msg.contains("`cas`") && msg.contains("version 1"), "{msg}");
    assert_eq!(
        kind(d.write(7, &json!(1)).await),
        ErrorKind::VersionMismatch
    );
    match d.compare_and_set(5, Some(&json!(2))).await.unwrap() {
        CasOutcome::Conflict(now) => {
            assert_eq!(now, Snapshot::new(Some(json!({"who": "first"})), 1));
        }
        other => panic!("a write at the wrong version went through: {other:?}"),
    }
    assert_eq!(kind(d.remove_if(0).await), ErrorKind::VersionMismatch);
    assert_eq!(
        d.read().await.unwrap(),
        Snapshot::new(Some(json!({"who": "first"})), 1),
        "nothing written"
    );
    // A document never written conflicts with any version but 0.
    let new = doc(&store, "cas-new");
    assert_eq!(
        kind(new.write(1, &json!(1)).await),
        ErrorKind::VersionMismatch
    );
    assert_eq!(new.read().await.unwrap(), Snapshot::default());
}

/// 8 writers all read version 1 and write on it at once: one wins.
pub async fn document_concurrent_writers_of_one_version_have_one_winner(store: S) {
    const WRITERS: usize = 8;
    let d = doc(&store, "race");
    d.write(0, &json!({"winner": null})).await.unwrap();
    let outcomes = together(WRITERS, |i| {
        let d = doc(&store, "race");
        async move {
            d.compare_and_set(1, Some(&json!({"winner": i})))
                .await
                .unwrap()
        }
    })
    .await;
    let mut winners = vec![];
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            CasOutcome::Done { version } => {
                assert_eq!(version, 2);
                winners.push(i);
            }
            CasOutcome::Conflict(now) => assert_eq!(now.version, 2),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let s = d.read().await.unwrap();
    assert_eq!(s.version, 2);
    assert_eq!(s.value, Some(json!({"winner": winners[0]})));
}

/// 8 tasks x 10 increments of one number through the update helper: none is
/// lost, and every one is one version.
pub async fn document_update_helper_retries_until_it_wins(store: S) {
    const TASKS: u64 = 8;
    const EACH: u64 = 10;
    let d = doc(&store, "tally");
    let first = d.update(incremented).await.unwrap();
    assert_eq!(first, Snapshot::new(Some(json!({"n": 1})), 1), "creates");
    let per_task = together(TASKS as usize, |_| {
        let d = doc(&store, "tally");
        async move {
            let mut versions = vec![];
            for _ in 0..EACH {
                let s = d.update(incremented).await.unwrap();
                // What the helper returns is what it wrote.
                assert_eq!(n(s.value.as_ref()), s.version);
                versions.push(s.version);
                tokio::task::yield_now().await;
            }
            versions
        }
    })
    .await;
    let mut versions: Vec<u64> = per_task.into_iter().flatten().collect();
    versions.sort_unstable();
    let total = 1 + TASKS * EACH;
    assert_eq!(
        versions,
        (2..=total).collect::<Vec<_>>(),
        "one version each"
    );
    let s = d.read().await.unwrap();
    assert_eq!((n(s.value.as_ref()), s.version), (total, total));
}

pub async fn document_update_helper_writes_nothing_when_nothing_changes(store: S) {
    let d = doc(&store, "same");
    d.write(0, &json!({"a": 1})).await.unwrap();
    let s = d.update(|v| Ok(v.cloned())).await.unwrap();
    assert_eq!(s, Snapshot::new(Some(json!({"a": 1})), 1));
    // An error from the change ends the update with nothing written.
    let err = d
        .update(|_| Err(monotone::Error::new(ErrorKind::InvalidInput, "refused")))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "refused");
    // Returning None removes the document, in one version.
    let removed = d.update(|_| Ok(None)).await.unwrap();
    assert_eq!(removed, Snapshot::new(None, 2));
    assert_eq!(
        d.update(|_| Ok(None)).await.unwrap().version,
        2,
        "already absent"
    );
    assert_eq!(d.read().await.unwrap(), Snapshot::new(None, 2));
}

/// The one rule for identical writes: a write of the value the document
/// holds (equal as JSON) writes nothing and keeps the version, with or
/// without an expected version, through `compare_and_set`, `write` and
/// `update` alike; at another version it still conflicts.
pub async fn document_identical_writes_write_nothing(store: S) {
    let d = doc(&store, "same-value");
    let value = json!({"b": [1, 2], "a": {"y": null, "x": "s"}});
    assert_eq!(d.write(0, &value).await.unwrap(), 1);
    // The same value, keys in another order.
    let reordered: Value =
        serde_json::from_str(r#"{"a": {"x": "s", "y": null}, "b": [1, 2]}"#).unwrap();
    assert_eq!(
        d.write(1, &reordered).await.unwrap(),
        1,
        "write at a version"
    );
    assert_eq!(
        d.compare_and_set(1, Some(&value)).await.unwrap(),
        CasOutcome::Done { version: 1 }
    );
    assert_eq!(
        d.update(|_| Ok(Some(value.clone()))).await.unwrap().version,
        1
    );
    assert_eq!(d.read_if_changed(1).await.unwrap(), None, "no new version");
    assert_eq!(
        kind(d.write(0, &value).await),
        ErrorKind::VersionMismatch,
        "an identical write at another version conflicts"
    );
    // Any difference is a write: a number of another type, null for absent.
    assert_eq!(
        d.write(1, &json!({"b": [1, 2], "a": {"x": "s"}}))
            .await
            .unwrap(),
        2
    );
    assert_eq!(d.write(2, &json!(1)).await.unwrap(), 3);
    assert_eq!(d.write(3, &json!(1.0)).await.unwrap(), 4);
    assert_eq!(d.write(4, &json!(1.0)).await.unwrap(), 4);
    assert_eq!(d.remove_if(4).await.unwrap(), Some(5));
    assert_eq!(d.remove_if(5).await.unwrap(), None, "absent already");
    assert_eq!(
        d.write(5, &Value::Null).await.unwrap(),
        6,
        "null is a value"
    );
    assert_eq!(d.write(6, &Value::Null).await.unwrap(), 6);
    assert_eq!(d.read().await.unwrap(), Snapshot::new(Some(Value::Null), 6));
}

pub async fn document_remove_and_recreate(store: S) {
    let d = doc(&store, "rm");
    d.write(0, &json!({"a": 1})).await.unwrap();
    d.write(1, &json!({"a": 2})).await.unwrap();
    assert_eq!(d.remove().await.unwrap(), Some(3), "removal is a write");
    assert_eq!(d.read().await.unwrap(), Snapshot::new(None, 3));
    assert_eq!(d.remove().await.unwrap(), None, "nothing left to remove");
    assert_eq!(d.read().await.unwrap().version, 3, "and nothing written");
    // Written again, it goes on from the removal's version: versions never
    // repeat, so a watcher's check by version cannot miss a re-creation.
    assert_eq!(
        kind(d.write(0, &json!(1)).await),
        ErrorKind::VersionMismatch
    );
    assert_eq!(d.write(3, &json!({"b": 1})).await.unwrap(), 4);
    assert_eq!(
        d.read().await.unwrap(),
        Snapshot::new(Some(json!({"b": 1})), 4)
    );
    // A removal conditional on the version.
    assert_eq!(kind(d.remove_if(3).await), ErrorKind::VersionMismatch);
    assert_eq!(d.remove_if(4).await.unwrap(), Some(5));
    assert_eq!(
        d.remove_if(5).await.unwrap(),
        None,
        "absent: nothing written"
    );
    assert_eq!(
        d.compare_and_set(5, None).await.unwrap(),
        CasOutcome::Done { version: 5 }
    );
    assert_eq!(d.read().await.unwrap(), Snapshot::new(None, 5));
    // The id stays a document's.
    assert_eq!(
        kind(store.counter("rm").unwrap().next().await),
        ErrorKind::WrongType
    );
}

pub async fn document_wrong_types_change_nothing(store: S) {
    let c = store.counter("a-counter").unwrap();
    c.next().await.unwrap();
    let q = store.queue("a-queue").unwrap();
    q.join("p", Tags::new()).await.unwrap();
    for id in ["a-counter", "a-queue"] {
        let d = doc(&store, id);
        let err = d.read().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongType, "{id}");
        assert!(err.to_string().contains("not a document"), "{err}");
        assert_eq!(kind(d.read_if_changed(0).await), ErrorKind::WrongType);
        assert_eq!(kind(d.read_if_changed(1).await), ErrorKind::WrongType);
        assert_eq!(kind(d.write(0, &json!(1)).await), ErrorKind::WrongType);
        assert_eq!(kind(d.write(1, &json!(1)).await), ErrorKind::WrongType);
        assert_eq!(kind(d.compare_and_set(1, None).await), ErrorKind::WrongType);
        assert_eq!(kind(d.remove().await), ErrorKind::WrongType);
        assert_eq!(kind(d.update(incremented).await), ErrorKind::WrongType);
    }
    assert_eq!(c.get().await.unwrap(), 1, "counter unchanged");
    let t = q.tickets().await.unwrap();
    assert_eq!(
        (t.fencing_token.get(), t.value.len()),
        (1, 1),
        "queue unchanged"
    );

    let d = doc(&store, "a-document");
    d.write(0, &json!({"k": "v"})).await.unwrap();
    let as_counter = store.counter("a-document").unwrap();
    let err = as_counter.get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongType);
    assert_eq!(err.to_string(), "`a-document` is a document, not a counter");
    assert_eq!(kind(as_counter.next().await), ErrorKind::WrongType);
    assert_eq!(kind(as_counter.remove().await), ErrorKind::WrongType);
    let as_queue = store.queue("a-document").unwrap();
    let err = as_queue.tickets().await.unwrap_err();
    assert_eq!(err.to_string(), "`a-document` is a document, not a queue");
    assert_eq!(
        kind(as_queue.join("p", Tags::new()).await),
        ErrorKind::WrongType
    );
    assert_eq!(kind(as_queue.leave("p").await), ErrorKind::WrongType);
    assert_eq!(kind(as_queue.ticket("p").await), ErrorKind::WrongType);
    assert_eq!(kind(as_queue.remove().await), ErrorKind::WrongType);
    assert_eq!(
        d.read().await.unwrap(),
        Snapshot::new(Some(json!({"k": "v"})), 1),
        "document unchanged"
    );
}

pub async fn document_size_limit(store: S) {
    let max = monotone::MAX_DOCUMENT_BYTES;
    // A string of n characters is n + 2 bytes of JSON.
    let largest = json!({"s": "x".repeat(max - 8)});
    assert_eq!(serde_json::to_string(&largest).unwrap().len(), max);
    let d = doc(&store, "big");
    assert_eq!(d.write(0, &largest).await.unwrap(), 1);
    assert_eq!(d.read().await.unwrap().value, Some(largest.clone()));
    let too_big = json!({"s": "x".repeat(max - 7)});
    let err = d.write(1, &too_big).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains(&max.to_string()), "{err}");
    assert_eq!(
        kind(d.compare_and_set(1, Some(&too_big)).await),
        ErrorKind::InvalidInput
    );
    let grow = |v: Option<&Value>| {
        let mut v = v.cloned().unwrap();
        v["more"] = json!("y");
        Ok(Some(v))
    };
    assert_eq!(kind(d.update(grow).await), ErrorKind::InvalidInput);
    // Refused before anything was read: even at a wrong version.
    assert_eq!(kind(d.write(99, &too_big).await), ErrorKind::InvalidInput);
    let s = d.read().await.unwrap();
    assert_eq!((s.version, s.value), (1, Some(largest)), "nothing written");
    // Non-ASCII text counts in bytes.
    let wide = json!("é".repeat(max / 2));
    assert_eq!(
        kind(doc(&store, "wide").write(0, &wide).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        doc(&store, "wide").read().await.unwrap(),
        Snapshot::default()
    );
}

pub async fn document_invalid_ids(store: S) {
    let long = "x".repeat(monotone::MAX_ID_BYTES + 1);
    for bad in ["", long.as_str(), "new\nline", "nul\0"] {
        assert_eq!(
            kind(store.document(bad)),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
    }
    let longest = "é".repeat(monotone::MAX_ID_BYTES / 2);
    let d = doc(&store, &longest);
    assert_eq!(d.write(0, &json!({"ok": true})).await.unwrap(), 1);
}

/// The diff of a change, as JSON.
fn diff(change: &monotone::Change) -> Value {
    serde_json::to_value(change.diff.as_ref().expect("a diff")).unwrap()
}

pub async fn document_change_stream_reports_diffs_and_folds(store: S) {
    let d = doc(&store, "watched");
    let mut changes = Changes::new(Arc::clone(&d), 0).with_poll_interval(Duration::from_millis(10));
    assert_eq!(changes.poll().await.unwrap(), None, "absent: nothing yet");
    d.write(0, &json!({"globs": ["/bin/*"], "level": 1}))
        .await
        .unwrap();
    let c = changes.poll().await.unwrap().expect("the creation");
    assert_eq!((c.version, c.since, c.folded()), (1, 0, false));
    assert_eq!(
        diff(&c),
        json!({"added": {"globs": ["/bin/*"], "level": 1}, "modified": {}, "removed": {}})
    );
    assert_eq!(changes.poll().await.unwrap(), None, "nothing new");

    // Two writes between polls: folded into one change, which says so.
    d.write(
        1,
        &json!({"globs": ["/bin/*", "/sbin/*"], "level": 1, "x": 0}),
    )
    .await
    .unwrap();
    d.write(2, &json!({"globs": ["/bin/*", "/sbin/*"], "x": 0}))
        .await
        .unwrap();
    let c = changes.poll().await.unwrap().expect("the folded change");
    assert_eq!((c.version, c.since, c.folded()), (3, 1, true));
    assert_eq!(
        diff(&c),
        json!({
            "added": {"x": 0},
            "modified": {"globs": {"old": ["/bin/*"], "new": ["/bin/*", "/sbin/*"]}},
            "removed": {"level": 1}
        })
    );
    assert_eq!(
        c.value,
        Some(json!({"globs": ["/bin/*", "/sbin/*"], "x": 0}))
    );

    // A value that is not an object changes as a whole.
    d.write(3, &json!(["a list"])).await.unwrap();
    let c = changes.next().await.unwrap();
    assert_eq!((c.version, c.since), (4, 3));
    assert_eq!(
        diff(&c),
        json!({"old": {"globs": ["/bin/*", "/sbin/*"], "x": 0}, "new": ["a list"]})
    );

    // Removal, and writing again.
    d.remove().await.unwrap();
    let c = changes.next().await.unwrap();
    assert_eq!((c.version, c.value.clone()), (5, None));
    assert_eq!(
        c.diff,
        Some(Diff::Whole {
            old: Some(json!(["a list"])),
            new: None
        })
    );
    d.write(5, &json!({"back": true})).await.unwrap();
    let c = changes.next().await.unwrap();
    assert_eq!((c.version, c.since), (6, 5));
    assert_eq!(diff(&c)["added"], json!({"back": true}));
    assert_eq!(changes.version(), 6);
}

pub async fn document_change_stream_from_an_older_version(store: S) {
    let d = doc(&store, "history");
    for v in 0..4u64 {
        d.write(v, &json!({"v": v + 1})).await.unwrap();
    }
    // From version 2: the store keeps only the latest value, so the first
    // change folds 3 and 4 and cannot say what changed since 2.
    let mut changes = Changes::new(Arc::clone(&d), 2);
    let c = changes.poll().await.unwrap().expect("a change");
    assert_eq!((c.version, c.since, c.folded()), (4, 2, true));
    assert_eq!(c.diff, None);
    assert_eq!(c.value, Some(json!({"v": 4})));
    d.write(4, &json!({"v": 5})).await.unwrap();
    let c = changes.poll().await.unwrap().expect("a change");
    assert_eq!((c.version, c.since, c.folded()), (5, 4, false));
    assert_eq!(diff(&c)["modified"]["v"], json!({"old": 4, "new": 5}));

    // From the current version: only what comes next.
    let mut from_now = Changes::new(Arc::clone(&d), 5);
    assert_eq!(from_now.poll().await.unwrap(), None);
    d.write(5, &json!({"v": 6})).await.unwrap();
    let c = from_now.poll().await.unwrap().expect("a change");
    assert_eq!((c.version, c.since), (6, 5));
    assert_eq!(diff(&c)["modified"]["v"], json!({"old": 5, "new": 6}));
}

/// A document whose reads can be made to fail, hang, or return an old
/// snapshot, over a real one.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn Document>,
    mode: AtomicU8,
    stale: std::sync::Mutex<Snapshot>,
}

const WORKS: u8 = 0;
const FAILS: u8 = 1;
const HANGS: u8 = 2;
const STALE: u8 = 3;

impl Faulty {
    pub fn new(inner: Arc<dyn Document>) -> Arc<Self> {
        Arc::new(Faulty {
            inner,
            mode: AtomicU8::new(WORKS),
            stale: Default::default(),
        })
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    async fn fault(&self) -> monotone::Result<Option<Snapshot>> {
        match self.mode.load(Ordering::SeqCst) {
            FAILS => Err(monotone::Error::new(
                ErrorKind::Unavailable,
                "the test cut the store off",
            )),
            HANGS => std::future::pending().await,
            STALE => Ok(Some(self.stale.lock().unwrap().clone())),
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl Document for Faulty {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn read(&self) -> monotone::Result<Snapshot> {
        match self.fault().await? {
            Some(s) => Ok(s),
            None => self.inner.read().await,
        }
    }

    async fn read_if_changed(&self, known: u64) -> monotone::Result<Option<Snapshot>> {
        match self.fault().await? {
            Some(s) => Ok((s.version != known).then_some(s)),
            None => self.inner.read_if_changed(known).await,
        }
    }

    async fn compare_and_set(
        &self,
        expected: u64,
        value: Option<&Value>,
    ) -> monotone::Result<CasOutcome> {
        self.inner.compare_and_set(expected, value).await
    }

    async fn remove(&self) -> monotone::Result<Option<u64>> {
        self.inner.remove().await
    }
}

pub async fn document_change_stream_never_goes_back(store: S) {
    let d = doc(&store, "lagging");
    d.write(0, &json!({"v": 1})).await.unwrap();
    d.write(1, &json!({"v": 2})).await.unwrap();
    let faulty = Faulty::new(Arc::clone(&d));
    let mut changes = Changes::new(faulty.clone(), 0);
    let c = changes.poll().await.unwrap().expect("a change");
    assert_eq!((c.version, c.since), (2, 0));
    // A read that lags behind (an eventually consistent replica, a slow
    // check overtaken by a quicker one) is never reported.
    *faulty.stale.lock().unwrap() = Snapshot::new(Some(json!({"v": 1})), 1);
    faulty.set(STALE);
    assert_eq!(changes.poll().await.unwrap(), None);
    // A failed poll is an error, and the stream goes on after it.
    faulty.set(FAILS);
    assert_eq!(kind(changes.poll().await), ErrorKind::Unavailable);
    faulty.set(WORKS);
    d.write(2, &json!({"v": 3})).await.unwrap();
    let c = changes.poll().await.unwrap().expect("a change");
    assert_eq!((c.version, c.since), (3, 2));
    assert_eq!(diff(&c)["modified"]["v"], json!({"old": 2, "new": 3}));
}

/// A writer makes 30 updates while a watcher polls: the watcher sees
/// versions only rise, each change starting where the last ended, and ends
/// on the final state.
pub async fn document_watcher_sees_versions_rise_and_ends_on_the_last(store: S) {
    const WRITES: u64 = 30;
    let d = doc(&store, "busy");
    let writer = {
        let d = Arc::clone(&d);
        tokio::spawn(async move {
            for _ in 0..WRITES {
                d.update(incremented).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut changes = Changes::new(Arc::clone(&d), 0).with_poll_interval(Duration::from_millis(1));
    let mut seen = vec![];
    while changes.version() < WRITES {
        let c = changes.next().await.unwrap();
        assert_eq!(c.since, seen.last().copied().unwrap_or(0), "no gap");
        assert!(c.version > c.since, "versions only rise");
        assert_eq!(n(c.value.as_ref()), c.version, "the value of that version");
        seen.push(c.version);
    }
    writer.await.unwrap();
    assert_eq!(seen.last(), Some(&WRITES), "ends on the final state");
    assert_eq!(changes.poll().await.unwrap(), None);
}

/// The cached reader serves its copy while it is confirmed, fails once it
/// has not been for longer than the bound, whether checks fail or hang, and
/// recovers with the next successful check. The clock is paused only while
/// no request is in flight, so a store's own timeouts run on real time.
pub async fn document_cached_reader_fails_once_stale(store: S) {
    let d = doc(&store, "cached");
    d.write(0, &json!({"globs": ["/bin/*"]})).await.unwrap();
    let faulty = Faulty::new(Arc::clone(&d));
    let options = CacheOptions::new(Duration::from_secs(30));
    assert_eq!(options.refresh_every, Duration::from_secs(10));
    let cached = CachedDocument::open(faulty.clone(), options).await.unwrap();
    assert_eq!(cached.read().unwrap().version, 1);
    d.write(1, &json!({"globs": ["/bin/*", "/sbin/*"]}))
        .await
        .unwrap();
    assert_eq!(cached.read().unwrap().version, 1, "served from the copy");
    assert_eq!(cached.refresh().await.unwrap().version, 2);
    assert_eq!(cached.read().unwrap().version, 2);

    for fault in [FAILS, HANGS] {
        tokio::time::pause();
        faulty.set(fault);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(cached.read().unwrap().version, 2, "within the bound");
        tokio::time::advance(Duration::from_secs(2)).await;
        let err = cached.read().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let msg = err.to_string();
        assert!(msg.contains("`cached`") && msg.contains("30.0s"), "{msg}");
        if fault == FAILS {
            assert_eq!(kind(cached.refresh().await), ErrorKind::Unavailable);
            let msg = cached.read().unwrap_err().to_string();
            assert!(msg.contains("the test cut the store off"), "{msg}");
        }
        // Back to real time for real requests.
        faulty.set(WORKS);
        tokio::time::resume();
        assert_eq!(cached.refresh().await.unwrap().version, 2);
        assert_eq!(cached.read().unwrap().version, 2, "confirmed again");
    }
}
