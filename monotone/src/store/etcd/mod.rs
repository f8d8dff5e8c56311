/*!
The etcd store (cargo feature `etcd`): counters, queues, documents, tallies
and claim pools in an etcd v3 cluster, through the `etcd-client` crate.

```no_run
# #[tokio::main(flavor = "current_thread")]
# async fn main() -> monotone::Result<()> {
use monotone::etcd::{EtcdConfig, EtcdStore};
use monotone::Store;

let store = EtcdStore::connect(EtcdConfig::new(["10.0.0.1:2379", "10.0.0.2:2379"])).await?;
let myid = store.counter("myzk-myid")?.next().await?;
// or, from a URL:
let store = monotone::open("etcd://10.0.0.1:2379,10.0.0.2:2379/monotone/").await?;
# Ok(())
# }
```

# The URL

`etcd://HOST:PORT[,HOST:PORT...][/PREFIX][?OPTION=VALUE&...]`: the members
to talk to (requests go to any that answers), and the prefix every key of
the store starts with (default `monotone/`; a `/` is added if it does not
end with one). Without hosts (`etcd:///PREFIX`) the endpoints are
etcdctl's: `ETCDCTL_ENDPOINTS`, else `127.0.0.1:2379`. Options (each
overrides the etcdctl variable named beside it):

| option | etcdctl's variable | meaning |
|---|---|---|
| `ca=PATH` | `ETCDCTL_CACERT` | speak TLS, trusting the CA certificates in this PEM file |
| `cert=PATH`, `key=PATH` | `ETCDCTL_CERT`, `ETCDCTL_KEY` | the client certificate and its key (for `--client-cert-auth` clusters) |
| `user=NAME` | `ETCDCTL_USER` (`NAME` or `NAME:PASSWORD`) | authenticate as this user |
| `password_file=PATH` | `ETCDCTL_PASSWORD` | the user's password (a password in the URL is refused: command lines and logs show URLs) |
| `connect_timeout_ms=N` | | connecting to one member (default 3,000) |
| `request_timeout_ms=N` | | one request (default 5,000) |
| `timeout_ms=N` | | one operation, with its retries on other members (default 20,000) |

# The keys

Every item is the key `PREFIX + ID` (its record), plus, for a queue or a
claim pool with leases, one key per leased ticket or claim,
`PREFIX + ID + "\0lease/COUNTER"` or `PREFIX + ID + "\0claim/NAME"`. Ids
hold no control characters, so an item's keys are exactly the range from
`PREFIX + ID` to `PREFIX + ID + "\x01"`: one `Range` reads it whole, one
watch sees every change. Values are compact JSON, `"type"` first:

| type | record | fencing token |
|---|---|---|
| `COUNTER` | `{"type":"COUNTER","request":ID}` | none; the value is the key's etcd `version` |
| `QUEUE` | `{"type":"QUEUE","version":N,"value":LAST,"items":[{"process_id","counter","tags"}],"request":ID}` | `version`: one more with every join, leave and expiry |
| `DOCUMENT` | `{"type":"DOCUMENT","version":N,"body":VALUE,"request":ID}`, no `body` once removed | `version`: one more with every write and removal |
| `TALLY` | `{"type":"TALLY","value":SUM,"version":N,"request":ID}` | `version`: the number of adds |
| `CLAIMS` | `{"type":"CLAIMS","version":N,"members":N,"claims":{NAME:{"owner","index","token","tags"}},"request":ID}` (`members` only in a pool sealed at a roster, by the claim that sealed it; `tags` only when the claim has some) | `version`: one more with every claim, release and expiry |
| `LEASE` (a lease key) | `{"type":"LEASE","holder":ID,"lease_ms":N,"holder_id":H,"renewed_at_ms":T}`: `holder` is the ticket's process or the claim's owner, `holder_id` the [`HolderId`](crate::HolderId) of the `LeaseHolder` or `ClaimHolder` that made it (absent without one) | the renewal count is the key's `version` less one |

`request` is the random id of the operation that wrote the record, by
which a write whose answer was lost is recognised (see below). A key under
the prefix whose value is not one of these is reported (exit code 8) and
never written over.

# Requests

Every write is one transaction (`Txn`) conditional on what it was planned
on, and a transaction that loses a race returns the item as it now is (its
failure branch reads it), so a lost race costs one request, not two:

| operation | requests |
|---|---|
| `counter next` | 1 `Txn` (a put returning the previous version), plus, in a process that has seen no revision in the last second, 1 `Range` served by one member without consensus (the lower bound of the lookup below) |
| `counter get`, `counter rm` | 1 `Range`; 1 `Txn` |
| `tally add`, `queue join`, `queue leave`, `doc set`, `doc patch`, `claim`, `claim release` | 2: a `Range` of the item, then a `Txn` conditional on its `mod_revision` (1 `Range` only when there is nothing to write: a join again, a full pool) |
| `tally get`, `queue get`, `queue list`, `doc get`, `claim list`, `claim get` | 1 `Range` (`tally get --stale`: served by one member without consensus) |
| renewal of a lease (`LeaseHolder`, `lock`, `claim --ttl`) | 1 `Txn`, whose read of the whole item is what the holder reaps the dead from (a shell's `queue renew`: 2 `Range`s more, the command's read of the ticket and the lease's duration, which a new process does not know) |
| removing an expired ticket or claim | 1 `Range`, 1 `Txn` |
| a wait (`queue wait`, `lock`, `claim --timeout`, `doc watch`) | 1 `Watch` of the record key from the revision of the last read, and 1 `Range` of the item per change of its token; 1 `Range` of the record alone per poll interval (the safety check, see below); a waiter behind leased tickets or claims also reads the item at each look at their leases |

# Leases

A leased ticket or claim keeps its lease in a key of its own, renewed by a
put that needs no read and never touches the record, so renewals neither
change the fencing token nor make anyone's join, leave or claim retry.
Expiry follows monotone's observer-timed protocol (see
[`lease`](crate::lease)): a waiter removes a ticket only after watching it
go unrenewed for a full lease on its own clock, with a transaction
conditional on the record and on the lease key's version.

etcd's own leases are not used for tickets and claims, for two reasons:

- When an etcd lease expires, etcd deletes its keys itself: no transaction
  of monotone's runs, so the queue's record would keep the ticket and the
  fencing token would not grow. A removal must be a write that grows the
  token, so that the next holder's token is larger than any the dead
  holder saw.
- etcd lease TTLs are whole seconds, at least the cluster's minimum TTL
  (1.5 election timeouts, 2 s with default settings); monotone's leases are
  milliseconds, down to 50 ms.

So etcd's clock never decides a removal, and the safety argument is the one
of every store: the holder gives up at 9/10 of its lease, the observer
removes after a full one, measured by each on its own monotonic clock.

# Waiting

Queues, claim pools and documents push (`pushes()` is true): their
`wait_for_change` (the capability of the `change` module, under every
waiter) is an etcd watch of the item's record key from the revision of the
handle's last read at the version seen, so the server pushes each write of
the record and the waiter reads the item at once. `token()` and
`version()` read the record key alone. A renewal writes only its lease key,
so it wakes no one, as the capability asks; a waiter that watches leases
reads the item at its next look at them, as on every store.

Every poll interval the waiter also reads the version (one `Range` of the
record key), the safety check the capability asks of a store that pushes:
a member cut off from the rest of its cluster keeps its watches open but
silent, and that read, which needs a quorum, finds the change (or fails)
instead. A watch that finds its revision compacted away, is canceled or
breaks makes the waiter read afresh: the latest state is never skipped.

# Writes whose answer is lost

A member that dies with a write in hand leaves its outcome unknown; it may
still be applied later. monotone never applies such a write twice and
never reports one that did not land:

- A conditional write is sent again as it was: its condition lets at most
  one copy apply. If the copy's condition fails, the first write after the
  revision it was based on is looked up in the key's history (a watch from
  that revision): it is this operation's if it carries its request id.
- `counter next` is a blind put: its lost copy is first made impossible
  (its condition says that the key `\0fence/ID` does not exist, and that key
  is written), then the key's history since a revision older than the put
  is searched for its id. Found: that version is the value. Not found: the
  put never applied and never will, and it is sent again.

So 8 processes calling `counter next` 50 times each while the member they
talk to is killed get every value from 1 to 400 exactly once, and no command
fails (`monotone/tests/etcd_processes.rs`). Only if the cluster compacts
that history away within the seconds of the failover is the outcome
unknowable: the operation fails with exit code 6 and says so.

# Faults

| fault | what happens |
|---|---|
| a member is down | requests go to the others |
| every member is down | reads and writes retry (20 ms, doubling to 1 s) until the operation's timeout (20 s), then exit code 6 |
| a watch's start revision was compacted | the waiter reads afresh and watches from there |
| the network cuts a lock's holder off | renewals fail; its command is killed 9/10 of a lease after its last renewal, before any waiter can remove its ticket |
| wrong user or password, no permission on the prefix | exit code 7 |
| a key under the prefix that is not monotone's | exit code 8, the key untouched |
*/

pub(crate) mod claim;
pub(crate) mod config;
pub(crate) mod counter;
pub(crate) mod document;
pub(crate) mod error;
pub(crate) mod item;
pub(crate) mod layout;
pub(crate) mod leased;
pub(crate) mod queue;
pub(crate) mod store;
pub(crate) mod tally;
pub(crate) mod watch;

pub use self::claim::EtcdClaimPool;
pub use self::config::{
    EtcdConfig, EtcdTls, CONNECT_TIMEOUT, DEFAULT_ENDPOINT, DEFAULT_PREFIX, OPERATION_TIMEOUT,
    REQUEST_TIMEOUT,
};
pub use self::counter::EtcdCounter;
pub use self::document::EtcdDocument;
pub use self::queue::EtcdQueue;
pub use self::store::EtcdStore;
pub use self::tally::EtcdTally;

use crate::claim::ClaimPool;
use crate::counter::Counter;
use crate::document::Document;
use crate::error::Result;
use crate::queue::Queue;
use crate::store::{Location, Store};
use crate::tally::Tally;
use crate::validate;

impl Store for EtcdStore {
    fn counter(&self, id: &str) -> Result<Box<dyn Counter>> {
        validate::id(id)?;
        Ok(Box::new(EtcdCounter::new(self, id)))
    }

    fn queue(&self, id: &str) -> Result<Box<dyn Queue>> {
        validate::id(id)?;
        Ok(Box::new(EtcdQueue::new(self, id)))
    }

    fn document(&self, id: &str) -> Result<Box<dyn Document>> {
        validate::id(id)?;
        Ok(Box::new(EtcdDocument::new(self, id)))
    }

    fn tally(&self, id: &str) -> Result<Box<dyn Tally>> {
        validate::id(id)?;
        Ok(Box::new(EtcdTally::new(self, id)))
    }

    fn claim_pool(&self, id: &str) -> Result<Box<dyn ClaimPool>> {
        validate::id(id)?;
        Ok(Box::new(EtcdClaimPool::new(self, id)))
    }

    fn location(&self) -> Location {
        let config = self.config();
        Location::Etcd {
            endpoints: config.endpoints.clone(),
            prefix: config.prefix.clone(),
            url: config.url(),
        }
    }
}
