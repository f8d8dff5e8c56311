//! Claim pools: the [`ClaimPool`] trait, its [`Claim`]s and its contract
//! (here), and beside it
//!
//! - `candidates.rs`: [`Candidates`], the names a claim is made from;
//! - `state.rs`: a pool's whole state as one value and the rules that
//!   change it, written once and applied by every store;
//! - `wait.rs`: claiming while every candidate is taken
//!   ([`wait_for_claim`](crate::wait_for_claim)), and waiting for a
//!   pool's roster to be complete ([`wait_for_roster`](crate::wait_for_roster));
//! - `holder.rs`: [`ClaimHolder`](crate::ClaimHolder), a leased claim
//!   renewed in the background.
//!
//! A claim pool hands out names: each owner claims the first free name of an
//! ordered list of candidates (a ZooKeeper `myid` from `1..=255`, a mountain
//! from a list of a hundred), keeps it while it needs it, and gives it back.
//! A name is held by one owner at a time. Claims are permanent (kept until
//! released) or leased (kept while their holder renews them, see
//! [`ClaimHolder`](crate::ClaimHolder) and the [`lease`](crate::lease)
//! protocol).

pub(crate) mod candidates;
pub(crate) mod holder;
pub(crate) mod state;
pub(crate) mod wait;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::change::poll_for_change;
use crate::claim::candidates::Candidates;
use crate::error::Result;
use crate::lease::alive::KeepAlive;
use crate::lease::expiry::{Expired, Leased};
use crate::lease::holder_id::HolderId;
use crate::lease::record::Lease;
use crate::queue::fencing::{Fenced, FencingToken};
use crate::queue::ticket::Tags;

/// One claimed name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// The name claimed.
    pub name: String,
    /// Who holds it.
    pub owner: String,
    /// Its index in the candidates it was claimed from (0 for the first).
    /// Claimants may use different candidate lists, so indexes of one pool
    /// need not be distinct; [`ClaimPool::claims`] lists by name.
    pub index: usize,
    /// The pool's fencing token right after this claim was made. Every
    /// claim, release and expiry adds one to the pool's token, so whoever
    /// holds a name later holds a larger token than every earlier holder of
    /// any name.
    pub token: FencingToken,
    /// The tags given when the name was claimed (an address, a role), as a
    /// ticket's: at most [`MAX_TAGS`](crate::MAX_TAGS), keys and values
    /// within [`MAX_TAG_KEY_BYTES`](crate::MAX_TAG_KEY_BYTES) and
    /// [`MAX_TAG_VALUE_BYTES`](crate::MAX_TAG_VALUE_BYTES).
    pub tags: Tags,
    /// The claim's lease, or `None` for a permanent claim.
    pub lease: Option<Lease>,
}

impl Claim {
    /// A permanent claim; mostly useful to backends and tests.
    pub fn new(
        name: impl Into<String>,
        owner: impl Into<String>,
        index: usize,
        token: FencingToken,
    ) -> Self {
        Claim {
            name: name.into(),
            owner: owner.into(),
            index,
            token,
            tags: Tags::new(),
            lease: None,
        }
    }

    /// The same claim with `tags`.
    pub fn with_tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The same claim with `lease`.
    pub fn with_lease(mut self, lease: Option<Lease>) -> Self {
        self.lease = lease;
        self
    }
}

impl Leased for Claim {
    /// The name, its owner and the claim's token: an owner that released a
    /// name and claimed it again holds another claim, watched afresh.
    type Key = (String, String, FencingToken);

    fn lease_key(&self) -> Self::Key {
        (self.name.clone(), self.owner.clone(), self.token)
    }

    fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }
}

/// What a claim asks for ([`ClaimPool::claim_as`]): the candidates to take
/// the first free one of, the claim's tags, its lease (or a permanent
/// claim), and the holder that asks, if one does.
///
/// ```
/// use std::time::Duration;
/// use monotone::{Candidates, ClaimRequest, Tags};
///
/// let request = ClaimRequest::new(Candidates::range(1..=255)?)
///     .with_tags(Tags::from([("addr".into(), "10.0.0.5".into())]))
///     .with_lease(Some(Duration::from_secs(30)));
/// assert_eq!(request.holder, None);
/// # Ok::<(), monotone::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// The names to claim the first free one of, in order.
    pub candidates: Candidates,
    /// The claim's tags, checked as a ticket's.
    pub tags: Tags,
    /// A lease of this duration, or (`None`) a permanent claim.
    pub lease: Option<Duration>,
    /// The holder that claims (a [`ClaimHolder`](crate::ClaimHolder)),
    /// stored with the claim's lease; `None` for a claim without a holder.
    /// A holder needs a lease.
    pub holder: Option<HolderId>,
    /// The roster size to seal the pool at, or to check against the size it
    /// is sealed at (see the [contract](ClaimPool)'s *Rosters*); `None`
    /// asks for none.
    pub members: Option<usize>,
}

impl ClaimRequest {
    /// A permanent claim from `candidates`, without tags or holder.
    pub fn new(candidates: Candidates) -> Self {
        ClaimRequest {
            candidates,
            tags: Tags::new(),
            lease: None,
            holder: None,
            members: None,
        }
    }

    /// Set [`tags`](Self::tags).
    pub fn with_tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// Set [`lease`](Self::lease).
    pub fn with_lease(mut self, lease: Option<Duration>) -> Self {
        self.lease = lease;
        self
    }

    /// Set [`holder`](Self::holder).
    pub fn held_by(mut self, holder: HolderId) -> Self {
        self.holder = Some(holder);
        self
    }

    /// Set [`members`](Self::members).
    pub fn with_members(mut self, members: Option<usize>) -> Self {
        self.members = members;
        self
    }
}

/// A pool's claims as [`ClaimPool::roster`] reads them: every claim in the
/// listing order of the [contract](ClaimPool), and the roster size the pool
/// is sealed at, if it is. Once it holds [`size`](Self::size) claims, the
/// claims are the roster: the same list on every member that reads it until
/// a member goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Roster {
    /// The roster size recorded by the first claim made with
    /// [`ClaimRequest::members`]; `None` for a pool never sealed.
    pub size: Option<usize>,
    /// Every claim, by name (numbers numerically).
    pub claims: Vec<Claim>,
}

impl Roster {
    /// Whether the pool is sealed and holds its whole roster: a claimer
    /// that holds no claim is refused.
    pub fn is_full(&self) -> bool {
        self.size.is_some_and(|n| self.claims.len() >= n)
    }
}

/// What [`ClaimPool::claim_as`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claimed {
    /// The owner's claim, with the pool's token: for a new claim its own
    /// [`token`](Claim::token), for an existing one the pool's current token.
    pub claim: Fenced<Claim>,
    /// Whether this call made the claim; `false` if the owner held it
    /// already, in which case nothing was written.
    pub added: bool,
    /// When this call sent a request that preceded the claim's coming to
    /// exist, on this process's monotonic clock: a leased claim's holder
    /// counts its lease from here. `None` if the call made no claim.
    pub written_at: Option<Instant>,
}

impl Claimed {
    /// The claim the owner held already; mostly useful to backends.
    pub fn existing(claim: Fenced<Claim>) -> Self {
        Claimed {
            claim,
            added: false,
            written_at: None,
        }
    }

    /// A claim made by this call, whose lease may be counted from `at`.
    pub fn made(claim: Fenced<Claim>, at: Instant) -> Self {
        Claimed {
            claim,
            added: true,
            written_at: Some(at),
        }
    }
}

/// A pool of names under one id, from which owners claim the first free
/// one, and whose every claim, release and expiry yields a new
/// [`FencingToken`].
///
/// Obtain one from [`Store::claim_pool`](crate::Store::claim_pool); the
/// handle is cheap and holds no lock.
///
/// # Contract
///
/// Every backend upholds these, and the conformance suite checks them:
///
/// - Each operation is atomic and linearizable across every process and host
///   using the same store. Two owners never hold one name at the same time,
///   and an owner never holds two names.
/// - [`claim`](ClaimPool::claim_as) gives the owner the first candidate,
///   in the order given, that no one holds at the moment of the write, with
///   the tags, lease and holder asked for. If the owner holds a name
///   already, it writes nothing and follows the re-join rule of queues
///   (see [`Queue`](crate::Queue); written once, in `lease/again.rs`),
///   the candidates aside (an owner's claim is its claim, whichever list it
///   came from): a claim without a holder that asks for the same tags and
///   the same lease (duration, or permanent) gets the owner's claim back
///   with the current token, even one a holder made; one that asks for
///   anything else fails with
///   [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch), naming what
///   differs (release first to claim anew); a claim by a holder gets the
///   claim only if that holder made it, and fails with
///   [`ErrorKind::Held`](crate::ErrorKind::Held) on a leased claim of
///   another holder or of none (it never shares a name with another
///   holder: [`ClaimHolder`](crate::ClaimHolder) waits for the claim to
///   go), with [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch) on a
///   permanent one. If every candidate is held, it fails with
///   [`ErrorKind::Exhausted`](crate::ErrorKind::Exhausted), naming the pool
///   and the number of candidates, and writes nothing; so it does when the
///   pool holds [`MAX_CANDIDATES`](crate::MAX_CANDIDATES) claims already.
/// - A pool that does not exist has no claims and the token 0. Every claim,
///   release and expiry adds exactly one to the token and the claim records
///   the token after it ([`Claim::token`]); reads and renewals leave it as
///   it is.
/// - [`release`](ClaimPool::release) of an owner that holds no name, or on
///   a pool that does not exist, fails with
///   [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) and writes nothing;
///   so does [`release_if`](ClaimPool::release_if) with a token when the
///   owner's claim is not the one made at that token (a holder that lost
///   its lease never releases the claim of the holder after it, even of the
///   same name).
///   A released name is free at once: the next claim whose candidates
///   include it gets it if it is the first free one.
/// - [`claims`](ClaimPool::claims) lists every claim in one order, whatever
///   candidate lists the claimants used: by name, where the decimal names a
///   range makes (`"2"`, `"10"`: digits, no leading zero) come first, in
///   numerical order, and every other name follows in the order of its
///   bytes (Unicode code points). A pool of `1..=255` lists `"1"`, `"2"`,
///   ... `"255"`; a list of mountains lists them alphabetically.
/// - If the id holds a counter, a queue or any other kind of item, every
///   method fails with [`ErrorKind::WrongType`](crate::ErrorKind::WrongType)
///   and changes nothing; the other kinds answer the same about a pool.
/// - Bad input (an owner that is not a valid process id, tags beyond a
///   ticket's limits, a lease out of range, a holder without a lease) is
///   [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) and writes
///   nothing; [`Candidates`] are checked when built.
/// - A successful write is durable in its store before it returns.
/// - [`remove`](ClaimPool::remove) deletes the pool, its claims and its
///   token; a pool created again under the same id starts over at token 1.
///
/// ## Rosters
///
/// A pool may be sealed at a roster of N members, the bootstrap barrier of
/// a cluster (the rules are written once, in `claim/state.rs`):
///
/// - The first claim *made* with [`ClaimRequest::members`] N records N in
///   the pool; it stays until the pool is [removed](ClaimPool::remove).
///   [`roster`](ClaimPool::roster) reads it with the claims.
/// - A claim that asks for another N than the pool's, for N outside 1 to
///   [`MAX_CANDIDATES`](crate::MAX_CANDIDATES) or above the number of its
///   candidates, by an owner that holds a claim made without N, or on an
///   unsealed pool that holds N claims or more, is
///   [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) and
///   writes nothing. A member asking again with the same N follows the
///   re-join rule above.
/// - While a sealed pool holds N claims, a claim by an owner that holds
///   none (with or without `members`) is
///   [`ErrorKind::Exhausted`](crate::ErrorKind::Exhausted), naming the
///   roster size, and writes nothing. Below N, a claim without `members`
///   is a claim like any other and counts towards N.
/// - A released (or expired) member's name is free: the next claimer gets
///   it if it is its first free candidate, which with one candidate list
///   shared by all members (a range) it is: a replacement keeps the
///   cluster at N with the same names.
/// - The roster is the N claims in the listing order:
///   [`wait_for_roster`](crate::wait_for_roster) waits for it.
///
/// ## Leases
///
/// As for queue tickets (see [`Queue`](crate::Queue)):
///
/// - A claim made with a lease carries it in [`Claim::lease`], with 0
///   renewals and the holder that made it
///   ([`Lease::holder`](crate::Lease::holder)); one made without is
///   permanent and never expires.
/// - [`renew`](ClaimPool::renew) adds one to the lease's `renewals` and
///   writes nothing else: the token stays, and no claim or release of
///   another owner has to retry because of it. It fails with
///   [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) if the owner no
///   longer holds that name with a lease.
/// - [`renew_and_read`](ClaimPool::renew_and_read) does what `renew` does
///   and returns, beside the renewed claim, exactly what
///   [`claims`](ClaimPool::claims) would return right after it (the same
///   claims with the same renewal counts, and the same token).
/// - [`expire`](ClaimPool::expire) removes a claim only if it is exactly as
///   an [`Expired`] observation saw it: same name, owner, token and
///   renewals. It is a write like a release: the token grows by one. A
///   renewal that came first wins, and the claim stays.
///
/// ## Waiting for a change
///
/// As for a queue ([`Queue::wait_for_change`](crate::Queue::wait_for_change)):
/// [`token`](ClaimPool::token) is the pool's token read as cheaply as the
/// store can, and [`wait_for_change`](ClaimPool::wait_for_change) returns
/// `true` once it is not the one seen, `false` once `until` passes; a
/// renewal is no change.
#[async_trait]
pub trait ClaimPool: Send + Sync + fmt::Debug {
    /// The id this pool is stored under.
    fn id(&self) -> &str;

    /// Claim the first free name of the request's candidates for `owner`
    /// with its tags, lease and holder, or, if the owner holds a claim
    /// already, apply the re-join rule of the [contract](ClaimPool): its
    /// claim, or [`ErrorKind::Held`](crate::ErrorKind::Held) or
    /// [`ErrorKind::Mismatch`](crate::ErrorKind::Mismatch) without a write.
    /// A lease must be from [`MIN_LEASE`](crate::lease::MIN_LEASE) to
    /// [`MAX_LEASE`](crate::lease::MAX_LEASE); a holder needs one.
    async fn claim_as(&self, owner: &str, request: &ClaimRequest) -> Result<Claimed>;

    /// [`claim_as`](ClaimPool::claim_as) without tags or holder: claim the
    /// first free name of `candidates` for `owner`, with a lease of the
    /// given duration or (`None`) a permanent claim, or return the owner's
    /// claim if it is that one.
    async fn claim_with(
        &self,
        owner: &str,
        candidates: &Candidates,
        lease: Option<Duration>,
    ) -> Result<Claimed> {
        let request = ClaimRequest::new(candidates.clone()).with_lease(lease);
        self.claim_as(owner, &request).await
    }

    /// Claim the first free name of `candidates` for `owner` for good (until
    /// released), or return the owner's claim if it is that one.
    async fn claim(&self, owner: &str, candidates: &Candidates) -> Result<Fenced<Claim>> {
        Ok(self.claim_with(owner, candidates, None).await?.claim)
    }

    /// Claim the first free name with a lease that expires unless renewed
    /// within `lease`, or return the owner's claim if it is that one. Most
    /// callers want a [`ClaimHolder`](crate::ClaimHolder), which claims with
    /// a holder and renews in the background.
    async fn claim_leased(
        &self,
        owner: &str,
        candidates: &Candidates,
        lease: Duration,
    ) -> Result<Fenced<Claim>> {
        Ok(self.claim_with(owner, candidates, Some(lease)).await?.claim)
    }

    /// Renew the lease of `owner`'s claim of `name`: one write that leaves
    /// the fencing token as it is. Returns the claim with its renewed lease.
    async fn renew(&self, owner: &str, name: &str) -> Result<Fenced<Claim>>;

    /// [`renew`](ClaimPool::renew), and every claim of the pool as the
    /// renewal left it, with the pool's token: what a holder reads to reap
    /// the dead (see [the living reap the dead](crate::lease#the-living-reap-the-dead)).
    /// The same errors as `renew`. The default renews, then reads
    /// [`claims`](ClaimPool::claims) (two requests); stores read the pool
    /// with the renewal where they can, at no extra request.
    async fn renew_and_read(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<(Fenced<Claim>, Fenced<Vec<Claim>>)> {
        let renewed = self.renew(owner, name).await?;
        Ok((renewed, self.claims().await?))
    }

    /// Remove the claim an observer watched go unrenewed for a full lease,
    /// if it is still exactly as observed. Returns the new token, or `None`
    /// if the claim changed (renewed, released) or is gone.
    async fn expire(&self, expired: &Expired<Claim>) -> Result<Option<FencingToken>>;

    /// Give back `owner`'s name: whichever it holds (`token` `None`), or
    /// only the claim made at `token` ([`Claim::token`];
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) otherwise, and
    /// nothing is written). Returns the claim as it was, with the token
    /// after the release.
    async fn release_if(&self, owner: &str, token: Option<FencingToken>) -> Result<Fenced<Claim>>;

    /// Give back `owner`'s name, whichever claim it holds. Returns the claim
    /// as it was, with the token after the release.
    async fn release(&self, owner: &str) -> Result<Fenced<Claim>> {
        self.release_if(owner, None).await
    }

    /// The claim of `owner`;
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) if it holds none.
    async fn claim_of(&self, owner: &str) -> Result<Fenced<Claim>>;

    /// Every claim, by name (numbers numerically, see the contract), with
    /// the pool's token.
    async fn claims(&self) -> Result<Fenced<Vec<Claim>>>;

    /// Every claim, as [`claims`](ClaimPool::claims) lists them, with the
    /// roster size the pool is sealed at, in one read, and the pool's token.
    async fn roster(&self) -> Result<Fenced<Roster>>;

    /// Delete the pool. Returns the token it had, or `None` if there was no
    /// pool under this id (which is not an error).
    async fn remove(&self) -> Result<Option<FencingToken>>;

    /// The pool's fencing token now (0 for an absent pool): what a waiter
    /// checks. The default reads every claim; stores read the token alone.
    async fn token(&self) -> Result<FencingToken> {
        Ok(self.claims().await?.fencing_token)
    }

    /// Take the kernel's sign of life of `holder` before it writes its
    /// claim, where the store has kernel liveness (SQLite on Linux; see the
    /// [protocol](crate::lease)): keep it for as long as the claim lives;
    /// `None` where the store has none (the lease rules alone apply). A
    /// store that has it removes the claims of holders it finds gone when
    /// it reads them for a waiter, a claimer or a list.
    fn keep_alive(&self, holder: HolderId) -> Result<Option<KeepAlive>> {
        let _ = holder;
        Ok(None)
    }

    /// Whether this handle is told of changes by its store (push), rather
    /// than finding them by reading the token every `poll` of
    /// [`wait_for_change`](ClaimPool::wait_for_change).
    fn pushes(&self) -> bool {
        false
    }

    /// Wait until the pool's token is no longer `seen` (`true`, possibly
    /// spurious: read the pool again) or `until` passes (`false`; `None`
    /// waits for ever), as [`Queue::wait_for_change`](crate::Queue::wait_for_change)
    /// does for a queue.
    async fn wait_for_change(
        &self,
        seen: FencingToken,
        until: Option<Instant>,
        poll: Duration,
    ) -> Result<bool> {
        poll_for_change(seen.get(), until, poll, || async {
            Ok(self.token().await?.get())
        })
        .await
    }
}
