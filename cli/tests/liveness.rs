//! On the embedded store, the kernel knows which holders are alive: real
//! `monotone` processes holding with a lease of an hour are SIGKILLed, and
//! their ticket or claim is removed by the next waiter, claimer or lister
//! at once. Each check would fail if only the lease rules applied: a lease
//! of an hour cannot expire within the test, and the waiters poll once an
//! hour. The hand-over times are printed (see them with --nocapture); the
//! benchmark is `bench/push.sh`.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

mod binary;
mod place;
use binary::stderr;
use place::Place;

/// Wait until queue `id` holds `n` tickets, or fail after a minute.
fn await_tickets(place: &Place, id: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = place.json(&["-i", id, "queue", "list"]);
        if list["tickets"].as_array().unwrap().len() == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue {id} never held {n}: {list}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` has ended (gone, or a zombie: it runs no more).
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => kill(Pid::from_raw(pid), None).is_err(),
    }
}

/// Wait for `child` for up to a minute (a lease of an hour could not end
/// by then); SIGKILL it and fail after that.
fn finish_within_a_minute(mut child: std::process::Child, what: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{what} still waits after a minute: the dead holder was not noticed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// `lock` of queue L as `pid`: a lease and a poll of an hour.
fn lock_args<'a>(pid: &'a str, script: &'a str) -> Vec<&'a str> {
    vec![
        "-i", "L", "lock", "-p", pid, "--ttl", "1h", "--poll", "1h", "--", "sh", "-c", script,
    ]
}

/// The holder's command: note its pid and process group, then sleep.
const SLEEPER: &str =
    r#"echo $$ > "$OUT/holder.tmp"; mv "$OUT/holder.tmp" "$OUT/holder"; exec sleep 600"#;

/// The waiter's command: note the time, and whether the holder's command
/// had ended by then.
const TAKER: &str = r#"date +%s%N > "$OUT/started.tmp"; mv "$OUT/started.tmp" "$OUT/started""#;

#[test]
fn a_sigkilled_lock_is_taken_over_by_the_next_waiter_at_once_on_sqlite() {
    let place = Place::sqlite();
    let mut holder = place.spawn(&lock_args("holder", SLEEPER));
    let sleeper: i32 = place.await_file("holder").parse().unwrap();
    let waiter_started = Instant::now();
    let waiter = place.spawn(&lock_args("waiter", TAKER));
    await_tickets(&place, "L", 2);
    holder.kill().unwrap(); // SIGKILL of `monotone lock` alone
    let killed = Instant::now();
    holder.wait().unwrap();
    let out = finish_within_a_minute(waiter, "the waiter");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    println!("the waiter waited {:?} in all", waiter_started.elapsed());
    assert!(
        ended(sleeper),
        "the dead holder's command outlived its lock"
    );
    println!(
        "crash takeover: {:.1} ms",
        killed.elapsed().as_secs_f64() * 1e3
    );
    // The waiter left; the dead holder's ticket was removed as an expiry:
    // two joins, one removal, one leave.
    let list = place.json(&["-i", "L", "queue", "list"]);
    assert_eq!(list["tickets"], serde_json::json!([]), "{list}");
    assert_eq!(list["fencing_token"], 4, "{list}");
}

#[test]
fn a_sigkilled_group_ends_the_lock_and_the_next_waiter_takes_it() {
    let place = Place::sqlite();
    let holder = place.spawn(&lock_args("holder", SLEEPER));
    let sleeper: i32 = place.await_file("holder").parse().unwrap();
    let waiter = place.spawn(&lock_args("waiter", TAKER));
    await_tickets(&place, "L", 2);
    // The command's whole group (the guard and the command), not monotone.
    let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap();
    let pgid: i32 = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    killpg(Pid::from_raw(pgid), Signal::SIGKILL).unwrap();
    let out = finish_within_a_minute(holder, "the holder");
    assert_eq!(out.status.code(), Some(128 + 9), "{}", stderr(&out));
    let out = finish_within_a_minute(waiter, "the waiter");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!place.read("started").is_empty());
    // The holder left by itself (it lived): two joins, two leaves.
    let list = place.json(&["-i", "L", "queue", "list"]);
    assert_eq!(list["fencing_token"], 4, "{list}");
}

#[test]
fn a_sigkilled_holder_s_ticket_is_gone_from_the_next_list_on_sqlite() {
    let place = Place::sqlite();
    let a = place.hold(&["-i", "Q", "lock", "-p", "a", "--ttl", "1h"]);
    let b = place.hold(&["-i", "Q", "lock", "-p", "b", "-n", "2", "--ttl", "1h"]);
    let list = place.json(&["-i", "Q", "queue", "list"]);
    assert_eq!(list["tickets"].as_array().unwrap().len(), 2, "{list}");
    a.kill();
    let list = place.json(&["-i", "Q", "queue", "list"]);
    let left: Vec<&str> = list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.get("process_id").unwrap().as_str().unwrap())
        .collect();
    assert_eq!(left, ["b"], "{list}");
    assert_eq!(list["fencing_token"], 3, "{list}");
    // The living holder's ticket stays for `queue get`, the dead one's
    // is gone from it too.
    place.json(&["-i", "Q", "queue", "-p", "b", "get"]);
    b.kill();
    place.fails(&["-i", "Q", "queue", "-p", "b", "get"], 3);
}

#[test]
fn a_dead_leased_claim_s_name_goes_to_the_next_claimer_of_a_pool_of_255() {
    let place = Place::sqlite();
    let claim = |owner: &str| {
        place.hold(&[
            "-i", "P", "claim", "-p", owner, "--range", "1..255", "--ttl", "1h",
        ])
    };
    let a = claim("a");
    let b = claim("b");
    assert_eq!(a.doc["name"], "1", "{}", a.doc);
    assert_eq!(b.doc["name"], "2", "{}", b.doc);
    a.kill();
    let c = claim("c");
    assert_eq!(c.doc["name"], "1", "{}", c.doc);
    // Two claims, the dead one's removal, c's claim.
    assert_eq!(c.doc["fencing_token"], 4, "{}", c.doc);
    b.kill();
    let list = place.json(&["-i", "P", "claim", "list"]);
    let names: Vec<&str> = list["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1"], "b's claim is gone from the list: {list}");
    c.kill();
}
