//! What the DynamoDB tests share: finding the local server, a fresh table per
//! test ([`Table`]), an SDK client that counts its requests, a private
//! server to kill, items as they are stored and as monotone 0.4 writes them
//! ([`items`]), and faults and lost races on purpose ([`faults`]).
//!
//! The server is moto's, started by `scripts/test.sh` (through
//! `scripts/moto.sh`), which exports `MONOTONE_TEST_DYNAMODB_ENDPOINT`.
//! Every client here uses region eu-west-1, static test credentials and that
//! endpoint, so no test ever reaches AWS or instance metadata.

#![allow(dead_code)] // each test binary uses part of it

pub mod faults;
pub mod items;

pub use faults::*;
pub use items::*;

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

/// The value of an `Option` (a [`Table`], ...), or a return from the test,
/// a skip, on `None` (there is no server, and [`endpoint`] said so).
#[macro_export]
macro_rules! or_skip {
    ($option:expr) => {
        match $option {
            Some(value) => value,
            None => return,
        }
    };
}

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
/// order (each attempt of an SDK retry counts). Record them with
/// [`Requests::interceptor`].
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

    /// An interceptor that records every request in this.
    pub fn interceptor(&self) -> OnSend {
        let recorded = Arc::clone(&self.0);
        OnSend::new("CountRequests", move |operation, body| {
            let body = String::from_utf8_lossy(body).into_owned();
            recorded.lock().unwrap().push((operation.to_owned(), body));
        })
    }
}

/// An SDK interceptor that shows each request (its operation and body) to
/// a function before the request goes out: the one way these tests watch or
/// interfere with what a client sends.
#[derive(Clone)]
pub struct OnSend {
    name: &'static str,
    see: Arc<Seen>,
}

/// What an [`OnSend`] calls with a request's operation and body.
type Seen = dyn Fn(&str, &[u8]) + Send + Sync;

impl OnSend {
    pub fn new(name: &'static str, see: impl Fn(&str, &[u8]) + Send + Sync + 'static) -> Self {
        OnSend {
            name,
            see: Arc::new(see),
        }
    }
}

impl std::fmt::Debug for OnSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Intercept for OnSend {
    fn name(&self) -> &'static str {
        self.name
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.request().body().bytes().unwrap_or_default();
        (self.see)(operation(context), body);
        Ok(())
    }
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

/// A store with `config` on the server at `endpoint`, whose requests are
/// recorded in the returned [`Requests`].
pub async fn counted_store(endpoint: &str, config: DynamoDbConfig) -> (DynamoDbStore, Requests) {
    intruded_store(endpoint, config.with_endpoint(endpoint), None).await
}

/// A store with `config` on the server at `endpoint` whose requests meet
/// `intruder` first, if any, and are then recorded in the returned
/// [`Requests`].
pub async fn intruded_store(
    endpoint: &str,
    config: DynamoDbConfig,
    intruder: Option<IntrudeOnWrite>,
) -> (DynamoDbStore, Requests) {
    let requests = Requests::default();
    let mut sdk = sdk_config(endpoint).await;
    if let Some(intruder) = intruder {
        sdk = sdk.interceptor(intruder.interceptor());
    }
    let client = Client::from_conf(sdk.interceptor(requests.interceptor()).build());
    let store = DynamoDbStore::from_client(client, config).unwrap();
    (store, requests)
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

/// A table of a test's own on the local server, and what the test does to
/// it behind the store's back: read and write items (see also [`items`]),
/// inject faults (see [`faults`]).
#[derive(Clone)]
pub struct Table {
    pub endpoint: String,
    pub name: String,
    /// A plain client.
    pub raw: Client,
}

impl Table {
    /// A new, empty table; `None` (a skip, after saying so) without a
    /// server.
    pub async fn create(tag: &str) -> Option<Table> {
        let table = Table::unmade(tag).await?;
        create_table(&table.raw, &table.name).await;
        Some(table)
    }

    /// A table name no table has yet, not created; `None` (a skip) without
    /// a server.
    pub async fn unmade(tag: &str) -> Option<Table> {
        let endpoint = endpoint()?;
        let raw = raw_client(&endpoint).await;
        Some(Table {
            name: unique_table(tag),
            endpoint,
            raw,
        })
    }

    /// Another table name on the same server, not created.
    pub fn another(&self, tag: &str) -> Table {
        Table {
            name: unique_table(tag),
            ..self.clone()
        }
    }

    /// A store on this table whose requests are recorded in the returned
    /// [`Requests`].
    pub async fn store(&self) -> (DynamoDbStore, Requests) {
        counted_store(&self.endpoint, DynamoDbConfig::new(&self.name)).await
    }

    /// The item `id` as stored.
    pub async fn item(&self, id: &str) -> Option<Item> {
        raw_item(&self.raw, &self.name, id).await
    }

    /// Put `item` in, as a whole.
    pub async fn put(&self, item: Item) {
        self.raw
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
}

/// The item `id` of `table` as stored, read behind the store's back.
pub async fn raw_item(client: &Client, table: &str, id: &str) -> Option<Item> {
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
