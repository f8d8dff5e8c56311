//! The one error type of the crate.
//!
//! Every failure is an [`Error`] carrying an [`ErrorKind`], a one-line message
//! that names the id (and process) involved, and optionally the underlying
//! cause. Callers branch on [`Error::kind`]; the CLI maps kinds to exit codes.
//! Backends translate their native errors into these kinds in one place each.

use std::fmt;

/// A boxed cause, kept for `source()` chains and debug logs.
type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, by meaning rather than by backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The item, or the process in a queue, does not exist.
    NotFound,
    /// An operation on an id that holds another kind of item: a counter
    /// operation on a queue or a tally id, and so on.
    WrongType,
    /// The caller passed something invalid: an empty or oversized id, a
    /// control character, a malformed tag. Nothing was changed.
    InvalidInput,
    /// Optimistic concurrency gave up: other writers kept winning within the
    /// retry budget, or the store stayed locked past its busy timeout.
    Conflict,
    /// The store is rate-limiting requests and the retry budget ran out.
    Throttled,
    /// The store cannot be reached (network, timeout, service error).
    Unavailable,
    /// The store holds data this crate cannot read: it is reported, never
    /// overwritten.
    Corrupt,
    /// The store is misconfigured: a bad URL, a file that is not a monotone
    /// database, a missing table, no credentials, no region.
    Config,
    /// The store refused the caller's credentials for this operation.
    PermissionDenied,
    /// The store or operation is not available in this build (for example
    /// `dynamodb://` without the `aws` feature).
    Unsupported,
    /// A wait ended before what it waited for happened: a ticket did not
    /// reach the head of its queue in time (or at once, when asked not to
    /// wait).
    Timeout,
    /// A lease can no longer be counted on: its ticket was removed (it
    /// expired, or someone made it leave), or renewals failed until the
    /// holder's safety margin ran out.
    LeaseLost,
    /// Every candidate of a claim pool is taken.
    Exhausted,
    /// A write conditional on a version found another version: someone else
    /// wrote first. Nothing was written.
    VersionMismatch,
    /// A join or claim without a holder asked for something other than the
    /// ticket or claim its process (owner) holds already: other tags, a
    /// lease of another duration, a lease where the ticket is permanent or
    /// the reverse; or a holder asked to hold a permanent one. Nothing was
    /// written: leave (release) first to join (claim) anew.
    Mismatch,
    /// A holder ([`LeaseHolder`](crate::LeaseHolder),
    /// [`ClaimHolder`](crate::ClaimHolder)) asked for the ticket or claim of
    /// a process (owner) that another holder, or a join without a holder,
    /// holds already. Nothing was written; the holders wait for it to go
    /// (or fail with [`ErrorKind::Timeout`] when they may not wait).
    Held,
}

impl ErrorKind {
    /// Whether retrying the same operation later may succeed.
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            ErrorKind::Conflict
                | ErrorKind::Throttled
                | ErrorKind::Unavailable
                | ErrorKind::Timeout
        )
    }

    /// A short lowercase name, stable for logs and scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::WrongType => "wrong type",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Config => "configuration",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timed out",
            ErrorKind::LeaseLost => "lease lost",
            ErrorKind::Exhausted => "exhausted",
            ErrorKind::VersionMismatch => "version mismatch",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Held => "held by another",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a monotone store.
///
/// `Display` gives one line that names what was wrong; the cause, if any, is
/// available through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Cause>,
}

impl Error {
    /// An error of `kind` with a one-line `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl Into<Cause>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }

    /// The one-line message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// `id` holds a `found` (counter, queue, ...) where a `wanted` was asked
    /// for.
    pub(crate) fn wrong_type(id: &str, found: &str, wanted: &str) -> Self {
        Error::new(
            ErrorKind::WrongType,
            format!("`{id}` is a {found}, not a {wanted}"),
        )
    }

    pub(crate) fn queue_not_found(id: &str) -> Self {
        Error::new(ErrorKind::NotFound, format!("queue `{id}` does not exist"))
    }

    pub(crate) fn process_not_found(id: &str, process_id: &str) -> Self {
        Error::new(
            ErrorKind::NotFound,
            format!("process `{process_id}` is not in queue `{id}`"),
        )
    }

    /// `owner` holds no claim in the pool `id` (or there is no such pool).
    pub(crate) fn claim_not_found(id: &str, owner: &str) -> Self {
        Error::new(
            ErrorKind::NotFound,
            format!("`{owner}` holds no claim in claim pool `{id}`"),
        )
    }

    /// Every one of the `candidates` of a claim in the pool `id` is taken.
    pub(crate) fn exhausted(id: &str, candidates: usize) -> Self {
        let what = if candidates == 1 {
            "the only candidate is taken".to_owned()
        } else {
            format!("all {candidates} candidates are taken")
        };
        Error::new(
            ErrorKind::Exhausted,
            format!("claim pool `{id}` is exhausted: {what}; nothing was claimed"),
        )
    }

    /// A write conditional on version `expected` of the document `id` found
    /// version `current`: [`ErrorKind::VersionMismatch`], naming both.
    pub fn version_mismatch(id: &str, expected: u64, current: u64) -> Self {
        Error::new(
            ErrorKind::VersionMismatch,
            format!(
                "document `{id}` is at version {current}, not {expected}: \
                 it was written since that version was read; nothing was written"
            ),
        )
    }

    /// A counter (or a version) has reached the largest value a store can
    /// hold: nothing the caller passed was wrong, the item is full.
    pub(crate) fn overflow(id: &str) -> Self {
        Error::new(
            ErrorKind::Unsupported,
            format!("`{id}` has reached the largest value this store can hold"),
        )
    }

    /// Adding `n` to the tally `id` holding `value` would leave the range of
    /// `i64`. Unlike a counter's [`overflow`](Error::overflow), this is the
    /// amount's doing (a smaller one, or one of the other sign, still
    /// fits), so it is [`ErrorKind::InvalidInput`]: nothing is changed.
    pub(crate) fn tally_overflow(id: &str, value: i64, n: i64) -> Self {
        Error::invalid(format!(
            "tally `{id}` holds {value}; adding {n} would leave the range of a signed \
             64-bit integer ({} to {}), so nothing was added",
            i64::MIN,
            i64::MAX
        ))
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_id_and_process() {
        let e = Error::process_not_found("myqueue", "foo");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "process `foo` is not in queue `myqueue`");
        assert!(!e.is_temporary());
        assert!(Error::new(ErrorKind::Conflict, "x").is_temporary());
    }

    #[test]
    fn source_is_kept() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::new(ErrorKind::Unavailable, "cannot write").with_source(io);
        let source = std::error::Error::source(&e).expect("source kept");
        assert_eq!(source.to_string(), "disk on fire");
    }
}
