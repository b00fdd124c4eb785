//! Hot reload's change check under [`FetchStrategy::Adaptive`]: `DescribeSecret` per distinct secret, whose
//! `VersionIdsToStages` tells which version carries each staging label, without reading any value.
//!
//! Per check it costs one `DescribeSecret` per secret instead of one `BatchGetSecretValue` per 20; but
//! `DescribeSecret`'s quota is 40,000/s per region against the batch call's 100/s, so a fleet's checks use
//! about 20 times less of the region's quotas, no value crosses the network when nothing changed, and only
//! the secrets that changed are fetched again.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::error::Failure;
use super::{AwsBackend, FetchStrategy};
use crate::backend::{FailureKind, FetchError, FetchRequest, VersionPin};

/// Staging label → version id, for one secret.
type Stages = HashMap<String, String>;

/// `None` (refetch everything) unless the backend is adaptive and may call `DescribeSecret`.
pub(super) async fn current_versions(
    backend: &AwsBackend,
    requests: &[FetchRequest],
) -> Option<Vec<Result<String, FetchError>>> {
    if backend.strategy != FetchStrategy::Adaptive || backend.describe_refused.load(Ordering::Relaxed) {
        return None;
    }
    let mut paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();

    // The shared fan-out in spawned mode, without retry (the SDK retries each call); a task's panic resumes
    // here, and a cancelled one (the runtime is shutting down) means no answer: refetch.
    let answers = backend
        .fan_out(false)
        .spawned(paths, |path| {
            let client = backend.client.clone();
            let path = path.to_string();
            async move {
                let answer = client.describe_secret().secret_id(&path).send().await;
                let stages = answer.map_err(|e| Failure::from_sdk(&e)).map(|out| {
                    let mut stages = Stages::new();
                    for (id, labels) in out.version_ids_to_stages.unwrap_or_default() {
                        for label in labels {
                            stages.insert(label, id.clone());
                        }
                    }
                    stages
                });
                (path, stages)
            }
        })
        .await;
    let mut described: HashMap<String, Result<Stages, Failure>> = HashMap::new();
    for answer in answers {
        let (path, stages) = answer?;
        described.insert(path, stages);
    }
    if described
        .values()
        .any(|d| d.as_ref().is_err_and(Failure::is_access_denied))
    {
        // Without secretsmanager:DescribeSecret, hot reload refetches values as before; remembered.
        if !backend.describe_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "skm",
                "DescribeSecret refused; hot reload refetches values instead of checking versions \
                 (grant secretsmanager:DescribeSecret to check for changes at the cheapest quota)");
        }
        return None;
    }
    Some(
        requests
            .iter()
            .map(|request| {
                let stages = match &described[request.path.as_str()] {
                    Ok(stages) => stages,
                    Err(f) => return Err(FetchError::new(f.kind, f.detail.clone())),
                };
                let label = match &request.version {
                    VersionPin::Current => "AWSCURRENT",
                    VersionPin::Previous => "AWSPREVIOUS",
                    VersionPin::Stage(label) => label.as_ref(),
                    // A version id names one immutable version.
                    VersionPin::Id(id) => return Ok(id.to_string()),
                    VersionPin::Number(n) => {
                        return Err(FetchError::new(
                            FailureKind::Invalid,
                            format!(
                                "version {n} is a numbered version, which AWS Secrets Manager does not have \
                                 (numbered versions are Vault/local); use version_stage or version_id"
                            ),
                        ))
                    }
                };
                stages
                    .get(label)
                    .cloned()
                    .ok_or_else(|| FetchError::not_found(format!("no version has the staging label {label}")))
            })
            .collect(),
    )
}
