//! The `monotone` binary on DynamoDB, selected by monotone 0.4's `-r`/`-t`,
//! against the local server that `scripts/test.sh` starts (moto, on
//! 127.0.0.1; its URL in `MONOTONE_TEST_DYNAMODB_ENDPOINT`). Without that
//! variable these tests say so and pass, except under CI, where they fail.

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod with_input;

const BIN: &str = env!("CARGO_BIN_EXE_monotone");
const ENDPOINT_VAR: &str = "MONOTONE_TEST_DYNAMODB_ENDPOINT";
const REGION: &str = "eu-west-1";

fn endpoint() -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{ENDPOINT_VAR} is not set under CI: run the tests through scripts/test.sh")
        }
        _ => {
            println!("skipping: {ENDPOINT_VAR} not set (scripts/test.sh starts a local server)");
            None
        }
    }
}

/// A table name no other test or earlier run uses.
fn unique_table(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cli-{tag}-{}-{nanos}", std::process::id())
}

/// `monotone ARGS` talking to `endpoint` with test credentials, never to AWS
/// or instance metadata.
fn command(endpoint: &str, args: &[&str]) -> Command {
    let home = std::env::temp_dir();
    let mut cmd = Command::new(BIN);
    for var in [
        "MONOTONE_STORE",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_SESSION_TOKEN",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("monotone-test-no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("monotone-test-no-aws-credentials"),
        )
        .stdin(Stdio::null())
        .args(args);
    cmd
}

fn json(out: Output, args: &[&str]) -> Value {
    assert!(
        out.status.success(),
        "monotone {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// monotone 0.4's README session, with `-r` and `-t` as 0.4 took them:
/// exact fields, order and values.
#[test]
fn readme_session_of_monotone_0_4_with_region_and_table() {
    let Some(ep) = endpoint() else { return };
    let table = unique_table("readme");
    let text = |args: &[&str]| {
        let mut all = vec!["-r", REGION, "-t", table.as_str()];
        all.extend_from_slice(args);
        let out = command(&ep, &all).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // The first command creates the table.
    assert_eq!(
        text(&["-i", "mycounter", "counter", "get"]),
        format!("{{\n  \"id\": \"mycounter\",\n  \"value\": 0,\n  \"region\": \"{REGION}\",\n  \"table\": \"{table}\"\n}}\n")
    );
    assert_eq!(
        text(&["-i", "mycounter", "counter", "next"]),
        format!("{{\n  \"id\": \"mycounter\",\n  \"value\": 1,\n  \"region\": \"{REGION}\",\n  \"table\": \"{table}\"\n}}\n")
    );
    assert_eq!(
        text(&["-i", "myqueue", "queue", "-p", "foo", "join"]),
        format!("{{\n  \"id\": \"myqueue\",\n  \"region\": \"{REGION}\",\n  \"table\": \"{table}\",\n  \"fencing_token\": 1,\n  \"ticket\": {{\n    \"process_id\": \"foo\",\n    \"counter\": 1,\n    \"position\": 0,\n    \"tags\": {{}},\n    \"lease\": null\n  }}\n}}\n")
    );
    assert_eq!(
        text(&["-i", "myqueue", "queue", "-p", "foo", "leave"]),
        format!("{{\n  \"id\": \"myqueue\",\n  \"region\": \"{REGION}\",\n  \"table\": \"{table}\",\n  \"fencing_token\": 2\n}}\n")
    );
    assert_eq!(
        text(&["-i", "myqueue", "queue", "list"]),
        format!("{{\n  \"id\": \"myqueue\",\n  \"region\": \"{REGION}\",\n  \"table\": \"{table}\",\n  \"fencing_token\": 2,\n  \"tickets\": []\n}}\n")
    );
}

#[test]
fn store_url_and_failure_classes() {
    let Some(ep) = endpoint() else { return };
    let table = unique_table("url");
    let url = format!("dynamodb://{table}?region=us-west-2&endpoint={ep}");
    let run = |args: &[&str]| {
        let mut all = vec!["--store", url.as_str()];
        all.extend_from_slice(args);
        command(&ep, &all).output().unwrap()
    };
    let v = json(
        run(&["-i", "q", "queue", "-p", "a", "join", "-t", "k=v"]),
        &[],
    );
    assert_eq!(
        v,
        json!({"id": "q", "region": "us-west-2", "table": table, "fencing_token": 1,
               "ticket": {"process_id": "a", "counter": 1, "position": 0, "tags": {"k": "v"}, "lease": null}})
    );
    let fails = |out: Output, code: i32| {
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
        stderr
    };
    assert!(fails(run(&["-i", "q", "queue", "-p", "zz", "leave"]), 3).contains("`zz`"));
    assert!(fails(run(&["-i", "q", "counter", "next"]), 4).contains("is a queue"));
    fails(run(&["--bogus"]), 2);
    // Nothing changed.
    assert_eq!(
        json(run(&["-i", "q", "queue", "list"]), &[])["fencing_token"],
        1
    );
}

/// A server nobody listens on: exit code 6, one line, in bounded time.
#[test]
fn an_unreachable_endpoint_is_unavailable_exit_6() {
    // Bind and drop a listener to get a port that refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    let out = command(
        &ep,
        &["-r", REGION, "-t", "Counters", "-i", "c", "counter", "next"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("monotone: error: "), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "bounded, not a hang"
    );
}

/// 8 processes join one queue at once: 8 distinct counters and tokens.
#[test]
fn concurrent_processes_join_without_loss() {
    let Some(ep) = endpoint() else { return };
    let table = unique_table("crowd");
    let base = ["-r", REGION, "-t", table.as_str(), "-i", "zk"];
    // Create the table first, so the race is on the queue alone.
    json(
        command(&ep, &[&base[..], &["queue", "list"]].concat())
            .output()
            .unwrap(),
        &[],
    );
    let children: Vec<_> = (0..8)
        .map(|i| {
            let pid = format!("host{i}");
            command(
                &ep,
                &[&base[..], &["queue", "-p", pid.as_str(), "join"]].concat(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let docs: Vec<Value> = children
        .into_iter()
        .map(|c| json(c.wait_with_output().unwrap(), &["join"]))
        .collect();
    let counters: BTreeSet<u64> = docs
        .iter()
        .map(|d| d["ticket"]["counter"].as_u64().unwrap())
        .collect();
    let tokens: BTreeSet<u64> = docs
        .iter()
        .map(|d| d["fencing_token"].as_u64().unwrap())
        .collect();
    assert_eq!(counters, (1..=8).collect());
    assert_eq!(tokens, (1..=8).collect());
    let list = json(
        command(&ep, &[&base[..], &["queue", "list"]].concat())
            .output()
            .unwrap(),
        &[],
    );
    assert_eq!(list["tickets"].as_array().unwrap().len(), 8);
    assert_eq!(list["fencing_token"], 8);
}

/// The document commands on DynamoDB: set, patch, a failed `--if-version`
/// (exit 12), rm, and get; with `-r`/`-t` as for the other commands.
#[test]
fn doc_commands_on_dynamodb() {
    let Some(ep) = endpoint() else { return };
    let table = unique_table("doc");
    let run = |args: &[&str], input: &str| {
        let mut all = vec!["-r", REGION, "-t", table.as_str()];
        all.extend_from_slice(args);
        with_input::output_with_input(command(&ep, &all), input)
    };
    let v = json(
        run(&["-i", "agent", "doc", "set"], r#"{"globs": ["/bin/*"]}"#),
        &[],
    );
    assert_eq!(
        v,
        json!({"id": "agent", "region": REGION, "table": table, "version": 1, "exists": true,
               "value": {"globs": ["/bin/*"]}})
    );
    let v = json(
        run(
            &["-i", "agent", "doc", "patch", "--if-version", "1"],
            r#"{"level": 2}"#,
        ),
        &[],
    );
    assert_eq!(v["value"], json!({"globs": ["/bin/*"], "level": 2}));
    let out = run(&["-i", "agent", "doc", "set", "--if-version", "1"], "{}");
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at version 2"));
    let v = json(run(&["-i", "agent", "doc", "rm"], ""), &[]);
    assert_eq!((&v["version"], &v["removed"]), (&json!(3), &json!(true)));
    let v = json(run(&["-i", "agent", "doc", "get"], ""), &[]);
    assert_eq!((&v["version"], &v["exists"]), (&json!(3), &json!(false)));
    let out = run(&["-i", "agent", "counter", "next"], "");
    assert_eq!(out.status.code(), Some(4));
}

/// Tally commands on DynamoDB, and 8 processes adding both signs at once.
#[test]
fn tally_commands_and_concurrent_adds() {
    let Some(ep) = endpoint() else { return };
    let table = unique_table("tally");
    let base = ["-r", REGION, "-t", table.as_str(), "-i", "pool"];
    let run = |args: &[&str]| {
        json(
            command(&ep, &[&base[..], args].concat()).output().unwrap(),
            args,
        )
    };
    assert_eq!(
        run(&["tally", "add", "--", "-3"]),
        json!({"id": "pool", "value": -3, "version": 1, "consistent": true,
               "region": REGION, "table": table})
    );
    let children: Vec<_> = (1..=8)
        .map(|i: i64| {
            let n = if i % 2 == 0 { i } else { -i * 3 };
            command(
                &ep,
                &[&base[..], &["tally", "add", "--by", &n.to_string()]].concat(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut versions: Vec<u64> = children
        .into_iter()
        .map(|c| {
            json(c.wait_with_output().unwrap(), &["add"])["version"]
                .as_u64()
                .unwrap()
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=9).collect::<Vec<_>>());
    let sum = -3
        + (1..=8)
            .map(|i: i64| if i % 2 == 0 { i } else { -i * 3 })
            .sum::<i64>();
    for read in [&["tally", "get"][..], &["tally", "get", "--stale"]] {
        let v = run(read);
        assert_eq!(
            (&v["value"], &v["version"]),
            (&json!(sum), &json!(9)),
            "{read:?}"
        );
    }
    let out = command(&ep, &[&base[..], &["counter", "next"]].concat())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let rm = run(&["tally", "rm"]);
    assert_eq!((&rm["value"], &rm["removed"]), (&json!(sum), &json!(true)));
}
