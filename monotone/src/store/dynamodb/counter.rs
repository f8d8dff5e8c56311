//! Counters in DynamoDB: `next` is one `UpdateItem`.

use async_trait::async_trait;

use aws_sdk_dynamodb::types::ReturnValue;

use super::schema::{
    decode, n, returned_value, s, Stored, COUNTER, COUNTER_NEXT_CONDITION, COUNTER_NEXT_UPDATE,
    COUNTER_REMOVE_CONDITION,
};
use super::store::DynamoDbStore;
use super::table::{Update, Written};
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::store::item_type::ItemType;

/// A counter in a [`DynamoDbStore`].
#[derive(Debug, Clone)]
pub struct DynamoDbCounter {
    pub(super) store: DynamoDbStore,
    pub(super) id: String,
}

/// The largest value and version a counter can be incremented from.
const BELOW_MAX: u64 = u64::MAX - 1;

/// What an item that failed a counter's condition tells: the error to return,
/// or `None` if the race is worth retrying.
fn why_not_a_counter(
    table: &str,
    id: &str,
    item: Option<&super::schema::Item>,
    incrementing: bool,
) -> Option<Error> {
    match item.map(|i| decode(table, id, i)) {
        Some(Err(corrupt)) => Some(corrupt),
        Some(Ok(Stored::Counter { value, version })) => {
            // A counter we can use changed since the condition was evaluated
            // (removed, re-created): try again.
            (incrementing && (value > BELOW_MAX || version > BELOW_MAX))
                .then(|| Error::overflow(id))
        }
        Some(Ok(other)) => Some(other.wrong_type(id, ItemType::Counter)),
        // Absent: removed since the condition was evaluated. Try again.
        None => None,
    }
}

#[async_trait]
impl Counter for DynamoDbCounter {
    fn id(&self) -> &str {
        &self.id
    }

    /// One strongly consistent `GetItem`.
    async fn get(&self) -> Result<u64> {
        let table = &self.store.inner.table;
        let what = format!("counter `{}`: get", self.id);
        match table.get(&what, &self.id).await? {
            None => Ok(0),
            Some(item) => match decode(&table.name, &self.id, &item)? {
                Stored::Counter { value, .. } => Ok(value),
                other => Err(other.wrong_type(&self.id, ItemType::Counter)),
            },
        }
    }

    /// One `UpdateItem` that adds 1 to `Value` and `Version` under the
    /// counter condition and returns the new value; more only if the item is
    /// not a counter (to tell why) or changes type under us.
    async fn next(&self) -> Result<u64> {
        let table = &self.store.inner.table;
        let what = format!("counter `{}`: next", self.id);
        let update = Update {
            update: COUNTER_NEXT_UPDATE,
            condition: COUNTER_NEXT_CONDITION,
            values: vec![
                (":counter", s(COUNTER)),
                (":one", n(1)),
                (":number", s("N")),
                (":zero", n(0)),
                (":below_max", n(BELOW_MAX)),
            ],
            returns: ReturnValue::UpdatedNew,
            resend_unanswered: true,
        };
        let mut attempts = self.store.attempts();
        loop {
            match table.update(&what, &self.id, &update).await? {
                Written::Done(new) => return returned_value(&table.name, &self.id, &new),
                Written::ConditionFailed(item) => {
                    let item = table.returned_or_read(&what, &self.id, item).await?;
                    if let Some(e) = why_not_a_counter(&table.name, &self.id, item.as_ref(), true) {
                        return Err(e);
                    }
                    self.store.back_off(&mut attempts, &what).await?;
                }
            }
        }
    }

    /// One `DeleteItem` under the counter condition, returning the old item.
    async fn remove(&self) -> Result<Option<u64>> {
        let table = &self.store.inner.table;
        let what = format!("counter `{}`: remove", self.id);
        let values = [
            (":counter", s(COUNTER)),
            (":number", s("N")),
            (":zero", n(0)),
            (":max", n(u64::MAX)),
        ];
        let mut attempts = self.store.attempts();
        loop {
            match table
                .delete(&what, &self.id, COUNTER_REMOVE_CONDITION, &values)
                .await?
            {
                Written::Done(old) if old.is_empty() => return Ok(None),
                Written::Done(old) => {
                    return match decode(&table.name, &self.id, &old)? {
                        Stored::Counter { value, .. } => Ok(Some(value)),
                        other => Err(other.wrong_type(&self.id, ItemType::Counter)),
                    }
                }
                Written::ConditionFailed(item) => {
                    let item = table.returned_or_read(&what, &self.id, item).await?;
                    if let Some(e) = why_not_a_counter(&table.name, &self.id, item.as_ref(), false)
                    {
                        return Err(e);
                    }
                    self.store.back_off(&mut attempts, &what).await?;
                }
            }
        }
    }
}
