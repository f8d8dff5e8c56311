//! [`DynamoDbStore`]: the table and client that every handle of one store
//! shares, the retry budget of writes that lose a race, and the removal of
//! an item with a version (a queue, a claim pool), which more than one kind
//! of item uses.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use tracing::debug;

use super::config::{DynamoDbConfig, DEFAULT_REGION};
use super::schema;
use super::table::{self, Table};
use crate::backoff::{Attempts, Backoff, Jitter};
use crate::error::{Error, ErrorKind, Result};
use crate::queue::fencing::FencingToken;
use crate::store::item_type::ItemType;

/// A store in a DynamoDB table. Clones share one client.
#[derive(Clone)]
pub struct DynamoDbStore {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) table: Table,
    pub(super) backoff: Backoff,
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbStore")
            .field("table", &self.inner.table.name)
            .field("region", &self.inner.table.region)
            .field("endpoint", &self.inner.table.endpoint)
            .finish_non_exhaustive()
    }
}

impl DynamoDbStore {
    /// A store on the table `config` names, with a client configured from
    /// `config` and the standard AWS chain (see the [module docs](super)).
    ///
    /// Sends no request: a missing table or bad credentials show on the
    /// first operation.
    pub async fn connect(config: DynamoDbConfig) -> Result<Self> {
        config.validate()?;
        let sdk = config.load().await;
        let region = sdk
            .region()
            .map_or_else(|| DEFAULT_REGION.to_owned(), |r| r.to_string());
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| sdk.endpoint_url().map(str::to_owned));
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        Ok(Self::build(client, config, region, endpoint))
    }

    /// A store on `config.table` through a client you built, used as it is
    /// (its region, endpoint, credentials, retries, timeouts, interceptors).
    /// `config.region` and `config.endpoint` are only reported by
    /// [`Store::location`](crate::Store::location), and only if the client has no region.
    pub fn from_client(client: aws_sdk_dynamodb::Client, config: DynamoDbConfig) -> Result<Self> {
        let mut checked = config.clone();
        checked.region = None; // the client's region is the one that counts
        checked.validate()?;
        let region = client
            .config()
            .region()
            .map(|r| r.to_string())
            .or_else(|| config.region.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint = config.endpoint.clone();
        Ok(Self::build(client, config, region, endpoint))
    }

    fn build(
        client: aws_sdk_dynamodb::Client,
        config: DynamoDbConfig,
        region: String,
        endpoint: Option<String>,
    ) -> Self {
        debug!(table = %config.table, %region, ?endpoint, "dynamodb store");
        DynamoDbStore {
            inner: Arc::new(Inner {
                table: Table::new(client, config.table, region, endpoint, config.create_table),
                backoff: config.backoff,
            }),
        }
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.inner.table.client
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.inner.table.name
    }

    pub(super) fn attempts(&self) -> Attempts<'_> {
        self.inner
            .backoff
            .start(Instant::now(), Jitter::from_entropy())
    }

    /// Wait before retrying a write that lost a race, or give up. Returns
    /// how long it waited.
    pub(super) async fn back_off(
        &self,
        attempts: &mut Attempts<'_>,
        what: &str,
    ) -> Result<Duration> {
        match attempts.next_delay(Instant::now()) {
            Ok(delay) => {
                debug!(table = %self.table(), retry = attempts.retries(), ?delay, "{what}: another client wrote first; retrying");
                tokio::time::sleep(delay).await;
                Ok(delay)
            }
            Err(spent) => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "dynamodb table `{}`: {what}: gave up after {} attempts in {:.1}s, \
                     as other clients kept writing the item first",
                    self.table(),
                    spent.attempts,
                    spent.elapsed.as_secs_f64()
                ),
            )),
        }
    }
}

impl DynamoDbStore {
    /// The version of the `wanted` item under `id`: one strongly consistent
    /// `GetItem` of its `Type` and `Version` alone. 0 if absent, WrongType
    /// if the id holds another kind.
    pub(crate) async fn version_of(&self, id: &str, wanted: ItemType) -> Result<u64> {
        let table = &self.inner.table;
        let what = format!("{} `{id}`: check the version", wanted.name());
        let item = table.version(&what, id).await?;
        schema::decode_version(&table.name, id, item.as_ref(), wanted)
    }

    /// Delete `id` under `condition` (with `values`), returning the old
    /// item's `Version`: a queue's or claim pool's token, or `None` if there
    /// was no item. When the condition fails, `readable` says why from the
    /// item as it was: an error (another kind of item, an unreadable one)
    /// ends the removal; otherwise it changed meanwhile, and is tried again.
    pub(crate) async fn remove_versioned(
        &self,
        what: &str,
        id: &str,
        condition: &'static str,
        values: &[(&'static str, AttributeValue)],
        readable: impl Fn(Option<&schema::Item>) -> Result<()>,
    ) -> Result<Option<FencingToken>> {
        let table = &self.inner.table;
        let mut attempts = self.attempts();
        loop {
            match table.delete(what, id, condition, values).await? {
                table::Written::Done(old) if old.is_empty() => return Ok(None),
                table::Written::Done(old) => {
                    let version = match old.get(schema::VERSION) {
                        Some(AttributeValue::N(v)) => v.parse().ok(),
                        _ => None,
                    };
                    return version.map(|v| Some(FencingToken(v))).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Corrupt,
                            format!(
                                "dynamodb table `{}`: {what}: removed, but its `{}` was unreadable",
                                table.name,
                                schema::VERSION
                            ),
                        )
                    });
                }
                table::Written::ConditionFailed(item) => {
                    let item = table.returned_or_read(what, id, item).await?;
                    readable(item.as_ref())?;
                    self.back_off(&mut attempts, what).await?;
                }
            }
        }
    }
}
