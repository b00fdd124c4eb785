//! The read path: one `AccessSecretVersion` per distinct request, all in flight at once up to the
//! backend's bound (Secret Manager has no batch read).

use crate::backend::distinct::Distinct;
use crate::backend::fanout::FanOut;
use std::collections::HashMap;

use google_cloud_gax::error::rpc::Code;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model::secret_version::State;

use super::error::Failure;
use super::names::{resolve_all, SecretName};
use super::GcpBackend;
use crate::backend::{FailureKind, FetchError, FetchRequest, FetchResult, SecretPayload, SecretValue, VersionPin};

/// At most this many versions below the current one are tried when looking for the previous enabled one:
/// more disabled versions in a row than this is not a rotation grace any more.
const MAX_PREVIOUS_PROBES: u64 = 10;

/// One unit of work: a secret, and the unique-request slots it answers.
struct Job {
    name: SecretName,
    /// Slot of the current-version request, if any.
    current: Option<usize>,
    /// Slot of the previous-version request, if any (it needs the current version's number, so it runs
    /// after the current one in the same task: one request saved per rotating field).
    previous: Option<usize>,
    /// Other pins (numbers, ids) as version numbers, each its own request.
    pinned: Vec<(usize, String)>,
}

pub(super) async fn fetch(backend: &GcpBackend, requests: &[FetchRequest]) -> Vec<FetchResult> {
    let distinct = Distinct::of(requests);
    let unique = &distinct.unique;

    let mut results: Vec<Option<FetchResult>> = vec![None; unique.len()];
    // Paths in first-seen order, resolved together so that two paths naming one secret are caught.
    let mut paths: Vec<&str> = Vec::new();
    for r in unique {
        if !paths.contains(&r.path.as_str()) {
            paths.push(&r.path);
        }
    }
    let names = resolve_all(&backend.inner.project, paths.iter().copied());
    let mut jobs: Vec<Job> = Vec::new();
    let mut job_of: HashMap<&str, usize> = HashMap::new();
    for (path, name) in paths.iter().zip(names) {
        match name {
            Ok(name) => {
                job_of.insert(*path, jobs.len());
                jobs.push(Job {
                    name,
                    current: None,
                    previous: None,
                    pinned: Vec::new(),
                });
            }
            Err(why) => {
                for (slot, r) in unique.iter().enumerate() {
                    if r.path == *path {
                        results[slot] = Some(Err(FetchError::new(FailureKind::Invalid, why.clone())));
                    }
                }
            }
        }
    }
    for (slot, r) in unique.iter().enumerate() {
        let Some(&j) = job_of.get(r.path.as_str()) else {
            continue;
        };
        match &r.version {
            VersionPin::Current => jobs[j].current = Some(slot),
            VersionPin::Previous => jobs[j].previous = Some(slot),
            VersionPin::Number(n) => jobs[j].pinned.push((slot, n.to_string())),
            VersionPin::Id(id) => {
                // `3`, or a full version name as provenance shows it (`projects/p/secrets/s/versions/3`).
                let id: &str = id;
                let number = id.rsplit("/versions/").next().unwrap_or(id);
                if number.parse::<u64>().is_ok() {
                    jobs[j].pinned.push((slot, number.to_string()));
                } else {
                    results[slot] = Some(Err(FetchError::new(
                        FailureKind::Invalid,
                        format!(
                            "{}: version id `{id}` is not a Secret Manager version number",
                            jobs[j].name
                        ),
                    )));
                }
            }
            VersionPin::Stage(stage) => {
                results[slot] = Some(Err(FetchError::new(
                    FailureKind::Invalid,
                    format!(
                        "{}: `version_stage = \"{stage}\"` is an AWS staging label, which Secret Manager does \
                         not have; pin a version with `version = N`",
                        jobs[j].name
                    ),
                )));
            }
        }
    }

    // Pinned versions are independent requests: each is its own unit so they run side by side. Google's
    // client retries each call, so the shared fan-out only bounds and orders them.
    enum Unit {
        Pinned(usize, SecretName, String),
        Latest(SecretName, Option<usize>, Option<usize>),
    }
    let mut units = Vec::new();
    for job in jobs {
        for (slot, pin) in job.pinned {
            units.push(Unit::Pinned(slot, job.name.clone(), pin));
        }
        if job.current.is_some() || job.previous.is_some() {
            units.push(Unit::Latest(job.name, job.current, job.previous));
        }
    }
    let client = &backend.inner.client;
    let patience = &backend.inner.patience();
    let answers = FanOut::new(backend.inner.max_in_flight)
        .map(units, |unit| async move {
            match unit {
                Unit::Pinned(slot, name, pin) => {
                    vec![(
                        slot,
                        access(client, &name, &pin, patience).await.map(|(payload, _)| payload),
                    )]
                }
                Unit::Latest(name, current, previous) => {
                    current_and_previous(client, &name, current, previous, patience).await
                }
            }
        })
        .await;
    for (slot, result) in answers.into_iter().flatten() {
        results[slot] = Some(result);
    }
    distinct.spread(results)
}

/// The current version (`latest`), and the newest enabled version before it, for one secret.
async fn current_and_previous(
    client: &SecretManagerService,
    name: &SecretName,
    current_slot: Option<usize>,
    previous_slot: Option<usize>,
    patience: &FanOut,
) -> Vec<(usize, FetchResult)> {
    let current = access(client, name, "latest", patience).await;
    let mut out = Vec::new();
    if let Some(slot) = previous_slot {
        let number = match &current {
            Ok((_, n)) => Ok(*n),
            // Google's `latest` is the newest version even when it is disabled: its number is still known.
            Err(e) if e.kind != FailureKind::NotFound => latest_number(client, name).await.ok_or_else(|| e.clone()),
            Err(e) => Err(e.clone()),
        };
        out.push((
            slot,
            match number {
                Ok(n) => previous(client, name, n, patience).await,
                Err(e) => Err(e),
            },
        ));
    }
    if let Some(slot) = current_slot {
        out.push((slot, current.map(|(payload, _)| payload)));
    }
    out
}

/// The newest enabled version below `current`: tried one by one from `current - 1`, so that only the
/// accessor role is needed (listing versions would need `secretmanager.versions.list` and cost a request
/// from the 600-a-minute metadata quota).
async fn previous(client: &SecretManagerService, name: &SecretName, current: u64, patience: &FanOut) -> FetchResult {
    let lowest = current.saturating_sub(MAX_PREVIOUS_PROBES).max(1);
    for n in (lowest..current).rev() {
        match access(client, name, &n.to_string(), patience).await {
            Ok((payload, _)) => return Ok(payload),
            // Disabled, destroyed or gone: keep looking further back.
            Err(e) if matches!(e.kind, FailureKind::NotFound) || e.detail.contains(UNUSABLE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(FetchError::not_found(format!(
        "{name}: no enabled version before version {current}"
    )))
}

/// Marks the detail of a disabled or destroyed version, so that [`previous`] can skip it.
const UNUSABLE: &str = "cannot be read: it is";

/// `GetSecretVersion` of `latest`: its number, when the caller may read metadata.
async fn latest_number(client: &SecretManagerService, name: &SecretName) -> Option<u64> {
    let v = client
        .get_secret_version()
        .set_name(name.version("latest"))
        .send()
        .await
        .ok()?;
    number_of(&v.name)
}

fn number_of(version_name: &str) -> Option<u64> {
    version_name.rsplit('/').next()?.parse().ok()
}

/// [`access_once`], tried again while throttled (`RESOURCE_EXHAUSTED` after the client's own retries) for up
/// to `patience` (zero: the client's retries only), after a jittered exponential backoff. A fleet starting at
/// once can exceed the project's access quota for several seconds, longer than the client's retries last
/// (measured: 1,000 instances' worth failed 16 to 30 loads of 50); the quota refills every second, so waiting
/// loads instead of failing. `Loader::deadline` still bounds the whole load.
async fn access(
    client: &SecretManagerService,
    name: &SecretName,
    version: &str,
    patience: &FanOut,
) -> Result<(SecretPayload, u64), FetchError> {
    patience
        .patient("AccessSecretVersion", name, || access_once(client, name, version))
        .await
}

/// `AccessSecretVersion` of one version, with the client's retries: the payload (checked against its CRC32C
/// when the server sends one) and the version's number.
async fn access_once(
    client: &SecretManagerService,
    name: &SecretName,
    version: &str,
) -> Result<(SecretPayload, u64), FetchError> {
    let what = if version == "latest" {
        name.describe()
    } else {
        format!("version {version} of {name}")
    };
    let answer = match client
        .access_secret_version()
        .set_name(name.version(version))
        .send()
        .await
    {
        Ok(a) => a,
        Err(e) => {
            let f = Failure::from_gax(&e);
            if f.is(Code::FailedPrecondition) {
                return Err(unusable(client, name, version, &what, &f).await);
            }
            return Err(f.fetch_error(&what));
        }
    };
    let Some(payload) = answer.payload else {
        return Err(FetchError::new(
            FailureKind::Invalid,
            format!("{what}: the answer has no payload"),
        ));
    };
    if let Some(expected) = payload.data_crc32c {
        let actual = i64::from(crc32c::crc32c(&payload.data));
        if actual != expected {
            return Err(FetchError::new(
                FailureKind::Other,
                format!("{what}: the payload does not match its CRC32C checksum (corrupted in transit)"),
            ));
        }
    }
    let number = number_of(&answer.name).unwrap_or_default();
    let value = match String::from_utf8(payload.data.to_vec()) {
        Ok(text) => SecretValue::text(text),
        Err(bytes) => SecretValue::binary(bytes.into_bytes()),
    };
    // The full version name shows the mapped secret id in provenance (`skm explain`, `load_report`).
    Ok((SecretPayload::new(value).with_version(answer.name), number))
}

/// The error for a version that exists but cannot be read (`FAILED_PRECONDITION`): disabled or destroyed,
/// said plainly. The state comes from the error message, or from the version's metadata when the message
/// does not name it.
async fn unusable(
    client: &SecretManagerService,
    name: &SecretName,
    version: &str,
    what: &str,
    f: &Failure,
) -> FetchError {
    let upper = f.detail.to_ascii_uppercase();
    let state = if upper.contains("DESTROYED") {
        Some("destroyed")
    } else if upper.contains("DISABLED") {
        Some("disabled")
    } else {
        match client.get_secret_version().set_name(name.version(version)).send().await {
            Ok(v) if v.state == State::Destroyed => Some("destroyed"),
            Ok(v) if v.state == State::Disabled => Some("disabled"),
            _ => None,
        }
    };
    match state {
        Some("destroyed") => FetchError::new(
            FailureKind::Other,
            format!("{what} {UNUSABLE} destroyed, its data is gone; pin another version or add a new one"),
        ),
        Some(_) => FetchError::new(
            FailureKind::Other,
            format!(
                "{what} {UNUSABLE} disabled; enable it (`gcloud secrets versions enable`) or pin another \
                 version"
            ),
        ),
        None => f.fetch_error(what),
    }
}
