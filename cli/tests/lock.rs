//! `monotone lock` driven as users drive it, on SQLite and on DynamoDB (the
//! local server of `scripts/test.sh`; without it those runs say they skip,
//! except under CI): mutual exclusion among real processes, semaphores,
//! exit codes passed through, signals, a holder killed with SIGKILL, and a
//! store that stops answering while the command runs.
//!
//! Commands are small shell scripts that write what they saw (start and end
//! times in nanoseconds, the fencing token, their pids) to files the test
//! reads afterwards. Leases are short (a second or less).

use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

mod binary;
mod place;
use binary::stderr;
use place::{
    command_killed_when_the_store_stops_answering, gone, most_at_once, one_after_another, Place,
};

impl Place {
    fn list(&self, id: &str) -> Value {
        self.json(&["-i", id, "queue", "list"])
    }
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// `workers` processes run `lock -n holders` around [`RECORD`] at once,
/// each as its own process id (`w0`, `w1`, ...) or all as `host-a`; every
/// (start, end, token), sorted by start. The lock passes by release, so the
/// ttl plays no part in the figures; it is 3 s so that 8 holders renewing
/// against one local moto process on a busy 2-core machine (the whole
/// suite at once) do not lose a lease to a renewal that took 0.9 s.
fn contend(
    place: &Place,
    workers: usize,
    holders: u32,
    hold: &str,
    one_pid: bool,
) -> Vec<(u128, u128, u64)> {
    let holders = holders.to_string();
    place.record_runs(workers, hold, |i| {
        let pid = if one_pid {
            "host-a".into()
        } else {
            format!("w{i}")
        };
        let args = [
            "-i", "job", "lock", "-p", &pid, "-n", &holders, "--ttl", "3s",
        ];
        args.map(String::from).to_vec()
    })
}

fn one_at_a_time(place: &Place) {
    let runs = contend(place, 8, 1, "0.05", false);
    one_after_another(&runs);
    assert_eq!(
        place.list("job")["tickets"],
        serde_json::json!([]),
        "all left"
    );
}

/// 8 `lock -p host-a` at once (a cron job that overlaps itself with
/// `-p "$(hostname)"`): never two at once, each ran, tokens growing; each
/// waited for the one before to end.
fn one_process_id_at_a_time(place: &Place) {
    let runs = contend(place, 8, 1, "0.05", true);
    one_after_another(&runs);
    assert_eq!(place.list("job")["tickets"], serde_json::json!([]));
    // Meanwhile another holds it: --no-wait is not acquired, and changes
    // nothing.
    let held = place.hold(&["-i", "job", "lock", "-p", "host-a"]);
    let token = place.list("job")["fencing_token"].clone();
    let err = place.fails(
        &[
            "-i",
            "job",
            "lock",
            "-p",
            "host-a",
            "--no-wait",
            "--",
            "true",
        ],
        9,
    );
    assert!(err.contains("held by another holder"), "{err}");
    assert_eq!(place.list("job")["fencing_token"], token);
    held.release();
}

fn three_at_a_time(place: &Place) {
    let runs = contend(place, 8, 3, "0.6", false);
    assert_eq!(
        most_at_once(&runs),
        3,
        "at most 3, and 3 did run at once: {runs:?}"
    );
}

/// SIGKILL the holding `monotone`: its command and the command's own
/// children die with it, and a waiter leads within about a lease, with a
/// larger token.
fn a_killed_holder_takes_its_command_along_and_a_waiter_takes_over(place: &Place) {
    let script = r#"echo $MONOTONE_FENCING_TOKEN > "$OUT/token1"; sleep 1000 &
echo "$$ $!" > "$OUT/pids"; wait"#;
    let mut holder = place.spawn(&["-i", "L", "lock", "--ttl", "1s", "--", "sh", "-c", script]);
    let pids = place.await_pids("pids");
    let waiter = place.spawn(&[
        "-i",
        "L",
        "lock",
        "--ttl",
        "1s",
        "--",
        "sh",
        "-c",
        r#"echo $MONOTONE_FENCING_TOKEN > "$OUT/token2""#,
    ]);
    std::thread::sleep(Duration::from_millis(700));
    holder.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    holder.wait().unwrap();
    for pid in &pids {
        assert!(gone(*pid), "process {pid} of the command outlived monotone");
    }
    let out = waiter.wait_with_output().unwrap();
    let took = killed.elapsed();
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let (t1, t2): (u64, u64) = (
        place.read("token1").trim().parse().unwrap(),
        place.read("token2").trim().parse().unwrap(),
    );
    assert!(t2 > t1, "the new holder's token {t2} is above the old {t1}");
    // One lease plus one poll (a quarter lease), plus process start-up on
    // a loaded machine.
    assert!(
        took < Duration::from_millis(1250) + Duration::from_secs(3),
        "{took:?}"
    );
    println!("waiter ran its command {took:?} after the holder's SIGKILL");
}

/// A join that asks for another ticket than the process's is refused with
/// 13 and changes nothing (`queue -p foo join --ttl 5s` after a permanent
/// join of `foo`, other tags); the same join again returns the ticket; a
/// lock of a process with a permanent ticket is refused with 13 at once.
fn a_changed_re_join_exits_13_and_changes_nothing(place: &Place) {
    let q = |args: &[&'static str]| {
        let mut all = vec!["-i", "rejoin", "queue", "-p", "foo"];
        all.extend_from_slice(args);
        all
    };
    let first = place.json(&q(&["join", "-t", "role=zk"]));
    assert_eq!(first["ticket"]["lease"], Value::Null);
    for (args, says) in [
        (
            q(&["join", "-t", "role=zk", "--ttl", "5s"]),
            "with no lease, and this join asks for a lease of 5s",
        ),
        (
            q(&["join", "-t", "role=db"]),
            "with tags {role=zk}, and this join asks for tags {role=db}",
        ),
        (q(&["join"]), "asks for no tags"),
    ] {
        let err = place.fails(&args, 13);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains("leave the queue first"), "{err}");
    }
    let err = place.fails(
        &[
            "-i",
            "rejoin",
            "lock",
            "-p",
            "foo",
            "--timeout",
            "10s",
            "--",
            "true",
        ],
        13,
    );
    assert!(err.contains("leave the queue first"), "{err}");
    let again = place.json(&q(&["join", "-t", "role=zk"]));
    assert_eq!(again, first, "the same ticket, the same token");
    let list = place.list("rejoin");
    assert_eq!(list["fencing_token"], 1, "nothing written");
    assert_eq!(list["tickets"][0]["lease"], Value::Null);
    // A leased ticket joined again with the same ttl is its own; another
    // ttl is refused.
    let leased = place.json(&["-i", "rejoin", "queue", "-p", "bar", "join", "--ttl", "5s"]);
    let again = place.json(&["-i", "rejoin", "queue", "-p", "bar", "join", "--ttl", "5s"]);
    assert_eq!(again["ticket"]["counter"], leased["ticket"]["counter"]);
    let err = place.fails(
        &["-i", "rejoin", "queue", "-p", "bar", "join", "--ttl", "6s"],
        13,
    );
    assert!(
        err.contains("with a lease of 5s, and this join asks for a lease of 6s"),
        "{err}"
    );
    assert_eq!(place.list("rejoin")["fencing_token"], 2);
}

on_each_store! {
    one_at_a_time("mutex"),
    a_changed_re_join_exits_13_and_changes_nothing("rejoin"),
    one_process_id_at_a_time("pid-mutex"),
    three_at_a_time("sem"),
    a_killed_holder_takes_its_command_along_and_a_waiter_takes_over("crash"),
}

/// The store stops answering while the command runs: the command's whole
/// group is killed within the lease, and monotone exits with "lock lost".
fn a_store_that_stops_answering_gets_the_command_killed(place: &Place) {
    command_killed_when_the_store_stops_answering(place, &["-i", "L", "lock"], "lock lost");
}

#[test]
fn a_store_that_stops_answering_gets_the_command_killed_on_sqlite() {
    let place = Place::sqlite();
    a_store_that_stops_answering_gets_the_command_killed(&place);
    // The lease expires by itself once the file answers again.
    let out = place
        .impatient()
        .run(&["-i", "L", "lock", "--timeout", "5s", "--", "true"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
}

#[test]
fn a_store_that_stops_answering_gets_the_command_killed_on_dynamodb() {
    let Some(place) = Place::dynamodb("outage") else {
        return;
    };
    a_store_that_stops_answering_gets_the_command_killed(&place);
}

/// A network partition between the holder and etcd: the command is killed
/// before anyone else can be granted the lock; once the network heals, a
/// waiter takes the lock with a larger token.
#[cfg(feature = "etcd")]
#[test]
fn a_partition_from_etcd_gets_the_command_killed_before_another_holder_starts() {
    let Some(place) = Place::etcd("partition") else {
        return;
    };
    a_store_that_stops_answering_gets_the_command_killed(&place);
    let out = place.impatient().run(&[
        "-i",
        "L",
        "lock",
        "--timeout",
        "5s",
        "--",
        "sh",
        "-c",
        "echo $MONOTONE_FENCING_TOKEN",
    ]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let token: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        token >= 2,
        "the next holder's token {token} is above the lost one's"
    );
}

#[test]
fn exit_codes_come_back_exactly() {
    let place = Place::sqlite();
    for (script, expected) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 42", 42),
        ("kill -TERM $$", 128 + 15),
        ("kill -KILL $$", 128 + 9),
    ] {
        let out = place.run(&["-i", "L", "lock", "--", "sh", "-c", script]);
        assert_eq!(code(&out), Some(expected), "{script}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    assert_eq!(place.list("L")["fencing_token"], 10, "each joined and left");
    // The command's own output is its own.
    let out = place.run(&[
        "-i",
        "L",
        "lock",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(stderr(&out), "err\n");
}

#[test]
fn the_environment_carries_the_token_and_the_place() {
    let place = Place::sqlite();
    let out = place.run(&[
        "-i", "envq", "lock", "-p", "me", "--", "sh", "-c",
        "echo $MONOTONE_ID $MONOTONE_PROCESS_ID $MONOTONE_FENCING_TOKEN $MONOTONE_POSITION $MONOTONE_COUNTER $MONOTONE_STORE",
    ]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("envq me 1 0 1 {}", place.url)
    );
    // The default process id says where it runs, and differs per run.
    let script = r#"echo $MONOTONE_PROCESS_ID"#;
    let a = place.run(&["-i", "envq", "lock", "--", "sh", "-c", script]);
    let b = place.run(&["-i", "envq", "lock", "--", "sh", "-c", script]);
    let (a, b) = (
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout),
    );
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert!(a.starts_with(&format!("{host}:")), "{a}");
    assert_ne!(a, b);
}

/// Without a command: the ticket once acquired, held until stdin closes.
/// Meanwhile `--no-wait` fails at once and `--timeout 1s` after a second.
#[test]
fn holding_without_a_command_and_not_waiting() {
    let place = Place::sqlite();
    let held = place.hold(&["-i", "L", "lock", "-p", "holder"]);
    let doc = &held.doc;
    assert_eq!(doc["ticket"]["process_id"], "holder");
    assert_eq!(doc["fencing_token"], 1);
    assert_eq!(doc["ticket"]["lease"]["ttl_ms"], 15_000);

    let started = Instant::now();
    let out = place.run(&["-i", "L", "lock", "--no-wait", "--", "true"]);
    assert_eq!(code(&out), Some(9), "{}", stderr(&out));
    assert!(stderr(&out).contains("not acquired"), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "at once: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let out = place.run(&["-i", "L", "lock", "--timeout", "1s", "--", "true"]);
    assert_eq!(code(&out), Some(9), "{}", stderr(&out));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // Neither left a ticket behind.
    assert_eq!(place.list("L")["tickets"].as_array().unwrap().len(), 1);

    held.release(); // stdin closes: release
    assert_eq!(place.list("L")["tickets"], serde_json::json!([]));
}

/// SIGTERM to `monotone` goes to the command's group; the command exits as
/// it likes, its leftovers are ended, the lock is released, and monotone
/// exits as the command did.
#[test]
fn signals_are_passed_to_the_command() {
    let place = Place::sqlite();
    let script = r#"trap 'echo TERM > "$OUT/got"; exit 7' TERM
sleep 1000 & echo "$$ $!" > "$OUT/pids"; wait"#;
    let child = place.spawn(&["-i", "L", "lock", "--", "sh", "-c", script]);
    let pids = place.await_pids("pids");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), Some(7), "{}", stderr(&out));
    assert_eq!(place.read("got").trim(), "TERM");
    for pid in pids {
        assert!(gone(pid), "process {pid} outlived the lock");
    }
    assert_eq!(
        place.list("L")["tickets"],
        serde_json::json!([]),
        "released"
    );
}

#[test]
fn bad_requests_are_refused_before_anything_is_locked() {
    let place = Place::sqlite();
    for (args, says) in [
        (vec!["-n", "0", "--", "true"], "0 is not in"),
        (vec!["--", "no-such-command-anywhere"], "cannot run"),
        (vec!["--", "./not/here.sh"], "cannot run"),
        (
            vec!["--ttl", "100ms", "--", "true"],
            "too short to renew safely",
        ),
        (
            vec!["--ttl", "2s", "--kill-after", "1500ms", "--", "true"],
            "--kill-after",
        ),
        (
            vec!["--no-wait", "--timeout", "1s", "--", "true"],
            "cannot be used with",
        ),
        (vec!["--ttl", "soon", "--", "true"], "not a duration"),
    ] {
        let mut all = vec!["-i", "L", "lock"];
        all.extend(args);
        let out = place.run(&all);
        assert_eq!(code(&out), Some(2), "{all:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{all:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    assert_eq!(place.list("L")["fencing_token"], 0, "nothing was written");
}

/// The processes whose command line mentions `needle` (the guard's names
/// its folder, which is under the TMPDIR the test gave).
fn processes_naming(needle: &str) -> Vec<i32> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// The guard of a command is started before the lock is taken (so that the
/// hand-over does not wait for a process to start). A lock not acquired,
/// or a `monotone` killed while it waits, runs nothing of the command and
/// leaves neither the guard nor its folder behind.
#[test]
fn a_guard_started_ahead_runs_nothing_without_the_lock() {
    let place = Place::sqlite();
    let tmp = place.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let tmp_text = tmp.to_str().unwrap().to_owned();
    let held = place.hold(&["-i", "L", "lock", "-p", "holder"]);
    let ran = |name: &str| format!("touch \"$OUT/{name}\"");

    let cmd = ran("timed-out");
    let out = place
        .command(&[
            "-i",
            "L",
            "lock",
            "--timeout",
            "300ms",
            "--",
            "sh",
            "-c",
            &cmd,
        ])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(9), "{}", stderr(&out));

    let cmd = ran("killed");
    let mut waiting = place
        .command(&["-i", "L", "lock", "--", "sh", "-c", &cmd])
        .env("TMPDIR", &tmp)
        .spawn()
        .unwrap();
    // Its guard is up, waiting for the go.
    let until = Instant::now() + Duration::from_secs(10);
    while processes_naming(&tmp_text).is_empty() {
        assert!(Instant::now() < until, "no guard started");
        std::thread::sleep(Duration::from_millis(10));
    }
    waiting.kill().unwrap();
    waiting.wait().unwrap();
    // The guard goes with it (the parent-death signal, or the go's end).
    let until = Instant::now() + Duration::from_secs(10);
    while !processes_naming(&tmp_text).is_empty() {
        assert!(Instant::now() < until, "the guard outlived its monotone");
        std::thread::sleep(Duration::from_millis(10));
    }
    held.release();
    // Neither command ran, and the timed-out lock removed its folder (the
    // killed one could not: its folder is all that is left).
    assert!(!place.path("timed-out").exists());
    assert!(!place.path("killed").exists());
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("monotone-guard-"), "{left:?}");
}
