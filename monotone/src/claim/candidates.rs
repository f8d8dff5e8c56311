//! [`Candidates`]: the ordered list of names a claim is made from, checked
//! when built, and the bounds that keep a full pool in one DynamoDB item.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::RangeInclusive;

use crate::error::{Error, Result};

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

/// The order in which a pool lists its claims, whatever candidates each
/// claimant used: by name, the decimal names of a range (`"2"`, `"10"`)
/// numerically and before every other name, the others by their bytes
/// (Unicode code points). A name is a number here when it is what
/// [`Candidates::range`] makes: ASCII digits without a leading zero (or
/// `"0"`) that fit a `u64`.
pub(crate) fn listing_order(a: &str, b: &str) -> Ordering {
    match (range_number(a), range_number(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The number a range candidate `name` stands for, if it is one.
fn range_number(name: &str) -> Option<u64> {
    let canonical = name.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && (name == "0" || !name.starts_with('0'));
    canonical.then(|| name.parse().ok()).flatten()
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
    fn claims_are_listed_by_name_numbers_numerically_first() {
        let mut names = vec![
            "b",
            "10",
            "Denali",
            "2",
            "010",
            "a",
            "0",
            "9",
            "18446744073709551616",
        ];
        names.sort_by(|a, b| listing_order(a, b));
        assert_eq!(
            names,
            [
                "0",
                "2",
                "9",
                "10",
                "010",
                "18446744073709551616",
                "Denali",
                "a",
                "b"
            ]
        );
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
