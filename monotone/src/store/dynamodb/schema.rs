//! The item layout (monotone 0.4's, with the documents' and tallies' beside
//! it), the expressions that read and write it, and the decoding of items
//! into counters, queues, documents and tallies.
//!
//! Every expression names attributes through `#placeholders` (`Value`,
//! `Type` and others are reserved words in DynamoDB's expression language)
//! and is a named constant here, next to the layout it relies on. See the
//! [module docs](super) for the protocol that uses them.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::claim::candidates::MAX_CANDIDATES;
use crate::claim::state::{ClaimPoolState, ClaimRecord, Waiter};
use crate::document::state as document_state;
use crate::document::Snapshot;
use crate::error::{Error, ErrorKind, Result};
use crate::lease::holder_id::{HolderId, MAX_HOLDER_ID};
use crate::lease::record::LeaseRecord;
use crate::queue::state::{QueueEntry, QueueState};
use crate::queue::ticket::Tags;
use crate::store::item_type::ItemType;
use crate::tally::TallyReading;

/// An item as the SDK gives and takes it.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Hash key (S): the counter's, queue's or document's id.
pub const ID: &str = "ID";
/// `COUNTER`, `QUEUE`, `DOCUMENT` or `TALLY` (S).
pub const TYPE: &str = "Type";
/// Grows by one with every write (N); a queue's fencing token, a document's
/// version.
pub const VERSION: &str = "Version";
/// A counter's value, a queue's last ticket counter (N), or a tally's
/// signed sum.
pub const VALUE: &str = "Value";
/// A queue's members (SS of JSON `{"process_id","counter","tags"}`), absent
/// when the queue is empty: DynamoDB has no empty sets.
pub const ITEMS: &str = "Items";

/// A queue's leases (M), by ticket counter (the counter in decimal): each
/// a map of [`LEASE_PROCESS`], [`LEASE_MS`], [`LEASE_RENEWALS`],
/// [`LEASE_RENEWED_AT`] and, for a ticket a holder made, [`LEASE_HOLDER`].
/// Absent until the first leased join; kept (possibly
/// empty) after that. Entries in `Items` stay exactly monotone 0.4's, so 0.4
/// still reads a leased queue; its whole-item writes drop this attribute,
/// which turns every leased ticket into a permanent one.
pub const LEASES: &str = "Leases";
/// In a lease: the process holding the ticket (S), checked by renewals.
pub const LEASE_PROCESS: &str = "process_id";
/// In a lease: its duration in milliseconds (N).
pub const LEASE_MS: &str = "lease_ms";
/// In a lease: how many times it was renewed (N), the record version that
/// observers watch.
pub const LEASE_RENEWALS: &str = "renewals";
/// In a lease: the holder's wall-clock time of the last renewal, in
/// milliseconds since the Unix epoch (N); for display only.
pub const LEASE_RENEWED_AT: &str = "renewed_at_ms";
/// In a lease (of a ticket or a claim) and in a waiting claimer: the id of
/// the holder that made it (N, 1 to 2^63 - 1); absent for one made without
/// a holder.
pub const LEASE_HOLDER: &str = "holder";

/// The placeholder of the one ticket's lease a request touches
/// (`#leases.#ticket`); its attribute name (the counter) is given per
/// request.
pub const TICKET_PLACEHOLDER: &str = "#ticket";
/// A document's value (S): its compact JSON text; absent for a removed
/// document, whose item stays to keep its `Version`.
pub const BODY: &str = "Body";

/// `Type` of a counter.
pub const COUNTER: &str = "COUNTER";
/// `Type` of a queue.
pub const QUEUE: &str = "QUEUE";
/// `Type` of a document.
pub const DOCUMENT: &str = "DOCUMENT";
/// `Type` of a tally.
pub const TALLY: &str = "TALLY";
/// `Type` of a claim pool.
pub const CLAIM_POOL: &str = "CLAIMS";

/// A claim pool's claims (M), by name: each a map of [`CLAIM_OWNER`],
/// [`CLAIM_INDEX`], [`CLAIM_TOKEN`], [`CLAIM_TAGS`] if it has tags and, for
/// a leased claim, [`LEASE_MS`], [`LEASE_RENEWALS`], [`LEASE_RENEWED_AT`]
/// and (made by a holder) [`LEASE_HOLDER`] as a ticket's lease has them.
/// Always present on a pool, possibly empty.
pub const CLAIMS: &str = "Claims";
/// In a claim: its owner (S).
pub const CLAIM_OWNER: &str = "owner";
/// In a claim: the name's index in the candidates it was claimed from (N).
pub const CLAIM_INDEX: &str = "index";
/// In a claim: the pool's `Version` right after the claim was made (N).
pub const CLAIM_TOKEN: &str = "token";
/// In a claim and in a waiting claimer: the claim's tags (M of S, by key);
/// absent when there are none (as in the claims written before tags).
pub const CLAIM_TAGS: &str = "tags";
/// A claim pool's claimers waiting to be served (M), by owner: each a map
/// of [`WAITER_CANDIDATES`], [`CLAIM_TAGS`] if it asked for tags and, for a
/// leased claim, [`LEASE_MS`] and (a holder's) [`LEASE_HOLDER`]. Always
/// present on a pool, usually empty.
pub const WAITING: &str = "Waiting";
/// In a waiting claimer: the digest of its candidates (S): `1..=255` for a
/// range, the number of names and a 128-bit hash of them for a list.
pub const WAITER_CANDIDATES: &str = "candidates";
/// A claim pool's roster size (N, 1 to 256): written once, by the write of
/// the first claim made with `--members` N, and absent on a pool never
/// sealed. In a waiting claimer ([`WAITER_MEMBERS`]), the size it asked for.
pub const CLAIM_MEMBERS: &str = "Members";
/// In a waiting claimer: the roster size it asked for (N), absent if none.
pub const WAITER_MEMBERS: &str = "members";

/// The placeholder of the one claim a request touches (`#claims.#name`);
/// its attribute name (the claim's name) is given per request.
pub const NAME_PLACEHOLDER: &str = "#name";
/// The placeholder of the claimer's own entry in `Waiting`
/// (`#waiting.#me`); its attribute name (the owner) is given per request.
pub const ME_PLACEHOLDER: &str = "#me";

/// Every attribute name placeholder, and the attribute it stands for.
const NAMES: [(&str, &str); 18] = [
    ("#id", ID),
    ("#type", TYPE),
    ("#version", VERSION),
    ("#value", VALUE),
    ("#items", ITEMS),
    ("#leases", LEASES),
    ("#lease_process", LEASE_PROCESS),
    ("#lease_ms", LEASE_MS),
    ("#renewals", LEASE_RENEWALS),
    ("#renewed_at", LEASE_RENEWED_AT),
    ("#body", BODY),
    ("#claims", CLAIMS),
    ("#owner", CLAIM_OWNER),
    ("#index", CLAIM_INDEX),
    ("#token", CLAIM_TOKEN),
    ("#waiting", WAITING),
    ("#candidates", WAITER_CANDIDATES),
    ("#members", CLAIM_MEMBERS),
];

/// What a waiter reads of an item (a projection): its kind and its version.
/// DynamoDB charges the read by the whole item's size all the same; the
/// answer is a few bytes instead of the item.
pub const VERSION_PROJECTION: &str = "#type, #version";

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

/// A leased `join` into a queue that has leases already: the member, and
/// its lease under its counter.
pub const QUEUE_JOIN_LEASED_UPDATE: &str = "SET #type = :queue, #version = :version, \
     #value = :value, #leases.#ticket = :lease ADD #items :entry";

/// The first leased `join` into a queue: the lease map is created with the
/// member's lease in it (a nested `SET` needs the map to exist).
pub const QUEUE_JOIN_FIRST_LEASE_UPDATE: &str = "SET #type = :queue, #version = :version, \
     #value = :value, #leases = :leases ADD #items :entry";

/// `leave` (or expiry) of one leased member of several: out of the set, its
/// lease out of the map, version up.
pub const QUEUE_LEAVE_LEASED_UPDATE: &str =
    "SET #version = :version REMOVE #leases.#ticket DELETE #items :entry";

/// `leave` (or expiry) of the last member, which was leased.
pub const QUEUE_LEAVE_LAST_LEASED_UPDATE: &str =
    "SET #version = :version REMOVE #items, #leases.#ticket";

/// `renew`: one more renewal and the holder's wall-clock time. Neither
/// `Version` nor `Items` changes, so no join or leave conditional on them
/// has to retry.
pub const QUEUE_RENEW_UPDATE: &str = "SET #leases.#ticket.#renewals = \
     #leases.#ticket.#renewals + :one, #leases.#ticket.#renewed_at = :now";

/// `renew`: the lease under the ticket's counter is still this process's.
/// A removed ticket takes its lease with it, and counters are never reused
/// while a queue exists; naming the process also rules out a queue removed
/// and created again since.
pub const QUEUE_RENEW_CONDITION: &str =
    "#type = :queue AND #leases.#ticket.#lease_process = :process";

/// Expiry of a leased ticket: the queue as read (its version), and the
/// ticket's lease not renewed since the observer watched it. Renewals do not
/// change `Version`, so the version alone would not see them.
pub const QUEUE_EXPIRE_CONDITION: &str =
    "#type = :queue AND #version = :expected AND #leases.#ticket.#renewals = :renewals";
/// A document write on a document never written (no item at all).
pub const DOCUMENT_CREATE_CONDITION: &str = "attribute_not_exists(#id)";

/// A document write on a document read at `Version` = `:expected` that
/// changes it: a `Body` that is `:body` already fails the condition, so an
/// identical write writes nothing (the version stays).
pub const DOCUMENT_VERSION_CONDITION: &str = "#type = :document AND #version = :expected \
     AND (attribute_not_exists(#body) OR #body <> :body)";

/// A removal conditional on the version: the document must also exist, so
/// that removing an absent document writes nothing.
pub const DOCUMENT_VERSION_EXISTS_CONDITION: &str =
    "#type = :document AND #version = :expected AND attribute_exists(#body)";

/// A removal whatever the version: an existing document with a readable
/// version.
pub const DOCUMENT_EXISTS_CONDITION: &str = "#type = :document AND attribute_exists(#body) \
     AND attribute_type(#version, :number) AND #version BETWEEN :zero AND :below_max";

/// Set a document: the value and the version after the one read. `SET
/// #type` is a no-op on an existing document and names a new one.
pub const DOCUMENT_SET_UPDATE: &str = "SET #type = :document, #version = :version, #body = :body";

/// Remove a document read at a known version: the value goes, the item and
/// its version stay.
pub const DOCUMENT_REMOVE_UPDATE: &str = "SET #version = :version REMOVE #body";

/// Remove a document whatever its version, in one request.
pub const DOCUMENT_DROP_UPDATE: &str = "SET #version = #version + :one REMOVE #body";

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

/// A claim pool write on a pool that did not exist when it was read.
pub const CLAIMS_CREATE_CONDITION: &str = "attribute_not_exists(#id)";

/// A claim pool write on a pool read at `Version` = `:expected`: claims are
/// made on the pool as read, so the first free candidate is still free.
pub const CLAIMS_VERSION_CONDITION: &str = "#type = :pool AND #version = :expected";

/// The first claim of a pool: the pool, with its claim and nobody waiting.
pub const CLAIMS_CREATE_UPDATE: &str =
    "SET #type = :pool, #version = :version, #claims = :claims, #waiting = :waiting";

/// Claims on a pool read at a known version: the new version, then (see
/// [`claims_write_update`]) [`CLAIMS_SET_MEMBERS`] if the write seals the
/// pool, `#claims.#nI = :cI` for each claim made and `REMOVE #waiting.#wJ`
/// for each waiting claimer served or dropped.
pub const CLAIMS_SET_VERSION: &str = "SET #version = :version";

/// The write that seals a pool at a roster of `:members` (appended to the
/// `SET` of a claim write; conditional on the version as any claim write).
pub const CLAIMS_SET_MEMBERS: &str = ", #members = :members";

/// A claimer that lost a race waits in the pool, to be served by the next
/// writer: its entry in `Waiting`. Neither `Version` nor `Claims` changes,
/// so nobody's claim has to retry because of it.
pub const CLAIMS_WAIT_UPDATE: &str = "SET #waiting.#me = :waiter";

/// Waiting in an existing pool.
pub const CLAIMS_WAIT_CONDITION: &str = "#type = :pool AND attribute_type(#waiting, :map)";

/// Waiting in a pool that is gone since it was read: a new, empty pool with
/// the waiter in it.
pub const CLAIMS_CREATE_WAITING_UPDATE: &str =
    "SET #type = :pool, #version = :zero, #claims = :empty, #waiting = :waiting";

/// A waiting claimer leaves without a claim (every candidate is taken) ...
pub const CLAIMS_UNWAIT_UPDATE: &str = "REMOVE #waiting.#me";

/// ... only if it is still waiting: if its entry is gone, a writer served
/// it meanwhile, and it holds a claim.
pub const CLAIMS_UNWAIT_CONDITION: &str = "#type = :pool AND attribute_exists(#waiting.#me)";

/// `renew`: one more renewal and the holder's wall-clock time. Neither
/// `Version` nor another claim changes, so no claim or release of another
/// owner has to retry.
pub const CLAIMS_RENEW_UPDATE: &str = "SET #claims.#name.#renewals = \
     #claims.#name.#renewals + :one, #claims.#name.#renewed_at = :now";

/// `renew`: the name is still this owner's, with a lease.
pub const CLAIMS_RENEW_CONDITION: &str = "#type = :pool AND #claims.#name.#owner = :owner \
     AND attribute_exists(#claims.#name.#lease_ms)";

/// `release` and expiry: the claim goes, the token grows by one. `ADD` is
/// atomic, so they need no read of the version: they are conditional on
/// the claim instead.
pub const CLAIMS_DROP_UPDATE: &str = "REMOVE #claims.#name ADD #version :one";

/// `release`: the claim read is still there, the owner's.
pub const CLAIMS_RELEASE_CONDITION: &str =
    "#type = :pool AND #claims.#name.#owner = :owner AND #claims.#name.#token = :token";

/// Expiry: the claim is exactly as the observer watched it, not renewed
/// since.
pub const CLAIMS_EXPIRE_CONDITION: &str = "#type = :pool AND #claims.#name.#owner = :owner \
     AND #claims.#name.#token = :token AND #claims.#name.#renewals = :renewals \
     AND #claims.#name.#lease_ms = :lease_ms";

/// `claim pool remove`: absent, or a pool whose token this crate can read.
pub const CLAIMS_REMOVE_CONDITION: &str = "attribute_not_exists(#id) OR (#type = :pool \
     AND attribute_type(#version, :number) AND #version BETWEEN :zero AND :max)";

/// The placeholders of a claim write's `i`-th claim name and `i`-th waiting
/// claimer removed, and of the `i`-th claim's value.
pub fn claim_placeholders(i: usize) -> (String, String, String) {
    (format!("#n{i}"), format!("#w{i}"), format!(":c{i}"))
}

/// The update of a claim write that makes `claims` claims and removes
/// `removed` waiting claimers: [`CLAIMS_SET_VERSION`], the roster size if it
/// `seals` the pool, then each claim under its name, then the waiting
/// claimers' entries out.
pub fn claims_write_update(claims: usize, removed: usize, seals: bool) -> String {
    let mut update = CLAIMS_SET_VERSION.to_owned();
    if seals {
        update.push_str(CLAIMS_SET_MEMBERS);
    }
    for i in 0..claims {
        let (name, _, value) = claim_placeholders(i);
        update.push_str(&format!(", #claims.{name} = {value}"));
    }
    for i in 0..removed {
        let (_, waiter, _) = claim_placeholders(i);
        update.push_str(if i == 0 { " REMOVE " } else { ", " });
        update.push_str(&format!("#waiting.{waiter}"));
    }
    update
}

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

/// A ticket's lease as stored in `Leases`.
pub(crate) fn encode_lease(process_id: &str, lease: &LeaseRecord) -> AttributeValue {
    let mut fields = HashMap::from([(LEASE_PROCESS.to_owned(), s(process_id))]);
    lease_fields(&mut fields, lease);
    AttributeValue::M(fields)
}

/// The fields of `lease` in a ticket's lease or a claim.
fn lease_fields(fields: &mut HashMap<String, AttributeValue>, lease: &LeaseRecord) {
    fields.insert(LEASE_MS.to_owned(), n(lease.duration_ms));
    fields.insert(LEASE_RENEWALS.to_owned(), n(lease.renewals));
    fields.insert(LEASE_RENEWED_AT.to_owned(), n(lease.renewed_at_ms));
    if let Some(holder) = lease.holder {
        fields.insert(LEASE_HOLDER.to_owned(), n(holder.get()));
    }
}

/// `tags` in a claim or a waiting claimer, if there are any.
fn tag_field(fields: &mut HashMap<String, AttributeValue>, tags: &Tags) {
    if !tags.is_empty() {
        let map = tags.iter().map(|(k, v)| (k.clone(), s(v))).collect();
        fields.insert(CLAIM_TAGS.to_owned(), AttributeValue::M(map));
    }
}

/// What an item holds, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    Counter { value: u64, version: u64 },
    Queue(StoredQueue),
    Document(Snapshot),
    Tally(TallyReading),
    ClaimPool(ClaimPoolState),
}

impl Stored {
    pub fn item_type(&self) -> ItemType {
        match self {
            Stored::Counter { .. } => ItemType::Counter,
            Stored::Queue(_) => ItemType::Queue,
            Stored::Document(_) => ItemType::Document,
            Stored::Tally(_) => ItemType::Tally,
            Stored::ClaimPool(_) => ItemType::ClaimPool,
        }
    }

    /// The WrongType error for this item found where `wanted` was asked for.
    pub fn wrong_type(&self, id: &str, wanted: ItemType) -> Error {
        self.item_type().wrong_type(id, wanted)
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
            let leases =
                decode_leases(item.get(LEASES), &entries).map_err(|why| corrupt(LEASES, why))?;
            Ok(Stored::Queue(StoredQueue {
                state: QueueState::new(version, value, entries, leases),
                raw,
            }))
        }
        DOCUMENT => {
            let version = number(VERSION)?;
            let value = match item.get(BODY) {
                None => None,
                Some(AttributeValue::S(text)) => Some(
                    document_state::decode(&format!("dynamodb table `{table}`"), id, text)
                        .map_err(|_| {
                            corrupt(
                                BODY,
                                format!("holds `{}`, which is not JSON", shorten(text)),
                            )
                        })?,
                ),
                Some(other) => {
                    return Err(corrupt(
                        BODY,
                        format!("is {}, not a string (S)", type_name(other)),
                    ))
                }
            };
            Ok(Stored::Document(Snapshot::new(value, version)))
        }
        TALLY => Ok(Stored::Tally(TallyReading::new(
            signed(VALUE)?,
            number(VERSION)?,
        ))),
        CLAIM_POOL => {
            let version = number(VERSION)?;
            let claims = decode_claims(item.get(CLAIMS)).map_err(|why| corrupt(CLAIMS, why))?;
            let waiting = decode_waiting(item.get(WAITING)).map_err(|why| corrupt(WAITING, why))?;
            let members = match item.get(CLAIM_MEMBERS) {
                None => None,
                Some(_) => Some(number(CLAIM_MEMBERS)?)
                    .filter(|m| (1..=MAX_CANDIDATES as u64).contains(m))
                    .map(|m| m as usize)
                    .map(Some)
                    .ok_or_else(|| {
                        corrupt(
                            CLAIM_MEMBERS,
                            format!("is not a roster size from 1 to {MAX_CANDIDATES}"),
                        )
                    })?,
            };
            Ok(Stored::ClaimPool(
                ClaimPoolState::new(version, claims, waiting).with_members(members),
            ))
        }
        other => Err(corrupt(
            TYPE,
            format!(
                "is `{}`, none of {COUNTER}, {QUEUE}, {DOCUMENT}, {TALLY} and {CLAIM_POOL}",
                shorten(other)
            ),
        )),
    }
}

/// Decode a queue's `Leases` (absent: none). A lease must name the process
/// whose entry has its counter; a lease without an entry belongs to no
/// ticket and is left out. `Err` says what is wrong.
fn decode_leases(
    leases: Option<&AttributeValue>,
    entries: &[QueueEntry],
) -> std::result::Result<BTreeMap<u64, LeaseRecord>, String> {
    let map = match leases {
        None => return Ok(BTreeMap::new()),
        Some(AttributeValue::M(map)) => map,
        Some(other) => return Err(format!("is {}, not a map (M)", type_name(other))),
    };
    let mut out = BTreeMap::new();
    for (key, lease) in map {
        let counter: u64 = key
            .parse()
            .map_err(|_| format!("has the key `{}`, not a ticket counter", shorten(key)))?;
        let AttributeValue::M(fields) = lease else {
            return Err(format!(
                "holds {} under `{counter}`, not a map (M)",
                type_name(lease)
            ));
        };
        let number = |name: &str| -> std::result::Result<u64, String> {
            match fields.get(name) {
                Some(AttributeValue::N(v)) => v
                    .parse()
                    .map_err(|_| format!("has `{name}` {v} under `{counter}`, not a whole number")),
                _ => Err(format!("lacks the number `{name}` under `{counter}`")),
            }
        };
        let process = match fields.get(LEASE_PROCESS) {
            Some(AttributeValue::S(p)) => p,
            _ => {
                return Err(format!(
                    "lacks the string `{LEASE_PROCESS}` under `{counter}`"
                ))
            }
        };
        let key = counter.to_string();
        let record = LeaseRecord {
            duration_ms: number(LEASE_MS)?,
            renewals: number(LEASE_RENEWALS)?,
            renewed_at_ms: number(LEASE_RENEWED_AT)?,
            holder: holder_of(fields, &key)?,
        };
        if record.duration_ms == 0 {
            return Err(format!("has a lease of 0 ms under `{counter}`"));
        }
        match entries.iter().find(|e| e.counter == counter) {
            Some(e) if e.process_id != *process => {
                return Err(format!(
                    "gives ticket {counter} of process `{}` to process `{}`",
                    shorten(&e.process_id),
                    shorten(process)
                ))
            }
            _ => {}
        }
        out.insert(counter, record);
    }
    Ok(out)
}

/// The fields of the map `value` stored under `key`, or why it is not a map.
fn fields<'a>(
    key: &str,
    value: &'a AttributeValue,
) -> std::result::Result<&'a HashMap<String, AttributeValue>, String> {
    match value {
        AttributeValue::M(fields) => Ok(fields),
        other => Err(format!(
            "holds {} under `{}`, not a map (M)",
            type_name(other),
            shorten(key)
        )),
    }
}

/// The whole number `name` of `fields` (the map under `key`), if present.
fn optional_number(
    fields: &HashMap<String, AttributeValue>,
    key: &str,
    name: &str,
) -> std::result::Result<Option<u64>, String> {
    match fields.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| {
            format!(
                "has `{name}` {v} under `{}`, not a whole number",
                shorten(key)
            )
        }),
        Some(other) => Err(format!(
            "has `{name}` under `{}` as {}, not a number (N)",
            shorten(key),
            type_name(other)
        )),
    }
}

/// The holder id in `fields` (the map under `key`), if there is one.
fn holder_of(
    fields: &HashMap<String, AttributeValue>,
    key: &str,
) -> std::result::Result<Option<HolderId>, String> {
    optional_number(fields, key, LEASE_HOLDER)?
        .map(|h| {
            HolderId::new(h).ok_or_else(|| {
                format!(
                    "has `{LEASE_HOLDER}` {h} under `{}`, not one from 1 to {MAX_HOLDER_ID}",
                    shorten(key)
                )
            })
        })
        .transpose()
}

/// The tags in `fields` (the map under `key`): none if absent.
fn tags_of(
    fields: &HashMap<String, AttributeValue>,
    key: &str,
) -> std::result::Result<Tags, String> {
    let map = match fields.get(CLAIM_TAGS) {
        None => return Ok(Tags::new()),
        Some(AttributeValue::M(map)) => map,
        Some(other) => {
            return Err(format!(
                "has `{CLAIM_TAGS}` under `{}` as {}, not a map (M)",
                shorten(key),
                type_name(other)
            ))
        }
    };
    map.iter()
        .map(|(k, v)| match v {
            AttributeValue::S(v) => Ok((k.clone(), v.clone())),
            other => Err(format!(
                "has the tag `{}` under `{}` as {}, not a string (S)",
                shorten(k),
                shorten(key),
                type_name(other)
            )),
        })
        .collect()
}

/// The whole number `name` of `fields`, which must be present.
fn required_number(
    fields: &HashMap<String, AttributeValue>,
    key: &str,
    name: &str,
) -> std::result::Result<u64, String> {
    optional_number(fields, key, name)?
        .ok_or_else(|| format!("lacks the number `{name}` under `{}`", shorten(key)))
}

/// Decode a pool's `Claims`: each claim's owner, index, token and lease
/// (all three lease fields, or none). An owner holding two names is not
/// what any monotone writes.
fn decode_claims(
    claims: Option<&AttributeValue>,
) -> std::result::Result<BTreeMap<String, ClaimRecord>, String> {
    let map = match claims {
        None => return Err("is missing".into()),
        Some(AttributeValue::M(map)) => map,
        Some(other) => return Err(format!("is {}, not a map (M)", type_name(other))),
    };
    let mut out = BTreeMap::new();
    let mut owners = std::collections::HashSet::new();
    for (name, value) in map {
        let fields = fields(name, value)?;
        let owner = match fields.get(CLAIM_OWNER) {
            Some(AttributeValue::S(o)) if !o.is_empty() => o.clone(),
            _ => {
                return Err(format!(
                    "lacks the string `{CLAIM_OWNER}` under `{}`",
                    shorten(name)
                ))
            }
        };
        let index = usize::try_from(required_number(fields, name, CLAIM_INDEX)?)
            .map_err(|_| format!("has too large an `{CLAIM_INDEX}` under `{}`", shorten(name)))?;
        let token = required_number(fields, name, CLAIM_TOKEN)?;
        let lease = match optional_number(fields, name, LEASE_MS)? {
            None => None,
            Some(0) => return Err(format!("has a lease of 0 ms under `{}`", shorten(name))),
            Some(duration_ms) => Some(LeaseRecord {
                duration_ms,
                renewals: required_number(fields, name, LEASE_RENEWALS)?,
                renewed_at_ms: required_number(fields, name, LEASE_RENEWED_AT)?,
                holder: holder_of(fields, name)?,
            }),
        };
        let tags = tags_of(fields, name)?;
        if !owners.insert(owner.clone()) {
            return Err(format!("gives owner `{}` two names", shorten(&owner)));
        }
        out.insert(
            name.clone(),
            ClaimRecord {
                owner,
                index,
                token,
                tags,
                lease,
            },
        );
    }
    Ok(out)
}

/// Decode a pool's `Waiting`: each waiting claimer's candidates and lease.
fn decode_waiting(
    waiting: Option<&AttributeValue>,
) -> std::result::Result<BTreeMap<String, Waiter>, String> {
    let map = match waiting {
        None => return Err("is missing".into()),
        Some(AttributeValue::M(map)) => map,
        Some(other) => return Err(format!("is {}, not a map (M)", type_name(other))),
    };
    let mut out = BTreeMap::new();
    for (owner, value) in map {
        let fields = fields(owner, value)?;
        let candidates = match fields.get(WAITER_CANDIDATES) {
            Some(AttributeValue::S(c)) => c.clone(),
            _ => {
                return Err(format!(
                    "lacks the string `{WAITER_CANDIDATES}` under `{}`",
                    shorten(owner)
                ))
            }
        };
        let lease_ms = optional_number(fields, owner, LEASE_MS)?;
        let members = optional_number(fields, owner, WAITER_MEMBERS)?
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        out.insert(
            owner.clone(),
            Waiter {
                candidates,
                lease_ms,
                tags: tags_of(fields, owner)?,
                holder: holder_of(fields, owner)?,
                members,
            },
        );
    }
    Ok(out)
}

/// A claim as stored in `Claims`.
pub(crate) fn encode_claim(record: &ClaimRecord) -> AttributeValue {
    let mut fields = HashMap::from([
        (CLAIM_OWNER.to_owned(), s(&record.owner)),
        (CLAIM_INDEX.to_owned(), n(record.index as u64)),
        (CLAIM_TOKEN.to_owned(), n(record.token)),
    ]);
    tag_field(&mut fields, &record.tags);
    if let Some(lease) = &record.lease {
        lease_fields(&mut fields, lease);
    }
    AttributeValue::M(fields)
}

/// A waiting claimer as stored in `Waiting`.
pub(crate) fn encode_waiter(waiter: &Waiter) -> AttributeValue {
    let mut fields = HashMap::from([(WAITER_CANDIDATES.to_owned(), s(&waiter.candidates))]);
    tag_field(&mut fields, &waiter.tags);
    if let Some(ms) = waiter.lease_ms {
        fields.insert(LEASE_MS.to_owned(), n(ms));
    }
    if let Some(holder) = waiter.holder {
        fields.insert(LEASE_HOLDER.to_owned(), n(holder.get()));
    }
    if let Some(members) = waiter.members {
        fields.insert(WAITER_MEMBERS.to_owned(), n(members as u64));
    }
    AttributeValue::M(fields)
}

/// The size DynamoDB counts for `item` against its 400 KB limit (and its
/// capacity units): attribute names plus values, strings by their UTF-8
/// bytes, numbers by one byte per two significant digits plus one, maps and
/// lists three bytes plus one per element plus their elements (keys
/// included), as the DynamoDB developer guide says.
pub fn item_bytes(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_bytes(v)).sum()
}

/// The size DynamoDB counts for the value `v` (see [`item_bytes`]).
pub fn value_bytes(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => {
            let digits = n
                .trim_start_matches('-')
                .split(['e', 'E'])
                .next()
                .unwrap_or("")
                .replace('.', "");
            let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
            significant.div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set
            .iter()
            .map(|x| value_bytes(&AttributeValue::N(x.clone())))
            .sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(list) => 3 + list.iter().map(|x| 1 + value_bytes(x)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, x)| 1 + k.len() + value_bytes(x))
                .sum::<usize>()
        }
        _ => 0,
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

/// The `Version` of `item` (as [`VERSION_PROJECTION`] reads it), the item
/// under `id` in `table`, where a `wanted` item was asked for: 0 if there is
/// no item, WrongType if it is another kind, Corrupt if unreadable.
pub(crate) fn decode_version(
    table: &str,
    id: &str,
    item: Option<&Item>,
    wanted: ItemType,
) -> Result<u64> {
    let Some(item) = item else { return Ok(0) };
    let corrupt = |why: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!("dynamodb table `{table}`: item `{id}` is unreadable: {why}; monotone leaves it as it is"),
        )
    };
    match item.get(TYPE) {
        Some(AttributeValue::S(t)) if t == wanted.stored() => {}
        Some(AttributeValue::S(t)) => {
            return Err(match ItemType::from_stored(t) {
                Some(found) => found.wrong_type(id, wanted),
                None => corrupt(format!("attribute `{TYPE}` holds the unknown type {t}")),
            })
        }
        _ => {
            return Err(corrupt(format!(
                "attribute `{TYPE}` is missing or not a string"
            )))
        }
    }
    let v = stored_number(item, VERSION)
        .map_err(|why| corrupt(format!("attribute `{VERSION}` {why}")))?;
    v.parse().map_err(|_| {
        corrupt(format!(
            "attribute `{VERSION}` holds {v}, not a whole number"
        ))
    })
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
    use crate::queue::ticket::Tags;

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
                .contains("`LOCK`, none of COUNTER, QUEUE, DOCUMENT, TALLY and CLAIMS")
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

    /// A claim's tags and holder, and a waiting claimer's, as stored and
    /// read back; a lease's holder in a queue; what is not a holder or tags
    /// is reported.
    #[test]
    fn tags_and_holders_round_trip_and_bad_ones_are_corrupt() {
        let tags: Tags = [("addr".to_string(), "10.0.0.5".to_string())].into();
        let lease = LeaseRecord {
            duration_ms: 5000,
            renewals: 3,
            renewed_at_ms: 1_790_000_000_000,
            holder: HolderId::new(MAX_HOLDER_ID),
        };
        let record = ClaimRecord {
            owner: "zk-a".into(),
            index: 0,
            token: 1,
            tags: tags.clone(),
            lease: Some(lease),
        };
        let plain = ClaimRecord {
            owner: "zk-b".into(),
            index: 1,
            token: 2,
            tags: Tags::new(),
            lease: None,
        };
        let waiter = Waiter {
            candidates: "1..=255".into(),
            lease_ms: Some(5000),
            tags: tags.clone(),
            holder: HolderId::new(9),
            members: Some(3),
        };
        let AttributeValue::M(fields) = encode_claim(&plain) else {
            panic!("a map")
        };
        assert!(!fields.contains_key(CLAIM_TAGS) && !fields.contains_key(LEASE_HOLDER));
        let pool = |claims: AttributeValue, waiting: AttributeValue| {
            item(&[
                (ID, s("p")),
                (TYPE, s(CLAIM_POOL)),
                (VERSION, n(2)),
                (CLAIMS, claims),
                (WAITING, waiting),
            ])
        };
        let claims = AttributeValue::M(HashMap::from([
            ("1".to_string(), encode_claim(&record)),
            ("2".to_string(), encode_claim(&plain)),
        ]));
        let waiting = AttributeValue::M(HashMap::from([("w".into(), encode_waiter(&waiter))]));
        let Stored::ClaimPool(back) = decode("T", "p", &pool(claims, waiting)).unwrap() else {
            panic!("a pool")
        };
        assert_eq!(back.records()["1"], record);
        assert_eq!(back.records()["2"], plain);
        assert_eq!(back.waiting()["w"], waiter);
        assert_eq!(
            back.members(),
            None,
            "a pool without `Members` is not sealed"
        );
        let sealed = |members: AttributeValue| {
            let mut item = pool(
                AttributeValue::M(HashMap::new()),
                AttributeValue::M(HashMap::new()),
            );
            item.insert(CLAIM_MEMBERS.to_owned(), members);
            decode("T", "p", &item)
        };
        let Stored::ClaimPool(back) = sealed(n(8)).unwrap() else {
            panic!("a pool")
        };
        assert_eq!(back.members(), Some(8));
        for bad in [n(0), n(MAX_CANDIDATES as u64 + 1), s("8")] {
            let e = sealed(bad).map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            assert!(e.to_string().contains("`Members`"), "{e}");
        }

        let entry = QueueEntry {
            process_id: "a".into(),
            counter: 1,
            tags: Tags::new(),
        };
        let queue = |lease: AttributeValue| {
            item(&[
                (ID, s("the-id")),
                (TYPE, s(QUEUE)),
                (VERSION, n(1)),
                (VALUE, n(1)),
                (ITEMS, ss(&[&encode_entry(&entry)])),
                (
                    LEASES,
                    AttributeValue::M(HashMap::from([("1".into(), lease)])),
                ),
            ])
        };
        let Stored::Queue(q) = decode("T", "q", &queue(encode_lease("a", &lease))).unwrap() else {
            panic!("a queue")
        };
        assert_eq!(q.state.lease_of(1), Some(&lease));

        let with = |field: &str, value: AttributeValue| {
            let AttributeValue::M(mut fields) = encode_claim(&record) else {
                unreachable!()
            };
            fields.insert(field.to_owned(), value);
            let claims = AttributeValue::M(HashMap::from([(
                "1".to_string(),
                AttributeValue::M(fields),
            )]));
            pool(claims, AttributeValue::M(HashMap::new()))
        };
        for (item, says) in [
            (with(LEASE_HOLDER, n(0)), "`holder` 0 under `1`"),
            (with(LEASE_HOLDER, n(u64::MAX)), "not one from 1 to"),
            (with(CLAIM_TAGS, s("x")), "`tags` under `1` as a string (S)"),
            (
                with(
                    CLAIM_TAGS,
                    AttributeValue::M(HashMap::from([("k".into(), n(1))])),
                ),
                "the tag `k` under `1` as a number (N)",
            ),
            (
                queue(encode_lease(
                    "a",
                    &LeaseRecord {
                        holder: None,
                        ..lease
                    },
                )),
                "",
            ),
        ] {
            let mut item = item;
            item.insert(ID.into(), s("the-id"));
            if says.is_empty() {
                assert!(decode("Counters", "the-id", &item).is_ok());
                continue;
            }
            let msg = corrupt(&item);
            assert!(msg.contains(says), "{msg}");
        }
        let AttributeValue::M(mut lease_fields) = encode_lease("a", &lease) else {
            unreachable!()
        };
        lease_fields.insert(LEASE_HOLDER.into(), s("1"));
        assert!(corrupt(&queue(AttributeValue::M(lease_fields))).contains("`holder` under `1`"));
    }

    #[test]
    fn documents_and_removed_documents() {
        let it = item(&[
            (ID, s("d")),
            (TYPE, s(DOCUMENT)),
            (VERSION, n(3)),
            (BODY, s(r#"{"globs":["/usr/bin/*"]}"#)),
        ]);
        assert_eq!(
            decode("T", "d", &it).unwrap(),
            Stored::Document(Snapshot::new(
                Some(serde_json::json!({"globs": ["/usr/bin/*"]})),
                3
            ))
        );
        let removed = item(&[(ID, s("d")), (TYPE, s(DOCUMENT)), (VERSION, n(4))]);
        assert_eq!(
            decode("T", "d", &removed).unwrap(),
            Stored::Document(Snapshot::new(None, 4))
        );
        let doc = |body: AttributeValue| {
            item(&[
                (ID, s("the-id")),
                (TYPE, s(DOCUMENT)),
                (VERSION, n(1)),
                (BODY, body),
            ])
        };
        assert!(corrupt(&doc(s("{not json"))).contains("`Body` holds `{not json`"));
        assert!(corrupt(&doc(n(1))).contains("`Body` is a number (N)"));
        assert!(corrupt(&item(&[(ID, s("the-id")), (TYPE, s(DOCUMENT))]))
            .contains("`Version` is missing"));
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
            QUEUE_JOIN_LEASED_UPDATE,
            QUEUE_JOIN_FIRST_LEASE_UPDATE,
            QUEUE_LEAVE_LEASED_UPDATE,
            QUEUE_LEAVE_LAST_LEASED_UPDATE,
            QUEUE_RENEW_UPDATE,
            QUEUE_RENEW_CONDITION,
            QUEUE_EXPIRE_CONDITION,
            DOCUMENT_CREATE_CONDITION,
            DOCUMENT_VERSION_CONDITION,
            DOCUMENT_VERSION_EXISTS_CONDITION,
            DOCUMENT_EXISTS_CONDITION,
            DOCUMENT_SET_UPDATE,
            DOCUMENT_REMOVE_UPDATE,
            DOCUMENT_DROP_UPDATE,
        ] {
            for word in
                expr.split(|c: char| !c.is_alphanumeric() && c != '#' && c != ':' && c != '_')
            {
                assert!(
                    ![
                        ID,
                        TYPE,
                        VERSION,
                        VALUE,
                        ITEMS,
                        LEASES,
                        LEASE_PROCESS,
                        LEASE_MS,
                        LEASE_RENEWALS,
                        LEASE_RENEWED_AT,
                        BODY
                    ]
                    .contains(&word),
                    "`{word}` written without a placeholder in: {expr}"
                );
            }
        }
    }
}
