//! The routes: dist_counter's, and monotone's own under `/v1`, each a thin
//! handler that runs one command of `crate::commands` and returns its JSON
//! document, the same one the CLI prints.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use monotone::{Freshness, Store, Tags};
use serde::{Deserialize, Serialize};

use super::metrics::{self, Metrics};
use super::reply::ApiError;
use crate::commands::counter::{self, CounterOutput, CounterRemovedOutput};
use crate::commands::queue::{self, QueueRemovedOutput, TicketOutput, TicketsOutput, TokenOutput};
use crate::commands::tally::{self, TallyOutput, TallyRemovedOutput};
use crate::commands::Place;

/// What every handler needs: the store, its place in output documents, and
/// the metrics.
#[derive(Clone)]
pub struct Gateway {
    pub store: Arc<dyn Store>,
    pub place: Place,
    pub metrics: Arc<Metrics>,
}

type Reply<T> = Result<Json<T>, ApiError>;
type Id = Result<Path<String>, PathRejection>;
type IdAndProcess = Result<Path<(String, String)>, PathRejection>;
type Body = Result<Bytes, BytesRejection>;

/// Every route that needs the token (all but `/ping`).
pub fn protected() -> Router<Gateway> {
    Router::new()
        // dist_counter's: its counters are PN counters, monotone's tallies.
        .route("/counter/{name}", post(dist_add))
        .route("/counter/{name}/value", get(dist_value))
        .route(
            "/counter/{name}/consistent_value",
            get(dist_consistent_value),
        )
        // monotone's own.
        .route("/v1/counters/{id}", get(counter_get).delete(counter_rm))
        .route("/v1/counters/{id}/next", post(counter_next))
        .route("/v1/tallies/{id}", get(tally_get).delete(tally_rm))
        .route("/v1/tallies/{id}/add", post(tally_add))
        .route("/v1/queues/{id}", get(queue_list).delete(queue_rm))
        .route(
            "/v1/queues/{id}/tickets/{process_id}",
            put(queue_join).get(queue_get).delete(queue_leave),
        )
        .route("/metrics", get(metrics))
}

#[derive(Serialize)]
pub struct Ping {
    status: &'static str,
}

/// `GET /ping`: dist_counter's health check, `{"status": "OK"}`. It touches
/// no store and needs no token, so load balancers can call it.
pub async fn ping() -> Json<Ping> {
    Json(Ping { status: "OK" })
}

/// `GET /metrics`: the gateway's metrics in the Prometheus text format.
async fn metrics(State(g): State<Gateway>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        g.metrics.encode(),
    )
}

/// An amount in a body: an integer, as text (which is also JSON), with
/// optional surrounding whitespace.
fn amount(body: &[u8]) -> Result<i64, ApiError> {
    let text = std::str::from_utf8(body).unwrap_or("").trim();
    text.parse().map_err(|_| {
        let shown: String = String::from_utf8_lossy(body).chars().take(40).collect();
        ApiError::bad_request(format!(
            "the body must be an integer from {} to {}, not {shown:?}",
            i64::MIN,
            i64::MAX
        ))
    })
}

/// Tags in a join's body: a JSON object of strings, or nothing.
fn tags(body: &[u8]) -> Result<Tags, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Tags::new());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a JSON object of tags, {{\"KEY\": \"VALUE\", ...}}: {e}"
        ))
    })
}

/// `POST /counter/NAME` with an integer body: add it to the tally NAME.
/// 204 and no body, as dist_counter answers.
async fn dist_add(State(g): State<Gateway>, name: Id, body: Body) -> Result<StatusCode, ApiError> {
    let Path(name) = name?;
    let n = amount(&body?)?;
    g.store.tally(&name)?.add(n).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /counter/NAME/value`: the tally's value as a bare integer, from a
/// read that may lag (dist_counter's "best answer possible").
async fn dist_value(State(g): State<Gateway>, name: Id) -> Reply<i64> {
    let Path(name) = name?;
    Ok(Json(
        g.store.tally(&name)?.get(Freshness::Stale).await?.value,
    ))
}

/// `GET /counter/NAME/consistent_value`: the same from a consistent read;
/// 503 when the store cannot give one.
async fn dist_consistent_value(State(g): State<Gateway>, name: Id) -> Reply<i64> {
    let Path(name) = name?;
    Ok(Json(
        g.store.tally(&name)?.get(Freshness::Fresh).await?.value,
    ))
}

async fn counter_get(State(g): State<Gateway>, id: Id) -> Reply<CounterOutput> {
    let Path(id) = id?;
    Ok(Json(counter::get(&*g.store.counter(&id)?, g.place).await?))
}

async fn counter_next(State(g): State<Gateway>, id: Id) -> Reply<CounterOutput> {
    let Path(id) = id?;
    Ok(Json(counter::next(&*g.store.counter(&id)?, g.place).await?))
}

async fn counter_rm(State(g): State<Gateway>, id: Id) -> Reply<CounterRemovedOutput> {
    let Path(id) = id?;
    Ok(Json(counter::rm(&*g.store.counter(&id)?, g.place).await?))
}

#[derive(Debug, Deserialize)]
struct ReadParams {
    #[serde(default)]
    stale: bool,
}

async fn tally_get(
    State(g): State<Gateway>,
    id: Id,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Reply<TallyOutput> {
    let Path(id) = id?;
    let freshness = if params?.stale {
        Freshness::Stale
    } else {
        Freshness::Fresh
    };
    Ok(Json(
        tally::get(&*g.store.tally(&id)?, freshness, g.place).await?,
    ))
}

async fn tally_add(State(g): State<Gateway>, id: Id, body: Body) -> Reply<TallyOutput> {
    let Path(id) = id?;
    let n = amount(&body?)?;
    Ok(Json(tally::add(&*g.store.tally(&id)?, n, g.place).await?))
}

async fn tally_rm(State(g): State<Gateway>, id: Id) -> Reply<TallyRemovedOutput> {
    let Path(id) = id?;
    Ok(Json(tally::rm(&*g.store.tally(&id)?, g.place).await?))
}

async fn queue_list(State(g): State<Gateway>, id: Id) -> Reply<TicketsOutput> {
    let Path(id) = id?;
    Ok(Json(queue::list(&*g.store.queue(&id)?, g.place).await?))
}

async fn queue_rm(State(g): State<Gateway>, id: Id) -> Reply<QueueRemovedOutput> {
    let Path(id) = id?;
    Ok(Json(queue::rm(&*g.store.queue(&id)?, g.place).await?))
}

async fn queue_join(
    State(g): State<Gateway>,
    ids: IdAndProcess,
    body: Body,
) -> Reply<TicketOutput> {
    let Path((id, process_id)) = ids?;
    let tags = tags(&body?)?;
    Ok(Json(
        queue::join(&*g.store.queue(&id)?, &process_id, tags, None, g.place).await?,
    ))
}

async fn queue_get(State(g): State<Gateway>, ids: IdAndProcess) -> Reply<TicketOutput> {
    let Path((id, process_id)) = ids?;
    Ok(Json(
        queue::get(&*g.store.queue(&id)?, &process_id, g.place).await?,
    ))
}

async fn queue_leave(State(g): State<Gateway>, ids: IdAndProcess) -> Reply<TokenOutput> {
    let Path((id, process_id)) = ids?;
    Ok(Json(
        queue::leave(&*g.store.queue(&id)?, &process_id, g.place).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_integers_of_either_sign() {
        assert_eq!(amount(b"2").unwrap(), 2);
        assert_eq!(amount(b" -3\n").unwrap(), -3);
        assert_eq!(amount(b"+4").unwrap(), 4);
        for bad in [&b""[..], b"A", b"1.5", b"9223372036854775808", b"\xff"] {
            assert!(amount(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_are_a_json_object_or_nothing() {
        assert_eq!(tags(b"").unwrap(), Tags::new());
        assert_eq!(tags(br#"{"role": "zk"}"#).unwrap()["role"], "zk");
        assert!(tags(b"[1]").is_err());
        assert!(tags(br#"{"n": 1}"#).is_err());
    }
}
