//! Documents in DynamoDB: one item, its JSON text in `Body`, every write one
//! `UpdateItem` conditional on the `Version` read.

use async_trait::async_trait;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde_json::Value;

use super::schema::{
    decode, n, s, Item, Stored, DOCUMENT, DOCUMENT_CREATE_CONDITION, DOCUMENT_DROP_UPDATE,
    DOCUMENT_EXISTS_CONDITION, DOCUMENT_REMOVE_UPDATE, DOCUMENT_SET_UPDATE,
    DOCUMENT_VERSION_CONDITION, DOCUMENT_VERSION_EXISTS_CONDITION, VERSION,
};
use super::store::DynamoDbStore;
use super::table::{Update, Written};
use crate::backoff::Backoff;
use crate::document::state as document_state;
use crate::document::{CasOutcome, Document, Snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::store::item_type::ItemType;

/// A document in a [`DynamoDbStore`].
#[derive(Debug, Clone)]
pub struct DynamoDbDocument {
    pub(super) store: DynamoDbStore,
    pub(super) id: String,
}

impl DynamoDbDocument {
    /// The document in `item`: absent at version 0 if there is no item,
    /// WrongType if it is another kind, Corrupt if unreadable.
    fn decode(&self, item: Option<&Item>) -> Result<Snapshot> {
        match item {
            None => Ok(Snapshot::default()),
            Some(item) => match decode(&self.store.inner.table.name, &self.id, item)? {
                Stored::Document(doc) => Ok(doc),
                other => Err(other.wrong_type(&self.id, ItemType::Document)),
            },
        }
    }

    /// The document as a failed condition found it: the item the server
    /// returned, or (from a server that returns none) a new read.
    async fn after_failure(&self, what: &str, returned: Option<Item>) -> Result<Snapshot> {
        let table = &self.store.inner.table;
        let item = table.returned_or_read(what, &self.id, returned).await?;
        self.decode(item.as_ref())
    }
}

#[async_trait]
impl Document for DynamoDbDocument {
    fn id(&self) -> &str {
        &self.id
    }

    /// One strongly consistent `GetItem` of the `Type` and `Version` alone,
    /// which watchers poll; the document is read only once it changed (a
    /// second request per change). DynamoDB charges the check by the whole
    /// item's size all the same; the projection saves moving and decoding
    /// the document on every poll.
    async fn version(&self) -> Result<u64> {
        self.store.version_of(&self.id, ItemType::Document).await
    }

    /// One strongly consistent `GetItem`.
    async fn read(&self) -> Result<Snapshot> {
        let what = format!("document `{}`: read", self.id);
        let item = self.store.inner.table.get(&what, &self.id).await?;
        self.decode(item.as_ref())
    }

    /// One `UpdateItem` conditional on the version and on the value being
    /// another; when the condition fails, the item it returns tells the
    /// conflict, the identical value (nothing written) or a wrong type
    /// without another request.
    async fn compare_and_set(&self, expected: u64, value: Option<&Value>) -> Result<CasOutcome> {
        let text = value
            .map(|v| document_state::encode(&self.id, v))
            .transpose()?;
        let what = format!("document `{}`: write at version {expected}", self.id);
        let version = expected
            .checked_add(1)
            .ok_or_else(|| Error::overflow(&self.id))?;
        let mut values = vec![(":version", n(version))];
        let (update, condition) = match &text {
            Some(text) => {
                values.extend([(":document", s(DOCUMENT)), (":body", s(text))]);
                let condition = if expected == 0 {
                    DOCUMENT_CREATE_CONDITION
                } else {
                    values.push((":expected", n(expected)));
                    DOCUMENT_VERSION_CONDITION
                };
                (DOCUMENT_SET_UPDATE, condition)
            }
            None => {
                values.extend([(":document", s(DOCUMENT)), (":expected", n(expected))]);
                (DOCUMENT_REMOVE_UPDATE, DOCUMENT_VERSION_EXISTS_CONDITION)
            }
        };
        let update = Update {
            update,
            condition,
            values,
            returns: ReturnValue::None,
            resend_unanswered: true,
        };
        let table = &self.store.inner.table;
        match table.update(&what, &self.id, &update).await? {
            Written::Done(_) => Ok(CasOutcome::Done { version }),
            Written::ConditionFailed(item) => {
                let now = self.after_failure(&what, item).await?;
                if now.version == expected && now.value.as_ref() == value {
                    // The document holds what was asked already (or is
                    // absent and asked to be removed): nothing to write.
                    Ok(CasOutcome::Done { version: expected })
                } else {
                    Ok(CasOutcome::Conflict(now))
                }
            }
        }
    }

    /// One `UpdateItem` that adds 1 to the version and removes the value of
    /// an existing document, returning the new version.
    async fn remove(&self) -> Result<Option<u64>> {
        let what = format!("document `{}`: remove", self.id);
        let table = &self.store.inner.table;
        let update = Update {
            update: DOCUMENT_DROP_UPDATE,
            condition: DOCUMENT_EXISTS_CONDITION,
            values: vec![
                (":document", s(DOCUMENT)),
                (":one", n(1)),
                (":number", s("N")),
                (":zero", n(0)),
                (":below_max", n(u64::MAX - 1)),
            ],
            returns: ReturnValue::UpdatedNew,
            resend_unanswered: true,
        };
        let mut attempts = self.store.attempts();
        loop {
            match table.update(&what, &self.id, &update).await? {
                Written::Done(new) => {
                    return match new.get(VERSION) {
                        Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| {
                            Error::new(
                                ErrorKind::Corrupt,
                                format!(
                                    "dynamodb table `{}`: document `{}` now has the `{VERSION}` {v}",
                                    table.name, self.id
                                ),
                            )
                        }),
                        _ => Err(Error::new(
                            ErrorKind::Corrupt,
                            format!(
                                "dynamodb table `{}`: document `{}`: the removal returned no `{VERSION}`",
                                table.name, self.id
                            ),
                        )),
                    };
                }
                Written::ConditionFailed(item) => {
                    if !self.after_failure(&what, item).await?.exists() {
                        return Ok(None);
                    }
                    // Written again since the condition was evaluated.
                    self.store.back_off(&mut attempts, &what).await?;
                }
            }
        }
    }

    fn backoff(&self) -> Backoff {
        self.store.inner.backoff.clone()
    }
}
