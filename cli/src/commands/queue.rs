//! `monotone -i ID queue -p PID get|join|leave`, `monotone -i ID queue list|rm`

use monotone::{Fenced, Queue, Tags, Ticket};
use serde::Serialize;

use super::{CommandError, Output, Place};
use crate::args::{QueueAction, QueueArgs};

/// monotone 0.4's ticket: `{"process_id", "counter", "position", "tags"}`.
#[derive(Debug, Serialize)]
pub struct TicketView {
    pub process_id: String,
    pub counter: u64,
    pub position: usize,
    pub tags: Tags,
}

impl From<Ticket> for TicketView {
    fn from(t: Ticket) -> Self {
        TicketView {
            process_id: t.process_id,
            counter: t.counter,
            position: t.position,
            tags: t.tags,
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

/// `queue list`.
#[derive(Debug, Serialize)]
pub struct TicketsOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub fencing_token: u64,
    pub tickets: Vec<TicketView>,
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

/// The `-t KEY=VALUE` pairs as tags; a key given twice is a usage error.
fn tag_map(pairs: Vec<(String, String)>) -> Result<Tags, CommandError> {
    let mut tags = Tags::new();
    for (k, v) in pairs {
        if tags.contains_key(&k) {
            return Err(CommandError::Usage(format!(
                "tag `{k}` is given more than once"
            )));
        }
        tags.insert(k, v);
    }
    Ok(tags)
}

pub async fn run(queue: &dyn Queue, place: Place, args: QueueArgs) -> Result<Output, CommandError> {
    Ok(match args.action {
        QueueAction::Join { tags } => {
            let pid = process_id(&args.process_id, "join")?;
            Output::Ticket(join(queue, pid, tag_map(tags)?, place).await?)
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

pub async fn join(
    queue: &dyn Queue,
    process_id: &str,
    tags: Tags,
    place: Place,
) -> monotone::Result<TicketOutput> {
    let ticket = queue.join(process_id, tags).await?;
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
    let all = queue.tickets().await?;
    Ok(TicketsOutput {
        id: queue.id().to_owned(),
        region: place.region,
        table: place.table,
        fencing_token: all.fencing_token.get(),
        tickets: all.value.into_iter().map(TicketView::from).collect(),
    })
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
