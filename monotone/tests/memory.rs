//! The conformance suite on the in-memory store.

mod conformance;

use std::sync::Arc;

use monotone::{MemoryStore, Store};

async fn store() -> (Arc<dyn Store>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

conformance_suite!(store());

#[tokio::test]
async fn clones_share_state() {
    let a = MemoryStore::new();
    let b = a.clone();
    a.counter("c").unwrap().next().await.unwrap();
    assert_eq!(b.counter("c").unwrap().next().await.unwrap(), 2);
    assert_eq!(
        MemoryStore::new()
            .counter("c")
            .unwrap()
            .get()
            .await
            .unwrap(),
        0
    );
}
