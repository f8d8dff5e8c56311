//! `monotone -i ID counter get|next|rm`

use clap::{Args, Subcommand};
use monotone::{Counter, Store};
use serde::Serialize;

use super::{CommandError, Output, Place};

/// An atomic counter that only goes up
#[derive(Debug, Args)]
pub struct CounterArgs {
    #[command(subcommand)]
    pub action: CounterAction,
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

/// Run `counter` on the counter `id` of `store`.
pub async fn run(store: &dyn Store, id: &str, args: CounterArgs) -> Result<Output, CommandError> {
    let place = Place::of(store);
    let counter = store.counter(id)?;
    Ok(match args.action {
        CounterAction::Get => Output::Counter(get(&*counter, place).await?),
        CounterAction::Next => Output::Counter(next(&*counter, place).await?),
        CounterAction::Rm => Output::CounterRemoved(rm(&*counter, place).await?),
    })
}

/// monotone 0.4's counter document: `{"id", "value", "region", "table"}`.
#[derive(Debug, Serialize)]
pub struct CounterOutput {
    pub id: String,
    pub value: u64,
    pub region: String,
    pub table: String,
}

/// `counter rm` (monotone 0.4 printed nothing): the value the counter had
/// (0 if there was none) and whether anything was removed.
#[derive(Debug, Serialize)]
pub struct CounterRemovedOutput {
    pub id: String,
    pub value: u64,
    pub region: String,
    pub table: String,
    pub removed: bool,
}

fn output(counter: &dyn Counter, value: u64, place: Place) -> CounterOutput {
    CounterOutput {
        id: counter.id().to_owned(),
        value,
        region: place.region,
        table: place.table,
    }
}

pub async fn get(counter: &dyn Counter, place: Place) -> monotone::Result<CounterOutput> {
    Ok(output(counter, counter.get().await?, place))
}

pub async fn next(counter: &dyn Counter, place: Place) -> monotone::Result<CounterOutput> {
    Ok(output(counter, counter.next().await?, place))
}

pub async fn rm(counter: &dyn Counter, place: Place) -> monotone::Result<CounterRemovedOutput> {
    let removed = counter.remove().await?;
    Ok(CounterRemovedOutput {
        id: counter.id().to_owned(),
        value: removed.unwrap_or(0),
        region: place.region,
        table: place.table,
        removed: removed.is_some(),
    })
}
