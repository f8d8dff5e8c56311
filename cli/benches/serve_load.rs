//! A load generator for `monotone serve`: N keep-alive HTTP/1.1 connections
//! (hyper's client), each sending its next request as soon as the last one
//! is answered, for a fixed time. At the deadline every connection finishes
//! the request it has in flight, so each request sent is either
//! acknowledged (2xx) or counted as failed, and the store's final value
//! can be checked exactly against the acknowledged ones.
//!
//! Run by `bench/serve_load.sh`, which starts the servers; by hand:
//!
//! ```text
//! cargo bench -p monotone-cli --bench serve_load -- \
//!     --addr 127.0.0.1:7777 --mode tally --connections 16 --seconds 30 --id load
//! ```
//!
//! Modes: `tally` sends `POST /counter/ID` (dist_counter's route) with
//! bodies `1` and `-1` in turn, then checks `GET /counter/ID/consistent_value`
//! equals the sum of the acknowledged amounts; `next` sends
//! `POST /v1/counters/ID/next`, then checks that every acknowledged value is
//! distinct and that the counter equals their number. Prints one JSON
//! document: requests per second, latency median and p99, failures, and
//! whether the check held; exits 1 if a request failed or the check did not
//! hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Tally,
    Next,
}

#[derive(Debug, Clone)]
struct Options {
    addr: SocketAddr,
    mode: Mode,
    connections: usize,
    seconds: u64,
    id: String,
}

fn options() -> Options {
    let mut o = Options {
        addr: "127.0.0.1:7777".parse().unwrap(),
        mode: Mode::Tally,
        connections: 16,
        seconds: 30,
        id: "load".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        // `cargo bench` passes `--bench` to every bench target.
        if flag == "--bench" {
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => o.addr = value.parse().expect("--addr IP:PORT"),
            "--mode" => {
                o.mode = match value.as_str() {
                    "tally" => Mode::Tally,
                    "next" => Mode::Next,
                    other => panic!("--mode tally|next, not {other}"),
                }
            }
            "--connections" => o.connections = value.parse().expect("--connections N"),
            "--seconds" => o.seconds = value.parse().expect("--seconds N"),
            "--id" => o.id = value,
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// What one connection did.
#[derive(Debug, Default)]
struct Tallied {
    latencies_us: Vec<u32>,
    failures: u64,
    /// Tally mode: the sum of acknowledged amounts.
    acked_sum: i64,
    /// Next mode: every acknowledged value.
    values: Vec<u64>,
}

async fn connect(addr: SocketAddr) -> hyper::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("reach the server");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: String,
) -> hyper::Result<(u16, Bytes)> {
    sender.ready().await?;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn connection(o: Options, index: usize, deadline: Instant) -> Tallied {
    let mut out = Tallied::default();
    let mut sender = connect(o.addr).await.expect("connect");
    let mut sign = if index % 2 == 0 { 1 } else { -1 };
    while Instant::now() < deadline {
        let (path, body) = match o.mode {
            Mode::Tally => (format!("/counter/{}", o.id), sign.to_string()),
            Mode::Next => (format!("/v1/counters/{}/next", o.id), String::new()),
        };
        let started = Instant::now();
        let result = send(&mut sender, o.addr, "POST", &path, body).await;
        let took = started.elapsed();
        match result {
            Ok((status, body)) if (200..300).contains(&status) => {
                out.latencies_us
                    .push(took.as_micros().min(u32::MAX as u128) as u32);
                match o.mode {
                    Mode::Tally => out.acked_sum += sign,
                    Mode::Next => {
                        let v: Value = serde_json::from_slice(&body).expect("a counter document");
                        out.values.push(v["value"].as_u64().expect("a value"));
                    }
                }
            }
            Ok((status, body)) => {
                out.failures += 1;
                eprintln!("status {status}: {}", String::from_utf8_lossy(&body));
            }
            Err(e) => {
                out.failures += 1;
                eprintln!("request failed: {e}");
                sender = connect(o.addr).await.expect("reconnect");
            }
        }
        sign = -sign;
    }
    out
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let o = options();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(o.seconds);
    let tasks: Vec<_> = (0..o.connections)
        .map(|i| tokio::spawn(connection(o.clone(), i, deadline)))
        .collect();
    let mut all = Tallied::default();
    for t in tasks {
        let t = t.await.expect("a connection task");
        all.latencies_us.extend(t.latencies_us);
        all.failures += t.failures;
        all.acked_sum += t.acked_sum;
        all.values.extend(t.values);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acked = all.latencies_us.len() as u64;
    all.latencies_us.sort_unstable();

    // The check: the store agrees with what was acknowledged.
    let mut sender = connect(o.addr).await.expect("connect");
    let (check, detail) = match o.mode {
        Mode::Tally => {
            let path = format!("/counter/{}/consistent_value", o.id);
            let (_, body) = send(&mut sender, o.addr, "GET", &path, String::new())
                .await
                .expect("read the value");
            let value: i64 = serde_json::from_slice(&body).expect("an integer");
            (
                value == all.acked_sum,
                json!({"final_value": value, "acknowledged_sum": all.acked_sum}),
            )
        }
        Mode::Next => {
            let path = format!("/v1/counters/{}", o.id);
            let (_, body) = send(&mut sender, o.addr, "GET", &path, String::new())
                .await
                .expect("read the counter");
            let value = serde_json::from_slice::<Value>(&body).expect("a document")["value"]
                .as_u64()
                .expect("a value");
            let mut values = all.values.clone();
            values.sort_unstable();
            values.dedup();
            let distinct = values.len() as u64 == acked;
            (
                distinct && value == acked,
                json!({"final_value": value, "acknowledged": acked, "all_distinct": distinct}),
            )
        }
    };
    let report = json!({
        "mode": match o.mode { Mode::Tally => "tally", Mode::Next => "next" },
        "connections": o.connections,
        "seconds": elapsed,
        "acknowledged": acked,
        "failed": all.failures,
        "requests_per_second": acked as f64 / elapsed,
        "latency_ms": {
            "median": percentile(&all.latencies_us, 50.0),
            "p99": percentile(&all.latencies_us, 99.0),
            "max": percentile(&all.latencies_us, 100.0),
        },
        "check": if check { "held" } else { "FAILED" },
        "detail": detail,
    });
    println!("{}", serde_json::to_string(&report).unwrap());
    if !check || all.failures > 0 {
        std::process::exit(1);
    }
}
