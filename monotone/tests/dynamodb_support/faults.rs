//! Faults on purpose: errors and answers injected into the local server
//! (see scripts/moto_server.py), and races lost at a chosen point by a
//! client whose writes meet an intruder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{OnSend, Table};

/// The error codes the tests inject, as DynamoDB names them.
pub const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
pub const THROTTLING: &str = "ThrottlingException";
pub const THROUGHPUT_EXCEEDED: &str = "ProvisionedThroughputExceededException";
pub const INTERNAL_ERROR: &str = "InternalServerError";
pub const ACCESS_DENIED: &str = "AccessDeniedException";

impl Table {
    /// Make the next `count` requests of `operation` on this table fail
    /// with `code` (see [`inject_fault`]).
    pub async fn fail(&self, operation: &str, code: &str, count: u32) {
        inject_fault(&self.endpoint, &self.name, Some(operation), code, count).await;
    }

    /// Make the next `count` requests of any operation on this table fail
    /// with `code`.
    pub async fn fail_all(&self, code: &str, count: u32) {
        inject_fault(&self.endpoint, &self.name, None, code, count).await;
    }

    /// Answer the next `count` requests of `operation` on this table with
    /// the JSON document `answer` (see [`inject_answer`]).
    pub async fn answer(&self, operation: &str, answer: &str, count: u32) {
        inject_answer(&self.endpoint, &self.name, operation, answer, count).await;
    }
}

/// Make the next `count` requests of `operation` (or of any operation) on
/// `table` fail with `code`, and the HTTP status DynamoDB sends with it
/// (see scripts/moto_server.py).
pub async fn inject_fault(
    endpoint: &str,
    table: &str,
    operation: Option<&str>,
    code: &str,
    count: u32,
) {
    let status = match code {
        INTERNAL_ERROR => 500,
        CONDITION_FAILED | THROTTLING | THROUGHPUT_EXCEEDED | ACCESS_DENIED => 400,
        other => panic!("which HTTP status goes with {other}?"),
    };
    let mut body =
        format!(r#"{{"table":"{table}","code":"{code}","status":{status},"count":{count}"#);
    if let Some(op) = operation {
        body.push_str(&format!(r#","operation":"{op}""#));
    }
    body.push('}');
    post_fault(endpoint, body).await;
}

/// Answer the next `count` requests of `operation` on `table` with the JSON
/// document `answer` (HTTP 200), without reaching moto.
pub async fn inject_answer(endpoint: &str, table: &str, operation: &str, answer: &str, count: u32) {
    let body = format!(
        r#"{{"table":"{table}","operation":"{operation}","count":{count},"body":{answer}}}"#
    );
    post_fault(endpoint, body).await;
}

async fn post_fault(endpoint: &str, body: String) {
    let url = endpoint
        .trim_end_matches('/')
        .strip_prefix("http://")
        .expect("http endpoint");
    let request = format!(
        "POST /_monotone/faults HTTP/1.1\r\nHost: {url}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let url = url.to_owned();
    let reply = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&url).expect("reach the test server");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    })
    .await
    .unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "fault not accepted: {reply}"
    );
}

/// Something to do on another thread before a request goes out.
type Intrusion = Box<dyn FnOnce() + Send>;

/// Intrusions (each run on another thread, which may start its own
/// runtime) before the store's n-th `UpdateItem` reaches the server: a race
/// lost on purpose, at a chosen point. Give it to [`intruded_store`].
#[derive(Clone, Default)]
pub struct IntrudeOnWrite {
    writes: Arc<AtomicU64>,
    intrusions: Arc<Mutex<Vec<(u64, Intrusion)>>>,
}

impl std::fmt::Debug for IntrudeOnWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntrudeOnWrite")
    }
}

impl IntrudeOnWrite {
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `intrude` before the `nth` `UpdateItem` (counting from 1).
    pub fn on(self, nth: u64, intrude: impl FnOnce() + Send + 'static) -> Self {
        self.intrusions
            .lock()
            .unwrap()
            .push((nth, Box::new(intrude)));
        self
    }

    /// The interceptor that runs the intrusions.
    pub fn interceptor(self) -> OnSend {
        OnSend::new("IntrudeOnWrite", move |operation, _| {
            if operation != "UpdateItem" {
                return;
            }
            let nth = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
            let due: Vec<Intrusion> = {
                let mut all = self.intrusions.lock().unwrap();
                let (due, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(n, _)| *n == nth);
                *all = rest;
                due.into_iter().map(|(_, f)| f).collect()
            };
            for intrude in due {
                std::thread::spawn(intrude).join().unwrap();
            }
        })
    }
}

/// Run `work` to its end on a runtime of its own, as an intrusion (on a
/// thread of its own) does.
pub fn elsewhere<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}
