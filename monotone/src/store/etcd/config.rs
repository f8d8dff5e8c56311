//! [`EtcdConfig`]: where the cluster is, how to reach it (TLS, a user) and
//! how long to wait, from a store URL and etcdctl's environment variables.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Result};

/// The prefix every key of the store starts with, unless the URL names one.
pub const DEFAULT_PREFIX: &str = "monotone/";

/// The endpoint without a URL host or `ETCDCTL_ENDPOINTS`: etcdctl's.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";

/// How long connecting to one endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one request may take before it counts as failed (and is
/// retried on another endpoint, if the operation's time allows).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one operation may keep retrying requests that failed because
/// the cluster could not be reached: then it fails, Unavailable.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Files of a TLS connection: the CA that signed the servers' certificates,
/// and the client's certificate and key when the cluster asks for one
/// (etcd's `--client-cert-auth`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EtcdTls {
    /// PEM file of the CA certificate(s) to trust (etcdctl's `--cacert`).
    pub ca: Option<PathBuf>,
    /// PEM file of the client certificate (etcdctl's `--cert`).
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's key (etcdctl's `--key`).
    pub key: Option<PathBuf>,
}

/// How to reach an etcd cluster, and where in its keys this store lives.
///
/// From a URL with [`EtcdConfig::from_url`], or built:
///
/// ```
/// use monotone::etcd::EtcdConfig;
/// let config = EtcdConfig::new(["10.0.0.1:2379", "10.0.0.2:2379"]).with_prefix("apps/monotone/");
/// assert_eq!(config.prefix, "apps/monotone/");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// `HOST:PORT`s (or `http://` / `https://` URLs) of cluster members;
    /// requests go to any of them that answers.
    pub endpoints: Vec<String>,
    /// Every key of this store starts with this (it ends with `/`).
    pub prefix: String,
    /// TLS, if the cluster speaks it.
    pub tls: Option<EtcdTls>,
    /// The user to authenticate as, if the cluster has authentication on.
    pub user: Option<String>,
    /// The user's password (never shown: not in `Debug`, not in the
    /// store's [`Location`](crate::Location)).
    password: Option<String>,
    /// A file the password was read from, shown in the store's location so
    /// that a command run under `monotone lock` reads it too.
    pub password_file: Option<PathBuf>,
    /// See [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`OPERATION_TIMEOUT`].
    pub operation_timeout: Duration,
    /// The retry policy of writes that lose a race with another client.
    pub backoff: Backoff,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("request_timeout", &self.request_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdConfig {
    /// The cluster at `endpoints`, keys under [`DEFAULT_PREFIX`], no TLS, no
    /// user, the default timeouts.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            tls: None,
            user: None,
            password: None,
            password_file: None,
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            operation_timeout: OPERATION_TIMEOUT,
            backoff: Backoff::default(),
        }
    }

    /// Keep every key under `prefix` (a `/` is added if it does not end
    /// with one).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = normal_prefix(prefix.into());
        self
    }

    /// Speak TLS with these files.
    pub fn with_tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Authenticate as `user` with `password`.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Set the timeouts of one request and of a whole operation.
    pub fn with_timeouts(mut self, request: Duration, operation: Duration) -> Self {
        self.request_timeout = request;
        self.operation_timeout = operation.max(request);
        self
    }

    /// Set the retry policy of writes that lose a race.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The password, if one is set.
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Parse `etcd://HOST:PORT[,HOST:PORT...][/PREFIX][?OPTIONS]`, filling
    /// in what it leaves out from etcdctl's environment variables
    /// (`ETCDCTL_ENDPOINTS`, `ETCDCTL_CACERT`, `ETCDCTL_CERT`, `ETCDCTL_KEY`,
    /// `ETCDCTL_USER`, `ETCDCTL_PASSWORD`). See the [module docs](super) for
    /// every option.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_url_and_env(url, |name| std::env::var(name).ok())
    }

    /// [`from_url`](Self::from_url) with the environment looked up by `env`.
    pub fn from_url_and_env(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "store URL `{}`: {why}; use etcd://HOST:PORT[,HOST:PORT...][/PREFIX]",
                    redact(url)
                ),
            )
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("not an etcd:// URL"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let endpoints: Vec<String> = if hosts.is_empty() {
            env("ETCDCTL_ENDPOINTS")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
                .split(',')
                .map(|e| e.trim().to_owned())
                .collect()
        } else {
            hosts.split(',').map(str::to_owned).collect()
        };
        let mut config = EtcdConfig::new(endpoints);
        if let Some(p) = prefix.filter(|p| !p.is_empty()) {
            let p = percent_decode(p).map_err(|_| bad("the prefix is not UTF-8"))?;
            config = config.with_prefix(p);
        }
        let mut tls = EtcdTls {
            ca: env("ETCDCTL_CACERT").map(PathBuf::from),
            cert: env("ETCDCTL_CERT").map(PathBuf::from),
            key: env("ETCDCTL_KEY").map(PathBuf::from),
        };
        let mut user = env("ETCDCTL_USER");
        let mut password = env("ETCDCTL_PASSWORD");
        let mut seen = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if seen.contains(&key) {
                return Err(bad(&format!("`{key}` is given twice")));
            }
            seen.push(key.clone());
            if value.is_empty() {
                return Err(bad(&format!("`{key}` is empty")));
            }
            let ms = |v: &str| -> Result<Duration> {
                v.parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| bad(&format!("`{key}` is not a number of milliseconds")))
            };
            match key.as_ref() {
                "ca" | "cacert" => tls.ca = Some(PathBuf::from(value.as_ref())),
                "cert" => tls.cert = Some(PathBuf::from(value.as_ref())),
                "key" => tls.key = Some(PathBuf::from(value.as_ref())),
                "user" => user = Some(value.into_owned()),
                "password_file" => {
                    let path = PathBuf::from(value.as_ref());
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        bad(&format!(
                            "cannot read the password file {}: {e}",
                            path.display()
                        ))
                    })?;
                    password = Some(text.trim_end_matches(['\n', '\r']).to_owned());
                    config.password_file = Some(path);
                }
                "password" => {
                    return Err(bad(
                        "a password does not belong in the URL (commands and logs show it); \
                         use password_file=PATH or ETCDCTL_PASSWORD",
                    ))
                }
                "connect_timeout_ms" => config.connect_timeout = ms(&value)?,
                "request_timeout_ms" => config.request_timeout = ms(&value)?,
                "timeout_ms" => config.operation_timeout = ms(&value)?,
                other => {
                    return Err(bad(&format!(
                        "unknown option `{other}` (known: ca, cert, key, user, password_file, \
                         connect_timeout_ms, request_timeout_ms, timeout_ms)"
                    )))
                }
            }
        }
        if tls != EtcdTls::default() {
            config.tls = Some(tls);
        }
        if let Some(u) = user {
            // etcdctl's `--user name:password`.
            let (name, inline) = match u.split_once(':') {
                Some((n, p)) => (n.to_owned(), Some(p.to_owned())),
                None => (u, None),
            };
            let password = inline.or(password).ok_or_else(|| {
                bad(&format!(
                    "user `{name}` has no password: set ETCDCTL_PASSWORD or password_file=PATH"
                ))
            })?;
            config.user = Some(name);
            config.password = Some(password);
        }
        config.validate().map_err(|e| bad(e.message()))?;
        Ok(config)
    }

    /// Check the endpoints, the prefix and the TLS files' combination.
    pub(crate) fn validate(&self) -> Result<()> {
        let config = |m: String| Error::new(ErrorKind::Config, m);
        if self.endpoints.is_empty() {
            return Err(config("no endpoint given".into()));
        }
        for e in &self.endpoints {
            let hostport = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .unwrap_or(e);
            let ok = hostport.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(config(format!("endpoint `{e}` is not HOST:PORT")));
            }
            if e.starts_with("https://") && self.tls.as_ref().and_then(|t| t.ca.as_ref()).is_none()
            {
                return Err(config(format!(
                    "endpoint `{e}` speaks TLS but no CA is given: set ca=PATH or ETCDCTL_CACERT"
                )));
            }
            if e.starts_with("http://") && self.tls.is_some() {
                return Err(config(format!(
                    "endpoint `{e}` is plain http:// but TLS files are given"
                )));
            }
        }
        if self.prefix.is_empty() || self.prefix == "/" {
            return Err(config(
                "the prefix is empty: monotone keeps its keys under a prefix of their own".into(),
            ));
        }
        if self.prefix.chars().any(char::is_control) {
            return Err(config("the prefix holds a control character".into()));
        }
        if let Some(tls) = &self.tls {
            if tls.ca.is_none() {
                return Err(config(
                    "TLS needs a CA certificate: set ca=PATH or ETCDCTL_CACERT".into(),
                ));
            }
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(config(
                    "a client certificate needs its key and the reverse: give both cert and key"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The endpoints as the client dials them: with `https://` when TLS is
    /// on, `http://` otherwise.
    pub(crate) fn urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() {
            "https://"
        } else {
            "http://"
        };
        self.endpoints
            .iter()
            .map(|e| {
                let bare = e
                    .strip_prefix("http://")
                    .or_else(|| e.strip_prefix("https://"))
                    .unwrap_or(e);
                format!("{scheme}{bare}")
            })
            .collect()
    }

    /// The store's URL, as [`from_url`](Self::from_url) reads it, without
    /// the password (in the environment or the password file, where the
    /// caller put it).
    pub(crate) fn url(&self) -> String {
        let hosts: Vec<&str> = self
            .endpoints
            .iter()
            .map(|e| {
                e.strip_prefix("http://")
                    .or_else(|| e.strip_prefix("https://"))
                    .unwrap_or(e)
            })
            .collect();
        let mut url = format!(
            "etcd://{}/{}",
            hosts.join(","),
            percent_encode(&self.prefix)
        );
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(tls) = &self.tls {
            for (k, v) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
                if let Some(v) = v {
                    query.append_pair(k, &v.display().to_string());
                }
            }
        }
        if let Some(user) = &self.user {
            query.append_pair("user", user);
        }
        if let Some(file) = &self.password_file {
            query.append_pair("password_file", &file.display().to_string());
        }
        let query = query.finish();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        url
    }
}

/// `prefix` ending with `/`.
fn normal_prefix(mut prefix: String) -> String {
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    prefix
}

/// A URL with any `password=...` value hidden, for messages.
fn redact(url: &str) -> String {
    match url.find("password=") {
        Some(i) => {
            let end = url[i..].find('&').map_or(url.len(), |j| i + j);
            format!("{}password=***{}", &url[..i], &url[end..])
        }
        None => url.to_owned(),
    }
}

fn percent_decode(s: &str) -> std::result::Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
}

/// The prefix in a URL's path: `/` kept as it is, everything else that a
/// path cannot hold percent-encoded.
fn percent_encode(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const PATH: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'?')
        .add(b'<')
        .add(b'>')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    utf8_percent_encode(s, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, vars: &[(&str, &str)]) -> Result<EtcdConfig> {
        EtcdConfig::from_url_and_env(url, |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn endpoints_prefix_and_defaults() {
        let c = parse("etcd://10.0.0.1:2379,10.0.0.2:2379/apps/x", &[]).unwrap();
        assert_eq!(c.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(c.prefix, "apps/x/");
        assert_eq!(c.urls(), ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]);
        assert_eq!(c.url(), "etcd://10.0.0.1:2379,10.0.0.2:2379/apps/x/");
        let c = parse("etcd://h:1", &[]).unwrap();
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.tls, None);
        assert_eq!(c.operation_timeout, OPERATION_TIMEOUT);
        // Without hosts: etcdctl's variable, then its default.
        let c = parse(
            "etcd:///p",
            &[("ETCDCTL_ENDPOINTS", "http://a:1, http://b:2")],
        )
        .unwrap();
        assert_eq!(c.endpoints, ["http://a:1", "http://b:2"]);
        assert_eq!(parse("etcd://", &[]).unwrap().endpoints, [DEFAULT_ENDPOINT]);
        let c = parse("etcd://h:1/a%20b", &[]).unwrap();
        assert_eq!(c.prefix, "a b/");
        assert_eq!(c.url(), "etcd://h:1/a%20b/");
        assert_eq!(parse(&c.url(), &[]).unwrap(), c, "the URL round-trips");
    }

    #[test]
    fn tls_and_users_follow_etcdctl() {
        let env = [
            ("ETCDCTL_CACERT", "/ca.pem"),
            ("ETCDCTL_CERT", "/c.pem"),
            ("ETCDCTL_KEY", "/k.pem"),
            ("ETCDCTL_USER", "root:secret"),
        ];
        let c = parse("etcd://h:1", &env).unwrap();
        let tls = c.tls.clone().unwrap();
        assert_eq!(tls.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(c.urls(), ["https://h:1"]);
        assert_eq!(
            (c.user.as_deref(), c.password()),
            (Some("root"), Some("secret"))
        );
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
        assert!(!c.url().contains("secret"), "{}", c.url());
        // URL options win over the environment.
        let c = parse(
            "etcd://h:1?ca=/other.pem&user=u",
            &[("ETCDCTL_PASSWORD", "pw")],
        )
        .unwrap();
        assert_eq!(
            c.tls.as_ref().unwrap().ca.as_deref(),
            Some(std::path::Path::new("/other.pem"))
        );
        assert_eq!((c.user.as_deref(), c.password()), (Some("u"), Some("pw")));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = parse(
            &format!("etcd://h:1?user=u&password_file={}", file.display()),
            &[],
        )
        .unwrap();
        assert_eq!(c.password(), Some("from-file"));
        assert!(c.url().contains("password_file="), "{}", c.url());
    }

    #[test]
    fn bad_urls_are_config_errors_naming_what_is_wrong() {
        for (url, why) in [
            ("etcd:h:1", "not an etcd:// URL"),
            ("etcd://h", "not HOST:PORT"),
            ("etcd://h:0", "not HOST:PORT"),
            ("etcd://h:1,", "not HOST:PORT"),
            ("etcd://h:1?bogus=1", "unknown option `bogus`"),
            ("etcd://h:1?user=u", "has no password"),
            ("etcd://h:1?user=u&password=p", "does not belong in the URL"),
            ("etcd://h:1?cert=/c", "needs a CA"),
            ("etcd://h:1?ca=/a&cert=/c", "give both cert and key"),
            ("etcd://h:1?timeout_ms=x", "not a number of milliseconds"),
            ("etcd://h:1?ca=/a&ca=/b", "given twice"),
            ("etcd://https://h:1", "not HOST:PORT"),
            (
                "etcd://h:1?password_file=/nonexistent/pw",
                "cannot read the password file",
            ),
        ] {
            let e = parse(url, &[]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.to_string().contains(why), "{url}: {e}");
            assert!(!e.to_string().contains("=p&"), "{e}");
        }
        let e = parse("etcd:///", &[("ETCDCTL_ENDPOINTS", "https://h:1")]).unwrap_err();
        assert!(e.to_string().contains("no CA"), "{e}");
        let e = parse("etcd://h:1?user=u&password=hunter2", &[]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
