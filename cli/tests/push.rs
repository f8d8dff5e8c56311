//! On the embedded store, waiting is driven by the kernel's notifications,
//! not by polling: real `monotone` processes waiting with `--poll 1h` are
//! woken by another process's write. Each check would fail if the waiter
//! only polled: it gives the waiter far less time than its first look
//! would take (an hour for `queue wait` and `doc watch`; behind a lease of
//! two minutes, a `lock` waiter's first look at the holder's lease is at
//! least 15 s away), and asserts on the result, not on a latency. The
//! hand-over times are printed (see them with --nocapture); the benchmark
//! is `bench/push.sh`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod binary;
mod place;
use binary::{output_with_input, stderr};
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

#[test]
fn lock_hands_over_without_polling_on_sqlite() {
    let place = Place::sqlite();
    // `lock` as `pid`, with a lease of 2 minutes and an hour's poll.
    let lock = |pid: &str, script: &str| {
        place.spawn(&[
            "-i", "L", "lock", "-p", pid, "--ttl", "2m", "--poll", "1h", "--", "sh", "-c", script,
        ])
    };
    // The holder runs until the file `go` appears.
    let holder = lock(
        "holder",
        r#"while [ ! -e "$OUT/go" ]; do sleep 0.01; done; date +%s%N > "$OUT/ended""#,
    );
    await_tickets(&place, "L", 1);
    let waiter_started = Instant::now();
    let waiter = lock("waiter", r#"date +%s%N > "$OUT/started""#);
    await_tickets(&place, "L", 2);
    std::fs::write(place.path("go"), "").unwrap();
    let out = holder.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = waiter.wait_with_output().unwrap();
    let waited = waiter_started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Behind a lease of 2 minutes the waiter's first look is at least 15 s
    // after its first read: it can only have run its command before that if
    // the leave woke it.
    assert!(
        waited < Duration::from_secs(15),
        "the waiter ran only after {waited:?}: it was not woken"
    );
    let ended: u128 = place.read("ended").trim().parse().unwrap();
    let started: u128 = place.read("started").trim().parse().unwrap();
    println!(
        "hand-over: {:.1} ms",
        started.saturating_sub(ended) as f64 / 1e6
    );
}

#[test]
fn queue_wait_hands_over_without_polling_on_sqlite() {
    let place = Place::sqlite();
    place.json(&["-i", "Q", "queue", "-p", "a", "join"]);
    place.json(&["-i", "Q", "queue", "-p", "b", "join"]);
    let mut cmd = place.command(&[
        "-i",
        "Q",
        "queue",
        "-p",
        "b",
        "wait",
        "--poll",
        "1h",
        "--timeout",
        "60s",
    ]);
    let waiter = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the waiter read the queue and settle into its wait.
    std::thread::sleep(Duration::from_millis(300));
    let left = Instant::now();
    let leave = place.json(&["-i", "Q", "queue", "-p", "a", "leave"]);
    let out = waiter.wait_with_output().unwrap();
    let took = left.elapsed();
    // Without a notification it would have timed out (exit 9) after 60 s,
    // its poll being an hour.
    let head = binary::json(out, &["queue", "wait"]);
    assert_eq!(head["ticket"]["position"], 0);
    assert_eq!(head["fencing_token"], leave["fencing_token"]);
    println!("leave -> wait returned: {took:?}");
}

#[test]
fn doc_watch_prints_another_process_s_write_without_polling_on_sqlite() {
    let place = Place::sqlite();
    let out = output_with_input(place.command(&["-i", "D", "doc", "set"]), r#"{"a": 1}"#);
    binary::succeeded(&out, &["doc", "set"]);
    let mut watcher = place
        .command(&["-i", "D", "doc", "watch", "--poll", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines as they come, on a thread of their own, so that the test
    // waits for one with a deadline.
    let (lines, printed) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let written = Instant::now();
    let out = output_with_input(place.command(&["-i", "D", "doc", "set"]), r#"{"a": 2}"#);
    binary::succeeded(&out, &["doc", "set"]);
    // Its poll being an hour, a watcher that is not woken prints nothing
    // within the minute.
    let line = printed.recv_timeout(Duration::from_secs(60));
    let took = written.elapsed();
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    let line = line.expect("the watcher printed the change");
    let change: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(change["version"], 2, "{change}");
    assert_eq!(change["value"], serde_json::json!({"a": 2}), "{change}");
    println!("doc set -> watcher printed: {took:?}");
}
