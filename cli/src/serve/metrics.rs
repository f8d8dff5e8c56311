//! `GET /metrics`: what the gateway has done, in the Prometheus text
//! format (version 0.0.4), written by the official Rust client
//! (`prometheus-client`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `monotone_http_requests_total` | counter | `route` (as routed, e.g. `/v1/counters/{id}`; `other` for no route), `method`, `status` |
//! | `monotone_http_request_duration_seconds` | histogram | `route`, `method` |
//! | `monotone_store_errors_total` | counter | `kind` (the error kinds of the JSON errors: `unavailable`, `conflict`, ...) |
//! | `monotone_http_open_connections` | gauge | |
//! | `monotone_http_connections_cut_total` | counter | `reason`: `header_timeout`, `idle_timeout`, `evicted` (closed at the connection cap), `shutdown` |
//!
//! A request's duration runs from its head's arrival to its answer's
//! hand-over (a store error is counted once, by the request that met it).

use std::fmt::Write;
use std::time::Duration;

use axum::http::Method;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::server::Cut;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The upper bounds of the duration buckets, in seconds: from half a
/// millisecond (a memory store) to 30 s (the SQLite store's busy timeout).
const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The gateway's metrics; one per server, shared by every connection.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    store_errors: Family<KindLabels, Counter>,
    open_connections: Gauge,
    cut_connections: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("monotone");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head to its answer, by route and method",
            durations.clone(),
        );
        let store_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Store operations that failed, by error kind",
            store_errors.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "http_open_connections",
            "HTTP connections open now",
            open_connections.clone(),
        );
        let cut_connections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_connections_cut",
            "HTTP connections the server closed itself, by reason",
            cut_connections.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            store_errors,
            open_connections,
            cut_connections,
        }
    }
}

/// A method as a label value: the ones the routes take, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

impl Metrics {
    /// One answered request; `store_error` is the kind of the store error
    /// it met, if any.
    pub fn request(
        &self,
        route: Option<&str>,
        method: &Method,
        status: u16,
        took: Duration,
        store_error: Option<&'static str>,
    ) {
        let route = route.unwrap_or("other").to_owned();
        let method = method_label(method);
        self.durations
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method,
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        if let Some(kind) = store_error {
            self.store_errors.get_or_create(&KindLabels { kind }).inc();
        }
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    pub fn connection_cut(&self, why: Cut) {
        self.cut_connections
            .get_or_create(&ReasonLabels {
                reason: why.as_str(),
            })
            .inc();
    }

    /// Every metric, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_text::encode(&mut text, &self.registry) {
            // Writing to a String cannot fail; say so in the scrape if it did.
            let _ = writeln!(text, "# the metrics could not be encoded: {e}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_errors_and_connections_are_counted() {
        let m = Metrics::default();
        m.request(
            Some("/v1/counters/{id}"),
            &Method::GET,
            200,
            Duration::from_millis(3),
            None,
        );
        m.request(
            Some("/v1/counters/{id}"),
            &Method::GET,
            503,
            Duration::from_millis(40),
            Some("unavailable"),
        );
        m.request(None, &Method::TRACE, 404, Duration::ZERO, None);
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.connection_cut(Cut::IdleTimeout);
        let text = m.encode();
        for line in [
            "monotone_http_requests_total{route=\"/v1/counters/{id}\",method=\"GET\",status=\"200\"} 1",
            "monotone_http_requests_total{route=\"/v1/counters/{id}\",method=\"GET\",status=\"503\"} 1",
            "monotone_http_requests_total{route=\"other\",method=\"other\",status=\"404\"} 1",
            "monotone_http_request_duration_seconds_count{route=\"/v1/counters/{id}\",method=\"GET\"} 2",
            "monotone_http_request_duration_seconds_bucket{route=\"/v1/counters/{id}\",method=\"GET\",le=\"0.005\"} 1",
            "monotone_store_errors_total{kind=\"unavailable\"} 1",
            "monotone_http_open_connections 1",
            "monotone_http_connections_cut_total{reason=\"idle_timeout\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
