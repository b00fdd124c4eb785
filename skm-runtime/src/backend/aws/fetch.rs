//! The read path: deduplicate, batch current versions 20 at a time, fetch pinned versions one by one, all
//! through the shared fan-out in spawned mode, with a bound on requests in flight; under [`FetchStrategy::Adaptive`], a throttled batch moves its ids to
//! single gets (a quota 100 times larger) and batching pauses for [`BATCH_COOLDOWN`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::error::Failure;
use super::{AwsBackend, FetchStrategy};
use crate::backend::distinct::Distinct;
use crate::backend::fanout::Spawner;
use crate::backend::{FailureKind, FetchError, FetchRequest, FetchResult, SecretPayload, SecretValue, VersionPin};
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::SecretValueEntry;
use aws_sdk_secretsmanager::Client;

/// `BatchGetSecretValue` accepts at most 20 ids (moto does not enforce it; AWS does).
pub(super) const BATCH_LIMIT: usize = 20;

/// After a throttled `BatchGetSecretValue`, an adaptive backend reads current versions with `GetSecretValue`
/// for this long before it tries a batch again: long enough for a deploy's burst to pass, short enough that a
/// later hot reload batches again.
pub const BATCH_COOLDOWN: Duration = Duration::from_secs(30);

/// A batch answer may in principle be paged; never follow more pages than this for one chunk.
const MAX_BATCH_PAGES: usize = 20;

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
    let mut singles = Vec::new();
    for (slot, request) in unique.iter().enumerate() {
        match &request.version {
            VersionPin::Current if !batch_refused => current.push((slot, request.path.clone())),
            VersionPin::Current | VersionPin::Previous | VersionPin::Stage(_) | VersionPin::Id(_) => {
                singles.push((slot, request.path.clone(), request.version.clone()));
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

    // The shared fan-out in spawned mode (the SDK's per-request work spreads over the runtime's threads): a
    // batch holds a slot while it runs; a single get holds one per attempt, and under the adaptive strategy
    // is tried again while throttled, within the patience, holding no slot while it waits. A task's panic
    // resumes here (the fan-out's one panic policy).
    let mut tasks = backend.fan_out(adaptive).spawner::<Done>();
    // Batches first so that the biggest pieces of work start earliest.
    for chunk in current.chunks(BATCH_LIMIT) {
        let (client, chunk) = (backend.client.clone(), chunk.to_vec());
        tasks.spawn(async move { batch(&client, chunk, adaptive).await });
    }
    for (slot, id, version) in singles {
        spawn_single(&mut tasks, backend, slot, id, version);
    }
    while let Some(done) = tasks.next().await {
        match done {
            Done::Results(done) => {
                for (slot, result) in done {
                    results[slot] = Some(result);
                }
            }
            Done::BatchRefused(chunk, why) => {
                // Remembered for this backend: every later fetch goes straight to GetSecretValue.
                if !backend.batch_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "skm", reason = %why.detail,
                        "BatchGetSecretValue refused; using GetSecretValue per secret from now on \
                         (grant secretsmanager:BatchGetSecretValue to load in fewer requests)");
                }
                for (slot, id) in chunk {
                    spawn_single(&mut tasks, backend, slot, id, VersionPin::Current);
                }
            }
            Done::BatchThrottled(chunk, why) => {
                if why.kind == FailureKind::Throttled && backend.pause_batches() {
                    tracing::info!(target: "skm", cooldown_s = BATCH_COOLDOWN.as_secs(),
                        "BatchGetSecretValue throttled; reading with GetSecretValue for a while");
                }
                for (slot, id) in chunk {
                    spawn_single(&mut tasks, backend, slot, id, VersionPin::Current);
                }
            }
        }
    }
    // A slot still empty: its task was cancelled (the runtime is shutting down); `spread` reports it.
    distinct.spread(results)
}

/// `GetSecretValue` of one secret as its own task of the fan-out, tried again while throttled for up to the
/// patience (adaptive; zero otherwise: the SDK's retries only), after a jittered exponential backoff. The SDK's
/// own retries stop early under a fleet-wide throttle (its retry token bucket runs dry); the quota refills
/// every second, so waiting a little loads instead of failing.
fn spawn_single(tasks: &mut Spawner<Done>, backend: &AwsBackend, slot: usize, id: String, version: VersionPin) {
    let client = backend.client.clone();
    let what = id.clone();
    tasks.spawn_retried(
        "GetSecretValue",
        what,
        move || {
            let (client, id, version) = (client.clone(), id.clone(), version.clone());
            async move { single(&client, &id, version).await }
        },
        move |result| Done::Results(vec![(slot, result)]),
    );
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
