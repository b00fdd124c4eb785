//! `skm doctor` for Key Vault: the vault, the credential that worked, and reachability.

use std::fmt;

use futures_util::TryStreamExt;

use super::error::describe;
use super::{AzureBackend, AzureBackendBuilder, CredentialKind};
use crate::backend::registry::{self, Probe, ProbeLevel};

impl AzureBackend {
    /// What `skm doctor` reports: the vault, whether it answers, and the credential that worked.
    ///
    /// Reads one page of the secrets list (`secrets/list`); a 403 there still proves the vault and the
    /// credential work, and is reported as such.
    pub async fn doctor(&self) -> DoctorReport {
        let pager = self.inner.client.list_secret_properties(None);
        let outcome = match pager {
            Err(e) => Err(describe(&e)),
            Ok(pager) => match pager.into_pages().try_next().await {
                Ok(_) => Ok("reachable; listing secrets allowed".to_string()),
                Err(e) if e.http_status().map(u16::from) == Some(403) => {
                    Ok("reachable; authenticated, but listing secrets is not allowed (reads may still be)".into())
                }
                Err(e) => Err(describe(&e)),
            },
        };
        DoctorReport {
            vault_url: self.inner.vault_url.clone(),
            credential: self.credential_used(),
            outcome,
        }
    }
}

/// The result of [`AzureBackend::doctor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorReport {
    /// The vault probed.
    pub vault_url: String,
    /// The credential that returned a token, if any did.
    pub credential: Option<CredentialKind>,
    /// A sentence on reachability, or what failed.
    pub outcome: Result<String, String>,
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Azure Key Vault {}: ", self.vault_url)?;
        match &self.outcome {
            Ok(s) => write!(f, "{s}")?,
            Err(e) => write!(f, "FAILED: {e}")?,
        }
        if let Some(c) = self.credential {
            write!(f, " (credential: {c})")?;
        }
        Ok(())
    }
}

/// The registry's `doctor`: [`AzureBackend::doctor`] as probes (the vault, the credential that worked,
/// reachability).
pub(crate) fn doctor(env: registry::Env) -> registry::BoxFuture<Vec<registry::Probe>> {
    Box::pin(async move {
        let backend = match AzureBackendBuilder::from_vars(&|n| env(n)).and_then(AzureBackendBuilder::build) {
            Ok(b) => b,
            Err(e) => return vec![Probe::new("azure configuration", ProbeLevel::Fail, e.to_string())],
        };
        // The SDK bounds each request (connect 5 s, request 10 s, 3 retries); this bounds the whole probe.
        let Ok(report) = tokio::time::timeout(std::time::Duration::from_secs(60), backend.doctor()).await else {
            return vec![Probe::new(
                "azure reachability",
                ProbeLevel::Fail,
                format!("{} did not answer within 60 s", backend.vault_url()),
            )];
        };
        let credential = match report.credential {
            Some(c) => Probe::new("azure credential", ProbeLevel::Ok, c.to_string()),
            None if report.outcome.is_ok() => {
                Probe::new("azure credential", ProbeLevel::Ok, "a credential given to the builder")
            }
            None => Probe::new("azure credential", ProbeLevel::Fail, "no credential returned a token"),
        };
        let reach = match &report.outcome {
            Ok(s) => Probe::new("azure vault", ProbeLevel::Ok, format!("{}: {s}", report.vault_url)),
            Err(e) => Probe::new("azure vault", ProbeLevel::Fail, format!("{}: {e}", report.vault_url)),
        };
        vec![reach, credential]
    })
}
