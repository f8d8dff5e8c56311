//! A leased holder's process killed with SIGKILL while another process
//! waits behind it, on SQLite and on DynamoDB: the waiter becomes head after
//! about one lease (never before the dead holder could have given up, and
//! within one lease plus one poll interval and the time processes take to
//! start and be scheduled), with a larger fencing token.
//!
//! The parent starts copies of this very test binary as the holder and the
//! waiter (the `worker` test, with `MONOTONE_WORKER_*` set); each prints
//! `JOINED <counter> <token>` and then `HEAD <counter> <token>` when it leads.

#[cfg(feature = "aws")]
mod dynamodb_support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use monotone::{HolderOptions, LeaseHolder, Queue, Store, Tags, WaitOptions};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(1);

/// The entry point of worker processes; a no-op when run directly.
#[tokio::test]
async fn worker() {
    let (Ok(url), Ok(role)) = (
        std::env::var("MONOTONE_WORKER_URL"),
        std::env::var("MONOTONE_WORKER_ROLE"),
    ) else {
        return;
    };
    let store: Arc<dyn Store> = monotone::open(&url).await.unwrap();
    let queue: Arc<dyn Queue> = Arc::from(store.queue("q").unwrap());
    let holder = LeaseHolder::join(queue, &role, Tags::new(), LEASE, HolderOptions::new())
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

fn start(url: &str, role: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker", "--nocapture", "--test-threads=1"])
        .env("MONOTONE_WORKER_URL", url)
        .env("MONOTONE_WORKER_ROLE", role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start a worker");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The (counter, token) of the next line starting with `what`.
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

/// Kill the leading holder with SIGKILL while a waiter waits; how long the
/// waiter took to lead after the kill.
async fn takeover(url: &str) -> Duration {
    let (mut holder, mut holder_out) = start(url, "holder");
    let (_, holder_token) = expect(&mut holder_out, "HEAD").await;
    let (mut waiter, mut waiter_out) = start(url, "waiter");
    expect(&mut waiter_out, "JOINED").await;
    // Let the holder renew a few times while the waiter watches.
    tokio::time::sleep(LEASE * 3 / 2).await;
    holder.start_kill().unwrap();
    let killed = Instant::now();
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
    // Never before the holder could have given up: its last renewal went
    // out at most a third of a lease before it died, and it gave up nine
    // tenths of a lease after that.
    assert!(
        took >= LEASE * 9 / 10 - LEASE / 3,
        "took over {took:?} after the kill: too early"
    );
    // One lease plus one poll interval (a quarter lease), and time for the
    // processes to be scheduled on a loaded machine.
    assert!(
        took <= LEASE + LEASE / 4 + Duration::from_secs(2),
        "took over {took:?} after the kill"
    );
    let store = url.split(':').next().unwrap_or(url);
    println!("{store}, lease {LEASE:?}: the waiter led {took:?} after the holder's SIGKILL");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_over_from_a_killed_holder_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("lease.db").display());
    takeover(&url).await;
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_over_from_a_killed_holder_on_dynamodb() {
    use dynamodb_support::*;
    let Some(endpoint) = endpoint() else { return };
    let table = unique_table("lease-kill");
    create_table(&raw_client(&endpoint).await, &table).await;
    let url = format!("dynamodb://{table}?region={REGION}&endpoint={endpoint}");
    takeover(&url).await;
}
