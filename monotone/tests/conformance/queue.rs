//! The contract of `Queue` (see `monotone::Queue`): tickets, positions and
//! fencing tokens. Leased tickets and their holders are in [`lease`](super::lease).
//!
//! Each check would fail on the bug it is named after: a lost join, a
//! non-idempotent join, a wrong position, a token that skips or stalls, a
//! counter handed out twice, a write where nothing should be written.

use std::collections::BTreeSet;
use std::time::Duration;

use monotone::{ErrorKind, FencingToken, Tags, Ticket};

use super::{kind, tags, together, S};

/// (process_id, counter, position) of each ticket, in the order given.
fn summary(tickets: &[Ticket]) -> Vec<(String, u64, usize)> {
    tickets
        .iter()
        .map(|t| (t.process_id.clone(), t.counter, t.position))
        .collect()
}

pub async fn queue_on_counter_is_wrong_type(store: S) {
    let c = store.counter("shared").unwrap();
    c.next().await.unwrap();
    let q = store.queue("shared").unwrap();
    assert_eq!(kind(q.join("p", Tags::new()).await), ErrorKind::WrongType);
    assert_eq!(kind(q.leave("p").await), ErrorKind::WrongType);
    assert_eq!(kind(q.ticket("p").await), ErrorKind::WrongType);
    assert_eq!(kind(q.tickets().await), ErrorKind::WrongType);
    assert_eq!(kind(q.remove().await), ErrorKind::WrongType);
    assert_eq!(c.get().await.unwrap(), 1, "nothing written");
    assert_eq!(c.next().await.unwrap(), 2);
}

pub async fn absent_queue_reads_and_leaves(store: S) {
    let q = store.queue("nobody").unwrap();
    let empty = q.tickets().await.unwrap();
    assert!(empty.value.is_empty());
    assert_eq!(empty.fencing_token, FencingToken(0));
    assert_eq!(kind(q.ticket("p").await), ErrorKind::NotFound);
    let err = q.leave("p").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("nobody"), "names the queue: {err}");
    assert_eq!(q.remove().await.unwrap(), None);
    // None of that created the queue: the first join still gets 1 and 1.
    let first = q.join("p", Tags::new()).await.unwrap();
    assert_eq!(first.fencing_token, FencingToken(1));
    assert_eq!(first.value.counter, 1);
}

pub async fn join_assigns_counters_positions_and_tokens(store: S) {
    let q = store.queue("zk").unwrap();
    let a = q.join("a", tags(&[("role", "zk")])).await.unwrap();
    assert_eq!(a.value, Ticket::new("a", 1, 0, tags(&[("role", "zk")])));
    assert_eq!(a.fencing_token, FencingToken(1));
    let b = q.join("b", Tags::new()).await.unwrap();
    assert_eq!(b.value, Ticket::new("b", 2, 1, Tags::new()));
    assert_eq!(b.fencing_token, FencingToken(2));
    let c = q.join("c", Tags::new()).await.unwrap();
    assert_eq!((c.value.counter, c.value.position), (3, 2));
    assert_eq!(c.fencing_token, FencingToken(3));
    let all = q.tickets().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(3));
    assert_eq!(all.value, vec![a.value, b.value, c.value]);
}

pub async fn join_is_idempotent(store: S) {
    let q = store.queue("idem").unwrap();
    let first = q.join("a", tags(&[("v", "1")])).await.unwrap();
    q.join("b", Tags::new()).await.unwrap();
    // Same process again with the same tags: the original ticket and the
    // current token come back, and nothing is written.
    let again = q.join("a", tags(&[("v", "1")])).await.unwrap();
    assert_eq!(again.value, first.value);
    assert_eq!(again.fencing_token, FencingToken(2));
    // With other tags (or none), or a lease: refused, naming what differs,
    // and nothing is written.
    for (other, says) in [
        (
            tags(&[("v", "2")]),
            "with tags {v=1}, and this join asks for tags {v=2}",
        ),
        (Tags::new(), "and this join asks for no tags"),
    ] {
        let err = q.join("a", other).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Mismatch, "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(err.to_string().contains("leave the queue first"), "{err}");
    }
    let err = q
        .join_leased("a", tags(&[("v", "1")]), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("with no lease, and this join asks for a lease of 5s"),
        "{err}"
    );
    assert_eq!(q.ticket("a").await.unwrap().value, first.value);
    let all = q.tickets().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(2));
    assert_eq!(all.value.len(), 2);
    let next = q.join("c", Tags::new()).await.unwrap();
    assert_eq!(next.value.counter, 3, "re-joins must not consume counters");
}

pub async fn leave_shifts_positions_and_keeps_counters(store: S) {
    let q = store.queue("shift").unwrap();
    for p in ["a", "b", "c"] {
        q.join(p, Tags::new()).await.unwrap();
    }
    assert_eq!(q.leave("a").await.unwrap(), FencingToken(4));
    let all = q.tickets().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(4));
    assert_eq!(
        summary(&all.value),
        [("b".into(), 2, 0), ("c".into(), 3, 1)]
    );
    // Leaving twice is NotFound and writes nothing.
    let err = q.leave("a").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains('a') && err.to_string().contains("shift"));
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(4));
    // Emptying the queue keeps it: its token goes on growing and its counter
    // is never reused.
    assert_eq!(q.leave("b").await.unwrap(), FencingToken(5));
    assert_eq!(q.leave("c").await.unwrap(), FencingToken(6));
    let empty = q.tickets().await.unwrap();
    assert!(empty.value.is_empty());
    assert_eq!(empty.fencing_token, FencingToken(6));
    let back = q.join("a", Tags::new()).await.unwrap();
    assert_eq!(back.value, Ticket::new("a", 4, 0, Tags::new()));
    assert_eq!(back.fencing_token, FencingToken(7));
}

pub async fn ticket_reads_without_writing(store: S) {
    let q = store.queue("read").unwrap();
    q.join("a", Tags::new()).await.unwrap();
    let b = q.join("b", tags(&[("x", "y")])).await.unwrap();
    for _ in 0..3 {
        let t = q.ticket("b").await.unwrap();
        assert_eq!(t, b);
    }
    let err = q.ticket("zzz").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("zzz"), "names the process: {err}");
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(2));
}

pub async fn every_write_adds_one_to_the_token(store: S) {
    let q = store.queue("tokens").unwrap();
    let mut expected = 0u64;
    let mut members: Vec<String> = vec![];
    // A fixed, mixed sequence of joins and leaves.
    for step in 0..40u32 {
        if step % 3 == 2 && !members.is_empty() {
            let who = members.remove((step as usize * 7) % members.len());
            expected += 1;
            assert_eq!(q.leave(&who).await.unwrap(), FencingToken(expected));
        } else {
            let who = format!("p{step}");
            expected += 1;
            let t = q.join(&who, Tags::new()).await.unwrap();
            assert_eq!(t.fencing_token, FencingToken(expected));
            assert_eq!(t.value.position, members.len());
            members.push(who);
        }
        let all = q.tickets().await.unwrap();
        assert_eq!(all.fencing_token, FencingToken(expected), "reads keep it");
        let listed: Vec<_> = all.value.iter().map(|t| t.process_id.clone()).collect();
        assert_eq!(listed, members, "ordered by counter");
        assert!(all.value.iter().enumerate().all(|(i, t)| t.position == i));
    }
}

pub async fn queue_remove(store: S) {
    let q = store.queue("rm").unwrap();
    q.join("a", Tags::new()).await.unwrap();
    q.join("b", Tags::new()).await.unwrap();
    q.leave("a").await.unwrap();
    assert_eq!(q.remove().await.unwrap(), Some(FencingToken(3)));
    let gone = q.tickets().await.unwrap();
    assert!(gone.value.is_empty());
    assert_eq!(gone.fencing_token, FencingToken(0));
    assert_eq!(kind(q.ticket("b").await), ErrorKind::NotFound);
    assert_eq!(q.remove().await.unwrap(), None);
    let again = q.join("b", Tags::new()).await.unwrap();
    assert_eq!(again.value, Ticket::new("b", 1, 0, Tags::new()));
    assert_eq!(again.fencing_token, FencingToken(1));
    // The id is free for a counter once removed.
    q.remove().await.unwrap();
    assert_eq!(store.counter("rm").unwrap().next().await.unwrap(), 1);
}

pub async fn invalid_input_is_refused_and_changes_nothing(store: S) {
    let long = "x".repeat(monotone::MAX_ID_BYTES + 1);
    for bad in ["", long.as_str(), "new\nline", "nul\0", "tab\there"] {
        assert_eq!(kind(store.counter(bad)), ErrorKind::InvalidInput, "{bad:?}");
        assert_eq!(kind(store.queue(bad)), ErrorKind::InvalidInput, "{bad:?}");
    }
    let q = store.queue("valid").unwrap();
    q.join("a", Tags::new()).await.unwrap();
    for bad in ["", long.as_str(), "bell\u{7}"] {
        assert_eq!(
            kind(q.join(bad, Tags::new()).await),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(q.leave(bad).await), ErrorKind::InvalidInput);
        assert_eq!(kind(q.ticket(bad).await), ErrorKind::InvalidInput);
    }
    for bad_tags in [
        tags(&[("", "v")]),
        tags(&[("k=1", "v")]),
        tags(&[("k", "esc\u{1b}")]),
    ] {
        assert_eq!(kind(q.join("b", bad_tags).await), ErrorKind::InvalidInput);
    }
    let all = q.tickets().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(1), "nothing written");
    assert_eq!(summary(&all.value), [("a".into(), 1, 0)]);
}

pub async fn ids_at_the_limits_round_trip(store: S) {
    let longest = "é".repeat(monotone::MAX_ID_BYTES / 2); // 2 bytes each
    let c = store.counter(&longest).unwrap();
    assert_eq!(c.next().await.unwrap(), 1);
    assert_eq!(store.counter(&longest).unwrap().get().await.unwrap(), 1);
    for id in [
        "a",
        "with space",
        "ünïcødé/ñ:ß",
        "quote\"and'back\\slash",
        "emoji 🦀",
    ] {
        let q = store.queue(&format!("q-{id}")).unwrap();
        let t = q.join(id, Tags::new()).await.unwrap();
        assert_eq!(t.value.process_id, id);
        assert_eq!(q.ticket(id).await.unwrap().value.process_id, id);
        assert_eq!(q.leave(id).await.unwrap(), FencingToken(2));
    }
    let q = store.queue("longest-process").unwrap();
    let t = q.join(&longest, Tags::new()).await.unwrap();
    assert_eq!(t.value.process_id, longest);
}

pub async fn tags_round_trip(store: S) {
    let q = store.queue("tagged").unwrap();
    let given = tags(&[
        ("az", "eu-west-1a"),
        ("empty", ""),
        ("json", "{\"a\": [1, 2]}"),
        ("eq", "a=b=c"),
        ("unicode", "日本語"),
    ]);
    let t = q.join("p", given.clone()).await.unwrap();
    assert_eq!(t.value.tags, given);
    assert_eq!(q.ticket("p").await.unwrap().value.tags, given);
    assert_eq!(q.tickets().await.unwrap().value[0].tags, given);
    let many: Tags = (0..monotone::MAX_TAGS)
        .map(|i| (format!("k{i}"), "v".repeat(64)))
        .collect();
    let t = q.join("many", many.clone()).await.unwrap();
    assert_eq!(t.value.tags, many);
}

/// 16 concurrent joins: counters 1..=16, tokens 1..=16, positions 0..16.
pub async fn concurrent_joins_get_distinct_counters_tokens_and_positions(store: S) {
    const N: u64 = 16;
    let joined = together(N as usize, |i| {
        let q = store.queue("crowd").unwrap();
        async move { q.join(&format!("p{i}"), Tags::new()).await.unwrap() }
    })
    .await;
    let counters: BTreeSet<u64> = joined.iter().map(|t| t.value.counter).collect();
    let tokens: BTreeSet<u64> = joined.iter().map(|t| t.fencing_token.0).collect();
    let positions: BTreeSet<usize> = joined.iter().map(|t| t.value.position).collect();
    assert_eq!(counters, (1..=N).collect());
    assert_eq!(tokens, (1..=N).collect());
    assert_eq!(positions, (0..N as usize).collect());
    for t in &joined {
        // Joins only append, so each ticket's position at join time is final.
        assert_eq!(t.value.counter, t.fencing_token.0);
        assert_eq!(t.value.position as u64, t.value.counter - 1);
    }
    let all = store.queue("crowd").unwrap().tickets().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(N));
    let mut expected: Vec<Ticket> = joined.into_iter().map(|t| t.value).collect();
    expected.sort_by_key(|t| t.counter);
    assert_eq!(all.value, expected);
}

/// Joins and leaves racing on one queue: every write gets its own token and
/// the final state holds exactly the processes that did not leave.
pub async fn concurrent_joins_and_leaves_lose_no_write(store: S) {
    const TASKS: usize = 8;
    const EACH: usize = 10;
    let per_task = together(TASKS, |task| {
        let q = store.queue("churn").unwrap();
        async move {
            let mut tokens = Vec::new();
            for i in 0..EACH {
                let me = format!("t{task}-{i}");
                tokens.push(q.join(&me, Tags::new()).await.unwrap().fencing_token.0);
                if i % 2 == 0 {
                    tokens.push(q.leave(&me).await.unwrap().0);
                }
                tokio::task::yield_now().await;
            }
            tokens
        }
    })
    .await;
    let mut tokens: Vec<u64> = per_task.into_iter().flatten().collect();
    let writes = TASKS * (EACH + EACH / 2);
    tokens.sort_unstable();
    assert_eq!(tokens, (1..=writes as u64).collect::<Vec<_>>());
    let all = store.queue("churn").unwrap().tickets().await.unwrap();
    assert_eq!(all.fencing_token.0, writes as u64);
    let left: BTreeSet<String> = all.value.iter().map(|t| t.process_id.clone()).collect();
    let expected: BTreeSet<String> = (0..TASKS)
        .flat_map(|t| {
            (0..EACH)
                .filter(|i| i % 2 == 1)
                .map(move |i| format!("t{t}-{i}"))
        })
        .collect();
    assert_eq!(left, expected);
    let counters: BTreeSet<u64> = all.value.iter().map(|t| t.counter).collect();
    assert_eq!(counters.len(), all.value.len(), "counters are unique");
    assert!(all.value.windows(2).all(|w| w[0].counter < w[1].counter));
}
