//! The key layout and the stored records: which keys an item has, what
//! their values hold, and how a value is recognised as monotone's.
//!
//! An item (a counter, queue, document, tally or claim pool) is the key
//! `PREFIX + ID` (its *record*), and, for queues and claim pools with
//! leases, one *lease key* per leased ticket or claim, `PREFIX + ID + "\0" +
//! SUFFIX`. Ids hold no control characters, so the keys of one item are
//! exactly the range `[PREFIX + ID, PREFIX + ID + "\x01")`: one `Range`
//! reads an item whole, one watch sees all of its changes, and no other
//! id's keys fall inside.
//!
//! Every value is compact JSON whose first field is `"type"`, written by
//! serde in the order declared here. A value that is not JSON, or whose
//! type is unknown, is not monotone's: it is reported as
//! [`ErrorKind::Corrupt`] and never written over.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::holder_id::HolderId;
use crate::queue::state::QueueEntry;
use crate::queue::ticket::Tags;
use crate::store::item_type::ItemType;

/// What separates an item's record key from its lease keys.
pub(super) const SIDE: u8 = 0;

/// The record key of the item `id`.
pub(super) fn record_key(prefix: &str, id: &str) -> Vec<u8> {
    format!("{prefix}{id}").into_bytes()
}

/// The end of the range of every key of the item whose record key is `key`.
pub(super) fn item_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    end.push(SIDE + 1);
    end
}

/// The lease key of the ticket numbered `counter` of the queue at `key`.
pub(super) fn ticket_lease_key(key: &[u8], counter: u64) -> Vec<u8> {
    side_key(key, &format!("lease/{counter}"))
}

/// The lease key of the claim of `name` in the pool at `key`.
pub(super) fn claim_lease_key(key: &[u8], name: &str) -> Vec<u8> {
    side_key(key, &format!("claim/{name}"))
}

fn side_key(key: &[u8], suffix: &str) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(SIDE);
    k.extend_from_slice(suffix.as_bytes());
    k
}

/// A random id for one operation's write, stored in the record it writes,
/// by which an answer lost on the network is looked up (see `item.rs`).
pub(super) fn request_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// An item's record, as stored at its record key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub(super) enum Record {
    /// A counter: its value is the key's etcd version (the number of puts
    /// since it was created), so that `next` is one blind put.
    #[serde(rename = "COUNTER")]
    Counter { request: String },
    /// A queue: `version` is its fencing token, `value` the last ticket
    /// counter handed out; the members in ticket order. Leases are in lease
    /// keys.
    #[serde(rename = "QUEUE")]
    Queue {
        version: u64,
        value: u64,
        items: Vec<QueueEntry>,
        request: String,
    },
    /// A document: `version` grows with every write; no `body` once removed.
    #[serde(rename = "DOCUMENT")]
    Document {
        version: u64,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        body: Option<Value>,
        request: String,
    },
    /// A tally: the sum and the number of adds.
    #[serde(rename = "TALLY")]
    Tally {
        value: i64,
        version: u64,
        request: String,
    },
    /// A claim pool: `version` is its fencing token; `members` the roster
    /// size it is sealed at (absent for a pool never sealed); the claims by
    /// name. Leases are in lease keys.
    #[serde(rename = "CLAIMS")]
    Claims {
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<usize>,
        claims: BTreeMap<String, StoredClaim>,
        request: String,
    },
}

/// A field that is there, even as JSON `null` (a document holding `null`),
/// as opposed to absent (a removed document).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One claim in a pool's record; `tags` only when it has some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredClaim {
    pub owner: String,
    pub index: usize,
    pub token: u64,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

impl Record {
    pub fn item_type(&self) -> ItemType {
        match self {
            Record::Counter { .. } => ItemType::Counter,
            Record::Queue { .. } => ItemType::Queue,
            Record::Document { .. } => ItemType::Document,
            Record::Tally { .. } => ItemType::Tally,
            Record::Claims { .. } => ItemType::ClaimPool,
        }
    }

    /// The id of the operation that wrote it.
    pub fn request(&self) -> &str {
        match self {
            Record::Counter { request }
            | Record::Queue { request, .. }
            | Record::Document { request, .. }
            | Record::Tally { request, .. }
            | Record::Claims { request, .. } => request,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    /// The record in `value`, stored at `key`; Corrupt if it is not one.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Record> {
        serde_json::from_slice(value).map_err(|e| not_ours(key, &e.to_string()))
    }
}

/// The lease of one ticket or claim, at its lease key. The number of
/// renewals is not stored: it is the key's etcd version less one, so that a
/// renewal is one put that needs nothing read first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "LEASE")]
pub(super) struct LeaseValue {
    /// The ticket's process or the claim's owner.
    pub holder: String,
    pub lease_ms: u64,
    /// The [`HolderId`] that made the ticket or claim, if one did (a
    /// `LeaseHolder`, a `ClaimHolder`). Before `renewed_at_ms`, so that it
    /// is part of the [stable prefix](Self::stable_prefix): a renewal never
    /// renews another holder's lease of the same process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_id: Option<HolderId>,
    /// The holder's wall-clock time of its last renewal; shown only.
    pub renewed_at_ms: u64,
}

impl LeaseValue {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a lease always serializes")
    }

    pub fn decode(key: &[u8], value: &[u8]) -> Result<LeaseValue> {
        serde_json::from_slice(value).map_err(|e| not_ours(key, &e.to_string()))
    }

    /// What every value of this lease starts with, whatever its renewal
    /// time: a renewal puts only if the stored value starts so (see
    /// [`starts_with`]), so it never renews another holder's lease.
    pub fn stable_prefix(&self) -> Vec<u8> {
        let mut text = self.encode();
        let cut = text
            .windows(b"\"renewed_at_ms\"".len())
            .rposition(|w| w == b"\"renewed_at_ms\"")
            .expect("the field is serialized");
        text.truncate(cut);
        text
    }
}

/// The text every record of type `t` starts with.
pub(super) fn type_prefix(t: ItemType) -> Vec<u8> {
    format!("{{\"type\":\"{}\",", t.stored()).into_bytes()
}

/// The two compares of an etcd transaction that hold exactly when the value
/// at `key` starts with `prefix`: `value > prefix` and `value < prefix'`,
/// where `prefix'` is `prefix` with its last byte one higher. Byte strings
/// strictly between the two are exactly the longer ones that start with
/// `prefix` (every value here is longer than its prefix). A compare on the
/// value of a missing key is false.
pub(super) fn starts_with(key: &[u8], prefix: &[u8]) -> [etcd_client::Compare; 2] {
    use etcd_client::{Compare, CompareOp};
    let mut above = prefix.to_vec();
    let last = above.last_mut().expect("a prefix is not empty");
    *last += 1; // every prefix here ends in `,`
    [
        Compare::value(key.to_vec(), CompareOp::Greater, prefix.to_vec()),
        Compare::value(key.to_vec(), CompareOp::Less, above),
    ]
}

/// The Corrupt error of a value at `key` that is not monotone's.
pub(super) fn not_ours(key: &[u8], why: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "etcd key `{}` holds a value monotone cannot read ({why}); monotone leaves it as it is",
            String::from_utf8_lossy(key).escape_debug()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_start_with_their_type() {
        let r = Record::Counter {
            request: "ab".into(),
        };
        assert_eq!(r.encode(), br#"{"type":"COUNTER","request":"ab"}"#);
        assert!(r.encode().starts_with(&type_prefix(ItemType::Counter)));
        let t = Record::Tally {
            value: -3,
            version: 2,
            request: "x".into(),
        };
        assert!(t.encode().starts_with(&type_prefix(ItemType::Tally)));
        assert_eq!(Record::decode(b"k", &t.encode()).unwrap(), t);
        let d = Record::Document {
            version: 4,
            body: None,
            request: "r".into(),
        };
        assert_eq!(
            d.encode(),
            br#"{"type":"DOCUMENT","version":4,"request":"r"}"#
        );
        assert_eq!(Record::decode(b"k", &d.encode()).unwrap(), d);
        let null = Record::Document {
            version: 5,
            body: Some(Value::Null),
            request: "r".into(),
        };
        assert_eq!(
            Record::decode(b"k", &null.encode()).unwrap(),
            null,
            "null is not absent"
        );
        for bad in [
            &b"plain text"[..],
            br#"{"type":"NOPE"}"#,
            br#"{"type":"TALLY"}"#,
        ] {
            let e = Record::decode(b"p/x", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt);
            assert!(e.to_string().contains("`p/x`"), "{e}");
        }
    }

    #[test]
    fn the_keys_of_an_item_are_one_range_of_its_own() {
        let key = record_key("m/", "a");
        let end = item_end(&key);
        for k in [
            key.clone(),
            ticket_lease_key(&key, 7),
            claim_lease_key(&key, "n"),
        ] {
            assert!(k >= key && k < end, "{k:?}");
        }
        // No other id's keys are in it: ids have no control characters.
        for other in ["a ", "a/b", "ab", "a~"] {
            assert!(record_key("m/", other) >= end, "{other}");
        }
        assert!(record_key("m/", "") < key);
    }

    #[test]
    fn a_lease_value_starts_with_what_stays() {
        let l = LeaseValue {
            holder: "p\"x".into(),
            lease_ms: 300,
            holder_id: None,
            renewed_at_ms: 12,
        };
        let prefix = l.stable_prefix();
        assert_eq!(
            prefix,
            br#"{"type":"LEASE","holder":"p\"x","lease_ms":300,"#
        );
        let held = LeaseValue {
            holder_id: HolderId::new(77),
            ..l.clone()
        };
        assert_eq!(
            held.stable_prefix(),
            br#"{"type":"LEASE","holder":"p\"x","lease_ms":300,"holder_id":77,"#,
            "another holder of the same process has another prefix"
        );
        assert_eq!(LeaseValue::decode(b"k", &held.encode()).unwrap(), held);
        let later = LeaseValue {
            renewed_at_ms: 99_999,
            ..l.clone()
        };
        assert!(later.encode().starts_with(&prefix));
        assert_eq!(LeaseValue::decode(b"k", &l.encode()).unwrap(), l);
    }
}
