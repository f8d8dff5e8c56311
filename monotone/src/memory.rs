//! The in-memory store: everything behind one `Arc<Mutex<..>>`.
//!
//! For tests and for services that coordinate the tasks and threads of one
//! process. A clone shares state with the original; nothing survives the
//! process. Each operation holds the lock for its whole read-modify-write, so
//! operations on the store are linearizable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::item_type::ItemType;
use crate::queue::{Fenced, FencingToken, Queue, Tags, Ticket};
use crate::state::{JoinOutcome, QueueState};
use crate::store::{Location, Store};
use crate::tally::{Freshness, Tally, TallyReading};
use crate::validate;

#[derive(Debug)]
enum Item {
    Counter(u64),
    Queue(QueueState),
    Tally(TallyReading),
}

impl Item {
    /// The WrongType error for this item found under `id` where `wanted`
    /// was asked for.
    fn wrong_type(&self, id: &str, wanted: ItemType) -> Error {
        let found = match self {
            Item::Counter(_) => ItemType::Counter,
            Item::Queue(_) => ItemType::Queue,
            Item::Tally(_) => ItemType::Tally,
        };
        found.wrong_type(id, wanted)
    }
}

/// A store in this process's memory. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    items: Arc<Mutex<HashMap<String, Item>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Item>> {
        // Every operation leaves the map consistent before it can panic (the
        // only panics are allocation failures), so a poisoned lock still
        // guards valid data.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delete the item `id` if it is a `wanted`, which `last` recognises by
    /// returning what the removal reports (its last value or token).
    fn remove<T>(
        &self,
        id: &str,
        wanted: ItemType,
        last: impl FnOnce(&Item) -> Option<T>,
    ) -> Result<Option<T>> {
        let mut items = self.lock();
        let Some(item) = items.get(id) else {
            return Ok(None);
        };
        let last = last(item).ok_or_else(|| item.wrong_type(id, wanted))?;
        items.remove(id);
        Ok(Some(last))
    }
}

impl Store for MemoryStore {
    fn counter(&self, id: &str) -> Result<Box<dyn Counter>> {
        validate::id(id)?;
        Ok(Box::new(MemoryCounter {
            store: self.clone(),
            id: id.to_owned(),
        }))
    }

    fn queue(&self, id: &str) -> Result<Box<dyn Queue>> {
        validate::id(id)?;
        Ok(Box::new(MemoryQueue {
            store: self.clone(),
            id: id.to_owned(),
        }))
    }

    fn tally(&self, id: &str) -> Result<Box<dyn Tally>> {
        validate::id(id)?;
        Ok(Box::new(MemoryTally {
            store: self.clone(),
            id: id.to_owned(),
        }))
    }

    fn location(&self) -> Location {
        Location::Memory
    }
}

/// A counter in a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryCounter {
    store: MemoryStore,
    id: String,
}

#[async_trait]
impl Counter for MemoryCounter {
    fn id(&self) -> &str {
        &self.id
    }

    async fn get(&self) -> Result<u64> {
        match self.store.lock().get(&self.id) {
            None => Ok(0),
            Some(Item::Counter(v)) => Ok(*v),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Counter)),
        }
    }

    async fn next(&self) -> Result<u64> {
        let mut items = self.store.lock();
        match items.get_mut(&self.id) {
            Some(Item::Counter(v)) => {
                *v = v.checked_add(1).ok_or_else(|| Error::overflow(&self.id))?;
                Ok(*v)
            }
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Counter)),
            None => {
                items.insert(self.id.clone(), Item::Counter(1));
                Ok(1)
            }
        }
    }

    async fn remove(&self) -> Result<Option<u64>> {
        self.store
            .remove(&self.id, ItemType::Counter, |item| match item {
                Item::Counter(v) => Some(*v),
                _ => None,
            })
    }
}

/// A queue in a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    store: MemoryStore,
    id: String,
}

impl MemoryQueue {
    /// Run `f` on the queue's state, or on `None` if the queue is absent.
    fn read<T>(&self, f: impl FnOnce(Option<&QueueState>) -> Result<T>) -> Result<T> {
        match self.store.lock().get(&self.id) {
            None => f(None),
            Some(Item::Queue(q)) => f(Some(q)),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Queue)),
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn id(&self) -> &str {
        &self.id
    }

    async fn join(&self, process_id: &str, tags: Tags) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        validate::tags(&tags)?;
        let mut items = self.store.lock();
        let item = items
            .entry(self.id.clone())
            .or_insert_with(|| Item::Queue(QueueState::default()));
        let Item::Queue(queue) = item else {
            return Err(item.wrong_type(&self.id, ItemType::Queue));
        };
        // `QueueState::join` checks everything before it changes anything, so
        // a failed join leaves the queue as it was.
        match queue.join(&self.id, process_id, tags)? {
            JoinOutcome::Joined(t) | JoinOutcome::Existing(t) => Ok(t),
        }
    }

    async fn leave(&self, process_id: &str) -> Result<FencingToken> {
        validate::process_id(process_id)?;
        let mut items = self.store.lock();
        match items.get_mut(&self.id) {
            None => Err(Error::queue_not_found(&self.id)),
            Some(Item::Queue(q)) => q.leave(&self.id, process_id),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Queue)),
        }
    }

    async fn ticket(&self, process_id: &str) -> Result<Fenced<Ticket>> {
        validate::process_id(process_id)?;
        self.read(|q| match q {
            None => Err(Error::process_not_found(&self.id, process_id)),
            Some(q) => q.ticket(&self.id, process_id),
        })
    }

    async fn tickets(&self) -> Result<Fenced<Vec<Ticket>>> {
        self.read(|q| Ok(q.map_or_else(|| Fenced::new(vec![], FencingToken(0)), |q| q.tickets())))
    }

    async fn remove(&self) -> Result<Option<FencingToken>> {
        self.store
            .remove(&self.id, ItemType::Queue, |item| match item {
                Item::Queue(q) => Some(q.token()),
                _ => None,
            })
    }
}

/// A tally in a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryTally {
    store: MemoryStore,
    id: String,
}

#[async_trait]
impl Tally for MemoryTally {
    fn id(&self) -> &str {
        &self.id
    }

    async fn add(&self, n: i64) -> Result<TallyReading> {
        let mut items = self.store.lock();
        let item = items
            .entry(self.id.clone())
            .or_insert_with(|| Item::Tally(TallyReading::default()));
        let Item::Tally(reading) = item else {
            return Err(item.wrong_type(&self.id, ItemType::Tally));
        };
        *reading = reading.plus(&self.id, n)?;
        Ok(*reading)
    }

    /// Fresh either way: there is nothing cheaper than the lock.
    async fn get(&self, _: Freshness) -> Result<TallyReading> {
        match self.store.lock().get(&self.id) {
            None => Ok(TallyReading::default()),
            Some(Item::Tally(reading)) => Ok(*reading),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Tally)),
        }
    }

    async fn remove(&self) -> Result<Option<TallyReading>> {
        self.store
            .remove(&self.id, ItemType::Tally, |item| match item {
                Item::Tally(reading) => Some(*reading),
                _ => None,
            })
    }
}
