//! `monotone -i POOL claim -p OWNER (--range A..B | --names A,B,... |
//! --names-file FILE) [--timeout D] [--ttl D [--kill-after D] [-- COMMAND
//! [ARGS...]]]`, and `monotone -i POOL claim list | rm`,
//! `monotone -i POOL claim -p OWNER get | release`.
//!
//! Without `--ttl` a claim is permanent: printed, and kept until released.
//! With `--ttl` it is leased and held by a [`ClaimHolder`] while `monotone`
//! runs, as `monotone lock` holds its ticket (see [`hold`]): around COMMAND,
//! in its own process group and killed if the lease is lost, or without
//! COMMAND until stdin closes or a signal arrives; then it is released.
//!
//! # Exit status
//!
//! 11 when every candidate is taken (after `--timeout`, if given); with
//! COMMAND, COMMAND's own (128 + the signal if a signal ended it), 10 when
//! the lease was lost while COMMAND ran (it was killed); the usual codes
//! otherwise.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use monotone::{
    wait_for_claim, Candidates, Claim, ClaimHolder, ClaimPool, Fenced, Store, WaitOptions,
};
use serde::Serialize;

use super::hold::{self, check_command, hold_until_done, signal_code, Signals, Timing};
use super::queue::{LeaseView, QueueRemovedOutput};
use super::{Output, Place};
use crate::args::{ClaimAction, ClaimArgs};
use crate::exit::Failure;

/// A claim in a list: `{"name", "owner", "index", "token", "lease"}`.
#[derive(Debug, Serialize)]
pub struct ClaimView {
    pub name: String,
    pub owner: String,
    pub index: usize,
    /// The pool's fencing token when the claim was made.
    pub token: u64,
    pub lease: Option<LeaseView>,
}

impl From<Claim> for ClaimView {
    fn from(c: Claim) -> Self {
        ClaimView {
            name: c.name,
            owner: c.owner,
            index: c.index,
            token: c.token.get(),
            lease: c.lease.map(LeaseView::from),
        }
    }
}

/// `claim` and `claim get`: the claim, its `fencing_token` being the pool's
/// token when the claim was made (the same whenever the owner asks again),
/// and for `claim`, whether this call made it (`new`).
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
    pub lease: Option<LeaseView>,
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
            lease: claim.lease.map(LeaseView::from),
        }
    }
}

/// `claim list`: every claim in candidate order, and the pool's token.
#[derive(Debug, Serialize)]
pub struct ClaimsOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
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
            || args.kill_after.is_some()
            || !args.command.is_empty();
        if claiming {
            return Err(Failure::Usage(format!(
                "claim {} takes no candidates, --ttl, --timeout, --kill-after or command",
                format!("{action:?}").to_lowercase()
            )));
        }
    }
    let place = Place::of(&*store);
    let pool: Arc<dyn ClaimPool> = Arc::from(store.claim_pool(id)?);
    let output = match args.action {
        None => return claim(&*store, pool, place, args, print).await,
        Some(ClaimAction::List) => {
            let all = pool.claims().await?;
            Output::Claims(ClaimsOutput {
                id: id.to_owned(),
                region: place.region,
                table: place.table,
                fencing_token: all.fencing_token.get(),
                claims: all.value.into_iter().map(ClaimView::from).collect(),
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
    candidates: Candidates,
    wait: WaitOptions,
    /// With `--ttl`: the lease and its timing.
    timing: Option<Timing>,
    command: Vec<OsString>,
}

impl Plan {
    fn new(args: ClaimArgs) -> Result<Plan, Failure> {
        let owner = owner(&args, "")?.to_owned();
        let candidates = candidates(&args)?;
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
        Ok(Plan {
            owner,
            candidates,
            wait: WaitOptions::new()
                .with_timeout(Some(args.timeout.unwrap_or(Duration::ZERO)))
                .with_poll(monotone::DEFAULT_MIN_POLL, args.poll),
            timing,
            command: args.command,
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
        let claimed =
            wait_for_claim(&*pool, &plan.owner, &plan.candidates, None, &plan.wait).await?;
        let output = ClaimOutput::new(&id, place, claimed.claim.value, Some(claimed.added));
        return print(Output::Claim(output)).map(|()| ExitCode::SUCCESS);
    };
    let mut signals = Signals::new()?;
    let holder = tokio::select! {
        holder = ClaimHolder::claim_waiting(
            Arc::clone(&pool),
            &plan.owner,
            &plan.candidates,
            timing.ttl,
            timing.holder.clone(),
            &plan.wait,
        ) => holder?,
        // A claim that was made meanwhile is leased: it expires.
        sig = signals.recv() => return Ok(signal_code(sig)),
    };
    tracing::debug!(pool = %id, owner = %plan.owner, name = holder.name(), "holding the claim");
    let claimed: Fenced<Claim> = holder.claimed().clone();
    if plan.command.is_empty() {
        let output = ClaimOutput::new(&id, place, claimed.value, Some(holder.added()));
        if let Err(e) = print(Output::Claim(output)) {
            hold::release(holder).await;
            return Err(e);
        }
        return hold_until_done(holder, signals).await;
    }
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
    hold::run_command(holder, &plan.command, &env, timing.kill_after, signals).await
}
