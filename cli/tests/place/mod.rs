//! One store for one test of the binary (a SQLite file, a table of its own
//! on the local DynamoDB server of `scripts/test.sh`, or a prefix of its own
//! on its local etcd, reached through a [`Proxy`] that can be cut), a
//! directory for
//! the files the test's commands write, and what the tests of commands
//! that hold a lease (`lock`, `claim --ttl`) share: a check run on every
//! store ([`on_each_store!`]), a holder without a command ([`Holder`]), a
//! store that stops answering ([`Place::stop_answering`]).
//!
//! A test file using it declares `mod binary;` too.

#![allow(dead_code)] // each test binary uses part of it

pub mod proxy;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::binary::{self, monotone, stderr};
use proxy::Proxy;

pub const ENDPOINT_VAR: &str = "MONOTONE_TEST_DYNAMODB_ENDPOINT";
/// The single etcd member of `scripts/test.sh`.
pub const ETCD_VAR: &str = "MONOTONE_TEST_ETCD_ENDPOINTS";

/// For each `check` (a `fn(&Place)`), one test per store, in a module named
/// after the check: `check::on_sqlite`, and `check::on_dynamodb` on a table
/// tagged `tag` (skipped without the local server, see
/// [`Place::dynamodb`]). A new store is one more test here, and every check
/// runs on it.
#[macro_export]
macro_rules! on_each_store {
    ($($check:ident($tag:literal)),* $(,)?) => {$(
        mod $check {
            use $crate::place::Place;

            #[test]
            fn on_sqlite() {
                super::$check(&Place::sqlite());
            }

            #[test]
            fn on_dynamodb() {
                let Some(place) = Place::dynamodb($tag) else {
                    return;
                };
                super::$check(&place);
            }

            #[cfg(feature = "etcd")]
            #[test]
            fn on_etcd() {
                let Some(place) = Place::etcd($tag) else {
                    return;
                };
                super::$check(&place);
            }
        }
    )*};
}

/// The local DynamoDB server's endpoint, or `None` (after saying so)
/// without one; under CI a missing server fails the test instead.
pub fn dynamodb_endpoint() -> Option<String> {
    server(ENDPOINT_VAR)
}

/// The local etcd member's endpoint (as [`dynamodb_endpoint`]).
pub fn etcd_endpoint() -> Option<String> {
    server(ETCD_VAR)
}

/// The value of `var`, the address of a local server that scripts/test.sh
/// started, or `None` (after saying so) without one; under CI a missing
/// server fails the test instead.
pub fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set under CI: run the tests through scripts/test.sh")
        }
        _ => {
            println!("skipping: {var} not set (scripts/test.sh starts the local servers)");
            None
        }
    }
}

/// A table name no other test or earlier run uses.
pub fn unique_table(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cli-{tag}-{}-{nanos}", std::process::id())
}

/// One store for one test, and a directory for the commands' files (shared
/// by the clones of a place, which may see the store differently: see
/// [`Place::impatient`]).
#[derive(Clone)]
pub struct Place {
    pub url: String,
    pub dir: Arc<TempDir>,
    /// What an etcd place's commands reach etcd through.
    pub proxy: Option<Arc<Proxy>>,
}

impl Place {
    /// A SQLite file in a new directory.
    pub fn sqlite() -> Place {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        Place {
            url,
            dir: Arc::new(dir),
            proxy: None,
        }
    }

    /// The SQLite file of [`Place::sqlite`].
    pub fn db(&self) -> PathBuf {
        self.path("store.db")
    }

    /// A table of its own on the local DynamoDB server (created by the first
    /// command), named after `tag`, or `None` without a server (see
    /// [`dynamodb_endpoint`]).
    pub fn dynamodb(tag: &str) -> Option<Place> {
        let endpoint = dynamodb_endpoint()?;
        let table = unique_table(tag);
        Some(Place {
            url: format!("dynamodb://{table}?region=eu-west-1&endpoint={endpoint}"),
            dir: Arc::new(tempfile::tempdir().unwrap()),
            proxy: None,
        })
    }

    /// A prefix of its own on the local etcd member, named after `tag`,
    /// reached through a [`Proxy`] (which [`Place::stop_answering`] cuts),
    /// or `None` without a member (see [`etcd_endpoint`]).
    pub fn etcd(tag: &str) -> Option<Place> {
        let endpoint = etcd_endpoint()?;
        let proxy = Proxy::start(endpoint.trim_start_matches("http://"));
        Some(Place {
            url: format!("etcd://{}/{}/", proxy.addr, unique_table(tag)),
            dir: Arc::new(tempfile::tempdir().unwrap()),
            proxy: Some(Arc::new(proxy)),
        })
    }

    /// This place, seen by commands that give up after 50 ms when another
    /// process holds the SQLite file's write lock, or (etcd) after 300 ms
    /// without an answer (see [`Place::stop_answering`]); a DynamoDB place
    /// as it is.
    pub fn impatient(&self) -> Place {
        let mut place = self.clone();
        if self.url.starts_with("sqlite:") {
            place.url = format!("sqlite:{}?busy_timeout_ms=50", self.db().display());
        }
        if self.url.starts_with("etcd:") {
            place.url = format!("{}?request_timeout_ms=300&timeout_ms=1000", self.url);
        }
        place
    }

    /// Make the store stop answering. SQLite: another process takes the
    /// file's write lock and keeps it until the [`Outage`] is dropped (an
    /// [`impatient`](Place::impatient) store then fails at once). DynamoDB:
    /// every request on the table fails with a server error from now on.
    /// etcd: the network between the commands and etcd is cut (a
    /// partition), until the [`Outage`] is dropped.
    pub fn stop_answering(&self) -> Outage {
        if let Some(proxy) = &self.proxy {
            proxy.cut();
            return Outage {
                _blocker: None,
                proxy: Some(Arc::clone(proxy)),
            };
        }
        if self.url.starts_with("sqlite:") {
            let conn = rusqlite::Connection::open(self.db()).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            return Outage {
                _blocker: Some(conn),
                proxy: None,
            };
        }
        let endpoint = std::env::var(ENDPOINT_VAR).unwrap();
        let table = self.url["dynamodb://".len()..]
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        inject_fault(&endpoint, &table, "InternalServerError", 500, 100_000);
        Outage {
            _blocker: None,
            proxy: None,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `monotone --store URL ARGS`, with the commands' directory in `$OUT`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = monotone();
        cmd.env("OUT", self.dir.path())
            .arg("--store")
            .arg(&self.url)
            .args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Run, expect success; the JSON document (see [`binary::json`]).
    pub fn json(&self, args: &[&str]) -> Value {
        binary::json(self.run(args), args)
    }

    /// Run, expect failure with `code`; the one line on stderr (see
    /// [`binary::fails`]).
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        binary::fails(self.run(args), code, args)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Start `monotone ARGS` holding a lease without a command (`lock`,
    /// `claim --ttl`) and wait for the document it prints once it holds.
    pub fn hold(&self, args: &[&str]) -> Holder {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.as_mut().unwrap());
        let doc = binary::first_document(&mut stdout);
        Holder { child, doc }
    }

    /// The file `name` of the commands' directory (empty if absent).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Wait (up to 20 s) until the file `name` has a whole line.
    pub fn await_file(&self, name: &str) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.read(name);
            if text.ends_with('\n') {
                return text.trim().to_owned();
            }
            assert!(Instant::now() < until, "{name} never written");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `workers` processes of `monotone ARGS(i) -- sh -c RECORD` started at
    /// once, each holding for `hold` seconds (see [`RECORD`]); each must
    /// exit 0. Every run's (start, end, fencing token), sorted by start.
    pub fn record_runs(
        &self,
        workers: usize,
        hold: &str,
        args: impl Fn(usize) -> Vec<String>,
    ) -> Vec<(u128, u128, u64)> {
        let children: Vec<_> = (0..workers)
            .map(|i| {
                let mut all = args(i);
                all.extend(["--", "sh", "-c", RECORD].map(String::from));
                let all: Vec<&str> = all.iter().map(String::as_str).collect();
                let mut cmd = self.command(&all);
                cmd.env("HOLD", hold)
                    .env("WORKER", i.to_string())
                    .stderr(Stdio::piped());
                cmd.spawn().unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        }
        let mut runs: Vec<(u128, u128, u64)> = (0..workers)
            .map(|i| {
                let line = self.read(&format!("run-{i}"));
                let v: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(v.len(), 3, "worker {i} ran its command: {line:?}");
                (
                    v[0].parse().unwrap(),
                    v[1].parse().unwrap(),
                    v[2].parse().unwrap(),
                )
            })
            .collect();
        runs.sort();
        runs
    }

    /// Wait for the file `name` (see [`Place::await_file`]): the process ids
    /// a command wrote to it, separated by spaces.
    pub fn await_pids(&self, name: &str) -> Vec<i32> {
        self.await_file(name)
            .split(' ')
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

/// The command [`Place::record_runs`] runs under each holder: note the
/// start, hold `$HOLD` seconds, note the end and the fencing token.
pub const RECORD: &str = r#"start=$(date +%s%N); sleep "$HOLD"; end=$(date +%s%N)
echo "$start $end $MONOTONE_FENCING_TOKEN" > "$OUT/run-$WORKER""#;

/// The most runs (start, end, token) that overlapped at any one time.
pub fn most_at_once(runs: &[(u128, u128, u64)]) -> usize {
    runs.iter()
        .map(|(start, _, _)| {
            runs.iter()
                .filter(|(s, e, _)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Runs sorted by start never overlapped, and their tokens grew: each
/// holder came after the one before had ended.
pub fn one_after_another(runs: &[(u128, u128, u64)]) {
    for w in runs.windows(2) {
        assert!(w[1].0 >= w[0].1, "two commands ran at once: {runs:?}");
        assert!(w[1].2 > w[0].2, "tokens grow with each holder: {runs:?}");
    }
    assert_eq!(most_at_once(runs), 1);
}

/// A `monotone` that holds a lease without a command until its stdin
/// closes, and the document it printed once it held it.
pub struct Holder {
    child: Child,
    pub doc: Value,
}

impl Holder {
    /// Close its stdin: it gives the lease back and exits 0.
    pub fn release(mut self) {
        drop(self.child.stdin.take());
        let out = self.child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }

    /// SIGKILL it, and reap it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A store kept from answering by [`Place::stop_answering`].
pub struct Outage {
    _blocker: Option<rusqlite::Connection>,
    proxy: Option<Arc<Proxy>>,
}

impl Drop for Outage {
    fn drop(&mut self) {
        if let Some(proxy) = &self.proxy {
            proxy.heal();
        }
    }
}

/// Make the next `count` requests on `table` fail (scripts/moto_server.py).
pub fn inject_fault(endpoint: &str, table: &str, code: &str, status: u16, count: u32) {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let body =
        format!(r#"{{"table":"{table}","code":"{code}","status":{status},"count":{count}}}"#);
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /_monotone/faults HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// `holder` (`-i ID lock`, `-i ID claim -p OWNER ...`) holds a lease of 2 s
/// around a command that ignores SIGTERM and leaves a child, on the
/// [`impatient`](Place::impatient) `place`; the store stops answering: the command's whole group is killed (SIGTERM, then
/// SIGKILL 200 ms later) within the lease, and monotone exits 10 saying
/// `lost`. Killed before anyone could take the lease: within the ttl of the
/// last renewal, which went out before the store stopped answering. The
/// holder's margin (a tenth of the ttl, 200 ms here) is the room left for a
/// loaded machine to be late.
pub fn command_killed_when_the_store_stops_answering(place: &Place, holder: &[&str], lost: &str) {
    let script = r#"trap '' TERM; sleep 1000 & echo "$$ $!" > "$OUT/pids"; wait; wait"#;
    let mut args = holder.to_vec();
    args.extend([
        "--ttl",
        "2s",
        "--kill-after",
        "200ms",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let place = place.impatient();
    let child = place.spawn(&args);
    let pids = place.await_pids("pids");
    let cut = Instant::now();
    let outage = place.stop_answering();
    // Watch the command's processes die.
    for pid in &pids {
        assert!(gone(*pid), "process {pid} outlived the lease");
    }
    let killed = cut.elapsed();
    let out = child.wait_with_output().unwrap();
    drop(outage);
    assert_eq!(out.status.code(), Some(10), "{lost}: {}", stderr(&out));
    assert!(stderr(&out).contains(lost), "{}", stderr(&out));
    assert!(
        killed < Duration::from_secs(2),
        "killed {killed:?} after the outage began"
    );
    println!("the command was killed {killed:?} after the store stopped answering");
}

/// Whether `pid` still runs: it exists and is not a zombie waiting to be
/// reaped (by init, which may take its time in a container).
pub fn alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state is the first field after the parenthesised command name.
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !(stat.is_empty() || state.starts_with('Z') || state.starts_with('X'))
}

/// Wait (up to 10 s) for `pid` to be gone; false if it stays.
pub fn gone(pid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}
