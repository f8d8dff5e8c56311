//! The item layout (monotone 0.4's, and a tally's beside it), the
//! expressions that read and write it, and the decoding of items into
//! counters, queues and tallies.
//!
//! Every expression names attributes through `#placeholders` (`Value`,
//! `Type` and others are reserved words in DynamoDB's expression language)
//! and is a named constant here, next to the layout it relies on. See the
//! [module docs](super) for the protocol that uses them.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::{Error, ErrorKind, Result};
use crate::item_type::ItemType;
use crate::state::{QueueEntry, QueueState};
use crate::tally::TallyReading;

/// An item as the SDK gives and takes it.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Hash key (S): the counter's or queue's id.
pub const ID: &str = "ID";
/// `COUNTER`, `QUEUE` or `TALLY` (S).
pub const TYPE: &str = "Type";
/// Grows by one with every write (N); a queue's fencing token.
pub const VERSION: &str = "Version";
/// A counter's value, a queue's last ticket counter (N), or a tally's
/// signed sum.
pub const VALUE: &str = "Value";
/// A queue's members (SS of JSON `{"process_id","counter","tags"}`), absent
/// when the queue is empty: DynamoDB has no empty sets.
pub const ITEMS: &str = "Items";

/// `Type` of a counter.
pub const COUNTER: &str = "COUNTER";
/// `Type` of a queue.
pub const QUEUE: &str = "QUEUE";
/// `Type` of a tally.
pub const TALLY: &str = "TALLY";

/// Every attribute name placeholder, and the attribute it stands for.
const NAMES: [(&str, &str); 5] = [
    ("#id", ID),
    ("#type", TYPE),
    ("#version", VERSION),
    ("#value", VALUE),
    ("#items", ITEMS),
];

/// A readable counter whose `Value` and `Version` can both still grow:
/// `:below_max` is `u64::MAX - 1`. `attribute_type` comes first so that the
/// range checks never compare a number with a string.
pub const COUNTER_NEXT_CONDITION: &str = "attribute_not_exists(#id) OR (#type = :counter \
     AND attribute_type(#value, :number) AND attribute_type(#version, :number) \
     AND #value BETWEEN :zero AND :below_max AND #version BETWEEN :zero AND :below_max)";

/// `counter next`: one request that creates the counter or adds one to it.
/// `ADD` treats a missing attribute as 0, so a new item gets 1 and 1.
pub const COUNTER_NEXT_UPDATE: &str = "SET #type = :counter ADD #value :one, #version :one";

/// `counter remove`: absent (nothing to do) or a counter this crate can read.
pub const COUNTER_REMOVE_CONDITION: &str = "attribute_not_exists(#id) OR (#type = :counter \
     AND attribute_type(#value, :number) AND attribute_type(#version, :number) \
     AND #value BETWEEN :zero AND :max AND #version BETWEEN :zero AND :max)";

/// `queue remove`: absent, or a queue whose token this crate can read.
pub const QUEUE_REMOVE_CONDITION: &str = "attribute_not_exists(#id) OR (#type = :queue \
     AND attribute_type(#version, :number) AND #version BETWEEN :zero AND :max)";

/// A queue write on a queue that did not exist when it was read.
pub const QUEUE_CREATE_CONDITION: &str = "attribute_not_exists(#id)";

/// A queue write on a queue read at `Version` = `:expected`.
pub const QUEUE_VERSION_CONDITION: &str = "#type = :queue AND #version = :expected";

/// `join`: the new member into the set, and the new counter and version.
/// `SET #type` is a no-op on an existing queue and names a new one.
pub const QUEUE_JOIN_UPDATE: &str =
    "SET #type = :queue, #version = :version, #value = :value ADD #items :entry";

/// `leave` of one member of several: out of the set, version up.
pub const QUEUE_LEAVE_UPDATE: &str = "SET #version = :version DELETE #items :entry";

/// `leave` of the last member: the set goes, as DynamoDB has no empty sets.
pub const QUEUE_LEAVE_LAST_UPDATE: &str = "SET #version = :version REMOVE #items";

/// `tally add`: a readable tally (or none) to which `:n` can be added
/// without leaving `i64`: `:low` and `:high` bound `Value` so that the sum
/// stays in range (`i64::MIN - n` and `i64::MAX` for a negative `n`,
/// `i64::MIN` and `i64::MAX - n` otherwise), since DynamoDB's numbers have
/// 38 digits and would not stop at `i64`'s limits by themselves.
/// `:below_max` (`i64::MAX - 1`) bounds `Version` likewise.
pub const TALLY_ADD_CONDITION: &str = "attribute_not_exists(#id) OR (#type = :tally \
     AND attribute_type(#value, :number) AND attribute_type(#version, :number) \
     AND #value BETWEEN :low AND :high AND #version BETWEEN :zero AND :below_max)";

/// `tally add`: one request that creates the tally or adds to it. `ADD`
/// treats a missing attribute as 0, so a new item gets `:n` and 1.
pub const TALLY_ADD_UPDATE: &str = "SET #type = :tally ADD #value :n, #version :one";

/// `tally remove`: absent (nothing to do) or a tally this crate can read.
pub const TALLY_REMOVE_CONDITION: &str = "attribute_not_exists(#id) OR (#type = :tally \
     AND attribute_type(#value, :number) AND attribute_type(#version, :number) \
     AND #value BETWEEN :min AND :max AND #version BETWEEN :zero AND :max)";

/// The placeholders of `expressions` that stand for attribute names, mapped
/// to their attributes: exactly those used, as DynamoDB refuses unused ones.
pub(crate) fn names_in(expressions: &[&str]) -> HashMap<String, String> {
    NAMES
        .iter()
        .filter(|(placeholder, _)| {
            expressions.iter().any(|e| {
                e.match_indices(placeholder).any(|(at, _)| {
                    let after = e[at + placeholder.len()..].chars().next();
                    !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            })
        })
        .map(|(p, a)| (p.to_string(), a.to_string()))
        .collect()
}

/// A number attribute value.
pub(crate) fn n(v: impl Into<i128>) -> AttributeValue {
    AttributeValue::N(v.into().to_string())
}

/// A string attribute value.
pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// The key of the item `id`.
pub(crate) fn key(id: &str) -> Item {
    HashMap::from([(ID.to_owned(), s(id))])
}

/// A queue member as stored in `Items`: monotone 0.4's JSON, fields in its
/// order.
pub(crate) fn encode_entry(entry: &QueueEntry) -> String {
    serde_json::to_string(entry).expect("strings and numbers always serialize")
}

/// What an item holds, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    Counter { value: u64, version: u64 },
    Queue(StoredQueue),
    Tally(TallyReading),
}

impl Stored {
    /// The WrongType error for this item found under `id` where `wanted`
    /// was asked for.
    pub fn wrong_type(&self, id: &str, wanted: ItemType) -> Error {
        let found = match self {
            Stored::Counter { .. } => ItemType::Counter,
            Stored::Queue(_) => ItemType::Queue,
            Stored::Tally(_) => ItemType::Tally,
        };
        found.wrong_type(id, wanted)
    }
}

/// A queue as read: its state, plus each member's JSON string exactly as
/// stored, so that a leave deletes that very string from the set even if
/// another client (monotone 0.4) wrote it with other spacing or fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredQueue {
    pub state: QueueState,
    raw: BTreeMap<String, String>,
}

impl StoredQueue {
    /// The stored JSON string of `process_id`'s entry.
    pub fn raw_entry(&self, process_id: &str) -> Option<&str> {
        self.raw.get(process_id).map(String::as_str)
    }
}

/// Decode `item`, the item under `id` in `table`. Anything this crate did not
/// (or monotone 0.4 would not) write is [`ErrorKind::Corrupt`], naming the id
/// and the attribute; callers never write over such an item.
pub(crate) fn decode(table: &str, id: &str, item: &Item) -> Result<Stored> {
    let corrupt = |attribute: &str, why: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!(
                "dynamodb table `{table}`: item `{id}` is unreadable: attribute `{attribute}` {why}; \
                 monotone leaves it as it is"
            ),
        )
    };
    let number = |attribute: &str| -> Result<u64> {
        let v = stored_number(item, attribute).map_err(|why| corrupt(attribute, why))?;
        v.parse().map_err(|_| {
            corrupt(
                attribute,
                format!("holds {v}, not a whole number from 0 to {}", u64::MAX),
            )
        })
    };
    let signed = |attribute: &str| -> Result<i64> {
        let v = stored_number(item, attribute).map_err(|why| corrupt(attribute, why))?;
        v.parse().map_err(|_| {
            corrupt(
                attribute,
                format!(
                    "holds {v}, not a whole number from {} to {}",
                    i64::MIN,
                    i64::MAX
                ),
            )
        })
    };
    let kind = match item.get(TYPE) {
        None => return Err(corrupt(TYPE, "is missing".into())),
        Some(AttributeValue::S(t)) => t.as_str(),
        Some(other) => {
            return Err(corrupt(
                TYPE,
                format!("is {}, not a string (S)", type_name(other)),
            ))
        }
    };
    match kind {
        COUNTER => Ok(Stored::Counter {
            value: number(VALUE)?,
            version: number(VERSION)?,
        }),
        QUEUE => {
            let version = number(VERSION)?;
            let value = number(VALUE)?;
            let strings: &[String] = match item.get(ITEMS) {
                None => &[],
                Some(AttributeValue::Ss(set)) => set,
                Some(other) => {
                    return Err(corrupt(
                        ITEMS,
                        format!("is {}, not a string set (SS)", type_name(other)),
                    ))
                }
            };
            let mut entries = Vec::with_capacity(strings.len());
            let mut raw = BTreeMap::new();
            for json in strings {
                let entry: QueueEntry = serde_json::from_str(json).map_err(|e| {
                    corrupt(
                        ITEMS,
                        format!(
                            "holds `{}`, which is not a queue entry ({e})",
                            shorten(json)
                        ),
                    )
                })?;
                if raw.insert(entry.process_id.clone(), json.clone()).is_some() {
                    return Err(corrupt(
                        ITEMS,
                        format!("lists process `{}` more than once", entry.process_id),
                    ));
                }
                entries.push(entry);
            }
            let mut counters: Vec<u64> = entries.iter().map(|e| e.counter).collect();
            counters.sort_unstable();
            if counters.windows(2).any(|w| w[0] == w[1]) {
                return Err(corrupt(
                    ITEMS,
                    "gives two processes the same counter".into(),
                ));
            }
            Ok(Stored::Queue(StoredQueue {
                state: QueueState::new(version, value, entries),
                raw,
            }))
        }
        TALLY => Ok(Stored::Tally(TallyReading::new(
            signed(VALUE)?,
            number(VERSION)?,
        ))),
        other => Err(corrupt(
            TYPE,
            format!(
                "is `{}`, none of {COUNTER}, {QUEUE} and {TALLY}",
                shorten(other)
            ),
        )),
    }
}

/// The text of the number attribute `attribute`, or why there is none.
fn stored_number<'a>(item: &'a Item, attribute: &str) -> std::result::Result<&'a str, String> {
    match item.get(attribute) {
        None => Err("is missing".into()),
        Some(AttributeValue::N(v)) => Ok(v),
        Some(other) => Err(format!("is {}, not a number (N)", type_name(other))),
    }
}

/// Decode the `Value` of an `UpdateItem`'s returned attributes.
pub(crate) fn returned_value(table: &str, id: &str, item: &Item) -> Result<u64> {
    match item.get(VALUE) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| {
            Error::new(
                ErrorKind::Corrupt,
                format!("dynamodb table `{table}`: counter `{id}` now holds `Value` {v}, not a whole number"),
            )
        }),
        _ => Err(Error::new(
            ErrorKind::Corrupt,
            format!("dynamodb table `{table}`: counter `{id}`: the update returned no `Value`"),
        )),
    }
}

fn type_name(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::B(_) => "binary (B)",
        AttributeValue::Bool(_) => "a boolean (BOOL)",
        AttributeValue::Bs(_) => "a binary set (BS)",
        AttributeValue::L(_) => "a list (L)",
        AttributeValue::M(_) => "a map (M)",
        AttributeValue::N(_) => "a number (N)",
        AttributeValue::Ns(_) => "a number set (NS)",
        AttributeValue::Null(_) => "null (NULL)",
        AttributeValue::S(_) => "a string (S)",
        AttributeValue::Ss(_) => "a string set (SS)",
        _ => "of an unknown type",
    }
}

/// At most 80 characters of a stored value, for a one-line message.
fn shorten(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(80)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Tags;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn ss(v: &[&str]) -> AttributeValue {
        AttributeValue::Ss(v.iter().map(|s| s.to_string()).collect())
    }

    fn corrupt(it: &Item) -> String {
        let e = decode("Counters", "the-id", it).expect_err("must be corrupt");
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("`the-id`") && msg.contains("`Counters`"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
        msg
    }

    #[test]
    fn counter_of_monotone_0_4() {
        let it = item(&[
            (ID, s("c")),
            (TYPE, s(COUNTER)),
            (VERSION, n(7)),
            (VALUE, n(7)),
        ]);
        assert_eq!(
            decode("T", "c", &it).unwrap(),
            Stored::Counter {
                value: 7,
                version: 7
            }
        );
    }

    #[test]
    fn queue_of_monotone_0_4_in_any_order_with_or_without_tags() {
        let it = item(&[
            (ID, s("q")),
            (TYPE, s(QUEUE)),
            (VERSION, n(5)),
            (VALUE, n(4)),
            (
                ITEMS,
                ss(&[
                    r#"{"process_id":"late","counter":4,"tags":{"az":"b"}}"#,
                    r#"{ "counter": 2, "process_id": "early" }"#,
                ]),
            ),
        ]);
        let Stored::Queue(q) = decode("T", "q", &it).unwrap() else {
            panic!("a queue")
        };
        assert_eq!(q.state.version, 5);
        assert_eq!(q.state.value, 4);
        let tickets = q.state.tickets().value;
        assert_eq!(tickets[0].process_id, "early");
        assert_eq!(tickets[0].tags, Tags::new());
        assert_eq!(tickets[1].process_id, "late");
        assert_eq!(tickets[1].tags["az"], "b");
        // The raw string is kept, spacing and all, for DELETE.
        assert_eq!(
            q.raw_entry("early"),
            Some(r#"{ "counter": 2, "process_id": "early" }"#)
        );
        // An empty queue has no Items attribute.
        let empty = item(&[
            (ID, s("q")),
            (TYPE, s(QUEUE)),
            (VERSION, n(6)),
            (VALUE, n(4)),
        ]);
        let Stored::Queue(q) = decode("T", "q", &empty).unwrap() else {
            panic!("a queue")
        };
        assert!(q.state.entries().is_empty());
    }

    #[test]
    fn entries_encode_as_monotone_0_4_does() {
        let entry = QueueEntry {
            process_id: "zk-a".into(),
            counter: 3,
            tags: [("role".to_string(), "zk".to_string())].into(),
        };
        assert_eq!(
            encode_entry(&entry),
            r#"{"process_id":"zk-a","counter":3,"tags":{"role":"zk"}}"#
        );
    }

    #[test]
    fn unreadable_items_are_corrupt_and_name_the_attribute() {
        let base = |extra: &[(&str, AttributeValue)]| {
            let mut it = item(&[(ID, s("the-id"))]);
            it.extend(item(extra));
            it
        };
        assert!(corrupt(&base(&[(VERSION, n(1)), (VALUE, n(1))])).contains("`Type` is missing"));
        assert!(
            corrupt(&base(&[(TYPE, n(1)), (VERSION, n(1)), (VALUE, n(1))]))
                .contains("`Type` is a number (N)")
        );
        assert!(
            corrupt(&base(&[(TYPE, s("LOCK")), (VERSION, n(1)), (VALUE, n(1))]))
                .contains("`LOCK`, none of COUNTER, QUEUE and TALLY")
        );
        assert!(
            corrupt(&base(&[(TYPE, s(COUNTER)), (VERSION, n(1))])).contains("`Value` is missing")
        );
        assert!(
            corrupt(&base(&[(TYPE, s(COUNTER)), (VALUE, n(1))])).contains("`Version` is missing")
        );
        assert!(corrupt(&base(&[
            (TYPE, s(COUNTER)),
            (VERSION, n(1)),
            (VALUE, s("1"))
        ]))
        .contains("`Value` is a string (S)"));
        for bad in ["-1", "1.5", "18446744073709551616", "1e3"] {
            let msg = corrupt(&base(&[
                (TYPE, s(COUNTER)),
                (VERSION, n(1)),
                (VALUE, AttributeValue::N(bad.into())),
            ]));
            assert!(msg.contains(&format!("`Value` holds {bad}")), "{msg}");
        }
        let queue = |items: AttributeValue| {
            base(&[
                (TYPE, s(QUEUE)),
                (VERSION, n(2)),
                (VALUE, n(2)),
                (ITEMS, items),
            ])
        };
        assert!(corrupt(&queue(ss(&["not json"]))).contains("`Items` holds `not json`"));
        assert!(corrupt(&queue(ss(&[r#"{"process_id":"a"}"#]))).contains("missing field `counter`"));
        assert!(corrupt(&queue(AttributeValue::L(vec![]))).contains("`Items` is a list (L)"));
        assert!(corrupt(&queue(ss(&[
            r#"{"process_id":"a","counter":1}"#,
            r#"{"process_id":"a","counter":2}"#
        ])))
        .contains("process `a` more than once"));
        assert!(corrupt(&queue(ss(&[
            r#"{"process_id":"a","counter":1}"#,
            r#"{"process_id":"b","counter":1}"#
        ])))
        .contains("same counter"));
        let long = "x".repeat(500);
        assert!(
            corrupt(&queue(ss(&[&long]))).len() < 400,
            "long values are cut"
        );
    }

    #[test]
    fn returned_value_is_checked() {
        let it = item(&[(VALUE, n(42)), (VERSION, n(42))]);
        assert_eq!(returned_value("T", "c", &it).unwrap(), 42);
        let bad = item(&[(VALUE, AttributeValue::N("2.5".into()))]);
        assert_eq!(
            returned_value("T", "c", &bad).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            returned_value("T", "c", &Item::new()).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }

    #[test]
    fn names_are_exactly_those_used() {
        let names = names_in(&[COUNTER_NEXT_UPDATE, COUNTER_NEXT_CONDITION]);
        let mut keys: Vec<_> = names.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["#id", "#type", "#value", "#version"]);
        let names = names_in(&[QUEUE_LEAVE_LAST_UPDATE, QUEUE_VERSION_CONDITION]);
        let mut keys: Vec<_> = names.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["#items", "#type", "#version"]);
        assert_eq!(names["#items"], ITEMS);
    }

    #[test]
    fn every_expression_uses_placeholders_for_every_attribute() {
        for expr in [
            COUNTER_NEXT_CONDITION,
            COUNTER_NEXT_UPDATE,
            COUNTER_REMOVE_CONDITION,
            QUEUE_REMOVE_CONDITION,
            QUEUE_CREATE_CONDITION,
            QUEUE_VERSION_CONDITION,
            QUEUE_JOIN_UPDATE,
            QUEUE_LEAVE_UPDATE,
            QUEUE_LEAVE_LAST_UPDATE,
        ] {
            for word in
                expr.split(|c: char| !c.is_alphanumeric() && c != '#' && c != ':' && c != '_')
            {
                assert!(
                    ![ID, TYPE, VERSION, VALUE, ITEMS].contains(&word),
                    "`{word}` written without a placeholder in: {expr}"
                );
            }
        }
    }
}
