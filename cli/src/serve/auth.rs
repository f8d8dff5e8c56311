//! The bearer token: read from a file, checked on every protected request.
//!
//! The file must not be readable or writable by other users (refused, exit
//! code 7; a warning on stderr when its group may read it), and the token,
//! its content without surrounding whitespace, must be at least
//! [`MIN_TOKEN_BYTES`] of printable ASCII without spaces (what an
//! `Authorization` header can carry as it is).

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::reply::ApiError;

/// The shortest token accepted.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The token requests must present.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// A token file that is fine, but could be better kept.
#[derive(Debug, PartialEq, Eq)]
pub struct Warning(pub String);

impl Token {
    /// The token in the file at `path` as the module docs say, and a
    /// warning if its group may read it; else why not.
    pub fn read(path: &Path) -> Result<(Token, Option<Warning>), String> {
        use std::io::Read;
        let shown = path.display();
        let cannot = |e: std::io::Error| format!("cannot read the token file {shown}: {e}");
        // The mode checked is that of the file read (not of whatever the
        // path names a moment later).
        let mut file = std::fs::File::open(path).map_err(cannot)?;
        let warning = Self::check_mode(path, &file.metadata().map_err(cannot)?)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(cannot)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("the token file {shown} is empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the token in {shown} must be printable ASCII without spaces (it holds \
                 whitespace, control or non-ASCII characters)"
            ));
        }
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the token in {shown} is {} bytes long; it must have at least {MIN_TOKEN_BYTES} \
                 (e.g. `openssl rand -hex 32`)",
                token.len()
            ));
        }
        Ok((Token(token.as_bytes().to_vec()), warning))
    }

    /// Refuse a file that other users may read or write; warn when its
    /// group may read it.
    #[cfg(unix)]
    fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<Option<Warning>, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let mode = meta.permissions().mode();
        if mode & 0o006 != 0 {
            return Err(format!(
                "the token file {shown} can be read or written by other users (mode {:o}); \
                 chmod 600 it",
                mode & 0o777
            ));
        }
        Ok((mode & 0o040 != 0).then(|| {
            Warning(format!(
                "the token file {shown} can be read by its group (mode {:o})",
                mode & 0o777
            ))
        }))
    }

    #[cfg(not(unix))]
    fn check_mode(_: &Path, _: &std::fs::Metadata) -> Result<Option<Warning>, String> {
        Ok(None)
    }

    /// Whether `presented` is this token, in time that does not depend on
    /// where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        presented.len() == self.0.len()
            && presented
                .iter()
                .zip(&self.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Let the request through if there is no token to check, or if it carries
/// `Authorization: Bearer TOKEN`; else 401.
pub async fn check(
    State(token): State<Arc<Option<Token>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_ref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().as_bytes());
    match presented {
        Some(t) if token.matches(t) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong bearer token",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs `Authorization: Bearer TOKEN`",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(path: &Path, content: &str, mode: u32) {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn tokens_are_read_trimmed_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write(&path, "s3cret-0123456789\n", 0o600);
        let (t, warning) = Token::read(&path).unwrap();
        assert_eq!(warning, None);
        assert!(t.matches(b"s3cret-0123456789"));
        assert!(!t.matches(b"s3cret-012345678"));
        assert!(!t.matches(b"s3cret-0123456789!"));
        assert!(!t.matches(b""));
        for (content, needle) in [
            (" \n", "empty"),
            ("two words 0123456789", "printable ASCII"),
            ("s3cret-0123456789\u{e9}", "printable ASCII"),
            ("tab\there-0123456789", "printable ASCII"),
            ("s3cret", "at least 16"),
            ("x", "at least 16"),
        ] {
            write(&path, content, 0o600);
            let e = Token::read(&path).unwrap_err();
            assert!(e.contains(needle), "{content:?}: {e}");
        }
        assert!(Token::read(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_file_others_may_read_is_refused_one_the_group_may_read_warned_of() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        for mode in [0o644, 0o604, 0o602, 0o666] {
            write(&path, "s3cret-0123456789", mode);
            let e = Token::read(&path).unwrap_err();
            assert!(e.contains("other users") && e.contains("chmod 600"), "{e}");
        }
        write(&path, "s3cret-0123456789", 0o640);
        let (_, warning) = Token::read(&path).unwrap();
        assert!(warning.unwrap().0.contains("its group"));
        write(&path, "s3cret-0123456789", 0o400);
        assert_eq!(Token::read(&path).unwrap().1, None);
    }
}
