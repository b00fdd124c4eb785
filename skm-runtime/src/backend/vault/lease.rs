//! Dynamic secrets on Vault / OpenBao: reading a credentials path with its lease, `sys/leases/renew` and
//! `sys/leases/revoke`, as rustify endpoints (vaultrs strips the lease fields and has no lease API).
//!
//! The answers are parsed as plain JSON values and picked apart here, so that no parse error can quote
//! a credential or a lease id.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use vaultrs::client::VaultClient;

use super::errors::VaultFailure;
use super::kv::{clean_path, url_path};
use super::VaultBackend;
use crate::backend::{FailureKind, FetchError};
use crate::lease::{self, Grant, LeaseError, LeaseErrorKind, LeaseOptions, LeaseSource, Leased, Leases, Renewal};

/// `GET <path>`: a dynamic-secrets read (`database/creds/app`), answered with the whole envelope.
struct ReadLeased {
    path: String,
}

impl rustify::endpoint::Endpoint for ReadLeased {
    type Response = Value;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        url_path(&self.path)
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::GET
    }
}

/// `PUT sys/leases/renew` with `{"lease_id", "increment"}` (the id goes in the body, never in the URL, so
/// that it stays out of access logs).
struct RenewLease {
    lease_id: String,
    increment: Duration,
}

impl rustify::endpoint::Endpoint for RenewLease {
    type Response = Value;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        "sys/leases/renew".into()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::PUT
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        let body = json!({"lease_id": self.lease_id, "increment": self.increment.as_secs().max(1)});
        Ok(Some(body.to_string().into_bytes()))
    }
}

/// `PUT sys/leases/revoke` with `{"lease_id"}`.
struct RevokeLease {
    lease_id: String,
}

impl rustify::endpoint::Endpoint for RevokeLease {
    type Response = Value;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        "sys/leases/revoke".into()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::PUT
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        Ok(Some(json!({"lease_id": self.lease_id}).to_string().into_bytes()))
    }
}

fn kind_of(kind: FailureKind) -> LeaseErrorKind {
    match kind {
        FailureKind::NotFound => LeaseErrorKind::NotFound,
        FailureKind::Forbidden => LeaseErrorKind::Forbidden,
        FailureKind::Unavailable | FailureKind::Throttled => LeaseErrorKind::Unavailable,
        _ => LeaseErrorKind::Other,
    }
}

fn from_fetch(path: &str, e: FetchError) -> LeaseError {
    LeaseError::new(kind_of(e.kind), path, e.to_string())
}

/// The lease source of one backend: its client (token, renewal, TLS and redirect rules) for lease calls.
struct VaultLeases {
    backend: VaultBackend,
}

impl VaultLeases {
    async fn client(&self, path: &str) -> Result<Arc<VaultClient>, LeaseError> {
        self.backend.inner.client().await.map_err(|e| from_fetch(path, e))
    }

    fn failure(&self, path: &str, what: &str, e: &vaultrs::error::ClientError) -> LeaseError {
        let f = VaultFailure::from_client(e);
        let kind = match (f.kind(), f.status) {
            // Vault answers a renewal or revocation of an unknown (expired, revoked) lease with 400.
            (FailureKind::Other, Some(400)) if what != "reading" => LeaseErrorKind::NotFound,
            (k, _) => kind_of(k),
        };
        LeaseError::new(
            kind,
            path,
            format!("{what} failed{}: {}", self.backend.inner.namespace_note(), f.describe()),
        )
    }
}

fn number(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

impl LeaseSource for VaultLeases {
    fn issue<'a>(
        &'a self,
        path: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Grant, LeaseError>> + Send + 'a>> {
        Box::pin(async move {
            let clean = clean_path(path).map_err(|e| LeaseError::new(LeaseErrorKind::Other, path, e))?;
            let client = self.client(path).await?;
            let answer = vaultrs::api::exec_with_no_result(&*client, ReadLeased { path: clean.into() })
                .await
                .map_err(|e| self.failure(path, "reading", &e))?;
            let id = answer.get("lease_id").and_then(Value::as_str).unwrap_or_default();
            if id.is_empty() {
                return Err(LeaseError::new(
                    LeaseErrorKind::NotLeased,
                    path,
                    "the answer carries no lease: is this a dynamic-secrets path (such as `database/creds/ROLE`) \
                     rather than a KV secret?",
                ));
            }
            let data = answer.get("data").cloned().unwrap_or(Value::Null);
            Ok(Grant {
                id: id.to_string(),
                duration: Duration::from_secs(number(&answer, "lease_duration").unwrap_or(0)),
                renewable: answer.get("renewable").and_then(Value::as_bool).unwrap_or(false),
                data,
            })
        })
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        increment: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Renewal, LeaseError>> + Send + 'a>> {
        Box::pin(async move {
            let fp = lease::fingerprint(id);
            let client = self.client(&fp).await?;
            let endpoint = RenewLease {
                lease_id: id.to_string(),
                increment,
            };
            let answer = vaultrs::api::exec_with_no_result(&*client, endpoint)
                .await
                .map_err(|e| self.failure(&fp, "renewing the lease", &e))?;
            Ok(Renewal {
                duration: Duration::from_secs(number(&answer, "lease_duration").unwrap_or(0)),
                renewable: answer.get("renewable").and_then(Value::as_bool).unwrap_or(false),
            })
        })
    }

    fn revoke<'a>(
        &'a self,
        id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), LeaseError>> + Send + 'a>> {
        Box::pin(async move {
            let fp = lease::fingerprint(id);
            let client = self.client(&fp).await?;
            // 204 No Content: an empty body, which `exec_with_empty` accepts.
            vaultrs::api::exec_with_empty(
                &*client,
                RevokeLease {
                    lease_id: id.to_string(),
                },
            )
            .await
            .map_err(|e| self.failure(&fp, "revoking the lease", &e))
        })
    }
}

impl VaultBackend {
    /// Reads dynamic credentials at `path` (a secrets engine's credentials endpoint, such as
    /// `database/creds/app`; not under the KV mount) and keeps their lease alive in the background: see
    /// [`crate::lease`].
    ///
    /// Uses this backend's client and token (whose own renewal goes on as usual); the token needs `read`
    /// on `path` and `update` on `sys/leases/renew` and `sys/leases/revoke`.
    ///
    /// # Example
    /// ```no_run
    /// # use skm_runtime::backend::vault::VaultBackend;
    /// # use skm_runtime::lease::LeaseOptions;
    /// #[derive(serde::Deserialize)]
    /// struct DbCredentials {
    ///     username: String,
    ///     password: secrecy::SecretString,
    /// }
    /// # async fn demo(vault: VaultBackend) -> Result<(), skm_runtime::lease::LeaseError> {
    /// let db = vault.lease::<DbCredentials>("database/creds/app", LeaseOptions::new()).await?;
    /// println!("user {}", db.current().username);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`LeaseErrorKind::Forbidden`] when the token may not read `path`; `NotFound` for an unknown path;
    /// `NotLeased` when the answer has no lease (a KV secret); `Invalid` when the data does not fit `T` (the
    /// lease is then revoked at once); `Other` for the server's other refusals (an unknown role is 400);
    /// `Unavailable` when the server cannot be reached.
    pub async fn lease<T>(&self, path: &str, options: LeaseOptions) -> Result<Leased<T>, LeaseError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let source = Arc::new(VaultLeases { backend: self.clone() });
        lease::start(source, path, options).await
    }
}

/// Dynamic secrets as the capability the backend offers ([`Backend::leases`](crate::backend::Backend::leases)):
/// the loader issues the lease of each `#[secret(dynamic = "...")]` field through this backend's client.
#[async_trait::async_trait]
impl Leases for VaultBackend {
    async fn issue(&self, path: &str, options: LeaseOptions) -> Result<lease::Issued, LeaseError> {
        let source = Arc::new(VaultLeases { backend: self.clone() });
        lease::Issued::issue(source, path, options).await
    }
}
