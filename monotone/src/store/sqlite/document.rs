//! Documents in SQLite: the version in the `items` row (type `DOCUMENT`),
//! the JSON text in the `documents` row of the same id (schema version 3).

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use tokio::time::Instant;

use super::error::map_err;
use super::store::{checked_next, item, Outcome, SqliteStore};
use crate::document::state as document_state;
use crate::document::{CasOutcome, Document, Snapshot};
use crate::error::Result;
use crate::store::item_type::ItemType;

/// A document in a [`SqliteStore`]: its version in `items`, its text in
/// `documents`. A change check reads the `items` row only: one lookup in
/// the primary key's b-tree, whatever the document's size.
#[derive(Debug, Clone)]
pub struct SqliteDocument {
    pub(super) store: SqliteStore,
    pub(super) id: String,
}

/// The document's version (0 if absent); WrongType if the id holds
/// something else.
fn document_version(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<u64> {
    match item(tx, shown, id)? {
        None => Ok(0),
        Some(r) if r.kind == ItemType::Document.stored() => Ok(r.version),
        Some(r) => Err(r.wrong_type(id, ItemType::Document)),
    }
}

/// The document's value, `None` if it has none (absent or removed).
fn document_value(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
) -> Result<Option<serde_json::Value>> {
    let text: Option<String> = tx
        .prepare_cached("SELECT body FROM documents WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(|e| map_err(shown, "cannot read", e))?;
    text.map(|t| document_state::decode(&format!("sqlite database {shown}"), id, &t))
        .transpose()
}

/// The document as it is: version, then value.
fn document_snapshot(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<Snapshot> {
    let version = document_version(tx, shown, id)?;
    Ok(Snapshot::new(document_value(tx, shown, id)?, version))
}

/// Set the document's version, and its text (`None` deletes it).
fn write_document(
    tx: &Transaction<'_>,
    shown: &str,
    id: &str,
    version: u64,
    text: Option<&str>,
) -> Result<()> {
    let map = |e| map_err(shown, "cannot write", e);
    tx.prepare_cached(
        "INSERT INTO items (id, type, value, version) VALUES (?1, 'DOCUMENT', 0, ?2)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
    )
    .and_then(|mut s| s.execute(params![id, version as i64]))
    .map_err(map)?;
    match text {
        Some(text) => tx
            .prepare_cached(
                "INSERT INTO documents (id, body) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            )
            .and_then(|mut s| s.execute(params![id, text])),
        None => tx
            .prepare_cached("DELETE FROM documents WHERE id = ?1")
            .and_then(|mut s| s.execute([id])),
    }
    .map_err(map)?;
    Ok(())
}

/// Whether the document has a text (exists), without reading it.
fn document_exists(tx: &Transaction<'_>, shown: &str, id: &str) -> Result<bool> {
    tx.prepare_cached("SELECT 1 FROM documents WHERE id = ?1")
        .and_then(|mut s| s.exists([id]))
        .map_err(|e| map_err(shown, "cannot read", e))
}

/// Whether the document's text is `text` (`None`: it does not exist),
/// without reading it out: a value's text is its compact JSON, which is one
/// text per value (object keys sorted), so equal texts are equal values.
fn document_is(tx: &Transaction<'_>, shown: &str, id: &str, text: Option<&str>) -> Result<bool> {
    match text {
        None => Ok(!document_exists(tx, shown, id)?),
        Some(text) => tx
            .prepare_cached("SELECT 1 FROM documents WHERE id = ?1 AND body = ?2")
            .and_then(|mut s| s.exists(params![id, text]))
            .map_err(|e| map_err(shown, "cannot read", e)),
    }
}

#[async_trait]
impl Document for SqliteDocument {
    fn id(&self) -> &str {
        &self.id
    }

    async fn version(&self) -> Result<u64> {
        self.store.version_of(&self.id, ItemType::Document).await
    }

    fn pushes(&self) -> bool {
        self.store.pushes()
    }

    async fn wait_for_change(
        &self,
        seen: u64,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let (id, wanted) = (&self.id, ItemType::Document);
        let store = &self.store;
        store
            .wait_for_change(id, wanted, seen, until, poll, None)
            .await
    }

    async fn read(&self) -> Result<Snapshot> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| Ok(Outcome::Unchanged(document_snapshot(tx, shown, &id)?)),
            )
            .await
    }

    async fn read_if_changed(&self, known: u64) -> Result<Option<Snapshot>> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Deferred,
                "cannot read",
                move |tx, shown| {
                    let version = document_version(tx, shown, &id)?;
                    if version == known {
                        return Ok(Outcome::Unchanged(None));
                    }
                    let value = document_value(tx, shown, &id)?;
                    Ok(Outcome::Unchanged(Some(Snapshot::new(value, version))))
                },
            )
            .await
    }

    async fn compare_and_set(
        &self,
        expected: u64,
        value: Option<&serde_json::Value>,
    ) -> Result<CasOutcome> {
        let text = value
            .map(|v| document_state::encode(&self.id, v))
            .transpose()?;
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot write",
                move |tx, shown| {
                    let version = document_version(tx, shown, &id)?;
                    if version != expected {
                        let value = document_value(tx, shown, &id)?;
                        return Ok(Outcome::Unchanged(CasOutcome::Conflict(Snapshot::new(
                            value, version,
                        ))));
                    }
                    // The document holds what was asked already (or is
                    // absent and asked to be removed): nothing to write.
                    if document_is(tx, shown, &id, text.as_deref())? {
                        return Ok(Outcome::Unchanged(CasOutcome::Done { version }));
                    }
                    let version = checked_next(version, &id)?;
                    write_document(tx, shown, &id, version, text.as_deref())?;
                    Ok(Outcome::Commit(CasOutcome::Done { version }))
                },
            )
            .await
    }

    async fn remove(&self) -> Result<Option<u64>> {
        let id = self.id.clone();
        self.store
            .run(
                TransactionBehavior::Immediate,
                "cannot delete",
                move |tx, shown| {
                    let version = document_version(tx, shown, &id)?;
                    if !document_exists(tx, shown, &id)? {
                        return Ok(Outcome::Unchanged(None));
                    }
                    let version = checked_next(version, &id)?;
                    write_document(tx, shown, &id, version, None)?;
                    Ok(Outcome::Commit(Some(version)))
                },
            )
            .await
    }
}
