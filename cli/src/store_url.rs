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

/// Create the default file's folder `dir` and its missing parents, each
/// readable by its owner only (0700, whatever the umask), as the XDG spec
/// asks of a data folder; folders that exist are left as they are.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_private_dir(parent)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            // The mode given to mkdir(2) loses the umask's bits: set it whole.
            Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
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

#[cfg(all(test, unix))]
mod private_dir_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_folders_are_the_owners_only_existing_ones_keep_their_mode() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = root.path().join("share/monotone");
        create_private_dir(&data).unwrap();
        assert_eq!(mode(&root.path().join("share")), 0o700);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(root.path()), 0o755);
        create_private_dir(&data).unwrap();
        let file = root.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(create_private_dir(&file.join("under")).is_err());
    }
}
