//! The commands, one file each holding its clap arguments and what runs
//! them: [`counter`], [`queue`], [`lock`], [`doc`], [`tally`], [`claim`],
//! [`completions`] (with `man`) (and `serve`, a folder of its own:
//! [`crate::serve`]). The list of them is
//! [`crate::cli::Command`]. [`values`] reads the argument values several
//! commands share; [`hold`] holds a lease for `lock` and `claim --ttl`.
//!
//! Each command makes its result in monotone 0.4's JSON shapes; only
//! [`print()`] writes it, and nothing here exits.

pub mod claim;
pub mod completions;
pub mod counter;
pub mod doc;
pub mod hold;
pub mod lock;
pub mod queue;
pub mod tally;
pub mod values;

use std::io::Write;

use monotone::{Location, Store};
use serde::Serialize;

use crate::exit::Failure;

/// One command's result; printed as one JSON document.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    Counter(counter::CounterOutput),
    CounterRemoved(counter::CounterRemovedOutput),
    Ticket(queue::TicketOutput),
    Tickets(queue::TicketsOutput),
    Token(queue::TokenOutput),
    QueueRemoved(queue::QueueRemovedOutput),
    Document(doc::DocumentOutput),
    DocumentRemoved(doc::DocumentRemovedOutput),
    Tally(tally::TallyOutput),
    TallyRemoved(tally::TallyRemovedOutput),
    Claim(claim::ClaimOutput),
    Claims(claim::ClaimsOutput),
    Roster(claim::RosterOutput),
    Released(claim::ReleasedOutput),
}

/// Why a command could not run.
#[derive(Debug)]
pub enum CommandError {
    /// The command line lacks something the command needs.
    Usage(String),
    /// The store refused or failed.
    Store(monotone::Error),
    /// A streaming command could not write its output.
    Output(std::io::Error),
}

impl From<monotone::Error> for CommandError {
    fn from(e: monotone::Error) -> Self {
        CommandError::Store(e)
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Usage(m) => Failure::Usage(m),
            CommandError::Store(e) => Failure::Store(e),
            CommandError::Output(e) => Failure::Other(format!("cannot write the result: {e}")),
        }
    }
}

/// monotone 0.4's `region` and `table` fields. For DynamoDB they are the
/// table's; for the embedded store the region is `local` and the table is
/// the database file.
#[derive(Debug, Clone, Serialize)]
pub struct Place {
    pub region: String,
    pub table: String,
}

impl Place {
    pub fn of(store: &dyn Store) -> Place {
        match store.location() {
            Location::DynamoDb { region, table, .. } => Place { region, table },
            // The cluster's endpoints and the prefix play the parts of the
            // region and the table.
            Location::Etcd {
                endpoints, prefix, ..
            } => Place {
                region: endpoints.join(","),
                table: prefix,
            },
            Location::Sqlite { path } => Place {
                region: "local".into(),
                table: path.display().to_string(),
            },
            _ => Place {
                region: "local".into(),
                table: "memory".into(),
            },
        }
    }
}

/// Print `output` as one pretty-printed JSON document on stdout. A closed
/// stdout is not a failure: a consumer like `head` may stop reading
/// whenever it likes.
pub fn print(output: &impl Serialize) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(output)
        .map_err(|e| Failure::Other(format!("cannot encode the result: {e}")))?;
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Other(format!("cannot write the result: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use monotone::MemoryStore;
    use serde_json::json;

    /// The result of a command that makes one document.
    async fn run(store: &MemoryStore, id: &str, command: Command) -> Result<Output, CommandError> {
        match command {
            Command::Counter(args) => counter::run(store, id, args).await,
            Command::Queue(args) => queue::run(store, id, args).await,
            Command::Doc(args) => doc::run(store, id, args).await,
            Command::Tally(args) => tally::run(store, id, args).await,
            other => panic!("not a command with one result: {other:?}"),
        }
    }

    async fn run_line(store: &MemoryStore, line: &str) -> serde_json::Value {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        let out = run(store, &cli.id.unwrap(), cli.command).await.unwrap();
        serde_json::to_value(out).unwrap()
    }

    #[tokio::test]
    async fn shapes_of_monotone_0_4() {
        let s = MemoryStore::new();
        let v = run_line(&s, "monotone -i c counter next").await;
        assert_eq!(
            v,
            serde_json::json!({"id": "c", "value": 1, "region": "local", "table": "memory"})
        );
        let v = run_line(&s, "monotone -i q queue -p foo join -t k=v").await;
        assert_eq!(
            v,
            serde_json::json!({
                "id": "q", "region": "local", "table": "memory", "fencing_token": 1,
                "ticket": {"process_id": "foo", "counter": 1, "position": 0, "tags": {"k": "v"}, "lease": null}
            })
        );
        let v = run_line(&s, "monotone -i q queue -p foo leave").await;
        assert_eq!(
            v,
            serde_json::json!({"id": "q", "region": "local", "table": "memory", "fencing_token": 2})
        );
        let v = run_line(&s, "monotone -i q queue list").await;
        assert_eq!(
            v,
            serde_json::json!({"id": "q", "region": "local", "table": "memory", "fencing_token": 2, "tickets": []})
        );
    }

    #[tokio::test]
    async fn leased_tickets_show_their_lease() {
        let s = MemoryStore::new();
        let v = run_line(&s, "monotone -i q queue -p a join --ttl 1m30s").await;
        let lease = &v["ticket"]["lease"];
        assert_eq!(lease["ttl_ms"], 90_000);
        assert_eq!(lease["renewals"], 0);
        let at = lease["renewed_at"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(at).is_ok(), "{at}");
        let v = run_line(&s, "monotone -i q queue -p a renew").await;
        assert_eq!(v["ticket"]["lease"]["renewals"], 1);
        assert_eq!(
            v["fencing_token"], 1,
            "a renewal is not a write of the queue"
        );
        let v = run_line(&s, "monotone -i q queue -p b join").await;
        assert_eq!(v["ticket"]["lease"], serde_json::Value::Null);
        let v = run_line(&s, "monotone -i q queue -p a wait").await;
        assert_eq!(
            (v["ticket"]["position"].clone(), v["fencing_token"].clone()),
            (0.into(), 2.into())
        );
        let v = run_line(
            &s,
            "monotone -i q queue -p b wait --position 2 --timeout 0s",
        )
        .await;
        assert_eq!(v["ticket"]["position"], 1);
        let v = run_line(&s, "monotone -i q queue list").await;
        assert_eq!(v["tickets"][0]["lease"]["renewals"], 1);
        assert_eq!(v["tickets"][1]["lease"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn document_shapes() {
        let s = MemoryStore::new();
        let v = run_line(&s, "monotone -i d doc get").await;
        assert_eq!(
            v,
            serde_json::json!({"id": "d", "region": "local", "table": "memory", "version": 0, "exists": false, "value": null})
        );
        let v = run_line(&s, "monotone -i d doc rm").await;
        assert_eq!(
            v,
            serde_json::json!({"id": "d", "region": "local", "table": "memory", "version": 0, "removed": false})
        );
    }

    #[tokio::test]
    async fn tally_shapes() {
        let s = MemoryStore::new();
        let v = run_line(&s, "monotone -i t tally add --by -3").await;
        assert_eq!(
            v,
            serde_json::json!({"id": "t", "value": -3, "version": 1, "consistent": true,
                               "region": "local", "table": "memory"})
        );
        let v = run_line(&s, "monotone -i t tally get --stale").await;
        assert_eq!((&v["value"], &v["consistent"]), (&json!(-3), &json!(false)));
        let v = run_line(&s, "monotone -i t tally rm").await;
        assert_eq!(
            v,
            serde_json::json!({"id": "t", "value": -3, "version": 1,
                               "region": "local", "table": "memory", "removed": true})
        );
    }

    #[tokio::test]
    async fn process_id_is_required_where_it_is_used() {
        let s = MemoryStore::new();
        for action in ["get", "join", "renew", "wait", "leave"] {
            let cli = Cli::try_parse_from(["monotone", "-i", "q", "queue", action]).unwrap();
            match run(&s, cli.id.as_deref().unwrap(), cli.command).await {
                Err(CommandError::Usage(m)) => assert!(m.contains("-p"), "{m}"),
                other => panic!("{action}: expected a usage error, got {other:?}"),
            }
        }
    }
}
