//! `monotone serve`: every counter, queue and tally of one store over HTTP.
//!
//! # Routes
//!
//! dist_counter's, so its clients keep working (its counters go up and
//! down: they are monotone's tallies):
//!
//! | route | answer |
//! |---|---|
//! | `GET /ping` | `{"status": "OK"}`; needs no token, touches no store |
//! | `POST /counter/NAME`, body an integer | 204: added to the tally NAME |
//! | `GET /counter/NAME/value` | the tally's value, a bare integer, from a read that may lag (stale) |
//! | `GET /counter/NAME/consistent_value` | the same from a consistent read |
//!
//! monotone's own, under `/v1`, answering the JSON documents the CLI prints:
//!
//! | route | CLI equivalent |
//! |---|---|
//! | `GET /v1/counters/ID` | `-i ID counter get` |
//! | `POST /v1/counters/ID/next` | `-i ID counter next` |
//! | `DELETE /v1/counters/ID` | `-i ID counter rm` |
//! | `GET /v1/tallies/ID[?stale=true]` | `-i ID tally get [--stale]` |
//! | `POST /v1/tallies/ID/add`, body an integer | `-i ID tally add N` |
//! | `DELETE /v1/tallies/ID` | `-i ID tally rm` |
//! | `GET /v1/queues/ID` | `-i ID queue list` |
//! | `DELETE /v1/queues/ID` | `-i ID queue rm` |
//! | `PUT /v1/queues/ID/tickets/PID`, body empty or a JSON object of tags | `-i ID queue -p PID join -t K=V` |
//! | `GET /v1/queues/ID/tickets/PID` | `-i ID queue -p PID get` |
//! | `DELETE /v1/queues/ID/tickets/PID` | `-i ID queue -p PID leave` |
//! | `GET /metrics` | none: the gateway's own metrics, in the Prometheus text format (see [`metrics`]) |
//!
//! Ids and process ids are path segments, percent-encoded (`/` as `%2F`).
//! Errors are JSON with a status by class (see [`reply`]); bodies are
//! limited to [`MAX_BODY_BYTES`].
//!
//! # Access
//!
//! With `--token-file`, every route but `/ping` needs
//! `Authorization: Bearer TOKEN` (see [`auth`] for what the file and the
//! token must be). Without one, `serve` listens only on a loopback address,
//! unless `--insecure` says the network is trusted, and refuses requests
//! that web pages could send (see [`browser`]). Off loopback, a token
//! travels in clear text unless `--tls-cert` and `--tls-key` make `serve`
//! speak HTTPS (see [`tls`]); without them it needs `--insecure` there too.
//! HTTP/1.1 only: a client that starts HTTP/2 without asking (h2c prior
//! knowledge) gets its connection closed without an answer, and an
//! `Upgrade: h2c` is ignored; over TLS, ALPN offers `http/1.1` alone.
//!
//! # Time and connections
//!
//! | flag | default | what |
//! |---|---|---|
//! | `--header-timeout` | 10 s | to send a request's head (and the TLS handshake), from the connection or its first byte |
//! | `--idle-timeout` | 30 s | a kept-alive connection waits this long for its next request |
//! | `--body-timeout` | 10 s | to send a request's whole body (408 after) |
//! | `--max-connections` | the file limit less 64, at most 16,384 | connections served at once; one more closes the longest-waiting idle one |
//! | `--shutdown-timeout` | 10 s | how long a stop waits for the requests in flight |
//!
//! See [`server`] for what each of them does to a connection.
//!
//! # Running
//!
//! On start, `serve` prints one JSON document on stdout,
//! `{"listening": "ADDR", "store": "URL", "auth": "bearer"|"none", "tls": true|false}`,
//! and nothing more. SIGTERM or SIGINT stops it: it stops accepting
//! connections, closes idle ones, finishes the requests in flight (each is
//! acknowledged only once its write is durable in the store) and exits 0.
//! Requests still in flight after `--shutdown-timeout`, or at a second
//! signal, are cut off: their connections close without an answer and
//! `serve` exits 1, naming how many (see [`server`]). Each request is
//! logged through `tracing` (target `monotone::serve`:
//! `RUST_LOG=monotone::serve=info` for one line per request, `debug` also
//! when each one starts and why a connection was cut).

mod auth;
mod browser;
mod gate;
mod metrics;
mod reply;
mod routes;
mod server;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use clap::Args;
use monotone::Store;
use serde::Serialize;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use self::auth::Token;
use self::browser::Browsers;
use self::gate::Gate;
use self::metrics::Metrics;
use self::reply::ApiError;
use self::routes::Gateway;
use self::server::Limits;
use crate::commands::values::parse_duration;
use crate::commands::{print, Place};
use crate::exit::Failure;

/// Serve every counter, queue and tally of the store over HTTP
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on: IP:PORT, or HOST:PORT such as
    /// localhost:7777 (its first IPv4 address, else its first)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7777", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// File holding the bearer token every request must carry
    /// (`Authorization: Bearer TOKEN`): at least 16 printable ASCII
    /// characters, the file readable by its owner only; required off
    /// loopback
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Listen off loopback without a token, or with a token but without TLS:
    /// only trusted hosts can reach the port
    #[arg(long)]
    pub insecure: bool,

    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A web origin (https://host[:port]) whose pages may call this server,
    /// with CORS; may be repeated. Without a token, pages of any other
    /// origin are refused
    #[arg(long, value_name = "ORIGIN", value_parser = browser::parse_origin)]
    pub allow_origin: Vec<String>,

    /// Time a client has to send a request's head (and TLS handshake), from
    /// its connection or the first byte of the request
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,

    /// Time a kept-alive connection may wait for its next request
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    pub idle_timeout: Duration,

    /// Time a client has to send a request's whole body
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub body_timeout: Duration,

    /// Connections served at once; one more closes the one that has waited
    /// longest for a request [default: the open-file limit less 64, at most
    /// 16384]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// On SIGTERM or SIGINT, how long to wait for the requests in flight
    /// before cutting them off
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// A duration over zero.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("`{s}` must be more than zero")),
        d => Ok(d),
    }
}

/// `--listen`: an address, or a host name and port resolved once, here.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(s)
        .map_err(|e| {
            format!("`{s}` is not an address like 127.0.0.1:7777 or localhost:7777 ({e})")
        })?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("`{s}` names no address"))
}

/// The largest request body accepted: room for a join with the most tags
/// monotone allows, escaped. Larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What `serve` prints on stdout once it listens.
#[derive(Debug, Serialize)]
struct Listening {
    listening: SocketAddr,
    store: String,
    auth: &'static str,
    tls: bool,
}

/// What [`prepare`] read and checked.
pub struct Prepared {
    token: Option<Token>,
    tls: Option<TlsAcceptor>,
    limits: Limits,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("token", &self.token)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

/// The checks that need no store, before it is opened: a token, or a
/// loopback address, or `--insecure`; the token file and the TLS files
/// read; the connection cap within the file limit.
pub fn prepare(args: &ServeArgs) -> Result<Prepared, Failure> {
    let token = match &args.token_file {
        Some(path) => {
            let (token, warning) = Token::read(path).map_err(Failure::Config)?;
            if let Some(auth::Warning(w)) = warning {
                eprintln!("monotone: warning: {w}");
            }
            Some(token)
        }
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key).map_err(Failure::Config)?),
        _ => None,
    };
    let loopback = args.listen.ip().is_loopback();
    if token.is_none() && !loopback && !args.insecure {
        return Err(Failure::Usage(format!(
            "refusing to listen on {} without --token-file: anyone who reaches it could change \
             every counter, queue and tally; give --token-file PATH, or --insecure if only \
             trusted hosts can reach it",
            args.listen
        )));
    }
    if token.is_some() && tls.is_none() && !loopback && !args.insecure {
        return Err(Failure::Usage(format!(
            "refusing to send the bearer token in clear text on {}: give --tls-cert FILE and \
             --tls-key FILE, or --insecure if only trusted hosts can reach it",
            args.listen
        )));
    }
    let nofile = server::file_limit();
    let allowed = server::connections_allowed(nofile);
    let max_connections = match args.max_connections {
        None => server::default_max_connections(nofile),
        Some(0) => {
            return Err(Failure::Usage(
                "--max-connections must be at least 1".into(),
            ))
        }
        Some(n) if n > allowed => {
            return Err(Failure::Usage(format!(
                "--max-connections {n} is more than the open-file limit ({nofile}) allows: at \
                 most {allowed}; raise the limit (ulimit -n, LimitNOFILE=) or lower the cap"
            )))
        }
        Some(n) => n,
    };
    Ok(Prepared {
        token,
        tls,
        limits: Limits {
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            max_connections,
            shutdown_timeout: args.shutdown_timeout,
        },
    })
}

/// The whole application: routes, token check, and the [`gate`] around
/// them (limits, browser checks, bodies, metrics, log).
pub fn app(store: Arc<dyn Store>, token: Option<Token>, gate: Arc<Gate>) -> Router {
    let place = Place::of(&*store);
    let gateway = Gateway {
        store,
        place,
        metrics: Arc::clone(&gate.metrics),
    };
    Router::new()
        .merge(
            routes::protected()
                .route_layer(middleware::from_fn_with_state(Arc::new(token), auth::check)),
        )
        .route("/ping", get(routes::ping))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(gate, gate::gate))
        .with_state(gateway)
}

/// Listen on `args.listen` and serve `store` until SIGTERM or SIGINT.
pub async fn run(
    store: Arc<dyn Store>,
    args: ServeArgs,
    prepared: Prepared,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Other(format!("cannot read the listening address: {e}")))?;
    let listening = Listening {
        listening: local,
        store: store.location().to_string(),
        auth: if prepared.token.is_some() {
            "bearer"
        } else {
            "none"
        },
        tls: prepared.tls.is_some(),
    };
    let metrics = Arc::new(Metrics::default());
    let gate = Arc::new(Gate {
        browsers: Browsers::new(local, prepared.token.is_some(), &args.allow_origin),
        body_timeout: args.body_timeout,
        metrics: Arc::clone(&metrics),
    });
    let router = app(store, prepared.token, gate);
    server::serve(
        listener,
        prepared.tls,
        router,
        prepared.limits,
        metrics,
        || {
            print(&listening)?;
            info!(
                target: "monotone::serve",
                address = %listening.listening,
                store = %listening.store,
                tls = listening.tls,
                max_connections = prepared.limits.max_connections,
                "serving"
            );
            Ok(())
        },
    )
    .await?;
    info!(target: "monotone::serve", "stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["monotone", "serve"].iter().chain(args)).unwrap();
        assert_eq!(cli.id, None);
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        args
    }

    #[test]
    fn serve_needs_no_id_and_listens_on_loopback_by_default() {
        let args = parse(&[]);
        assert_eq!(args.listen, "127.0.0.1:7777".parse().unwrap());
        assert!(!args.insecure && args.token_file.is_none() && args.tls_cert.is_none());
        assert_eq!(
            (
                args.header_timeout,
                args.idle_timeout,
                args.body_timeout,
                args.shutdown_timeout
            ),
            (
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(10),
                Duration::from_secs(10)
            )
        );
        let limits = prepare(&args).unwrap().limits;
        assert_eq!(
            limits.max_connections,
            server::default_max_connections(server::file_limit())
        );
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        for bad in [
            &["--header-timeout", "0s"][..],
            &["--idle-timeout", "soon"],
            &["--allow-origin", "example.com"],
            &["--tls-cert", "cert.pem"],
            &["--tls-key", "key.pem"],
        ] {
            let e = Cli::try_parse_from(["monotone", "serve"].iter().chain(bad)).unwrap_err();
            assert_ne!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{bad:?}");
        }
        for (n, needle) in [("0", "at least 1"), ("100000000", "open-file limit")] {
            match prepare(&parse(&["--max-connections", n])) {
                Err(Failure::Usage(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{n}: {other:?}"),
            }
        }
    }

    #[test]
    fn listen_takes_host_names() {
        assert_eq!(
            parse_listen("localhost:7777"),
            Ok("127.0.0.1:7777".parse().unwrap())
        );
        assert_eq!(parse_listen("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert!(parse_listen("localhost")
            .unwrap_err()
            .contains("`localhost`"));
    }

    #[test]
    fn off_loopback_needs_a_token_and_tls_or_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken-0123456789abcdef").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let token = token.to_str().unwrap();
        assert!(prepare(&parse(&[])).unwrap().token.is_none());
        assert!(prepare(&parse(&["--listen", "[::1]:7777"])).is_ok());
        for addr in ["0.0.0.0:7777", "[::]:7777", "192.0.2.1:7777"] {
            match prepare(&parse(&["--listen", addr])) {
                Err(Failure::Usage(m)) => assert!(m.contains("--token-file"), "{m}"),
                other => panic!("{addr}: {other:?}"),
            }
            match prepare(&parse(&["--listen", addr, "--token-file", token])) {
                Err(Failure::Usage(m)) => assert!(m.contains("clear text"), "{m}"),
                other => panic!("{addr}: {other:?}"),
            }
            assert!(prepare(&parse(&["--listen", addr, "--insecure"])).is_ok());
            let p = prepare(&parse(&[
                "--listen",
                addr,
                "--token-file",
                token,
                "--insecure",
            ]));
            assert!(p.unwrap().token.is_some());
        }
        let missing = dir.path().join("none");
        match prepare(&parse(&["--token-file", missing.to_str().unwrap()])) {
            Err(Failure::Config(m)) => assert!(m.contains("cannot read"), "{m}"),
            other => panic!("{other:?}"),
        }
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let cert = cert.to_str().unwrap();
        match prepare(&parse(&["--tls-cert", cert, "--tls-key", cert])) {
            Err(Failure::Config(m)) => assert!(m.contains("no PEM certificate"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
