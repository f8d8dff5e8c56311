//! `monotone claim` driven as users drive it, on SQLite and on DynamoDB (the
//! local server of `scripts/test.sh`; without it those runs say they skip,
//! except under CI): the JSON documents and exit codes, ZooKeeper `myid`s
//! from a range, names from a file, a claim held around a command (its
//! environment, its exit status, killed when the lease is lost), and a
//! claimer that waits for a dead holder's name.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod binary;
mod place;
use binary::stderr;
use place::{command_killed_when_the_store_stops_answering, one_after_another, Place};

impl Place {
    /// (name, owner) of every claim of `pool`, in the listed order.
    fn held(&self, pool: &str) -> Vec<(String, String)> {
        let list = self.json(&["-i", pool, "claim", "list"]);
        list["claims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["owner"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The region and table the documents show.
    fn place(&self) -> (Value, Value) {
        let v = self.json(&["-i", "where-am-i", "claim", "list"]);
        (v["region"].clone(), v["table"].clone())
    }
}

fn held(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, o)| (n.to_string(), o.to_string()))
        .collect()
}

/// The README's ZooKeeper example: ids from 1 to 255, the same id again for
/// the same host, a replaced node's id reused; the documents' shapes; the
/// exit codes.
fn myids_from_a_range(place: &Place) {
    let (region, table) = place.place();
    let a = place.json(&["-i", "myzk", "claim", "-p", "zk-a", "--range", "1..255"]);
    assert_eq!(
        a,
        json!({"id": "myzk", "region": region, "table": table, "name": "1", "owner": "zk-a",
               "index": 0, "fencing_token": 1, "new": true, "tags": {}, "lease": null})
    );
    let b = place.json(&["-i", "myzk", "claim", "-p", "zk-b", "--range", "1..=255"]);
    assert_eq!((&b["name"], &b["fencing_token"]), (&json!("2"), &json!(2)));
    let again = place.json(&["-i", "myzk", "claim", "-p", "zk-a", "--range", "1..255"]);
    let mut expected = a.clone();
    expected["new"] = json!(false);
    assert_eq!(again, expected, "the same claim, and its own token");
    place.json(&["-i", "myzk", "claim", "-p", "zk-c", "--range", "1..255"]);
    let list = place.json(&["-i", "myzk", "claim", "list"]);
    assert_eq!(list["fencing_token"], 3);
    assert_eq!(
        list["claims"][1],
        json!({"name": "2", "owner": "zk-b", "index": 1, "token": 2, "tags": {}, "lease": null})
    );
    let get = place.json(&["-i", "myzk", "claim", "-p", "zk-b", "get"]);
    assert_eq!(get, {
        let mut g = b.clone();
        g.as_object_mut().unwrap().remove("new");
        g
    });
    // zk-b is replaced by zk-d: its id is given back and reused.
    let released = place.json(&["-i", "myzk", "claim", "-p", "zk-b", "release"]);
    assert_eq!(
        released,
        json!({"id": "myzk", "region": region, "table": table, "fencing_token": 4,
               "name": "2", "owner": "zk-b"})
    );
    let d = place.json(&["-i", "myzk", "claim", "-p", "zk-d", "--range", "1..255"]);
    assert_eq!((&d["name"], &d["fencing_token"]), (&json!("2"), &json!(5)));
    assert_eq!(
        place.held("myzk"),
        held(&[("1", "zk-a"), ("2", "zk-d"), ("3", "zk-c")])
    );

    let err = place.fails(&["-i", "myzk", "claim", "-p", "zk-b", "release"], 3);
    assert!(
        err.contains("`zk-b` holds no claim in claim pool `myzk`"),
        "{err}"
    );
    place.fails(&["-i", "myzk", "claim", "-p", "zk-b", "get"], 3);
    let err = place.fails(
        &["-i", "myzk", "claim", "-p", "zk-e", "--range", "1..3"],
        11,
    );
    assert!(
        err.contains("claim pool `myzk` is exhausted: all 3 candidates are taken"),
        "{err}"
    );
    let err = place.fails(&["-i", "myzk", "counter", "next"], 4);
    assert!(
        err.contains("`myzk` is a claim pool, not a counter"),
        "{err}"
    );
    place.json(&["-i", "count", "counter", "next"]);
    let err = place.fails(&["-i", "count", "claim", "-p", "x", "--range", "1..3"], 4);
    assert!(
        err.contains("`count` is a counter, not a claim pool"),
        "{err}"
    );
    assert_eq!(
        place.json(&["-i", "myzk", "claim", "list"])["fencing_token"],
        5,
        "unchanged"
    );
    let rm = place.json(&["-i", "myzk", "claim", "rm"]);
    assert_eq!(
        (&rm["removed"], &rm["fencing_token"]),
        (&json!(true), &json!(5))
    );
    assert_eq!(place.held("myzk"), held(&[]));
}

#[test]
fn bad_candidates_and_arguments_are_usage_errors_that_write_nothing() {
    let place = Place::sqlite();
    fn c<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["-i", "p", "claim", "-p", "me"];
        args.extend_from_slice(extra);
        args
    }
    for (args, says) in [
        (
            c(&["--range", "1..257"]),
            "257 candidates given; the limit is 256",
        ),
        (c(&["--range", "5..1"]), "is empty"),
        (c(&["--range", "1-5"]), "not a range like 1..255"),
        (c(&["--range", "a..5"]), "not a whole number"),
        (c(&["--names", "a,b,a"]), "`a` is given more than once"),
        (c(&["--names", "a,,b"]), "candidate 2 is empty"),
        (
            c(&["--range", "1..3", "--names", "a"]),
            "cannot be used with",
        ),
        (c(&[]), "required arguments were not provided"),
        (c(&["--range", "1..3", "--", "true"]), "give --ttl too"),
        (
            c(&["--range", "1..3", "--ttl", "100ms"]),
            "too short to renew safely",
        ),
        (
            c(&[
                "--range",
                "1..3",
                "--ttl",
                "1s",
                "--",
                "no-such-command-anywhere",
            ]),
            "nothing was claimed",
        ),
        (
            c(&["--names-file", "/nonexistent/names.txt"]),
            "cannot read the names file",
        ),
        (
            vec!["-i", "p", "claim", "--range", "1..3"],
            "needs an owner",
        ),
        (vec!["-i", "p", "claim", "release"], "needs an owner"),
        (
            vec!["-i", "p", "claim", "--range", "1..3", "list"],
            "takes no candidates",
        ),
    ] {
        let err = place.fails(&args, 2);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let long = "x".repeat(257);
    let err = place.fails(&c(&["--names", &long]), 2);
    assert!(err.contains("the limit is 256"), "{err}");
    assert_eq!(
        place.json(&["-i", "p", "claim", "list"])["fencing_token"],
        0,
        "nothing written"
    );
}

#[test]
fn names_from_a_file_in_its_order() {
    let place = Place::sqlite();
    let file = place.path("mountains.txt");
    std::fs::write(
        &file,
        "# The highest mountains of North America\nDenali\nMount Logan\n\nPico de Orizaba\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    for (host, name) in [
        ("h1", "Denali"),
        ("h2", "Mount Logan"),
        ("h3", "Pico de Orizaba"),
    ] {
        let v = place.json(&["-i", "names", "claim", "-p", host, "--names-file", file]);
        assert_eq!(v["name"], name);
    }
    let err = place.fails(
        &["-i", "names", "claim", "-p", "h4", "--names-file", file],
        11,
    );
    assert!(err.contains("all 3 candidates are taken"), "{err}");
    place.json(&["-i", "names", "claim", "-p", "h2", "release"]);
    let v = place.json(&[
        "-i",
        "names",
        "claim",
        "-p",
        "h4",
        "--names",
        "Denali,Mount Logan",
    ]);
    assert_eq!(
        (&v["name"], &v["index"]),
        (&json!("Mount Logan"), &json!(1))
    );
}

/// A command runs under a leased claim: its name and token in the
/// environment, its exit status passed through, renewals while it runs, and
/// the claim released when it ends.
fn a_claim_held_around_a_command(place: &Place) {
    let script = r#"echo "$MONOTONE_ID $MONOTONE_CLAIM_NAME $MONOTONE_CLAIM_INDEX $MONOTONE_CLAIM_OWNER $MONOTONE_FENCING_TOKEN $MONOTONE_STORE" > "$OUT/env"; sleep 1; exit 7"#;
    let other = place.json(&["-i", "agents", "claim", "-p", "first", "--names", "a,b,c"]);
    assert_eq!(other["name"], "a");
    let runner = place.spawn(&[
        "-i", "agents", "claim", "-p", "me", "--names", "a,b,c", "--ttl", "600ms", "--", "sh",
        "-c", script,
    ]);
    place.await_file("env");
    std::thread::sleep(Duration::from_millis(500));
    let list = place.json(&["-i", "agents", "claim", "list"]);
    let mine = &list["claims"][1];
    assert_eq!((&mine["name"], &mine["owner"]), (&json!("b"), &json!("me")));
    assert_eq!(mine["lease"]["ttl_ms"], 600);
    assert!(
        mine["lease"]["renewals"].as_u64().unwrap() >= 1,
        "renewed: {mine}"
    );
    let out = runner.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "the claim is not printed around a command"
    );
    assert_eq!(
        place.read("env").trim(),
        format!("agents b 1 me 2 {}", place.url)
    );
    assert_eq!(place.held("agents"), held(&[("a", "first")]), "released");
    assert_eq!(
        place.json(&["-i", "agents", "claim", "list"])["fencing_token"],
        3
    );
}

/// Without a command: the claim is printed once made and held until stdin
/// closes, then released.
#[test]
fn a_claim_held_until_stdin_closes() {
    let place = Place::sqlite();
    let holder = place.hold(&[
        "-i", "p", "claim", "-p", "me", "--range", "1..3", "--ttl", "1s",
    ]);
    let doc = &holder.doc;
    assert_eq!((&doc["name"], &doc["new"]), (&json!("1"), &json!(true)));
    assert_eq!(doc["lease"]["ttl_ms"], 1000);
    assert_eq!(place.held("p"), held(&[("1", "me")]));
    holder.release();
    assert_eq!(place.held("p"), held(&[]), "released");
}

/// The store stops answering while the command runs: the command is killed
/// within the lease (SIGTERM, which it ignores, then SIGKILL) and monotone
/// exits with "claim lost", as the lock's outage tests do.
fn a_claim_whose_store_stops_answering_gets_its_command_killed(place: &Place) {
    command_killed_when_the_store_stops_answering(
        place,
        &["-i", "p", "claim", "-p", "me", "--range", "1..3"],
        "claim lost, command stopped",
    );
}

/// Tags go with the claim: in its document, `claim get` and `claim list`.
/// Claiming again with the same tags returns the claim; with other tags, or
/// a `--ttl` where the claim is permanent, is refused with 13 and changes
/// nothing.
fn tags_round_trip_and_a_changed_re_claim_exits_13(place: &Place) {
    let claim = |extra: &[&'static str]| {
        let mut args = vec!["-i", "zk", "claim", "-p", "zk-a", "--range", "1..5"];
        args.extend_from_slice(extra);
        args
    };
    let a = claim(&["-t", "addr=10.0.0.5", "-t", "port=2888"]);
    let made = place.json(&a);
    let tags = json!({"addr": "10.0.0.5", "port": "2888"});
    assert_eq!((&made["tags"], &made["new"]), (&tags, &json!(true)));
    let again = place.json(&a);
    assert_eq!((&again["tags"], &again["new"]), (&tags, &json!(false)));
    let get = place.json(&["-i", "zk", "claim", "-p", "zk-a", "get"]);
    assert_eq!(get["tags"], tags);
    let list = place.json(&["-i", "zk", "claim", "list"]);
    assert_eq!(list["claims"][0]["tags"], tags);
    for (args, says) in [
        (
            claim(&["-t", "addr=10.0.0.6", "-t", "port=2888"]),
            "asks for tags {addr=10.0.0.6, port=2888}",
        ),
        (
            claim(&["-t", "addr=10.0.0.5", "-t", "port=2888", "--ttl", "5s"]),
            "with no lease, which no holder can hold, and this claim asks for a lease",
        ),
    ] {
        let err = place.fails(&args, 13);
        assert!(err.contains(says), "{err}");
        assert!(err.contains("release it first"), "{err}");
    }
    let err = place.fails(&claim(&["-t", "bad"]), 2);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let list = place.json(&["-i", "zk", "claim", "list"]);
    assert_eq!(list["fencing_token"], 1, "nothing written");
}

/// 8 `claim -p host-a --ttl 1s -- CMD` at once: never two at once (each
/// waits for the holder before it to end), each ran, tokens growing.
fn one_owner_at_a_time(place: &Place) {
    let runs = place.record_runs(8, "0.05", |_| {
        [
            "-i", "agents", "claim", "-p", "host-a", "--names", "a,b,c", "--ttl", "1s",
        ]
        .map(String::from)
        .to_vec()
    });
    one_after_another(&runs);
    assert_eq!(place.held("agents"), held(&[]), "all released");
    // Meanwhile another holds it: --no-wait is not acquired, and changes
    // nothing; a permanent claim of the owner (without a holder) is refused
    // with 13 while it is leased.
    let holder = place.hold(&[
        "-i", "agents", "claim", "-p", "host-a", "--names", "a,b,c", "--ttl", "1s",
    ]);
    let before = place.json(&["-i", "agents", "claim", "list"]);
    let args = [
        "-i",
        "agents",
        "claim",
        "-p",
        "host-a",
        "--names",
        "a,b,c",
        "--ttl",
        "1s",
        "--no-wait",
        "--",
        "true",
    ];
    let err = place.fails(&args, 9);
    assert!(
        err.contains("claim not acquired") && err.contains("held by another holder"),
        "{err}"
    );
    place.fails(
        &["-i", "agents", "claim", "-p", "host-a", "--names", "a,b,c"],
        13,
    );
    assert_eq!(
        place.json(&["-i", "agents", "claim", "list"])["fencing_token"],
        before["fencing_token"]
    );
    holder.release();
}

on_each_store! {
    myids_from_a_range("claim-myids"),
    tags_round_trip_and_a_changed_re_claim_exits_13("claim-tags"),
    one_owner_at_a_time("claim-owner"),
    a_claim_held_around_a_command("claim-held"),
    a_claim_whose_store_stops_answering_gets_its_command_killed("claim-outage"),
}

/// A holder killed with SIGKILL: on the embedded store the kernel tells
/// that it is gone, so a claimer that waits (`--timeout`) gets the name at
/// once, with a larger token, rather than after watching it go unrenewed
/// for a full lease (a ttl of an hour here).
#[test]
fn a_waiting_claimer_takes_a_dead_holders_name() {
    let place = Place::sqlite();
    let mut holder = place.spawn(&[
        "-i",
        "one",
        "claim",
        "-p",
        "dead",
        "--names",
        "only",
        "--ttl",
        "1h",
        "--",
        "sh",
        "-c",
        r#"echo $MONOTONE_FENCING_TOKEN > "$OUT/token"; sleep 1000"#,
    ]);
    place.await_file("token");
    place.fails(&["-i", "one", "claim", "-p", "new", "--names", "only"], 11);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let started = Instant::now();
    let v = place.json(&[
        "-i",
        "one",
        "claim",
        "-p",
        "new",
        "--names",
        "only",
        "--timeout",
        "10s",
        "--poll",
        "100ms",
    ]);
    let took = started.elapsed();
    assert_eq!(v["name"], "only");
    let dead: u64 = place.read("token").trim().parse().unwrap();
    assert!(
        v["fencing_token"].as_u64().unwrap() > dead + 1,
        "expired, then claimed: {v}"
    );
    assert!(
        took < Duration::from_secs(60),
        "waited {took:?}: the holder's death was not seen"
    );
    assert_eq!(place.held("one"), held(&[("only", "new")]));
}
