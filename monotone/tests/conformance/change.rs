//! The capability every waiter is built on: `wait_for_change` of a queue,
//! a claim pool and a document (see `monotone::Queue::wait_for_change`), as
//! plain async functions taking a store, run unchanged against every
//! backend; and the waiters on top of it, with a poll interval of an hour
//! on the stores that push.
//!
//! A store that pushes must wake its waiters on a write: each check gives
//! such a store a poll interval of an hour and a deadline of a minute, so a
//! waiter that only polled would fail it. No check times anything tighter
//! than that. A store that polls gets a poll interval of 20 ms.
//!
//! Each check would fail on the bug it is named after: a write that wakes
//! no waiter, a waiter that sleeps past a change made before it was
//! called, one that returns `true` with nothing changed before its
//! deadline, a store that says it pushes when it does not (or the
//! reverse), a check that reads another kind of item as its own.

use std::sync::Arc;
use std::time::Duration;

use monotone::{
    wait_for_claim, wait_for_position, Candidates, Changes, ClaimPool, Document, DocumentExt,
    ErrorKind, Location, Queue, Tags, WaitOptions,
};
use serde_json::json;
use tokio::time::Instant;

use super::{kind, ms, S};

/// The poll interval of a waiter that must be woken by the store.
const HOUR: Duration = Duration::from_secs(3600);

/// How long a check lets a waiter wait for a write it should see.
const MINUTE: Duration = Duration::from_secs(60);

/// The poll interval for a handle: an hour where the store pushes, so only
/// a notification can wake the waiter in time.
fn poll_for(pushes: bool) -> Duration {
    if pushes {
        HOUR
    } else {
        ms(20)
    }
}

fn queue(store: &S, id: &str) -> Arc<dyn Queue> {
    Arc::from(store.queue(id).unwrap())
}

fn pool(store: &S, id: &str) -> Arc<dyn ClaimPool> {
    Arc::from(store.claim_pool(id).unwrap())
}

fn doc(store: &S, id: &str) -> Arc<dyn Document> {
    Arc::from(store.document(id).unwrap())
}

/// Whether the handles of `store` should push: memory always, SQLite where
/// the kernel watches files (Linux), etcd always (its watches), DynamoDB
/// never.
fn should_push(store: &S) -> bool {
    let files_watched = cfg!(any(target_os = "linux", target_os = "android"));
    match store.location() {
        Location::Memory | Location::Etcd { .. } => true,
        Location::Sqlite { .. } => files_watched,
        _ => false,
    }
}

pub async fn pushes_says_whether_the_store_tells_of_changes(store: S) {
    let expected = should_push(&store);
    assert_eq!(
        queue(&store, "q").pushes(),
        expected,
        "{}",
        store.location()
    );
    assert_eq!(pool(&store, "p").pushes(), expected);
    assert_eq!(doc(&store, "d").pushes(), expected);
}

/// `wait` (a `wait_for_change` from the version read now) runs while
/// `write`, through other handles, changes the item after a moment; it
/// returns `true` before its minute is up.
async fn a_write_wakes(
    wait: impl std::future::Future<Output = monotone::Result<bool>> + Send + 'static,
    write: impl std::future::Future<Output = ()>,
) {
    let started = Instant::now();
    let waiter = tokio::spawn(wait);
    tokio::time::sleep(ms(50)).await;
    write.await;
    let changed = waiter.await.unwrap().unwrap();
    assert!(
        changed,
        "the waiter saw no change in {:?}",
        started.elapsed()
    );
}

pub async fn a_write_by_another_handle_wakes_a_queue_waiter(store: S) {
    let q = queue(&store, "q");
    q.join("a", Tags::new()).await.unwrap();
    let seen = q.token().await.unwrap();
    assert_eq!(seen.get(), 1);
    let poll = poll_for(q.pushes());
    let until = Instant::now() + MINUTE;
    let waiter = Arc::clone(&q);
    let other = queue(&store, "q");
    a_write_wakes(
        async move { waiter.wait_for_change(seen, Some(until), poll).await },
        async move {
            other.join("b", Tags::new()).await.unwrap();
        },
    )
    .await;
    assert_eq!(q.token().await.unwrap().get(), 2);
}

pub async fn a_write_by_another_handle_wakes_a_claim_pool_waiter(store: S) {
    let p = pool(&store, "p");
    let names = Candidates::range(1..=3).unwrap();
    p.claim("a", &names).await.unwrap();
    let seen = p.token().await.unwrap();
    assert_eq!(seen.get(), 1);
    let poll = poll_for(p.pushes());
    let until = Instant::now() + MINUTE;
    let waiter = Arc::clone(&p);
    let other = pool(&store, "p");
    a_write_wakes(
        async move { waiter.wait_for_change(seen, Some(until), poll).await },
        async move {
            other.release("a").await.unwrap();
        },
    )
    .await;
    assert_eq!(p.token().await.unwrap().get(), 2);
}

pub async fn a_write_by_another_handle_wakes_a_document_waiter(store: S) {
    let d = doc(&store, "d");
    assert_eq!(d.version().await.unwrap(), 0);
    let poll = poll_for(d.pushes());
    let until = Instant::now() + MINUTE;
    let waiter = Arc::clone(&d);
    let other = doc(&store, "d");
    a_write_wakes(
        async move { waiter.wait_for_change(0, Some(until), poll).await },
        async move {
            other.write(0, &json!({"k": 1})).await.unwrap();
        },
    )
    .await;
    assert_eq!(d.version().await.unwrap(), 1);
}

/// A change made before the call (between the caller's read and its wait)
/// is found at once on a store that pushes, at the first check on one that
/// polls: never missed.
pub async fn a_stale_version_returns_true(store: S) {
    let q = queue(&store, "q");
    q.join("a", Tags::new()).await.unwrap();
    q.join("b", Tags::new()).await.unwrap();
    let until = Some(Instant::now() + MINUTE);
    let stale = monotone::FencingToken(1);
    assert!(q
        .wait_for_change(stale, until, poll_for(q.pushes()))
        .await
        .unwrap());
    let d = doc(&store, "d");
    d.write(0, &json!(1)).await.unwrap();
    assert!(d
        .wait_for_change(0, until, poll_for(d.pushes()))
        .await
        .unwrap());
    let p = pool(&store, "p");
    p.claim("a", &Candidates::range(1..=3).unwrap())
        .await
        .unwrap();
    let stale = monotone::FencingToken(0);
    assert!(p
        .wait_for_change(stale, until, poll_for(p.pushes()))
        .await
        .unwrap());
}

/// With nothing written, each waits until its deadline and says `false`,
/// not a moment before.
pub async fn no_change_returns_false_at_until(store: S) {
    let q = queue(&store, "q");
    q.join("a", Tags::new()).await.unwrap();
    let seen = q.token().await.unwrap();
    let d = doc(&store, "d");
    let p = pool(&store, "p");
    for poll in [ms(20), HOUR] {
        let until = Instant::now() + ms(300);
        assert!(!q.wait_for_change(seen, Some(until), poll).await.unwrap());
        assert!(Instant::now() >= until);
        let until = Instant::now() + ms(300);
        assert!(!d.wait_for_change(0, Some(until), poll).await.unwrap());
        assert!(Instant::now() >= until);
        let until = Instant::now() + ms(300);
        let none = monotone::FencingToken(0);
        assert!(!p.wait_for_change(none, Some(until), poll).await.unwrap());
        assert!(Instant::now() >= until);
    }
}

/// The version checks read only their own kind of item: on an id that
/// holds another kind they fail with WrongType, as every method does.
pub async fn change_checks_on_another_kind_are_wrong_type(store: S) {
    store.counter("c").unwrap().next().await.unwrap();
    let until = Some(Instant::now() + MINUTE);
    let q = queue(&store, "c");
    assert_eq!(kind(q.token().await), ErrorKind::WrongType);
    let zero = monotone::FencingToken(0);
    assert_eq!(
        kind(q.wait_for_change(zero, until, ms(20)).await),
        ErrorKind::WrongType
    );
    let p = pool(&store, "c");
    assert_eq!(kind(p.token().await), ErrorKind::WrongType);
    assert_eq!(
        kind(p.wait_for_change(zero, until, ms(20)).await),
        ErrorKind::WrongType
    );
    let d = doc(&store, "c");
    assert_eq!(kind(d.version().await), ErrorKind::WrongType);
    assert_eq!(
        kind(d.wait_for_change(0, until, ms(20)).await),
        ErrorKind::WrongType
    );
}

/// `wait_for_position` behind a permanent ticket, with a poll interval of
/// an hour on a store that pushes: the leave wakes it.
pub async fn a_waiter_leads_once_the_head_leaves_without_polling(store: S) {
    let q = queue(&store, "lead");
    q.join("head", Tags::new()).await.unwrap();
    q.join("next", Tags::new()).await.unwrap();
    let poll = poll_for(q.pushes());
    let options = WaitOptions::new()
        .with_timeout(Some(MINUTE))
        .with_poll(poll, poll);
    let waiter = {
        let q = Arc::clone(&q);
        tokio::spawn(async move { wait_for_position(&*q, "next", 1, &options).await })
    };
    tokio::time::sleep(ms(50)).await;
    let left = queue(&store, "lead").leave("head").await.unwrap();
    let head = waiter.await.unwrap().unwrap();
    assert_eq!(head.value.position, 0);
    assert_eq!(head.fencing_token, left);
}

/// `wait_for_claim` with every candidate taken, a poll interval of an hour
/// on a store that pushes: a release wakes it and it gets the name.
pub async fn a_claimer_gets_a_released_name_without_polling(store: S) {
    let p = pool(&store, "names");
    let names = Candidates::range(1..=2).unwrap();
    p.claim("a", &names).await.unwrap();
    p.claim("b", &names).await.unwrap();
    let poll = poll_for(p.pushes());
    let options = WaitOptions::new()
        .with_timeout(Some(MINUTE))
        .with_poll(poll, poll);
    let waiter = {
        let p = Arc::clone(&p);
        let names = names.clone();
        tokio::spawn(async move { wait_for_claim(&*p, "c", &names, None, &options).await })
    };
    tokio::time::sleep(ms(50)).await;
    pool(&store, "names").release("b").await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert!(got.added);
    assert_eq!(got.claim.value.name, "2");
    assert_eq!(got.claim.value.owner, "c");
}

/// A document's change stream with a poll interval of an hour on a store
/// that pushes: a write by another handle is the next change.
pub async fn a_change_stream_reports_a_write_without_polling(store: S) {
    let d = doc(&store, "watched");
    d.write(0, &json!({"a": 1})).await.unwrap();
    let poll = poll_for(d.pushes());
    let mut changes = Changes::new(Arc::clone(&d), 1).with_poll_interval(poll);
    let watcher = tokio::spawn(async move { tokio::time::timeout(MINUTE, changes.next()).await });
    tokio::time::sleep(ms(50)).await;
    doc(&store, "watched")
        .write(1, &json!({"a": 2}))
        .await
        .unwrap();
    let change = watcher
        .await
        .unwrap()
        .expect("the change within a minute")
        .unwrap();
    assert_eq!((change.since, change.version), (1, 2));
    assert_eq!(change.value, Some(json!({"a": 2})));
}
