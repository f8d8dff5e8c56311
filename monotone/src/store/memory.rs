//! The in-memory store: everything behind one `Arc<Mutex<..>>`.
//!
//! For tests and for services that coordinate the tasks and threads of one
//! process. A clone shares state with the original; nothing survives the
//! process. Each operation holds the lock for its whole read-modify-write, so
//! operations on the store are linearizable.
//!
//! The store pushes (see the `change` module): every operation that may
//! write advances the store's one `Notifier` (see `change.rs`) as it lets go of the lock, and
//! each waiter then compares its own item's version under the lock (a map
//! lookup), so a waiter wakes at once after a write by any handle.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::time::Instant;

use crate::change::Notifier;
use crate::claim::{Claim, ClaimPool, ClaimRequest, Claimed, Roster};

use crate::claim::state::{Asked, ClaimOutcome, ClaimPoolState};
use crate::counter::Counter;
use crate::document::state as document_state;
use crate::document::{CasOutcome, Document, Snapshot};
use crate::error::{Error, Result};
use crate::lease::expiry::Expired;
use crate::lease::record as lease;
use crate::lease::record::LeaseRecord;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::state::{JoinOutcome, QueueState};
use crate::queue::ticket::{JoinRequest, Joined, Ticket};
use crate::queue::Queue;
use crate::store::item_type::ItemType;
use crate::store::{Location, Store};
use crate::tally::{Freshness, Tally, TallyReading};
use crate::validate;

#[derive(Debug)]
enum Item {
    Counter(u64),
    Queue(QueueState),
    /// A document, or the marker of a removed one (`None`), and its version.
    Document(Snapshot),
    Tally(TallyReading),
    ClaimPool(ClaimPoolState),
}

impl Item {
    fn item_type(&self) -> ItemType {
        match self {
            Item::Counter(_) => ItemType::Counter,
            Item::Queue(_) => ItemType::Queue,
            Item::Document(_) => ItemType::Document,
            Item::Tally(_) => ItemType::Tally,
            Item::ClaimPool(_) => ItemType::ClaimPool,
        }
    }

    /// The WrongType error for this item found where `wanted` was asked for.
    fn wrong_type(&self, id: &str, wanted: ItemType) -> Error {
        self.item_type().wrong_type(id, wanted)
    }

    /// The number that grows with every write of a queue, claim pool or
    /// document: what waiters compare.
    fn version(&self) -> u64 {
        match self {
            Item::Queue(q) => q.token().get(),
            Item::ClaimPool(p) => p.token().get(),
            Item::Document(d) => d.version,
            Item::Counter(_) | Item::Tally(_) => 0,
        }
    }
}

/// A store in this process's memory. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    items: Arc<Mutex<HashMap<String, Item>>>,
    notifier: Arc<Notifier>,
}

/// The items, locked to be changed: every waiter is notified when this
/// goes (the guard's field is dropped, and the lock let go, right after).
struct Writing<'a> {
    items: MutexGuard<'a, HashMap<String, Item>>,
    notifier: &'a Notifier,
}

impl Deref for Writing<'_> {
    type Target = HashMap<String, Item>;

    fn deref(&self) -> &Self::Target {
        &self.items
    }
}

impl DerefMut for Writing<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.items
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.notifier.notify();
    }
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

    /// The lock, to change the items: waiters are told when it goes.
    fn write(&self) -> Writing<'_> {
        Writing {
            items: self.lock(),
            notifier: &self.notifier,
        }
    }

    /// The version of the `wanted` item under `id`: 0 if absent, WrongType
    /// if the id holds another kind.
    fn version_of(&self, id: &str, wanted: ItemType) -> Result<u64> {
        match self.lock().get(id) {
            None => Ok(0),
            Some(item) if item.item_type() == wanted => Ok(item.version()),
            Some(other) => Err(other.wrong_type(id, wanted)),
        }
    }

    /// Wait until the version of the `wanted` item under `id` is not
    /// `seen`, or `until`: told by every write (see the module docs).
    async fn wait_for_change(
        &self,
        id: &str,
        wanted: ItemType,
        seen: u64,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        self.notifier
            .wait_for_change(seen, until, poll, None, || async {
                self.version_of(id, wanted)
            })
            .await
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

    fn document(&self, id: &str) -> Result<Box<dyn Document>> {
        validate::id(id)?;
        Ok(Box::new(MemoryDocument {
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

    fn claim_pool(&self, id: &str) -> Result<Box<dyn ClaimPool>> {
        validate::id(id)?;
        Ok(Box::new(MemoryClaimPool {
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
        let mut items = self.store.write();
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
        let mut items = self.store.write();
        match items.get(&self.id) {
            None => Ok(None),
            Some(Item::Counter(v)) => {
                let v = *v;
                items.remove(&self.id);
                Ok(Some(v))
            }
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Counter)),
        }
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

    async fn token(&self) -> Result<FencingToken> {
        Ok(FencingToken(
            self.store.version_of(&self.id, ItemType::Queue)?,
        ))
    }

    fn pushes(&self) -> bool {
        true
    }

    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let (id, wanted) = (&self.id, ItemType::Queue);
        let store = &self.store;
        store
            .wait_for_change(id, wanted, seen.get(), until, poll)
            .await
    }

    async fn join_as(&self, process_id: &str, request: &JoinRequest) -> Result<Joined> {
        validate::process_id(process_id)?;
        validate::tags(&request.tags)?;
        let lease = LeaseRecord::starting_now(request.lease, request.holder)?;
        let written_at = tokio::time::Instant::now();
        let mut items = self.store.write();
        let item = items
            .entry(self.id.clone())
            .or_insert_with(|| Item::Queue(QueueState::default()));
        let queue = match item {
            Item::Queue(queue) => queue,
            other => return Err(other.wrong_type(&self.id, ItemType::Queue)),
        };
        // `QueueState::join` checks everything before it changes anything, so
        // a failed join leaves the queue as it was.
        match queue.join(&self.id, process_id, request.tags.clone(), lease)? {
            JoinOutcome::Joined(t) => Ok(Joined::written(t, written_at)),
            JoinOutcome::Existing(t) => Ok(Joined::new(t, false)),
        }
    }

    async fn leave_if(&self, process_id: &str, counter: Option<u64>) -> Result<FencingToken> {
        validate::process_id(process_id)?;
        let mut items = self.store.write();
        match items.get_mut(&self.id) {
            None => Err(Error::queue_not_found(&self.id)),
            Some(Item::Queue(q)) => q.leave(&self.id, process_id, counter),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Queue)),
        }
    }

    async fn renew(&self, process_id: &str, counter: u64) -> Result<Fenced<Ticket>> {
        Ok(self.renew_and_read(process_id, counter).await?.0)
    }

    /// The renewal and the read under one hold of the lock.
    async fn renew_and_read(
        &self,
        process_id: &str,
        counter: u64,
    ) -> Result<(Fenced<Ticket>, Fenced<Vec<Ticket>>)> {
        validate::process_id(process_id)?;
        let now = lease::unix_millis(SystemTime::now());
        let mut items = self.store.write();
        match items.get_mut(&self.id) {
            None => Err(crate::queue::state::lease_gone(
                &self.id, process_id, counter,
            )),
            Some(Item::Queue(q)) => Ok((q.renew(&self.id, process_id, counter, now)?, q.tickets())),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Queue)),
        }
    }

    async fn expire(&self, expired: &Expired) -> Result<Option<FencingToken>> {
        let mut items = self.store.write();
        match items.get_mut(&self.id) {
            None => Ok(None),
            Some(Item::Queue(q)) => q.expire(&self.id, expired),
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
        let mut items = self.store.write();
        match items.get(&self.id) {
            None => Ok(None),
            Some(Item::Queue(q)) => {
                let token = q.token();
                items.remove(&self.id);
                Ok(Some(token))
            }
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Queue)),
        }
    }
}

/// A document in a [`MemoryStore`]. A change check costs a map lookup.
#[derive(Debug, Clone)]
pub struct MemoryDocument {
    store: MemoryStore,
    id: String,
}

#[async_trait]
impl Document for MemoryDocument {
    fn id(&self) -> &str {
        &self.id
    }

    async fn version(&self) -> Result<u64> {
        self.store.version_of(&self.id, ItemType::Document)
    }

    fn pushes(&self) -> bool {
        true
    }

    async fn wait_for_change(
        &self,
        seen: u64,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let (id, wanted) = (&self.id, ItemType::Document);
        self.store
            .wait_for_change(id, wanted, seen, until, poll)
            .await
    }

    async fn read(&self) -> Result<Snapshot> {
        match self.store.lock().get(&self.id) {
            None => Ok(Snapshot::default()),
            Some(Item::Document(doc)) => Ok(doc.clone()),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Document)),
        }
    }

    /// Compares versions under the lock; clones the value only if changed.
    async fn read_if_changed(&self, known: u64) -> Result<Option<Snapshot>> {
        match self.store.lock().get(&self.id) {
            None => Ok((known != 0).then(Snapshot::default)),
            Some(Item::Document(doc)) => Ok((doc.version != known).then(|| doc.clone())),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Document)),
        }
    }

    async fn compare_and_set(
        &self,
        expected: u64,
        value: Option<&serde_json::Value>,
    ) -> Result<CasOutcome> {
        if let Some(v) = value {
            document_state::encode(&self.id, v)?;
        }
        let mut items = self.store.write();
        let current = match items.get(&self.id) {
            None => None,
            Some(Item::Document(doc)) => Some(doc),
            Some(other) => return Err(other.wrong_type(&self.id, ItemType::Document)),
        };
        let version = current.map_or(0, |d| d.version);
        if version != expected {
            return Ok(CasOutcome::Conflict(current.cloned().unwrap_or_default()));
        }
        // The document holds what was asked already (or is absent and asked
        // to be removed): nothing to write.
        if current.and_then(|d| d.value.as_ref()) == value {
            return Ok(CasOutcome::Done { version });
        }
        let version = version
            .checked_add(1)
            .ok_or_else(|| Error::overflow(&self.id))?;
        items.insert(
            self.id.clone(),
            Item::Document(Snapshot::new(value.cloned(), version)),
        );
        Ok(CasOutcome::Done { version })
    }

    async fn remove(&self) -> Result<Option<u64>> {
        let mut items = self.store.write();
        match items.get_mut(&self.id) {
            None => Ok(None),
            Some(Item::Document(doc)) if doc.value.is_none() => Ok(None),
            Some(Item::Document(doc)) => {
                doc.version = doc
                    .version
                    .checked_add(1)
                    .ok_or_else(|| Error::overflow(&self.id))?;
                doc.value = None;
                Ok(Some(doc.version))
            }
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Document)),
        }
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
        let mut items = self.store.write();
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
        let mut items = self.store.write();
        match items.get(&self.id) {
            None => Ok(None),
            Some(Item::Tally(reading)) => {
                let reading = *reading;
                items.remove(&self.id);
                Ok(Some(reading))
            }
            Some(other) => Err(other.wrong_type(&self.id, ItemType::Tally)),
        }
    }
}

/// A claim pool in a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryClaimPool {
    store: MemoryStore,
    id: String,
}

impl MemoryClaimPool {
    /// Run `f` on the pool's state, or on `None` if the pool is absent.
    fn read<T>(&self, f: impl FnOnce(Option<&ClaimPoolState>) -> Result<T>) -> Result<T> {
        match self.store.lock().get(&self.id) {
            None => f(None),
            Some(Item::ClaimPool(p)) => f(Some(p)),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::ClaimPool)),
        }
    }

    /// Run `f` on the pool's state, or on `None` if the pool is absent,
    /// under the lock, to change it.
    fn write<T>(&self, f: impl FnOnce(Option<&mut ClaimPoolState>) -> Result<T>) -> Result<T> {
        match self.store.write().get_mut(&self.id) {
            None => f(None),
            Some(Item::ClaimPool(p)) => f(Some(p)),
            Some(other) => Err(other.wrong_type(&self.id, ItemType::ClaimPool)),
        }
    }
}

#[async_trait]
impl ClaimPool for MemoryClaimPool {
    fn id(&self) -> &str {
        &self.id
    }

    async fn token(&self) -> Result<FencingToken> {
        Ok(FencingToken(
            self.store.version_of(&self.id, ItemType::ClaimPool)?,
        ))
    }

    fn pushes(&self) -> bool {
        true
    }

    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        let (id, wanted) = (&self.id, ItemType::ClaimPool);
        let store = &self.store;
        store
            .wait_for_change(id, wanted, seen.get(), until, poll)
            .await
    }

    async fn claim_as(&self, owner: &str, request: &ClaimRequest) -> Result<Claimed> {
        validate::owner(owner)?;
        validate::tags(&request.tags)?;
        let lease = LeaseRecord::starting_now(request.lease, request.holder)?;
        let written_at = tokio::time::Instant::now();
        let mut items = self.store.write();
        let item = items
            .entry(self.id.clone())
            .or_insert_with(|| Item::ClaimPool(ClaimPoolState::default()));
        let Item::ClaimPool(pool) = item else {
            return Err(item.wrong_type(&self.id, ItemType::ClaimPool));
        };
        let asked = Asked::new(owner, request, lease);
        // `claim` checks everything before it changes anything; a new pool
        // always has a free candidate, so it is never left empty.
        match pool.claim(&self.id, &asked)? {
            ClaimOutcome::Claimed(c) => Ok(Claimed::made(c, written_at)),
            ClaimOutcome::Existing(c) => Ok(Claimed::existing(c)),
        }
    }

    async fn renew(&self, owner: &str, name: &str) -> Result<Fenced<Claim>> {
        Ok(self.renew_and_read(owner, name).await?.0)
    }

    /// The renewal and the read under one hold of the lock.
    async fn renew_and_read(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<(Fenced<Claim>, Fenced<Vec<Claim>>)> {
        validate::owner(owner)?;
        let now = lease::unix_millis(SystemTime::now());
        self.write(|p| match p {
            None => Err(crate::claim::state::claim_lease_gone(&self.id, owner, name)),
            Some(p) => Ok((p.renew(&self.id, owner, name, now)?, p.claims())),
        })
    }

    async fn expire(&self, expired: &Expired<Claim>) -> Result<Option<FencingToken>> {
        self.write(|p| match p {
            None => Ok(None),
            Some(p) => p.expire(&self.id, expired),
        })
    }

    async fn release_if(&self, owner: &str, token: Option<FencingToken>) -> Result<Fenced<Claim>> {
        validate::owner(owner)?;
        self.write(|p| match p {
            None => Err(Error::claim_not_found(&self.id, owner)),
            Some(p) => p.release(&self.id, owner, token),
        })
    }

    async fn claim_of(&self, owner: &str) -> Result<Fenced<Claim>> {
        validate::owner(owner)?;
        self.read(|p| match p {
            None => Err(Error::claim_not_found(&self.id, owner)),
            Some(p) => p.claim_of(&self.id, owner),
        })
    }

    async fn claims(&self) -> Result<Fenced<Vec<Claim>>> {
        self.read(|p| {
            Ok(p.map_or_else(
                || Fenced::new(vec![], FencingToken(0)),
                ClaimPoolState::claims,
            ))
        })
    }

    async fn roster(&self) -> Result<Fenced<Roster>> {
        self.read(|p| {
            Ok(p.map_or_else(
                || Fenced::new(Roster::default(), FencingToken(0)),
                ClaimPoolState::roster,
            ))
        })
    }

    async fn remove(&self) -> Result<Option<FencingToken>> {
        let mut items = self.store.write();
        match items.get(&self.id) {
            None => Ok(None),
            Some(Item::ClaimPool(p)) => {
                let token = p.token();
                items.remove(&self.id);
                Ok(Some(token))
            }
            Some(other) => Err(other.wrong_type(&self.id, ItemType::ClaimPool)),
        }
    }
}
