//! The HTTP server under the routes: hyper's HTTP/1.1 connections,
//! accepted, timed and counted one by one by this module, and the bounded
//! shutdown.
//!
//! # A connection's life
//!
//! A connection is, at any moment, in one of three phases:
//!
//! | phase | from | cut when it lasts longer than |
//! |---|---|---|
//! | head | the connection opened, or the first byte after an idle phase | `--header-timeout` (10 s): the TLS handshake, if any, and the request line and headers |
//! | busy | the request's head arrived | nothing here: its body has `--body-timeout`, its store operation the store's own bounds |
//! | idle | its answer was handed over to be sent | `--idle-timeout` (30 s) |
//!
//! A connection cut for time is closed without an answer (its request, if
//! it had one, had not reached a route). The deadlines are checked each
//! time the connection is polled, on its own task: a phase's timer is one
//! `Sleep`, reset when the phase changes.
//!
//! # The cap
//!
//! At most `max_connections` connections are served at once. When one more
//! arrives, the connection that has waited longest in the head or idle
//! phase (doing nothing for anyone) is closed to make room; when every
//! connection is busy, new ones wait in the kernel's listen queue until one
//! closes. So idle or slow clients cannot keep `/ping` from answering, and
//! the process never runs out of file descriptors: the default cap is the
//! file limit less a reserve (see [`default_max_connections`]).
//!
//! # Shutdown
//!
//! On SIGTERM or SIGINT the listener is closed; connections in the head or
//! idle phase are closed at once; each busy one finishes its request, gets
//! its answer (`Connection: close`) and is closed. When the last one is
//! closed, [`serve`] returns `Ok` (exit code 0). If requests are still in
//! flight after `--shutdown-timeout` (10 s), or on a second signal, it
//! returns at once with a [`Failure`] naming how many (exit code 1): their
//! connections are closed without an answer; a write among them was either
//! committed or not at all (each store operation is atomic), as for any
//! answer lost on the network.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use super::metrics::Metrics;
use crate::exit::Failure;

/// The largest request head hyper reads (request line and headers); a
/// longer one gets hyper's own bare 431. Heads over the gateway's own
/// limits ([`super::gate`]) but within this one get the JSON error.
pub const MAX_HEAD_BUFFER: usize = 64 * 1024;

/// Descriptors kept for everything but connections: stdio, the listener,
/// the runtime, the store's files and its own connections.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The default cap on connections, whatever the file limit allows.
const MOST_CONNECTIONS: u64 = 16_384;

/// The timeouts and the cap of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

/// The most connections this process can hold with a file limit of
/// `nofile` descriptors: the limit less a reserve of 64 (half of it when it
/// is under 128), less one for the connection accepted while making room.
pub fn connections_allowed(nofile: u64) -> usize {
    let reserve = RESERVED_DESCRIPTORS.min(nofile / 2);
    nofile.saturating_sub(reserve + 1).max(1) as usize
}

/// The default cap: what the file limit allows, at most 16,384.
pub fn default_max_connections(nofile: u64) -> usize {
    connections_allowed(nofile).min(MOST_CONNECTIONS as usize)
}

/// The soft limit on this process's open files.
pub fn file_limit() -> u64 {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _hard)) => soft,
        // Linux's usual default.
        Err(_) => 1024,
    }
}

/// Why the server closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    HeaderTimeout,
    IdleTimeout,
    /// Closed to make room for a new connection at the cap.
    Evicted,
    Shutdown,
}

impl Cut {
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::HeaderTimeout => "header_timeout",
            Cut::IdleTimeout => "idle_timeout",
            Cut::Evicted => "evicted",
            Cut::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Head(Instant),
    Busy,
    Idle(Instant),
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Set once: why the server wants this connection closed.
    closing: Option<Cut>,
}

/// One connection as the server sees it.
#[derive(Debug)]
struct Tracked {
    state: Mutex<State>,
    /// Told when `closing` is set.
    close: Notify,
}

impl Tracked {
    fn new(now: Instant) -> Self {
        Tracked {
            state: Mutex::new(State {
                phase: Phase::Head(now),
                closing: None,
            }),
            close: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: after an idle phase, a new head begins.
    fn bytes_arrived(&self) {
        let mut state = self.state();
        if let Phase::Idle(_) = state.phase {
            state.phase = Phase::Head(Instant::now());
        }
    }

    /// When, and why, this connection is to be cut if nothing changes.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Cut)> {
        match self.state().phase {
            Phase::Head(since) => Some((since + limits.header_timeout, Cut::HeaderTimeout)),
            Phase::Idle(since) => Some((since + limits.idle_timeout, Cut::IdleTimeout)),
            Phase::Busy => None,
        }
    }

    fn ask_to_close(&self, why: Cut) {
        let mut state = self.state();
        if state.closing.is_none() {
            state.closing = Some(why);
            drop(state);
            self.close.notify_one();
        }
    }
}

/// A request in flight on a connection: the connection is busy from its
/// head until its answer is handed over (this value, in the answer's body,
/// is dropped).
struct InFlight(Arc<Tracked>);

impl InFlight {
    fn begin(tracked: &Arc<Tracked>) -> Self {
        tracked.state().phase = Phase::Busy;
        InFlight(Arc::clone(tracked))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.state().phase = Phase::Idle(Instant::now());
    }
}

/// An answer's body, carrying the request's [`InFlight`] until hyper has
/// taken all of it.
struct Answer {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, telling its [`Tracked`] when bytes arrive.
struct Watched<S> {
    io: S,
    tracked: Arc<Tracked>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.tracked.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Every open connection.
#[derive(Debug, Default)]
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Tracked>>>,
    /// Told each time a connection closes.
    closed: Notify,
}

impl Connections {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Tracked>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked::new(Instant::now()));
        self.open().insert(id, Arc::clone(&tracked));
        Registered {
            connections: Arc::clone(self),
            id,
            tracked,
        }
    }

    fn len(&self) -> usize {
        self.open().len()
    }

    /// How many are open and not yet asked to close.
    fn staying(&self) -> usize {
        self.open()
            .values()
            .filter(|t| t.state().closing.is_none())
            .count()
    }

    /// How many have a request in flight.
    fn busy(&self) -> usize {
        self.open()
            .values()
            .filter(|t| matches!(t.state().phase, Phase::Busy))
            .count()
    }

    /// Ask the connection that has waited longest for a request (in the
    /// head or idle phase) to close; false if every one is busy.
    fn evict_longest_waiting(&self) -> bool {
        let open = self.open();
        let longest = open
            .values()
            .filter_map(|t| {
                let state = t.state();
                match (state.closing, state.phase) {
                    (None, Phase::Head(since) | Phase::Idle(since)) => Some((since, t)),
                    _ => None,
                }
            })
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, tracked)) => {
                tracked.ask_to_close(Cut::Evicted);
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for tracked in self.open().values() {
            tracked.ask_to_close(Cut::Shutdown);
        }
    }

    /// Resolves when no connection is open.
    async fn all_closed(&self) {
        loop {
            // Created before the check: a close in between leaves a permit.
            let closed = self.closed.notified();
            if self.len() == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// A connection's place in [`Connections`], given up when its task ends
/// (however it ends).
struct Registered {
    connections: Arc<Connections>,
    id: u64,
    tracked: Arc<Tracked>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.open().remove(&self.id);
        self.connections.closed.notify_one();
    }
}

/// What every connection task shares.
struct Shared {
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    metrics: Arc<Metrics>,
    http: http1::Builder,
}

/// SIGTERM and SIGINT.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Self, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen =
            |kind| signal(kind).map_err(|e| Failure::Other(format!("cannot handle signals: {e}")));
        Ok(Signals {
            terminate: listen(SignalKind::terminate())?,
            interrupt: listen(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT, by name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Serve `router` on `listener` (over TLS with `tls`) until SIGTERM or
/// SIGINT, then shut down as the module docs say. The signals are handled
/// from the moment this is called; `ready` runs once they are.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    ready: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut signals = Signals::listen()?;
    ready()?;
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .max_buf_size(MAX_HEAD_BUFFER)
        // The head's deadline is this module's: from the first byte, not
        // from the end of the previous answer.
        .header_read_timeout(None);
    let shared = Arc::new(Shared {
        router,
        tls,
        limits,
        metrics,
        http,
    });
    let connections = Arc::new(Connections::default());
    let signal = loop {
        // Over the cap by the one accepted last: make room, or wait for it.
        if connections.len() > limits.max_connections
            && connections.staying() > limits.max_connections
            && !connections.evict_longest_waiting()
        {
            tokio::select! {
                () = connections.closed.notified() => {}
                // A busy connection may have become idle meanwhile.
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                signal = signals.next() => break signal,
            }
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_connection(stream, peer, &shared, &connections),
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset
                    // before it was accepted: try again shortly.
                    warn!(target: "monotone::serve", "cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            signal = signals.next() => break signal,
        }
    };
    drop(listener);
    info!(
        target: "monotone::serve",
        signal,
        open = connections.len(),
        in_flight = connections.busy(),
        "stopping: finishing the requests in flight"
    );
    connections.close_all();
    let cut_by = tokio::select! {
        () = connections.all_closed() => return Ok(()),
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            format!("the shutdown deadline ({})", humantime::format_duration(limits.shutdown_timeout))
        }
        signal = signals.next() => format!("a second signal ({signal})"),
    };
    let unanswered = connections.busy();
    if unanswered == 0 {
        return Ok(());
    }
    Err(Failure::Other(format!(
        "stopped at {cut_by} with {unanswered} request(s) in flight: their connections were \
         closed without an answer"
    )))
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    connections: &Arc<Connections>,
) {
    let registered = connections.add();
    let shared = Arc::clone(shared);
    shared.metrics.connection_opened();
    tokio::spawn(async move {
        // Answers are written whole; do not hold the last segment back.
        let _ = stream.set_nodelay(true);
        let tracked = Arc::clone(&registered.tracked);
        let io = Watched {
            io: stream,
            tracked: Arc::clone(&tracked),
        };
        let outcome = match &shared.tls {
            None => drive(io, &tracked, &shared).await,
            Some(acceptor) => match handshake(acceptor, io, &tracked, &shared.limits).await {
                Ok(Some(tls)) => drive(tls, &tracked, &shared).await,
                Ok(None) => Ok(()),
                Err(cut) => Err(cut),
            },
        };
        match outcome {
            Ok(()) => {}
            Err(cut) => {
                debug!(target: "monotone::serve", %peer, reason = cut.as_str(), "connection cut");
                shared.metrics.connection_cut(cut);
            }
        }
        shared.metrics.connection_closed();
        drop(registered);
    });
}

/// The TLS handshake, within the head's deadline; `None` if the client
/// failed it (the connection is then closed).
async fn handshake<S>(
    acceptor: &TlsAcceptor,
    io: S,
    tracked: &Tracked,
    limits: &Limits,
) -> Result<Option<tokio_rustls::server::TlsStream<S>>, Cut>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = match tracked.deadline(limits) {
        Some((deadline, _)) => deadline,
        None => Instant::now() + limits.header_timeout,
    };
    tokio::select! {
        done = tokio::time::timeout_at(deadline, acceptor.accept(io)) => match done {
            Ok(Ok(tls)) => Ok(Some(tls)),
            Ok(Err(e)) => {
                debug!(target: "monotone::serve", "TLS handshake failed: {e}");
                Ok(None)
            }
            Err(_) => Err(Cut::HeaderTimeout),
        },
        () = tracked.close.notified() => Err(tracked.state().closing.unwrap_or(Cut::Shutdown)),
    }
}

/// Serve HTTP/1.1 on `io` until the client or hyper closes it (`Ok`), or
/// this server cuts it (`Err`, why).
async fn drive<S>(io: S, tracked: &Arc<Tracked>, shared: &Shared) -> Result<(), Cut>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone();
    let for_requests = Arc::clone(tracked);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::begin(&for_requests);
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Answer {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let limits = shared.limits;
    let mut connection = pin!(shared.http.serve_connection(TokioIo::new(io), service));
    let first = tracked
        .deadline(&limits)
        .map_or_else(Instant::now, |(at, _)| at);
    let mut timer = pin!(tokio::time::sleep_until(first));
    let mut close = pin!(tracked.close.notified());
    let mut draining = false;
    poll_fn(|cx| {
        if !draining && close.as_mut().poll(cx).is_ready() {
            let busy = matches!(tracked.state().phase, Phase::Busy);
            if !busy {
                return Poll::Ready(Err(tracked.state().closing.unwrap_or(Cut::Shutdown)));
            }
            // Finish the request in flight, answer it, then close.
            connection.as_mut().graceful_shutdown();
            draining = true;
        }
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            if let Err(e) = result {
                debug!(target: "monotone::serve", "connection ended: {e}");
            }
            return Poll::Ready(Ok(()));
        }
        if let Some((deadline, why)) = tracked.deadline(&limits) {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(why));
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        assert_eq!(connections_allowed(1024), 959);
        assert_eq!(connections_allowed(256), 191);
        assert_eq!(connections_allowed(100), 49);
        assert_eq!(connections_allowed(2), 1);
        assert_eq!(default_max_connections(1024), 959);
        assert_eq!(default_max_connections(u64::MAX), 16_384);
    }

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 2,
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_has_its_deadline() {
        let limits = limits();
        let start = Instant::now();
        let tracked = Arc::new(Tracked::new(start));
        assert_eq!(
            tracked.deadline(&limits),
            Some((start + limits.header_timeout, Cut::HeaderTimeout))
        );
        let in_flight = InFlight::begin(&tracked);
        assert_eq!(tracked.deadline(&limits), None);
        tokio::time::advance(Duration::from_secs(100)).await;
        // Bytes of the body while busy change nothing.
        tracked.bytes_arrived();
        assert_eq!(tracked.deadline(&limits), None);
        drop(in_flight);
        let answered = Instant::now();
        assert_eq!(
            tracked.deadline(&limits),
            Some((answered + limits.idle_timeout, Cut::IdleTimeout))
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        tracked.bytes_arrived();
        assert_eq!(
            tracked.deadline(&limits),
            Some((answered + Duration::from_secs(15), Cut::HeaderTimeout))
        );
        // More bytes of the same head do not move its deadline.
        tokio::time::advance(Duration::from_secs(1)).await;
        tracked.bytes_arrived();
        assert_eq!(
            tracked.deadline(&limits),
            Some((answered + Duration::from_secs(15), Cut::HeaderTimeout))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_waiting_connection_is_evicted_never_a_busy_one() {
        let connections = Arc::new(Connections::default());
        let busy = connections.add();
        let _in_flight = InFlight::begin(&busy.tracked);
        tokio::time::advance(Duration::from_secs(1)).await;
        let old = connections.add();
        tokio::time::advance(Duration::from_secs(1)).await;
        let new = connections.add();
        assert_eq!(connections.staying(), 3);
        assert!(connections.evict_longest_waiting());
        assert_eq!(old.tracked.state().closing, Some(Cut::Evicted));
        assert_eq!(connections.staying(), 2);
        assert!(connections.evict_longest_waiting());
        assert_eq!(new.tracked.state().closing, Some(Cut::Evicted));
        assert!(!connections.evict_longest_waiting(), "only a busy one left");
        assert_eq!(busy.tracked.state().closing, None);
        assert_eq!(connections.busy(), 1);
        drop((old, new));
        assert_eq!(connections.len(), 1);
    }
}
