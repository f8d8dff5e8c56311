//! [`DynamoDbConfig`]: which table, where, and how patiently; parsed from a
//! `dynamodb://` URL, and turned into an AWS SDK client.

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Result};

/// The region used when none is configured anywhere, as in monotone 0.4.
pub const DEFAULT_REGION: &str = "eu-west-1";

/// The table the CLI uses when none is given, as in monotone 0.4.
pub const DEFAULT_TABLE: &str = "Counters";

/// Longest wait for a TCP (and TLS) connection to DynamoDB.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for one attempt of one request, retries not included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time one request may take, all of the SDK's retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts the SDK makes for a request that is throttled or fails in transit
/// (connection refused or reset, timeout, HTTP 5xx), the first one included.
pub const SDK_MAX_ATTEMPTS: u32 = 5;

/// How to reach a DynamoDB table.
///
/// ```
/// use monotone::dynamodb::DynamoDbConfig;
///
/// let config = DynamoDbConfig::from_url("dynamodb://Counters?region=eu-west-1")?;
/// assert_eq!(config.table, "Counters");
/// assert_eq!(config.region.as_deref(), Some("eu-west-1"));
///
/// let local = DynamoDbConfig::new("Counters").with_endpoint("http://127.0.0.1:8000");
/// assert_eq!(local.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
/// # Ok::<(), monotone::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DynamoDbConfig {
    /// The table's name.
    pub table: String,
    /// The AWS region. `None` follows the standard AWS chain (`AWS_REGION`,
    /// the profile, then instance metadata), then [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// A custom endpoint URL (DynamoDB Local, moto, another compatible
    /// server). `None` uses `AWS_ENDPOINT_URL` or the profile's
    /// `endpoint_url` if set, else the region's DynamoDB endpoint.
    pub endpoint: Option<String>,
    /// Create the table when it does not exist (needs the
    /// `dynamodb:CreateTable` and `dynamodb:DescribeTable` permissions).
    /// Default `true`.
    pub create_table: bool,
    /// How to retry writes that lost a race with another client.
    pub backoff: Backoff,
}

impl DynamoDbConfig {
    /// The table `table`, with everything else from the environment.
    pub fn new(table: impl Into<String>) -> Self {
        DynamoDbConfig {
            table: table.into(),
            region: None,
            endpoint: None,
            create_table: true,
            backoff: Backoff::default(),
        }
    }

    /// Set the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Set a custom endpoint URL.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Whether to create the table when it is missing.
    pub fn with_create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Set the retry policy for contended writes.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Parse `dynamodb://TABLE?region=R&endpoint=URL`; `region` and
    /// `endpoint` are optional, nothing else is accepted. Values may be
    /// percent-encoded.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "store URL `{url}`: {why}; use dynamodb://TABLE?region=REGION&endpoint=URL"
                ),
            )
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "dynamodb" || !url.starts_with("dynamodb://") {
            return Err(bad("not a dynamodb:// URL"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL (use the AWS credential chain)",
            ));
        }
        if parsed.port().is_some() {
            return Err(bad(
                "a table name has no port (to use a local server, give endpoint=URL)",
            ));
        }
        if !matches!(parsed.path(), "" | "/") {
            return Err(bad("a table name has no path"));
        }
        if parsed.fragment().is_some() {
            return Err(bad("a table name has no #fragment"));
        }
        let table = parsed.host_str().unwrap_or("");
        let table = percent_decode(table).map_err(|_| bad("the table name is not UTF-8"))?;
        let mut config = DynamoDbConfig::new(table);
        for (key, value) in parsed.query_pairs() {
            let slot = match key.as_ref() {
                "region" => &mut config.region,
                "endpoint" => &mut config.endpoint,
                other => {
                    return Err(bad(&format!(
                        "unknown setting `{other}` (known: region, endpoint)"
                    )))
                }
            };
            if slot.is_some() {
                return Err(bad(&format!("`{key}` is given twice")));
            }
            if value.is_empty() {
                return Err(bad(&format!("`{key}` is empty")));
            }
            *slot = Some(value.into_owned());
        }
        config.validate().map_err(|e| bad(e.message()))?;
        Ok(config)
    }

    /// Check the table name, region and endpoint.
    pub(crate) fn validate(&self) -> Result<()> {
        validate_table(&self.table)?;
        if let Some(region) = &self.region {
            let ok = !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("`{region}` is not an AWS region name (like eu-west-1)"),
                ));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            let ok = url::Url::parse(endpoint)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .unwrap_or(false);
            if !ok {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("endpoint `{endpoint}` is not an http:// or https:// URL"),
                ));
            }
        }
        Ok(())
    }

    /// The AWS SDK configuration [`DynamoDbStore::connect`](super::DynamoDbStore::connect)
    /// uses: credentials and region from the standard AWS chain (this
    /// config's region and endpoint first), with bounded timeouts and
    /// retries. Add to it (an interceptor, other credentials) and pass the
    /// client to [`DynamoDbStore::from_client`](super::DynamoDbStore::from_client).
    pub async fn sdk_config(&self) -> aws_sdk_dynamodb::config::Builder {
        aws_sdk_dynamodb::config::Builder::from(&self.load().await)
    }

    /// Load the shared AWS configuration.
    pub(crate) async fn load(&self) -> aws_config::SdkConfig {
        // An explicit region is used as it is: nothing else is consulted, and
        // instance metadata is only probed when no region is set anywhere.
        let region = RegionProviderChain::first_try(self.region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::from_static(DEFAULT_REGION));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .timeout_config(timeouts())
            .retry_config(retries());
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        loader.load().await
    }
}

/// The SDK's timeouts: nothing waits forever on a dead network.
pub(crate) fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The SDK's retries, for throttling and transient errors. Failed conditions
/// are never retried by the SDK; the store retries those under [`Backoff`].
pub(crate) fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(SDK_MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(2))
}

/// DynamoDB's rule for table names: 3 to 255 of `[a-zA-Z0-9_.-]`.
fn validate_table(table: &str) -> Result<()> {
    if table.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "no table name given (dynamodb://TABLE)",
        ));
    }
    let ok = (3..=255).contains(&table.len())
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "`{table}` is not a DynamoDB table name (3 to 255 letters, digits, `_`, `-` or `.`)"
            ),
        ))
    }
}

fn percent_decode(s: &str) -> std::result::Result<String, std::str::Utf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::str::from_utf8(&out).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> DynamoDbConfig {
        DynamoDbConfig::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refused(url: &str) -> String {
        let e = DynamoDbConfig::from_url(url).expect_err(url);
        assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
        e.to_string()
    }

    #[test]
    fn table_alone() {
        let c = parse("dynamodb://Counters");
        assert_eq!(c, DynamoDbConfig::new("Counters"));
        assert_eq!(c.region, None, "the AWS chain decides");
        assert_eq!(c.endpoint, None);
        assert!(c.create_table);
        assert_eq!(parse("dynamodb://Counters/").table, "Counters");
    }

    #[test]
    fn table_names_keep_their_case_and_punctuation() {
        assert_eq!(parse("dynamodb://My.Table_name-1").table, "My.Table_name-1");
    }

    #[test]
    fn region_and_endpoint() {
        let c = parse("dynamodb://T01?region=us-east-2&endpoint=http://127.0.0.1:8000");
        assert_eq!(c.table, "T01");
        assert_eq!(c.region.as_deref(), Some("us-east-2"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        let c = parse("dynamodb://T01?endpoint=https%3A%2F%2Fdynamodb.local%3A443%2F");
        assert_eq!(c.endpoint.as_deref(), Some("https://dynamodb.local:443/"));
        assert_eq!(c.region, None);
    }

    #[test]
    fn bad_urls_are_config_errors_that_say_why() {
        assert!(refused("dynamodb://").contains("no table"));
        assert!(refused("dynamodb://?region=eu-west-1").contains("no table"));
        assert!(refused("dynamodb://ab").contains("not a DynamoDB table name"));
        assert!(refused("dynamodb://a%20b%20c").contains("not a DynamoDB table name"));
        assert!(refused("dynamodb://T01?regoin=x").contains("unknown setting `regoin`"));
        assert!(refused("dynamodb://T01?region=a&region=b").contains("twice"));
        assert!(refused("dynamodb://T01?region=").contains("empty"));
        assert!(refused("dynamodb://T01?region=EU_WEST").contains("not an AWS region"));
        assert!(refused("dynamodb://T01?endpoint=localhost:8000").contains("not an http"));
        assert!(refused("dynamodb://T01:8000").contains("port"));
        assert!(refused("dynamodb://user:pw@T01").contains("credentials"));
        assert!(refused("dynamodb://T01/sub").contains("path"));
        assert!(refused("dynamodb://T01#x").contains("fragment"));
        assert!(refused("sqlite://T01").contains("not a dynamodb"));
        assert!(refused("dynamodb:T01").contains("not a dynamodb://"));
        // The message shows the URL and the accepted form.
        assert!(refused("dynamodb://T01?x=1").contains("dynamodb://T01?x=1"));
        assert!(refused("dynamodb://T01?x=1").contains("dynamodb://TABLE?region="));
    }

    #[test]
    fn builder_setters() {
        let c = DynamoDbConfig::new("T01")
            .with_region("ap-south-1")
            .with_endpoint("http://localhost:4566")
            .with_create_table(false)
            .with_backoff(Backoff::new().with_max_attempts(3));
        assert_eq!(c.region.as_deref(), Some("ap-south-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://localhost:4566"));
        assert!(!c.create_table);
        assert_eq!(c.backoff.max_attempts, 3);
        assert!(c.validate().is_ok());
        assert!(DynamoDbConfig::new("x").validate().is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb").unwrap(), "a.b");
        assert_eq!(percent_decode("100%").unwrap(), "100%");
        assert_eq!(percent_decode("%zz").unwrap(), "%zz");
        assert!(percent_decode("%ff").is_err());
    }
}
