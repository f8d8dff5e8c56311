//! The conformance suite: the contracts of every primitive as plain async
//! functions taking a store, run unchanged against every backend. One
//! section per primitive: [`counter`], [`queue`], [`lease`] (leased tickets
//! and their holders), [`document`], [`tally`] and [`claim`].
//!
//! A store's test file gets the whole suite with one line:
//!
//! ```ignore
//! mod conformance;
//!
//! async fn store() -> (Arc<dyn Store>, Guard) { /* a fresh, empty store */ }
//!
//! conformance_suite!(store());
//! ```
//!
//! The argument is an async expression that yields `(Arc<dyn Store>,
//! guard)`: a fresh, empty store and whatever must live as long as it (a
//! temporary directory, a server); it is evaluated once per test, and may
//! `return` from the test to skip it (as the DynamoDB tests do without a
//! server). Each check becomes one test named after it, so a failure names
//! the contract it broke.
//!
//! Each section lists its checks in a macro of its own (`counter_checks!`,
//! ...) next to them, and [`conformance_suite!`] expands every section; a
//! new section adds its macro there, and every store runs it.
//!
//! Each check would fail on the bug it is named after.

#![allow(dead_code)] // each test binary uses the suite through the macros

pub mod claim;
pub mod counter;
pub mod document;
pub mod lease;
pub mod queue;
pub mod tally;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use monotone::{ErrorKind, Store, Tags, WaitOptions};

/// Every check of every section, each a `#[tokio::test]` on a fresh store
/// from `$make` (see the module docs).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::counter_checks!($make);
        $crate::queue_checks!($make);
        $crate::lease_checks!($make);
        $crate::document_checks!($make);
        $crate::tally_checks!($make);
        $crate::claim_checks!($make);
    };
}

/// The one expansion every section uses: each named check of
/// `conformance::$section` becomes a test on the runtime `$runtime` (the
/// arguments of `#[tokio::test]`, in parentheses).
#[macro_export]
macro_rules! conformance_checks {
    ($make:expr, $section:ident, $runtime:tt; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test $runtime]
            async fn $check() {
                let (store, _guard) = $make.await;
                $crate::conformance::$section::$check(store).await;
            }
        )*
    };
}

pub type S = Arc<dyn Store>;

pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn kind<T: std::fmt::Debug>(r: monotone::Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls often, so tests do not wait on the default second.
pub fn quick() -> WaitOptions {
    WaitOptions::new().with_poll(ms(10), ms(50))
}

/// Run `task(i)` for every `i` below `n`, each in a task of its own, all
/// started together (each waits for all the others first, so that their
/// calls overlap on the runtime's threads as much as the machine allows);
/// what they returned, in the order of `i`. `task` is called here, before
/// the tasks start, so it may take handles from the store.
pub async fn together<T, Fut>(n: usize, task: impl Fn(usize) -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let start = Arc::clone(&start);
            let work = task(i);
            tokio::spawn(async move {
                start.wait().await;
                work.await
            })
        })
        .collect();
    let mut done = Vec::with_capacity(n);
    for h in handles {
        done.push(h.await.unwrap());
    }
    done
}
