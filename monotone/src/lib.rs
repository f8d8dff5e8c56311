/*!
Atomic counters, queues, tallies and shared JSON documents for configuration
management in distributed systems.

monotone hands out numbers that are never repeated and places in queues that
every participant agrees on, from a store shared by the whole cluster. Every
write to a queue yields a [`FencingToken`] that grows by one, so other
systems can refuse a request made from a stale view of the queue. A
[`Document`] is one JSON value shared under an id, with a version that grows
by one with every write: read it fresh, write it conditional on the version
read ([`DocumentExt::update`] retries for you), read it from a
[`CachedDocument`] with a maximum staleness, or follow its [`Changes`].
Tallies are signed sums that many processes add to, up and down, with no
update ever lost: quotas, capacity pools, gauges.
A [`ClaimPool`] hands out names from a list or a range: each owner gets
the first free one, keeps it, and gives it back for the next.

Typical uses: picking a unique ZooKeeper `myid` for each node of a new
cluster, numbering builds or releases, electing the head of a queue as leader.

# Stores

A [`Store`] is opened from a URL with [`open`]:

| URL | store | shared between |
|---|---|---|
| `memory:` | [`MemoryStore`] | tasks and threads of one process |
| `sqlite:PATH` | [`SqliteStore`] | processes on one host |
| `dynamodb://TABLE?region=R&endpoint=URL` | `DynamoDbStore` (cargo feature `aws`) | hosts anywhere |
| `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` | `EtcdStore` (cargo feature `etcd`) | the hosts that reach the etcd cluster |

Each holds counters, queues, documents, tallies and claim pools under
string ids; one id holds one kind of item. The contracts every store keeps
are documented on [`Counter`], [`Queue`], [`Document`], [`Tally`] and
[`ClaimPool`], and a shared conformance suite checks each store against
them.

# Waiting

Everything that waits ([`wait_for_position`], [`wait_for_claim`],
[`Changes`], the holders) waits on one capability of the queue, claim pool
or document handle: `wait_for_change(seen, until, poll)`, "tell me when
this item's version is no longer `seen`, or when `until` passes". The
memory store and the SQLite store on Linux push (the SQLite store learns
of every commit to its file, from any process, through the kernel's file
notifications); DynamoDB polls the version alone every `poll`. Each handle
says which with `pushes()`; see [`WaitOptions`] for when a waiter reads and
what it costs.

# Leases

A ticket may be joined with a lease: it stays only while its holder renews
it, so a leader or lock holder that dies is replaced. A [`LeaseHolder`]
joins, renews in the background and says when the lease can no longer be
counted on; [`wait_for_position`] waits for a place among the first N,
removing expired tickets ahead. The protocol, and why it is safe when hosts'
clocks disagree, is in the [`lease`] module.

```
use std::sync::Arc;
use std::time::Duration;
use monotone::{HolderOptions, LeaseHolder, Queue, Tags, WaitOptions};

# #[tokio::main(flavor = "current_thread")]
# async fn main() -> monotone::Result<()> {
let store = monotone::open("memory:").await?;
let queue: Arc<dyn Queue> = Arc::from(store.queue("leader")?);
let holder = LeaseHolder::join(queue, "host-a", Tags::new(), Duration::from_secs(15), HolderOptions::new()).await?;
let head = holder.wait_for_position(1, &WaitOptions::new()).await?;
// Lead, handing `head.fencing_token` to whatever we write to, until
// `holder.lost()` completes; then stop at once.
assert_eq!(head.fencing_token.get(), 1);
holder.release().await?;
# Ok(())
# }
```

# Claims

A claim pool gives each owner the first candidate no one holds, in the
order given; the same owner gets the same claim again, and a released name
goes to the next claimer. Claims are permanent, or leased and held by a
[`ClaimHolder`] (which renews them as a [`LeaseHolder`] renews a ticket).

```
use monotone::Candidates;

# #[tokio::main(flavor = "current_thread")]
# async fn main() -> monotone::Result<()> {
let store = monotone::open("memory:").await?;
let myids = store.claim_pool("myzkcluster")?;
let ids = Candidates::range(1..=255)?;
assert_eq!(myids.claim("zk-a", &ids).await?.value.name, "1");
assert_eq!(myids.claim("zk-b", &ids).await?.value.name, "2");
assert_eq!(myids.claim("zk-a", &ids).await?.value.name, "1", "the same again");
let released = myids.release("zk-a").await?;
assert_eq!(released.fencing_token.get(), 3);
assert_eq!(myids.claim("zk-c", &ids).await?.value.name, "1", "reused");
# Ok(())
# }
```

# Example

```
use monotone::Tags;

# #[tokio::main(flavor = "current_thread")]
# async fn main() -> monotone::Result<()> {
let store = monotone::open("memory:").await?;

let counter = store.counter("builds")?;
assert_eq!(counter.get().await?, 0);
assert_eq!(counter.next().await?, 1);

let queue = store.queue("myzkcluster")?;
let joined = queue.join("zk-a.example.com", Tags::new()).await?;
assert_eq!(joined.value.counter, 1); // use as this node's myid
assert_eq!(joined.value.position, 0);
assert_eq!(joined.fencing_token.get(), 1);

use monotone::DocumentExt;
use serde_json::json;
let config = store.document("agent-config")?;
assert_eq!(config.write(0, &json!({"processes": ["sshd", "cron"]})).await?, 1);
let updated = config
    .update(|v| {
        let mut v = v.cloned().unwrap_or_default();
        v["interval"] = json!(5);
        Ok(Some(v))
    })
    .await?;
assert_eq!(updated.version, 2);
// A write on a version someone else has written since fails.
let err = config.write(1, &json!({})).await.unwrap_err();
assert_eq!(err.kind(), monotone::ErrorKind::VersionMismatch);

let quota = store.tally("gpu-hours")?;
assert_eq!(quota.add(10).await?.value, 10);
assert_eq!(quota.add(-3).await?.value, 7);
let now = quota.get(monotone::Freshness::Fresh).await?;
assert_eq!((now.value, now.version), (7, 2));
# Ok(())
# }
```

# Features

- `aws`: the DynamoDB store (module `dynamodb`), through the official AWS
  SDK for Rust.
- `etcd`: the etcd store (module `etcd`), through the `etcd-client` crate
  (gRPC); building it needs `protoc` (Debian's `protobuf-compiler`).
*/
#![warn(missing_docs)]

// Each module's own docs (its `mod.rs`) say what it owns: `queue/`,
// `claim/` and `document/` a primitive each; `lease/` leases and the one
// holder of leased records; `change.rs` waiting for an item to change
// (push or poll), which every waiter uses; `store/` the `Store` trait,
// `open()` and the backends. Inside the crate, every file imports an item from the file that
// defines it; the re-exports below are for the outside only
// (scripts/check_imports.py refuses import circles).
mod backoff;
mod change;
mod claim;
mod counter;
mod document;
mod error;
pub mod lease;
mod queue;
mod store;
mod tally;
mod validate;

// The backends live under `store/`; their public modules keep their paths.
#[cfg(feature = "aws")]
pub use store::dynamodb;
#[cfg(feature = "etcd")]
pub use store::etcd;
pub use store::memory;
pub use store::sqlite;

pub use backoff::Backoff;
pub use claim::candidates::{Candidates, MAX_CANDIDATES, MAX_NAME_BYTES};
pub use claim::holder::ClaimHolder;
pub use claim::wait::{wait_for_claim, wait_for_claim_as, wait_for_roster};
pub use claim::{Claim, ClaimPool, ClaimRequest, Claimed, Roster};
pub use counter::Counter;
pub use document::cache::{CacheOptions, CachedDocument, DEFAULT_MAX_STALENESS};
pub use document::changes::{Change, Changes, DEFAULT_POLL_INTERVAL};
pub use document::state::{Diff, Modified, MAX_DOCUMENT_BYTES};
pub use document::{CasOutcome, Document, DocumentExt, Snapshot};
pub use error::{Error, ErrorKind, Result};
pub use lease::keeper::{HolderOptions, LeaseStatus};
pub use queue::fencing::{Fenced, FencingToken};
pub use queue::holder::LeaseHolder;
pub use queue::ticket::{JoinRequest, Joined, Tags, Ticket};
pub use queue::wait::{
    wait_for_position, wait_for_tickets, WaitOptions, DEFAULT_MAX_POLL, DEFAULT_MIN_POLL,
};
pub use queue::Queue;
pub use store::open::open;
pub use store::{Location, Store};
pub use tally::{Freshness, Tally, TallyReading};
pub use validate::{MAX_ID_BYTES, MAX_TAGS, MAX_TAG_KEY_BYTES, MAX_TAG_VALUE_BYTES};

// Documented in their public modules (`lease`, `memory`, `sqlite`,
// `dynamodb`, `etcd`); here they are plain re-exports, as they have always been.
#[cfg(feature = "aws")]
#[doc(no_inline)]
pub use dynamodb::{DynamoDbConfig, DynamoDbStore};
#[cfg(feature = "etcd")]
#[doc(no_inline)]
pub use etcd::{EtcdConfig, EtcdStore};
#[doc(no_inline)]
pub use lease::{Expired, HolderId, KeepAlive, Lease, LeaseWatch, Leased};
#[doc(no_inline)]
pub use memory::MemoryStore;
#[doc(no_inline)]
pub use sqlite::{SqliteOptions, SqliteStore};
