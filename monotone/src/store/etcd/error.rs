//! etcd's errors as [`Error`]s: the one place that reads the client's
//! errors and gRPC statuses.
//!
//! | from etcd | kind | exit code |
//! |---|---|---|
//! | no connection, a broken one, a timeout, `Unavailable` (no leader, leader changed, request timed out), `Internal`, `Unknown` | [`ErrorKind::Unavailable`] | 6 |
//! | `ResourceExhausted` "too many requests" | [`ErrorKind::Throttled`] | 5 |
//! | `ResourceExhausted` otherwise (the database is out of space) | [`ErrorKind::Unavailable`] | 6 |
//! | `PermissionDenied`, `Unauthenticated`, a refused user or password | [`ErrorKind::PermissionDenied`] | 7 |
//! | `InvalidArgument`, `FailedPrecondition` (the request is larger than the cluster accepts, auth misconfigured), a bad endpoint or TLS file | [`ErrorKind::Config`] | 7 |
//! | `OutOfRange`: the revision asked for was compacted | [`ErrorKind::Unavailable`], see [`compacted`] | 6 |
//!
//! A write that failed as [`ErrorKind::Unavailable`] may or may not have
//! been applied (the member may have died after proposing it): the callers
//! look it up by its request id before they send it again (see `item.rs`).

use crate::error::{Error, ErrorKind};
use etcd_client::Error as EtcdError;
use tonic::Code;

/// `e`, from a request about `what` (an id, "the cluster"), as an [`Error`].
pub(super) fn from_etcd(what: &str, e: EtcdError) -> Error {
    let (kind, detail) = match &e {
        EtcdError::GRpcStatus(status) => (
            status_kind(status.code(), status.message()),
            status.message().to_owned(),
        ),
        EtcdError::TransportError(t) => (ErrorKind::Unavailable, transport_detail(t)),
        EtcdError::IoError(io) => (ErrorKind::Unavailable, io.to_string()),
        EtcdError::WatchError(w) => (ErrorKind::Unavailable, w.clone()),
        EtcdError::InvalidArgs(a) => (ErrorKind::Config, a.clone()),
        EtcdError::InvalidUri(u) => (ErrorKind::Config, u.to_string()),
        EtcdError::EndpointError(a) => (ErrorKind::Config, a.clone()),
        other => (ErrorKind::Unavailable, other.to_string()),
    };
    let message = match kind {
        ErrorKind::PermissionDenied => format!(
            "etcd refused {what}: {detail} (check the user and password: ETCDCTL_USER, \
             ETCDCTL_PASSWORD, and the user's role on the prefix)"
        ),
        ErrorKind::Config => format!("etcd: {what}: {detail}"),
        ErrorKind::Throttled => format!("etcd is throttling requests ({what}): {detail}"),
        _ => format!("etcd cannot be reached ({what}): {detail}"),
    };
    Error::new(kind, message).with_source(e)
}

fn status_kind(code: Code, message: &str) -> ErrorKind {
    match code {
        Code::PermissionDenied | Code::Unauthenticated => ErrorKind::PermissionDenied,
        // etcd says "authentication failed, invalid user ID or password" and
        // "user name is empty" as InvalidArgument.
        Code::InvalidArgument if message.contains("authentication") || message.contains("user") => {
            ErrorKind::PermissionDenied
        }
        Code::InvalidArgument | Code::FailedPrecondition => ErrorKind::Config,
        Code::ResourceExhausted if message.contains("too many requests") => ErrorKind::Throttled,
        _ => ErrorKind::Unavailable,
    }
}

/// A transport error says little in its `Display`; its source chain says
/// what happened (connection refused, a TLS handshake that failed).
fn transport_detail(e: &tonic::transport::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether `e` says that the revision a read or watch asked for was
/// compacted away.
pub(super) fn compacted(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<EtcdError>())
        .is_some_and(|e| matches!(e, EtcdError::GRpcStatus(s) if s.code() == Code::OutOfRange))
}

/// Whether `e` says that its request never left this process: the member
/// could not be connected to. Such a write was not applied, and is simply
/// sent again (to another member).
pub(super) fn not_sent(e: &Error) -> bool {
    let Some(source) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<EtcdError>())
    else {
        return false;
    };
    let text = match source {
        EtcdError::GRpcStatus(s) => s.message().to_owned(),
        EtcdError::TransportError(t) => transport_detail(t),
        _ => return false,
    };
    [
        "tcp connect error",
        "error trying to connect",
        "Connection refused",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// The error of a request that took longer than `limit` ms.
pub(super) fn timed_out(what: &str, limit: std::time::Duration) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "etcd cannot be reached ({what}): no answer within {} ms",
            limit.as_millis()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> Error {
        from_etcd(
            "`x`",
            EtcdError::GRpcStatus(tonic::Status::new(code, message)),
        )
    }

    #[test]
    fn statuses_map_to_kinds() {
        let cases = [
            (
                Code::Unavailable,
                "etcdserver: leader changed",
                ErrorKind::Unavailable,
            ),
            (Code::DeadlineExceeded, "", ErrorKind::Unavailable),
            (
                Code::PermissionDenied,
                "etcdserver: permission denied",
                ErrorKind::PermissionDenied,
            ),
            (
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
                ErrorKind::PermissionDenied,
            ),
            (
                Code::InvalidArgument,
                "etcdserver: request is too large",
                ErrorKind::Config,
            ),
            (
                Code::ResourceExhausted,
                "etcdserver: too many requests",
                ErrorKind::Throttled,
            ),
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
                ErrorKind::Unavailable,
            ),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
                ErrorKind::Unavailable,
            ),
        ];
        for (code, message, kind) in cases {
            let e = status(code, message);
            assert_eq!(e.kind(), kind, "{code:?} {message}");
            assert!(e.to_string().contains("`x`"), "{e}");
        }
        assert!(compacted(&status(Code::OutOfRange, "compacted")));
        assert!(not_sent(&status(Code::Unavailable, "tcp connect error")));
        assert!(!not_sent(&status(
            Code::Unavailable,
            "error reading a body from connection"
        )));
        assert!(!compacted(&status(Code::Unavailable, "")));
    }
}
