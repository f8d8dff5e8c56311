//! The AWS SDK's errors, mapped to [`ErrorKind`]s in this one place, each as
//! one line that names the table and the operation.
//!
//! A failed condition is not an error here: call sites turn
//! `ConditionalCheckFailedException` into a result before they get this far.
//! A missing table is not an error either, at first: [`Mapped::TableMissing`]
//! lets the caller create it.

use std::error::Error as StdError;
use std::fmt::Debug;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::config::{ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, OPERATION_TIMEOUT, SDK_MAX_ATTEMPTS};
use crate::error::{Error, ErrorKind};

/// What a request was for, to name in its errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The table.
    pub table: &'a str,
    /// Where DynamoDB is: the endpoint URL, or the region.
    pub place: &'a str,
    /// The operation, naming its id (and process), e.g. "counter `c`: next".
    pub what: &'a str,
}

impl Context<'_> {
    fn error(&self, kind: ErrorKind, detail: impl std::fmt::Display) -> Error {
        Error::new(
            kind,
            format!("dynamodb table `{}`: {}: {detail}", self.table, self.what),
        )
    }
}

/// An SDK error, classified.
#[derive(Debug)]
pub(crate) enum Mapped {
    /// The table does not exist (`ResourceNotFoundException`).
    TableMissing(Error),
    /// Anything else.
    Error(Error),
}

impl Mapped {
    /// The error, whatever it was.
    pub fn into_error(self) -> Error {
        match self {
            Mapped::TableMissing(e) | Mapped::Error(e) => e,
        }
    }
}

/// Map an SDK error met while doing `ctx.what`.
pub(crate) fn map<E, R>(err: SdkError<E, R>, ctx: &Context<'_>) -> Mapped
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let (kind, detail) = classify(&err, ctx);
    // Only ResourceNotFoundException is classified NotFound: a missing table,
    // which is a configuration error once it cannot be created.
    if kind == ErrorKind::NotFound {
        Mapped::TableMissing(ctx.error(ErrorKind::Config, detail).with_source(err))
    } else {
        Mapped::Error(ctx.error(kind, detail).with_source(err))
    }
}

fn classify<E, R>(err: &SdkError<E, R>, ctx: &Context<'_>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: Debug + 'static,
{
    let place = ctx.place;
    let timeouts = format!(
        "DynamoDB at {place} did not answer in time (limits: connect {}s, attempt {}s, in all {}s)",
        CONNECT_TIMEOUT.as_secs(),
        ATTEMPT_TIMEOUT.as_secs(),
        OPERATION_TIMEOUT.as_secs()
    );
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("unknown error");
            let message = one_line(e.message().unwrap_or("no message"));
            service_error(code, &message, place)
        }
        SdkError::TimeoutError(_) => (ErrorKind::Unavailable, timeouts),
        SdkError::DispatchFailure(failure) => {
            if let Some(credentials) = find::<CredentialsError>(err) {
                let what = match credentials {
                    CredentialsError::CredentialsNotLoaded(_) => {
                        "no AWS credentials found".to_owned()
                    }
                    other => format!("cannot load AWS credentials: {}", describe(other)),
                };
                (
                    ErrorKind::Config,
                    format!(
                        "{what}; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                         or run with an instance or task role"
                    ),
                )
            } else if failure.is_timeout() {
                (ErrorKind::Unavailable, timeouts)
            } else {
                (
                    ErrorKind::Unavailable,
                    format!(
                        "cannot reach DynamoDB at {place} (tried {SDK_MAX_ATTEMPTS} times): {}",
                        chain(err)
                    ),
                )
            }
        }
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            format!(
                "unreadable response from DynamoDB at {place}: {}",
                chain(err)
            ),
        ),
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Config,
            format!("cannot build the request: {}", chain(err)),
        ),
        _ => (ErrorKind::Unavailable, chain(err)),
    }
}

/// The kind and message of an error DynamoDB answered with.
fn service_error(code: &str, message: &str, place: &str) -> (ErrorKind, String) {
    let kind = match code {
        "ResourceNotFoundException" => ErrorKind::NotFound,
        "AccessDeniedException" => {
            return (
                ErrorKind::PermissionDenied,
                format!(
                    "access denied: {message} (the caller needs dynamodb:GetItem, UpdateItem \
                     and DeleteItem on the table; terraform/ has such a policy)"
                ),
            )
        }
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignatureException" => {
            return (
                ErrorKind::PermissionDenied,
                format!("DynamoDB refused the credentials: {code}: {message}"),
            )
        }
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded" => {
            return (
                ErrorKind::Throttled,
                format!(
                    "DynamoDB kept throttling the requests ({code}) through {SDK_MAX_ATTEMPTS} \
                     attempts; retry later, or raise the table's capacity"
                ),
            )
        }
        "ValidationException" | "SerializationException" => ErrorKind::InvalidInput,
        "TransactionConflictException" | "ReplicatedWriteConflictException" => ErrorKind::Conflict,
        _ => ErrorKind::Unavailable,
    };
    let detail = match kind {
        ErrorKind::NotFound => {
            format!("the table does not exist at {place} ({code}: {message})")
        }
        ErrorKind::InvalidInput => format!("DynamoDB refused the request: {message}"),
        _ => format!("DynamoDB at {place} failed: {code}: {message}"),
    };
    (kind, detail)
}

/// The first error of type `T` in `err`'s source chain.
fn find<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// An error and its sources' messages on one line, repeats left out.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![];
    let mut next = err.source();
    while let Some(e) = next {
        let text = one_line(&e.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

fn describe(err: &CredentialsError) -> String {
    let own = one_line(&err.to_string());
    match err.source() {
        Some(_) => format!("{own}: {}", chain(err)),
        None => own,
    }
}

/// Whitespace, newlines included, collapsed to single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_dynamodb::operation::get_item::GetItemError;

    const CTX: Context<'static> = Context {
        table: "Counters",
        place: "http://127.0.0.1:9",
        what: "counter `c`: next",
    };

    fn service(code: &str, message: &str) -> Mapped {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        map(
            SdkError::service_error(GetItemError::generic(meta), ()),
            &CTX,
        )
    }

    fn error(m: Mapped) -> Error {
        match m {
            Mapped::Error(e) => e,
            Mapped::TableMissing(e) => panic!("not a missing table: {e}"),
        }
    }

    fn one_line_naming_table_and_operation(e: &Error) {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            msg.starts_with("dynamodb table `Counters`: counter `c`: next: "),
            "{msg}"
        );
    }

    #[test]
    fn service_errors() {
        let cases = [
            (
                "AccessDeniedException",
                ErrorKind::PermissionDenied,
                "terraform/",
            ),
            (
                "UnrecognizedClientException",
                ErrorKind::PermissionDenied,
                "refused the credentials",
            ),
            (
                "ExpiredTokenException",
                ErrorKind::PermissionDenied,
                "refused the credentials",
            ),
            (
                "ProvisionedThroughputExceededException",
                ErrorKind::Throttled,
                "throttling",
            ),
            ("ThrottlingException", ErrorKind::Throttled, "throttling"),
            ("RequestLimitExceeded", ErrorKind::Throttled, "throttling"),
            (
                "ValidationException",
                ErrorKind::InvalidInput,
                "refused the request: the message",
            ),
            (
                "TransactionConflictException",
                ErrorKind::Conflict,
                "the message",
            ),
            (
                "InternalServerError",
                ErrorKind::Unavailable,
                "http://127.0.0.1:9 failed",
            ),
            (
                "SomethingNew",
                ErrorKind::Unavailable,
                "SomethingNew: the message",
            ),
        ];
        for (code, kind, text) in cases {
            let e = error(service(code, "the message"));
            assert_eq!(e.kind(), kind, "{code}: {e}");
            assert!(e.to_string().contains(text), "{code}: {e}");
            one_line_naming_table_and_operation(&e);
            assert!(
                std::error::Error::source(&e).is_some(),
                "the SDK error is kept"
            );
        }
    }

    #[test]
    fn a_missing_table_is_set_apart() {
        match service("ResourceNotFoundException", "Requested resource not found") {
            Mapped::TableMissing(e) => {
                assert_eq!(e.kind(), ErrorKind::Config);
                assert!(e.to_string().contains("does not exist"), "{e}");
            }
            Mapped::Error(e) => panic!("{e}"),
        }
    }

    #[test]
    fn unreachable_timeouts_and_credentials() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err: SdkError<GetItemError, ()> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let e = map(err, &CTX).into_error();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(
            e.to_string()
                .contains("cannot reach DynamoDB at http://127.0.0.1:9"),
            "{e}"
        );
        assert!(e.to_string().contains("connection refused"), "{e}");
        one_line_naming_table_and_operation(&e);

        let err: SdkError<GetItemError, ()> =
            SdkError::dispatch_failure(ConnectorError::timeout("slow".into()));
        let e = map(err, &CTX).into_error();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().contains("did not answer in time"), "{e}");

        let err: SdkError<GetItemError, ()> = SdkError::timeout_error("operation timeout");
        assert_eq!(map(err, &CTX).into_error().kind(), ErrorKind::Unavailable);

        let creds = CredentialsError::not_loaded("no providers in chain provided credentials");
        let err: SdkError<GetItemError, ()> =
            SdkError::dispatch_failure(ConnectorError::other(Box::new(creds), None));
        let e = map(err, &CTX).into_error();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string()
                .contains("no AWS credentials found; set AWS_PROFILE"),
            "{e}"
        );
        assert!(e.to_string().contains("AWS_PROFILE"), "{e}");
        one_line_naming_table_and_operation(&e);

        let broken = CredentialsError::provider_error("the SSO token expired\nrun aws sso login");
        let err: SdkError<GetItemError, ()> =
            SdkError::dispatch_failure(ConnectorError::other(Box::new(broken), None));
        let e = map(err, &CTX).into_error();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string().contains("cannot load AWS credentials: "),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("the SSO token expired run aws sso login"),
            "{e}"
        );
        one_line_naming_table_and_operation(&e);
    }
}
