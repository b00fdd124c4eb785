//! Azure Key Vault (cargo feature `azure`), through Microsoft's `azure_security_keyvault_secrets`,
//! `azure_identity` and `azure_core`.
//!
//! # Mapping
//! - A declared path becomes a Key Vault secret name with `/` mapped to `-` (`auth/jwt` → `auth-jwt`), see
//!   [`secret_name`]. Any character other than letters, digits, `-` and `/` is an error, and two paths of
//!   one load that map to one name (names are case-insensitive) are an error naming both ([`check_names`]).
//!   Errors show the declared path and the mapped name; so does provenance: a field's
//!   [`Origin`](crate::Origin) reads `Azure Key Vault https://…: secret auth-jwt (path auth/jwt) version …`.
//! - The value is a string; a `key` reads a property of the JSON object it holds. Binary values written by
//!   skm are base64 with content type [`BINARY_CONTENT_TYPE`] and read back as bytes.
//! - Versions: the latest by default; `version_id = "..."` pins a version;
//!   [`VersionPin::Previous`](crate::backend::VersionPin::Previous) (a `Rotating` field) is the newest *enabled*
//!   version created before the current one. Staging labels and numbered versions do not exist in Key Vault
//!   and fail as *invalid*.
//! - A disabled secret is an error that says so (*invalid*, no fallback). Key Vault leaves `nbf` and `exp`
//!   to the client: a secret not valid yet or expired is an *invalid* error naming the date; one that
//!   expires within [`EXPIRY_WARNING_DAYS`] days loads, with a warning on the `skm` log target, an
//!   `skm::audit` event, and a note in the field's provenance: `… (expires 2026-12-03T10:00:00Z, within 7
//!   days: rotate it)`.
//! - Writing to a name held by a soft-deleted secret (deleted, not purged) fails with
//!   [`FailureKind::Conflict`](crate::backend::FailureKind::Conflict) (Key Vault's `409 Conflict`,
//!   `ObjectIsDeletedButRecoverable`); the error says how to recover or purge it.
//!
//! # Requests
//! Key Vault has no batch read: one [`fetch`](crate::backend::Backend::fetch) deduplicates its requests and reads each
//! name with its own `GET`, at most [`AzureBackendBuilder::max_in_flight`] (default 100) in flight, through the
//! shared [`FanOut`](super::fanout::FanOut) in spawned mode. The first
//! request of a backend goes alone: Key Vault answers it with the bearer challenge that tells the client
//! which token to get, and sending the others before the client knows would have each of them challenged.
//! Retries (throttling, 5xx, connection errors) are the SDK's exponential backoff with jitter, 4 attempts
//! ([`AzureBackendBuilder::max_attempts`], [`AzureBackendBuilder::backoff`]); a read still throttled after them
//! is tried again for [`AzureBackendBuilder::throttle_patience`] (default none);
//! connecting is bounded to 3 s, an attempt to 5 s and a request with all its retries to 12 s, below the
//! loader's deadline, so an unreachable or silent vault or an untrusted certificate fails in seconds. When the
//! first read of a load finds the vault unavailable, the others are not sent (each would wait as long).
//!
//! # Credentials
//! [`AzureBackend::from_env`] tries, in this order, and uses the first that returns a token:
//! 1. **environment client secret**: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`;
//! 2. **workload identity** (AKS): `AZURE_FEDERATED_TOKEN_FILE` with `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`;
//! 3. **managed identity** (VM, App Service, Container Apps): user-assigned when `AZURE_CLIENT_ID` is set.
//!    Its endpoints are plain http by design; skm sends its requests only to the instance metadata service
//!    (`http://169.254.169.254/metadata/identity/oauth2/token`) or to a loopback `IDENTITY_ENDPOINT` (with
//!    `IDENTITY_HEADER`, App Service and Container Apps), never through a proxy, and gives up after a second
//!    when nothing answers there (off Azure);
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
//! | `SKM_AZURE_CONCURRENCY` | requests in flight per load (default 100) |
//! | `SKM_AZURE_TIMEOUT_SECS` | timeout of one attempt of one request (default 5) |
//! | `IDENTITY_ENDPOINT`, `IDENTITY_HEADER` | App Service's managed-identity endpoint (read by Microsoft's SDK; loopback only) |
//!
//! Transport is HTTPS only (rustls with the ring provider), except the managed identity's own (above). The SDK's check that the challenge's resource
//! matches the vault's domain stays on, except for a loopback vault URL (a test server).
//!
//! # Permissions
//! Loading needs the role "Key Vault Secrets User" (data action `secrets/getSecret/action`, and
//! `secrets/readMetadata/action` for `Rotating` fields) on each secret; [`role_assignments`] renders the
//! assignments. The `skm` tool's writes need "Key Vault Secrets Officer"; `--force` deletes (purge) need
//! purge permission as well.

use std::fmt;
use std::sync::Arc;

use azure_security_keyvault_secrets::SecretClient;

use super::AdminBackend;
use crate::Error;

mod admin;
mod builder;
mod credential;
mod doctor;
mod error;
mod names;
pub mod policy;
mod read;
mod transport;

pub use builder::AzureBackendBuilder;
pub use credential::CredentialKind;
pub(crate) use doctor::doctor;
pub use doctor::DoctorReport;
pub use names::{check_names, secret_name};
pub use policy::{role_assignments, RoleAssignments};

/// The Azure SDK crates this backend is built on, re-exported for [`AzureBackendBuilder::credential`].
pub use azure_core;
/// See [`azure_core`].
pub use azure_identity;
/// See [`azure_core`].
pub use azure_security_keyvault_secrets;

/// Requests in flight per fetch unless configured otherwise: a service's whole start (up to 100 secrets) in one
/// round trip. Key Vault allows 4,000 secret reads per 10 s per vault; at 32, 100 secrets took 4 round trips
/// (skm-bench's Azure section).
pub const DEFAULT_CONCURRENCY: usize = 100;

/// A secret expiring within this many days loads with a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 7;

/// The content type skm gives binary values, which it stores base64-encoded (Key Vault holds strings only).
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream; encoding=base64";

/// Azure Key Vault as a [`Backend`](crate::backend::Backend) and [`AdminBackend`]. Cloning is cheap and shares the client.
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
    max_in_flight: usize,
    /// How long a read still throttled after the SDK's retries is tried again.
    throttle_patience: std::time::Duration,
    /// The backoff of that patience, when set.
    backoff: Option<(std::time::Duration, std::time::Duration)>,
    chain: Option<Arc<credential::ChainCredential>>,
    /// Set once the first request has taught the client the vault's challenge.
    warmed: tokio::sync::OnceCell<()>,
}

impl Inner {
    /// The fan-out of one fetch: the bound and the patience (the SDK retries each call underneath: the
    /// fan-out tries an attempt once).
    fn fan_out(&self) -> super::fanout::FanOut {
        let fan = super::fanout::FanOut::new(self.max_in_flight).throttle_patience(self.throttle_patience);
        match self.backoff {
            Some(range) => fan.backoff_range(range),
            None => fan,
        }
    }
}

impl fmt::Debug for AzureBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBackend")
            .field("vault_url", &self.inner.vault_url)
            .field("max_in_flight", &self.inner.max_in_flight)
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

/// The registry's builder: the environment's variables through [`AzureBackendBuilder::from_vars`].
pub(crate) fn registry_build(
    env: super::registry::Env,
) -> super::registry::BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async move {
        let backend = AzureBackendBuilder::from_vars(&|n| env(n))?.build()?;
        Ok(Arc::new(backend) as Arc<dyn AdminBackend>)
    })
}
