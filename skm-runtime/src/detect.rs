//! Backend auto-detection from the environment.
//!
//! | variable | effect |
//! |---|---|
//! | `SKM_BACKEND` | `aws`, `vault`, `azure`, `local` or `none`: always wins |
//! | `AWS_REGION` / `AWS_DEFAULT_REGION` | selects AWS Secrets Manager (if built with the `aws` feature) |
//! | `VAULT_ADDR` | selects Vault (if built with the `vault` feature) and no AWS region is set |
//! | `AZURE_KEYVAULT_URL` | selects Azure Key Vault (if built with the `azure` feature) and none of the above is set |
//! | `SKM_LOCAL_PATH` | where the local store lives (default `.skm`); an existing store is selected last |
//! | `SKM_LOCAL_KEY` / `SKM_LOCAL_KEY_FILE` | the local store's key, or its key file (see `backend::local`) |
//!
//! With none of these, no backend is used and secrets come from env, `.env` and defaults.

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
    /// The local encrypted store.
    Local,
    /// Azure Key Vault.
    Azure,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::None => "none",
            BackendKind::Aws => "aws",
            BackendKind::Vault => "vault",
            BackendKind::Local => "local",
            BackendKind::Azure => "azure",
        })
    }
}

impl std::str::FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "aws" => Ok(BackendKind::Aws),
            "vault" | "openbao" => Ok(BackendKind::Vault),
            "local" => Ok(BackendKind::Local),
            "azure" | "keyvault" | "azure-keyvault" => Ok(BackendKind::Azure),
            "none" | "" => Ok(BackendKind::None),
            other => Err(Error::Config(format!(
                "unknown backend `{other}`: use one of aws, vault, azure, local, none"
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
        BackendKind::Local => cfg!(feature = "local"),
        BackendKind::Azure => cfg!(feature = "azure"),
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
    for region in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if set(region).is_some() {
            if compiled(BackendKind::Aws) {
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
            return Ok(Choice {
                kind: BackendKind::Vault,
                reason: "VAULT_ADDR is set".into(),
            });
        }
        tracing::debug!(target: "skm", "VAULT_ADDR is set but the `vault` feature is off; not using Vault");
    }
    if let Some(reason) = azure_signal(var) {
        if compiled(BackendKind::Azure) {
            return Ok(Choice {
                kind: BackendKind::Azure,
                reason,
            });
        }
        tracing::debug!(target: "skm", "AZURE_KEYVAULT_URL is set but the `azure` feature is off; not using Azure");
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
        reason: "no SKM_BACKEND, AWS region, VAULT_ADDR, AZURE_KEYVAULT_URL or local store found".into(),
    })
}

/// `AZURE_KEYVAULT_URL` is set (the registry will own this; see `backend::azure::detect_signal`).
fn azure_signal(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    #[cfg(feature = "azure")]
    {
        crate::backend::azure::detect_signal(var)
    }
    #[cfg(not(feature = "azure"))]
    {
        var("AZURE_KEYVAULT_URL")
            .filter(|v| !v.trim().is_empty())
            .map(|_| "AZURE_KEYVAULT_URL is set".to_string())
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
        #[cfg(feature = "local")]
        BackendKind::Local => Ok(Some(Arc::new(crate::backend::local::LocalStore::from_env()?))),
        #[cfg(feature = "azure")]
        BackendKind::Azure => Ok(Some(Arc::new(crate::backend::azure::AzureBackend::from_env()?))),
        #[allow(unreachable_patterns)]
        other => Err(Error::Config(format!(
            "skm was built without the `{other}` feature: enable it in Cargo.toml"
        ))),
    }
}
