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
    // The inner code tells apart what the outer one lumps together (409 `Conflict`: soft-deleted, being
    // deleted, being recovered), and is what Microsoft's documentation and other tools name.
    Some(match inner_code(e) {
        Some(inner) => format!("{status} {code} ({inner}): {message}"),
        None => format!("{status} {code}: {message}"),
    })
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

/// An admin operation's error. `vault_url` names the vault in the recovery commands of a soft-deleted name.
pub(super) fn admin_error(e: &azure_core::Error, path: &str, name: &str, vault_url: &str) -> AdminError {
    let status = e.http_status().map(u16::from);
    let kind = match (e.kind(), status) {
        (_, Some(404)) => AdminErrorKind::NotFound,
        // Key Vault's 409s are all conflicts with the name's state (soft-deleted, being deleted or recovered),
        // never "a secret exists": setting an existing name adds a version.
        (_, Some(409)) => AdminErrorKind::Conflict,
        (_, Some(401 | 403)) | (ErrorKind::Credential, _) => AdminErrorKind::Forbidden,
        (_, Some(s)) if s >= 500 || s == 429 => AdminErrorKind::Unavailable,
        (ErrorKind::Io | ErrorKind::Connection, _) => AdminErrorKind::Unavailable,
        _ => AdminErrorKind::Other,
    };
    let detail = if is_soft_deleted(e) {
        let id = format!("{}/deletedsecrets/{name}", vault_url.trim_end_matches('/'));
        format!(
            "{} is soft-deleted (deleted but not purged), and Key Vault keeps its name until it is recovered or \
             purged: recover it to keep its versions (`az keyvault secret recover --id {id}`), or purge it for \
             good (`skm delete {path} --force`, or `az keyvault secret purge --id {id}`), then write again ({})",
            who(path, name),
            describe(e)
        )
    } else {
        format!("{}: {}", who(path, name), describe(e))
    };
    AdminError::new(kind, path, detail)
}

/// Whether Key Vault refused a name because a soft-deleted secret holds it: `409 Conflict` with
/// `innererror.code` `ObjectIsDeletedButRecoverable`.
pub(super) fn is_soft_deleted(e: &azure_core::Error) -> bool {
    e.http_status().map(u16::from) == Some(409) && inner_code(e).as_deref() == Some("ObjectIsDeletedButRecoverable")
}
