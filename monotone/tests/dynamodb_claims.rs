//! Claim pools on DynamoDB, beyond the conformance suite: the item layout,
//! the requests per operation, a claimer that loses a race and waits in the
//! pool (served by itself, or by another claimer's write), a waiter that
//! finds every candidate taken, unreadable pools, and a full pool of the
//! longest owners and names in one item.
//!
//! Runs against the local server of `scripts/test.sh`; without it every
//! test says it skips and passes, except under CI.
#![cfg(feature = "aws")]

mod conformance;
mod dynamodb_support;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use monotone::dynamodb::{Backoff, DynamoDbConfig, DynamoDbStore};
use monotone::{Candidates, ClaimRequest, ErrorKind, FencingToken, Store};

use conformance::lease::watch_until_expired;
use dynamodb_support::*;

fn range(start: u64, end: u64) -> Candidates {
    Candidates::range(start..=end).unwrap()
}

/// Claim for `owner` from `candidates` in pool `id` through `store`,
/// elsewhere, returning the name.
fn claim_elsewhere(
    store: &DynamoDbStore,
    id: &str,
    owner: &str,
    candidates: &Candidates,
) -> String {
    elsewhere(async {
        store
            .claim_pool(id)
            .unwrap()
            .claim(owner, candidates)
            .await
            .unwrap()
            .value
            .name
    })
}

/// A fresh table, a store on it (`other`), and a pool `p` in which `first`
/// holds the first of `candidates`; `None` (a skip) without a server.
async fn first_claimed(tag: &str, candidates: &Candidates) -> Option<(Table, DynamoDbStore)> {
    let table = Table::create(tag).await?;
    let (other, _) = table.store().await;
    let p = other.claim_pool("p").unwrap();
    p.claim("first", candidates).await.unwrap();
    Some((table, other))
}

/// A store on `table` whose `UpdateItem`s meet `intruder`, with `config`
/// (by default the table's), counting its requests.
async fn intruded(
    table: &Table,
    config: Option<DynamoDbConfig>,
    intruder: IntrudeOnWrite,
) -> (DynamoDbStore, Requests) {
    let config = config.unwrap_or_else(|| DynamoDbConfig::new(&table.name));
    intruded_store(&table.endpoint, config, Some(intruder)).await
}

/// A pool `p` on a fresh table where `first` holds the first of
/// `candidates`, and a store on that table before whose n-th `UpdateItem`
/// another claimer claims, for each (n, owner, the name it must get) of
/// `races`. Returns that store, its requests and the table; `None` (a
/// skip) without a server.
async fn raced(
    tag: &str,
    candidates: &Candidates,
    races: &[(u64, &'static str, &'static str)],
) -> Option<(DynamoDbStore, Requests, Table)> {
    let (table, other) = first_claimed(tag, candidates).await?;
    let mut intruder = IntrudeOnWrite::new();
    for &(nth, owner, name) in races {
        let (other, c) = (other.clone(), candidates.clone());
        intruder = intruder.on(nth, move || {
            assert_eq!(claim_elsewhere(&other, "p", owner, &c), name)
        });
    }
    let (store, requests) = intruded(&table, None, intruder).await;
    Some((store, requests, table))
}

/// Write `who` into pool `p`'s `Waiting` with `entry`, or take it out
/// (`None`), behind the store's back: as a claimer that lost a race waits
/// in the pool, and leaves when it gives up.
async fn set_waiting(table: &Table, who: &str, entry: Option<AttributeValue>) {
    let update = table
        .raw
        .update_item()
        .table_name(&table.name)
        .key("ID", s("p"))
        .expression_attribute_names("#w", "Waiting")
        .expression_attribute_names("#me", who);
    let update = match entry {
        Some(entry) => update
            .update_expression("SET #w.#me = :entry")
            .expression_attribute_values(":entry", entry),
        None => update.update_expression("REMOVE #w.#me"),
    };
    update.send().await.unwrap();
}

/// The update expressions of the `UpdateItem`s among `sent`, in order.
fn updates(sent: &[(String, String)]) -> Vec<String> {
    sent.iter()
        .filter(|(op, _)| op == "UpdateItem")
        .map(|(_, body)| {
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            body["UpdateExpression"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_pool_items_and_requests_per_operation() {
    let table = or_skip!(Table::create("claims").await);
    let (store, requests) = table.store().await;
    let p = store.claim_pool("zk").unwrap();
    let c = range(1, 255);

    p.claim("zk-a", &c).await.unwrap();
    assert_eq!(
        requests.take(),
        ["GetItem", "UpdateItem"],
        "claim in a new pool"
    );
    let b = p
        .claim_leased("zk-b", &c, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(requests.take(), ["GetItem", "UpdateItem"], "claim");
    p.claim("zk-a", &c).await.unwrap();
    assert_eq!(requests.take(), ["GetItem"], "claim again");
    let one = Candidates::names(["1"]).unwrap();
    assert_eq!(
        p.claim("zk-x", &one).await.unwrap_err().kind(),
        ErrorKind::Exhausted
    );
    assert_eq!(requests.take(), ["GetItem"], "exhausted");
    p.claims().await.unwrap();
    assert_eq!(requests.take(), ["GetItem"], "list");
    p.claim_of("zk-b").await.unwrap();
    assert_eq!(requests.take(), ["GetItem"], "claim of an owner");
    p.renew("zk-b", "2").await.unwrap();
    assert_eq!(requests.take(), ["UpdateItem"], "renew");

    // The item, as documented.
    let it = table.item("zk").await.unwrap();
    assert_eq!(it["Type"], s("CLAIMS"));
    assert_eq!(it["Version"], n(2));
    assert_eq!(it["Waiting"], m(&[]), "nobody waiting");
    let AttributeValue::M(claims) = &it["Claims"] else {
        panic!("Claims is a map: {it:?}")
    };
    assert_eq!(
        claims["1"],
        m(&[("owner", s("zk-a")), ("index", n(0)), ("token", n(1))])
    );
    let AttributeValue::M(leased) = &claims["2"] else {
        panic!("a claim is a map")
    };
    assert_eq!(
        (
            &leased["owner"],
            &leased["index"],
            &leased["token"],
            &leased["lease_ms"],
            &leased["renewals"]
        ),
        (&s("zk-b"), &n(1), &n(2), &n(15_000), &n(1))
    );
    let lease = b.value.lease.unwrap();
    assert!(
        matches!(&leased["renewed_at_ms"], AttributeValue::N(_)),
        "{leased:?}"
    );
    assert!(lease.renewed_at.is_some());

    let released = p.release("zk-a").await.unwrap();
    assert_eq!(released.fencing_token, FencingToken(3));
    assert_eq!(requests.take(), ["GetItem", "UpdateItem"], "release");
    assert_eq!(
        p.release("zk-a").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(requests.take(), ["GetItem"], "release of nothing");

    // An expiry needs no read: it is conditional on the claim as watched.
    let short = store.claim_pool("short").unwrap();
    short
        .claim_leased("gone", &c, Duration::from_millis(100))
        .await
        .unwrap();
    let (found, _) = watch_until_expired(&*short).await;
    let expired = found.into_iter().next().unwrap();
    requests.take();
    assert_eq!(short.expire(&expired).await.unwrap(), Some(FencingToken(2)));
    assert_eq!(requests.take(), ["UpdateItem"], "expire");
    assert_eq!(short.expire(&expired).await.unwrap(), None);
    assert_eq!(requests.take(), ["UpdateItem"], "expire of what is gone");

    assert_eq!(p.remove().await.unwrap(), Some(FencingToken(3)));
    assert_eq!(requests.take(), ["DeleteItem"], "remove");
    assert_eq!(table.item("zk").await, None);
    // A counter operation on a pool: one request, nothing written.
    short.claim("x", &c).await.unwrap();
    requests.take();
    let err = store.counter("short").unwrap().next().await.unwrap_err();
    assert_eq!(err.to_string(), "`short` is a claim pool, not a counter");
    assert_eq!(requests.take(), ["UpdateItem"]);
}

/// Lost on purpose: another claimer takes the name between this claimer's
/// read and its write. It waits in the pool (an `UpdateItem` that returns the
/// pool) and claims on that at once: no backoff, no other read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimer_that_loses_a_race_waits_in_the_pool_and_claims() {
    let c = range(1, 9);
    let races = [(1, "intruder", "2")];
    let (store, requests, table) = or_skip!(raced("claim-race", &c, &races).await);
    let p = store.claim_pool("p").unwrap();
    let got = p.claim_with("me", &c, None).await.unwrap();
    assert!(got.added);
    assert_eq!(
        (got.claim.value.name.as_str(), got.claim.fencing_token),
        ("3", FencingToken(3))
    );
    let sent = requests.take_with_bodies();
    let ops: Vec<&str> = sent.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(ops, ["GetItem", "UpdateItem", "UpdateItem", "UpdateItem"]);
    let u = updates(&sent);
    assert!(
        u[0].starts_with("SET #version = :version, #claims.#n0 = :c0"),
        "{u:?}"
    );
    assert_eq!(u[1], "SET #waiting.#me = :waiter", "waits in the pool");
    assert_eq!(
        u[2],
        "SET #version = :version, #claims.#n0 = :c0 REMOVE #waiting.#w0"
    );
    let it = table.item("p").await.unwrap();
    assert_eq!(it["Waiting"], m(&[]), "no longer waiting");
    assert_eq!(it["Version"], n(3));
}

/// Served by another claimer: this claimer lost a race and waits in the
/// pool; before its own write goes out, a third claimer writes and makes
/// this claimer's claim too. Its own write then fails, and it finds its
/// claim in the pool the failure returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claimer_is_served_by_the_next_writer() {
    let c = range(1, 9);
    // Before the waiting claimer's own claim (its third write), another
    // writer, who serves itself first, then the waiting claimer.
    let races = [(1, "intruder", "2"), (3, "helper", "3")];
    let (store, requests, table) = or_skip!(raced("claim-served", &c, &races).await);
    let lease = Duration::from_secs(30);
    let p = store.claim_pool("p").unwrap();
    let got = p.claim_with("me", &c, Some(lease)).await.unwrap();
    assert!(got.added, "a claim made for this call");
    assert!(got.written_at.is_some());
    assert_eq!(
        (got.claim.value.name.as_str(), got.claim.fencing_token),
        ("4", FencingToken(4))
    );
    assert_eq!(got.claim.value.token, FencingToken(4));
    assert_eq!(
        got.claim.value.lease.as_ref().map(|l| l.duration),
        Some(lease),
        "as asked"
    );
    let ops = requests.take();
    assert_eq!(ops, ["GetItem", "UpdateItem", "UpdateItem", "UpdateItem"]);
    let it = table.item("p").await.unwrap();
    assert_eq!(it["Waiting"], m(&[]));
    assert_eq!(it["Version"], n(4), "one version per claim");
    let all = store.claim_pool("p").unwrap().claims().await.unwrap();
    let held: Vec<(&str, &str, u64)> = all
        .value
        .iter()
        .map(|c| (c.name.as_str(), c.owner.as_str(), c.token.get()))
        .collect();
    assert_eq!(
        held,
        [
            ("1", "first", 1),
            ("2", "intruder", 2),
            ("3", "helper", 3),
            ("4", "me", 4)
        ]
    );
}

/// A waiting claimer whose candidates are all taken by the time it writes
/// leaves the pool's `Waiting` and reports the pool exhausted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claimer_that_finds_nothing_free_leaves() {
    let c = range(1, 2);
    let races = [(1, "intruder", "2")];
    let (store, requests, table) = or_skip!(raced("claim-full", &c, &races).await);
    let p = store.claim_pool("p").unwrap();
    let err = p.claim("me", &c).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted, "{err}");
    let sent = requests.take_with_bodies();
    let u = updates(&sent);
    assert_eq!(u.len(), 3, "{u:?}");
    assert_eq!(u[1], "SET #waiting.#me = :waiter");
    assert_eq!(u[2], "REMOVE #waiting.#me");
    let it = table.item("p").await.unwrap();
    assert_eq!(it["Waiting"], m(&[]));
    assert_eq!(it["Version"], n(2));
}

/// A waiting claimer that gives up (its retry budget is spent) leaves
/// `Waiting` first, so that no later writer makes a claim it no longer
/// waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claimer_that_gives_up_leaves() {
    let c = range(1, 9);
    let (table, other) = or_skip!(first_claimed("claim-give-up", &c).await);
    let (a, b, c1) = (other.clone(), other.clone(), c.clone());
    let intruder = IntrudeOnWrite::new()
        .on(1, move || {
            assert_eq!(claim_elsewhere(&a, "p", "intruder", &c1), "2")
        })
        // Before its own claim: a release, which moves the version on and
        // serves nobody.
        .on(3, move || {
            elsewhere(b.claim_pool("p").unwrap().release("first")).unwrap();
        });
    let config = DynamoDbConfig::new(&table.name).with_backoff(Backoff::new().with_max_attempts(1));
    let (store, requests) = intruded(&table, Some(config), intruder).await;
    let p = store.claim_pool("p").unwrap();
    let err = p.claim("me", &c).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let u = updates(&requests.take_with_bodies());
    assert_eq!(u.len(), 4, "{u:?}");
    assert_eq!(u[1], "SET #waiting.#me = :waiter");
    assert_eq!(u[3], "REMOVE #waiting.#me", "left the pool");
    let it = table.item("p").await.unwrap();
    assert_eq!(it["Waiting"], m(&[]));
    // The next claimer serves nobody: `me` claims nothing behind its back.
    let next = other.claim_pool("p").unwrap();
    next.claim("next", &c).await.unwrap();
    assert_eq!(
        p.claim_of("me").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// Waiting claimers of other candidates are left waiting; those that hold a
/// claim already (they claimed from elsewhere meanwhile) are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_serve_only_waiters_of_the_same_candidates() {
    let table = or_skip!(Table::create("claim-mixed").await);
    let (store, _) = table.store().await;
    let c = range(1, 9);
    let p = store.claim_pool("p").unwrap();
    p.claim("holder", &c).await.unwrap();
    let mut it = table.item("p").await.unwrap();
    it.insert(
        "Waiting".into(),
        m(&[
            (
                "same",
                m(&[("candidates", s("1..=9")), ("lease_ms", n(5000))]),
            ),
            ("else", m(&[("candidates", s("1..=3"))])),
            ("holder", m(&[("candidates", s("1..=9"))])),
        ]),
    );
    table.put(it).await;
    let me = p.claim("me", &c).await.unwrap();
    assert_eq!(
        (me.value.name.as_str(), me.fencing_token),
        ("2", FencingToken(2))
    );
    let same = p.claim_of("same").await.unwrap().value;
    assert_eq!((same.name.as_str(), same.token), ("3", FencingToken(3)));
    assert_eq!(same.lease.map(|l| l.duration), Some(Duration::from_secs(5)));
    let it = table.item("p").await.unwrap();
    assert_eq!(
        it["Waiting"],
        m(&[("else", m(&[("candidates", s("1..=3"))]))])
    );
    assert_eq!(it["Version"], n(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_claim_pools_are_reported_and_never_written_over() {
    let table = or_skip!(Table::create("claim-corrupt").await);
    let (store, _) = table.store().await;
    let c = range(1, 3);
    // A claim of name index 0 at token 1, with `extra` attributes.
    let claim = |owner: &str, extra: &[(&str, AttributeValue)]| {
        let mut claim = item(&[("owner", s(owner)), ("index", n(0)), ("token", n(1))]);
        claim.extend(item(extra));
        AttributeValue::M(claim)
    };
    let pool = |claims: AttributeValue, waiting: Option<AttributeValue>| -> Item {
        let mut it = item(&[
            ("ID", s("bad")),
            ("Type", s("CLAIMS")),
            ("Version", n(2)),
            ("Claims", claims),
        ]);
        if let Some(w) = waiting {
            it.insert("Waiting".into(), w);
        }
        it
    };
    for (it, says) in [
        (
            pool(AttributeValue::L(vec![]), Some(m(&[]))),
            "`Claims` is a list (L)",
        ),
        (
            pool(
                m(&[("1", m(&[("index", n(0)), ("token", n(1))]))]),
                Some(m(&[])),
            ),
            "lacks the string `owner`",
        ),
        (
            pool(
                m(&[("1", claim("a", &[])), ("2", claim("a", &[]))]),
                Some(m(&[])),
            ),
            "gives owner `a` two names",
        ),
        (
            pool(m(&[("1", claim("a", &[("lease_ms", n(0))]))]), Some(m(&[]))),
            "a lease of 0 ms",
        ),
        (
            pool(
                m(&[("1", claim("a", &[("lease_ms", n(500))]))]),
                Some(m(&[])),
            ),
            "lacks the number `renewals`",
        ),
        (pool(m(&[]), None), "`Waiting` is missing"),
        (
            pool(m(&[]), Some(m(&[("w", m(&[]))]))),
            "lacks the string `candidates`",
        ),
    ] {
        table.put(it.clone()).await;
        let p = store.claim_pool("bad").unwrap();
        for err in [
            p.claims().await.unwrap_err(),
            p.claim("z", &c).await.unwrap_err(),
            p.release("a").await.unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            assert!(err.to_string().contains(says), "{says}: {err}");
            assert!(err.to_string().contains("`bad`"), "{err}");
        }
        assert_eq!(table.item("bad").await.unwrap(), it, "left as it was");
        // Still removable, so that it can be cleared.
        assert_eq!(p.remove().await.unwrap(), Some(FencingToken(2)));
    }
}

/// 255 claims of owners of 1024 bytes and names of 256 bytes, written
/// behind the store's back, then the 256th claimed through the store: the
/// full pool fits one item, and then the pool takes no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_of_the_longest_owners_and_names_fits_one_item() {
    let table = or_skip!(Table::create("claim-full-item").await);
    let (store, _) = table.store().await;
    let name = |i: usize| format!("{i:0>256}");
    let owner = |i: usize| format!("{i:0>1024}");
    let names: Vec<String> = (0..monotone::MAX_CANDIDATES).map(name).collect();
    let c = Candidates::names(names.clone()).unwrap();
    let claims: Item = (0..monotone::MAX_CANDIDATES - 1)
        .map(|i| {
            let claim = m(&[
                ("owner", s(&owner(i))),
                ("index", n(i as u64)),
                ("token", n(i as u64 + 1)),
                ("lease_ms", n(15_000)),
                ("renewals", n(123_456)),
                ("renewed_at_ms", n(1_790_000_000_000)),
            ]);
            (name(i), claim)
        })
        .collect();
    table
        .put(item(&[
            ("ID", s("full")),
            ("Type", s("CLAIMS")),
            ("Version", n(255)),
            ("Claims", AttributeValue::M(claims)),
            ("Waiting", m(&[])),
        ]))
        .await;
    let p = store.claim_pool("full").unwrap();
    let last = p
        .claim_leased(&owner(255), &c, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(
        (last.value.name.as_str(), last.fencing_token),
        (names[255].as_str(), FencingToken(256))
    );
    assert_eq!(p.claims().await.unwrap().value.len(), 256);
    let err = p
        .claim("one-more", &Candidates::names(["x"]).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted, "{err}");
    p.renew(&owner(255), &names[255]).await.unwrap();
    assert_eq!(
        p.release(&owner(3)).await.unwrap().fencing_token,
        FencingToken(257)
    );
}

/// A waiting claimer that leaves `Waiting` after a writer read the pool (it
/// gave up) is not given a claim by that writer: waiting and leaving change
/// no version, so the writer's condition names each claimer it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_serves_no_claimer_that_left_after_its_read() {
    let c = range(1, 9);
    let (table, _) = or_skip!(first_claimed("claim-left", &c).await);
    // `gone` waits in the pool, as a claimer that lost a race does.
    let entry = m(&[("candidates", s("1..=9"))]);
    set_waiting(&table, "gone", Some(entry)).await;
    // After `me` read the pool, and before it writes, `gone` leaves.
    let behind = table.clone();
    let intruder = IntrudeOnWrite::new().on(1, move || {
        elsewhere(set_waiting(&behind, "gone", None));
    });
    let (store, _) = intruded(&table, None, intruder).await;
    let p = store.claim_pool("p").unwrap();
    let mine = p.claim("me", &c).await.unwrap();
    assert_eq!(mine.value.name, "2");
    let pool = store.claim_pool("p").unwrap();
    assert_eq!(
        pool.claim_of("gone").await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "a claimer that left got a claim behind its back"
    );
    let all = pool.claims().await.unwrap();
    assert_eq!(all.value.len(), 2);
    assert_eq!(all.fencing_token, FencingToken(2));
}

/// A holder's claim whose write was applied but whose answer was lost, as
/// an intruder making the very same request first stands for: the write
/// that follows fails its condition, and the pool it returns holds the
/// holder's own claim, which comes back without another write. The item
/// stores the claim's tags and holder as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holders_claim_applied_but_unanswered_is_found_not_made_twice() {
    let c = range(1, 9);
    let (table, other) = or_skip!(first_claimed("claim-resent", &c).await);
    let request = monotone::ClaimRequest::new(c.clone())
        .with_tags(conformance::tags(&[("addr", "10.0.0.5")]))
        .with_lease(Some(Duration::from_secs(30)))
        .held_by(monotone::HolderId::random());
    let sent = request.clone();
    let intruder = IntrudeOnWrite::new().on(1, move || {
        let made = elsewhere(other.claim_pool("p").unwrap().claim_as("me", &sent)).unwrap();
        assert!(made.added);
    });
    let (store, requests) = intruded(&table, None, intruder).await;
    let again = store
        .claim_pool("p")
        .unwrap()
        .claim_as("me", &request)
        .await
        .unwrap();
    assert!(!again.added, "found, not made");
    assert_eq!(
        (again.claim.value.name.as_str(), again.claim.fencing_token),
        ("2", FencingToken(2))
    );
    assert_eq!(
        requests.take(),
        ["GetItem", "UpdateItem"],
        "no second write"
    );
    let item = table.item("p").await.unwrap();
    let AttributeValue::M(claims) = &item["Claims"] else {
        panic!("{item:?}")
    };
    let AttributeValue::M(mine) = &claims["2"] else {
        panic!("{claims:?}")
    };
    assert_eq!(mine["holder"], n(request.holder.unwrap().get()));
    assert_eq!(mine["tags"], m(&[("addr", s("10.0.0.5"))]));
    let AttributeValue::M(first) = &claims["1"] else {
        panic!("{claims:?}")
    };
    assert!(
        !first.contains_key("tags") && !first.contains_key("holder"),
        "{first:?}"
    );
}

/// A roster size is one attribute of the one pool item, `Members` (N),
/// written by the write that makes the first claim asking for it; a
/// claim refused because the roster is full costs the read alone; a
/// waiting claimer's entry carries the size it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_size_is_an_attribute_of_the_pool_item() {
    let table = or_skip!(Table::create("claims-roster").await);
    let (store, requests) = table.store().await;
    let p = store.claim_pool("p").unwrap();
    let member = ClaimRequest::new(range(1, 255)).with_members(Some(2));
    p.claim("plain", &range(1, 255)).await.unwrap();
    assert!(!table.item("p").await.unwrap().contains_key("Members"));
    requests.take();
    p.claim_as("sealer", &member).await.unwrap();
    assert_eq!(requests.take(), ["GetItem", "UpdateItem"]);
    let it = table.item("p").await.unwrap();
    assert_eq!((&it["Members"], &it["Version"]), (&n(2), &n(2)));
    let e = p.claim_as("late", &member).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exhausted, "{e}");
    assert_eq!(requests.take(), ["GetItem"], "refused after the read alone");
    assert_eq!(table.item("p").await.unwrap(), it, "nothing written");

    // Claimers waiting in a pool are served by the roster's rules: one that
    // asked for the pool's size gets its claim, one that asked for another
    // stays waiting (it finds out for itself).
    let (table, other) = or_skip!(first_claimed("claim-roster-wait", &range(1, 9)).await);
    let waiter = |members: u64| {
        AttributeValue::M(std::collections::HashMap::from([
            ("candidates".to_owned(), s("1..=9")),
            ("members".to_owned(), n(members)),
        ]))
    };
    set_waiting(&table, "w-same", Some(waiter(3))).await;
    set_waiting(&table, "x-other", Some(waiter(4))).await;
    let p = other.claim_pool("p").unwrap();
    let asked = ClaimRequest::new(range(1, 9)).with_members(Some(3));
    assert_eq!(
        p.claim_as("me", &asked).await.unwrap().claim.value.name,
        "2"
    );
    assert_eq!(p.claim_of("w-same").await.unwrap().value.name, "3");
    let it = table.item("p").await.unwrap();
    assert_eq!((&it["Members"], &it["Version"]), (&n(3), &n(3)));
    let AttributeValue::M(waiting) = &it["Waiting"] else {
        panic!("{it:?}")
    };
    assert_eq!(waiting.keys().collect::<Vec<_>>(), ["x-other"]);
}
