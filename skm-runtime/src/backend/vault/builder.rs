//! [`VaultBuilder`]: the configuration of a [`VaultBackend`](super::VaultBackend) and the environment
//! variables it reads.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use super::config::{
    parse_bool, pem_files_in, Credential, KvVersion, VaultAuth, DEFAULT_CONCURRENCY, DEFAULT_MOUNT, DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
};
use crate::backend::endpoint;
use crate::Error;

/// Configures a [`VaultBackend`](super::VaultBackend): start from [`VaultBuilder::new`] or
/// [`VaultBuilder::from_env`], adjust, then [`build`](VaultBuilder::build).
///
/// # Example
/// ```no_run
/// use skm_runtime::backend::vault::{KvVersion, VaultBuilder};
/// # async fn demo() -> Result<(), skm_runtime::Error> {
/// let backend = VaultBuilder::new("https://vault.internal:8200")
///     .token("hvs.example")
///     .mount("kv")
///     .kv_version(KvVersion::V2)
///     .namespace("team-a")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct VaultBuilder {
    pub(crate) address: String,
    pub(crate) token: Option<SecretString>,
    pub(crate) namespace: Option<String>,
    pub(crate) ca_certs: Vec<PathBuf>,
    pub(crate) skip_verify: bool,
    pub(crate) mount: String,
    pub(crate) kv_version: Option<KvVersion>,
    pub(crate) auth: VaultAuth,
    pub(crate) concurrency: usize,
    pub(crate) retries: u32,
    pub(crate) timeout: Duration,
    pub(crate) allow_insecure_http: bool,
    pub(crate) proxies: Proxies,
}

/// The proxies the environment names, and whether plain or loopback targets may use them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    /// For `https://` targets: `HTTPS_PROXY`, else `ALL_PROXY` (either case).
    pub https: Option<String>,
    /// For `http://` targets, only with `plain`: `HTTP_PROXY`, else `ALL_PROXY` (either case).
    pub http: Option<String>,
    /// `NO_PROXY` (either case).
    pub no_proxy: Option<String>,
    /// `SKM_VAULT_PROXY_PLAIN=1`: let plain-http and loopback targets go through a proxy too.
    pub plain: bool,
}

impl fmt::Debug for VaultBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBuilder")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("namespace", &self.namespace)
            .field("ca_certs", &self.ca_certs)
            .field("skip_verify", &self.skip_verify)
            .field("mount", &self.mount)
            .field("kv_version", &self.kv_version)
            .field("auth", &self.auth)
            .field("concurrency", &self.concurrency)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("proxy_plain", &self.proxies.plain)
            .finish_non_exhaustive()
    }
}

impl VaultBuilder {
    /// A builder for the server at `address` (e.g. `https://vault.internal:8200`), with token auth, the
    /// `secret` mount, its KV version detected, and nothing read from the environment.
    pub fn new(address: impl Into<String>) -> Self {
        VaultBuilder {
            address: address.into(),
            token: None,
            namespace: None,
            ca_certs: Vec::new(),
            skip_verify: false,
            mount: DEFAULT_MOUNT.into(),
            kv_version: None,
            auth: VaultAuth::Token,
            concurrency: DEFAULT_CONCURRENCY,
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            allow_insecure_http: false,
            proxies: Proxies::default(),
        }
    }

    /// A builder configured from the process environment; see [`VaultBuilder::from_vars`] for the variables.
    ///
    /// # Errors
    /// As [`VaultBuilder::from_vars`].
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// A builder configured from variables looked up through `var` (the process environment for
    /// [`VaultBuilder::from_env`]). Empty values count as unset.
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `VAULT_ADDR` | the server | `https://127.0.0.1:8200` (as the Vault CLI) |
    /// | `VAULT_TOKEN` | the token, for token auth | the file `$HOME/.vault-token` |
    /// | `VAULT_NAMESPACE` | the namespace (Vault Enterprise, OpenBao) | none |
    /// | `VAULT_CACERT` | a PEM file of CA certificates to trust | the system's roots |
    /// | `VAULT_CAPATH` | a directory of PEM CA certificates to trust | |
    /// | `VAULT_SKIP_VERIFY` | `true`/`1`: do not verify the server's certificate (never in production) | `false` |
    /// | `VAULT_CLIENT_TIMEOUT` | per-request timeout, in seconds (`5` or `5s`); connecting is bounded to 3 s | 5 s |
    /// | `SKM_VAULT_MOUNT` | the KV mount | `secret` |
    /// | `SKM_VAULT_KV_VERSION` | `1` or `2` | detected from the mount, else 2 |
    /// | `SKM_VAULT_CONCURRENCY` | reads in flight per fetch | 64 |
    /// | `SKM_VAULT_ALLOW_HTTP` | `1`: allow plain `http://` to a non-loopback host | refuse |
    /// | `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY` (or lower case) | the proxy for `https://` targets that are not loopback (a CONNECT tunnel: TLS ends at Vault) | none |
    /// | `HTTP_PROXY` | the proxy for plain `http://` targets, only with `SKM_VAULT_PROXY_PLAIN=1` | none |
    /// | `SKM_VAULT_PROXY_PLAIN` | `1`: let plain-http and loopback targets go through the proxy (the token crosses it in clear text) | refuse |
    /// | `SKM_VAULT_AUTH` | `token`, `approle`, `kubernetes`, `jwt` or `cert` | `token` |
    /// | `SKM_VAULT_ROLE_ID` / `SKM_VAULT_ROLE_ID_FILE` | AppRole role id, or a file holding it | |
    /// | `SKM_VAULT_SECRET_ID` / `SKM_VAULT_SECRET_ID_FILE` | AppRole secret id, or a file holding it | |
    /// | `SKM_VAULT_APPROLE_MOUNT` | AppRole auth mount | `approle` |
    /// | `SKM_VAULT_K8S_ROLE` | Kubernetes auth role | |
    /// | `SKM_VAULT_K8S_JWT_FILE` | the service-account JWT file | [`DEFAULT_K8S_JWT_FILE`](super::DEFAULT_K8S_JWT_FILE) |
    /// | `SKM_VAULT_K8S_MOUNT` | Kubernetes auth mount | `kubernetes` |
    /// | `SKM_VAULT_JWT_ROLE` | JWT/OIDC auth role | |
    /// | `SKM_VAULT_JWT_MOUNT` | JWT/OIDC auth mount | `jwt` |
    /// | `SKM_VAULT_JWT_FILE` | a file holding the JWT, re-read at each login | in GitHub Actions, the runner's OIDC token |
    /// | `ACTIONS_ID_TOKEN_REQUEST_URL`, `ACTIONS_ID_TOKEN_REQUEST_TOKEN` | GitHub Actions' OIDC endpoint (set by the runner with `permissions: id-token: write`) | |
    /// | `SKM_VAULT_JWT_AUDIENCE` | the audience to ask GitHub Actions for (one of the role's `bound_audiences`) | GitHub's default |
    /// | `VAULT_CLIENT_CERT`, `VAULT_CLIENT_KEY` | the client certificate and key (PEM) for `cert` auth, re-read at each login; presented for `cert` auth only | |
    /// | `SKM_VAULT_CERT_ROLE` | the certificate role to log in with | every role of the mount |
    /// | `SKM_VAULT_CERT_MOUNT` | TLS certificate auth mount | `cert` |
    ///
    /// # Errors
    /// [`Error::Config`] when a value is malformed or a required one is missing (e.g. `SKM_VAULT_AUTH=approle`
    /// without a role id). Whether the token works is only known once the server answers.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::backend::vault::{KvVersion, VaultBuilder};
    /// let vars = [("VAULT_ADDR", "http://127.0.0.1:8200"), ("VAULT_TOKEN", "t"), ("SKM_VAULT_KV_VERSION", "1")];
    /// let builder = VaultBuilder::from_vars(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))?;
    /// assert_eq!(builder.get_kv_version(), Some(KvVersion::V1));
    /// # Ok::<(), skm_runtime::Error>(())
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut b = VaultBuilder::new(get("VAULT_ADDR").unwrap_or_else(|| "https://127.0.0.1:8200".into()));
        b.namespace = get("VAULT_NAMESPACE").map(|n| n.trim_matches('/').to_string());
        if let Some(ca) = get("VAULT_CACERT") {
            b.ca_certs.push(PathBuf::from(ca));
        }
        if let Some(dir) = get("VAULT_CAPATH") {
            b.ca_certs.extend(pem_files_in(Path::new(&dir))?);
        }
        if let Some(v) = get("VAULT_SKIP_VERIFY") {
            b.skip_verify = parse_bool("VAULT_SKIP_VERIFY", &v)?;
        }
        if let Some(v) = get("VAULT_CLIENT_TIMEOUT") {
            let secs: u64 = v.trim_end_matches('s').parse().map_err(|_| {
                Error::config(format!(
                    "VAULT_CLIENT_TIMEOUT=`{v}` is not a number of seconds (e.g. 30)"
                ))
            })?;
            b.timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(m) = get("SKM_VAULT_MOUNT") {
            b = b.mount(m);
        }
        if let Some(v) = get("SKM_VAULT_KV_VERSION") {
            b.kv_version = Some(v.parse()?);
        }
        if let Some(v) = get("SKM_VAULT_CONCURRENCY") {
            let n: usize = v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::config(format!("SKM_VAULT_CONCURRENCY=`{v}` must be a positive number")))?;
            b.concurrency = n;
        }
        if let Some(v) = get("SKM_VAULT_ALLOW_HTTP") {
            b.allow_insecure_http = parse_bool("SKM_VAULT_ALLOW_HTTP", &v)?;
        }
        let either = |upper: &str| get(upper).or_else(|| get(&upper.to_ascii_lowercase()));
        b.proxies = Proxies {
            https: either("HTTPS_PROXY").or_else(|| either("ALL_PROXY")),
            http: either("HTTP_PROXY").or_else(|| either("ALL_PROXY")),
            no_proxy: either("NO_PROXY"),
            plain: match get("SKM_VAULT_PROXY_PLAIN") {
                Some(v) => parse_bool("SKM_VAULT_PROXY_PLAIN", &v)?,
                None => false,
            },
        };
        let credential = |name: &str| -> Result<Option<Credential>, Error> {
            match (get(name), get(&format!("{name}_FILE"))) {
                (Some(_), Some(_)) => Err(Error::config(format!("set {name} or {name}_FILE, not both"))),
                (Some(v), None) => Ok(Some(Credential::value(v))),
                (None, Some(f)) => Ok(Some(Credential::file(f))),
                (None, None) => Ok(None),
            }
        };
        let method = get("SKM_VAULT_AUTH")
            .unwrap_or_else(|| "token".into())
            .to_ascii_lowercase();
        if method != "cert" && get("VAULT_CLIENT_CERT").is_some() {
            tracing::debug!(target: "skm", method = %method,
                "VAULT_CLIENT_CERT is set but not presented: skm presents a client certificate for SKM_VAULT_AUTH=cert only");
        }
        match method.as_str() {
            "token" => {
                b.token = match get("VAULT_TOKEN") {
                    Some(t) => Some(SecretString::from(t)),
                    // The Vault CLI's `login` stores the token there.
                    None => get("HOME")
                        .and_then(|home| std::fs::read_to_string(Path::new(&home).join(".vault-token")).ok())
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .map(SecretString::from),
                };
            }
            "approle" => {
                let missing = |what: &str, var: &str| {
                    Error::config(format!(
                        "SKM_VAULT_AUTH=approle needs the {what}: set {var} or {var}_FILE (a file holding it)"
                    ))
                };
                let role_id =
                    credential("SKM_VAULT_ROLE_ID")?.ok_or_else(|| missing("role id", "SKM_VAULT_ROLE_ID"))?;
                let secret_id =
                    credential("SKM_VAULT_SECRET_ID")?.ok_or_else(|| missing("secret id", "SKM_VAULT_SECRET_ID"))?;
                let mut auth = VaultAuth::approle(role_id, secret_id);
                if let Some(m) = get("SKM_VAULT_APPROLE_MOUNT") {
                    auth = auth.with_mount(m);
                }
                b.auth = auth;
            }
            "kubernetes" | "k8s" => {
                let role = get("SKM_VAULT_K8S_ROLE").ok_or_else(|| {
                    Error::config(
                        "SKM_VAULT_AUTH=kubernetes needs the Vault role: set SKM_VAULT_K8S_ROLE (e.g. `my-service`)"
                            .into(),
                    )
                })?;
                let mut auth = VaultAuth::kubernetes(role);
                if let VaultAuth::Kubernetes { jwt, .. } = &mut auth {
                    if let Some(f) = get("SKM_VAULT_K8S_JWT_FILE") {
                        *jwt = Credential::file(f);
                    }
                }
                if let Some(m) = get("SKM_VAULT_K8S_MOUNT") {
                    auth = auth.with_mount(m);
                }
                b.auth = auth;
            }
            "jwt" | "oidc" => {
                let role = get("SKM_VAULT_JWT_ROLE").ok_or_else(|| {
                    Error::config("SKM_VAULT_AUTH=jwt needs the Vault role: set SKM_VAULT_JWT_ROLE (e.g. `ci`)".into())
                })?;
                let actions = (
                    get("ACTIONS_ID_TOKEN_REQUEST_URL"),
                    get("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
                );
                let audience = get("SKM_VAULT_JWT_AUDIENCE");
                let mut auth =
                    match (get("SKM_VAULT_JWT_FILE"), actions) {
                        (Some(file), _) => VaultAuth::jwt(role, Credential::file(file)),
                        (None, (Some(url), Some(token))) => {
                            endpoint::check("ACTIONS_ID_TOKEN_REQUEST_URL", &url, false, "")?;
                            VaultAuth::github_actions(role, url, token, audience)
                        }
                        (None, (Some(_), None)) | (None, (None, Some(_))) => {
                            return Err(Error::config(
                                "SKM_VAULT_AUTH=jwt: only one of ACTIONS_ID_TOKEN_REQUEST_URL and \
                             ACTIONS_ID_TOKEN_REQUEST_TOKEN is set; the GitHub Actions runner sets both when the job \
                             has `permissions: id-token: write`"
                                    .into(),
                            ))
                        }
                        (None, (None, None)) => return Err(Error::config(
                            "SKM_VAULT_AUTH=jwt needs a JWT: set SKM_VAULT_JWT_FILE (a file holding it), or run in \
                             GitHub Actions with `permissions: id-token: write` (which sets \
                             ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN)"
                                .into(),
                        )),
                    };
                if let Some(m) = get("SKM_VAULT_JWT_MOUNT") {
                    auth = auth.with_mount(m);
                }
                b.auth = auth;
            }
            "cert" => {
                let (cert, key) = match (get("VAULT_CLIENT_CERT"), get("VAULT_CLIENT_KEY")) {
                    (Some(c), Some(k)) => (c, k),
                    _ => {
                        return Err(Error::config(
                            "SKM_VAULT_AUTH=cert needs the client certificate and its key: set VAULT_CLIENT_CERT \
                             and VAULT_CLIENT_KEY (PEM files)"
                                .into(),
                        ))
                    }
                };
                let mut auth = VaultAuth::cert(cert, key);
                if let Some(r) = get("SKM_VAULT_CERT_ROLE") {
                    auth = auth.with_cert_role(r);
                }
                if let Some(m) = get("SKM_VAULT_CERT_MOUNT") {
                    auth = auth.with_mount(m);
                }
                b.auth = auth;
            }
            other => {
                return Err(Error::config(format!(
                    "SKM_VAULT_AUTH=`{other}` is not supported: use token, approle, kubernetes, jwt or cert"
                )))
            }
        }
        Ok(b)
    }

    /// Sets the server address.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// Sets the token (for [`VaultAuth::Token`]).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(SecretString::from(token.into()));
        self
    }

    /// Sets the namespace, sent as `X-Vault-Namespace` on every request (logins included).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        let ns = namespace.into().trim_matches('/').to_string();
        self.namespace = (!ns.is_empty()).then_some(ns);
        self
    }

    /// Trusts the CA certificates in the PEM file at `path`, in addition to the system's.
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_certs.push(path.into());
        self
    }

    /// Skips TLS certificate verification. Only for throwaway test servers.
    pub fn skip_verify(mut self, skip: bool) -> Self {
        self.skip_verify = skip;
        self
    }

    /// Sets the KV mount (default `secret`); paths are relative to it.
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into().trim_matches('/').to_string();
        self
    }

    /// Fixes the KV version instead of detecting it from the mount.
    pub fn kv_version(mut self, version: KvVersion) -> Self {
        self.kv_version = Some(version);
        self
    }

    /// The KV version set so far (`None`: detect at build).
    pub fn get_kv_version(&self) -> Option<KvVersion> {
        self.kv_version
    }

    /// Sets the auth method.
    pub fn auth(mut self, auth: VaultAuth) -> Self {
        self.auth = auth;
        self
    }

    /// How many reads one fetch keeps in flight (default 64, so a typical service loads in one round trip; at
    /// least 1; env `SKM_VAULT_CONCURRENCY`): the name every backend builder shares.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How many reads one fetch keeps in flight.
    #[deprecated(
        since = "0.1.0",
        note = "renamed `max_in_flight`, the name every backend builder shares"
    )]
    pub fn concurrency(self, n: usize) -> Self {
        self.max_in_flight(n)
    }

    /// Attempts per read, the first included (default 5, at least 1; `1` disables retries): the name every
    /// backend builder shares, the same as [`retries`](Self::retries)`(attempts - 1)`.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.retries = attempts.max(1) - 1;
        self
    }

    /// How many times a read that failed transiently (429, 5xx, a reset connection, a timeout) is retried,
    /// after about 100 ms, 200 ms, 400 ms... with jitter (default 4; 0 disables). A refused connection is not
    /// retried (nothing listens there), and a retry starts only if it can end, one [`timeout`](Self::timeout)
    /// later, within 12 s of the call's start: a stalled server fails one fetch within 12 s, below the
    /// loader's deadline ([`Loader::deadline`](crate::Loader::deadline), 30 s by default).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The per-request timeout (default 5 s; env `VAULT_CLIENT_TIMEOUT`). Connecting is bounded to 3 s (or
    /// this timeout, if shorter).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allows plain `http://` to a host that is not loopback, which sends the token unencrypted. Only on a
    /// network you trust; the env equivalent is `SKM_VAULT_ALLOW_HTTP=1`.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Sends requests through `proxy` (e.g. `http://proxy.internal:3128`): `https://` targets that are not
    /// loopback always (as a CONNECT tunnel, so TLS ends at Vault); plain-`http://` and loopback targets only
    /// with [`proxy_plain`](Self::proxy_plain). Without this, only [`from_env`](Self::from_env) reads the
    /// proxy variables.
    pub fn proxy(mut self, proxy: impl Into<String>) -> Self {
        let proxy = proxy.into();
        self.proxies.https = Some(proxy.clone());
        self.proxies.http = Some(proxy);
        self
    }

    /// Lets plain-`http://` and loopback targets go through the proxy too, which shows the token to the proxy
    /// in clear text (default `false`; env `SKM_VAULT_PROXY_PLAIN=1`).
    pub fn proxy_plain(mut self, allow: bool) -> Self {
        self.proxies.plain = allow;
        self
    }

    /// Builds the backend: checks the address, logs in (AppRole, Kubernetes) or looks the token up, detects
    /// the mount's KV version, and starts the background token renewal.
    ///
    /// A server that is down or refuses the credentials does not fail the build: each fetch then reports
    /// the failure per secret (so that the loader can fall back to env with a warning) and retries the login.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed or plain-`http://` non-loopback address, no token for token auth,
    /// an unreadable credential file; [`Error::Backend`] when the HTTP client cannot be built (e.g. a bad CA
    /// file).
    pub async fn build(self) -> Result<super::VaultBackend, Error> {
        super::VaultBackend::build(self).await
    }

    /// Checks the address with the rule every backend shares (`backend/endpoint.rs`) and returns it parsed;
    /// no connection is made. `https://` anywhere; plain `http://` (in any letter case) only on a loopback
    /// host (`127.0.0.1`, `[::1]`, or `localhost` when it resolves to loopback only) unless
    /// [`allow_insecure_http`](Self::allow_insecure_http); a user name or password in the URL never.
    pub(crate) fn checked_address(&self) -> Result<url::Url, Error> {
        let url = endpoint::check(
            "VAULT_ADDR",
            &self.address,
            self.allow_insecure_http,
            "SKM_VAULT_ALLOW_HTTP=1 (VaultBuilder::allow_insecure_http(true))",
        )?;
        if url.scheme() == "http" && !endpoint::is_loopback(&url) {
            tracing::warn!(target: "skm", host = %url.host_str().unwrap_or_default(),
                "sending the Vault token over plain http to a non-loopback host, as explicitly allowed");
        }
        Ok(url)
    }
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;
