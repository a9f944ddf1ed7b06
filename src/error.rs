//! Whether a failed AWS call is worth trying again, decided in one place for every module.
//!
//! Each module keeps its own `thiserror` enum ([`SqsError`](crate::sqs::SqsError),
//! [`LedgerError`](crate::ledger::LedgerError), the monitor's and the replay's), and each of
//! them separates *retryable* failures (throttling, timeouts, connection errors, 5xx: the same
//! call may well succeed in a moment) from *permanent* ones (validation, access denied, a
//! missing resource: only a change of code or configuration fixes them). [`classify`] makes
//! that decision for any SDK error, and [`describe`] renders it with its whole chain of
//! causes, so every module wraps SDK errors the same way.

use std::error::Error;
use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What a failure says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The same call may succeed later.
    Retryable,
    /// Only a change of code, configuration or input fixes it.
    Permanent,
}

/// Error codes AWS services use for throttling and transient server trouble.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "TransactionInProgressException",
    "KMSThrottlingException",
];

/// Whether `err` is worth retrying: a timeout, a connection failure, an unreadable response,
/// a throttling or server-side error code, or an HTTP 429 or 5xx is; a request that could not
/// be built, or any other service error (validation, access, a missing resource), is not.
pub fn classify<E, R>(err: &SdkError<E, R>) -> Retry
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Retry::Retryable
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service.raw().status();
            if RETRYABLE_CODES.contains(&code) || status == 429 || status >= 500 {
                Retry::Retryable
            } else {
                Retry::Permanent
            }
        }
        _ => Retry::Permanent,
    }
}

/// `err` with its whole chain of causes, on one line.
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: Error + 'static,
    R: fmt::Debug,
{
    aws_smithy_types::error::display::DisplayErrorContext(err).to_string()
}

/// The HTTP status of a raw response, for [`classify`].
pub trait HttpStatus {
    /// The status code.
    fn status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Debug)]
    struct ServiceErr(ErrorMetadata);

    impl fmt::Display for ServiceErr {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0.code().unwrap_or("?"))
        }
    }

    impl Error for ServiceErr {}

    impl ProvideErrorMetadata for ServiceErr {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    fn service(code: &str, status: u16) -> SdkError<ServiceErr, Response> {
        let raw = Response::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::empty(),
        );
        SdkError::service_error(ServiceErr(ErrorMetadata::builder().code(code).build()), raw)
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_the_rest_permanent() {
        assert_eq!(
            classify(&service("ThrottlingException", 400)),
            Retry::Retryable
        );
        assert_eq!(
            classify(&service("ProvisionedThroughputExceededException", 400)),
            Retry::Retryable
        );
        assert_eq!(classify(&service("Anything", 503)), Retry::Retryable);
        assert_eq!(classify(&service("Anything", 429)), Retry::Retryable);
        assert_eq!(classify(&service("AccessDenied", 403)), Retry::Permanent);
        assert_eq!(
            classify(&service("ResourceNotFoundException", 400)),
            Retry::Permanent
        );
        let timeout: SdkError<ServiceErr, Response> = SdkError::timeout_error("slow");
        assert_eq!(classify(&timeout), Retry::Retryable);
        let unbuilt: SdkError<ServiceErr, Response> = SdkError::construction_failure("bad input");
        assert_eq!(classify(&unbuilt), Retry::Permanent);
    }
}
