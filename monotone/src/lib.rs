/*!
Atomic counters and queues for configuration management in distributed
systems.

monotone hands out numbers that are never repeated and places in queues that
every participant agrees on, from a store shared by the whole cluster. Every
write to a queue yields a [`FencingToken`] that grows by one, so other
systems can refuse a request made from a stale view of the queue.

Typical uses: picking a unique ZooKeeper `myid` for each node of a new
cluster, numbering builds or releases, electing the head of a queue as leader.

# Stores

A [`Store`] is opened from a URL with [`open`]:

| URL | store | shared between |
|---|---|---|
| `memory:` | [`MemoryStore`] | tasks and threads of one process |
| `sqlite:PATH` | [`SqliteStore`] | processes on one host |
| `dynamodb://TABLE?region=R&endpoint=URL` | `DynamoDbStore` (cargo feature `aws`) | hosts anywhere |

Each holds counters and queues under string ids; one id is either a counter
or a queue. The contracts every store keeps are documented on [`Counter`]
and [`Queue`], and a shared conformance suite checks each store against them.

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
mod holder;
mod item_type;
mod keeper;
pub mod lease;
pub mod memory;
mod queue;
pub mod sqlite;
mod state;
mod store;
mod validate;
mod wait;

pub use counter::Counter;
#[cfg(feature = "aws")]
pub use dynamodb::{DynamoDbConfig, DynamoDbStore};
pub use error::{Error, ErrorKind, Result};
pub use holder::LeaseHolder;
pub use keeper::{HolderOptions, LeaseStatus};
pub use lease::{Expired, Lease, LeaseWatch, Leased};
pub use memory::MemoryStore;
pub use queue::{Fenced, FencingToken, Joined, Queue, Tags, Ticket};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{open, Location, Store};
pub use validate::{MAX_ID_BYTES, MAX_TAGS, MAX_TAG_KEY_BYTES, MAX_TAG_VALUE_BYTES};
pub use wait::{wait_for_position, WaitOptions, DEFAULT_MAX_POLL, DEFAULT_MIN_POLL};
