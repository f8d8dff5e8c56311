//! The `monotone` binary on etcd (cargo feature `etcd`), against the local
//! members that `scripts/test.sh` starts (`MONOTONE_TEST_ETCD_ENDPOINTS`,
//! `MONOTONE_TEST_ETCD_CLUSTER`, `MONOTONE_TEST_ETCD_SECURE`): the store URL
//! and `MONOTONE_STORE`, etcdctl's variables, the failure classes and their
//! exit codes, a failover under 8 processes of `counter next`, and waits
//! that the server pushes. Without the variables these tests say so and
//! pass, except under CI, where they fail.
#![cfg(feature = "etcd")]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod binary;
mod place;
use binary::{fails, json, monotone, stderr};
use place::{server, unique_table, Place};

/// `scripts/etcd.sh ARGS`, checked; its output.
fn script(args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/etcd.sh");
    let out = Command::new(path).args(args).output().unwrap();
    assert!(out.status.success(), "etcd.sh {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `etcdctl ARGS` on `endpoint`, checked; its output.
fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "etcdctl {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn hosts(endpoints: &str) -> String {
    endpoints.replace("http://", "").replace("https://", "")
}

#[test]
fn commands_on_etcd_print_the_cluster_and_prefix() {
    let Some(place) = Place::etcd("session") else {
        return;
    };
    let next = place.json(&["-i", "c", "counter", "next"]);
    assert_eq!(next["value"], 1);
    let (region, table) = (
        next["region"].as_str().unwrap(),
        next["table"].as_str().unwrap(),
    );
    assert!(place.url.contains(region), "{region} in {}", place.url);
    assert!(table.ends_with('/') && place.url.contains(table), "{table}");
    assert_eq!(place.json(&["-i", "c", "counter", "next"])["value"], 2);
    let joined = place.json(&["-i", "q", "queue", "-p", "a", "join", "-t", "k=v"]);
    assert_eq!(joined["fencing_token"], 1);
    assert_eq!(joined["ticket"]["tags"]["k"], "v");
    place.json(&["-i", "q", "queue", "-p", "b", "join", "--ttl", "15s"]);
    let list = place.json(&["-i", "q", "queue", "list"]);
    assert_eq!(list["tickets"][1]["lease"]["renewals"], 0);
    assert_eq!(
        place.json(&["-i", "q", "queue", "-p", "b", "renew"])["ticket"]["lease"]["renewals"],
        1
    );
    let doc = binary::output_with_input(place.command(&["-i", "d", "doc", "set"]), r#"{"a": 1}"#);
    assert_eq!(json(doc, &[])["version"], 1);
    assert_eq!(
        place.json(&["-i", "t", "tally", "add", "--", "-3"])["value"],
        -3
    );
    assert_eq!(
        place.json(&["-i", "z", "claim", "-p", "o", "--range", "1..3"])["name"],
        "1"
    );
    // The id holds one kind of item.
    fails(place.run(&["-i", "c", "queue", "list"]), 4, &[]);
    // MONOTONE_STORE selects the store as --store does.
    let out = monotone()
        .env("MONOTONE_STORE", &place.url)
        .args(["-i", "c", "counter", "get"])
        .output()
        .unwrap();
    assert_eq!(json(out, &[])["value"], 2);
}

#[test]
fn etcdctl_variables_name_the_endpoints() {
    let Some(endpoint) = server(place::ETCD_VAR) else {
        return;
    };
    let prefix = unique_table("env");
    let out = monotone()
        .env("ETCDCTL_ENDPOINTS", &endpoint)
        .args([
            "--store",
            &format!("etcd:///{prefix}"),
            "-i",
            "c",
            "counter",
            "next",
        ])
        .output()
        .unwrap();
    assert_eq!(json(out, &[])["value"], 1);
}

/// A key under the prefix that monotone did not write: exit 8, the key as
/// it was; other ids work.
#[test]
fn keys_that_are_not_monotones_are_reported_and_left_alone() {
    let Some(endpoint) = server(place::ETCD_VAR) else {
        return;
    };
    let prefix = unique_table("foreign");
    let url = format!("etcd://{}/{prefix}", hosts(&endpoint));
    etcdctl(
        &endpoint,
        &["put", &format!("{prefix}/x"), "not monotone's"],
    );
    etcdctl(
        &endpoint,
        &[
            "put",
            &format!("{prefix}/y"),
            r#"{"type":"QUEUE","surprise":1}"#,
        ],
    );
    let run = |args: &[&str]| {
        let mut all = vec!["--store", url.as_str()];
        all.extend_from_slice(args);
        monotone().args(&all).output().unwrap()
    };
    for args in [
        &["-i", "x", "counter", "next"][..],
        &["-i", "x", "counter", "get"],
        &["-i", "x", "queue", "-p", "a", "join"],
        &["-i", "x", "doc", "get"],
        &["-i", "x", "tally", "add", "1"],
        &["-i", "x", "claim", "-p", "o", "--range", "1..2"],
        &["-i", "y", "queue", "list"],
        &["-i", "y", "counter", "next"],
    ] {
        let line = fails(run(args), 8, args);
        assert!(line.contains("monotone leaves it as it is"), "{line}");
    }
    let x = etcdctl(
        &endpoint,
        &["get", "--print-value-only", &format!("{prefix}/x")],
    );
    assert_eq!(x.trim(), "not monotone's");
    let y = etcdctl(
        &endpoint,
        &["get", "--print-value-only", &format!("{prefix}/y")],
    );
    assert_eq!(y.trim(), r#"{"type":"QUEUE","surprise":1}"#);
    assert_eq!(json(run(&["-i", "z", "counter", "next"]), &[])["value"], 1);
}

/// One endpoint of the URL is down: the others answer. All are down: exit
/// 6 once the operation's time runs out, not before, not much later.
#[test]
fn a_member_down_is_skipped_and_all_down_is_exit_6_in_bounded_time() {
    let Some(endpoint) = server(place::ETCD_VAR) else {
        return;
    };
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let prefix = unique_table("down");
    let url = format!("etcd://{dead},{}/{prefix}", hosts(&endpoint));
    for n in 1..=5 {
        let out = monotone()
            .args(["--store", &url, "-i", "c", "counter", "next"])
            .output()
            .unwrap();
        assert_eq!(json(out, &[])["value"], n);
    }
    let url = format!("etcd://{dead}/{prefix}?timeout_ms=1500");
    let started = Instant::now();
    let line = fails(
        monotone()
            .args(["--store", &url, "-i", "c", "counter", "next"])
            .output()
            .unwrap(),
        6,
        &[],
    );
    let took = started.elapsed();
    assert!(line.contains("etcd cannot be reached"), "{line}");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

/// TLS with client certificates and authentication, as etcdctl takes them;
/// a wrong password and a prefix the user may not touch are exit 7.
#[test]
fn tls_and_users_as_etcdctl_takes_them_and_refusals_are_exit_7() {
    let Some(endpoint) = server("MONOTONE_TEST_ETCD_SECURE") else {
        return;
    };
    let state = std::env::var("MONOTONE_ETCD_STATE").unwrap_or_else(|_| ".etcd-state".into());
    let mut files = PathBuf::from(state).join("secure");
    if files.is_relative() {
        files = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(files);
    }
    let file = |name: &str| files.join(name).display().to_string();
    let host = hosts(&endpoint);
    let tls = |cmd: &mut Command| {
        cmd.env("ETCDCTL_CACERT", file("ca.pem"))
            .env("ETCDCTL_CERT", file("client.pem"))
            .env("ETCDCTL_KEY", file("client-key.pem"));
    };
    let prefix = format!("monotone/{}", unique_table("tls"));
    let url = format!("etcd://{host}/{prefix}");
    // etcdctl's variables.
    let mut cmd = monotone();
    tls(&mut cmd);
    cmd.env("ETCDCTL_USER", "monotone:monotone-secret")
        .args(["--store", &url, "-i", "c", "counter", "next"]);
    assert_eq!(json(cmd.output().unwrap(), &[])["value"], 1);
    // The URL's options, the password in a file.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "monotone-secret\n").unwrap();
    let full = format!(
        "{url}?ca={}&cert={}&key={}&user=monotone&password_file={}",
        file("ca.pem"),
        file("client.pem"),
        file("client-key.pem"),
        pw.display()
    );
    let out = monotone()
        .args(["--store", &full, "-i", "c", "counter", "next"])
        .output()
        .unwrap();
    assert_eq!(json(out, &[])["value"], 2);
    // A wrong password; another prefix than the user's.
    let mut cmd = monotone();
    tls(&mut cmd);
    cmd.env("ETCDCTL_USER", "monotone:wrong")
        .args(["--store", &url, "-i", "c", "counter", "next"]);
    let line = fails(cmd.output().unwrap(), 7, &[]);
    assert!(line.contains("etcd refused"), "{line}");
    let mut cmd = monotone();
    tls(&mut cmd);
    cmd.env("ETCDCTL_USER", "monotone:monotone-secret").args([
        "--store",
        &format!("etcd://{host}/elsewhere/"),
        "-i",
        "c",
        "counter",
        "next",
    ]);
    let line = fails(cmd.output().unwrap(), 7, &[]);
    assert!(line.contains("permission denied"), "{line}");
    // Without TLS files the TLS member cannot be spoken to: exit 6, bounded.
    let out = monotone()
        .env("ETCDCTL_USER", "monotone:monotone-secret")
        .args([
            "--store",
            &format!("{url}?timeout_ms=1000"),
            "-i",
            "c",
            "counter",
            "get",
        ])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(6) | Some(7)),
        "{}",
        stderr(&out)
    );
}

/// 8 processes each run `monotone counter next` 50 times in a row on the
/// 3-member cluster; the leader is killed with SIGKILL a quarter of the way
/// in: every value from 1 to 400 comes out exactly once, and no command
/// fails.
#[test]
fn killing_the_leader_during_400_counter_next_commands_loses_and_repeats_nothing() {
    let Some(cluster) = server("MONOTONE_TEST_ETCD_CLUSTER") else {
        return;
    };
    let url = format!("etcd://{}/{}", hosts(&cluster), unique_table("failover"));
    let leader = script(&["leader"]);
    let values = std::sync::Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..50 {
                    let out = monotone()
                        .args(["--store", &url, "-i", "c", "counter", "next"])
                        .output()
                        .unwrap();
                    let v: Value = json(out, &["counter", "next"]);
                    values.lock().unwrap().push(v["value"].as_u64().unwrap());
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        while done.load(std::sync::atomic::Ordering::SeqCst) < 100 {
            std::thread::sleep(Duration::from_millis(2));
        }
        script(&["kill", &leader]);
    });
    script(&["restart", &leader]);
    let mut values = values.into_inner().unwrap();
    values.sort_unstable();
    assert_eq!(
        values,
        (1..=400).collect::<Vec<u64>>(),
        "every value exactly once"
    );
}

/// Waits are pushed by etcd: with a poll of an hour, a lock is handed over
/// and a watcher sees a change at once.
#[test]
fn waits_do_not_poll_on_etcd() {
    let Some(place) = Place::etcd("push") else {
        return;
    };
    // A poll is at most a quarter of the lease: a lease of an hour lets
    // a polling waiter sleep 15 minutes.
    let holder = place.hold(&["-i", "L", "lock", "--ttl", "1h", "--poll", "1h"]);
    let waiter = place.spawn(&[
        "-i", "L", "lock", "--ttl", "1h", "--poll", "1h", "--", "true",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let released = Instant::now();
    holder.release();
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let handed_over = released.elapsed();
    assert!(handed_over < Duration::from_secs(30), "{handed_over:?}");

    let mut watch = place
        .command(&["-i", "d", "doc", "watch", "--poll", "1h"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let wrote = Instant::now();
    let out = binary::output_with_input(place.command(&["-i", "d", "doc", "set"]), r#"{"x": 1}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(watch.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let seen = wrote.elapsed();
    let _ = watch.kill();
    let _ = watch.wait();
    let change: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(change["version"], 1);
    assert!(seen < Duration::from_secs(30), "{seen:?}");
    println!("lock handed over in {handed_over:?}, a change seen {seen:?} after its write, with --poll 1h");
}
