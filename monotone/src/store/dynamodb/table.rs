//! The table itself: every request to it, and creating it when it is missing.
//!
//! Each request is sent once; if DynamoDB answers that the table does not
//! exist, the table is created (unless that is turned off), waited for until
//! ACTIVE, and the request is sent once more. So a table costs nothing extra
//! once it exists: no `DescribeTable` on the normal path.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use tracing::debug;

use super::error::{map, Context, Mapped};
use super::schema::{self, Item, ID};
use crate::error::{Error, ErrorKind, Result};

/// Longest wait for a new table to become ACTIVE.
pub const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The AWS CLI command that creates a table monotone can use.
///
/// ```
/// assert_eq!(
///     monotone::dynamodb::create_table_command("Counters"),
///     "aws dynamodb create-table --table-name Counters \
///      --attribute-definitions AttributeName=ID,AttributeType=S \
///      --key-schema AttributeName=ID,KeyType=HASH --billing-mode PAY_PER_REQUEST"
/// );
/// ```
pub fn create_table_command(table: &str) -> String {
    format!(
        "aws dynamodb create-table --table-name {table} \
         --attribute-definitions AttributeName={ID},AttributeType=S \
         --key-schema AttributeName={ID},KeyType=HASH --billing-mode PAY_PER_REQUEST"
    )
}

/// A table and the client that reaches it.
#[derive(Debug)]
pub(crate) struct Table {
    pub client: Client,
    pub name: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub create: bool,
    /// Held while creating the table, so one process sends one CreateTable.
    creating: tokio::sync::Mutex<()>,
}

/// A conditional write's outcome. A failed condition is a normal result.
#[derive(Debug)]
pub(crate) enum Written {
    /// The write happened; the attributes asked for with `ReturnValues`.
    Done(Item),
    /// The condition did not hold; nothing was written. The item as it was,
    /// if the server returned it (`ReturnValuesOnConditionCheckFailure`).
    ConditionFailed(Option<Item>),
}

/// An `UpdateItem` request, apart from table and key.
#[derive(Debug, Clone)]
pub(crate) struct Update {
    pub update: &'static str,
    pub condition: &'static str,
    pub values: Vec<(&'static str, AttributeValue)>,
    pub returns: ReturnValue,
    /// Whether the SDK may send the request again after an attempt that got
    /// no clear answer (a timeout, a broken connection, HTTP 5xx), which
    /// DynamoDB may have applied. True where applying it twice is harmless
    /// (it is conditional on a version, or skipping a counter value is
    /// allowed); false makes one attempt, and the caller retries only what
    /// surely was not applied.
    pub resend_unanswered: bool,
}

/// An `UpdateItem` request with its names and values, apart from table and
/// key: what [`Update`] becomes, or what a caller builds whose expressions
/// are not fixed.
#[derive(Debug, Clone)]
pub(crate) struct UpdateRequest {
    pub update: String,
    pub condition: String,
    /// Every attribute name placeholder the expressions use, and no other.
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
    pub returns: ReturnValue,
    /// As [`Update::resend_unanswered`].
    pub resend_unanswered: bool,
}

fn values(pairs: &[(&'static str, AttributeValue)]) -> HashMap<String, AttributeValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl Table {
    pub fn new(
        client: Client,
        name: String,
        region: String,
        endpoint: Option<String>,
        create: bool,
    ) -> Self {
        Table {
            client,
            name,
            region,
            endpoint,
            create,
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// Where DynamoDB is, for messages: the endpoint, or the region.
    pub fn place(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(&self.region)
    }

    pub fn context<'a>(&'a self, what: &'a str) -> Context<'a> {
        Context {
            table: &self.name,
            place: self.place(),
            what,
        }
    }

    /// The item a failed condition returned, or, from a server that returns
    /// none, the item as it is now (one more `GetItem`).
    pub async fn returned_or_read(
        &self,
        what: &str,
        id: &str,
        returned: Option<Item>,
    ) -> Result<Option<Item>> {
        match returned {
            Some(item) => Ok(Some(item)),
            None => self.get(what, id).await,
        }
    }

    /// A strongly consistent read of the item `id`.
    pub async fn get(&self, what: &str, id: &str) -> Result<Option<Item>> {
        self.read(what, id, true).await
    }

    /// A strongly consistent read of the `Type` and `Version` of the item
    /// `id` alone ([`schema::VERSION_PROJECTION`]): a waiter's check.
    pub async fn version(&self, what: &str, id: &str) -> Result<Option<Item>> {
        self.get_item(what, id, true, Some(schema::VERSION_PROJECTION))
            .await
    }

    /// A read of the item `id`, strongly consistent or (at half the price)
    /// eventually consistent.
    pub async fn read(&self, what: &str, id: &str, consistent: bool) -> Result<Option<Item>> {
        self.get_item(what, id, consistent, None).await
    }

    /// A `GetItem` of `id`, of the attributes `projection` names (with the
    /// schema's placeholders) or of the whole item.
    async fn get_item(
        &self,
        what: &str,
        id: &str,
        consistent: bool,
        projection: Option<&'static str>,
    ) -> Result<Option<Item>> {
        let ctx = self.context(what);
        self.with_table(&ctx, || async {
            let started = Instant::now();
            let out = self
                .client
                .get_item()
                .table_name(&self.name)
                .set_key(Some(schema::key(id)))
                .consistent_read(consistent)
                .set_projection_expression(projection.map(str::to_owned))
                .set_expression_attribute_names(projection.map(|p| schema::names_in(&[p])))
                .send()
                .await;
            debug!(table = %self.name, id, request = "GetItem", consistent, ?projection, ok = out.is_ok(), elapsed = ?started.elapsed(), "{what}");
            out.map(|o| o.item).map_err(|e| map(e, &ctx))
        })
        .await
    }

    /// An `UpdateItem` on `id`.
    pub async fn update(&self, what: &str, id: &str, update: &Update) -> Result<Written> {
        self.update_named(what, id, update, &[]).await
    }

    /// An `UpdateItem` on `id` whose expressions also use the attribute name
    /// placeholders `names` (placeholder, name), beside the schema's fixed
    /// ones: names known only per request, like a ticket's counter.
    pub async fn update_named(
        &self,
        what: &str,
        id: &str,
        update: &Update,
        names: &[(&str, String)],
    ) -> Result<Written> {
        let mut all = schema::names_in(&[update.update, update.condition]);
        all.extend(names.iter().map(|(p, n)| (p.to_string(), n.clone())));
        let request = UpdateRequest {
            update: update.update.to_owned(),
            condition: update.condition.to_owned(),
            names: all,
            values: values(&update.values),
            returns: update.returns.clone(),
            resend_unanswered: update.resend_unanswered,
        };
        self.send_update(what, id, &request).await
    }

    /// An `UpdateItem` on `id` whose expressions are made per request (a
    /// claim pool's writes touch as many claims as they serve).
    pub async fn send_update(
        &self,
        what: &str,
        id: &str,
        update: &UpdateRequest,
    ) -> Result<Written> {
        let ctx = self.context(what);
        self.with_table(&ctx, || async {
            let started = Instant::now();
            let request = self
                .client
                .update_item()
                .table_name(&self.name)
                .set_key(Some(schema::key(id)))
                .update_expression(&update.update)
                .condition_expression(&update.condition)
                .set_expression_attribute_names(Some(update.names.clone()))
                .set_expression_attribute_values(Some(update.values.clone()))
                .return_values(update.returns.clone())
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            let out = if update.resend_unanswered {
                request.send().await
            } else {
                request
                    .customize()
                    .config_override(
                        aws_sdk_dynamodb::config::Builder::new()
                            .retry_config(RetryConfig::disabled()),
                    )
                    .send()
                    .await
            };
            let result = match out {
                Ok(o) => Ok(Written::Done(o.attributes.unwrap_or_default())),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                        Ok(Written::ConditionFailed(c.item.clone()))
                    }
                    _ => Err(map(e, &ctx)),
                },
            };
            debug!(table = %self.name, id, request = "UpdateItem", outcome = outcome(&result), elapsed = ?started.elapsed(), "{what}");
            result
        })
        .await
    }

    /// A `DeleteItem` on `id` under `condition`, returning the old item.
    pub async fn delete(
        &self,
        what: &str,
        id: &str,
        condition: &'static str,
        pairs: &[(&'static str, AttributeValue)],
    ) -> Result<Written> {
        let ctx = self.context(what);
        self.with_table(&ctx, || async {
            let started = Instant::now();
            let out = self
                .client
                .delete_item()
                .table_name(&self.name)
                .set_key(Some(schema::key(id)))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(schema::names_in(&[condition])))
                .set_expression_attribute_values(Some(values(pairs)))
                .return_values(ReturnValue::AllOld)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let result = match out {
                Ok(o) => Ok(Written::Done(o.attributes.unwrap_or_default())),
                Err(e) => match e.as_service_error() {
                    Some(DeleteItemError::ConditionalCheckFailedException(c)) => {
                        Ok(Written::ConditionFailed(c.item.clone()))
                    }
                    _ => Err(map(e, &ctx)),
                },
            };
            debug!(table = %self.name, id, request = "DeleteItem", outcome = outcome(&result), elapsed = ?started.elapsed(), "{what}");
            result
        })
        .await
    }

    /// Run `request`; if the table is missing, create it and run it once more.
    async fn with_table<T, F, Fut>(&self, ctx: &Context<'_>, request: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Mapped>>,
    {
        match request().await {
            Ok(v) => Ok(v),
            Err(Mapped::Error(e)) => Err(e),
            Err(Mapped::TableMissing(missing)) => {
                self.create_table(ctx, missing).await?;
                request().await.map_err(Mapped::into_error)
            }
        }
    }

    /// Create the table (`missing` is the error that showed it is missing)
    /// and wait until it is ACTIVE.
    async fn create_table(&self, ctx: &Context<'_>, missing: Error) -> Result<()> {
        let how = format!(
            "create it with `{}`, or with the Terraform module in terraform/",
            create_table_command(&self.name)
        );
        if !self.create {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "dynamodb table `{}` does not exist at {} (and creating it is turned off); {how}",
                    self.name,
                    self.place()
                ),
            )
            .with_source(missing));
        }
        let _one_at_a_time = self.creating.lock().await;
        debug!(table = %self.name, request = "CreateTable", "the table is missing: creating it");
        let created = self
            .client
            .create_table()
            .table_name(&self.name)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(ID)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("name and type are set"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(ID)
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("name and type are set"),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        if let Err(e) = created {
            match e.code() {
                // Another client is creating it (or already has): wait for it.
                Some("ResourceInUseException") => {}
                Some("AccessDeniedException") => {
                    return Err(self.not_allowed("CreateTable", e.message(), &how));
                }
                _ => {
                    let ctx = Context {
                        what: "creating the table",
                        ..*ctx
                    };
                    return Err(map(e, &ctx).into_error());
                }
            }
        }
        self.wait_until_active(ctx, &how).await
    }

    /// Poll `DescribeTable` until the table is ACTIVE; real DynamoDB answers
    /// CREATING for a few seconds first.
    async fn wait_until_active(&self, ctx: &Context<'_>, how: &str) -> Result<()> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.name)
                .send()
                .await;
            let status = match described {
                Ok(out) => out.table.and_then(|t| t.table_status),
                Err(e) => match e.code() {
                    // Just created: not visible to every reader yet.
                    Some("ResourceNotFoundException") => None,
                    Some("AccessDeniedException") => {
                        return Err(self.not_allowed("DescribeTable", e.message(), how));
                    }
                    _ => {
                        let ctx = Context {
                            what: "waiting for the new table",
                            ..*ctx
                        };
                        return Err(map(e, &ctx).into_error());
                    }
                },
            };
            debug!(table = %self.name, request = "DescribeTable", status = ?status, "waiting for the new table");
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if started.elapsed() + delay > TABLE_ACTIVE_TIMEOUT {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "dynamodb table `{}`: created, but not ACTIVE after {}s (status {status:?})",
                        self.name,
                        TABLE_ACTIVE_TIMEOUT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    fn not_allowed(&self, request: &str, message: Option<&str>, how: &str) -> Error {
        Error::new(
            ErrorKind::Config,
            format!(
                "dynamodb table `{}` does not exist at {} and monotone may not create it \
                 ({request} denied: {}); {how}",
                self.name,
                self.place(),
                message.unwrap_or("access denied").replace('\n', " ")
            ),
        )
    }
}

fn outcome<T>(r: &std::result::Result<Written, T>) -> &'static str {
    match r {
        Ok(Written::Done(_)) => "written",
        Ok(Written::ConditionFailed(Some(_))) => "condition failed, item returned",
        Ok(Written::ConditionFailed(None)) => "condition failed, no item returned",
        Err(_) => "error",
    }
}
