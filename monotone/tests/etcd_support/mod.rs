//! What the etcd tests share: finding the local servers that
//! `scripts/test.sh` starts through `scripts/etcd.sh` (one member for most
//! tests, a 3-member cluster for the failover tests, a member with TLS and
//! authentication), a prefix of its own per test, and a plain client to
//! look at or tamper with the keys behind monotone's back.
//!
//! Without `MONOTONE_TEST_ETCD_ENDPOINTS` (and the others) a test says it
//! skips and passes, except under CI (`CI` set), where it fails: CI must
//! never skip these tests silently.

#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use monotone::etcd::{EtcdConfig, EtcdStore};

/// One member, for the conformance suite and most tests.
pub const ENDPOINTS_VAR: &str = "MONOTONE_TEST_ETCD_ENDPOINTS";
/// Three members on loopback, for the failover tests.
pub const CLUSTER_VAR: &str = "MONOTONE_TEST_ETCD_CLUSTER";
/// One member with TLS (client certificates) and authentication.
pub const SECURE_VAR: &str = "MONOTONE_TEST_ETCD_SECURE";

/// The value of `var`, or `None` (after saying so); under CI a missing
/// server fails the test instead.
pub fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set under CI: run the tests through scripts/test.sh")
        }
        _ => {
            println!("skipping: {var} not set (scripts/test.sh starts local etcd servers)");
            None
        }
    }
}

/// The single member's endpoint, or `None` (see [`server`]).
pub fn endpoints() -> Option<String> {
    server(ENDPOINTS_VAR)
}

/// The endpoints without their `http://`, as an `etcd://` URL lists them.
pub fn hosts(endpoints: &str) -> String {
    endpoints
        .split(',')
        .map(|e| {
            e.trim_start_matches("http://")
                .trim_start_matches("https://")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A prefix no other test (or earlier run) uses, ending with `/`.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t/{tag}-{}-{nanos}-{}/",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The URL of a fresh prefix on the servers at `endpoints`.
pub fn url(endpoints: &str, tag: &str) -> String {
    format!("etcd://{}/{}", hosts(endpoints), unique_prefix(tag))
}

/// A store on a fresh prefix of the single member.
pub async fn store(endpoints: &str, tag: &str) -> EtcdStore {
    let config = EtcdConfig::from_url(&url(endpoints, tag)).unwrap();
    EtcdStore::connect(config).await.unwrap()
}

/// A plain etcd client of the servers at `endpoints`.
pub async fn raw(endpoints: &str) -> etcd_client::Client {
    let urls: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    etcd_client::Client::connect(urls, None).await.unwrap()
}

/// `scripts/etcd.sh ARGS` (its state in `MONOTONE_ETCD_STATE`, as
/// scripts/test.sh exported it): its output, after checking it succeeded.
pub fn script(args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/etcd.sh");
    let out = Command::new(path).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/etcd.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The folder of the secure member's certificates.
pub fn secure_files() -> PathBuf {
    let state = std::env::var("MONOTONE_ETCD_STATE").unwrap_or_else(|_| ".etcd-state".into());
    let state = PathBuf::from(state);
    let state = if state.is_absolute() {
        state
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(state)
    };
    state.join("secure")
}
