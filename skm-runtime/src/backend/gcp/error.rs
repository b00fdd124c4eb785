//! Google API errors to skm's failure kinds, by gRPC status code (the REST error's `status`), then by HTTP
//! status when a proxy or load balancer answered without Google's error body.

use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::error::Error;

use crate::backend::{AdminError, AdminErrorKind, FailureKind, FetchError};

/// What went wrong, classified once for both the read and the admin side.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    /// The status code, when Google's error body was read.
    pub code: Option<Code>,
    /// Google's code and message (never a payload: error bodies do not carry one).
    pub detail: String,
}

impl Failure {
    pub(crate) fn from_gax(e: &Error) -> Failure {
        if let Some(status) = e.status() {
            let kind = match status.code {
                Code::NotFound => FailureKind::NotFound,
                Code::PermissionDenied | Code::Unauthenticated => FailureKind::Forbidden,
                Code::ResourceExhausted => FailureKind::Throttled,
                Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => FailureKind::Unavailable,
                _ => FailureKind::Other,
            };
            return Failure {
                kind,
                code: Some(status.code),
                detail: format!("{}: {}", status.code.name(), status.message),
            };
        }
        if let Some(http) = e.http_status_code() {
            let kind = match http {
                404 => FailureKind::NotFound,
                401 | 403 => FailureKind::Forbidden,
                429 => FailureKind::Throttled,
                500..=599 => FailureKind::Unavailable,
                _ => FailureKind::Other,
            };
            return Failure {
                kind,
                code: None,
                detail: format!("HTTP {http}"),
            };
        }
        let kind = if e.is_authentication() {
            FailureKind::Forbidden
        } else if e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport() || e.is_exhausted() {
            FailureKind::Unavailable
        } else {
            FailureKind::Other
        };
        // The whole cause chain on one line, so that the root cause ("Connection refused") shows.
        let chain = crate::backend::endpoint::one_line(e);
        let detail = if e.is_authentication() {
            format!("credentials: {chain}")
        } else {
            chain
        };
        Failure {
            kind,
            code: None,
            detail,
        }
    }

    pub(crate) fn is(&self, code: Code) -> bool {
        self.code == Some(code)
    }

    pub(crate) fn fetch_error(&self, what: &str) -> FetchError {
        let hint = match self.kind {
            FailureKind::Forbidden => {
                "; the caller needs roles/secretmanager.secretAccessor on the secret (see `gcp::policy`)"
            }
            _ => "",
        };
        FetchError::new(self.kind, format!("{what}: {}{hint}", self.detail))
    }

    pub(crate) fn admin_error(&self, path: &str, what: &str) -> AdminError {
        let kind = match (self.kind, self.code) {
            (_, Some(Code::AlreadyExists)) => AdminErrorKind::AlreadyExists,
            (FailureKind::NotFound, _) => AdminErrorKind::NotFound,
            (FailureKind::Forbidden, _) => AdminErrorKind::Forbidden,
            (FailureKind::Unavailable | FailureKind::Throttled, _) => AdminErrorKind::Unavailable,
            _ => AdminErrorKind::Other,
        };
        AdminError::new(kind, path, format!("{what}: {}", self.detail))
    }
}
