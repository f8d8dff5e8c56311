//! The contract of `Counter` (see `monotone::Counter`).
//!
//! Each check would fail on the bug it is named after: a lost update, a
//! repeated value, a counter that does not start over, a write where
//! nothing should be written.

use monotone::ErrorKind;

use super::{kind, tags, together, S};

pub async fn counter_starts_at_zero(store: S) {
    let c = store.counter("fresh").unwrap();
    assert_eq!(c.id(), "fresh");
    assert_eq!(c.get().await.unwrap(), 0);
    assert_eq!(c.get().await.unwrap(), 0, "get must not create or change");
    assert_eq!(c.next().await.unwrap(), 1);
    assert_eq!(c.get().await.unwrap(), 1);
}

pub async fn counter_next_adds_one(store: S) {
    let c = store.counter("seq").unwrap();
    for expected in 1..=25 {
        assert_eq!(c.next().await.unwrap(), expected);
    }
    // A second handle on the same id sees the same counter.
    let again = store.counter("seq").unwrap();
    assert_eq!(again.get().await.unwrap(), 25);
    assert_eq!(again.next().await.unwrap(), 26);
}

pub async fn counters_are_independent(store: S) {
    let a = store.counter("a").unwrap();
    let b = store.counter("b").unwrap();
    a.next().await.unwrap();
    a.next().await.unwrap();
    assert_eq!(b.next().await.unwrap(), 1);
    assert_eq!(a.get().await.unwrap(), 2);
}

pub async fn counter_remove(store: S) {
    let c = store.counter("gone").unwrap();
    assert_eq!(c.remove().await.unwrap(), None, "removing nothing is fine");
    c.next().await.unwrap();
    c.next().await.unwrap();
    assert_eq!(c.remove().await.unwrap(), Some(2));
    assert_eq!(c.get().await.unwrap(), 0);
    assert_eq!(c.remove().await.unwrap(), None);
    assert_eq!(c.next().await.unwrap(), 1, "a removed counter starts over");
}

pub async fn counter_on_queue_is_wrong_type(store: S) {
    let q = store.queue("shared").unwrap();
    let joined = q.join("p", tags(&[("k", "v")])).await.unwrap();
    let c = store.counter("shared").unwrap();
    assert_eq!(kind(c.get().await), ErrorKind::WrongType);
    assert_eq!(kind(c.next().await), ErrorKind::WrongType);
    assert_eq!(kind(c.remove().await), ErrorKind::WrongType);
    let after = q.tickets().await.unwrap();
    assert_eq!(after.fencing_token, joined.fencing_token, "nothing written");
    assert_eq!(after.value, vec![joined.value]);
}

/// 8 tasks x 100 `next` on one counter: exactly 1..=800, each once.
pub async fn concurrent_next_hands_out_each_value_once(store: S) {
    const TASKS: u64 = 8;
    const EACH: u64 = 100;
    // All tasks yield between calls, so that their calls overlap as much as
    // the machine allows.
    let per_task = together(TASKS as usize, |_| {
        let c = store.counter("contended").unwrap();
        async move {
            let mut got = Vec::with_capacity(EACH as usize);
            for _ in 0..EACH {
                got.push(c.next().await.unwrap());
                tokio::task::yield_now().await;
            }
            got
        }
    })
    .await;
    let mut all = Vec::new();
    for got in per_task {
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "each task sees values rise"
        );
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=TASKS * EACH).collect::<Vec<_>>());
    let c = store.counter("contended").unwrap();
    assert_eq!(c.get().await.unwrap(), TASKS * EACH);
}
