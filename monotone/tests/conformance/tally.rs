//! The contract of `Tally` as plain async functions taking a store, run
//! unchanged against every backend.
//!
//! Each check would fail on the bug it is named after: a lost or doubled
//! add, a version that skips or stalls, a wrapped sum, a stale read that
//! invents a value, a write where nothing should be written.

use std::collections::BTreeMap;

use monotone::{ErrorKind, Freshness, Tags, TallyReading};

use super::{kind, together, S};

fn reading(value: i64, version: u64) -> TallyReading {
    TallyReading::new(value, version)
}

pub async fn tally_starts_at_zero_and_adds_up_and_down(store: S) {
    let t = store.tally("quota").unwrap();
    assert_eq!(t.id(), "quota");
    for freshness in [Freshness::Fresh, Freshness::Stale] {
        assert_eq!(t.get(freshness).await.unwrap(), reading(0, 0));
    }
    assert_eq!(t.remove().await.unwrap(), None, "reads created nothing");
    assert_eq!(t.add(5).await.unwrap(), reading(5, 1));
    assert_eq!(t.add(-8).await.unwrap(), reading(-3, 2));
    assert_eq!(t.add(0).await.unwrap(), reading(-3, 3), "0 is a write too");
    assert_eq!(t.get(Freshness::Fresh).await.unwrap(), reading(-3, 3));
    assert_eq!(t.get(Freshness::Fresh).await.unwrap(), reading(-3, 3));
    // A second handle on the same id sees the same tally.
    let again = store.tally("quota").unwrap();
    assert_eq!(again.add(10).await.unwrap(), reading(7, 4));
    assert_eq!(t.get(Freshness::Fresh).await.unwrap(), reading(7, 4));
}

pub async fn tallies_are_independent(store: S) {
    let a = store.tally("a").unwrap();
    let b = store.tally("b").unwrap();
    a.add(-1).await.unwrap();
    a.add(-1).await.unwrap();
    assert_eq!(b.add(3).await.unwrap(), reading(3, 1));
    assert_eq!(a.get(Freshness::Fresh).await.unwrap(), reading(-2, 2));
    // Counters and tallies under other ids are untouched.
    assert_eq!(store.counter("c").unwrap().next().await.unwrap(), 1);
    assert_eq!(b.get(Freshness::Fresh).await.unwrap(), reading(3, 1));
}

pub async fn tally_remove(store: S) {
    let t = store.tally("gone").unwrap();
    assert_eq!(t.remove().await.unwrap(), None, "removing nothing is fine");
    t.add(-4).await.unwrap();
    t.add(1).await.unwrap();
    assert_eq!(t.remove().await.unwrap(), Some(reading(-3, 2)));
    assert_eq!(t.get(Freshness::Fresh).await.unwrap(), reading(0, 0));
    assert_eq!(t.remove().await.unwrap(), None);
    assert_eq!(t.add(2).await.unwrap(), reading(2, 1), "starts over");
    // The id is free for another kind once removed.
    t.remove().await.unwrap();
    assert_eq!(store.counter("gone").unwrap().next().await.unwrap(), 1);
}

pub async fn tally_overflow_is_refused_and_changes_nothing(store: S) {
    let top = store.tally("top").unwrap();
    assert_eq!(top.add(i64::MAX).await.unwrap(), reading(i64::MAX, 1));
    for n in [1, 2, i64::MAX] {
        let err = top.add(n).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "+{n}: {err}");
        assert!(err.to_string().contains("`top`"), "names the tally: {err}");
    }
    assert_eq!(
        top.get(Freshness::Fresh).await.unwrap(),
        reading(i64::MAX, 1)
    );
    assert_eq!(top.add(0).await.unwrap(), reading(i64::MAX, 2));
    assert_eq!(top.add(-1).await.unwrap(), reading(i64::MAX - 1, 3));
    assert_eq!(top.add(1).await.unwrap(), reading(i64::MAX, 4));

    let bottom = store.tally("bottom").unwrap();
    assert_eq!(bottom.add(i64::MIN).await.unwrap(), reading(i64::MIN, 1));
    for n in [-1, i64::MIN] {
        let err = bottom.add(n).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{n}: {err}");
    }
    assert_eq!(bottom.add(i64::MAX).await.unwrap(), reading(-1, 2));
    assert_eq!(
        bottom.add(i64::MIN + 1).await.unwrap(),
        reading(i64::MIN, 3)
    );

    let near = store.tally("near").unwrap();
    near.add(-5).await.unwrap();
    assert_eq!(kind(near.add(i64::MIN).await), ErrorKind::InvalidInput);
    assert_eq!(
        near.add(i64::MIN + 5).await.unwrap(),
        reading(i64::MIN, 2),
        "the largest amount that fits is taken"
    );
    assert_eq!(
        near.get(Freshness::Stale).await.unwrap(),
        reading(i64::MIN, 2)
    );
}

pub async fn tally_on_counter_or_queue_is_wrong_type(store: S) {
    store.counter("c").unwrap().next().await.unwrap();
    let q = store.queue("q").unwrap();
    let joined = q.join("p", Tags::new()).await.unwrap();
    for (id, found) in [("c", "counter"), ("q", "queue")] {
        let t = store.tally(id).unwrap();
        let err = t.add(1).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongType);
        assert_eq!(err.to_string(), format!("`{id}` is a {found}, not a tally"));
        assert_eq!(kind(t.add(-1).await), ErrorKind::WrongType);
        assert_eq!(kind(t.get(Freshness::Fresh).await), ErrorKind::WrongType);
        assert_eq!(kind(t.get(Freshness::Stale).await), ErrorKind::WrongType);
        assert_eq!(kind(t.remove().await), ErrorKind::WrongType);
    }
    assert_eq!(
        store.counter("c").unwrap().get().await.unwrap(),
        1,
        "unchanged"
    );
    let after = q.tickets().await.unwrap();
    assert_eq!(after.fencing_token, joined.fencing_token, "unchanged");
    assert_eq!(after.value, vec![joined.value]);
}

pub async fn counter_or_queue_on_tally_is_wrong_type(store: S) {
    // A negative value is what a counter or a queue never holds: it must
    // still read as a tally, not as a damaged counter.
    let t = store.tally("t").unwrap();
    t.add(-7).await.unwrap();
    let c = store.counter("t").unwrap();
    let err = c.next().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongType, "{err}");
    assert_eq!(err.to_string(), "`t` is a tally, not a counter");
    assert_eq!(kind(c.get().await), ErrorKind::WrongType);
    assert_eq!(kind(c.remove().await), ErrorKind::WrongType);
    let q = store.queue("t").unwrap();
    let err = q.join("p", Tags::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongType, "{err}");
    assert_eq!(err.to_string(), "`t` is a tally, not a queue");
    assert_eq!(kind(q.leave("p").await), ErrorKind::WrongType);
    assert_eq!(kind(q.ticket("p").await), ErrorKind::WrongType);
    assert_eq!(kind(q.tickets().await), ErrorKind::WrongType);
    assert_eq!(kind(q.remove().await), ErrorKind::WrongType);
    assert_eq!(
        t.get(Freshness::Fresh).await.unwrap(),
        reading(-7, 1),
        "unchanged"
    );
}

pub async fn tally_ids_are_validated(store: S) {
    let long = "x".repeat(monotone::MAX_ID_BYTES + 1);
    for bad in ["", long.as_str(), "new\nline", "nul\0"] {
        assert_eq!(kind(store.tally(bad)), ErrorKind::InvalidInput, "{bad:?}");
    }
    let longest = "é".repeat(monotone::MAX_ID_BYTES / 2);
    for id in [longest.as_str(), "with space", "ünïcødé/ñ:ß", "emoji 🦀"] {
        assert_eq!(
            store.tally(id).unwrap().add(-1).await.unwrap(),
            reading(-1, 1)
        );
        let again = store.tally(id).unwrap();
        assert_eq!(again.get(Freshness::Fresh).await.unwrap(), reading(-1, 1));
    }
}

/// The amount task `task` adds on its `i`th call: both signs, many sizes.
fn amount(task: usize, i: usize) -> i64 {
    let size = ((task * 7 + i * 13) % 50 + 1) as i64;
    if (task + i) % 3 == 0 {
        -size * 2
    } else {
        size
    }
}

/// 8 tasks x 40 adds of mixed signs on one tally: the final value is the
/// exact sum, each add got its own version, and the readings they returned
/// are one history: ordered by version, each value is the one before plus
/// the amount of the add that made it.
pub async fn concurrent_adds_of_mixed_signs_sum_exactly(store: S) {
    const TASKS: usize = 8;
    const EACH: usize = 40;
    let per_task = together(TASKS, |task| {
        let t = store.tally("pool").unwrap();
        async move {
            let mut got = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let n = amount(task, i);
                got.push((t.add(n).await.unwrap(), n));
                tokio::task::yield_now().await;
            }
            got
        }
    })
    .await;
    let mut history = BTreeMap::new();
    for got in per_task {
        assert!(
            got.windows(2).all(|w| w[0].0.version < w[1].0.version),
            "each task sees versions rise"
        );
        for (r, n) in got {
            assert!(
                history.insert(r.version, (r.value, n)).is_none(),
                "version {} twice",
                r.version
            );
        }
    }
    let total = TASKS * EACH;
    assert_eq!(
        history.keys().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>()
    );
    let mut sum = 0i64;
    for (version, (value, n)) in &history {
        sum += n;
        assert_eq!(
            *value, sum,
            "version {version}: the adds before it and its own"
        );
    }
    let expected: i64 = (0..TASKS)
        .flat_map(|t| (0..EACH).map(move |i| amount(t, i)))
        .sum();
    assert_eq!(sum, expected);
    let t = store.tally("pool").unwrap();
    assert_eq!(
        t.get(Freshness::Fresh).await.unwrap(),
        reading(expected, total as u64)
    );
}

/// A writer adds while a reader alternates stale and fresh reads: every
/// stale reading is one the tally really held, and none is newer than the
/// fresh read that follows it.
pub async fn stale_reads_never_run_ahead_of_fresh_ones(store: S) {
    const ADDS: usize = 60;
    let writer = {
        let t = store.tally("gauge").unwrap();
        tokio::spawn(async move {
            let mut held = BTreeMap::from([(0u64, 0i64)]);
            for i in 0..ADDS {
                let r = t.add(if i % 2 == 0 { 3 } else { -1 }).await.unwrap();
                held.insert(r.version, r.value);
                tokio::task::yield_now().await;
            }
            held
        })
    };
    let t = store.tally("gauge").unwrap();
    let mut pairs = Vec::new();
    let mut last_fresh = reading(0, 0);
    loop {
        let stale = t.get(Freshness::Stale).await.unwrap();
        let fresh = t.get(Freshness::Fresh).await.unwrap();
        assert!(
            stale.version <= fresh.version,
            "stale {stale:?} ran ahead of the fresh {fresh:?} read after it"
        );
        assert!(
            fresh.version >= last_fresh.version,
            "fresh reads never go back"
        );
        last_fresh = fresh;
        pairs.push((stale, fresh));
        // Done, or the writer stopped short (its panic shows below).
        if fresh.version == ADDS as u64 || writer.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let held = writer.await.unwrap();
    for (stale, fresh) in pairs {
        for r in [stale, fresh] {
            assert_eq!(held.get(&r.version), Some(&r.value), "{r:?} was never held");
        }
    }
    let end = t.get(Freshness::Fresh).await.unwrap();
    let sum = (ADDS / 2) as i64 * 3 - (ADDS / 2) as i64;
    assert_eq!(end, reading(sum, ADDS as u64));
}
