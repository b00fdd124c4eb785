//! The read path: batch current versions 20 at a time, fetch pinned versions (and, where the caller may not
//! batch, current ones) one by one through the shared [`fanout`](crate::backend::fanout), all with a bound on
//! requests in flight.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::SecretValueEntry;
use aws_sdk_secretsmanager::Client;

use super::error::Failure;
use super::AwsBackend;
use crate::backend::fanout::FanOut;
use crate::backend::{FailureKind, FetchError, FetchRequest, FetchResult, SecretPayload, SecretValue, VersionPin};

/// `BatchGetSecretValue` accepts at most 20 ids (moto does not enforce it; AWS does).
pub(super) const BATCH_LIMIT: usize = 20;

/// A batch answer may in principle be paged; never follow more pages than this for one chunk.
const MAX_BATCH_PAGES: usize = 20;

/// What a `BatchGetSecretValue` chunk answered.
enum Batched {
    /// Results per request slot.
    Results(Vec<(usize, FetchResult)>),
    /// The caller may not call `BatchGetSecretValue`: fetch these one by one instead.
    Refused(Vec<(usize, String)>, Failure),
}

pub(super) async fn fetch(backend: &AwsBackend, requests: &[FetchRequest]) -> Vec<FetchResult> {
    // The plan asks for each (path, version) once, so every request is read as it comes.
    let mut results: Vec<Option<FetchResult>> = vec![None; requests.len()];
    let batch_refused = backend.batch_refused.load(Ordering::Relaxed);
    let mut current = Vec::new();
    let mut singles: Vec<(usize, String, VersionPin)> = Vec::new();
    for (slot, request) in requests.iter().enumerate() {
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

    // The SDK retries each call with its own policy, so the shared fan-out only bounds and orders them.
    let fan = FanOut::new(backend.max_concurrency);
    let chunks: Vec<Vec<(usize, String)>> = current.chunks(BATCH_LIMIT).map(<[_]>::to_vec).collect();
    for answer in fan.map(chunks, |chunk| batch(&backend.client, chunk)).await {
        match answer {
            Batched::Results(done) => {
                for (slot, result) in done {
                    results[slot] = Some(result);
                }
            }
            Batched::Refused(chunk, why) => {
                // Remembered for this backend: every later fetch goes straight to GetSecretValue.
                if !backend.batch_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "skm", reason = %why.detail,
                        "BatchGetSecretValue refused; using GetSecretValue per secret from now on \
                         (grant secretsmanager:BatchGetSecretValue to load in fewer requests)");
                }
                singles.extend(chunk.into_iter().map(|(slot, id)| (slot, id, VersionPin::Current)));
            }
        }
    }

    let answers = fan
        .fetch(singles.iter(), |(_, id, version)| {
            single(&backend.client, id, version.clone())
        })
        .await;
    for ((slot, _, _), answer) in singles.iter().zip(answers) {
        results[*slot] = Some(answer);
    }

    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(FetchError::new(FailureKind::Other, "the request got no answer"))))
        .collect()
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
async fn batch(client: &Client, chunk: Vec<(usize, String)>) -> Batched {
    let ids: Vec<String> = chunk.iter().map(|(_, id)| id.clone()).collect();
    let mut entries: Vec<SecretValueEntry> = Vec::new();
    let mut errors: HashMap<String, Failure> = HashMap::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_BATCH_PAGES {
        let answer = client
            .batch_get_secret_value()
            .set_secret_id_list(Some(ids.clone()))
            .set_next_token(token.take())
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            Err(e) => {
                let failure = Failure::from_sdk(&e);
                if failure.is_access_denied() || failure.is_unknown_operation() {
                    return Batched::Refused(chunk, failure);
                }
                let error = FetchError::new(failure.kind, failure.detail);
                return Batched::Results(chunk.into_iter().map(|(slot, _)| (slot, Err(error.clone()))).collect());
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
    Batched::Results(results)
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
