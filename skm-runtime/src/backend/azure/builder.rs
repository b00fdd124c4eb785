//! Building an [`AzureBackend`] from the environment or by hand.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport, Url};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};

use super::credential::{ChainConfig, ChainCredential, CredentialKind};
use super::transport::{CallBound, IdentityTransport};
use super::{AzureBackend, Inner, DEFAULT_CONCURRENCY};
use crate::backend::endpoint;
use crate::backend::fanout::ReadOptions;
use crate::Error;

/// Configures an [`AzureBackend`]. Start from [`AzureBackend::builder`] (nothing set) or
/// [`AzureBackend::builder_from_env`] (the variables of [`AzureBackend::from_env`]).
///
/// # Example
/// ```no_run
/// use skm_runtime::backend::azure::AzureBackend;
/// # async fn f() -> Result<(), skm_runtime::Error> {
/// let backend = AzureBackend::builder()
///     .vault_url("https://my-vault.vault.azure.net")
///     .client_secret("tenant-id", "client-id", "client-secret")
///     .max_in_flight(16)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct AzureBackendBuilder {
    vault_url: Option<String>,
    authority_host: Option<String>,
    ca_cert: Option<PathBuf>,
    credential: Option<Arc<dyn TokenCredential>>,
    only: Option<CredentialKind>,
    env: Vec<(String, String)>,
    /// In flight, attempts, backoff, patience.
    read: ReadOptions,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for AzureBackendBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment snapshot may hold AZURE_CLIENT_SECRET: only its names are shown.
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("AzureBackendBuilder")
            .field("vault_url", &self.vault_url)
            .field("authority_host", &self.authority_host)
            .field("ca_cert", &self.ca_cert)
            .field("credential", &self.credential.as_ref().map(|_| "custom"))
            .field("only", &self.only)
            .field("env", &names)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

/// Attempts per request, the first included, unless [`AzureBackendBuilder::max_attempts`] says otherwise.
const DEFAULT_MAX_ATTEMPTS: u32 = 4;

/// The SDK's backoff between attempts unless [`AzureBackendBuilder::backoff`] says otherwise.
const DEFAULT_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(2));

/// Variables the backend reads (the credential chain's included).
pub(crate) const ENV_VARS: [&str; 10] = [
    "AZURE_KEYVAULT_URL",
    "AZURE_AUTHORITY_HOST",
    "SKM_AZURE_CA_CERT",
    "SKM_AZURE_CREDENTIAL",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "SKM_AZURE_CONCURRENCY",
    "SKM_AZURE_TIMEOUT_SECS",
];

impl AzureBackendBuilder {
    /// The builder [`AzureBackend::from_env`] uses, reading variables through `var` (tests pass a map).
    ///
    /// # Errors
    /// `SKM_AZURE_CREDENTIAL`, `SKM_AZURE_CONCURRENCY` or `SKM_AZURE_TIMEOUT_SECS` has an invalid value.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut b = AzureBackendBuilder {
            vault_url: set("AZURE_KEYVAULT_URL"),
            authority_host: set("AZURE_AUTHORITY_HOST"),
            ca_cert: set("SKM_AZURE_CA_CERT").map(PathBuf::from),
            ..Default::default()
        };
        if let Some(kind) = set("SKM_AZURE_CREDENTIAL") {
            b.only = Some(kind.parse().map_err(Error::config)?);
        }
        if let Some(n) = set("SKM_AZURE_CONCURRENCY") {
            b.read = b.read.max_in_flight(
                n.trim()
                    .parse()
                    .map_err(|_| Error::config(format!("SKM_AZURE_CONCURRENCY=`{n}` is not a number of requests")))?,
            );
        }
        if let Some(s) = set("SKM_AZURE_TIMEOUT_SECS") {
            b.timeout = Some(Duration::from_secs(s.trim().parse().map_err(|_| {
                Error::config(format!("SKM_AZURE_TIMEOUT_SECS=`{s}` is not a number of seconds"))
            })?));
        }
        b.env = ENV_VARS
            .iter()
            .filter_map(|name| set(name).map(|v| (name.to_string(), v)))
            .collect();
        Ok(b)
    }

    /// The vault, e.g. `https://my-vault.vault.azure.net` (`AZURE_KEYVAULT_URL`). HTTPS only (the scheme in
    /// any letter case); a user name or password in the URL is refused.
    pub fn vault_url(mut self, url: impl Into<String>) -> Self {
        self.vault_url = Some(url.into());
        self
    }

    /// The Microsoft Entra authority host (`AZURE_AUTHORITY_HOST`), e.g. `https://login.microsoftonline.us`.
    pub fn authority_host(mut self, url: impl Into<String>) -> Self {
        self.authority_host = Some(url.into());
        self
    }

    /// A PEM file whose certificates are trusted in addition to the system's roots (`SKM_AZURE_CA_CERT`),
    /// for a private CA or a test server.
    pub fn ca_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(pem_file.into());
        self
    }

    /// A service principal's client secret, instead of the credential chain.
    pub fn client_secret(self, tenant_id: &str, client_id: &str, secret: &str) -> Self {
        let mut b = self;
        b.only = Some(CredentialKind::Env);
        b.env
            .retain(|(k, _)| !k.starts_with("AZURE_") || k == "AZURE_KEYVAULT_URL" || k == "AZURE_AUTHORITY_HOST");
        b.env.push(("AZURE_TENANT_ID".into(), tenant_id.into()));
        b.env.push(("AZURE_CLIENT_ID".into(), client_id.into()));
        b.env.push(("AZURE_CLIENT_SECRET".into(), secret.into()));
        b
    }

    /// Only this step of the credential chain (`SKM_AZURE_CREDENTIAL`).
    pub fn credential_kind(mut self, kind: CredentialKind) -> Self {
        self.only = Some(kind);
        self
    }

    /// Any credential of the Azure SDK, instead of the chain.
    pub fn credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Requests in flight per load (default 100, at least 1; `SKM_AZURE_CONCURRENCY`).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.read = self.read.max_in_flight(n);
        self
    }

    /// Requests in flight per load.
    #[deprecated(
        since = "0.1.0",
        note = "renamed `max_in_flight`, the name every backend builder shares"
    )]
    pub fn concurrency(self, n: usize) -> Self {
        self.max_in_flight(n)
    }

    /// The timeout of one attempt of one HTTP request (default 5 s; `SKM_AZURE_TIMEOUT_SECS`). Connecting is
    /// bounded separately, to 3 s, and one request with all its retries to 12 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Attempts per request, the first included (default 4, at least 1; `1` disables retries): throttling,
    /// 5xx and connection errors are retried with exponential backoff and jitter; one request with all its
    /// retries ends after 12 s at most.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.read = self.read.max_attempts(attempts);
        self
    }

    /// Retries after a failed request.
    #[deprecated(
        since = "0.1.0",
        note = "use `max_attempts(n + 1)`: every backend builder counts attempts, the first included"
    )]
    pub fn max_retries(self, n: u32) -> Self {
        self.max_attempts(n.saturating_add(1))
    }

    /// The SDK's backoff between attempts: `first`, then doubling up to `max`, with jitter (default 200 ms to
    /// 2 s); [`throttle_patience`](Self::throttle_patience) waits with the same range.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.read = self.read.backoff(first, max);
        self
    }

    /// How long a read still throttled after the SDK's retries is tried again, with jittered exponential
    /// backoff (default zero: the SDK's retries only). [`Loader::deadline`](crate::Loader::deadline) still
    /// bounds a load.
    pub fn throttle_patience(mut self, patience: Duration) -> Self {
        self.read = self.read.throttle_patience(patience);
        self
    }

    /// Requests in flight, attempts, backoff and patience at once; what `options` leaves unset keeps what
    /// was set before (or the default).
    pub fn read_options(mut self, options: ReadOptions) -> Self {
        self.read = self.read.overlay(options);
        self
    }

    /// Builds the backend. No request is made: credentials are tried on the first read.
    ///
    /// # Errors
    /// No vault URL, a vault URL or authority host that is not an `https://` URL or holds a user name or
    /// password, an unreadable or invalid CA file, an `IDENTITY_ENDPOINT` HTTP client that cannot be built.
    pub fn build(self) -> Result<AzureBackend, Error> {
        let raw = self.vault_url.clone().ok_or_else(|| {
            Error::config(
                "the Azure Key Vault backend needs a vault: set AZURE_KEYVAULT_URL, e.g. \
                 https://my-vault.vault.azure.net"
                    .into(),
            )
        })?;
        // The rule every backend shares (backend/endpoint.rs): scheme in any letter case, no user name or
        // password before the host; then Key Vault's own: HTTPS only, loopback included.
        let url = https_only("AZURE_KEYVAULT_URL", &raw)?;
        let loopback = endpoint::is_loopback(&url);
        if let Some(host) = &self.authority_host {
            https_only("AZURE_AUTHORITY_HOST", host)?;
        }

        // One provider for the tree: ring. Installing fails harmlessly when the process already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = self.timeout.unwrap_or(endpoint::ATTEMPT_TIMEOUT);
        let http = |connect: Duration, total: Duration| -> Result<reqwest::Client, Error> {
            let mut builder = reqwest::Client::builder()
                .https_only(true)
                .connect_timeout(connect)
                .timeout(total);
            // A loopback vault (and its loopback authority) is this machine: a proxy cannot reach it, and
            // no loopback request goes through one (backend/endpoint.rs). Remote vaults tunnel through
            // HTTPS_PROXY as reqwest reads it, honouring NO_PROXY; TLS ends at the vault.
            if loopback {
                builder = builder.no_proxy();
            }
            if let Some(path) = &self.ca_cert {
                let pem = std::fs::read(path)
                    .map_err(|e| Error::config(format!("SKM_AZURE_CA_CERT: cannot read {}: {e}", path.display())))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::config(format!(
                        "SKM_AZURE_CA_CERT: {} holds no PEM certificate: {e}",
                        path.display()
                    ))
                })?;
                if certs.is_empty() {
                    return Err(Error::config(format!(
                        "SKM_AZURE_CA_CERT: {} holds no PEM certificate",
                        path.display()
                    )));
                }
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            builder
                .build()
                .map_err(|e| Error::config(format!("cannot build the HTTPS client for Azure: {e}")))
        };
        // The SDK's limit counts from the end of the first attempt; `CallBound` ends the whole call after
        // endpoint::OPERATION_TIMEOUT (12 s) whatever the attempts took.
        let (first, max) = self.read.backoff.unwrap_or(DEFAULT_BACKOFF);
        let millis = |d: Duration| azure_core::time::Duration::milliseconds(d.as_millis().min(i64::MAX as u128) as i64);
        let retry = RetryOptions::exponential(ExponentialRetryOptions {
            max_retries: self.read.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).saturating_sub(1),
            initial_delay: millis(first),
            max_delay: millis(max),
            max_total_elapsed: azure_core::time::Duration::seconds(endpoint::OPERATION_TIMEOUT.as_secs() as i64),
        });
        let cloud = self.authority_host.as_ref().map(|host| {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = host.trim_end_matches('/').to_string();
            Arc::new(CloudConfiguration::Custom(custom))
        });
        let options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http(
                endpoint::CONNECT_TIMEOUT.min(timeout),
                timeout,
            )?))),
            retry: retry.clone(),
            cloud: cloud.clone(),
            per_call_policies: vec![CallBound::shared()],
            ..Default::default()
        };
        // The managed identity's endpoints are plain http by design (169.254.169.254, a loopback
        // IDENTITY_ENDPOINT): a transport of their own that reaches exactly those, never through a proxy. Off
        // Azure nothing answers there: give up after a second, without retries (the VM credential sets its
        // own retries; a connection that cannot be made is not retried, and the call bound holds).
        let identity_endpoint = std::env::var("IDENTITY_ENDPOINT").ok();
        let probe_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(IdentityTransport::new(
                identity_endpoint.as_deref(),
            )?))),
            retry: RetryOptions::none(),
            cloud,
            per_call_policies: vec![CallBound::shared()],
            ..Default::default()
        };

        let env = self.env.clone();
        let var = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let chain = match &self.credential {
            Some(_) => None,
            None => Some(Arc::new(ChainCredential::build(ChainConfig {
                var: &var,
                only: self.only,
                options: options.clone(),
                probe_options,
            }))),
        };
        let credential: Arc<dyn TokenCredential> = match (&self.credential, &chain) {
            (Some(c), _) => c.clone(),
            (None, Some(chain)) => chain.clone(),
            (None, None) => unreachable!("a chain is built when no credential is given"),
        };
        let client = SecretClient::new(
            url.as_str(),
            credential,
            Some(SecretClientOptions {
                client_options: options,
                // The SDK checks that the challenge's resource matches a `*.vault.azure.net` host; a loopback
                // test server cannot, so the check is off for loopback vault URLs only.
                verify_challenge_resource: Some(!loopback),
                ..Default::default()
            }),
        )
        .map_err(|e| Error::config(format!("cannot create the Key Vault client for `{raw}`: {e}")))?;
        Ok(AzureBackend {
            inner: Arc::new(Inner {
                client,
                vault_url: url.as_str().trim_end_matches('/').to_string(),
                max_in_flight: self.read.max_in_flight.unwrap_or(DEFAULT_CONCURRENCY).max(1),
                throttle_patience: self.read.throttle_patience.unwrap_or(Duration::ZERO),
                backoff: self.read.backoff,
                chain,
                warmed: tokio::sync::OnceCell::new(),
            }),
        })
    }
}

/// `raw` checked by the endpoint rule every backend shares, then required to be `https://` (Key Vault and
/// Microsoft Entra ID are HTTPS only, loopback test servers included).
fn https_only(source: &str, raw: &str) -> Result<Url, Error> {
    let url = endpoint::check(source, raw, false, "")?;
    if url.scheme() != "https" {
        return Err(Error::config(format!(
            "{source}=`{}` must use https:// (Key Vault and its tokens are HTTPS only)",
            url.as_str().escape_debug()
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_knobs_share_every_builders_names_and_the_old_ones_still_work() {
        let env = |n: &str| (n == "SKM_AZURE_CONCURRENCY").then(|| "7".to_string());
        let b = AzureBackendBuilder::from_vars(&env).unwrap();
        assert_eq!(b.read.max_in_flight, Some(7), "the variable keeps working");
        let b = b
            .max_attempts(2)
            .backoff(Duration::from_millis(10), Duration::from_millis(40))
            .throttle_patience(Duration::from_secs(1));
        assert_eq!(
            b.read,
            ReadOptions::new()
                .max_in_flight(7)
                .max_attempts(2)
                .backoff(Duration::from_millis(10), Duration::from_millis(40))
                .throttle_patience(Duration::from_secs(1))
        );
        #[allow(deprecated)]
        let old = AzureBackendBuilder::default().concurrency(3).max_retries(2);
        assert_eq!((old.read.max_in_flight, old.read.max_attempts), (Some(3), Some(3)));
        let all = AzureBackendBuilder::default().read_options(ReadOptions::new().max_in_flight(5));
        assert_eq!(all.read.max_in_flight, Some(5));
    }
}
