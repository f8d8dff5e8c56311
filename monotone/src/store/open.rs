//! [`open`]: a store from its URL. The one place that knows every backend:
//! a scheme per store, with a `#[cfg(feature)]` branch for each optional
//! one and a clear error when this build lacks it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
#[cfg(feature = "aws")]
use crate::store::dynamodb::config::DynamoDbConfig;
#[cfg(feature = "aws")]
use crate::store::dynamodb::store::DynamoDbStore;
#[cfg(feature = "etcd")]
use crate::store::etcd::config::EtcdConfig;
#[cfg(feature = "etcd")]
use crate::store::etcd::store::EtcdStore;
use crate::store::memory::MemoryStore;
use crate::store::sqlite::schema::SqliteOptions;
use crate::store::sqlite::store::SqliteStore;
use crate::store::Store;

/// Open the store a URL names.
///
/// | URL | store |
/// |---|---|
/// | `memory:` | [`MemoryStore`]: this process only, gone when it exits |
/// | `sqlite:PATH`, `sqlite://PATH` | [`SqliteStore`]: one file, shared by every process on the host |
/// | `sqlite:PATH?busy_timeout_ms=N` | the same, waiting at most N ms for another process's write lock |
/// | `dynamodb://TABLE?region=R&endpoint=URL` | the DynamoDB store (cargo feature `aws`) |
/// | `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` | the etcd store (cargo feature `etcd`; options in its module docs) |
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
                "store URL `{url}` has no scheme; use memory:, sqlite:PATH, dynamodb://TABLE or etcd://HOST:PORT"
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
        "etcd" => open_etcd(url).await,
        other => Err(Error::new(
            ErrorKind::Config,
            format!(
                "unknown store scheme `{other}:` in `{url}`; use memory:, sqlite:PATH, dynamodb://TABLE or etcd://HOST:PORT"
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
    let config = DynamoDbConfig::from_url(url)?;
    Ok(Arc::new(DynamoDbStore::connect(config).await?))
}

#[cfg(not(feature = "aws"))]
async fn open_dynamodb(url: &str) -> Result<Arc<dyn Store>> {
    Err(Error::new(
        ErrorKind::Unsupported,
        format!("cannot open `{url}`: monotone was built without the `aws` feature"),
    ))
}

#[cfg(feature = "etcd")]
async fn open_etcd(url: &str) -> Result<Arc<dyn Store>> {
    let config = EtcdConfig::from_url(url)?;
    Ok(Arc::new(EtcdStore::connect(config).await?))
}

#[cfg(not(feature = "etcd"))]
async fn open_etcd(url: &str) -> Result<Arc<dyn Store>> {
    Err(Error::new(
        ErrorKind::Unsupported,
        format!("cannot open `{url}`: monotone was built without the `etcd` feature"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

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

    #[cfg(feature = "etcd")]
    #[tokio::test]
    async fn etcd_urls() {
        let err = open("etcd://h").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        // Opening sends no request without a user.
        let store = open("etcd://127.0.0.1:9,127.0.0.1:10/apps").await.unwrap();
        match store.location() {
            Location::Etcd {
                endpoints,
                prefix,
                url,
            } => {
                assert_eq!(endpoints, ["127.0.0.1:9", "127.0.0.1:10"]);
                assert_eq!(prefix, "apps/");
                assert_eq!(url, "etcd://127.0.0.1:9,127.0.0.1:10/apps/");
            }
            other => panic!("{other:?}"),
        }
    }

    #[cfg(not(feature = "etcd"))]
    #[tokio::test]
    async fn etcd_without_feature_is_unsupported() {
        let err = open("etcd://127.0.0.1:2379").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("`etcd` feature"), "{err}");
    }

    #[cfg(not(feature = "aws"))]
    #[tokio::test]
    async fn dynamodb_without_feature_is_unsupported() {
        let err = open("dynamodb://Counters").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("`aws` feature"), "{err}");
    }
}
