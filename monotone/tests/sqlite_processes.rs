//! Many OS processes on one SQLite file at once: the multi-process suite
//! (see `processes`), plus what only a file shows: processes that open a
//! file of the previous release together migrate it once.

mod processes;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use monotone::Store;
use processes::{run_workers, Sent, SharedStore, EACH, PROCESSES};
use tempfile::TempDir;

/// A file in a temporary directory of its own, which the first process to
/// open it creates.
struct Sqlite;

fn url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

impl SharedStore for Sqlite {
    type Guard = TempDir;
    const NAME: &'static str = "sqlite";
    const WATCH_POLL: Duration = Duration::from_millis(2);
    const WATCH_TIMEOUT: Duration = Duration::from_secs(60);
    const KNOWS_DEATHS: bool = cfg!(target_os = "linux");

    async fn fresh(_tag: &str) -> Option<(String, TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        Some((url(&dir.path().join("shared.db")), dir))
    }

    /// One transaction per operation: nothing to count.
    async fn open(url: &str) -> (Arc<dyn Store>, Option<Box<dyn Sent>>) {
        let store = monotone::open(url).await.expect("open the shared file");
        (store, None)
    }
}

process_suite!(Sqlite);

/// 8 processes open a file of the previous release's schema at once: one
/// migrates it, none fails or sees it half-migrated, and the old data and
/// every new write are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_an_old_file_at_once_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(include_str!("fixtures/schema_v1.sql"))
            .unwrap();
    }
    // Each worker opens the file before it calls `next`.
    let (results, _) = run_workers::<Sqlite>(&url(&db), "next").await;
    let mut values: Vec<u64> = results.iter().map(|r| r.value).collect();
    values.sort_unstable();
    // The fixture's counter `c` stood at 7.
    let total = (PROCESSES * EACH) as u64;
    assert_eq!(values, (8..8 + total).collect::<Vec<_>>());
    let store = monotone::SqliteStore::open(&db).unwrap();
    let q = store.queue("q").unwrap().tickets().await.unwrap();
    assert_eq!(q.fencing_token.0, 4);
    assert_eq!(q.value.len(), 2);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, monotone::sqlite::SCHEMA_VERSION);
}
