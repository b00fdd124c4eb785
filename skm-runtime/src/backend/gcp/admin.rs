//! Writes and inspection: create, add version, list, versions, version states, delete, labels.

use std::collections::HashMap;
use std::time::SystemTime;

use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::paginator::ItemPaginator as _;
use google_cloud_secretmanager_v1::model::replication::user_managed::Replica;
use google_cloud_secretmanager_v1::model::replication::{Automatic, UserManaged};
use google_cloud_secretmanager_v1::model::secret_version::State;
use google_cloud_secretmanager_v1::model::{Replication as GcpReplication, Secret, SecretPayload, SecretVersion};
use secrecy::ExposeSecret;

use super::error::Failure;
use super::names::{resolve, SecretName};
use super::{GcpBackend, Replication, VersionState};
use crate::backend::{AdminError, AdminErrorKind, DeleteMode, ListEntry, PutRequest, SecretValue, VersionInfo};

impl GcpBackend {
    pub(super) fn name_for(&self, path: &str) -> Result<SecretName, AdminError> {
        resolve(&self.inner.project, path).map_err(|e| AdminError::new(AdminErrorKind::Other, path, e))
    }
}

/// The parent of a secret: `projects/P` or `projects/P/locations/L`.
fn parent(name: &SecretName) -> String {
    name.resource
        .rsplit_once("/secrets/")
        .map_or_else(|| format!("projects/{}", name.project()), |(p, _)| p.to_string())
}

/// GCP labels: keys start with a lowercase letter, keys and values take lowercase letters, digits, `_` and
/// `-`, at most 63 characters. Checked here so that the error says which tag and how to fix it.
fn labels(path: &str, tags: &[(String, String)]) -> Result<HashMap<String, String>, AdminError> {
    let ok = |s: &str| {
        s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    let mut out = HashMap::new();
    for (k, v) in tags {
        if k.is_empty() || !k.starts_with(|c: char| c.is_ascii_lowercase()) || !ok(k) || !ok(v) {
            return Err(AdminError::new(
                AdminErrorKind::Other,
                path,
                format!(
                    "tag `{k}={v}` is not a valid GCP label: keys start with a lowercase letter; keys and \
                     values take lowercase letters, digits, `_` and `-`, up to 63 characters"
                ),
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn bytes_of(value: &SecretValue) -> Vec<u8> {
    match value {
        SecretValue::Text(t) => t.expose_secret().as_bytes().to_vec(),
        SecretValue::Binary(b) => b.expose_secret().clone(),
    }
}

pub(super) async fn put(backend: &GcpBackend, request: PutRequest) -> Result<String, AdminError> {
    let path = request.path.as_str();
    if request.expected_version.is_some() {
        // AddSecretVersion takes no precondition: refuse rather than write unchecked (`supports_cas` is false).
        return Err(AdminError::new(
            AdminErrorKind::Unsupported,
            path,
            "Secret Manager cannot add a version only if the current one is a given version (no check-and-set)",
        ));
    }
    let name = backend.name_for(path)?;
    let labels = labels(path, &request.tags)?;
    let client = &backend.inner.client;
    let replication = match &backend.inner.replication {
        Replication::Automatic => GcpReplication::new().set_automatic(Automatic::new()),
        Replication::UserManaged(locations) => GcpReplication::new().set_user_managed(
            UserManaged::new().set_replicas(locations.iter().map(|l| Replica::new().set_location(l.clone()))),
        ),
    };
    let created = client
        .create_secret()
        .set_parent(parent(&name))
        .set_secret_id(name.id())
        .set_secret(Secret::new().set_replication(replication).set_labels(labels.clone()))
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) => {
            let f = Failure::from_gax(&e);
            if !f.is(Code::AlreadyExists) {
                return Err(f.admin_error(path, &format!("creating {name}")));
            }
            if request.create_only {
                return Err(AdminError::new(
                    AdminErrorKind::AlreadyExists,
                    path,
                    format!("{name} already exists (create only)"),
                ));
            }
            if !labels.is_empty() {
                set_labels(backend, &name, labels)
                    .await
                    .map_err(|f| f.admin_error(path, "updating labels"))?;
            }
        }
    }
    let data = bytes_of(&request.value);
    // Sent so that Google rejects a payload corrupted on the way (drongo does not check it).
    let crc = i64::from(crc32c::crc32c(&data));
    let version = client
        .add_secret_version()
        .set_parent(name.resource.clone())
        .set_payload(SecretPayload::new().set_data(data).set_data_crc32c(crc))
        .send()
        .await
        .map_err(|e| Failure::from_gax(&e).admin_error(path, &format!("adding a version to {name}")))?;
    Ok(version_number(&version.name))
}

/// Merges `labels` into the secret's labels (existing ones the request does not name are kept).
async fn set_labels(backend: &GcpBackend, name: &SecretName, labels: HashMap<String, String>) -> Result<(), Failure> {
    let client = &backend.inner.client;
    let secret = client
        .get_secret()
        .set_name(name.resource.clone())
        .send()
        .await
        .map_err(|e| Failure::from_gax(&e))?;
    let mut merged = secret.labels.clone();
    merged.extend(labels);
    client
        .update_secret()
        .set_secret(Secret::new().set_name(name.resource.clone()).set_labels(merged))
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels"]))
        .send()
        .await
        .map_err(|e| Failure::from_gax(&e))?;
    Ok(())
}

fn version_number(version_name: &str) -> String {
    version_name.rsplit('/').next().unwrap_or(version_name).to_string()
}

fn time(ts: Option<&google_cloud_wkt::Timestamp>) -> Option<SystemTime> {
    ts.and_then(|t| SystemTime::try_from(*t).ok())
}

/// Every secret of the project whose id starts with `prefix` mapped as paths are (`a/b/` → `a-b-`),
/// sorted. Paths are the secret ids: the mapping cannot be undone (`a/b` and `a-b` are one id).
pub(super) async fn list(backend: &GcpBackend, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
    let project = &backend.inner.project;
    let wanted = prefix.trim_start_matches('/').replace('/', "-");
    let mut items = backend
        .inner
        .client
        .list_secrets()
        .set_parent(format!("projects/{project}"))
        .set_page_size(25_000)
        .by_item();
    let mut out = Vec::new();
    while let Some(item) = items.next().await {
        let secret = item.map_err(|e| Failure::from_gax(&e).admin_error(prefix, "listing secrets"))?;
        let id = version_number(&secret.name);
        if id.starts_with(&wanted) {
            out.push(ListEntry {
                path: id,
                updated: time(secret.create_time.as_ref()),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

pub(super) async fn delete(backend: &GcpBackend, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
    let name = backend.name_for(path)?;
    if let DeleteMode::RecoveryDays(days) = mode {
        return Err(AdminError::new(
            AdminErrorKind::Unsupported,
            path,
            format!(
                "Secret Manager has no recovery window ({days} days asked): deleting is immediate; disable \
                 the versions instead to keep them recoverable"
            ),
        ));
    }
    match backend
        .inner
        .client
        .delete_secret()
        .set_name(name.resource.clone())
        .send()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => {
            let f = Failure::from_gax(&e);
            // As with AWS's forced delete: the goal, no such secret, holds.
            if mode == DeleteMode::Force && f.is(Code::NotFound) {
                return Ok(());
            }
            Err(f.admin_error(path, &format!("deleting {name}")))
        }
    }
}

/// The versions, newest first, each with its state (`enabled`, `disabled`, `destroyed`) as a stage and
/// `current` on the newest (Google's `latest`).
pub(super) async fn versions(backend: &GcpBackend, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
    let name = backend.name_for(path)?;
    let mut items = backend
        .inner
        .client
        .list_secret_versions()
        .set_parent(name.resource.clone())
        .by_item();
    let mut all: Vec<SecretVersion> = Vec::new();
    while let Some(item) = items.next().await {
        all.push(item.map_err(|e| Failure::from_gax(&e).admin_error(path, &format!("listing versions of {name}")))?);
    }
    // Google lists newest first; drongo oldest first: order by number either way.
    all.sort_by_key(|v| std::cmp::Reverse(version_number(&v.name).parse::<u64>().unwrap_or(0)));
    Ok(all
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut stages = Vec::new();
            if i == 0 {
                stages.push("current".to_string());
            }
            stages.push(VersionState::from_gcp(&v.state).to_string());
            VersionInfo {
                id: version_number(&v.name),
                stages,
                created: time(v.create_time.as_ref()),
            }
        })
        .collect())
}

/// Disables, enables or destroys one version.
pub(super) async fn set_state(
    backend: &GcpBackend,
    path: &str,
    version: u64,
    state: VersionState,
) -> Result<VersionState, AdminError> {
    let name = backend.name_for(path)?;
    let version_name = name.version(&version.to_string());
    let client = &backend.inner.client;
    let answer = match state {
        VersionState::Disabled => client.disable_secret_version().set_name(version_name).send().await,
        VersionState::Enabled => client.enable_secret_version().set_name(version_name).send().await,
        VersionState::Destroyed => client.destroy_secret_version().set_name(version_name).send().await,
    };
    answer.map(|v| VersionState::from_gcp(&v.state)).map_err(|e| {
        Failure::from_gax(&e).admin_error(path, &format!("setting version {version} of {name} to {state}"))
    })
}

impl VersionState {
    fn from_gcp(state: &State) -> VersionState {
        match state {
            State::Enabled => VersionState::Enabled,
            State::Disabled => VersionState::Disabled,
            // Unspecified or a state this client does not know: not readable, so not "enabled".
            _ => VersionState::Destroyed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_must_be_valid_labels() {
        assert!(labels("p", &[("team".into(), "payments-1".into())]).is_ok());
        let e = labels("p", &[("Team".into(), "x".into())]).unwrap_err();
        assert!(e.detail.contains("`Team=x`"), "{e}");
        assert!(labels("p", &[("team".into(), "Payments".into())]).is_err());
        assert!(labels("p", &[("1team".into(), "x".into())]).is_err());
    }

    #[test]
    fn parents_of_global_and_regional_secrets() {
        assert_eq!(parent(&resolve("p", "a/b").unwrap()), "projects/p");
        assert_eq!(
            parent(&resolve("p", "projects/q/locations/eu/secrets/x").unwrap()),
            "projects/q/locations/eu"
        );
    }
}
