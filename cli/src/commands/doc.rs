//! `monotone -i ID doc get|set|patch|watch|rm`

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use monotone::{Change, Changes, Diff, Document, DocumentExt, Error, Snapshot, Store};
use serde::Serialize;
use serde_json::Value;

use super::hold::{stdout_closed, Signals};
use super::values::{parse_poll, parse_version};
use super::{CommandError, Output, Place};
use crate::exit::Failure;

/// A shared JSON document whose version grows with every write
#[derive(Debug, Args)]
pub struct DocArgs {
    #[command(subcommand)]
    pub action: DocAction,
}

#[derive(Debug, Subcommand)]
pub enum DocAction {
    /// Print the document and its version (one consistent read)
    Get,
    /// Replace the document with the JSON value in FILE (or standard input)
    Set {
        /// Write only if the document is at version N (0: does not exist yet)
        #[arg(long, value_name = "N", value_parser = parse_version, allow_hyphen_values = true)]
        if_version: Option<u64>,
        /// A file holding one JSON value; `-` or nothing for standard input
        #[arg(value_name = "FILE")]
        file: Option<String>,
    },
    /// Apply an RFC 7386 JSON merge patch from FILE (or standard input)
    Patch {
        /// Patch only if the document is at version N
        #[arg(long, value_name = "N", value_parser = parse_version, allow_hyphen_values = true)]
        if_version: Option<u64>,
        /// A file holding the merge patch; `-` or nothing for standard input
        #[arg(value_name = "FILE")]
        file: Option<String>,
    },
    /// Print one JSON line per change until interrupted
    Watch {
        /// Report the changes after version N (0: the whole document first);
        /// by default, those from now on
        #[arg(long, value_name = "N", value_parser = parse_version, allow_hyphen_values = true)]
        from_version: Option<u64>,
        /// How often to check the store for a new version where it cannot
        /// push (DynamoDB); where it tells of writes (the embedded store),
        /// how often to check anyway, in case a notification was lost
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_poll, allow_hyphen_values = true)]
        poll: Duration,
    },
    /// Remove the document (its version stays and goes on growing)
    Rm {
        /// Remove only if the document is at version N
        #[arg(long, value_name = "N", value_parser = parse_version, allow_hyphen_values = true)]
        if_version: Option<u64>,
    },
}

/// `doc get`, `doc set` and `doc patch`: the document as read or written.
/// `value` is `null` both for a document holding `null` and for one that
/// does not exist; `exists` tells them apart.
#[derive(Debug, Serialize)]
pub struct DocumentOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub version: u64,
    pub exists: bool,
    pub value: Option<Value>,
}

/// `doc rm`: the version the removal produced (the current version if
/// there was nothing to remove) and whether anything was removed.
#[derive(Debug, Serialize)]
pub struct DocumentRemovedOutput {
    pub id: String,
    pub region: String,
    pub table: String,
    pub version: u64,
    pub removed: bool,
}

/// One line of `doc watch`: the version a change produced, the version it
/// is a change from, whether several writes were folded into it, the
/// document at `version`, and what changed at its top level (`null` when
/// the watch started from an older version, whose value the store no
/// longer has).
#[derive(Debug, Serialize)]
pub struct ChangeLine {
    pub id: String,
    pub region: String,
    pub table: String,
    pub version: u64,
    pub since: u64,
    pub folded: bool,
    pub exists: bool,
    pub value: Option<Value>,
    pub diff: Option<Diff>,
}

impl ChangeLine {
    fn new(id: &str, place: &Place, change: Change) -> Self {
        ChangeLine {
            id: id.to_owned(),
            region: place.region.clone(),
            table: place.table.clone(),
            version: change.version,
            since: change.since,
            folded: change.folded(),
            exists: change.value.is_some(),
            value: change.value,
            diff: change.diff,
        }
    }
}

fn output(doc: &dyn Document, place: Place, s: Snapshot) -> Output {
    Output::Document(DocumentOutput {
        id: doc.id().to_owned(),
        region: place.region,
        table: place.table,
        version: s.version,
        exists: s.exists(),
        value: s.value,
    })
}

/// The JSON value in `file`, `-` or `None` being standard input.
fn read_json(file: Option<&str>, what: &str) -> Result<Value, CommandError> {
    let (name, text) = match file {
        None | Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                CommandError::Usage(format!("cannot read the {what} from standard input: {e}"))
            })?;
            ("standard input".to_owned(), text)
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CommandError::Usage(format!("cannot read the {what} from {path}: {e}"))
            })?;
            (path.to_owned(), text)
        }
    };
    serde_json::from_str(&text).map_err(|e| {
        CommandError::Usage(format!("the {what} in {name} is not one JSON value: {e}"))
    })
}

/// `value` with the RFC 7386 merge `patch` applied; an absent document is
/// patched as `null` (so a patch that is an object becomes the document).
fn merged(value: Option<&Value>, patch: &Value) -> Value {
    let mut out = value.cloned().unwrap_or(Value::Null);
    json_patch::merge(&mut out, patch);
    out
}

/// Run every `doc` action but `watch`, which streams (see [`watch`]), on
/// the document `id` of `store`.
pub async fn run(store: &dyn Store, id: &str, args: DocArgs) -> Result<Output, CommandError> {
    let place = Place::of(store);
    let doc = &*store.document(id)?;
    Ok(match args.action {
        DocAction::Get => output(doc, place, doc.read().await?),
        DocAction::Set { if_version, file } => {
            let value = read_json(file.as_deref(), "document")?;
            let written = match if_version {
                Some(n) => Snapshot::new(Some(value.clone()), doc.write(n, &value).await?),
                None => doc.update(|_| Ok(Some(value.clone()))).await?,
            };
            output(doc, place, written)
        }
        DocAction::Patch { if_version, file } => {
            let patch = read_json(file.as_deref(), "merge patch")?;
            let written = match if_version {
                Some(n) => {
                    let seen = doc.read().await?;
                    if seen.version != n {
                        return Err(Error::version_mismatch(doc.id(), n, seen.version).into());
                    }
                    let value = merged(seen.value.as_ref(), &patch);
                    Snapshot::new(Some(value.clone()), doc.write(n, &value).await?)
                }
                None => doc.update(|v| Ok(Some(merged(v, &patch)))).await?,
            };
            output(doc, place, written)
        }
        DocAction::Rm { if_version } => {
            let removed = match if_version {
                Some(n) => doc.remove_if(n).await?,
                None => doc.remove().await?,
            };
            let version = match removed {
                Some(v) => v,
                None => doc.read().await?.version,
            };
            Output::DocumentRemoved(DocumentRemovedOutput {
                id: doc.id().to_owned(),
                region: place.region,
                table: place.table,
                version,
                removed: removed.is_some(),
            })
        }
        DocAction::Watch { .. } => {
            return Err(CommandError::Usage(
                "doc watch streams; run it through `watch`".into(),
            ))
        }
    })
}

/// `doc watch`: one line per change on stdout until a signal, a closed
/// stdout (both exit 0; a closed stdout is noticed when it is closed, not
/// at the next write: see [`stdout_closed`]) or a store error.
pub async fn watch(
    store: &dyn Store,
    id: &str,
    from_version: Option<u64>,
    poll: Duration,
) -> Result<(), Failure> {
    let doc: Arc<dyn Document> = Arc::from(store.document(id)?);
    // Listen before the first line, so that a signal sent on seeing it is
    // caught rather than killing the process.
    let mut signals = Signals::new()?;
    let mut emit = |line: &ChangeLine| -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()
    };
    let watching = follow(doc, Place::of(store), from_version, poll, &mut emit);
    tokio::select! {
        done = watching => match done {
            Err(CommandError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(Failure::from),
        },
        _ = signals.recv() => Ok(()),
        // Noticed at once, not at the next change's write.
        _ = stdout_closed() => Ok(()),
    }
}

/// Give `emit` one line per change, from `from_version` (by default the
/// current version), told of changes where the store pushes and checking
/// every `poll` where it cannot. Returns when `emit` fails (a
/// closed stdout) or the store does.
async fn follow(
    doc: Arc<dyn Document>,
    place: Place,
    from_version: Option<u64>,
    poll: Duration,
    emit: &mut dyn FnMut(&ChangeLine) -> std::io::Result<()>,
) -> Result<(), CommandError> {
    let from = match from_version {
        Some(v) => v,
        None => doc.read().await?.version,
    };
    let id = doc.id().to_owned();
    let mut changes = Changes::new(doc, from).with_poll_interval(poll);
    loop {
        let change = changes.next().await?;
        emit(&ChangeLine::new(&id, &place, change)).map_err(CommandError::Output)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

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
        let Command::Doc(DocArgs {
            action: DocAction::Set { if_version, file },
        }) = cli.command
        else {
            panic!("not doc set")
        };
        assert_eq!((if_version, file.as_deref()), (Some(3), Some("new.json")));
        let cli = Cli::try_parse_from(["monotone", "-i", "d", "doc", "watch"]).unwrap();
        let Command::Doc(DocArgs {
            action: DocAction::Watch { from_version, poll },
        }) = cli.command
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
}
