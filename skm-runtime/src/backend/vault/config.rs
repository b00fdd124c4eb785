//! Configuration types (KV version, credentials, auth methods) and the checks the builder applies.

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
/// The default per-request timeout: the attempt timeout every backend shares (`backend/endpoint.rs`), so that
/// a server that accepts connections and never answers fails a fetch well within the loader's deadline.
pub(crate) const DEFAULT_TIMEOUT: Duration = crate::backend::endpoint::ATTEMPT_TIMEOUT;
/// Where Kubernetes mounts a pod's service-account token.
pub const DEFAULT_K8S_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The default mount of the JWT/OIDC auth method.
pub const DEFAULT_JWT_MOUNT: &str = "jwt";
/// The default mount of the TLS certificate auth method.
pub const DEFAULT_CERT_MOUNT: &str = "cert";

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

/// Where a JWT login's token comes from, at each login (so that a renewed token is picked up).
#[derive(Clone)]
#[non_exhaustive]
pub enum JwtSource {
    /// A JWT given as a value or, usually, a file the platform keeps fresh (`SKM_VAULT_JWT_FILE`).
    Credential(Credential),
    /// GitHub Actions' OIDC endpoint: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
    /// `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered with `{"value": "<JWT>"}`. The job
    /// needs `permissions: id-token: write`.
    GithubActions {
        /// `ACTIONS_ID_TOKEN_REQUEST_URL`: `https://`, or plain `http://` on loopback only.
        url: String,
        /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
        request_token: SecretString,
        /// The audience to ask for (`SKM_VAULT_JWT_AUDIENCE`); GitHub's default (the repository owner's URL)
        /// when `None`. It must be one of the Vault role's `bound_audiences`.
        audience: Option<String>,
    },
}

impl JwtSource {
    /// A short name for errors: the file, or the Actions endpoint (never the JWT or the request token).
    pub(crate) fn describe(&self) -> String {
        match self {
            JwtSource::Credential(Credential::File(p)) => format!("the JWT file {}", p.display()),
            JwtSource::Credential(Credential::Value(_)) => "the JWT given".into(),
            JwtSource::GithubActions { .. } => "the GitHub Actions OIDC token".into(),
        }
    }
}

impl fmt::Debug for JwtSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtSource::Credential(c) => f.debug_tuple("Credential").field(c).finish(),
            JwtSource::GithubActions { url, audience, .. } => f
                .debug_struct("GithubActions")
                .field("url", &url.split('?').next().unwrap_or_default())
                .field("request_token", &"[REDACTED]")
                .field("audience", audience)
                .finish(),
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
    /// JWT/OIDC (`auth/jwt`): logs in with a JWT the platform issued (a CI job's OIDC token, a workload
    /// identity token), obtained again at each login, and again whenever the token cannot be renewed.
    Jwt {
        /// The auth mount (default [`DEFAULT_JWT_MOUNT`]).
        mount: String,
        /// The Vault role whose bound claims the JWT must match.
        role: String,
        /// Where the JWT comes from.
        jwt: JwtSource,
    },
    /// TLS certificate (`auth/cert`): logs in by presenting a client certificate over TLS (the HTTP client
    /// presents it for this method only), again whenever the token cannot be renewed, and again when the
    /// certificate file changes on disk (a platform renewed it).
    Cert {
        /// The auth mount (default [`DEFAULT_CERT_MOUNT`]).
        mount: String,
        /// The certificate role to try (`name`); every role of the mount when `None`.
        role: Option<String>,
        /// The client certificate (PEM, `VAULT_CLIENT_CERT`), re-read at each login.
        cert: PathBuf,
        /// Its private key (PEM, `VAULT_CLIENT_KEY`), re-read at each login.
        key: PathBuf,
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

    /// JWT/OIDC on the default mount `jwt`, with the JWT read from `jwt` at each login.
    pub fn jwt(role: impl Into<String>, jwt: Credential) -> Self {
        VaultAuth::Jwt {
            mount: DEFAULT_JWT_MOUNT.into(),
            role: role.into(),
            jwt: JwtSource::Credential(jwt),
        }
    }

    /// JWT/OIDC on the default mount `jwt`, with the JWT asked from GitHub Actions' OIDC endpoint at each
    /// login (`url` and `request_token` are the runner's `ACTIONS_ID_TOKEN_REQUEST_URL` and
    /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
    pub fn github_actions(
        role: impl Into<String>,
        url: impl Into<String>,
        request_token: impl Into<String>,
        audience: Option<String>,
    ) -> Self {
        VaultAuth::Jwt {
            mount: DEFAULT_JWT_MOUNT.into(),
            role: role.into(),
            jwt: JwtSource::GithubActions {
                url: url.into(),
                request_token: SecretString::from(request_token.into()),
                audience,
            },
        }
    }

    /// TLS certificate login on the default mount `cert`, presenting the PEM certificate and key at these
    /// paths (re-read at each login), trying every certificate role of the mount.
    pub fn cert(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        VaultAuth::Cert {
            mount: DEFAULT_CERT_MOUNT.into(),
            role: None,
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// For [`VaultAuth::Cert`]: try only the certificate role `name` (env `SKM_VAULT_CERT_ROLE`).
    pub fn with_cert_role(mut self, name: impl Into<String>) -> Self {
        if let VaultAuth::Cert { role, .. } = &mut self {
            *role = Some(name.into());
        }
        self
    }

    /// The same method on another auth mount (e.g. `k8s-prod`).
    pub fn with_mount(mut self, new_mount: impl Into<String>) -> Self {
        match &mut self {
            VaultAuth::Token => {}
            VaultAuth::AppRole { mount, .. }
            | VaultAuth::Kubernetes { mount, .. }
            | VaultAuth::Jwt { mount, .. }
            | VaultAuth::Cert { mount, .. } => *mount = new_mount.into().trim_matches('/').to_string(),
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
            VaultAuth::Jwt { mount, role, .. } => format!("JWT role `{role}` (auth/{mount})"),
            VaultAuth::Cert {
                mount,
                role: Some(role),
                ..
            } => format!("certificate role `{role}` (auth/{mount})"),
            VaultAuth::Cert { mount, role: None, .. } => format!("TLS certificate (auth/{mount})"),
        }
    }
}

/// Refuses a value that cannot be an HTTP header value (a control character other than tab), naming the
/// variable and the position, never the value: vaultrs would panic on it.
pub(crate) fn header_safe(name: &str, value: Option<&str>) -> Result<(), Error> {
    let Some(v) = value else { return Ok(()) };
    match v.chars().position(|c| (c.is_control() && c != '\t') || c == '\u{7f}') {
        None => Ok(()),
        Some(at) => Err(Error::config(format!(
            "{name} holds a control character at position {}: it cannot be sent in an HTTP header; check how \
             it was set (a stray newline or escape sequence)",
            at + 1
        ))),
    }
}

/// Parses a boolean the way the Vault CLI does (Go's `strconv.ParseBool`).
pub(super) fn parse_bool(name: &str, v: &str) -> Result<bool, Error> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Ok(true),
        "0" | "f" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(format!(
            "{name}=`{v}` is not a boolean: use true or false"
        ))),
    }
}

/// The regular files of a CA directory, sorted so that the order is stable.
pub(super) fn pem_files_in(dir: &Path) -> Result<Vec<PathBuf>, Error> {
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
