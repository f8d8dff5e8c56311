//! The [`Tally`] trait, its [`TallyReading`], and its contract; the one rule
//! of adding to a tally, which every store applies.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A tally's value together with its version.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[non_exhaustive]
pub struct TallyReading {
    /// The sum of every amount added since the tally was created.
    pub value: i64,
    /// How many writes ([`Tally::add`]s) made this value: 0 for a tally that
    /// does not exist, 1 after the first add, one more with every add.
    pub version: u64,
}

impl TallyReading {
    /// A reading; mostly useful to backends and tests.
    pub fn new(value: i64, version: u64) -> Self {
        TallyReading { value, version }
    }

    /// The reading after adding `n` to this one, as every store computes it:
    /// the sum, one more version, or an error if the sum leaves the range of
    /// `i64` (never a wrap).
    pub(crate) fn plus(self, id: &str, n: i64) -> Result<TallyReading> {
        let value = self
            .value
            .checked_add(n)
            .ok_or_else(|| Error::tally_overflow(id, self.value, n))?;
        let version = self
            .version
            .checked_add(1)
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or_else(|| Error::overflow(id))?;
        Ok(TallyReading { value, version })
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Freshness {
    /// A consistent read: the tally as of the read, including every add
    /// that returned before the read began.
    #[default]
    Fresh,
    /// A read that may lag behind the latest adds, where the store offers
    /// a cheaper one: DynamoDB's eventually consistent `GetItem`, which costs
    /// half of a consistent one. The memory and SQLite stores read fresh
    /// values either way, which is always allowed.
    Stale,
}

/// A signed 64-bit sum under one id that many processes add to, up and down
/// (a PN counter): quotas, capacity pools, gauges.
///
/// Obtain one from [`Store::tally`](crate::Store::tally); the handle is cheap
/// and holds no lock.
///
/// # Contract
///
/// Every backend upholds these, and the conformance suite checks them:
///
/// - A tally that was never written reads as value 0, version 0; reading
///   creates nothing.
/// - [`add`](Tally::add) is atomic and linearizable across every process and
///   host using the same store: it adds `n` (positive, negative or zero) to
///   the value, adds exactly 1 to the version, and returns the new reading.
///   No add is lost or applied twice by the store, so after concurrent adds
///   the value is exactly the sum of the amounts of those that succeeded,
///   and each gets its own version.
/// - A sum outside `i64::MIN..=i64::MAX` is never wrapped: the add fails with
///   [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) (the amount
///   given does not fit) and changes nothing.
/// - A [`Freshness::Fresh`] read returns the reading of the latest add that
///   completed before it began (or a later one). A [`Freshness::Stale`] read
///   returns a reading the tally really held (never a value with another
///   version than the add that made it), and never one newer than a fresh
///   read that begins after it ends: it may lag, it never runs ahead.
/// - A successful add is durable in its store before it returns.
/// - If the id holds a counter or a queue (or any other kind of item), every
///   method fails with [`ErrorKind::WrongType`](crate::ErrorKind::WrongType)
///   and changes nothing; counters and queues answer the same about a tally.
/// - [`remove`](Tally::remove) deletes the tally; a tally created again under
///   the same id starts over at value 0, version 0.
#[async_trait]
pub trait Tally: Send + Sync + std::fmt::Debug {
    /// The id this tally is stored under.
    fn id(&self) -> &str;

    /// Add `n` (which may be negative) and return the new reading.
    async fn add(&self, n: i64) -> Result<TallyReading>;

    /// The current reading, as fresh as asked for.
    async fn get(&self, freshness: Freshness) -> Result<TallyReading>;

    /// Delete the tally. Returns the reading it had, or `None` if there was no
    /// tally under this id (which is not an error).
    async fn remove(&self) -> Result<Option<TallyReading>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn plus_adds_and_counts_writes_and_never_wraps() {
        let r = TallyReading::default().plus("t", -3).unwrap();
        assert_eq!(r, TallyReading::new(-3, 1));
        assert_eq!(r.plus("t", 0).unwrap(), TallyReading::new(-3, 2));
        let top = TallyReading::new(i64::MAX - 1, 7);
        assert_eq!(top.plus("t", 1).unwrap(), TallyReading::new(i64::MAX, 8));
        let e = top.plus("t", 2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("`t`"), "{e}");
        let bottom = TallyReading::new(i64::MIN + 1, 1);
        assert_eq!(bottom.plus("t", -1).unwrap().value, i64::MIN);
        assert_eq!(
            bottom.plus("t", -2).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            TallyReading::new(-1, 1)
                .plus("t", i64::MIN)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            TallyReading::new(0, i64::MAX as u64)
                .plus("t", 1)
                .unwrap_err()
                .kind(),
            ErrorKind::Unsupported
        );
    }
}
