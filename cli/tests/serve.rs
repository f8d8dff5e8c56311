//! `monotone serve` driven over real HTTP: the binary started as a process
//! on 127.0.0.1 (a port of its choosing, read from the document it prints),
//! requests sent with hyper's HTTP/1.1 client over TCP. Every route, every
//! error status, the token, a body over the limit, graceful shutdown with
//! requests in flight, and many clients on two servers sharing one file.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

mod binary;
mod place;
use binary::{first_document, monotone};
use place::Place;

/// A running `monotone serve`, stopped (SIGTERM, then killed) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Its stderr, line by line.
    log: mpsc::Receiver<String>,
}

impl Server {
    /// `monotone --store URL serve --listen 127.0.0.1:0 EXTRA`, with
    /// `RUST_LOG` set to `log`.
    fn start(url: &str, extra: &[&str], log: &str) -> Server {
        let mut cmd = monotone();
        cmd.args(["--store", url, "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start monotone serve");
        // The one document it prints once it listens.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let listening = first_document(&mut stdout);
        let addr = listening["listening"].as_str().unwrap().parse().unwrap();
        // Nothing more may come on stdout: drain it to check on exit.
        std::thread::spawn(move || {
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            assert!(rest.is_empty(), "more on stdout: {rest}");
        });
        let (tx, rx) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            addr,
            log: rx,
        }
    }

    /// Send SIGTERM to this server (by its process id).
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, and its exit status.
    fn stop(mut self) -> ExitStatus {
        self.terminate();
        self.child.wait().unwrap()
    }

    /// Read its log until a line containing every one of `needles`.
    fn wait_for_log(&self, needles: &[&str]) -> String {
        loop {
            let line = self
                .log
                .recv_timeout(Duration::from_secs(60))
                .expect("the server logged nothing for a minute");
            if needles.iter().all(|n| line.contains(n)) {
                return line;
            }
        }
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> Reply {
        call(self.addr, method, path, body, None).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, `WWW-Authenticate`, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    authenticate: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The error document of a failed request: its kind, checked for shape.
    fn error_kind(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["error", "kind"], "{v}");
        assert!(!v["error"].as_str().unwrap().contains('\n'));
        v["kind"].as_str().unwrap().to_owned()
    }
}

/// One request on a new connection, with an optional bearer token.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = sender
        .send_request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let authenticate = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        authenticate,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dist_counter_routes() {
    let place = Place::sqlite();
    let server = Server::start(&place.url, &[], "off");
    let ping = server.call("GET", "/ping", "").await;
    assert_eq!((ping.status, ping.json()), (200, json!({"status": "OK"})));
    let value = server.call("GET", "/counter/mycount/value", "").await;
    assert_eq!((value.status, value.json()), (200, json!(0)));
    for body in ["2", "2", " -5\n", "+4"] {
        let r = server.call("POST", "/counter/mycount", body).await;
        assert_eq!(r.status, 204, "{body:?}");
        assert!(r.body.is_empty());
    }
    for route in ["value", "consistent_value"] {
        let r = server
            .call("GET", &format!("/counter/mycount/{route}"), "")
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(String::from_utf8(r.body).unwrap(), "3", "{route}");
    }
    // The counter is a tally, seen the same by the CLI.
    let v = place.json(&["-i", "mycount", "tally", "get"]);
    assert_eq!((&v["value"], &v["version"]), (&json!(3), &json!(4)));
    let bad = server.call("POST", "/counter/mycount", "A").await;
    assert_eq!(bad.error_kind(400), "invalid input");
    assert_eq!(place.json(&["-i", "mycount", "tally", "get"])["version"], 4);
    assert!(server.stop().success());
}

/// Every `/v1` route answers the document the CLI prints for the same
/// command on the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_routes_answer_what_the_cli_prints() {
    let place = Place::sqlite();
    let server = Server::start(&place.url, &[], "off");
    let json_of = |r: Reply| {
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        r.json()
    };

    // Counters.
    let next = json_of(server.call("POST", "/v1/counters/c/next", "").await);
    assert_eq!(next["value"], 1);
    assert_eq!(next, place.json(&["-i", "c", "counter", "get"]));
    assert_eq!(
        json_of(server.call("GET", "/v1/counters/c", "").await),
        next
    );
    place.json(&["-i", "c", "counter", "next"]);
    let rm = json_of(server.call("DELETE", "/v1/counters/c", "").await);
    assert_eq!(
        rm,
        json!({"id": "c", "value": 2, "region": "local",
               "table": place.db().display().to_string(), "removed": true})
    );
    assert_eq!(
        json_of(server.call("DELETE", "/v1/counters/c", "").await),
        place.json(&["-i", "c", "counter", "rm"])
    );

    // Tallies.
    let added = json_of(server.call("POST", "/v1/tallies/t/add", "-3").await);
    assert_eq!(
        added,
        json!({"id": "t", "value": -3, "version": 1, "consistent": true,
               "region": "local", "table": place.db().display().to_string()})
    );
    let got = json_of(server.call("GET", "/v1/tallies/t", "").await);
    assert_eq!(got, added);
    assert_eq!(got, place.json(&["-i", "t", "tally", "get"]));
    let stale = json_of(server.call("GET", "/v1/tallies/t?stale=true", "").await);
    assert_eq!(stale, place.json(&["-i", "t", "tally", "get", "--stale"]));
    assert_eq!(stale["consistent"], false);
    let fresh = json_of(server.call("GET", "/v1/tallies/t?stale=false", "").await);
    assert_eq!(fresh["consistent"], true);
    let rm = json_of(server.call("DELETE", "/v1/tallies/t", "").await);
    assert_eq!(
        (&rm["value"], &rm["version"], &rm["removed"]),
        (&json!(-3), &json!(1), &json!(true))
    );
    let rm = json_of(server.call("DELETE", "/v1/tallies/t", "").await);
    assert_eq!(rm, place.json(&["-i", "t", "tally", "rm"]));

    // Queues: ids and process ids with `/` and spaces, percent-encoded.
    let joined = json_of(
        server
            .call(
                "PUT",
                "/v1/queues/my%20zk/tickets/zk%2Fa",
                r#"{"role": "zk"}"#,
            )
            .await,
    );
    assert_eq!(joined["fencing_token"], 1);
    assert_eq!(
        joined["ticket"],
        json!({"process_id": "zk/a", "counter": 1, "position": 0, "tags": {"role": "zk"}, "lease": null})
    );
    assert_eq!(
        joined,
        place.json(&["-i", "my zk", "queue", "-p", "zk/a", "get"])
    );
    let again = json_of(
        server
            .call(
                "PUT",
                "/v1/queues/my%20zk/tickets/zk%2Fa",
                r#"{"role": "zk"}"#,
            )
            .await,
    );
    assert_eq!(again, joined, "join is idempotent");
    // Another join (other tags) is refused as the CLI refuses it (exit 13).
    let other = server
        .call("PUT", "/v1/queues/my%20zk/tickets/zk%2Fa", "")
        .await;
    assert_eq!(other.error_kind(409), "mismatch");
    json_of(server.call("PUT", "/v1/queues/my%20zk/tickets/b", "").await);
    let got = json_of(server.call("GET", "/v1/queues/my%20zk/tickets/b", "").await);
    assert_eq!(got, place.json(&["-i", "my zk", "queue", "-p", "b", "get"]));
    let list = json_of(server.call("GET", "/v1/queues/my%20zk", "").await);
    assert_eq!(list, place.json(&["-i", "my zk", "queue", "list"]));
    assert_eq!(list["tickets"].as_array().unwrap().len(), 2);
    let left = json_of(
        server
            .call("DELETE", "/v1/queues/my%20zk/tickets/zk%2Fa", "")
            .await,
    );
    assert_eq!(left["fencing_token"], 3);
    assert_eq!(left.as_object().unwrap().len(), 4, "{left}");
    let rm = json_of(server.call("DELETE", "/v1/queues/my%20zk", "").await);
    assert_eq!(
        (&rm["fencing_token"], &rm["removed"]),
        (&json!(3), &json!(true))
    );
    assert_eq!(
        json_of(server.call("DELETE", "/v1/queues/my%20zk", "").await),
        place.json(&["-i", "my zk", "queue", "rm"])
    );
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_its_status_and_changes_nothing() {
    let place = Place::sqlite();
    let server = Server::start(&place.url, &[], "off");
    place.json(&["-i", "c", "counter", "next"]);
    place.json(&["-i", "t", "tally", "add", "--", "-1"]);

    // 400: bad ids, amounts, tags, queries.
    let cases = [
        ("GET", "/v1/counters/bad%0Aid", ""),
        ("POST", "/v1/tallies/t/add", "1.5"),
        ("POST", "/v1/tallies/t/add", ""),
        ("POST", "/v1/tallies/t/add", "9223372036854775808"),
        ("POST", "/counter/t", "two"),
        ("PUT", "/v1/queues/q/tickets/p", "[1, 2]"),
        ("PUT", "/v1/queues/q/tickets/p", r#"{"a=b": "c"}"#),
        ("GET", "/v1/tallies/t?stale=maybe", ""),
        ("GET", "/v1/counters/%FF", ""),
    ];
    for (method, path, body) in cases {
        let r = server.call(method, path, body).await;
        assert_eq!(
            r.error_kind(400),
            "invalid input",
            "{method} {path} {body:?}"
        );
    }
    // Overflow is bad input too.
    let r = server
        .call("POST", "/v1/tallies/t/add", &i64::MIN.to_string())
        .await;
    assert_eq!(r.error_kind(400), "invalid input");
    assert!(r.json()["error"].as_str().unwrap().contains("`t`"));

    // 404: not in the queue, no queue, no route.
    place.json(&["-i", "q", "queue", "-p", "a", "join"]);
    for (method, path) in [
        ("GET", "/v1/queues/q/tickets/nobody"),
        ("DELETE", "/v1/queues/q/tickets/nobody"),
        ("DELETE", "/v1/queues/none/tickets/a"),
    ] {
        let r = server.call(method, path, "").await;
        assert_eq!(r.error_kind(404), "not found", "{method} {path}");
    }
    for path in [
        "/",
        "/v2/counters/c",
        "/v1/counters/c/previous",
        "/v1/counters/",
    ] {
        assert_eq!(
            server.call("GET", path, "").await.error_kind(404),
            "not found"
        );
    }

    // 405: a route without that method.
    for (method, path) in [
        ("PATCH", "/v1/counters/c"),
        ("GET", "/counter/t"),
        ("POST", "/ping"),
    ] {
        let r = server.call(method, path, "").await;
        assert_eq!(r.error_kind(405), "method not allowed", "{method} {path}");
    }

    // 409: wrong type, each way.
    let wrong: [(&str, &str, &str, &str); 5] = [
        (
            "POST",
            "/v1/counters/t/next",
            "",
            "`t` is a tally, not a counter",
        ),
        ("GET", "/v1/queues/t", "", "`t` is a tally, not a queue"),
        (
            "POST",
            "/v1/tallies/c/add",
            "1",
            "`c` is a counter, not a tally",
        ),
        ("POST", "/counter/q", "1", "`q` is a queue, not a tally"),
        (
            "GET",
            "/counter/c/value",
            "",
            "`c` is a counter, not a tally",
        ),
    ];
    for (method, path, body, message) in wrong {
        let r = server.call(method, path, body).await;
        assert_eq!(r.error_kind(409), "wrong type");
        assert_eq!(r.json()["error"], message);
    }

    // 413: a body over the limit, refused before it is read whole.
    let huge = "1".repeat(1024 * 1024 + 1);
    let r = server.call("POST", "/v1/tallies/t/add", &huge).await;
    assert_eq!(r.error_kind(413), "payload too large");
    let many_tags = format!("{{\"k\": \"{}\"}}", "v".repeat(1024 * 1024));
    let r = server
        .call("PUT", "/v1/queues/q/tickets/p", &many_tags)
        .await;
    assert_eq!(r.error_kind(413), "payload too large");

    // 500: a record monotone cannot read.
    let conn = rusqlite::Connection::open(place.db()).unwrap();
    conn.execute("UPDATE tickets SET tags = '[1' WHERE process_id = 'a'", [])
        .unwrap();
    let r = server.call("GET", "/v1/queues/q", "").await;
    assert_eq!(r.error_kind(500), "corrupt");

    // Nothing above changed anything.
    assert_eq!(place.json(&["-i", "c", "counter", "get"])["value"], 1);
    let t = place.json(&["-i", "t", "tally", "get"]);
    assert_eq!((&t["value"], &t["version"]), (&json!(-1), &json!(1)));
    assert!(server.stop().success());
}

/// 503 when the store cannot be reached: a DynamoDB endpoint where nothing
/// listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("dynamodb://Counters?region=eu-west-1&endpoint=http://127.0.0.1:{port}");
    let server = Server::start(&url, &[], "off");
    for (method, path, body) in [
        ("POST", "/counter/t", "1"),
        ("GET", "/counter/t/consistent_value", ""),
        ("POST", "/v1/counters/c/next", ""),
    ] {
        let r = server.call(method, path, body).await;
        assert_eq!(r.error_kind(503), "unavailable", "{method} {path}");
    }
    let ping = server.call("GET", "/ping", "").await;
    assert_eq!(ping.status, 200, "ping needs no store");
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route_but_ping() {
    let place = Place::sqlite();
    let token_file = place.path("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let server = Server::start(
        &place.url,
        &["--token-file", token_file.to_str().unwrap()],
        "off",
    );
    let addr = server.addr;
    for (method, path, body) in [
        ("POST", "/counter/t", "1"),
        ("GET", "/counter/t/value", ""),
        ("POST", "/v1/counters/c/next", ""),
        ("PUT", "/v1/queues/q/tickets/p", ""),
        ("DELETE", "/v1/tallies/t", ""),
    ] {
        for token in [
            None,
            Some("wrong"),
            Some("s3cret"),
            Some("s3cret-token-and-more"),
            Some(""),
        ] {
            let r = call(addr, method, path, body, token).await;
            assert_eq!(
                r.error_kind(401),
                "unauthorized",
                "{method} {path} {token:?}"
            );
            assert_eq!(r.authenticate.as_deref(), Some("Bearer"));
        }
        let r = call(addr, method, path, body, Some("s3cret-token")).await;
        assert!(r.status < 300, "{method} {path}: {}", r.status);
    }
    assert_eq!(call(addr, "GET", "/ping", "", None).await.status, 200);
    // Refused requests wrote nothing: one add of 1, one next.
    let t = place.json(&["-i", "t", "tally", "get"]);
    assert_eq!(
        (&t["value"], &t["version"]),
        (&json!(0), &json!(0)),
        "removed at the end"
    );
    assert_eq!(place.json(&["-i", "c", "counter", "get"])["value"], 1);
    assert!(server.stop().success());
}

/// Without a token, requests need none on loopback; off loopback, serve
/// refuses to start without `--token-file` or `--insecure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback() {
    let place = Place::sqlite();
    let server = Server::start(&place.url, &[], "off");
    assert_eq!(
        server.call("POST", "/v1/counters/c/next", "").await.status,
        200
    );
    assert!(server.stop().success());

    let token_file = place.path("empty-token");
    std::fs::write(&token_file, "\n").unwrap();
    for (args, code, needle) in [
        (
            &["serve", "--listen", "0.0.0.0:0"][..],
            2,
            "without --token-file",
        ),
        (&["serve", "--listen", "[::]:0"], 2, "without --token-file"),
        (
            &["serve", "--token-file", token_file.to_str().unwrap()],
            7,
            "is empty",
        ),
        (&["-i", "x", "serve"], 2, "takes no -i"),
    ] {
        let line = place.fails(args, code);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}

/// SIGTERM while requests wait for the store: they finish, each with its
/// own version, and then the server exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_the_requests_in_flight() {
    const IN_FLIGHT: usize = 8;
    let place = Place::sqlite();
    let server = Server::start(&place.url, &[], "monotone::serve=debug");
    // Another writer holds the file's write lock: every add waits.
    let lock = rusqlite::Connection::open(place.db()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let adds: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                call(
                    addr,
                    "POST",
                    "/v1/tallies/t/add",
                    &format!("{}", i + 1),
                    None,
                )
                .await
            })
        })
        .collect();
    for _ in 0..IN_FLIGHT {
        server.wait_for_log(&["request started", "/v1/tallies/t/add"]);
    }
    server.terminate();
    server.wait_for_log(&["finishing the requests in flight"]);
    lock.execute_batch("ROLLBACK").unwrap();
    let mut versions = Vec::new();
    for add in adds {
        let r = add.await.unwrap();
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        versions.push(r.json()["version"].as_u64().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=IN_FLIGHT as u64).collect::<Vec<_>>());
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let t = place.json(&["-i", "t", "tally", "get"]);
    let sum = (1..=IN_FLIGHT as i64).sum::<i64>();
    assert_eq!(
        (&t["value"], &t["version"]),
        (&json!(sum), &json!(IN_FLIGHT))
    );
}

/// Two servers on one SQLite file, 16 clients adding both signs through
/// both, on both route families: the value is the sum of every
/// acknowledged add, and every `/v1` add got its own version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_on_two_servers_lose_no_add() {
    const CLIENTS: usize = 16;
    const EACH: usize = 20;
    let place = Place::sqlite();
    let servers = [
        Server::start(&place.url, &[], "off"),
        Server::start(&place.url, &[], "off"),
    ];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = servers[c % 2].addr;
            tokio::spawn(async move {
                let mut sum = 0i64;
                let mut versions = Vec::new();
                for i in 0..EACH {
                    let n = if (c + i) % 2 == 0 {
                        (i + 1) as i64
                    } else {
                        -(c as i64)
                    };
                    if i % 2 == 0 {
                        let r = call(addr, "POST", "/counter/pool", &n.to_string(), None).await;
                        assert_eq!(r.status, 204);
                    } else {
                        let r =
                            call(addr, "POST", "/v1/tallies/pool/add", &n.to_string(), None).await;
                        assert_eq!(r.status, 200);
                        versions.push(r.json()["version"].as_u64().unwrap());
                    }
                    sum += n;
                }
                (sum, versions)
            })
        })
        .collect();
    let mut sum = 0;
    let mut versions = Vec::new();
    for c in clients {
        let (s, v) = c.await.unwrap();
        sum += s;
        versions.extend(v);
    }
    let total = versions.len();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), total, "a version handed out twice");
    for server in &servers {
        let r = server
            .call("GET", "/counter/pool/consistent_value", "")
            .await;
        assert_eq!(r.json(), json!(sum));
    }
    let t = place.json(&["-i", "pool", "tally", "get"]);
    assert_eq!(
        (&t["value"], &t["version"]),
        (&json!(sum), &json!(CLIENTS * EACH))
    );
    for server in servers {
        assert!(server.stop().success());
    }
}
