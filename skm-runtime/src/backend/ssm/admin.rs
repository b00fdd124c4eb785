//! Writes and inspection: `PutParameter`, `GetParametersByPath`, `DeleteParameter`, `GetParameterHistory`.

use std::time::SystemTime;

use aws_sdk_ssm::primitives::DateTime;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType, Tag};
use secrecy::ExposeSecret;

use super::error::Failure;
use super::name::{self, parameter_name};
use super::SsmBackend;
use crate::backend::{
    AdminError, AdminErrorKind, DeleteMode, FailureKind, ListEntry, PutRequest, SecretValue, VersionInfo, VersionPin,
};

fn time(t: Option<&DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

/// The parameter a write names: a plain path (no `:selector`, no ARN: writes go to this account's store).
fn writable(path: &str) -> Result<String, AdminError> {
    let invalid = |why: String| AdminError::new(FailureKind::Invalid, path, why);
    let wanted = name::wanted(path, &VersionPin::Current).map_err(invalid)?;
    if wanted.selector.is_some() || wanted.base.starts_with("arn:") {
        return Err(invalid(
            "write to a parameter name (`auth/jwt`), not to a version or an ARN".into(),
        ));
    }
    // AWS reserves these prefixes for its own parameters (which can be read, e.g. `/aws/service/...`).
    let first = wanted.base.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(invalid(
            "Parameter Store reserves names starting with `aws` or `ssm` (in any case) for AWS".into(),
        ));
    }
    Ok(wanted.base)
}

pub(super) async fn put(backend: &SsmBackend, request: PutRequest) -> Result<String, AdminError> {
    // Parameter Store has no conditional write: refuse rather than write unchecked.
    crate::backend::cas_unsupported(&request, "AWS SSM Parameter Store")?;
    let path = request.path.as_str();
    let name = writable(path)?;
    let value = match &request.value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => {
            return Err(AdminError::new(
                FailureKind::Unsupported,
                path,
                "Parameter Store holds text only: store binary values encoded (base64)",
            ))
        }
    };
    let tags: Vec<Tag> = request
        .tags
        .iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect();
    let created = backend
        .client
        .put_parameter()
        .name(&name)
        .value(value.clone())
        .r#type(ParameterType::SecureString)
        .set_key_id(backend.kms_key_id.clone())
        .set_description(request.description.clone())
        .set_tags((!tags.is_empty()).then_some(tags))
        .overwrite(false)
        .send()
        .await;
    let failure = match created {
        Ok(out) => return Ok(out.version.to_string()),
        Err(e) => Failure::from_sdk(&e),
    };
    if failure.code.as_deref() != Some("ParameterAlreadyExists") {
        return Err(failure.admin_error(path));
    }
    if request.create_only {
        return Err(AdminError::new(
            AdminErrorKind::AlreadyExists,
            path,
            "the parameter exists and the write is create-only",
        ));
    }
    // A new version of an existing parameter (AWS refuses tags with `Overwrite`: they stay as they are). An
    // overwrite without a key would re-encrypt with `alias/aws/ssm`: keep the parameter's own key.
    let key = match &backend.kms_key_id {
        Some(key) => Some(key.clone()),
        None => key_of(backend, &name).await,
    };
    let put = backend
        .client
        .put_parameter()
        .name(&name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .set_key_id(key)
        .overwrite(true)
        .send()
        .await;
    match put {
        Ok(out) => Ok(out.version.to_string()),
        Err(e) => Err(Failure::from_sdk(&e).admin_error(path)),
    }
}

/// The KMS key of an existing `SecureString` (`DescribeParameters`, no value); `None` if it has none or
/// the caller may not describe it (the overwrite then uses the default key, as AWS does).
async fn key_of(backend: &SsmBackend, name: &str) -> Option<String> {
    let filter = ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(name)
        .build()
        .ok()?;
    let out = backend
        .client
        .describe_parameters()
        .parameter_filters(filter)
        .send()
        .await
        .ok()?;
    out.parameters?
        .into_iter()
        .find(|p| p.name() == Some(name))
        .and_then(|p| p.key_id)
}

pub(super) async fn list(backend: &SsmBackend, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
    let full = parameter_name(prefix);
    // `GetParametersByPath` takes a directory: the prefix's, then the exact prefix test happens here.
    let dir = match full.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => full[..i].to_string(),
    };
    // Shown as the caller spells paths: `auth/jwt` for a prefix without the leading slash.
    let show = |name: String| match prefix.starts_with('/') {
        true => name,
        false => name.strip_prefix('/').map(str::to_string).unwrap_or(name),
    };
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // Without decryption: only names are kept, and no SecureString is decrypted for a listing.
        let page = backend
            .client
            .get_parameters_by_path()
            .path(&dir)
            .recursive(true)
            .with_decryption(false)
            .max_results(10)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| Failure::from_sdk(&e).admin_error(prefix))?;
        for p in page.parameters.unwrap_or_default() {
            let updated = time(p.last_modified_date());
            if let Some(name) = p.name.filter(|n| n.starts_with(&full)) {
                out.push(ListEntry {
                    path: show(name),
                    updated,
                });
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

pub(super) async fn delete(backend: &SsmBackend, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
    if let DeleteMode::RecoveryDays(_) = mode {
        return Err(AdminError::new(
            FailureKind::Unsupported,
            path,
            "Parameter Store has no recovery window: a deleted parameter is gone at once",
        ));
    }
    let name = writable(path)?;
    match backend.client.delete_parameter().name(&name).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let failure = Failure::from_sdk(&e);
            // As `Force` does in AWS Secrets Manager: deleting what is not there is done.
            if mode == DeleteMode::Force && failure.kind == FailureKind::NotFound {
                Ok(())
            } else {
                Err(failure.admin_error(path))
            }
        }
    }
}

pub(super) async fn versions(backend: &SsmBackend, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
    let name = writable(path)?;
    let mut found: Vec<(i64, VersionInfo)> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = backend
            .client
            .get_parameter_history()
            .name(&name)
            .with_decryption(false)
            .max_results(50)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| Failure::from_sdk(&e).admin_error(path))?;
        for v in page.parameters.unwrap_or_default() {
            let info = VersionInfo {
                id: v.version.to_string(),
                created: time(v.last_modified_date()),
                stages: v.labels.clone().unwrap_or_default(),
            };
            found.push((v.version, info));
        }
        match page.next_token {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    found.sort_by_key(|v| std::cmp::Reverse(v.0));
    let mut out: Vec<VersionInfo> = found.into_iter().map(|(_, v)| v).collect();
    if let Some(newest) = out.first_mut() {
        newest.stages.insert(0, "current".into());
    }
    Ok(out)
}
