//! Library benchmarks: `next`, `join` + `leave` and `tickets` on the memory
//! and SQLite stores, from one task, from 8 concurrent tasks, and (SQLite) from
//! 8 OS processes on one file; and what a document watcher's change check
//! costs against a full read, for a small and a large document.
//!
//! Run with `cargo bench -p monotone --bench stores`. The 8-process case
//! starts copies of this benchmark binary as workers (see [`worker`]).
//! Concurrent cases report time per operation (total time / operations), so
//! their throughput is 1 / that time.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use monotone::{DocumentExt, MemoryStore, SqliteStore, Store, Tags};
use tokio::runtime::Runtime;

const TASKS: u64 = 8;
const WORKER_ENV: &str = "MONOTONE_BENCH_WORKER";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The stores under test, each fresh, with what keeps them alive.
fn stores() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("bench.db")).unwrap();
    vec![
        ("memory", Arc::new(MemoryStore::new()), None),
        ("sqlite", Arc::new(sqlite), Some(dir)),
    ]
}

fn single_task(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("single_task");
    group.throughput(Throughput::Elements(1));
    for (name, store, _guard) in stores() {
        let counter = store.counter("bench-counter").unwrap();
        group.bench_function(BenchmarkId::new("next", name), |b| {
            b.to_async(&rt).iter(|| counter.next())
        });

        let queue = store.queue("bench-queue").unwrap();
        group.bench_function(BenchmarkId::new("join_leave", name), |b| {
            b.to_async(&rt).iter(|| async {
                queue.join("bench-process", Tags::new()).await.unwrap();
                queue.leave("bench-process").await.unwrap()
            })
        });

        let listed = store.queue("bench-list").unwrap();
        rt.block_on(async {
            for i in 0..16 {
                listed.join(&format!("p{i}"), Tags::new()).await.unwrap();
            }
        });
        group.bench_function(BenchmarkId::new("tickets_of_16", name), |b| {
            b.to_async(&rt).iter(|| listed.tickets())
        });
    }
    group.finish();
}

/// `TASKS` tasks share the work of `iters` operations; returns the elapsed
/// time for all of them.
fn run_tasks(rt: &Runtime, store: &Arc<dyn Store>, op: &'static str, iters: u64) -> Duration {
    let per_task = iters.div_ceil(TASKS);
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    let counter = store.counter("bench-counter").unwrap();
                    let queue = store.queue("bench-queue").unwrap();
                    let me = format!("task{t}");
                    for _ in 0..per_task {
                        if op == "next" {
                            counter.next().await.unwrap();
                        } else {
                            queue.join(&me, Tags::new()).await.unwrap();
                            queue.leave(&me).await.unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    })
}

fn concurrent_tasks(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("8_tasks");
    group.throughput(Throughput::Elements(1));
    for (name, store, _guard) in stores() {
        for op in ["next", "join_leave"] {
            group.bench_function(BenchmarkId::new(op, name), |b| {
                b.iter_custom(|iters| run_tasks(&rt, &store, op, iters))
            });
        }
    }
    group.finish();
}

/// `TASKS` processes of this binary run `next` on one SQLite file at once.
fn sqlite_processes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    drop(SqliteStore::open(&db).unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut group = c.benchmark_group("8_processes");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.bench_function("next/sqlite", |b| {
        b.iter_custom(|iters| {
            let per_process = iters.div_ceil(TASKS).max(1);
            let children: Vec<_> = (0..TASKS)
                .map(|_| {
                    Command::new(&exe)
                        .env(WORKER_ENV, format!("{}|{per_process}", db.display()))
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            // Each worker reports its own time from store open to the last
            // `next`; the slowest bounds the wall time of the whole batch
            // without counting process start-up.
            children
                .into_iter()
                .map(|c| {
                    let out = c.wait_with_output().unwrap();
                    assert!(out.status.success());
                    let nanos: u64 = String::from_utf8(out.stdout)
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    Duration::from_nanos(nanos)
                })
                .max()
                .unwrap()
        })
    });
    group.finish();
}

/// A worker process: `next` N times on the file, print the elapsed nanoseconds.
fn worker(spec: &str) {
    let (db, n) = spec.rsplit_once('|').expect("PATH|N");
    let n: u64 = n.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let store = SqliteStore::open(Path::new(db)).unwrap();
        let counter = store.counter("bench-counter").unwrap();
        for _ in 0..n {
            counter.next().await.unwrap();
        }
    });
    println!("{}", start.elapsed().as_nanos());
}

/// A watcher's check of an unchanged document (`read_if_changed`) against a
/// full read, for a document of about 100 bytes and one of 300 KB: on SQLite
/// the check reads the version only, so its cost does not grow with the
/// document.
fn document_check(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("document");
    group.throughput(Throughput::Elements(1));
    for (name, store, _guard) in stores() {
        for (size, value) in [
            (
                "100B",
                serde_json::json!({"globs": ["/usr/sbin/*", "/opt/*/bin/*"], "interval": 5}),
            ),
            ("300KB", serde_json::json!({"blob": "x".repeat(300 * 1024)})),
        ] {
            let doc = store.document(&format!("bench-doc-{size}")).unwrap();
            let version = rt.block_on(doc.write(0, &value)).unwrap();
            group.bench_function(
                BenchmarkId::new(format!("check_unchanged_{size}"), name),
                |b| b.to_async(&rt).iter(|| doc.read_if_changed(version)),
            );
            group.bench_function(BenchmarkId::new(format!("read_{size}"), name), |b| {
                b.to_async(&rt).iter(|| doc.read())
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    single_task,
    concurrent_tasks,
    sqlite_processes,
    document_check
);

fn main() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
