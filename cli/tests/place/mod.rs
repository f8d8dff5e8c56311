//! One store for one test of the binary (a SQLite file, or a table of its
//! own on the local DynamoDB server of `scripts/test.sh`), and a directory
//! for the files the test's commands write, for the test files that run
//! `monotone` around commands (`lock`, `claim`).

#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_monotone");
pub const ENDPOINT_VAR: &str = "MONOTONE_TEST_DYNAMODB_ENDPOINT";

/// One store for one test, and a directory for the commands' files.
pub struct Place {
    pub url: String,
    pub dir: TempDir,
}

impl Place {
    /// A SQLite file in a new directory.
    pub fn sqlite() -> Place {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        Place { url, dir }
    }

    /// The SQLite file of [`Place::sqlite`].
    pub fn db(&self) -> PathBuf {
        self.path("store.db")
    }

    /// A table of its own on the local DynamoDB server (created by the first
    /// command), named after `tag`, or `None` (after saying so) without a
    /// server; under CI a missing server fails the test instead.
    pub fn dynamodb(tag: &str) -> Option<Place> {
        let endpoint = match std::env::var(ENDPOINT_VAR) {
            Ok(e) if !e.is_empty() => e,
            _ if std::env::var_os("CI").is_some() => {
                panic!("{ENDPOINT_VAR} is not set under CI: run the tests through scripts/test.sh")
            }
            _ => {
                println!("skipping: {ENDPOINT_VAR} not set");
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let table = format!("{tag}-{}-{nanos}", std::process::id());
        Some(Place {
            url: format!("dynamodb://{table}?region=eu-west-1&endpoint={endpoint}"),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `monotone --store URL ARGS`, with the commands' directory in `$OUT`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        for var in [
            "MONOTONE_STORE",
            "RUST_LOG",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("OUT", self.dir.path())
            .arg("--store")
            .arg(&self.url)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
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
