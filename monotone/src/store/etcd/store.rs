//! [`EtcdStore`]: the client and configuration every handle shares, and
//! every request this store sends: each under a timeout, reads retried
//! until the operation's time runs out, writes sent once (their callers
//! decide, see `item.rs`), and the highest revision seen kept as a lower
//! bound of where any later write can land.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, GetResponse, Txn, TxnResponse};
use tokio::time::Instant;
use tracing::debug;

use super::config::EtcdConfig;
use super::error::{from_etcd, timed_out};
use crate::error::{ErrorKind, Result};

/// A store in an etcd cluster. Clones share one client (one connection per
/// member, multiplexed).
#[derive(Clone)]
pub struct EtcdStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) client: Client,
    pub(super) config: EtcdConfig,
    /// The highest revision in any response so far (0: none yet).
    revision: AtomicI64,
    /// When it was last raised.
    revision_at: Mutex<Option<Instant>>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.config.endpoints)
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

/// How long a revision seen counts as recent enough to bound where a write
/// lands (see [`EtcdStore::recent_revision`]).
const RECENT: Duration = Duration::from_secs(1);

impl EtcdStore {
    /// A store on the cluster `config` names. Sends no request unless a
    /// user is set (then it authenticates, as every etcd client does first):
    /// an unreachable cluster shows on the first operation.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        config.validate()?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(10), config.request_timeout)
            .with_auto_token_refresh(true);
        if let (Some(user), Some(password)) = (&config.user, config.password()) {
            options = options.with_user(user.clone(), password.to_owned());
        }
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let urls = config.urls();
        let connect = Client::connect(urls.clone(), Some(options));
        let client = match tokio::time::timeout(config.operation_timeout, connect).await {
            Ok(client) => client.map_err(|e| from_etcd("connecting", e))?,
            Err(_) => return Err(timed_out("connecting", config.operation_timeout)),
        };
        debug!(endpoints = ?urls, prefix = %config.prefix, "etcd store");
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                client,
                config,
                revision: AtomicI64::new(0),
                revision_at: Mutex::new(None),
            }),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }

    pub(super) fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    pub(super) fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// Note the revision of a response.
    pub(super) fn saw(&self, revision: i64) {
        if self.inner.revision.fetch_max(revision, Ordering::AcqRel) < revision {
            *self
                .inner
                .revision_at
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
    }

    /// A revision seen within the last second, if any: every write sent
    /// from now on lands above it.
    pub(super) fn recent_revision(&self) -> Option<i64> {
        let at = *self
            .inner
            .revision_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        at.filter(|at| at.elapsed() < RECENT)
            .map(|_| self.inner.revision.load(Ordering::Acquire))
    }

    /// The deadline of an operation that starts now.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.inner.config.operation_timeout
    }

    /// A `Range` of `key` (with `options`), retried on another member while
    /// the cluster cannot be reached, until `deadline`.
    pub(super) async fn get(
        &self,
        what: &str,
        key: Vec<u8>,
        options: GetOptions,
        deadline: Instant,
    ) -> Result<GetResponse> {
        let mut delay = Duration::from_millis(20);
        loop {
            let attempt = async {
                let mut client = self.client();
                client.get(key.clone(), Some(options.clone())).await
            };
            let e = match self.once(what, attempt).await {
                Ok(r) => {
                    if let Some(h) = r.header() {
                        self.saw(h.revision());
                    }
                    return Ok(r);
                }
                Err(e) => e,
            };
            if e.kind() != ErrorKind::Unavailable || super::error::compacted(&e) {
                return Err(e);
            }
            delay = self.pause(what, &e, delay, deadline).await.ok_or(e)?;
        }
    }

    /// Send `txn` once. An [`ErrorKind::Unavailable`] error leaves its
    /// outcome unknown: it may have been applied.
    pub(super) async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse> {
        let attempt = async {
            let mut client = self.client();
            client.txn(txn).await
        };
        let r = self.once(what, attempt).await?;
        if let Some(h) = r.header() {
            self.saw(h.revision());
        }
        Ok(r)
    }

    /// One request, within the request timeout.
    async fn once<T>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let limit = self.inner.config.request_timeout;
        match tokio::time::timeout(limit, request).await {
            Ok(r) => r.map_err(|e| from_etcd(what, e)),
            Err(_) => Err(timed_out(what, limit)),
        }
    }

    /// Before trying a request again after `e`: wait `delay` (then twice as
    /// long next time, at most a second), or `None` if that would pass the
    /// deadline.
    pub(super) async fn pause(
        &self,
        what: &str,
        e: &crate::error::Error,
        delay: Duration,
        deadline: Instant,
    ) -> Option<Duration> {
        let wake = Instant::now() + delay;
        if wake >= deadline {
            return None;
        }
        debug!(what, error = %e, ?delay, "etcd request failed; trying again");
        tokio::time::sleep_until(wake).await;
        Some((delay * 2).min(Duration::from_secs(1)))
    }
}

fn tls_options(tls: &super::config::EtcdTls) -> Result<etcd_client::TlsOptions> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            crate::error::Error::new(
                ErrorKind::Config,
                format!("cannot read the TLS file {}: {e}", path.display()),
            )
        })
    };
    let mut options = TlsOptions::new();
    if let Some(ca) = &tls.ca {
        options = options.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}
