//! Tallies: one record, `{"type":"TALLY","value":SUM,"version":ADDS,...}`,
//! written by the item protocol of `item.rs` (a transaction conditional on
//! the record as read; a lost race costs that one transaction, whose
//! failure branch returns the tally as it is now).

use async_trait::async_trait;
use etcd_client::{GetOptions, TxnOp};

use super::item::{ItemRead, Plan};
use super::layout::{record_key, Record};
use super::store::EtcdStore;
use crate::error::Result;
use crate::store::item_type::ItemType;
use crate::tally::{Freshness, Tally, TallyReading};

/// A tally in an [`EtcdStore`](super::EtcdStore).
#[derive(Debug, Clone)]
pub struct EtcdTally {
    store: EtcdStore,
    id: String,
    key: Vec<u8>,
}

impl EtcdTally {
    pub(super) fn new(store: &EtcdStore, id: &str) -> Self {
        EtcdTally {
            key: record_key(store.prefix(), id),
            store: store.clone(),
            id: id.to_owned(),
        }
    }

    /// The tally in `read`: the default reading if there is none.
    fn reading(&self, read: &ItemRead) -> Result<Option<TallyReading>> {
        Ok(match read.record_of(&self.id, ItemType::Tally)? {
            Some(Record::Tally { value, version, .. }) => Some(TallyReading::new(*value, *version)),
            _ => None,
        })
    }
}

#[async_trait]
impl Tally for EtcdTally {
    fn id(&self) -> &str {
        &self.id
    }

    async fn add(&self, n: i64) -> Result<TallyReading> {
        self.store
            .update(&self.id, &self.key, |read, request| {
                let now = self.reading(read)?.unwrap_or_default().plus(&self.id, n)?;
                let record = Record::Tally {
                    value: now.value,
                    version: now.version,
                    request: request.to_owned(),
                };
                Ok(Plan::Write {
                    compares: vec![],
                    ops: vec![TxnOp::put(self.key.clone(), record.encode(), None)],
                    answer: now,
                })
            })
            .await
    }

    /// A stale read is served by whichever member answers, from what it
    /// has applied, without a round of consensus: it may lag behind the
    /// latest adds, never run ahead of them.
    async fn get(&self, freshness: Freshness) -> Result<TallyReading> {
        let options = match freshness {
            Freshness::Stale => GetOptions::new().with_serializable(),
            _ => GetOptions::new(),
        };
        let what = format!("`{}`", self.id);
        let read = self
            .store
            .read_item_with(&what, &self.key, options, self.store.deadline())
            .await?;
        Ok(self.reading(&read)?.unwrap_or_default())
    }

    async fn remove(&self) -> Result<Option<TallyReading>> {
        self.store
            .update(&self.id, &self.key, |read, _| {
                Ok(match self.reading(read)? {
                    None => Plan::Answer(None),
                    Some(r) => Plan::Remove(Some(r)),
                })
            })
            .await
    }
}
