//! `monotone -i POOL claim -p OWNER (--range A..B | --names A,B,... |
//! --names-file FILE) [-t KEY=VALUE]... [--members N] [--no-wait |
//! --timeout D] [--ttl D [--kill-after D] [-- COMMAND [ARGS...]]]`, and
//! `monotone -i POOL claim list | rm | wait --members N [--timeout D]`,
//! `monotone -i POOL claim -p OWNER get | release`.
//!
//! Without `--ttl` a claim is permanent: printed, and kept until released.
//! With `--ttl` it is leased and held by a [`ClaimHolder`] while `monotone`
//! runs, as `monotone lock` holds its ticket (see [`hold`]): around COMMAND,
//! in its own process group and killed if the lease is lost, or without
//! COMMAND until stdin closes, stdout is closed or a signal arrives; then
//! it is released.
//!
//! Claiming again as the same owner returns the owner's claim if it asks
//! for the same one (the same tags, the same `--ttl` or none), and is
//! refused otherwise (exit 13). A holder (`--ttl`) never shares the owner's
//! claim with another holder: while another `claim --ttl` (or a leased claim
//! made without a holder) holds it, it waits for it to go (`--timeout`, or
//! for ever; `--no-wait`: exit 9).
//!
//! # Rosters
//!
//! With `--members N` the claim seals the pool at a roster of N members
//! (the first claim made with it records N; see `monotone::ClaimPool`'s
//! *Rosters*), and once claimed, waits until the pool holds N claims, then
//! prints the claim's JSON plus `members`: the N claims `{"name", "owner",
//! "tags", "token"}` by name (numbers numerically), the same on every
//! member. `--timeout` bounds the whole: the claim (waiting for a member's
//! name to free up while the roster is full, exit 11 after it) and the
//! roster (exit 9 after it, the claim kept). Without `--timeout` a full
//! roster is exit 11 at once and the roster is awaited for ever. With
//! `--ttl` the roster is awaited while the claim is held; with COMMAND it
//! starts once the roster is complete, with the members' JSON in
//! `MONOTONE_CLAIM_MEMBERS`. `claim wait --members N` prints the roster
//! without claiming: `{"id", "region", "table", "fencing_token",
//! "members"}`, the token being the pool's when the roster was read.
//!
//! # Exit status
//!
//! 11 when every candidate is taken, or the pool's roster is full (after
//! `--timeout`, if given); 2 for a `--members` other than the pool's; 9 when
//! the roster is not complete within `--timeout` (the claim stays); 9 when
//! another holder holds the owner's claim past `--timeout` (or at once with
//! `--no-wait`); 13 when the owner holds another claim than the one asked
//! for; with COMMAND, COMMAND's own (128 + the signal if a signal ended it),
//! 10 when the lease was lost while COMMAND ran (it was killed); the usual
//! codes otherwise. A COMMAND that cannot be run is refused with 2 before
//! anything is claimed (see [`crate::program`]); what only its start can
//! tell gives 127 or 126, as `env` does, with the claim released.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use monotone::{
    wait_for_claim_as, wait_for_roster, Candidates, Claim, ClaimHolder, ClaimPool, ClaimRequest,
    Error, ErrorKind, Fenced, Store, Tags, WaitOptions, MAX_CANDIDATES,
};
use serde::Serialize;
use tokio::time::Instant;

use super::hold::{self, check_command, hold_until_done, signal_code, Signals, Timing};
use super::queue::{no_process_id, LeaseView, QueueRemovedOutput};
use super::values::{parse_duration, parse_poll, parse_tag, tag_map};
use super::{Output, Place};
use crate::exit::Failure;

const CLAIM_HELP: &str = "\
Claims the first candidate that no one holds, in the order given, for OWNER,
with its tags (-t), and prints the claim; claiming again as the same owner
with the same tags and --ttl returns the same claim (other ones: exit 13,
nothing changed). Every claim, release and expiry adds one to the pool's
fencing token.
Without --ttl the claim is permanent: it stays until released. With --ttl it
is leased and held while monotone runs: around COMMAND (run in its own
process group, killed if the lease is lost), or without COMMAND until stdin
closes, its stdout is closed or a signal arrives; then it is released. COMMAND's environment holds
MONOTONE_CLAIM_NAME, MONOTONE_CLAIM_INDEX, MONOTONE_CLAIM_OWNER,
MONOTONE_FENCING_TOKEN, MONOTONE_ID and MONOTONE_STORE. Two holders never
share a claim: a --ttl claim whose owner is held by another waits for it to
end (or to die and expire).

At most 256 candidates, names of at most 256 bytes; a range includes both
ends (1..255 is 1 to 255, as bash's {1..255}).

With --members N (a bootstrap barrier) the first claim made with it seals the
pool at a roster of N; once claimed, monotone waits until the pool holds N
claims and prints the claim plus \"members\": the N claims (name, owner, tags,
token) by name, identical on every member. While the roster is full, other
claimers get 11; a released or expired member's name goes to the next
claimer. --timeout bounds the claim and the wait (9 if the roster is not
complete in time: the claim stays). \"claim wait --members N\" prints the
roster without claiming.

Exit status: 11 when every candidate is taken or the roster is full; 9 when
the roster is not complete within --timeout, or another holder holds the
owner's claim (--no-wait, --timeout); 13 when the owner holds another
claim; with COMMAND, COMMAND's own, 10 when the lease was lost and the
command was killed; 2 for bad arguments (--ttl under 200ms, -p on list or
rm, a --members other than the pool's) and for a COMMAND that cannot be run, refused before anything is
claimed: not found, not executable, or a script whose #! interpreter is
missing. What only starting it can tell exits as env does, with the claim
released: 127 not found, 126 found but not runnable.

Examples:
  monotone -i myzk claim -p $(hostname -f) --range 1..255 -t addr=10.0.0.5 | jq -r .name
  monotone -i fleet-names claim -p $(hostname -f) --names-file mountains.txt --ttl 30s -- ./agent
  monotone -i myzk claim -p $(hostname -f) --range 1..255 --members 3 -t addr=10.0.0.5 | jq .members
  monotone -i myzk claim wait --members 3 --timeout 30s
  monotone -i myzk claim list
  monotone -i myzk claim -p $(hostname -f) release";

/// Claim the first free name of a list or range (ZooKeeper myids, a
/// fleet's names); list, get and release claims
#[derive(Debug, Args)]
#[command(
    after_help = CLAIM_HELP,
    subcommand_negates_reqs = true,
    group(clap::ArgGroup::new("candidates").required(true).args(["range", "names", "names_file"]))
)]
pub struct ClaimArgs {
    /// Who claims (or gets, releases): a stable id, such as the host's
    /// name; list and rm act on the whole pool and refuse it
    #[arg(
        short = 'p',
        long = "owner",
        visible_alias = "process",
        value_name = "OWNER",
        global = true
    )]
    pub owner: Option<String>,

    /// Claim from the integers A to B, both included (A..=B works too)
    #[arg(long, value_name = "A..B", value_parser = parse_range, allow_hyphen_values = true)]
    pub range: Option<(u64, u64)>,

    /// Claim from these names, in this order, separated by commas
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', num_args = 1..)]
    pub names: Option<Vec<String>>,

    /// Claim from the names in FILE, one a line, in order (blank lines and
    /// lines starting with # are skipped; `-` reads standard input)
    #[arg(long, value_name = "FILE")]
    pub names_file: Option<PathBuf>,

    /// Tag for the claim, KEY=VALUE (an address, a role); repeat for more
    #[arg(short, long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// Lease the claim and hold it while monotone runs, renewing it; it
    /// expires this long after the holder stops renewing
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub ttl: Option<Duration>,

    /// While every candidate is taken, wait up to this long for one to free
    /// up, removing claims whose lease expired (exit code 11 after it); with
    /// --ttl, also the longest wait for another holder of the owner's claim
    /// (exit code 9 after it; without --timeout it waits for ever)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,

    /// Seal the pool at a roster of N members (the first claim with it
    /// records N); once claimed, wait until the pool holds N claims and
    /// print them as "members" (exit code 9 after --timeout)
    #[arg(long, value_name = "N", value_parser = parse_members, allow_hyphen_values = true)]
    pub members: Option<usize>,

    /// With --ttl: if another holder holds the owner's claim, exit at once
    /// with code 9 instead of waiting for it
    #[arg(long, conflicts_with = "timeout")]
    pub no_wait: bool,

    /// While waiting: how often to check the pool on a store that cannot
    /// push (DynamoDB); where the store tells of changes (the embedded one),
    /// how often to check anyway, in case a notification was lost
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll, allow_hyphen_values = true)]
    pub poll: Duration,

    /// When the lease is lost: time between SIGTERM and SIGKILL to the
    /// command's process group [default: 3s, or a fifth of the ttl if shorter]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub kill_after: Option<Duration>,

    /// The command to run while holding the claim (needs --ttl), after --
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,

    #[command(subcommand)]
    pub action: Option<ClaimAction>,
}

#[derive(Debug, Subcommand)]
pub enum ClaimAction {
    /// List every claim by name (numbers numerically), with the pool's
    /// fencing token
    List,
    /// Get the claim of the owner (-p)
    Get,
    /// Release the owner's (-p) claim
    Release,
    /// Remove the pool, its claims and its token from the store
    Rm,
    /// Wait until the pool holds its roster of N members and print them,
    /// without claiming
    Wait {
        /// The roster size: the pool's, if it is sealed
        #[arg(long, value_name = "N", value_parser = parse_members, allow_hyphen_values = true)]
        members: usize,
        /// Give up after this long (exit code 9); 0 looks once
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
        timeout: Option<Duration>,
        /// The longest time between two looks at the pool
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll, allow_hyphen_values = true)]
        poll: Duration,
    },
}

/// A roster size: 1 to 256 (the most claims a pool holds).
pub fn parse_members(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of members from 1 to {MAX_CANDIDATES}"))?;
    if (1..=MAX_CANDIDATES).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "a roster has 1 to {MAX_CANDIDATES} members, not {n}"
        ))
    }
}

/// An integer range `A..B` or `A..=B`, both ends included.
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (start, end) = s
        .split_once("..=")
        .or_else(|| s.split_once(".."))
        .ok_or_else(|| format!("`{s}` is not a range like 1..255"))?;
    let number = |n: &str| {
        if n.trim().starts_with('-') {
            return Err(format!(
                "`{n}` in `{s}` is negative: a range is of whole numbers from 0"
            ));
        }
        n.trim().parse::<u64>().map_err(|_| {
            format!(
                "`{n}` in `{s}` is not a whole number from 0 to {}",
                u64::MAX
            )
        })
    };
    Ok((number(start)?, number(end)?))
}

/// A claim in a list: `{"name", "owner", "index", "token", "tags",
/// "lease"}`.
#[derive(Debug, Serialize)]
pub struct ClaimView {
    pub name: String,
    pub owner: String,
    pub index: usize,
    /// The pool's fencing token when the claim was made.
    pub token: u64,
    pub tags: Tags,
    pub lease: Option<LeaseView>,
}

impl From<Claim> for ClaimView {
    fn from(c: Claim) -> Self {
        ClaimView {
            name: c.name,
            owner: c.owner,
            index: c.index,
            token: c.token.get(),
            tags: c.tags,
            lease: c.lease.map(LeaseView::from),
        }
    }
}

/// A member of a roster: `{"name", "owner", "tags", "token"}`, the token
/// being the pool's right after the claim was made. Nothing that changes
/// while the member lives (its lease's renewals), so every member prints
/// the same roster.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub name: String,
    pub owner: String,
    pub tags: Tags,
    pub token: u64,
}

impl From<Claim> for MemberView {
    fn from(c: Claim) -> Self {
        MemberView {
            name: c.name,
            owner: c.owner,
            tags: c.tags,
            token: c.token.get(),
        }
    }
}

fn members_of(roster: Vec<Claim>) -> Vec<MemberView> {
    roster.into_iter().map(MemberView::from).collect()
}

/// `claim wait --members N`: the roster, with the pool's token when it was
/// read.
#[derive(Debug, Serialize)]
pub struct RosterOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
    pub members: Vec<MemberView>,
}

/// `claim` and `claim get`: the claim, its `fencing_token` being the pool's
/// token when the claim was made (the same whenever the owner asks again),
/// and for `claim`, whether this call made it (`new`); with `--members`,
/// the roster (`members`).
#[derive(Debug, Serialize)]
pub struct ClaimOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub name: String,
    pub owner: String,
    pub index: usize,
    pub fencing_token: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<bool>,
    pub tags: Tags,
    pub lease: Option<LeaseView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
}

impl ClaimOutput {
    fn new(id: &str, place: Place, claim: Claim, new: Option<bool>) -> Self {
        ClaimOutput {
            id: id.to_owned(),
            region: place.region,
            table: place.table,
            name: claim.name,
            owner: claim.owner,
            index: claim.index,
            fencing_token: claim.token.get(),
            new,
            tags: claim.tags,
            lease: claim.lease.map(LeaseView::from),
            members: None,
        }
    }

    fn with_members(mut self, members: Option<Vec<MemberView>>) -> Self {
        self.members = members;
        self
    }
}

/// `claim list`: every claim by name (numbers numerically, see
/// [`ClaimPool::claims`]), the pool's token, whether there is a pool
/// (`false`: never written, or removed; its token is then 0), and the
/// roster size it is sealed at (`roster_size`, shown only for a sealed
/// pool).
#[derive(Debug, Serialize)]
pub struct ClaimsOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
    pub exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roster_size: Option<usize>,
    pub claims: Vec<ClaimView>,
}

/// `claim release`: the name given back, and the pool's token after it.
#[derive(Debug, Serialize)]
pub struct ReleasedOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
    pub name: String,
    pub owner: String,
}

fn owner<'a>(args: &'a ClaimArgs, action: &str) -> Result<&'a str, Failure> {
    args.owner.as_deref().ok_or_else(|| {
        Failure::Usage(format!(
            "claim{action} needs an owner: monotone -i POOL claim -p OWNER{action}"
        ))
    })
}

/// The candidates the arguments name.
fn candidates(args: &ClaimArgs) -> Result<Candidates, Failure> {
    let checked =
        |c: monotone::Result<Candidates>| c.map_err(|e| Failure::Usage(e.message().to_owned()));
    if let Some((start, end)) = args.range {
        return checked(Candidates::range(start..=end));
    }
    if let Some(names) = &args.names {
        return checked(Candidates::names(names.iter().map(|n| n.trim())));
    }
    let Some(file) = &args.names_file else {
        return Err(Failure::Usage(
            "claim needs candidates: --range A..B, --names A,B,... or --names-file FILE".into(),
        ));
    };
    let text = read_names(file)?;
    let names = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    checked(Candidates::names(names)).map_err(|e| match e {
        Failure::Usage(m) => Failure::Usage(format!("{}: {m}", file.display())),
        other => other,
    })
}

/// The text of the names file (`-`: standard input).
fn read_names(file: &Path) -> Result<String, Failure> {
    let read = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    read.map_err(|e| {
        Failure::Usage(format!(
            "cannot read the names file {}: {e}",
            file.display()
        ))
    })
}

/// Run `monotone claim` on the pool `id` of `store`.
pub async fn run(
    store: Arc<dyn Store>,
    id: &str,
    args: ClaimArgs,
    print: impl FnOnce(Output) -> Result<(), Failure>,
) -> Result<ExitCode, Failure> {
    if let Some(action) = &args.action {
        let claiming = args.range.is_some()
            || args.names.is_some()
            || args.names_file.is_some()
            || args.ttl.is_some()
            || args.timeout.is_some()
            || args.no_wait
            || !args.tags.is_empty()
            || args.kill_after.is_some()
            || args.members.is_some()
            || !args.command.is_empty();
        let name = match action {
            ClaimAction::Wait { .. } => "claim wait".to_owned(),
            _ => format!("claim {}", format!("{action:?}").to_lowercase()),
        };
        if claiming {
            return Err(Failure::Usage(format!(
                "{name} takes no candidates, -t, --ttl, --timeout, --no-wait, --kill-after, \
                 --members or command before it"
            )));
        }
        if let ClaimAction::List | ClaimAction::Rm | ClaimAction::Wait { .. } = action {
            no_process_id(
                args.owner.as_deref(),
                &name,
                "pool",
                "claim, get and release",
            )
            .map_err(Failure::Usage)?;
        }
    }
    let place = Place::of(&*store);
    let pool: Arc<dyn ClaimPool> = Arc::from(store.claim_pool(id)?);
    let output = match args.action {
        None => return claim(&*store, pool, place, args, print).await,
        Some(ClaimAction::List) => {
            let all = pool.roster().await?;
            Output::Claims(ClaimsOutput {
                id: id.to_owned(),
                region: place.region,
                table: place.table,
                fencing_token: all.fencing_token.get(),
                // Every claim and release adds one to a pool's token, which
                // is 0 only while there is no pool.
                exists: all.fencing_token.get() > 0,
                roster_size: all.value.size,
                claims: all.value.claims.into_iter().map(ClaimView::from).collect(),
            })
        }
        Some(ClaimAction::Wait {
            members,
            timeout,
            poll,
        }) => {
            let options = WaitOptions::new()
                .with_timeout(timeout)
                .with_poll(monotone::DEFAULT_MIN_POLL, poll);
            let roster = wait_for_roster(&*pool, members, None, &options).await?;
            Output::Roster(RosterOutput {
                id: id.to_owned(),
                region: place.region,
                table: place.table,
                fencing_token: roster.fencing_token.get(),
                members: members_of(roster.value),
            })
        }
        Some(ClaimAction::Get) => {
            let claim = pool.claim_of(owner(&args, " get")?).await?;
            Output::Claim(ClaimOutput::new(id, place, claim.value, None))
        }
        Some(ClaimAction::Release) => {
            let released = pool.release(owner(&args, " release")?).await?;
            Output::Released(ReleasedOutput {
                id: id.to_owned(),
                region: place.region,
                table: place.table,
                fencing_token: released.fencing_token.get(),
                name: released.value.name,
                owner: released.value.owner,
            })
        }
        Some(ClaimAction::Rm) => {
            let token = pool.remove().await?;
            Output::QueueRemoved(QueueRemovedOutput {
                id: id.to_owned(),
                region: place.region,
                table: place.table,
                fencing_token: token.map_or(0, |t| t.get()),
                removed: token.is_some(),
            })
        }
    };
    print(output).map(|()| ExitCode::SUCCESS)
}

/// A claim request, checked.
struct Plan {
    owner: String,
    /// The candidates and tags; the lease is `timing`'s.
    request: ClaimRequest,
    /// How long to wait for a free candidate (`--timeout`, else not at all).
    wait: WaitOptions,
    /// With `--ttl`: how long to wait for another holder of the owner's
    /// claim (`--timeout`, else for ever; `--no-wait`: not at all).
    turn: WaitOptions,
    /// With `--ttl`: the lease and its timing.
    timing: Option<Timing>,
    command: Vec<OsString>,
    /// With `--members`: the roster to wait for, and until when
    /// (`--timeout` from the start, else for ever).
    roster: Option<(usize, Option<Instant>)>,
    /// The longest time between two looks at the pool.
    poll: Duration,
}

impl Plan {
    /// Wait for the roster, if one is asked for.
    async fn roster(&self, pool: &dyn ClaimPool) -> Result<Option<Vec<MemberView>>, Failure> {
        let Some((members, until)) = self.roster else {
            return Ok(None);
        };
        // bench/barrier.py times the barrier from this line.
        tracing::debug!(pool = pool.id(), owner = %self.owner, members, "claimed: waiting for the roster");
        let left = until.map(|u| u.saturating_duration_since(Instant::now()));
        let options = WaitOptions::new()
            .with_timeout(left)
            .with_poll(monotone::DEFAULT_MIN_POLL, self.poll);
        let roster = wait_for_roster(pool, members, Some(&self.owner), &options).await?;
        Ok(Some(members_of(roster.value)))
    }
}

impl Plan {
    fn new(args: ClaimArgs) -> Result<Plan, Failure> {
        let started = Instant::now();
        let owner = owner(&args, "")?.to_owned();
        let request = ClaimRequest::new(candidates(&args)?)
            .with_tags(tag_map(args.tags)?)
            .with_members(args.members);
        let timing = args
            .ttl
            .map(|ttl| Timing::new(ttl, args.kill_after))
            .transpose()?;
        match (args.command.first(), &timing) {
            (Some(_), None) => {
                return Err(Failure::Usage(
                    "a command runs under a leased claim: give --ttl too".into(),
                ))
            }
            (Some(program), Some(_)) => check_command(program, "nothing was claimed")?,
            (None, _) => {}
        }
        if args.kill_after.is_some() && args.command.is_empty() {
            return Err(Failure::Usage(
                "--kill-after is for a command: give one after --".into(),
            ));
        }
        let wait = WaitOptions::new().with_poll(monotone::DEFAULT_MIN_POLL, args.poll);
        let turn = match args.no_wait {
            true => Some(Duration::ZERO),
            false => args.timeout,
        };
        Ok(Plan {
            owner,
            request,
            turn: wait.clone().with_timeout(turn),
            wait: wait.with_timeout(Some(args.timeout.unwrap_or(Duration::ZERO))),
            timing,
            command: args.command,
            roster: args.members.map(|n| (n, args.timeout.map(|t| started + t))),
            poll: args.poll,
        })
    }
}

/// `claim` itself: permanent, held, or held around a command.
async fn claim(
    store: &dyn Store,
    pool: Arc<dyn ClaimPool>,
    place: Place,
    args: ClaimArgs,
    print: impl FnOnce(Output) -> Result<(), Failure>,
) -> Result<ExitCode, Failure> {
    let plan = Plan::new(args)?;
    let id = pool.id().to_owned();
    let Some(timing) = plan.timing.clone() else {
        let claimed = wait_for_claim_as(&*pool, &plan.owner, &plan.request, &plan.wait).await?;
        let members = plan.roster(&*pool).await?;
        let output = ClaimOutput::new(&id, place, claimed.claim.value, Some(claimed.added))
            .with_members(members);
        return print(Output::Claim(output)).map(|()| ExitCode::SUCCESS);
    };
    let mut signals = Signals::new()?;
    // Started now, so that the hand-over does not wait for it.
    let guard = hold::prepare(&plan.command)?;
    let request = plan.request.clone().with_lease(Some(timing.ttl));
    let holder = tokio::select! {
        holder = ClaimHolder::claim_as(
            Arc::clone(&pool),
            &plan.owner,
            &request,
            timing.holder.clone(),
            &plan.turn,
            &plan.wait,
        ) => holder.map_err(|e| match e.kind() {
            ErrorKind::Timeout => Error::new(
                ErrorKind::Timeout,
                format!("claim not acquired: {}", e.message()),
            ),
            _ => e,
        })?,
        // A claim that was made meanwhile is leased: it expires.
        sig = signals.recv() => return Ok(signal_code(sig)),
    };
    tracing::debug!(pool = %id, owner = %plan.owner, name = holder.name(), "holding the claim");
    // The roster is awaited while the claim is held: a lost lease or a
    // signal ends the wait, and the claim is released.
    let waited = tokio::select! {
        roster = plan.roster(&*pool) => Waited::Roster(roster),
        e = holder.lost() => Waited::Lost(e),
        sig = signals.recv() => Waited::Signal(sig),
    };
    let members = match waited {
        Waited::Roster(Ok(members)) => members,
        Waited::Roster(Err(e)) => {
            hold::release(holder).await;
            return Err(e);
        }
        Waited::Lost(e) => return Err(e.into()),
        Waited::Signal(sig) => {
            hold::release(holder).await;
            return Ok(signal_code(sig));
        }
    };
    let claimed: Fenced<Claim> = holder.claimed().clone();
    let Some(guard) = guard else {
        let output =
            ClaimOutput::new(&id, place, claimed.value, Some(holder.added())).with_members(members);
        if let Err(e) = print(Output::Claim(output)) {
            hold::release(holder).await;
            return Err(e);
        }
        return hold_until_done(holder, signals).await;
    };
    let claim = claimed.value;
    let env = [
        ("MONOTONE_ID", id),
        ("MONOTONE_CLAIM_NAME", claim.name.clone()),
        ("MONOTONE_CLAIM_INDEX", claim.index.to_string()),
        ("MONOTONE_CLAIM_OWNER", claim.owner.clone()),
        ("MONOTONE_FENCING_TOKEN", claim.token.to_string()),
        ("MONOTONE_STORE", store.location().to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let mut env = env.to_vec();
    if let Some(members) = members {
        let json = serde_json::to_string(&members).expect("strings and numbers serialize");
        env.push(("MONOTONE_CLAIM_MEMBERS".to_owned(), json));
    }
    hold::run_command(holder, guard, &env, timing.kill_after, signals).await
}

/// How the wait for the roster of a held claim ended.
enum Waited {
    Roster(Result<Option<Vec<MemberView>>, Failure>),
    Lost(Error),
    Signal(nix::sys::signal::Signal),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

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
}
