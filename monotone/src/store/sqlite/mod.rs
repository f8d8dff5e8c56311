//! The embedded store: one SQLite file shared by every process on a host.
//!
//! The CLI's default store. Every operation runs in its own transaction; those
//! that write begin with `BEGIN IMMEDIATE`, which takes the file's write lock
//! up front, so concurrent processes queue on the lock (for up to
//! [`BUSY_TIMEOUT`]) rather than racing on a stale read. The file is in WAL
//! mode with `synchronous=FULL`: a write is on disk before it is acknowledged.
//! Reads run on connections of their own and never wait for a write; each
//! write waits at most the busy timeout from its arrival (see `store.rs`).
//! A new file is created readable by its owner only (0600), and so are its
//! `-wal` and `-shm` files.
//! See `schema.rs` for the tables and for how a file is recognised as ours.
//!
//! | operation | statements, in one transaction |
//! |---|---|
//! | document read | the `items` row, then the `documents` row |
//! | a watcher's check ([`Document::read_if_changed`]) | the `items` row; the `documents` row only if the version changed |
//! | document compare-and-set, remove | `BEGIN IMMEDIATE`; the `items` row; an upsert of it and of (or a delete of) the `documents` row |
//! | a waiter's check (a queue's, claim pool's or document's version) | the `items` row |
//!
//! Waiters are told of commits by the kernel, from any process (see
//! `watch.rs`): a waiter reads its item's version at each commit to the
//! file and reads the item only when that changed.
//!
//! Not for network file systems: SQLite's locks need a local disk.

// The files of this module:
// - here: `impl Store for SqliteStore`, which hands out the handles, and the
//   public re-exports;
// - store.rs: SqliteStore itself: its connections, the transaction each
//   operation runs in, the `items` row that every kind of item has;
// - one file per kind of item: counter.rs, queue.rs, document.rs, tally.rs,
//   claim.rs;
// - schema.rs: the tables, recognising our files, migrations;
// - watch.rs: push: the file's watch that tells waiters of commits and of
//   holders' deaths, and the doorbell rung after each commit;
// - live.rs: kernel liveness: the holders' locks in `<db>-live`;
// - error.rs: SQLite's errors mapped to ErrorKinds.

mod claim;
mod counter;
mod document;
mod error;
mod live;
mod queue;
pub(crate) mod schema;
pub(crate) mod store;
mod tally;
mod watch;

pub use self::claim::SqliteClaimPool;
pub use self::counter::SqliteCounter;
pub use self::document::SqliteDocument;
pub use self::queue::SqliteQueue;
pub use self::schema::{SqliteOptions, APPLICATION_ID, BUSY_TIMEOUT, SCHEMA_VERSION};
pub use self::store::SqliteStore;
pub use self::tally::SqliteTally;

use crate::claim::ClaimPool;
use crate::counter::Counter;
use crate::document::Document;
use crate::error::Result;
use crate::queue::Queue;
use crate::store::{Location, Store};
use crate::tally::Tally;
use crate::validate;

impl Store for SqliteStore {
    fn counter(&self, id: &str) -> Result<Box<dyn Counter>> {
        validate::id(id)?;
        Ok(Box::new(SqliteCounter {
            store: self.clone(),
            id: id.into(),
        }))
    }

    fn queue(&self, id: &str) -> Result<Box<dyn Queue>> {
        validate::id(id)?;
        Ok(Box::new(SqliteQueue {
            store: self.clone(),
            id: id.into(),
            last_read: Default::default(),
        }))
    }

    fn document(&self, id: &str) -> Result<Box<dyn Document>> {
        validate::id(id)?;
        Ok(Box::new(SqliteDocument {
            store: self.clone(),
            id: id.into(),
        }))
    }

    fn tally(&self, id: &str) -> Result<Box<dyn Tally>> {
        validate::id(id)?;
        Ok(Box::new(SqliteTally {
            store: self.clone(),
            id: id.into(),
        }))
    }

    fn claim_pool(&self, id: &str) -> Result<Box<dyn ClaimPool>> {
        validate::id(id)?;
        Ok(Box::new(SqliteClaimPool {
            store: self.clone(),
            id: id.into(),
        }))
    }

    fn location(&self) -> Location {
        Location::Sqlite {
            path: self.path().to_path_buf(),
        }
    }
}
