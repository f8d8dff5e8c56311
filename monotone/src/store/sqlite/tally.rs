//! Tallies in SQLite: a row of `items` with type `TALLY`, its signed sum in
//! `value` and its number of writes in `version` (schema version 2 admits
//! both). An add reads and writes the row in one `BEGIN IMMEDIATE`
//! transaction, so concurrent adds queue on the write lock and none is lost.

use async_trait::async_trait;
use rusqlite::{params, TransactionBehavior};

use super::error::map_err;
use super::store::{item, Outcome, Row, SqliteStore};
use crate::error::Result;
use crate::store::item_type::ItemType;
use crate::tally::{Freshness, Tally, TallyReading};

/// A tally in a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteTally {
    pub(super) store: SqliteStore,
    pub(super) id: String,
}

impl Row {
    /// This row as a tally's reading; WrongType if it is another kind.
    fn tally(&self, id: &str) -> Result<TallyReading> {
        if self.kind == ItemType::Tally.stored() {
            Ok(TallyReading::new(self.value, self.version))
        } else {
            Err(self.wrong_type(id, ItemType::Tally))
        }
    }
}

#[async_trait]
impl Tally for SqliteTally {
    fn id(&self) -> &str {
        &self.id
    }

    async fn add(&self, n: i64) -> Result<TallyReading> {
        let id = self.id.clone();
        self.store
            .run(TransactionBehavior::Immediate, "cannot write", move |tx, shown| {
                let before = match item(tx, shown, &id)? {
                    Some(row) => row.tally(&id)?,
                    None => TallyReading::default(),
                };
                let after = before.plus(&id, n)?;
                tx.prepare_cached(
                    "INSERT INTO items (id, type, value, version) VALUES (?1, 'TALLY', ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET value = excluded.value, version = excluded.version",
                )
                .and_then(|mut s| s.execute(params![id, after.value, after.version as i64]))
                .map_err(|e| map_err(shown, "cannot write", e))?;
                Ok(Outcome::Commit(after))
            })
            .await
    }

    /// A read transaction either way: in WAL mode it waits for no writer,
    /// so there is nothing cheaper to offer for a stale read.
    async fn get(&self, _: Freshness) -> Result<TallyReading> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| match item(tx, shown, &id)? {
                    Some(row) => Ok(Outcome::Unchanged(row.tally(&id)?)),
                    None => Ok(Outcome::Unchanged(TallyReading::default())),
                },
            )
            .await
    }

    async fn remove(&self) -> Result<Option<TallyReading>> {
        self.store.remove_item(&self.id, None, Row::tally).await
    }
}
