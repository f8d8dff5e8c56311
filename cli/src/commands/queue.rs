//! `monotone -i ID queue -p PID get|join|renew|wait|leave`,
//! `monotone -i ID queue list|rm`

use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use monotone::{
    wait_for_position, wait_for_tickets, Error, ErrorKind, Fenced, Lease, Queue, Store, Tags,
    Ticket, WaitOptions,
};
use serde::Serialize;

use super::values::{check_ttl, parse_duration, parse_poll, parse_tag, tag_map};
use super::{CommandError, Output, Place};

/// A queue of process ids, ordered by when they joined
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Id of the process: for get, join, renew, wait and leave (list and
    /// rm act on the whole queue and refuse it)
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
    /// Add the process to the back of the queue (again, with the same tags
    /// and --ttl: returns its ticket; asking for another: exit 13)
    Join {
        /// Tag for the ticket, KEY=VALUE; repeat for more
        #[arg(short, long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Give the ticket a lease: it expires unless renewed within this
        /// long (e.g. 30s, 2m)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
        ttl: Option<Duration>,
    },
    /// Renew the lease of the process's ticket once
    Renew,
    /// Wait until the process is among the first N tickets, removing expired
    /// tickets ahead of it, and print its ticket; with --members N, wait
    /// until the queue holds N tickets and print them as queue list does
    Wait {
        /// Wait until the ticket's position is below N (1: the head)
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000), allow_hyphen_values = true)]
        position: u64,
        /// Wait until the queue holds at least N tickets (the process's among
        /// them) and print every ticket, as queue list does
        #[arg(long, value_name = "N", conflicts_with = "position",
              value_parser = clap::value_parser!(u64).range(1..=1_000_000), allow_hyphen_values = true)]
        members: Option<u64>,
        /// Give up after this long (exit code 9); 0 looks once
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
        timeout: Option<Duration>,
        /// How often to check the queue where the store cannot push
        /// (DynamoDB); where it tells of changes (the embedded store), how
        /// often to check anyway, in case a notification was lost
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll, allow_hyphen_values = true)]
        poll: Duration,
    },
    /// Remove the process from the queue
    Leave,
    /// Remove the queue from the store
    Rm,
}

/// monotone 0.4's ticket: `{"process_id", "counter", "position", "tags"}`,
/// and its `lease` (`null` for a permanent ticket).
#[derive(Debug, Serialize)]
pub struct TicketView {
    pub process_id: String,
    pub counter: u64,
    pub position: usize,
    pub tags: Tags,
    pub lease: Option<LeaseView>,
}

/// A ticket's lease: `{"ttl_ms", "renewals", "renewed_at"}`. `renewed_at` is
/// the holder's wall-clock time of its last renewal (or of the join), in
/// RFC 3339 UTC; shown only, never used to expire anything.
#[derive(Debug, Serialize)]
pub struct LeaseView {
    pub ttl_ms: u64,
    pub renewals: u64,
    pub renewed_at: Option<String>,
}

impl From<Lease> for LeaseView {
    fn from(l: Lease) -> Self {
        LeaseView {
            ttl_ms: u64::try_from(l.duration.as_millis()).unwrap_or(u64::MAX),
            renewals: l.renewals,
            renewed_at: l.renewed_at.map(rfc3339),
        }
    }
}

/// A wall-clock time in RFC 3339, to the millisecond, in UTC.
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl From<Ticket> for TicketView {
    fn from(t: Ticket) -> Self {
        TicketView {
            process_id: t.process_id,
            counter: t.counter,
            position: t.position,
            tags: t.tags,
            lease: t.lease.map(LeaseView::from),
        }
    }
}

/// `queue join` and `queue get`.
#[derive(Debug, Serialize)]
pub struct TicketOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
    pub ticket: TicketView,
}

/// `queue list`: monotone 0.4's shape, and `"exists": false` (only) when
/// the id holds no queue (never written, or removed; its token is then 0),
/// so that it does not read as a queue whose members all left.
#[derive(Debug, Serialize)]
pub struct TicketsOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
    #[serde(skip_serializing_if = "is_true")]
    pub exists: bool,
    pub tickets: Vec<TicketView>,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `queue leave`.
#[derive(Debug, Serialize)]
pub struct TokenOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
}

/// `queue rm` (monotone 0.4 printed nothing): the token the queue had (0 if
/// there was none) and whether anything was removed.
#[derive(Debug, Serialize)]
pub struct QueueRemovedOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
    pub removed: bool,
}

fn process_id<'a>(args: &'a Option<String>, action: &str) -> Result<&'a str, CommandError> {
    args.as_deref().ok_or_else(|| {
        CommandError::Usage(format!(
            "queue {action} needs a process id: monotone -i ID queue -p PROCESS_ID {action}"
        ))
    })
}

/// `-p` on a command that acts on the whole queue (or pool) is refused
/// rather than ignored: `queue -p a rm` must not read as "remove a".
pub fn no_process_id(
    given: Option<&str>,
    command: &str,
    whole: &str,
    takes_it: &str,
) -> Result<(), String> {
    match given {
        None => Ok(()),
        Some(p) => Err(format!(
            "{command} acts on the whole {whole} and takes no -p (given `{p}`); \
             -p is for {takes_it}; nothing was changed"
        )),
    }
}

/// Run `queue` on the queue `id` of `store`.
pub async fn run(store: &dyn Store, id: &str, args: QueueArgs) -> Result<Output, CommandError> {
    if let QueueAction::List | QueueAction::Rm = args.action {
        let command = match args.action {
            QueueAction::List => "queue list",
            _ => "queue rm",
        };
        no_process_id(
            args.process_id.as_deref(),
            command,
            "queue",
            "get, join, renew, wait and leave",
        )
        .map_err(CommandError::Usage)?;
    }
    let place = Place::of(store);
    let queue = &*store.queue(id)?;
    Ok(match args.action {
        QueueAction::Join { tags, ttl } => {
            let pid = process_id(&args.process_id, "join")?;
            if let Some(ttl) = ttl {
                check_ttl(ttl).map_err(CommandError::Usage)?;
            }
            Output::Ticket(join(queue, pid, tag_map(tags)?, ttl, place).await?)
        }
        QueueAction::Renew => {
            Output::Ticket(renew(queue, process_id(&args.process_id, "renew")?, place).await?)
        }
        QueueAction::Wait {
            position,
            members,
            timeout,
            poll,
        } => {
            let pid = process_id(&args.process_id, "wait")?;
            let options = WaitOptions::new()
                .with_timeout(timeout)
                .with_poll(monotone::DEFAULT_MIN_POLL, poll);
            if let Some(members) = members {
                let members = usize::try_from(members).unwrap_or(usize::MAX);
                let all = wait_for_tickets(queue, Some(pid), members, &options).await?;
                return Ok(Output::Tickets(tickets_output(queue, all, place)));
            }
            let within = usize::try_from(position).unwrap_or(usize::MAX);
            let ticket = wait_for_position(queue, pid, within, &options).await?;
            Output::Ticket(ticket_output(queue, ticket, place))
        }
        QueueAction::Get => {
            Output::Ticket(get(queue, process_id(&args.process_id, "get")?, place).await?)
        }
        QueueAction::Leave => {
            Output::Token(leave(queue, process_id(&args.process_id, "leave")?, place).await?)
        }
        QueueAction::List => Output::Tickets(list(queue, place).await?),
        QueueAction::Rm => Output::QueueRemoved(rm(queue, place).await?),
    })
}

fn ticket_output(queue: &dyn Queue, ticket: Fenced<Ticket>, place: Place) -> TicketOutput {
    TicketOutput {
        id: queue.id().to_owned(),
        region: place.region,
        table: place.table,
        fencing_token: ticket.fencing_token.get(),
        ticket: ticket.value.into(),
    }
}

/// Join, with a lease of `ttl` or (`None`) a permanent ticket.
pub async fn join(
    queue: &dyn Queue,
    process_id: &str,
    tags: Tags,
    ttl: Option<Duration>,
    place: Place,
) -> monotone::Result<TicketOutput> {
    let ticket = queue.join_with(process_id, tags, ttl).await?.ticket;
    Ok(ticket_output(queue, ticket, place))
}

/// Renew the lease of the process's ticket once: a read to find the
/// ticket, then the renewal.
pub async fn renew(
    queue: &dyn Queue,
    process_id: &str,
    place: Place,
) -> monotone::Result<TicketOutput> {
    let held = queue.ticket(process_id).await?;
    if held.value.lease.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "process `{process_id}` holds a permanent ticket in queue `{}`: \
                 only leased tickets (join --ttl) are renewed",
                queue.id()
            ),
        ));
    }
    let ticket = queue.renew(process_id, held.value.counter).await?;
    Ok(ticket_output(queue, ticket, place))
}

pub async fn get(
    queue: &dyn Queue,
    process_id: &str,
    place: Place,
) -> monotone::Result<TicketOutput> {
    let ticket = queue.ticket(process_id).await?;
    Ok(ticket_output(queue, ticket, place))
}

pub async fn leave(
    queue: &dyn Queue,
    process_id: &str,
    place: Place,
) -> monotone::Result<TokenOutput> {
    let token = queue.leave(process_id).await?;
    Ok(TokenOutput {
        id: queue.id().to_owned(),
        region: place.region,
        table: place.table,
        fencing_token: token.get(),
    })
}

pub async fn list(queue: &dyn Queue, place: Place) -> monotone::Result<TicketsOutput> {
    Ok(tickets_output(queue, queue.tickets().await?, place))
}

/// `queue list`'s JSON of the tickets `all`.
fn tickets_output(queue: &dyn Queue, all: Fenced<Vec<Ticket>>, place: Place) -> TicketsOutput {
    TicketsOutput {
        id: queue.id().to_owned(),
        region: place.region,
        table: place.table,
        fencing_token: all.fencing_token.get(),
        // Every write adds one to a queue's token, which is 0 only while
        // there is no queue.
        exists: all.fencing_token.get() > 0,
        tickets: all.value.into_iter().map(TicketView::from).collect(),
    }
}

pub async fn rm(queue: &dyn Queue, place: Place) -> monotone::Result<QueueRemovedOutput> {
    let removed = queue.remove().await?;
    Ok(QueueRemovedOutput {
        id: queue.id().to_owned(),
        region: place.region,
        table: place.table,
        fencing_token: removed.map_or(0, |t| t.get()),
        removed: removed.is_some(),
    })
}
