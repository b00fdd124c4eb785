//! Which backend a command talks to: `--backend`, else the runtime's detection.

use std::sync::Arc;

use async_trait::async_trait;
use skm_runtime::backend::registry::Descriptor;
use skm_runtime::backend::{AdminBackend, Backend, FetchError, FetchRequest, FetchResult};
use skm_runtime::detect::{self, Choice};

use crate::Fail;

/// Reads the process environment, as the runtime's detection does.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The backend kind to use and why: `--backend NAME` wins, else detection.
pub(crate) fn choose(flag: Option<&str>) -> Result<Choice, Fail> {
    match flag {
        Some(name) => {
            let backend = parse_kind(name)?;
            Ok(Choice {
                backend,
                reason: format!("--backend {}", backend.map_or("none", |d| d.name)),
            })
        }
        None => detect::detect(&env_var).map_err(Fail::from),
    }
}

/// Parses a backend name or alias from the registry, checking that this build has it (`None`: `none`).
pub(crate) fn parse_kind(name: &str) -> Result<Option<&'static Descriptor>, Fail> {
    detect::explicit(name).map_err(|e| Fail::Usage(e.to_string()))
}

/// Builds the backend `kind` from the environment.
pub(crate) async fn build(kind: Option<&'static Descriptor>) -> Result<Option<Arc<dyn AdminBackend>>, Fail> {
    let choice = Choice {
        backend: kind,
        reason: String::new(),
    };
    detect::build_admin(&choice).await.map_err(Fail::from)
}

/// An [`AdminBackend`] seen as a plain [`Backend`], for the [`skm_runtime::Loader`].
///
/// An explicit adapter rather than trait upcasting, which needs a newer compiler than the crate's MSRV.
#[derive(Debug)]
pub(crate) struct ReadOnly(pub Arc<dyn AdminBackend>);

#[async_trait]
impl Backend for ReadOnly {
    fn name(&self) -> String {
        self.0.name()
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        self.0.fetch(requests).await
    }

    /// Forwarded: `skm run --restart-on-change` asks for versions before it fetches values.
    async fn current_versions(&self, requests: &[FetchRequest]) -> Option<Vec<Result<String, FetchError>>> {
        self.0.current_versions(requests).await
    }
}
