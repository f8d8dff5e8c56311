//! The conformance suite on the SQLite store, plus what only a file can get
//! wrong: persistence across opens, refusing files that are not ours.

mod conformance;

use std::sync::Arc;
use std::time::Duration;

use monotone::{
    Candidates, ClaimRequest, DocumentExt, ErrorKind, Snapshot, SqliteStore, Store, Tags,
};
use serde_json::json;
use tempfile::TempDir;

async fn store() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("monotone.db").display());
    (monotone::open(&url).await.unwrap(), dir)
}

conformance_suite!(store());

#[tokio::test]
async fn state_survives_reopening() {
    let (_dir, path) = temp_file("m.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.counter("c").unwrap().next().await.unwrap();
        let q = s.queue("q").unwrap();
        q.join("a", [("k".to_string(), "v".to_string())].into())
            .await
            .unwrap();
        q.join("b", Tags::new()).await.unwrap();
        q.leave("a").await.unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.counter("c").unwrap().next().await.unwrap(), 2);
    let all = s.queue("q").unwrap().tickets().await.unwrap();
    assert_eq!(all.fencing_token.0, 3);
    assert_eq!(all.value.len(), 1);
    assert_eq!(
        (all.value[0].process_id.as_str(), all.value[0].counter),
        ("b", 2)
    );
}

#[test]
fn file_is_in_wal_mode_with_our_header() {
    let (_dir, path) = temp_file("m.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = pragma(&conn, "journal_mode");
    let app: i32 = pragma(&conn, "application_id");
    let version: i32 = pragma(&conn, "user_version");
    assert_eq!(mode, "wal");
    assert_eq!(app, monotone::sqlite::APPLICATION_ID);
    assert_eq!(version, monotone::sqlite::SCHEMA_VERSION);
}

/// A path `name` in a temporary directory of its own, which lives as long
/// as the returned guard.
fn temp_file(name: &str) -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// The value of pragma `name` in the file of `conn`.
fn pragma<T: rusqlite::types::FromSql>(conn: &rusqlite::Connection, name: &str) -> T {
    conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

/// The one value `sql` selects.
fn one<T: rusqlite::types::FromSql>(conn: &rusqlite::Connection, sql: &str) -> T {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// (type, value, version) of item `id` in table `items`.
fn item_row(conn: &rusqlite::Connection, id: &str) -> (String, i64, i64) {
    conn.query_row(
        "SELECT type, value, version FROM items WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

fn open_err(path: &std::path::Path) -> monotone::Error {
    SqliteStore::open(path).expect_err("must refuse this file")
}

#[test]
fn refuses_a_file_that_is_not_a_database_and_leaves_it_alone() {
    let (_dir, path) = temp_file("notes.txt");
    let content =
        b"these are my notes, not a database, and they are longer than a header".repeat(20);
    std::fs::write(&path, &content).unwrap();
    let err = open_err(&path);
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("not a monotone database"), "{err}");
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    assert_eq!(std::fs::read(&path).unwrap(), content, "file untouched");
}

#[test]
fn refuses_another_programs_database_and_leaves_it_alone() {
    let (_dir, path) = temp_file("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE items (x); INSERT INTO items VALUES (42);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = open_err(&path);
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("did not create"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "file untouched");
}

#[test]
fn refuses_a_newer_schema() {
    let (_dir, path) = temp_file("m.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", monotone::sqlite::SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = open_err(&path);
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("newer monotone"), "{err}");
}

#[test]
fn a_directory_or_missing_parent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_err(dir.path());
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    let err = open_err(&dir.path().join("no/such/dir/m.db"));
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test]
async fn corrupt_tags_are_reported_not_overwritten() {
    let (_dir, path) = temp_file("m.db");
    let s = SqliteStore::open(&path).unwrap();
    let q = s.queue("q").unwrap();
    q.join("a", Tags::new()).await.unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE tickets SET tags = 'not json' WHERE process_id = 'a'",
            [],
        )
        .unwrap();
    }
    let err = q.tickets().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.to_string().contains("`q`") && err.to_string().contains("`a`"),
        "{err}"
    );
    assert_eq!(q.ticket("a").await.unwrap_err().kind(), ErrorKind::Corrupt);
    // An idempotent re-join reads the ticket too, and must not paper over it.
    assert_eq!(
        q.join("a", Tags::new()).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tags: String = one(&conn, "SELECT tags FROM tickets WHERE process_id = 'a'");
    assert_eq!(tags, "not json");
}

/// A file as the previous release (schema version 1) left it.
pub fn v1_file(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(include_str!("fixtures/schema_v1.sql"))
        .unwrap();
}

#[tokio::test]
async fn a_file_of_the_previous_release_is_migrated_in_place() {
    let (_dir, path) = temp_file("old.db");
    v1_file(&path);
    let s = SqliteStore::open(&path).unwrap();
    // Everything the old release wrote reads back the same.
    assert_eq!(s.counter("c").unwrap().get().await.unwrap(), 7);
    let q = s.queue("q").unwrap();
    let all = q.tickets().await.unwrap();
    assert_eq!(all.fencing_token.0, 4);
    let seen: Vec<_> = all
        .value
        .iter()
        .map(|t| (t.process_id.as_str(), t.counter, t.position))
        .collect();
    assert_eq!(seen, [("b", 2, 0), ("c", 3, 1)]);
    assert_eq!(all.value[0].tags["role"], "zk");
    // And it goes on from where it was.
    assert_eq!(s.counter("c").unwrap().next().await.unwrap(), 8);
    let d = q.join("d", Tags::new()).await.unwrap();
    assert_eq!((d.value.counter, d.fencing_token.0), (4, 5));
    let e = s.queue("empty").unwrap().join("e", Tags::new()).await;
    assert_eq!(e.unwrap().value.counter, 2);
    // Documents, which the old release did not have, work at once.
    let d = s.document("doc").unwrap();
    assert_eq!(d.write(0, &json!({"a": 1})).await.unwrap(), 1);
    assert_eq!(
        d.read().await.unwrap(),
        Snapshot::new(Some(json!({"a": 1})), 1)
    );
    assert_eq!(
        s.document("c").unwrap().read().await.unwrap_err().kind(),
        ErrorKind::WrongType
    );
    // So do claim pools, and the old items are not theirs.
    let c = Candidates::range(1..=255).unwrap();
    let pool = s.claim_pool("myzk").unwrap();
    assert_eq!(pool.claim("zk-a", &c).await.unwrap().value.name, "1");
    assert_eq!(pool.claim("zk-b", &c).await.unwrap().fencing_token.get(), 2);
    for id in ["c", "q"] {
        let err = s.claim_pool(id).unwrap().claim("x", &c).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongType, "{err}");
    }
    drop(s);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i32 = pragma(&conn, "user_version");
    assert_eq!(version, monotone::sqlite::SCHEMA_VERSION);
    let problems: i64 = one(
        &conn,
        "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check != 'ok'",
    );
    assert_eq!(problems, 0);
    let dangling: i64 = one(&conn, "SELECT count(*) FROM pragma_foreign_key_check");
    assert_eq!(dangling, 0);
}

/// A file of schema version 4 (before holders and claim tags) is migrated
/// in place to version 5: its tickets and claims read back as they were,
/// without holders or tags, and new ones store both.
#[tokio::test]
async fn a_file_of_schema_version_4_gains_holders_and_claim_tags() {
    let (_dir, path) = temp_file("v4.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(include_str!("fixtures/schema_v4.sql"))
        .unwrap();
    let s = SqliteStore::open(&path).unwrap();
    let q = s.queue("q").unwrap();
    let all = q.tickets().await.unwrap();
    assert_eq!(all.fencing_token.0, 2);
    assert_eq!(all.value[0].tags["role"], "zk");
    let leased = all.value[1].lease.clone().unwrap();
    assert_eq!(
        (leased.duration.as_millis(), leased.renewals, leased.holder),
        (15_000, 3, None)
    );
    let pool = s.claim_pool("myzk").unwrap();
    let claims = pool.claims().await.unwrap().value;
    assert_eq!(claims.len(), 2);
    assert!(claims.iter().all(|c| c.tags.is_empty()), "{claims:?}");
    assert_eq!(claims[1].lease.as_ref().unwrap().holder, None);
    // The old leased ticket and claim were made without a holder: a plain
    // re-join or re-claim asking for them gets them back.
    let again = q
        .join_leased("leased", Tags::new(), Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(again.value.counter, 2);
    let c = Candidates::range(1..=255).unwrap();
    assert_eq!(pool.claim("zk-a", &c).await.unwrap().value.name, "1");
    // New ones store holders and tags.
    let tags = Tags::from([("addr".to_string(), "10.0.0.7".to_string())]);
    let holder = monotone::HolderId::random();
    let request = ClaimRequest::new(c)
        .with_tags(tags.clone())
        .with_lease(Some(Duration::from_secs(30)))
        .held_by(holder);
    let made = pool.claim_as("zk-c", &request).await.unwrap().claim.value;
    assert_eq!((made.name.as_str(), &made.tags), ("3", &tags));
    drop(s);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i32 = pragma(&conn, "user_version");
    assert_eq!(version, monotone::sqlite::SCHEMA_VERSION);
    let row: (String, Option<i64>) = conn
        .query_row(
            "SELECT tags, holder FROM claims WHERE pool_id = 'myzk' AND owner = 'zk-c'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            r#"{"addr":"10.0.0.7"}"#.to_string(),
            Some(holder.get() as i64)
        )
    );
    // The file's checks refuse a holder without a lease, or not above 0.
    for sql in [
        "UPDATE claims SET holder = 5 WHERE owner = 'zk-a'",
        "UPDATE tickets SET holder = 5 WHERE process_id = 'perm'",
        "UPDATE tickets SET holder = 0 WHERE process_id = 'leased'",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{sql}"
        );
    }
    let problems: i64 = one(
        &conn,
        "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check != 'ok'",
    );
    assert_eq!(problems, 0);
}

/// A file of schema version 5 (before roster sizes) is migrated in place to
/// version 6: its pools read back as they were, unsealed; a new pool is
/// sealed by its first claim with `members`, the size stored in
/// `items.members`, which the file's checks keep to claim pools.
#[tokio::test]
async fn a_file_of_schema_version_5_gains_roster_sizes() {
    let (_dir, path) = temp_file("v5.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(include_str!("fixtures/schema_v5.sql"))
        .unwrap();
    let s = SqliteStore::open(&path).unwrap();
    let pool = s.claim_pool("myzk").unwrap();
    let roster = pool.roster().await.unwrap();
    assert_eq!((roster.value.size, roster.fencing_token.get()), (None, 2));
    let claims = &roster.value.claims;
    assert_eq!(claims[0].tags["addr"], "10.0.0.1");
    assert_eq!(
        claims[1].lease.as_ref().unwrap().holder,
        monotone::HolderId::new(77)
    );
    // Unsealed, with 2 claims: a roster of 3 may still be sealed on it.
    let c = Candidates::range(1..=255).unwrap();
    let third = ClaimRequest::new(c.clone()).with_members(Some(3));
    assert_eq!(
        pool.claim_as("zk-c", &third)
            .await
            .unwrap()
            .claim
            .value
            .name,
        "3"
    );
    assert_eq!(pool.roster().await.unwrap().value.size, Some(3));
    let e = pool.claim_as("zk-d", &third).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exhausted, "{e}");
    drop(s);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i32 = pragma(&conn, "user_version");
    assert_eq!(version, monotone::sqlite::SCHEMA_VERSION);
    let members: Option<i64> = one(&conn, "SELECT members FROM items WHERE id = 'myzk'");
    assert_eq!(members, Some(3));
    for sql in [
        "UPDATE items SET members = 0 WHERE id = 'myzk'",
        "INSERT INTO items (id, type, value, version, members) VALUES ('c', 'COUNTER', 1, 1, 3)",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{sql}"
        );
    }
}

#[test]
fn a_migration_that_fails_leaves_the_old_file_as_it_was() {
    let (_dir, path) = temp_file("old.db");
    v1_file(&path);
    {
        // A row the new schema's checks refuse: the migration's copy fails.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO items VALUES ('bad', 'COUNTER', -5, 1);",
        )
        .unwrap();
    }
    let err = open_err(&path);
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("migrate"), "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i32 = pragma(&conn, "user_version");
    assert_eq!(version, 1, "still the old version");
    let rows: i64 = one(&conn, "SELECT count(*) FROM items");
    assert_eq!(rows, 4, "every old row is still there");
    let columns: i64 = one(&conn, "SELECT count(*) FROM pragma_table_info('tickets')");
    assert_eq!(columns, 4, "no column added");
}

/// A document's row in `items` and its text in `documents`; a removed
/// document keeps its `items` row; a text that is not JSON is reported by
/// reads and updates and left alone, and a write at its version replaces it.
#[tokio::test]
async fn documents_are_stored_as_documented() {
    let (_dir, path) = temp_file("m.db");
    let s = SqliteStore::open(&path).unwrap();
    let d = s.document("cfg").unwrap();
    d.write(0, &json!({"globs": ["/bin/*"]})).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let row = |id: &str| -> (String, i64, i64, Option<String>) {
        conn.query_row(
            "SELECT type, value, version, (SELECT body FROM documents WHERE id = ?1) FROM items WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    assert_eq!(
        row("cfg"),
        (
            "DOCUMENT".into(),
            0,
            1,
            Some(r#"{"globs":["/bin/*"]}"#.into())
        )
    );
    assert_eq!(d.remove().await.unwrap(), Some(2));
    assert_eq!(row("cfg"), ("DOCUMENT".into(), 0, 2, None));

    d.write(2, &json!(1)).await.unwrap();
    conn.execute(
        "UPDATE documents SET body = '{not json' WHERE id = 'cfg'",
        [],
    )
    .unwrap();
    let err = d.read().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("`cfg`"), "{err}");
    let err = d.update(|_| Ok(Some(json!(2)))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(row("cfg").3.as_deref(), Some("{not json"), "left alone");
    assert_eq!(d.write(3, &json!({"fixed": true})).await.unwrap(), 4);
    assert_eq!(row("cfg").3.as_deref(), Some(r#"{"fixed":true}"#));
}

#[tokio::test]
async fn a_tally_is_a_row_of_items_with_a_signed_value() {
    let (_dir, path) = temp_file("m.db");
    let s = SqliteStore::open(&path).unwrap();
    let t = s.tally("t").unwrap();
    t.add(-5).await.unwrap();
    t.add(2).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let row = item_row(&conn, "t");
    assert_eq!(row, ("TALLY".to_string(), -3, 2));
    drop(s);
    let again = SqliteStore::open(&path).unwrap().tally("t").unwrap();
    assert_eq!(
        again.get(monotone::Freshness::Fresh).await.unwrap(),
        monotone::TallyReading::new(-3, 2),
        "kept across opens"
    );
}

/// A pool's row in `items` and a row of `claims` per claim; the table's
/// keys refuse a name held twice and an owner holding two names, whoever
/// writes the file.
#[tokio::test]
async fn claims_are_rows_of_the_claims_table() {
    let (_dir, path) = temp_file("m.db");
    let s = SqliteStore::open(&path).unwrap();
    let p = s.claim_pool("pool").unwrap();
    let c = Candidates::names(["Denali", "MtLogan"]).unwrap();
    p.claim("a", &c).await.unwrap();
    p.claim_leased("b", &c, std::time::Duration::from_secs(15))
        .await
        .unwrap();
    p.release("a").await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let item = item_row(&conn, "pool");
    assert_eq!(item, ("CLAIMS".into(), 0, 3));
    let rows: Vec<(String, String, i64, i64, Option<i64>, i64)> = conn
        .prepare(
            "SELECT name, owner, candidate_index, token, lease_ms, renewals FROM claims \
             WHERE pool_id = 'pool' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        rows,
        [("MtLogan".into(), "b".into(), 1, 2, Some(15_000), 0)]
    );
    for sql in [
        "INSERT INTO claims (pool_id, name, owner, candidate_index, token) \
         VALUES ('pool', 'MtLogan', 'c', 1, 9)",
        "INSERT INTO claims (pool_id, name, owner, candidate_index, token) \
         VALUES ('pool', 'Denali', 'b', 0, 9)",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{sql}"
        );
    }
}
