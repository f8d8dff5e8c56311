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
//!
//! Ids and process ids are path segments, percent-encoded (`/` as `%2F`).
//! Errors are JSON with a status by class (see [`reply`]); bodies are
//! limited to [`MAX_BODY_BYTES`].
//!
//! # Access
//!
//! With `--token-file`, every route but `/ping` needs
//! `Authorization: Bearer TOKEN` (the file's content, without surrounding
//! whitespace). Without one, `serve` listens only on a loopback address,
//! unless `--insecure` says the network is trusted.
//!
//! # Running
//!
//! On start, `serve` prints one JSON document on stdout,
//! `{"listening": "ADDR", "store": "URL", "auth": "bearer"|"none"}`, and
//! nothing more. SIGTERM or SIGINT stops it gracefully: it stops accepting
//! connections, finishes the requests in flight (each is acknowledged only
//! once its write is durable in the store), closes idle connections and
//! exits 0. Each request is logged through `tracing` (target
//! `monotone::serve`: `RUST_LOG=monotone::serve=info` for one line per
//! request, `debug` also when each one starts).

mod auth;
mod reply;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use clap::Args;
use monotone::Store;
use serde::Serialize;
use tracing::{debug, info};

use self::auth::Token;
use self::reply::ApiError;
use self::routes::Gateway;
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
    /// (`Authorization: Bearer TOKEN`); required off loopback
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Listen off loopback without a token: anyone who reaches the port can
    /// change every item
    #[arg(long)]
    pub insecure: bool,
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
}

/// The checks that need no store: a token, or a loopback address, or
/// `--insecure`; the token file read.
pub fn prepare(args: &ServeArgs) -> Result<Option<Token>, Failure> {
    let token = match &args.token_file {
        Some(path) => Some(Token::read(path).map_err(Failure::Config)?),
        None => None,
    };
    if token.is_none() && !args.listen.ip().is_loopback() && !args.insecure {
        return Err(Failure::Usage(format!(
            "refusing to listen on {} without --token-file: anyone who reaches it could change \
             every counter, queue and tally; give --token-file PATH, or --insecure if only \
             trusted hosts can reach it",
            args.listen
        )));
    }
    Ok(token)
}

/// The whole application: routes, token check, body limit, request log.
pub fn app(store: Arc<dyn Store>, token: Option<Token>) -> Router {
    let place = Place::of(&*store);
    let gateway = Gateway { store, place };
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
        .layer(middleware::from_fn(log))
        .with_state(gateway)
}

/// One line per request, after it is answered.
async fn log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    debug!(%method, %path, "request started");
    let response = next.run(request).await;
    info!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Listen on `args.listen` and serve `store` until SIGTERM or SIGINT.
pub async fn run(
    store: Arc<dyn Store>,
    args: ServeArgs,
    token: Option<Token>,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::Config(format!("cannot listen on {}: {e}", args.listen)))?;
    let listening = Listening {
        listening: listener
            .local_addr()
            .map_err(|e| Failure::Other(format!("cannot read the listening address: {e}")))?,
        store: store.location().to_string(),
        auth: if token.is_some() { "bearer" } else { "none" },
    };
    print(&listening)?;
    info!(address = %listening.listening, store = %listening.store, "serving");
    axum::serve(listener, app(store, token))
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| Failure::Other(format!("the server failed: {e}")))?;
    info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn stopped() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    info!("stopping: finishing the requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn serve_needs_no_id_and_listens_on_loopback_by_default() {
        let cli = Cli::try_parse_from(["monotone", "serve"]).unwrap();
        assert_eq!(cli.id, None);
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.listen, "127.0.0.1:7777".parse().unwrap());
        assert!(!args.insecure && args.token_file.is_none());
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

    fn args(listen: &str, token_file: Option<std::path::PathBuf>, insecure: bool) -> ServeArgs {
        ServeArgs {
            listen: listen.parse().unwrap(),
            token_file,
            insecure,
        }
    }

    #[test]
    fn off_loopback_needs_a_token_or_insecure() {
        assert!(prepare(&args("127.0.0.1:7777", None, false))
            .unwrap()
            .is_none());
        assert!(prepare(&args("[::1]:7777", None, false)).unwrap().is_none());
        for addr in ["0.0.0.0:7777", "[::]:7777", "192.0.2.1:7777"] {
            match prepare(&args(addr, None, false)) {
                Err(Failure::Usage(m)) => assert!(m.contains("--token-file"), "{m}"),
                other => panic!("{addr}: {other:?}"),
            }
            assert!(prepare(&args(addr, None, true)).unwrap().is_none());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "t0ken").unwrap();
        assert!(prepare(&args("0.0.0.0:7777", Some(path), false))
            .unwrap()
            .is_some());
        match prepare(&args(
            "127.0.0.1:7777",
            Some(dir.path().join("none")),
            false,
        )) {
            Err(Failure::Config(m)) => assert!(m.contains("cannot read"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
