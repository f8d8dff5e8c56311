//! Many OS processes on one SQLite file at once: no value handed out twice,
//! no write lost, no document update lost while a watcher looks on.
//!
//! The parent tests start copies of this very test binary, each running only
//! the `worker` test with `MONOTONE_WORKER_*` set in its environment. A worker
//! prints one `VALUE <counter> <token>` line per operation; the parent
//! collects them from every process and checks the whole.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monotone::{Document, DocumentExt, SqliteStore, Store, Tags};
use serde_json::json;

mod document_support;
use document_support::{check_history, follow, incremented};

const PROCESSES: usize = 8;
const EACH: usize = 50;

/// What a worker does, `EACH` times: `next` on counter "c", or `join` queue
/// "q" under a fresh process id.
async fn work(db: &Path, op: &str, name: &str) -> Vec<(u64, u64)> {
    let store = SqliteStore::open(db).expect("open the shared file");
    let mut out = Vec::with_capacity(EACH);
    for i in 0..EACH {
        let got = match op {
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
                // One more in "n" of document "d", through the update helper.
                let d = store.document("d").unwrap();
                let s = d.update(incremented).await.unwrap();
                (s.version, s.version)
            }
            "open-next" => {
                // Only the first call opens; the rest are plain `next`s.
                let v = store.counter("c").unwrap().next().await.unwrap();
                (v, v)
            }
            other => panic!("unknown worker op {other}"),
        };
        out.push(got);
    }
    out
}

/// The entry point of worker processes. Run directly (no worker environment),
/// it checks that a lone worker on a new file gets 1..=EACH for both ops.
#[tokio::test]
async fn worker() {
    if let (Ok(db), Ok(op), Ok(name)) = (
        std::env::var("MONOTONE_WORKER_DB"),
        std::env::var("MONOTONE_WORKER_OP"),
        std::env::var("MONOTONE_WORKER_NAME"),
    ) {
        for (value, token) in work(Path::new(&db), &op, &name).await {
            println!("VALUE {value} {token}");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("alone.db");
    let expected: Vec<(u64, u64)> = (1..=EACH as u64).map(|v| (v, v)).collect();
    assert_eq!(work(&db, "next", "solo").await, expected);
    assert_eq!(work(&db, "join", "solo").await, expected);
}

/// Start `PROCESSES` workers at once and return every (value, token) printed.
fn run_workers(db: &Path, op: &str) -> Vec<(u64, u64)> {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|n| {
            Command::new(&exe)
                .args(["--exact", "worker", "--nocapture", "--test-threads=1"])
                .env("MONOTONE_WORKER_DB", db)
                .env("MONOTONE_WORKER_OP", op)
                .env("MONOTONE_WORKER_NAME", format!("proc{n}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
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
        let values: Vec<(u64, u64)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            // libtest may print its own "test worker ..." on the same line.
            .filter_map(|l| l.split_once("VALUE ").map(|(_, rest)| rest))
            .map(|l| {
                let (v, t) = l.split_once(' ').unwrap();
                (v.parse().unwrap(), t.parse().unwrap())
            })
            .collect();
        assert_eq!(values.len(), EACH, "every worker reports all its results");
        all.extend(values);
    }
    all
}

#[tokio::test]
async fn processes_calling_next_get_each_value_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    // The workers race to create the file, too.
    let mut values: Vec<u64> = run_workers(&db, "next")
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    values.sort_unstable();
    let total = (PROCESSES * EACH) as u64;
    assert_eq!(values, (1..=total).collect::<Vec<_>>());
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(store.counter("c").unwrap().get().await.unwrap(), total);
}

#[tokio::test]
async fn processes_joining_one_queue_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let results = run_workers(&db, "join");
    let total = (PROCESSES * EACH) as u64;
    let counters: BTreeSet<u64> = results.iter().map(|(c, _)| *c).collect();
    let tokens: BTreeSet<u64> = results.iter().map(|(_, t)| *t).collect();
    assert_eq!(counters, (1..=total).collect());
    assert_eq!(tokens, (1..=total).collect());
    let store = SqliteStore::open(&db).unwrap();
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
}

/// 8 processes open a file of the previous release's schema at once: one
/// migrates it, none fails or sees it half-migrated, and the old data and
/// every new write are there.
#[tokio::test]
async fn processes_opening_an_old_file_at_once_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(include_str!("fixtures/schema_v1.sql"))
            .unwrap();
    }
    let mut values: Vec<u64> = run_workers(&db, "open-next")
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    values.sort_unstable();
    // The fixture's counter `c` stood at 7.
    let total = (PROCESSES * EACH) as u64;
    assert_eq!(values, (8..8 + total).collect::<Vec<_>>());
    let store = SqliteStore::open(&db).unwrap();
    let q = store.queue("q").unwrap().tickets().await.unwrap();
    assert_eq!(q.fencing_token.0, 4);
    assert_eq!(q.value.len(), 2);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, monotone::sqlite::SCHEMA_VERSION);
}

/// 8 processes each add 1 to a number inside one document 50 times with the
/// update helper, while a watcher in this process follows the document's
/// change stream: no update is lost, each takes exactly one version, and
/// the watcher sees versions only rise and ends on the final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_updating_one_document_lose_nothing_while_watched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let store = SqliteStore::open(&db).unwrap();
    let d: Arc<dyn Document> = Arc::from(store.document("d").unwrap());
    let start = d
        .write(0, &json!({"n": 0, "kept": "as it was"}))
        .await
        .unwrap();
    let total = (PROCESSES * EACH) as u64;
    let last = start + total;

    let end = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(follow(
        Arc::clone(&d),
        start,
        Arc::clone(&end),
        Duration::from_millis(2),
    ));
    let db2 = db.clone();
    let results = tokio::task::spawn_blocking(move || run_workers(&db2, "doc-incr"))
        .await
        .unwrap();
    end.store(d.read().await.unwrap().version, Ordering::SeqCst);
    let seen = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("the watcher reaches the final version")
        .unwrap();

    let versions: BTreeSet<u64> = results.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        (start + 1..=last).collect(),
        "one version per update"
    );
    let now = d.read().await.unwrap();
    assert_eq!(now.version, last);
    assert_eq!(now.value, Some(json!({"n": total, "kept": "as it was"})));

    check_history(&seen, start, &now);
    let folded = seen.iter().filter(|c| c.folded()).count();
    println!(
        "{PROCESSES} processes x {EACH} updates: the watcher saw {} changes, {folded} of them folded",
        seen.len()
    );
}
