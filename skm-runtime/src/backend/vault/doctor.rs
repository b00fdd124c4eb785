//! The registry's hooks for Vault: building from the environment, and `skm doctor`'s token check, made
//! with the backend's own client (its address check, redirect policy, proxy rules, TLS settings,
//! `VAULT_SKIP_VERIFY` parsing and timeout), never a client of its own.

use std::sync::Arc;
use std::time::Duration;

use super::errors::VaultFailure;
use super::{VaultBackend, VaultBuilder};
use crate::backend::registry::{BoxFuture, Env, Probe, ProbeLevel};
use crate::backend::{AdminBackend, FetchError};
use crate::Error;

/// Per-request timeout and overall bound of the doctor's token check.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(10);

/// What `auth/token/lookup-self` says about the backend's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenLookup {
    /// The remaining lifetime; zero for a token that never expires.
    pub ttl: Duration,
    /// Whether it can be renewed.
    pub renewable: bool,
}

impl VaultBackend {
    /// Looks the backend's token up (`auth/token/lookup-self`) with the backend's own client.
    ///
    /// # Errors
    /// The token is missing, rejected or the server does not answer, as a [`FetchError`] of that kind.
    pub async fn token_lookup(&self) -> Result<TokenLookup, FetchError> {
        let client = self.inner.client().await?;
        match vaultrs::token::lookup_self(&*client).await {
            Ok(info) => Ok(TokenLookup {
                ttl: Duration::from_secs(info.ttl),
                renewable: info.renewable.unwrap_or(false),
            }),
            Err(e) => {
                let f = VaultFailure::from_client(&e);
                Err(FetchError::new(
                    f.kind(),
                    format!("token lookup{}: {}", self.inner.namespace_note(), f.describe()),
                ))
            }
        }
    }
}

/// The registry's `build`.
pub(crate) fn registry_build(env: Env) -> BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async move {
        let backend = VaultBuilder::from_vars(|n| env(n))?.build().await?;
        Ok(Arc::new(backend) as Arc<dyn AdminBackend>)
    })
}

/// The registry's `doctor`: the token's remaining lifetime.
pub(crate) fn doctor(env: Env) -> BoxFuture<Vec<Probe>> {
    Box::pin(async move {
        let check = "vault token";
        let builder = match VaultBuilder::from_vars(|n| env(n)) {
            Ok(b) => b,
            Err(e) => return vec![Probe::new(check, ProbeLevel::Fail, e.to_string())],
        };
        if builder.auth.can_login() {
            return vec![Probe::new(
                check,
                ProbeLevel::Skip,
                format!(
                    "{}: the backend logs in and renews its own token",
                    builder.auth.describe()
                ),
            )];
        }
        let timeout = builder.timeout.min(DOCTOR_TIMEOUT);
        let probe = async move {
            let backend = builder.timeout(timeout).retries(0).build().await?;
            Ok::<_, Error>(backend.token_lookup().await)
        };
        let (level, detail) = match tokio::time::timeout(DOCTOR_TIMEOUT, probe).await {
            Err(_) => (
                ProbeLevel::Fail,
                format!("no answer within {} s", DOCTOR_TIMEOUT.as_secs()),
            ),
            Ok(Err(e)) => (ProbeLevel::Fail, e.to_string()),
            Ok(Ok(Err(e))) => (ProbeLevel::Fail, e.to_string()),
            Ok(Ok(Ok(t))) if t.ttl.is_zero() => (
                ProbeLevel::Ok,
                "the token never expires (root or periodic without TTL)".into(),
            ),
            Ok(Ok(Ok(t))) => {
                let level = if t.ttl < Duration::from_secs(3600) {
                    ProbeLevel::Warn
                } else {
                    ProbeLevel::Ok
                };
                let renew = if t.renewable { "renewable" } else { "not renewable" };
                (level, format!("expires in {} ({renew})", human(t.ttl.as_secs())))
            }
        };
        vec![Probe::new(check, level, detail)]
    })
}

fn human(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
