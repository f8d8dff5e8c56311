//! Tallies in DynamoDB: `add` is one `UpdateItem`, whose condition keeps the
//! sum inside `i64`.
//!
//! An `ADD` is not idempotent, so an add is sent again only when DynamoDB
//! said it did not apply it (throttling, a failed condition). An attempt
//! that got no clear answer (a timeout, a broken connection, HTTP 5xx) may
//! have been applied: it fails with
//! [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable), saying so,
//! rather than risk adding twice.
//!
//! The conditions keep the sum in `i64` and refuse items of another kind or
//! with numbers out of range, but no condition can tell a fraction from a
//! whole number: a `Value` of 1.5 (which no monotone writes) is added to or
//! removed like any other, and the result is reported as
//! [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt), saying so. Reads never
//! write.

use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use tracing::debug;

use super::schema::{
    decode, n, s, Item, Stored, TALLY, TALLY_ADD_CONDITION, TALLY_ADD_UPDATE,
    TALLY_REMOVE_CONDITION, VALUE,
};
use super::store::DynamoDbStore;
use super::table::{Update, Written};
use crate::error::{Error, ErrorKind, Result};
use crate::store::item_type::ItemType;
use crate::tally::{Freshness, Tally, TallyReading};

/// A tally in a [`DynamoDbStore`].
#[derive(Debug, Clone)]
pub struct DynamoDbTally {
    pub(super) store: DynamoDbStore,
    pub(super) id: String,
}

/// The largest version a tally can be added to.
const BELOW_MAX: i64 = i64::MAX - 1;

/// The range `Value` must be in for `n` to be added to it without leaving
/// `i64`.
fn addable(n: i64) -> (i64, i64) {
    if n < 0 {
        (i64::MIN - n, i64::MAX)
    } else {
        (i64::MIN, i64::MAX - n)
    }
}

impl DynamoDbTally {
    /// The tally in `item`: WrongType if another kind, Corrupt if unreadable.
    fn decode(&self, item: &Item) -> Result<TallyReading> {
        match decode(&self.store.inner.table.name, &self.id, item)? {
            Stored::Tally(reading) => Ok(reading),
            other => Err(other.wrong_type(&self.id, ItemType::Tally)),
        }
    }

    /// The error for a write that went through on an item it cannot read:
    /// a `Value` with a fraction (which no monotone writes) is inside the
    /// condition's range, and no condition can tell a fraction from a whole
    /// number. `item` is the item the write returned; `done` says what
    /// happened to it.
    fn fraction_written(&self, e: Error, item: &Item, done: &str) -> Error {
        if e.kind() != ErrorKind::Corrupt {
            return e;
        }
        let value = match item.get(VALUE) {
            Some(AttributeValue::N(v)) => v.as_str(),
            _ => "not a number",
        };
        Error::new(
            ErrorKind::Corrupt,
            format!(
                "dynamodb table `{}`: tally `{}` holds a `Value` that is not a whole number \
                 ({value}), which no condition can detect: {done}",
                self.store.inner.table.name, self.id
            ),
        )
    }

    /// What an item that failed the condition of adding `n` (or of removing,
    /// for `None`) tells: the error to return, or `None` if the race is worth
    /// retrying.
    fn why_not(&self, item: Option<&Item>, n: Option<i64>) -> Option<Error> {
        let reading = match item.map(|i| self.decode(i)) {
            // Absent: removed since the condition was evaluated.
            None => return None,
            Some(Err(e)) => return Some(e),
            Some(Ok(reading)) => reading,
        };
        // A tally whose sum with `n` leaves `i64` (or whose version is at
        // its end) is refused with the rule every store applies.
        match n.map(|n| reading.plus(&self.id, n)) {
            Some(Err(e)) => Some(e),
            // A tally we can add to: changed since the condition was
            // evaluated. Try again.
            _ => None,
        }
    }
}

#[async_trait]
impl Tally for DynamoDbTally {
    fn id(&self) -> &str {
        &self.id
    }

    /// One `UpdateItem` that adds `n` to `Value` and 1 to `Version` under
    /// the range condition and returns the new reading; more only if the
    /// item is not a tally we can add to (to tell why) or changes under us.
    async fn add(&self, amount: i64) -> Result<TallyReading> {
        let table = &self.store.inner.table;
        let what = format!("tally `{}`: add {amount}", self.id);
        let (low, high) = addable(amount);
        let update = Update {
            update: TALLY_ADD_UPDATE,
            condition: TALLY_ADD_CONDITION,
            values: vec![
                (":tally", s(TALLY)),
                (":n", n(amount)),
                (":one", n(1)),
                (":number", s("N")),
                (":zero", n(0)),
                (":low", n(low)),
                (":high", n(high)),
                (":below_max", n(BELOW_MAX)),
            ],
            returns: ReturnValue::AllNew,
            // Adding twice would be wrong, and nothing in the request could
            // tell a second attempt from a new add.
            resend_unanswered: false,
        };
        let mut attempts = self.store.attempts();
        let mut throttled = self.store.attempts();
        loop {
            match table.update(&what, &self.id, &update).await {
                // The whole new item (`ALL_NEW`: a few bytes), so the type is
                // checked even by servers that leave an unchanged `Type` out
                // of `UPDATED_NEW`.
                Ok(Written::Done(new)) => {
                    return self
                        .decode(&new)
                        .map_err(|e| self.fraction_written(e, &new, "the add was applied to it"))
                }
                Ok(Written::ConditionFailed(item)) => {
                    let item = table.returned_or_read(&what, &self.id, item).await?;
                    if let Some(e) = self.why_not(item.as_ref(), Some(amount)) {
                        return Err(e);
                    }
                    self.store.back_off(&mut attempts, &what).await?;
                }
                // Throttling means DynamoDB did not apply it: safe to resend.
                Err(e) if e.kind() == ErrorKind::Throttled => {
                    let Ok(delay) = throttled.next_delay(Instant::now()) else {
                        return Err(e);
                    };
                    debug!(table = %table.name, ?delay, "{what}: throttled; retrying");
                    tokio::time::sleep(delay).await;
                }
                // No clear answer: it may have been applied, so it is not
                // sent again (the SDK's retries are off for this request).
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!("{e}; the add may or may not have been applied"),
                    )
                    .with_source(e))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One `GetItem`: strongly consistent for a fresh read, eventually
    /// consistent (half the read capacity) for a stale one.
    async fn get(&self, freshness: Freshness) -> Result<TallyReading> {
        let table = &self.store.inner.table;
        let what = format!("tally `{}`: get", self.id);
        let consistent = freshness != Freshness::Stale;
        match table.read(&what, &self.id, consistent).await? {
            None => Ok(TallyReading::default()),
            Some(item) => self.decode(&item),
        }
    }

    /// One `DeleteItem` under the tally condition, returning the old item.
    async fn remove(&self) -> Result<Option<TallyReading>> {
        let table = &self.store.inner.table;
        let what = format!("tally `{}`: remove", self.id);
        let values = [
            (":tally", s(TALLY)),
            (":number", s("N")),
            (":zero", n(0)),
            (":min", n(i64::MIN)),
            (":max", n(i64::MAX)),
        ];
        let mut attempts = self.store.attempts();
        loop {
            match table
                .delete(&what, &self.id, TALLY_REMOVE_CONDITION, &values)
                .await?
            {
                Written::Done(old) if old.is_empty() => return Ok(None),
                Written::Done(old) => {
                    return self
                        .decode(&old)
                        .map(Some)
                        .map_err(|e| self.fraction_written(e, &old, "it was removed all the same"))
                }
                Written::ConditionFailed(item) => {
                    let item = table.returned_or_read(&what, &self.id, item).await?;
                    if let Some(e) = self.why_not(item.as_ref(), None) {
                        return Err(e);
                    }
                    self.store.back_off(&mut attempts, &what).await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addable_range_keeps_the_sum_in_i64() {
        for amount in [0, 1, -1, 7, -7, i64::MAX, i64::MIN, i64::MIN + 1] {
            let (low, high) = addable(amount);
            assert!(low <= high, "{amount}");
            for v in [low, high] {
                assert!(v.checked_add(amount).is_some(), "{v} + {amount}");
            }
            if low > i64::MIN {
                assert!((low - 1).checked_add(amount).is_none(), "{amount}");
            }
            if high < i64::MAX {
                assert!((high + 1).checked_add(amount).is_none(), "{amount}");
            }
        }
    }
}
