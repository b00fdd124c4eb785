//! Configuration: the builder, the environment variables it reads, and the address check.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::Error;

/// The default KV mount.
pub(crate) const DEFAULT_MOUNT: &str = "secret";
/// How many reads one fetch runs at once by default: enough for a typical service to load in one round trip
/// (the benchmark of 50 paths took 7.8 round trips at 8).
pub(crate) const DEFAULT_CONCURRENCY: usize = 64;
/// Retries of a read that failed transiently (429, 5xx, a refused or reset connection, a timeout) by default:
/// five attempts in all, so that a load survives a server failing 30 % of requests 99.7 % of the time.
pub(crate) const DEFAULT_RETRIES: u32 = 4;
/// The default per-request timeout: long enough for a loaded server, short enough for a service's startup.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Kubernetes mounts a pod's service-account token.
pub const DEFAULT_K8S_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Which version of the KV secrets engine a mount runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvVersion {
    /// KV version 1: one value per path, no versions.
    V1,
    /// KV version 2: versioned, with metadata and check-and-set.
    V2,
}

impl fmt::Display for KvVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvVersion::V1 => "KV v1",
            KvVersion::V2 => "KV v2",
        })
    }
}

impl std::str::FromStr for KvVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().trim_start_matches(['v', 'V']) {
            "1" => Ok(KvVersion::V1),
            "2" => Ok(KvVersion::V2),
            other => Err(Error::config(format!(
                "SKM_VAULT_KV_VERSION=`{other}` is not a KV version: use 1 or 2, or unset it to detect the mount's"
            ))),
        }
    }
}

/// A credential given directly or read from a file at each login (so that a rotated file is picked up).
#[derive(Clone)]
pub enum Credential {
    /// The value itself.
    Value(SecretString),
    /// A file holding the value; surrounding whitespace is ignored.
    File(PathBuf),
}

impl Credential {
    /// A credential given as a value.
    pub fn value(value: impl Into<String>) -> Self {
        Credential::Value(SecretString::from(value.into()))
    }

    /// A credential read from `path` at each login.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Credential::File(path.into())
    }

    /// Reads the credential; `what` names it in the error (e.g. `AppRole secret id`).
    pub(crate) fn read(&self, what: &str) -> Result<SecretString, String> {
        match self {
            Credential::Value(v) => Ok(v.clone()),
            Credential::File(path) => match std::fs::read_to_string(path) {
                Ok(text) if !text.trim().is_empty() => Ok(SecretString::from(text.trim().to_string())),
                Ok(_) => Err(format!("the {what} file {} is empty", path.display())),
                Err(e) => Err(format!("cannot read the {what} file {}: {e}", path.display())),
            },
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Value(_) => f.write_str("Value([REDACTED])"),
            Credential::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// How the backend authenticates to Vault.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum VaultAuth {
    /// A token (`VAULT_TOKEN` or `~/.vault-token`). A renewable token is renewed in the background; it cannot
    /// be replaced when it reaches its max TTL.
    Token,
    /// AppRole: logs in with a role id and a secret id, and again whenever the token cannot be renewed.
    AppRole {
        /// The auth mount (default `approle`).
        mount: String,
        /// The role id.
        role_id: Credential,
        /// The secret id.
        secret_id: Credential,
    },
    /// Kubernetes: logs in with the pod's service-account JWT, and again whenever the token cannot be renewed.
    Kubernetes {
        /// The auth mount (default `kubernetes`).
        mount: String,
        /// The Vault role bound to the service account.
        role: String,
        /// The service-account JWT (default: the file [`DEFAULT_K8S_JWT_FILE`]), re-read at each login.
        jwt: Credential,
    },
}

impl VaultAuth {
    /// AppRole on the default mount `approle`.
    pub fn approle(role_id: Credential, secret_id: Credential) -> Self {
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id,
        }
    }

    /// Kubernetes on the default mount `kubernetes`, with the pod's service-account token file.
    pub fn kubernetes(role: impl Into<String>) -> Self {
        VaultAuth::Kubernetes {
            mount: "kubernetes".into(),
            role: role.into(),
            jwt: Credential::file(DEFAULT_K8S_JWT_FILE),
        }
    }

    /// The same method on another auth mount (e.g. `k8s-prod`).
    pub fn with_mount(mut self, new_mount: impl Into<String>) -> Self {
        match &mut self {
            VaultAuth::Token => {}
            VaultAuth::AppRole { mount, .. } | VaultAuth::Kubernetes { mount, .. } => {
                *mount = new_mount.into().trim_matches('/').to_string()
            }
        }
        self
    }

    /// Whether this method can obtain a new token by itself.
    pub(crate) fn can_login(&self) -> bool {
        !matches!(self, VaultAuth::Token)
    }

    /// A short name for logs and errors.
    pub(crate) fn describe(&self) -> String {
        match self {
            VaultAuth::Token => "token".into(),
            VaultAuth::AppRole { mount, .. } => format!("AppRole (auth/{mount})"),
            VaultAuth::Kubernetes { mount, role, .. } => format!("Kubernetes role `{role}` (auth/{mount})"),
        }
    }
}

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
            .finish()
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
    /// | `VAULT_CLIENT_TIMEOUT` | per-request timeout, in seconds (`30` or `30s`) | 30 s |
    /// | `SKM_VAULT_MOUNT` | the KV mount | `secret` |
    /// | `SKM_VAULT_KV_VERSION` | `1` or `2` | detected from the mount, else 2 |
    /// | `SKM_VAULT_CONCURRENCY` | reads in flight per fetch | 8 |
    /// | `SKM_VAULT_ALLOW_HTTP` | `1`: allow plain `http://` to a non-loopback host | refuse |
    /// | `SKM_VAULT_AUTH` | `token`, `approle` or `kubernetes` | `token` |
    /// | `SKM_VAULT_ROLE_ID` / `SKM_VAULT_ROLE_ID_FILE` | AppRole role id, or a file holding it | |
    /// | `SKM_VAULT_SECRET_ID` / `SKM_VAULT_SECRET_ID_FILE` | AppRole secret id, or a file holding it | |
    /// | `SKM_VAULT_APPROLE_MOUNT` | AppRole auth mount | `approle` |
    /// | `SKM_VAULT_K8S_ROLE` | Kubernetes auth role | |
    /// | `SKM_VAULT_K8S_JWT_FILE` | the service-account JWT file | [`DEFAULT_K8S_JWT_FILE`] |
    /// | `SKM_VAULT_K8S_MOUNT` | Kubernetes auth mount | `kubernetes` |
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
            other => {
                return Err(Error::config(format!(
                    "SKM_VAULT_AUTH=`{other}` is not supported: use token, approle or kubernetes"
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

    /// How many reads one fetch keeps in flight (default 64, so a typical service loads in one round trip; at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How many times a read that failed transiently (429, 5xx, a refused or reset connection, a timeout) is
    /// retried, after about 100 ms, 200 ms, 400 ms... with jitter (default 4; 0 disables). A stalled server
    /// costs up to one [`timeout`](Self::timeout) per attempt: bound the whole load with
    /// [`Loader::deadline`](crate::Loader::deadline).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The per-request timeout (default 30 s).
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

    /// Checks the address and returns it parsed; no connection is made.
    pub(crate) fn checked_address(&self) -> Result<url::Url, Error> {
        let url = url::Url::parse(&self.address).map_err(|e| {
            Error::config(format!(
                "VAULT_ADDR=`{}` is not a URL ({e}): write e.g. https://vault.internal:8200",
                self.address
            ))
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::config(
                "VAULT_ADDR must not contain credentials: pass the token with VAULT_TOKEN".into(),
            ));
        }
        let host = url.host_str().unwrap_or_default().to_string();
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) || self.allow_insecure_http => {
                if !is_loopback(&url) {
                    tracing::warn!(target: "skm", host = %host,
                        "sending the Vault token over plain http to a non-loopback host, as explicitly allowed");
                }
            }
            "http" => {
                return Err(Error::config(format!(
                    "refusing to send a Vault token over plain http:// to `{host}`, which is not a loopback \
                     address: use https:// (VAULT_ADDR=https://{host}:{}), or, on a network you trust, opt in \
                     with SKM_VAULT_ALLOW_HTTP=1 (VaultBuilder::allow_insecure_http(true))",
                    url.port_or_known_default().unwrap_or(8200)
                )))
            }
            other => {
                return Err(Error::config(format!(
                    "VAULT_ADDR scheme `{other}` is not supported: use https:// (or http:// on loopback)"
                )))
            }
        }
        if host.is_empty() {
            return Err(Error::config(format!("VAULT_ADDR=`{}` has no host", self.address)));
        }
        Ok(url)
    }
}

/// Whether `url` names this machine without a DNS lookup: `localhost`, 127.0.0.0/8 or `::1`.
pub(super) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Parses a boolean the way the Vault CLI does (Go's `strconv.ParseBool`).
fn parse_bool(name: &str, v: &str) -> Result<bool, Error> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Ok(true),
        "0" | "f" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(format!(
            "{name}=`{v}` is not a boolean: use true or false"
        ))),
    }
}

/// The regular files of a CA directory, sorted so that the order is stable.
fn pem_files_in(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::config(format!(
            "VAULT_CAPATH={}: cannot read the directory: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The token a builder carries, if any, exposed for the client.
pub(crate) fn token_text(token: &Option<SecretString>) -> Option<String> {
    token.as_ref().map(|t| t.expose_secret().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<VaultBuilder, Error> {
        VaultBuilder::from_vars(|n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn plain_http_only_on_loopback_unless_allowed() {
        for ok in [
            "https://vault.internal:8200",
            "http://127.0.0.1:8200",
            "http://127.8.9.1",
            "http://[::1]:8200",
            "http://localhost:8200",
        ] {
            assert!(VaultBuilder::new(ok).checked_address().is_ok(), "{ok}");
        }
        for refused in [
            "http://10.255.255.1:8200",
            "http://vault.internal",
            "http://localhost.evil.com",
            "http://[fe80::1]",
        ] {
            let e = VaultBuilder::new(refused).checked_address().unwrap_err().to_string();
            assert!(e.contains("SKM_VAULT_ALLOW_HTTP=1"), "{refused}: {e}");
        }
        assert!(VaultBuilder::new("http://10.255.255.1:8200")
            .allow_insecure_http(true)
            .checked_address()
            .is_ok());
        let allowed = from(&[
            ("VAULT_ADDR", "http://vault.internal"),
            ("VAULT_TOKEN", "t"),
            ("SKM_VAULT_ALLOW_HTTP", "1"),
        ]);
        assert!(allowed.unwrap().checked_address().is_ok());
        assert!(VaultBuilder::new("ftp://vault").checked_address().is_err());
        assert!(VaultBuilder::new("https://user:pw@vault").checked_address().is_err());
        assert!(VaultBuilder::new("not a url").checked_address().is_err());
    }

    #[test]
    fn reads_every_variable() {
        let b = from(&[
            ("VAULT_ADDR", "https://v:8200"),
            ("VAULT_TOKEN", "hvs.S3CRET"),
            ("VAULT_NAMESPACE", "/team/a/"),
            ("VAULT_CACERT", "/ca.pem"),
            ("VAULT_SKIP_VERIFY", "true"),
            ("VAULT_CLIENT_TIMEOUT", "5s"),
            ("SKM_VAULT_MOUNT", "/kv/"),
            ("SKM_VAULT_KV_VERSION", "1"),
            ("SKM_VAULT_CONCURRENCY", "3"),
        ])
        .unwrap();
        assert_eq!(b.address, "https://v:8200");
        assert_eq!(b.namespace.as_deref(), Some("team/a"));
        assert_eq!(b.ca_certs, [PathBuf::from("/ca.pem")]);
        assert!(b.skip_verify);
        assert_eq!(b.timeout, Duration::from_secs(5));
        assert_eq!(
            (b.mount.as_str(), b.kv_version, b.concurrency),
            ("kv", Some(KvVersion::V1), 3)
        );
        assert!(!format!("{b:?}").contains("S3CRET"), "the token is redacted");

        let d = from(&[("VAULT_TOKEN", "t")]).unwrap();
        assert_eq!(
            (d.address.as_str(), d.mount.as_str(), d.kv_version),
            ("https://127.0.0.1:8200", "secret", None)
        );
        assert_eq!((d.concurrency, d.retries), (DEFAULT_CONCURRENCY, DEFAULT_RETRIES));
    }

    #[test]
    fn token_falls_back_to_the_cli_token_file() {
        let home = std::env::temp_dir().join(format!("skm-vault-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".vault-token"), "from-file\n").unwrap();
        let b = from(&[("HOME", home.to_str().unwrap())]).unwrap();
        assert_eq!(token_text(&b.token).as_deref(), Some("from-file"));
        let b = from(&[("HOME", home.to_str().unwrap()), ("VAULT_TOKEN", "from-env")]).unwrap();
        assert_eq!(token_text(&b.token).as_deref(), Some("from-env"));
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn auth_methods_and_their_errors() {
        let b = from(&[
            ("SKM_VAULT_AUTH", "approle"),
            ("SKM_VAULT_ROLE_ID", "r"),
            ("SKM_VAULT_SECRET_ID_FILE", "/s"),
        ])
        .unwrap();
        match &b.auth {
            VaultAuth::AppRole {
                mount,
                role_id: Credential::Value(_),
                secret_id: Credential::File(f),
            } => {
                assert_eq!((mount.as_str(), f.as_path()), ("approle", Path::new("/s")));
            }
            other => panic!("{other:?}"),
        }
        let e = from(&[("SKM_VAULT_AUTH", "approle"), ("SKM_VAULT_ROLE_ID", "r")]).unwrap_err();
        assert!(e.to_string().contains("SKM_VAULT_SECRET_ID_FILE"), "{e}");
        let e = from(&[
            ("SKM_VAULT_AUTH", "approle"),
            ("SKM_VAULT_ROLE_ID", "r"),
            ("SKM_VAULT_ROLE_ID_FILE", "/r"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");

        let b = from(&[("SKM_VAULT_AUTH", "kubernetes"), ("SKM_VAULT_K8S_ROLE", "app")]).unwrap();
        match &b.auth {
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt: Credential::File(f),
            } => {
                assert_eq!((mount.as_str(), role.as_str()), ("kubernetes", "app"));
                assert_eq!(f, Path::new(DEFAULT_K8S_JWT_FILE));
            }
            other => panic!("{other:?}"),
        }
        let e = from(&[("SKM_VAULT_AUTH", "kubernetes")]).unwrap_err();
        assert!(e.to_string().contains("SKM_VAULT_K8S_ROLE"), "{e}");
        let e = from(&[("SKM_VAULT_AUTH", "ldap")]).unwrap_err();
        assert!(e.to_string().contains("token, approle or kubernetes"), "{e}");
        assert!(from(&[("SKM_VAULT_KV_VERSION", "3")]).is_err());
        assert!(from(&[("SKM_VAULT_CONCURRENCY", "0")]).is_err());
        assert!(from(&[("VAULT_SKIP_VERIFY", "maybe")]).is_err());
        assert!(!format!("{:?}", Credential::value("hunter2")).contains("hunter2"));
    }
}
