//! What the DynamoDB tests share: finding the local server, a fresh table per
//! test, an SDK client that counts its requests, a private server to kill,
//! and fault injection.
//!
//! The server is moto's, started by `scripts/test.sh` (through
//! `scripts/moto.sh`), which exports `MONOTONE_TEST_DYNAMODB_ENDPOINT`.
//! Every client here uses region eu-west-1, static test credentials and that
//! endpoint, so no test ever reaches AWS or instance metadata.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use monotone::dynamodb::{DynamoDbConfig, DynamoDbStore};

pub const ENDPOINT_VAR: &str = "MONOTONE_TEST_DYNAMODB_ENDPOINT";
pub const REGION: &str = "eu-west-1";

/// The local server's endpoint, or `None` (after saying so) if there is none.
/// Under CI (`CI` set) a missing server fails the test instead: CI must never
/// skip these tests silently.
pub fn endpoint() -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{ENDPOINT_VAR} is not set under CI: run the tests through scripts/test.sh")
        }
        _ => {
            println!("skipping: {ENDPOINT_VAR} not set (scripts/test.sh starts a local server)");
            None
        }
    }
}

/// A table name no other test (or earlier run) uses.
pub fn unique_table(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tag: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(100)
        .collect();
    format!(
        "t-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every request a client sends, by operation name, with its JSON body, in
/// order (each attempt of an SDK retry counts).
#[derive(Debug, Clone, Default)]
pub struct Requests(Arc<Mutex<Vec<(String, String)>>>);

impl Requests {
    /// The requests since the last call, oldest first.
    pub fn take(&self) -> Vec<String> {
        self.take_with_bodies()
            .into_iter()
            .map(|(op, _)| op)
            .collect()
    }

    /// The requests since the last call with their bodies, oldest first.
    pub fn take_with_bodies(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = operation(context).to_owned();
        let body = context.request().body().bytes().unwrap_or_default();
        let body = String::from_utf8_lossy(body).into_owned();
        self.0.lock().unwrap().push((operation, body));
        Ok(())
    }
}

/// The SDK configuration the store itself would use for `endpoint`, with
/// static test credentials.
pub async fn sdk_config(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
    DynamoDbConfig::new("unused-by-the-sdk")
        .with_region(REGION)
        .with_endpoint(endpoint)
        .sdk_config()
        .await
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "monotone-tests",
        ))
}

/// A plain client, for writing and reading items behind the store's back.
pub async fn raw_client(endpoint: &str) -> Client {
    Client::from_conf(sdk_config(endpoint).await.build())
}

/// A store on `table` whose requests are recorded in the returned
/// [`Requests`].
pub async fn counted_store(endpoint: &str, config: DynamoDbConfig) -> (DynamoDbStore, Requests) {
    let requests = Requests::default();
    let client = Client::from_conf(
        sdk_config(endpoint)
            .await
            .interceptor(requests.clone())
            .build(),
    );
    let store = DynamoDbStore::from_client(client, config.with_endpoint(endpoint)).unwrap();
    (store, requests)
}

/// The operation of a request: DynamoDB's JSON protocol names it in a
/// header.
fn operation<'a>(context: &'a BeforeTransmitInterceptorContextRef<'_>) -> &'a str {
    let target = context
        .request()
        .headers()
        .get("x-amz-target")
        .unwrap_or("unknown.unknown");
    target.rsplit('.').next().unwrap_or(target)
}

/// Something to do on another thread before a request goes out.
type Intrusion = Box<dyn FnOnce() + Send>;

/// An interceptor that runs an intrusion (on another thread, which may
/// start its own runtime) before the store's n-th `UpdateItem` reaches the
/// server: a race lost on purpose, at a chosen point.
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
}

impl Intercept for IntrudeOnWrite {
    fn name(&self) -> &'static str {
        "IntrudeOnWrite"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if operation(context) == "UpdateItem" {
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
        }
        Ok(())
    }
}

/// Create `table` as the README says to.
pub async fn create_table(client: &Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("ID")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("ID")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the test table");
}

/// A store on a new, empty table of its own.
pub async fn fresh_store(endpoint: &str, tag: &str) -> (DynamoDbStore, Requests, Client) {
    let table = unique_table(tag);
    let raw = raw_client(endpoint).await;
    create_table(&raw, &table).await;
    let (store, requests) = counted_store(endpoint, DynamoDbConfig::new(table)).await;
    (store, requests, raw)
}

/// The item `id` of `table` as stored, read behind the store's back.
pub async fn raw_item(
    client: &Client,
    table: &str,
    id: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    client
        .get_item()
        .table_name(table)
        .key("ID", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// Make the next `count` requests of `operation` (or of any operation) on
/// `table` fail with `code` and HTTP `status` (see scripts/moto_server.py).
pub async fn inject_fault(
    endpoint: &str,
    table: &str,
    operation: Option<&str>,
    code: &str,
    status: u16,
    count: u32,
) {
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

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A moto server of the test's own, killed when dropped.
pub struct PrivateServer {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl PrivateServer {
    /// Start one from the virtualenv scripts/moto.sh made; `None` (after
    /// saying so) if there is none, and a failure under CI.
    pub fn start() -> Option<PrivateServer> {
        let root = repo_root();
        let python = root.join(".venv/bin/python");
        if !python.exists() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{} is missing: run scripts/moto.sh install",
                    python.display()
                );
            }
            println!(
                "skipping: no {} (scripts/moto.sh install makes it)",
                python.display()
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new(&python)
            .arg(root.join("scripts/moto_server.py"))
            .arg("--port-file")
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a moto server");
        let started = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the private moto server did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Some(PrivateServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    /// Kill the server (by its PID) and wait until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
    }
}
