//! Opening a database file: connection settings, recognising our own files,
//! creating the schema in a new one and migrating an older one.
//!
//! A file is ours when its header's `application_id` is [`APPLICATION_ID`];
//! its `user_version` is the schema version. A new, empty file is claimed in
//! one transaction that creates the tables and sets both, so two processes
//! opening a new file at once cannot both create it. Any other file (another
//! program's database, a newer schema, not a database at all) is refused
//! before anything is written to it.
//!
//! # Migrations
//!
//! The schema is [`SCHEMA_V1`] followed by each step of [`MIGRATIONS`] in
//! order; step `n` (counting from 2) turns version `n - 1` into version `n`.
//! A new file gets all of them in its creating transaction. A file of an
//! older version is migrated in place when it is opened: in one
//! `BEGIN IMMEDIATE` transaction that re-reads the version under the write
//! lock, applies the missing steps and sets `user_version`. So when many
//! processes open an old file at once, exactly one migrates it and the others
//! find it migrated; a crash mid-way leaves the old version intact. A binary
//! older than the file refuses it (its `user_version` is newer than the
//! binary's [`SCHEMA_VERSION`]) without writing to it.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::error::{map_err, not_ours};
use crate::error::{Error, ErrorKind, Result};

/// `PRAGMA application_id` of a monotone database: "mono" in ASCII.
pub const APPLICATION_ID: i32 = 0x6d6f_6e6f;

/// The schema version this build reads and writes: 1 plus the number of
/// migrations (the steps from each schema version to the next).
pub const SCHEMA_VERSION: i32 = 1 + MIGRATIONS.len() as i32;

/// How long an operation waits for another process's write lock before it
/// fails with [`ErrorKind::Conflict`], unless [`SqliteOptions`] say otherwise.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a [`SqliteStore`](super::SqliteStore).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// How long an operation waits for another process's write lock before
    /// it fails with [`ErrorKind::Conflict`]. In a URL:
    /// `sqlite:PATH?busy_timeout_ms=N`.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: BUSY_TIMEOUT,
        }
    }
}

impl SqliteOptions {
    /// Set [`busy_timeout`](Self::busy_timeout).
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

/// Schema version 1.
///
/// `items` holds one row per id, monotone 0.4's item without the queue's
/// members: `value` is a counter's value or a queue's last ticket counter;
/// `version` grows with every write and is a queue's fencing token.
/// `tickets` holds one row per queue member, so a join or leave touches one
/// row instead of rewriting the whole queue.
pub(super) const SCHEMA_V1: &str = "
CREATE TABLE items (
    id      TEXT    NOT NULL PRIMARY KEY,
    type    TEXT    NOT NULL CHECK (type IN ('COUNTER', 'QUEUE')),
    value   INTEGER NOT NULL CHECK (value >= 0),
    version INTEGER NOT NULL CHECK (version >= 0)
) WITHOUT ROWID;

CREATE TABLE tickets (
    queue_id   TEXT    NOT NULL REFERENCES items (id),
    process_id TEXT    NOT NULL,
    counter    INTEGER NOT NULL CHECK (counter > 0),
    tags       TEXT    NOT NULL,
    PRIMARY KEY (queue_id, process_id),
    UNIQUE (queue_id, counter)
) WITHOUT ROWID;
";

/// The steps from each schema version to the next, in order: the first
/// turns version 1 into version 2. Each runs inside the migrating
/// transaction, with foreign key enforcement off, so a step may rebuild a
/// table (SQLite's documented twelve-step procedure, without the
/// `PRAGMA`s that a transaction cannot hold).
pub(super) const MIGRATIONS: &[&str] = &[
    MIGRATION_V2,
    MIGRATION_V3,
    MIGRATION_V4,
    MIGRATION_V5,
    MIGRATION_V6,
];

/// Version 2: leases on tickets, and room for the other kinds of item.
///
/// - `items.type` also admits `TALLY`, `DOCUMENT` and `CLAIMS`, and
///   `value` may be negative for a tally (a counter's and a queue's stay at
///   0 or more). SQLite cannot change a `CHECK` in place, so the table is
///   rebuilt and its rows copied.
/// - `tickets.lease_ms` is the lease of a leased ticket (NULL for a
///   permanent one), `renewals` counts its renewals (the record version that
///   observers watch, see the `lease` module) and `renewed_at_ms` is the
///   holder's wall-clock time of the last renewal, in milliseconds since the
///   Unix epoch, for display only.
const MIGRATION_V2: &str = "
CREATE TABLE items_v2 (
    id      TEXT    NOT NULL PRIMARY KEY,
    type    TEXT    NOT NULL CHECK (type IN ('COUNTER', 'QUEUE', 'TALLY', 'DOCUMENT', 'CLAIMS')),
    value   INTEGER NOT NULL CHECK (value >= 0 OR type = 'TALLY'),
    version INTEGER NOT NULL CHECK (version >= 0)
) WITHOUT ROWID;
INSERT INTO items_v2 (id, type, value, version) SELECT id, type, value, version FROM items;
DROP TABLE items;
ALTER TABLE items_v2 RENAME TO items;

ALTER TABLE tickets ADD COLUMN lease_ms INTEGER CHECK (lease_ms IS NULL OR lease_ms > 0);
ALTER TABLE tickets ADD COLUMN renewals INTEGER NOT NULL DEFAULT 0 CHECK (renewals >= 0);
ALTER TABLE tickets ADD COLUMN renewed_at_ms INTEGER;
";

/// Version 3: the values of documents.
///
/// A document's row in `items` has the type `DOCUMENT`, `value` 0 and its
/// version; its JSON text is the row of the same id in `documents`, absent
/// for a removed document (whose `items` row stays, keeping its version).
/// Apart, so that a watcher's change check reads the small `items` row and
/// never the text of an unchanged document. A rowid table, as SQLite
/// advises for rows this large.
const MIGRATION_V3: &str = "
CREATE TABLE documents (
    id   TEXT NOT NULL PRIMARY KEY REFERENCES items (id),
    body TEXT NOT NULL
);
";

/// Version 4: the claims of claim pools.
///
/// A pool's row in `items` has the type `CLAIMS`, `value` 0 and its
/// fencing token in `version`; each claim is a row of `claims`: the name,
/// its owner, the name's index in the candidates it was claimed from (the
/// order `claim list` shows), the pool's token right after the claim was
/// made, and the lease as a ticket's (`lease_ms` NULL for a permanent
/// claim). The keys say what the pool's rules say: one owner per name, one
/// name per owner.
const MIGRATION_V4: &str = "
CREATE TABLE claims (
    pool_id         TEXT    NOT NULL REFERENCES items (id),
    name            TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    candidate_index INTEGER NOT NULL CHECK (candidate_index >= 0),
    token           INTEGER NOT NULL CHECK (token > 0),
    lease_ms        INTEGER CHECK (lease_ms IS NULL OR lease_ms > 0),
    renewals        INTEGER NOT NULL DEFAULT 0 CHECK (renewals >= 0),
    renewed_at_ms   INTEGER,
    PRIMARY KEY (pool_id, name),
    UNIQUE (pool_id, owner)
) WITHOUT ROWID;
";

/// Version 5: holders, and the tags of claims.
///
/// - `tickets.holder` and `claims.holder`: the id of the holder that made a
///   leased ticket or claim (a `LeaseHolder`, a `ClaimHolder`: 1 to
///   2^63 - 1), or NULL for one made without a holder; a permanent one has
///   none. The rows written before have none.
/// - `claims.tags`: the claim's tags, a JSON object of strings as a
///   ticket's `tags`; `{}` for the claims written before.
///
/// Each is an `ALTER TABLE ... ADD COLUMN`: no row is copied, so the step
/// costs the same on a file of any size. A binary of schema version 4
/// refuses the migrated file (see the module docs), so no older binary ever
/// writes a claim without its tags column or a holder's ticket without its
/// holder.
const MIGRATION_V5: &str = "
ALTER TABLE tickets ADD COLUMN holder INTEGER
    CHECK (holder IS NULL OR (holder > 0 AND lease_ms IS NOT NULL));
ALTER TABLE claims ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE claims ADD COLUMN holder INTEGER
    CHECK (holder IS NULL OR (holder > 0 AND lease_ms IS NOT NULL));
";

/// Version 6: the roster sizes of claim pools.
///
/// `items.members`: the roster size a claim pool is sealed at (1 or more,
/// recorded by the first claim made with `--members`), NULL for a pool
/// never sealed and for every other kind of item. One `ALTER TABLE ... ADD
/// COLUMN`: no row is copied. A binary of schema version 5 refuses the
/// migrated file, so none that ignores a roster ever claims in a sealed
/// pool, and none that holds a lease without a sign of life in `<db>-live`
/// (kernel liveness, which came with the same version: see `live.rs`)
/// ever writes a holder's record that a reader would take for a dead
/// holder's.
const MIGRATION_V6: &str = "
ALTER TABLE items ADD COLUMN members INTEGER
    CHECK (members IS NULL OR (members > 0 AND type = 'CLAIMS'));
";

/// Open (creating if needed) the database at `path`, ready for use: the
/// connection a store writes on.
pub fn open(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let shown = path.display().to_string();
    create_private(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)
        .map_err(|e| map_err(&shown, "cannot open the database", e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| map_err(&shown, "cannot configure the database", e))?;
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(Error::new(
            ErrorKind::Config,
            format!("sqlite database {shown} is not writable"),
        ));
    }

    // The header is read in one transaction, so it is a consistent snapshot
    // even while another process is creating the schema.
    let seen = conn
        .transaction()
        .and_then(|tx| header(&tx))
        .map_err(|e| map_err(&shown, "cannot read the database", e))?;
    match seen {
        Header::Ours => {}
        Header::Empty => {
            // WAL lets readers run beside the one writer; the mode is stored
            // in the file, so it is set once, before the schema: whoever
            // sees the schema also sees WAL.
            enable_wal(&conn, &shown, options.busy_timeout)?;
            create_or_migrate(&mut conn, &shown)?;
        }
        Header::Older(_) => create_or_migrate(&mut conn, &shown)?,
        Header::Other(why) => return Err(not_ours(&shown, &why)),
    }

    // Per-connection settings. FULL syncs the WAL on every commit, so an
    // acknowledged `next` survives a power loss, not just a crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| map_err(&shown, "cannot configure the database", e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| map_err(&shown, "cannot configure the database", e))?;
    // A CLI process makes one write and exits. By default the last connection
    // to close checkpoints the WAL into the database and deletes it, which
    // costs more syncs than the write itself; leave that to SQLite's
    // automatic checkpoints (every 1000 pages) instead.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|e| map_err(&shown, "cannot configure the database", e))?;
    Ok(conn)
}

/// Another connection to a database that [`open`] has already opened (so
/// recognised, created or migrated), for reads only: `query_only` makes
/// SQLite refuse any write on it. In WAL mode its reads see the last commit
/// and never wait for a writer.
pub fn open_reader(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let shown = path.display().to_string();
    let map = |e| map_err(&shown, "cannot open the database for reading", e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map)?;
    // WAL readers wait only in rare cases (a crashed writer's WAL being
    // recovered); the same bound as for writes.
    conn.busy_timeout(options.busy_timeout).map_err(map)?;
    conn.pragma_update(None, "query_only", "ON").map_err(map)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(map)?;
    Ok(conn)
}

/// Create the database file, if it does not exist, readable and writable by
/// its owner only (0600, whatever the umask), before SQLite opens it: SQLite
/// gives the `-wal` and `-shm` files it creates later the main file's mode,
/// so none of them is readable by other users. An existing file (or
/// anything else at `path`) is left as it is, mode included. Any other
/// failure is left for SQLite's open to report, in its words.
fn create_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            // The mode given to open(2) loses the umask's bits; set it
            // whole.
            Ok(file) => {
                if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(0o600)) {
                    tracing::warn!(file = %path.display(), "cannot make the new database file private: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::debug!(file = %path.display(), "cannot create the database file: {e}")
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Switch a new file to WAL. The switch needs the file to itself, and SQLite
/// reports SQLITE_BUSY at once, without waiting, while other processes have
/// it open (as when many processes create the file together), so wait here,
/// up to the busy timeout.
fn enable_wal(conn: &Connection, shown: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "sqlite database {shown}: cannot enable WAL: the journal mode stays {mode}"
                    ),
                ))
            }
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(map_err(shown, "cannot enable WAL", e)),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

enum Header {
    /// Ours, at this build's schema version.
    Ours,
    /// A new, empty file.
    Empty,
    /// Ours, at an older schema version: to be migrated.
    Older(i32),
    /// Not ours, or newer than this build: why.
    Other(String),
}

fn header(conn: &Connection) -> rusqlite::Result<Header> {
    let app: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok(match (app, version, objects) {
        (APPLICATION_ID, SCHEMA_VERSION, _) => Header::Ours,
        (APPLICATION_ID, v, _) if v > SCHEMA_VERSION => Header::Other(format!(
            "it has schema version {v}, written by a newer monotone (this one reads {SCHEMA_VERSION})"
        )),
        (APPLICATION_ID, v, _) if v >= 1 => Header::Older(v),
        (APPLICATION_ID, v, _) => Header::Other(format!("it has unknown schema version {v}")),
        (0, 0, 0) => Header::Empty,
        _ => Header::Other("it is a SQLite database that monotone did not create".into()),
    })
}

/// Create the schema in a new file, or bring an older file up to
/// [`SCHEMA_VERSION`], in one transaction that holds the write lock from its
/// first read, so that of many processes doing this at once one does the
/// work and the others see it done.
fn create_or_migrate(conn: &mut Connection, shown: &str) -> Result<()> {
    let map = |e| map_err(shown, "cannot create or migrate the schema", e);
    // A step may rebuild a table that others reference; SQLite ignores this
    // pragma inside a transaction, so it is set before. `open` turns
    // enforcement on again afterwards.
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(map)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map)?;
    // Another process may have created or migrated the file since we looked.
    let from = match header(&tx).map_err(map)? {
        Header::Ours => return Ok(()),
        Header::Other(why) => return Err(not_ours(shown, &why)),
        Header::Empty => {
            tx.execute_batch(SCHEMA_V1).map_err(map)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(map)?;
            1
        }
        Header::Older(v) => v,
    };
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(from as usize - 1) {
        let to = step + 2;
        tx.execute_batch(sql).map_err(|e| {
            let what = format!("cannot migrate the schema to version {to}");
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
                // A row no version of monotone writes: report, keep the file.
                Error::new(
                    ErrorKind::Corrupt,
                    format!("sqlite database {shown}: {what}: it holds a row monotone did not write ({e}); the file is left as it was"),
                )
                .with_source(e)
            } else {
                map_err(shown, &what, e)
            }
        })?;
    }
    // Every reference still points at a row: a step that rebuilt a table
    // kept every key.
    let dangling: i64 = tx
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .map_err(map)?;
    if dangling != 0 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "sqlite database {shown}: {dangling} rows refer to items that do not exist; \
                 not migrating it"
            ),
        ));
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(map)?;
    tx.commit().map_err(map)
}
