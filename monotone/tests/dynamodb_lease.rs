//! Leases on DynamoDB beyond the conformance suite: the stored layout and
//! monotone 0.4 reading and rewriting a leased queue, requests per renewal
//! and expiry, renewals that never make a join retry, an expiry whose read
//! went stale, and corrupt leases.
#![cfg(feature = "aws")]

mod conformance;
mod dynamodb_support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use monotone::{ErrorKind, FencingToken, Queue, Store, Tags};

use conformance::lease::{hold, watch_until_expired};
use dynamodb_support::*;

const LEASE: Duration = Duration::from_millis(400);

/// Watch `q` until a ticket expires; that observation.
async fn expired_ticket(q: &dyn Queue) -> monotone::Expired {
    watch_until_expired(q).await.0.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_queue_keeps_monotone_0_4s_entries_and_0_4s_rewrite_makes_them_permanent() {
    let table = or_skip!(Table::create("lease-0-4").await);
    let (store, _) = table.store().await;
    let q: Arc<dyn Queue> = Arc::from(store.queue("q").unwrap());
    q.join("perm", Tags::new()).await.unwrap();
    let holder = hold(Arc::clone(&q), "leased", LEASE).await;
    let it = table.item("q").await.unwrap();
    // Items: exactly the JSON entries monotone 0.4 writes and parses.
    let mut entries = match &it["Items"] {
        AttributeValue::Ss(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    entries.sort();
    assert_eq!(
        entries,
        [
            r#"{"process_id":"leased","counter":2,"tags":{}}"#,
            r#"{"process_id":"perm","counter":1,"tags":{}}"#
        ]
    );
    // Leases: by counter, the documented fields.
    let AttributeValue::M(leases) = &it["Leases"] else {
        panic!("Leases is a map: {:?}", it["Leases"])
    };
    assert_eq!(leases.keys().collect::<Vec<_>>(), ["2"]);
    let AttributeValue::M(lease) = &leases["2"] else {
        panic!()
    };
    assert_eq!(lease["process_id"], AttributeValue::S("leased".into()));
    assert_eq!(lease["lease_ms"], n(400));
    // The holder's id: a number of the lease map.
    assert_eq!(lease["holder"], n(holder.holder().get()));
    let mut names: Vec<_> = lease.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "holder",
            "lease_ms",
            "process_id",
            "renewals",
            "renewed_at_ms"
        ]
    );
    assert_eq!(number(&it, "Version"), 2);

    // monotone 0.4 joins: it reads ID, Type, Version, Value and Items and
    // puts back the whole item, conditional on the version it read.
    let mut as_0_4: Item = it
        .iter()
        .filter(|(k, _)| ["ID", "Type", "Version", "Value", "Items"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    as_0_4.insert("Value".into(), n(3));
    if let Some(AttributeValue::Ss(v)) = as_0_4.get_mut("Items") {
        v.push(r#"{"process_id":"old","counter":3}"#.into());
    }
    table.write_as_0_4(as_0_4).await;
    // Every ticket is still there, and permanent now.
    let all = q.tickets().await.unwrap();
    let seen: Vec<_> = all
        .value
        .iter()
        .map(|t| (t.process_id.as_str(), t.lease.is_some()))
        .collect();
    assert_eq!(seen, [("perm", false), ("leased", false), ("old", false)]);
    // The holder finds out at its next renewal, and leaves.
    let lost = holder.lost().await;
    assert_eq!(lost.kind(), ErrorKind::LeaseLost);
    assert!(lost.to_string().contains("no lease"), "{lost}");
    assert_eq!(holder.release().await.unwrap(), Some(FencingToken(4)));
    let all = q.tickets().await.unwrap();
    assert_eq!(all.value.len(), 2);
    // A leased join after that builds the lease map again.
    let again = q.join_leased("new", Tags::new(), LEASE).await.unwrap();
    assert_eq!(again.value.counter, 4);
    assert!(again.value.lease.is_some());
    assert!(q.ticket("new").await.unwrap().value.lease.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_lease_operation() {
    let table = or_skip!(Table::create("lease-requests").await);
    let (store, requests) = table.store().await;
    let q = store.queue("q").unwrap();
    let a = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    assert_eq!(
        requests.take(),
        ["GetItem", "UpdateItem"],
        "first leased join"
    );
    q.join("b", Tags::new()).await.unwrap();
    assert_eq!(requests.take(), ["GetItem", "UpdateItem"], "join");
    q.renew("a", a.value.counter).await.unwrap();
    assert_eq!(requests.take(), ["UpdateItem"], "renewal");
    let expired = expired_ticket(&*q).await;
    requests.take();
    assert_eq!(q.expire(&expired).await.unwrap().map(|t| t.get()), Some(3));
    assert_eq!(requests.take(), ["GetItem", "UpdateItem"], "expiry");
    q.join_leased("c", Tags::new(), LEASE).await.unwrap();
    assert_eq!(requests.take(), ["GetItem", "UpdateItem"], "leased join");
    assert_eq!(q.leave("c").await.unwrap(), FencingToken(5));
    assert_eq!(
        requests.take(),
        ["GetItem", "UpdateItem"],
        "leave of a leased ticket"
    );
}

/// 16 leased members renew as fast as they can while another client joins
/// 20 times: every join still costs exactly one read and one write, because
/// a renewal changes nothing a join's condition depends on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewals_never_make_a_join_retry() {
    let table = or_skip!(Table::create("lease-renewing").await);
    let (store, requests) = table.store().await;
    let renewing = Arc::new(store.clone());
    let q = renewing.queue("q").unwrap();
    let mut members = Vec::new();
    for i in 0..16 {
        let t = q
            .join_leased(&format!("m{i}"), Tags::new(), LEASE)
            .await
            .unwrap();
        members.push((format!("m{i}"), t.value.counter));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let stop = Arc::clone(&stop);
        let q = renewing.queue("q").unwrap();
        tokio::spawn(async move {
            let mut renewals = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for (pid, counter) in &members {
                    q.renew(pid, *counter).await.unwrap();
                    renewals += 1;
                }
            }
            renewals
        })
    };
    // Another client, counting only its own requests.
    let (joiner, joins) = table.store().await;
    requests.take();
    let jq = joiner.queue("q").unwrap();
    for i in 0..20 {
        let t = jq.join(&format!("j{i}"), Tags::new()).await.unwrap();
        assert_eq!(t.fencing_token.get(), 17 + i);
        assert_eq!(joins.take(), ["GetItem", "UpdateItem"], "join {i}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let renewals = renewer.await.unwrap();
    assert!(renewals >= 16, "renewals ran meanwhile: {renewals}");
    println!("{renewals} renewals while 20 joins each took 2 requests");
}

/// The store reads the queue, finds the ticket as the observer saw it, and
/// writes: a renewal that landed in between (here: a stale read, injected)
/// must still win, through the write's condition on the renewal count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_on_a_stale_read_loses_to_the_renewal() {
    let table = or_skip!(Table::create("lease-stale").await);
    let (store, _) = table.store().await;
    let q = store.queue("q").unwrap();
    let a = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    let expired = expired_ticket(&*q).await;
    let before = table.item("q").await.unwrap();
    q.renew("a", a.value.counter).await.unwrap();
    // The next read answers with the item as it was before the renewal.
    let stale = format!(
        r#"{{"Item":{{"ID":{{"S":"q"}},"Type":{{"S":"QUEUE"}},"Version":{{"N":"1"}},"Value":{{"N":"1"}},
           "Items":{{"SS":[{}]}},
           "Leases":{{"M":{{"1":{{"M":{{"process_id":{{"S":"a"}},"lease_ms":{{"N":"400"}},
           "renewals":{{"N":"0"}},"renewed_at_ms":{{"N":"0"}}}}}}}}}}}}}}"#,
        serde_json::to_string(r#"{"process_id":"a","counter":1,"tags":{}}"#).unwrap()
    );
    assert_eq!(number(&before, "Version"), 1);
    table.answer("GetItem", &stale, 1).await;
    assert_eq!(q.expire(&expired).await.unwrap(), None);
    let all = q.tickets().await.unwrap();
    assert_eq!(all.value.len(), 1, "the renewed ticket stays");
    assert_eq!(all.fencing_token, FencingToken(1));
    assert_eq!(all.value[0].lease.as_ref().unwrap().renewals, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_leases_are_reported_and_never_written_over() {
    let table = or_skip!(Table::create("lease-corrupt").await);
    let (store, _) = table.store().await;
    let entry = ss(&[r#"{"process_id":"a","counter":1,"tags":{}}"#]);
    let lease = |process: &str, ms: &str| {
        m(&[(
            "1",
            m(&[
                ("process_id", s(process)),
                ("lease_ms", AttributeValue::N(ms.into())),
                ("renewals", n(0)),
                ("renewed_at_ms", n(0)),
            ]),
        )])
    };
    for (why, leases) in [
        ("not a map (M)", s("x")),
        ("to process `b`", lease("b", "400")),
        ("0 ms", lease("a", "0")),
        ("not a whole number", lease("a", "1.5")),
    ] {
        let it = item(&[
            ("ID", s("q")),
            ("Type", s("QUEUE")),
            ("Version", n(1)),
            ("Value", n(1)),
            ("Items", entry.clone()),
            ("Leases", leases),
        ]);
        table.put(it.clone()).await;
        let q = store.queue("q").unwrap();
        let err = q.tickets().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{why}: {err}");
        assert!(err.to_string().contains("`Leases`"), "{err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
        assert_eq!(
            q.join("c", Tags::new()).await.unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(q.leave("a").await.unwrap_err().kind(), ErrorKind::Corrupt);
        assert_eq!(table.item("q").await.unwrap(), it, "{why}: untouched");
    }
}

/// A holder's join whose write was applied but whose answer was lost, as
/// an intruder making the very same request first stands for: the write
/// that follows fails its condition, and the queue it returns holds the
/// holder's own ticket, which comes back without another write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holders_join_applied_but_unanswered_is_found_not_made_twice() {
    let table = or_skip!(Table::create("join-resent").await);
    let (other, _) = table.store().await;
    other
        .queue("q")
        .unwrap()
        .join("first", Tags::new())
        .await
        .unwrap();
    let request = monotone::JoinRequest::new()
        .with_lease(Some(LEASE))
        .held_by(monotone::HolderId::random());
    let sent = request.clone();
    let intruder = IntrudeOnWrite::new().on(1, move || {
        let joined = elsewhere(other.queue("q").unwrap().join_as("me", &sent)).unwrap();
        assert!(joined.added);
    });
    let config = monotone::dynamodb::DynamoDbConfig::new(&table.name);
    let (store, requests) = intruded_store(&table.endpoint, config, Some(intruder)).await;
    let again = store
        .queue("q")
        .unwrap()
        .join_as("me", &request)
        .await
        .unwrap();
    assert!(!again.added, "found, not made");
    assert_eq!(
        (again.ticket.value.counter, again.ticket.fencing_token),
        (2, FencingToken(2))
    );
    assert_eq!(
        requests.take(),
        ["GetItem", "UpdateItem"],
        "no second write"
    );
    // Another holder's request is refused on the same item, writing nothing.
    let other_holder = request.clone().held_by(monotone::HolderId::random());
    let err = store
        .queue("q")
        .unwrap()
        .join_as("me", &other_holder)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Held);
    assert_eq!(requests.take(), ["GetItem"]);
}
