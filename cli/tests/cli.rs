//! The `monotone` binary driven as a user drives it: arguments in, JSON on
//! stdout, one line on stderr and an exit code on failure. Every test uses its
//! own temporary SQLite file (or data directory), never the user's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use tempfile::TempDir;

mod binary;
use binary::{fails, json_of_all, monotone, numbers, on_threads};

/// A temporary directory holding the store file of one test, which its
/// commands find through `MONOTONE_STORE`, and their `HOME`.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("monotone.db")
    }

    /// `monotone ARGS` with the sandbox's file as the store.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = monotone();
        cmd.env("HOME", self.dir.path())
            .env("MONOTONE_STORE", format!("sqlite:{}", self.db().display()))
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Run, expect success, parse stdout as JSON (see [`binary::json`]).
    fn json(&self, args: &[&str]) -> Value {
        binary::json(self.run(args), args)
    }

    /// Run, expect failure with `code`; return the one stderr line (see
    /// [`binary::fails`]).
    fn fails(&self, args: &[&str], code: i32) -> String {
        fails(self.run(args), code, args)
    }

    /// Run with `input` on standard input.
    fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        binary::output_with_input(self.command(args), input)
    }

    /// Run with `input` on standard input, expect success, parse stdout.
    fn json_with_input(&self, args: &[&str], input: &str) -> Value {
        binary::json(self.run_with_input(args, input), args)
    }
}

/// The session of monotone 0.4's README, output compared as text: field
/// names, order, nesting and values.
#[test]
fn readme_session_of_monotone_0_4() {
    let s = Sandbox::new();
    let table = s.db().display().to_string();
    let text = |args: &[&str]| {
        let out = s.run(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    binary::readme_session_of_monotone_0_4(text, "local", &table);
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn counter_commands_field_by_field() {
    let s = Sandbox::new();
    let table = s.db().display().to_string();
    let v = s.json(&["-i", "c", "counter", "get"]);
    assert_eq!(
        v,
        json!({"id": "c", "value": 0, "region": "local", "table": table})
    );
    for expected in 1..=3 {
        let v = s.json(&["-i", "c", "counter", "next"]);
        assert_eq!(keys(&v), ["id", "region", "table", "value"]);
        assert_eq!(v["value"], expected);
    }
    assert_eq!(s.json(&["-i", "c", "counter", "get"])["value"], 3);
    let v = s.json(&["-i", "c", "counter", "rm"]);
    assert_eq!(
        v,
        json!({"id": "c", "value": 3, "region": "local", "table": table, "removed": true})
    );
    let v = s.json(&["-i", "c", "counter", "rm"]);
    assert_eq!((&v["value"], &v["removed"]), (&json!(0), &json!(false)));
    assert_eq!(s.json(&["-i", "c", "counter", "next"])["value"], 1);
}

#[test]
fn queue_commands_field_by_field() {
    let s = Sandbox::new();
    let table = s.db().display().to_string();
    let join_a = [
        "-i",
        "q",
        "queue",
        "-p",
        "a",
        "join",
        "-t",
        "role=zk",
        "-t",
        "az=eu-west-1a",
    ];
    let a = s.json(&join_a);
    assert_eq!(
        a,
        json!({
            "id": "q", "region": "local", "table": table, "fencing_token": 1,
            "ticket": {"process_id": "a", "counter": 1, "position": 0,
                       "tags": {"role": "zk", "az": "eu-west-1a"}, "lease": null}
        })
    );
    // -p may also follow the action.
    let b = s.json(&["-i", "q", "queue", "join", "-p", "b"]);
    assert_eq!(b["fencing_token"], 2);
    assert_eq!(
        b["ticket"],
        json!({"process_id": "b", "counter": 2, "position": 1, "tags": {}, "lease": null})
    );
    // Joining again with the same tags returns the same ticket and the
    // current token; with other tags, it is refused (13).
    let again = s.json(&join_a);
    assert_eq!(again["ticket"], a["ticket"]);
    assert_eq!(again["fencing_token"], 2);
    let err = s.fails(
        &["-i", "q", "queue", "-p", "a", "join", "-t", "other=tag"],
        13,
    );
    assert!(err.contains("leave the queue first"), "{err}");
    let got = s.json(&["-i", "q", "queue", "-p", "b", "get"]);
    assert_eq!(got, b);
    let list = s.json(&["-i", "q", "queue", "list"]);
    assert_eq!(
        keys(&list),
        ["fencing_token", "id", "region", "table", "tickets"]
    );
    assert_eq!(list["fencing_token"], 2);
    assert_eq!(list["tickets"], json!([a["ticket"], b["ticket"]]));
    let left = s.json(&["-i", "q", "queue", "-p", "a", "leave"]);
    assert_eq!(
        left,
        json!({"id": "q", "region": "local", "table": table, "fencing_token": 3})
    );
    let list = s.json(&["-i", "q", "queue", "list"]);
    assert_eq!(
        list["tickets"],
        json!([{"process_id": "b", "counter": 2, "position": 0, "tags": {}, "lease": null}])
    );
    let rm = s.json(&["-i", "q", "queue", "rm"]);
    assert_eq!(
        rm,
        json!({"id": "q", "region": "local", "table": table, "fencing_token": 3, "removed": true})
    );
    let rm = s.json(&["-i", "q", "queue", "rm"]);
    assert_eq!(
        (&rm["fencing_token"], &rm["removed"]),
        (&json!(0), &json!(false))
    );
    let list = s.json(&["-i", "q", "queue", "list"]);
    assert_eq!(
        (&list["fencing_token"], &list["tickets"]),
        (&json!(0), &json!([]))
    );
}

#[test]
fn default_store_is_the_xdg_data_file_created_on_first_use() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let run = |xdg: Option<&Path>| {
        let mut cmd = monotone();
        cmd.env("HOME", home.path());
        if let Some(x) = xdg {
            cmd.env("XDG_DATA_HOME", x);
        }
        let out = cmd.args(["-i", "c", "counter", "next"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let xdg_file = data.path().join("monotone/monotone.db");
    let v = run(Some(data.path()));
    assert_eq!(v["table"], xdg_file.display().to_string());
    assert_eq!(v["value"], 1);
    assert!(xdg_file.is_file());
    assert_eq!(
        run(Some(data.path()))["value"],
        2,
        "the same file next time"
    );
    let home_file = home.path().join(".local/share/monotone/monotone.db");
    let v = run(None);
    assert_eq!(v["table"], home_file.display().to_string());
    assert_eq!(v["value"], 1);
    assert!(home_file.is_file());
}

#[test]
fn store_flag_and_environment() {
    let s = Sandbox::new();
    let other = s.dir.path().join("other.db");
    let url = format!("sqlite://{}", other.display());
    let v = s.json(&["--store", &url, "-i", "c", "counter", "next"]);
    assert_eq!(v["table"], other.display().to_string());
    // The flag wins over MONOTONE_STORE, which the sandbox sets.
    assert_eq!(s.json(&["-i", "c", "counter", "get"])["value"], 0);
    let v = s.json(&["--store", "memory:", "-i", "c", "counter", "next"]);
    assert_eq!(
        v,
        json!({"id": "c", "value": 1, "region": "local", "table": "memory"})
    );
}

#[test]
fn usage_errors_exit_2() {
    let s = Sandbox::new();
    let long = "x".repeat(monotone::MAX_ID_BYTES + 1);
    let cases: &[(&[&str], &str)] = &[
        (
            &["-i", "c", "counter", "get", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (&["counter", "get"], "--id"),
        (&["-i", "c", "counter", "frobnicate"], "frobnicate"),
        (&["-i", "", "counter", "get"], "id must not be empty"),
        (&["-i", &long, "counter", "next"], "the limit is 1024"),
        (&["-i", "bad\nid", "counter", "next"], "control character"),
        (&["-i", "q", "queue", "join"], "needs a process id"),
        (&["-i", "q", "queue", "get"], "needs a process id"),
        (&["-i", "q", "queue", "leave"], "needs a process id"),
        (
            &["-i", "q", "queue", "-p", "", "join"],
            "process id must not be empty",
        ),
        (
            &["-i", "q", "queue", "-p", "a", "join", "-t", "novalue"],
            "KEY=VALUE",
        ),
        (
            &["-i", "q", "queue", "-p", "a", "join", "-t", "=v"],
            "empty key",
        ),
        (
            &[
                "-i", "q", "queue", "-p", "a", "join", "-t", "k=1", "-t", "k=2",
            ],
            "more than once",
        ),
        (
            &["--store", "memory:", "-t", "T", "-i", "c", "counter", "get"],
            "cannot be used with",
        ),
    ];
    for (args, needle) in cases {
        let line = s.fails(args, 2);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    // None of that wrote anything.
    assert_eq!(s.json(&["-i", "q", "queue", "list"])["fencing_token"], 0);
}

#[test]
fn not_found_exits_3_and_wrong_type_exits_4() {
    let s = Sandbox::new();
    let line = s.fails(&["-i", "q", "queue", "-p", "a", "leave"], 3);
    assert!(line.contains("queue `q` does not exist"), "{line}");
    s.json(&["-i", "q", "queue", "-p", "a", "join"]);
    let line = s.fails(&["-i", "q", "queue", "-p", "b", "get"], 3);
    assert!(line.contains("`b`") && line.contains("`q`"), "{line}");
    s.fails(&["-i", "q", "queue", "-p", "b", "leave"], 3);

    for action in ["get", "next", "rm"] {
        let line = s.fails(&["-i", "q", "counter", action], 4);
        assert!(line.contains("`q` is a queue, not a counter"), "{line}");
    }
    s.json(&["-i", "c", "counter", "next"]);
    for args in [
        &["-i", "c", "queue", "-p", "a", "join"][..],
        &["-i", "c", "queue", "-p", "a", "leave"],
        &["-i", "c", "queue", "-p", "a", "get"],
        &["-i", "c", "queue", "list"],
        &["-i", "c", "queue", "rm"],
    ] {
        let line = s.fails(args, 4);
        assert!(line.contains("`c` is a counter, not a queue"), "{line}");
    }
    // Nothing changed.
    assert_eq!(s.json(&["-i", "c", "counter", "get"])["value"], 1);
    assert_eq!(s.json(&["-i", "q", "queue", "list"])["fencing_token"], 1);
}

#[test]
fn a_locked_store_is_contention_exit_5() {
    let s = Sandbox::new();
    s.json(&["-i", "c", "counter", "next"]);
    // Another writer holds the file's write lock for the whole run.
    let conn = rusqlite::Connection::open(s.db()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let url = format!("sqlite:{}?busy_timeout_ms=200", s.db().display());
    let line = s.fails(&["--store", &url, "-i", "c", "counter", "next"], 5);
    assert!(line.contains("locked"), "{line}");
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        s.json(&["-i", "c", "counter", "next"])["value"],
        2,
        "nothing was lost"
    );
}

#[test]
fn misconfigured_stores_exit_7_and_are_left_alone() {
    let s = Sandbox::new();
    let notes = s.dir.path().join("notes.txt");
    let content = "my notes, not a database\n".repeat(100);
    std::fs::write(&notes, &content).unwrap();
    let url = format!("sqlite:{}", notes.display());
    let line = s.fails(&["--store", &url, "-i", "c", "counter", "next"], 7);
    assert!(line.contains("not a monotone database"), "{line}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), content);

    let dir_url = format!("sqlite:{}", s.dir.path().display());
    s.fails(&["--store", &dir_url, "-i", "c", "counter", "next"], 7);
    let line = s.fails(
        &["--store", "redis://localhost", "-i", "c", "counter", "next"],
        7,
    );
    assert!(line.contains("unknown store scheme"), "{line}");
    let line = s.fails(
        &[
            "--store",
            "sqlite:/x.db?cache=1",
            "-i",
            "c",
            "counter",
            "next",
        ],
        7,
    );
    assert!(line.contains("unknown option"), "{line}");
    // MONOTONE_STORE is checked the same way.
    let out = s
        .command(&["-i", "c", "counter", "next"])
        .env("MONOTONE_STORE", "bogus")
        .output()
        .unwrap();
    fails(out, 7, &["MONOTONE_STORE=bogus"]);
}

#[test]
fn corrupt_records_exit_8_and_are_not_overwritten() {
    let s = Sandbox::new();
    s.json(&["-i", "q", "queue", "-p", "a", "join"]);
    let conn = rusqlite::Connection::open(s.db()).unwrap();
    conn.execute(
        "UPDATE tickets SET tags = '[1, 2' WHERE process_id = 'a'",
        [],
    )
    .unwrap();
    let line = s.fails(&["-i", "q", "queue", "list"], 8);
    assert!(line.contains("`q`") && line.contains("`a`"), "{line}");
    s.fails(&["-i", "q", "queue", "-p", "a", "join"], 8);
    let tags: String = conn
        .query_row("SELECT tags FROM tickets WHERE process_id = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(tags, "[1, 2");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let s = Sandbox::new();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // nobody will ever read: writing gets EPIPE
    let status = s
        .command(&["-i", "c", "counter", "next"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    binary::succeeded(&status, &["-i", "c", "counter", "next"]);
    assert_eq!(s.json(&["-i", "c", "counter", "get"])["value"], 1);
}

#[test]
fn help_explains_stores_and_exit_codes() {
    let out = monotone().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--store",
        "MONOTONE_STORE",
        "XDG_DATA_HOME",
        ".local/share/monotone/monotone.db",
        "dynamodb://",
        "eu-west-1",
        "3  not found",
        "jq .ticket.counter",
        "12  --if-version",
        "doc watch --from-version 0",
        "tally add -- -3",
        "serve --listen",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    let out = monotone().arg("--version").output().unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("monotone "));
}

/// 16 processes at a time, each running `counter next` 10 times.
#[test]
fn concurrent_processes_never_repeat_a_value() {
    let s = Sandbox::new();
    let values: Vec<u64> = on_threads(16, |_| {
        (0..10)
            .map(|_| {
                s.json(&["-i", "c", "counter", "next"])["value"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    });
    let mut sorted = values.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=160).collect::<Vec<_>>());
    assert_eq!(s.json(&["-i", "c", "counter", "get"])["value"], 160);
}

/// 24 processes join one queue at once.
#[test]
fn concurrent_joins_get_distinct_tickets() {
    let s = Sandbox::new();
    let outputs = json_of_all(
        (0..24).map(|i| s.command(&["-i", "zk", "queue", "-p", &format!("host{i}"), "join"])),
    );
    assert_eq!(numbers(&outputs, "/ticket/counter"), (1..=24).collect());
    assert_eq!(numbers(&outputs, "/fencing_token"), (1..=24).collect());
    let list = s.json(&["-i", "zk", "queue", "list"]);
    let tickets = list["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 24);
    for (i, t) in tickets.iter().enumerate() {
        assert_eq!(t["position"], i);
        assert_eq!(t["counter"], i + 1);
    }
}

/// Leased tickets from the shell: a holder that stops renewing is removed by
/// the next process's `wait`, which then leads with a larger token.
#[test]
fn leased_join_renew_and_wait() {
    let s = Sandbox::new();
    let a = s.json(&["-i", "lead", "queue", "-p", "a", "join", "--ttl", "300ms"]);
    assert_eq!(a["ticket"]["lease"]["ttl_ms"], 300);
    assert_eq!(a["ticket"]["lease"]["renewals"], 0);
    let renewed = s.json(&["-i", "lead", "queue", "-p", "a", "renew"]);
    assert_eq!(renewed["ticket"]["lease"]["renewals"], 1);
    assert_eq!(renewed["fencing_token"], 1);
    let b = s.json(&["-i", "lead", "queue", "-p", "b", "join", "--ttl", "30s"]);
    assert_eq!(b["ticket"]["position"], 1);
    // Not the head, and not waiting: exit code 9 at once.
    let msg = s.fails(
        &["-i", "lead", "queue", "-p", "b", "wait", "--timeout", "0s"],
        9,
    );
    assert!(msg.contains("position 1"), "{msg}");
    // `a` is never renewed again: `b`'s wait removes it after a full lease.
    let started = std::time::Instant::now();
    let led = s.json(&["-i", "lead", "queue", "-p", "b", "wait", "--timeout", "20s"]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(led["ticket"]["process_id"], "b");
    assert_eq!(led["ticket"]["position"], 0);
    assert_eq!(led["fencing_token"], 3, "the removal was a write");
    // The removed holder finds out when it renews.
    s.fails(&["-i", "lead", "queue", "-p", "a", "renew"], 3);
    let list = s.json(&["-i", "lead", "queue", "list"]);
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1);
}

#[test]
fn lease_usage_errors() {
    let s = Sandbox::new();
    s.json(&["-i", "q", "queue", "-p", "perm", "join"]);
    for (args, code, says) in [
        (vec!["join", "--ttl", "soon"], 2, "not a duration"),
        (
            vec!["join", "--ttl", "10ms"],
            2,
            "too short to renew safely",
        ),
        (
            vec!["join", "--ttl", "3days"],
            2,
            "longer than the longest lease",
        ),
        (vec!["wait", "--position", "0"], 2, "0"),
        (vec!["wait", "--timeout", "-1s"], 2, "`-1s` is negative"),
    ] {
        let mut all = vec!["-i", "q", "queue", "-p", "x"];
        all.extend(args);
        let msg = s.fails(&all, code);
        assert!(msg.contains(says), "{all:?}: {msg}");
    }
    let msg = s.fails(&["-i", "q", "queue", "-p", "perm", "renew"], 2);
    assert!(msg.contains("permanent"), "{msg}");
    s.fails(&["-i", "q", "queue", "-p", "nobody", "renew"], 3);
    s.fails(&["-i", "q", "queue", "-p", "nobody", "wait"], 3);
    s.json(&["-i", "c", "counter", "next"]);
    s.fails(&["-i", "c", "queue", "-p", "x", "wait"], 4);
    // Nothing of that wrote anything.
    assert_eq!(s.json(&["-i", "q", "queue", "list"])["fencing_token"], 1);
}

#[test]
fn doc_commands_field_by_field() {
    let s = Sandbox::new();
    let table = s.db().display().to_string();
    let v = s.json(&["-i", "d", "doc", "get"]);
    assert_eq!(
        v,
        json!({"id": "d", "region": "local", "table": table, "version": 0, "exists": false, "value": null})
    );
    let v = s.json_with_input(
        &["-i", "d", "doc", "set"],
        r#"{"globs": ["/bin/*"], "level": 1}"#,
    );
    assert_eq!(
        v,
        json!({"id": "d", "region": "local", "table": table, "version": 1, "exists": true,
               "value": {"globs": ["/bin/*"], "level": 1}})
    );
    // From a file, and `-` for standard input.
    let file = s.dir.path().join("patch.json");
    std::fs::write(&file, r#"{"level": null, "extra": {"x": 1}}"#).unwrap();
    let v = s.json(&["-i", "d", "doc", "patch", file.to_str().unwrap()]);
    assert_eq!(v["version"], 2);
    assert_eq!(v["value"], json!({"globs": ["/bin/*"], "extra": {"x": 1}}));
    let v = s.json_with_input(
        &["-i", "d", "doc", "patch", "--if-version", "2", "-"],
        r#"{"extra": {"y": 2}}"#,
    );
    assert_eq!(v["version"], 3);
    assert_eq!(v["value"]["extra"], json!({"x": 1, "y": 2}));
    let v = s.json_with_input(&["-i", "d", "doc", "set", "--if-version", "3"], "null");
    assert_eq!(
        (&v["version"], &v["exists"], &v["value"]),
        (&json!(4), &json!(true), &Value::Null)
    );
    assert_eq!(s.json(&["-i", "d", "doc", "get"])["version"], 4);
    let v = s.json(&["-i", "d", "doc", "rm"]);
    assert_eq!(
        v,
        json!({"id": "d", "region": "local", "table": table, "version": 5, "removed": true})
    );
    let v = s.json(&["-i", "d", "doc", "rm"]);
    assert_eq!((&v["version"], &v["removed"]), (&json!(5), &json!(false)));
    let v = s.json(&["-i", "d", "doc", "get"]);
    assert_eq!((&v["version"], &v["exists"]), (&json!(5), &json!(false)));
    // Written again, it goes on from there.
    let v = s.json_with_input(&["-i", "d", "doc", "set", "--if-version", "5"], "[1]");
    assert_eq!(v["version"], 6);
    let v = s.json(&["-i", "d", "doc", "rm", "--if-version", "6"]);
    assert_eq!((&v["version"], &v["removed"]), (&json!(7), &json!(true)));
}

#[test]
fn a_failed_if_version_exits_12_naming_the_current_version() {
    let s = Sandbox::new();
    s.json_with_input(&["-i", "d", "doc", "set"], r#"{"a": 1}"#);
    s.json_with_input(&["-i", "d", "doc", "set"], r#"{"a": 2}"#);
    for (args, input) in [
        (&["-i", "d", "doc", "set", "--if-version", "1"][..], "{}"),
        (&["-i", "d", "doc", "set", "--if-version", "0"], "{}"),
        (
            &["-i", "d", "doc", "patch", "--if-version", "1"],
            r#"{"b": 1}"#,
        ),
        (&["-i", "d", "doc", "rm", "--if-version", "3"], ""),
    ] {
        let line = fails(s.run_with_input(args, input), 12, args);
        assert!(line.contains("at version 2"), "{line}");
    }
    let v = s.json(&["-i", "d", "doc", "get"]);
    assert_eq!(
        (&v["version"], &v["value"]),
        (&json!(2), &json!({"a": 2})),
        "nothing written"
    );
}

#[test]
fn doc_input_and_type_errors() {
    let s = Sandbox::new();
    let bad =
        |args: &[&str], input: &str, code: i32| fails(s.run_with_input(args, input), code, args);
    assert!(bad(&["-i", "d", "doc", "set"], "{not json", 2).contains("not one JSON value"));
    assert!(bad(&["-i", "d", "doc", "set"], "1 2", 2).contains("not one JSON value"));
    assert!(bad(&["-i", "d", "doc", "set", "/no/such/file"], "", 2).contains("/no/such/file"));
    let big = format!("\"{}\"", "x".repeat(400 * 1024));
    assert!(bad(&["-i", "d", "doc", "set"], &big, 2).contains("limit"));
    s.json(&["-i", "c", "counter", "next"]);
    let line = bad(&["-i", "c", "doc", "get"], "", 4);
    assert!(line.contains("`c` is a counter, not a document"), "{line}");
    s.json_with_input(&["-i", "d", "doc", "set"], "{}");
    let line = bad(&["-i", "d", "counter", "next"], "", 4);
    assert!(line.contains("`d` is a document, not a counter"), "{line}");
    bad(&["-i", "d", "queue", "list"], "", 4);
    assert_eq!(s.json(&["-i", "d", "doc", "get"])["version"], 1);
}

/// Read one line from the watcher's stdout, failing after a while.
fn next_line(lines: &std::sync::mpsc::Receiver<String>) -> Value {
    let line = lines
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a line from doc watch");
    serde_json::from_str(&line).expect("each line is one JSON document")
}

#[test]
fn doc_watch_prints_a_line_per_change_and_ends_cleanly_on_sigterm() {
    let s = Sandbox::new();
    s.json_with_input(&["-i", "d", "doc", "set"], r#"{"globs": ["/bin/*"]}"#);
    let mut watcher = s
        .command(&[
            "-i",
            "d",
            "doc",
            "watch",
            "--from-version",
            "0",
            "--poll",
            "20ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            tx.send(line.unwrap()).unwrap();
        }
    });
    // The whole document first, as added keys.
    let first = next_line(&lines);
    let table = s.db().display().to_string();
    assert_eq!(
        first,
        json!({"id": "d", "region": "local", "table": table, "version": 1, "since": 0,
               "folded": false, "exists": true, "value": {"globs": ["/bin/*"]},
               "diff": {"added": {"globs": ["/bin/*"]}, "modified": {}, "removed": {}}})
    );
    s.json_with_input(
        &["-i", "d", "doc", "patch"],
        r#"{"globs": ["/bin/*", "/sbin/*"]}"#,
    );
    let second = next_line(&lines);
    assert_eq!(
        (&second["version"], &second["since"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(
        second["diff"]["modified"]["globs"],
        json!({"old": ["/bin/*"], "new": ["/bin/*", "/sbin/*"]})
    );
    s.json(&["-i", "d", "doc", "rm"]);
    let third = next_line(&lines);
    assert_eq!(
        (&third["version"], &third["exists"]),
        (&json!(3), &json!(false))
    );

    let status = Command::new("kill")
        .args(["-TERM", &watcher.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = watcher.wait_with_output().unwrap();
    reader.join().unwrap();
    binary::succeeded(&out, &["doc", "watch"]);
}

#[test]
fn doc_watch_from_now_and_on_a_closed_stdout() {
    let s = Sandbox::new();
    s.json_with_input(&["-i", "d", "doc", "set"], r#"{"a": 1}"#);
    // Without --from-version: only what comes next. `head -1` closes the
    // pipe after one line; the watcher then exits 0 at its next line.
    let mut watcher = s
        .command(&["-i", "d", "doc", "watch", "--poll", "20ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = watcher.stdout.take().unwrap();
    // Time for the watcher to read the version it starts from (a wait, not
    // an assertion: a late start would only make the test hang and fail).
    std::thread::sleep(std::time::Duration::from_secs(1));
    s.json_with_input(&["-i", "d", "doc", "set"], r#"{"a": 2}"#);
    let mut first = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        use std::io::Read;
        stdout.read_exact(&mut byte).unwrap();
        if byte[0] == b'\n' {
            break;
        }
        first.push(byte[0]);
    }
    let line: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!((&line["version"], &line["since"]), (&json!(2), &json!(1)));
    drop(stdout);
    s.json_with_input(&["-i", "d", "doc", "set"], r#"{"a": 3}"#);
    let out = watcher.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tally_commands_field_by_field() {
    let s = Sandbox::new();
    let table = s.db().display().to_string();
    let v = s.json(&["-i", "t", "tally", "get"]);
    assert_eq!(
        v,
        json!({"id": "t", "value": 0, "version": 0, "consistent": true,
               "region": "local", "table": table})
    );
    // Every way to give an amount, either sign.
    for (args, value, version) in [
        (&["5"][..], 5, 1),
        (&["--", "-3"], 2, 2),
        (&["--by", "-3"], -1, 3),
        (&["--by=10"], 9, 4),
        (&["-10"], -1, 5),
        (&["0"], -1, 6),
    ] {
        let mut argv = vec!["-i", "t", "tally", "add"];
        argv.extend_from_slice(args);
        let v = s.json(&argv);
        assert_eq!(
            keys(&v),
            ["consistent", "id", "region", "table", "value", "version"]
        );
        assert_eq!(
            (&v["value"], &v["version"]),
            (&json!(value), &json!(version)),
            "{args:?}"
        );
        assert_eq!(v["consistent"], true);
    }
    let v = s.json(&["-i", "t", "tally", "get", "--stale"]);
    assert_eq!(
        (&v["value"], &v["version"], &v["consistent"]),
        (&json!(-1), &json!(6), &json!(false))
    );
    let v = s.json(&["-i", "t", "tally", "rm"]);
    assert_eq!(
        v,
        json!({"id": "t", "value": -1, "version": 6, "region": "local", "table": table,
               "removed": true})
    );
    let v = s.json(&["-i", "t", "tally", "rm"]);
    assert_eq!(
        (&v["value"], &v["version"], &v["removed"]),
        (&json!(0), &json!(0), &json!(false))
    );
}

#[test]
fn tally_failures_and_their_exit_codes() {
    let s = Sandbox::new();
    for (args, needle) in [
        (&["-i", "t", "tally", "add"][..], "<N>"),
        (
            &["-i", "t", "tally", "add", "1", "--by", "2"],
            "cannot be used with",
        ),
        (&["-i", "t", "tally", "add", "1.5"], "1.5"),
        (
            &["-i", "t", "tally", "add", "9223372036854775808"],
            "9223372036854775808",
        ),
        (&["-i", "t", "tally", "add", "--by"], "--by"),
    ] {
        let line = s.fails(args, 2);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    s.json(&["-i", "t", "tally", "add", "9223372036854775800"]);
    let line = s.fails(&["-i", "t", "tally", "add", "8"], 2);
    assert!(
        line.contains("tally `t` holds 9223372036854775800; adding 8"),
        "{line}"
    );
    assert_eq!(
        s.json(&["-i", "t", "tally", "get"])["version"],
        1,
        "nothing added"
    );

    s.json(&["-i", "c", "counter", "next"]);
    s.json(&["-i", "q", "queue", "-p", "a", "join"]);
    for (id, found) in [("c", "counter"), ("q", "queue")] {
        for action in [&["add", "1"][..], &["get"], &["get", "--stale"], &["rm"]] {
            let mut argv = vec!["-i", id, "tally"];
            argv.extend_from_slice(action);
            let line = s.fails(&argv, 4);
            assert!(
                line.contains(&format!("`{id}` is a {found}, not a tally")),
                "{line}"
            );
        }
    }
    let line = s.fails(&["-i", "t", "counter", "next"], 4);
    assert!(line.contains("`t` is a tally, not a counter"), "{line}");
    let line = s.fails(&["-i", "t", "queue", "-p", "a", "join"], 4);
    assert!(line.contains("`t` is a tally, not a queue"), "{line}");
}

/// 16 processes at a time, each adding 8 amounts of both signs.
#[test]
fn concurrent_processes_lose_no_add() {
    let s = Sandbox::new();
    let amount = |p: i64, i: i64| if (p + i) % 2 == 0 { p + i } else { -2 * i - 1 };
    let versions: Vec<u64> = on_threads(16, |p| {
        (0..8)
            .map(|i| {
                let n = amount(p as i64, i).to_string();
                s.json(&["-i", "pool", "tally", "add", "--by", &n])["version"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    });
    let mut sorted = versions;
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=128).collect::<Vec<_>>());
    let sum: i64 = (0..16)
        .flat_map(|p| (0..8).map(move |i| amount(p, i)))
        .sum();
    let v = s.json(&["-i", "pool", "tally", "get"]);
    assert_eq!((&v["value"], &v["version"]), (&json!(sum), &json!(128)));
}
