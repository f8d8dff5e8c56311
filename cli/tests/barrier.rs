//! The bootstrap barrier driven as boot scripts drive it, with real
//! processes on SQLite, on DynamoDB and on etcd (the local servers of
//! `scripts/test.sh`; without them those runs say they skip, except under
//! CI): `claim --members N` by N processes started at staggered times, the
//! sealed roster (a late claimer refused with 11, a released member's name
//! taken by its replacement), `claim wait --members N`, `--timeout` when a
//! member never comes, and `queue wait --members N`.

use std::io::Read;
use std::process::{Child, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod binary;
mod place;
use binary::stderr;
use place::Place;

/// The time between two members' starts.
const STAGGER: Duration = Duration::from_millis(40);

/// A started process whose stdout is read as it comes: when its first byte
/// arrived, and all of it.
struct Watched {
    child: Child,
    started: Instant,
    stdout: JoinHandle<(Option<Instant>, String)>,
}

impl Watched {
    fn start(place: &Place, args: &[&str]) -> Watched {
        let mut child = place
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut first = [0u8; 1];
            if out.read(&mut first).unwrap() == 0 {
                return (None, String::new());
            }
            let printed = Instant::now();
            let mut rest = String::new();
            out.read_to_string(&mut rest).unwrap();
            (Some(printed), format!("{}{rest}", first[0] as char))
        });
        Watched {
            child,
            started,
            stdout,
        }
    }

    /// Wait for the exit: its code, when it printed, what it printed, its
    /// stderr.
    fn finish(self) -> (Option<i32>, Option<Instant>, String, String) {
        let out = self.child.wait_with_output().unwrap();
        let (printed, text) = self.stdout.join().unwrap();
        (out.status.code(), printed, text, stderr(&out))
    }
}

/// The arguments of member `i` of `pool`: `claim -p host-I --range 1..255
/// --members SIZE -t addr=10.0.0.I EXTRA...`.
fn member_args(pool: &str, i: usize, size: &str, extra: &[&str]) -> Vec<String> {
    let (owner, addr) = (format!("host-{i}"), format!("addr=10.0.0.{i}"));
    let args = [
        "-i",
        pool,
        "claim",
        "-p",
        &owner,
        "--range",
        "1..255",
        "--members",
        size,
        "-t",
        &addr,
    ];
    args.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Start members `0..n` of `pool`, one every [`STAGGER`], each with
/// `--members size` and `extra` arguments.
fn start_members(place: &Place, pool: &str, n: usize, size: &str, extra: &[&str]) -> Vec<Watched> {
    (0..n)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(STAGGER);
            }
            Watched::start(place, &strs(&member_args(pool, i, size, extra)))
        })
        .collect()
}

/// 8 members claim with `--members 8` at staggered times: every one prints
/// the same roster of 8 (names, owners, tags, tokens), and none prints
/// before the 8th claim was made: the process that made the last claim
/// (the largest token) had not even started before every print. Then the
/// roster is sealed: a 9th claimer gets 11 and changes nothing; after a
/// member releases, a new claimer gets the released name, and `claim wait
/// --members 8` shows it. Tags round-trip through claim, get, list and
/// members.
fn eight_members_get_one_roster(place: &Place) {
    let members = start_members(
        place,
        "ensemble",
        8,
        "8",
        &["--timeout", "30s", "--poll", "50ms"],
    );
    let starts: Vec<Instant> = members.iter().map(|m| m.started).collect();
    let done: Vec<_> = members.into_iter().map(Watched::finish).collect();
    let mut rosters = Vec::new();
    let mut printed_at = Vec::new();
    for (i, (code, printed, text, err)) in done.into_iter().enumerate() {
        assert_eq!(code, Some(0), "member {i}: {err}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["owner"], format!("host-{i}"));
        assert_eq!(v["tags"], json!({"addr": format!("10.0.0.{i}")}));
        rosters.push(v["members"].clone());
        printed_at.push(printed.unwrap());
    }
    let roster = &rosters[0];
    assert!(rosters.iter().all(|r| r == roster), "{rosters:#?}");
    let list = roster.as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    let mut tokens: Vec<u64> = list.iter().map(|m| m["token"].as_u64().unwrap()).collect();
    tokens.sort_unstable();
    assert_eq!(tokens, (1..=8).collect::<Vec<u64>>());
    for m in list {
        let i: usize = m["owner"].as_str().unwrap()["host-".len()..]
            .parse()
            .unwrap();
        assert_eq!(m["tags"], json!({"addr": format!("10.0.0.{i}")}), "{m}");
        assert_eq!(
            m.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["name", "owner", "tags", "token"]
        );
    }
    let last = list.iter().find(|m| m["token"] == 8).unwrap();
    let last: usize = last["owner"].as_str().unwrap()["host-".len()..]
        .parse()
        .unwrap();
    for (i, at) in printed_at.iter().enumerate() {
        assert!(
            *at > starts[last],
            "member {i} printed before host-{last}, which made the 8th claim, started"
        );
    }

    // Sealed: a 9th claimer is refused and nothing changes.
    let before = place.json(&["-i", "ensemble", "claim", "list"]);
    assert_eq!(
        (&before["roster_size"], &before["fencing_token"]),
        (&json!(8), &json!(8))
    );
    let ninth = member_args("ensemble", 9, "8", &[]);
    let args = strs(&ninth);
    let err = place.fails(&args, 11);
    assert!(err.contains("whole roster of 8 members"), "{err}");
    let err = place.fails(
        &[
            "-i",
            "ensemble",
            "claim",
            "-p",
            "host-9",
            "--range",
            "1..255",
            "--members",
            "9",
        ],
        2,
    );
    assert!(err.contains("sealed at a roster of 8"), "{err}");
    assert_eq!(place.json(&["-i", "ensemble", "claim", "list"]), before);

    // A member is replaced: its name goes to the next claimer.
    let gone = &list[2];
    let owner = gone["owner"].as_str().unwrap();
    place.json(&["-i", "ensemble", "claim", "-p", owner, "release"]);
    let replacement = place.json(&args);
    assert_eq!(replacement["name"], gone["name"]);
    assert_eq!(replacement["fencing_token"], 10);
    let wait = place.json(&["-i", "ensemble", "claim", "wait", "--members", "8"]);
    assert_eq!(wait["fencing_token"], 10);
    let shown = &wait["members"][2];
    assert_eq!(
        shown,
        &json!({"name": gone["name"], "owner": "host-9", "tags": {"addr": "10.0.0.9"}, "token": 10})
    );
    assert_eq!(replacement["members"], wait["members"]);
    let get = place.json(&["-i", "ensemble", "claim", "-p", "host-9", "get"]);
    assert_eq!(get["tags"], json!({"addr": "10.0.0.9"}));
    let listed = place.json(&["-i", "ensemble", "claim", "list"]);
    assert_eq!(listed["claims"][2]["tags"], json!({"addr": "10.0.0.9"}));
}

/// 7 of 8 members come, with `--timeout`: each exits 9 and its claim stays;
/// `claim wait --members 8 --timeout 0` says the same at once.
fn a_member_that_never_comes_is_a_timeout(place: &Place) {
    let members = start_members(
        place,
        "short",
        7,
        "8",
        &["--timeout", "600ms", "--poll", "50ms"],
    );
    for (i, m) in members.into_iter().enumerate() {
        let (code, _, text, err) = m.finish();
        assert_eq!((code, text.as_str()), (Some(9), ""), "member {i}: {err}");
        assert!(err.contains("of a roster of 8 after waiting"), "{err}");
        assert!(err.contains(&format!("`host-{i}`'s claim stays")), "{err}");
    }
    let list = place.json(&["-i", "short", "claim", "list"]);
    assert_eq!(list["claims"].as_array().unwrap().len(), 7, "{list}");
    let err = place.fails(
        &[
            "-i",
            "short",
            "claim",
            "wait",
            "--members",
            "8",
            "--timeout",
            "0s",
        ],
        9,
    );
    assert!(err.contains("holds 7 of a roster of 8"), "{err}");
    place.fails(
        &[
            "-i",
            "short",
            "claim",
            "wait",
            "--members",
            "7",
            "--timeout",
            "0s",
        ],
        2,
    );
    // The 8th comes: everyone's roster is complete.
    let eighth = place.json(&strs(&member_args("short", 7, "8", &[])));
    assert_eq!(eighth["members"].as_array().unwrap().len(), 8);
}

/// `claim --members` with `--ttl` and a command: the command starts once
/// the roster is complete, with the roster in `MONOTONE_CLAIM_MEMBERS`;
/// the claims are released when the commands end. (Each command stays
/// until all have started, as a cluster's servers do: a member that left
/// at once would leave the roster before a slower member looked.)
fn held_members_start_their_command_with_the_roster(place: &Place) {
    let record = r#"echo "$MONOTONE_CLAIM_MEMBERS" > "$OUT/members-$MONOTONE_CLAIM_NAME"
while [ "$(ls "$OUT" | grep -c '^members-')" -lt 3 ]; do sleep 0.02; done"#;
    let members = start_members(
        place,
        "held",
        3,
        "3",
        &[
            "--ttl",
            "2s",
            "--timeout",
            "20s",
            "--poll",
            "50ms",
            "--",
            "sh",
            "-c",
            record,
        ],
    );
    for m in members {
        let (code, _, _, err) = m.finish();
        assert_eq!(code, Some(0), "{err}");
    }
    let rosters: Vec<Value> = ["1", "2", "3"]
        .iter()
        .map(|n| serde_json::from_str(&place.read(&format!("members-{n}"))).unwrap())
        .collect();
    assert!(rosters.iter().all(|r| r == &rosters[0]), "{rosters:?}");
    assert_eq!(rosters[0].as_array().unwrap().len(), 3);
    let list = place.json(&["-i", "held", "claim", "list"]);
    assert_eq!(
        (&list["claims"], &list["roster_size"]),
        (&json!([]), &json!(3))
    );
}

/// monotone 0.4's recipe: join, take the counter as an id, and wait for
/// the others: `queue wait --members N` prints `queue list`'s JSON once the
/// queue holds N tickets.
fn queue_members_wait_for_each_other(place: &Place) {
    let waiters: Vec<Watched> = (0..3)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(STAGGER);
            }
            let pid = format!("zk-{i}");
            place.json(&[
                "-i",
                "zkq",
                "queue",
                "-p",
                &pid,
                "join",
                "-t",
                &format!("addr=10.0.0.{i}"),
            ]);
            Watched::start(
                place,
                &[
                    "-i",
                    "zkq",
                    "queue",
                    "-p",
                    &pid,
                    "wait",
                    "--members",
                    "3",
                    "--timeout",
                    "20s",
                    "--poll",
                    "50ms",
                ],
            )
        })
        .collect();
    let list = place.json(&["-i", "zkq", "queue", "list"]);
    for w in waiters {
        let (code, _, text, err) = w.finish();
        assert_eq!(code, Some(0), "{err}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, list);
    }
    let err = place.fails(
        &[
            "-i",
            "zkq",
            "queue",
            "-p",
            "stranger",
            "wait",
            "--members",
            "3",
        ],
        3,
    );
    assert!(err.contains("stranger"), "{err}");
    let err = place.fails(
        &[
            "-i",
            "zkq",
            "queue",
            "-p",
            "zk-0",
            "wait",
            "--members",
            "4",
            "--timeout",
            "0s",
        ],
        9,
    );
    assert!(err.contains("holds 3 of 4 tickets"), "{err}");
}

on_each_store! {
    eight_members_get_one_roster("barrier-eight"),
    a_member_that_never_comes_is_a_timeout("barrier-timeout"),
    held_members_start_their_command_with_the_roster("barrier-held"),
    queue_members_wait_for_each_other("barrier-queue"),
}

#[test]
fn members_out_of_range_are_usage_errors() {
    let place = Place::sqlite();
    for n in ["0", "257", "x"] {
        let out = place.run(&[
            "-i",
            "p",
            "claim",
            "-p",
            "a",
            "--range",
            "1..255",
            "--members",
            n,
        ]);
        assert_eq!(out.status.code(), Some(2), "{n}: {}", stderr(&out));
    }
    let err = place.fails(
        &[
            "-i",
            "p",
            "claim",
            "-p",
            "a",
            "--range",
            "1..3",
            "--members",
            "4",
        ],
        2,
    );
    assert!(err.contains("needs at least 4 candidates"), "{err}");
    place.fails(
        &["-i", "p", "claim", "-p", "a", "wait", "--members", "3"],
        2,
    );
    let list = place.json(&["-i", "p", "claim", "list"]);
    assert_eq!(list["exists"], false, "nothing written");
}

/// The store stops answering while a member waits for its roster: the wait
/// ends with the store's exit code (6, unavailable), nothing printed (the
/// wait writes nothing: the claim stays). On DynamoDB every request fails
/// with a server error from then on; etcd is cut off by a partition, and
/// once it heals the claim is still there. (A SQLite file whose write lock
/// is taken still answers the waiter's reads.)
fn the_store_unreachable_mid_wait_ends_the_wait_and_keeps_the_claim(place: &Place) {
    let place = place.impatient();
    let member = Watched::start(
        &place,
        &strs(&member_args(
            "outage",
            0,
            "2",
            &["--timeout", "60s", "--poll", "50ms"],
        )),
    );
    let until = Instant::now() + Duration::from_secs(20);
    while place.json(&["-i", "outage", "claim", "list"])["claims"] == json!([]) {
        assert!(Instant::now() < until, "the member never claimed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let outage = place.stop_answering();
    let (code, printed, text, err) = member.finish();
    assert_eq!((code, printed, text.as_str()), (Some(6), None, ""), "{err}");
    assert!(err.contains("outage"), "{err}");
    drop(outage);
    if place.url.starts_with("etcd:") {
        let claims = place.json(&["-i", "outage", "claim", "list"])["claims"].clone();
        assert_eq!(claims[0]["owner"], "host-0", "{claims}");
    }
}

/// The stores a client reaches over the network: DynamoDB, etcd.
mod the_store_unreachable_mid_wait {
    use crate::place::Place;

    #[test]
    fn on_dynamodb() {
        if let Some(place) = Place::dynamodb("barrier-outage") {
            super::the_store_unreachable_mid_wait_ends_the_wait_and_keeps_the_claim(&place);
        }
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn on_etcd() {
        if let Some(place) = Place::etcd("barrier-outage") {
            super::the_store_unreachable_mid_wait_ends_the_wait_and_keeps_the_claim(&place);
        }
    }
}
