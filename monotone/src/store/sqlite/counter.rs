//! Counters in SQLite: a row of `items` with type `COUNTER`, its value in
//! `value`. `next` reads and writes the row in one `BEGIN IMMEDIATE`
//! transaction, so concurrent increments queue on the write lock and none is
//! lost.

use async_trait::async_trait;
use rusqlite::{params, TransactionBehavior};

use super::error::map_err;
use super::store::{checked_next, item, Outcome, SqliteStore};
use crate::counter::Counter;
use crate::error::Result;
use crate::store::item_type::ItemType;

/// A counter in a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteCounter {
    pub(super) store: SqliteStore,
    pub(super) id: String,
}

#[async_trait]
impl Counter for SqliteCounter {
    fn id(&self) -> &str {
        &self.id
    }

    async fn get(&self) -> Result<u64> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| match item(tx, shown, &id)? {
                    None => Ok(Outcome::Unchanged(0)),
                    Some(r) if r.kind == ItemType::Counter.stored() => {
                        Ok(Outcome::Unchanged(r.count(&id)?))
                    }
                    Some(r) => Err(r.wrong_type(&id, ItemType::Counter)),
                },
            )
            .await
    }

    async fn next(&self) -> Result<u64> {
        let id = self.id.clone();
        self.store
            .run(TransactionBehavior::Immediate, "cannot write", move |tx, shown| {
                let row = item(tx, shown, &id)?;
                let (value, version) = match row {
                    None => (1, 1),
                    Some(r) if r.kind == ItemType::Counter.stored() => {
                        (checked_next(r.count(&id)?, &id)?, checked_next(r.version, &id)?)
                    }
                    Some(r) => return Err(r.wrong_type(&id, ItemType::Counter)),
                };
                tx.prepare_cached(
                    "INSERT INTO items (id, type, value, version) VALUES (?1, 'COUNTER', ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET value = excluded.value, version = excluded.version",
                )
                .and_then(|mut s| s.execute(params![id, value as i64, version as i64]))
                .map_err(|e| map_err(shown, "cannot write", e))?;
                Ok(Outcome::Commit(value))
            })
            .await
    }

    async fn remove(&self) -> Result<Option<u64>> {
        self.store
            .remove_item(&self.id, None, |r, id| match r.kind.as_str() {
                k if k == ItemType::Counter.stored() => r.count(id),
                _ => Err(r.wrong_type(id, ItemType::Counter)),
            })
            .await
    }
}
