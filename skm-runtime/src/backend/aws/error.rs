//! SDK errors → [`FailureKind`] / [`AdminErrorKind`], by error *code*.
//!
//! Codes, not HTTP statuses, decide: moto answers `ResourceNotFoundException` with 404 where AWS uses 400,
//! and AWS itself puts most client errors under 400. Details carry the code and AWS's message, which never
//! include a secret value; whole responses are never formatted.

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::backend::{AdminErrorKind, FailureKind};

/// What went wrong with one SDK call, reduced to what the rest of the backend needs.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    /// The AWS error code (`ResourceNotFoundException`), when the service answered with one.
    pub code: Option<String>,
    /// The category.
    pub kind: FailureKind,
    /// For people: `code: message`, or the transport error chain on one line (root cause last).
    pub detail: String,
}

impl Failure {
    /// Classifies an SDK error.
    pub fn from_sdk<E>(err: &SdkError<E>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match err {
            SdkError::ServiceError(ctx) => {
                let code = ctx.err().code().map(str::to_string);
                let message = ctx.err().message().unwrap_or("");
                let status = ctx.raw().status().as_u16();
                let kind = match code.as_deref() {
                    Some(code) => kind_of_code(code, message),
                    None => kind_of_status(status),
                };
                let detail = match (&code, message.is_empty()) {
                    (Some(code), false) => format!("{code}: {message}"),
                    (Some(code), true) => code.clone(),
                    (None, _) => format!("HTTP {status} without an error code"),
                };
                Failure { code, kind, detail }
            }
            // The request never got an answer: the network, DNS, TLS, a timeout, or credentials that could
            // not be loaded. All of these are outages a lower layer may cover for.
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Failure {
                code: None,
                kind: FailureKind::Unavailable,
                detail: crate::backend::endpoint::one_line(err),
            },
            // An answer that is not an AWS response (a proxy's HTML page, a cut-off body).
            SdkError::ResponseError(_) => Failure {
                code: None,
                kind: FailureKind::Unavailable,
                detail: crate::backend::endpoint::one_line(err),
            },
            _ => Failure {
                code: None,
                kind: FailureKind::Other,
                detail: crate::backend::endpoint::one_line(err),
            },
        }
    }

    /// A per-secret entry of `BatchGetSecretValue`'s `Errors[]`.
    pub fn from_batch_entry(code: Option<&str>, message: Option<&str>) -> Failure {
        let code = code.unwrap_or("UnknownError");
        let message = message.unwrap_or("");
        Failure {
            code: Some(code.to_string()),
            kind: kind_of_code(code, message),
            detail: if message.is_empty() {
                code.to_string()
            } else {
                format!("{code}: {message}")
            },
        }
    }

    /// Whether the caller lacks permission for the operation itself (not for one secret).
    pub fn is_access_denied(&self) -> bool {
        self.code.as_deref() == Some("AccessDeniedException")
    }

    /// Whether the endpoint does not know the operation (an older emulator, a restricted VPC endpoint
    /// policy rewriting the error).
    pub fn is_unknown_operation(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("UnknownOperationException" | "InvalidAction" | "NotImplemented")
        )
    }

    /// The same failure as an [`AdminErrorKind`].
    pub fn admin_kind(&self) -> AdminErrorKind {
        if self.code.as_deref() == Some("ResourceExistsException") {
            return AdminErrorKind::AlreadyExists;
        }
        match self.kind {
            FailureKind::NotFound => AdminErrorKind::NotFound,
            FailureKind::Forbidden => AdminErrorKind::Forbidden,
            FailureKind::Unavailable | FailureKind::Throttled => AdminErrorKind::Unavailable,
            _ => AdminErrorKind::Other,
        }
    }
}

/// The category of an AWS error code.
fn kind_of_code(code: &str, message: &str) -> FailureKind {
    match code {
        "ResourceNotFoundException" => FailureKind::NotFound,
        // Reading a secret scheduled for deletion: it exists only to be restored, so for a reader it is gone.
        "InvalidRequestException" if mentions_deletion(message) => FailureKind::NotFound,
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
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "RequestLimitExceeded" => {
            FailureKind::Throttled
        }
        "DecryptionFailure" => FailureKind::Decryption,
        kms if kms.starts_with("KMS") => FailureKind::Decryption,
        "InternalServiceError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => FailureKind::Unavailable,
        _ => FailureKind::Other,
    }
}

fn mentions_deletion(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("marked deleted") || m.contains("marked for deletion") || m.contains("scheduled for deletion")
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
        let kind = |code| Failure::from_batch_entry(Some(code), Some("m")).kind;
        assert_eq!(kind("ResourceNotFoundException"), FailureKind::NotFound);
        assert_eq!(kind("AccessDeniedException"), FailureKind::Forbidden);
        assert_eq!(kind("DecryptionFailure"), FailureKind::Decryption);
        assert_eq!(kind("KMSInvalidStateException"), FailureKind::Decryption);
        assert_eq!(kind("ThrottlingException"), FailureKind::Throttled);
        assert_eq!(kind("InternalServiceError"), FailureKind::Unavailable);
        assert_eq!(kind("InvalidParameterException"), FailureKind::Other);
        let deleted = Failure::from_batch_entry(
            Some("InvalidRequestException"),
            Some("You can't perform this operation on the secret because it was marked for deletion."),
        );
        assert_eq!(deleted.kind, FailureKind::NotFound);
        assert_eq!(
            Failure::from_batch_entry(Some("InvalidRequestException"), Some("other")).kind,
            FailureKind::Other
        );
    }

    #[test]
    fn admin_kinds() {
        let f = |code| Failure::from_batch_entry(Some(code), None).admin_kind();
        assert_eq!(f("ResourceExistsException"), AdminErrorKind::AlreadyExists);
        assert_eq!(f("ResourceNotFoundException"), AdminErrorKind::NotFound);
        assert_eq!(f("AccessDeniedException"), AdminErrorKind::Forbidden);
        assert_eq!(f("ThrottlingException"), AdminErrorKind::Unavailable);
        assert_eq!(f("LimitExceededException"), AdminErrorKind::Other);
    }
}
