//! The read path: deduplicate, then `GetParameters` 10 names at a time, every batch a task of the shared
//! fan-out in spawned mode, tried again while throttled within the patience.

use std::collections::HashMap;

use aws_sdk_ssm::types::Parameter;
use aws_sdk_ssm::Client;

use super::error::Failure;
use super::name::{self, Wanted};
use super::SsmBackend;
use crate::backend::distinct::Distinct;
use crate::backend::fanout::Spawner;
use crate::backend::{FailureKind, FetchError, FetchRequest, FetchResult, SecretPayload, SecretValue, VersionPin};

/// `GetParameters` accepts at most 10 names (AWS enforces it, and so does moto).
pub(super) const BATCH_LIMIT: usize = 10;

/// What a task reports back: results per distinct request.
type Done = Vec<(usize, FetchResult)>;

pub(super) async fn fetch(backend: &SsmBackend, requests: &[FetchRequest]) -> Vec<FetchResult> {
    let distinct = Distinct::of(requests);
    let mut results: Vec<Option<FetchResult>> = vec![None; distinct.unique.len()];

    // A batch asks for each parameter once, so that its answers (which moto gives without their selector)
    // match back by name: the k-th request of one parameter goes into the k-th round of batches. A load
    // reads each parameter once, so it is one round of ceil(n/10) batches.
    let mut rounds: Vec<Vec<(usize, Wanted)>> = Vec::new();
    let mut per_name: HashMap<String, usize> = HashMap::new();
    let mut previous = Vec::new();
    for (slot, request) in distinct.unique.iter().enumerate() {
        match name::wanted(&request.path, &request.version) {
            Err(why) => results[slot] = Some(Err(FetchError::new(FailureKind::Invalid, why))),
            Ok(w) if request.version == VersionPin::Previous => {
                if w.selector.is_some() {
                    results[slot] = Some(Err(FetchError::new(
                        FailureKind::Invalid,
                        "the previous version of a path that selects a version: drop the `:selector`",
                    )));
                } else {
                    previous.push((slot, w.base));
                }
            }
            Ok(w) => {
                let round = per_name.entry(w.base.clone()).or_insert(0);
                if rounds.len() <= *round {
                    rounds.push(Vec::new());
                }
                rounds[*round].push((slot, w));
                *round += 1;
            }
        }
    }

    // A task's panic resumes here (the fan-out's one panic policy); a cancelled task leaves its slots empty,
    // which `spread` reports.
    let mut tasks = backend.fan_out().spawner::<Done>();
    for round in &rounds {
        for chunk in round.chunks(BATCH_LIMIT) {
            spawn_batch(&mut tasks, &backend.client, chunk.to_vec());
        }
    }
    for (slot, base) in previous {
        spawn_previous(&mut tasks, &backend.client, slot, base);
    }
    while let Some(done) = tasks.next().await {
        for (slot, result) in done {
            results[slot] = Some(result);
        }
    }
    distinct.spread(results)
}

/// One `GetParameters` as a task, tried again while it fails retryably (throttled, within the patience).
fn spawn_batch(tasks: &mut Spawner<Done>, client: &Client, chunk: Vec<(usize, Wanted)>) {
    let names: Vec<String> = chunk.iter().map(|(_, w)| w.request()).collect();
    // Names, never values, for the debug log of a retry.
    let what = names.join(", ");
    let client = client.clone();
    tasks.spawn_retried(
        "GetParameters",
        what,
        move || {
            let (client, names) = (client.clone(), names.clone());
            async move { get_parameters(&client, names).await }
        },
        move |answer| match answer {
            Ok((found, invalid)) => match_up(chunk, &found, &invalid),
            Err(e) => chunk.into_iter().map(|(slot, _)| (slot, Err(e.clone()))).collect(),
        },
    );
}

/// `GetParameters` with decryption: the parameters found and the names AWS did not know.
async fn get_parameters(client: &Client, names: Vec<String>) -> Result<(Vec<Parameter>, Vec<String>), FetchError> {
    let out = client
        .get_parameters()
        .set_names(Some(names))
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| Failure::from_sdk(&e).fetch_error())?;
    Ok((
        out.parameters.unwrap_or_default(),
        out.invalid_parameters.unwrap_or_default(),
    ))
}

/// Each request's answer from a batch's: its parameter (by ARN, else by name), or not found.
fn match_up(chunk: Vec<(usize, Wanted)>, found: &[Parameter], invalid: &[String]) -> Done {
    chunk
        .into_iter()
        .map(|(slot, w)| {
            let by_arn = found.iter().find(|p| p.arn() == Some(w.base.as_str()));
            let by_name = || found.iter().find(|p| p.name().is_some_and(|n| names_same(&w.base, n)));
            let result = match by_arn.or_else(by_name) {
                Some(p) => payload(p),
                None => Err(not_found(&w, invalid.contains(&w.request()))),
            };
            (slot, result)
        })
        .collect()
}

/// Whether the requested `base` (a name, or an ARN) is the parameter AWS answered as `name`.
fn names_same(base: &str, name: &str) -> bool {
    base == name
        || base
            .split_once(":parameter")
            .is_some_and(|(arn, rest)| arn.starts_with("arn:") && rest == name)
}

fn not_found(w: &Wanted, listed_invalid: bool) -> FetchError {
    let what = match &w.selector {
        Some(s) => format!("no version or label `{s}` of parameter `{}`", w.base),
        None => format!("no parameter `{}`", w.base),
    };
    let why = if listed_invalid {
        "in GetParameters' InvalidParameters"
    } else {
        "not in GetParameters' answer"
    };
    FetchError::not_found(format!("{what} ({why})"))
}

fn payload(p: &Parameter) -> FetchResult {
    match p.value() {
        Some(value) => Ok(SecretPayload::new(SecretValue::text(value)).with_version(p.version().to_string())),
        None => Err(FetchError::new(
            FailureKind::Invalid,
            "the parameter came back without a value",
        )),
    }
}

/// The version before the current one: `GetParameter` of the current version for its number `n`, then of
/// `name:n-1`, as one task.
fn spawn_previous(tasks: &mut Spawner<Done>, client: &Client, slot: usize, base: String) {
    let client = client.clone();
    tasks.spawn_retried(
        "GetParameter",
        base.clone(),
        move || {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let current = get_parameter(&client, &base).await?;
                match current.version() {
                    n if n > 1 => payload(&get_parameter(&client, &format!("{base}:{}", n - 1)).await?),
                    _ => Err(FetchError::not_found(format!(
                        "parameter `{base}` has no version before its current one"
                    ))),
                }
            }
        },
        move |result| vec![(slot, result)],
    );
}

async fn get_parameter(client: &Client, name: &str) -> Result<Parameter, FetchError> {
    let out = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| Failure::from_sdk(&e).fetch_error())?;
    out.parameter
        .ok_or_else(|| FetchError::new(FailureKind::Other, "GetParameter answered without a parameter"))
}

#[cfg(test)]
mod tests {
    use super::names_same;

    #[test]
    fn arns_match_the_name_aws_answers_with() {
        assert!(names_same("/a/b", "/a/b"));
        assert!(names_same("arn:aws:ssm:eu-west-1:1:parameter/a/b", "/a/b"));
        assert!(!names_same("arn:aws:ssm:eu-west-1:1:parameter/a/b", "/a"));
        assert!(!names_same("/a", "/a/b"));
    }
}
