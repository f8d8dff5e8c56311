//! Waiting for an item to change after a version: what the primitives that
//! are waited on (`Queue`, `ClaimPool`, `Document`) do by default when their
//! store cannot tell them (it polls), and the time to give a wait that has
//! no end. A store that pushes changes (etcd's watches) overrides
//! `wait_for_change` and says so with `pushes`.
//!
//! Imports nothing of the crate, so that every primitive can take it.

use std::time::Duration;

use tokio::time::Instant;

/// The default wait: sleep `poll`, or until `until` if that comes first.
/// `true`: look again (the version may have changed); `false`: `until`
/// passed.
pub(crate) async fn poll_once(until: Instant, poll: Duration) -> bool {
    let wake = (Instant::now() + poll).min(until);
    tokio::time::sleep_until(wake).await;
    wake < until
}

/// `until` for a wait without a deadline: far enough that it never comes.
pub(crate) fn never() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 60 * 60)
}
