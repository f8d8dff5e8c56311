//! `monotone serve` driven over real HTTP: the binary started as a process
//! on 127.0.0.1 (a port of its choosing, read from the document it prints),
//! requests sent with hyper's HTTP/1.1 client over TCP. Every route, every
//! error status, the token, a body over the limit, graceful shutdown with
//! requests in flight, and many clients on two servers sharing one file.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
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
    /// The document it printed once it listened.
    listening: Value,
    /// Its stderr, line by line.
    log: mpsc::Receiver<String>,
}

impl Server {
    /// `monotone --store URL serve --listen 127.0.0.1:0 EXTRA`, with
    /// `RUST_LOG` set to `log`.
    fn start(url: &str, extra: &[&str], log: &str) -> Server {
        Server::spawn(serve_command(url, extra, log))
    }

    /// Start `cmd`, a `monotone serve` on 127.0.0.1, and read the document
    /// it prints.
    fn spawn(mut cmd: Command) -> Server {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
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
            listening,
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

    /// Its exit status once it exits by itself, failing the test if it is
    /// still running after `bound` (a bound far above what it should take).
    fn exited_within(&mut self, bound: Duration) -> ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < bound, "still running after {bound:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// Every line of its log until it exits.
    fn rest_of_log(&self) -> Vec<String> {
        self.log.iter().collect()
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

/// `monotone --store URL serve --listen 127.0.0.1:0 EXTRA`, with `RUST_LOG`
/// set to `log`.
fn serve_command(url: &str, extra: &[&str], log: &str) -> Command {
    let mut cmd = monotone();
    cmd.args(["--store", url, "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", log);
    cmd
}

/// `cmd`, run by `sh -c` after `setup` (a `ulimit` or `umask`), as the same
/// process (`exec`), so that signals reach it.
fn after_shell(setup: &str, cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("{setup} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => sh.env(key, v),
            None => sh.env_remove(key),
        };
    }
    sh
}

/// An answer: status, headers, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    authenticate: Option<String>,
    headers: hyper::HeaderMap,
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
        assert_eq!(self.headers["content-type"], "application/json");
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
    let authorization = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = authorization
        .as_deref()
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    request(addr, method, path, body, &headers).await
}

/// One request on a new connection, with `Host: ADDR` and `headers` (which
/// may replace it).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let fields = request.headers_mut();
    fields.insert("host", addr.to_string().parse().unwrap());
    for (name, value) in headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
        if name == hyper::header::HOST {
            fields.insert(name, value.parse().unwrap());
        } else {
            fields.append(name, value.parse().unwrap());
        }
    }
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let authenticate = headers
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
        headers,
        body,
    }
}

/// A token file readable by its owner only, holding `token`.
fn token_file(place: &Place, token: &str) -> String {
    let path = place.path("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

const TOKEN: &str = "s3cret-token-0123456789";

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
    let token_file = token_file(&place, TOKEN);
    let server = Server::start(&place.url, &["--token-file", &token_file], "off");
    assert_eq!(server.listening["auth"], "bearer");
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
            Some("s3cret-token-012345678"),
            Some("s3cret-token-01234567890"),
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
        let r = call(addr, method, path, body, Some(TOKEN)).await;
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
/// refuses to start without `--token-file` or `--insecure`, and with a
/// token but no TLS without `--insecure`. A token file others may read, an
/// empty, short or non-ASCII token are refused (exit 7); a file its group
/// may read is served, with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_is_checked_before_serving() {
    let place = Place::sqlite();
    let server = Server::start(&place.url, &[], "off");
    assert_eq!(
        server.call("POST", "/v1/counters/c/next", "").await.status,
        200
    );
    assert_eq!(
        (&server.listening["auth"], &server.listening["tls"]),
        (&json!("none"), &json!(false))
    );
    assert!(server.stop().success());

    let file = |name: &str, content: &str, mode: u32| {
        let path = place.path(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let empty = file("empty", "\n", 0o600);
    let short = file("short", "s3cret\n", 0o600);
    let accented = file("accented", "s3cret-token-012345678\u{e9}\n", 0o600);
    let shared = file("shared", TOKEN, 0o644);
    let good = file("good", TOKEN, 0o600);
    for (args, code, needle) in [
        (
            &["serve", "--listen", "0.0.0.0:0"][..],
            2,
            "without --token-file",
        ),
        (&["serve", "--listen", "[::]:0"], 2, "without --token-file"),
        (
            &["serve", "--listen", "0.0.0.0:0", "--token-file", &good],
            2,
            "clear text",
        ),
        (&["serve", "--token-file", &empty], 7, "is empty"),
        (&["serve", "--token-file", &short], 7, "at least 16"),
        (&["serve", "--token-file", &accented], 7, "printable ASCII"),
        (&["serve", "--token-file", &shared], 7, "other users"),
        (&["serve", "--max-connections", "0"], 2, "at least 1"),
        (&["serve", "--idle-timeout", "0s"], 2, "more than zero"),
        (
            &["serve", "--allow-origin", "example.com"],
            2,
            "not an origin",
        ),
        (&["-i", "x", "serve"], 2, "takes no -i"),
    ] {
        let line = place.fails(args, code);
        assert!(line.contains(needle), "{args:?}: {line}");
    }

    let group = file("group", TOKEN, 0o640);
    let server = Server::start(&place.url, &["--token-file", &group], "off");
    assert!(server
        .wait_for_log(&["monotone: warning:"])
        .contains("read by its group"));
    assert_eq!(
        call(server.addr, "GET", "/ping", "", None).await.status,
        200
    );
    assert!(server.stop().success());
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

/// Send `bytes` on a new connection and read what comes back until the
/// server closes it (failing the test if it has not after a minute).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        // A reset after the answer ends the reading too.
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("the server kept the connection open for a minute");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and JSON body of a raw HTTP/1.1 answer.
fn raw_answer(answer: &str) -> (u16, Value) {
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {answer:?}"))
        .parse()
        .unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// SIGTERM does not wait for a client holding a partial head (exit 0 at
/// once, far before the deadline); a request stuck in the store is cut off
/// at `--shutdown-timeout` (exit 1, naming it) or at a second signal, and
/// nothing it asked for was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_whatever_clients_do() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let place = Place::sqlite();
    let mut server = Server::start(
        &place.url,
        &["--shutdown-timeout", "5m", "--header-timeout", "5m"],
        "monotone::serve=info",
    );
    let mut partial = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"POST /v1/counters/c/next HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // The server has the partial head once it answers a request after it.
    assert_eq!(server.call("GET", "/ping", "").await.status, 200);
    server.terminate();
    assert!(server.exited_within(Duration::from_secs(60)).success());
    let mut rest = Vec::new();
    let _ = partial.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));

    // A request waiting for another process's write lock (for up to 5 min).
    let patient = format!("sqlite:{}?busy_timeout_ms=300000", place.db().display());
    for (deadline, signals, cut_by) in [
        ("1s", 1, "the shutdown deadline (1s)"),
        ("5m", 2, "a second signal (SIGTERM)"),
    ] {
        let mut server = Server::start(
            &patient,
            &["--shutdown-timeout", deadline],
            "monotone::serve=debug",
        );
        let lock = rusqlite::Connection::open(place.db()).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        let addr = server.addr;
        let add = tokio::spawn(async move {
            let head = format!(
                "POST /v1/tallies/t/add HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1\r\n\r\n7"
            );
            exchange(addr, head.as_bytes()).await
        });
        server.wait_for_log(&["request started", "/v1/tallies/t/add"]);
        server.terminate();
        server.wait_for_log(&["stopping"]);
        if signals == 2 {
            server.terminate();
        }
        let status = server.exited_within(Duration::from_secs(60));
        assert_eq!(status.code(), Some(1), "{deadline}");
        let log = server.rest_of_log().join("\n");
        assert!(
            log.contains(&format!(
                "monotone: error: stopped at {cut_by} with 1 request(s) in flight"
            )),
            "{log}"
        );
        assert_eq!(add.await.unwrap(), "", "a cut-off request gets no answer");
        lock.execute_batch("ROLLBACK").unwrap();
        let t = place.json(&["-i", "t", "tally", "get"]);
        assert_eq!((&t["value"], &t["version"]), (&json!(0), &json!(0)));
    }
}

/// A client sending its head a byte at a time is cut off within the head
/// timeout, before its head is whole; a kept-alive connection left idle is
/// closed; a body that stops coming gets 408; `/ping` answers others
/// throughout; the metrics count the cuts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let place = Place::sqlite();
    let server = Server::start(
        &place.url,
        &[
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--body-timeout",
            "1s",
        ],
        "off",
    );
    let addr = server.addr;

    // Slowloris: this head, a byte every 100 ms, would take 35 s.
    let slow = tokio::spawn(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "GET /ping HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n\r\n",
            "a".repeat(300)
        );
        let send = async {
            for byte in head.bytes() {
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let mut buf = [0u8; 64];
        tokio::select! {
            read = reader.read(&mut buf) => read.unwrap_or(0),
            () = send => panic!("the whole slow head was sent: the connection was not cut"),
        }
    });
    // An idle kept-alive connection, after one answer.
    let idle = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("GET /ping HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let closed = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
            .await
            .expect("the idle connection was kept open for a minute");
        closed.unwrap_or(0)
    });
    for _ in 0..5 {
        assert_eq!(server.call("GET", "/ping", "").await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(slow.await.unwrap(), 0, "cut without an answer");
    assert_eq!(idle.await.unwrap(), 0, "closed, nothing more sent");

    // A body announced as 10 bytes of which 1 comes.
    let head =
        format!("POST /v1/tallies/t/add HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10\r\n\r\n1");
    let (status, body) = raw_answer(&exchange(addr, head.as_bytes()).await);
    assert_eq!((status, &body["kind"]), (408, &json!("request timeout")));
    assert_eq!(place.json(&["-i", "t", "tally", "get"])["version"], 0);

    let metrics = String::from_utf8(server.call("GET", "/metrics", "").await.body).unwrap();
    for reason in ["header_timeout", "idle_timeout"] {
        let line = format!("monotone_http_connections_cut_total{{reason=\"{reason}\"}} ");
        let count: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in {metrics}"))
            .parse()
            .unwrap();
        assert!(count >= 1.0, "{reason}");
    }
    assert!(server.stop().success());
}

/// With `ulimit -n 256`, 300 connections (half of them silent, half idle
/// after an answer) leave `/ping` and writes answering: the server caps
/// its connections below the limit and closes the longest-waiting ones to
/// make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_file_limit_leave_ping_answering() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let place = Place::sqlite();
    let server = Server::spawn(after_shell(
        "ulimit -n 256",
        &serve_command(&place.url, &[], "off"),
    ));
    let addr = server.addr;
    let mut held = Vec::new();
    for i in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            let head = format!("GET /ping HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "connection {i}");
        }
        held.push(stream);
    }
    let ping = tokio::time::timeout(Duration::from_secs(30), server.call("GET", "/ping", ""))
        .await
        .expect("/ping did not answer");
    assert_eq!(ping.status, 200);
    let next = server.call("POST", "/v1/counters/c/next", "").await;
    assert_eq!((next.status, &next.json()["value"]), (200, &json!(1)));
    let metrics = String::from_utf8(server.call("GET", "/metrics", "").await.body).unwrap();
    let evicted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("monotone_http_connections_cut_total{reason=\"evicted\"} "))
        .expect("connections evicted")
        .parse()
        .unwrap();
    // 300 held, at most 191 at once (256 less 64 less 1).
    assert!(evicted >= 300.0 - 191.0, "{evicted}");
    drop(held);
    assert!(server.stop().success());
}

/// Without a token: a web page's cross-origin `text/plain` POST, a request
/// marked cross-site, and requests with a foreign `Host` (DNS rebinding)
/// are refused with 403 and change nothing; an `--allow-origin` origin
/// gets through, with CORS. With a token, any Host and page may call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_pages_and_foreign_hosts_are_refused() {
    let place = Place::sqlite();
    let server = Server::start(
        &place.url,
        &["--allow-origin", "https://app.example"],
        "off",
    );
    let addr = server.addr;
    place.json(&["-i", "t", "tally", "add", "5"]);
    let rebound = format!("rebound.evil.example:{}", addr.port());
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, &str, &str, Headers); 6] = [
        (
            "POST",
            "/counter/t",
            "1",
            vec![
                ("origin", "https://evil.example"),
                ("content-type", "text/plain"),
            ],
        ),
        (
            "POST",
            "/v1/tallies/t/add",
            "1",
            vec![("sec-fetch-site", "cross-site")],
        ),
        ("DELETE", "/v1/tallies/t", "", vec![("host", &rebound)]),
        ("GET", "/v1/tallies/t", "", vec![("host", &rebound)]),
        (
            "GET",
            "/metrics",
            "",
            vec![("host", "rebound.evil.example")],
        ),
        (
            "PUT",
            "/v1/queues/q/tickets/p",
            "",
            vec![("origin", "null")],
        ),
    ];
    for (method, path, body, headers) in &cases {
        let r = request(addr, method, path, body, headers).await;
        assert_eq!(
            r.error_kind(403),
            "forbidden",
            "{method} {path} {headers:?}"
        );
    }
    let t = place.json(&["-i", "t", "tally", "get"]);
    assert_eq!((&t["value"], &t["version"]), (&json!(5), &json!(1)));
    assert_eq!(
        place.json(&["-i", "q", "queue", "list"])["fencing_token"],
        0
    );

    // The allowed origin: through, with CORS, and its preflight answered.
    let app = [("origin", "https://app.example")];
    let r = request(addr, "POST", "/counter/t", "1", &app).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    let r = request(addr, "OPTIONS", "/v1/tallies/t/add", "", &preflight).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(r.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    for host in ["localhost", "127.0.0.1", "[::1]:1"] {
        let r = request(addr, "GET", "/counter/t/value", "", &[("host", host)]).await;
        assert_eq!((r.status, r.json()), (200, json!(6)), "{host}");
    }
    assert!(server.stop().success());

    let token = token_file(&place, TOKEN);
    let server = Server::start(&place.url, &["--token-file", &token], "off");
    let bearer = format!("Bearer {TOKEN}");
    let r = request(
        server.addr,
        "POST",
        "/counter/t",
        "1",
        &[
            ("host", "monotone.example"),
            ("origin", "https://evil.example"),
            ("authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    let r = request(
        server.addr,
        "GET",
        "/counter/t/value",
        "",
        &[("host", "x.example")],
    )
    .await;
    assert_eq!(r.error_kind(401), "unauthorized");
    assert!(server.stop().success());
}

/// While another process holds the SQLite file's write lock and a write
/// through the server waits for it, reads answer, from the last commit;
/// the write goes through once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_while_another_process_holds_the_write_lock() {
    let place = Place::sqlite();
    let server = Server::start(&place.url, &[], "monotone::serve=debug");
    place.json(&["-i", "t", "tally", "add", "5"]);
    let lock = rusqlite::Connection::open(place.db()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let addr = server.addr;
    let write =
        tokio::spawn(async move { call(addr, "POST", "/v1/tallies/t/add", "1", None).await });
    server.wait_for_log(&["request started", "/v1/tallies/t/add"]);
    for (path, value) in [
        ("/v1/tallies/t", json!(5)),
        ("/counter/t/value", json!(5)),
        ("/counter/t/consistent_value", json!(5)),
    ] {
        let r = tokio::time::timeout(Duration::from_secs(5), server.call("GET", path, ""))
            .await
            .unwrap_or_else(|_| panic!("GET {path} waited for the write lock"));
        assert_eq!(r.status, 200, "{path}");
        let v = r.json();
        assert_eq!(v.get("value").unwrap_or(&v), &value, "{path}");
    }
    assert!(!write.is_finished(), "the write did not wait for the lock");
    lock.execute_batch("ROLLBACK").unwrap();
    let r = write.await.unwrap();
    assert_eq!((r.status, &r.json()["version"]), (200, &json!(2)));
    assert!(server.stop().success());
}

/// Under umask 022, the default store's folder is created 0700 and the
/// database, its WAL and shared-memory files 0600; an existing file keeps
/// its mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_private_whatever_the_umask() {
    let place = Place::sqlite();
    let data = place.path("data");
    let mut cmd = monotone();
    cmd.env("XDG_DATA_HOME", &data)
        .env("RUST_LOG", "off")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let server = Server::spawn(after_shell("umask 022", &cmd));
    assert_eq!(
        server.call("POST", "/v1/counters/c/next", "").await.status,
        200
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("monotone")), 0o700);
    for file in ["monotone.db", "monotone.db-wal", "monotone.db-shm"] {
        assert_eq!(mode(&data.join("monotone").join(file)), 0o600, "{file}");
    }
    assert!(server.stop().success());

    std::fs::write(place.db(), b"").unwrap();
    std::fs::set_permissions(place.db(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::spawn(after_shell(
        "umask 077",
        &serve_command(&place.url, &[], "off"),
    ));
    assert_eq!(
        server.call("POST", "/v1/counters/c/next", "").await.status,
        200
    );
    assert_eq!(mode(&place.db()), 0o644);
    assert!(server.stop().success());
}

/// HTTPS with a self-signed certificate, checked by curl against it; plain
/// HTTP on that port, or a client that does not trust it, get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate() {
    let place = Place::sqlite();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = place.path("cert.pem");
    let key = place.path("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let token = token_file(&place, TOKEN);
    let server = Server::start(
        &place.url,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--token-file",
            &token,
        ],
        "off",
    );
    assert_eq!(server.listening["tls"], true);
    let port = server.addr.port();
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "30"])
            .args(args)
            .output()
            .expect("run curl")
    };
    let cacert = cert.to_str().unwrap();
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let out = curl(&[
        "--cacert",
        cacert,
        "-H",
        &bearer,
        "-X",
        "POST",
        "-w",
        "\n%{http_version}",
        &format!("https://localhost:{port}/v1/counters/c/next"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, version) = text.rsplit_once('\n').unwrap();
    let doc: Value = serde_json::from_str(body).unwrap();
    assert_eq!((&doc["value"], version), (&json!(1), "1.1"));
    let out = curl(&[
        "--cacert",
        cacert,
        &format!("https://127.0.0.1:{port}/ping"),
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), r#"{"status":"OK"}"#);
    // Not trusted; not TLS.
    assert!(!curl(&[&format!("https://localhost:{port}/ping")])
        .status
        .success());
    assert!(!curl(&[&format!("http://127.0.0.1:{port}/ping")])
        .status
        .success());
    assert_eq!(place.json(&["-i", "c", "counter", "get"])["value"], 1);
    assert!(server.stop().success());
}

/// One sample of a scrape: its name, its labels, its value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parse `text` as the Prometheus text format (version 0.0.4), strictly:
/// every line is a `# HELP`, a `# TYPE` (once per family, before its
/// samples), another comment, or a sample of a declared family (with the
/// suffixes its type allows); label values are quoted with `\\`, `\"` and
/// `\n` escapes; values are Go floats.
fn parse_prometheus_text(text: &str) -> Vec<Sample> {
    fn name_ok(n: &str) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value(v: &str) -> f64 {
        match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("not a sample value: {v:?}")),
        }
    }
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut helped = std::collections::HashSet::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the text ends with a line feed");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["HELP", name, _] => {
                    assert!(name_ok(name) && helped.insert(name.to_string()), "{line}")
                }
                ["TYPE", name, kind] => {
                    assert!(name_ok(name), "{line}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(kind),
                        "{line}"
                    );
                    assert!(types.insert(name.to_string(), kind.to_string()).is_none());
                }
                _ => {}
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (name, rest) = line.split_at(
            line.find(['{', ' '])
                .unwrap_or_else(|| panic!("no value: {line}")),
        );
        assert!(name_ok(name), "{line}");
        let mut labels = Vec::new();
        let mut rest = rest;
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let end = loop {
                let (start, c) = chars.next().expect("unclosed labels");
                if c == '}' {
                    break start;
                }
                let key_end = inner[start..].find('=').expect("label without =") + start;
                let key = &inner[start..key_end];
                assert!(name_ok(key) && !key.contains(':'), "label name {key:?}");
                while chars.peek().is_some_and(|(i, _)| *i <= key_end) {
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().expect("unclosed label value") {
                        (_, '"') => break,
                        (_, '\\') => match chars.next().expect("escape").1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("bad escape \\{other} in {line}"),
                        },
                        (_, c) => value.push(c),
                    }
                }
                labels.push((key.to_owned(), value));
                if chars.peek().map(|(_, c)| *c) == Some(',') {
                    chars.next();
                }
            };
            rest = &inner[end + 1..];
        }
        let fields: Vec<&str> = rest.split(' ').filter(|f| !f.is_empty()).collect();
        assert!(matches!(fields.len(), 1 | 2), "{line}");
        let family = types
            .iter()
            .find(|(family, kind)| match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{family}{s}")),
                _ => name == family.as_str(),
            })
            .unwrap_or_else(|| panic!("{name} has no # TYPE before it"));
        if family.1 == "histogram" && name.ends_with("_bucket") {
            assert!(labels.iter().any(|(k, _)| k == "le"), "{line}");
        }
        samples.push((name.to_owned(), labels, value(fields[0])));
    }
    samples
}

/// `/metrics` parses as Prometheus text, needs the token when there is one,
/// and counts requests by route and status, their durations, store errors
/// by kind and open connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text() {
    let place = Place::sqlite();
    let token = token_file(&place, TOKEN);
    let server = Server::start(&place.url, &["--token-file", &token], "off");
    let addr = server.addr;
    for _ in 0..3 {
        let r = call(addr, "POST", "/v1/counters/c/next", "", Some(TOKEN)).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        call(addr, "GET", "/nowhere", "", Some(TOKEN)).await.status,
        404
    );
    let wrong = call(addr, "POST", "/v1/tallies/c/add", "1", Some(TOKEN)).await;
    assert_eq!(wrong.error_kind(409), "wrong type");
    assert_eq!(
        call(addr, "GET", "/metrics", "", None)
            .await
            .error_kind(401),
        "unauthorized"
    );
    let r = call(addr, "GET", "/metrics", "", Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let samples = parse_prometheus_text(std::str::from_utf8(&r.body).unwrap());
    let find = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:?}"))
            .2
    };
    let next = [("route", "/v1/counters/{id}/next"), ("method", "POST")];
    assert_eq!(
        find(
            "monotone_http_requests_total",
            &[next[0], next[1], ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        find(
            "monotone_http_requests_total",
            &[("route", "other"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        find("monotone_store_errors_total", &[("kind", "wrong type")]),
        1.0
    );
    assert!(find("monotone_http_open_connections", &[]) >= 1.0);
    assert_eq!(
        find("monotone_http_request_duration_seconds_count", &next),
        3.0
    );
    assert!(find("monotone_http_request_duration_seconds_sum", &next) > 0.0);
    // Buckets only grow, up to the count.
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == "monotone_http_request_duration_seconds_bucket"
                && l.contains(&("route".into(), next[0].1.into()))
        })
        .map(|(_, l, v)| {
            let le = &l.iter().find(|(k, _)| k == "le").unwrap().1;
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                *v,
            )
        })
        .collect();
    assert!(buckets
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 3.0));
    assert!(server.stop().success());
}

/// What the server refuses before any route runs is the documented JSON
/// too: a target over 8 KiB (414), headers over 16 KiB (431), a body
/// announced over 1 MiB (413 at once, not waiting for it), two
/// `Authorization` headers (400). What hyper refuses itself gets its bare
/// status (a request line it cannot parse), or nothing (HTTP/2 without
/// asking: the connection is closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_the_routes_are_json_too() {
    let place = Place::sqlite();
    let server = Server::start(&place.url, &["--body-timeout", "5m"], "off");
    let addr = server.addr;
    let long = format!("/v1/counters/{}", "a".repeat(9 * 1024));
    let r = server.call("GET", &long, "").await;
    assert_eq!(r.error_kind(414), "uri too long");
    let big = "b".repeat(17 * 1024);
    let r = request(addr, "GET", "/ping", "", &[("x-big", &big)]).await;
    assert_eq!(r.error_kind(431), "header fields too large");
    let r = request(
        addr,
        "GET",
        "/v1/counters/c",
        "",
        &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
    )
    .await;
    assert_eq!(r.error_kind(400), "invalid input");
    let head = format!(
        "POST /v1/tallies/t/add HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10000000\r\n\r\n"
    );
    let (status, body) = raw_answer(&exchange(addr, head.as_bytes()).await);
    assert_eq!((status, &body["kind"]), (413, &json!("payload too large")));

    let answer = exchange(addr, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let answer = exchange(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert_eq!(answer, "", "HTTP/2 is not served");
    assert_eq!(place.json(&["-i", "t", "tally", "get"])["version"], 0);
    assert!(server.stop().success());
}
