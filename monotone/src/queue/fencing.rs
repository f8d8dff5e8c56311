//! [`FencingToken`] and [`Fenced`]: the token that every write to a queue
//! (and to a claim pool, a lease's record, a document's version) makes
//! grow, and a result paired with it.
//!
//! A file of its own, importing nothing of the crate, so that every
//! primitive can take these without importing another primitive.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A number that grows by exactly one with every write to a queue.
///
/// Every queue operation returns the token of the state it saw or wrote. Hand
/// it to other systems along with any decision taken from the queue (who
/// leads, who is next): they can refuse a request carrying a token smaller
/// than one they have already seen, because it was taken from a stale view.
///
/// A queue that does not exist has the token 0.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A result together with the fencing token of the queue state it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fenced<T> {
    /// The result itself.
    pub value: T,
    /// The queue's token when the result was read or written.
    pub fencing_token: FencingToken,
}

impl<T> Fenced<T> {
    /// Pair a value with a token.
    pub fn new(value: T, fencing_token: FencingToken) -> Self {
        Fenced {
            value,
            fencing_token,
        }
    }
}
