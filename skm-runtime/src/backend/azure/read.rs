//! The read path: one `GET` per distinct request through the shared fan-out in spawned mode, and the checks Key Vault leaves to the
//! client (`enabled`, `nbf`, `exp`).

use std::collections::HashMap;

use async_trait::async_trait;
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_secrets::models::{
    Secret, SecretClientGetSecretOptions, SecretClientListSecretPropertiesVersionsOptions,
};
use azure_security_keyvault_secrets::ResourceExt;
use futures_util::TryStreamExt;

use super::error::{classify, who};
use super::{check_names, secret_name, AzureBackend, Inner, BINARY_CONTENT_TYPE, EXPIRY_WARNING_DAYS};
use crate::backend::distinct::Distinct;
use crate::backend::{
    Backend, FailureKind, FetchError, FetchRequest, FetchResult, SecretPayload, SecretValue, VersionPin,
};

fn date(t: &OffsetDateTime) -> String {
    azure_core::time::to_rfc3339(t)
}

/// Checks `enabled`, `nbf` and `exp` (Key Vault returns such secrets; the client decides), then converts.
fn payload(secret: Secret, path: &str, name: &str) -> FetchResult {
    let attributes = secret.attributes.clone().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    if attributes.enabled == Some(false) {
        return Err(FetchError::new(
            FailureKind::Invalid,
            format!("{} is disabled in Key Vault", who(path, name)),
        ));
    }
    if let Some(nbf) = attributes.not_before.filter(|nbf| *nbf > now) {
        return Err(FetchError::new(
            FailureKind::Invalid,
            format!("{} is not valid before {} (its `nbf`)", who(path, name), date(&nbf)),
        ));
    }
    let mut expiring = None;
    if let Some(exp) = attributes.expires {
        if exp <= now {
            return Err(FetchError::new(
                FailureKind::Invalid,
                format!("{} expired on {} (its `exp`)", who(path, name), date(&exp)),
            ));
        }
        if exp - now <= azure_core::time::Duration::days(EXPIRY_WARNING_DAYS) {
            // The provenance carries it too (see `location` below), so that `skm check` and a
            // `load_report` show it without a log subscriber.
            expiring = Some(date(&exp));
            tracing::warn!(target: "skm", path = %path, name = %name, expires = %date(&exp),
                "{} expires on {}: rotate it", who(path, name), date(&exp));
            tracing::info!(target: "skm::audit", event = "expiring_soon", backend = "azure", path = %path,
                name = %name, expires = %date(&exp), "secret expires within {EXPIRY_WARNING_DAYS} days");
        }
    }
    let version = secret.resource_id().ok().and_then(|id| id.version);
    let binary = secret.content_type.as_deref() == Some(BINARY_CONTENT_TYPE);
    let Some(text) = secret.value else {
        return Err(FetchError::new(
            FailureKind::Other,
            format!("{}: Key Vault returned no value", who(path, name)),
        ));
    };
    let value = if binary {
        use base64::Engine as _;
        match base64::engine::general_purpose::STANDARD.decode(text.as_bytes()) {
            Ok(bytes) => SecretValue::binary(bytes),
            Err(_) => {
                return Err(FetchError::new(
                    FailureKind::Invalid,
                    format!("{}: content type says base64 but the value is not", who(path, name)),
                ))
            }
        }
    } else {
        SecretValue::text(text)
    };
    let payload = SecretPayload::new(value).with_location(location(path, name, version.as_deref(), expiring));
    Ok(match version {
        Some(v) => payload.with_version(v),
        None => payload,
    })
}

/// What provenance shows: `secret auth-jwt (path auth/jwt) version 3f…`, then ` (expires DATE, within 7
/// days: rotate it)` for a secret close to its `exp`. The path is left out where it is the name.
fn location(path: &str, name: &str, version: Option<&str>, expiring: Option<String>) -> String {
    let mut text = format!("secret {name}");
    if path != name {
        text.push_str(&format!(" (path {path})"));
    }
    if let Some(v) = version {
        text.push_str(&format!(" version {v}"));
    }
    if let Some(date) = expiring {
        text.push_str(&format!(
            " (expires {date}, within {EXPIRY_WARNING_DAYS} days: rotate it)"
        ));
    }
    text
}

/// A version's id, creation time and whether it is enabled, from a versions listing.
pub(super) struct VersionMeta {
    pub(super) id: String,
    pub(super) created: Option<OffsetDateTime>,
    pub(super) enabled: bool,
}

impl Inner {
    pub(super) async fn get(&self, name: &str, version: Option<String>) -> azure_core::Result<Secret> {
        self.client
            .get_secret(
                name,
                Some(SecretClientGetSecretOptions {
                    secret_version: version,
                    ..Default::default()
                }),
            )
            .await?
            .into_model()
    }

    pub(super) async fn list_versions(&self, name: &str) -> azure_core::Result<Vec<VersionMeta>> {
        let mut pages = self
            .client
            .list_secret_properties_versions(name, Some(SecretClientListSecretPropertiesVersionsOptions::default()))?
            .into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages.try_next().await? {
            for item in page.into_model()?.value {
                let Some(id) = item.resource_id().ok().and_then(|r| r.version) else {
                    continue;
                };
                let attributes = item.attributes.unwrap_or_default();
                out.push(VersionMeta {
                    id,
                    created: attributes.created,
                    enabled: attributes.enabled != Some(false),
                });
            }
        }
        Ok(out)
    }

    async fn read(&self, path: &str, name: &str, version: &VersionPin) -> FetchResult {
        let secret = match version {
            VersionPin::Current => self.get(name, None).await,
            VersionPin::Id(id) => self.get(name, Some(id.to_string())).await,
            VersionPin::Previous => return self.previous(path, name).await,
            VersionPin::Stage(_) | VersionPin::Number(_) => {
                return Err(FetchError::new(
                    FailureKind::Invalid,
                    format!(
                        "{}: Azure Key Vault has no {version}; pin a version with `version_id = \"...\"`",
                        who(path, name)
                    ),
                ))
            }
        };
        match secret {
            Ok(secret) => payload(secret, path, name),
            Err(e) => Err(classify(&e, path, name)),
        }
    }

    /// The newest enabled version created before the current (latest) one.
    async fn previous(&self, path: &str, name: &str) -> FetchResult {
        let versions = self.list_versions(name).await.map_err(|e| classify(&e, path, name))?;
        // The current version is the newest created; Key Vault lists versions in no promised order.
        let Some(current) = versions.iter().filter_map(|v| v.created).max() else {
            return Err(FetchError::not_found(format!("{} has no versions", who(path, name))));
        };
        let previous = versions
            .iter()
            .filter(|v| v.enabled && v.created.is_some_and(|c| c < current))
            .max_by_key(|v| v.created);
        match previous {
            None => Err(FetchError::not_found(format!(
                "{} has no enabled version created before the current one",
                who(path, name)
            ))),
            Some(v) => match self.get(name, Some(v.id.clone())).await {
                Ok(secret) => payload(secret, path, name),
                Err(e) => Err(classify(&e, path, name)),
            },
        }
    }
}

#[async_trait]
impl Backend for AzureBackend {
    /// `Azure Key Vault https://NAME.vault.azure.net`: the vault's URL, as `AZURE_KEYVAULT_URL` names it.
    fn name(&self) -> String {
        format!("Azure Key Vault {}", self.inner.vault_url)
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        // Identical requests cost one read (the plan already asks once; tools may not).
        let distinct = Distinct::of(requests);
        let mut answers: Vec<Option<FetchResult>> = vec![None; distinct.unique.len()];
        // Names first: a bad or colliding path fails before any request.
        let problems: HashMap<String, String> = check_names(distinct.unique.iter().map(|r| r.path.as_str()))
            .into_iter()
            .collect();
        let mut rest: Vec<(usize, FetchRequest)> = Vec::new();
        for (slot, r) in distinct.unique.iter().enumerate() {
            match problems.get(&r.path) {
                Some(problem) => answers[slot] = Some(Err(FetchError::new(FailureKind::Invalid, problem.clone()))),
                None => rest.push((slot, (*r).clone())),
            }
        }
        if self.inner.warmed.get().is_none() && !rest.is_empty() {
            let (slot, first) = rest.remove(0);
            let name = secret_name(&first.path).expect("checked above");
            let answer = self.inner.read(&first.path, &name, &first.version).await;
            // An answer from the vault (even a refusal) means the challenge was seen; a connection
            // failure means it was not, and the next load warms up again.
            let reached = match &answer {
                Ok(_) => true,
                Err(e) => !matches!(e.kind, FailureKind::Unavailable | FailureKind::Other),
            };
            if reached {
                let _ = self.inner.warmed.set(());
            }
            // No credential worked: every other read would run the whole chain again to say the same.
            let failed_auth = answer
                .as_ref()
                .err()
                .filter(|e| e.kind == FailureKind::Forbidden && e.detail.contains("no Azure credential worked"));
            // The vault did not answer (within the call bound, retries included): every other read would
            // wait as long, past the loader's deadline. Each says so under its own name.
            let unavailable = answer.as_ref().err().filter(|e| e.kind == FailureKind::Unavailable);
            if let Some(e) = failed_auth {
                for (slot, _) in rest.drain(..) {
                    answers[slot] = Some(Err(e.clone()));
                }
            } else if let Some(e) = unavailable {
                for (slot, r) in rest.drain(..) {
                    let name = secret_name(&r.path).expect("checked above");
                    let detail = format!(
                        "{}: not sent: the first read of this load found the vault unavailable ({})",
                        who(&r.path, &name),
                        e.detail
                    );
                    answers[slot] = Some(Err(FetchError::new(FailureKind::Unavailable, detail)));
                }
            }
            answers[slot] = Some(answer);
        }
        // The shared fan-out in spawned mode, not polled: the SDK's per-request work (its pipeline and
        // policies) is enough CPU that one task started only 19 of 32 reads within a 20 ms round trip
        // (`fifty_secrets_are_fifty_concurrent_gets`, a debug build with a build running beside it); tasks
        // spread it over the runtime's threads. A read still throttled after the SDK's retries is tried again
        // within the patience (default none); a task's panic resumes here (the fan-out's one panic policy).
        let mut tasks = self.inner.fan_out().spawner::<(usize, FetchResult)>();
        for (slot, request) in rest {
            let inner = self.inner.clone();
            let what = request.path.clone();
            tasks.spawn_retried(
                "GetSecret",
                what,
                move || {
                    let (inner, request) = (inner.clone(), request.clone());
                    async move {
                        let name = secret_name(&request.path).expect("checked above");
                        inner.read(&request.path, &name, &request.version).await
                    }
                },
                move |answer| (slot, answer),
            );
        }
        while let Some((slot, answer)) = tasks.next().await {
            answers[slot] = Some(answer);
        }
        // A slot still empty: its task was cancelled (the runtime is shutting down); `spread` reports it.
        distinct.spread(answers)
    }
}
