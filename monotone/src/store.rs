//! The [`Store`] trait and [`open`], which picks a store from a URL.
//!
//! | URL | store |
//! |---|---|
//! | `memory:` | [`MemoryStore`]: this process only, gone when it exits |
//! | `sqlite:PATH`, `sqlite://PATH` | [`SqliteStore`]: one file, shared by every process on the host |
//! | `sqlite:PATH?busy_timeout_ms=N` | the same, waiting at most N ms for another process's write lock |
//! | `dynamodb://TABLE?region=R&endpoint=URL` | the DynamoDB store (cargo feature `aws`) |

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::claim::ClaimPool;
use crate::counter::Counter;
use crate::document::Document;
use crate::error::{Error, ErrorKind, Result};
use crate::memory::MemoryStore;
use crate::queue::Queue;
use crate::sqlite::{SqliteOptions, SqliteStore};
use crate::tally::Tally;

/// A place where counters, queues, documents, tallies and claim pools live, each under
/// its own id.
///
/// An id holds one kind of item, never two; the first write decides which.
pub trait Store: Send + Sync + fmt::Debug {
    /// A handle on the counter under `id`. Fails with
    /// [`ErrorKind::InvalidInput`] if `id` is not a valid id (empty, longer
    /// than [`MAX_ID_BYTES`](crate::MAX_ID_BYTES), or with a control
    /// character); touches nothing in the store.
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
            let (path, options) = sqlite_url(url, rest.strip_prefix("//").unwrap_or(rest))?;
            let store = tokio::task::spawn_blocking(move || SqliteStore::open_with(path, options))
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

/// The path and options of a `sqlite:` URL. A `?` followed by `key=value`
/// pairs starts the options; the path is everything before it.
fn sqlite_url(url: &str, rest: &str) -> Result<(PathBuf, SqliteOptions)> {
    let config = |m: String| Error::new(ErrorKind::Config, format!("store URL `{url}`: {m}"));
    let (path, query) = match rest.rsplit_once('?') {
        Some((path, query)) if query.contains('=') => (path, Some(query)),
        _ => (rest, None),
    };
    if path.is_empty() {
        return Err(config("no file path; use sqlite:PATH".into()));
    }
    let mut options = SqliteOptions::default();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("busy_timeout_ms", ms)) => {
                let ms: u64 = ms.parse().map_err(|_| {
                    config(format!(
                        "busy_timeout_ms `{ms}` is not a number of milliseconds"
                    ))
                })?;
                options = options.with_busy_timeout(Duration::from_millis(ms));
            }
            _ => {
                return Err(config(format!(
                    "unknown option `{pair}`; sqlite: takes busy_timeout_ms"
                )))
            }
        }
    }
    Ok((PathBuf::from(path), options))
}

#[cfg(feature = "aws")]
async fn open_dynamodb(url: &str) -> Result<Arc<dyn Store>> {
    let config = crate::dynamodb::DynamoDbConfig::from_url(url)?;
    Ok(Arc::new(
        crate::dynamodb::DynamoDbStore::connect(config).await?,
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

    #[test]
    fn sqlite_options_in_the_url() {
        let (path, options) = sqlite_url("u", "/d/m.db?busy_timeout_ms=250").unwrap();
        assert_eq!(path, PathBuf::from("/d/m.db"));
        assert_eq!(options.busy_timeout, Duration::from_millis(250));
        let (path, options) = sqlite_url("u", "/d/what?.db").unwrap();
        assert_eq!(path, PathBuf::from("/d/what?.db"));
        assert_eq!(options, SqliteOptions::default());
    }

    #[cfg(feature = "aws")]
    #[tokio::test]
    async fn dynamodb_urls() {
        for url in [
            "dynamodb://",
            "dynamodb:Counters",
            "dynamodb://Counters?table=x",
            "dynamodb://Counters?region=eu-west-1&bogus=1",
        ] {
            let err = open(url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
        }
        // Opening sends no request, so this works with nothing listening.
        let store = open("dynamodb://Counters?region=us-east-2&endpoint=http://127.0.0.1:9")
            .await
            .unwrap();
        let location = store.location();
        assert_eq!(
            location,
            Location::DynamoDb {
                region: "us-east-2".into(),
                table: "Counters".into(),
                endpoint: Some("http://127.0.0.1:9".into()),
            }
        );
        assert_eq!(
            location.to_string(),
            "dynamodb://Counters?region=us-east-2&endpoint=http://127.0.0.1:9"
        );
    }

    #[cfg(not(feature = "aws"))]
    #[tokio::test]
    async fn dynamodb_without_feature_is_unsupported() {
        let err = open("dynamodb://Counters").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("`aws` feature"), "{err}");
    }
}
