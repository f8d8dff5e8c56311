//! The [`Counter`] trait and its contract.

use async_trait::async_trait;

use crate::error::Result;

/// An atomic, monotonic counter stored under one id.
///
/// Obtain one from [`Store::counter`](crate::Store::counter); the handle is
/// cheap and holds no lock.
///
/// # Contract
///
/// Every backend upholds these, and the conformance suite checks them:
///
/// - A counter that was never written has the value 0; [`next`](Counter::next)
///   on it returns 1.
/// - `next` is atomic and linearizable across every process and host using the
///   same store: each call returns a value exactly one greater than the value
///   before it, and no value is ever returned twice.
/// - A successful `next` is durable in its store before it returns.
/// - If the id holds a queue, every method fails with
///   [`ErrorKind::WrongType`](crate::ErrorKind::WrongType) and changes nothing.
/// - [`remove`](Counter::remove) deletes the counter; the next `next` returns 1
///   again. Do not remove a counter whose values must stay unique.
#[async_trait]
pub trait Counter: Send + Sync + std::fmt::Debug {
    /// The id this counter is stored under.
    fn id(&self) -> &str;

    /// The current value: the last one handed out by `next`, or 0.
    async fn get(&self) -> Result<u64>;

    /// Add one and return the new value.
    async fn next(&self) -> Result<u64>;

    /// Delete the counter. Returns the value it held, or `None` if there was
    /// no counter under this id (which is not an error).
    async fn remove(&self) -> Result<Option<u64>>;
}
