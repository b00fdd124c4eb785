//! Writes and inspection: `CreateSecret`/`PutSecretValue`, `ListSecrets`, `DeleteSecret`,
//! `ListSecretVersionIds`.

use std::time::SystemTime;

use aws_sdk_secretsmanager::primitives::{Blob, DateTime};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use secrecy::ExposeSecret;

use super::error::Failure;
use super::AwsBackend;
use crate::backend::{AdminError, AdminErrorKind, DeleteMode, ListEntry, PutRequest, SecretValue, VersionInfo};

fn admin_error(path: &str, failure: &Failure) -> AdminError {
    AdminError::new(failure.admin_kind(), path, failure.detail.clone())
}

fn time(t: Option<&DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

pub(super) async fn put(backend: &AwsBackend, request: PutRequest) -> Result<String, AdminError> {
    // No honest atomic check-and-set here yet: refuse rather than write unchecked.
    crate::backend::cas_unsupported(&request, "AWS Secrets Manager")?;
    let path = request.path.as_str();
    let (text, binary) = match &request.value {
        SecretValue::Text(s) => (Some(s.expose_secret().to_string()), None),
        SecretValue::Binary(b) => (None, Some(Blob::new(b.expose_secret().clone()))),
    };
    let tags: Vec<Tag> = request
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let created = backend
        .client
        .create_secret()
        .name(path)
        .set_secret_string(text.clone())
        .set_secret_binary(binary.clone())
        .set_description(request.description.clone())
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await;
    let failure = match created {
        Ok(out) => return version_of(path, out.version_id),
        Err(e) => Failure::from_sdk(&e),
    };
    if failure.admin_kind() != AdminErrorKind::AlreadyExists {
        return Err(admin_error(path, &failure));
    }
    if request.create_only {
        return Err(AdminError::new(
            AdminErrorKind::AlreadyExists,
            path,
            "the secret exists and the write is create-only",
        ));
    }
    // An existing secret gets a new version; its description and tags are left as they are.
    let put = backend
        .client
        .put_secret_value()
        .secret_id(path)
        .set_secret_string(text)
        .set_secret_binary(binary)
        .send()
        .await;
    match put {
        Ok(out) => version_of(path, out.version_id),
        Err(e) => Err(admin_error(path, &Failure::from_sdk(&e))),
    }
}

fn version_of(path: &str, version: Option<String>) -> Result<String, AdminError> {
    version.ok_or_else(|| AdminError::new(AdminErrorKind::Other, path, "AWS returned no VersionId"))
}

/// Whether `prefix` can go into a `name` filter: AWS allows only these characters, and a leading `!`
/// would negate the filter.
fn filterable(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 512
        && !prefix.starts_with('!')
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " :_@/+=.-".contains(c))
}

pub(super) async fn list(backend: &AwsBackend, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
    // The server-side filter only narrows the pages; the exact prefix test happens here.
    let filter = filterable(prefix).then(|| Filter::builder().key(FilterNameStringType::Name).values(prefix).build());
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = backend
            .client
            .list_secrets()
            .set_filters(filter.clone().map(|f| vec![f]))
            .max_results(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| admin_error(prefix, &Failure::from_sdk(&e)))?;
        for secret in page.secret_list.unwrap_or_default() {
            if let Some(name) = secret.name {
                if name.starts_with(prefix) {
                    out.push(ListEntry {
                        path: name,
                        updated: time(secret.last_changed_date.as_ref()).or(time(secret.created_date.as_ref())),
                    });
                }
            }
        }
        match page.next_token {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

pub(super) async fn delete(backend: &AwsBackend, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
    let mut call = backend.client.delete_secret().secret_id(path);
    match mode {
        DeleteMode::Default => {}
        DeleteMode::RecoveryDays(days) => call = call.recovery_window_in_days(i64::from(days)),
        DeleteMode::Force => call = call.force_delete_without_recovery(true),
    }
    call.send()
        .await
        .map(|_| ())
        .map_err(|e| admin_error(path, &Failure::from_sdk(&e)))
}

/// Orders versions created in the same instant (timestamps may have second resolution): pending, then
/// current, then previous, then unlabelled.
fn stage_rank(stages: &[String]) -> u8 {
    let has = |s: &str| stages.iter().any(|x| x == s);
    if has("AWSPENDING") {
        0
    } else if has("AWSCURRENT") {
        1
    } else if has("AWSPREVIOUS") {
        2
    } else {
        3
    }
}

pub(super) async fn versions(backend: &AwsBackend, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = backend
            .client
            .list_secret_version_ids()
            .secret_id(path)
            .include_deprecated(true)
            .max_results(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| admin_error(path, &Failure::from_sdk(&e)))?;
        for v in page.versions.unwrap_or_default() {
            if let Some(id) = v.version_id {
                out.push(VersionInfo {
                    id,
                    created: time(v.created_date.as_ref()),
                    stages: v.version_stages.unwrap_or_default(),
                });
            }
        }
        match page.next_token {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    out.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| stage_rank(&a.stages).cmp(&stage_rank(&b.stages)))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::filterable;

    #[test]
    fn filter_values() {
        assert!(filterable("app/prod/"));
        assert!(filterable("a.b-c_d@e+f=g:h"));
        assert!(!filterable(""));
        assert!(!filterable("!app"));
        assert!(!filterable("app*"));
    }
}
