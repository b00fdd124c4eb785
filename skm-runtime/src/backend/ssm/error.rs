//! SDK errors → [`FailureKind`], by error *code* (never by HTTP status: AWS puts most client errors under
//! 400). Details carry the code and AWS's message, which never include a parameter's value.

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};

use crate::backend::{AdminError, FailureKind, FetchError};

/// What went wrong with one SDK call.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    /// The AWS error code (`ParameterNotFound`), when the service answered with one.
    pub code: Option<String>,
    /// The category.
    pub kind: FailureKind,
    /// For people: `code: message`, or the transport error chain on one line.
    pub detail: String,
}

impl Failure {
    /// Classifies an SDK error.
    pub fn from_sdk<E>(err: &SdkError<E>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let one_line = || crate::backend::endpoint::one_line(err);
        match err {
            SdkError::ServiceError(ctx) => {
                let code = ctx.err().code().map(str::to_string);
                let message = ctx.err().message().unwrap_or("");
                let status = ctx.raw().status().as_u16();
                let kind = match code.as_deref() {
                    Some(code) => kind_of_code(code),
                    None => kind_of_status(status),
                };
                let detail = match (&code, message.is_empty()) {
                    (Some(code), false) => format!("{code}: {message}"),
                    (Some(code), true) => code.clone(),
                    (None, _) => format!("HTTP {status} without an error code"),
                };
                Failure { code, kind, detail }
            }
            // No answer (network, DNS, TLS, a timeout, credentials that could not be loaded), or an answer
            // that is not AWS's (a proxy's page): outages a lower layer may cover for.
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Failure {
                code: None,
                kind: FailureKind::Unavailable,
                detail: one_line(),
            },
            _ => Failure {
                code: None,
                kind: FailureKind::Other,
                detail: one_line(),
            },
        }
    }

    /// The same failure for a read.
    pub fn fetch_error(&self) -> FetchError {
        FetchError::new(self.kind, self.detail.clone())
    }

    /// The same failure for an admin operation on `path`.
    pub fn admin_error(&self, path: &str) -> AdminError {
        let kind = match self.code.as_deref() {
            Some("ParameterAlreadyExists") => FailureKind::AlreadyExists,
            _ if self.kind == FailureKind::Throttled => FailureKind::Unavailable,
            _ => self.kind,
        };
        AdminError::new(kind, path, self.detail.clone())
    }
}

/// The category of an AWS error code.
fn kind_of_code(code: &str) -> FailureKind {
    match code {
        "ParameterNotFound" | "ParameterVersionNotFound" => FailureKind::NotFound,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => FailureKind::Forbidden,
        // `TooManyUpdates`: concurrent writes of one parameter; worth trying again like a throttle.
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "TooManyUpdates" => FailureKind::Throttled,
        "InvalidKeyId" => FailureKind::Decryption,
        kms if kms.starts_with("KMS") || kms.starts_with("Kms") => FailureKind::Decryption,
        "InternalServerError" | "InternalFailure" | "ServiceUnavailable" | "ServiceUnavailableException" => {
            FailureKind::Unavailable
        }
        "ValidationException" | "HierarchyLevelLimitExceededException" | "HierarchyTypeMismatchException" => {
            FailureKind::Invalid
        }
        _ => FailureKind::Other,
    }
}

/// The category of an error answer without a code.
fn kind_of_status(status: u16) -> FailureKind {
    match status {
        404 => FailureKind::NotFound,
        401 | 403 => FailureKind::Forbidden,
        429 => FailureKind::Throttled,
        500..=599 => FailureKind::Unavailable,
        _ => FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(kind_of_code("ParameterNotFound"), FailureKind::NotFound);
        assert_eq!(kind_of_code("ParameterVersionNotFound"), FailureKind::NotFound);
        assert_eq!(kind_of_code("AccessDeniedException"), FailureKind::Forbidden);
        assert_eq!(kind_of_code("ThrottlingException"), FailureKind::Throttled);
        assert_eq!(kind_of_code("InvalidKeyId"), FailureKind::Decryption);
        assert_eq!(kind_of_code("KMSAccessDeniedException"), FailureKind::Decryption);
        assert_eq!(kind_of_code("InternalServerError"), FailureKind::Unavailable);
        assert_eq!(kind_of_code("ValidationException"), FailureKind::Invalid);
        assert_eq!(kind_of_code("ParameterLimitExceeded"), FailureKind::Other);
        let exists = Failure {
            code: Some("ParameterAlreadyExists".into()),
            kind: FailureKind::Other,
            detail: "d".into(),
        };
        assert_eq!(exists.admin_error("p").kind, FailureKind::AlreadyExists);
    }
}
