//! [`HolderId`]: who holds a leased ticket or claim, as stored with its
//! lease.
//!
//! A process id (a claim's owner) says *what* holds a place: `host-a`. It
//! does not tell two holders apart that use the same one, such as a cron job
//! that overlaps itself with `lock -p "$(hostname)"`. So every
//! [`LeaseHolder`](crate::LeaseHolder) and [`ClaimHolder`](crate::ClaimHolder)
//! makes a random id when it starts and stores it with the lease of the
//! ticket or claim it makes; a join or claim that carries another holder's
//! id never takes that ticket or claim over (see the contracts of
//! [`Queue`](crate::Queue) and [`ClaimPool`](crate::ClaimPool)).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest holder id: `2^63 - 1`, so that every id fits SQLite's
/// signed 64-bit integers and a file offset (`off_t`), where an advisory
/// lock of the holder may be taken.
pub const MAX_HOLDER_ID: u64 = i64::MAX as u64;

/// The id of one holder of a leased ticket or claim: a random whole number
/// from 1 to [`MAX_HOLDER_ID`], made by each holder when it starts.
///
/// Two holders that draw ids at random collide with a probability of about
/// `n² / 2^64` among `n` holders of one place: negligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct HolderId(u64);

impl HolderId {
    /// A new random id, from the operating system's random source (std's
    /// randomly keyed hasher if that source cannot be read).
    pub fn random() -> HolderId {
        let bits = getrandom::u64().unwrap_or_else(|_| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::hash::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish()
        });
        // 63 bits, and never 0.
        HolderId((bits >> 1).max(1))
    }

    /// The id `n`, if it is one: from 1 to [`MAX_HOLDER_ID`].
    pub fn new(n: u64) -> Option<HolderId> {
        (1..=MAX_HOLDER_ID).contains(&n).then_some(HolderId(n))
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<HolderId> for u64 {
    fn from(id: HolderId) -> u64 {
        id.0
    }
}

impl TryFrom<u64> for HolderId {
    type Error = String;

    fn try_from(n: u64) -> Result<Self, Self::Error> {
        HolderId::new(n).ok_or_else(|| format!("{n} is not a holder id (1 to {MAX_HOLDER_ID})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_in_range_and_differ() {
        let ids: std::collections::HashSet<HolderId> =
            (0..1000).map(|_| HolderId::random()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| (1..=MAX_HOLDER_ID).contains(&id.get())));
        // The top bit is never set, and the others are used.
        let or = ids.iter().fold(0, |acc, id| acc | id.get());
        assert_eq!(or, MAX_HOLDER_ID);
    }

    #[test]
    fn only_ids_in_range_are_ids() {
        assert_eq!(HolderId::new(0), None);
        assert_eq!(HolderId::new(MAX_HOLDER_ID + 1), None);
        assert_eq!(HolderId::new(7).map(HolderId::get), Some(7));
        let back: HolderId = serde_json::from_str("42").unwrap();
        assert_eq!(back.get(), 42);
        assert!(serde_json::from_str::<HolderId>("0").is_err());
        assert_eq!(serde_json::to_string(&back).unwrap(), "42");
    }
}
