//! Which backend a command talks to: `--backend`, else the runtime's detection.

use std::sync::Arc;

use async_trait::async_trait;
use skm_runtime::backend::{AdminBackend, Backend, FetchRequest, FetchResult};
use skm_runtime::detect::{self, BackendKind, Choice};

use crate::Fail;

/// Reads the process environment, as the runtime's detection does.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The backend kind to use and why: `--backend NAME` wins, else detection.
pub(crate) fn choose(flag: Option<&str>) -> Result<Choice, Fail> {
    match flag {
        Some(name) => {
            let kind = parse_kind(name)?;
            Ok(Choice {
                kind,
                reason: format!("--backend {kind}"),
            })
        }
        None => detect::detect(&env_var).map_err(Fail::from),
    }
}

/// Parses a backend name, checking that this build has it.
pub(crate) fn parse_kind(name: &str) -> Result<BackendKind, Fail> {
    let kind: BackendKind = name.parse().map_err(Fail::from)?;
    if !detect::compiled(kind) {
        return Err(Fail::Usage(format!(
            "this skm was built without the `{kind}` backend: rebuild with `--features {kind}`"
        )));
    }
    Ok(kind)
}

/// Builds the backend of `kind` from the environment.
pub(crate) async fn build(kind: BackendKind) -> Result<Option<Arc<dyn AdminBackend>>, Fail> {
    detect::build_admin(kind).await.map_err(Fail::from)
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
}
