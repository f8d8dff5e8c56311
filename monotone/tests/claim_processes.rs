//! 64 OS processes claiming from one pool of `1..=255` at the same moment,
//! on SQLite and on DynamoDB: every process gets its own name, the names
//! are exactly 1 to 64 (each claim took the first free one), the claims'
//! tokens are exactly 1 to 64, and nothing is lost. Then 32 of them release
//! at once, and 32 new claimers at once get exactly the names freed.
//!
//! The parent starts copies of this very test binary as workers (the
//! `worker` test, with `MONOTONE_WORKER_*` set). Each opens the store,
//! prints `READY`, and waits until its stdin closes; the parent closes them
//! all together, so the claims start within microseconds of each other.
//! Each worker then prints one line: `DONE <name> <token> <requests>
//! <claim writes> <waits> <microseconds>`. On DynamoDB the requests are
//! counted by an interceptor (a claim write is an `UpdateItem` that makes
//! claims; a wait is one that writes the claimer into the pool's
//! `Waiting`); on SQLite an operation is one transaction.
//!
//! Not a benchmark: the numbers are printed (see them with --nocapture),
//! only correctness is asserted.

#[cfg(feature = "aws")]
mod dynamodb_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monotone::{Candidates, FencingToken, Store};

const CLAIMERS: usize = 64;
const RELEASED: usize = 32;
const POOL: &str = "myzk";

/// What one worker reported.
#[derive(Debug, Clone)]
struct Done {
    owner: String,
    name: u64,
    token: u64,
    requests: u64,
    writes: u64,
    waits: u64,
    micros: u64,
}

/// The store of `url`, and on DynamoDB a count of the requests it sends.
#[cfg(feature = "aws")]
async fn open(url: &str) -> (Arc<dyn Store>, Option<dynamodb_support::Requests>) {
    use monotone::dynamodb::{DynamoDbConfig, DynamoDbStore};
    if !url.starts_with("dynamodb:") {
        return (monotone::open(url).await.unwrap(), None);
    }
    let config = DynamoDbConfig::from_url(url).unwrap();
    let requests = dynamodb_support::Requests::default();
    let sdk = config.sdk_config().await.interceptor(requests.clone());
    let client = aws_sdk_dynamodb::Client::from_conf(sdk.build());
    let store = DynamoDbStore::from_client(client, config).unwrap();
    (Arc::new(store), Some(requests))
}

#[cfg(not(feature = "aws"))]
async fn open(url: &str) -> (Arc<dyn Store>, Option<()>) {
    (monotone::open(url).await.unwrap(), None)
}

/// (requests, claim writes, waits) among what a DynamoDB store sent.
#[cfg(feature = "aws")]
fn counted(requests: &Option<dynamodb_support::Requests>) -> (u64, u64, u64) {
    let Some(requests) = requests else {
        return (1, 1, 0);
    };
    let sent = requests.take_with_bodies();
    let mut writes = 0;
    let mut waits = 0;
    for (op, body) in &sent {
        if op != "UpdateItem" {
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        let update = body["UpdateExpression"].as_str().unwrap_or("");
        if update.contains("#waiting.#me") || update.contains("#version = :zero") {
            waits += 1;
        } else {
            writes += 1;
        }
    }
    (sent.len() as u64, writes, waits)
}

#[cfg(not(feature = "aws"))]
fn counted(_: &Option<()>) -> (u64, u64, u64) {
    (1, 1, 0)
}

/// The entry point of worker processes; a no-op when run directly.
#[tokio::test]
async fn worker() {
    let (Ok(url), Ok(op), Ok(owner)) = (
        std::env::var("MONOTONE_WORKER_URL"),
        std::env::var("MONOTONE_WORKER_OP"),
        std::env::var("MONOTONE_WORKER_OWNER"),
    ) else {
        return;
    };
    let (store, requests) = open(&url).await;
    let pool = store.claim_pool(POOL).unwrap();
    let candidates = Candidates::range(1..=255).unwrap();
    println!("READY");
    // Wait for the others: the parent closes every worker's stdin at once.
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest).unwrap();
    let started = Instant::now();
    let (claim, token) = match op.as_str() {
        "claim" => {
            let got = pool.claim_with(&owner, &candidates, None).await.unwrap();
            assert!(got.added, "{owner} held a claim already");
            (got.claim.value, got.claim.fencing_token)
        }
        "release" => {
            let released = pool.release(&owner).await.unwrap();
            (released.value, released.fencing_token)
        }
        other => panic!("unknown worker op {other}"),
    };
    let micros = started.elapsed().as_micros();
    let (sent, writes, waits) = counted(&requests);
    println!(
        "DONE {} {} {sent} {writes} {waits} {micros}",
        claim.name,
        token.get()
    );
}

/// Start one worker per owner, wait until all are ready, let them go at
/// once, and collect what each reported.
fn wave(url: &str, op: &str, owners: &[String]) -> (Vec<Done>, Duration) {
    let exe = std::env::current_exe().unwrap();
    let mut workers: Vec<(String, Child, BufReader<ChildStdout>)> = owners
        .iter()
        .map(|owner| {
            let mut child = Command::new(&exe)
                .args(["--exact", "worker", "--nocapture", "--test-threads=1"])
                .env("MONOTONE_WORKER_URL", url)
                .env("MONOTONE_WORKER_OP", op)
                .env("MONOTONE_WORKER_OWNER", owner)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a worker process");
            let out = BufReader::new(child.stdout.take().unwrap());
            (owner.clone(), child, out)
        })
        .collect();
    for (owner, _, out) in &mut workers {
        let mut line = String::new();
        // libtest may print its own "test worker ..." on the same line.
        while !line.contains("READY") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "{owner} ended before it was ready"
            );
        }
    }
    let started = Instant::now();
    for (_, child, _) in &mut workers {
        drop(child.stdin.take());
    }
    let mut all = Vec::new();
    for (owner, mut child, mut out) in workers {
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        let status = child.wait().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "{owner} failed: {text}\n{err}");
        let line = text
            .lines()
            .find_map(|l| l.split_once("DONE ").map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("{owner} reported nothing: {text}\n{err}"));
        let v: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        all.push(Done {
            owner,
            name: v[0],
            token: v[1],
            requests: v[2],
            writes: v[3],
            waits: v[4],
            micros: v[5],
        });
    }
    (all, started.elapsed())
}

/// Not a pass/fail check: how a wave went (see it with --nocapture).
fn report(store: &str, what: &str, done: &[Done], took: Duration) {
    let stats = |mut v: Vec<u64>| {
        v.sort_unstable();
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        format!(
            "median {}, mean {mean:.2}, max {}",
            v[v.len() / 2],
            v[v.len() - 1]
        )
    };
    println!(
        "{store}: {} {what} at once in {:.2}s; per {what}: requests {}; claim writes {}; waits in the pool {}; ms {}",
        done.len(),
        took.as_secs_f64(),
        stats(done.iter().map(|d| d.requests).collect()),
        stats(done.iter().map(|d| d.writes).collect()),
        stats(done.iter().map(|d| d.waits).collect()),
        stats(done.iter().map(|d| d.micros / 1000).collect()),
    );
}

fn owners(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

/// The three waves on the store of `url`, checked.
async fn claims_at_once(url: &str, store: &str) {
    let claimers = owners("host-", CLAIMERS);
    let (url2, claimers2) = (url.to_owned(), claimers.clone());
    let (first, took) = tokio::task::spawn_blocking(move || wave(&url2, "claim", &claimers2))
        .await
        .unwrap();
    report(store, "claims", &first, took);
    let names: BTreeSet<u64> = first.iter().map(|d| d.name).collect();
    let tokens: BTreeSet<u64> = first.iter().map(|d| d.token).collect();
    let all = 1..=CLAIMERS as u64;
    assert_eq!(
        names,
        all.clone().collect(),
        "distinct, and each the first free"
    );
    assert_eq!(tokens, all.collect(), "one token per claim");
    let (opened, _) = open(url).await;
    let pool = opened.claim_pool(POOL).unwrap();
    let listed = pool.claims().await.unwrap();
    assert_eq!(listed.fencing_token, FencingToken(CLAIMERS as u64));
    let mut held: Vec<(u64, String)> = listed
        .value
        .iter()
        .map(|c| (c.name.parse().unwrap(), c.owner.clone()))
        .collect();
    let mut reported: Vec<(u64, String)> =
        first.iter().map(|d| (d.name, d.owner.clone())).collect();
    held.sort();
    reported.sort();
    assert_eq!(
        held, reported,
        "every claim is stored as its claimer was told"
    );

    // Half of them release at once: every other one by name.
    let leaving: Vec<String> = first
        .iter()
        .filter(|d| d.name % 2 == 0)
        .map(|d| d.owner.clone())
        .collect();
    assert_eq!(leaving.len(), RELEASED);
    let (url2, leaving2) = (url.to_owned(), leaving.clone());
    let (released, took) = tokio::task::spawn_blocking(move || wave(&url2, "release", &leaving2))
        .await
        .unwrap();
    report(store, "releases", &released, took);
    let freed: BTreeSet<u64> = released.iter().map(|d| d.name).collect();
    assert_eq!(freed, (2..=CLAIMERS as u64).step_by(2).collect());
    let tokens: BTreeSet<u64> = released.iter().map(|d| d.token).collect();
    assert_eq!(
        tokens,
        (CLAIMERS as u64 + 1..=(CLAIMERS + RELEASED) as u64).collect()
    );

    // New claimers at once get exactly the names freed: the lowest free.
    let newcomers = owners("new-", RELEASED);
    let (url2, newcomers2) = (url.to_owned(), newcomers.clone());
    let (second, took) = tokio::task::spawn_blocking(move || wave(&url2, "claim", &newcomers2))
        .await
        .unwrap();
    report(store, "claims of freed names", &second, took);
    let names: BTreeSet<u64> = second.iter().map(|d| d.name).collect();
    assert_eq!(names, freed, "exactly the freed names");
    let tokens: BTreeSet<u64> = second.iter().map(|d| d.token).collect();
    let base = (CLAIMERS + RELEASED) as u64;
    assert_eq!(tokens, (base + 1..=base + RELEASED as u64).collect());
    let listed = pool.claims().await.unwrap();
    assert_eq!(listed.value.len(), CLAIMERS);
    assert_eq!(listed.fencing_token, FencingToken(base + RELEASED as u64));
    let names: Vec<u64> = listed
        .value
        .iter()
        .map(|c| c.name.parse().unwrap())
        .collect();
    assert_eq!(
        names,
        (1..=CLAIMERS as u64).collect::<Vec<_>>(),
        "in candidate order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_claiming_at_once_on_sqlite_get_distinct_first_free_names() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("claims.db").display());
    claims_at_once(&url, "sqlite").await;
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_claiming_at_once_on_dynamodb_get_distinct_first_free_names() {
    use dynamodb_support::*;
    let Some(endpoint) = endpoint() else { return };
    let table = unique_table("claims-at-once");
    create_table(&raw_client(&endpoint).await, &table).await;
    let url = format!("dynamodb://{table}?region={REGION}&endpoint={endpoint}");
    claims_at_once(&url, "dynamodb").await;
}
