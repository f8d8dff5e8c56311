//! SQLite's errors, mapped to [`ErrorKind`]s in this one place.

use rusqlite::ErrorCode;

use crate::error::{Error, ErrorKind};

/// Map a rusqlite error met while doing `what` on the database at `path`.
pub fn map_err(path: &str, what: &str, e: rusqlite::Error) -> Error {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Conflict,
            ErrorCode::NotADatabase => {
                return not_ours(path, "it is not a SQLite database").with_source(e)
            }
            ErrorCode::DatabaseCorrupt => ErrorKind::Corrupt,
            ErrorCode::ReadOnly => ErrorKind::Config,
            ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied => {
                ErrorKind::PermissionDenied
            }
            ErrorCode::CannotOpen => ErrorKind::Config,
            ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::OutOfMemory => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Unavailable,
        },
        // A value of the wrong type or range in a column: not what we wrote.
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => ErrorKind::Corrupt,
        _ => ErrorKind::Unavailable,
    };
    let detail = match kind {
        ErrorKind::Conflict => {
            "it stayed locked by other writers for longer than the busy timeout".to_owned()
        }
        _ => e.to_string(),
    };
    Error::new(kind, format!("sqlite database {path}: {what}: {detail}")).with_source(e)
}

/// The file at `path` is not a monotone database; we leave it alone.
pub fn not_ours(path: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{path} is not a monotone database ({why}); refusing to use or change it"),
    )
}
