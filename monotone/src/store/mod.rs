//! Where items live: the [`Store`] trait that every backend implements, and
//! [`Location`], where a store keeps its data.
//!
//! - `open.rs`: [`open`](crate::open), which picks a store from a URL; the
//!   only file that imports the backends.
//! - `memory.rs`, `sqlite/`, `dynamodb/` (cargo feature `aws`), `etcd/`
//!   (cargo feature `etcd`): the backends. Each imports the trait from here and the rules of each
//!   primitive from the primitive's own module (`queue/state.rs`,
//!   `claim/state.rs`, ...); none imports another backend or the opener.
//! - `item_type.rs`: the kinds of item an id may hold, and their stored
//!   names, shared by the backends.
//!
//! A new store gets a folder here, a scheme in `open.rs`, and the
//! conformance suite (`monotone/tests/conformance`).

use std::fmt;
use std::path::PathBuf;

use crate::claim::ClaimPool;
use crate::counter::Counter;
use crate::document::Document;
use crate::error::Result;
use crate::queue::Queue;
use crate::tally::Tally;

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "etcd")]
pub mod etcd;
pub(crate) mod item_type;
pub mod memory;
pub(crate) mod open;
pub mod sqlite;

/// A place where counters, queues, documents, tallies and claim pools live, each under
/// its own id.
///
/// An id holds one kind of item, never two; the first write decides which.
pub trait Store: Send + Sync + fmt::Debug {
    /// A handle on the counter under `id`. Fails with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if `id`
    /// is not a valid id (empty, longer than
    /// [`MAX_ID_BYTES`](crate::MAX_ID_BYTES), or with a control character);
    /// touches nothing in the store.
    fn counter(&self, id: &str) -> Result<Box<dyn Counter>>;

    /// A handle on the queue under `id`; validated as for [`Store::counter`].
    fn queue(&self, id: &str) -> Result<Box<dyn Queue>>;

    /// A handle on the document under `id`; validated as for
    /// [`Store::counter`].
    fn document(&self, id: &str) -> Result<Box<dyn Document>>;

    /// A handle on the tally under `id`; validated as for [`Store::counter`].
    fn tally(&self, id: &str) -> Result<Box<dyn Tally>>;

    /// A handle on the claim pool under `id`; validated as for
    /// [`Store::counter`].
    fn claim_pool(&self, id: &str) -> Result<Box<dyn ClaimPool>>;

    /// Where this store keeps its data.
    fn location(&self) -> Location;
}

/// Where a store keeps its data, for display and for output documents.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// In this process's memory.
    Memory,
    /// In a SQLite database file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// In a DynamoDB table.
    DynamoDb {
        /// The AWS region.
        region: String,
        /// The table name.
        table: String,
        /// A custom endpoint (DynamoDB Local, a compatible server), if set.
        endpoint: Option<String>,
    },
    /// Under a prefix in an etcd cluster.
    Etcd {
        /// The members' endpoints, as given.
        endpoints: Vec<String>,
        /// The prefix of every key of the store.
        prefix: String,
        /// The store's URL with its TLS files, user and password file (never
        /// a password).
        url: String,
    },
}

impl fmt::Display for Location {
    /// The store's URL, as [`open`](crate::open) accepts it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Memory => f.write_str("memory:"),
            Location::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
            Location::DynamoDb {
                region,
                table,
                endpoint,
            } => {
                write!(f, "dynamodb://{table}?region={region}")?;
                match endpoint {
                    Some(e) => write!(f, "&endpoint={e}"),
                    None => Ok(()),
                }
            }
            Location::Etcd { url, .. } => f.write_str(url),
        }
    }
}
