//! The read path: deduplicate, batch current versions 20 at a time, fetch pinned versions one by one, all
//! with a bound on requests in flight; under [`FetchStrategy::Adaptive`], a throttled batch moves its ids to
//! single gets (a quota 100 times larger) and batching pauses for [`BATCH_COOLDOWN`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::SecretValueEntry;
use aws_sdk_secretsmanager::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::error::Failure;
use super::{AwsBackend, FetchStrategy};
use crate::backend::distinct::Distinct;
use crate::backend::{FailureKind, FetchError, FetchRequest, FetchResult, SecretPayload, SecretValue, VersionPin};

/// `BatchGetSecretValue` accepts at most 20 ids (moto does not enforce it; AWS does).
pub(super) const BATCH_LIMIT: usize = 20;

/// After a throttled `BatchGetSecretValue`, an adaptive backend reads current versions with `GetSecretValue`
/// for this long before it tries a batch again: long enough for a deploy's burst to pass, short enough that a
/// later hot reload batches again.
pub const BATCH_COOLDOWN: Duration = Duration::from_secs(30);

/// A batch answer may in principle be paged; never follow more pages than this for one chunk.
const MAX_BATCH_PAGES: usize = 20;

/// One unit of work, run as its own task.
enum Work {
    /// Current versions of up to [`BATCH_LIMIT`] secrets, by their slot in the unique requests.
    Batch(Vec<(usize, String)>),
    /// One secret, any version.
    Single(usize, String, VersionPin),
}

/// What a task reports back.
enum Done {
    /// Results per unique slot.
    Results(Vec<(usize, FetchResult)>),
    /// The caller may not call `BatchGetSecretValue`: fetch these one by one instead.
    BatchRefused(Vec<(usize, String)>, Failure),
    /// `BatchGetSecretValue` was throttled (or failed transiently) under the adaptive strategy: fetch these
    /// one by one instead.
    BatchThrottled(Vec<(usize, String)>, Failure),
}

pub(super) async fn fetch(backend: &AwsBackend, requests: &[FetchRequest]) -> Vec<FetchResult> {
    let distinct = Distinct::of(requests);
    let unique = &distinct.unique;

    let mut results: Vec<Option<FetchResult>> = vec![None; unique.len()];
    let adaptive = backend.strategy == FetchStrategy::Adaptive;
    let batch_refused = backend.batch_refused.load(Ordering::Relaxed)
        || backend.strategy == FetchStrategy::Single
        || (adaptive && backend.batch_paused());
    let mut current = Vec::new();
    let mut work = Vec::new();
    for (slot, request) in unique.iter().enumerate() {
        match &request.version {
            VersionPin::Current if !batch_refused => current.push((slot, request.path.clone())),
            VersionPin::Current | VersionPin::Previous | VersionPin::Stage(_) | VersionPin::Id(_) => {
                work.push(Work::Single(slot, request.path.clone(), request.version.clone()));
            }
            &VersionPin::Number(n) => {
                results[slot] = Some(Err(FetchError::new(
                    FailureKind::Invalid,
                    format!(
                        "version {n} is a numbered version, which AWS Secrets Manager does not have \
                         (numbered versions are Vault/local); use version_stage or version_id"
                    ),
                )));
            }
        }
    }
    // Batches first so that the biggest pieces of work start earliest.
    let mut batches: Vec<Work> = current.chunks(BATCH_LIMIT).map(|c| Work::Batch(c.to_vec())).collect();
    batches.append(&mut work);

    let limit = Arc::new(Semaphore::new(backend.max_concurrency));
    let mut tasks = JoinSet::new();
    for item in batches {
        spawn(&mut tasks, backend, &limit, item, adaptive);
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Done::Results(done)) => {
                for (slot, result) in done {
                    results[slot] = Some(result);
                }
            }
            Ok(Done::BatchRefused(chunk, why)) => {
                // Remembered for this backend: every later fetch goes straight to GetSecretValue.
                if !backend.batch_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "skm", reason = %why.detail,
                        "BatchGetSecretValue refused; using GetSecretValue per secret from now on \
                         (grant secretsmanager:BatchGetSecretValue to load in fewer requests)");
                }
                for (slot, id) in chunk {
                    spawn(
                        &mut tasks,
                        backend,
                        &limit,
                        Work::Single(slot, id, VersionPin::Current),
                        adaptive,
                    );
                }
            }
            Ok(Done::BatchThrottled(chunk, why)) => {
                if why.kind == FailureKind::Throttled && backend.pause_batches() {
                    tracing::info!(target: "skm", cooldown_s = BATCH_COOLDOWN.as_secs(),
                        "BatchGetSecretValue throttled; reading with GetSecretValue for a while");
                }
                for (slot, id) in chunk {
                    spawn(
                        &mut tasks,
                        backend,
                        &limit,
                        Work::Single(slot, id, VersionPin::Current),
                        adaptive,
                    );
                }
            }
            // A panic in a task is a bug: surface it rather than turn it into a fetch error.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: only when the runtime shuts down; the slots stay empty and are reported below.
            Err(_) => {}
        }
    }

    distinct.spread(results)
}

fn spawn(tasks: &mut JoinSet<Done>, backend: &AwsBackend, limit: &Arc<Semaphore>, item: Work, adaptive: bool) {
    let client = backend.client.clone();
    let limit = limit.clone();
    let patience = if adaptive {
        backend.throttle_patience
    } else {
        Duration::ZERO
    };
    tasks.spawn(async move {
        match item {
            Work::Batch(chunk) => {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = limit.acquire_owned().await.expect("semaphore is never closed");
                batch(&client, chunk, adaptive).await
            }
            Work::Single(slot, id, version) => Done::Results(vec![(
                slot,
                patient_single(&client, &limit, &id, version, patience).await,
            )]),
        }
    });
}

/// `GetSecretValue`, tried again while throttled for up to `patience` (zero: the SDK's retries only), after
/// a jittered exponential backoff. The SDK's own retries stop early under a fleet-wide throttle (its retry
/// token bucket runs dry); the quota refills every second, so waiting a little loads instead of failing.
/// No permit is held while waiting, so other reads go on.
async fn patient_single(
    client: &Client,
    limit: &Arc<Semaphore>,
    id: &str,
    version: VersionPin,
    patience: Duration,
) -> FetchResult {
    crate::backend::fanout::FanOut::new(1)
        .patiently(patience, "GetSecretValue", &id, || {
            let version = version.clone();
            async move {
                let _permit = limit.acquire().await.expect("semaphore is never closed");
                single(client, id, version).await
            }
        })
        .await
}

/// `GetSecretValue` for one secret.
async fn single(client: &Client, id: &str, version: VersionPin) -> FetchResult {
    let mut call = client.get_secret_value().secret_id(id);
    match version {
        VersionPin::Stage(stage) => call = call.version_stage(stage),
        VersionPin::Previous => call = call.version_stage("AWSPREVIOUS"),
        VersionPin::Id(version_id) => call = call.version_id(version_id),
        VersionPin::Current | VersionPin::Number(_) => {}
    }
    match call.send().await {
        Ok(out) => payload(out.secret_string, out.secret_binary, out.version_id),
        Err(e) => {
            let f = Failure::from_sdk(&e);
            Err(FetchError::new(f.kind, f.detail))
        }
    }
}

/// `BatchGetSecretValue` for one chunk, answers matched back to the ids asked for.
///
/// Adaptive: one attempt only. The SDK would retry a throttled batch after 1 s, 2 s, 4 s... against the
/// smallest quota (100/s per region); single gets have 10,000/s, so the ids go there at once instead.
async fn batch(client: &Client, chunk: Vec<(usize, String)>, adaptive: bool) -> Done {
    let ids: Vec<String> = chunk.iter().map(|(_, id)| id.clone()).collect();
    let mut entries: Vec<SecretValueEntry> = Vec::new();
    let mut errors: HashMap<String, Failure> = HashMap::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_BATCH_PAGES {
        let call = client
            .batch_get_secret_value()
            .set_secret_id_list(Some(ids.clone()))
            .set_next_token(token.take());
        let answer = if adaptive {
            call.customize()
                .config_override(
                    aws_sdk_secretsmanager::config::Builder::default().retry_config(RetryConfig::disabled()),
                )
                .send()
                .await
        } else {
            call.send().await
        };
        let out = match answer {
            Ok(out) => out,
            Err(e) => {
                let failure = Failure::from_sdk(&e);
                if failure.is_access_denied() || failure.is_unknown_operation() {
                    return Done::BatchRefused(chunk, failure);
                }
                // Single gets retry with the SDK's backoff (and the whole chunk goes, even from a later page).
                if adaptive && matches!(failure.kind, FailureKind::Throttled | FailureKind::Unavailable) {
                    return Done::BatchThrottled(chunk, failure);
                }
                let error = FetchError::new(failure.kind, failure.detail);
                return Done::Results(chunk.into_iter().map(|(slot, _)| (slot, Err(error.clone()))).collect());
            }
        };
        entries.extend(out.secret_values.unwrap_or_default());
        for e in out.errors.unwrap_or_default() {
            if let Some(id) = e.secret_id() {
                errors.insert(id.to_string(), Failure::from_batch_entry(e.error_code(), e.message()));
            }
        }
        match out.next_token {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }

    let results = chunk
        .into_iter()
        .map(|(slot, id)| {
            let result = match entries.iter().find(|e| matches(&id, e.name(), e.arn())) {
                Some(e) => payload(e.secret_string.clone(), e.secret_binary.clone(), e.version_id.clone()),
                None => match errors.get(&id) {
                    Some(f) => Err(FetchError::new(f.kind, f.detail.clone())),
                    None => Err(FetchError::not_found("not in BatchGetSecretValue's answer")),
                },
            };
            (slot, result)
        })
        .collect();
    Done::Results(results)
}

/// Whether a requested SecretId names the secret `name` / `arn`: by name, full ARN, or partial ARN (the
/// ARN without the `-` and six random characters AWS appends).
pub(super) fn matches(id: &str, name: Option<&str>, arn: Option<&str>) -> bool {
    if name == Some(id) || arn == Some(id) {
        return true;
    }
    match arn {
        Some(arn) if id.starts_with("arn:") => arn
            .strip_prefix(id)
            .is_some_and(|rest| rest.len() == 7 && rest.starts_with('-')),
        _ => false,
    }
}

fn payload(text: Option<String>, binary: Option<Blob>, version: Option<String>) -> FetchResult {
    let value = match (text, binary) {
        (Some(text), _) => SecretValue::text(text),
        (None, Some(bytes)) => SecretValue::binary(bytes.into_inner()),
        (None, None) => {
            return Err(FetchError::new(
                FailureKind::Invalid,
                "the version has neither SecretString nor SecretBinary (a rotation that never finished?)",
            ))
        }
    };
    let payload = SecretPayload::new(value);
    Ok(match version {
        Some(v) => payload.with_version(v),
        None => payload,
    })
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn ids_match_by_name_arn_and_partial_arn() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf";
        let name = Some("app/db");
        assert!(matches("app/db", name, Some(arn)));
        assert!(matches(arn, name, Some(arn)));
        assert!(matches(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db",
            name,
            Some(arn)
        ));
        assert!(!matches("app", name, Some(arn)));
        assert!(!matches(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app",
            name,
            Some(arn)
        ));
        assert!(!matches("app/db-AbCdEf", name, Some(arn)));
    }
}
