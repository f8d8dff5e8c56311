/*!
The DynamoDB store (cargo feature `aws`): counters, queues, documents,
tallies and claim pools shared by hosts anywhere, in one table, through the
official AWS SDK for Rust.

```no_run
# #[tokio::main(flavor = "current_thread")]
# async fn main() -> monotone::Result<()> {
use monotone::dynamodb::{DynamoDbConfig, DynamoDbStore};
use monotone::Store;

let store = DynamoDbStore::connect(DynamoDbConfig::new("Counters").with_region("eu-west-1")).await?;
let myid = store.counter("myzk-myid")?.next().await?;
// or, from a URL:
let store = monotone::open("dynamodb://Counters?region=eu-west-1").await?;
# Ok(())
# }
```

# The table

One table holds every counter, queue, document, tally and claim pool, one
item per id. Counters and queues keep the layout monotone 0.4 wrote, byte
for byte, so tables made by 0.4 keep working and old and new clients can
share a table during an upgrade; documents, tallies and claim pools have
`Type`s of their own:

| attribute | type | meaning |
|---|---|---|
| `ID` | S | hash key: the counter's, queue's, document's or tally's id |
| `Type` | S | `COUNTER`, `QUEUE`, `DOCUMENT`, `TALLY` or `CLAIMS` |
| `Version` | N | one more on every write; a queue's or claim pool's fencing token, a document's version, the number of a tally's adds |
| `Value` | N | a counter's value; a queue's last ticket counter; a tally's sum, signed, from `i64::MIN` to `i64::MAX` (not on documents) |
| `Items` | SS | a queue's members, each the JSON `{"process_id": "..", "counter": 1, "tags": {..}}`; absent when the queue is empty (DynamoDB has no empty sets) |
| `Leases` | M | a queue's leases, by ticket counter (in decimal): `{"process_id": S, "lease_ms": N, "renewals": N, "renewed_at_ms": N}`, and `"holder": N` (the [`HolderId`](crate::HolderId), 1 to 2^63 - 1) for a ticket a holder made; absent until the first leased join |

`Leases` is new in this version; the members in `Items` stay exactly what
monotone 0.4 reads and writes, so 0.4 still reads a queue with leased
tickets. 0.4 writes a queue by putting back the whole item with only the
attributes it knows, which drops `Leases`: every leased ticket becomes a
permanent one, and its holder finds out at its next renewal (the lease is
lost) and leaves.
| `Body` | S | a document's value as compact JSON text, at most [`MAX_DOCUMENT_BYTES`](crate::MAX_DOCUMENT_BYTES); absent once the document is removed (the item stays, keeping its `Version`, so that versions never repeat) |
| `Claims` | M | a claim pool's claims, by name: `{"owner": S, "index": N, "token": N}`, `"tags": M` (of S, by key) when the claim has tags, and for a leased claim also `"lease_ms"`, `"renewals"`, `"renewed_at_ms"` and (a holder's) `"holder"` as in `Leases`; `index` is the name's place in the candidates it was claimed from, `token` the pool's `Version` right after the claim |
| `Waiting` | M | a claim pool's claimers waiting to be served, by owner: `{"candidates": S}` and, as the claim it asked for has them, `"tags": M`, `"lease_ms": N` (absent for a permanent claim), `"holder": N` and `"members": N` (the roster size asked for); usually empty (see the `claim` module) |
| `Members` | N | a claim pool's roster size (1 to 256), written by the write that makes the first claim asked with a roster size (`claim --members`); absent for a pool never sealed (see the `claim` module's *Rosters*) |

monotone 0.4 knows only `COUNTER` and `QUEUE` items: keep it away from the
ids of tallies and claim pools.

A claim pool is one item, so that a claim is one conditional write on the
pool as read (the first free candidate is still free when it lands); a full
pool of [`MAX_CANDIDATES`](crate::MAX_CANDIDATES) claims with owners of
1024 bytes and names of [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES) takes
347,057 of an item's 409,600 bytes, by DynamoDB's count. With short names
(`1` to `255`), an item would hold about 4,600 claims of owners of 16 bytes,
3,000 of 64 bytes, 370 of 1024 bytes; the pool stops at 256 either way.

The table needs only its key; create it with

```text
aws dynamodb create-table --table-name Counters \
    --attribute-definitions AttributeName=ID,AttributeType=S \
    --key-schema AttributeName=ID,KeyType=HASH --billing-mode PAY_PER_REQUEST
```

or with the Terraform module in `terraform/`, which also writes the IAM
policy. This store sends `dynamodb:GetItem`, `UpdateItem` and `DeleteItem`,
and `CreateTable` and `DescribeTable` only to create a missing table
(monotone 0.4 also needs `PutItem`, which the module grants too).

When a request finds no table (`ResourceNotFoundException`), the store
creates it (on-demand billing, hash key `ID`), polls
`DescribeTable` until it is ACTIVE (at most [`TABLE_ACTIVE_TIMEOUT`]), and
sends the request again, once. Without the permission to create it, the
error says how to (see [`create_table_command`]); [`DynamoDbConfig::create_table`]
turns creation off.

# The write protocol

Every write is conditional, so no update is ever lost and an item this store
cannot read is never written over (save one whose number has a fraction,
which no monotone writes and no condition can detect: see the `tally`
module). The expressions are constants in the
`schema` module, with `#placeholders` for every attribute name.

- **counter next**: one `UpdateItem`,
  `SET #type = :counter ADD #value :one, #version :one`, under
  `attribute_not_exists(#id) OR (#type = :counter AND <Value and Version are
  numbers below u64::MAX>)`, returning the new value (`UPDATED_NEW`). DynamoDB
  applies it atomically, so concurrent `next`s never collide and never retry.
- **join / leave**: a strongly consistent `GetItem`; the rule of the queue
  (a join of a member follows the re-join rule and writes nothing, leave of
  a non-member is NotFound) is applied to what was read; then one `UpdateItem` conditional on `#version = :expected` (the
  version read) and `#type = :queue`, or on `attribute_not_exists(#id)` for a
  new queue. It sets `Version` (+1) and `Value`, and `ADD`s or `DELETE`s the
  one member's JSON string in `Items` (leaving the other members' strings as
  they were written, by whichever client), or `REMOVE`s `Items` when the last
  member leaves.
- **join with a lease**: as a join, and the same `UpdateItem` also sets the
  ticket's lease, `#leases.#ticket` (or the whole `Leases` map, for the first
  lease of a queue: a nested `SET` needs its map to exist).
- **renew**: one `UpdateItem` adding one to `#leases.#ticket.#renewals` and
  setting the holder's wall-clock time, conditional on
  `#leases.#ticket.#lease_process = :process` (the lease is still this
  process's ticket's), returning the item (`ALL_NEW`). It changes neither
  `Version` nor `Items`, the attributes joins and leaves are conditional on,
  so renewals never make them retry. A failed condition is
  [`ErrorKind::LeaseLost`]. The item it returns is the whole queue as the
  renewal left it: a holder's renewal
  ([`Queue::renew_and_read`](crate::Queue::renew_and_read)) reads it from
  there, at no extra request, to reap the dead (see
  [the living reap the dead](crate::lease#the-living-reap-the-dead)).
- **expire** (an observer removing a ticket it watched go unrenewed for a
  full lease, see [`lease`](crate::lease)): a consistent `GetItem`, then,
  if the ticket is as the observer saw it, an `UpdateItem` as for a leave,
  conditional on `Version` and on `#leases.#ticket.#renewals` being the
  count the observer watched: a renewal that lands in between wins.
- **tally add**: one `UpdateItem`, `SET #type = :tally ADD #value :n,
  #version :one`, under `attribute_not_exists(#id) OR (#type = :tally AND
  <Value and Version are numbers> AND #value BETWEEN :low AND :high AND
  <Version can grow>)`, returning the new item (`ALL_NEW`). DynamoDB's
  numbers have 38 digits, so the bounds are what keeps the sum in `i64`:
  for `n >= 0` they are `i64::MIN` and `i64::MAX - n`, for `n < 0`
  `i64::MIN - n` and `i64::MAX`. An add that would leave the range fails the
  condition and is reported as [`ErrorKind::InvalidInput`], never wrapped
  and never retried.
- **remove**: one `DeleteItem` under a type condition, returning the old item
  (`ALL_OLD`).
- **claim** (claim pools, see the `claim` module): a consistent `GetItem`;
  the pool's rule (`claim/state.rs`) picks the first free candidate; one
  `UpdateItem` conditional on `#version = :expected` sets `Version` (+1 per
  claim made) and `#claims.#name` for each claim made, and `REMOVE`s the
  entries of the waiting claimers it served; the write that seals a pool
  also sets `#members = :members`. A claimer that lost the race
  first writes its request into `Waiting` (`SET #waiting.#me`, which leaves
  `Version` alone), so that the next writer serves it. A claim refused by
  the pool's rule (every candidate taken, a full roster) costs the
  `GetItem` alone.
- **claim release** and **expiry**: `REMOVE #claims.#name ADD #version :one`,
  conditional on the claim (its owner and token; for an expiry also its
  renewals and lease) rather than on `Version`, so a claim of another owner
  in between does not make them retry; `ADD` keeps the token exact.
- **claim renew**: as a queue's renew, on `#claims.#name.#renewals`,
  conditional on `#claims.#name.#owner`; it returns the pool, as a
  queue's renew returns the queue.
- **document compare-and-set**: one `UpdateItem` that sets `Type`, `Version`
  (the version read + 1) and `Body` under `#type = :document AND #version =
  :expected` (or `attribute_not_exists(#id)` for version 0); removal under
  the same condition `REMOVE`s `Body` instead. A failed condition is
  [`CasOutcome::Conflict`](crate::CasOutcome) with the document it returned:
  no other request. The update helper ([`DocumentExt::update`](crate::DocumentExt::update))
  is a `GetItem` and this `UpdateItem`, and after a lost race retries under
  [`Backoff`] on the returned document (after a short wait) or a new read.
- **document remove**: one `UpdateItem`, `SET #version = #version + :one
  REMOVE #body`, under `#type = :document AND attribute_exists(#body)`.
- **reads** (`counter get`, `ticket`, `tickets`, a fresh `tally get`): one
  strongly consistent `GetItem`.
- **a waiter's check** (a queue's or claim pool's token, a document's
  version: `token()`, `version()`): one strongly consistent `GetItem` with
  the projection `#type, #version`. DynamoDB cannot push, so waiters poll
  this every poll interval (see the `change` module) and read the item only
  when it changed. A stale `tally get` is one eventually
  consistent `GetItem`, at half the read capacity; it may miss the latest
  adds (usually by well under a second) but never returns a value the item
  did not hold.

When a condition fails, the request asks for the item as it was
(`ReturnValuesOnConditionCheckFailure=ALL_OLD`), so the store can tell a
lost race from a wrong type without another request: a queue where a counter
was expected (or the reverse) is [`ErrorKind::WrongType`],
an unreadable item is [`ErrorKind::Corrupt`], and
a lost race is retried after a randomized, exponentially growing delay
([`Backoff`]), up to a bounded budget, then
[`ErrorKind::Conflict`]. A retry after a short
delay writes on the returned item with no read; after a longer delay (the
item has likely changed again) or from a server that does not return the
item, it reads the item first.

Requests per operation, once the table exists and without contention:

| operation | requests |
|---|---|
| `counter get` | 1 `GetItem` |
| `counter next` | 1 `UpdateItem` |
| `counter remove` | 1 `DeleteItem` |
| `queue join` | 2: `GetItem`, `UpdateItem`; 1 if already in the queue |
| `queue leave` | 2: `GetItem`, `UpdateItem` |
| `queue ticket`, `queue tickets` | 1 `GetItem` |
| a waiter's check of a queue's or pool's token, a document's version | 1 `GetItem` of `Type` and `Version` alone |
| `queue remove` | 1 `DeleteItem` |
| `queue join` with a lease | 2: `GetItem`, `UpdateItem` |
| `queue renew` | 1 `UpdateItem` |
| `queue expire` | 2: `GetItem`, `UpdateItem` |
| document read, or a cached reader's check | 1 `GetItem` (strongly consistent) |
| document compare-and-set, remove | 1 `UpdateItem` |
| document update | 2: `GetItem`, `UpdateItem` |
| `tally add` | 1 `UpdateItem` |
| `tally get` | 1 `GetItem` (consistent; eventually consistent when stale) |
| `tally remove` | 1 `DeleteItem` |
| claim | 2: `GetItem`, `UpdateItem`; 1 if the owner holds a claim or every candidate is taken; after a lost race one more `UpdateItem` to wait in the pool, then one per attempt |
| claim release | 2: `GetItem`, `UpdateItem` (conditional on the claim, not the version) |
| claim renew, expire | 1 `UpdateItem` |
| claim of an owner, claim list | 1 `GetItem` |
| claim pool remove | 1 `DeleteItem` |

A read costs read units by the size of the whole item (one per 4 KB,
strongly consistent), projection or not, so a waiter or watcher checking
every second costs one `GetItem` per second: 1 read unit for an item up to
4 KB, 88 for one of 350 KB (the README prices this). Its check projects the
version alone, which saves the transfer and decoding of the item, not read
units; a second item holding only the version would, but would need every
write to be a two-item transaction (twice the write units), which is not
done. A large document
under contention costs its size in write units on every attempt, including
the failed ones (a failed condition is charged as a write), so frequently
updated documents are best kept small.

Each lost race adds one `UpdateItem`, and a `GetItem` when the retry waited
long or the server did not return the item.

# Faults

The SDK retries throttling and transient errors (connection refused or
reset, timeouts, HTTP 5xx) up to [`SDK_MAX_ATTEMPTS`] times with its standard
exponential backoff; connecting may take [`CONNECT_TIMEOUT`], one attempt
[`ATTEMPT_TIMEOUT`], one request with its retries [`OPERATION_TIMEOUT`].
Then the error is one line naming the table and operation:
[`Unavailable`](crate::ErrorKind::Unavailable),
[`Throttled`](crate::ErrorKind::Throttled),
[`PermissionDenied`](crate::ErrorKind::PermissionDenied), or
[`Config`](crate::ErrorKind::Config) for missing credentials or table.

A write whose answer was lost may be retried by the SDK after it was applied.
For `join` that is harmless (the retry finds the process in the queue and
returns its ticket); a `counter next` may then skip a value (never repeat
one), and a `leave` may report NotFound for a process that did leave.

# Configuration

Credentials come from the standard AWS chain (environment, profile, SSO,
web identity, container or instance role). The region is the one given, else
the chain's (`AWS_REGION`, the profile; instance metadata only when neither
sets one), else [`DEFAULT_REGION`] as in monotone 0.4. The endpoint is the
one given, else `AWS_ENDPOINT_URL` (or the profile's `endpoint_url`), else
the region's; set it for DynamoDB Local and other compatible servers.

[`ErrorKind::LeaseLost`]: crate::ErrorKind::LeaseLost
[`ErrorKind::InvalidInput`]: crate::ErrorKind::InvalidInput
[`ErrorKind::WrongType`]: crate::ErrorKind::WrongType
[`ErrorKind::Corrupt`]: crate::ErrorKind::Corrupt
[`ErrorKind::Conflict`]: crate::ErrorKind::Conflict
*/

// The files of this module:
// - here: `impl Store for DynamoDbStore`, which hands out the handles, and
//   the public re-exports;
// - store.rs: DynamoDbStore itself: the table, the retry budget of writes
//   that lose a race, the removal of a versioned item;
// - one file per kind of item: counter.rs, queue.rs, document.rs, tally.rs,
//   claim.rs;
// - schema.rs: the attributes, expressions and their encoding; table.rs:
//   the requests, and creating the table; config.rs: DynamoDbConfig;
//   error.rs: the SDK's errors mapped to ErrorKinds.

mod claim;
pub(crate) mod config;
mod counter;
mod document;
mod error;
mod queue;
mod schema;
pub(crate) mod store;
mod table;
mod tally;

pub use self::claim::DynamoDbClaimPool;
pub use self::config::{
    DynamoDbConfig, ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_REGION, DEFAULT_TABLE,
    OPERATION_TIMEOUT, SDK_MAX_ATTEMPTS,
};
pub use self::counter::DynamoDbCounter;
pub use self::document::DynamoDbDocument;
pub use self::queue::DynamoDbQueue;
pub use self::store::DynamoDbStore;
pub use self::table::{create_table_command, TABLE_ACTIVE_TIMEOUT};
pub use self::tally::DynamoDbTally;
pub use crate::backoff::Backoff;

use crate::claim::ClaimPool;
use crate::counter::Counter;
use crate::document::Document;
use crate::error::Result;
use crate::queue::Queue;
use crate::store::{Location, Store};
use crate::tally::Tally;
use crate::validate;

impl Store for DynamoDbStore {
    fn counter(&self, id: &str) -> Result<Box<dyn Counter>> {
        validate::id(id)?;
        Ok(Box::new(DynamoDbCounter {
            store: self.clone(),
            id: id.to_owned(),
        }))
    }

    fn queue(&self, id: &str) -> Result<Box<dyn Queue>> {
        validate::id(id)?;
        Ok(Box::new(DynamoDbQueue {
            store: self.clone(),
            id: id.to_owned(),
        }))
    }

    fn document(&self, id: &str) -> Result<Box<dyn Document>> {
        validate::id(id)?;
        Ok(Box::new(DynamoDbDocument {
            store: self.clone(),
            id: id.to_owned(),
        }))
    }

    fn tally(&self, id: &str) -> Result<Box<dyn Tally>> {
        validate::id(id)?;
        Ok(Box::new(DynamoDbTally {
            store: self.clone(),
            id: id.to_owned(),
        }))
    }

    fn claim_pool(&self, id: &str) -> Result<Box<dyn ClaimPool>> {
        validate::id(id)?;
        Ok(Box::new(DynamoDbClaimPool {
            store: self.clone(),
            id: id.to_owned(),
        }))
    }

    fn location(&self) -> Location {
        Location::DynamoDb {
            region: self.inner.table.region.clone(),
            table: self.inner.table.name.clone(),
            endpoint: self.inner.table.endpoint.clone(),
        }
    }
}
