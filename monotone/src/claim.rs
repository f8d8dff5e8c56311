//! The [`ClaimPool`] trait, its [`Claim`]s and [`Candidates`], and its
//! contract.
//!
//! A claim pool hands out names: each owner claims the first free name of an
//! ordered list of candidates (a ZooKeeper `myid` from `1..=255`, a mountain
//! from a list of a hundred), keeps it while it needs it, and gives it back.
//! A name is held by one owner at a time. Claims are permanent (kept until
//! released) or leased (kept while their holder renews them, see
//! [`ClaimHolder`](crate::ClaimHolder) and the [`lease`](crate::lease)
//! protocol). The rules live once in `claim_state`, which the stores apply.

use std::borrow::Cow;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::lease::expiry::{Expired, Leased};
use crate::lease::record::Lease;
use crate::queue::fencing::{Fenced, FencingToken};

/// The most candidates one claim may name, and the most claims one pool may
/// hold.
///
/// ZooKeeper's server ids run from 1 to 255, and a fleet that names its
/// members from a list names a few hundred at most. The bound keeps a full
/// pool inside one DynamoDB item (400 KB) even with owner ids of the longest
/// length accepted ([`MAX_ID_BYTES`](crate::MAX_ID_BYTES), 1024 bytes) and
/// names of [`MAX_NAME_BYTES`]: 256 such claims take 347,057 of an item's
/// 409,600 bytes by DynamoDB's count, which leaves room for the claimers
/// waiting to be served (see the DynamoDB store's docs). Larger input is
/// refused before anything is written.
pub const MAX_CANDIDATES: usize = 256;

/// The longest candidate name, in bytes: a host name (253) fits, and with
/// [`MAX_CANDIDATES`] a full pool fits one DynamoDB item.
pub const MAX_NAME_BYTES: usize = 256;

/// An ordered list of names to claim from: explicit names, or the decimal
/// numbers of an integer range.
///
/// Built with [`Candidates::names`] or [`Candidates::range`], which refuse an
/// empty list, a name given twice, more than [`MAX_CANDIDATES`] names, and
/// names that are empty, longer than [`MAX_NAME_BYTES`] or hold a control
/// character, with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
/// before anything is read or written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidates {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    Names(Vec<String>),
    /// The decimal numbers from `start` to `end`, both included.
    Range {
        start: u64,
        end: u64,
    },
}

impl Candidates {
    /// The names given, in the order given.
    pub fn names<I, S>(names: I) -> Result<Candidates>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.is_empty() {
            return Err(Error::invalid("the list of candidates is empty"));
        }
        if names.len() > MAX_CANDIDATES {
            return Err(too_many(names.len()));
        }
        let mut seen = std::collections::HashSet::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            check_name(i, name)?;
            if !seen.insert(name.as_str()) {
                return Err(Error::invalid(format!(
                    "candidate `{name}` is given more than once"
                )));
            }
        }
        Ok(Candidates {
            kind: Kind::Names(names),
        })
    }

    /// The numbers of `range`, both ends included, in ascending order, as
    /// decimal names (`1..=255`: "1", "2", ... "255").
    pub fn range(range: RangeInclusive<u64>) -> Result<Candidates> {
        let (start, end) = range.into_inner();
        if start > end {
            return Err(Error::invalid(format!(
                "the range {start}..={end} is empty: its start is above its end"
            )));
        }
        let count = end - start;
        if count >= MAX_CANDIDATES as u64 {
            return Err(too_many(count.saturating_add(1)));
        }
        Ok(Candidates {
            kind: Kind::Range { start, end },
        })
    }

    /// How many candidates there are (at least 1).
    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::Names(names) => names.len(),
            Kind::Range { start, end } => (end - start) as usize + 1,
        }
    }

    /// Always false: an empty list is refused when built.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The candidate at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<Cow<'_, str>> {
        match &self.kind {
            Kind::Names(names) => names.get(index).map(|n| Cow::Borrowed(n.as_str())),
            Kind::Range { start, end } => {
                let n = start.checked_add(u64::try_from(index).ok()?)?;
                (n <= *end).then(|| Cow::Owned(n.to_string()))
            }
        }
    }

    /// The candidates in order.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, str>> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// The index of `name` among the candidates, if it is one.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        match &self.kind {
            Kind::Names(names) => names.iter().position(|n| n == name),
            Kind::Range { start, end } => {
                // Only the canonical decimal form is a candidate: "07" is not 7.
                let n: u64 = name.parse().ok()?;
                (n.to_string() == name && (*start..=*end).contains(&n))
                    .then(|| (n - start) as usize)
            }
        }
    }

    /// A short text that is equal for two lists exactly when they hold the
    /// same names in the same order (up to a 128-bit hash for lists of
    /// names): how claimers waiting in one pool tell whether they claim from
    /// the same list.
    pub(crate) fn digest(&self) -> String {
        match &self.kind {
            Kind::Range { start, end } => format!("{start}..={end}"),
            Kind::Names(names) => {
                let mut hash = Fnv128::new();
                for name in names {
                    hash.write(&(name.len() as u32).to_le_bytes());
                    hash.write(name.as_bytes());
                }
                format!("{}:{:032x}", names.len(), hash.finish())
            }
        }
    }
}

impl fmt::Display for Candidates {
    /// `1..=255`, or the names separated by commas (at most ten of them,
    /// then how many more).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Range { start, end } => write!(f, "{start}..={end}"),
            Kind::Names(names) => {
                let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
                f.write_str(&shown.join(","))?;
                if names.len() > shown.len() {
                    write!(f, ",... ({} more)", names.len() - shown.len())?;
                }
                Ok(())
            }
        }
    }
}

fn too_many(n: impl fmt::Display) -> Error {
    Error::invalid(format!(
        "{n} candidates given; the limit is {MAX_CANDIDATES}, so that a full pool fits one \
         DynamoDB item"
    ))
}

/// Check one candidate name (the `i`-th).
fn check_name(i: usize, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("candidate {} is empty", i + 1)));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(format!(
            "candidate {} is {} bytes long; the limit is {MAX_NAME_BYTES}",
            i + 1,
            name.len()
        )));
    }
    match name.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(Error::invalid(format!(
            "candidate {} contains the control character {c:?} at byte {at}",
            i + 1
        ))),
        None => Ok(()),
    }
}

/// FNV-1a with 128 bits: stable across processes and versions, unlike the
/// standard library's hasher, and wide enough that two different lists of
/// candidates never meet by chance.
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn new() -> Self {
        Fnv128(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u128 {
        self.0
    }
}

/// One claimed name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// The name claimed.
    pub name: String,
    /// Who holds it.
    pub owner: String,
    /// Its index in the candidates it was claimed from (0 for the first):
    /// claims are listed in this order.
    pub index: usize,
    /// The pool's fencing token right after this claim was made. Every
    /// claim, release and expiry adds one to the pool's token, so whoever
    /// holds a name later holds a larger token than every earlier holder of
    /// any name.
    pub token: FencingToken,
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
            lease: None,
        }
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

/// What [`ClaimPool::claim_with`] did.
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
/// - [`claim`](ClaimPool::claim_with) gives the owner the first candidate,
///   in the order given, that no one holds at the moment of the write. If
///   the owner holds a name already, it returns that claim unchanged (even
///   if the name is not among the candidates given, and whatever lease was
///   asked for) with the current token, and writes nothing. If every
///   candidate is held, it fails with
///   [`ErrorKind::Exhausted`](crate::ErrorKind::Exhausted), naming the pool
///   and the number of candidates, and writes nothing; so it does when the
///   pool holds [`MAX_CANDIDATES`] claims already.
/// - A pool that does not exist has no claims and the token 0. Every claim,
///   release and expiry adds exactly one to the token and the claim records
///   the token after it ([`Claim::token`]); reads and renewals leave it as
///   it is.
/// - [`release`](ClaimPool::release) of an owner that holds no name, or on
///   a pool that does not exist, fails with
///   [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) and writes nothing.
///   A released name is free at once: the next claim whose candidates
///   include it gets it if it is the first free one.
/// - [`claims`](ClaimPool::claims) lists every claim in the order of its
///   [`index`](Claim::index), then by name.
/// - If the id holds a counter, a queue or any other kind of item, every
///   method fails with [`ErrorKind::WrongType`](crate::ErrorKind::WrongType)
///   and changes nothing; the other kinds answer the same about a pool.
/// - Bad input (an owner that is not a valid process id, a lease out of
///   range) is [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
///   and writes nothing; [`Candidates`] are checked when built.
/// - A successful write is durable in its store before it returns.
/// - [`remove`](ClaimPool::remove) deletes the pool, its claims and its
///   token; a pool created again under the same id starts over at token 1.
///
/// ## Leases
///
/// As for queue tickets (see [`Queue`](crate::Queue)):
///
/// - A claim made with a lease carries it in [`Claim::lease`], with 0
///   renewals; one made without is permanent and never expires.
/// - [`renew`](ClaimPool::renew) adds one to the lease's `renewals` and
///   writes nothing else: the token stays, and no claim or release of
///   another owner has to retry because of it. It fails with
///   [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) if the owner no
///   longer holds that name with a lease.
/// - [`expire`](ClaimPool::expire) removes a claim only if it is exactly as
///   an [`Expired`] observation saw it: same name, owner, token and
///   renewals. It is a write like a release: the token grows by one. A
///   renewal that came first wins, and the claim stays.
#[async_trait]
pub trait ClaimPool: Send + Sync + fmt::Debug {
    /// The id this pool is stored under.
    fn id(&self) -> &str;

    /// Claim the first free name of `candidates` for `owner`, with a lease
    /// of the given duration or (`None`) a permanent claim, or return the
    /// owner's existing claim. A lease must be from
    /// [`MIN_LEASE`](crate::lease::MIN_LEASE) to
    /// [`MAX_LEASE`](crate::lease::MAX_LEASE).
    async fn claim_with(
        &self,
        owner: &str,
        candidates: &Candidates,
        lease: Option<Duration>,
    ) -> Result<Claimed>;

    /// Claim the first free name of `candidates` for `owner` for good (until
    /// released), or return the owner's existing claim.
    async fn claim(&self, owner: &str, candidates: &Candidates) -> Result<Fenced<Claim>> {
        Ok(self.claim_with(owner, candidates, None).await?.claim)
    }

    /// Claim the first free name with a lease that expires unless renewed
    /// within `lease`, or return the owner's existing claim. Most callers
    /// want a [`ClaimHolder`](crate::ClaimHolder), which claims this way and
    /// renews in the background.
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

    /// Remove the claim an observer watched go unrenewed for a full lease,
    /// if it is still exactly as observed. Returns the new token, or `None`
    /// if the claim changed (renewed, released) or is gone.
    async fn expire(&self, expired: &Expired<Claim>) -> Result<Option<FencingToken>>;

    /// Give back `owner`'s name. Returns the claim as it was, with the token
    /// after the release.
    async fn release(&self, owner: &str) -> Result<Fenced<Claim>>;

    /// The claim of `owner`;
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) if it holds none.
    async fn claim_of(&self, owner: &str) -> Result<Fenced<Claim>>;

    /// Every claim, in candidate order, with the pool's token.
    async fn claims(&self) -> Result<Fenced<Vec<Claim>>>;

    /// Delete the pool. Returns the token it had, or `None` if there was no
    /// pool under this id (which is not an error).
    async fn remove(&self) -> Result<Option<FencingToken>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn kind<T: fmt::Debug>(r: Result<T>) -> ErrorKind {
        r.unwrap_err().kind()
    }

    #[test]
    fn ranges_are_decimal_names_both_ends_included() {
        let c = Candidates::range(1..=255).unwrap();
        assert_eq!(c.len(), 255);
        assert_eq!(c.get(0).unwrap(), "1");
        assert_eq!(c.get(254).unwrap(), "255");
        assert_eq!(c.get(255), None);
        assert_eq!(c.index_of("255"), Some(254));
        assert_eq!(c.index_of("0"), None);
        assert_eq!(c.index_of("07"), None, "only the canonical form");
        assert_eq!(c.index_of("+7"), None);
        assert_eq!(c.to_string(), "1..=255");
        let top = Candidates::range(u64::MAX - 1..=u64::MAX).unwrap();
        assert_eq!(
            top.iter().collect::<Vec<_>>(),
            [(u64::MAX - 1).to_string(), u64::MAX.to_string()]
        );
        assert_eq!(Candidates::range(0..=0).unwrap().len(), 1);
        assert_eq!(
            Candidates::range(1..=256).unwrap().len(),
            MAX_CANDIDATES,
            "the bound itself is allowed"
        );
        assert_eq!(kind(Candidates::range(1..=257)), ErrorKind::InvalidInput);
        assert_eq!(
            kind(Candidates::range(0..=u64::MAX)),
            ErrorKind::InvalidInput
        );
        #[allow(clippy::reversed_empty_ranges)]
        let empty = Candidates::range(5..=4);
        assert_eq!(kind(empty), ErrorKind::InvalidInput);
    }

    #[test]
    fn names_keep_their_order_and_are_checked() {
        let c = Candidates::names(["Denali", "MtLogan", "PicoDeOrizaba"]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            ["Denali", "MtLogan", "PicoDeOrizaba"]
        );
        assert_eq!(c.index_of("MtLogan"), Some(1));
        assert_eq!(c.index_of("K2"), None);
        assert_eq!(c.to_string(), "Denali,MtLogan,PicoDeOrizaba");
        let e = Candidates::names(Vec::<String>::new()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = Candidates::names(["a", "b", "a"]).unwrap_err();
        assert!(e.to_string().contains("`a` is given more than once"), "{e}");
        assert_eq!(kind(Candidates::names(["a", ""])), ErrorKind::InvalidInput);
        assert_eq!(kind(Candidates::names(["a\nb"])), ErrorKind::InvalidInput);
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(kind(Candidates::names([long])), ErrorKind::InvalidInput);
        assert!(Candidates::names(["x".repeat(MAX_NAME_BYTES)]).is_ok());
        let many: Vec<String> = (0..=MAX_CANDIDATES).map(|i| format!("n{i}")).collect();
        let e = Candidates::names(many).unwrap_err();
        assert!(e.to_string().contains("257 candidates"), "{e}");
        let many: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        assert!(Candidates::names(many)
            .unwrap()
            .to_string()
            .ends_with(",... (30 more)"));
    }

    #[test]
    fn digests_tell_lists_apart() {
        let d = |c: Candidates| c.digest();
        assert_eq!(d(Candidates::range(1..=255).unwrap()), "1..=255");
        let abc = d(Candidates::names(["a", "b", "c"]).unwrap());
        assert_eq!(abc, d(Candidates::names(["a", "b", "c"]).unwrap()));
        for other in [
            Candidates::names(["a", "c", "b"]).unwrap(),
            Candidates::names(["ab", "c"]).unwrap(),
            Candidates::names(["a", "bc"]).unwrap(),
            Candidates::names(["a", "b"]).unwrap(),
            Candidates::names(["1", "2", "3"]).unwrap(),
        ] {
            assert_ne!(abc, d(other));
        }
        assert_ne!(
            d(Candidates::names(["1", "2", "3"]).unwrap()),
            d(Candidates::range(1..=3).unwrap()),
            "a range and the same names are told apart (they are equal lists, but \
             telling them apart costs nothing but a missed chance to serve)"
        );
        // Known values, so that the hash stays the same across versions:
        // FNV-1a's own test vector, and ours.
        let mut h = Fnv128::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
        assert_eq!(abc, "3:494da52352d784477f01912b2211bb22");
    }
}
