//! Documents: one record, `{"type":"DOCUMENT","version":N,"body":VALUE,...}`
//! (no `body` once removed: the record stays, keeping the version), written
//! by the item protocol of `item.rs`. A watcher waits on an etcd watch of
//! the key ([`wait_for_change`](crate::Document::wait_for_change)): the
//! server pushes each write; a read of the version every poll interval is
//! only the safety check (see `watch.rs`).

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::TxnOp;
use serde_json::Value;
use tokio::time::Instant;

use super::item::{ItemRead, Plan};
use super::layout::{record_key, Record};
use super::store::EtcdStore;
use super::watch::wait_for_change;
use crate::document::state as document_state;
use crate::document::{CasOutcome, Document, Snapshot};
use crate::error::{Error, Result};
use crate::store::item_type::ItemType;

/// A document in an [`EtcdStore`](super::EtcdStore).
#[derive(Debug)]
pub struct EtcdDocument {
    store: EtcdStore,
    id: String,
    key: Vec<u8>,
    /// The version and revision of this handle's last read, where a watch
    /// for the next change starts.
    seen: Mutex<Option<(u64, i64)>>,
}

impl EtcdDocument {
    pub(super) fn new(store: &EtcdStore, id: &str) -> Self {
        EtcdDocument {
            key: record_key(store.prefix(), id),
            store: store.clone(),
            id: id.to_owned(),
            seen: Mutex::new(None),
        }
    }

    fn what(&self) -> String {
        format!("`{}`", self.id)
    }

    fn snapshot(&self, read: &ItemRead) -> Result<Snapshot> {
        Ok(match read.record_of(&self.id, ItemType::Document)? {
            Some(Record::Document { version, body, .. }) => Snapshot::new(body.clone(), *version),
            _ => Snapshot::default(),
        })
    }

    async fn read_now(&self) -> Result<Snapshot> {
        let read = self
            .store
            .read_item(&self.what(), &self.key, self.store.deadline())
            .await?;
        let snapshot = self.snapshot(&read)?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((snapshot.version, read.revision));
        Ok(snapshot)
    }

    /// The write of `value` (a removal marker for `None`) over `now`.
    fn write(&self, now: &Snapshot, value: Option<&Value>, request: &str) -> Result<(TxnOp, u64)> {
        let version = now
            .version
            .checked_add(1)
            .ok_or_else(|| Error::overflow(&self.id))?;
        let record = Record::Document {
            version,
            body: value.cloned(),
            request: request.to_owned(),
        };
        Ok((TxnOp::put(self.key.clone(), record.encode(), None), version))
    }
}

#[async_trait]
impl Document for EtcdDocument {
    fn id(&self) -> &str {
        &self.id
    }

    async fn read(&self) -> Result<Snapshot> {
        self.read_now().await
    }

    async fn compare_and_set(&self, expected: u64, value: Option<&Value>) -> Result<CasOutcome> {
        if let Some(v) = value {
            document_state::encode(&self.id, v)?;
        }
        self.store
            .update(&self.id, &self.key, |read, request| {
                let now = self.snapshot(read)?;
                if now.version != expected {
                    return Ok(Plan::Answer(CasOutcome::Conflict(now)));
                }
                // The document holds what was asked already (or is absent
                // and asked to be removed): nothing to write.
                if now.value.as_ref() == value {
                    return Ok(Plan::Answer(CasOutcome::Done {
                        version: now.version,
                    }));
                }
                let (op, version) = self.write(&now, value, request)?;
                Ok(Plan::Write {
                    compares: vec![],
                    ops: vec![op],
                    answer: CasOutcome::Done { version },
                })
            })
            .await
    }

    async fn remove(&self) -> Result<Option<u64>> {
        self.store
            .update(&self.id, &self.key, |read, request| {
                let now = self.snapshot(read)?;
                if now.value.is_none() {
                    return Ok(Plan::Answer(None));
                }
                let (op, version) = self.write(&now, None, request)?;
                Ok(Plan::Write {
                    compares: vec![],
                    ops: vec![op],
                    answer: Some(version),
                })
            })
            .await
    }
    /// One consistent read of the document's key (there are no others):
    /// the version alone is what a watcher checks, and etcd sends the
    /// value with it all the same.
    async fn version(&self) -> Result<u64> {
        Ok(self.read_now().await?.version)
    }

    /// etcd pushes every write: see `wait_for_change`.
    fn pushes(&self) -> bool {
        true
    }

    /// An etcd watch of the document's key from the revision of this
    /// handle's last read (or of a read made now): the first write after
    /// it that changes the version wakes the watcher; every `poll` a read
    /// checks the version too (see `watch.rs`).
    async fn wait_for_change(
        &self,
        seen: u64,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let last = *self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let revision = match last {
            Some((version, revision)) if version == seen => revision,
            _ => {
                if self.read_now().await?.version != seen {
                    return Ok(true);
                }
                self.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .map_or(0, |(_, r)| r)
            }
        };
        let key = self.key.clone();
        let pushed = move |value: &[u8]| match Record::decode(&key, value) {
            Ok(Record::Document { version, .. }) => Some(version),
            _ => None,
        };
        wait_for_change(
            &self.store,
            &self.what(),
            &self.key,
            revision,
            seen,
            pushed,
            || self.version(),
            until,
            poll,
        )
        .await
    }
}
