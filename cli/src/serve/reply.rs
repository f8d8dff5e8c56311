//! What a request gets back when it fails: a JSON document
//! `{"error": "<one line>", "kind": "<kind>"}` with the status of the
//! failure's class, never a panic and never an HTML page.
//!
//! | status | kind |
//! |---|---|
//! | 400 | invalid input: a bad id, process id, tag, amount or body; two `Authorization` headers |
//! | 401 | unauthorized: no or wrong bearer token |
//! | 403 | forbidden: without a token, a browser's request or a foreign `Host` (see [`super::browser`]) |
//! | 404 | not found: the process is not in the queue, the queue does not exist, no such route |
//! | 405 | method not allowed |
//! | 408 | request timeout: the body did not arrive within `--body-timeout` |
//! | 409 | wrong type (a counter route on a tally, ...), conflict (contention past the retry budget), version mismatch, a join asking for another ticket than the process's (other tags) |
//! | 413 | payload too large: a body over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) |
//! | 414 | uri too long: a request target over [`MAX_URI_BYTES`](super::gate::MAX_URI_BYTES) |
//! | 431 | header fields too large: headers over [`MAX_HEADER_BYTES`](super::gate::MAX_HEADER_BYTES) |
//! | 500 | corrupt data in the store, a misconfigured store |
//! | 503 | the store is unavailable or throttling (worth retrying later) |
//!
//! hyper answers a few requests itself, before any of this code runs, with
//! the status and no body: a request line or header it cannot parse (400),
//! a head over [`MAX_HEAD_BUFFER`](super::server::MAX_HEAD_BUFFER) or with
//! more than 100 headers (431), a target over 65,534 bytes (414). An
//! HTTP/2 preface gets no answer: hyper closes the connection.
//!
//! An answer to a store error carries its kind in a [`StoreErrorKind`]
//! extension, for the metrics.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use monotone::ErrorKind;
use serde::Serialize;
use tracing::warn;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// Whether this is a store's error (counted in the metrics).
    store_error: bool,
}

#[derive(Serialize)]
struct ErrorDocument<'a> {
    error: &'a str,
    kind: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            store_error: false,
        }
    }

    /// 413: a body over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
    pub fn payload_too_large() -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload too large",
            format!("the request body is over {} bytes", super::MAX_BODY_BYTES),
        )
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid input", message)
    }

    /// The status of a store error's kind.
    pub fn status_of(kind: ErrorKind) -> StatusCode {
        match kind {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::WrongType
            | ErrorKind::Conflict
            | ErrorKind::VersionMismatch
            | ErrorKind::Mismatch
            | ErrorKind::Held
            | ErrorKind::Exhausted
            | ErrorKind::LeaseLost => StatusCode::CONFLICT,
            ErrorKind::Unavailable | ErrorKind::Throttled | ErrorKind::Timeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<monotone::Error> for ApiError {
    fn from(e: monotone::Error) -> Self {
        let message = e.to_string().replace(['\n', '\r'], " ");
        ApiError {
            store_error: true,
            ..ApiError::new(ApiError::status_of(e.kind()), e.kind().as_str(), message)
        }
    }
}

/// The kind of the store error a request met, in its answer's extensions.
#[derive(Debug, Clone, Copy)]
pub struct StoreErrorKind(pub &'static str);

/// A path segment that is not valid UTF-8 once percent-decoded.
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

/// A body over the limit (413), or one that could not be read.
impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            status => ApiError::new(status, "invalid input", e.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!(
                status = self.status.as_u16(),
                kind = self.kind,
                "{}",
                self.message
            );
        }
        let document = ErrorDocument {
            error: &self.message,
            kind: self.kind,
        };
        let mut response = (self.status, Json(document)).into_response();
        if self.store_error {
            response.extensions_mut().insert(StoreErrorKind(self.kind));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_status() {
        let status = |k| ApiError::from(monotone::Error::new(k, "x")).status.as_u16();
        assert_eq!(status(ErrorKind::InvalidInput), 400);
        assert_eq!(status(ErrorKind::NotFound), 404);
        assert_eq!(status(ErrorKind::WrongType), 409);
        assert_eq!(status(ErrorKind::Conflict), 409);
        assert_eq!(status(ErrorKind::Unavailable), 503);
        assert_eq!(status(ErrorKind::Throttled), 503);
        assert_eq!(status(ErrorKind::Corrupt), 500);
        assert_eq!(status(ErrorKind::Config), 500);
    }
}
