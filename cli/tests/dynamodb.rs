//! The `monotone` binary on DynamoDB, selected by monotone 0.4's `-r`/`-t`,
//! against the local server that `scripts/test.sh` starts (moto, on
//! 127.0.0.1; its URL in `MONOTONE_TEST_DYNAMODB_ENDPOINT`). Without that
//! variable these tests say so and pass, except under CI, where they fail.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

mod binary;
mod place;
use binary::{fails, json, json_of_all, monotone, numbers};
use place::{dynamodb_endpoint as endpoint, unique_table};

const REGION: &str = "eu-west-1";

/// `monotone ARGS` talking to `endpoint` with test credentials, never to AWS
/// or instance metadata (see [`binary::monotone`]).
fn command(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = monotone();
    cmd.env("AWS_ENDPOINT_URL", endpoint).args(args);
    cmd
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
    binary::readme_session_of_monotone_0_4(text, REGION, &table);
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
    let fails = |args: &[&str], code: i32| fails(run(args), code, args);
    assert!(fails(&["-i", "q", "queue", "-p", "zz", "leave"], 3).contains("`zz`"));
    assert!(fails(&["-i", "q", "counter", "next"], 4).contains("is a queue"));
    fails(&["--bogus"], 2);
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
    let args = ["-r", REGION, "-t", "Counters", "-i", "c", "counter", "next"];
    fails(command(&ep, &args).output().unwrap(), 6, &args);
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
    let docs = json_of_all((0..8).map(|i| {
        let pid = format!("host{i}");
        command(
            &ep,
            &[&base[..], &["queue", "-p", pid.as_str(), "join"]].concat(),
        )
    }));
    assert_eq!(numbers(&docs, "/ticket/counter"), (1..=8).collect());
    assert_eq!(numbers(&docs, "/fencing_token"), (1..=8).collect());
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
        binary::output_with_input(command(&ep, &all), input)
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
    let set = ["-i", "agent", "doc", "set", "--if-version", "1"];
    assert!(fails(run(&set, "{}"), 12, &set).contains("at version 2"));
    let v = json(run(&["-i", "agent", "doc", "rm"], ""), &[]);
    assert_eq!((&v["version"], &v["removed"]), (&json!(3), &json!(true)));
    let v = json(run(&["-i", "agent", "doc", "get"], ""), &[]);
    assert_eq!((&v["version"], &v["exists"]), (&json!(3), &json!(false)));
    let next = ["-i", "agent", "counter", "next"];
    fails(run(&next, ""), 4, &next);
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
    let docs = json_of_all((1..=8).map(|i: i64| {
        let n = if i % 2 == 0 { i } else { -i * 3 };
        command(
            &ep,
            &[&base[..], &["tally", "add", "--by", &n.to_string()]].concat(),
        )
    }));
    assert_eq!(
        numbers(&docs, "/version").into_iter().collect::<Vec<_>>(),
        (2..=9).collect::<Vec<_>>()
    );
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
    let next = [&base[..], &["counter", "next"]].concat();
    fails(command(&ep, &next).output().unwrap(), 4, &next);
    let rm = run(&["tally", "rm"]);
    assert_eq!((&rm["value"], &rm["removed"]), (&json!(sum), &json!(true)));
}
