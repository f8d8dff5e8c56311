//! Many OS processes on one DynamoDB table at once: no value handed out
//! twice, no join lost, no document update lost while a watcher looks on. Also what only a fresh process shows: opening the
//! store from a URL through the standard AWS chain, the default region, and
//! the error for missing credentials.
//!
//! The parent tests start copies of this very test binary, each running only
//! the `worker` test with `MONOTONE_WORKER_*` set and an environment of the
//! test's making (static test credentials, no instance metadata, no profile
//! files). A worker opens the store with `monotone::open(URL)`, as the CLI
//! does, and prints one line per result.
#![cfg(feature = "aws")]

mod document_support;
mod dynamodb_support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monotone::dynamodb::{DynamoDbConfig, DynamoDbStore};
use monotone::{Document, DocumentExt, Store, Tags};
use serde_json::json;

use document_support::{check_history, follow, incremented};
use dynamodb_support::*;

const PROCESSES: usize = 8;
const EACH: usize = 50;

/// The entry point of worker processes; a no-op when run directly.
#[tokio::test]
async fn worker() {
    let (Ok(url), Ok(op)) = (
        std::env::var("MONOTONE_WORKER_URL"),
        std::env::var("MONOTONE_WORKER_OP"),
    ) else {
        return;
    };
    let name = std::env::var("MONOTONE_WORKER_NAME").unwrap_or_default();
    let store: Arc<dyn Store> = match monotone::open(&url).await {
        Ok(s) => s,
        Err(e) => {
            println!("ERROR {:?} {e}", e.kind());
            return;
        }
    };
    match op.as_str() {
        "location" => println!("LOCATION {}", store.location()),
        "get" => match store.counter("c").unwrap().get().await {
            Ok(v) => println!("VALUE {v} {v} 0 0 0"),
            Err(e) => println!("ERROR {:?} {e}", e.kind()),
        },
        "next" | "join" | "doc-incr" => {
            // The URL's store again, with a client that counts requests.
            let config = DynamoDbConfig::from_url(&url).unwrap();
            let requests = Requests::default();
            let sdk = config.sdk_config().await.interceptor(requests.clone());
            let client = aws_sdk_dynamodb::Client::from_conf(sdk.build());
            let store = DynamoDbStore::from_client(client, config).unwrap();
            for i in 0..EACH {
                let started = Instant::now();
                let (value, token) = if op == "next" {
                    let v = store.counter("c").unwrap().next().await.unwrap();
                    (v, v)
                } else if op == "doc-incr" {
                    let d = store.document("d").unwrap();
                    let s = d.update(incremented).await.unwrap();
                    (s.value.unwrap()["n"].as_u64().unwrap(), s.version)
                } else {
                    let q = store.queue("q").unwrap();
                    let t = q.join(&format!("{name}-{i}"), Tags::new()).await.unwrap();
                    (t.value.counter, t.fencing_token.0)
                };
                let micros = started.elapsed().as_micros();
                let sent = requests.take();
                let writes = sent.iter().filter(|r| *r == "UpdateItem").count();
                println!("VALUE {value} {token} {micros} {} {writes}", sent.len());
            }
        }
        other => panic!("unknown worker op {other}"),
    }
}

/// A worker's environment: nothing of the caller's AWS settings, test
/// credentials unless `credentials` is false, never instance metadata.
fn worker_command(url: &str, op: &str, name: &str, credentials: bool) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "worker", "--nocapture", "--test-threads=1"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MONOTONE_WORKER_URL", url)
        .env("MONOTONE_WORKER_OP", op)
        .env("MONOTONE_WORKER_NAME", name)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/monotone-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/monotone-test/credentials",
        )
        .env("HOME", "/nonexistent/monotone-test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if credentials {
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
    }
    cmd
}

/// Run one worker to the end; its output lines after `prefix`.
fn run_one(mut cmd: Command, prefix: &str) -> Vec<String> {
    let out = cmd.output().expect("run a worker");
    assert!(
        out.status.success(),
        "worker failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // libtest may print its own "test worker ..." on the same line.
        .filter_map(|l| l.split_once(prefix).map(|(_, rest)| rest.to_owned()))
        .collect()
}

/// One operation of a worker.
#[derive(Debug, Clone, Copy)]
struct Done {
    value: u64,
    token: u64,
    micros: u64,
    requests: u64,
    writes: u64,
}

/// Start `PROCESSES` workers at once; every operation's result, and the
/// wall time of the whole run.
fn run_workers(url: &str, op: &str) -> (Vec<Done>, Duration) {
    let started = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|n| {
            worker_command(url, op, &format!("proc{n}"), true)
                .spawn()
                .expect("start a worker process")
        })
        .collect();
    let mut all = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "worker failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let values: Vec<Done> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once("VALUE ").map(|(_, rest)| rest))
            .map(|l| {
                let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                Done {
                    value: v[0],
                    token: v[1],
                    micros: v[2],
                    requests: v[3],
                    writes: v[4],
                }
            })
            .collect();
        assert_eq!(values.len(), EACH, "every worker reports all its results");
        all.extend(values);
    }
    (all, started.elapsed())
}

fn url(endpoint: &str, table: &str) -> String {
    format!("dynamodb://{table}?region={REGION}&endpoint={endpoint}")
}

/// Not a pass/fail check: how the run went (see it with --nocapture).
fn report(op: &str, results: &[Done], took: Duration) {
    let stats = |mut v: Vec<u64>| {
        v.sort_unstable();
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        format!(
            "mean {mean:.2}, median {}, p99 {}, max {}",
            v[v.len() / 2],
            v[v.len() * 99 / 100],
            v[v.len() - 1]
        )
    };
    let retries = results.iter().map(|r| r.writes.saturating_sub(1)).collect();
    println!(
        "{PROCESSES} processes x {EACH} {op}: {:.2}s in all; per {op}: median {:.1} ms, \
         slowest {:.0} ms; requests {}; retried writes {}",
        took.as_secs_f64(),
        median_ms(results.iter().map(|r| r.micros).collect()),
        results.iter().map(|r| r.micros).max().unwrap_or(0) as f64 / 1000.0,
        stats(results.iter().map(|r| r.requests).collect()),
        stats(retries),
    );
}

fn median_ms(mut micros: Vec<u64>) -> f64 {
    micros.sort_unstable();
    micros[micros.len() / 2] as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_calling_next_get_each_value_once() {
    let Some(endpoint) = endpoint() else { return };
    let table = unique_table("procs-next");
    create_table(&raw_client(&endpoint).await, &table).await;
    let (results, took) = run_workers(&url(&endpoint, &table), "next");
    let mut values: Vec<u64> = results.iter().map(|r| r.value).collect();
    values.sort_unstable();
    let total = (PROCESSES * EACH) as u64;
    assert_eq!(values, (1..=total).collect::<Vec<_>>());
    let (store, _) = counted_store(&endpoint, DynamoDbConfig::new(&table)).await;
    assert_eq!(store.counter("c").unwrap().get().await.unwrap(), total);
    report("counter next", &results, took);
    assert!(
        results.iter().all(|r| r.requests == 1),
        "one UpdateItem per next"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_joining_one_queue_lose_nothing() {
    let Some(endpoint) = endpoint() else { return };
    let table = unique_table("procs-join");
    create_table(&raw_client(&endpoint).await, &table).await;
    let (results, took) = run_workers(&url(&endpoint, &table), "join");
    let total = (PROCESSES * EACH) as u64;
    let counters: BTreeSet<u64> = results.iter().map(|r| r.value).collect();
    let tokens: BTreeSet<u64> = results.iter().map(|r| r.token).collect();
    assert_eq!(counters, (1..=total).collect(), "every counter once");
    assert_eq!(tokens, (1..=total).collect(), "every token once");
    let (store, _) = counted_store(&endpoint, DynamoDbConfig::new(&table)).await;
    let all = store.queue("q").unwrap().tickets().await.unwrap();
    assert_eq!(all.fencing_token.0, total);
    assert_eq!(all.value.len(), total as usize);
    let names: BTreeSet<String> = all.value.iter().map(|t| t.process_id.clone()).collect();
    assert_eq!(
        names.len(),
        total as usize,
        "every process id is in the queue"
    );
    assert!(all
        .value
        .iter()
        .enumerate()
        .all(|(i, t)| t.position == i && t.counter == i as u64 + 1));
    report("queue join", &results, took);
}

/// 8 processes each add 1 to a number inside one document 50 times with the
/// update helper, while a watcher in this process follows the change
/// stream: the number ends at 400 and the version 400 higher, each update
/// took one version, and the watcher saw versions only rise and ended on the
/// final state. Prints what the updates and the watcher cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_updating_one_document_lose_nothing_while_watched() {
    let Some(endpoint) = endpoint() else { return };
    let table = unique_table("procs-doc");
    create_table(&raw_client(&endpoint).await, &table).await;
    let (store, watcher_requests) = counted_store(&endpoint, DynamoDbConfig::new(&table)).await;
    let d: Arc<dyn Document> = Arc::from(store.document("d").unwrap());
    let start = d
        .write(0, &json!({"n": 0, "kept": "as it was"}))
        .await
        .unwrap();
    watcher_requests.take();
    let total = (PROCESSES * EACH) as u64;
    let last = start + total;
    const POLL: Duration = Duration::from_millis(100);

    let end = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (d, end) = (Arc::clone(&d), Arc::clone(&end));
        tokio::spawn(async move {
            let started = Instant::now();
            let seen = follow(d, start, end, POLL).await;
            (seen, started.elapsed())
        })
    };
    let u = url(&endpoint, &table);
    let (results, took) = tokio::task::spawn_blocking(move || run_workers(&u, "doc-incr"))
        .await
        .unwrap();
    end.store(d.read().await.unwrap().version, Ordering::SeqCst);
    let (seen, watched) = tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the watcher reaches the final version")
        .unwrap();
    let polls = watcher_requests.take();

    let versions: BTreeSet<u64> = results.iter().map(|r| r.token).collect();
    assert_eq!(
        versions,
        (start + 1..=last).collect(),
        "one version per update"
    );
    let numbers: BTreeSet<u64> = results.iter().map(|r| r.value).collect();
    assert_eq!(
        numbers,
        (1..=total).collect(),
        "each update saw its own number"
    );
    let now = d.read().await.unwrap();
    assert_eq!(now.version, last);
    assert_eq!(now.value, Some(json!({"n": total, "kept": "as it was"})));
    check_history(&seen, start, &now);
    assert!(
        polls.iter().all(|r| r == "GetItem"),
        "a watcher only reads: {polls:?}"
    );

    report("document update", &results, took);
    println!(
        "watcher (a check every {} ms): {} GetItem in {:.2}s ({:.1}/s), {} changes, {} folded",
        POLL.as_millis(),
        polls.len(),
        watched.as_secs_f64(),
        polls.len() as f64 / watched.as_secs_f64(),
        seen.len(),
        seen.iter().filter(|c| c.folded()).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_uses_the_standard_chain_and_defaults_to_eu_west_1() {
    let Some(endpoint) = endpoint() else { return };
    let location = |url: &str, region: Option<&str>| {
        let mut cmd = worker_command(url, "location", "", true);
        if let Some(r) = region {
            cmd.env("AWS_REGION", r);
        }
        run_one(cmd, "LOCATION ").join("\n")
    };
    // No region anywhere (and no instance metadata): monotone 0.4's default.
    assert_eq!(
        location("dynamodb://Counters", None),
        "dynamodb://Counters?region=eu-west-1"
    );
    // The chain's region, unless the URL gives one.
    assert_eq!(
        location("dynamodb://Counters", Some("ap-southeast-2")),
        "dynamodb://Counters?region=ap-southeast-2"
    );
    assert_eq!(
        location(
            "dynamodb://Counters?region=us-east-1",
            Some("ap-southeast-2")
        ),
        "dynamodb://Counters?region=us-east-1"
    );
    // AWS_ENDPOINT_URL is honoured, and the URL's endpoint wins over it.
    let mut cmd = worker_command("dynamodb://Counters", "location", "", true);
    cmd.env("AWS_ENDPOINT_URL", &endpoint);
    assert_eq!(
        run_one(cmd, "LOCATION ").join(""),
        format!("dynamodb://Counters?region=eu-west-1&endpoint={endpoint}")
    );

    // And the store really works through that chain.
    let table = unique_table("chain");
    let mut cmd = worker_command(&format!("dynamodb://{table}"), "get", "", true);
    cmd.env("AWS_ENDPOINT_URL", &endpoint);
    assert_eq!(run_one(cmd, "VALUE "), ["0 0 0 0 0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_one_clear_line() {
    let Some(endpoint) = endpoint() else { return };
    let cmd = worker_command(&url(&endpoint, "Counters"), "get", "", false);
    let lines = run_one(cmd, "ERROR ");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.starts_with("Config "), "{line}");
    assert!(line.contains("no AWS credentials found"), "{line}");
    assert!(line.contains("AWS_ACCESS_KEY_ID"), "{line}");
    assert!(
        line.contains("dynamodb table `Counters`: counter `c`: get"),
        "{line}"
    );
}

/// Not a pass/fail check: the median latency of each operation on the local
/// server, one process, no contention (see the output with --nocapture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_per_operation() {
    let Some(endpoint) = endpoint() else { return };
    let table = unique_table("latency");
    create_table(&raw_client(&endpoint).await, &table).await;
    let (store, _) = counted_store(&endpoint, DynamoDbConfig::new(&table)).await;
    let store: DynamoDbStore = store;
    const N: usize = 40;
    let mut lines = vec![];
    macro_rules! time {
        ($name:expr, $body:expr) => {{
            let mut micros = vec![];
            for i in 0..N {
                let started = Instant::now();
                $body(i).await;
                micros.push(started.elapsed().as_micros() as u64);
            }
            lines.push(format!("{:<16} {:>6.2} ms", $name, median_ms(micros)));
        }};
    }
    let c = store.counter("c").unwrap();
    let q = store.queue("q").unwrap();
    time!("counter next", |_| async { c.next().await.unwrap() });
    time!("counter get", |_| async { c.get().await.unwrap() });
    time!("queue join", |i| {
        let q = &q;
        async move { q.join(&format!("p{i}"), Tags::new()).await.unwrap() }
    });
    time!("queue re-join", |i| {
        let q = &q;
        async move { q.join(&format!("p{i}"), Tags::new()).await.unwrap() }
    });
    time!("queue ticket", |i| {
        let q = &q;
        async move { q.ticket(&format!("p{i}")).await.unwrap() }
    });
    time!("queue tickets", |_| async { q.tickets().await.unwrap() });
    time!("queue leave", |i| {
        let q = &q;
        async move { q.leave(&format!("p{i}")).await.unwrap() }
    });
    time!("counter remove", |i| {
        let store = &store;
        async move {
            let c = store.counter(&format!("rm{i}")).unwrap();
            c.next().await.unwrap();
            c.remove().await.unwrap()
        }
    });
    println!("median latency on {endpoint} ({N} runs each; `counter remove` includes a next):");
    for l in lines {
        println!("  {l}");
    }
}
