//! Google Cloud Secret Manager (cargo feature `gcp`), through Google's official
//! `google-cloud-secretmanager-v1` client (HTTP/JSON, no gRPC) and `google-cloud-auth`.
//!
//! # Names
//! Secret ids allow only `[A-Za-z0-9_-]`, so a declared path maps each `/` to `-`: `auth/jwt` is the secret
//! `auth-jwt` of the project, `myapp/{profile}/db` with profile `prod` is `myapp-prod-db`. A full resource
//! name (`projects/shared/secrets/tls-key`) is used as is. Two declared paths that map to one secret (`a/b`
//! and `a-b`) are an error that names both. Errors name the declared path and the secret id
//! (``GCP secret `auth-jwt` (declared path `auth/jwt`)``); provenance carries the full version name
//! (`projects/my-project/secrets/auth-jwt/versions/3`). [`AdminBackend::list`] returns secret ids, since the
//! mapping cannot be undone.
//!
//! # Values
//! A version's payload is bytes: valid UTF-8 becomes [`SecretValue::Text`] (a JSON object then serves
//! `key`), anything else [`SecretValue::Binary`]. When the server sends `dataCrc32c`, the payload is checked
//! against it; writes send it, so that Google rejects a payload corrupted on the way.
//!
//! # Versions
//! - Current: `latest`, which Google documents as the most recently *created* version.
//! - `version = 3` ([`VersionPin::Number`]), or `version_id = "3"`: that version.
//! - [`Rotating`](crate::Rotating) ([`VersionPin::Previous`]): the newest
//!   *enabled* version older than the current one, found by accessing `N-1`, `N-2`, … (at most 10) after
//!   the current version `N`, so the accessor role suffices.
//! - A disabled or destroyed version is an error that says so (never "not found").
//! - AWS staging labels (`version_stage`) fail as [`FailureKind::Invalid`](crate::backend::FailureKind).
//!
//! # Requests and quotas
//! Secret Manager has no batch read: one [`fetch`](Backend::fetch) sends one `AccessSecretVersion` per
//! distinct path and version, all concurrently up to [`GcpBackendBuilder::max_in_flight`] (default 100) through the shared
//! [`FanOut`](super::fanout::FanOut), so
//! 50 secrets cost 50 requests and one round trip. A rotating field costs one more request (two if the
//! version before the current one is disabled).
//!
//! Per project, Google allows 90,000 access requests a minute but only 600 other reads (metadata, lists).
//! Hot reload therefore never polls metadata: the backend does not implement
//! [`Backend::current_versions`], and a [`watch`](crate::Loader::watch) tick re-accesses every path: a tick
//! costs N access requests and no metadata read. A fleet of `I` instances with `N` secrets and a TTL of `T`
//! seconds uses `I × N × 60 / T` access requests a minute: 200 instances × 20 secrets every 60 s is 4,000,
//! under 5 % of the quota. Only the admin side (`skm list`, `versions`, labels) reads metadata.
//!
//! Retries (default 5 attempts, exponential backoff with full jitter from 100 ms to 5 s): `UNAVAILABLE`,
//! HTTP 503, `RESOURCE_EXHAUSTED` (429) and I/O errors. An access still throttled after them is tried again
//! with jittered backoff for up to 30 s ([`GcpBackendBuilder::throttle_patience`], zero to leave it to the
//! client's retries): a fleet starting at once can stay over the project's access quota for seconds. No
//! per-attempt timeout by default: bound a load with [`Loader::deadline`](crate::Loader::deadline).
//!
//! # Failures
//! By status code: `NOT_FOUND` is *not found*; `PERMISSION_DENIED`, `UNAUTHENTICATED` and credential errors
//! are *forbidden*; `RESOURCE_EXHAUSTED` after retries is *throttled*; `UNAVAILABLE`, timeouts and
//! connection failures are *unavailable*; a disabled or destroyed version, a checksum mismatch and anything
//! else is *other*.
//!
//! # Environment
//! [`GcpBackend::from_env`] (which `AppSecrets::load()` uses when `SKM_BACKEND=gcp`, or when a project
//! variable is set and no AWS region or `VAULT_ADDR` is) reads:
//!
//! | variable | meaning |
//! |---|---|
//! | `GOOGLE_CLOUD_PROJECT`, then `GCP_PROJECT_ID` | the project; else the credentials file's `project_id` / `quota_project_id`, gcloud's `core/project`, the metadata server |
//! | `SKM_GCP_ENDPOINT` | another endpoint: `https://…` (regional, private), or `http://127.0.0.1:PORT` for an emulator, which then gets no credentials |
//! | `GOOGLE_APPLICATION_CREDENTIALS` | a service-account or `external_account` (workload identity federation) file |
//! | `CLOUDSDK_CONFIG`, `HOME` | where gcloud keeps `application_default_credentials.json` and its configurations |
//! | `GCE_METADATA_HOST` | the metadata server (GCE, GKE workload identity, Cloud Run) |
//!
//! Credentials are Application Default Credentials as Google documents them: the file named by
//! `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's `application-default login` file, else the metadata
//! server.
//!
//! # IAM
//! Loading needs `roles/secretmanager.secretAccessor` on each declared secret, nothing project-wide;
//! [`policy()`] renders those bindings as JSON and as `gcloud` commands. The admin operations need
//! `roles/secretmanager.admin` (or `secretVersionAdder` + `viewer` for writes and listings).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use google_cloud_secretmanager_v1::client::SecretManagerService;

#[cfg(doc)]
use super::SecretValue;
use super::{
    AdminBackend, AdminError, Backend, DeleteMode, FailureKind, FetchRequest, FetchResult, ListEntry, PutRequest,
    VersionInfo, VersionPin,
};
use crate::Error;

mod admin;
mod builder;
mod error;
mod fetch;
mod names;
pub mod policy;

pub use builder::{GcpBackendBuilder, ProjectSource, DEFAULT_ENDPOINT, DEFAULT_MAX_ATTEMPTS};
pub use names::{resolve, secret_id, SecretName};
pub use policy::{policy, IamPolicy, ACCESSOR_ROLE, PLACEHOLDER_MEMBER};

/// Google's authentication crate this backend is built on, re-exported so that
/// [`GcpBackendBuilder::credentials`] needs no separate dependency.
pub use google_cloud_auth;
/// Google's Secret Manager client this backend is built on, re-exported for [`GcpBackend::client`].
pub use google_cloud_secretmanager_v1;

/// Requests in flight per fetch unless configured otherwise: a service's whole start (up to 100 secrets) in one
/// round trip. One process's burst of 100 is a small share of the project's 1,500 access requests a second;
/// at 32, 100 secrets took 4 round trips (skm-bench's GCP section).
const DEFAULT_MAX_IN_FLIGHT: usize = 100;

/// How long a throttled access is tried again (after the client's own retries) unless configured otherwise:
/// the same patience as the AWS backend's.
pub const DEFAULT_THROTTLE_PATIENCE: Duration = Duration::from_secs(30);

/// The variables that select this backend when no stronger signal is present, strongest first.
pub const PROJECT_VARS: [&str; 2] = ["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT_ID"];

/// Where new secrets are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Replication {
    /// Google chooses the locations (the default).
    #[default]
    Automatic,
    /// Exactly these locations, e.g. `["europe-west1", "europe-west4"]` (data residency).
    UserManaged(Vec<String>),
}

/// The state of a secret version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Readable.
    Enabled,
    /// Not readable, data kept: can be enabled again.
    Disabled,
    /// Not readable, data gone for good.
    Destroyed,
}

impl fmt::Display for VersionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VersionState::Enabled => "enabled",
            VersionState::Disabled => "disabled",
            VersionState::Destroyed => "destroyed",
        })
    }
}

/// Google Cloud Secret Manager as a [`Backend`] and [`AdminBackend`].
///
/// Cloning is cheap and shares the client (and its connection pool).
///
/// # Example
/// ```no_run
/// use skm_runtime::backend::gcp::GcpBackend;
/// use skm_runtime::Loader;
/// # async fn f() -> Result<(), skm_runtime::Error> {
/// let backend = GcpBackend::from_env().await?; // GOOGLE_CLOUD_PROJECT, ADC, SKM_GCP_ENDPOINT
/// let loader = Loader::new().backend(backend);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GcpBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: SecretManagerService,
    project: String,
    project_source: ProjectSource,
    endpoint: String,
    credentials_source: String,
    max_in_flight: usize,
    throttle_patience: Duration,
    /// The backoff of the patience, when set ([`GcpBackendBuilder::backoff`]).
    backoff: Option<(Duration, Duration)>,
    replication: Replication,
}

impl Inner {
    /// The patience of one access (the client retries each call underneath: the fan-out tries an attempt once).
    fn patience(&self) -> super::fanout::FanOut {
        let fan = super::fanout::FanOut::new(1).throttle_patience(self.throttle_patience);
        match self.backoff {
            Some(range) => fan.backoff_range(range),
            None => fan,
        }
    }
}

impl fmt::Debug for GcpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpBackend")
            .field("project", &self.inner.project)
            .field("endpoint", &self.inner.endpoint)
            .field("credentials", &self.inner.credentials_source)
            .field("max_in_flight", &self.inner.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl GcpBackend {
    /// A builder; what it leaves unset comes from the environment.
    pub fn builder() -> GcpBackendBuilder {
        GcpBackendBuilder::default()
    }

    /// A backend configured from the environment (see the [module documentation](self) for the variables).
    ///
    /// # Errors
    /// [`Error::Config`] when no project can be found, `SKM_GCP_ENDPOINT` is not allowed, or credentials
    /// cannot be loaded.
    pub async fn from_env() -> Result<Self, Error> {
        Self::builder().build().await
    }

    /// The project secrets are read from.
    pub fn project(&self) -> &str {
        &self.inner.project
    }

    /// Where the project came from.
    pub fn project_source(&self) -> &ProjectSource {
        &self.inner.project_source
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Where the credentials come from, e.g. `GOOGLE_APPLICATION_CREDENTIALS /etc/sa.json (service_account)`.
    pub fn credentials_source(&self) -> &str {
        &self.inner.credentials_source
    }

    /// Google's client, for operations skm does not wrap.
    pub fn client(&self) -> &SecretManagerService {
        &self.inner.client
    }

    /// The secret a declared path names in this backend's project.
    ///
    /// # Errors
    /// The path cannot name a secret (the message says why).
    pub fn secret_name(&self, path: &str) -> Result<SecretName, String> {
        resolve(&self.inner.project, path)
    }

    /// Disables version `version` of `path`: reads of it fail (saying so) until it is enabled again.
    ///
    /// # Errors
    /// The secret or version does not exist, or the caller may not change it.
    pub async fn disable_version(&self, path: &str, version: u64) -> Result<VersionState, AdminError> {
        admin::set_state(self, path, version, VersionState::Disabled).await
    }

    /// Enables a disabled version again.
    ///
    /// # Errors
    /// As [`GcpBackend::disable_version`]; a destroyed version cannot be enabled.
    pub async fn enable_version(&self, path: &str, version: u64) -> Result<VersionState, AdminError> {
        admin::set_state(self, path, version, VersionState::Enabled).await
    }

    /// Destroys a version: its data is gone for good.
    ///
    /// # Errors
    /// As [`GcpBackend::disable_version`].
    pub async fn destroy_version(&self, path: &str, version: u64) -> Result<VersionState, AdminError> {
        admin::set_state(self, path, version, VersionState::Destroyed).await
    }

    /// Writes version `version`'s payload as a new version (the history keeps both); returns the new
    /// version's number.
    ///
    /// # Errors
    /// The version cannot be read (missing, disabled, destroyed) or the write fails.
    pub async fn rollback(&self, path: &str, version: u64) -> Result<String, AdminError> {
        let old = self
            .fetch(&[FetchRequest {
                path: path.to_string(),
                version: VersionPin::Number(version),
            }])
            .await
            .remove(0)
            .map_err(|e| {
                let kind = match e.kind {
                    FailureKind::NotFound => super::AdminErrorKind::NotFound,
                    _ => super::AdminErrorKind::Other,
                };
                AdminError::new(kind, path, e.detail)
            })?;
        self.put(PutRequest::new(path, old.value)).await
    }

    /// Checks the configuration against the service, for `skm doctor`: accesses a secret that should not
    /// exist, which needs no permission beyond the accessor role. *Not found* (or *access denied* on it)
    /// proves the endpoint answers and the credentials were accepted.
    pub async fn doctor(&self) -> Doctor {
        let probe = FetchRequest::current("skm-doctor-probe-nonexistent");
        let started = Instant::now();
        let answer = self.fetch(std::slice::from_ref(&probe)).await.remove(0);
        let elapsed = started.elapsed();
        let reachable = match answer {
            Ok(_) => Ok(elapsed),
            Err(e)
                if matches!(e.kind, FailureKind::NotFound | FailureKind::Forbidden)
                    && !e.detail.contains("credentials:") =>
            {
                Ok(elapsed)
            }
            Err(e) => Err(e.to_string()),
        };
        Doctor {
            project: self.inner.project.clone(),
            project_source: self.inner.project_source.to_string(),
            credentials_source: self.inner.credentials_source.clone(),
            endpoint: self.inner.endpoint.clone(),
            reachable,
        }
    }
}

/// What [`GcpBackend::doctor`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doctor {
    /// The project.
    pub project: String,
    /// Where the project came from.
    pub project_source: String,
    /// Where the credentials come from.
    pub credentials_source: String,
    /// The endpoint.
    pub endpoint: String,
    /// The round trip of the probe, or why it failed.
    pub reachable: Result<Duration, String>,
}

impl fmt::Display for Doctor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "project: {} ({})", self.project, self.project_source)?;
        writeln!(f, "credentials: {}", self.credentials_source)?;
        writeln!(f, "endpoint: {}", self.endpoint)?;
        match &self.reachable {
            Ok(rtt) => write!(f, "reachable: yes ({} ms)", rtt.as_millis()),
            Err(why) => write!(f, "reachable: no ({why})"),
        }
    }
}

/// Why the environment selects this backend, if it does: a project variable (`GOOGLE_CLOUD_PROJECT`, then
/// `GCP_PROJECT_ID`). Detection ranks it after an AWS region and `VAULT_ADDR`, before a local store.
///
/// # Example
/// ```
/// use skm_runtime::backend::gcp::detect_signal;
/// let env = |name: &str| (name == "GCP_PROJECT_ID").then(|| "my-project".to_string());
/// assert_eq!(detect_signal(&env).as_deref(), Some("GCP_PROJECT_ID is set"));
/// assert_eq!(detect_signal(&|_: &str| None), None);
/// ```
pub fn detect_signal(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    PROJECT_VARS
        .iter()
        .find(|name| var(name).is_some_and(|v| !v.trim().is_empty()))
        .map(|name| format!("{name} is set"))
}

#[async_trait]
impl Backend for GcpBackend {
    fn name(&self) -> String {
        format!("Google Cloud Secret Manager ({})", self.inner.project)
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        fetch::fetch(self, requests).await
    }
}

#[async_trait]
impl AdminBackend for GcpBackend {
    /// `CreateSecret` (with the builder's replication and the tags as labels), then `AddSecretVersion` with
    /// the payload's CRC32C. On an existing secret: only `AddSecretVersion` (and labels merged in), unless
    /// `create_only`. Returns the new version's number. Descriptions are not stored (secrets have none).
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        admin::put(self, request).await
    }

    /// `ListSecrets` (every page), the ids starting with the mapped prefix, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        admin::list(self, prefix).await
    }

    /// `DeleteSecret`, with all its versions, at once: Secret Manager has no recovery window, so
    /// [`DeleteMode::RecoveryDays`] is unsupported. [`DeleteMode::Force`] succeeds when the secret does not
    /// exist.
    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        admin::delete(self, path, mode).await
    }

    /// `ListSecretVersions`, newest first, each with its state and `current` on the newest.
    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        admin::versions(self, path).await
    }
}

/// The registry's builder: [`GcpBackend::from_env`].
pub(crate) fn registry_build(
    _env: super::registry::Env,
) -> super::registry::BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async move { Ok(Arc::new(GcpBackend::from_env().await?) as Arc<dyn AdminBackend>) })
}

/// How long `skm doctor` waits for the probe before reporting the endpoint as not answering.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(15);

/// The registry's `doctor`: [`GcpBackend::doctor`] as probes (project and its source, credentials source,
/// reachability).
pub(crate) fn doctor(_env: super::registry::Env) -> super::registry::BoxFuture<Vec<super::registry::Probe>> {
    use super::registry::{Probe, ProbeLevel};
    Box::pin(async move {
        let backend = match GcpBackend::from_env().await {
            Ok(b) => b,
            Err(e) => return vec![Probe::new("gcp configuration", ProbeLevel::Fail, e.to_string())],
        };
        let Ok(report) = tokio::time::timeout(DOCTOR_TIMEOUT, backend.doctor()).await else {
            return vec![Probe::new(
                "gcp reachability",
                ProbeLevel::Fail,
                format!(
                    "{} did not answer within {} s",
                    backend.endpoint(),
                    DOCTOR_TIMEOUT.as_secs()
                ),
            )];
        };
        vec![
            Probe::new(
                "gcp project",
                ProbeLevel::Ok,
                format!("{} ({})", report.project, report.project_source),
            ),
            Probe::new("gcp credentials", ProbeLevel::Ok, report.credentials_source.clone()),
            match &report.reachable {
                Ok(rtt) => Probe::new(
                    "gcp reachability",
                    ProbeLevel::Ok,
                    format!("{} answered in {} ms", report.endpoint, rtt.as_millis()),
                ),
                Err(why) => Probe::new(
                    "gcp reachability",
                    ProbeLevel::Fail,
                    format!("{}: {why}", report.endpoint),
                ),
            },
        ]
    })
}
