//! A lease as stored: [`Lease`] (what readers see) and `LeaseRecord` (what
//! the stores keep, in milliseconds), the bounds of a lease's duration and
//! its check, and the conversions of times to stored milliseconds.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lease::holder_id::HolderId;

/// The shortest lease a ticket may have.
pub const MIN_LEASE: Duration = Duration::from_millis(50);

/// The longest lease a ticket may have: a ticket that may stay a day without
/// a sign of life is a permanent ticket in all but name.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// The lease of a leased ticket, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// How long the ticket may go without a renewal before an observer may
    /// remove it.
    pub duration: Duration,
    /// How many times the holder renewed the ticket: its record version,
    /// which observers watch.
    pub renewals: u64,
    /// The holder's wall-clock time of its last renewal (or of the join), if
    /// the store keeps it. For display only: no decision depends on it.
    pub renewed_at: Option<SystemTime>,
    /// The holder that made the ticket or claim
    /// ([`LeaseHolder`](crate::LeaseHolder), [`ClaimHolder`](crate::ClaimHolder)),
    /// or `None` for one made without a holder (a leased `queue join` from a
    /// shell).
    pub holder: Option<HolderId>,
}

impl Lease {
    /// A lease as stored, without a holder; mostly useful to backends and
    /// tests.
    pub fn new(duration: Duration, renewals: u64, renewed_at: Option<SystemTime>) -> Self {
        Lease {
            duration,
            renewals,
            renewed_at,
            holder: None,
        }
    }

    /// The same lease, held by `holder`.
    pub fn with_holder(mut self, holder: Option<HolderId>) -> Self {
        self.holder = holder;
        self
    }
}

/// Check a lease duration.
pub(crate) fn validate(lease: Duration) -> Result<()> {
    if lease < MIN_LEASE || lease > MAX_LEASE {
        return Err(Error::invalid(format!(
            "a lease of {} ms is out of range: it must be from {} ms to {} h",
            lease.as_millis(),
            MIN_LEASE.as_millis(),
            MAX_LEASE.as_secs() / 3600
        )));
    }
    Ok(())
}

/// Whole milliseconds of a duration, as stored.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch of a wall-clock time, as stored.
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, millis)
}

/// The wall-clock time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_unix_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A lease as the stores keep it, in whole milliseconds: a ticket's (beside
/// its queue entry, never inside it, so that an entry stays what monotone
/// 0.4 reads and writes) or a claim's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseRecord {
    pub duration_ms: u64,
    pub renewals: u64,
    /// The holder's wall-clock time of the last renewal, in milliseconds
    /// since the Unix epoch; for display only.
    pub renewed_at_ms: u64,
    /// The holder that made the record, if one did.
    pub holder: Option<HolderId>,
}

impl LeaseRecord {
    /// A new lease of `duration` without a holder, joined at `now_ms`.
    pub fn new(duration: Duration, now_ms: u64) -> Self {
        LeaseRecord {
            duration_ms: millis(duration),
            renewals: 0,
            renewed_at_ms: now_ms,
            holder: None,
        }
    }

    /// The same lease, held by `holder`.
    pub fn held_by(mut self, holder: Option<HolderId>) -> Self {
        self.holder = holder;
        self
    }

    /// The lease of a record made now with a lease of `lease` (`None`: a
    /// permanent one) by `holder`, after checking both: a lease must be in
    /// range, and a holder holds a leased record only.
    pub fn starting_now(lease: Option<Duration>, holder: Option<HolderId>) -> Result<Option<Self>> {
        let Some(d) = lease else {
            return match holder {
                None => Ok(None),
                Some(h) => Err(Error::invalid(format!(
                    "holder {h} asks for a permanent record: a holder holds a leased one"
                ))),
            };
        };
        validate(d)?;
        let now = unix_millis(SystemTime::now());
        Ok(Some(LeaseRecord::new(d, now).held_by(holder)))
    }

    pub fn lease(&self) -> Lease {
        Lease::new(
            Duration::from_millis(self.duration_ms),
            self.renewals,
            Some(from_unix_millis(self.renewed_at_ms)),
        )
        .with_holder(self.holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn lease_bounds() {
        assert!(validate(MIN_LEASE).is_ok());
        assert!(validate(MAX_LEASE).is_ok());
        let e = validate(Duration::from_millis(49)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(validate(MAX_LEASE + Duration::from_millis(1)).is_err());
    }
}
