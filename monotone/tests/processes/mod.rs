//! The multi-process checks: many OS processes on one store at once, run
//! unchanged against every store that processes share through a URL
//! (SQLite, DynamoDB; not memory). No value handed out twice, no join or
//! document update lost while a watcher looks on, a killed lease holder
//! taken over in time, claims made at the same moment all distinct.
//!
//! A store's test file gets them all with a type that says how to reach the
//! store ([`SharedStore`]) and one line:
//!
//! ```ignore
//! mod processes;
//!
//! struct Etcd;
//! impl processes::SharedStore for Etcd { /* fresh(), open() */ }
//!
//! process_suite!(Etcd);
//! ```
//!
//! The parent tests start copies of their own test binary, each running
//! only the `worker` test (which the macro defines) with `MONOTONE_WORKER_*`
//! set in its environment. A worker opens the store from the URL, as the
//! CLI does, prints `READY`, and waits until its stdin closes: the parent
//! closes every worker's stdin at once, so the workers' operations start
//! within microseconds of each other. A worker then prints one `VALUE
//! <value> <token> <microseconds> <requests> <writes> <waits>` line per
//! operation; the parent collects them from every process and checks the
//! whole. Requests are counted where the store can count them (DynamoDB, by
//! an interceptor: a write is an `UpdateItem` that changes the item, a wait
//! one that writes a claimer into a pool's `Waiting`); elsewhere an
//! operation is one transaction.
//!
//! Not a benchmark: the numbers are printed (see them with --nocapture),
//! only correctness is asserted.

#![allow(dead_code)] // each test binary uses part of it

pub mod document;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monotone::{
    Candidates, Document, DocumentExt, FencingToken, HolderOptions, LeaseHolder, Queue, Store,
    Tags, WaitOptions,
};
use serde_json::json;

use document::{check_history, follow, incremented};

/// Every multi-process check on the store of `$store` (a [`SharedStore`]),
/// each a test named after it, and the `worker` test that the checks'
/// processes run.
#[macro_export]
macro_rules! process_suite {
    ($store:ty) => {
        /// The entry point of worker processes; a no-op when run directly.
        #[tokio::test]
        async fn worker() {
            $crate::processes::worker::<$store>().await;
        }

        $crate::process_suite!(@each $store;
            a_lone_worker_counts_from_one,
            processes_calling_next_get_each_value_once,
            processes_joining_one_queue_lose_nothing,
            processes_updating_one_document_lose_nothing_while_watched,
            a_waiter_takes_over_from_a_killed_holder,
            processes_claiming_at_once_get_distinct_first_free_names,
            a_write_by_a_process_that_keeps_running_wakes_a_waiter,
        );
    };
    (@each $store:ty; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::processes::$check::<$store>().await;
            }
        )*
    };
}

/// How the checks reach a store that several processes share.
pub trait SharedStore: 'static {
    /// Whatever must live as long as the place (a temporary directory).
    type Guard;
    /// The store, in what the checks print.
    const NAME: &'static str;
    /// How often the document watcher reads while the workers write.
    const WATCH_POLL: Duration;
    /// How long the watcher may take to reach the final version once the
    /// workers are done.
    const WATCH_TIMEOUT: Duration;
    /// What one counter `next` costs in requests, where the store promises
    /// a number.
    const REQUESTS_PER_NEXT: Option<u64> = None;
    /// Whether the kernel tells of a holder's death (the embedded store's
    /// kernel liveness), so that its record may go before its lease.
    const KNOWS_DEATHS: bool = false;

    /// The URL of a fresh, empty place (named after `tag` where the store
    /// names places), or `None` (after saying so) to skip the check.
    fn fresh(tag: &str) -> impl Future<Output = Option<(String, Self::Guard)>>;

    /// The store of `url` as a worker opens it, and a count of the requests
    /// it sends where the store can count them.
    fn open(url: &str) -> impl Future<Output = (Arc<dyn Store>, Option<Box<dyn Sent>>)>;

    /// Make a worker's environment the one the store's tests need (before
    /// the worker's own variables are set).
    fn worker_env(_worker: &mut Command) {}
}

/// The requests a store sent, as a worker counts them.
pub trait Sent: Send + Sync {
    /// The requests since the last call, oldest first.
    fn take(&self) -> Vec<Request>;
}

/// One request a store sent.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its name in the store's protocol.
    pub operation: String,
    pub kind: RequestKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A read of one item.
    Read,
    /// A write that changes the item.
    Write,
    /// A write of a claimer into a pool's waiting list, or out of it.
    Wait,
    /// Anything else (a table's description, ...).
    Other,
}

pub const PROCESSES: usize = 8;
pub const EACH: usize = 50;
const CLAIMERS: usize = 64;
const RELEASED: usize = 32;
const POOL: &str = "myzk";
/// A lease holder's lease in the takeover check.
const LEASE: Duration = Duration::from_secs(1);

/// One operation of a worker.
#[derive(Debug, Clone)]
pub struct Done {
    /// The worker that did it.
    pub owner: String,
    /// The counter's value, the ticket's counter, the document's number or
    /// the claimed name.
    pub value: u64,
    pub token: u64,
    pub micros: u64,
    pub requests: u64,
    pub writes: u64,
    pub waits: u64,
}

/// (requests, writes, waits) among what a store sent for one operation:
/// one transaction where the store cannot count.
fn counted(sent: &Option<Box<dyn Sent>>) -> (u64, u64, u64) {
    let Some(sent) = sent else {
        return (1, 1, 0);
    };
    let sent = sent.take();
    let of = |kind| sent.iter().filter(|r| r.kind == kind).count() as u64;
    (
        sent.len() as u64,
        of(RequestKind::Write),
        of(RequestKind::Wait),
    )
}

/// What a worker does: `EACH` times `next` on counter "c", `join` queue "q"
/// under a fresh process id, or one more in "n" of document "d" through the
/// update helper; once, claim in or release from the pool. Also what the
/// lone worker check runs in-process.
async fn work(store: &dyn Store, sent: &Option<Box<dyn Sent>>, op: &str, name: &str) -> Vec<Done> {
    let times = if ["claim", "release"].contains(&op) {
        1
    } else {
        EACH
    };
    let mut out = Vec::with_capacity(times);
    for i in 0..times {
        let started = Instant::now();
        let (value, token) = match op {
            "next" => {
                let v = store.counter("c").unwrap().next().await.unwrap();
                (v, v)
            }
            "join" => {
                let q = store.queue("q").unwrap();
                let t = q.join(&format!("{name}-{i}"), Tags::new()).await.unwrap();
                (t.value.counter, t.fencing_token.0)
            }
            "doc-incr" => {
                let d = store.document("d").unwrap();
                let s = d.update(incremented).await.unwrap();
                (s.value.unwrap()["n"].as_u64().unwrap(), s.version)
            }
            "claim" => {
                let pool = store.claim_pool(POOL).unwrap();
                let candidates = Candidates::range(1..=255).unwrap();
                let got = pool.claim_with(name, &candidates, None).await.unwrap();
                assert!(got.added, "{name} held a claim already");
                let claim = got.claim;
                (claim.value.name.parse().unwrap(), claim.fencing_token.get())
            }
            "release" => {
                let released = store.claim_pool(POOL).unwrap().release(name).await;
                let released = released.unwrap();
                (
                    released.value.name.parse().unwrap(),
                    released.fencing_token.get(),
                )
            }
            other => panic!("unknown worker op {other}"),
        };
        let micros = started.elapsed().as_micros() as u64;
        let (requests, writes, waits) = counted(sent);
        out.push(Done {
            owner: name.to_owned(),
            value,
            token,
            micros,
            requests,
            writes,
            waits,
        });
    }
    out
}

/// The `worker` test: what a worker process does, by `MONOTONE_WORKER_OP`;
/// nothing when run directly.
pub async fn worker<S: SharedStore>() {
    let (Ok(url), Ok(op)) = (
        std::env::var("MONOTONE_WORKER_URL"),
        std::env::var("MONOTONE_WORKER_OP"),
    ) else {
        return;
    };
    let name = std::env::var("MONOTONE_WORKER_NAME").unwrap_or_default();
    match op.as_str() {
        // Through `monotone::open` and nothing else, as the CLI opens a
        // store: the URL's location, or one counter read.
        "location" | "get" => {
            let store = match monotone::open(&url).await {
                Ok(s) => s,
                Err(e) => {
                    println!("ERROR {:?} {e}", e.kind());
                    return;
                }
            };
            if op == "location" {
                println!("LOCATION {}", store.location());
                return;
            }
            match store.counter("c").unwrap().get().await {
                Ok(v) => println!("VALUE {v} {v} 0 0 0"),
                Err(e) => println!("ERROR {:?} {e}", e.kind()),
            }
        }
        "hold" => hold(&url, &name).await,
        "join-and-stay" => join_and_stay(&url, &name).await,
        _ => {
            let (store, sent) = S::open(&url).await;
            println!("READY");
            // Wait for the others: the parent closes every worker's stdin
            // at once.
            std::io::stdin().read_to_end(&mut Vec::new()).unwrap();
            for d in work(&*store, &sent, &op, &name).await {
                println!(
                    "VALUE {} {} {} {} {} {}",
                    d.value, d.token, d.micros, d.requests, d.writes, d.waits
                );
            }
        }
    }
}

/// A leased holder `role` of a ticket in queue "q": prints `JOINED <counter>
/// <token>`, then `HEAD <counter> <token>` when it leads; the "holder" leads
/// until killed, any other role releases and ends.
async fn hold(url: &str, role: &str) {
    let store: Arc<dyn Store> = monotone::open(url).await.unwrap();
    let queue: Arc<dyn Queue> = Arc::from(store.queue("q").unwrap());
    let holder = LeaseHolder::join(queue, role, Tags::new(), LEASE, HolderOptions::new())
        .await
        .unwrap();
    let joined = holder.joined();
    println!("JOINED {} {}", joined.value.counter, joined.fencing_token);
    let head = holder
        .wait_for_position(1, &WaitOptions::new())
        .await
        .unwrap();
    println!("HEAD {} {}", head.value.counter, head.fencing_token);
    if role == "holder" {
        // Lead until killed.
        std::future::pending::<()>().await;
    }
    holder.release().await.unwrap();
}

/// Join queue "q" as `name` (one write), print `JOINED <counter> <token>`,
/// and keep running until stdin closes.
async fn join_and_stay(url: &str, name: &str) {
    let store = monotone::open(url).await.unwrap();
    let joined = store
        .queue("q")
        .unwrap()
        .join(name, Tags::new())
        .await
        .unwrap();
    println!("JOINED {} {}", joined.value.counter, joined.fencing_token);
    std::io::stdin().read_to_end(&mut Vec::new()).unwrap();
}

/// A worker process of this test binary, doing `op` as `name` on `url`, in
/// the environment the store wants, with its output piped.
pub fn worker_command<S: SharedStore>(url: &str, op: &str, name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    S::worker_env(&mut cmd);
    cmd.args(["--exact", "worker", "--nocapture", "--test-threads=1"])
        .env("MONOTONE_WORKER_URL", url)
        .env("MONOTONE_WORKER_OP", op)
        .env("MONOTONE_WORKER_NAME", name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Run one worker to the end; its output lines after `prefix`.
pub fn run_one(mut cmd: Command, prefix: &str) -> Vec<String> {
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

/// Start one worker per owner doing `op` on `url`, wait until all are
/// ready, let them go at once, and collect every operation each reported;
/// the time from the start to the last report.
pub fn wave<S: SharedStore>(url: &str, op: &str, owners: &[String]) -> (Vec<Done>, Duration) {
    let each = if ["claim", "release"].contains(&op) {
        1
    } else {
        EACH
    };
    let mut workers: Vec<(String, Child, BufReader<ChildStdout>)> = owners
        .iter()
        .map(|owner| {
            let mut child = worker_command::<S>(url, op, owner)
                .stdin(Stdio::piped())
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
        let done: Vec<Done> = text
            .lines()
            .filter_map(|l| l.split_once("VALUE ").map(|(_, rest)| rest))
            .map(|l| {
                let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                Done {
                    owner: owner.clone(),
                    value: v[0],
                    token: v[1],
                    micros: v[2],
                    requests: v[3],
                    writes: v[4],
                    waits: v[5],
                }
            })
            .collect();
        assert_eq!(
            done.len(),
            each,
            "{owner} reports all its results: {text}\n{err}"
        );
        all.extend(done);
    }
    (all, started.elapsed())
}

/// [`wave`] of `PROCESSES` workers, off the async runtime.
pub async fn run_workers<S: SharedStore>(url: &str, op: &str) -> (Vec<Done>, Duration) {
    run_wave::<S>(url, op, owners("proc", PROCESSES)).await
}

async fn run_wave<S: SharedStore>(
    url: &str,
    op: &str,
    owners: Vec<String>,
) -> (Vec<Done>, Duration) {
    let (url, op) = (url.to_owned(), op.to_owned());
    tokio::task::spawn_blocking(move || wave::<S>(&url, &op, &owners))
        .await
        .unwrap()
}

fn owners(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

pub fn median_ms(mut micros: Vec<u64>) -> f64 {
    micros.sort_unstable();
    micros[micros.len() / 2] as f64 / 1000.0
}

/// Not a pass/fail check: how a wave went (see it with --nocapture).
fn report<S: SharedStore>(what: &str, done: &[Done], took: Duration) {
    let stats = |mut v: Vec<u64>| {
        v.sort_unstable();
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        format!(
            "median {}, mean {mean:.2}, p99 {}, max {}",
            v[v.len() / 2],
            v[v.len() * 99 / 100],
            v[v.len() - 1]
        )
    };
    println!(
        "{}: {} x {what} at once in {:.2}s; per {what}: median {:.1} ms, slowest {:.0} ms; \
         requests {}; writes {}; waits in a pool {}",
        S::NAME,
        done.len(),
        took.as_secs_f64(),
        median_ms(done.iter().map(|d| d.micros).collect()),
        done.iter().map(|d| d.micros).max().unwrap_or(0) as f64 / 1000.0,
        stats(done.iter().map(|d| d.requests).collect()),
        stats(done.iter().map(|d| d.writes).collect()),
        stats(done.iter().map(|d| d.waits).collect()),
    );
}

/// A worker on its own, in this process, on a fresh place: every `next`
/// and every join gets the next value, its token equal to it.
pub async fn a_lone_worker_counts_from_one<S: SharedStore>() {
    let Some((url, _guard)) = S::fresh("lone").await else {
        return;
    };
    let (store, sent) = S::open(&url).await;
    let expected: Vec<(u64, u64)> = (1..=EACH as u64).map(|v| (v, v)).collect();
    for op in ["next", "join"] {
        let got: Vec<(u64, u64)> = work(&*store, &sent, op, "solo")
            .await
            .iter()
            .map(|d| (d.value, d.token))
            .collect();
        assert_eq!(got, expected, "{op}");
    }
}

pub async fn processes_calling_next_get_each_value_once<S: SharedStore>() {
    // The workers race to create the place, where the store creates it.
    let Some((url, _guard)) = S::fresh("procs-next").await else {
        return;
    };
    let (results, took) = run_workers::<S>(&url, "next").await;
    let mut values: Vec<u64> = results.iter().map(|r| r.value).collect();
    values.sort_unstable();
    let total = (PROCESSES * EACH) as u64;
    assert_eq!(values, (1..=total).collect::<Vec<_>>());
    let (store, _) = S::open(&url).await;
    assert_eq!(store.counter("c").unwrap().get().await.unwrap(), total);
    report::<S>("counter next", &results, took);
    if let Some(n) = S::REQUESTS_PER_NEXT {
        assert!(
            results.iter().all(|r| r.requests == n),
            "{n} request(s) per next"
        );
    }
}

pub async fn processes_joining_one_queue_lose_nothing<S: SharedStore>() {
    let Some((url, _guard)) = S::fresh("procs-join").await else {
        return;
    };
    let (results, took) = run_workers::<S>(&url, "join").await;
    let total = (PROCESSES * EACH) as u64;
    let counters: BTreeSet<u64> = results.iter().map(|r| r.value).collect();
    let tokens: BTreeSet<u64> = results.iter().map(|r| r.token).collect();
    assert_eq!(counters, (1..=total).collect(), "every counter once");
    assert_eq!(tokens, (1..=total).collect(), "every token once");
    let (store, _) = S::open(&url).await;
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
    report::<S>("queue join", &results, took);
}

/// 8 processes each add 1 to a number inside one document 50 times with the
/// update helper, while a watcher in this process follows the change
/// stream: the number ends at 400 and the version 400 higher, each update
/// took one version and saw its own number, and the watcher saw versions
/// only rise, ended on the final state, and only read. Prints what the
/// updates and the watcher cost.
pub async fn processes_updating_one_document_lose_nothing_while_watched<S: SharedStore>() {
    let Some((url, _guard)) = S::fresh("procs-doc").await else {
        return;
    };
    let (store, watcher_requests) = S::open(&url).await;
    let d: Arc<dyn Document> = Arc::from(store.document("d").unwrap());
    let start = d
        .write(0, &json!({"n": 0, "kept": "as it was"}))
        .await
        .unwrap();
    let polls = || watcher_requests.as_ref().map(|s| s.take());
    polls();
    let total = (PROCESSES * EACH) as u64;
    let last = start + total;

    let end = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (d, end) = (Arc::clone(&d), Arc::clone(&end));
        tokio::spawn(async move {
            let started = Instant::now();
            let seen = follow(d, start, end, S::WATCH_POLL).await;
            (seen, started.elapsed())
        })
    };
    let (results, took) = run_workers::<S>(&url, "doc-incr").await;
    end.store(d.read().await.unwrap().version, Ordering::SeqCst);
    let (seen, watched) = tokio::time::timeout(S::WATCH_TIMEOUT, watcher)
        .await
        .expect("the watcher reaches the final version")
        .unwrap();
    let polls = polls();

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

    report::<S>("document update", &results, took);
    let folded = seen.iter().filter(|c| c.folded()).count();
    print!(
        "watcher (a check every {} ms): {} changes, {folded} of them folded",
        S::WATCH_POLL.as_millis(),
        seen.len(),
    );
    if let Some(polls) = polls {
        assert!(
            polls.iter().all(|r| r.kind == RequestKind::Read),
            "a watcher only reads: {polls:?}"
        );
        print!(
            "; {} reads in {:.2}s ({:.1}/s)",
            polls.len(),
            watched.as_secs_f64(),
            polls.len() as f64 / watched.as_secs_f64(),
        );
    }
    println!();
}

/// A leased holder's process killed with SIGKILL while another process
/// waits behind it: the waiter becomes head after about one lease (never
/// before the dead holder could have given up, and within one lease plus
/// one poll interval and the time processes take to start and be
/// scheduled), with a larger fencing token.
/// Another process joins a queue and keeps running: the waiter of this
/// process is woken by that one write. On a store that pushes its poll
/// interval is an hour, so only a notification can wake it within the
/// minute; one that polls gets 20 ms. The writer runs until the waiter has
/// returned, so the waiter cannot have learned of the write from its end
/// (on SQLite: the kernel's report of its files closing).
pub async fn a_write_by_a_process_that_keeps_running_wakes_a_waiter<S: SharedStore>() {
    let Some((url, _guard)) = S::fresh("push").await else {
        return;
    };
    let (store, _) = S::open(&url).await;
    let queue: Arc<dyn Queue> = Arc::from(store.queue("q").unwrap());
    let seen = queue.token().await.unwrap();
    let poll = if queue.pushes() {
        Duration::from_secs(3600)
    } else {
        Duration::from_millis(20)
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let waiter = {
        let queue = Arc::clone(&queue);
        tokio::spawn(async move { queue.wait_for_change(seen, Some(until), poll).await })
    };
    let cmd = worker_command::<S>(&url, "join-and-stay", "writer");
    let mut writer = tokio::process::Command::from(cmd)
        .stdin(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start a worker");
    let written = Instant::now();
    let changed = waiter.await.unwrap().unwrap();
    let took = written.elapsed();
    assert!(
        writer.try_wait().unwrap().is_none(),
        "the writer still runs"
    );
    assert!(changed, "no change seen in {took:?}");
    let now = queue.token().await.unwrap();
    assert_eq!(now.get(), seen.get() + 1);
    drop(writer.stdin.take());
    assert!(writer.wait().await.unwrap().success());
    println!(
        "{}: woken {took:?} after the writer process started ({})",
        S::NAME,
        if queue.pushes() { "pushed" } else { "polled" }
    );
}

pub async fn a_waiter_takes_over_from_a_killed_holder<S: SharedStore>() {
    use tokio::io::{AsyncBufReadExt, BufReader, Lines};
    use tokio::process::{Child, ChildStdout};

    let Some((url, _guard)) = S::fresh("lease-kill").await else {
        return;
    };
    let start = |role: &str| -> (Child, Lines<BufReader<ChildStdout>>) {
        let cmd = worker_command::<S>(&url, "hold", role);
        let mut child = tokio::process::Command::from(cmd)
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start a worker");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    };
    // The (counter, token) of the next line starting with `what`.
    async fn expect(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> (u64, u64) {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest may print its own "running 1 test" before ours.
            if let Some((_, rest)) = line.split_once(&format!("{what} ")) {
                let (counter, token) = rest.split_once(' ').unwrap();
                return (counter.parse().unwrap(), token.parse().unwrap());
            }
        }
        panic!("the worker ended without printing {what}");
    }

    let (mut holder, mut holder_out) = start("holder");
    let (_, holder_token) = expect(&mut holder_out, "HEAD").await;
    let (mut waiter, mut waiter_out) = start("waiter");
    expect(&mut waiter_out, "JOINED").await;
    // Let the holder renew a few times while the waiter watches.
    tokio::time::sleep(LEASE * 3 / 2).await;
    holder.start_kill().unwrap();
    let killed = tokio::time::Instant::now();
    let status = holder.wait().await.unwrap();
    assert!(!status.success(), "the holder was killed: {status:?}");
    let (_, waiter_token) = expect(&mut waiter_out, "HEAD").await;
    let took = killed.elapsed();
    assert!(
        waiter_token > holder_token,
        "the new head's token {waiter_token} is not above the dead holder's {holder_token}"
    );
    let status = waiter.wait().await.unwrap();
    assert!(
        status.success(),
        "the waiter released and exited: {status:?}"
    );
    // Where only the lease tells of the death: never before the holder
    // could have given up: its last renewal went out at most a third of a
    // lease before it died, and it gave up nine tenths of a lease after
    // that. Where the kernel tells (the embedded store), at once.
    assert!(
        S::KNOWS_DEATHS || took >= LEASE * 9 / 10 - LEASE / 3,
        "took over {took:?} after the kill: too early"
    );
    // One lease plus one poll interval (a quarter lease), and time for the
    // processes to be scheduled on a loaded machine.
    assert!(
        took <= LEASE + LEASE / 4 + Duration::from_secs(2),
        "took over {took:?} after the kill"
    );
    println!(
        "{}, lease {LEASE:?}: the waiter led {took:?} after the holder's SIGKILL",
        S::NAME
    );
}

/// 64 processes claim from one pool of `1..=255` at the same moment: every
/// process gets its own name, the names are exactly 1 to 64 (each claim
/// took the first free one), the claims' tokens are exactly 1 to 64, and
/// nothing is lost. Then 32 of them release at once, and 32 new claimers at
/// once get exactly the names freed.
pub async fn processes_claiming_at_once_get_distinct_first_free_names<S: SharedStore>() {
    let Some((url, _guard)) = S::fresh("claims-at-once").await else {
        return;
    };
    let (first, took) = run_wave::<S>(&url, "claim", owners("host-", CLAIMERS)).await;
    report::<S>("claim", &first, took);
    let names: BTreeSet<u64> = first.iter().map(|d| d.value).collect();
    let tokens: BTreeSet<u64> = first.iter().map(|d| d.token).collect();
    let all = 1..=CLAIMERS as u64;
    assert_eq!(
        names,
        all.clone().collect(),
        "distinct, and each the first free"
    );
    assert_eq!(tokens, all.collect(), "one token per claim");
    let (opened, _) = S::open(&url).await;
    let pool = opened.claim_pool(POOL).unwrap();
    let listed = pool.claims().await.unwrap();
    assert_eq!(listed.fencing_token, FencingToken(CLAIMERS as u64));
    let mut held: Vec<(u64, String)> = listed
        .value
        .iter()
        .map(|c| (c.name.parse().unwrap(), c.owner.clone()))
        .collect();
    let mut reported: Vec<(u64, String)> =
        first.iter().map(|d| (d.value, d.owner.clone())).collect();
    held.sort();
    reported.sort();
    assert_eq!(
        held, reported,
        "every claim is stored as its claimer was told"
    );

    // Half of them release at once: every other one by name.
    let leaving: Vec<String> = first
        .iter()
        .filter(|d| d.value % 2 == 0)
        .map(|d| d.owner.clone())
        .collect();
    assert_eq!(leaving.len(), RELEASED);
    let (released, took) = run_wave::<S>(&url, "release", leaving).await;
    report::<S>("release", &released, took);
    let freed: BTreeSet<u64> = released.iter().map(|d| d.value).collect();
    assert_eq!(freed, (2..=CLAIMERS as u64).step_by(2).collect());
    let tokens: BTreeSet<u64> = released.iter().map(|d| d.token).collect();
    assert_eq!(
        tokens,
        (CLAIMERS as u64 + 1..=(CLAIMERS + RELEASED) as u64).collect()
    );

    // New claimers at once get exactly the names freed: the lowest free.
    let (second, took) = run_wave::<S>(&url, "claim", owners("new-", RELEASED)).await;
    report::<S>("claim of a freed name", &second, took);
    let names: BTreeSet<u64> = second.iter().map(|d| d.value).collect();
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
