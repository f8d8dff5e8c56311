//! What every request goes through, around its route: the limits on its
//! head, the browser checks ([`super::browser`]), its body read whole within
//! its time and size, and, once answered, the metrics and the log line.
//!
//! | refused with | when |
//! |---|---|
//! | 414 `uri too long` | the request target is over [`MAX_URI_BYTES`] |
//! | 431 `header fields too large` | the headers are over [`MAX_HEADER_BYTES`] in all |
//! | 400 `invalid input` | two `Authorization` headers; a body that breaks off or is badly chunked |
//! | 403 `forbidden` | a browser's request, without a token (see [`super::browser`]) |
//! | 408 `request timeout` | the body did not arrive whole within `--body-timeout` |
//! | 413 `payload too large` | a body over [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) |

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tracing::{debug, info};

use super::browser::{Browsers, Verdict};
use super::metrics::Metrics;
use super::reply::{ApiError, StoreErrorKind};
use super::MAX_BODY_BYTES;

/// The longest request target (path and query) served; longer ones get 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most bytes of header names and values served; more get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The gate of one server.
#[derive(Debug)]
pub struct Gate {
    pub browsers: Browsers,
    pub body_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// The middleware: every request, through [`Gate`].
pub async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let origin = gate.browsers.allowed_origin(request.headers()).cloned();
    debug!(target: "monotone::serve", %method, path = request.uri().path(), "request started");
    let path = request.uri().path().to_owned();
    let response = match admit(&gate, request).await {
        Ok(request) => next.run(request).await,
        Err(answer) => answer,
    };
    let response = gate.browsers.decorate(origin, response);
    let took = started.elapsed();
    let status = response.status().as_u16();
    let store_error = response.extensions().get::<StoreErrorKind>().map(|k| k.0);
    gate.metrics
        .request(route.as_deref(), &method, status, took, store_error);
    info!(
        target: "monotone::serve",
        %method,
        %path,
        status,
        elapsed_us = took.as_micros() as u64,
        "request"
    );
    response
}

/// The request, its body read whole, if it may go on to its route; else
/// the answer it gets.
async fn admit(gate: &Gate, request: Request) -> Result<Request, Response> {
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::URI_TOO_LONG,
            "uri too long",
            format!("the request target is over {MAX_URI_BYTES} bytes"),
        )
        .into_response());
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header fields too large",
            format!("the request's headers are over {MAX_HEADER_BYTES} bytes"),
        )
        .into_response());
    }
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(
            ApiError::bad_request("the request has more than one Authorization header")
                .into_response(),
        );
    }
    match gate.browsers.check(request.method(), request.headers()) {
        Verdict::Pass => {}
        Verdict::Preflight(answer) => return Err(answer),
        Verdict::Refuse(refusal) => return Err(refusal.into_response()),
    }
    read_body(request, gate.body_timeout)
        .await
        .map_err(IntoResponse::into_response)
}

/// The request with its body read whole (so a route never waits for it),
/// within `timeout` and [`MAX_BODY_BYTES`].
async fn read_body(request: Request, timeout: Duration) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    if http_body::Body::is_end_stream(&body) {
        return Ok(Request::from_parts(parts, body));
    }
    // A `Content-Length` over the limit is refused before any of it is read.
    if http_body::Body::size_hint(&body).lower() > MAX_BODY_BYTES as u64 {
        return Err(ApiError::payload_too_large());
    }
    let read = Limited::new(body, MAX_BODY_BYTES).collect();
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::payload_too_large())
        }
        Ok(Err(e)) => {
            return Err(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )))
        }
        Err(_) => {
            return Err(ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "request timeout",
                format!(
                    "the request body did not arrive whole within {}",
                    humantime::format_duration(timeout)
                ),
            ))
        }
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
