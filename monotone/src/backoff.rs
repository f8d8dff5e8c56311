//! How long to wait before trying a conditional write again, and when to give
//! up: one policy for every store, used by the DynamoDB queue and counter and
//! by the document update helper
//! ([`DocumentExt::update`](crate::DocumentExt::update)) on any store.
//!
//! A write conditional on the item's `Version` fails when another client
//! wrote first. Retrying at once would collide again with the other losers of
//! the same race, so each retry waits a random time between zero and an
//! exponentially growing ceiling ("full jitter", which spreads contending
//! clients out fastest). The budget is bounded both in attempts and in time,
//! after which the operation fails with
//! [`ErrorKind::Conflict`](crate::ErrorKind::Conflict).
//!
//! The failed write returns the item as it was then, and a retry that follows
//! soon writes on top of that, with no read in between. After a longer wait
//! the retry reads the item again: under sustained contention other clients
//! have written meanwhile, and a retry on a stale item is bound to fail
//! (measured: retrying on the returned item after every wait starved some
//! joins of 8 contending processes past any reasonable budget).
//!
//! Nothing here sleeps or reads a clock: [`Attempts::next_delay`] takes the
//! current time and returns the delay, and the caller sleeps. So the policy is
//! tested without waiting, and the jitter comes from a seedable generator.

use std::time::{Duration, Instant};

/// The retry policy for conditional writes that lost a race with another
/// client (optimistic concurrency). Throttling and network errors are retried
/// by the AWS SDK itself, under its own policy. Also exported as
/// `monotone::dynamodb::Backoff`, where it started.
///
/// The defaults allow 32 attempts within 15 seconds, waiting up to
/// 25 ms × 2ⁿ⁻¹ (at most 500 ms) before the n-th retry. Measured on the
/// local test server, 8 processes each joining one queue 50 times in a row
/// retried a join's write 1.2 times on average and at most 13 times, and
/// the unluckiest join took about 3 s.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// Most write attempts for one operation, the first one included.
    pub max_attempts: u32,
    /// The ceiling of the first retry's delay; it doubles with each retry.
    pub base: Duration,
    /// The largest ceiling a delay can reach.
    pub cap: Duration,
    /// No retry starts later than this after the first attempt.
    pub max_elapsed: Duration,
    /// A retry that waited at most this long reuses the item the failed
    /// write returned; after a longer wait that item is likely stale (other
    /// clients kept writing), so the retry reads the item again first.
    pub reuse_within: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            max_attempts: 32,
            base: Duration::from_millis(25),
            cap: Duration::from_millis(500),
            max_elapsed: Duration::from_secs(15),
            reuse_within: Duration::from_millis(25),
        }
    }
}

impl Backoff {
    /// The default policy (see [`Backoff`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Set [`max_attempts`](Backoff::max_attempts) (at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Set the first retry's ceiling [`base`](Backoff::base) and the largest
    /// ceiling [`cap`](Backoff::cap).
    pub fn with_delays(mut self, base: Duration, cap: Duration) -> Self {
        self.base = base;
        self.cap = cap.max(base);
        self
    }

    /// Set [`max_elapsed`](Backoff::max_elapsed).
    pub fn with_max_elapsed(mut self, limit: Duration) -> Self {
        self.max_elapsed = limit;
        self
    }

    /// Set [`reuse_within`](Backoff::reuse_within).
    pub fn with_reuse_within(mut self, limit: Duration) -> Self {
        self.reuse_within = limit;
        self
    }

    /// The ceiling of the delay before retry number `retry` (1 for the first
    /// retry): `base × 2^(retry-1)`, at most `cap`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// Start counting the attempts of one operation begun at `started`.
    pub(crate) fn start(&self, started: Instant, jitter: Jitter) -> Attempts<'_> {
        Attempts {
            policy: self,
            started,
            failed: 0,
            jitter,
        }
    }
}

/// The attempts of one operation under a [`Backoff`] policy.
#[derive(Debug)]
pub(crate) struct Attempts<'a> {
    policy: &'a Backoff,
    started: Instant,
    failed: u32,
    jitter: Jitter,
}

/// Why [`Attempts::next_delay`] said to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted {
    /// Attempts made, all of which failed.
    pub attempts: u32,
    /// Time since the first attempt.
    pub elapsed: Duration,
}

impl Attempts<'_> {
    /// Record a failed attempt at `now`; return how long to wait before the
    /// next one, or [`Exhausted`] if the budget is spent.
    pub fn next_delay(&mut self, now: Instant) -> Result<Duration, Exhausted> {
        self.failed += 1;
        let elapsed = now.saturating_duration_since(self.started);
        let exhausted = Exhausted {
            attempts: self.failed,
            elapsed,
        };
        if self.failed >= self.policy.max_attempts {
            return Err(exhausted);
        }
        let ceiling = self.policy.ceiling(self.failed);
        let delay = ceiling.mul_f64(self.jitter.next_unit());
        if elapsed + delay > self.policy.max_elapsed {
            return Err(exhausted);
        }
        Ok(delay)
    }

    /// Failed attempts so far.
    pub fn retries(&self) -> u32 {
        self.failed
    }
}

/// A small, fast pseudo-random generator (SplitMix64) for jitter. Not for
/// anything that needs unpredictability: it only spreads retries apart.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// A generator with a fixed seed, for tests.
    #[cfg(test)]
    pub fn seeded(seed: u64) -> Self {
        Jitter(seed)
    }

    /// A generator seeded from the clock, the process id and a per-process
    /// counter, so that processes and tasks started together still differ.
    pub fn from_entropy() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let calls = CALLS.fetch_add(1, Ordering::Relaxed);
        let mut j = Jitter(nanos ^ (u64::from(std::process::id()) << 32) ^ calls.rotate_left(17));
        j.next_u64(); // mix the seed once
        j
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::new().with_delays(10 * MS, 100 * MS);
        let ceilings: Vec<_> = (1..=6).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [10 * MS, 20 * MS, 40 * MS, 80 * MS, 100 * MS, 100 * MS]
        );
        // No overflow however many retries.
        assert_eq!(b.ceiling(u32::MAX), 100 * MS);
    }

    #[test]
    fn delays_are_full_jitter_below_the_ceiling() {
        let b = Backoff::new()
            .with_delays(10 * MS, 1000 * MS)
            .with_max_attempts(12)
            .with_max_elapsed(Duration::from_secs(3600));
        let t0 = Instant::now();
        let mut attempts = b.start(t0, Jitter::seeded(7));
        let mut delays = vec![];
        while let Ok(d) = attempts.next_delay(t0) {
            delays.push(d);
        }
        assert_eq!(delays.len(), 11, "12 attempts: 11 waits between them");
        for (i, d) in delays.iter().enumerate() {
            assert!(*d < b.ceiling(i as u32 + 1), "retry {}: {d:?}", i + 1);
        }
        // Full jitter: not all at the ceiling, not all the same.
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 5, "{delays:?}");
    }

    #[test]
    fn the_attempt_budget_ends_the_retries() {
        let b = Backoff::new().with_max_attempts(3);
        let t0 = Instant::now();
        let mut a = b.start(t0, Jitter::seeded(1));
        assert!(a.next_delay(t0).is_ok());
        assert!(a.next_delay(t0).is_ok());
        let e = a.next_delay(t0 + 5 * MS).unwrap_err();
        assert_eq!(
            e,
            Exhausted {
                attempts: 3,
                elapsed: 5 * MS
            }
        );
        assert_eq!(a.retries(), 3);
        // One attempt in all: never a retry.
        let one = Backoff::new().with_max_attempts(0);
        assert_eq!(one.max_attempts, 1);
        assert!(one.start(t0, Jitter::seeded(1)).next_delay(t0).is_err());
    }

    #[test]
    fn the_time_budget_ends_the_retries() {
        let b = Backoff::new()
            .with_delays(100 * MS, 100 * MS)
            .with_max_attempts(1000)
            .with_max_elapsed(Duration::from_secs(1));
        let t0 = Instant::now();
        let mut a = b.start(t0, Jitter::seeded(3));
        // Simulated time: each delay is "slept" by moving `now` on.
        let mut now = t0;
        let mut retries = 0;
        while let Ok(d) = a.next_delay(now) {
            now += d;
            retries += 1;
            assert!(now - t0 <= Duration::from_secs(1));
        }
        assert!(retries > 5, "retried until the time budget: {retries}");
        assert!(a.retries() < 1000);
    }

    #[test]
    fn jitter_is_uniform_enough_and_reproducible() {
        let mut a = Jitter::seeded(42);
        let mut b = Jitter::seeded(42);
        let xs: Vec<f64> = (0..10_000).map(|_| a.next_unit()).collect();
        let ys: Vec<f64> = (0..10_000).map(|_| b.next_unit()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let (mut p, mut q) = (Jitter::from_entropy(), Jitter::from_entropy());
        assert_ne!(p.next_u64(), q.next_u64(), "two generators differ");
    }
}
