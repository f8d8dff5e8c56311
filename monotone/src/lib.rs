/*!
Atomic counters and queues for configuration management in distributed
systems.

monotone hands out numbers that are never repeated and places in queues that
every participant agrees on, from a store shared by the whole cluster. Every
write to a queue yields a [`FencingToken`] that grows by one, so other
systems can refuse a request made from a stale view of the queue. Tallies
are signed sums that many processes add to, up and down, with no update
ever lost: quotas, capacity pools, gauges.

Typical uses: picking a unique ZooKeeper `myid` for each node of a new
cluster, numbering builds or releases, electing the head of a queue as leader.

# Stores

A [`Store`] is opened from a URL with [`open`]:

| URL | store | shared between |
|---|---|---|
| `memory:` | [`MemoryStore`] | tasks and threads of one process |
| `sqlite:PATH` | [`SqliteStore`] | processes on one host |
| `dynamodb://TABLE?region=R&endpoint=URL` | `DynamoDbStore` (cargo feature `aws`) | hosts anywhere |

Each holds counters, queues and tallies under string ids; one id holds one
kind of item. The contracts every store keeps are documented on [`Counter`],
[`Queue`] and [`Tally`], and a shared conformance suite checks each store
against them.

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
*/
#![warn(missing_docs)]

mod counter;
#[cfg(feature = "aws")]
pub mod dynamodb;
mod error;
mod item_type;
pub mod memory;
mod queue;
pub mod sqlite;
mod state;
mod store;
mod tally;
mod validate;

pub use counter::Counter;
#[cfg(feature = "aws")]
pub use dynamodb::{DynamoDbConfig, DynamoDbStore};
pub use error::{Error, ErrorKind, Result};
pub use memory::MemoryStore;
pub use queue::{Fenced, FencingToken, Queue, Tags, Ticket};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{open, Location, Store};
pub use tally::{Freshness, Tally, TallyReading};
pub use validate::{MAX_ID_BYTES, MAX_TAGS, MAX_TAG_KEY_BYTES, MAX_TAG_VALUE_BYTES};
