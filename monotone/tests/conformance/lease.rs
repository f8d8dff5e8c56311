//! The lease contracts (see `monotone::lease`), run unchanged against every
//! backend with real time and short leases (a few hundred milliseconds).
//!
//! Each check would fail on the bug it is named after: a removal without a
//! full observed lease, a removal that wins over an earlier renewal, a
//! renewal that bumps the fencing token, a holder that learns of its loss
//! after someone removed it, waiters served out of ticket order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use monotone::{
    wait_for_position, Claim, ClaimPool, ErrorKind, Expired, Fenced, FencingToken, HolderId,
    HolderOptions, JoinRequest, Joined, LeaseHolder, LeaseStatus, LeaseWatch, Leased, Queue, Tags,
    Ticket,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{kind, ms, quick, tags, S};

/// Short enough for tests, long enough for a debug build on a loaded
/// machine to renew in time (the claim checks use it too).
pub const LEASE: Duration = Duration::from_millis(600);

pub fn queue(store: &S, id: &str) -> Arc<dyn Queue> {
    Arc::from(store.queue(id).unwrap())
}

/// A holder of a new ticket of `process_id` in `queue`, leased for `lease`,
/// with the default options.
pub async fn hold(queue: Arc<dyn Queue>, process_id: &str, lease: Duration) -> LeaseHolder {
    LeaseHolder::join(queue, process_id, Tags::new(), lease, HolderOptions::new())
        .await
        .unwrap()
}

/// A holder of `process_id` in `queue`, leased for [`LEASE`], that waits
/// (polling quickly) while another holder holds the process's ticket.
pub async fn hold_waiting(
    queue: Arc<dyn Queue>,
    process_id: &str,
) -> monotone::Result<LeaseHolder> {
    let options = HolderOptions::new();
    LeaseHolder::join_waiting(queue, process_id, Tags::new(), LEASE, options, &quick()).await
}

/// What observers watch and remove expired records from: a queue's
/// tickets or a claim pool's claims.
#[async_trait]
pub trait Watched: Send + Sync {
    /// The record: a ticket or a claim.
    type Item: Leased + Send + Sync + 'static;
    /// What the record is called in messages.
    const NOUN: &'static str;

    /// Every record, with the fencing token.
    async fn read(&self) -> Fenced<Vec<Self::Item>>;

    /// Remove an expired record; the token of the write, if it wrote.
    async fn remove(&self, expired: &Expired<Self::Item>) -> Option<FencingToken>;
}

/// `Watched` for a kind of handle: its records, what they are called, and
/// its methods that read them all and remove an expired one.
macro_rules! watched {
    ($handle:path, $item:ty, $noun:literal, $read:ident, $remove:ident) => {
        #[async_trait]
        impl Watched for dyn $handle + '_ {
            type Item = $item;
            const NOUN: &'static str = $noun;

            async fn read(&self) -> Fenced<Vec<$item>> {
                self.$read().await.unwrap()
            }

            async fn remove(&self, expired: &Expired<$item>) -> Option<FencingToken> {
                self.$remove(expired).await.unwrap()
            }
        }
    };
}

watched!(Queue, Ticket, "ticket", tickets, expire);
watched!(ClaimPool, Claim, "claim", claims, expire);

/// Read `w` until a fresh watch started now finds something expired; the
/// expired records and when the watch first saw them.
pub async fn watch_until_expired<W: Watched + ?Sized>(w: &W) -> (Vec<Expired<W::Item>>, Instant) {
    let mut watch = LeaseWatch::new();
    let mut first_read: Option<Instant> = None;
    loop {
        let all = w.read().await;
        let at = Instant::now();
        first_read.get_or_insert(at);
        let expired = watch.observe(&all.value, all.fencing_token, at);
        if !expired.is_empty() {
            return (expired, first_read.unwrap());
        }
        tokio::time::sleep(ms(10)).await;
    }
}

/// Read `w` until no record `dead` tells is there: the living holders
/// removed it. Fails if that takes ten leases, or less than a full lease
/// after `sent` (when the record's write was sent). The records then.
pub async fn await_reaped<W: Watched + ?Sized>(
    w: &W,
    dead: impl Fn(&W::Item) -> bool,
    sent: Instant,
) -> Fenced<Vec<W::Item>>
where
    W::Item: std::fmt::Debug,
{
    loop {
        let all = w.read().await;
        if !all.value.iter().any(&dead) {
            let after = sent.elapsed();
            assert!(after >= LEASE, "removed {after:?} after its write");
            return all;
        }
        assert!(
            sent.elapsed() < LEASE * 10,
            "still there after ten leases: {all:?}"
        );
        tokio::time::sleep(ms(20)).await;
    }
}

/// Watch `observer` for three leases as an observer that removes what
/// expires does, asserting that it never removes anything (the holder of
/// its first record renews in time) and that the holder renewed about
/// every third of the lease; the first record's renewals at the last read.
pub async fn watch_a_held_lease<W: Watched + ?Sized>(observer: &W) -> u64 {
    let mut watch = LeaseWatch::new();
    let until = Instant::now() + LEASE * 3;
    let mut renewals_seen = 0;
    while Instant::now() < until {
        let all = observer.read().await;
        for e in watch.observe(&all.value, all.fencing_token, Instant::now()) {
            assert_eq!(
                observer.remove(&e).await,
                None,
                "removed a renewed {}",
                W::NOUN
            );
        }
        renewals_seen = all.value[0].lease().unwrap().renewals;
        tokio::time::sleep(ms(20)).await;
    }
    assert!(
        renewals_seen >= 4,
        "renewed about every third of the lease: {renewals_seen}"
    );
    renewals_seen
}

/// An observer that removes an expired record as soon as the protocol
/// allows, in a task of its own: when it removed one, and the token of
/// that write.
pub fn remove_when_allowed<W: Watched + ?Sized + 'static>(
    observer: Arc<W>,
) -> JoinHandle<(Instant, FencingToken)>
where
    <W::Item as Leased>::Key: Send,
{
    tokio::spawn(async move {
        loop {
            let (expired, _) = watch_until_expired(&*observer).await;
            if let Some(token) = observer.remove(&expired[0]).await {
                return (Instant::now(), token);
            }
        }
    })
}

/// Switches that cut a handle off from its store, as if its process lost
/// its network: renewals (and, once everything is cut, every request) fail
/// as Unavailable without reaching the store. Other handles on the same
/// store still work, as other processes would.
#[derive(Debug, Default)]
pub struct Cutoff {
    renewals: AtomicBool,
    everything: AtomicBool,
}

impl Cutoff {
    /// From now on renewals fail.
    pub fn cut_renewals(&self) {
        self.renewals.store(true, Ordering::SeqCst);
    }

    /// From now on every request fails: the process is as good as dead.
    pub fn cut_everything(&self) {
        self.renewals.store(true, Ordering::SeqCst);
        self.everything.store(true, Ordering::SeqCst);
    }

    /// Whether a renewal may go through.
    pub fn renewal(&self) -> monotone::Result<()> {
        Self::check(&self.renewals)
    }

    /// Whether any other request may go through.
    pub fn request(&self) -> monotone::Result<()> {
        Self::check(&self.everything)
    }

    fn check(flag: &AtomicBool) -> monotone::Result<()> {
        if flag.load(Ordering::SeqCst) {
            return Err(monotone::Error::new(
                ErrorKind::Unavailable,
                "cut off from the store by the test",
            ));
        }
        Ok(())
    }
}

/// A queue whose holder-side requests can be cut off (see [`Cutoff`]) or
/// whose renewals (or removals) hang, or whose renewals' reads show every
/// lease unrenewed. It also counts reads of the whole queue, and notes the
/// process ids of the tickets it was asked to remove.
#[derive(Debug)]
pub struct Cut {
    inner: Box<dyn Queue>,
    cutoff: Cutoff,
    hang: AtomicBool,
    hang_expiries: AtomicBool,
    frozen: AtomicBool,
    reads: AtomicU64,
    expiries: Mutex<Vec<String>>,
}

impl Cut {
    pub fn new(inner: Box<dyn Queue>) -> Arc<Cut> {
        Arc::new(Cut {
            inner,
            cutoff: Cutoff::default(),
            hang: AtomicBool::new(false),
            hang_expiries: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            expiries: Mutex::new(vec![]),
        })
    }

    /// From now on removals of expired tickets never answer.
    pub fn hang_expiries(&self) {
        self.hang_expiries.store(true, Ordering::SeqCst);
    }

    /// From now on the reads that come with renewals show every lease as
    /// never renewed (renewal count 0).
    pub fn freeze_reads(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// The process ids of the tickets whose removal was asked through this
    /// handle, in order.
    pub fn expiries(&self) -> Vec<String> {
        self.expiries.lock().unwrap().clone()
    }

    /// From now on renewals never answer.
    pub fn hang_renewals(&self) {
        self.hang.store(true, Ordering::SeqCst);
    }

    /// How many times the whole queue was read through this handle.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// From now on renewals fail.
    pub fn cut_renewals(&self) {
        self.cutoff.cut_renewals();
    }

    /// From now on every request fails: the process is as good as dead.
    pub fn cut_everything(&self) {
        self.cutoff.cut_everything();
    }
}

#[async_trait]
impl Queue for Cut {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn join_as(&self, process_id: &str, request: &JoinRequest) -> monotone::Result<Joined> {
        self.cutoff.request()?;
        self.inner.join_as(process_id, request).await
    }
    async fn leave_if(
        &self,
        process_id: &str,
        counter: Option<u64>,
    ) -> monotone::Result<FencingToken> {
        self.cutoff.request()?;
        self.inner.leave_if(process_id, counter).await
    }
    async fn renew(&self, process_id: &str, counter: u64) -> monotone::Result<Fenced<Ticket>> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.cutoff.renewal()?;
        self.inner.renew(process_id, counter).await
    }
    async fn renew_and_read(
        &self,
        process_id: &str,
        counter: u64,
    ) -> monotone::Result<(Fenced<Ticket>, Fenced<Vec<Ticket>>)> {
        let renewed = self.renew(process_id, counter).await?;
        let mut all = self.tickets().await?;
        if self.frozen.load(Ordering::SeqCst) {
            for lease in all.value.iter_mut().filter_map(|t| t.lease.as_mut()) {
                lease.renewals = 0;
            }
        }
        Ok((renewed, all))
    }
    async fn expire(&self, expired: &Expired) -> monotone::Result<Option<FencingToken>> {
        let pid = expired.ticket().process_id.clone();
        self.expiries.lock().unwrap().push(pid);
        if self.hang_expiries.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.cutoff.request()?;
        self.inner.expire(expired).await
    }
    async fn ticket(&self, process_id: &str) -> monotone::Result<Fenced<Ticket>> {
        self.cutoff.request()?;
        self.inner.ticket(process_id).await
    }
    async fn tickets(&self) -> monotone::Result<Fenced<Vec<Ticket>>> {
        self.cutoff.request()?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.tickets().await
    }
    async fn remove(&self) -> monotone::Result<Option<FencingToken>> {
        self.cutoff.request()?;
        self.inner.remove().await
    }
}

pub async fn leased_and_permanent_tickets_show_their_lease(store: S) {
    let q = queue(&store, "leases");
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    let a = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    let lease = a.value.lease.clone().expect("a leased ticket");
    assert_eq!((lease.duration, lease.renewals), (LEASE, 0));
    let at = lease.renewed_at.expect("the join time is kept");
    assert!(at >= before, "the join's wall-clock time: {at:?}");
    let p = q.join("p", Tags::new()).await.unwrap();
    assert_eq!(p.value.lease, None, "a permanent ticket has no lease");
    let all = q.tickets().await.unwrap();
    assert_eq!(all.value[0].lease.as_ref().map(|l| l.duration), Some(LEASE));
    assert_eq!(all.value[1].lease, None);
    assert_eq!(q.ticket("a").await.unwrap().value, a.value);
    // A re-join with the same lease returns the existing ticket, lease and
    // all, and writes nothing; one with another lease, or a lease where the
    // ticket is permanent (or the reverse), is refused and writes nothing.
    let again = q.join_with("a", Tags::new(), Some(LEASE)).await.unwrap();
    assert!(!again.added);
    assert_eq!(again.ticket.value, a.value);
    assert_eq!(again.ticket.fencing_token, FencingToken(2));
    let again = q.join("p", Tags::new()).await.unwrap();
    assert_eq!(again.value, p.value);
    for (pid, lease) in [("a", Some(ms(900))), ("a", None), ("p", Some(LEASE))] {
        let err = q.join_with(pid, Tags::new(), lease).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Mismatch, "{pid} {lease:?}: {err}");
    }
    assert_eq!(q.ticket("a").await.unwrap().value, a.value);
    let new = q.join_with("n", Tags::new(), Some(LEASE)).await.unwrap();
    assert!(new.added);
    // Leases out of range are refused and write nothing.
    for bad in [ms(1), ms(49), Duration::from_secs(2 * 86_400)] {
        assert_eq!(
            kind(q.join_leased("bad", Tags::new(), bad).await),
            ErrorKind::InvalidInput
        );
    }
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(3));
}

pub async fn renewal_adds_one_and_leaves_the_token_alone(store: S) {
    let q = queue(&store, "renew");
    let a = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    q.join("b", Tags::new()).await.unwrap();
    for n in 1..=3 {
        let r = q.renew("a", a.value.counter).await.unwrap();
        let lease = r.value.lease.as_ref().unwrap();
        assert_eq!(lease.renewals, n);
        assert_eq!(lease.duration, LEASE);
        assert_eq!(r.value.position, 0);
        assert_eq!(
            r.fencing_token,
            FencingToken(2),
            "a renewal is not a write of the queue"
        );
    }
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(2));
    // The next real write gets exactly the next token.
    assert_eq!(
        q.join("c", Tags::new()).await.unwrap().fencing_token,
        FencingToken(3)
    );
    assert_eq!(q.leave("a").await.unwrap(), FencingToken(4));
}

pub async fn renewal_of_a_ticket_not_held_is_lease_lost(store: S) {
    let q = queue(&store, "lost");
    assert_eq!(
        kind(q.renew("a", 1).await),
        ErrorKind::LeaseLost,
        "no queue"
    );
    let a = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    let p = q.join("p", Tags::new()).await.unwrap();
    let err = q.renew("a", a.value.counter + 7).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "another ticket: {err}");
    assert!(err.to_string().contains("`a`") && err.to_string().contains("`lost`"));
    assert_eq!(
        kind(q.renew("p", p.value.counter).await),
        ErrorKind::LeaseLost
    );
    assert_eq!(kind(q.renew("nobody", 1).await), ErrorKind::LeaseLost);
    q.leave("a").await.unwrap();
    assert_eq!(
        kind(q.renew("a", a.value.counter).await),
        ErrorKind::LeaseLost
    );
    // Back with a new ticket: the old one's counter is not renewed.
    let back = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    assert_eq!(
        kind(q.renew("a", a.value.counter).await),
        ErrorKind::LeaseLost
    );
    assert_eq!(
        q.ticket("a").await.unwrap().value.lease.unwrap().renewals,
        0,
        "nothing renewed"
    );
    q.renew("a", back.value.counter).await.unwrap();
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(4));
}

pub async fn a_renewal_that_reads_sees_the_queue_as_it_left_it(store: S) {
    let q = queue(&store, "renew-read");
    assert_eq!(
        kind(q.renew_and_read("a", 1).await),
        ErrorKind::LeaseLost,
        "no queue"
    );
    let a = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    q.join("p", Tags::new()).await.unwrap();
    let b = q
        .join_leased("b", tags(&[("k", "v")]), LEASE)
        .await
        .unwrap();
    q.renew("b", b.value.counter).await.unwrap();
    for n in 1..=2 {
        let (renewed, all) = q.renew_and_read("a", a.value.counter).await.unwrap();
        assert_eq!(renewed.value.lease.as_ref().unwrap().renewals, n);
        assert_eq!(
            renewed.fencing_token,
            FencingToken(3),
            "a renewal is not a write of the queue"
        );
        assert_eq!(all, q.tickets().await.unwrap(), "the read is the queue");
        assert_eq!(all.value.len(), 3);
        assert_eq!(all.value[0], renewed.value, "the renewed ticket in it");
        assert_eq!(all.value[2].lease.as_ref().unwrap().renewals, 1);
    }
    let err = q
        .renew_and_read("a", a.value.counter + 7)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "another ticket: {err}");
    assert_eq!(kind(q.renew_and_read("p", 2).await), ErrorKind::LeaseLost);
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(3));
}

pub async fn a_holder_removes_a_ticket_left_unrenewed_for_a_full_lease(store: S) {
    // The living reap the dead: no one waits, yet the holder's renewals
    // remove a ticket that no one renews (a leased join without a holder,
    // as from a shell) once it has seen it unrenewed for a full lease.
    let q = queue(&store, "reap");
    let holder = hold(queue(&store, "reap"), "h", LEASE).await;
    let sent = Instant::now();
    q.join_leased("dead", Tags::new(), LEASE).await.unwrap();
    q.join("permanent", Tags::new()).await.unwrap();
    let all = await_reaped(&*q, |t| t.process_id == "dead", sent).await;
    let left: Vec<_> = all.value.iter().map(|t| t.process_id.as_str()).collect();
    assert_eq!(left, ["h", "permanent"], "its own and a permanent one stay");
    assert_eq!(all.fencing_token, FencingToken(4), "one removal, one write");
    assert!(holder.is_held(), "{:?}", holder.status());
    holder.release().await.unwrap();
}

pub async fn a_holder_keeps_its_ticket_while_observers_watch(store: S) {
    let holder = hold(queue(&store, "kept"), "h", LEASE).await;
    assert!(holder.is_held());
    let observer = queue(&store, "kept");
    watch_a_held_lease(&*observer).await;
    let all = observer.tickets().await.unwrap();
    assert_eq!(all.value.len(), 1);
    assert_eq!(
        all.fencing_token,
        FencingToken(1),
        "renewals wrote no token"
    );
    assert!(holder.is_held(), "{:?}", holder.status());
    assert_eq!(holder.release().await.unwrap(), Some(FencingToken(2)));
    assert!(observer.tickets().await.unwrap().value.is_empty());
}

pub async fn an_unrenewed_ticket_is_removed_only_after_a_full_observed_lease(store: S) {
    let q = queue(&store, "expiry");
    let a = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    let b = q.join("b", Tags::new()).await.unwrap();
    let (expired, first_seen) = watch_until_expired(&*q).await;
    assert!(
        first_seen.elapsed() >= LEASE,
        "expired {:?} after it was first seen",
        first_seen.elapsed()
    );
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].ticket().process_id, "a");
    assert_eq!(expired[0].ticket().counter, a.value.counter);
    let token = q.expire(&expired[0]).await.unwrap();
    assert_eq!(
        token,
        Some(FencingToken(b.fencing_token.get() + 1)),
        "a write like a leave"
    );
    let all = q.tickets().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(3));
    assert_eq!(all.value.len(), 1);
    assert_eq!(
        (all.value[0].process_id.as_str(), all.value[0].position),
        ("b", 0)
    );
    // Removing it again does nothing.
    assert_eq!(q.expire(&expired[0]).await.unwrap(), None);
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(3));
    assert_eq!(
        kind(q.renew("a", a.value.counter).await),
        ErrorKind::LeaseLost
    );
}

pub async fn a_removal_loses_to_a_renewal_that_came_first(store: S) {
    let q = queue(&store, "race");
    let a = q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    let (expired, _) = watch_until_expired(&*q).await;
    q.renew("a", a.value.counter).await.unwrap();
    assert_eq!(
        q.expire(&expired[0]).await.unwrap(),
        None,
        "the renewal came first"
    );
    let all = q.tickets().await.unwrap();
    assert_eq!(all.fencing_token, FencingToken(1), "nothing written");
    assert_eq!(all.value[0].lease.as_ref().unwrap().renewals, 1);
    // A ticket that left and came back is another ticket: not removed on
    // the strength of a watch of the old one.
    let (expired, _) = watch_until_expired(&*q).await;
    q.leave("a").await.unwrap();
    q.join_leased("a", Tags::new(), LEASE).await.unwrap();
    assert_eq!(q.expire(&expired[0]).await.unwrap(), None);
    let all = q.tickets().await.unwrap();
    assert_eq!((all.value.len(), all.fencing_token), (1, FencingToken(3)));
}

pub async fn permanent_tickets_never_expire(store: S) {
    let q = queue(&store, "forever");
    q.join("p", Tags::new()).await.unwrap();
    let holder = hold(Arc::clone(&q), "w", LEASE).await;
    let options = quick().with_timeout(Some(LEASE * 3));
    let err = holder.wait_for_position(1, &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("position 1"), "{err}");
    let all = q.tickets().await.unwrap();
    assert_eq!(all.value[0].process_id, "p");
    assert_eq!(all.fencing_token, FencingToken(2), "nothing removed");
    holder.release().await.unwrap();
}

pub async fn the_holder_learns_of_loss_before_anyone_removes_it(store: S) {
    let cut = Cut::new(store.queue("cut").unwrap());
    let holder = hold(cut.clone(), "h", LEASE).await;
    let joined_token = holder.joined().fencing_token;
    // A waiter that removes expired tickets as soon as the protocol allows.
    let remover = remove_when_allowed(queue(&store, "cut"));
    tokio::time::sleep(LEASE / 2).await;
    cut.cut_renewals();
    let lost = holder.lost().await;
    let lost_at = Instant::now();
    assert_eq!(lost.kind(), ErrorKind::LeaseLost, "{lost}");
    assert!(!holder.is_held());
    assert!(matches!(holder.status(), LeaseStatus::Lost(_)));
    let (removed_at, token) = remover.await.unwrap();
    assert!(
        lost_at < removed_at,
        "the holder learned of its loss {:?} after the ticket was removed",
        lost_at - removed_at
    );
    assert_eq!(token.get(), joined_token.get() + 1);
    // Releasing a lost lease finds the ticket gone.
    assert_eq!(holder.release().await.unwrap(), None);
}

pub async fn a_dead_holders_ticket_is_taken_over_with_a_larger_token(store: S) {
    let cut = Cut::new(store.queue("dead").unwrap());
    let first = hold(cut.clone(), "first", LEASE).await;
    let head = first.wait_for_position(1, &quick()).await.unwrap();
    let second = hold(queue(&store, "dead"), "second", LEASE).await;
    // The first holder's process dies: no renewal, no leave ever again.
    cut.cut_everything();
    drop(first);
    let took_over = second.wait_for_position(1, &quick()).await.unwrap();
    assert!(
        took_over.fencing_token > head.fencing_token,
        "{:?} after {:?}",
        took_over.fencing_token,
        head.fencing_token
    );
    assert_eq!(took_over.value.process_id, "second");
    assert!(second.is_held());
    let all = queue(&store, "dead").tickets().await.unwrap();
    assert_eq!(all.value.len(), 1, "the dead holder's ticket was removed");
    second.release().await.unwrap();
}

pub async fn waiters_become_head_in_ticket_order(store: S) {
    const N: usize = 5;
    let mut holders = Vec::new();
    for i in 0..N {
        holders.push(hold(queue(&store, "order"), &format!("w{i}"), LEASE).await);
    }
    // Each waits in its own task, holds the head briefly, then leaves.
    let log = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = holders
        .into_iter()
        .map(|h| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let head = h.wait_for_position(1, &quick()).await.unwrap();
                log.lock()
                    .unwrap()
                    .push(("start", head.value.counter, head.fencing_token));
                tokio::time::sleep(ms(30)).await;
                log.lock()
                    .unwrap()
                    .push(("end", head.value.counter, head.fencing_token));
                h.release().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    // Strictly alternating start/end, in counter order, tokens growing.
    assert_eq!(log.len(), 2 * N);
    for (i, pair) in log.chunks(2).enumerate() {
        assert_eq!((pair[0].0, pair[1].0), ("start", "end"), "overlap: {log:?}");
        assert_eq!(pair[0].1, pair[1].1);
        assert_eq!(pair[0].1, i as u64 + 1, "out of ticket order: {log:?}");
    }
    assert!(
        log.windows(2).all(|w| w[0].2 <= w[1].2),
        "tokens go down: {log:?}"
    );
}

pub async fn a_semaphore_of_two_admits_two_at_a_time(store: S) {
    let mut holders = Vec::new();
    for i in 0..3 {
        holders.push(hold(queue(&store, "sem"), &format!("s{i}"), LEASE).await);
    }
    let now = quick().with_timeout(Some(Duration::ZERO));
    let got0 = holders[0].wait_for_position(2, &now).await.unwrap();
    assert_eq!(got0.value.position, 0);
    let got1 = holders[1].wait_for_position(2, &now).await.unwrap();
    assert_eq!(got1.value.position, 1);
    assert_eq!(
        kind(holders[2].wait_for_position(2, &now).await),
        ErrorKind::Timeout
    );
    let first = holders.remove(0);
    first.release().await.unwrap();
    let third = holders[1].wait_for_position(2, &quick()).await.unwrap();
    assert_eq!(third.value.position, 1);
    assert_eq!(
        kind(wait_for_position(&*queue(&store, "sem"), "s1", 0, &now).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(wait_for_position(&*queue(&store, "sem"), "nobody", 1, &now).await),
        ErrorKind::NotFound
    );
    for h in holders {
        h.release().await.unwrap();
    }
}

pub async fn leases_on_a_counter_id_are_wrong_type(store: S) {
    store.counter("count").unwrap().next().await.unwrap();
    let q = queue(&store, "count");
    assert_eq!(
        kind(q.join_leased("a", Tags::new(), LEASE).await),
        ErrorKind::WrongType
    );
    assert_eq!(kind(q.renew("a", 1).await), ErrorKind::WrongType);
    let err = LeaseHolder::join(
        Arc::clone(&q),
        "a",
        Tags::new(),
        LEASE,
        HolderOptions::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongType);
    assert_eq!(
        kind(wait_for_position(&*q, "a", 1, &quick()).await),
        ErrorKind::WrongType
    );
    assert_eq!(store.counter("count").unwrap().get().await.unwrap(), 1);
}

/// A holder joins with its own id; the same request sent again (as DynamoDB
/// resends after a lost answer) finds that ticket and writes nothing; a
/// join without a holder that asks for the same ticket gets it back; another
/// holder's join is refused as held, and writes nothing; a holder leaves
/// its own ticket only.
pub async fn a_holders_join_sent_again_is_harmless_and_others_are_refused(store: S) {
    let q = queue(&store, "holders");
    let (h1, h2) = (HolderId::random(), HolderId::random());
    let request = JoinRequest::new()
        .with_tags(Tags::from([("role".into(), "zk".into())]))
        .with_lease(Some(LEASE))
        .held_by(h1);
    let first = q.join_as("p", &request).await.unwrap();
    assert!(first.added);
    assert_eq!(first.ticket.value.lease.as_ref().unwrap().holder, Some(h1));
    assert_eq!(
        q.ticket("p").await.unwrap().value,
        first.ticket.value,
        "stored"
    );
    let again = q.join_as("p", &request).await.unwrap();
    assert!(!again.added);
    assert_eq!(again.ticket, first.ticket, "the same ticket and token");
    let plain = q
        .join_with("p", request.tags.clone(), Some(LEASE))
        .await
        .unwrap();
    assert_eq!(plain.ticket, first.ticket);
    let err = q
        .join_as("p", &request.clone().held_by(h2))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Held, "{err}");
    assert!(err.to_string().contains("held by another holder"), "{err}");
    let other_ticket = Some(first.ticket.value.counter + 1);
    assert_eq!(
        kind(q.leave_if("p", other_ticket).await),
        ErrorKind::NotFound
    );
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(1));
    // A holder needs a lease.
    let no_lease = JoinRequest::new().held_by(h2);
    assert_eq!(
        kind(q.join_as("o", &no_lease).await),
        ErrorKind::InvalidInput
    );
    // A ticket made without a holder is held against every holder.
    q.join_leased("shell", Tags::new(), LEASE).await.unwrap();
    let err = q
        .join_as(
            "shell",
            &JoinRequest::new().with_lease(Some(LEASE)).held_by(h2),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Held);
    let mine = Some(first.ticket.value.counter);
    assert_eq!(q.leave_if("p", mine).await.unwrap(), FencingToken(3));
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(3));
}

/// Two holders under one process id: the second waits while the first
/// holds (it never holds at the same time), and gets the ticket, with a
/// larger token, once the first releases; then a third waits behind the
/// second until the second's process dies, and takes over one observed
/// lease later.
pub async fn two_holders_of_one_process_id_never_hold_at_once(store: S) {
    let first = hold(queue(&store, "one-pid"), "host-a", LEASE).await;
    let head = first.wait_for_position(1, &quick()).await.unwrap();
    let waiting = |q: Arc<dyn Queue>| {
        tokio::spawn(async move {
            let h = hold_waiting(q, "host-a").await.unwrap();
            (h, Instant::now())
        })
    };
    let cut = Cut::new(store.queue("one-pid").unwrap());
    let second = waiting(cut.clone());
    tokio::time::sleep(LEASE * 2).await;
    assert!(
        !second.is_finished(),
        "the second holder joined beside the first"
    );
    assert!(first.is_held());
    let released = Instant::now();
    first.release().await.unwrap();
    let (second, got) = second.await.unwrap();
    assert!(got >= released);
    assert!(second.joined().fencing_token > head.fencing_token);
    assert_ne!(
        second.joined().value.lease.as_ref().unwrap().holder,
        None,
        "held by the second holder"
    );
    assert_eq!(
        second.joined().value.lease.as_ref().unwrap().holder,
        Some(second.holder())
    );
    // The second holder's process dies: no renewal, no leave ever again.
    let third = waiting(queue(&store, "one-pid"));
    tokio::time::sleep(LEASE / 2).await;
    assert!(!third.is_finished());
    let taken = second.joined().clone();
    cut.cut_everything();
    let died = Instant::now();
    drop(second);
    let (third, got) = third.await.unwrap();
    assert!(
        got - died >= LEASE * 9 / 10 - LEASE / 3,
        "took over {:?} after the death: before the dead holder could have given up",
        got - died
    );
    assert!(
        third.joined().fencing_token.get() > taken.fencing_token.get() + 1,
        "removed, then joined"
    );
    let all = queue(&store, "one-pid").tickets().await.unwrap();
    assert_eq!(all.value.len(), 1);
    assert_eq!(
        all.value[0].lease.as_ref().unwrap().holder,
        Some(third.holder())
    );
    third.release().await.unwrap();
}

/// A holder whose ticket expired (its renewals failed) and was taken by the
/// next holder of the same process id never removes that holder's ticket
/// when it lets go.
pub async fn a_lost_holder_leaves_the_next_holders_ticket_alone(store: S) {
    let cut = Cut::new(store.queue("lost-pid").unwrap());
    let first = hold(cut.clone(), "host-a", LEASE).await;
    cut.cut_renewals();
    let second = hold_waiting(queue(&store, "lost-pid"), "host-a")
        .await
        .unwrap();
    assert!(!first.is_held(), "lost before the takeover");
    assert_eq!(first.release().await.unwrap(), None, "its ticket is gone");
    let all = queue(&store, "lost-pid").tickets().await.unwrap();
    assert_eq!(all.value.len(), 1, "the second holder's ticket stays");
    assert_eq!(
        all.value[0].lease.as_ref().unwrap().holder,
        Some(second.holder())
    );
    assert!(second.is_held());
    second.release().await.unwrap();
}

/// A permanent ticket never expires: a holder of its process id is refused
/// at once, even when it may wait, and nothing is written.
pub async fn a_holder_never_waits_on_a_permanent_ticket(store: S) {
    let q = queue(&store, "perm-pid");
    q.join("host-a", Tags::new()).await.unwrap();
    let started = Instant::now();
    let err = hold_waiting(Arc::clone(&q), "host-a").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Mismatch, "{err}");
    assert!(err.to_string().contains("leave the queue first"), "{err}");
    assert!(
        started.elapsed() < LEASE,
        "at once: {:?}",
        started.elapsed()
    );
    assert_eq!(q.tickets().await.unwrap().fencing_token, FencingToken(1));
}
