//! Running the `monotone` binary from a test as a user runs it, and checking
//! its output as the CLI promises it: on success one JSON document on stdout
//! and nothing on stderr; on failure nothing on stdout and one line on
//! stderr. Shared by every test file of the binary, so that a new command's
//! tests add cases, not copies of these.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_monotone");

/// `monotone` with nothing from the developer's machine: no store, no data
/// directory, no log, no AWS profile, region, endpoint or configuration
/// files; test credentials (never real ones, never instance metadata); an
/// empty stdin.
pub fn monotone() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "MONOTONE_STORE",
        "XDG_DATA_HOME",
        "RUST_LOG",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "ETCDCTL_ENDPOINTS",
        "ETCDCTL_CACERT",
        "ETCDCTL_CERT",
        "ETCDCTL_KEY",
        "ETCDCTL_USER",
        "ETCDCTL_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    let nowhere = std::env::temp_dir();
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AWS_CONFIG_FILE",
            nowhere.join("monotone-test-no-aws-config"),
        )
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            nowhere.join("monotone-test-no-aws-credentials"),
        )
        .stdin(Stdio::null());
    cmd
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A run of `monotone ARGS` that succeeded quietly: exit code 0, nothing on
/// stderr.
pub fn succeeded(out: &Output, args: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "monotone {args:?} failed: {err}"
    );
    assert!(err.is_empty(), "monotone {args:?}: stderr: {err}");
}

/// A run of `monotone ARGS` that succeeded (see [`succeeded`]); its stdout,
/// one JSON document.
pub fn json(out: Output, args: &[&str]) -> Value {
    succeeded(&out, args);
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

/// A run of `monotone ARGS` that failed with `code` as the CLI fails:
/// nothing on stdout, one line `monotone: error: ...` on stderr, no panic;
/// that line.
pub fn fails(out: Output, code: i32, args: &[&str]) -> String {
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "monotone {args:?}: {err}");
    assert!(
        out.stdout.is_empty(),
        "monotone {args:?}: nothing on stdout on failure"
    );
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    assert!(err.starts_with("monotone: error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err.trim_end().to_owned()
}

/// Run `cmd` with `input` on its standard input; its whole output.
pub fn output_with_input(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The first document a running `monotone` prints on `stdout`, read as it
/// comes: pretty-printed, it ends with a line `}` of its own.
pub fn first_document(stdout: &mut impl BufRead) -> Value {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).unwrap();
        assert!(read > 0, "stdout ended before a whole document: {text}");
        text.push_str(&line);
        if line == "}\n" {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Start every command at once, then wait for each: its document (see
/// [`json`]), in the order given.
pub fn json_of_all(commands: impl IntoIterator<Item = Command>) -> Vec<Value> {
    let children: Vec<_> = commands
        .into_iter()
        .map(|mut cmd| {
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|child| json(child.wait_with_output().unwrap(), &["(started at once)"]))
        .collect()
}

/// The whole numbers at `pointer` (such as `/ticket/counter`) of `docs`.
pub fn numbers(docs: &[Value], pointer: &str) -> BTreeSet<u64> {
    docs.iter()
        .map(|d| d.pointer(pointer).and_then(Value::as_u64).unwrap())
        .collect()
}

/// `workers` threads run `work(worker)` at once; everything they return.
pub fn on_threads<T: Send>(workers: usize, work: impl Fn(usize) -> Vec<T> + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let work = &work;
        let threads: Vec<_> = (0..workers).map(|w| scope.spawn(move || work(w))).collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    })
}

/// The session of monotone 0.4's README, output compared as text (field
/// names, order, nesting and values) on a store whose documents show
/// `region` and `table`; `text` runs one command line and returns its
/// stdout (the first creates the store).
pub fn readme_session_of_monotone_0_4(text: impl Fn(&[&str]) -> String, region: &str, table: &str) {
    assert_eq!(
        text(&["-i", "mycounter", "counter", "get"]),
        format!("{{\n  \"id\": \"mycounter\",\n  \"value\": 0,\n  \"region\": \"{region}\",\n  \"table\": \"{table}\"\n}}\n")
    );
    assert_eq!(
        text(&["-i", "mycounter", "counter", "next"]),
        format!("{{\n  \"id\": \"mycounter\",\n  \"value\": 1,\n  \"region\": \"{region}\",\n  \"table\": \"{table}\"\n}}\n")
    );
    assert_eq!(
        text(&["-i", "myqueue", "queue", "-p", "foo", "join"]),
        format!("{{\n  \"id\": \"myqueue\",\n  \"region\": \"{region}\",\n  \"table\": \"{table}\",\n  \"fencing_token\": 1,\n  \"ticket\": {{\n    \"process_id\": \"foo\",\n    \"counter\": 1,\n    \"position\": 0,\n    \"tags\": {{}},\n    \"lease\": null\n  }}\n}}\n")
    );
    assert_eq!(
        text(&["-i", "myqueue", "queue", "-p", "foo", "leave"]),
        format!("{{\n  \"id\": \"myqueue\",\n  \"region\": \"{region}\",\n  \"table\": \"{table}\",\n  \"fencing_token\": 2\n}}\n")
    );
    assert_eq!(
        text(&["-i", "myqueue", "queue", "list"]),
        format!("{{\n  \"id\": \"myqueue\",\n  \"region\": \"{region}\",\n  \"table\": \"{table}\",\n  \"fencing_token\": 2,\n  \"tickets\": []\n}}\n")
    );
}
