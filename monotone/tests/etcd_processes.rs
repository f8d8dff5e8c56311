//! Many OS processes on one etcd at once: the multi-process suite (see
//! `processes`) on the single member, and the failover check on the
//! 3-member cluster: the member the clients talk to is killed with SIGKILL
//! while 8 processes call `next` 50 times each, and every value still comes
//! out exactly once, with no call failing.
#![cfg(feature = "etcd")]

mod etcd_support;
mod processes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use monotone::Store;
use processes::{wave, Sent, SharedStore, EACH, PROCESSES};

use etcd_support::*;

/// A prefix of its own on the single member.
struct Etcd;

impl SharedStore for Etcd {
    type Guard = ();
    const NAME: &'static str = "etcd";
    const WATCH_POLL: Duration = Duration::from_millis(100);
    const WATCH_TIMEOUT: Duration = Duration::from_secs(60);

    async fn fresh(tag: &str) -> Option<(String, ())> {
        Some((url(&endpoints()?, tag), ()))
    }

    /// Requests are not counted here: `tests/etcd.rs` checks what each
    /// operation sends.
    async fn open(url: &str) -> (Arc<dyn Store>, Option<Box<dyn Sent>>) {
        (
            monotone::open(url).await.expect("open the etcd store"),
            None,
        )
    }
}

process_suite!(Etcd);

/// 8 processes x 50 `next` on the 3-member cluster, the leader SIGKILLed
/// once a quarter of the values are out: every value from 1 to 400 exactly
/// once, and every call succeeded (a worker that fails, fails the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_during_next_loses_and_repeats_no_value() {
    let Some(cluster) = server(CLUSTER_VAR) else {
        return;
    };
    let url = url(&cluster, "failover");
    let owners: Vec<String> = (0..PROCESSES).map(|i| format!("f{i}")).collect();
    let run = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || wave::<Etcd>(&url, "next", &owners))
    };
    // Kill the leader (every write goes through it: its death leaves writes
    // in flight with an unknown outcome) while the workers are at it.
    let leader = script(&["leader"]);
    let store = monotone::open(&url).await.unwrap();
    let counter = store.counter("c").unwrap();
    let started = Instant::now();
    while counter.get().await.unwrap() < (PROCESSES * EACH / 4) as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the workers do not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    script(&["kill", &leader]);
    let at = counter.get().await.unwrap();
    let killed = leader;
    let (results, took) = run.await.unwrap();
    script(&["restart", &killed]);
    let mut values: Vec<u64> = results.iter().map(|r| r.value).collect();
    values.sort_unstable();
    let total = (PROCESSES * EACH) as u64;
    let repeated: Vec<u64> = values
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    let missing: Vec<u64> = (1..=total)
        .filter(|v| values.binary_search(v).is_err())
        .collect();
    assert!(
        repeated.is_empty() && missing.is_empty() && values.len() == total as usize,
        "every value exactly once: repeated {repeated:?}, missing {missing:?} (leader killed at {at})"
    );
    assert_eq!(
        counter.get().await.unwrap(),
        total,
        "and no value taken unseen"
    );
    let slowest = results.iter().map(|r| r.micros).max().unwrap();
    println!(
        "killed the leader {killed} at value {at}; {} values in {:.2}s, slowest next {:.0} ms",
        results.len(),
        took.as_secs_f64(),
        slowest as f64 / 1000.0
    );
}
