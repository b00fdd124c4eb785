//! Backend auto-detection from the environment.
//!
//! | variable | effect |
//! |---|---|
//! | `SKM_BACKEND` | `aws`, `vault`, `gcp`, `local` or `none`: always wins |
//! | `AWS_REGION` / `AWS_DEFAULT_REGION` | selects AWS Secrets Manager (if built with the `aws` feature) |
//! | `VAULT_ADDR` | selects Vault (if built with the `vault` feature) and no AWS region is set |
//! | `GOOGLE_CLOUD_PROJECT` / `GCP_PROJECT_ID` | selects Google Cloud Secret Manager (if built with the `gcp` feature) when none of the above is set |
//! | `SKM_LOCAL_PATH` | where the local store lives (default `.skm`); an existing store is selected last |
//! | `SKM_LOCAL_KEY` / `SKM_LOCAL_KEY_FILE` | the local store's key, or its key file (see `backend::local`) |
//!
//! With none of these, no backend is used and secrets come from env, `.env` and defaults.
//!
//! The order above is the full detection order. When two cloud signals are present (say `AWS_REGION` and
//! `GOOGLE_CLOUD_PROJECT`), the first one in the order wins and an `info` log says which one and why.

use std::fmt;
use std::sync::Arc;

use crate::backend::{AdminBackend, Backend};
use crate::Error;

/// A backend kind that detection can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// No backend.
    None,
    /// AWS Secrets Manager.
    Aws,
    /// HashiCorp Vault (or OpenBao) KV.
    Vault,
    /// Google Cloud Secret Manager.
    Gcp,
    /// The local encrypted store.
    Local,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::None => "none",
            BackendKind::Aws => "aws",
            BackendKind::Vault => "vault",
            BackendKind::Gcp => "gcp",
            BackendKind::Local => "local",
        })
    }
}

impl std::str::FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "aws" => Ok(BackendKind::Aws),
            "vault" | "openbao" => Ok(BackendKind::Vault),
            "gcp" | "google" => Ok(BackendKind::Gcp),
            "local" => Ok(BackendKind::Local),
            "none" | "" => Ok(BackendKind::None),
            other => Err(Error::Config(format!(
                "unknown backend `{other}`: use one of aws, vault, gcp, local, none"
            ))),
        }
    }
}

/// The detected backend and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The kind chosen.
    pub kind: BackendKind,
    /// A sentence for logs and `skm doctor`, e.g. `AWS_REGION is set`.
    pub reason: String,
}

/// Whether this build includes `kind`.
pub fn compiled(kind: BackendKind) -> bool {
    match kind {
        BackendKind::None => true,
        BackendKind::Aws => cfg!(feature = "aws"),
        BackendKind::Vault => cfg!(feature = "vault"),
        BackendKind::Gcp => cfg!(feature = "gcp"),
        BackendKind::Local => cfg!(feature = "local"),
    }
}

/// Chooses a backend from environment variables read through `var`.
///
/// Auto-detection only considers backends compiled into this build; an explicit `SKM_BACKEND` naming a
/// missing one is an error that says which cargo feature to enable.
///
/// # Errors
/// `SKM_BACKEND` is unknown or names a backend this build lacks.
///
/// # Example
/// ```
/// use skm_runtime::detect::{detect, BackendKind};
/// let env = |name: &str| (name == "SKM_BACKEND").then(|| "none".to_string());
/// assert_eq!(detect(&env).unwrap().kind, BackendKind::None);
/// ```
pub fn detect(var: &dyn Fn(&str) -> Option<String>) -> Result<Choice, Error> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let Some(explicit) = set("SKM_BACKEND") {
        let kind: BackendKind = explicit.parse()?;
        if !compiled(kind) {
            return Err(Error::Config(format!(
                "SKM_BACKEND={kind}, but skm was built without the `{kind}` feature: \
                 enable it with `skm = {{ version = \"*\", features = [\"{kind}\"] }}`"
            )));
        }
        return Ok(Choice {
            kind,
            reason: format!("SKM_BACKEND={kind}"),
        });
    }
    let gcp = gcp_signal(var);
    for region in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if set(region).is_some() {
            if compiled(BackendKind::Aws) {
                if let Some(other) = &gcp {
                    tracing::info!(target: "skm", "{region} and {other}: using AWS, which comes first in the \
                        detection order; set SKM_BACKEND=gcp to use Google Cloud Secret Manager");
                }
                return Ok(Choice {
                    kind: BackendKind::Aws,
                    reason: format!("{region} is set"),
                });
            }
            tracing::debug!(target: "skm", "{region} is set but the `aws` feature is off; not using AWS");
        }
    }
    if set("VAULT_ADDR").is_some() {
        if compiled(BackendKind::Vault) {
            if let Some(other) = &gcp {
                tracing::info!(target: "skm", "VAULT_ADDR and {other}: using Vault, which comes first in the \
                    detection order; set SKM_BACKEND=gcp to use Google Cloud Secret Manager");
            }
            return Ok(Choice {
                kind: BackendKind::Vault,
                reason: "VAULT_ADDR is set".into(),
            });
        }
        tracing::debug!(target: "skm", "VAULT_ADDR is set but the `vault` feature is off; not using Vault");
    }
    if let Some(reason) = gcp {
        if compiled(BackendKind::Gcp) {
            return Ok(Choice {
                kind: BackendKind::Gcp,
                reason,
            });
        }
        tracing::debug!(target: "skm", "{reason} but the `gcp` feature is off; not using Google Cloud");
    }
    if compiled(BackendKind::Local) {
        let path = set("SKM_LOCAL_PATH").unwrap_or_else(|| ".skm".into());
        if local_store_exists(&path) {
            return Ok(Choice {
                kind: BackendKind::Local,
                reason: format!("a local store exists at {path}"),
            });
        }
    }
    Ok(Choice {
        kind: BackendKind::None,
        reason: "no SKM_BACKEND, AWS region, VAULT_ADDR, GCP project or local store found".into(),
    })
}

/// The GCP detection signal (`GOOGLE_CLOUD_PROJECT` / `GCP_PROJECT_ID` is set), with or without the feature.
fn gcp_signal(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    #[cfg(feature = "gcp")]
    {
        crate::backend::gcp::detect_signal(var)
    }
    #[cfg(not(feature = "gcp"))]
    {
        ["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT_ID"]
            .iter()
            .find(|n| var(n).is_some_and(|v| !v.trim().is_empty()))
            .map(|n| format!("{n} is set"))
    }
}

fn local_store_exists(path: &str) -> bool {
    #[cfg(feature = "local")]
    {
        crate::backend::local::LocalStore::exists_at(std::path::Path::new(path))
    }
    #[cfg(not(feature = "local"))]
    {
        let _ = path;
        false
    }
}

/// Builds the backend for `kind` from the environment; `None` for [`BackendKind::None`].
///
/// # Errors
/// The backend is not compiled in or cannot be configured from the environment.
pub async fn build(kind: BackendKind) -> Result<Option<Arc<dyn Backend>>, Error> {
    // Every backend is also an admin backend; the read path just forgets the write operations.
    Ok(build_admin(kind).await?.map(|b| b as Arc<dyn Backend>))
}

/// Like [`build`], with the write operations of [`AdminBackend`]: what the `skm` tool works with.
///
/// # Errors
/// As [`build`].
pub async fn build_admin(kind: BackendKind) -> Result<Option<Arc<dyn AdminBackend>>, Error> {
    match kind {
        BackendKind::None => Ok(None),
        #[cfg(feature = "aws")]
        BackendKind::Aws => Ok(Some(Arc::new(crate::backend::aws::AwsBackend::from_env().await?))),
        #[cfg(feature = "vault")]
        BackendKind::Vault => Ok(Some(Arc::new(crate::backend::vault::VaultBackend::from_env().await?))),
        #[cfg(feature = "gcp")]
        BackendKind::Gcp => Ok(Some(Arc::new(crate::backend::gcp::GcpBackend::from_env().await?))),
        #[cfg(feature = "local")]
        BackendKind::Local => Ok(Some(Arc::new(crate::backend::local::LocalStore::from_env()?))),
        #[allow(unreachable_patterns)]
        other => Err(Error::Config(format!(
            "skm was built without the `{other}` feature: enable it in Cargo.toml"
        ))),
    }
}
