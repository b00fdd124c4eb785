//! The registry's hooks for Parameter Store: building from the environment, and `skm doctor`'s credential
//! check.

use std::sync::Arc;
use std::time::Duration;

use super::SsmBackend;
use crate::backend::registry::{BoxFuture, Env, Probe, ProbeLevel};
use crate::backend::{AdminBackend, Backend, FailureKind, FetchRequest};
use crate::Error;

/// The overall bound of the doctor's check.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(15);

/// The registry's `build`. The SDK reads the process environment and profile files itself.
pub(crate) fn registry_build(_env: Env) -> BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async move { Ok(Arc::new(SsmBackend::from_env().await?) as Arc<dyn AdminBackend>) })
}

/// The registry's `doctor`: one `GetParameters` of a name that should not exist, the cheapest call that
/// proves the credentials sign requests the service accepts (not found: fine; access denied: the
/// credentials work but may not read everything, which least privilege expects).
pub(crate) fn doctor(_env: Env) -> BoxFuture<Vec<Probe>> {
    Box::pin(async move {
        let check = "ssm credentials";
        let probe = async {
            let backend = SsmBackend::from_env().await?;
            let answer = backend.fetch(&[FetchRequest::current("skm-doctor-probe")]).await;
            Ok::<_, Error>((backend.name(), answer.into_iter().next()))
        };
        let (level, detail) = match tokio::time::timeout(DOCTOR_TIMEOUT, probe).await {
            Err(_) => (
                ProbeLevel::Fail,
                format!("no answer within {} s", DOCTOR_TIMEOUT.as_secs()),
            ),
            Ok(Err(e)) => (ProbeLevel::Fail, e.to_string()),
            Ok(Ok((name, Some(Ok(_)) | None))) => (ProbeLevel::Ok, format!("{name} accepted the credentials")),
            Ok(Ok((name, Some(Err(e))))) => match e.kind {
                FailureKind::NotFound => (ProbeLevel::Ok, format!("{name} accepted the credentials")),
                FailureKind::Forbidden => (
                    ProbeLevel::Warn,
                    format!(
                        "{name} answered, but denied a probe read (expected with least privilege): {}",
                        e.detail
                    ),
                ),
                _ => (ProbeLevel::Fail, format!("{name}: {e}")),
            },
        };
        vec![Probe::new(check, level, detail)]
    })
}
