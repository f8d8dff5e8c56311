//! Many OS processes on one DynamoDB table at once: the multi-process
//! suite (see `processes`), with every worker's requests counted. Also what
//! only a fresh process shows: opening the store from a URL through the
//! standard AWS chain, the default region, and the error for missing
//! credentials.
//!
//! Workers run in an environment of the test's making (static test
//! credentials, no instance metadata, no profile files) and open the store
//! with the URL, as the CLI does.
#![cfg(feature = "aws")]

mod dynamodb_support;
mod processes;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monotone::dynamodb::{DynamoDbConfig, DynamoDbStore};
use monotone::{Store, Tags};
use processes::{median_ms, run_one, worker_command, Request, RequestKind, Sent, SharedStore};

use dynamodb_support::*;

/// A table of its own, created before the workers start.
struct DynamoDb;

fn url(endpoint: &str, table: &str) -> String {
    format!("dynamodb://{table}?region={REGION}&endpoint={endpoint}")
}

impl SharedStore for DynamoDb {
    type Guard = ();
    const NAME: &'static str = "dynamodb";
    const WATCH_POLL: Duration = Duration::from_millis(100);
    const WATCH_TIMEOUT: Duration = Duration::from_secs(120);
    /// One `UpdateItem`.
    const REQUESTS_PER_NEXT: Option<u64> = Some(1);

    async fn fresh(tag: &str) -> Option<(String, ())> {
        let endpoint = endpoint()?;
        let table = unique_table(tag);
        create_table(&raw_client(&endpoint).await, &table).await;
        Some((url(&endpoint, &table), ()))
    }

    /// The URL's store, with a client that counts requests.
    async fn open(url: &str) -> (Arc<dyn Store>, Option<Box<dyn Sent>>) {
        let config = DynamoDbConfig::from_url(url).unwrap();
        let requests = Requests::default();
        let sdk = config
            .sdk_config()
            .await
            .interceptor(requests.interceptor());
        let client = aws_sdk_dynamodb::Client::from_conf(sdk.build());
        let store = DynamoDbStore::from_client(client, config).unwrap();
        (Arc::new(store), Some(Box::new(requests)))
    }

    /// Nothing of the caller's AWS settings, test credentials, never
    /// instance metadata.
    fn worker_env(worker: &mut Command) {
        worker
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/monotone-test/config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/monotone-test/credentials",
            )
            .env("HOME", "/nonexistent/monotone-test")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
    }
}

/// A claim write is an `UpdateItem` that makes claims; a wait is one that
/// writes the claimer into the pool's `Waiting` (or takes it out).
impl Sent for Requests {
    fn take(&self) -> Vec<Request> {
        self.take_with_bodies()
            .into_iter()
            .map(|(operation, body)| {
                let kind = match operation.as_str() {
                    "GetItem" => RequestKind::Read,
                    "UpdateItem" => {
                        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let update = body["UpdateExpression"].as_str().unwrap_or("");
                        if update.contains("#waiting.#me") || update.contains("#version = :zero") {
                            RequestKind::Wait
                        } else {
                            RequestKind::Write
                        }
                    }
                    _ => RequestKind::Other,
                };
                Request { operation, kind }
            })
            .collect()
    }
}

process_suite!(DynamoDb);

/// A worker doing `op` on `url` in the environment of
/// [`DynamoDb::worker_env`], without the test credentials unless
/// `credentials`.
fn isolated_worker(url: &str, op: &str, credentials: bool) -> Command {
    let mut cmd = worker_command::<DynamoDb>(url, op, "");
    if !credentials {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_uses_the_standard_chain_and_defaults_to_eu_west_1() {
    let Some(endpoint) = endpoint() else { return };
    let location = |url: &str, region: Option<&str>| {
        let mut cmd = isolated_worker(url, "location", true);
        if let Some(r) = region {
            cmd.env("AWS_REGION", r);
        }
        run_one(cmd, "LOCATION ").join("\n")
    };
    // No region anywhere (and no instance metadata): monotone 0.4's default.
    assert_eq!(
        location("dynamodb://Counters", None),
        "dynamodb://Counters?region=eu-west-1"
    );
    // The chain's region, unless the URL gives one.
    assert_eq!(
        location("dynamodb://Counters", Some("ap-southeast-2")),
        "dynamodb://Counters?region=ap-southeast-2"
    );
    assert_eq!(
        location(
            "dynamodb://Counters?region=us-east-1",
            Some("ap-southeast-2")
        ),
        "dynamodb://Counters?region=us-east-1"
    );
    // AWS_ENDPOINT_URL is honoured, and the URL's endpoint wins over it.
    let mut cmd = isolated_worker("dynamodb://Counters", "location", true);
    cmd.env("AWS_ENDPOINT_URL", &endpoint);
    assert_eq!(
        run_one(cmd, "LOCATION ").join(""),
        format!("dynamodb://Counters?region=eu-west-1&endpoint={endpoint}")
    );

    // And the store really works through that chain.
    let table = unique_table("chain");
    let mut cmd = isolated_worker(&format!("dynamodb://{table}"), "get", true);
    cmd.env("AWS_ENDPOINT_URL", &endpoint);
    assert_eq!(run_one(cmd, "VALUE "), ["0 0 0 0 0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_one_clear_line() {
    let Some(endpoint) = endpoint() else { return };
    let cmd = isolated_worker(&url(&endpoint, "Counters"), "get", false);
    let lines = run_one(cmd, "ERROR ");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.starts_with("Config "), "{line}");
    assert!(line.contains("no AWS credentials found"), "{line}");
    assert!(line.contains("AWS_ACCESS_KEY_ID"), "{line}");
    assert!(
        line.contains("dynamodb table `Counters`: counter `c`: get"),
        "{line}"
    );
}

/// Not a pass/fail check: the median latency of each operation on the local
/// server, one process, no contention (see the output with --nocapture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_per_operation() {
    let Some(endpoint) = endpoint() else { return };
    let table = unique_table("latency");
    create_table(&raw_client(&endpoint).await, &table).await;
    let (store, _) = counted_store(&endpoint, DynamoDbConfig::new(&table)).await;
    let store: DynamoDbStore = store;
    const N: usize = 40;
    let mut lines = vec![];
    macro_rules! time {
        ($name:expr, $body:expr) => {{
            let mut micros = vec![];
            for i in 0..N {
                let started = Instant::now();
                $body(i).await;
                micros.push(started.elapsed().as_micros() as u64);
            }
            lines.push(format!("{:<16} {:>6.2} ms", $name, median_ms(micros)));
        }};
    }
    let c = store.counter("c").unwrap();
    let q = store.queue("q").unwrap();
    time!("counter next", |_| async { c.next().await.unwrap() });
    time!("counter get", |_| async { c.get().await.unwrap() });
    time!("queue join", |i| {
        let q = &q;
        async move { q.join(&format!("p{i}"), Tags::new()).await.unwrap() }
    });
    time!("queue re-join", |i| {
        let q = &q;
        async move { q.join(&format!("p{i}"), Tags::new()).await.unwrap() }
    });
    time!("queue ticket", |i| {
        let q = &q;
        async move { q.ticket(&format!("p{i}")).await.unwrap() }
    });
    time!("queue tickets", |_| async { q.tickets().await.unwrap() });
    time!("queue leave", |i| {
        let q = &q;
        async move { q.leave(&format!("p{i}")).await.unwrap() }
    });
    time!("counter remove", |i| {
        let store = &store;
        async move {
            let c = store.counter(&format!("rm{i}")).unwrap();
            c.next().await.unwrap();
            c.remove().await.unwrap()
        }
    });
    println!("median latency on {endpoint} ({N} runs each; `counter remove` includes a next):");
    for l in lines {
        println!("  {l}");
    }
}
