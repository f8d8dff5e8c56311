//! Which store a command line means: `--store`, monotone 0.4's `-r`/`-t`,
//! `MONOTONE_STORE`, or the embedded default file.

use std::path::{Path, PathBuf};

use crate::cli::Cli;

/// monotone 0.4's table when `-r` is given without `-t`.
pub const DEFAULT_TABLE: &str = "Counters";

/// Where the default embedded store lives, below the data directory.
const DEFAULT_FILE: &str = "monotone/monotone.db";

/// The store a command line selects.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// A URL given by the user (flag or environment).
    Url(String),
    /// The default SQLite file; its directory may need creating.
    DefaultSqlite(PathBuf),
}

impl StoreChoice {
    pub fn url(&self) -> String {
        match self {
            StoreChoice::Url(u) => u.clone(),
            StoreChoice::DefaultSqlite(p) => format!("sqlite:{}", p.display()),
        }
    }
}

/// Pick the store, in order: `-r`/`-t` (DynamoDB, as in monotone 0.4),
/// `--store`, `MONOTONE_STORE`, the default file. `env` looks up an
/// environment variable (a parameter so tests need not touch the real one).
pub fn choose(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<StoreChoice, String> {
    if cli.region.is_some() || cli.table.is_some() {
        let table = cli.table.as_deref().unwrap_or(DEFAULT_TABLE);
        if table.is_empty() {
            return Err("the table name given with -t/--table is empty".into());
        }
        return Ok(StoreChoice::Url(match cli.region.as_deref() {
            Some("") => return Err("the region given with -r/--region is empty".into()),
            Some(region) => format!("dynamodb://{table}?region={region}"),
            None => format!("dynamodb://{table}"),
        }));
    }
    if let Some(url) = &cli.store {
        return Ok(StoreChoice::Url(url.clone()));
    }
    if let Some(url) = env("MONOTONE_STORE").filter(|u| !u.is_empty()) {
        return Ok(StoreChoice::Url(url));
    }
    default_file(&env).map(StoreChoice::DefaultSqlite)
}

/// `$XDG_DATA_HOME/monotone/monotone.db`, else
/// `$HOME/.local/share/monotone/monotone.db`. The XDG spec says a relative
/// `XDG_DATA_HOME` is to be ignored.
fn default_file(env: &impl Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    if let Some(xdg) = env("XDG_DATA_HOME").map(PathBuf::from) {
        if xdg.is_absolute() {
            return Ok(xdg.join(DEFAULT_FILE));
        }
    }
    match env("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(&home).join(".local/share").join(DEFAULT_FILE)),
        None => Err("no store given and neither XDG_DATA_HOME nor HOME is set; \
             use --store URL or MONOTONE_STORE"
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn choice(args: &[&str], vars: &[(&str, &str)]) -> Result<StoreChoice, String> {
        let mut argv = vec!["monotone", "-i", "x"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["counter", "get"]);
        let cli = Cli::try_parse_from(argv).unwrap();
        choose(&cli, |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn region_and_table_select_dynamodb_as_in_0_4() {
        let url = |c: StoreChoice| c.url();
        assert_eq!(
            url(choice(&["-r", "us-east-1"], &[]).unwrap()),
            "dynamodb://Counters?region=us-east-1"
        );
        assert_eq!(url(choice(&["-t", "T"], &[]).unwrap()), "dynamodb://T");
        // Explicit flags beat the environment.
        assert_eq!(
            url(choice(&["-t", "T"], &[("MONOTONE_STORE", "memory:")]).unwrap()),
            "dynamodb://T"
        );
        assert!(choice(&["-t", ""], &[]).is_err());
    }

    #[test]
    fn store_flag_then_env_then_default() {
        let env = [("MONOTONE_STORE", "sqlite:/e.db"), ("HOME", "/home/u")];
        assert_eq!(
            choice(&["--store", "memory:"], &env).unwrap(),
            StoreChoice::Url("memory:".into())
        );
        assert_eq!(
            choice(&[], &env).unwrap(),
            StoreChoice::Url("sqlite:/e.db".into())
        );
        assert_eq!(
            choice(&[], &[("HOME", "/home/u")]).unwrap(),
            StoreChoice::DefaultSqlite("/home/u/.local/share/monotone/monotone.db".into())
        );
        assert_eq!(
            choice(&[], &[("HOME", "/home/u"), ("XDG_DATA_HOME", "/data")]).unwrap(),
            StoreChoice::DefaultSqlite("/data/monotone/monotone.db".into())
        );
        assert_eq!(
            choice(&[], &[("HOME", "/home/u"), ("XDG_DATA_HOME", "rel")]).unwrap(),
            StoreChoice::DefaultSqlite("/home/u/.local/share/monotone/monotone.db".into())
        );
        assert!(choice(&[], &[("MONOTONE_STORE", "")]).is_err());
    }
}
