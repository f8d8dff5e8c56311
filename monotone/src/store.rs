//! The [`Store`] trait and [`open`], which picks a store from a URL.
//!
//! | URL | store |
//! |---|---|
//! | `memory:` | [`MemoryStore`]: this process only, gone when it exits |
//! | `sqlite:PATH`, `sqlite://PATH` | [`SqliteStore`]: one file, shared by every process on the host |
//! | `dynamodb://TABLE?region=R&endpoint=URL` | the DynamoDB store (cargo feature `aws`) |

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::counter::Counter;
use crate::error::{Error, ErrorKind, Result};
use crate::memory::MemoryStore;
use crate::queue::Queue;
use crate::sqlite::SqliteStore;

/// A place where counters and queues live, each under its own id.
///
/// An id holds either a counter or a queue, never both; the first write
/// decides which.
pub trait Store: Send + Sync + fmt::Debug {
    /// A handle on the counter under `id`. Fails with
    /// [`ErrorKind::InvalidInput`] if `id` is not a valid id (empty, longer
    /// than [`MAX_ID_BYTES`](crate::MAX_ID_BYTES), or with a control
    /// character); touches nothing in the store.
    fn counter(&self, id: &str) -> Result<Box<dyn Counter>>;

    /// A handle on the queue under `id`; validated as for [`Store::counter`].
    fn queue(&self, id: &str) -> Result<Box<dyn Queue>>;

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
}

impl fmt::Display for Location {
    /// The store's URL, as [`open`] accepts it.
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
        }
    }
}

/// Open the store a URL names (see the [module docs](self) for the forms).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> monotone::Result<()> {
/// let store = monotone::open("memory:").await?;
/// assert_eq!(store.counter("mycounter")?.next().await?, 1);
/// # Ok(())
/// # }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let (scheme, rest) = url.split_once(':').ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!(
                "store URL `{url}` has no scheme; use memory:, sqlite:PATH or dynamodb://TABLE"
            ),
        )
    })?;
    match scheme {
        "memory" if rest.is_empty() || rest == "//" => Ok(Arc::new(MemoryStore::new())),
        "memory" => Err(Error::new(
            ErrorKind::Config,
            format!("store URL `{url}`: memory: takes no path"),
        )),
        "sqlite" => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("store URL `{url}` has no file path; use sqlite:PATH"),
                ));
            }
            let path = PathBuf::from(path);
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
                .await
                .map_err(|e| Error::new(ErrorKind::Unavailable, format!("opening {url}: {e}")))??;
            Ok(Arc::new(store))
        }
        "dynamodb" => open_dynamodb(url).await,
        other => Err(Error::new(
            ErrorKind::Config,
            format!(
                "unknown store scheme `{other}:` in `{url}`; use memory:, sqlite:PATH or dynamodb://TABLE"
            ),
        )),
    }
}

#[cfg(feature = "aws")]
async fn open_dynamodb(url: &str) -> Result<Arc<dyn Store>> {
    Err(Error::new(
        ErrorKind::Unsupported,
        format!("cannot open `{url}`: the DynamoDB store is not yet supported"),
    ))
}

#[cfg(not(feature = "aws"))]
async fn open_dynamodb(url: &str) -> Result<Arc<dyn Store>> {
    Err(Error::new(
        ErrorKind::Unsupported,
        format!("cannot open `{url}`: monotone was built without the `aws` feature"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_urls_are_config_errors() {
        for url in [
            "",
            "nonsense",
            "redis://x",
            "sqlite:",
            "sqlite://",
            "memory:x",
        ] {
            let err = open(url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn memory_url() {
        let store = open("memory:").await.unwrap();
        assert_eq!(store.location(), Location::Memory);
        assert_eq!(store.location().to_string(), "memory:");
    }

    #[tokio::test]
    async fn sqlite_url_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        for url in [
            format!("sqlite:{}", path.display()),
            format!("sqlite://{}", path.display()),
        ] {
            let store = open(&url).await.unwrap();
            assert_eq!(store.location(), Location::Sqlite { path: path.clone() });
        }
    }

    #[cfg(not(feature = "aws"))]
    #[tokio::test]
    async fn dynamodb_without_feature_is_unsupported() {
        let err = open("dynamodb://Counters").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("`aws` feature"), "{err}");
    }
}
