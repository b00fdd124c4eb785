//! Vault's answers mapped to skm's failure kinds, worded without values or tokens.

use vaultrs::error::ClientError;

use crate::backend::{AdminError, AdminErrorKind, FailureKind};

/// What went wrong with one Vault call, with only the parts that are safe to show.
#[derive(Debug, Clone)]
pub(crate) struct VaultFailure {
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The server's error messages, or the transport failure.
    pub message: String,
    /// No answer arrived: refused, reset, TLS failure or timeout.
    pub transport: bool,
    /// The connection was refused: nothing listens there, so trying again within the same call only delays
    /// the answer.
    pub refused: bool,
}

impl VaultFailure {
    fn answered(status: u16, message: String) -> Self {
        VaultFailure {
            status: Some(status),
            message,
            transport: false,
            refused: false,
        }
    }

    fn other(message: String) -> Self {
        VaultFailure {
            status: None,
            message,
            transport: false,
            refused: false,
        }
    }

    fn unreachable(message: String, refused: bool) -> Self {
        VaultFailure {
            status: None,
            message,
            transport: true,
            refused,
        }
    }

    pub(crate) fn from_client(e: &ClientError) -> Self {
        match e {
            ClientError::APIError { code, errors } => Self::answered(*code, server_messages(errors)),
            ClientError::RestClientError { source } => from_rest(source),
            // Its Display is the whole message ("The request returned an empty response"...); none quote bodies.
            other => Self::other(other.to_string()),
        }
    }

    pub(crate) fn kind(&self) -> FailureKind {
        match self.status {
            Some(404) => FailureKind::NotFound,
            Some(401 | 403) => FailureKind::Forbidden,
            Some(429) => FailureKind::Throttled,
            // 503: sealed, or a standby that cannot forward; 500/502/504: the server or a proxy in trouble.
            Some(500 | 502 | 503 | 504) => FailureKind::Unavailable,
            Some(_) => FailureKind::Other,
            None if self.transport => FailureKind::Unavailable,
            None => FailureKind::Other,
        }
    }

    pub(crate) fn admin_kind(&self) -> AdminErrorKind {
        match self.kind() {
            FailureKind::NotFound => AdminErrorKind::NotFound,
            FailureKind::Forbidden => AdminErrorKind::Forbidden,
            FailureKind::Unavailable | FailureKind::Throttled => AdminErrorKind::Unavailable,
            _ => AdminErrorKind::Other,
        }
    }

    /// `HTTP 403: permission denied` or the transport failure.
    pub(crate) fn describe(&self) -> String {
        match self.status {
            Some(code) if self.message.is_empty() => format!("HTTP {code}"),
            Some(code) => format!("HTTP {code}: {}", self.message),
            None => self.message.clone(),
        }
    }

    pub(crate) fn into_admin(self, path: &str, context: &str) -> AdminError {
        AdminError::new(self.admin_kind(), path, format!("{context}: {}", self.describe()))
    }
}

/// Vault's `errors` array. The messages name paths and reasons ("permission denied", "check-and-set
/// parameter did not match"), never data; long ones are cut to keep errors readable.
fn server_messages(errors: &[String]) -> String {
    let joined = errors
        .iter()
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|e| !e.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.chars().count() > 300 {
        let cut: String = joined.chars().take(300).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

fn from_rest(e: &rustify::errors::ClientError) -> VaultFailure {
    use rustify::errors::ClientError as R;
    match e {
        // A body that is not Vault's `{"errors": [...]}` (a soft-deleted KV v2 version answers 404 with a
        // full envelope). The body is never quoted: it could hold data.
        R::ServerResponseError { code, .. } => VaultFailure::answered(*code, String::new()),
        R::RequestError { source, url, method } => {
            let mut chain: Vec<String> = Vec::new();
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(err) = cur {
                let text = err.to_string();
                if !chain.contains(&text) {
                    chain.push(text);
                }
                cur = err.source();
            }
            VaultFailure::unreachable(
                format!(
                    "cannot reach Vault ({method} {}): {}",
                    strip_query(url),
                    chain.join(": ")
                ),
                crate::backend::endpoint::refused(source.as_ref()),
            )
        }
        R::ResponseError { .. } => {
            VaultFailure::unreachable("cannot reach Vault: the answer was cut off".into(), false)
        }
        // Parse errors carry the body in `content`: report only that the answer was unexpected.
        R::ResponseParseError { .. } | R::ResponseConversionError { .. } => {
            VaultFailure::other("Vault's answer could not be parsed (is VAULT_ADDR a Vault server?)".into())
        }
        other => VaultFailure::other(other.to_string()),
    }
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}
