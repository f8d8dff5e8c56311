/*!
Leases: tickets that expire when their holder stops renewing them.

A ticket joined with a lease ([`Queue::join_leased`](crate::Queue::join_leased)) stays in its queue only
while its holder renews it. Most callers hold one through a
[`LeaseHolder`](crate::LeaseHolder), which renews in the background and says
when the lease can no longer be counted on, and wait for their turn with
[`wait_for_position`](crate::wait_for_position), which also removes the
expired tickets ahead of them. Permanent tickets (joined without a lease, as
in monotone 0.4) never expire.

The same protocol keeps the claims of a claim pool
([`ClaimHolder`](crate::ClaimHolder), [`wait_for_claim`](crate::wait_for_claim)).

# The protocol

No step relies on two hosts' wall clocks agreeing. Each process measures
time on its own monotonic clock only, and a removal is a conditional write on
what the remover saw, as in the DynamoDB Lock Client's record version number
scheme:

1. **Join.** The holder notes its monotonic time `s₀` *before* it sends the
   join. The stored ticket carries its lease duration `L` and a renewal count
   (its record version) of 0.
2. **Renew.** Every `L/3` (after a failure, sooner) the holder notes its time
   `s` and sends one write that adds one to the renewal count, conditional on
   the ticket still being its own. Renewing changes neither the fencing token
   nor anything a join or leave of another process is conditional on, so it
   never makes them retry.
3. **Holder's deadline.** After the renewal sent at `s` succeeded, the holder
   counts on its lease until `s + L − L/10` (minus any reserve it asked for,
   see [`HolderOptions`](crate::HolderOptions)). If no later renewal has
   succeeded by then, it considers the lease lost, at once and for good,
   even if a late answer says a renewal went through. A renewal that finds
   the ticket gone or changed loses the lease at once.
4. **Observer.** Any process that wants a ticket gone (a waiter behind it)
   reads the queue. For each leased ticket it remembers the renewal count and
   the monotonic time `o` at which a read that returned that count *came back*
   ([`LeaseWatch`]). Only when a later read shows the same count at a time of
   at least `o + L` may it remove the ticket, with a write conditional on the
   count (and the queue's version) being what it saw: a renewal that lands
   first makes the removal fail and restarts the watch.
5. **Fencing.** Removing an expired ticket is a write like a leave: the
   fencing token grows by one, so whoever becomes head afterwards holds a
   larger token than the removed holder ever saw.

## Why the holder always gives up first

The renewal with count `n` was sent at `s` and applied at some real time
`w ≥ s`. Any read returning count `n` was served after `w`, so an observer's
`o` (taken when that read came back) is at least `s` in real time. The
observer removes no earlier than `L` after `o` on its clock; the holder gives
up `0.9 L` after `s` on its clock. So the holder gives up first as long as
its clock does not run more than 1/0.9 ≈ 11 % slower than the observer's
over one lease. Real clocks differ by a few parts per million, so the rest of
the margin, `L/10` (1.5 s of a 15 s lease), is time for the holder's owner to
notice the loss and stop acting (kill its command, stop writing as leader).

**The assumption**: clock *rates* differ by less than 10 % between hosts, and
a holder that is paused (stopped by a debugger or SIGSTOP, a VM frozen) for
longer than its margin cannot act on its loss in time. Fencing tokens cover
that case: whatever a stale holder writes to carries a smaller token than the
new head's. Clock *offsets* do not matter at all: the wall-clock time stored
with each renewal ([`Lease::renewed_at`]) is shown, never used.

## Holders

A process id (an owner) says what holds a ticket (a claim), not which
holder: two holders may use one, such as a cron job that overlaps itself
with `lock -p "$(hostname)"`. So each [`LeaseHolder`](crate::LeaseHolder)
and [`ClaimHolder`](crate::ClaimHolder) makes a random [`HolderId`] and
stores it with its record's lease ([`Lease::holder`]). A holder's join
(claim) that finds its process id's ticket (owner's claim) made by another
holder, or by a leased join without a holder, writes nothing and gets
[`ErrorKind::Held`](crate::ErrorKind::Held); the holder then waits its turn
as an observer of that one record (steps 4 and 5): until it is released,
or until it has watched it go unrenewed for a full lease and removed it.
It waits as every waiter does (see below and the `change` module): a
release is a write, which a store that pushes tells it of at once.
So two holders never hold one record at once, and the second one's token is
larger. A holder's own request sent again finds its own record and writes
nothing, which makes a resent request (after a lost answer) harmless. A
holder gives back its record with a write conditional on the record's
identity (a ticket's counter, a claim's token), so a holder that lost its
lease never removes the record of the holder after it. The rule for joins
and claims without a holder (idempotent when they ask for the record that is
there, [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch) otherwise) is on
[`Queue`](crate::Queue) and [`ClaimPool`](crate::ClaimPool).

## Kernel liveness (the embedded store)

On one host the kernel knows which process is alive, so on the SQLite
store (on Linux and Android) a dead holder's record does not wait for its
lease:

1. **Sign of life.** Before the write that makes its ticket or claim
   visible, a holder ([`LeaseHolder`](crate::LeaseHolder),
   [`ClaimHolder`](crate::ClaimHolder): `lock`, `claim ... -- CMD`) takes a
   [`KeepAlive`]: a shared open file description lock (`F_OFD_SETLK`) on
   the byte at the offset of its [`HolderId`] in `<db>-live` beside the
   database, through a descriptor of its own, close-on-exec. It keeps it
   until it has given the record back. The kernel frees the lock when the
   last descriptor of that description closes, however the process ended
   (SIGKILL too). A holder that cannot take it fails before it writes
   anything, so every record with a holder id in the file has had one. (A
   join or claim with a holder id whose handle took none, such as a
   wrapper of the store's handles that does not pass
   [`Queue::keep_alive`](crate::Queue::keep_alive) on, gets one from the
   store itself, held for as long as that store lives in that process.)
2. **Who checks.** Whoever reads records for a decision or a display (a
   waiter, a claimer, a list: [`Queue::tickets`](crate::Queue::tickets),
   [`Queue::ticket`](crate::Queue::ticket),
   [`ClaimPool::claims`](crate::ClaimPool::claims),
   [`ClaimPool::claim_of`](crate::ClaimPool::claim_of), and every claim)
   asks the kernel (`F_OFD_GETLK`, one system call per leased record with a
   holder) whether anyone holds that byte. If no one does, the holder is
   gone: the reader removes the record at once, with the write of an
   expiry (conditional on the record being as read: same counter or token,
   same renewals, and so the same holder; the fencing token grows by one).
   A claimer counts such a name as free.
3. **Push.** The last close of a holder's descriptor is reported by inotify
   as `IN_CLOSE_WRITE` on `<db>-live`; the file's watch wakes every waiter
   of the store, which reads its item again (a hint only: it is the lock
   that decides).
4. **Commands.** `lock` and `claim ... -- CMD` run the command under a
   guard process (the CLI's `group.rs`) that takes a sign of life of the
   same holder, so the record outlives a SIGKILLed `monotone` until the
   guard has sent SIGKILL to the command's whole process group (itself
   included): a process with SIGKILL pending runs no more of its own code,
   so nothing of the command acts after the record may go.

This needs no clock at all, and no observer must watch a full lease. Records
without a holder id (a leased `queue join` from a shell, joins of older
binaries) keep the lease rules above, as do all records on the other stores
and on systems without OFD locks (there, `RUST_LOG=monotone=debug` says so
once).

## The living reap the dead

A waiter removes the dead ahead of it; nothing in the rules above removes
a dead holder's record that no one waits behind (the last ticket of a
queue, a claim). So every holder is an observer too, of every record of
its item:

1. **Read with the renewal.** A holder's renewal (step 2) also reads the
   whole item, as the renewal left it
   ([`Queue::renew_and_read`](crate::Queue::renew_and_read),
   [`ClaimPool::renew_and_read`](crate::ClaimPool::renew_and_read)): on
   DynamoDB the renewal's `UpdateItem` returns the item (`ALL_NEW`), on
   etcd the renewal's transaction reads it, in memory the renewal's hold of
   the lock does, on SQLite a pool's renewal transaction (which reads the
   pool's rows anyway) does: one request, as before. A queue on SQLite is
   read in a read transaction after the renewal's, so that the file's
   write lock is never held while a long queue is read (a write there
   reads one ticket's rows only).
2. **Watch.** The holder's renewal loop keeps one [`LeaseWatch`] across
   its renewals and feeds it the others' records of each read with the
   time that read came back: the observer's rule of step 4, on the
   holder's own monotonic clock, so it is as safe against skewed clocks as
   a waiter's. Its own record it leaves out: it never removes it.
3. **Remove.** A record the watch finds unrenewed for a full lease is
   removed with the store's expiry (step 5: conditional on the record as
   seen; a renewal that lands first wins; the fencing token grows by one).
   Several living holders may try at once: one removal lands, the others
   find the record changed and write nothing. A removal that fails is
   logged (`RUST_LOG=monotone=debug`) and forgotten, and removals stop at
   the time of the next renewal: reaping never delays a renewal, and never
   costs the holder its lease.

**Bound.** A holder that died after its last renewal landed at time `w`
is seen with that renewal count by each living holder's next renewal,
within one renewal interval `I` (`L/3` by default) of `w`, and removed by
the first of its renewals at least `L` after that sighting on its own
clock: about `w + L + I` (plus the requests' time), while any other holder
of the item lives, without anyone waiting. On SQLite kernel liveness
usually removes it sooner (a waiter or a list, at once).

## What an observer costs

A waiter reads the queue when its token changes and, while tickets ahead
of it are leased, once per poll interval (a quarter of the shortest lease,
see [`WaitOptions`](crate::WaitOptions)), whether the store pushes changes or
not: a renewal changes no token, so only reading tells a renewed lease from
an abandoned one. When a ticket ahead of it has been seen unrenewed for a
full lease, it writes once to remove it. A dead holder's ticket is removed
at most one lease plus one poll interval after the holder's last renewal was
first seen, and the waiter wakes at exactly the moment that ticket could
expire rather than a whole poll past it.
*/

// The files of this module:
// - again.rs: the re-join rule (what a join or claim finds where its process
//   or owner has a record already), which the queue's and the pool's rules
//   apply;
// - alive.rs: KeepAlive, a holder's sign of life kept by the kernel;
// - holder_id.rs: HolderId, which tells two holders of one process id apart;
// - record.rs: the lease as stored (Lease, LeaseRecord) and its bounds;
// - expiry.rs: the observer's part (Leased, LeaseWatch, Expired);
// - keeper.rs: the holder's part: the one renewal loop (LeaseKeeper), when
//   to give up (HolderOptions, holder_validity), LeaseStatus, and the
//   reaping of the dead that each renewal's read allows;
// - held.rs: the one holder of a leased record (Held), which LeaseHolder
//   (queue/holder.rs) and ClaimHolder (claim/holder.rs) wrap;
// - turn.rs: a holder waiting for another holder's record of its process id
//   (owner) to go before it makes its own.

pub(crate) mod again;
pub(crate) mod alive;
pub(crate) mod expiry;
pub(crate) mod held;
pub(crate) mod holder_id;
pub(crate) mod keeper;
pub(crate) mod record;
pub(crate) mod turn;

pub use self::alive::KeepAlive;
pub use self::expiry::{Expired, LeaseWatch, Leased};
pub use self::holder_id::{HolderId, MAX_HOLDER_ID};
pub use self::keeper::{holder_validity, HOLDER_SHARE};
pub use self::record::{Lease, MAX_LEASE, MIN_LEASE};
