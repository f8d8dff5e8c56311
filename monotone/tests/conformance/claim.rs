//! The contract of `ClaimPool` (see `monotone::ClaimPool`) as plain async
//! functions taking a store, run unchanged against every backend; leased
//! claims with real time and short leases, as the lease checks do.
//!
//! Each check would fail on the bug it is named after: a name held twice, a
//! claim that is not the first free one, a re-claim that writes or moves,
//! a freed name not reused, a token that skips, stalls or grows on a
//! renewal, an expiry without a full observed lease or that wins over an
//! earlier renewal, a holder that learns of its loss after the removal, a
//! write where nothing should be written.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use monotone::{
    wait_for_claim, wait_for_roster, Candidates, Claim, ClaimHolder, ClaimPool, ClaimRequest,
    Claimed, ErrorKind, Expired, Fenced, FencingToken, HolderId, HolderOptions, LeaseStatus,
    Roster, Tags, MAX_CANDIDATES,
};
use serde_json::json;
use tokio::time::Instant;

use super::lease::{
    await_reaped, remove_when_allowed, watch_a_held_lease, watch_until_expired, Cutoff, LEASE,
};
use super::{kind, ms, quick, tags, together, S};

fn pool(store: &S, id: &str) -> Arc<dyn ClaimPool> {
    Arc::from(store.claim_pool(id).unwrap())
}

fn range(start: u64, end: u64) -> Candidates {
    Candidates::range(start..=end).unwrap()
}

/// A holder of `owner`'s claim in `pool`, leased for [`LEASE`], with the
/// default options.
async fn hold(pool: Arc<dyn ClaimPool>, owner: &str, candidates: &Candidates) -> ClaimHolder {
    ClaimHolder::claim(pool, owner, candidates, LEASE, HolderOptions::new())
        .await
        .unwrap()
}

/// A holder of `owner`'s claim in `pool`, leased for [`LEASE`], that
/// waits (polling quickly) while another holder holds the owner's claim.
async fn hold_waiting(
    pool: Arc<dyn ClaimPool>,
    owner: &str,
    candidates: &Candidates,
) -> ClaimHolder {
    let options = HolderOptions::new();
    ClaimHolder::claim_waiting(pool, owner, candidates, LEASE, options, &quick())
        .await
        .unwrap()
}

/// (name, owner) of each claim, in the order given.
fn held(claims: &[Claim]) -> Vec<(String, String)> {
    claims
        .iter()
        .map(|c| (c.name.clone(), c.owner.clone()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, o)| (n.to_string(), o.to_string()))
        .collect()
}

pub async fn claims_take_the_first_free_candidate_in_order(store: S) {
    let p = pool(&store, "myzk");
    let c = range(1, 255);
    let a = p.claim("zk-a", &c).await.unwrap();
    assert_eq!(
        (a.value.name.as_str(), a.value.owner.as_str(), a.value.index),
        ("1", "zk-a", 0)
    );
    assert_eq!(
        (a.fencing_token, a.value.token),
        (FencingToken(1), FencingToken(1))
    );
    assert_eq!(a.value.lease, None, "a permanent claim");
    let b = p.claim("zk-b", &c).await.unwrap();
    assert_eq!(
        (b.value.name.as_str(), b.value.index, b.fencing_token.get()),
        ("2", 1, 2)
    );
    // Another list in the same pool: its first candidate not held.
    let d = p
        .claim("zk-d", &Candidates::names(["2", "1", "9", "3"]).unwrap())
        .await
        .unwrap();
    assert_eq!((d.value.name.as_str(), d.value.index), ("9", 2));
    let e = p.claim("zk-e", &c).await.unwrap();
    assert_eq!(e.value.name, "3");
    let mountains = Candidates::names(["Denali", "MtLogan", "PicoDeOrizaba"]).unwrap();
    let m = pool(&store, "mountains");
    let first = m.claim("host-1", &mountains).await.unwrap();
    let second = m.claim("host-2", &mountains).await.unwrap();
    assert_eq!(
        (first.value.name.as_str(), second.value.name.as_str()),
        ("Denali", "MtLogan")
    );
    assert_eq!(
        second.fencing_token,
        FencingToken(2),
        "pools are independent"
    );
    let claimed = m.claim_with("host-3", &mountains, None).await.unwrap();
    assert!(claimed.added && claimed.written_at.is_some());
    assert_eq!(claimed.claim.value.name, "PicoDeOrizaba");
    assert_eq!(
        p.claim_of("zk-b").await.unwrap(),
        Fenced::new(b.value, FencingToken(4))
    );
}

pub async fn a_claim_again_returns_the_same_claim_and_writes_nothing(store: S) {
    let p = pool(&store, "idem");
    let c = range(1, 10);
    let a = p.claim("a", &c).await.unwrap();
    p.claim("b", &c).await.unwrap();
    // Again, from any list, with the same tags and lease: the same claim,
    // the current token, nothing written.
    for again in [
        p.claim_with("a", &c, None).await.unwrap(),
        p.claim_with("a", &range(5, 9), None).await.unwrap(),
        p.claim_with("a", &Candidates::names(["x"]).unwrap(), None)
            .await
            .unwrap(),
    ] {
        assert_eq!(
            again,
            Claimed::existing(Fenced::new(a.value.clone(), FencingToken(2)))
        );
    }
    let all = p.claims().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(2));
    assert_eq!(held(&all.value), pairs(&[("1", "a"), ("2", "b")]));
    assert_eq!(p.claim("c", &c).await.unwrap().value.name, "3");
}

pub async fn a_released_name_is_free_and_the_lowest_freed_is_reused(store: S) {
    let p = pool(&store, "reuse");
    let c = range(1, 255);
    for i in 1..=6 {
        assert_eq!(
            p.claim(&format!("o{i}"), &c).await.unwrap().value.name,
            i.to_string()
        );
    }
    let released = p.release("o5").await.unwrap();
    assert_eq!(
        (released.value.name.as_str(), released.value.owner.as_str()),
        ("5", "o5")
    );
    assert_eq!(released.fencing_token, FencingToken(7));
    p.release("o2").await.unwrap();
    p.release("o4").await.unwrap();
    assert_eq!(kind(p.claim_of("o2").await), ErrorKind::NotFound);
    // The lowest freed first, then the next, then past the end.
    let order: Vec<String> = {
        let mut v = Vec::new();
        for owner in ["n1", "n2", "n3", "n4"] {
            v.push(p.claim(owner, &c).await.unwrap().value.name);
        }
        v
    };
    assert_eq!(order, ["2", "4", "5", "7"]);
    // An owner that released and claims again gets a new claim.
    p.release("o1").await.unwrap();
    let back = p.claim("o1", &c).await.unwrap();
    assert_eq!(back.value.name, "1");
    assert_eq!(back.value.token, back.fencing_token);
    assert_eq!(back.fencing_token, FencingToken(15));
    let err = p.release("nobody").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("`nobody`") && err.to_string().contains("`reuse`"));
    assert_eq!(p.claims().await.unwrap().fencing_token, FencingToken(15));
}

pub async fn exhaustion_names_the_pool_and_the_candidates_and_writes_nothing(store: S) {
    let p = pool(&store, "full");
    let c = range(1, 3);
    for owner in ["a", "b", "c"] {
        p.claim(owner, &c).await.unwrap();
    }
    let err = p.claim("d", &c).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("`full`") && msg.contains("3 candidates"),
        "{msg}"
    );
    assert_eq!(
        kind(p.claim_with("d", &c, Some(LEASE)).await),
        ErrorKind::Exhausted
    );
    let one = Candidates::names(["2"]).unwrap();
    assert_eq!(kind(p.claim("d", &one).await), ErrorKind::Exhausted);
    // A holder still gets its own claim back from an exhausted pool.
    assert_eq!(p.claim("b", &c).await.unwrap().value.name, "2");
    let all = p.claims().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(3), "nothing written");
    assert_eq!(all.value.len(), 3);
    assert_eq!(kind(p.claim_of("d").await), ErrorKind::NotFound);
    // Room again after a release; waiting claimers give up at once when
    // asked not to wait, with the same error.
    let now = quick().with_timeout(Some(Duration::ZERO));
    assert_eq!(
        kind(wait_for_claim(&*p, "d", &c, None, &now).await),
        ErrorKind::Exhausted
    );
    p.release("a").await.unwrap();
    let d = wait_for_claim(&*p, "d", &c, None, &now).await.unwrap();
    assert_eq!(
        (d.claim.value.name.as_str(), d.claim.fencing_token.get()),
        ("1", 5)
    );
}

pub async fn every_claim_release_and_expiry_adds_one_to_the_token(store: S) {
    let p = pool(&store, "tokens");
    let c = range(1, 9);
    let mut expected = 0;
    let mut check = |token: FencingToken| {
        expected += 1;
        assert_eq!(token, FencingToken(expected));
    };
    check(p.claim("a", &c).await.unwrap().fencing_token);
    check(p.claim_leased("b", &c, LEASE).await.unwrap().fencing_token);
    check(p.release("a").await.unwrap().fencing_token);
    // Reads, re-claims, failed claims and renewals write no token.
    p.claims().await.unwrap();
    p.claim_of("b").await.unwrap();
    p.claim_leased("b", &c, LEASE).await.unwrap();
    assert_eq!(kind(p.claim("b", &c).await), ErrorKind::Mismatch);
    p.renew("b", "2").await.unwrap();
    let _ = p
        .claim("x", &Candidates::names(["2"]).unwrap())
        .await
        .unwrap_err();
    let _ = p.release("a").await.unwrap_err();
    assert_eq!(p.claims().await.unwrap().fencing_token, FencingToken(3));
    check(p.claim("c", &c).await.unwrap().fencing_token);
    let (expired, _) = watch_until_expired(&*p).await;
    check(p.expire(&expired[0]).await.unwrap().unwrap());
    check(p.claim("d", &c).await.unwrap().fencing_token);
    let tokens: Vec<u64> = p
        .claims()
        .await
        .unwrap()
        .value
        .iter()
        .map(|c| c.token.get())
        .collect();
    assert_eq!(tokens, [4, 6], "each claim keeps the token it was made at");
}

pub async fn an_absent_pool_reads_empty_and_releases_nothing(store: S) {
    let p = pool(&store, "nothing");
    assert_eq!(p.id(), "nothing");
    let all = p.claims().await.unwrap();
    assert!(all.value.is_empty());
    assert_eq!(all.fencing_token, FencingToken(0));
    assert_eq!(kind(p.claim_of("a").await), ErrorKind::NotFound);
    assert_eq!(kind(p.release("a").await), ErrorKind::NotFound);
    assert_eq!(kind(p.renew("a", "1").await), ErrorKind::LeaseLost);
    assert_eq!(p.remove().await.unwrap(), None);
    // None of that created the pool.
    assert_eq!(
        p.claim("a", &range(1, 2)).await.unwrap().fencing_token,
        FencingToken(1)
    );
    assert_eq!(store.counter("c").unwrap().next().await.unwrap(), 1);
}

/// Claimants with different candidate lists (a range, a reversed list, a
/// list of names) share a pool: it lists by name, numbers numerically and
/// first, whatever the index each claim has in its own list.
pub async fn claims_are_listed_by_name_numbers_numerically(store: S) {
    let p = pool(&store, "order");
    let list = Candidates::names(["zeta", "alpha", "mu", "beta"]).unwrap();
    for owner in ["o1", "o2", "o3", "o4"] {
        p.claim(owner, &list).await.unwrap();
    }
    p.release("o2").await.unwrap();
    p.claim_leased("o5", &list, LEASE).await.unwrap();
    p.claim("n1", &range(1, 12)).await.unwrap();
    let backwards = Candidates::names(["12", "10", "9", "2"]).unwrap();
    for owner in ["n12", "n10", "n9"] {
        p.claim(owner, &backwards).await.unwrap();
    }
    let all = p.claims().await.unwrap();
    assert_eq!(
        held(&all.value),
        pairs(&[
            ("1", "n1"),
            ("9", "n9"),
            ("10", "n10"),
            ("12", "n12"),
            ("alpha", "o5"),
            ("beta", "o4"),
            ("mu", "o3"),
            ("zeta", "o1"),
        ])
    );
    let indexes: Vec<usize> = all.value.iter().map(|c| c.index).collect();
    assert_eq!(indexes, [0, 2, 1, 0, 1, 3, 2, 0], "each in its own list");
    assert!(all.value[4].lease.is_some() && all.value[7].lease.is_none());
    assert_eq!(all.fencing_token, FencingToken(10));
}

pub async fn claim_pool_remove(store: S) {
    let p = pool(&store, "gone");
    let c = range(1, 5);
    p.claim("a", &c).await.unwrap();
    p.claim_leased("b", &c, LEASE).await.unwrap();
    p.release("a").await.unwrap();
    assert_eq!(p.remove().await.unwrap(), Some(FencingToken(3)));
    assert_eq!(
        p.claims().await.unwrap(),
        Fenced::new(vec![], FencingToken(0))
    );
    assert_eq!(p.remove().await.unwrap(), None);
    let again = p.claim("b", &c).await.unwrap();
    assert_eq!(
        (again.value.name.as_str(), again.fencing_token),
        ("1", FencingToken(1))
    );
    p.remove().await.unwrap();
    assert_eq!(
        store.tally("gone").unwrap().add(1).await.unwrap().value,
        1,
        "the id is free"
    );
}

pub async fn claim_pools_and_other_kinds_are_wrong_type(store: S) {
    store.counter("count").unwrap().next().await.unwrap();
    let queue = store.queue("queue").unwrap();
    queue.join("p", Tags::new()).await.unwrap();
    store.tally("tally").unwrap().add(-2).await.unwrap();
    use monotone::DocumentExt;
    store
        .document("doc")
        .unwrap()
        .write(0, &json!({"a": 1}))
        .await
        .unwrap();
    let c = range(1, 3);
    for (id, found) in [
        ("count", "counter"),
        ("queue", "queue"),
        ("tally", "tally"),
        ("doc", "document"),
    ] {
        let p = pool(&store, id);
        let err = p.claim("a", &c).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongType, "{id}: {err}");
        assert_eq!(
            err.to_string(),
            format!("`{id}` is a {found}, not a claim pool")
        );
        assert_eq!(
            kind(p.claim_with("a", &c, Some(LEASE)).await),
            ErrorKind::WrongType
        );
        assert_eq!(kind(p.release("a").await), ErrorKind::WrongType);
        assert_eq!(kind(p.renew("a", "1").await), ErrorKind::WrongType);
        assert_eq!(kind(p.claim_of("a").await), ErrorKind::WrongType);
        assert_eq!(kind(p.claims().await), ErrorKind::WrongType);
        assert_eq!(kind(p.remove().await), ErrorKind::WrongType);
        let err = ClaimHolder::claim(Arc::clone(&p), "a", &c, LEASE, HolderOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongType);
    }
    assert_eq!(
        store.counter("count").unwrap().get().await.unwrap(),
        1,
        "unchanged"
    );
    assert_eq!(queue.tickets().await.unwrap().value.len(), 1);

    let p = pool(&store, "pool");
    let claimed = p.claim("a", &c).await.unwrap();
    let is_pool = |e: monotone::Error, wanted: &str| {
        assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
        assert_eq!(
            e.to_string(),
            format!("`pool` is a claim pool, not a {wanted}")
        );
    };
    let counter = store.counter("pool").unwrap();
    let queue = store.queue("pool").unwrap();
    let tally = store.tally("pool").unwrap();
    let document = store.document("pool").unwrap();
    is_pool(counter.next().await.unwrap_err(), "counter");
    is_pool(counter.get().await.unwrap_err(), "counter");
    is_pool(queue.join("p", Tags::new()).await.unwrap_err(), "queue");
    is_pool(queue.tickets().await.unwrap_err(), "queue");
    is_pool(queue.remove().await.unwrap_err(), "queue");
    is_pool(tally.add(1).await.unwrap_err(), "tally");
    let fresh = monotone::Freshness::Fresh;
    is_pool(tally.get(fresh).await.unwrap_err(), "tally");
    is_pool(document.read().await.unwrap_err(), "document");
    is_pool(document.write(0, &json!(1)).await.unwrap_err(), "document");
    is_pool(counter.remove().await.unwrap_err(), "counter");
    assert_eq!(
        p.claims().await.unwrap(),
        Fenced::new(vec![claimed.value], FencingToken(1)),
        "unchanged"
    );
}

pub async fn claim_input_is_checked_and_changes_nothing(store: S) {
    assert_eq!(kind(store.claim_pool("")), ErrorKind::InvalidInput);
    assert_eq!(kind(store.claim_pool("a\nb")), ErrorKind::InvalidInput);
    let p = pool(&store, "checked");
    let c = range(1, 3);
    p.claim("a", &c).await.unwrap();
    for bad in ["", "x\u{0}", &"o".repeat(monotone::MAX_ID_BYTES + 1)] {
        assert_eq!(
            kind(p.claim(bad, &c).await),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert_eq!(kind(p.release(bad).await), ErrorKind::InvalidInput);
        assert_eq!(kind(p.claim_of(bad).await), ErrorKind::InvalidInput);
    }
    for lease in [ms(1), ms(49), Duration::from_secs(2 * 86_400)] {
        assert_eq!(
            kind(p.claim_leased("b", &c, lease).await),
            ErrorKind::InvalidInput
        );
    }
    let long_owner = "o".repeat(monotone::MAX_ID_BYTES);
    assert_eq!(p.claim(&long_owner, &c).await.unwrap().value.name, "2");
    let long_name = "n".repeat(monotone::MAX_NAME_BYTES);
    let long = Candidates::names([long_name.clone()]).unwrap();
    assert_eq!(p.claim("c", &long).await.unwrap().value.name, long_name);
    let all = p.claims().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(3));
    assert_eq!(all.value.len(), 3);
}

/// 32 tasks claim from `1..=255` at once: each gets its own name, the names
/// are exactly 1 to 32 (each claim took the first free one), and the
/// claims' tokens are exactly 1 to 32.
pub async fn concurrent_claims_get_distinct_first_free_names(store: S) {
    const N: u64 = 32;
    let c = range(1, 255);
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let p = pool(&store, "herd");
            let c = c.clone();
            tokio::spawn(async move { p.claim(&format!("w{i}"), &c).await.unwrap() })
        })
        .collect();
    let mut names = BTreeSet::new();
    let mut tokens = BTreeSet::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.fencing_token, got.value.token);
        names.insert(got.value.name.parse::<u64>().unwrap());
        tokens.insert(got.fencing_token.get());
    }
    assert_eq!(names, (1..=N).collect());
    assert_eq!(tokens, (1..=N).collect());
    let all = pool(&store, "herd").claims().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(N));
    let owners: BTreeSet<String> = all.value.iter().map(|c| c.owner.clone()).collect();
    assert_eq!(owners.len(), N as usize);
}

/// Tasks claim, release and claim again, all at once, from a pool of 8:
/// no name is ever held twice (each task checks that the name it holds is
/// its own in a fresh read), and the token ends at the number of writes.
pub async fn concurrent_claims_and_releases_lose_nothing(store: S) {
    const TASKS: usize = 6;
    const ROUNDS: usize = 5;
    let c = range(1, 8);
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let p = pool(&store, "churn");
            let c = c.clone();
            tokio::spawn(async move {
                let owner = format!("t{i}");
                for _ in 0..ROUNDS {
                    let got = p.claim(&owner, &c).await.unwrap();
                    let now = p.claims().await.unwrap();
                    let holders: Vec<&Claim> = now
                        .value
                        .iter()
                        .filter(|x| x.name == got.value.name)
                        .collect();
                    assert_eq!(holders.len(), 1);
                    assert_eq!(holders[0].owner, owner, "{:?}", now.value);
                    assert_eq!(p.release(&owner).await.unwrap().value.name, got.value.name);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let all = pool(&store, "churn").claims().await.unwrap();
    assert!(all.value.is_empty());
    assert_eq!(all.fencing_token.get(), (TASKS * ROUNDS * 2) as u64);
}

pub async fn leased_claims_show_their_lease_and_renew_without_a_write(store: S) {
    let p = pool(&store, "leased");
    let c = range(1, 5);
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    let a = p.claim_leased("a", &c, LEASE).await.unwrap();
    let lease = a.value.lease.clone().expect("a leased claim");
    assert_eq!((lease.duration, lease.renewals), (LEASE, 0));
    assert!(lease.renewed_at.expect("the claim's time") >= before);
    p.claim("b", &c).await.unwrap();
    for n in 1..=3 {
        let r = p.renew("a", "1").await.unwrap();
        let l = r.value.lease.as_ref().unwrap();
        assert_eq!((l.renewals, l.duration), (n, LEASE));
        assert_eq!(
            (r.value.name.as_str(), r.value.token),
            ("1", FencingToken(1))
        );
        assert_eq!(
            r.fencing_token,
            FencingToken(2),
            "a renewal is not a write of the pool"
        );
    }
    assert_eq!(p.claims().await.unwrap().fencing_token, FencingToken(2));
    assert_eq!(
        p.claim("c", &c).await.unwrap().fencing_token,
        FencingToken(3)
    );
    assert_eq!(
        p.claim_of("a").await.unwrap().value.lease.unwrap().renewals,
        3
    );
}

pub async fn a_claim_renewal_that_reads_sees_the_pool_as_it_left_it(store: S) {
    let p = pool(&store, "renew-read");
    let c = range(1, 5);
    assert_eq!(
        kind(p.renew_and_read("a", "1").await),
        ErrorKind::LeaseLost,
        "no pool"
    );
    p.claim_leased("a", &c, LEASE).await.unwrap();
    p.claim("b", &c).await.unwrap();
    p.claim_leased("c", &c, LEASE).await.unwrap();
    p.renew("c", "3").await.unwrap();
    for n in 1..=2 {
        let (renewed, all) = p.renew_and_read("a", "1").await.unwrap();
        assert_eq!(renewed.value.lease.as_ref().unwrap().renewals, n);
        assert_eq!(
            renewed.fencing_token,
            FencingToken(3),
            "a renewal is not a write of the pool"
        );
        assert_eq!(all, p.claims().await.unwrap(), "the read is the pool");
        assert_eq!(all.value.len(), 3);
        assert_eq!(all.value[0], renewed.value, "the renewed claim in it");
        assert_eq!(all.value[2].lease.as_ref().unwrap().renewals, 1);
    }
    assert_eq!(kind(p.renew_and_read("a", "2").await), ErrorKind::LeaseLost);
    assert_eq!(
        kind(p.renew_and_read("b", "2").await),
        ErrorKind::LeaseLost,
        "a permanent claim"
    );
    assert_eq!(p.claims().await.unwrap().fencing_token, FencingToken(3));
}

pub async fn a_claim_holder_removes_a_claim_left_unrenewed_for_a_full_lease(store: S) {
    // The living reap the dead, for claims: the holder of name 1 removes
    // the claim of name 2 that no one renews, and its name is free again.
    let p = pool(&store, "reap");
    let c = range(1, 5);
    let holder = hold(pool(&store, "reap"), "h", &c).await;
    let sent = Instant::now();
    p.claim_leased("dead", &c, LEASE).await.unwrap();
    p.claim("permanent", &c).await.unwrap();
    let all = await_reaped(&*p, |c| c.owner == "dead", sent).await;
    let left: Vec<_> = all.value.iter().map(|c| c.owner.as_str()).collect();
    assert_eq!(left, ["h", "permanent"], "its own and a permanent one stay");
    assert_eq!(all.fencing_token, FencingToken(4), "one removal, one write");
    assert_eq!(p.claim("next", &c).await.unwrap().value.name, "2");
    assert!(holder.is_held(), "{:?}", holder.status());
    holder.release().await.unwrap();
}

pub async fn renewal_of_a_claim_not_held_is_lease_lost(store: S) {
    let p = pool(&store, "lost");
    let c = range(1, 5);
    p.claim_leased("a", &c, LEASE).await.unwrap();
    p.claim("perm", &c).await.unwrap();
    let err = p.renew("a", "2").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "another name: {err}");
    assert!(
        err.to_string().contains("`a`") && err.to_string().contains("`lost`"),
        "{err}"
    );
    assert_eq!(
        kind(p.renew("b", "1").await),
        ErrorKind::LeaseLost,
        "another owner"
    );
    assert_eq!(
        kind(p.renew("perm", "2").await),
        ErrorKind::LeaseLost,
        "permanent"
    );
    p.release("a").await.unwrap();
    assert_eq!(
        kind(p.renew("a", "1").await),
        ErrorKind::LeaseLost,
        "released"
    );
    assert_eq!(p.claims().await.unwrap().fencing_token, FencingToken(3));
}

pub async fn a_leased_claim_is_removed_only_after_a_full_observed_lease(store: S) {
    let p = pool(&store, "expiry");
    let c = range(1, 5);
    p.claim_leased("a", &c, LEASE).await.unwrap();
    let b = p.claim("b", &c).await.unwrap();
    let (expired, first_seen) = watch_until_expired(&*p).await;
    assert!(
        first_seen.elapsed() >= LEASE,
        "expired {:?} after it was first seen",
        first_seen.elapsed()
    );
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (
            expired[0].item().name.as_str(),
            expired[0].item().owner.as_str()
        ),
        ("1", "a")
    );
    let token = p.expire(&expired[0]).await.unwrap();
    assert_eq!(
        token,
        Some(FencingToken(b.fencing_token.get() + 1)),
        "a write like a release"
    );
    let all = p.claims().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(3));
    assert_eq!(held(&all.value), pairs(&[("2", "b")]));
    assert_eq!(p.expire(&expired[0]).await.unwrap(), None, "gone already");
    assert_eq!(kind(p.renew("a", "1").await), ErrorKind::LeaseLost);
    // The freed name goes to the next claimer.
    assert_eq!(p.claim("c", &c).await.unwrap().value.name, "1");
}

pub async fn a_claim_removal_loses_to_a_renewal_that_came_first(store: S) {
    let p = pool(&store, "race");
    let c = range(1, 5);
    p.claim_leased("a", &c, LEASE).await.unwrap();
    let (expired, _) = watch_until_expired(&*p).await;
    p.renew("a", "1").await.unwrap();
    assert_eq!(
        p.expire(&expired[0]).await.unwrap(),
        None,
        "the renewal came first"
    );
    let all = p.claims().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(1), "nothing written");
    assert_eq!(all.value[0].lease.as_ref().unwrap().renewals, 1);
    // Released and claimed again by the same owner: another claim, which
    // a watch of the old one does not remove.
    let (expired, _) = watch_until_expired(&*p).await;
    p.release("a").await.unwrap();
    let again = p.claim_leased("a", &c, LEASE).await.unwrap();
    assert_eq!(
        (
            again.value.name.as_str(),
            again.value.lease.as_ref().unwrap().renewals
        ),
        ("1", 0)
    );
    assert_eq!(p.expire(&expired[0]).await.unwrap(), None);
    let all = p.claims().await.unwrap();
    assert_eq!((all.value.len(), all.fencing_token), (1, FencingToken(3)));
}

pub async fn a_claim_holder_keeps_its_claim_while_observers_watch(store: S) {
    let c = range(1, 5);
    let holder = hold(pool(&store, "kept"), "h", &c).await;
    assert_eq!((holder.name(), holder.owner()), ("1", "h"));
    assert!(holder.is_held());
    let observer = pool(&store, "kept");
    let renewals_seen = watch_a_held_lease(&*observer).await;
    assert_eq!(
        observer.claims().await.unwrap().fencing_token,
        FencingToken(1)
    );
    assert!(holder.is_held(), "{:?}", holder.status());
    assert!(renewals_seen >= 4);
    // Another holder of the same owner does not take it over: without
    // waiting, it is not acquired, and nothing is written.
    let err = ClaimHolder::claim(pool(&store, "kept"), "h", &c, LEASE, HolderOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("held by another holder"), "{err}");
    let all = observer.claims().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(1));
    assert_eq!(
        all.value[0].lease.as_ref().unwrap().holder,
        Some(holder.holder())
    );
    assert_eq!(holder.release().await.unwrap(), Some(FencingToken(2)));
    assert!(observer.claims().await.unwrap().value.is_empty());
    // A permanent claim cannot be held: it never expires.
    observer.claim("perm", &c).await.unwrap();
    let err = ClaimHolder::claim(
        Arc::clone(&observer),
        "perm",
        &c,
        LEASE,
        HolderOptions::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Mismatch, "{err}");
    assert!(err.to_string().contains("release it first"), "{err}");
}

/// A claim pool whose holder-side requests can be cut off (see [`Cutoff`]).
#[derive(Debug)]
pub struct CutPool {
    inner: Box<dyn ClaimPool>,
    cutoff: Cutoff,
}

impl CutPool {
    pub fn new(inner: Box<dyn ClaimPool>) -> Arc<CutPool> {
        Arc::new(CutPool {
            inner,
            cutoff: Cutoff::default(),
        })
    }
}

#[async_trait]
impl ClaimPool for CutPool {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn claim_as(&self, owner: &str, request: &ClaimRequest) -> monotone::Result<Claimed> {
        self.cutoff.request()?;
        self.inner.claim_as(owner, request).await
    }
    async fn renew(&self, owner: &str, name: &str) -> monotone::Result<Fenced<Claim>> {
        self.cutoff.renewal()?;
        self.inner.renew(owner, name).await
    }
    async fn expire(&self, expired: &Expired<Claim>) -> monotone::Result<Option<FencingToken>> {
        self.cutoff.request()?;
        self.inner.expire(expired).await
    }
    async fn release_if(
        &self,
        owner: &str,
        token: Option<FencingToken>,
    ) -> monotone::Result<Fenced<Claim>> {
        self.cutoff.request()?;
        self.inner.release_if(owner, token).await
    }
    async fn claim_of(&self, owner: &str) -> monotone::Result<Fenced<Claim>> {
        self.cutoff.request()?;
        self.inner.claim_of(owner).await
    }
    async fn claims(&self) -> monotone::Result<Fenced<Vec<Claim>>> {
        self.cutoff.request()?;
        self.inner.claims().await
    }
    async fn roster(&self) -> monotone::Result<Fenced<Roster>> {
        self.cutoff.request()?;
        self.inner.roster().await
    }
    async fn remove(&self) -> monotone::Result<Option<FencingToken>> {
        self.cutoff.request()?;
        self.inner.remove().await
    }
}

pub async fn the_claim_holder_learns_of_loss_before_anyone_removes_it(store: S) {
    let c = range(1, 5);
    let cut = CutPool::new(store.claim_pool("cut").unwrap());
    let holder = hold(cut.clone(), "h", &c).await;
    let token = holder.claimed().fencing_token;
    let remover = remove_when_allowed(pool(&store, "cut"));
    tokio::time::sleep(LEASE / 2).await;
    cut.cutoff.cut_renewals();
    let lost = holder.lost().await;
    let lost_at = Instant::now();
    assert_eq!(lost.kind(), ErrorKind::LeaseLost, "{lost}");
    assert!(lost.to_string().contains("`h`"), "{lost}");
    assert!(matches!(holder.status(), LeaseStatus::Lost(_)));
    let (removed_at, removed) = remover.await.unwrap();
    assert!(
        lost_at < removed_at,
        "the holder learned of its loss {:?} after the claim was removed",
        lost_at - removed_at
    );
    assert_eq!(removed.get(), token.get() + 1);
    assert_eq!(holder.release().await.unwrap(), None);
}

pub async fn a_waiting_claimer_gets_a_dead_holders_name_with_a_larger_token(store: S) {
    let c = range(1, 2);
    let cut = CutPool::new(store.claim_pool("dead").unwrap());
    let dead = hold(cut.clone(), "dead", &c).await;
    let alive = hold(pool(&store, "dead"), "alive", &c).await;
    let dead_claim = dead.claimed().clone();
    cut.cutoff.cut_everything();
    drop(dead);
    let p = pool(&store, "dead");
    let started = Instant::now();
    let got = wait_for_claim(&*p, "new", &c, Some(LEASE), &quick())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= LEASE,
        "took the name {:?} after it was first seen",
        started.elapsed()
    );
    assert_eq!(got.claim.value.name, dead_claim.value.name);
    assert!(got.claim.fencing_token.get() > dead_claim.fencing_token.get() + 1);
    let all = p.claims().await.unwrap();
    assert_eq!(held(&all.value), pairs(&[("1", "new"), ("2", "alive")]));
    assert!(alive.is_held(), "the live holder's claim was left alone");
    // A claimer that waits with a timeout gives up with the claim error.
    let err = wait_for_claim(&*p, "late", &c, None, &quick().with_timeout(Some(ms(200))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted, "{err}");
    assert!(err.to_string().contains("after waiting"), "{err}");
    alive.release().await.unwrap();
}

pub async fn permanent_claims_never_expire(store: S) {
    let p = pool(&store, "forever");
    let c = range(1, 1);
    p.claim("p", &c).await.unwrap();
    let err = wait_for_claim(
        &*p,
        "w",
        &c,
        Some(LEASE),
        &quick().with_timeout(Some(LEASE * 2)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    let all = p.claims().await.unwrap();
    assert_eq!(held(&all.value), pairs(&[("1", "p")]));
    assert_eq!(all.fencing_token, FencingToken(1), "nothing removed");
}

/// Tags are stored with a claim and shown by every read; they are checked
/// as a ticket's, and bad ones write nothing.
pub async fn claim_tags_round_trip_and_are_checked(store: S) {
    let p = pool(&store, "tagged");
    let addr = tags(&[("addr", "10.0.0.5"), ("zone", "eu-west-1a")]);
    let request = ClaimRequest::new(range(1, 5)).with_tags(addr.clone());
    let made = p.claim_as("zk-a", &request).await.unwrap();
    assert!(made.added);
    assert_eq!(made.claim.value.tags, addr);
    assert_eq!(p.claim_of("zk-a").await.unwrap().value.tags, addr);
    assert_eq!(p.claims().await.unwrap().value[0].tags, addr);
    let plain = p.claim("zk-b", &range(1, 5)).await.unwrap();
    assert_eq!(plain.value.tags, Tags::new());
    // The same tags again: the same claim; others: refused, nothing written.
    assert_eq!(
        p.claim_as("zk-a", &request).await.unwrap().claim,
        Fenced::new(made.claim.value.clone(), FencingToken(2))
    );
    let err = p
        .claim_as(
            "zk-a",
            &request.clone().with_tags(tags(&[("addr", "10.0.0.6")])),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Mismatch, "{err}");
    assert!(
        err.to_string()
            .contains("and this claim asks for tags {addr=10.0.0.6}"),
        "{err}"
    );
    let big = "v".repeat(monotone::MAX_TAG_VALUE_BYTES + 1);
    for bad in [
        tags(&[("", "x")]),
        tags(&[("k=v", "x")]),
        tags(&[("k", big.as_str())]),
        tags(&[("k", "a\nb")]),
        (0..=monotone::MAX_TAGS)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect(),
    ] {
        let bad = ClaimRequest::new(range(1, 5)).with_tags(bad);
        assert_eq!(
            kind(p.claim_as("zk-c", &bad).await),
            ErrorKind::InvalidInput
        );
    }
    assert_eq!(p.claims().await.unwrap().fencing_token, FencingToken(2));
}

/// A holder's claim sent again finds its own claim and writes nothing; a
/// claim without a holder that asks for the same one gets it back; another
/// holder's claim is refused as held; a holder releases its own claim only.
pub async fn a_holders_claim_sent_again_is_harmless_and_others_are_refused(store: S) {
    let p = pool(&store, "holders");
    let (h1, h2) = (HolderId::random(), HolderId::random());
    let request = ClaimRequest::new(range(1, 5))
        .with_lease(Some(LEASE))
        .held_by(h1);
    let first = p.claim_as("h", &request).await.unwrap();
    assert!(first.added);
    assert_eq!(first.claim.value.lease.as_ref().unwrap().holder, Some(h1));
    assert_eq!(
        p.claim_of("h").await.unwrap().value,
        first.claim.value,
        "stored"
    );
    let again = p.claim_as("h", &request).await.unwrap();
    assert!(!again.added);
    assert_eq!(again.claim, first.claim);
    let plain = p.claim_leased("h", &range(1, 5), LEASE).await.unwrap();
    assert_eq!(plain, first.claim);
    let err = p
        .claim_as("h", &request.clone().held_by(h2))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Held, "{err}");
    assert!(err.to_string().contains("held by another holder"), "{err}");
    let other_claim = Some(FencingToken(first.claim.value.token.get() + 1));
    assert_eq!(
        kind(p.release_if("h", other_claim).await),
        ErrorKind::NotFound
    );
    let no_lease = ClaimRequest::new(range(1, 5)).held_by(h2);
    assert_eq!(
        kind(p.claim_as("o", &no_lease).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(p.claims().await.unwrap().fencing_token, FencingToken(1));
    let released = p
        .release_if("h", Some(first.claim.value.token))
        .await
        .unwrap();
    assert_eq!(released.fencing_token, FencingToken(2));
}

/// Two claim holders of one owner: the second waits while the first holds
/// (a wait for its turn, not for a free candidate: there are plenty), and
/// gets a name, with a larger token, once the first releases; a third
/// takes over one observed lease after the second's process dies.
pub async fn two_claim_holders_of_one_owner_never_hold_at_once(store: S) {
    let c = range(1, 9);
    let first = hold(pool(&store, "one-owner"), "host-a", &c).await;
    let waiting = |p: Arc<dyn ClaimPool>| {
        let c = c.clone();
        tokio::spawn(async move {
            let h = hold_waiting(p, "host-a", &c).await;
            (h, Instant::now())
        })
    };
    let cut = CutPool::new(store.claim_pool("one-owner").unwrap());
    let second = waiting(cut.clone());
    tokio::time::sleep(LEASE * 2).await;
    assert!(
        !second.is_finished(),
        "the second holder claimed beside the first"
    );
    assert!(first.is_held());
    let first_token = first.claimed().fencing_token;
    let released = Instant::now();
    first.release().await.unwrap();
    let (second, got) = second.await.unwrap();
    assert!(got >= released);
    assert!(second.claimed().fencing_token > first_token);
    let third = waiting(pool(&store, "one-owner"));
    tokio::time::sleep(LEASE / 2).await;
    assert!(!third.is_finished());
    let taken = second.claimed().clone();
    cut.cutoff.cut_everything();
    let died = Instant::now();
    drop(second);
    let (third, got) = third.await.unwrap();
    assert!(
        got - died >= LEASE * 9 / 10 - LEASE / 3,
        "took over {:?} after the death",
        got - died
    );
    assert!(third.claimed().fencing_token.get() > taken.fencing_token.get() + 1);
    let all = pool(&store, "one-owner").claims().await.unwrap();
    assert_eq!(all.value.len(), 1);
    assert_eq!(
        all.value[0].lease.as_ref().unwrap().holder,
        Some(third.holder())
    );
    third.release().await.unwrap();
}

/// A claim holder whose claim expired and was taken (the same name) by the
/// next holder of the owner loses its lease at its next renewal at the
/// latest, and its release leaves the next holder's claim alone.
pub async fn a_lost_claim_holder_leaves_the_next_holders_claim_alone(store: S) {
    let c = range(1, 1);
    let cut = CutPool::new(store.claim_pool("lost-owner").unwrap());
    let first = hold(cut.clone(), "host-a", &c).await;
    cut.cutoff.cut_renewals();
    let second = hold_waiting(pool(&store, "lost-owner"), "host-a", &c).await;
    assert_eq!(second.name(), first.name(), "the same name, another claim");
    assert!(!first.is_held());
    assert_eq!(first.release().await.unwrap(), None, "its claim is gone");
    let all = pool(&store, "lost-owner").claims().await.unwrap();
    assert_eq!(all.value.len(), 1, "the second holder's claim stays");
    assert_eq!(
        all.value[0].lease.as_ref().unwrap().holder,
        Some(second.holder())
    );
    assert!(second.is_held());
    second.release().await.unwrap();
}

/// The request of a member of a roster of `n` from `1..=255`, tagged with
/// its address.
fn member(n: usize, addr: &str) -> ClaimRequest {
    ClaimRequest::new(range(1, 255))
        .with_tags(tags(&[("addr", addr)]))
        .with_members(Some(n))
}

/// The first claim made with `members` seals the pool: the roster reads
/// back with its size and tags; another size is refused, a non-member is
/// refused while the roster is full, both without a write; a released
/// member's name goes to the next claimer, and the size stays when all
/// leave.
pub async fn a_roster_is_sealed_at_its_size_and_full_refuses_non_members(store: S) {
    let p = pool(&store, "ensemble");
    assert_eq!(p.roster().await.unwrap().value, Roster::default());
    for (i, owner) in ["zk-a", "zk-b", "zk-c"].iter().enumerate() {
        let made = p
            .claim_as(owner, &member(3, &format!("10.0.0.{i}")))
            .await
            .unwrap();
        assert_eq!(made.claim.value.name, (i + 1).to_string());
    }
    let roster = p.roster().await.unwrap();
    assert_eq!(
        (roster.value.size, roster.fencing_token),
        (Some(3), FencingToken(3))
    );
    assert!(roster.value.is_full());
    assert_eq!(roster.value.claims, p.claims().await.unwrap().value);
    let addrs: Vec<&str> = roster
        .value
        .claims
        .iter()
        .map(|c| c.tags["addr"].as_str())
        .collect();
    assert_eq!(addrs, ["10.0.0.0", "10.0.0.1", "10.0.0.2"]);
    // A member asking again gets its claim; other sizes and non-members
    // are refused, whatever they ask, and nothing is written.
    let again = p.claim_as("zk-b", &member(3, "10.0.0.1")).await.unwrap();
    assert_eq!((again.added, again.claim.value.name.as_str()), (false, "2"));
    for (owner, request, expected) in [
        ("zk-a", member(4, "10.0.0.0"), ErrorKind::InvalidInput),
        ("zk-d", member(2, "10.0.0.3"), ErrorKind::InvalidInput),
        ("zk-d", member(3, "10.0.0.3"), ErrorKind::Exhausted),
        (
            "zk-d",
            ClaimRequest::new(range(1, 255)),
            ErrorKind::Exhausted,
        ),
    ] {
        let e = p.claim_as(owner, &request).await.unwrap_err();
        assert_eq!(e.kind(), expected, "{owner}: {e}");
        if expected == ErrorKind::Exhausted {
            assert!(e.to_string().contains("whole roster of 3 members"), "{e}");
        }
    }
    assert_eq!(p.roster().await.unwrap(), roster, "nothing written");
    // A replacement takes the released name.
    p.release("zk-b").await.unwrap();
    let d = p.claim_as("zk-d", &member(3, "10.0.0.3")).await.unwrap();
    assert_eq!(
        (d.claim.value.name.as_str(), d.claim.fencing_token),
        ("2", FencingToken(5))
    );
    let now = wait_for_roster(
        &*p,
        3,
        Some("zk-d"),
        &quick().with_timeout(Some(Duration::ZERO)),
    )
    .await
    .unwrap();
    assert_eq!(
        held(&now.value),
        pairs(&[("1", "zk-a"), ("2", "zk-d"), ("3", "zk-c")])
    );
    assert_eq!(now.value[1].tags, tags(&[("addr", "10.0.0.3")]));
    for owner in ["zk-a", "zk-c", "zk-d"] {
        p.release(owner).await.unwrap();
    }
    let empty = p.roster().await.unwrap().value;
    assert_eq!((empty.size, empty.claims.len()), (Some(3), 0));
    // Removed, the pool forgets its size.
    p.remove().await.unwrap();
    p.claim_as("zk-a", &member(2, "10.0.0.0")).await.unwrap();
    assert_eq!(p.roster().await.unwrap().value.size, Some(2));
}

/// A size is never recorded where it could not hold: an owner with a claim
/// made without one, a pool with as many claims already, a size outside 1
/// to 256 or above the candidates; nothing is written. Below the size, a
/// claim without one counts towards it.
pub async fn a_roster_size_is_refused_where_it_cannot_hold(store: S) {
    let p = pool(&store, "unsealed");
    p.claim("plain-a", &range(1, 9)).await.unwrap();
    p.claim("plain-b", &range(1, 9)).await.unwrap();
    for (owner, request) in [
        ("plain-a", member(3, "x")),
        ("new", member(2, "x")),
        ("new", member(0, "x")),
        ("new", member(MAX_CANDIDATES + 1, "x")),
        ("new", ClaimRequest::new(range(1, 2)).with_members(Some(3))),
    ] {
        let e = p.claim_as(owner, &request).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{owner}: {e}");
    }
    let roster = p.roster().await.unwrap();
    assert_eq!(
        (roster.value.size, roster.fencing_token),
        (None, FencingToken(2))
    );
    assert!(
        wait_for_roster(&*p, 2, None, &quick().with_timeout(Some(Duration::ZERO)))
            .await
            .is_ok()
    );
    assert_eq!(
        kind(wait_for_roster(&*p, 1, None, &quick().with_timeout(Some(Duration::ZERO))).await),
        ErrorKind::InvalidInput
    );
    p.claim_as("new", &member(4, "x")).await.unwrap();
    p.claim("plain-c", &range(1, 9)).await.unwrap();
    let full = p.roster().await.unwrap().value;
    assert_eq!(
        (full.size, full.claims.len(), full.is_full()),
        (Some(4), 4, true)
    );
}

/// Claimers of a roster of 8 all at once, 12 of them: 8 get the names 1 to
/// 8 and the other 4 are refused as exhausted; a waiter started before
/// them returns the roster, the same as a read after.
pub async fn concurrent_claimers_fill_a_roster_and_no_more(store: S) {
    let waiter = {
        let p = pool(&store, "herd");
        tokio::spawn(async move {
            let options = quick().with_timeout(Some(Duration::from_secs(30)));
            wait_for_roster(&*p, 8, None, &options).await
        })
    };
    let done = together(12, |i| {
        let p = pool(&store, "herd");
        async move {
            p.claim_as(&format!("w{i:02}"), &member(8, &format!("10.0.0.{i}")))
                .await
        }
    })
    .await;
    let made: BTreeSet<String> = done
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|c| c.claim.value.name.clone()))
        .collect();
    assert_eq!(made, (1..=8).map(|n| n.to_string()).collect());
    for e in done.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(e.kind(), ErrorKind::Exhausted, "{e}");
    }
    let roster = waiter.await.unwrap().unwrap();
    let read = pool(&store, "herd").roster().await.unwrap();
    assert_eq!(
        (roster.value, roster.fencing_token),
        (read.value.claims, FencingToken(8))
    );
}

/// Waiting for a roster: a member's wait ends with its claim in the roster,
/// fails as not found once its claim is gone, and times out (its claim
/// kept) while the roster is short.
pub async fn waiting_for_a_roster_times_out_or_finds_its_claim_gone(store: S) {
    let p = pool(&store, "slow");
    p.claim_as("a", &member(2, "10.0.0.1")).await.unwrap();
    let short = quick().with_timeout(Some(ms(100)));
    let e = wait_for_roster(&*p, 2, Some("a"), &short)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("holds 1 of a roster of 2"), "{e}");
    assert_eq!(
        p.claim_of("a").await.unwrap().value.name,
        "1",
        "the claim stays"
    );
    assert_eq!(
        kind(wait_for_roster(&*p, 2, Some("b"), &short).await),
        ErrorKind::NotFound
    );
    let waiting = {
        let p = pool(&store, "slow");
        tokio::spawn(async move {
            wait_for_roster(
                &*p,
                2,
                Some("a"),
                &quick().with_timeout(Some(Duration::from_secs(30))),
            )
            .await
        })
    };
    tokio::time::sleep(ms(30)).await;
    p.claim_as("b", &member(2, "10.0.0.2")).await.unwrap();
    let roster = waiting.await.unwrap().unwrap();
    assert_eq!(held(&roster.value), pairs(&[("1", "a"), ("2", "b")]));
}
