//! The CLI keeps its promises when used as operators use it (issue 16), on
//! every store: `-p` where it means nothing is refused and changes nothing;
//! a command that cannot be run takes nothing (or, when only its start can
//! tell, exits 127 with the lock released); a closed stdout ends `doc watch`
//! and the holders that print, at once; an identical document write is no
//! write, with or without `--if-version`. Then what needs no store: usage
//! lines, negative numbers, hints, completions and the manual page.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod binary;
mod place;
use binary::{monotone, BIN};
use place::Place;

on_each_store! {
    p_on_rm_and_list_is_refused_and_changes_nothing("p-rm"),
    a_command_that_cannot_run_takes_nothing("unrunnable"),
    what_only_the_start_can_tell_exits_127_with_the_lock_released("exec-127"),
    doc_watch_piped_into_head_exits_when_head_does("watch-head"),
    holders_that_print_end_when_their_stdout_is_closed("holder-stdout"),
    identical_document_writes_follow_one_rule("same-doc"),
    lists_of_ids_never_written_say_so("exists"),
    claims_are_listed_by_name_whatever_the_candidates("claim-order"),
}

fn p_on_rm_and_list_is_refused_and_changes_nothing(place: &Place) {
    place.json(&["-i", "q", "queue", "-p", "a", "join"]);
    place.json(&["-i", "q", "queue", "-p", "b", "join"]);
    for args in [
        &["-i", "q", "queue", "-p", "a", "rm"][..],
        &["-i", "q", "queue", "rm", "-p", "a"],
        &["-i", "q", "queue", "-p", "a", "list"],
    ] {
        let line = place.fails(args, 2);
        assert!(
            line.contains("takes no -p") && line.contains("nothing was changed"),
            "{line}"
        );
    }
    let list = place.json(&["-i", "q", "queue", "list"]);
    assert_eq!(list["fencing_token"], 2);
    assert_eq!(
        strings(&list["tickets"], "process_id"),
        ["a", "b"],
        "every ticket is still there"
    );

    place.json(&["-i", "pool", "claim", "-p", "x", "--range", "1..3"]);
    place.json(&["-i", "pool", "claim", "-p", "y", "--range", "1..3"]);
    for args in [
        &["-i", "pool", "claim", "-p", "x", "rm"][..],
        &["-i", "pool", "claim", "-p", "x", "list"],
    ] {
        let line = place.fails(args, 2);
        assert!(line.contains("takes no -p"), "{line}");
    }
    let list = place.json(&["-i", "pool", "claim", "list"]);
    assert_eq!(list["fencing_token"], 2);
    assert_eq!(list["claims"].as_array().unwrap().len(), 2);
    // The help says which subcommands take -p.
    let help = place.run(&["-i", "q", "queue", "--help"]);
    let help = String::from_utf8(help.stdout).unwrap();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("for get, join, renew, wait and leave (list and rm act on the whole queue and refuse it)"),
        "{help}"
    );
}

/// The string `field` of every entry of the list `entries`.
fn strings<'a>(entries: &'a Value, field: &str) -> Vec<&'a str> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[field].as_str().unwrap())
        .collect()
}

/// A file in the place's directory with `text` and `mode`.
fn script(place: &Place, name: &str, text: &str, mode: u32) -> PathBuf {
    let file = place.path(name);
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    file
}

/// A new file in the place's directory holding `text`: its path.
fn input(place: &Place, text: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let file = place.path(&format!("input-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_owned()
}

fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn a_command_that_cannot_run_takes_nothing(place: &Place) {
    let bad = script(
        place,
        "bad-interpreter.sh",
        "#!/nonexistent/bin/bash\necho ran > \"$OUT/ran\"\n",
        0o755,
    );
    let plain = script(place, "not-executable.sh", "#!/bin/sh\necho ran\n", 0o644);
    let cases: [(&str, &str); 4] = [
        (text(&bad), "its interpreter /nonexistent/bin/bash"),
        (text(&plain), "not executable"),
        ("/etc", "directory"),
        ("no-such-command-for-monotone", "not found"),
    ];
    for (program, why) in cases {
        let line = place.fails(&["-i", "job", "lock", "--", program], 2);
        assert!(
            line.contains(&format!("cannot run `{program}`"))
                && line.contains(why)
                && line.ends_with("nothing was locked"),
            "{line}"
        );
        let line = place.fails(
            &[
                "-i", "pool", "claim", "-p", "o", "--range", "1..3", "--ttl", "2s", "--", program,
            ],
            2,
        );
        assert!(
            line.contains(why) && line.ends_with("nothing was claimed"),
            "{line}"
        );
    }
    // Nothing was taken, nothing was run: no queue and no pool were written.
    let queue = place.json(&["-i", "job", "queue", "list"]);
    assert_eq!(
        (&queue["fencing_token"], &queue["exists"]),
        (&json!(0), &json!(false))
    );
    let pool = place.json(&["-i", "pool", "claim", "list"]);
    assert_eq!(
        (&pool["fencing_token"], &pool["exists"]),
        (&json!(0), &json!(false))
    );
    assert_eq!(place.read("ran"), "");
}

/// A script whose interpreter is itself a script with a missing
/// interpreter passes the check (its own interpreter exists and may be
/// executed) and fails at its start: 127, as `env` gives, one line saying
/// so, and the lock was taken and given back (the token grew by 2).
fn what_only_the_start_can_tell_exits_127_with_the_lock_released(place: &Place) {
    let inner = script(place, "inner", "#!/nonexistent/interpreter\n", 0o755);
    let outer = script(
        place,
        "outer",
        &format!("#!{}\necho ran\n", text(&inner)),
        0o755,
    );
    let out = place.run(&["-i", "job", "lock", "--", text(&outer)]);
    let err = binary::stderr(&out);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("monotone: error: cannot run `{}`", text(&outer))),
        "{err}"
    );
    let queue = place.json(&["-i", "job", "queue", "list"]);
    assert_eq!(
        (&queue["fencing_token"], &queue["tickets"]),
        (&json!(2), &json!([])),
        "joined, then left: nothing held"
    );
    let out = place.run(&[
        "-i",
        "pool",
        "claim",
        "-p",
        "o",
        "--range",
        "1..3",
        "--ttl",
        "2s",
        "--",
        text(&outer),
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", binary::stderr(&out));
    let pool = place.json(&["-i", "pool", "claim", "list"]);
    assert_eq!(
        (&pool["fencing_token"], &pool["claims"]),
        (&json!(2), &json!([])),
        "claimed, then released"
    );
}

/// Wait up to `limit` for `child` to exit; how long it took, or `None`.
fn exits_within(child: &mut Child, limit: Duration) -> Option<(Duration, i32)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some((start.elapsed(), status.code().unwrap_or(-1)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// `doc watch | head -1` in bash, as a boot script writes it: once `head`
/// printed its line and exited, the watcher notices at once, not at the
/// next write, and exits 0. The test would write again after 5 s: the
/// pipeline must be over before that.
fn doc_watch_piped_into_head_exits_when_head_does(place: &Place) {
    place.json(&["-i", "d", "doc", "set", &input(place, "{}")]);
    let pipeline = r#""$BIN" --store "$URL" -i d doc watch --from-version 0 --poll 100ms | head -1; echo "watch exited ${PIPESTATUS[0]}" >&2"#;
    let mut bash = std::process::Command::new("bash")
        .args(["-c", pipeline])
        .env("BIN", BIN)
        .env("URL", &place.url)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(bash.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&first["version"], &first["value"]),
        (&json!(1), &json!({}))
    );
    let Some((took, code)) = exits_within(&mut bash, Duration::from_secs(5)) else {
        place.json(&["-i", "d", "doc", "patch", &input(place, r#"{"late": 1}"#)]);
        let _ = bash.wait();
        panic!("doc watch ran on for 5 s after head exited");
    };
    let mut err = String::new();
    bash.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!((code, err.trim()), (0, "watch exited 0"));
    println!("the pipeline ended {took:?} after head printed its line");
}

/// `lock` and `claim --ttl` without a command print their document and
/// hold; when whoever reads their stdout goes away they give the lease
/// back and exit 0 at once, though their stdin stays open.
fn holders_that_print_end_when_their_stdout_is_closed(place: &Place) {
    for (holder, list) in [
        (
            &["-i", "job", "lock", "--ttl", "5s"][..],
            &["-i", "job", "queue", "list"][..],
        ),
        (
            &[
                "-i", "pool", "claim", "-p", "o", "--range", "1..3", "--ttl", "5s",
            ],
            &["-i", "pool", "claim", "list"],
        ),
    ] {
        let mut child = place
            .command(holder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let doc = binary::first_document(&mut stdout);
        assert_eq!(doc["fencing_token"], 1, "{doc}");
        drop(stdout);
        let Some((took, code)) = exits_within(&mut child, Duration::from_secs(5)) else {
            let _ = child.kill();
            panic!("{holder:?} held on for 5 s after its stdout was closed");
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(code, 0, "{holder:?}: {err}");
        println!("{holder:?} ended {took:?} after its stdout was closed");
        let after = place.json(list);
        assert_eq!(after["fencing_token"], 2, "released: {after}");
    }
}

/// One rule: a write of the value a document holds (equal as JSON) is no
/// write, with and without `--if-version`, for `set` and `patch`.
fn identical_document_writes_follow_one_rule(place: &Place) {
    let doc = |args: &[&str], value: &str| -> Value {
        let mut all = vec!["-i", "d", "doc"];
        all.extend_from_slice(args);
        let file = input(place, value);
        all.push(&file);
        place.json(&all)
    };
    let version = |v: &Value| v["version"].as_u64().unwrap();
    assert_eq!(version(&doc(&["set"], r#"{"a": 1, "b": [2]}"#)), 1);
    assert_eq!(version(&doc(&["set"], r#"{"b": [2], "a": 1}"#)), 1);
    assert_eq!(
        version(&doc(&["set", "--if-version", "1"], r#"{"a":1,"b":[2]}"#)),
        1
    );
    assert_eq!(version(&doc(&["patch"], r#"{"a": 1}"#)), 1);
    assert_eq!(version(&doc(&["patch"], "{}")), 1);
    assert_eq!(
        version(&doc(&["patch", "--if-version", "1"], r#"{"b": [2]}"#)),
        1
    );
    let file = input(place, r#"{"a": 1, "b": [2]}"#);
    let line = place.fails(&["-i", "d", "doc", "set", "--if-version", "0", &file], 12);
    assert!(line.contains("version 1"), "{line}");
    // A change is a write, with or without --if-version.
    let v = doc(&["patch", "--if-version", "1"], r#"{"a": 2}"#);
    assert_eq!((version(&v), &v["value"]), (2, &json!({"a": 2, "b": [2]})));
    assert_eq!(version(&doc(&["set"], "[]")), 3);
    assert_eq!(place.json(&["-i", "d", "doc", "get"])["version"], 3);
}

fn lists_of_ids_never_written_say_so(place: &Place) {
    let queue = place.json(&["-i", "never", "queue", "list"]);
    assert_eq!(
        (&queue["fencing_token"], &queue["exists"], &queue["tickets"]),
        (&json!(0), &json!(false), &json!([]))
    );
    let pool = place.json(&["-i", "never", "claim", "list"]);
    assert_eq!(
        (&pool["fencing_token"], &pool["exists"], &pool["claims"]),
        (&json!(0), &json!(false), &json!([]))
    );
    // Once written and emptied, it exists (monotone 0.4's shape for queues:
    // no "exists" field then).
    place.json(&["-i", "q", "queue", "-p", "a", "join"]);
    place.json(&["-i", "q", "queue", "-p", "a", "leave"]);
    let queue = place.json(&["-i", "q", "queue", "list"]);
    assert_eq!(queue.get("exists"), None, "{queue}");
    place.json(&["-i", "p", "claim", "-p", "a", "--names", "x"]);
    place.json(&["-i", "p", "claim", "-p", "a", "release"]);
    let pool = place.json(&["-i", "p", "claim", "list"]);
    assert_eq!(
        (&pool["exists"], &pool["claims"]),
        (&json!(true), &json!([]))
    );
    // Removed: no longer.
    place.json(&["-i", "p", "claim", "rm"]);
    assert_eq!(place.json(&["-i", "p", "claim", "list"])["exists"], false);
}

fn claims_are_listed_by_name_whatever_the_candidates(place: &Place) {
    let claim = |owner: &str, how: &[&str]| {
        let mut args = vec!["-i", "ids", "claim", "-p", owner];
        args.extend_from_slice(how);
        place.json(&args)["name"].as_str().unwrap().to_owned()
    };
    assert_eq!(claim("a", &["--names", "10,9,x"]), "10");
    assert_eq!(claim("b", &["--range", "1..20"]), "1");
    assert_eq!(claim("c", &["--names", "x,2"]), "x");
    assert_eq!(claim("d", &["--names", "10,9,x"]), "9");
    let list = place.json(&["-i", "ids", "claim", "list"]);
    assert_eq!(strings(&list["claims"], "name"), ["1", "9", "10", "x"]);
}

// What needs no store.

#[test]
fn a_command_without_its_subcommand_is_one_usage_line() {
    for (command, subcommands) in [
        ("counter", "get, next, rm"),
        ("queue", "get, list, join"),
        ("doc", "get, set, patch"),
        ("tally", "add, get, rm"),
    ] {
        let out = monotone().args(["-i", "x", command]).output().unwrap();
        let err = binary::fails(out, 2, &[command]);
        assert!(
            err.contains(subcommands) && err.ends_with(&format!("see 'monotone {command} --help'")),
            "{err}"
        );
    }
    // A bare `monotone` shows the help, as a usage error.
    let out = monotone().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(binary::stderr(&out).contains("Usage: monotone"));
}

#[test]
fn negative_numbers_are_named_as_such() {
    let place = Place::sqlite();
    let cases: [(&[&str], &str); 7] = [
        (
            &["-i", "q", "queue", "-p", "a", "join", "--ttl", "-5s"],
            "`-5s` is negative",
        ),
        (&["-i", "q", "lock", "--ttl", "-5s"], "`-5s` is negative"),
        (
            &["-i", "q", "queue", "-p", "a", "wait", "--timeout", "-1s"],
            "`-1s` is negative",
        ),
        (
            &["-i", "d", "doc", "set", "--if-version", "-1"],
            "`-1` is negative",
        ),
        (
            &["-i", "d", "doc", "watch", "--from-version", "-3"],
            "`-3` is negative",
        ),
        (
            &["-i", "p", "claim", "-p", "o", "--range", "-5..-1"],
            "`-5` in `-5..-1` is negative",
        ),
        (&["-i", "q", "lock", "-n", "-1"], "'-1'"),
    ];
    for (args, needle) in cases {
        let line = place.fails(args, 2);
        assert!(
            line.contains(needle) && !line.contains("unexpected argument"),
            "{line}"
        );
    }
    assert!(
        !place.db().exists(),
        "nothing was written, not even the file"
    );
}

#[test]
fn one_shortest_ttl_for_queue_join_lock_and_claim() {
    let place = Place::sqlite();
    for args in [
        &["-i", "q", "queue", "-p", "a", "join", "--ttl", "100ms"][..],
        &["-i", "q", "lock", "--ttl", "100ms", "--", "true"],
        &[
            "-i", "p", "claim", "-p", "a", "--names", "x", "--ttl", "100ms",
        ],
    ] {
        let line = place.fails(args, 2);
        assert!(
            line.contains("--ttl 100ms is too short to renew safely; use at least 200ms"),
            "{line}"
        );
    }
    assert_eq!(place.json(&["-i", "q", "queue", "list"])["exists"], false);
    let joined = place.json(&["-i", "q", "queue", "-p", "a", "join", "--ttl", "200ms"]);
    assert_eq!(joined["ticket"]["lease"]["ttl_ms"], 200);
}

#[test]
fn serve_listens_on_a_host_name() {
    let place = Place::sqlite();
    // Port 0: any free one; the document says which.
    let mut child = place
        .command(&["serve", "--listen", "localhost:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let doc = binary::first_document(&mut stdout);
    let _ = child.kill();
    let _ = child.wait();
    let listening = doc["listening"].as_str().unwrap();
    assert!(listening.starts_with("127.0.0.1:"), "{doc}");
}

#[test]
fn help_names_every_command_and_its_table_does_not_wrap() {
    let out = monotone()
        .arg("--help")
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "counter",
        "queue",
        "lock",
        "doc",
        "tally",
        "claim",
        "serve",
        "completions",
        "man",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} is not listed: {help}"
        );
    }
    for line in help.lines() {
        assert!(
            line.chars().count() <= 80,
            "{line:?} is wider than the terminal"
        );
    }
    for code in ["2  usage", "9  not acquired", "12  --if-version"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(code)),
            "{code}"
        );
    }
}

#[test]
fn bash_accepts_the_completion_script_and_every_shell_gets_one() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = monotone().args(["completions", shell]).output().unwrap();
        binary::succeeded(&out, &["completions", shell]);
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("monotone") && script.contains("claim"),
            "{shell}"
        );
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("monotone.bash");
            std::fs::write(&file, &script).unwrap();
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&file)
                .output()
                .unwrap();
            assert!(check.status.success(), "{}", binary::stderr(&check));
        }
    }
    let line = binary::fails(
        monotone().args(["completions", "tcsh"]).output().unwrap(),
        2,
        &["completions", "tcsh"],
    );
    assert!(line.contains("tcsh"), "{line}");
}

/// `monotone man | man -l -` renders the page (man-db, which
/// `scripts/test.sh` installs where it is missing).
#[test]
fn the_manual_page_renders_with_man() {
    let out = monotone().arg("man").output().unwrap();
    binary::succeeded(&out, &["man"]);
    let page = out.stdout;
    assert!(String::from_utf8_lossy(&page).starts_with(".ie"), "roff");
    let have_man = std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok();
    if !have_man {
        assert!(std::env::var_os("CI").is_none(), "man is missing under CI");
        println!("skipping the rendering: no man on this machine");
        return;
    }
    let rendered = binary::output_with_input(
        {
            let mut man = std::process::Command::new("man");
            man.args(["-l", "-"])
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80");
            man
        },
        &String::from_utf8(page).unwrap(),
    );
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{}", binary::stderr(&rendered));
    for needle in [
        "NAME",
        "monotone",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "claim",
        "completions",
    ] {
        assert!(text.contains(needle), "the page lacks {needle}: {text}");
    }
}
