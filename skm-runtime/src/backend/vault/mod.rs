//! HashiCorp Vault (and OpenBao) KV secrets engine, versions 1 and 2 (feature `vault`).
//!
//! # Mapping
//! - A secret's path is its path under the KV mount (`SKM_VAULT_MOUNT`, default `secret`): `auth/jwt` reads
//!   `secret/data/auth/jwt` on KV v2 and `secret/auth/jwt` on KV v1.
//! - A Vault secret is a map: `#[secret(path = "auth/jwt", key = "secret")]` reads one entry, and a field
//!   without `key` receives the whole map (deserialized into a struct-typed field).
//! - `#[secret(..., version = 3)]` reads version 3 on KV v2. AWS-style stages and version ids are refused.
//! - One fetch reads each request (the plan de-duplicates) with at most 64 reads in flight (`SKM_VAULT_CONCURRENCY`).
//!   A read that fails transiently (429, 5xx, a reset connection, a timeout) is retried 4 times, after about
//!   100, 200, 400 and 800 ms with jitter ([`VaultBuilder::retries`]); a refused connection is not retried.
//!   Each request times out after 5 s (`VAULT_CLIENT_TIMEOUT`; connecting after 3 s), and a retry starts only
//!   if it can end within 12 s of the fetch's start: a server that accepts connections and never answers
//!   fails a fetch within 12 s, below the loader's deadline, with an error naming Vault.
//! - A value written through skm that is not a JSON object is stored as `{"value": ..., "_skm_encoding":
//!   "text"}` (bytes: `"base64"`), which other tools read as the usual `value` entry and skm reads back as
//!   written.
//!
//! # Failures
//! 404 (also a deleted or destroyed KV v2 version) is *not found*; 401/403 *access denied*; 429 *throttled*;
//! 5xx (503 when sealed), timeouts and refused connections *unavailable*. Details name the mount, path and
//! namespace, never a value or a token.
//!
//! # Authentication
//! `SKM_VAULT_AUTH` chooses `token` (default: `VAULT_TOKEN` or `~/.vault-token`), `approle`, `kubernetes`,
//! `jwt` (a JWT from `SKM_VAULT_JWT_FILE` or GitHub Actions' OIDC endpoint) or `cert` (the client
//! certificate `VAULT_CLIENT_CERT` and key `VAULT_CLIENT_KEY`, presented for this method only).
//! A background task renews the token at about two thirds of its TTL and, for every method but `token`, logs
//! in again when renewal fails or the max TTL is reached (`cert`: also when the certificate file changes on
//! disk). It stops when the backend is dropped.
//!
//! # Transport
//! TLS through rustls, trusting the system's roots plus `VAULT_CACERT` / `VAULT_CAPATH`. Plain `http://` is
//! only used for loopback addresses unless explicitly allowed, because it sends the token in clear text; a
//! redirect is followed only where the address itself could point. "Loopback" means an IP literal in
//! 127.0.0.0/8 or `::1`: `localhost` is a name that DNS or `/etc/hosts` could point anywhere, so it counts
//! as remote (write `http://127.0.0.1:8200`).
//!
//! Proxies: a request to an `https://` host that is not loopback goes through `HTTPS_PROXY` / `ALL_PROXY`
//! (honouring `NO_PROXY`) as a CONNECT tunnel, so TLS still ends at Vault. A plain-`http://` or loopback
//! target never goes through a proxy (it would carry the token in clear text to the proxy, or off the
//! machine), unless `SKM_VAULT_PROXY_PLAIN=1` ([`VaultBuilder::proxy_plain`]) opts in.
//!
//! # Example
//! ```no_run
//! use skm_runtime::backend::vault::VaultBackend;
//! use skm_runtime::backend::{Backend, FetchRequest};
//! # async fn demo() -> Result<(), skm_runtime::Error> {
//! // VAULT_ADDR=https://vault.internal:8200 VAULT_TOKEN=... (see `VaultBuilder::from_vars` for the rest)
//! let vault = VaultBackend::from_env().await?;
//! let results = vault.fetch(&[FetchRequest::current("auth/jwt")]).await;
//! # Ok(()) }
//! ```

mod auth;
mod builder;
mod config;
mod doctor;
mod errors;
mod kv;
mod kv_admin;
mod login;
pub mod policy;
// Dynamic secrets: `VaultBackend::lease` (see `crate::lease`).
mod lease;
mod redirect;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use vaultrs::client::{VaultClient, VaultClientSettings};

pub use builder::VaultBuilder;
pub use config::{
    Credential, JwtSource, KvVersion, VaultAuth, DEFAULT_CERT_MOUNT, DEFAULT_JWT_MOUNT, DEFAULT_K8S_JWT_FILE,
};
pub use doctor::TokenLookup;
pub(crate) use doctor::{doctor, registry_build};

use crate::backend::{endpoint, FailureKind};
use crate::backend::{
    AdminBackend, AdminError, Backend, DeleteMode, FetchError, FetchRequest, FetchResult, ListEntry, PutRequest,
    VersionInfo,
};
use crate::Error;
use auth::{client_with_token, TokenState};

/// A Vault or OpenBao KV mount as a [`Backend`] and [`AdminBackend`].
///
/// Cheap to clone; clones share the client, the token and its renewal task, which stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct VaultBackend {
    inner: Arc<Inner>,
}

/// State shared by clones and the renewal task.
pub(crate) struct Inner {
    /// A client without a token (for logins); request clients are derived from it.
    base: VaultClient,
    address: String,
    mount: String,
    namespace: Option<String>,
    auth: VaultAuth,
    kv: RwLock<Option<KvVersion>>,
    concurrency: usize,
    /// Retries of a read that failed transiently.
    retries: u32,
    /// The per-request timeout: a retry starts only if one more attempt can end within the call's bound.
    timeout: std::time::Duration,
    token: RwLock<TokenState>,
    /// Serializes logins so that concurrent fetches after an expiry log in once.
    login_lock: tokio::sync::Mutex<()>,
    /// Bumped at each login, so that a waiter can tell someone else already logged in.
    generation: AtomicU64,
    logins: AtomicU64,
    renewals: AtomicU64,
    /// Wakes the renewal task when a new token arrives.
    wake: Arc<Notify>,
    /// The transport settings (never a token), to build a client presenting a renewed certificate.
    transport: VaultBuilder,
    /// For a JWT from GitHub Actions: the client that asks the runner's OIDC endpoint.
    actions_http: Option<reqwest::Client>,
    /// For certificate auth: the certificate and key files as they were at the last login attempt.
    cert_stamp: Mutex<Option<login::CertStamp>>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

impl fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBackend")
            .field("address", &self.inner.address)
            .field("mount", &self.inner.mount)
            .field("namespace", &self.inner.namespace)
            .field("auth", &self.inner.auth.describe())
            .field("kv_version", &*self.inner.kv.read().unwrap_or_else(|p| p.into_inner()))
            .finish_non_exhaustive()
    }
}

impl VaultBackend {
    /// A backend configured from the environment (see [`VaultBuilder::from_vars`] for every variable).
    ///
    /// # Errors
    /// As [`VaultBuilder::from_vars`] and [`VaultBuilder::build`].
    pub async fn from_env() -> Result<Self, Error> {
        VaultBuilder::from_env()?.build().await
    }

    /// A builder for the server at `address`, configured explicitly.
    pub fn builder(address: impl Into<String>) -> VaultBuilder {
        VaultBuilder::new(address)
    }

    pub(crate) async fn build(b: VaultBuilder) -> Result<Self, Error> {
        // First, before any connection: never send a token where it should not go.
        let address = b.checked_address()?;
        let token = config::token_text(&b.token);
        // vaultrs turns these into HTTP header values and panics on a byte a header cannot hold.
        config::header_safe("VAULT_TOKEN", token.as_deref())?;
        config::header_safe("VAULT_NAMESPACE", b.namespace.as_deref())?;
        match &b.auth {
            VaultAuth::Token if token.is_none() => {
                return Err(Error::config(
                    "no Vault token: set VAULT_TOKEN, log in with `vault login` (which writes ~/.vault-token), or \
                     set SKM_VAULT_AUTH=approle, kubernetes, jwt or cert"
                        .into(),
                ))
            }
            // A missing credential file is a deployment mistake: say so now rather than at each fetch.
            VaultAuth::AppRole { role_id, secret_id, .. } => {
                role_id.read("AppRole role id").map_err(Error::config)?;
                secret_id.read("AppRole secret id").map_err(Error::config)?;
            }
            VaultAuth::Kubernetes { jwt, .. } => {
                jwt.read("Kubernetes service-account token").map_err(Error::config)?;
            }
            VaultAuth::Jwt {
                jwt: JwtSource::Credential(jwt),
                ..
            } => {
                jwt.read("JWT").map_err(Error::config)?;
            }
            VaultAuth::Cert { cert, key, .. } => {
                if address.scheme() != "https" {
                    return Err(Error::config(format!(
                        "SKM_VAULT_AUTH=cert needs an https:// VAULT_ADDR: the client certificate is presented in \
                         the TLS handshake (VAULT_ADDR is {})",
                        address.as_str().trim_end_matches('/')
                    )));
                }
                login::read_identity(cert, key).map_err(Error::config)?;
            }
            VaultAuth::Token | VaultAuth::Jwt { .. } => {}
        }
        let settings = VaultClientSettings {
            address: address.clone(),
            ca_certs: b.ca_certs.iter().map(|p| p.display().to_string()).collect(),
            // Set every field: the vaultrs builder would read VAULT_* from the process environment.
            identity: None,
            timeout: Some(b.timeout),
            token: String::new(),
            verify: !b.skip_verify,
            version: 1,
            wrapping: false,
            namespace: b.namespace.clone(),
            proxy: None,
        };
        let mut base = VaultClient::new(settings).map_err(|e| Error::Backend {
            backend: "Vault".into(),
            detail: format!(
                "cannot set up the HTTP client: {}",
                errors::VaultFailure::from_client(&e).describe()
            ),
            source: Some(Box::new(e)),
        })?;
        // vaultrs's HTTP client follows redirects and resends every header, the token included: use the same
        // client with a redirect policy that applies the transport rule above to every hop.
        // No client certificate here: a certificate login builds a client presenting it (auth.rs).
        base.http.http = redirect::client(&b, &address, None).map_err(|detail| Error::Backend {
            backend: "Vault".into(),
            detail,
            source: None,
        })?;
        let actions_http = match &b.auth {
            VaultAuth::Jwt {
                jwt: JwtSource::GithubActions { .. },
                ..
            } => Some(login::actions_client(&b).map_err(|detail| Error::Backend {
                backend: "Vault".into(),
                detail,
                source: None,
            })?),
            _ => None,
        };
        let mut transport = b.clone();
        transport.token = None;
        let mut state = TokenState::empty();
        if let Some(t) = &token {
            state.client = Some(Arc::new(client_with_token(&base, t)));
        }
        let inner = Arc::new(Inner {
            base,
            address: address.as_str().trim_end_matches('/').to_string(),
            mount: b.mount.clone(),
            namespace: b.namespace.clone(),
            auth: b.auth.clone(),
            kv: RwLock::new(b.kv_version),
            concurrency: b.concurrency.max(1),
            retries: b.retries,
            timeout: b.timeout,
            token: RwLock::new(state),
            login_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            renewer: Mutex::new(None),
            transport,
            actions_http,
            cert_stamp: Mutex::new(None),
        });
        // Best effort: a server that is down now is retried by the fetches and the renewal task. One request
        // that got no answer is enough: the mount's KV version is then detected by the first fetch.
        let answered = if inner.auth.can_login() {
            match inner.login().await {
                Ok(_) => true,
                Err(e) => e.kind != FailureKind::Unavailable,
            }
        } else {
            inner.lookup().await
        };
        let client = inner.token.read().unwrap_or_else(|p| p.into_inner()).client.clone();
        if let (Some(client), true) = (client, answered) {
            inner.kv_version(&client).await;
        }
        let task = tokio::spawn(auth::renew_loop(Arc::downgrade(&inner)));
        *inner.renewer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(VaultBackend { inner })
    }

    /// How many times the token was renewed by the background task.
    pub fn renewals(&self) -> u64 {
        self.inner.renewals.load(Ordering::SeqCst)
    }

    /// How many logins succeeded (AppRole, Kubernetes), including the first.
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(Ordering::SeqCst)
    }

    /// The KV mount.
    pub fn mount(&self) -> &str {
        &self.inner.mount
    }

    /// The namespace, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.inner.namespace.as_deref()
    }

    /// The mount's KV version, once configured or detected.
    pub fn kv_version(&self) -> Option<KvVersion> {
        *self.inner.kv.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Backend for VaultBackend {
    fn leases(&self) -> Option<&dyn crate::lease::Leases> {
        Some(self)
    }

    /// vals writes a Vault reference's path with the mount first, `ref+vault://secret/db#url`: a path that
    /// starts with this backend's mount reads the rest under it. Any other path is read under the mount as a
    /// declaration's would be (`ref+vault://db#url`), so both forms name the same secret.
    fn reference_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        match path
            .strip_prefix(self.inner.mount.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
        {
            Some(rest) if !rest.is_empty() => std::borrow::Cow::Borrowed(rest),
            _ => std::borrow::Cow::Borrowed(path),
        }
    }

    fn name(&self) -> String {
        let ns = self
            .inner
            .namespace
            .as_ref()
            .map(|n| format!(", namespace {n}"))
            .unwrap_or_default();
        format!("Vault ({}, mount {}{ns})", self.inner.address, self.inner.mount)
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        if requests.is_empty() {
            return Vec::new();
        }
        let client = match self.inner.client().await {
            Ok(c) => c,
            Err(e) => return vec![Err(e); requests.len()],
        };
        // One bound for the whole call, retries included, below the loader's deadline: a server that accepts
        // connections and never answers fails the call with Vault's own error.
        let until = Instant::now() + endpoint::OPERATION_TIMEOUT;
        let kv = match self.inner.kv_version_within(&client, until).await {
            Ok(kv) => kv,
            Err(e) => return vec![Err(e); requests.len()],
        };
        // The plan asks for each (path, version) once; a read failing transiently is retried within the bound.
        let inner = &self.inner;
        let client = &client;
        inner
            .fan_out()
            .map(requests, |request| {
                inner.attempts(until, move || inner.read(client, kv, request))
            })
            .await
    }

    /// KV v2 metadata gives the current version without reading the value, so a hot-reload tick on
    /// unchanged secrets reads no data (the token needs `read` on `<mount>/metadata/<path>`). KV v1 keeps
    /// no versions: `None`, and the watcher refetches.
    async fn current_versions(&self, requests: &[FetchRequest]) -> Option<Vec<Result<String, FetchError>>> {
        let client = match self.inner.client().await {
            Ok(c) => c,
            Err(e) => return Some(vec![Err(e); requests.len()]),
        };
        let until = Instant::now() + endpoint::OPERATION_TIMEOUT;
        let kv = match self.inner.kv_version_within(&client, until).await {
            Ok(kv) => kv,
            Err(e) => return Some(vec![Err(e); requests.len()]),
        };
        if kv == KvVersion::V1 {
            return None;
        }
        let inner = &self.inner;
        let client = &client;
        Some(
            inner
                .fan_out()
                .map(requests, |request| {
                    inner.attempts(until, move || inner.current_version(client, kv, request))
                })
                .await,
        )
    }
}

#[async_trait]
impl AdminBackend for VaultBackend {
    /// Writes a new version (KV v2, with check-and-set `cas=0` for `create_only`) or the value (KV v1).
    /// Tags and the description become KV v2 custom metadata.
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        self.inner.put(request).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        self.inner.delete(path, mode).await
    }

    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        self.inner.versions(path).await
    }

    /// KV v2 only (its `cas` option); `false` once the mount is known to be KV v1.
    fn supports_cas(&self) -> bool {
        self.kv_version() != Some(KvVersion::V1)
    }
}
