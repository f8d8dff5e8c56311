//! The command line, as clap derive types only. monotone 0.4's flags and
//! commands are kept exactly; `--store`, `tally` and `serve` are new.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Atomic counters, queues and shared JSON documents for configuration \
management in distributed systems";

const STORE_HELP: &str = "\
Choosing the store:
  --store URL, else the MONOTONE_STORE environment variable:
      sqlite:PATH                          a SQLite file shared by the processes of this host
      memory:                              this process only (for trying things out)
      dynamodb://TABLE?region=R&endpoint=URL   a DynamoDB table (region, endpoint optional)
  -r/--region or -t/--table select DynamoDB as in monotone 0.4 (table Counters
  unless -t; region from -r, else the AWS configuration, else eu-west-1).
  With none of these, the store is the SQLite file
  $XDG_DATA_HOME/monotone/monotone.db (else ~/.local/share/monotone/monotone.db),
  created on first use.

Output is one JSON document on stdout (`doc watch`: one JSON line per
change). On failure nothing is printed on stdout, one line goes to stderr,
and the exit code says why:
  2 usage or invalid input   3 not found        4 wrong type (counter, queue, document, tally, claim pool)
  5 contention or throttling 6 store unavailable 7 store misconfigured
  8 corrupt data in the store 9 not acquired in time (wait, lock)
  10 lease lost              11 every candidate of a claim pool is taken
  12 --if-version found another version (stderr names it)
  1 anything else

Examples:
  monotone -i mycounter counter next
  monotone -i myzkcluster queue -p $(hostname -f) join | jq .ticket.counter
  monotone -i leader queue -p $(hostname -f) join --ttl 15s
  monotone -i leader queue -p $(hostname -f) wait --timeout 5m
  echo '{\"globs\": [\"/usr/sbin/*\"]}' | monotone -i agent-config doc set
  monotone -i agent-config doc watch --from-version 0 | jq -c .value
  monotone -i gpu-quota tally add -- -3      (or: tally add --by -3)
  monotone -i myzk claim -p $(hostname -f) --range 1..255 | jq -r .name
  monotone --store sqlite:/var/lib/monotone.db serve --listen 127.0.0.1:7777";

/// `monotone [global flags] <counter|queue|lock|doc|tally|claim|serve> ...`
#[derive(Debug, Parser)]
#[command(name = "monotone", version, about = ABOUT, after_help = STORE_HELP)]
pub struct Cli {
    /// Id of the counter, queue, lock, document, tally or claim pool to use
    /// (every command but serve)
    #[arg(short, long, value_name = "ID")]
    pub id: Option<String>,

    /// AWS region of the DynamoDB table (selects DynamoDB)
    #[arg(short, long, value_name = "REGION")]
    pub region: Option<String>,

    /// DynamoDB table [default: Counters] (selects DynamoDB)
    #[arg(short, long, value_name = "TABLE")]
    pub table: Option<String>,

    /// Store URL: sqlite:PATH, memory: or dynamodb://TABLE [env: MONOTONE_STORE]
    #[arg(long, value_name = "URL", conflicts_with_all = ["region", "table"])]
    pub store: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// An atomic counter that only goes up
    Counter {
        #[command(subcommand)]
        action: CounterAction,
    },
    /// A queue of process ids, ordered by when they joined
    Queue(QueueArgs),
    /// Run a command while holding a lock (or one of N places) on the queue
    #[command(after_help = LOCK_HELP)]
    Lock(LockArgs),
    /// A shared JSON document whose version grows with every write
    Doc {
        #[command(subcommand)]
        action: DocAction,
    },
    /// A signed sum that goes up and down (quotas, pools, gauges)
    Tally {
        #[command(subcommand)]
        action: TallyAction,
    },
    /// Claim the first free name of a list or range (ZooKeeper myids, a
    /// fleet's names); list, get and release claims
    #[command(after_help = CLAIM_HELP)]
    Claim(ClaimArgs),
    /// Serve every counter, queue and tally of the store over HTTP
    Serve(ServeArgs),
}

const LOCK_HELP: &str = "\
Joins the queue with a leased ticket, waits until it is among the first N,
runs COMMAND in its own process group while renewing the lease, and leaves
the queue when COMMAND ends. COMMAND's environment holds MONOTONE_ID,
MONOTONE_PROCESS_ID, MONOTONE_FENCING_TOKEN, MONOTONE_POSITION,
MONOTONE_COUNTER and MONOTONE_STORE.

Without COMMAND, prints the ticket as JSON once acquired and holds the lock
until stdin closes or a signal arrives.

Exit status: COMMAND's (128 + the signal if a signal killed it); 9 when the
lock was not acquired (--no-wait, --timeout); 10 when the lease was lost and
the command was killed; 2 for bad arguments or a command that cannot be run.

Examples:
  monotone -i mongo-init lock -- /usr/local/bin/init-replica-set
  monotone -i hourly-report lock --no-wait -- ./report.sh
  monotone -i backups lock -n 2 --ttl 30s -- ./backup.sh";

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Id of this holder [default: HOST:PID:N, unique to this invocation]
    #[arg(short, long = "process", value_name = "PROCESS_ID")]
    pub process_id: Option<String>,

    /// How many may hold the lock at once (a semaphore)
    #[arg(short = 'n', long = "holders", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub holders: u64,

    /// Lease: how long the lock outlives a holder that stops renewing it
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub ttl: Duration,

    /// Do not wait: if the lock is held, exit at once with code 9
    #[arg(long, conflicts_with = "timeout")]
    pub no_wait: bool,

    /// Give up after waiting this long, with exit code 9
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// While waiting, the longest time between two looks at the queue (each
    /// look is one read of the store)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll)]
    pub poll: Duration,

    /// Tag for the ticket, KEY=VALUE; repeat for more
    #[arg(short, long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// When the lease is lost: time between SIGTERM and SIGKILL to the
    /// command's process group [default: 3s, or a fifth of the ttl if shorter]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub kill_after: Option<Duration>,

    /// The command to run under the lock, after --
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

const CLAIM_HELP: &str = "\
Claims the first candidate that no one holds, in the order given, for OWNER,
and prints the claim; claiming again as the same owner returns the same
claim. Every claim, release and expiry adds one to the pool's fencing token.
Without --ttl the claim is permanent: it stays until released. With --ttl it
is leased and held while monotone runs: around COMMAND (run in its own
process group, killed if the lease is lost), or without COMMAND until stdin
closes or a signal arrives; then it is released. COMMAND's environment holds
MONOTONE_CLAIM_NAME, MONOTONE_CLAIM_INDEX, MONOTONE_CLAIM_OWNER,
MONOTONE_FENCING_TOKEN, MONOTONE_ID and MONOTONE_STORE.

At most 256 candidates, names of at most 256 bytes; a range includes both
ends (1..255 is 1 to 255, as bash's {1..255}).

Exit status: 11 when every candidate is taken; with COMMAND, COMMAND's own,
10 when the lease was lost and the command was killed; 2 for bad arguments.

Examples:
  monotone -i myzk claim -p $(hostname -f) --range 1..255 | jq -r .name
  monotone -i fleet-names claim -p $(hostname -f) --names-file mountains.txt --ttl 30s -- ./agent
  monotone -i myzk claim list
  monotone -i myzk claim -p $(hostname -f) release";

#[derive(Debug, Args)]
#[command(
    subcommand_negates_reqs = true,
    group(clap::ArgGroup::new("candidates").required(true).args(["range", "names", "names_file"]))
)]
pub struct ClaimArgs {
    /// Who claims (or releases): a stable id, such as the host's name
    #[arg(
        short = 'p',
        long = "owner",
        visible_alias = "process",
        value_name = "OWNER",
        global = true
    )]
    pub owner: Option<String>,

    /// Claim from the integers A to B, both included (A..=B works too)
    #[arg(long, value_name = "A..B", value_parser = parse_range)]
    pub range: Option<(u64, u64)>,

    /// Claim from these names, in this order, separated by commas
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', num_args = 1..)]
    pub names: Option<Vec<String>>,

    /// Claim from the names in FILE, one a line, in order (blank lines and
    /// lines starting with # are skipped; `-` reads standard input)
    #[arg(long, value_name = "FILE")]
    pub names_file: Option<PathBuf>,

    /// Lease the claim and hold it while monotone runs, renewing it; it
    /// expires this long after the holder stops renewing
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,

    /// While every candidate is taken, wait up to this long for one to free
    /// up, removing claims whose lease expired (exit code 11 after it)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// While waiting, the longest time between two looks at the pool
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll)]
    pub poll: Duration,

    /// When the lease is lost: time between SIGTERM and SIGKILL to the
    /// command's process group [default: 3s, or a fifth of the ttl if shorter]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub kill_after: Option<Duration>,

    /// The command to run while holding the claim (needs --ttl), after --
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,

    #[command(subcommand)]
    pub action: Option<ClaimAction>,
}

#[derive(Debug, Subcommand)]
pub enum ClaimAction {
    /// List every claim in candidate order, with the pool's fencing token
    List,
    /// Get the claim of the owner (-p)
    Get,
    /// Release the owner's (-p) claim
    Release,
    /// Remove the pool, its claims and its token from the store
    Rm,
}

/// An integer range `A..B` or `A..=B`, both ends included.
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (start, end) = s
        .split_once("..=")
        .or_else(|| s.split_once(".."))
        .ok_or_else(|| format!("`{s}` is not a range like 1..255"))?;
    let number = |n: &str| {
        n.trim().parse::<u64>().map_err(|_| {
            format!(
                "`{n}` in `{s}` is not a whole number from 0 to {}",
                u64::MAX
            )
        })
    };
    Ok((number(start)?, number(end)?))
}

#[derive(Debug, Subcommand)]
pub enum TallyAction {
    /// Add N (negative to subtract) and get the new value
    Add {
        /// The amount; a negative one after `--` or as `--by -3`
        #[arg(
            value_name = "N",
            allow_negative_numbers = true,
            required_unless_present = "by",
            conflicts_with = "by"
        )]
        n: Option<i64>,
        /// The amount, as an option
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        by: Option<i64>,
    },
    /// Get the value of the tally
    Get {
        /// Accept a value that may lag behind the latest adds (DynamoDB: an
        /// eventually consistent read, at half the price)
        #[arg(long)]
        stale: bool,
    },
    /// Remove the tally from the store
    Rm,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7777")]
    pub listen: SocketAddr,

    /// File holding the bearer token every request must carry
    /// (`Authorization: Bearer TOKEN`); required off loopback
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Listen off loopback without a token: anyone who reaches the port can
    /// change every item
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Subcommand)]
pub enum CounterAction {
    /// Get the value of the counter
    Get,
    /// Increment the counter and get its new value
    Next,
    /// Remove the counter from the store
    Rm,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Id of the process (for get, join and leave)
    #[arg(short, long = "process", value_name = "PROCESS_ID", global = true)]
    pub process_id: Option<String>,

    #[command(subcommand)]
    pub action: QueueAction,
}

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Get the ticket of the process
    Get,
    /// List the processes in the queue
    List,
    /// Add the process to the back of the queue (again: returns its ticket)
    Join {
        /// Tag for the ticket, KEY=VALUE; repeat for more
        #[arg(short, long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Give the ticket a lease: it expires unless renewed within this
        /// long (e.g. 30s, 2m)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Renew the lease of the process's ticket once
    Renew,
    /// Wait until the process is among the first N tickets, removing expired
    /// tickets ahead of it; print its ticket
    Wait {
        /// Wait until the ticket's position is below N (1: the head)
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        position: u64,
        /// Give up after this long (exit code 9); 0 looks once
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// The longest time between two looks at the queue
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll)]
        poll: Duration,
    },
    /// Remove the process from the queue
    Leave,
    /// Remove the queue from the store
    Rm,
}

/// A duration such as `15s`, `1m30s` or `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 15s, 2m or 500ms ({e})"))
}

/// A poll interval: a duration from 10 ms to an hour.
fn parse_poll(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
        return Err(format!("`{s}` is out of range: poll between 10ms and 1h"));
    }
    Ok(d)
}

#[derive(Debug, Subcommand)]
pub enum DocAction {
    /// Print the document and its version (one consistent read)
    Get,
    /// Replace the document with the JSON value in FILE (or standard input)
    Set {
        /// Write only if the document is at version N (0: does not exist yet)
        #[arg(long, value_name = "N")]
        if_version: Option<u64>,
        /// A file holding one JSON value; `-` or nothing for standard input
        #[arg(value_name = "FILE")]
        file: Option<String>,
    },
    /// Apply an RFC 7386 JSON merge patch from FILE (or standard input)
    Patch {
        /// Patch only if the document is at version N
        #[arg(long, value_name = "N")]
        if_version: Option<u64>,
        /// A file holding the merge patch; `-` or nothing for standard input
        #[arg(value_name = "FILE")]
        file: Option<String>,
    },
    /// Print one JSON line per change until interrupted
    Watch {
        /// Report the changes after version N (0: the whole document first);
        /// by default, those from now on
        #[arg(long, value_name = "N")]
        from_version: Option<u64>,
        /// How often to check the store for a new version
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll)]
        poll: Duration,
    },
    /// Remove the document (its version stays and goes on growing)
    Rm {
        /// Remove only if the document is at version N
        #[arg(long, value_name = "N")]
        if_version: Option<u64>,
    },
}

pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("tag `{s}` has an empty key")),
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => Err(format!("tag `{s}` is not of the form KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn monotone_0_4_forms_parse() {
        let cli = Cli::try_parse_from([
            "monotone", "-i", "q", "queue", "-p", "foo", "join", "-t", "a=1", "-t", "b=x=y",
        ])
        .unwrap();
        let Command::Queue(q) = cli.command else {
            panic!("not a queue command")
        };
        assert_eq!(q.process_id.as_deref(), Some("foo"));
        let QueueAction::Join { tags, .. } = q.action else {
            panic!("not join")
        };
        assert_eq!(tags, [("a".into(), "1".into()), ("b".into(), "x=y".into())]);

        let cli = Cli::try_parse_from([
            "monotone",
            "-r",
            "us-east-1",
            "-t",
            "T",
            "-i",
            "c",
            "counter",
            "next",
        ])
        .unwrap();
        assert_eq!(
            (cli.region.as_deref(), cli.table.as_deref()),
            (Some("us-east-1"), Some("T"))
        );
        // -p is also accepted after the queue action.
        let cli =
            Cli::try_parse_from(["monotone", "-i", "q", "queue", "leave", "-p", "foo"]).unwrap();
        let Command::Queue(q) = cli.command else {
            panic!("not a queue command")
        };
        assert_eq!(q.process_id.as_deref(), Some("foo"));
    }

    fn tally_amount(args: &[&str]) -> Result<(Option<i64>, Option<i64>), clap::Error> {
        let mut argv = vec!["monotone", "-i", "t", "tally", "add"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Tally {
                action: TallyAction::Add { n, by },
            } => Ok((n, by)),
            other => panic!("not tally add: {other:?}"),
        }
    }

    #[test]
    fn tally_amounts_of_either_sign() {
        assert_eq!(tally_amount(&["5"]).unwrap(), (Some(5), None));
        assert_eq!(tally_amount(&["--", "-3"]).unwrap(), (Some(-3), None));
        assert_eq!(tally_amount(&["-3"]).unwrap(), (Some(-3), None));
        assert_eq!(tally_amount(&["--by", "-3"]).unwrap(), (None, Some(-3)));
        assert_eq!(tally_amount(&["--by=-3"]).unwrap(), (None, Some(-3)));
        for bad in [
            &[][..],
            &["1", "--by", "2"],
            &["1.5"],
            &["9223372036854775808"],
        ] {
            assert!(tally_amount(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serve_needs_no_id_and_listens_on_loopback_by_default() {
        let cli = Cli::try_parse_from(["monotone", "serve"]).unwrap();
        assert_eq!(cli.id, None);
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.listen, "127.0.0.1:7777".parse().unwrap());
        assert!(!args.insecure && args.token_file.is_none());
    }

    #[test]
    fn doc_forms_parse() {
        let cli = Cli::try_parse_from([
            "monotone",
            "-i",
            "d",
            "doc",
            "set",
            "--if-version",
            "3",
            "new.json",
        ])
        .unwrap();
        let Command::Doc {
            action: DocAction::Set { if_version, file },
        } = cli.command
        else {
            panic!("not doc set")
        };
        assert_eq!((if_version, file.as_deref()), (Some(3), Some("new.json")));
        let cli = Cli::try_parse_from(["monotone", "-i", "d", "doc", "watch"]).unwrap();
        let Command::Doc {
            action: DocAction::Watch { from_version, poll },
        } = cli.command
        else {
            panic!("not doc watch")
        };
        assert_eq!(
            (from_version, poll),
            (None, std::time::Duration::from_secs(1))
        );
        for bad in [
            &["doc", "set", "--if-version", "-1"][..],
            &["doc", "watch", "--poll", "0s"],
            &["doc", "get", "extra"],
        ] {
            let mut argv = vec!["monotone", "-i", "d"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn claim_ranges_include_both_ends() {
        assert_eq!(parse_range("1..255"), Ok((1, 255)));
        assert_eq!(parse_range("1..=255"), Ok((1, 255)));
        assert_eq!(parse_range(" 0 .. 7 "), Ok((0, 7)));
        for bad in ["1-5", "..5", "1..", "a..b", "-1..5", "1..=", "1...5"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from([
            "monotone", "-i", "p", "claim", "-p", "me", "--names", "a,b", "--ttl", "30s", "--",
            "agent", "--flag",
        ])
        .unwrap();
        let Command::Claim(c) = cli.command else {
            panic!("not claim")
        };
        assert_eq!(c.names, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(c.command, ["agent", "--flag"]);
        let cli =
            Cli::try_parse_from(["monotone", "-i", "p", "claim", "release", "-p", "me"]).unwrap();
        let Command::Claim(c) = cli.command else {
            panic!("not claim")
        };
        assert_eq!(
            (
                c.owner.as_deref(),
                matches!(c.action, Some(ClaimAction::Release))
            ),
            (Some("me"), true)
        );
    }

    #[test]
    fn bad_tags_and_conflicts_are_usage_errors() {
        for tag in ["novalue", "=v"] {
            let e =
                Cli::try_parse_from(["monotone", "-i", "q", "queue", "-p", "p", "join", "-t", tag])
                    .unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        }
        let e = Cli::try_parse_from([
            "monotone", "--store", "memory:", "-t", "T", "-i", "c", "counter", "get",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
