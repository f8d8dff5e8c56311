//! The conformance suite on the etcd store against a real etcd (the single
//! member that scripts/test.sh starts), plus what only etcd can get wrong
//! here: a compacted watch revision, and renewals that leave the record
//! alone. The key layout, keys that are not monotone's, members down, TLS,
//! authentication and pushed waits are checked through the binary
//! (cli/tests/etcd.rs); the failover under many processes in
//! etcd_processes.rs.
//!
//! Without `MONOTONE_TEST_ETCD_ENDPOINTS` every test says it skips and
//! passes, except under CI (`CI` set), where it fails.
#![cfg(feature = "etcd")]

mod conformance;
mod etcd_support;

use std::sync::Arc;

use monotone::Store;

use etcd_support::*;

conformance_suite!({
    let Some(endpoints) = endpoints() else {
        return;
    };
    async move {
        let store: Arc<dyn Store> = Arc::new(store(&endpoints, "conformance").await);
        (store, ())
    }
});

use std::time::Duration;

use monotone::{Changes, Document, DocumentExt};
use serde_json::json;

/// A watcher whose last read is older than the cluster's compaction: its
/// watch cannot start there, so it reads afresh and reports the latest
/// state, never an older one, and then follows the next writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_watch_revision_resumes_from_a_fresh_read() {
    let Some(endpoints) = endpoints() else {
        return;
    };
    let store = store(&endpoints, "compacted").await;
    let doc: Arc<dyn Document> = Arc::from(store.document("d").unwrap());
    doc.write(0, &json!({"n": 1})).await.unwrap();
    let mut changes = Changes::new(Arc::clone(&doc), 0);
    assert_eq!(changes.next().await.unwrap().version, 1);
    // Two writes the watcher does not see, then the history is compacted
    // past the revision the watcher last read at.
    let other: Arc<dyn Document> = Arc::from(store.document("d").unwrap());
    other.write(1, &json!({"n": 2})).await.unwrap();
    other.write(2, &json!({"n": 3})).await.unwrap();
    let mut raw = raw(&endpoints).await;
    let now = raw
        .get("nothing", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    raw.compact(now, None).await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(20), changes.next())
        .await
        .expect("the watcher resumes")
        .unwrap();
    assert_eq!(
        (change.version, change.since, change.folded()),
        (3, 1, true)
    );
    assert_eq!(change.value, Some(json!({"n": 3})), "the latest state");
    other.write(3, &json!({"n": 4})).await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(20), changes.next())
        .await
        .expect("and follows on")
        .unwrap();
    assert_eq!(change.version, 4);
}

/// A renewal is one put on the lease key: the queue's record, and so its
/// fencing token and everyone's conditional writes, stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_leave_the_record_alone() {
    let Some(endpoints) = endpoints() else {
        return;
    };
    let url = url(&endpoints, "renewals");
    let store = monotone::open(&url).await.unwrap();
    let q = store.queue("q").unwrap();
    let t = q
        .join_leased("a", monotone::Tags::new(), Duration::from_secs(30))
        .await
        .unwrap();
    let prefix = url
        .trim_start_matches("etcd://")
        .split_once('/')
        .unwrap()
        .1
        .to_owned();
    let mut raw = raw(&endpoints).await;
    let record = |r: &etcd_client::GetResponse| r.kvs()[0].mod_revision();
    let before = record(&raw.get(format!("{prefix}q"), None).await.unwrap());
    for n in 1..=3 {
        let renewed = q.renew("a", t.value.counter).await.unwrap();
        assert_eq!(renewed.value.lease.unwrap().renewals, n);
        assert_eq!(renewed.fencing_token, t.fencing_token);
    }
    let after = record(&raw.get(format!("{prefix}q"), None).await.unwrap());
    assert_eq!(before, after, "the record was not written");
    let lease = raw
        .get(format!("{prefix}q\0lease/{}", t.value.counter), None)
        .await
        .unwrap();
    assert_eq!(lease.kvs()[0].version(), 4, "joined, then renewed 3 times");
}

/// A holder's id is stored with its lease (in the lease key, where a
/// renewal's condition covers it) and a claim's tags in the pool's record,
/// as the README's key table says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_ids_and_claim_tags_are_stored_as_documented() {
    let Some(endpoints) = endpoints() else {
        return;
    };
    let url = url(&endpoints, "holders");
    let store = monotone::open(&url).await.unwrap();
    let pool = store.claim_pool("p").unwrap();
    let holder = monotone::HolderId::new(4242).unwrap();
    let tags = monotone::Tags::from([("addr".to_owned(), "10.0.0.5".to_owned())]);
    let request = monotone::ClaimRequest::new(monotone::Candidates::range(1..=3).unwrap())
        .with_tags(tags.clone())
        .with_lease(Some(Duration::from_secs(30)))
        .held_by(holder);
    let claimed = pool.claim_as("o", &request).await.unwrap();
    assert_eq!(claimed.claim.value.tags, tags);
    let prefix = url
        .trim_start_matches("etcd://")
        .split_once('/')
        .unwrap()
        .1
        .to_owned();
    let mut raw = raw(&endpoints).await;
    let value = |r: etcd_client::GetResponse| -> serde_json::Value {
        serde_json::from_slice(r.kvs()[0].value()).unwrap()
    };
    let record = value(raw.get(format!("{prefix}p"), None).await.unwrap());
    assert_eq!(record["claims"]["1"]["tags"], json!({"addr": "10.0.0.5"}));
    let lease = value(raw.get(format!("{prefix}p\0claim/1"), None).await.unwrap());
    assert_eq!(lease["holder"], "o");
    assert_eq!(lease["holder_id"], 4242);
    // The holder's renewal keeps its id; the claim reads back with it.
    let renewed = pool.renew("o", "1").await.unwrap();
    let lease_read = renewed.value.lease.unwrap();
    assert_eq!((lease_read.holder, lease_read.renewals), (Some(holder), 1));
    let lease = value(raw.get(format!("{prefix}p\0claim/1"), None).await.unwrap());
    assert_eq!(lease["holder_id"], 4242);
}
