//! The kinds of item a store holds under an id, and their stored names.
//!
//! One id holds one kind of item; the first write decides which. The stored
//! names are shared by the SQLite (`items.type`) and DynamoDB (`Type`)
//! stores; `COUNTER` and `QUEUE` are monotone 0.4's.

use crate::error::Error;

/// What an id holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ItemType {
    Counter,
    Queue,
    Tally,
    Document,
    ClaimPool,
}

impl ItemType {
    /// Every kind, in the order of their stored names' introduction.
    pub const ALL: [ItemType; 5] = [
        ItemType::Counter,
        ItemType::Queue,
        ItemType::Tally,
        ItemType::Document,
        ItemType::ClaimPool,
    ];

    /// The name stored in the item's type column or attribute.
    pub fn stored(self) -> &'static str {
        match self {
            ItemType::Counter => "COUNTER",
            ItemType::Queue => "QUEUE",
            ItemType::Tally => "TALLY",
            ItemType::Document => "DOCUMENT",
            ItemType::ClaimPool => "CLAIMS",
        }
    }

    /// The kind whose stored name is `stored`, if any.
    pub fn from_stored(stored: &str) -> Option<ItemType> {
        ItemType::ALL.into_iter().find(|t| t.stored() == stored)
    }

    /// The name used in messages: "counter", "claim pool".
    pub fn name(self) -> &'static str {
        match self {
            ItemType::Counter => "counter",
            ItemType::Queue => "queue",
            ItemType::Tally => "tally",
            ItemType::Document => "document",
            ItemType::ClaimPool => "claim pool",
        }
    }

    /// The WrongType error for finding `self` under `id` where `wanted` was
    /// asked for.
    pub fn wrong_type(self, id: &str, wanted: ItemType) -> Error {
        Error::wrong_type(id, self.name(), wanted.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for t in ItemType::ALL {
            assert_eq!(ItemType::from_stored(t.stored()), Some(t));
        }
        assert_eq!(ItemType::from_stored("counter"), None);
        let e = ItemType::Tally.wrong_type("x", ItemType::Counter);
        assert_eq!(e.to_string(), "`x` is a tally, not a counter");
        assert_eq!(e.kind(), crate::error::ErrorKind::WrongType);
    }
}
