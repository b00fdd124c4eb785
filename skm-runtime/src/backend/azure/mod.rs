//! Azure Key Vault (cargo feature `azure`), through Microsoft's `azure_security_keyvault_secrets`,
//! `azure_identity` and `azure_core`.
//!
//! # Mapping
//! - A declared path becomes a Key Vault secret name with `/` mapped to `-` (`auth/jwt` → `auth-jwt`), see
//!   [`secret_name`]. Any character other than letters, digits, `-` and `/` is an error, and two paths of
//!   one load that map to one name (names are case-insensitive) are an error naming both ([`check_names`]).
//!   Errors show the declared path and the mapped name.
//! - The value is a string; a `key` reads a property of the JSON object it holds. Binary values written by
//!   skm are base64 with content type [`BINARY_CONTENT_TYPE`] and read back as bytes.
//! - Versions: the latest by default; `version_id = "..."` pins a version;
//!   [`VersionPin::Previous`] (a `Rotating` field) is the newest *enabled*
//!   version created before the current one. Staging labels and numbered versions do not exist in Key Vault
//!   and fail as *invalid*.
//! - A disabled secret is an error that says so (*invalid*, no fallback). Key Vault leaves `nbf` and `exp`
//!   to the client: a secret not valid yet or expired is an *invalid* error naming the date; one that
//!   expires within [`EXPIRY_WARNING_DAYS`] days loads, with a warning on the `skm` log target and an
//!   `skm::audit` event.
//!
//! # Requests
//! Key Vault has no batch read: one [`fetch`](Backend::fetch) deduplicates its requests and reads each
//! name with its own `GET`, at most [`AzureBackendBuilder::concurrency`] (default 32) in flight. The first
//! request of a backend goes alone: Key Vault answers it with the bearer challenge that tells the client
//! which token to get, and sending the others before the client knows would have each of them challenged.
//! Retries (throttling, 5xx, connection errors) are the SDK's exponential backoff with jitter, 3 retries
//! and 10 s at most; connecting is bounded to 5 s and a request to 10 s, so an unreachable vault or an
//! untrusted certificate fails in seconds.
//!
//! # Credentials
//! [`AzureBackend::from_env`] tries, in this order, and uses the first that returns a token:
//! 1. **environment client secret**: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`;
//! 2. **workload identity** (AKS): `AZURE_FEDERATED_TOKEN_FILE` with `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`;
//! 3. **managed identity** (VM, App Service, Container Apps): user-assigned when `AZURE_CLIENT_ID` is set;
//! 4. **Azure CLI**, then **Azure Developer CLI** (`az login`, `azd auth login`) for developers.
//!
//! When none works, the error lists what each step said. `SKM_AZURE_CREDENTIAL=env|workload|managed|cli`
//! keeps only one step.
//!
//! # Environment
//! | variable | meaning |
//! |---|---|
//! | `AZURE_KEYVAULT_URL` | the vault, `https://NAME.vault.azure.net` (required; selects this backend) |
//! | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` | a service principal |
//! | `AZURE_FEDERATED_TOKEN_FILE` | workload identity's token file |
//! | `AZURE_AUTHORITY_HOST` | another Microsoft Entra authority (sovereign clouds, a test server) |
//! | `SKM_AZURE_CREDENTIAL` | `env`, `workload`, `managed` or `cli`: only that credential |
//! | `SKM_AZURE_CA_CERT` | a PEM file of extra trusted roots (a private CA, a test server) |
//! | `SKM_AZURE_CONCURRENCY` | requests in flight per load (default 32) |
//! | `SKM_AZURE_TIMEOUT_SECS` | timeout of one request (default 10) |
//!
//! Transport is HTTPS only (rustls with the ring provider). The SDK's check that the challenge's resource
//! matches the vault's domain stays on, except for a loopback vault URL (a test server).
//!
//! # Permissions
//! Loading needs the role "Key Vault Secrets User" (data action `secrets/getSecret/action`, and
//! `secrets/readMetadata/action` for `Rotating` fields) on each secret; [`role_assignments`] renders the
//! assignments. The `skm` tool's writes need "Key Vault Secrets Officer"; `--force` deletes (purge) need
//! purge permission as well.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_secrets::models::{
    Secret, SecretAttributes, SecretClientGetSecretOptions, SecretClientListSecretPropertiesVersionsOptions,
    SetSecretParameters,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient};
use futures_util::TryStreamExt;
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{
    AdminBackend, AdminError, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchError, FetchRequest, FetchResult,
    ListEntry, PutRequest, SecretPayload, SecretValue, VersionInfo, VersionPin,
};
use crate::Error;

mod builder;
mod credential;
mod names;
pub mod policy;

pub use builder::AzureBackendBuilder;
pub use credential::CredentialKind;
pub use names::{check_names, secret_name};
pub use policy::{role_assignments, RoleAssignments};

/// The Azure SDK crates this backend is built on, re-exported for [`AzureBackendBuilder::credential`].
pub use azure_core;
/// See [`azure_core`].
pub use azure_identity;
/// See [`azure_core`].
pub use azure_security_keyvault_secrets;

/// Requests in flight per fetch unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// A secret expiring within this many days loads with a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 7;

/// The content type skm gives binary values, which it stores base64-encoded (Key Vault holds strings only).
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream; encoding=base64";

/// Azure Key Vault as a [`Backend`] and [`AdminBackend`]. Cloning is cheap and shares the client.
///
/// # Example
/// ```no_run
/// use skm_runtime::backend::azure::AzureBackend;
/// use skm_runtime::Loader;
/// # async fn f() -> Result<(), skm_runtime::Error> {
/// let backend = AzureBackend::from_env()?; // AZURE_KEYVAULT_URL and the credential chain's variables
/// let loader = Loader::new().backend(backend);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AzureBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: SecretClient,
    vault_url: String,
    host: String,
    concurrency: usize,
    chain: Option<Arc<credential::ChainCredential>>,
    /// Set once the first request has taught the client the vault's challenge.
    warmed: tokio::sync::OnceCell<()>,
}

impl fmt::Debug for AzureBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBackend")
            .field("vault_url", &self.inner.vault_url)
            .field("concurrency", &self.inner.concurrency)
            .finish_non_exhaustive()
    }
}

impl AzureBackend {
    /// A builder with nothing set.
    pub fn builder() -> AzureBackendBuilder {
        AzureBackendBuilder::default()
    }

    /// A builder holding the process environment's variables (see the module's table).
    ///
    /// # Errors
    /// A variable has an invalid value.
    pub fn builder_from_env() -> Result<AzureBackendBuilder, Error> {
        AzureBackendBuilder::from_vars(&|name| std::env::var(name).ok())
    }

    /// The backend configured by the environment (see the module's table): what `AppSecrets::load()` uses
    /// when `AZURE_KEYVAULT_URL` is set or `SKM_BACKEND=azure`.
    ///
    /// # Errors
    /// No `AZURE_KEYVAULT_URL`, a URL that is not `https://`, an unreadable `SKM_AZURE_CA_CERT`, an invalid
    /// `SKM_AZURE_CREDENTIAL`.
    pub fn from_env() -> Result<AzureBackend, Error> {
        Self::builder_from_env()?.build()
    }

    /// The vault URL.
    pub fn vault_url(&self) -> &str {
        &self.inner.vault_url
    }

    /// The SDK client, for operations skm does not wrap.
    pub fn client(&self) -> &SecretClient {
        &self.inner.client
    }

    /// The step of the credential chain that returned a token, once one did (`None` with a credential
    /// given to [`AzureBackendBuilder::credential`]).
    pub fn credential_used(&self) -> Option<CredentialKind> {
        self.inner.chain.as_ref().and_then(|c| c.chosen())
    }

    /// What `skm doctor` reports: the vault, whether it answers, and the credential that worked.
    ///
    /// Reads one page of the secrets list (`secrets/list`); a 403 there still proves the vault and the
    /// credential work, and is reported as such.
    pub async fn doctor(&self) -> DoctorReport {
        let pager = self.inner.client.list_secret_properties(None);
        let outcome = match pager {
            Err(e) => Err(describe(&e)),
            Ok(pager) => match pager.into_pages().try_next().await {
                Ok(_) => Ok("reachable; listing secrets allowed".to_string()),
                Err(e) if e.http_status().map(u16::from) == Some(403) => {
                    Ok("reachable; authenticated, but listing secrets is not allowed (reads may still be)".into())
                }
                Err(e) => Err(describe(&e)),
            },
        };
        DoctorReport {
            vault_url: self.inner.vault_url.clone(),
            credential: self.credential_used(),
            outcome,
        }
    }
}

/// The result of [`AzureBackend::doctor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorReport {
    /// The vault probed.
    pub vault_url: String,
    /// The credential that returned a token, if any did.
    pub credential: Option<CredentialKind>,
    /// A sentence on reachability, or what failed.
    pub outcome: Result<String, String>,
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Azure Key Vault {}: ", self.vault_url)?;
        match &self.outcome {
            Ok(s) => write!(f, "{s}")?,
            Err(e) => write!(f, "FAILED: {e}")?,
        }
        if let Some(c) = self.credential {
            write!(f, " (credential: {c})")?;
        }
        Ok(())
    }
}

/// Whether the environment selects Azure Key Vault, and why: `AZURE_KEYVAULT_URL` is set. (`SKM_BACKEND=azure`
/// is handled by detection itself.) For the backend registry.
///
/// # Example
/// ```
/// let env = |name: &str| (name == "AZURE_KEYVAULT_URL").then(|| "https://v.vault.azure.net".to_string());
/// assert!(skm_runtime::backend::azure::detect_signal(&env).is_some());
/// ```
pub fn detect_signal(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    var("AZURE_KEYVAULT_URL")
        .filter(|v| !v.trim().is_empty())
        .map(|_| "AZURE_KEYVAULT_URL is set".to_string())
}

/// The message of an SDK error with its causes (a TLS failure is two levels down), on one line.
fn describe(e: &azure_core::Error) -> String {
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
fn who(path: &str, name: &str) -> String {
    format!("secret `{path}` (Key Vault name `{name}`)")
}

fn classify(e: &azure_core::Error, path: &str, name: &str) -> FetchError {
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

fn is_disabled(e: &azure_core::Error) -> bool {
    inner_code(e).as_deref() == Some("SecretDisabled")
        || error_body(e)
            .and_then(|b| b["message"].as_str().map(|m| m.contains("disabled")))
            .unwrap_or(false)
}

fn admin_error(e: &azure_core::Error, path: &str, name: &str) -> AdminError {
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
    if let Some(exp) = attributes.expires {
        if exp <= now {
            return Err(FetchError::new(
                FailureKind::Invalid,
                format!("{} expired on {} (its `exp`)", who(path, name), date(&exp)),
            ));
        }
        if exp - now <= azure_core::time::Duration::days(EXPIRY_WARNING_DAYS) {
            // No per-backend warning channel reaches the load's provenance yet: the log carries it.
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
    let payload = SecretPayload::new(value);
    Ok(match version {
        Some(v) => payload.with_version(v),
        None => payload,
    })
}

/// A version's id, creation time and whether it is enabled, from a versions listing.
struct VersionMeta {
    id: String,
    created: Option<OffsetDateTime>,
    enabled: bool,
}

impl Inner {
    async fn get(&self, name: &str, version: Option<String>) -> azure_core::Result<Secret> {
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

    async fn list_versions(&self, name: &str) -> azure_core::Result<Vec<VersionMeta>> {
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
    fn name(&self) -> String {
        format!("Azure Key Vault ({})", self.inner.host)
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        // Names first: a bad or colliding path fails before any request.
        let problems: HashMap<String, String> = check_names(requests.iter().map(|r| r.path.as_str()))
            .into_iter()
            .collect();
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&FetchRequest> = requests
            .iter()
            .filter(|r| !problems.contains_key(&r.path) && seen.insert(*r))
            .collect();
        let mut answers: HashMap<FetchRequest, FetchResult> = HashMap::new();
        let mut rest = unique.as_slice();
        if self.inner.warmed.get().is_none() {
            if let Some((first, others)) = rest.split_first() {
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
                if let Some(e) = failed_auth.cloned() {
                    for r in others {
                        answers.insert((*r).clone(), Err(e.clone()));
                    }
                    rest = &[];
                } else {
                    rest = others;
                }
                answers.insert((*first).clone(), answer);
            }
        }
        let limit = Arc::new(Semaphore::new(self.inner.concurrency));
        let mut tasks = JoinSet::new();
        for request in rest {
            let request = (*request).clone();
            let inner = self.inner.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                let name = secret_name(&request.path).expect("checked above");
                let answer = inner.read(&request.path, &name, &request.version).await;
                (request, answer)
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((request, answer)) => {
                    answers.insert(request, answer);
                }
                Err(e) => tracing::error!(target: "skm", "an Azure Key Vault read task failed: {e}"),
            }
        }
        requests
            .iter()
            .map(|r| match problems.get(&r.path) {
                Some(problem) => Err(FetchError::new(FailureKind::Invalid, problem.clone())),
                None => answers.get(r).cloned().unwrap_or_else(|| {
                    Err(FetchError::new(
                        FailureKind::Other,
                        format!("secret `{}`: read task lost", r.path),
                    ))
                }),
            })
            .collect()
    }
}

fn admin_name(path: &str) -> Result<String, AdminError> {
    secret_name(path).map_err(|e| AdminError::new(AdminErrorKind::Other, path, e))
}

#[async_trait]
impl AdminBackend for AzureBackend {
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        let path = request.path.as_str();
        let name = admin_name(path)?;
        if request.create_only {
            // Key Vault has no conditional create: check first (a concurrent writer can slip in between).
            match self.inner.get(&name, None).await {
                Ok(_) => {
                    return Err(AdminError::new(
                        AdminErrorKind::AlreadyExists,
                        path,
                        format!("{} already exists", who(path, &name)),
                    ))
                }
                Err(e) if e.http_status().map(u16::from) == Some(404) => {}
                // A disabled secret exists too.
                Err(e) if e.http_status().map(u16::from) == Some(403) && is_disabled(&e) => {
                    return Err(AdminError::new(
                        AdminErrorKind::AlreadyExists,
                        path,
                        format!("{} already exists (disabled)", who(path, &name)),
                    ))
                }
                Err(e) => return Err(admin_error(&e, path, &name)),
            }
        }
        let (value, content_type) = match &request.value {
            SecretValue::Text(s) => {
                let text = s.expose_secret().to_string();
                let json = text.trim_start().starts_with('{')
                    && serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.is_object());
                (text, if json { "application/json" } else { "text/plain" })
            }
            SecretValue::Binary(b) => {
                use base64::Engine as _;
                (
                    base64::engine::general_purpose::STANDARD.encode(b.expose_secret()),
                    BINARY_CONTENT_TYPE,
                )
            }
        };
        let mut tags: HashMap<String, String> = request.tags.iter().cloned().collect();
        if let Some(description) = &request.description {
            tags.insert("description".into(), description.clone());
        }
        // The declared path, so that `list` can show it even where `-` was in the path itself.
        tags.insert("skm-path".into(), path.to_string());
        let parameters = SetSecretParameters {
            value: Some(value),
            content_type: Some(content_type.to_string()),
            tags: Some(tags),
            secret_attributes: Some(SecretAttributes {
                enabled: Some(true),
                ..Default::default()
            }),
        };
        let body = parameters
            .try_into()
            .map_err(|e: azure_core::Error| AdminError::new(AdminErrorKind::Other, path, e.to_string()))?;
        let secret = self
            .inner
            .client
            .set_secret(&name, body, None)
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| admin_error(&e, path, &name))?;
        secret
            .resource_id()
            .ok()
            .and_then(|id| id.version)
            .ok_or_else(|| AdminError::new(AdminErrorKind::Other, path, "Key Vault returned no version id"))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        let mut pages = self
            .inner
            .client
            .list_secret_properties(None)
            .map_err(|e| AdminError::new(AdminErrorKind::Other, prefix, describe(&e)))?
            .into_pages();
        let mut out = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) => return Err(admin_error(&e, prefix, "*")),
            };
            let page = page
                .into_model()
                .map_err(|e| AdminError::new(AdminErrorKind::Other, prefix, describe(&e)))?;
            for item in page.value {
                // Secrets skm wrote carry their declared path; others are listed by name.
                let path = match item.tags.as_ref().and_then(|t| t.get("skm-path")) {
                    Some(p) => p.clone(),
                    None => match item.resource_id() {
                        Ok(id) => id.name,
                        Err(_) => continue,
                    },
                };
                if path.starts_with(prefix) {
                    let updated = item.attributes.and_then(|a| a.updated).map(std::time::SystemTime::from);
                    out.push(ListEntry { path, updated });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        let name = admin_name(path)?;
        if let DeleteMode::RecoveryDays(_) = mode {
            return Err(AdminError::new(
                AdminErrorKind::Unsupported,
                path,
                "Key Vault's recovery window is set per vault (7 to 90 days), not per delete",
            ));
        }
        let client = &self.inner.client;
        match client.delete_secret(&name, None).await {
            Ok(_) => {}
            // Already soft-deleted: `--force` still purges it.
            Err(e) if mode == DeleteMode::Force && e.http_status().map(u16::from) == Some(404) => {
                if client.get_deleted_secret(&name, None).await.is_err() {
                    return Err(admin_error(&e, path, &name));
                }
            }
            Err(e) => return Err(admin_error(&e, path, &name)),
        }
        if mode != DeleteMode::Force {
            return Ok(());
        }
        // Deletion completes asynchronously in Key Vault: purge once the deleted secret is visible.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match client.purge_deleted_secret(&name, None).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(e.http_status().map(u16::from), Some(404 | 409))
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => return Err(admin_error(&e, path, &name)),
            }
        }
    }

    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        let name = admin_name(path)?;
        let mut versions = self
            .inner
            .list_versions(&name)
            .await
            .map_err(|e| admin_error(&e, path, &name))?;
        if versions.is_empty() {
            return Err(AdminError::new(
                AdminErrorKind::NotFound,
                path,
                format!("{} not found", who(path, &name)),
            ));
        }
        // The current version is what a read without a version returns; ask rather than trust creation
        // times, which Key Vault keeps in whole seconds.
        let current = match self.inner.get(&name, None).await {
            Ok(secret) => secret.resource_id().ok().and_then(|id| id.version),
            Err(_) => None,
        };
        versions.sort_by(|a, b| {
            let a_cur = current.as_deref() == Some(a.id.as_str());
            let b_cur = current.as_deref() == Some(b.id.as_str());
            b_cur.cmp(&a_cur).then(b.created.cmp(&a.created))
        });
        let current = current.or_else(|| versions.first().map(|v| v.id.clone()));
        Ok(versions
            .into_iter()
            .map(|v| {
                let mut stages = Vec::new();
                if current.as_deref() == Some(v.id.as_str()) {
                    stages.push("current".to_string());
                }
                if !v.enabled {
                    stages.push("disabled".to_string());
                }
                VersionInfo {
                    id: v.id,
                    stages,
                    created: v.created.map(std::time::SystemTime::from),
                }
            })
            .collect())
    }
}

/// The registry's builder: the environment's variables through [`AzureBackendBuilder::from_vars`].
pub(crate) fn registry_build(
    env: super::registry::Env,
) -> super::registry::BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async move {
        let backend = AzureBackendBuilder::from_vars(&|n| env(n))?.build()?;
        Ok(Arc::new(backend) as Arc<dyn AdminBackend>)
    })
}

/// The registry's `doctor`: [`AzureBackend::doctor`] as probes (the vault, the credential that worked,
/// reachability).
pub(crate) fn doctor(env: super::registry::Env) -> super::registry::BoxFuture<Vec<super::registry::Probe>> {
    use super::registry::{Probe, ProbeLevel};
    Box::pin(async move {
        let backend = match AzureBackendBuilder::from_vars(&|n| env(n)).and_then(AzureBackendBuilder::build) {
            Ok(b) => b,
            Err(e) => return vec![Probe::new("azure configuration", ProbeLevel::Fail, e.to_string())],
        };
        // The SDK bounds each request (connect 5 s, request 10 s, 3 retries); this bounds the whole probe.
        let Ok(report) = tokio::time::timeout(std::time::Duration::from_secs(60), backend.doctor()).await else {
            return vec![Probe::new(
                "azure reachability",
                ProbeLevel::Fail,
                format!("{} did not answer within 60 s", backend.vault_url()),
            )];
        };
        let credential = match report.credential {
            Some(c) => Probe::new("azure credential", ProbeLevel::Ok, c.to_string()),
            None if report.outcome.is_ok() => {
                Probe::new("azure credential", ProbeLevel::Ok, "a credential given to the builder")
            }
            None => Probe::new("azure credential", ProbeLevel::Fail, "no credential returned a token"),
        };
        let reach = match &report.outcome {
            Ok(s) => Probe::new("azure vault", ProbeLevel::Ok, format!("{}: {s}", report.vault_url)),
            Err(e) => Probe::new("azure vault", ProbeLevel::Fail, format!("{}: {e}", report.vault_url)),
        };
        vec![reach, credential]
    })
}
