//! `monotone -i ID counter get|next|rm`

use monotone::Counter;
use serde::Serialize;

use super::Place;

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
