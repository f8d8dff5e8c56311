//! `monotone -i ID tally add N|get [--stale]|rm`

use clap::{Args, Subcommand};
use monotone::{Freshness, Store, Tally, TallyReading};
use serde::Serialize;

use super::{CommandError, Output, Place};

/// A signed sum that goes up and down (quotas, pools, gauges)
#[derive(Debug, Args)]
pub struct TallyArgs {
    #[command(subcommand)]
    pub action: TallyAction,
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

/// Run `tally` on the tally `id` of `store`.
pub async fn run(store: &dyn Store, id: &str, args: TallyArgs) -> Result<Output, CommandError> {
    let place = Place::of(store);
    let tally = store.tally(id)?;
    Ok(match args.action {
        TallyAction::Add { n, by } => {
            let n = n.or(by).ok_or_else(|| {
                CommandError::Usage("tally add needs an amount: N or --by N".into())
            })?;
            Output::Tally(add(&*tally, n, place).await?)
        }
        TallyAction::Get { stale } => {
            let freshness = if stale {
                Freshness::Stale
            } else {
                Freshness::Fresh
            };
            Output::Tally(get(&*tally, freshness, place).await?)
        }
        TallyAction::Rm => Output::TallyRemoved(rm(&*tally, place).await?),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn tally_amount(args: &[&str]) -> Result<(Option<i64>, Option<i64>), clap::Error> {
        let mut argv = vec!["monotone", "-i", "t", "tally", "add"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Tally(TallyArgs {
                action: TallyAction::Add { n, by },
            }) => Ok((n, by)),
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
}
