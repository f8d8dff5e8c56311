//! The living reap the dead, with real processes on every store: a holder
//! (`lock`, `claim --ttl`) SIGKILLed while no one waits behind it is
//! removed by the renewals of the holders that live, within about one
//! lease and one renewal interval (on SQLite the kernel may tell sooner).
//! Each check would fail if only waiters removed the dead: nothing waits
//! behind the killed holder. The times from the SIGKILL to the removal are
//! printed (see them with --nocapture); the benchmark is `bench/reap.py`.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

mod binary;
mod place;
use place::Place;

/// How long the test waits for a removal that should take about 1.4 s:
/// generous, for a debug build on a loaded machine. Not a speed check.
const PATIENCE: Duration = Duration::from_secs(15);

/// The `key` of each entry of the list `field` of `monotone ARGS`.
fn listed(place: &Place, args: &[&str], field: &str, key: &str) -> (Vec<String>, Value) {
    let doc = place.json(args);
    let keys = doc[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[key].as_str().unwrap().to_owned())
        .collect();
    (keys, doc)
}

/// Poll `monotone ARGS` until the list `field` has the `key`s `wanted`, or
/// fail after [`PATIENCE`]; the document that had them.
fn await_listed(place: &Place, args: &[&str], field: &str, key: &str, wanted: &[&str]) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (keys, doc) = listed(place, args, field, key);
        if keys == wanted {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "after {PATIENCE:?}, {keys:?} rather than {wanted:?}: {doc}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// SIGKILL `monotone` (its guard, if it has one, kills its command's group
/// when its parent dies) and reap it.
fn sigkill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Whether `child` still runs.
fn runs(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

fn a_killed_lock_behind_a_waiter_is_removed_by_the_living(place: &Place) {
    let list = ["-i", "Q", "queue", "list"];
    let lock = |pid: &str| {
        place.spawn(&[
            "-i", "Q", "lock", "-p", pid, "--ttl", "1s", "--", "sleep", "30",
        ])
    };
    let mut a = lock("a");
    await_listed(place, &list, "tickets", "process_id", &["a"]);
    let mut b = lock("b");
    await_listed(place, &list, "tickets", "process_id", &["a", "b"]);
    let c = lock("c");
    await_listed(place, &list, "tickets", "process_id", &["a", "b", "c"]);
    // No one waits behind c: only the holders' renewals can remove it.
    sigkill(c);
    let killed = Instant::now();
    let doc = await_listed(place, &list, "tickets", "process_id", &["a", "b"]);
    println!(
        "{}: the killed lock's ticket was gone after {:.0} ms",
        place.url,
        killed.elapsed().as_secs_f64() * 1e3
    );
    // Three joins, one removal.
    assert_eq!(doc["fencing_token"], 4, "{doc}");
    assert!(runs(&mut a), "a still holds its lock");
    assert!(runs(&mut b), "b still waits");
    sigkill(a);
    sigkill(b);
}

fn a_killed_claimer_s_name_is_freed_by_the_living(place: &Place) {
    let list = ["-i", "P", "claim", "list"];
    let claim = |owner: &str| {
        place.spawn(&[
            "-i", "P", "claim", "-p", owner, "--ttl", "1s", "--range", "1..255", "--", "sleep",
            "30",
        ])
    };
    let mut a = claim("a");
    await_listed(place, &list, "claims", "owner", &["a"]);
    let mut b = claim("b");
    await_listed(place, &list, "claims", "owner", &["a", "b"]);
    let c = claim("c");
    let doc = await_listed(place, &list, "claims", "owner", &["a", "b", "c"]);
    assert_eq!(doc["claims"][2]["name"], "3", "{doc}");
    sigkill(c);
    let killed = Instant::now();
    let doc = await_listed(place, &list, "claims", "owner", &["a", "b"]);
    println!(
        "{}: the killed claimer's claim was gone after {:.0} ms",
        place.url,
        killed.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(doc["fencing_token"], 4, "three claims, one removal: {doc}");
    // The next claimer gets the lowest free name: the dead one's.
    let d = place.hold(&[
        "-i", "P", "claim", "-p", "d", "--ttl", "1s", "--range", "1..255",
    ]);
    assert_eq!(d.doc["name"], "3", "{}", d.doc);
    assert!(runs(&mut a) && runs(&mut b), "a and b still hold");
    d.release();
    sigkill(a);
    sigkill(b);
}

on_each_store! {
    a_killed_lock_behind_a_waiter_is_removed_by_the_living("reap-lock"),
    a_killed_claimer_s_name_is_freed_by_the_living("reap-claim"),
}
