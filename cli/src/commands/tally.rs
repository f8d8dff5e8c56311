//! `monotone -i ID tally add N|get [--stale]|rm`

use monotone::{Freshness, Tally, TallyReading};
use serde::Serialize;

use super::Place;

/// `tally add` and `tally get`: the value, the version (the number of adds
/// that made it), and whether it came from a consistent read (`get --stale`
/// may lag behind the latest adds; an add's result never does).
#[derive(Debug, Serialize)]
pub struct TallyOutput {
    pub id: String,
    pub value: i64,
    pub version: u64,
    pub consistent: bool,
    pub region: String,
    pub table: String,
}

/// `tally rm`: the reading the tally had (0 and 0 if there was none) and
/// whether anything was removed.
#[derive(Debug, Serialize)]
pub struct TallyRemovedOutput {
    pub id: String,
    pub value: i64,
    pub version: u64,
    pub region: String,
    pub table: String,
    pub removed: bool,
}

fn output(tally: &dyn Tally, r: TallyReading, consistent: bool, place: Place) -> TallyOutput {
    TallyOutput {
        id: tally.id().to_owned(),
        value: r.value,
        version: r.version,
        consistent,
        region: place.region,
        table: place.table,
    }
}

pub async fn add(tally: &dyn Tally, n: i64, place: Place) -> monotone::Result<TallyOutput> {
    Ok(output(tally, tally.add(n).await?, true, place))
}

pub async fn get(
    tally: &dyn Tally,
    freshness: Freshness,
    place: Place,
) -> monotone::Result<TallyOutput> {
    let reading = tally.get(freshness).await?;
    Ok(output(tally, reading, freshness == Freshness::Fresh, place))
}

pub async fn rm(tally: &dyn Tally, place: Place) -> monotone::Result<TallyRemovedOutput> {
    let removed = tally.remove().await?;
    let last = removed.unwrap_or_default();
    Ok(TallyRemovedOutput {
        id: tally.id().to_owned(),
        value: last.value,
        version: last.version,
        region: place.region,
        table: place.table,
        removed: removed.is_some(),
    })
}
