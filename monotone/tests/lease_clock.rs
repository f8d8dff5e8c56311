//! The lease protocol's timing within one process, on Tokio's paused clock:
//! time only moves when every task waits, so each check sees the exact
//! instants at which the holder renews, gives up, and an observer may
//! remove a ticket, without sleeping.
//!
//! The memory store answers at once, so a request takes no time here; the
//! conformance suite covers real stores with real time.

mod conformance;

use std::sync::Arc;
use std::time::Duration;

use conformance::lease::{hold, Cut};
use monotone::{
    Candidates, ClaimHolder, ClaimPool, ErrorKind, FencingToken, HolderOptions, LeaseHolder,
    LeaseWatch, MemoryStore, Queue, Store, Tags, WaitOptions,
};
use tokio::time::{sleep, sleep_until, Instant};

const LEASE: Duration = Duration::from_millis(300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn queue(store: &MemoryStore, id: &str) -> Arc<dyn Queue> {
    Arc::from(store.queue(id).unwrap())
}

async fn renewals(q: &dyn Queue, pid: &str) -> u64 {
    q.ticket(pid).await.unwrap().value.lease.unwrap().renewals
}

#[tokio::test(start_paused = true)]
async fn the_holder_renews_every_third_of_the_lease() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let holder = hold(queue(&store, "q"), "h", LEASE).await;
    let q = queue(&store, "q");
    sleep_until(t0 + ms(99)).await;
    assert_eq!(renewals(&*q, "h").await, 0);
    sleep_until(t0 + ms(101)).await;
    assert_eq!(renewals(&*q, "h").await, 1);
    sleep_until(t0 + ms(1050)).await;
    assert_eq!(renewals(&*q, "h").await, 10);
    assert!(holder.is_held());
    let options = HolderOptions::new().with_renew_every(ms(50));
    let custom = LeaseHolder::join(queue(&store, "q"), "c", Tags::new(), LEASE, options)
        .await
        .unwrap();
    sleep(ms(1001)).await;
    assert_eq!(renewals(&*q, "c").await, 20);
    drop(custom);
}

#[tokio::test(start_paused = true)]
async fn the_holder_gives_up_nine_tenths_of_a_lease_after_its_last_renewal_was_sent() {
    let store = MemoryStore::new();
    let cut = Cut::new(store.queue("q").unwrap());
    let t0 = Instant::now();
    let holder = hold(cut.clone(), "h", LEASE).await;
    // The renewal sent at 100 ms succeeds; those from 200 ms on fail.
    sleep_until(t0 + ms(150)).await;
    cut.cut_renewals();
    let err = holder.lost().await;
    assert_eq!(err.kind(), ErrorKind::LeaseLost);
    assert_eq!(Instant::now() - t0, ms(100 + 270));
    assert!(!holder.is_held());
    // Still in the queue: only an observer's full watch may remove it.
    assert_eq!(queue(&store, "q").tickets().await.unwrap().value.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_reserve_makes_the_holder_give_up_that_much_earlier() {
    let store = MemoryStore::new();
    let cut = Cut::new(store.queue("q").unwrap());
    cut.cut_renewals();
    let t0 = Instant::now();
    let options = HolderOptions::new().with_reserve(ms(50));
    let holder = LeaseHolder::join(cut.clone(), "h", Tags::new(), LEASE, options)
        .await
        .unwrap();
    holder.lost().await;
    assert_eq!(Instant::now() - t0, ms(270 - 50));
    // A reserve that leaves no room to renew is refused.
    let options = HolderOptions::new()
        .with_reserve(ms(100))
        .with_renew_every(ms(100));
    let err = LeaseHolder::join(queue(&store, "q"), "x", Tags::new(), LEASE, options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_never_answers_does_not_hold_the_loss_back() {
    let store = MemoryStore::new();
    let cut = Cut::new(store.queue("q").unwrap());
    let t0 = Instant::now();
    let holder = hold(cut.clone(), "h", LEASE).await;
    cut.hang_renewals();
    holder.lost().await;
    assert_eq!(Instant::now() - t0, ms(270));
}

#[tokio::test(start_paused = true)]
async fn a_removed_ticket_is_lost_at_the_next_renewal() {
    let store = MemoryStore::new();
    let t0 = Instant::now();
    let holder = hold(queue(&store, "q"), "h", LEASE).await;
    sleep_until(t0 + ms(150)).await;
    queue(&store, "q").leave("h").await.unwrap();
    let err = holder.lost().await;
    assert_eq!(
        Instant::now() - t0,
        ms(200),
        "told at the renewal at 200 ms"
    );
    assert!(err.to_string().contains("gone"), "{err}");
    assert_eq!(holder.release().await.unwrap(), None);
}

/// The worst case for the margin: an observer that reads the instant after
/// each successful renewal. It still may not remove the ticket until a full
/// lease after the last renewal, while the holder gave up at nine tenths.
#[tokio::test(start_paused = true)]
async fn no_observer_can_remove_the_ticket_before_the_holder_gave_up() {
    let store = MemoryStore::new();
    let cut = Cut::new(store.queue("q").unwrap());
    let holder = hold(cut.clone(), "h", LEASE).await;
    let observer = queue(&store, "q");
    let t0 = Instant::now();
    let mut watch = LeaseWatch::new();
    let mut lost_at = None;
    let removed_at = loop {
        if t0.elapsed() >= ms(250) {
            cut.cut_renewals(); // the last renewal went out at 200 ms
        }
        if lost_at.is_none() && !holder.is_held() {
            lost_at = Some(Instant::now());
        }
        let all = observer.tickets().await.unwrap();
        let expired = watch.observe(&all.value, all.fencing_token, Instant::now());
        if let Some(e) = expired.first() {
            assert_eq!(observer.expire(e).await.unwrap(), Some(FencingToken(2)));
            break Instant::now();
        }
        sleep(ms(1)).await;
    };
    assert_eq!(lost_at.unwrap() - t0, ms(200 + 270));
    // 500 ms, or 501 if the read at 200 ms came just before the renewal.
    let removed = removed_at - t0;
    assert!((ms(500)..=ms(501)).contains(&removed), "{removed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_takes_over_within_one_lease_and_one_poll_of_the_holders_death() {
    let store = MemoryStore::new();
    let cut = Cut::new(store.queue("q").unwrap());
    let first = hold(cut.clone(), "first", LEASE).await;
    let second = hold(queue(&store, "q"), "second", LEASE).await;
    let options = WaitOptions::new();
    let poll = options.poll_interval(std::slice::from_ref(&first.joined().value));
    assert_eq!(poll, LEASE / 4);
    let waiter = tokio::spawn(async move {
        let head = second.wait_for_position(1, &options).await.unwrap();
        (Instant::now(), head, second)
    });
    sleep(ms(1234)).await;
    let killed = Instant::now();
    cut.cut_everything();
    drop(first);
    let (head_at, head, second) = waiter.await.unwrap();
    let took = head_at - killed;
    assert!(took <= LEASE + poll, "took {took:?}");
    // Never before the holder could have given up: its last renewal went
    // out at most a third of a lease before it died.
    assert!(took >= LEASE * 9 / 10 - LEASE / 3, "took {took:?}");
    assert_eq!(head.value.process_id, "second");
    assert!(head.fencing_token > second.joined().fencing_token);
    second.release().await.unwrap();
}

/// What waiting costs: one read of the queue per poll, a random half to
/// whole poll interval apart: 1 to 2 reads a second behind a 15 s lease.
#[tokio::test(start_paused = true)]
async fn a_waiter_reads_once_per_poll_interval() {
    let store = MemoryStore::new();
    let lease = Duration::from_secs(15);
    let holder = hold(queue(&store, "q"), "h", lease).await;
    let counted = Cut::new(store.queue("q").unwrap());
    counted.join("w", Tags::new()).await.unwrap();
    let options = WaitOptions::new().with_timeout(Some(Duration::from_secs(60)));
    let err = monotone::wait_for_position(&*counted, "w", 1, &options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let reads = counted.reads();
    assert!((60..=121).contains(&reads), "{reads} reads in 60 s");
    assert!(holder.is_held());
}

#[tokio::test(start_paused = true)]
async fn a_wait_times_out_on_time_and_a_zero_timeout_looks_once() {
    let store = MemoryStore::new();
    let counted = Cut::new(store.queue("q").unwrap());
    counted.join("a", Tags::new()).await.unwrap();
    counted.join("b", Tags::new()).await.unwrap();
    let t0 = Instant::now();
    let options = WaitOptions::new().with_timeout(Some(ms(2500)));
    let err = monotone::wait_for_position(&*counted, "b", 1, &options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(Instant::now() - t0, ms(2500));
    let before = counted.reads();
    let now = WaitOptions::new().with_timeout(Some(Duration::ZERO));
    let err = monotone::wait_for_position(&*counted, "b", 1, &now)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(counted.reads() - before, 1);
    assert_eq!(Instant::now() - t0, ms(2500), "did not wait");
    let ok = monotone::wait_for_position(&*counted, "b", 2, &now)
        .await
        .unwrap();
    assert_eq!(ok.value.position, 1);
}

/// A second holder of the same process id, waiting its turn: once the first
/// holder dies, it joins within one lease and one poll of the death, never
/// before the dead holder gave up; it never holds while the first does.
#[tokio::test(start_paused = true)]
async fn a_second_holder_of_one_process_id_joins_only_after_the_first_gave_up() {
    let store = MemoryStore::new();
    let cut = Cut::new(store.queue("q").unwrap());
    let first = hold(cut.clone(), "host-a", LEASE).await;
    let first_token = first.joined().fencing_token;
    let second = tokio::spawn({
        let q = queue(&store, "q");
        async move {
            let options = HolderOptions::new();
            let wait = WaitOptions::new();
            let h = LeaseHolder::join_waiting(q, "host-a", Tags::new(), LEASE, options, &wait)
                .await
                .unwrap();
            (Instant::now(), h)
        }
    });
    sleep(ms(1234)).await;
    assert!(!second.is_finished(), "joined beside a live holder");
    let killed = Instant::now();
    cut.cut_everything();
    // The first holder keeps counting on its lease until it gives up.
    first.lost().await;
    let lost = Instant::now();
    drop(first);
    let (joined_at, second) = second.await.unwrap();
    assert!(
        joined_at > lost,
        "joined {:?} before the first gave up",
        lost - joined_at
    );
    let took = joined_at - killed;
    assert!(took <= LEASE + LEASE / 4, "took {took:?}");
    // Removed (a write), then joined (another).
    assert_eq!(second.joined().fencing_token.get(), first_token.get() + 2);
    assert!(second.is_held());
}

/// A second holder of the same process id joins at its first look after
/// the first holder releases: within one poll (a quarter of the lease).
#[tokio::test(start_paused = true)]
async fn a_second_holder_joins_within_a_poll_of_the_first_ones_release() {
    let store = MemoryStore::new();
    let first = hold(queue(&store, "q"), "host-a", LEASE).await;
    let second = tokio::spawn({
        let q = queue(&store, "q");
        async move {
            let wait = WaitOptions::new();
            let h = LeaseHolder::join_waiting(
                q,
                "host-a",
                Tags::new(),
                LEASE,
                HolderOptions::new(),
                &wait,
            )
            .await
            .unwrap();
            (Instant::now(), h)
        }
    });
    sleep(ms(2000)).await;
    assert!(!second.is_finished());
    let released = Instant::now();
    assert_eq!(first.release().await.unwrap(), Some(FencingToken(2)));
    let (joined_at, second) = second.await.unwrap();
    assert!(
        joined_at - released <= LEASE / 4,
        "{:?}",
        joined_at - released
    );
    assert_eq!(second.joined().fencing_token, FencingToken(3));
    // A third, that may not wait, is not acquired at once.
    let err = LeaseHolder::join(
        queue(&store, "q"),
        "host-a",
        Tags::new(),
        LEASE,
        HolderOptions::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(Instant::now() - joined_at, Duration::ZERO, "did not wait");
}

// The living reap the dead: a holder's renewals read its queue (pool), and
// it removes the others' records it has seen unrenewed for a full lease on
// its own clock. With a lease of 300 ms, a holder that joined at t0 renews
// at 100, 200, 300, 400 ms...: the first renewal after another's ticket
// appeared sees it, the renewal a full lease later removes it.

fn process_ids(tickets: &[monotone::Ticket]) -> Vec<&str> {
    tickets.iter().map(|t| t.process_id.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_holder_removes_another_ticket_a_full_lease_after_it_saw_it_and_not_before() {
    let store = MemoryStore::new();
    let q = queue(&store, "q");
    let t0 = Instant::now();
    let holder = hold(queue(&store, "q"), "h", LEASE).await;
    q.join_leased("dead", Tags::new(), LEASE).await.unwrap();
    q.join("permanent", Tags::new()).await.unwrap();
    sleep_until(t0 + ms(399)).await;
    let all = q.tickets().await.unwrap();
    assert_eq!(process_ids(&all.value), ["h", "dead", "permanent"]);
    sleep_until(t0 + ms(401)).await;
    let all = q.tickets().await.unwrap();
    assert_eq!(process_ids(&all.value), ["h", "permanent"]);
    assert_eq!(all.fencing_token, FencingToken(4), "the removal is a write");
    // Nothing more to remove: its own ticket and a permanent one stay.
    sleep_until(t0 + ms(3000)).await;
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(4));
    assert!(holder.is_held());
}

#[tokio::test(start_paused = true)]
async fn a_ticket_renewed_within_each_lease_is_never_removed() {
    let store = MemoryStore::new();
    let q = queue(&store, "q");
    let t0 = Instant::now();
    let first = hold(queue(&store, "q"), "first", LEASE).await;
    let second = hold(queue(&store, "q"), "second", LEASE).await;
    // Renewed by hand every 250 ms: less often than the holders read, but
    // always within a lease.
    let slow = q.join_leased("slow", Tags::new(), LEASE).await.unwrap();
    let renewer = {
        let q = queue(&store, "q");
        tokio::spawn(async move {
            loop {
                sleep(ms(250)).await;
                q.renew("slow", slow.value.counter).await.unwrap();
            }
        })
    };
    sleep_until(t0 + ms(6000)).await;
    let all = q.tickets().await.unwrap();
    assert_eq!(process_ids(&all.value), ["first", "second", "slow"]);
    assert_eq!(all.fencing_token, FencingToken(3), "nothing was removed");
    assert!(first.is_held() && second.is_held());
    // Once it stops, it goes within a lease and a renewal interval.
    renewer.abort();
    sleep_until(t0 + ms(6000 + 300 + 100 + 1)).await;
    assert_eq!(
        process_ids(&q.tickets().await.unwrap().value),
        ["first", "second"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_never_asks_to_remove_its_own_ticket() {
    // The reads its renewals come with show every lease unrenewed: the
    // holder asks to remove the other's ticket (and loses to its renewals:
    // the removal is conditional on what it saw), never its own.
    let store = MemoryStore::new();
    let cut = Cut::new(store.queue("q").unwrap());
    cut.freeze_reads();
    let holder = hold(cut.clone(), "h", LEASE).await;
    let other = hold(queue(&store, "q"), "other", LEASE).await;
    sleep(ms(3000)).await;
    let asked = cut.expiries();
    assert!(asked.iter().any(|p| p == "other"), "{asked:?}");
    assert!(asked.iter().all(|p| p != "h"), "{asked:?}");
    let all = queue(&store, "q").tickets().await.unwrap();
    assert_eq!(process_ids(&all.value), ["h", "other"]);
    assert_eq!(all.fencing_token, FencingToken(2));
    assert!(holder.is_held() && other.is_held());
}

#[tokio::test(start_paused = true)]
async fn a_removal_that_never_answers_delays_no_renewal() {
    let store = MemoryStore::new();
    let cut = Cut::new(store.queue("q").unwrap());
    cut.hang_expiries();
    let q = queue(&store, "q");
    let t0 = Instant::now();
    let holder = hold(cut.clone(), "h", LEASE).await;
    q.join_leased("dead", Tags::new(), LEASE).await.unwrap();
    sleep_until(t0 + ms(3050)).await;
    assert_eq!(cut.expiries().first().map(String::as_str), Some("dead"));
    assert!(holder.is_held(), "{:?}", holder.status());
    assert_eq!(renewals(&*q, "h").await, 30, "every renewal on time");
    assert_eq!(
        process_ids(&q.tickets().await.unwrap().value),
        ["h", "dead"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_holder_removes_another_claim_a_full_lease_after_it_saw_it() {
    let store = MemoryStore::new();
    let pool =
        |store: &MemoryStore| -> Arc<dyn ClaimPool> { Arc::from(store.claim_pool("p").unwrap()) };
    let p = pool(&store);
    let names = Candidates::range(1..=9).unwrap();
    let t0 = Instant::now();
    let holder = ClaimHolder::claim(pool(&store), "h", &names, LEASE, HolderOptions::new())
        .await
        .unwrap();
    assert_eq!(holder.name(), "1");
    p.claim_leased("dead", &names, LEASE).await.unwrap();
    p.claim("permanent", &names).await.unwrap();
    sleep_until(t0 + ms(399)).await;
    assert_eq!(p.claims().await.unwrap().value.len(), 3);
    sleep_until(t0 + ms(401)).await;
    let all = p.claims().await.unwrap();
    let owners: Vec<_> = all.value.iter().map(|c| c.owner.as_str()).collect();
    assert_eq!(owners, ["h", "permanent"]);
    assert_eq!(all.fencing_token, FencingToken(4));
    assert_eq!(p.claim("next", &names).await.unwrap().value.name, "2");
    assert!(holder.is_held());
}
