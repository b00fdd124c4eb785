//! What the JWT/OIDC and TLS certificate logins need besides Vault itself: GitHub Actions' OIDC token, the
//! client certificate read from disk, and the `auth/cert/login` call (vaultrs sends the role as `cert_name`,
//! which Vault ignores).
//!
//! Nothing here ever puts a JWT, a request token or key material into an error or a log: errors name the file
//! or the endpoint and the HTTP status.

use std::path::Path;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use super::builder::VaultBuilder;
use super::redirect;
use crate::backend::{endpoint, FailureKind, FetchError};

/// GitHub Actions' OIDC token, asked for as GitHub documents it: `GET $ACTIONS_ID_TOKEN_REQUEST_URL` with
/// `audience=AUD` added to its query and `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered
/// with `{"value": "<JWT>"}`. No redirect is followed (the request token would go with it).
pub(super) async fn github_actions_jwt(
    http: &reqwest::Client,
    url: &str,
    request_token: &SecretString,
    audience: Option<&str>,
) -> Result<SecretString, FetchError> {
    let mut url = endpoint::check("ACTIONS_ID_TOKEN_REQUEST_URL", url, false, "")
        .map_err(|e| FetchError::new(FailureKind::Other, e.to_string()))?;
    if let Some(aud) = audience {
        url.query_pairs_mut().append_pair("audience", aud);
    }
    let shown = format!(
        "the GitHub Actions OIDC endpoint ({}://{}{})",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    let answer = http
        .get(url)
        .bearer_auth(request_token.expose_secret())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            let kind = if e.is_connect() || e.is_timeout() || e.is_request() {
                FailureKind::Unavailable
            } else {
                FailureKind::Other
            };
            // reqwest's message names the URL; only the host is shown here.
            let cause = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "the request failed".to_string()
            };
            FetchError::new(kind, format!("cannot get a JWT from {shown}: {cause}"))
        })?;
    let status = answer.status();
    if !status.is_success() {
        let (kind, hint) = match status.as_u16() {
            401 | 403 => (
                FailureKind::Forbidden,
                ": the request token was refused (it expires with the job; the job needs `permissions: id-token: \
                 write`)",
            ),
            429 | 500..=599 => (FailureKind::Unavailable, ""),
            _ => (FailureKind::Other, ""),
        };
        // The body is never quoted.
        return Err(FetchError::new(
            kind,
            format!("cannot get a JWT from {shown}: HTTP {}{hint}", status.as_u16()),
        ));
    }
    let body = answer
        .bytes()
        .await
        .map_err(|_| FetchError::new(FailureKind::Unavailable, format!("the answer of {shown} was cut off")))?;
    let value = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json.get("value")?.as_str().map(|v| v.trim().to_string()))
        .filter(|v| !v.is_empty());
    drop(body);
    match value {
        Some(jwt) => Ok(SecretString::from(jwt)),
        None => Err(FetchError::new(
            FailureKind::Other,
            format!("{shown} answered without a JWT (expected JSON with a `value` string)"),
        )),
    }
}

/// The HTTP client for the Actions endpoint: the system's roots, the proxy rule of the Vault client, no
/// redirects, the per-request timeout.
pub(super) fn actions_client(b: &VaultBuilder) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .no_proxy()
        .proxy(redirect::proxy(&b.proxies))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(b.timeout)
        .connect_timeout(endpoint::CONNECT_TIMEOUT.min(b.timeout))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client for GitHub Actions' OIDC endpoint: {e}"))
}

/// When and how big the certificate and key files were: a change means the platform renewed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertStamp([(Option<SystemTime>, u64); 2]);

/// The stamp of the certificate and key files now; `None` when either cannot be looked at.
pub(super) fn cert_stamp(cert: &Path, key: &Path) -> Option<CertStamp> {
    let one = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
    Some(CertStamp([one(cert)?, one(key)?]))
}

/// Reads the client certificate and key (PEM) into a TLS identity. Errors name the files, never their
/// contents.
pub(super) fn read_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, String> {
    let read = |p: &Path, what: &str, var: &str| {
        std::fs::read(p).map_err(|e| format!("cannot read the client {what} {} ({var}): {e}", p.display()))
    };
    let mut pem = read(cert, "certificate", "VAULT_CLIENT_CERT")?;
    let key_pem = zeroize::Zeroizing::new(read(key, "private key", "VAULT_CLIENT_KEY")?);
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "the client certificate {} (VAULT_CLIENT_CERT) holds no PEM certificate",
            cert.display()
        ));
    }
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    let pem = zeroize::Zeroizing::new(pem);
    let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
        format!(
            "the client certificate {} and key {} (VAULT_CLIENT_CERT, VAULT_CLIENT_KEY) cannot be used: expected a \
             PEM certificate and its PEM private key (PKCS#8, PKCS#1 or SEC1)",
            cert.display(),
            key.display()
        )
    })?;
    Ok(identity)
}

/// `POST auth/<mount>/login` with `{"name": ROLE}` (or `{}`: every role of the mount), over a connection
/// that presents the client certificate.
pub(super) struct CertLogin {
    pub mount: String,
    pub role: Option<String>,
}

impl rustify::endpoint::Endpoint for CertLogin {
    type Response = ();
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        format!("auth/{}/login", self.mount)
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        let body = match &self.role {
            Some(name) => serde_json::json!({ "name": name }),
            None => serde_json::json!({}),
        };
        Ok(Some(body.to_string().into_bytes()))
    }
}

/// How often the background task looks at the certificate files when nothing else is due.
pub(super) const CERT_CHECK: Duration = Duration::from_secs(30);
