//! What keeps web pages out when there is no token.
//!
//! A browser sends requests wherever a page tells it to, with the user's
//! network position: a page on any site can `POST` a `text/plain` body to
//! `http://127.0.0.1:7777/...` without asking first (a CORS "simple"
//! request), and a site whose name the attacker re-points at 127.0.0.1
//! (DNS rebinding) can even read the answers. With a token the browser has
//! nothing to send (it does not know it); without one, `serve` refuses,
//! with 403 and the JSON error of kind `forbidden`, before any route runs:
//!
//! - a request whose `Host` is not this server's: `localhost`, a loopback
//!   address (`127.0.0.1`, `[::1]`, ...), the address it listens on, or,
//!   when it listens on every address (`0.0.0.0`, `[::]`), any IP address;
//!   the port is not compared. A re-pointed name is none of these;
//! - a request that a page sent: one with an `Origin` header, or with
//!   `Sec-Fetch-Site: cross-site` or `same-site`, unless its `Origin` is one
//!   of the `--allow-origin` values.
//!
//! Requests from programs (curl, a service's HTTP client) carry neither.
//!
//! For an `--allow-origin` origin, with or without a token, answers carry
//! `Access-Control-Allow-Origin` so that its pages can read them, and a
//! CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) is
//! answered 204 with the methods and headers the routes take.

use std::net::{IpAddr, SocketAddr};

use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::reply::ApiError;

/// What [`Browsers::check`] decides.
pub enum Verdict {
    /// Let the request through to its route.
    Pass,
    /// A CORS preflight of an allowed origin: answer it here.
    Preflight(Response),
    Refuse(ApiError),
}

/// The policy of one server.
#[derive(Debug, Clone)]
pub struct Browsers {
    listen: SocketAddr,
    /// Whether requests are refused as the module docs say (no token).
    guard: bool,
    allowed: Vec<HeaderValue>,
}

/// An `--allow-origin` value, as browsers send it: `scheme://host[:port]`,
/// lower case, no path.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let origin = s.trim_end_matches('/').to_ascii_lowercase();
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match host {
        Some(host)
            if !host.is_empty()
                && !host.contains(['/', '?', '#', '@'])
                && host.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(origin)
        }
        _ => Err(format!(
            "`{s}` is not an origin like https://app.example.com or http://localhost:8080"
        )),
    }
}

impl Browsers {
    /// `origins` are [`parse_origin`]'s; `token` says whether requests
    /// need a token.
    pub fn new(listen: SocketAddr, token: bool, origins: &[String]) -> Self {
        Browsers {
            listen,
            guard: !token,
            allowed: origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
        }
    }

    /// The request's `Origin`, if it is an allowed one.
    pub fn allowed_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        self.allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
            .then_some(origin)
    }

    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Verdict {
        let allowed = self.allowed_origin(headers);
        if let Some(origin) = allowed {
            if method == Method::OPTIONS
                && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            {
                return Verdict::Preflight(preflight(origin));
            }
        }
        if !self.guard {
            return Verdict::Pass;
        }
        if let Some(refusal) = self.host_refusal(headers) {
            return Verdict::Refuse(refusal);
        }
        if allowed.is_none() {
            if let Some(origin) = headers.get(header::ORIGIN) {
                return Verdict::Refuse(forbidden(format!(
                    "requests from web pages ({}) are refused without a token; give \
                     --allow-origin to let an origin in",
                    String::from_utf8_lossy(origin.as_bytes())
                )));
            }
            let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
            if matches!(site, Some(b"cross-site" | b"same-site")) {
                return Verdict::Refuse(forbidden(
                    "requests from other sites' web pages are refused without a token",
                ));
            }
        }
        Verdict::Pass
    }

    fn host_refusal(&self, headers: &HeaderMap) -> Option<ApiError> {
        let Some(host) = headers.get(header::HOST) else {
            return Some(forbidden("a request needs a Host header"));
        };
        let host = host.to_str().unwrap_or("");
        if self.host_is_ours(host) {
            return None;
        }
        let shown: String = host.chars().take(100).collect();
        Some(forbidden(format!(
            "Host `{shown}` is not this server's (localhost, a loopback address or the address \
             it listens on); without a token only those are served"
        )))
    }

    fn host_is_ours(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                ip.is_loopback() || ip == self.listen.ip() || self.listen.ip().is_unspecified()
            }
            Err(_) => false,
        }
    }

    /// `response` with the CORS headers of `origin`, if it is allowed.
    pub fn decorate(&self, origin: Option<HeaderValue>, mut response: Response) -> Response {
        if let Some(origin) = origin {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        response
    }
}

/// The host of a `Host` header, without its port; an IPv6 address without
/// its brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// 204 to a preflight of an allowed origin: what the routes take.
fn preflight(origin: &HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn refused(b: &Browsers, method: Method, pairs: &[(&'static str, &'static str)]) -> bool {
        matches!(b.check(&method, &headers(pairs)), Verdict::Refuse(_))
    }

    #[test]
    fn without_a_token_only_our_hosts_and_no_pages() {
        let b = Browsers::new("127.0.0.1:7777".parse().unwrap(), false, &[]);
        for host in [
            "127.0.0.1:7777",
            "127.0.0.1",
            "localhost",
            "LOCALHOST:7777",
            "localhost:1234",
            "[::1]:7777",
            "127.0.0.2",
        ] {
            assert!(!refused(&b, Method::GET, &[("host", host)]), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7777",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "10.0.0.1:7777",
            "",
        ] {
            assert!(refused(&b, Method::GET, &[("host", host)]), "{host}");
        }
        assert!(refused(&b, Method::GET, &[]), "no Host");
        for pairs in [
            &[("host", "localhost"), ("origin", "https://evil.example")][..],
            &[("host", "localhost"), ("origin", "null")],
            &[("host", "localhost"), ("sec-fetch-site", "cross-site")],
            &[("host", "localhost"), ("sec-fetch-site", "same-site")],
        ] {
            assert!(refused(&b, Method::POST, pairs), "{pairs:?}");
        }
        for site in ["none", "same-origin"] {
            assert!(!refused(
                &b,
                Method::POST,
                &[("host", "localhost"), ("sec-fetch-site", site)]
            ));
        }
    }

    #[test]
    fn on_every_address_any_ip_is_ours_but_no_name() {
        let b = Browsers::new("0.0.0.0:7777".parse().unwrap(), false, &[]);
        assert!(!refused(&b, Method::GET, &[("host", "192.0.2.7:7777")]));
        assert!(!refused(&b, Method::GET, &[("host", "[2001:db8::1]:7777")]));
        assert!(refused(&b, Method::GET, &[("host", "monotone.example")]));
        let b = Browsers::new("192.0.2.7:7777".parse().unwrap(), false, &[]);
        assert!(!refused(&b, Method::GET, &[("host", "192.0.2.7:7777")]));
        assert!(refused(&b, Method::GET, &[("host", "192.0.2.8:7777")]));
    }

    #[test]
    fn with_a_token_any_host_and_page() {
        let b = Browsers::new("127.0.0.1:7777".parse().unwrap(), true, &[]);
        assert!(!refused(
            &b,
            Method::POST,
            &[("host", "evil.example"), ("origin", "https://evil.example")]
        ));
    }

    #[test]
    fn allowed_origins_pass_and_get_preflights() {
        let origins = [parse_origin("https://App.example.com/").unwrap()];
        assert_eq!(origins[0], "https://app.example.com");
        let b = Browsers::new("127.0.0.1:7777".parse().unwrap(), false, &origins);
        let page = [("host", "localhost"), ("origin", "https://app.example.com")];
        assert!(!refused(&b, Method::POST, &page));
        assert!(refused(
            &b,
            Method::POST,
            &[
                ("host", "localhost"),
                ("origin", "https://other.example.com")
            ]
        ));
        let mut ask = headers(&page);
        ask.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        match b.check(&Method::OPTIONS, &ask) {
            Verdict::Preflight(r) => {
                assert_eq!(r.status(), 204);
                assert_eq!(
                    r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
                    "https://app.example.com"
                );
            }
            _ => panic!("not a preflight answer"),
        }
        for bad in ["app.example.com", "ftp://x", "https://", "https://a/b"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
