//! The conformance suite on the etcd store against a real etcd (the single
//! member that scripts/test.sh starts), plus what only etcd can get wrong:
//! the key layout, keys under the prefix that are not monotone's, a member
//! that is down, a cluster that is down, a compacted watch revision, TLS
//! and authentication, renewals that leave the record alone, and waits
//! that are pushed rather than polled.
//!
//! Without `MONOTONE_TEST_ETCD_ENDPOINTS` every test says it skips and
//! passes, except under CI (`CI` set), where it fails.
#![cfg(feature = "etcd")]

mod conformance;
mod etcd_support;

use std::sync::Arc;

use monotone::Store;

use etcd_support::*;

conformance_suite!({
    let Some(endpoints) = endpoints() else {
        return;
    };
    async move {
        let store: Arc<dyn Store> = Arc::new(store(&endpoints, "conformance").await);
        (store, ())
    }
});
