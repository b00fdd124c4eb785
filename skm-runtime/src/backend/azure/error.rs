//! Key Vault's error answers, mapped to skm's failure kinds with messages that name the declared path and
//! the mapped name.

use azure_core::error::ErrorKind;

use crate::backend::{AdminError, AdminErrorKind, FailureKind, FetchError};

/// The message of an SDK error with its causes (a TLS failure is two levels down), on one line.
pub(super) fn describe(e: &azure_core::Error) -> String {
    let mut text = body_message(e).unwrap_or_else(|| e.to_string());
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    // The SDK's wrapping adds words that tell a user of skm nothing.
    text.replace(
        "\nTo troubleshoot, visit https://aka.ms/azsdk/rust/identity/troubleshoot",
        "",
    )
    .replace("non-transport error occurred which will not be retried: ", "")
}

/// Key Vault's `{"error": {"code", "message", "innererror": {"code"}}}` of an error response.
fn error_body(e: &azure_core::Error) -> Option<serde_json::Value> {
    match e.kind() {
        ErrorKind::HttpResponse {
            raw_response: Some(raw),
            ..
        } => serde_json::from_slice::<serde_json::Value>(raw.body().as_ref())
            .ok()
            .map(|v| v["error"].clone()),
        _ => None,
    }
}

fn body_message(e: &azure_core::Error) -> Option<String> {
    let body = error_body(e)?;
    let code = body["code"].as_str().unwrap_or("");
    let message = body["message"].as_str()?;
    let status = e.http_status().map(u16::from).unwrap_or(0);
    Some(format!("{status} {code}: {message}"))
}

fn inner_code(e: &azure_core::Error) -> Option<String> {
    error_body(e).and_then(|b| b["innererror"]["code"].as_str().map(str::to_string))
}

/// `secret `auth/jwt` (Key Vault name `auth-jwt`)`: errors show both.
pub(super) fn who(path: &str, name: &str) -> String {
    format!("secret `{path}` (Key Vault name `{name}`)")
}

pub(super) fn classify(e: &azure_core::Error, path: &str, name: &str) -> FetchError {
    let status = e.http_status().map(u16::from);
    let detail = format!("{}: {}", who(path, name), describe(e));
    let kind = match (e.kind(), status) {
        (_, Some(404)) => FailureKind::NotFound,
        (_, Some(403)) if is_disabled(e) => {
            return FetchError::new(
                FailureKind::Invalid,
                format!(
                    "{} is disabled in Key Vault: enable it (`az keyvault secret set-attributes --enabled true`) \
                     or pin an enabled version with `version_id`",
                    who(path, name)
                ),
            )
        }
        (_, Some(401 | 403)) => FailureKind::Forbidden,
        (_, Some(429)) => FailureKind::Throttled,
        (_, Some(s)) if s >= 500 => FailureKind::Unavailable,
        (ErrorKind::Credential, _) => FailureKind::Forbidden,
        (ErrorKind::Io | ErrorKind::Connection, _) => FailureKind::Unavailable,
        _ => FailureKind::Other,
    };
    FetchError::new(kind, detail)
}

pub(super) fn is_disabled(e: &azure_core::Error) -> bool {
    inner_code(e).as_deref() == Some("SecretDisabled")
        || error_body(e)
            .and_then(|b| b["message"].as_str().map(|m| m.contains("disabled")))
            .unwrap_or(false)
}

pub(super) fn admin_error(e: &azure_core::Error, path: &str, name: &str) -> AdminError {
    let status = e.http_status().map(u16::from);
    let kind = match (e.kind(), status) {
        (_, Some(404)) => AdminErrorKind::NotFound,
        (_, Some(409)) => AdminErrorKind::AlreadyExists,
        (_, Some(401 | 403)) | (ErrorKind::Credential, _) => AdminErrorKind::Forbidden,
        (_, Some(s)) if s >= 500 || s == 429 => AdminErrorKind::Unavailable,
        (ErrorKind::Io | ErrorKind::Connection, _) => AdminErrorKind::Unavailable,
        _ => AdminErrorKind::Other,
    };
    let detail = if status == Some(409) {
        format!(
            "{} is held by a soft-deleted secret: recover it (`az keyvault secret recover --name {name}`) or \
             purge it (`skm delete --force`, `az keyvault secret purge --name {name}`) before writing ({})",
            who(path, name),
            describe(e)
        )
    } else {
        format!("{}: {}", who(path, name), describe(e))
    };
    AdminError::new(kind, path, detail)
}
